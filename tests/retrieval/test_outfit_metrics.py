"""Compatibility AUC and FITB against hand-computed values; the questions made; bootstrap
intervals and the serving rule."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from street2shop.retrieval.outfit_metrics import (
    _auc_along,
    auc_ci,
    chance_rows,
    compatibility_auc,
    fitb_correct,
    make_questions,
    mean_ci,
    score_questions,
    serve_by_validation,
)
from street2shop.storage.schemas import OUTFIT_QUESTIONS, OUTFIT_SPLITS, OUTFITS


def test_auc_by_hand():
    # positives 0.9, 0.4; negatives 0.5, 0.1: pairs won 1+1 + 0+1 = 3 of 4
    assert compatibility_auc([0.9, 0.4, 0.5, 0.1], [1, 1, 0, 0]) == 0.75
    # a tie counts half: pos 0.5 vs neg 0.5 and 0.2 -> (0.5 + 1) / 2
    assert compatibility_auc([0.5, 0.5, 0.2], [1, 0, 0]) == 0.75
    assert compatibility_auc([1.0, 1.0], [1, 0]) == 0.5
    assert compatibility_auc([1.0], [1]) != compatibility_auc([1.0], [1])  # NaN without negatives


def test_fitb_correct_shares_ties():
    assert fitb_correct([0.1, 0.9, 0.3, 0.2], 1) == 1.0
    assert fitb_correct([0.1, 0.9, 0.3, 0.2], 2) == 0.0
    assert fitb_correct([0.9, 0.9, 0.3, 0.2], 0) == 0.5
    assert fitb_correct([0.0, 0.0, 0.0, 0.0], 3) == 0.25  # a constant scores chance


def _outfits() -> tuple[pa.Table, pa.Table, dict[str, str]]:
    rows, type_of = [], {}
    for k in range(6):
        for pos, t in enumerate(("top", "bottom", "shoes")):
            item = f"{t}{k}"
            type_of[item] = t
            rows.append({"outfit_id": f"o{k}", "item_id": item, "type": t, "position": pos})
    splits = pa.Table.from_pylist([{"outfit_id": f"o{k}", "split": "test" if k < 5 else "train"} for k in range(6)],
                                  schema=OUTFIT_SPLITS)
    return pa.Table.from_pylist(rows, schema=OUTFITS), splits, type_of


def test_questions_hold_items_of_their_split_and_the_right_types():
    outfits, splits, type_of = _outfits()
    q = make_questions(outfits, splits, type_of, seed=0, negatives_per_outfit=2, which=("test",))
    rows = q.to_pylist()
    compat = [r for r in rows if r["kind"] == "compatibility"]
    fitb = [r for r in rows if r["kind"] == "fitb"]
    assert len(compat) == 5 * 3 and sum(r["label"] for r in compat) == 5
    assert len(fitb) == 5 * 3  # every position of every test outfit
    for r in rows:
        assert all(not i.endswith("5") for i in r["items"] + (r["candidates"] or []))  # o5 is train
    for r in fitb:
        outfit = r["question_id"].split(":")[0]
        blank = next(i["item_id"] for i in outfits.to_pylist() if i["outfit_id"] == outfit and i["item_id"] not in r["items"])
        assert r["candidates"][r["label"]] == blank and len(set(r["candidates"])) == 4
        assert {type_of[c] for c in r["candidates"]} == {type_of[blank]} and r["size"] == 3
    again = make_questions(outfits, splits, type_of, seed=0, negatives_per_outfit=2, which=("test",))
    assert again.equals(q)


def test_score_questions_by_hand():
    q = pa.Table.from_pylist([
        {"question_id": "a", "kind": "compatibility", "split": "test", "items": ["x", "y"], "candidates": None, "label": 1, "size": 2},
        {"question_id": "b", "kind": "compatibility", "split": "test", "items": ["x", "z"], "candidates": None, "label": 0, "size": 2},
        {"question_id": "c", "kind": "compatibility", "split": "test", "items": ["y", "z", "x"], "candidates": None, "label": 1, "size": 3},
        {"question_id": "d", "kind": "fitb", "split": "test", "items": ["x"], "candidates": ["y", "z", "w", "v"], "label": 0, "size": 2},
        {"question_id": "e", "kind": "fitb", "split": "test", "items": ["x", "y"], "candidates": ["z", "w", "v", "u"], "label": 2, "size": 3},
    ], schema=OUTFIT_QUESTIONS)
    score = {"x": 3.0, "y": 2.0, "z": 0.0, "w": 1.0, "v": 1.0, "u": 5.0}
    table, answers = score_questions(q, "m", lambda items: sum(score[i] for i in items),
                                     lambda ctx, cands: [score[c] for c in cands])
    got = {(r["size"], r["metric"]): (r["value"], r["n"]) for r in table.to_pylist()}
    # AUC over all: positives 5, 5 vs negative 3 -> 1.0; size 2: a (5) vs b (3) -> 1.0
    assert got[(0, "auc")] == (1.0, 3) and got[(2, "auc")] == (1.0, 2)
    # FITB: d picks y (right); e picks u (wrong) -> 0.5 over all
    assert got[(0, "fitb")] == (0.5, 2) and got[(2, "fitb")] == (1.0, 1) and got[(3, "fitb")] == (0.0, 1)
    assert answers["e"] == [0.0, 1.0, 1.0, 5.0]
    chance = {(r["size"], r["metric"]): r["value"] for r in chance_rows(q).to_pylist()}
    assert chance[(0, "auc")] == 0.5 and chance[(0, "fitb")] == pytest.approx(0.25)


def test_bootstrap_intervals_hold_the_figure_are_seeded_and_narrow_with_more_questions():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 400)
    scores = labels + rng.normal(0, 1.0, 400)
    low, high = auc_ci(scores, labels)
    assert low < compatibility_auc(scores, labels) < high and auc_ci(scores, labels) == (low, high)
    small = auc_ci(scores[:60], labels[:60])
    assert small[1] - small[0] > high - low  # fewer questions, wider interval
    right = rng.random(200) < 0.4
    m_low, m_high = mean_ci(right)
    assert m_low < right.mean() < m_high and 0.3 < m_low and m_high < 0.5
    assert np.isnan(mean_ci([1.0])[0])  # one question: no interval


def test_the_vectorised_auc_is_the_auc():
    rng = np.random.default_rng(1)
    scores = np.round(rng.normal(size=(3, 50)), 1)  # ties
    labels = rng.integers(0, 2, (3, 50))
    assert np.allclose(_auc_along(scores, labels), [compatibility_auc(s, y) for s, y in zip(scores, labels)])


def test_serve_by_validation_picks_the_best_and_a_baseline_wins_ties():
    assert serve_by_validation({"backbone": 0.6, "a": 0.7, "b": 0.65}, ["backbone"])[0] == "a"
    assert serve_by_validation({"a": 0.6, "backbone": 0.6}, ["backbone"])[0] == "backbone"
    assert serve_by_validation({"backbone": float("nan"), "a": 0.1}, ["backbone"])[0] == "a"
    assert serve_by_validation({"backbone": 0.9, "a": 0.1}, ["backbone"], forced="a") == ("a", "forced by serve='a'")
    with pytest.raises(ValueError, match="not a candidate"):
        serve_by_validation({"a": 0.1}, [], forced="b")
