"""The evaluate stage's core (street2shop.retrieval.evaluation.evaluate_models): the shop split
and a benchmark side by side, and the served model chosen by the benchmark."""

from __future__ import annotations

import numpy as np
import pytest

from street2shop.retrieval.evaluation import (
    Benchmark,
    EvaluateParams,
    Features,
    choose_served,
    evaluate_models,
)
from street2shop.sources.labelled import annotated_from_csvs, read_labelled_csv

ITEMS = ("p1:blue", "p1:red", "p2:blue", "p2:red")


def oracle(annotated, wrong: set[str] = frozenset()):
    """Features that put every photo on its item's axis, except street photos of ``wrong``
    items, which land on the next item's axis (a miss)."""
    item_of = dict(zip(annotated.column("path").to_pylist(), annotated.column("item_id").to_pylist()))
    role_of = dict(zip(annotated.column("path").to_pylist(), annotated.column("role").to_pylist()))

    def features(paths):
        rows = []
        for p in paths:
            k = ITEMS.index(item_of[p])
            if role_of[p] == "street" and item_of[p] in wrong:
                k = (k + 1) % len(ITEMS)
            rows.append(np.eye(len(ITEMS), dtype=np.float32)[k])
        return np.stack(rows)

    return features


@pytest.fixture
def sets(photo_set):
    annotated = annotated_from_csvs(read_labelled_csv(photo_set["gallery"]), read_labelled_csv(photo_set["queries"]))
    params = EvaluateParams(
        baselines=["pretrained"], expansions=["dba"], ks=[1, 2], serve_metric="top1",  # 4 items: top-20 is always 1
        benchmarks=[Benchmark(name="real", gallery=str(photo_set["gallery"]), queries=str(photo_set["queries"]))],
    )  # fmt: skip
    return annotated, params


def test_the_benchmark_decides_which_model_is_served(sets):
    """The trained model wins on the shop split (it was fitted there) but loses on the
    benchmark: the untrained backbone is served, and the figures say why."""
    shop, params = sets
    bench = shop  # the same photos stand in for both sets; the features tell them apart
    calls = {"n": 0}

    def trained(paths):  # perfect on the first evaluation (the shop), half wrong afterwards
        calls["n"] += 1
        return oracle(shop, wrong=set() if calls["n"] <= 2 else {"p1:red", "p2:red"})(paths)

    features = {"trained": Features(trained, trained), "pretrained": Features.of(oracle(shop, wrong={"p2:red"}))}
    result = evaluate_models(shop, features, params, {"real": bench})
    f = result.figures
    assert f["trained_top1"] == 1.0 and f["pretrained_top1"] == pytest.approx(6 / 8)
    assert f["real:trained_top1"] == pytest.approx(4 / 8) and f["real:pretrained_top1"] == pytest.approx(6 / 8)
    assert result.served == f["served"] == "pretrained" and f["served_on"] == "real:top1"
    assert f["real:served_top1"] == f["real:pretrained_top1"] and f["served_top1"] == f["pretrained_top1"]
    benchmarks = {(r["benchmark"], r["model"]) for r in result.rows}
    assert benchmarks == {("shop", "trained"), ("shop", "pretrained"), ("shop", "trained+dba"),
                          ("real", "trained"), ("real", "pretrained")}  # fmt: skip
    assert set(result.vectors) == {"trained", "pretrained"}


def test_judged_on_the_shop_split_without_benchmarks(sets):
    shop, params = sets
    params = params.model_copy(update={"benchmarks": []})
    features = {"trained": Features.of(oracle(shop)), "pretrained": Features.of(oracle(shop, wrong={"p2:red"}))}
    result = evaluate_models(shop, features, params)
    assert result.served == "trained" and result.figures["served_on"] == "shop:top1"


def test_ties_and_missing_figures_keep_the_trained_model():
    params = EvaluateParams(serve_metric="top1")
    assert choose_served({"trained_top1": 0.5, "pretrained_top1": 0.5}, params, ["trained", "pretrained"]) == "trained"
    assert choose_served({"trained_top1": float("nan"), "pretrained_top1": 0.1}, params, ["trained", "pretrained"]) == "pretrained"
    assert choose_served({"trained_top1": 0.2}, params, ["trained", "pretrained"]) == "trained"


def test_bad_settings_are_refused(photo_set):
    with pytest.raises(ValueError, match="serve_on"):
        EvaluateParams(serve_on="nowhere")
    with pytest.raises(ValueError, match="repeat"):
        EvaluateParams(benchmarks=[Benchmark(name="a", gallery="g", queries="q")] * 2)
    with pytest.raises(ValueError, match="names the store's own split"):
        Benchmark(name="shop", gallery="g", queries="q")
    with pytest.raises(ValueError, match="serve_metric"):
        EvaluateParams(serve_metric="top5")


def test_learned_localisation_labels_name_their_variant():
    from street2shop.retrieval.evaluation import LEARNED, LocaliseParams

    assert LocaliseParams(name=LEARNED, options={"factors": [1.1]}).label == LEARNED
    assert LocaliseParams(name=LEARNED, options={"factors": [1.1], "pooled": True}).label == f"{LEARNED}_pooled"
    assert LocaliseParams(name=LEARNED, options={"factors": [0.9, 1.2], "aspect": None}).label == f"{LEARNED}_x0.9-1.2_free"
    assert LocaliseParams(name="multicrop", options={"scales": [0.75]}).label == "multicrop"
