"""FAISS indexes for the gallery, chosen by factory string, and their check against exact search.

An index is described by a faiss factory string (``"Flat"``, ``"HNSW32"``, ``"IVF1024,Flat"``,
``"IVF1024,PQ32"``...) or ``"auto"``, which picks by size: exact ``Flat`` while brute force is
cheap, an inverted file above. :func:`resolve_factory` turns ``auto`` into the concrete string
that the index stage records in its manifest, next to :func:`recall_at_k_vs_exact`, the
fraction of the exact top-k neighbours the index finds.

How many inverted lists an IVF query visits (``nprobe``) decides both its speed and its
recall, and the right value depends on how clustered the vectors are, not on the list count
alone. So unless it is given, :func:`build_index` measures it (:func:`calibrate_nprobe`): the
fewest lists that reach :data:`DEFAULT_TARGET_RECALL` on a sample of the gallery.

Every index uses the inner-product metric on L2-normalised vectors (cosine similarity), the
same scoring as :mod:`street2shop.retrieval.evaluation`.
"""

from __future__ import annotations

import math
from pathlib import Path

import faiss
import numpy as np
from pydantic import BaseModel

from street2shop.retrieval.vectors import l2_normalize

#: ``auto`` uses exact search below this many vectors: brute force over 50k x 512 floats is
#: ~25 ms a query on two cores, and an exact index needs no training or recall check.
AUTO_FLAT_MAX = 50_000

#: k-means quality stops improving much beyond ~64-256 points per centroid (faiss warns under
#: 39); training on a capped sample keeps IVF training time independent of the gallery size.
TRAIN_POINTS_PER_CENTROID = 128

#: ``efSearch`` set on HNSW indexes (faiss's default of 16 is tuned for speed, not recall@20).
DEFAULT_EF_SEARCH = 256

#: recall@20 against exact search that :func:`calibrate_nprobe` aims for by default (the
#: issue's bar for an approximate index).
DEFAULT_TARGET_RECALL = 0.95

#: Gallery rows used as queries by :func:`calibrate_nprobe`: enough for recall to +-0.01
#: (256 x 20 neighbour slots), cheap next to training (an exact search of 256 queries).
CALIBRATION_QUERIES = 256


class IndexParams(BaseModel):
    """The index stage's knobs: a faiss factory string (or ``auto``), the recall@k against
    exact search recorded in the manifest, and the seed of IVF training."""

    factory: str = "auto"
    recall_k: int = 20
    seed: int = 0


def resolve_factory(n: int, dim: int, factory: str = "auto") -> str:
    """The concrete factory string for ``n`` vectors of width ``dim``.

    ``auto`` -> ``"Flat"`` below :data:`AUTO_FLAT_MAX` vectors, else ``"IVF{nlist},Flat"`` with
    ``nlist`` the power of two nearest ``sqrt(n)`` (1024 at 1M). ``sqrt(n)`` lists balance the
    two costs of a query (scoring ``nlist`` centroids, scanning ``nprobe`` lists of ``n/nlist``
    rows) and keep k-means training linear in ``n`` (its cost grows with lists x training
    sample, both proportional to ``nlist``): faiss's rule of thumb of ``4-16 sqrt(n)`` lists
    is 16-256x the training work, many minutes at 1M on two cores, while ``nprobe`` is
    calibrated to the recall target either way. Flat lists keep full-precision scores; PQ
    compression is for galleries that do not fit in memory (pass e.g. ``"IVF1024,PQ32"``).
    Other strings pass through after a check that faiss can build them for ``dim``.
    """
    if n < 1 or dim < 1:
        raise ValueError(f"need at least one vector of positive width, got n={n}, dim={dim}")
    if factory == "auto":
        if n < AUTO_FLAT_MAX:
            return "Flat"
        return f"IVF{2 ** round(math.log2(math.sqrt(n)))},Flat"
    try:
        faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)
    except RuntimeError as exc:  # faiss reports a bad string as a C++ exception message
        raise ValueError(f"faiss cannot build factory {factory!r} for dim {dim}: {exc}") from exc
    return factory


