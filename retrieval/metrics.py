"""Retrieval metrics from vectors: street-photo queries scored against a shop-photo gallery.

:func:`evaluate_retrieval` is the scoring function under the one evaluation path
(:mod:`street2shop.retrieval.evaluation`), which training's validation, the evaluate stage,
``street2shop eval`` and the benchmarks all go through, so a figure means the same thing
wherever it is printed.

Definitions (what the numbers mean):

* **Search** is exact cosine similarity: both sides are L2-normalised and scored by inner
  product, the computation ``faiss.IndexFlatIP`` performs (the tests check the two agree). The
  full query x gallery score matrix is computed in query chunks rather than asking faiss for
  ``k`` neighbours, because mAP needs the rank of the correct item however deep it lies.
* **Items, not photos.** The gallery holds photos and an item (product x colour) may have
  several. Rankings are de-duplicated to items in rank order, keeping each item's first
  occurrence; an item's score is therefore its best photo's score. Ties (equal scores, which
  only happen with duplicated vectors) go to the item that appears first in the gallery.
* **Several crops per query** (query-side localisation, ``query_vectors`` of shape
  ``(n_q, n_crops, d)``): each crop is scored against each gallery photo and the crops'
  scores are combined per photo by ``crop_scoring`` (``max``: the best crop decides; ``mean``;
  ``topK``) before the item ranking above.
* **Relevant items** of a query are its own item, or, when ``item_group`` is given, every
  gallery item of the same group (near-duplicate listings merged by the dedup stage, where
  finding the other seller's identical listing is a correct answer).
* ``top{k}``: fraction of queries with a relevant item among the first ``k`` items.
* ``recall@{k}``: mean over queries of (relevant items in the first ``k``) / (relevant items
  in the gallery). With one relevant item per query (no ``item_group``) it **equals**
  ``top{k}``; it only differs when groups hold several items.
* ``map``: mean over queries of average precision over the full ranked item list; with one
  relevant item this is the mean reciprocal rank.
* ``wrong_colour_top1`` (only with ``item_product``): fraction of queries whose top-1 item is
  not relevant but is the query's product in another colour: the model found the garment
  and missed the colour.
* A query whose relevant items are all absent from the gallery is an error by default, since
  it usually means the query and gallery splits were joined wrongly. With
  ``allow_missing=True`` it is scored as a miss (0 on every metric) and counted in
  ``n_missing``.

Per-category figures group the *queries* by category; every query is still searched against
the whole gallery, as a shopper's photo is.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from street2shop.retrieval.ranking import as_labels, combine_crop_scores, item_codes, parse_crop_scoring
from street2shop.retrieval.vectors import l2_normalize

#: Category label of the overall rows in the metrics table.
ALL_CATEGORIES = "all"

#: Keep one chunk of the query x gallery score matrix around this many float32 cells (64 MB).
_CHUNK_CELLS = 1 << 24


@dataclass(frozen=True)
class RetrievalReport:
    """Metrics of one evaluation plus the ranked items behind them (for reports and galleries).

    ``overall`` and each ``per_category[c]`` map metric keys (``top1``, ``recall@5``, ``map``,
    ``wrong_colour_top1``, ``n_queries``, ``n_missing``, ``gallery_size``,
    ``gallery_items``) to values. Per-query arrays are aligned with the queries given.
    """

    ks: tuple[int, ...]
    overall: dict[str, float]
    per_category: dict[str, dict[str, float]]
    query_items: np.ndarray  # (n_q,) item ids of the queries
    ranked_items: np.ndarray  # (n_q, max(ks)) object: item ids, None past the gallery's end
    ranked_scores: np.ndarray  # (n_q, max(ks)) float32, NaN past the gallery's end
    first_hit_rank: np.ndarray  # (n_q,) 1-based rank of the first relevant item; 0 = missing
    average_precision: np.ndarray  # (n_q,)
    query_categories: np.ndarray | None = None  # (n_q,) when categories were given

    def to_rows(self, model: str, split: str, benchmark: str = "shop") -> list[dict[str, Any]]:
        """Long-format rows matching ``street2shop.storage.schemas.METRICS``; ``benchmark``
        names the query/gallery set (``shop``: the store's own split)."""
        rows: list[dict[str, Any]] = []
        tables = {ALL_CATEGORIES: self.overall, **dict(sorted(self.per_category.items()))}
        for category, values in tables.items():
            for key, metric, k in _metric_names(self.ks):
                if key in values:
                    rows.append(
                        {
                            "benchmark": benchmark,
                            "model": model,
                            "split": split,
                            "category": category,
                            "metric": metric,
                            "k": k,
                            "value": float(values[key]),
                        }
                    )
        return rows


def _metric_names(ks: Sequence[int]) -> list[tuple[str, str, int | None]]:
    """(dict key, metrics-table name, k) of every figure, in report order."""
    names: list[tuple[str, str, int | None]] = [(f"top{k}", "top_k", k) for k in ks]
    names += [(f"recall@{k}", "recall", k) for k in ks]
    names += [
        ("map", "map", None),
        ("wrong_colour_top1", "wrong_colour", 1),
        ("n_queries", "n_queries", None),
        ("n_missing", "n_missing", None),
        ("gallery_size", "gallery_size", None),
        ("gallery_items", "gallery_items", None),
    ]
    return names


def evaluate_retrieval(
    query_vectors: np.ndarray,
    query_items: Sequence[str] | np.ndarray,
    gallery_vectors: np.ndarray,
    gallery_items: Sequence[str] | np.ndarray,
    *,
    ks: Sequence[int] = (1, 5, 10, 20),
    query_categories: Sequence[str] | np.ndarray | None = None,
    item_product: Mapping[str, str] | None = None,
    item_group: Mapping[str, str] | None = None,
    gallery_is_item_level: bool = False,
    allow_missing: bool = False,
    crop_scoring: str = "max",
) -> RetrievalReport:
    """Score street-photo queries against a shop gallery (see the module docstring).

    Args:
        query_vectors: ``(n_q, d)`` query embeddings, or ``(n_q, n_crops, d)`` for several
            crops per query (normalised here).
        query_items: item id of each query.
        gallery_vectors: ``(n_g, d)`` gallery embeddings; several may share an item.
        gallery_items: item id of each gallery vector.
        ks: cut-offs for ``top{k}`` and ``recall@{k}``; the ranked lists keep ``max(ks)``.
        query_categories: category of each query, for ``per_category``.
        item_product: item id -> product id, for ``wrong_colour_top1``.
        item_group: item id -> group id; items of a query's group all count as relevant.
        gallery_is_item_level: the gallery has exactly one vector per item (e.g. an item's
            mean descriptor); duplicates are then an error instead of being merged.
        allow_missing: score queries with no relevant gallery item as misses instead of
            raising.
        crop_scoring: how the crops of a query combine per gallery photo (see above).
    """
    ks = _check_ks(ks)
    parse_crop_scoring(crop_scoring)
    queries = _normalise_queries(query_vectors)
    gallery = l2_normalize(gallery_vectors, "gallery_vectors", dim=queries.shape[-1])
    q_items = as_labels(query_items, len(queries), "query_items")
    g_items = as_labels(gallery_items, len(gallery), "gallery_items")
    categories = (
        None
        if query_categories is None
        else as_labels(query_categories, len(queries), "query_categories")
    )

    items, gallery_codes = item_codes(g_items)
    if gallery_is_item_level and len(items) != len(g_items):
        raise ValueError(
            f"gallery_is_item_level=True but the gallery has {len(g_items)} vectors for "
            f"{len(items)} distinct items"
        )
    relevant = _relevant_codes(q_items, items, item_group)
    n_relevant = (relevant >= 0).sum(axis=1)
    missing = n_relevant == 0
    if missing.any() and not allow_missing:
        examples = ", ".join(sorted(set(q_items[missing].tolist()))[:5])
        raise ValueError(
            f"{int(missing.sum())} queries have no relevant item in the gallery (e.g. "
            f"{examples}); check the split join, or pass allow_missing=True to score them "
            "as misses"
        )

    ranked_codes, ranked_scores, ranks = _rank(
        queries, gallery, gallery_codes, len(items), relevant, max(ks), crop_scoring
    )

    # Per-query figures; aggregation (overall and per category) is a mean of these.
    sorted_ranks = np.sort(ranks, axis=1)  # missing relevant slots hold a huge rank: last
    first_hit = np.where(missing, 0, sorted_ranks[:, 0])
    denom = np.maximum(n_relevant, 1)  # a missing query scores 0, not 0/0
    position = np.arange(1, relevant.shape[1] + 1)[None, :]
    precision_at_hits = np.where(position <= n_relevant[:, None], position / sorted_ranks, 0.0)
    average_precision = precision_at_hits.sum(axis=1) / denom
    per_query: dict[str, np.ndarray] = {}
    for k in ks:
        per_query[f"top{k}"] = ((first_hit >= 1) & (first_hit <= k)).astype(np.float64)
    for k in ks:
        per_query[f"recall@{k}"] = (ranks <= k).sum(axis=1) / denom
    per_query["map"] = average_precision
    if item_product is not None:
        per_query["wrong_colour_top1"] = _wrong_colour(
            q_items, items, ranked_codes[:, 0], first_hit, item_product
        )

    gallery_stats = {"gallery_size": float(len(gallery)), "gallery_items": float(len(items))}
    overall = _aggregate(per_query, missing, np.ones(len(queries), bool)) | gallery_stats
    per_category: dict[str, dict[str, float]] = {}
    if categories is not None:
        for category in np.unique(categories):
            mask = categories == category
            per_category[str(category)] = _aggregate(per_query, missing, mask) | gallery_stats

    item_array = np.asarray(items, dtype=object)
    ranked_items = np.where(ranked_codes >= 0, item_array[np.maximum(ranked_codes, 0)], None)
    return RetrievalReport(
        ks=ks,
        overall=overall,
        per_category=per_category,
        query_items=q_items,
        ranked_items=ranked_items,
        ranked_scores=ranked_scores,
        first_hit_rank=first_hit.astype(np.int64),
        average_precision=average_precision,
        query_categories=categories,
    )


# --------------------------------------------------------------------------- internals


def _check_ks(ks: Sequence[int]) -> tuple[int, ...]:
    values = tuple(int(k) for k in ks)
    if not values or any(k < 1 for k in values) or len(set(values)) != len(values):
        raise ValueError(f"ks must be distinct positive integers, got {tuple(ks)}")
    return tuple(sorted(values))


def _normalise_queries(query_vectors: np.ndarray) -> np.ndarray:
    """Unit-norm ``(n_q, d)`` or ``(n_q, n_crops, d)`` query vectors."""
    arr = np.asarray(query_vectors)
    if arr.ndim == 3:
        n_q, n_crops, dim = arr.shape
        if n_crops == 0:
            raise ValueError("query_vectors has no crops")
        return l2_normalize(arr.reshape(n_q * n_crops, dim), "query_vectors").reshape(n_q, n_crops, dim)
    return l2_normalize(arr, "query_vectors")


def _relevant_codes(
    query_items: np.ndarray, items: list[str], item_group: Mapping[str, str] | None
) -> np.ndarray:
    """``(n_q, r)`` item codes relevant to each query, padded with -1."""
    code = {item: i for i, item in enumerate(items)}
    if item_group is None:
        return np.array([[code.get(item, -1)] for item in query_items], dtype=np.int64)
    unknown = sorted({i for i in [*query_items, *items] if i not in item_group})
    if unknown:
        raise ValueError(f"item_group lacks {len(unknown)} item(s), e.g. {unknown[:5]}")
    members: dict[str, list[int]] = {}
    for i, item in enumerate(items):
        members.setdefault(item_group[item], []).append(i)
    lists = [members.get(item_group[item], []) for item in query_items]
    width = max(1, max(len(m) for m in lists))
    out = np.full((len(lists), width), -1, dtype=np.int64)
    for row, m in enumerate(lists):
        out[row, : len(m)] = m
    return out


def _rank(
    queries: np.ndarray,
    gallery: np.ndarray,
    gallery_codes: np.ndarray,
    n_items: int,
    relevant: np.ndarray,
    max_k: int,
    crop_scoring: str = "max",
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Top ``max_k`` item codes and scores per query, and the 1-based rank of each relevant
    item (a huge sentinel for padding slots), over the full item ranking."""
    n_crops = queries.shape[1] if queries.ndim == 3 else 1
    n_q = len(queries)
    # Gallery rows grouped by item so an item's score is a max over one contiguous segment.
    by_item = np.argsort(gallery_codes, kind="stable")
    gallery_sorted = gallery[by_item]
    starts = np.searchsorted(gallery_codes[by_item], np.arange(n_items))
    one_per_item = n_items == len(gallery)

    k_eff = min(max_k, n_items)
    ranked_codes = np.full((n_q, max_k), -1, dtype=np.int64)
    ranked_scores = np.full((n_q, max_k), np.nan, dtype=np.float32)
    never = np.iinfo(np.int64).max // 4
    ranks = np.full(relevant.shape, never, dtype=np.int64)
    # The rank computation below holds (chunk, relevant, items) booleans: budget for both.
    chunk = max(1, _CHUNK_CELLS // max(n_crops * len(gallery), relevant.shape[1] * n_items))
    item_index = np.arange(n_items)

    for lo in range(0, n_q, chunk):
        hi = min(n_q, lo + chunk)
        scores = queries[lo:hi] @ gallery_sorted.T  # (chunk, [crops,] gallery)
        if queries.ndim == 3:
            scores = combine_crop_scores(scores, crop_scoring)
        if not one_per_item:
            scores = np.maximum.reduceat(scores, starts, axis=1)
        top = _top_k_columns(scores, k_eff)
        ranked_codes[lo:hi, :k_eff] = top
        ranked_scores[lo:hi, :k_eff] = np.take_along_axis(scores, top, axis=1)

        rel = relevant[lo:hi]
        valid = rel >= 0
        rel_safe = np.where(valid, rel, 0)
        s_rel = np.take_along_axis(scores, rel_safe, axis=1)[:, :, None]
        ahead = (scores[:, None, :] > s_rel) | (
            (scores[:, None, :] == s_rel) & (item_index[None, None, :] < rel_safe[:, :, None])
        )
        ranks[lo:hi] = np.where(valid, 1 + ahead.sum(axis=2), never)
    return ranked_codes, ranked_scores, ranks


def _top_k_columns(scores: np.ndarray, k: int) -> np.ndarray:
    """Column indices of each row's ``k`` best scores, ordered by (score desc, column asc).

    ``argpartition`` alone could keep a later column over an equal-scored earlier one at the
    cut; taking every candidate >= the k-th value and sorting them keeps the tie-break exact
    while staying linear in the row length.
    """
    n_rows, n_cols = scores.shape
    if k >= n_cols:
        return np.argsort(-scores, axis=1, kind="stable")
    kth = -np.partition(-scores, k - 1, axis=1)[:, k - 1 : k]
    rows, cols = np.nonzero(scores >= kth)
    order = np.lexsort((cols, -scores[rows, cols], rows))
    rows, cols = rows[order], cols[order]
    slot = np.arange(rows.size) - np.searchsorted(rows, rows)
    keep = slot < k
    top = np.empty((n_rows, k), dtype=np.int64)
    top[rows[keep], slot[keep]] = cols[keep]
    return top


def _wrong_colour(
    query_items: np.ndarray,
    items: list[str],
    top1_codes: np.ndarray,
    first_hit: np.ndarray,
    item_product: Mapping[str, str],
) -> np.ndarray:
    unknown = sorted({i for i in [*query_items, *items] if i not in item_product})
    if unknown:
        raise ValueError(f"item_product lacks {len(unknown)} item(s), e.g. {unknown[:5]}")
    top1_product = np.array([item_product[items[c]] for c in top1_codes], dtype=object)
    query_product = np.array([item_product[i] for i in query_items], dtype=object)
    return ((first_hit != 1) & (top1_product == query_product)).astype(np.float64)


def _aggregate(
    per_query: dict[str, np.ndarray], missing: np.ndarray, mask: np.ndarray
) -> dict[str, float]:
    out = {key: float(values[mask].mean()) for key, values in per_query.items()}
    out["n_queries"] = float(mask.sum())
    out["n_missing"] = float((missing & mask).sum())
    return out
