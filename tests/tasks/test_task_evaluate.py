"""The evaluate stage: αQE/DBA on and off, the gallery it used, the report it writes."""

from __future__ import annotations

import re

import pytest

from labelled_testing import publish_localiser, publish_shop
from street2shop.retrieval.evaluation import EvaluateParams
from street2shop.storage.names import REPORT_FILE
from street2shop.tasks.evaluate import run_evaluate
from street2shop.tasks.report import write_report


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory, tiny_checkpoint):
    store, data, checkpoint = publish_shop(tmp_path_factory.mktemp("home"), tiny_checkpoint)
    params = EvaluateParams(baselines=["colour_histogram", "hog"], ks=[1, 5, 10, 20])
    return store, data, checkpoint, run_evaluate(store, data, checkpoint, params)


def test_expansions_are_measured_per_category_and_overall(evaluated):
    store, _, _, result = evaluated
    metrics = store.read_table(result["metrics"]).to_pylist()
    models = {r["model"] for r in metrics}
    assert models == {"colour_histogram", "hog", "trained", "trained+qe", "trained+dba", "trained+dba+qe"}
    for model in models:
        got = {(r["category"], r["metric"], r["k"]) for r in metrics if r["model"] == model}
        for category in ("all", "tops", "shoes"):
            assert {(category, "top_k", 1), (category, "top_k", 20), (category, "map", None), (category, "wrong_colour", 1)} <= got


def test_manifest_says_which_gallery_the_figures_used(evaluated):
    store, _, _, result = evaluated
    figures = store.manifest(result["metrics"]).metrics
    assert figures["gallery"] == 8 and figures["gallery_items"] == 4 and figures["queries"] == 8
    assert "whole catalogue" in figures["gallery_scope"]
    assert {"trained+qe_top1", "trained+dba_map"} <= set(figures)


def test_stage_writes_a_self_contained_report_and_the_store_rebuilds_it(evaluated, tmp_path):
    store, _, _, result = evaluated
    html = store.file(result["metrics"], REPORT_FILE).read_text()
    assert "<td>trained+dba</td>" in html and "<td>hog</td>" in html
    assert not re.search(r"(src|href)=['\"]https?:", html)
    # recall plots for all, shoes, tops + 2 maps
    assert html.count("<svg ") == 3 + 2
    out = write_report(store, result["metrics"], tmp_path / "r.html")
    rebuilt = out.read_text()
    # Same seed, same vectors, same evaluation path: the same page.
    assert rebuilt.count("<img ") == html.count("<img ") > 8
    assert rebuilt.split("<h2>Embedding map")[0] == html.split("<h2>Embedding map")[0]


def test_unknown_expansion_is_rejected():
    with pytest.raises(ValueError, match="unknown expansion"):
        EvaluateParams(expansions=["qe", "magic"])


def test_a_benchmark_is_scored_beside_the_shop_and_versioned_by_its_content(tmp_path_factory, tiny_checkpoint, photo_set):
    import json

    from PIL import Image

    from street2shop.retrieval.evaluation import Benchmark
    from street2shop.sources.labelled import DataError
    from street2shop.storage.names import CHECKPOINT_FILE, SERVING_FILE

    store, data, checkpoint = publish_shop(tmp_path_factory.mktemp("home"), tiny_checkpoint)
    bench = Benchmark(name="real", gallery=str(photo_set["gallery"]), queries=str(photo_set["queries"]))
    params = EvaluateParams(baselines=["hog"], expansions=[], report=False, benchmarks=[bench])
    result = run_evaluate(store, data, checkpoint, params)
    rows = store.read_table(result["metrics"]).to_pylist()
    assert {(r["benchmark"], r["model"]) for r in rows} == {("shop", "trained"), ("shop", "hog"), ("real", "trained")}
    figures = store.manifest(result["metrics"]).metrics
    assert figures["real:queries"] == 8 and figures["served"] == "trained" and figures["served_on"] == "real:top20"
    served = json.loads(store.file(result["checkpoint"], SERVING_FILE).read_text())
    assert served["model"] == "trained" and served["localise"]["name"] == "none"
    assert store.file(result["checkpoint"], CHECKPOINT_FILE).read_bytes() == store.file(checkpoint, CHECKPOINT_FILE).read_bytes()
    assert run_evaluate(store, data, checkpoint, params).skipped
    # one benchmark photo changes: the stage re-scores it
    first_photo = sorted((photo_set["gallery"].parent / "photos").iterdir())[0]
    Image.open(first_photo).convert("RGB").save(first_photo, quality=60)
    again = run_evaluate(store, data, checkpoint, params)
    assert not again.skipped and again.version != result.version
    missing = params.model_copy(update={"benchmarks": [bench.model_copy(update={"gallery": str(tmp_path_factory.mktemp("x") / "none.csv")})]})
    with pytest.raises(DataError, match="CSV not found"):
        run_evaluate(store, data, checkpoint, missing)


