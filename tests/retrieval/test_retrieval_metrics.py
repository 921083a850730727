"""evaluate_retrieval against figures worked out by hand, a naive reference and faiss."""

from __future__ import annotations

import faiss
import numpy as np
import pyarrow as pa
import pytest

from street2shop.retrieval import metrics
from street2shop.retrieval.metrics import evaluate_retrieval
from street2shop.retrieval.ranking import GalleryItems, rank_items
from street2shop.storage.schemas import METRICS


def unit(*degrees: float) -> np.ndarray:
    """2-D unit vectors at the given angles: the score of two of them is cos(angle gap)."""
    rad = np.deg2rad(np.asarray(degrees, dtype=np.float64))
    return np.stack([np.cos(rad), np.sin(rad)], axis=1).astype(np.float32)


# Gallery: item A has two photos (0 and 100 degrees), B two (30 and 210). A and B are the same
# product in two colours, so retrieving one for the other is "right product, wrong colour".
GALLERY = unit(0, 30, 100, 60, 170, 210)
GALLERY_ITEMS = ["A", "B", "A", "C", "D", "B"]
PRODUCT = {"A": "p1", "B": "p1", "C": "p2", "D": "p3"}
# Query angle -> item ranking (best photo per item), worked out from the angle gaps:
#   95 (A): A 5, C 35, B 65, D 75          -> A at rank 1
#    5 (B): A 5, B 25, C 55, D 165         -> B at rank 2, top-1 is A: wrong colour
#  125 (D): A 25, D 45, C 65, B 85         -> D at rank 2
#  250 (C): B 40, D 80, A 110, C 170       -> C at rank 4
QUERIES = unit(95, 5, 125, 250)
QUERY_ITEMS = ["A", "B", "D", "C"]
CATEGORIES = ["dresses", "dresses", "coats", "tops"]


def hand_report(**kwargs):
    kwargs.setdefault("ks", (1, 2, 5))
    return evaluate_retrieval(QUERIES, QUERY_ITEMS, GALLERY, GALLERY_ITEMS, **kwargs)


def test_overall_metrics_match_hand_computation():
    report = hand_report(item_product=PRODUCT)
    o = report.overall
    assert report.first_hit_rank.tolist() == [1, 2, 2, 4]
    assert o["top1"] == pytest.approx(1 / 4)
    assert o["top2"] == pytest.approx(3 / 4)
    assert o["top5"] == pytest.approx(1.0)  # k beyond the 4 items: everything is retrieved
    assert o["map"] == pytest.approx((1 + 1 / 2 + 1 / 2 + 1 / 4) / 4)
    assert o["wrong_colour_top1"] == pytest.approx(1 / 4)
    # One relevant item per query: recall@k is top-k accuracy, as documented.
    for k in (1, 2, 5):
        assert o[f"recall@{k}"] == o[f"top{k}"]
    assert (o["n_queries"], o["n_missing"], o["gallery_size"], o["gallery_items"]) == (4, 0, 6, 4)


def test_ranked_items_are_deduplicated_items_in_rank_order():
    report = hand_report()
    assert report.ranked_items.tolist() == [
        ["A", "C", "B", "D", None],
        ["A", "B", "C", "D", None],
        ["A", "D", "C", "B", None],
        ["B", "D", "A", "C", None],
    ]
    # An item's score is its best photo's: query 250 meets B's photo at 210 (gap 40).
    assert report.ranked_scores[3, 0] == pytest.approx(np.cos(np.deg2rad(40)), abs=1e-6)
    assert np.isnan(report.ranked_scores[:, 4]).all()


def test_per_category_metrics():
    report = hand_report(query_categories=CATEGORIES, item_product=PRODUCT)
    per = report.per_category
    assert sorted(per) == ["coats", "dresses", "tops"]
    assert per["dresses"]["top1"] == pytest.approx(1 / 2)
    assert per["dresses"]["map"] == pytest.approx((1 + 1 / 2) / 2)
    assert per["dresses"]["wrong_colour_top1"] == pytest.approx(1 / 2)
    assert per["coats"]["top2"] == 1.0 and per["coats"]["map"] == pytest.approx(1 / 2)
    assert per["tops"]["top2"] == 0.0 and per["tops"]["map"] == pytest.approx(1 / 4)
    assert per["tops"]["n_queries"] == 1


def test_groups_make_several_items_relevant():
    # C and D are near-duplicate listings of one garment (one dedup group).
    groups = {"A": "gA", "B": "gB", "C": "gCD", "D": "gCD"}
    report = hand_report(item_group=groups)
    # Query D ranks D 2nd, C 3rd; query C ranks D 2nd, C 4th.
    assert report.average_precision.tolist() == pytest.approx(
        [1.0, 1 / 2, (1 / 2 + 2 / 3) / 2, (1 / 2 + 2 / 4) / 2]
    )
    assert report.first_hit_rank.tolist() == [1, 2, 2, 2]
    assert report.overall["recall@2"] == pytest.approx((1 + 1 + 1 / 2 + 1 / 2) / 4)
    assert report.overall["top2"] == 1.0  # recall differs from top-k once groups hold 2 items


