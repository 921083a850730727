"""Embedding one chunk of a large catalogue: the task the Dask fan-out runs per chunk.

Each chunk is published as a small ``embed_chunk/chunk_vectors`` artifact, so what travels
between the tasks and the flow (:mod:`street2shop.flows.fanout`) is an :class:`ArtifactRef`,
never an array, and a re-run (after a worker died, or with more photos appended to the
catalogue) re-embeds only the chunks not published yet. Every chunk is embedded by
:func:`~street2shop.models.embed.embed_images` with the model loaded from the store's
checkpoint, exactly as on one machine.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from functools import lru_cache

import numpy as np
import pyarrow as pa
from prefect import task
from prefect.cache_policies import NO_CACHE

from street2shop.storage.names import CHECKPOINT_FILE, EMBED_CHUNK
from street2shop.storage.schemas import vectors_matrix
from street2shop.storage.store import ArtifactRef, ArtifactStore
from street2shop.tasks.stage import LOADER_WORKERS, StageResult, run_stage

STAGE = EMBED_CHUNK
OUTPUT = "chunk_vectors"
CODE_VERSION = "1"


def chunk_schema(dim: int) -> pa.Schema:
    """One row per photo of a chunk: its position in the whole list, its path, its vector."""
    return pa.schema(
        [
            pa.field("position", pa.int64(), nullable=False),
            pa.field("path", pa.string(), nullable=False),
            pa.field("vector", pa.list_(pa.float32(), dim), nullable=False),
        ]
    )


def chunks(n: int, chunk_size: int) -> list[tuple[int, int]]:
    """``[start, stop)`` bounds cutting ``n`` items into chunks of at most ``chunk_size``."""
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be at least 1, got {chunk_size}")
    return [(start, min(start + chunk_size, n)) for start in range(0, n, chunk_size)]


def _digest(paths: Sequence[str]) -> str:
    return hashlib.sha256("\n".join(paths).encode()).hexdigest()[:16]


@lru_cache(maxsize=2)
def _model(checkpoint_path: str):
    """The embedder of a checkpoint, loaded once per worker process (chunks reuse it)."""
    from street2shop.models.embedder import load_embedder

    return load_embedder(checkpoint_path)


def _local_paths(store: ArtifactStore, paths: Sequence[str]) -> list[str]:
    """Absolute paths as they are; blob paths of the store resolved (and fetched) locally."""
    relative = [p for p in paths if not os.path.isabs(p)]
    resolved = dict(zip(relative, store.blobs.resolve_many(relative)))
    return [p if os.path.isabs(p) else str(resolved[p]) for p in paths]


def embed_chunk_core(
    store: ArtifactStore, checkpoint: ArtifactRef, paths: Sequence[str], start: int, batch_size: int = 32
) -> StageResult:
    """Embed ``paths`` (positions ``start...`` of the whole list) and publish their vectors."""
    from street2shop.models.embed import embed_images

    paths = list(paths)

    def compute(writers) -> None:
        model = _model(str(store.file(checkpoint, CHECKPOINT_FILE)))
        vectors = embed_images(model, _local_paths(store, paths), batch_size=batch_size, num_workers=LOADER_WORKERS)
        dim = vectors.shape[1]
        table = pa.table(
            {
                "position": pa.array(range(start, start + len(paths)), pa.int64()),
                "path": pa.array(paths, pa.string()),
                "vector": pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1), pa.float32()), dim),
            }
        )
        writers[OUTPUT].write_table(table, chunk_schema(dim))
        writers[OUTPUT].metrics.update({"vectors": len(paths), "dim": dim})

    params = {"paths_sha256": _digest(paths), "start": start, "n": len(paths), "batch_size": batch_size}
    return run_stage(store, STAGE, CODE_VERSION, (OUTPUT,), compute, inputs={"checkpoint": checkpoint}, params=params)


@task(name="embed-chunk", cache_policy=NO_CACHE, retries=1)
def embed_chunk(home: str, checkpoint: ArtifactRef, paths: list[str], start: int, batch_size: int = 32) -> ArtifactRef:
    return embed_chunk_core(ArtifactStore(home), checkpoint, paths, start, batch_size).refs[OUTPUT]


def combine_chunks(store: ArtifactStore, refs: Sequence[ArtifactRef], n: int) -> np.ndarray:
    """The ``(n, dim)`` matrix of the chunks' vectors, checked to cover positions 0..n-1 once."""
    if not refs:
        return np.empty((0, 0), dtype=np.float32)
    tables = [store.read_table(r) for r in refs]
    dim = tables[0].schema.field("vector").type.list_size
    out = np.empty((n, dim), dtype=np.float32)
    seen = np.zeros(n, dtype=bool)
    for table in tables:
        positions = np.asarray(table.column("position").to_numpy(), dtype=np.int64)
        if positions.size and (positions.min() < 0 or positions.max() >= n or seen[positions].any()):
            raise ValueError(f"chunk positions {positions.min()}..{positions.max()} overlap or fall outside 0..{n - 1}")
        out[positions] = vectors_matrix(table)
        seen[positions] = True
    if not seen.all():
        raise ValueError(f"{int((~seen).sum())} of {n} positions have no vector")
    return out
