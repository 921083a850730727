"""Labelled photos from CSVs (street2shop.sources.labelled): validation, and the annotated
table the one evaluation path scores."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from labelled_testing import write_csv
from street2shop.retrieval.evaluation import evaluate_features
from street2shop.sources.labelled import DataError, annotated_from_csvs, read_labelled_csv


def _rows(csv_path: Path) -> list[dict]:
    import csv

    with open(csv_path, newline="") as fh:
        return list(csv.DictReader(fh))


# ------------------------------------------------------------------ validation


def test_reads_paths_relative_to_the_csv(photo_set):
    photos = read_labelled_csv(photo_set["gallery"])
    assert photos.attributes == ("product_id", "category", "colour")
    assert photos.table.num_rows == 8
    first = Path(photos.table.column("path")[0].as_py())
    assert first.is_absolute() and first.parent == photo_set["gallery"].parent / "photos"
    assert photos.table.column("width").to_pylist() == [40] * 8


def test_missing_csv_and_missing_columns(tmp_path):
    with pytest.raises(DataError, match="CSV not found"):
        read_labelled_csv(tmp_path / "nope.csv")
    bad = write_csv(tmp_path / "bad.csv", [{"image": "a.jpg", "item_id": "x"}])
    with pytest.raises(DataError, match=r"missing column\(s\) \['path'\]"):
        read_labelled_csv(bad)


#: a broken gallery CSV, from the good rows -> the one-line error naming its line
BAD_GALLERY = {
    "empty cell": (lambda r: [r[0], {**r[1], "item_id": ""}], "line 3: empty item_id"),
    "duplicate path": (lambda r: [r[0], r[1], {**r[0], "item_id": "other"}], "duplicate paths: line 4: .* repeats line 2"),
    "missing file": (lambda r: [r[0], {**r[1], "path": "photos/missing.jpg"}], "missing image files: line 3: .*missing.jpg"),
    "unreadable image": (lambda r: [{**r[0], "path": "photos/junk.jpg"}, r[1]], "unreadable images: line 2: junk.jpg"),
    "conflicting attribute": (lambda r: [r[0], {**r[1], "colour": "green"}], "line 3: item p1:red has colour 'green', elsewhere 'red'"),
}


@pytest.mark.parametrize("case", list(BAD_GALLERY))
def test_empty_cells_duplicates_missing_files_unreadable_images_and_conflicts_name_their_lines(case, photo_set, tmp_path):
    broken, message = BAD_GALLERY[case]
    (tmp_path / "photos" / "junk.jpg").write_bytes(b"not an image")
    with pytest.raises(DataError, match=message):
        read_labelled_csv(write_csv(tmp_path / "bad.csv", broken(_rows(photo_set["gallery"]))))


def test_unknown_query_items(photo_set, tmp_path):
    queries = _rows(photo_set["queries"])
    stray = write_csv(tmp_path / "stray.csv", [queries[0], {**queries[1], "item_id": "p9:pink"}])
    with pytest.raises(DataError, match="no photo in the gallery .*line 3: item p9:pink"):
        annotated_from_csvs(read_labelled_csv(photo_set["gallery"]), read_labelled_csv(stray))


# ------------------------------------------------------------------ the one evaluation path


def test_csvs_go_through_the_evaluation_path_with_hand_checked_figures(photo_set):
    """Features chosen by hand: each p1:red query lands on p1:blue (same product, other
    colour), every other query on its own item."""
    annotated = annotated_from_csvs(read_labelled_csv(photo_set["gallery"]), read_labelled_csv(photo_set["queries"]))
    items = sorted({"p1:red", "p1:blue", "p2:red", "p2:blue"})
    basis = {item: np.eye(4, dtype=np.float32)[i] for i, item in enumerate(items)}
    item_of = dict(zip(annotated.column("path").to_pylist(), annotated.column("item_id").to_pylist()))
    role_of = dict(zip(annotated.column("path").to_pylist(), annotated.column("role").to_pylist()))

    def features(paths):
        out = []
        for p in paths:
            item = item_of[p]
            out.append(basis["p1:blue"] if role_of[p] == "street" and item == "p1:red" else basis[item])
        return np.stack(out)

    report, vectors = evaluate_features(features, annotated, "test", ks=(1, 2))
    assert report.overall["n_queries"] == 8 and report.overall["gallery_size"] == 8
    assert report.overall["gallery_items"] == 4
    assert report.overall["top1"] == pytest.approx(6 / 8)
    assert report.overall["wrong_colour_top1"] == pytest.approx(2 / 8)
    assert report.per_category["tops"]["top1"] == pytest.approx(2 / 4)
    assert report.per_category["shoes"]["top1"] == 1.0
    # p1:red ranks second behind p1:blue for its two queries: mAP = (6 * 1 + 2 * 1/2) / 8
    assert report.overall["map"] == pytest.approx(7 / 8)
    assert vectors["queries"].shape == (8, 4)


def test_without_product_or_category_columns_there_is_no_wrong_colour_rate(photo_set, tmp_path):
    bare = write_csv(tmp_path / "bare.csv", [{"path": r["path"], "item_id": r["item_id"]} for r in _rows(photo_set["gallery"])])
    annotated = annotated_from_csvs(read_labelled_csv(bare), read_labelled_csv(photo_set["queries"]))
    report, _ = evaluate_features(lambda paths: np.ones((len(paths), 3), np.float32), annotated, "test")
    assert "wrong_colour_top1" not in report.overall
    assert report.per_category == {}




def test_unreadable_image_in_a_png_disguise(photo_set, tmp_path):
    """A truncated file opens (the header is fine) but fails to decode: still an error."""
    rows = _rows(photo_set["gallery"])
    good = Image.new("RGB", (64, 64), (10, 200, 10))
    good.save(tmp_path / "photos" / "cut.png")
    data = (tmp_path / "photos" / "cut.png").read_bytes()
    (tmp_path / "photos" / "cut.png").write_bytes(data[: len(data) // 2])
    cut = write_csv(tmp_path / "cut.csv", [rows[0], {**rows[1], "path": "photos/cut.png"}])
    with pytest.raises(DataError, match="unreadable images: line 3: cut.png"):
        read_labelled_csv(cut)
