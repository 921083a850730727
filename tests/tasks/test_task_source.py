"""The source stage (street2shop.tasks.source): a labelled dataset published as the crawl's
tables, and the whole pipeline run from it."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from labelled_testing import write_csv
from street2shop.sources.labelled import DataError
from street2shop.storage.store import ArtifactStore
from street2shop.tasks.source import SourceParams, run_source


def dataset_from_shop(shop_dir: Path, out: Path) -> Path:
    """A labelled dataset made of a generated shop's own photos and truth (noise photos left out)."""
    with open(shop_dir / "truth" / "items.csv", newline="") as fh:
        items = {r["item_id"]: r for r in csv.DictReader(fh)}
    with open(shop_dir / "truth" / "images.csv", newline="") as fh:
        photos = [r for r in csv.DictReader(fh) if r["kind"] in ("shop", "street")]
    rows = [
        {"path": str((shop_dir / "images" / r["file"]).resolve()), "item_id": r["item_id"], "role": r["kind"],
         "product_id": items[r["item_id"]]["product_id"], "category": items[r["item_id"]]["category"],
         "colour": items[r["item_id"]]["colour"]}
        for r in photos
    ]  # fmt: skip
    return write_csv(out, rows)


def test_a_labelled_csv_is_published_as_items_and_images(photo_set, tmp_path) -> None:
    rows = [dict(r, role="shop") for r in csv.DictReader(open(photo_set["gallery"]))]
    attributes = {r["item_id"]: {k: r[k] for k in ("product_id", "category", "colour")} for r in rows}
    rows += [dict(r, role="street", **attributes[r["item_id"]]) for r in csv.DictReader(open(photo_set["queries"]))]
    dataset = write_csv(photo_set["gallery"].parent / "dataset.csv", rows)
    store = ArtifactStore(tmp_path / "home")
    result = run_source(store, SourceParams(path=str(dataset)))
    items, images = store.read_table(result["items"]), store.read_table(result["images"])
    assert items.num_rows == 4 and images.num_rows == 16
    assert sorted(set(images.column("role").to_pylist())) == ["shop", "street"]
    assert all((store.home / p).is_file() for p in images.column("path").to_pylist())  # copied into the blobs
    assert dict(zip(items.column("item_id").to_pylist(), items.column("category").to_pylist()))["p2:red"] == "shoes"
    assert run_source(store, SourceParams(path=str(dataset))).skipped  # same content, same version


def test_bad_roles_and_missing_columns_are_named(photo_set, tmp_path) -> None:
    rows = [dict(r, role="catalogue") for r in csv.DictReader(open(photo_set["gallery"]))]
    bad = write_csv(photo_set["gallery"].parent / "bad.csv", rows)
    with pytest.raises(DataError, match="role other than shop or street: line 2: 'catalogue'"):
        run_source(ArtifactStore(tmp_path / "h"), SourceParams(path=str(bad)))
    with pytest.raises(DataError, match=r"missing column\(s\) \['role'\]"):
        run_source(ArtifactStore(tmp_path / "h"), SourceParams(path=str(photo_set["gallery"])))


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_harness")
def test_the_pipeline_runs_from_a_dataset_instead_of_a_crawl(tmp_path) -> None:
    from street2shop.flows.config import PipelineConfig
    from street2shop.flows.demo import TINY, demo_config, ensure_shop
    from street2shop.flows.pipeline import pipeline

    shop = ensure_shop(tmp_path / "shop", TINY)
    dataset = dataset_from_shop(shop, tmp_path / "dataset.csv")
    crawl_cfg = demo_config(shop, "http://127.0.0.1:1", TINY, progress=False)
    cfg = PipelineConfig(**{**crawl_cfg.model_dump(), "crawl": None, "source": {"path": str(dataset)}, "labels_path": None})
    first = pipeline(str(tmp_path / "home"), cfg)
    assert first.ran == ["source", "noise", "dedup", "views", "train[0]", "mine[1]", "train[1]", "localise", "evaluate", "index"]
    assert first.stage("noise")["metrics"]["rejected"] == 0  # no labels: every street photo kept
    assert 0.0 <= first.stage("evaluate")["metrics"]["trained_top20"] <= 1.0
    assert pipeline(str(tmp_path / "home"), cfg).ran == []
    with pytest.raises(ValueError, match="exactly one of crawl"):
        PipelineConfig(**{**cfg.model_dump(), "crawl": crawl_cfg.crawl.model_dump()})
