"""Source stage task: a labelled dataset instead of a crawl.

A user who has DeepFashion Consumer-to-shop, Street2Shop or their own product feed plus
review photos runs the whole loop on it: the dataset's photos are copied into the blob store
and published as the crawl's ``items`` and ``images`` tables (stage ``source``), versioned by
their content, so every later stage runs exactly as after a crawl.

Formats (``SourceParams.format``):

* ``labelled``: a CSV or Parquet file of ``path, item_id, role`` (``shop`` | ``street``) and
  optional ``product_id, category, colour`` (paths relative to the file), validated as
  ``street2shop eval`` validates its CSVs;
* ``deepfashion``: the Consumer-to-shop benchmark's folder (:mod:`street2shop.sources.deepfashion`).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Literal

import pyarrow as pa
from prefect import task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel

from street2shop.sources.deepfashion import read_consumer_to_shop, write_dataset_csv
from street2shop.sources.labelled import DataError, LabelledPhotos, item_attributes, read_labelled_csv
from street2shop.storage.names import IMAGES, ITEMS, SOURCE
from street2shop.storage.schemas import IMAGES as IMAGES_SCHEMA
from street2shop.storage.schemas import ITEMS as ITEMS_SCHEMA
from street2shop.storage.store import ArtifactStore, content_version
from street2shop.tasks.stage import StageResult, report_to_prefect, run_stage

STAGE = SOURCE
CODE_VERSION = "1"
OUTPUTS = (ITEMS, IMAGES)
ROLES = ("shop", "street")


class SourceParams(BaseModel):
    """Where the photos come from when the pipeline does not crawl."""

    path: str
    format: Literal["labelled", "deepfashion"] = "labelled"
    #: DeepFashion's own splits to read (the pipeline still splits by product group itself)
    deepfashion_splits: list[str] = ["train", "val", "test"]
    #: the ``seller_id`` of every item
    seller_id: str = "dataset"


def read_source(params: SourceParams) -> LabelledPhotos:
    """The dataset's photos, validated (every bad row named)."""
    if params.format == "deepfashion":
        with tempfile.TemporaryDirectory() as tmp:
            csv_path = write_dataset_csv(read_consumer_to_shop(params.path, tuple(params.deepfashion_splits)), Path(tmp) / "photos.csv")
            return read_labelled_csv(csv_path, required=("role",))
    photos = read_labelled_csv(params.path, required=("role",))
    roles = photos.table.column("role").to_pylist()
    bad = [f"line {line}: {role!r}" for line, role in zip(photos.table.column("line").to_pylist(), roles) if role not in ROLES]
    if bad:
        raise DataError(f"{params.path}: {len(bad)} row(s) with a role other than {' or '.join(ROLES)}: {'; '.join(bad[:10])}")
    return photos


def source_tables(store: ArtifactStore, photos: LabelledPhotos, seller_id: str) -> dict[str, pa.Table]:
    """Copy the photos into the blob store; the crawl's ``items`` and ``images`` tables of them."""
    attributes = item_attributes(photos)
    images, seen = [], set()
    for row in photos.table.to_pylist():
        source = Path(row["path"])
        sha, rel = store.blobs.put(source.read_bytes(), source.suffix.lstrip(".").lower() or "jpg")
        if (sha, row["item_id"], row["role"]) in seen:
            continue  # the same photo listed twice for one item and role
        seen.add((sha, row["item_id"], row["role"]))
        images.append(
            {"image_id": sha, "item_id": row["item_id"], "role": row["role"], "path": rel, "width": row["width"],
             "height": row["height"], "source_url": source.as_uri(), "review_id": f"dataset-{sha[:12]}" if row["role"] == "street" else None}
        )  # fmt: skip
    items = [
        {"item_id": item, "product_id": a.get("product_id", item), "seller_id": seller_id,
         "category": a.get("category", "unknown"), "colour": a.get("colour", "unknown"), "title": None, "url": None}
        for item, a in attributes.items()
    ]  # fmt: skip
    without_shop = sorted({r["item_id"] for r in images} - {r["item_id"] for r in images if r["role"] == "shop"})
    if len(without_shop) == len(items):
        raise DataError(f"{photos.csv}: no item has a shop photo: nothing to search for")
    return {ITEMS: pa.Table.from_pylist(items, ITEMS_SCHEMA), IMAGES: pa.Table.from_pylist(images, IMAGES_SCHEMA)}


def run_source(store: ArtifactStore, params: SourceParams) -> StageResult:
    tables = source_tables(store, read_source(params), params.seller_id)

    def compute(writers) -> None:
        for name, table in tables.items():
            writers[name].write_table(table)
        images = tables[IMAGES]
        writers[ITEMS].metrics.update(
            {
                "items": tables[ITEMS].num_rows,
                "images": images.num_rows,
                "shop_photos": sum(r == "shop" for r in images.column("role").to_pylist()),
                "street_photos": sum(r == "street" for r in images.column("role").to_pylist()),
                "source": str(Path(params.path).resolve()),
            }
        )

    return run_stage(store, STAGE, CODE_VERSION, OUTPUTS, compute, params=params, version=content_version(tables, extra={"code": CODE_VERSION}))


@task(name="source", cache_policy=NO_CACHE)
def source_task(home: str, params: SourceParams) -> StageResult:
    result = run_source(ArtifactStore(home), params)
    report_to_prefect(result, "source")
    return result