def test_each_precision_is_scored_and_the_fastest_within_tolerance_is_served(tmp_path_factory, tiny_checkpoint, photo_set):
    """fp32 and int8 (calibrated on training photos) of the served model through the one
    evaluation path, on the shop split and the benchmark; serving.json names the chosen one
    with its calibration photos, and the engine built on that checkpoint runs it."""
    import json

    pytest.importorskip("openvino")
    from isolated import in_child, run_in_child

    if not in_child():
        return run_in_child(f"{__file__}::test_each_precision_is_scored_and_the_fastest_within_tolerance_is_served")
    from street2shop.retrieval.evaluation import Benchmark
    from street2shop.storage.names import SERVING_FILE

    store, data, checkpoint = publish_shop(tmp_path_factory.mktemp("home"), tiny_checkpoint)
    bench = Benchmark(name="real", gallery=str(photo_set["gallery"]), queries=str(photo_set["queries"]))
    params = EvaluateParams.model_construct(**{
        **EvaluateParams(baselines=[], expansions=[], report=False, benchmarks=[bench], calibration_photos=8,
                         precision_tolerance=1.0).__dict__,  # any int8 accuracy passes: the faster one must win
        "precisions": ["openvino_int8", "no_such_mode_is_skipped"],
    })
    with pytest.raises(ValueError, match="no_such_mode_is_skipped"):
        EvaluateParams.model_validate(params.model_dump())  # an unknown mode fails in the config
    params = params.model_copy(update={"precisions": ["openvino_int8"]})
    result = run_evaluate(store, data, checkpoint, params)
    figures = store.manifest(result["metrics"]).metrics
    for mode in ("openvino", "openvino_int8"):
        assert figures[f"precision:{mode}:images_per_s"] > 0
        assert 0 <= figures[f"precision:{mode}:real:top20"] <= 1 and 0 <= figures[f"precision:{mode}:top20"] <= 1
    # "served" figures are the served precision's
    assert figures["real:served_top20"] == figures[f"precision:{figures['served_precision']}:real:top20"]
    faster = max(("openvino", "openvino_int8"), key=lambda m: figures[f"precision:{m}:images_per_s"])
    assert figures["served_precision"] == faster
    rows = store.read_table(result["metrics"]).to_pylist()
    assert {("real", "served@openvino_int8"), ("shop", "served@openvino_int8")} <= {(r["benchmark"], r["model"]) for r in rows}
    serving = json.loads(store.file(result["checkpoint"], SERVING_FILE).read_text())
    assert serving["inference_mode"] == faster and len(serving["calibration"]) == 8
    from street2shop.tasks.data import load_annotated

    annotated = load_annotated(store, data).to_pylist()
    queries = {r["image_id"] for r in annotated if r["role"] == "street"}
    assert not set(serving["calibration"]) & queries  # never a query (this store has no train split)


def test_the_served_precision_is_the_fastest_within_tolerance_of_the_reference():
    from street2shop.retrieval.evaluation import choose_precision

    figures = {
        "openvino": {"images_per_s": 100.0, "real:top20": 0.70},
        "openvino_bf16": {"images_per_s": 150.0, "real:top20": 0.695},
        "openvino_int8": {"images_per_s": 200.0, "real:top20": 0.68},
    }
    assert choose_precision(figures, "openvino", "real:top20", 0.01) == "openvino_bf16"
    assert choose_precision(figures, "openvino", "real:top20", 0.05) == "openvino_int8"
    assert choose_precision(figures, "openvino", "real:top20", 0.0) == "openvino"
    # a faster reference stays served whatever the others score
    assert choose_precision({**figures, "openvino": {"images_per_s": 300.0, "real:top20": 0.1}}, "openvino", "real:top20", 0.0) == "openvino"


