"""``street2shop labels export/import``: the labelling round trip on a tiny store."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from cli_testing import street2shop

from street2shop.cleaning.noise import NoiseFilter, NoiseParams
from street2shop.cleaning.labels import merge_labels
from street2shop.storage.blobs import BlobStore
from street2shop.storage.schemas import IMAGES, ITEMS, NOISE_LABELS
from street2shop.storage.store import ArtifactStore
from street2shop.tasks.noise import run_noise_filter

COLOURS = ("navy", "red", "green", "mustard")


@pytest.fixture(scope="module")
def store(tmp_path_factory, draw):
    """A store with a crawl of 10 products (2 good review photos + 1 noise photo each), a
    labels file covering products 0-7 and a noise stage trained on it (colour_edge, 48 px).
    Products 8 and 9 (6 photos) are unlabelled."""
    home = tmp_path_factory.mktemp("home")
    blobs = BlobStore(home)
    rows, labels = [], []
    for p in range(10):
        item = f"p{p:06d}:{COLOURS[p % 4]}"
        photos = [
            (draw.garment(300 + 2 * p, COLOURS[p % 4], size=(64, 80)), "good"),
            (draw.garment(301 + 2 * p, COLOURS[(p + 1) % 4], size=(64, 80)), "good"),
            (draw.parcel(p, size=(64, 80)) if p % 2 else draw.close_up(p, size=(64, 80)), "noise"),
        ]
        for image, label in photos:
            buf = io.BytesIO()
            image.save(buf, "JPEG", quality=90)
            sha, rel = blobs.put(buf.getvalue())
            rows.append({"image_id": sha, "item_id": item, "role": "street", "path": rel, "width": 64,
                         "height": 80, "source_url": f"http://shop/{sha}.jpg", "review_id": f"r{p}"})
            if p < 8:
                labels.append((sha, label))
    artifacts = ArtifactStore(home)
    items = [{"item_id": i, "product_id": i.split(":")[0], "seller_id": "s", "category": "tops", "colour": i.split(":")[1],
              "title": None, "url": None} for i in sorted({r["item_id"] for r in rows})]  # fmt: skip
    with artifacts.publish("crawl", ["items", "images"], "v1") as writers:  # as a crawl publishes them
        writers["items"].write_table(pa.Table.from_pylist(items, schema=ITEMS))
        writers["images"].write_table(pa.Table.from_pylist(rows, schema=IMAGES))
    labels_path = home / "labels.csv"
    labels_path.write_text("image_id,label\n" + "".join(f"{i},{lab}\n" for i, lab in labels))
    run_noise_filter(artifacts, artifacts.latest("crawl", "images"), labels_path, NoiseParams(features="colour_edge", image_size=48))
    return artifacts, labels_path, rows


def _read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _invoke(*args: str):
    return street2shop("labels", *args)


def test_export_lists_the_least_certain_unlabelled_photos(store, tmp_path) -> None:
    artifacts, _, rows = store
    out = tmp_path / "to_label.csv"
    result = _invoke("export", str(out), "--n", "4", "--home", str(artifacts.home))
    assert result.exit_code == 0, result.output
    exported = _read_csv(out)
    assert list(exported[0]) == ["image_id", "path", "item_id", "p_noise", "label"]
    assert len(exported) == 4
    # Only the 6 photos of products 8 and 9 are unlabelled; the 4 closest to the threshold.
    unlabelled = {r["image_id"]: r for r in rows if r["item_id"] in ("p000008:navy", "p000009:red")}
    threshold = NoiseFilter.load(artifacts.version_dir(artifacts.latest("noise", "noise_model"))).threshold
    scores = artifacts.read_table(artifacts.latest("noise", "noise_scores")).to_pylist()
    p_of = {s["image_id"]: s["p_noise"] for s in scores if s["image_id"] in unlabelled}
    expected = sorted(p_of, key=lambda i: (abs(p_of[i] - threshold), i))[:4]
    assert [r["image_id"] for r in exported] == expected
    for r in exported:
        assert Path(r["path"]).is_absolute() and Path(r["path"]).is_file()
        assert r["item_id"] == unlabelled[r["image_id"]]["item_id"]
        assert float(r["p_noise"]) == pytest.approx(p_of[r["image_id"]], abs=1e-4)
        assert r["label"] == ""


def test_round_trip_merges_new_labels_atomically(store, tmp_path) -> None:
    artifacts, labels_path, _ = store
    into = tmp_path / "labels.csv"
    into.write_bytes(labels_path.read_bytes())
    before = _read_csv(into)
    out = tmp_path / "to_label.csv"
    _invoke("export", str(out), "--n", "3", "--home", str(artifacts.home))
    exported = _read_csv(out)
    for r, label in zip(exported, ("good", "Noise", "good")):
        r["label"] = label
    with open(out, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(exported[0]))
        writer.writeheader()
        writer.writerows(exported)

    result = _invoke("import", str(out), "--into", str(into), "--home", str(artifacts.home))
    assert result.exit_code == 0, result.output
    assert "3 added, 0 relabelled, 0 unchanged" in result.output
    after = _read_csv(into)
    assert after[: len(before)] == before  # existing labels kept, in order
    assert after[len(before):] == [{"image_id": r["image_id"], "label": r["label"].lower()} for r in exported]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".labels.csv.")]  # no temp left

    again = _invoke("import", str(out), "--into", str(into), "--home", str(artifacts.home))
    assert "0 added, 0 relabelled, 3 unchanged" in again.output


def test_a_conflicting_relabel_needs_overwrite(store, tmp_path) -> None:
    artifacts, labels_path, _ = store
    into = tmp_path / "labels.csv"
    into.write_bytes(labels_path.read_bytes())
    first = _read_csv(into)[0]
    flipped = "noise" if first["label"] == "good" else "good"
    relabel = tmp_path / "relabel.csv"
    relabel.write_text(f"image_id,label\n{first['image_id']},{flipped}\n")

    refused = _invoke("import", str(relabel), "--into", str(into), "--home", str(artifacts.home))
    assert refused.exit_code == 2
    assert f"row 1 ({first['image_id'][:12]}…: {first['label']} -> {flipped})" in refused.output
    assert "--overwrite" in refused.output
    assert _read_csv(into)[0] == first  # untouched

    done = _invoke("import", str(relabel), "--into", str(into), "--overwrite", "--home", str(artifacts.home))
    assert done.exit_code == 0 and "0 added, 1 relabelled" in done.output
    assert _read_csv(into)[0] == {"image_id": first["image_id"], "label": flipped}


def test_bad_rows_are_refused_by_name_and_nothing_is_written(store, tmp_path) -> None:
    artifacts, labels_path, rows = store
    into = tmp_path / "labels.csv"
    into.write_bytes(labels_path.read_bytes())
    known = rows[-1]["image_id"]
    bad = tmp_path / "bad.csv"
    bad.write_text(f"image_id,label\n{known},good\n{'f' * 64},noise\n{known},noise\n{rows[-2]['image_id']},maybe\n")
    result = _invoke("import", str(bad), "--into", str(into), "--home", str(artifacts.home))
    assert result.exit_code == 2
    assert "image not among the street photos in row 2" in result.output
    assert "labelled more than once in row 3" in result.output
    assert "unknown label (expected good or noise) in row 4 ('maybe')" in result.output
    assert into.read_bytes() == labels_path.read_bytes()

    missing = tmp_path / "missing.csv"
    missing.write_text(f"image_id\n{known}\n")
    result = _invoke("import", str(missing), "--into", str(into), "--home", str(artifacts.home))
    assert result.exit_code == 2 and "need a 'label' column" in result.output


def test_import_needs_a_target(store, tmp_path) -> None:
    artifacts, labels_path, _ = store
    result = _invoke("import", str(labels_path), "--home", str(artifacts.home))
    assert result.exit_code != 0 and "--into PATH or --config YAML" in result.output


def test_merge_labels_by_hand() -> None:
    existing = pa.table({"image_id": ["a", "b"], "label": ["good", "noise"]}, schema=NOISE_LABELS)
    new = pa.table({"image_id": ["c", "a", "b"], "label": ["noise", "good", "good"]}, schema=NOISE_LABELS)
    with pytest.raises(ValueError, match=r"1 photos are already labelled differently: row 3 \(b…: noise -> good\)"):
        merge_labels(existing, new, overwrite=False)
    merged, counts = merge_labels(existing, new, overwrite=True)
    assert merged.to_pylist() == [
        {"image_id": "a", "label": "good"}, {"image_id": "b", "label": "good"}, {"image_id": "c", "label": "noise"},
    ]
    assert counts == {"added": 1, "relabelled": 1, "unchanged": 1}
    assert pc.all(pc.is_valid(merged.column("label"))).as_py()
