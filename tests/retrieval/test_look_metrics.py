"""Shop-the-look figures against values computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from street2shop.retrieval.expansion import expand
from street2shop.retrieval.look_metrics import (
    average_precision_at_k,
    hit_at_k,
    invert,
    rank_metrics,
    recall_at_k,
    top_k,
)


def test_average_precision_recall_and_hit_by_hand():
    ranked = ["a", "x", "b", "y", "c", "z", "d"]
    relevant = {"a", "b", "c", "d"}
    # hits at ranks 1, 3, 5: (1/1 + 2/3 + 3/5) / min(4, 6)
    assert average_precision_at_k(ranked, relevant, 6) == pytest.approx((1 + 2 / 3 + 3 / 5) / 4)
    assert recall_at_k(ranked, relevant, 6) == pytest.approx(3 / 4)
    assert hit_at_k(ranked, relevant, 6) == 1.0
    # k = 7 reaches d: (1 + 2/3 + 3/5 + 4/7) / 4, recall 1
    assert average_precision_at_k(ranked, relevant, 7) == pytest.approx((1 + 2 / 3 + 3 / 5 + 4 / 7) / 4)
    assert recall_at_k(ranked, relevant, 7) == 1.0
    # k = 2: one hit at rank 1, over min(4, 2) = 2
    assert average_precision_at_k(ranked, relevant, 2) == pytest.approx(0.5)


def test_a_perfect_top_k_is_one_even_with_more_relevant_than_k():
    relevant = {f"i{k}" for k in range(10)}
    ranked = [f"i{k}" for k in range(6)]
    assert average_precision_at_k(ranked, relevant, 6) == 1.0
    assert recall_at_k(ranked, relevant, 6) == pytest.approx(0.6)


def test_no_hit_and_no_relevant():
    assert average_precision_at_k(["x", "y"], {"a"}, 6) == 0.0
    assert recall_at_k(["x", "y"], {"a"}, 6) == 0.0 and hit_at_k(["x", "y"], {"a"}, 6) == 0.0
    assert all(math.isnan(f(["x"], set(), 6)) for f in (average_precision_at_k, recall_at_k, hit_at_k))


GALLERY = np.array([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]], np.float32)
IDS = ["g0", "g1", "g2"]
QUERIES = np.array([[1.0, 0.0], [0.0, 1.0]], np.float32)


def test_rank_metrics_by_hand_with_groups():
    # q0 scores (1, 0, .6): ranks g0, g2; relevant g2 at rank 2 -> AP 1/2, recall 1, hit 1
    # q1 scores (0, 1, .8): ranks g1, g2; relevant g0 not in the top 2 -> 0, 0, 0
    out = rank_metrics(QUERIES, GALLERY, IDS, [{"g2"}, {"g0"}], k=2, groups=["casual", "street"])
    assert out["all"] == pytest.approx({"map": 0.25, "recall": 0.5, "hit": 0.5, "n": 2})
    assert out["casual"] == pytest.approx({"map": 0.5, "recall": 1.0, "hit": 1.0, "n": 1})
    assert out["street"] == pytest.approx({"map": 0.0, "recall": 0.0, "hit": 0.0, "n": 1})
    # k = 3 reaches g0 for q1 at rank 3: AP 1/3
    assert rank_metrics(QUERIES, GALLERY, IDS, [{"g2"}, {"g0"}], k=3)["all"]["map"] == pytest.approx((0.5 + 1 / 3) / 2)


def test_rank_metrics_ranks_the_expanded_vectors():
    relevant = [{"g2"}, {"g0"}]
    for name in ("qe", "dba", "dba+qe"):
        q, g = expand(name, QUERIES, GALLERY)
        assert rank_metrics(QUERIES, GALLERY, IDS, relevant, k=2, expansion=name) == rank_metrics(q, g, IDS, relevant, k=2)
    # DBA (k=2, alpha=3) pulls g1 towards g2 (cos .8, weight .512): q0 now ranks g0, g2, g1 still,
    # but g1's score for q0 rises from 0 to .512 * .6 / |g1 + .512 g2|
    _, g = expand("dba", QUERIES, GALLERY)
    g1 = np.array([0.0, 1.0]) + 0.512 * np.array([0.6, 0.8])
    assert g[1] @ QUERIES[0] == pytest.approx(0.512 * 0.6 / np.linalg.norm(g1), rel=1e-4)
    with pytest.raises(ValueError, match="unknown expansion"):
        rank_metrics(QUERIES, GALLERY, IDS, relevant, expansion="nope")


def test_top_k_and_invert():
    assert top_k(QUERIES[:1], GALLERY, IDS, k=2) == [[("g0", pytest.approx(1.0)), ("g2", pytest.approx(0.6))]]
    assert invert({"k1": ["a", "b"], "k2": ["b"]}) == {"a": {"k1"}, "b": {"k1", "k2"}}
