"""A catalogue CSV to a served index, without crawling: import, embed, build the index.

``street2shop index --catalog G.csv`` calls :func:`index_catalog`; with Dask options the
embedding fans out over a cluster (:mod:`street2shop.flows.fanout`).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path

from street2shop.retrieval.index import IndexParams
from street2shop.sources.labelled import read_labelled_csv
from street2shop.storage import names as N
from street2shop.storage.store import ArtifactStore
from street2shop.tasks.catalog import embed_catalog, import_catalog, resolve_checkpoint
from street2shop.tasks.index import run_build_index
from street2shop.tasks.stage import StageResult


@dataclass(frozen=True)
class DaskOptions:
    """Where catalogue embedding fans out: an existing cluster, or a local one of ``workers``."""

    address: str | None = None
    workers: int = 2


def index_catalog(
    store: ArtifactStore,
    catalog_csv: str | Path,
    model: Path | None = None,
    factory: str = "auto",
    dask: DaskOptions | None = None,
    batch_size: int = 32,
) -> StageResult:
    """Import a catalogue CSV, embed it and publish its index through the index stage."""
    catalog = read_labelled_csv(catalog_csv)
    checkpoint = resolve_checkpoint(store, model)
    imported = import_catalog(store, catalog)
    embed = None
    if dask is not None:
        from street2shop.flows.fanout import embed_on_dask  # prefect-dask: an optional extra

        embed = partial(embed_on_dask, address=dask.address, n_workers=dask.workers, batch_size=batch_size)
    embeddings = embed_catalog(store, imported[N.IMAGES], checkpoint, batch_size=batch_size, embed=embed)
    return run_build_index(store, embeddings[N.EMBEDDINGS], imported[N.IMAGES], checkpoint, IndexParams(factory=factory))