def test_missing_query_item_raises_unless_allowed():
    queries = np.vstack([QUERIES, unit(0)])
    items = [*QUERY_ITEMS, "Z"]
    with pytest.raises(ValueError, match="no relevant item in the gallery.*Z"):
        evaluate_retrieval(queries, items, GALLERY, GALLERY_ITEMS, ks=(1, 2))
    report = evaluate_retrieval(
        queries, items, GALLERY, GALLERY_ITEMS, ks=(1, 2), allow_missing=True
    )
    assert report.overall["n_missing"] == 1
    assert report.overall["top1"] == pytest.approx(1 / 5)
    assert report.overall["map"] == pytest.approx((1 + 1 / 2 + 1 / 2 + 1 / 4) / 5)
    assert report.first_hit_rank[-1] == 0


def test_ties_go_to_the_item_first_in_the_gallery():
    gallery = np.array([[0, 1], [1, 0], [1, 0]], dtype=np.float32)  # Y and X identical
    report = evaluate_retrieval(unit(0), ["X"], gallery, ["W", "Y", "X"], ks=(1, 2))
    assert report.ranked_items[0].tolist() == ["Y", "X"]
    assert report.first_hit_rank.tolist() == [2]


def test_to_rows_matches_the_metrics_schema():
    report = hand_report(query_categories=CATEGORIES, item_product=PRODUCT)
    rows = report.to_rows(model="trained", split="test")
    table = pa.Table.from_pylist(rows, schema=METRICS)
    assert table.num_rows == 4 * (3 + 3 + 6)  # ("all" + 3 categories) x (top, recall, rest)
    assert {
        "benchmark": "shop", "model": "trained", "split": "test", "category": "all",
        "metric": "top_k", "k": 2, "value": 0.75,
    } in rows
    assert {r["benchmark"] for r in report.to_rows("trained", "test", benchmark="hm-dev")} == {"hm-dev"}
    (map_row,) = [r for r in rows if r["category"] == "tops" and r["metric"] == "map"]
    assert map_row["k"] is None and map_row["value"] == pytest.approx(0.25)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(ks=(0, 5)), "ks must be distinct positive"),
        (dict(gallery_is_item_level=True), "6 vectors for 4 distinct items"),
        (dict(item_product={"A": "p1"}), "item_product lacks 3"),
        (dict(query_categories=["x"]), "query_categories has 1 labels for 4"),
    ],
)
def test_bad_input_is_a_clear_error(kwargs, message):
    with pytest.raises(ValueError, match=message):
        hand_report(**kwargs)


