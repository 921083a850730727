"""bench/ablation.py end to end on a tiny generated data set with the tiny backbone."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from street2shop.cleaning.selection import annotate
from street2shop.storage.schemas import IMAGES

BENCH = Path(__file__).resolve().parents[2] / "bench"
#: six items, told apart by colour: four to train on, two in the test split
COLOURS = [(220, 30, 30), (30, 60, 220), (30, 180, 60), (230, 200, 20), (160, 40, 200), (20, 200, 200)]


@pytest.fixture()
def ablation(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))  # the script imports its sibling ``_results``
    return importlib.import_module("ablation")


def tiny_annotated(root: Path, shop: int = 2, street: int = 3) -> pa.Table:
    """A cleaned data set as ``load_annotated`` returns it: shop photos on white, street on grey."""
    rng = np.random.default_rng(0)
    images, items, groups = [], [], []
    for n, colour in enumerate(COLOURS):
        item = f"p{n}:c"
        items.append({"item_id": item, "product_id": f"p{n}", "category": "top", "colour": "c"})
        groups.append({"item_id": item, "group_id": f"g{n}"})
        for role, count in (("shop", shop), ("street", street)):
            for i in range(count):
                pixels = np.full((40, 40, 3), 255 if role == "shop" else 120, np.uint8)
                x, y = rng.integers(4, 16, 2)
                pixels[y : y + 20, x : x + 20] = colour
                path = root / f"{n}_{role}_{i}.png"
                Image.fromarray(pixels).save(path)
                images.append({"image_id": f"{n}-{role}-{i}", "item_id": item, "role": role, "path": str(path),
                               "width": 40, "height": 40, "source_url": f"http://shop.test/{path.name}",
                               "review_id": f"r{i}" if role == "street" else None})
    splits = [{"group_id": f"g{n}", "split": "train" if n < 4 else "test"} for n in range(len(COLOURS))]
    return annotate(pa.Table.from_pylist(images, schema=IMAGES), pa.Table.from_pylist(items),
                    pa.Table.from_pylist(groups), pa.Table.from_pylist(splits))


def test_tiny_ablation_reports_every_row(ablation, tmp_path, capsys):
    table = tmp_path / "annotated.parquet"
    pq.write_table(tiny_annotated(tmp_path), table)
    out = tmp_path / "results.jsonl"
    record = ablation.main(["--annotated", str(table), "--backbone", "tiny", "--steps", "2", "--out", str(out)])

    printed = capsys.readouterr().out
    expected = [ablation.BASELINE, *ablation.ROWS]
    for name in expected:
        assert f"| {name} |" in printed
    assert "tiny (random init, trainable backbone) at 64 px, 1 epoch x 2 steps of P4 x K4" in printed
    assert [r["row"] for r in record["results"]] == expected
    assert json.loads(out.read_text().splitlines()[-1])["results"] == record["results"]
    for row in record["results"]:
        assert 0.0 <= row["top1"] <= row["top20"] <= 1.0
        assert row["queries"] == 2 * 3  # the street photos of the two test items
        if row["row"] == ablation.BASELINE:
            assert row["train_s"] == 0.0 and row["train_peak_rss_mib"] is None
        else:
            # the forked child trained for real: two logged steps, its own peak RSS
            assert row["steps"] == 2 and row["train_s"] > 0
            assert row["train_peak_rss_mib"] >= row["base_rss_mib"] > 0


def test_unknown_row_is_refused(ablation, tmp_path):
    with pytest.raises(SystemExit):
        ablation.main(["--annotated", str(tmp_path / "missing.parquet"), "--rows", "dropout"])


def test_spread_over_seeds_is_half_the_range(ablation):
    assert ablation._summary([0.5, 0.7, 0.6], ".2f") == "0.60 ± 0.10"
    assert ablation._summary([0.25], ".2f") == "0.25"
    assert ablation._summary([None], ".2f") == "-"
