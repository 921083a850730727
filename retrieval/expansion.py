"""Query expansion and database-side augmentation: optional post-processing of embeddings.

Both replace a vector by a similarity-weighted sum of itself and its nearest gallery
neighbours, then re-normalise (Radenović et al., "Fine-tuning CNN image retrieval with no
human annotation", TPAMI 2018):

* :func:`alpha_qe` (αQE) moves each *query* towards the gallery photos it already matches
  well, so a blurry street photo borrows detail from the clean shop photos it is close to.
* :func:`dba` moves each *gallery* vector towards its own neighbours, which pulls the several
  photos of one item together.

Weights are ``max(sim, 0) ** alpha``: ``alpha = 0`` is plain averaging, larger ``alpha``
trusts close neighbours more. Negative similarities get weight 0, because subtracting an
unrelated photo's direction is noise, not information. The evaluate stage measures each one
on and off through the one evaluation path (:mod:`street2shop.retrieval.evaluation`), by
name: :func:`expand` applies one of :data:`EXPANSIONS`.
"""

from __future__ import annotations

import faiss
import numpy as np

from street2shop.retrieval.vectors import l2_normalize

#: Post-processing variants measured on top of a model's vectors (name -> what it does).
EXPANSIONS = ("qe", "dba", "dba+qe")


def alpha_qe(
    query_vecs: np.ndarray, gallery_vecs: np.ndarray, k: int, alpha: float = 3.0
) -> np.ndarray:
    """Expanded, unit-norm queries: ``q + sum_i w_i g_i`` over the ``k`` nearest gallery
    vectors. ``k = 0`` returns the (normalised) queries unchanged."""
    q = l2_normalize(query_vecs, "query_vecs")
    g = l2_normalize(gallery_vecs, "gallery_vecs", dim=q.shape[1])
    _check(k, alpha, minimum_k=0)
    if k == 0:
        return q
    # The query itself is not in the gallery: it joins the sum with weight 1 (its similarity
    # to itself), as in the paper.
    return _weighted_sum(q, g, k, alpha, base=q)


def dba(gallery_vecs: np.ndarray, k: int, alpha: float = 3.0) -> np.ndarray:
    """Augmented, unit-norm gallery: each vector becomes the weighted sum of its ``k`` nearest
    gallery vectors, itself included (it is its own nearest, similarity 1). ``k = 1``
    returns the (normalised) gallery unchanged."""
    g = l2_normalize(gallery_vecs, "gallery_vecs")
    _check(k, alpha, minimum_k=1)
    if k == 1:
        return g
    return _weighted_sum(g, g, k, alpha, base=None)


def expand(
    name: str,
    query_vectors: np.ndarray,
    gallery_vectors: np.ndarray,
    qe_k: int = 2,
    qe_alpha: float = 3.0,
    dba_k: int = 2,
    dba_alpha: float = 3.0,
) -> tuple[np.ndarray, np.ndarray]:
    """``(queries, gallery)`` after the post-processing ``name`` (one of :data:`EXPANSIONS`).

    For ``dba+qe`` the queries are expanded with the augmented gallery, the order the
    method's authors use: the query borrows from neighbours that are already denoised.
    """
    if name not in EXPANSIONS:
        raise ValueError(f"unknown expansion {name!r}; one of {', '.join(EXPANSIONS)}")
    gallery = dba(gallery_vectors, dba_k, dba_alpha) if "dba" in name else gallery_vectors
    queries = alpha_qe(query_vectors, gallery, qe_k, qe_alpha) if "qe" in name else query_vectors
    return queries, gallery


def _check(k: int, alpha: float, minimum_k: int) -> None:
    if int(k) != k or k < minimum_k:
        raise ValueError(f"k must be an integer >= {minimum_k}, got {k}")
    if not np.isfinite(alpha) or alpha < 0:
        raise ValueError(f"alpha must be a finite number >= 0, got {alpha}")


def _weighted_sum(
    x: np.ndarray, g: np.ndarray, k: int, alpha: float, base: np.ndarray | None
) -> np.ndarray:
    """``normalise(base + sum_j w_j g[nn_j(x)])`` with exact inner-product neighbours."""
    index = faiss.IndexFlatIP(g.shape[1])
    index.add(g)
    sims, ids = index.search(x, min(int(k), len(g)))
    positive = sims > 0
    weights = np.where(positive, np.power(np.where(positive, sims, 1.0), alpha), 0.0)
    out = np.zeros_like(x) if base is None else base.copy()
    # One neighbour rank at a time: memory stays (n, d) instead of (n, k, d).
    for j in range(ids.shape[1]):
        out += weights[:, j : j + 1].astype(np.float32) * g[ids[:, j]]
    # Non-zero by construction: every term with weight > 0 has positive dot product with x,
    # so the sum has positive dot product with x.
    return l2_normalize(out, "expanded vectors")