def test_bad_vectors_are_a_clear_error():
    with pytest.raises(ValueError, match="dimension 3, expected 2"):
        evaluate_retrieval(QUERIES, QUERY_ITEMS, np.ones((6, 3)), GALLERY_ITEMS)
    with pytest.raises(ValueError, match="zero vector"):
        evaluate_retrieval(np.zeros((4, 2)), QUERY_ITEMS, GALLERY, GALLERY_ITEMS)
    bad = QUERIES.copy()
    bad[1, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        evaluate_retrieval(bad, QUERY_ITEMS, GALLERY, GALLERY_ITEMS)


# ---------------------------------------------------------------- naive reference, random data


def reference_metrics(q, q_items, g, g_items, ks, item_product):
    """Definition-by-loop: score every photo, keep each item's best, sort, read off metrics."""
    q = q / np.linalg.norm(q, axis=1, keepdims=True)
    g = g / np.linalg.norm(g, axis=1, keepdims=True)
    first_pos = {}
    for pos, item in enumerate(g_items):
        first_pos.setdefault(item, pos)
    out = {f"top{k}": 0.0 for k in ks} | {"map": 0.0, "wrong_colour_top1": 0.0}
    ranked = []
    for vec, item in zip(q, q_items):
        best: dict[str, float] = {}
        for gvec, gitem in zip(g, g_items):
            best[gitem] = max(best.get(gitem, -np.inf), float(vec @ gvec))
        order = sorted(best, key=lambda i: (-best[i], first_pos[i]))
        rank = order.index(item) + 1
        for k in ks:
            out[f"top{k}"] += rank <= k
        out["map"] += 1 / rank
        out["wrong_colour_top1"] += rank > 1 and item_product[order[0]] == item_product[item]
        ranked.append(order[: max(ks)])
    return {key: value / len(q) for key, value in out.items()}, ranked


@pytest.fixture
def random_retrieval():
    rng = np.random.default_rng(7)
    n_items, dim = 60, 16
    items = [f"p{i // 3}:c{i % 3}" for i in range(n_items)]  # 3 colours per product
    centres = rng.standard_normal((n_items, dim))
    g_idx = rng.integers(0, n_items, 200)
    g_idx[:n_items] = np.arange(n_items)  # every item has at least one shop photo
    q_idx = rng.integers(0, n_items, 90)
    g = centres[g_idx] + 0.8 * rng.standard_normal((len(g_idx), dim))
    q = centres[q_idx] + 1.2 * rng.standard_normal((len(q_idx), dim))
    product = {item: item.split(":")[0] for item in items}
    return q, [items[i] for i in q_idx], g, [items[i] for i in g_idx], product


def test_matches_naive_reference_on_random_data(random_retrieval):
    q, q_items, g, g_items, product = random_retrieval
    ks = (1, 5, 10, 20)
    report = evaluate_retrieval(q, q_items, g, g_items, ks=ks, item_product=product)
    expected, ranked = reference_metrics(q, q_items, g, g_items, ks, product)
    for key, value in expected.items():
        assert report.overall[key] == pytest.approx(value, abs=1e-12), key
    assert report.ranked_items.tolist() == ranked
    assert 0 < report.overall["top1"] < report.overall["top20"] < 1  # not a degenerate case


def test_chunking_does_not_change_results(random_retrieval, monkeypatch):
    q, q_items, g, g_items, product = random_retrieval
    whole = evaluate_retrieval(q, q_items, g, g_items, item_product=product)
    monkeypatch.setattr(metrics, "_CHUNK_CELLS", 7 * len(g))  # 7 queries per chunk
    chunked = evaluate_retrieval(q, q_items, g, g_items, item_product=product)
    assert chunked.overall == whole.overall
    assert chunked.ranked_items.tolist() == whole.ranked_items.tolist()


def test_agrees_with_faiss_flat_search_and_rank_items(random_retrieval):
    q, q_items, g, g_items, _ = random_retrieval
    report = evaluate_retrieval(q, q_items, g, g_items, ks=(1, 10))
    qn = q / np.linalg.norm(q, axis=1, keepdims=True)
    gn = g / np.linalg.norm(g, axis=1, keepdims=True)
    index = faiss.IndexFlatIP(g.shape[1])
    index.add(gn.astype(np.float32))
    scores, ids = index.search(qn.astype(np.float32), len(g))
    items, item_scores = rank_items(ids, scores, g_items, k=10)
    assert items.tolist() == report.ranked_items.tolist()
    np.testing.assert_allclose(item_scores, report.ranked_scores, atol=1e-5)


def test_rank_items_gives_the_same_ranking_from_precomputed_gallery_codes(random_retrieval):
    q, _, g, g_items, _ = random_retrieval
    index = faiss.IndexFlatIP(g.shape[1])
    index.add(g.astype(np.float32))
    scores, ids = index.search(q.astype(np.float32), 25)
    expected = rank_items(ids, scores, g_items, k=10)
    coded = GalleryItems.of(g_items)
    got = rank_items(ids, scores, coded, k=10)
    assert (got[0] == expected[0]).all() and np.array_equal(got[1], expected[1], equal_nan=True)
    with pytest.raises(ValueError, match="outside the gallery"):
        rank_items(ids + len(coded), scores, coded, k=10)


def test_rank_items_pads_when_photos_hold_too_few_items():
    ids = np.array([[2, 0, 1, -1], [1, 1, 3, 0]])
    scores = np.array([[0.9, 0.8, 0.7, -np.inf], [0.9, 0.9, 0.5, 0.4]], dtype=np.float32)
    items, item_scores = rank_items(ids, scores, ["A", "B", "A", "C"], k=3)
    assert items.tolist() == [["A", "B", None], ["B", "C", "A"]]
    assert item_scores[0, :2].tolist() == pytest.approx([0.9, 0.7])
    assert np.isnan(item_scores[0, 2])


def test_several_crops_per_query_are_scored_by_their_combination() -> None:
    """Query 0's first crop sees item b, its second crop item a; with ``max`` the crop that
    matches best decides, with ``mean`` both count."""
    gallery = np.eye(3, dtype=np.float32)  # items a, b, c, one photo each
    crops = np.array(
        [
            [[0.0, 0.9, 0.1], [1.0, 0.0, 0.0]],  # q0 (item a): crop 2 is exactly a
            [[0.0, 0.0, 1.0], [0.0, 0.0, 1.0]],  # q1 (item c): both crops see c
        ],
        dtype=np.float32,
    )
    items = ["a", "b", "c"]
    best = evaluate_retrieval(crops, ["a", "c"], gallery, items, ks=(1, 2), crop_scoring="max")
    assert best.ranked_items[0, 0] == "a" and best.overall["top1"] == 1.0
    mean = evaluate_retrieval(crops, ["a", "c"], gallery, items, ks=(1, 2), crop_scoring="mean")
    # q0's mean scores: a = 0.5, b = 0.497, c = 0.055 (unit crops): a still first, by a hair
    assert mean.ranked_items[0, :2].tolist() == ["a", "b"]
    one = evaluate_retrieval(crops[:, 0], ["a", "c"], gallery, items, ks=(1, 2))
    assert one.ranked_items[0, 0] == "b" and one.overall["top1"] == 0.5  # the first crop alone misses
    with pytest.raises(ValueError, match="unknown crop scoring"):
        evaluate_retrieval(crops, ["a", "c"], gallery, items, crop_scoring="median")
