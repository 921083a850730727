"""bench/served_localisation.py and bench/eval_speed.py on a tiny store: the served model's
localisations side by side on a benchmark, and `street2shop eval` timed on a set built from it."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import pytest
from PIL import Image
from labelled_testing import publish_localiser, publish_shop

from street2shop.retrieval.evaluation import Benchmark, EvaluateParams, LocaliseParams
from street2shop.tasks.evaluate import run_evaluate

BENCH = Path(__file__).resolve().parents[2] / "bench"


@pytest.fixture()
def bench(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))  # the scripts import their sibling ``_results``
    return lambda name: importlib.import_module(name)


@pytest.fixture()
def served_store(tmp_path, tiny_checkpoint, photo_set):
    """A store whose evaluate stage served the tiny model with the learned localiser as a candidate."""
    store, data, checkpoint = publish_shop(tmp_path / "home", tiny_checkpoint)
    localiser = publish_localiser(store, checkpoint)
    real = Benchmark(name="real", gallery=str(photo_set["gallery"]), queries=str(photo_set["queries"]))
    params = EvaluateParams(baselines=[], expansions=[], report=False, benchmarks=[real],
                            localise=LocaliseParams(name="multicrop", options={"scales": [0.75], "positions": "centre"}))
    run_evaluate(store, data, checkpoint, params, localiser=localiser)
    return tmp_path / "home", localiser


@pytest.mark.slow  # the stage, then four localisations scored again by the bench
def test_the_bench_scores_every_localisation_of_the_served_model_side_by_side(bench, served_store, photo_set, tmp_path, capsys):
    home, localiser = served_store
    out = tmp_path / "results.jsonl"
    grid = json.dumps({"scales": [0.75], "positions": "centre"})
    assert bench("served_localisation").main(["--home", str(home), "--benchmark", str(photo_set["gallery"].parent),
                                              "--grid", grid, "--budget-ms", "1e6", "--out", str(out)]) == 0
    record = json.loads(out.read_text())
    name = record["benchmark"]
    assert record["localiser"] == str(localiser) and record["queries"] == 8
    assert {k: v["passes"] for k, v in record["figures"].items()} == {"multicrop": 2, "none": 1, "boxhead": 2, "boxhead_pooled": 1}
    best = max(record["figures"].values(), key=lambda f: f[f"{name}:top1"])[f"{name}:top1"]
    assert record["figures"][record["served"]][f"{name}:top1"] == best  # the rule, with a budget nothing exceeds
    printed = capsys.readouterr().out
    assert "| boxhead_pooled" in printed and "(served by the rule)" in printed


@pytest.mark.slow  # two `street2shop eval` processes
def test_eval_speed_builds_the_set_from_mirrored_queries_and_distractors_and_times_eval(bench, served_store, photo_set, tmp_path):
    home, _ = served_store
    others = tmp_path / "others"
    others.mkdir()
    for i in range(6):
        Image.new("RGB", (30, 40), (40 * i, 90, 200 - 30 * i)).save(others / f"{i}.jpg")
    out = tmp_path / "speed.jsonl"
    assert bench("eval_speed").main(["--home", str(home), "--benchmark", str(photo_set["gallery"].parent), "--queries", "12",
                                     "--gallery", "14", "--distractors", str(others), "--localise", '{"name": "none"}', "--out", str(out)]) == 0
    record = json.loads(out.read_text())
    assert record["set"] == {"benchmark": photo_set["gallery"].parent.name, "queries": 12, "gallery": 14,
                             "mirrored_queries": 4, "distractors": 6, "distractors_from": "others"}
    served, whole = record["rows"]
    assert served["run"] == "as served" and whole["localise"]["name"] == "none"
    assert served["queries"] == whole["queries"] == 12 and served["gallery"] == 14 and served["seconds"] > 0 < served["cpu_seconds"]
    assert 0 <= whole["top1"] <= whole["top20"] <= 1
    for queries, gallery in ((17, 8), (8, 15)):  # twice the queries (mirrored), the gallery and the distractors at most
        with pytest.raises(SystemExit, match="at most 16 queries and 14 gallery photos"):
            bench("eval_speed").build_set(photo_set["gallery"].parent, queries, gallery, tmp_path / "x", others)


@pytest.mark.slow  # the stage, then four localisations scored by the bench
def test_a_stand_in_head_times_the_learned_rows_of_a_store_without_a_localiser(bench, tmp_path, tiny_checkpoint, photo_set):
    store, data, checkpoint = publish_shop(tmp_path / "home", tiny_checkpoint)
    run_evaluate(store, data, checkpoint, EvaluateParams(baselines=[], expansions=[], report=False))
    out = tmp_path / "results.jsonl"
    args = ["--home", str(tmp_path / "home"), "--benchmark", str(photo_set["gallery"].parent), "--grid", '{"scales": [0.75]}']
    assert bench("served_localisation").main([*args, "--out", str(out)]) == 0
    assert bench("served_localisation").main([*args, "--stand-in", "--out", str(out)]) == 0
    without, stand_in = (json.loads(line) for line in out.read_text().splitlines())
    assert without["localiser"] is None and set(without["figures"]) == {"multicrop", "none"}
    assert stand_in["localiser"].startswith("stand-in") and {"boxhead", "boxhead_pooled"} <= set(stand_in["figures"])
    assert stand_in["figures"]["boxhead"]["passes"] == 2 and stand_in["figures"]["boxhead_pooled"]["passes"] == 1


def test_one_pass_bench_times_the_plain_and_the_one_pass_side_by_side(bench, tmp_path, tiny_checkpoint, photo_set):
    store, data, checkpoint = publish_shop(tmp_path / "home", tiny_checkpoint)
    run_evaluate(store, data, checkpoint, EvaluateParams(baselines=[], expansions=[], report=False))
    queries = tmp_path / "set" / "queries"
    queries.mkdir(parents=True)
    for i in range(4):
        Image.new("RGB", (30, 44), (60 * i, 120, 90)).save(queries / f"{i}.jpg")
    out = tmp_path / "one_pass.jsonl"
    assert bench("one_pass").main(["--home", str(tmp_path / "home"), "--benchmark", str(tmp_path / "set"), "--modes", "eager,openvino",
                                   "--repeats", "1", "--out", str(out)]) == 0
    record = json.loads(out.read_text())
    assert record["photos"] == 4 and set(record["ms_per_photo"]) == {"eager", "openvino"}
    for row in record["ms_per_photo"].values():
        assert set(row) == {"plain pass", "one pass (+ map)", "box head", "detect (head + boxes + NMS)"} and min(row.values()) > 0
