"""Embedding a large catalogue on many workers: a Prefect flow that fans out over Dask.

The list of photos is cut into chunks, an ``embed-chunk`` task per chunk
(:mod:`street2shop.tasks.embed_chunks`) runs on the Dask cluster (an existing one by
address, or a local one with ``n_workers`` processes), and the vectors are stitched back
together in input order. Across machines, ``home`` must be a store every worker reaches
(an ``s3://`` URL, or a shared folder), and the photos either blob paths of that store
(``blobs/ab/cd/<sha>.jpg``, fetched by each worker) or absolute paths on a shared file system.

Dask's nanny starts workers with ``OMP_NUM_THREADS=1``, so each worker process runs one
torch thread: start one worker process per core.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from prefect import flow

from street2shop.storage.store import ArtifactRef, ArtifactStore
from street2shop.tasks.embed_chunks import chunks, combine_chunks, embed_chunk


@flow(name="embed-catalog", log_prints=True)
def embed_catalog_flow(
    home: str, checkpoint: ArtifactRef, paths: list[str], chunk_size: int = 512, batch_size: int = 32
) -> list[ArtifactRef]:
    """One ``embed-chunk`` task per chunk on the flow's task runner; the chunks' refs, in order."""
    futures = [
        embed_chunk.submit(home, checkpoint, paths[start:stop], start, batch_size) for start, stop in chunks(len(paths), chunk_size)
    ]
    return [f.result() for f in futures]


def dask_task_runner(address: str | None = None, n_workers: int = 2, processes: bool = True, **cluster_kwargs: Any):
    """Prefect's Dask task runner: on the cluster at ``address``, else a local cluster
    of ``n_workers`` single-threaded workers (processes, unless ``processes=False``)."""
    try:
        from prefect_dask import DaskTaskRunner
    except ImportError as exc:  # an optional extra
        raise ImportError("fanning out over Dask needs prefect-dask: pip install 'street2shop[dask]'") from exc
    if address is not None:
        return DaskTaskRunner(address=address)
    if n_workers < 1:
        raise ValueError(f"n_workers must be at least 1, got {n_workers}")
    kwargs = {"n_workers": n_workers, "threads_per_worker": 1, "processes": processes, "dashboard_address": None, **cluster_kwargs}
    return DaskTaskRunner(cluster_kwargs=kwargs)


def embed_on_dask(
    store: ArtifactStore,
    checkpoint: ArtifactRef,
    paths: Sequence[str],
    *,
    address: str | None = None,
    n_workers: int = 2,
    processes: bool = True,
    chunk_size: int = 512,
    batch_size: int = 32,
) -> np.ndarray:
    """Embeddings ``(len(paths), dim)`` of ``paths``, in order, computed on a Dask cluster.

    The same vectors as ``embed_images(load_embedder(checkpoint), paths)`` on one machine.
    """
    paths = [str(p) for p in paths]
    if not paths:
        raise ValueError("no photos to embed")
    if not store.exists(checkpoint):
        raise ValueError(f"checkpoint {checkpoint} is not published in {store.location}")
    runner = dask_task_runner(address, n_workers, processes)
    refs = embed_catalog_flow.with_options(task_runner=runner)(store.location, checkpoint, paths, chunk_size, batch_size)
    return combine_chunks(store, refs, len(paths))
