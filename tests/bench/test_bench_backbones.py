"""bench/backbones.py: one row (a library backbone over a labelled photo set) and the
discovery of cached hub models, on tiny saved models and generated photos."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

from backbone_testing import save_tiny_timm_vit

BENCH = Path(__file__).resolve().parents[2] / "bench"


@pytest.fixture()
def bench(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))
    return importlib.import_module("backbones")


def _rows(csv: Path) -> list[dict]:
    import csv as csvlib

    with csv.open() as f:
        return [{**r, "path": str(csv.parent / r["path"])} for r in csvlib.DictReader(f)]


def test_one_row_scores_a_library_backbone_on_a_photo_set(bench, photo_set, tmp_path):
    name = save_tiny_timm_vit(tmp_path / "vit")
    gallery, queries = _rows(photo_set["gallery"]), _rows(photo_set["queries"])
    spec = {
        "backbone": name, "pool": "cls", "precision": "eager", "workers": 0, "calibration": [r["path"] for r in gallery[:4]],
        "sets": {"photos": {"gallery": [r["path"] for r in gallery], "gallery_items": [r["item_id"] for r in gallery],
                            "queries": [r["path"] for r in queries], "query_items": [r["item_id"] for r in queries]}},
    }
    row = bench.measure(spec)
    assert (row["backbone"], row["pool"], row["image_size"], row["dim"]) == (name, "cls", 64, 32)
    assert 0.0 <= row["photos_top1"] <= row["photos_top20"] == 1.0  # four items: all within the top 20
    assert row["images_per_s"] > 0 and row["net_images_per_s"] > 0 and row["peak_rss_mb"] > 0


def test_cached_hub_models_are_found_by_their_config_files(bench, tmp_path):
    for repo, config in (("timm/vit_tiny", "config.json"), ("Marqo/fashion-clip", "open_clip_config.json")):
        folder = tmp_path / f"models--{repo.replace('/', '--')}"
        snapshot = folder / "snapshots" / ("0" * 40)
        snapshot.mkdir(parents=True)
        (snapshot / config).write_text("{}")
        (folder / "refs").mkdir()
        (folder / "refs" / "main").write_text("0" * 40)
    assert sorted(bench.cached_hub_backbones(tmp_path)) == ["open_clip:hf-hub:Marqo/fashion-clip", "timm:hf-hub:timm/vit_tiny"]
