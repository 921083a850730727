"""FAISS indexes for the gallery, chosen by factory string, and their check against exact search.

An index is described by a faiss factory string (``"Flat"``, ``"HNSW32"``, ``"IVF1024,Flat"``,
``"IVF1024,PQ32"``...) or ``"auto"``, which picks by size: exact ``Flat`` while brute force is
cheap, an inverted file above. :func:`resolve_factory` turns ``auto`` into the concrete string
that the index stage records in its manifest, next to :func:`recall_at_k_vs_exact`, the
fraction of the exact top-k neighbours the index finds.

Every index uses the inner-product metric on L2-normalised vectors (cosine similarity), the
same scoring as :mod:`street2shop.retrieval.evaluation`.
"""

from __future__ import annotations

import math
from pathlib import Path

import faiss
import numpy as np

from street2shop.retrieval.vectors import l2_normalize

#: ``auto`` uses exact search below this many vectors: brute force over 50k x 512 floats is
#: ~25 ms a query on two cores, and an exact index needs no training or recall check.
AUTO_FLAT_MAX = 50_000

#: k-means quality stops improving much beyond ~64-256 points per centroid (faiss warns under
#: 39); training on a capped sample keeps IVF training time independent of the gallery size.
TRAIN_POINTS_PER_CENTROID = 128

#: ``efSearch`` set on HNSW indexes (faiss's default of 16 is tuned for speed, not recall@20).
DEFAULT_EF_SEARCH = 256



def resolve_factory(n: int, dim: int, factory: str = "auto") -> str:
    """The concrete factory string for ``n`` vectors of width ``dim``.

    ``auto`` -> ``"Flat"`` below :data:`AUTO_FLAT_MAX` vectors, else ``"IVF{4*sqrt(n)},Flat"``
    (the usual faiss rule of thumb for the number of lists). Other strings pass through after
    a check that faiss can build them for ``dim``.
    """
    if n < 1 or dim < 1:
        raise ValueError(f"need at least one vector of positive width, got n={n}, dim={dim}")
    if factory == "auto":
        if n < AUTO_FLAT_MAX:
            return "Flat"
        return f"IVF{int(round(4 * math.sqrt(n)))},Flat"
    try:
        faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)
    except RuntimeError as exc:  # faiss reports a bad string as a C++ exception message
        raise ValueError(f"faiss cannot build factory {factory!r} for dim {dim}: {exc}") from exc
    return factory


def default_nprobe(nlist: int) -> int:
    """Inverted lists visited per query: 1/8 of the lists, at least 16.

    With ``nlist = 4 sqrt(n)`` this scans ~1/8 of the gallery. Measured on 20k clustered
    synthetic vectors (dim 64, IVF566): nlist/16 gave recall@20 0.85 on weakly clustered data,
    nlist/8 gave 0.94. The index stage measures the real recall and records it.
    """
    return int(min(nlist, max(16, nlist // 8)))


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
        nprobe: lists visited per query for IVF indexes; default :func:`default_nprobe`.
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
    exact = faiss.IndexFlatIP(index.d)
    exact.add(x)
    _, truth = search(exact, queries, k)
    _, found = search(index, queries, k)
    hits = (found[:, :, None] == truth[:, None, :]) & (found[:, :, None] >= 0)
    return float(hits.any(axis=2).sum() / truth.size)


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
