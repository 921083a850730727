"""Checks and normalisation shared by every function that takes embedding vectors.

All retrieval in street2shop is cosine similarity computed as an inner product of
L2-normalised float32 vectors (what ``faiss.IndexFlatIP`` expects). Putting the check in one
place means a NaN, a zero vector or a wrong width fails with the same clear message whether it
reaches the evaluation, the index or the query-expansion code.
"""

from __future__ import annotations

import numpy as np


def as_matrix(x: np.ndarray, name: str, dim: int | None = None) -> np.ndarray:
    """Return ``x`` as a C-contiguous float32 ``(n, d)`` matrix, or raise ``ValueError``."""
    arr = np.asarray(x)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a 2-D (n, dim) array, got shape {arr.shape}")
    if arr.shape[0] == 0:
        raise ValueError(f"{name} is empty")
    if dim is not None and arr.shape[1] != dim:
        raise ValueError(f"{name} has dimension {arr.shape[1]}, expected {dim}")
    # faiss only takes C-contiguous float32; converting once here avoids silent copies later.
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    if not np.isfinite(arr).all():
        bad = int((~np.isfinite(arr).all(axis=1)).sum())
        raise ValueError(f"{name} has {bad} row(s) with NaN or infinite values")
    return arr


def l2_normalize(x: np.ndarray, name: str = "vectors", dim: int | None = None) -> np.ndarray:
    """Validated copy of ``x`` with unit-norm rows (float32).

    A zero row has no direction, so it cannot be ranked by cosine similarity: it is an
    error (usually an embedder fed a blank image), not something to divide by epsilon.
    """
    arr = as_matrix(x, name, dim)
    norms = np.linalg.norm(arr, axis=1, keepdims=True)
    zero = np.flatnonzero(norms[:, 0] == 0)
    if zero.size:
        raise ValueError(f"{name} has {zero.size} zero vector(s), e.g. row {int(zero[0])}")
    return (arr / norms).astype(np.float32, copy=False)