def default_nprobe(nlist: int) -> int:
    """Uncalibrated fallback for lists visited per query: 1/8 of the lists, at least 16.

    Used by :func:`set_search_params` when no value is given; :func:`build_index` calibrates
    instead (:func:`calibrate_nprobe`). Measured on 20k clustered synthetic vectors (dim 64,
    IVF566): nlist/16 gave recall@20 0.85 on weakly clustered data, nlist/8 gave 0.94.
    """
    return int(min(nlist, max(16, nlist // 8)))


#: :func:`calibrate_nprobe` stops doubling when recall grows by less than this.
PLATEAU_GAIN = 0.002


def calibrate_nprobe(
    index: faiss.Index,
    vectors: np.ndarray,
    *,
    k: int = 20,
    target_recall: float = DEFAULT_TARGET_RECALL,
    n_queries: int = CALIBRATION_QUERIES,
    seed: int = 0,
) -> tuple[int, float]:
    """The fewest lists per query (1, 2, 4, ... up to ``nlist``) whose recall@``k`` against
    exact search reaches ``target_recall``, as ``(nprobe, recall)``; sets it on ``index``.
    Stops early where doubling gains less than :data:`PLATEAU_GAIN` (a compressed index
    whose codes cannot reach the target).

    Queries are ``n_queries`` seeded rows of ``vectors`` (the rows the index holds, in
    order); each query's own row is left out of both the exact and the approximate answer,
    so it measures finding *other* photos, as a search does. Real queries (street photos)
    lie farther from the gallery than its own rows, so the index stage still measures recall
    on its test queries and records it.
    """
    ivf = _ivf_of(index)
    if ivf is None:
        raise ValueError(f"nprobe calibration needs an IVF index, got {type(index).__name__}")
    if not 0 < target_recall <= 1:
        raise ValueError(f"target_recall must be in (0, 1], got {target_recall}")
    x = l2_normalize(vectors, "vectors", dim=index.d)
    n = len(x)
    if n != index.ntotal:
        raise ValueError(f"index holds {index.ntotal} vectors but {n} were given")
    if n < 2:
        set_search_params(index, nprobe=ivf.nlist)
        return ivf.nlist, 1.0
    rows = np.sort(np.random.default_rng(seed).choice(n, min(n_queries, n), replace=False))
    queries = x[rows]
    depth = min(k, n - 1) + 1  # one extra: the query's own row, dropped below
    _, truth = faiss.knn(queries, x, depth, faiss.METRIC_INNER_PRODUCT)
    truth = _without_own_row(truth, rows, depth - 1)
    best: tuple[int, float] | None = None
    nprobe = 1
    while True:
        set_search_params(index, nprobe=nprobe)
        _, found = index.search(queries, depth)
        recall = recall_at_k(_without_own_row(found, rows, depth - 1), truth)
        if best is not None and recall < best[1] + PLATEAU_GAIN:
            # Compressed codes (PQ) cap recall below the target: visiting more lists then
            # only costs time, so keep the smaller setting.
            set_search_params(index, nprobe=best[0])
            return best
        if recall >= target_recall or nprobe >= ivf.nlist:
            return nprobe, recall
        best, nprobe = (nprobe, recall), min(ivf.nlist, 2 * nprobe)


def _without_own_row(ids: np.ndarray, rows: np.ndarray, k: int) -> np.ndarray:
    """Each row of ``ids`` without the query's own id, cut (or ``-1``-padded) to ``k``."""
    out = np.full((len(ids), k), -1, dtype=ids.dtype)
    for i, (found, own) in enumerate(zip(ids, rows)):
        kept = found[found != own][:k]
        out[i, : len(kept)] = kept
    return out


def build_index(
    vectors: np.ndarray,
    factory: str = "auto",
    *,
    seed: int = 0,
    train_sample: int | None = None,
    nprobe: int | None = None,
    ef_search: int | None = None,
) -> faiss.Index:
    """Build an inner-product index over ``vectors`` (normalised here), rows in input order.

    Args:
        vectors: ``(n, d)`` gallery embeddings; index row ``i`` is ``vectors[i]``.
        factory: faiss factory string or ``"auto"`` (see :func:`resolve_factory`).
        seed: seeds the training sample and faiss's k-means, so a rebuild is identical.
        train_sample: vectors used to train IVF / PQ; default
            ``TRAIN_POINTS_PER_CENTROID`` per list (all vectors if fewer).
        nprobe: lists visited per query for IVF indexes; default: calibrated to
            :data:`DEFAULT_TARGET_RECALL` by :func:`calibrate_nprobe`.
        ef_search: HNSW search depth; default :data:`DEFAULT_EF_SEARCH`.
    """
    x = l2_normalize(vectors, "vectors")
    n, dim = x.shape
    concrete = resolve_factory(n, dim, factory)
    index = faiss.index_factory(dim, concrete, faiss.METRIC_INNER_PRODUCT)
    # The factory turns on polysemous training for PQ codes (an annealing pass, 10-100x the
    # k-means time here) that only pays off with Hamming-threshold search, which we never use.
    for part in (faiss.downcast_index(index), _ivf_of(index)):
        if part is not None and hasattr(part, "do_polysemous_training"):
            part.do_polysemous_training = False
    ivf = _ivf_of(index)
    if ivf is not None:
        ivf.cp.seed = seed
        if hasattr(ivf, "pq"):
            ivf.pq.cp.seed = seed
        if n < ivf.nlist:
            raise ValueError(
                f"{concrete!r} has {ivf.nlist} lists but only {n} vectors; use fewer lists "
                "or 'auto'"
            )
    if not index.is_trained:
        size = train_sample or TRAIN_POINTS_PER_CENTROID * (ivf.nlist if ivf is not None else 256)
        rng = np.random.default_rng(seed)
        sample = x if size >= n else x[np.sort(rng.choice(n, size, replace=False))]
        index.train(sample)
    index.add(x)
    set_search_params(index, nprobe=nprobe, ef_search=ef_search)
    if ivf is not None and nprobe is None:
        calibrate_nprobe(index, x, seed=seed)
    return index


def set_search_params(
    index: faiss.Index, *, nprobe: int | None = None, ef_search: int | None = None
) -> faiss.Index:
    """Set search-time knobs on ``index`` (also inside wrappers); defaults when ``None``.

    Both are saved with the index by :func:`save_index`, so a loaded index searches the way
    it was measured.
    """
    params = faiss.ParameterSpace()
    ivf = _ivf_of(index)
    if ivf is not None:
        params.set_index_parameter(index, "nprobe", nprobe or default_nprobe(ivf.nlist))
    elif nprobe is not None:
        raise ValueError(f"nprobe given but the index ({type(index).__name__}) is not IVF")
    if _is_hnsw(index):
        params.set_index_parameter(index, "efSearch", ef_search or DEFAULT_EF_SEARCH)
    elif ef_search is not None:
        raise ValueError(f"ef_search given but the index ({type(index).__name__}) is not HNSW")
    return index


def search(index: faiss.Index, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """``(scores, ids)`` of each query's ``k`` nearest rows, best first; ``-1`` ids when the
    index holds fewer than ``k`` vectors."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if index.ntotal == 0:
        raise ValueError("the index is empty")
    q = l2_normalize(queries, "queries", dim=index.d)
    return index.search(q, k)


def save_index(index: faiss.Index, path: str | Path) -> Path:
    """Write ``index`` (with its search parameters) to ``path``. The caller (the storage
    layer) owns atomicity: it writes into a version folder that is renamed when complete."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    faiss.write_index(index, str(path))
    return path


def load_index(path: str | Path) -> faiss.Index:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no faiss index at {path}")
    return faiss.read_index(str(path))


def recall_at_k_vs_exact(
    index: faiss.Index, vectors: np.ndarray, queries: np.ndarray, k: int = 20
) -> float:
    """Fraction of the exact top-``k`` neighbours of ``queries`` that ``index`` returns.

    ``vectors`` must be the vectors the index was built from, in the same order, since the
    comparison is by row id. 1.0 for an exact index (up to ties).
    """
    x = l2_normalize(vectors, "vectors", dim=index.d)
    if len(x) != index.ntotal:
        raise ValueError(f"index holds {index.ntotal} vectors but {len(x)} were given")
    k = min(k, len(x))
    q = l2_normalize(queries, "queries", dim=index.d)
    _, truth = faiss.knn(q, x, k, faiss.METRIC_INNER_PRODUCT)  # exact, without a second copy of x
    _, found = search(index, q, k)
    return recall_at_k(found, truth)


def recall_at_k(found: np.ndarray, truth: np.ndarray) -> float:
    """Fraction of the ids in ``truth`` (``(q, k)``, exact neighbours) present in the same row
    of ``found`` (``(q, k')``, an index's answer; ``-1`` = no result). Order is ignored."""
    found, truth = np.asarray(found), np.asarray(truth)
    if found.ndim != 2 or truth.ndim != 2 or len(found) != len(truth):
        raise ValueError(f"found {found.shape} and truth {truth.shape} must be (queries, k) with the same queries")
    hits = (found[:, :, None] == truth[:, None, :]) & (found[:, :, None] >= 0)
    return float(hits.any(axis=1).sum() / truth.size)


def _ivf_of(index: faiss.Index) -> faiss.IndexIVF | None:
    """The inverted-file part of ``index`` (through pre-transforms / id maps), if any."""
    try:
        return faiss.extract_index_ivf(index)
    except RuntimeError:
        return None


def _is_hnsw(index: faiss.Index) -> bool:
    inner = faiss.downcast_index(index)
    while isinstance(inner, (faiss.IndexPreTransform, faiss.IndexIDMap)):
        inner = faiss.downcast_index(inner.index)
    return hasattr(inner, "hnsw")