@pytest.mark.slow  # four localisations scored on the shop split and a benchmark, each timed
def test_the_localisations_are_scored_side_by_side_and_one_is_served_by_the_rule(tmp_path_factory, tiny_checkpoint, photo_set):
    """none, the configured grid and the learned localiser (a second pass over the box, and
    the box pooled from the first pass's map) at the served precision, on the shop split and
    the benchmark, with passes and ms per query; serving.json names the one the rule picks,
    the rule, the budget and every candidate's figures."""
    import json

    from street2shop.retrieval.evaluation import Benchmark, LocaliseParams, choose_localisation
    from street2shop.storage.names import SERVING_FILE

    store, data, checkpoint = publish_shop(tmp_path_factory.mktemp("home"), tiny_checkpoint)
    localiser = publish_localiser(store, checkpoint)
    bench = Benchmark(name="real", gallery=str(photo_set["gallery"]), queries=str(photo_set["queries"]))
    grid = LocaliseParams(name="multicrop", options={"scales": [0.75], "positions": "centre"})
    params = EvaluateParams(baselines=[], expansions=[], report=False, benchmarks=[bench], localise=grid, latency_budget_ms=1e6)
    result = run_evaluate(store, data, checkpoint, params, localiser=localiser)
    figures = store.manifest(result["metrics"]).metrics
    labels = ("multicrop", "none", "boxhead", "boxhead_pooled")
    assert {label: figures[f"localise:{label}:passes"] for label in labels} == {"multicrop": 2, "none": 1, "boxhead": 2, "boxhead_pooled": 1}
    for label in labels:
        assert figures[f"localise:{label}:ms_per_query"] > 0
        assert 0 <= figures[f"localise:{label}:top1"] <= 1 and 0 <= figures[f"localise:{label}:real:top20"] <= 1
    # the configured grid's figures are the evaluation's own (no second scoring)
    assert figures["localise:multicrop:real:top1"] == figures["real:trained_top1"]
    candidates = {label: {k: figures[f"localise:{label}:{k}"] for k in ("real:top1", "passes", "ms_per_query")} for label in labels}
    served = choose_localisation(candidates, "real:top1", 1e6)
    assert figures["localise"] == served and figures["real:served_top1"] == figures[f"localise:{served}:real:top1"]
    serving = json.loads(store.file(result["checkpoint"], SERVING_FILE).read_text())
    name, pooled = served.removesuffix("_pooled"), served.endswith("_pooled")
    assert serving["localise"]["name"] == name and bool(serving["localise"]["options"].get("pooled")) == pooled
    assert serving["localise"]["localiser"] == (str(localiser) if name == "boxhead" else None)
    assert set(serving["localisations"]) == set(labels) and serving["latency_budget_ms"] == 1e6
    assert "best top1 on real" in serving["localise_rule"] and figures["localise_rule"] == serving["localise_rule"]
    rows = store.read_table(result["metrics"]).to_pylist()
    assert {("shop", "served@boxhead"), ("real", "served@boxhead_pooled"), ("real", "served@none")} <= {(r["benchmark"], r["model"]) for r in rows}
    assert localiser in store.manifest(result["metrics"]).inputs  # a new localiser is a new evaluation


def test_the_report_shows_each_localisation_with_its_cost_and_the_rule(evaluated, tmp_path):
    store, _, _, result = evaluated
    html = store.file(result["metrics"], REPORT_FILE).read_text()
    section = html.split("<h2>Query localisation")[1].split("<h2>")[0]
    assert "<td>none (served)</td><td>1</td>" in section and "best top1 on shop" in section
    assert write_report(store, result["metrics"], tmp_path / "r.html").read_text().count("<td>none (served)</td>") == 1


def test_the_served_localisation_is_the_most_accurate_within_the_budget():
    from street2shop.retrieval.evaluation import choose_localisation

    figures = {
        "multicrop": {"real:top1": 0.385, "passes": 11, "ms_per_query": 90.0},
        "none": {"real:top1": 0.20, "passes": 1, "ms_per_query": 8.0},
        "boxhead": {"real:top1": 0.41, "passes": 2, "ms_per_query": 18.0},
        "boxhead_pooled": {"real:top1": 0.41, "passes": 1, "ms_per_query": 9.0},
    }
    assert choose_localisation(figures, "real:top1", None) == "boxhead_pooled"  # a tie goes to fewer passes
    assert choose_localisation(figures, "real:top1", 10.0) == "boxhead_pooled"
    assert choose_localisation(figures, "real:top1", 8.5) == "none"
    assert choose_localisation(figures, "real:top1", 1.0) == "none"  # none within the budget: the fastest
    worse = {**figures, "boxhead": {**figures["boxhead"], "real:top1": 0.3}, "boxhead_pooled": {**figures["boxhead_pooled"], "real:top1": float("nan")}}
    assert choose_localisation(worse, "real:top1", None) == "multicrop"
    assert choose_localisation(worse, "real:top1", 50.0) == "boxhead"


def test_localisation_candidates_are_checked():
    from street2shop.retrieval.evaluation import LocaliseParams

    with pytest.raises(ValueError, match="needs the localise stage's artifact"):
        EvaluateParams(localise=LocaliseParams(name="boxhead"))
    with pytest.raises(ValueError, match="candidates repeat"):
        EvaluateParams(localise_candidates=[LocaliseParams(name="none"), LocaliseParams(name="none")])
    with pytest.raises(ValueError, match="learned_candidates"):
        EvaluateParams(localise_candidates=[LocaliseParams(name="boxhead")])
    with pytest.raises(ValueError, match="greater than 0"):
        EvaluateParams(latency_budget_ms=0)
