"""A product feed instead of a crawl: import a catalogue CSV, embed it, index it.

``street2shop index --catalog G.csv`` imports the catalogue's photos into the blob store and
publishes the crawl's ``items`` and ``images`` schemas under stage ``catalog`` (versioned by
content), embeds them with a checkpoint (on this machine, or fanned out over Dask), and
publishes the index through the index stage's own function, with the checkpoint among its
inputs, so the search service serves it like any other index (the three steps together:
:func:`street2shop.flows.catalog.index_catalog`).
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from street2shop.sources.labelled import DataError, LabelledPhotos, item_attributes
from street2shop.storage import names as N
from street2shop.storage.promotions import served_checkpoint
from street2shop.storage.schemas import IMAGES, ITEMS, vectors_table
from street2shop.storage.store import ArtifactRef, ArtifactStore, content_version
from street2shop.tasks.stage import StageResult, run_stage

if TYPE_CHECKING:  # torch loads when a model is used, not on import
    from street2shop.models.embedder import Embedder


def resolve_checkpoint(store: ArtifactStore, model: Path | None) -> ArtifactRef:
    """The store's checkpoint to use: ``model`` imported into the store, or the one the store
    serves (:func:`~street2shop.storage.promotions.served_checkpoint`).

    Importing keeps one rule for what an index records: its checkpoint is an artifact ref,
    whatever file it came from. The version is the file's hash, so importing twice is a no-op.
    """
    if model is None:
        return served_checkpoint(store)
    from street2shop.models.embedder import load_embedder

    load_embedder(model)  # fail now, with the loader's message, on a file that is no checkpoint
    digest = hashlib.sha256(Path(model).read_bytes()).hexdigest()[:16]

    def compute(writers) -> None:
        shutil.copyfile(model, writers[N.CHECKPOINT].path(N.CHECKPOINT_FILE))
        writers[N.CHECKPOINT].metrics["source"] = str(Path(model).resolve())

    return run_stage(store, N.IMPORT, "1", (N.CHECKPOINT,), compute, version=digest)[N.CHECKPOINT]


def load_checkpoint(store: ArtifactStore, ref: ArtifactRef) -> Embedder:
    from street2shop.models.embedder import load_embedder

    return load_embedder(store.file(ref, N.CHECKPOINT_FILE))


def import_catalog(store: ArtifactStore, catalog: LabelledPhotos) -> StageResult:
    """Copy the catalogue's photos into the blob store and publish ``items`` and ``images``
    (the crawl's schemas) under stage ``catalog``, versioned by content."""
    blobs = store.blobs
    attributes = item_attributes(catalog)
    images, seen = [], {}
    for row in catalog.table.to_pylist():
        source = Path(row["path"])
        sha, rel = blobs.put(source.read_bytes(), source.suffix.lstrip(".").lower() or "jpg")
        key = (sha, row["item_id"])
        if key in seen:
            raise DataError(f"{catalog.csv}: line {row['line']} is the same photo of item {row['item_id']} as line {seen[key]}")
        seen[key] = row["line"]
        images.append(
            {"image_id": sha, "item_id": row["item_id"], "role": "shop", "path": rel, "width": row["width"],
             "height": row["height"], "source_url": source.as_uri(), "review_id": None}
        )  # fmt: skip
    items = [
        {"item_id": item, "product_id": a.get("product_id", item), "seller_id": catalog.csv.stem,
         "category": a.get("category", "unknown"), "colour": a.get("colour", "unknown"), "title": None, "url": None}
        for item, a in attributes.items()
    ]  # fmt: skip
    tables = {N.ITEMS: pa.Table.from_pylist(items, ITEMS), N.IMAGES: pa.Table.from_pylist(images, IMAGES)}

    def compute(writers) -> None:
        for name, table in tables.items():
            writers[name].write_table(table)
        writers[N.ITEMS].metrics["source"] = str(catalog.csv.resolve())

    return run_stage(store, N.CATALOG, "1", tuple(tables), compute, version=content_version(tables))


#: ``(store, checkpoint, blob paths) -> (n, dim)`` vectors: how a catalogue is embedded
#: somewhere else than in this process (e.g. :func:`street2shop.flows.fanout.embed_on_dask`).
EmbedFn = Callable[[ArtifactStore, ArtifactRef, list[str]], np.ndarray]


def embed_catalog(
    store: ArtifactStore, images: ArtifactRef, checkpoint: ArtifactRef, batch_size: int = 32, embed: EmbedFn | None = None
) -> StageResult:
    """Publish one vector per catalogue photo (the ``embeddings`` the index stage reads).

    ``embed`` computes the vectors elsewhere (chunks on a Dask cluster, by the same
    ``embed_images``); by default they are computed here. The version does not depend on
    where the vectors were computed.
    """

    def compute(writers) -> None:
        table = store.read_table(images, columns=["image_id", "path"])
        ids, first = np.unique(np.asarray(table.column("image_id").to_pylist(), dtype=object), return_index=True)
        blob_paths = [table.column("path")[int(i)].as_py() for i in first]
        if embed is not None:
            # blob paths, not local ones: every worker fetches the photos from the store itself
            vectors = embed(store, checkpoint, blob_paths)
        else:
            from street2shop.models.embed import embed_images

            paths = [str(p) for p in store.blobs.resolve_many(blob_paths)]
            vectors = embed_images(load_checkpoint(store, checkpoint), paths, batch_size=batch_size, num_workers=0)
        out = vectors_table(ids.tolist(), vectors)
        writers[N.EMBEDDINGS].write_table(out, out.schema)
        writers[N.EMBEDDINGS].metrics.update({"dim": int(vectors.shape[1]), "vectors": out.num_rows})

    inputs = {"images": images, "checkpoint": checkpoint}
    return run_stage(store, N.CATALOG_EMBED, "1", (N.EMBEDDINGS,), compute, inputs=inputs, params={"batch_size": batch_size})
