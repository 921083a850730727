"""Shop-the-look figures: mAP@k, recall@k and hit@k of a ranking against the items (or posts)
a post's stylists linked.

For one query with relevant set ``R`` and ranking ``r_1, r_2, ...``:

* ``AP@k = (1 / min(|R|, k)) * sum_{i <= k, r_i in R} precision@i`` (so a perfect top k is 1
  even when ``|R| > k``); mAP@k is its mean over queries;
* ``recall@k = |top k & R| / |R|``;
* ``hit@k = 1`` if any of the top k is relevant.

``rank_metrics`` scores a whole similarity matrix (queries x gallery) the same way, with
optional expansion (αQE / DBA, ``retrieval/expansion.py``) and groups (per style).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence

import numpy as np

from street2shop.retrieval.expansion import expand
from street2shop.retrieval.outfit_metrics import mean_ci

K = 6


def average_precision_at_k(ranked: Sequence[str], relevant: set[str], k: int = K) -> float:
    if not relevant:
        return float("nan")
    hits, total = 0, 0.0
    for i, r in enumerate(ranked[:k], start=1):
        if r in relevant:
            hits += 1
            total += hits / i
    return total / min(len(relevant), k)


def recall_at_k(ranked: Sequence[str], relevant: set[str], k: int = K) -> float:
    return len(set(ranked[:k]) & relevant) / len(relevant) if relevant else float("nan")


def hit_at_k(ranked: Sequence[str], relevant: set[str], k: int = K) -> float:
    return float(bool(set(ranked[:k]) & relevant)) if relevant else float("nan")


def rank_metrics(
    queries: np.ndarray,
    gallery: np.ndarray,
    gallery_ids: Sequence[str],
    relevant: Sequence[set[str]],
    k: int = K,
    expansion: str | None = None,
    groups: Sequence[str] | None = None,
    ci_seed: int | None = None,
) -> dict[str, dict[str, float]]:
    """``{group: {"map": .., "recall": .., "hit": .., "n": ..}}`` (group "all" always), for
    unit-norm ``queries`` ranked over ``gallery`` by cosine; ``expansion``: one of
    ``retrieval.expansion.EXPANSIONS`` applied first. With ``ci_seed``, group "all" also has
    ``map_ci95``: the 95 % bootstrap interval of the mAP (queries resampled, seeded)."""
    if expansion is not None:
        queries, gallery = expand(expansion, queries, gallery)
    scores = queries @ gallery.T
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    per: dict[str, list[tuple[float, float, float]]] = defaultdict(list)
    for q, rel in enumerate(relevant):
        ranked = [gallery_ids[j] for j in order[q]]
        row = (average_precision_at_k(ranked, rel, k), recall_at_k(ranked, rel, k), hit_at_k(ranked, rel, k))
        per["all"].append(row)
        if groups is not None:
            per[groups[q]].append(row)
    out = {g: {"map": float(np.mean([r[0] for r in rows])), "recall": float(np.mean([r[1] for r in rows])),
               "hit": float(np.mean([r[2] for r in rows])), "n": len(rows)} for g, rows in sorted(per.items())}
    if ci_seed is not None and "all" in out:
        out["all"]["map_ci95"] = mean_ci([r[0] for r in per["all"]], ci_seed)
    return out


def top_k(queries: np.ndarray, gallery: np.ndarray, gallery_ids: Sequence[str], k: int = K) -> list[list[tuple[str, float]]]:
    """The ``k`` best gallery ids and scores per query."""
    scores = queries @ gallery.T
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return [[(gallery_ids[j], float(scores[q, j])) for j in order[q]] for q in range(len(queries))]


def invert(links: Mapping[str, Sequence[str]]) -> dict[str, set[str]]:
    """post -> items as item -> posts."""
    out: dict[str, set[str]] = defaultdict(set)
    for post, items in links.items():
        for item in items:
            out[item].add(post)
    return dict(out)
