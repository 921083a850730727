"""Bring-your-own-data evaluation and indexing from CSVs (street2shop.byo)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import typer
from PIL import Image
from typer.testing import CliRunner

from street2shop.byo import DataError, annotated_from_csvs, eval_command, index_catalog, index_command, read_labelled_csv
from street2shop.evaluate import evaluate_features
from street2shop.retrieval.index import load_index
from street2shop.storage.store import ArtifactStore
from street2shop.tasks.index import INDEX_FILE

from evaluate_testing import write_csv


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


def test_empty_cells_duplicates_missing_files_and_unreadable_images_name_their_lines(photo_set, tmp_path):
    rows = _rows(photo_set["gallery"])
    empty = write_csv(tmp_path / "empty.csv", [rows[0], {**rows[1], "item_id": ""}])
    with pytest.raises(DataError, match="line 3: empty item_id"):
        read_labelled_csv(empty)
    dup = write_csv(tmp_path / "dup.csv", [rows[0], rows[1], {**rows[0], "item_id": "other"}])
    with pytest.raises(DataError, match="duplicate paths: line 4: .* repeats line 2"):
        read_labelled_csv(dup)
    gone = write_csv(tmp_path / "gone.csv", [rows[0], {**rows[1], "path": "photos/missing.jpg"}])
    with pytest.raises(DataError, match="missing image files: line 3: .*missing.jpg"):
        read_labelled_csv(gone)
    (tmp_path / "photos" / "junk.jpg").write_bytes(b"not an image")
    junk = write_csv(tmp_path / "junk.csv", [{**rows[0], "path": "photos/junk.jpg"}, rows[1]])
    with pytest.raises(DataError, match="unreadable images: line 2: junk.jpg"):
        read_labelled_csv(junk)


def test_conflicting_attributes_and_unknown_query_items(photo_set, tmp_path):
    rows = _rows(photo_set["gallery"])
    conflict = write_csv(tmp_path / "conflict.csv", [rows[0], {**rows[1], "colour": "green"}])
    with pytest.raises(DataError, match="line 3: item p1:red has colour 'green', elsewhere 'red'"):
        read_labelled_csv(conflict)
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


# ------------------------------------------------------------------ commands


def _app(command, name: str) -> typer.Typer:
    app = typer.Typer()
    app.command(name)(command)

    @app.callback()
    def _root() -> None:  # a callback keeps typer from collapsing a one-command app
        pass

    return app


def test_eval_command_prints_one_json_object_and_writes_the_report(photo_set, tiny_checkpoint, tmp_path):
    out = tmp_path / "report.html"
    result = CliRunner().invoke(
        _app(eval_command, "eval"),
        ["eval", "--gallery", str(photo_set["gallery"]), "--queries", str(photo_set["queries"]),
         "--model", str(tiny_checkpoint), "--json", "--report", str(out)],
    )
    assert result.exit_code == 0, result.output
    figures = json.loads(result.stdout)
    assert set(figures) == {"overall", "per_category"}
    assert {"top1", "top5", "top10", "top20", "map", "wrong_colour_top1"} <= set(figures["overall"])
    assert set(figures["per_category"]) == {"shoes", "tops"}
    assert figures["overall"]["n_queries"] == 8
    # Four items: the correct one is always within the top 4.
    assert figures["overall"]["top5"] == 1.0
    html = out.read_text()
    assert html.count("<img ") >= 8 and "http://" not in html.replace("http://www.w3.org", "")


def test_eval_command_reports_bad_data_as_an_error(photo_set, tiny_checkpoint, tmp_path):
    result = CliRunner().invoke(
        _app(eval_command, "eval"),
        ["eval", "--gallery", str(tmp_path / "none.csv"), "--queries", str(photo_set["queries"]), "--model", str(tiny_checkpoint)],
    )
    assert result.exit_code == 2
    assert "CSV not found" in result.output


def test_index_catalog_publishes_what_the_index_stage_publishes(photo_set, tiny_checkpoint, tmp_path):
    store = ArtifactStore(tmp_path / "home")
    result = index_catalog(store, photo_set["gallery"], model=tiny_checkpoint)
    ref = result["index_ids"]
    manifest = store.manifest(ref)
    assert ref.stage == "index" and INDEX_FILE in manifest.files
    inputs = {r.name: r for r in manifest.inputs}
    assert set(inputs) == {"embeddings", "images", "checkpoint"}
    assert store.file(inputs["checkpoint"], "model.pt").read_bytes() == tiny_checkpoint.read_bytes()
    ids = store.read_table(ref)
    index = load_index(store.file(ref, INDEX_FILE))
    assert index.ntotal == ids.num_rows == 8
    assert manifest.metrics["factory"] and manifest.metrics["vectors"] == 8
    # Items come from the catalogue, photos live in the store's blobs (the CSV folder may go).
    images = store.read_table(inputs["images"])
    assert sorted(set(images.column("item_id").to_pylist())) == ["p1:blue", "p1:red", "p2:blue", "p2:red"]
    assert all((store.home / p).is_file() for p in images.column("path").to_pylist())
    items = store.read_table(inputs["images"].model_copy(update={"name": "items"}))
    assert dict(zip(items.column("item_id").to_pylist(), items.column("category").to_pylist()))["p2:red"] == "shoes"
    # Same catalogue and model again: every step is found published.
    again = index_catalog(store, photo_set["gallery"], model=tiny_checkpoint)
    assert again.skipped and again.version == result.version


@pytest.mark.slow  # a local cluster of 2 worker processes, each importing torch and Prefect
@pytest.mark.usefixtures("prefect_harness")
def test_index_command_can_embed_on_a_local_dask_cluster(photo_set, tiny_checkpoint, tmp_path):
    args = ["index", "--catalog", str(photo_set["gallery"]), "--model", str(tiny_checkpoint)]
    result = CliRunner().invoke(_app(index_command, "index"), [*args, "--home", str(tmp_path / "dask"), "--dask-workers", "2"])
    assert result.exit_code == 0, result.output
    fanned, alone = ArtifactStore(tmp_path / "dask"), ArtifactStore(tmp_path / "alone")
    index_catalog(alone, photo_set["gallery"], model=tiny_checkpoint)
    assert fanned.manifests("embed_chunk"), "the vectors did not come from the Dask flow"
    ref = fanned.latest("catalog_embed", "embeddings")
    assert ref == alone.latest("catalog_embed", "embeddings")  # same version wherever it was computed
    a, b = fanned.read_table(ref), alone.read_table(ref)
    assert a.column("image_id").to_pylist() == b.column("image_id").to_pylist()
    np.testing.assert_allclose(np.stack(a.column("vector").to_numpy(zero_copy_only=False)),
                               np.stack(b.column("vector").to_numpy(zero_copy_only=False)), atol=1e-5)


def test_index_command_without_a_published_model_says_so(photo_set, tmp_path):
    result = CliRunner().invoke(_app(index_command, "index"), ["index", "--catalog", str(photo_set["gallery"]), "--home", str(tmp_path / "h")])
    assert result.exit_code == 2
    assert "no published version of train/checkpoint" in result.output


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
