"""``street2shop eval`` and ``street2shop index --catalog`` (street2shop.cli.byo)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from street2shop.cli.byo import eval_command, index_command
from street2shop.flows.catalog import index_catalog
from street2shop.storage.store import ArtifactStore


# ------------------------------------------------------------------ commands


def _app(command, name: str) -> typer.Typer:
    app = typer.Typer()
    app.command(name)(command)

    @app.callback()
    def _root() -> None:  # a callback keeps typer from collapsing a one-command app
        pass

    return app


def test_eval_command_prints_one_json_object_and_writes_the_report(photo_set, tiny_checkpoint, tmp_path):
    out = tmp_path / "report.html"
    result = CliRunner().invoke(
        _app(eval_command, "eval"),
        ["eval", "--gallery", str(photo_set["gallery"]), "--queries", str(photo_set["queries"]),
         "--model", str(tiny_checkpoint), "--json", "--report", str(out)],
    )
    assert result.exit_code == 0, result.output
    figures = json.loads(result.stdout)
    assert set(figures) == {"overall", "per_category", "inference_mode", "localise"}
    assert figures["inference_mode"] in ("openvino", "eager") and figures["localise"]["name"] == "none"  # a named model: fp32, whole photo
    assert {"top1", "top5", "top10", "top20", "map", "wrong_colour_top1"} <= set(figures["overall"])
    assert set(figures["per_category"]) == {"shoes", "tops"}
    assert figures["overall"]["n_queries"] == 8
    # Four items: the correct one is always within the top 4.
    assert figures["overall"]["top5"] == 1.0
    html = out.read_text()
    assert html.count("<img ") >= 8 and "http://" not in html.replace("http://www.w3.org", "")


def test_eval_command_reports_bad_data_as_an_error(photo_set, tiny_checkpoint, tmp_path):
    result = CliRunner().invoke(
        _app(eval_command, "eval"),
        ["eval", "--gallery", str(tmp_path / "none.csv"), "--queries", str(photo_set["queries"]), "--model", str(tiny_checkpoint)],
    )
    assert result.exit_code == 2
    assert "CSV not found" in result.output


@pytest.mark.slow  # a local cluster of 2 worker processes, each importing torch and Prefect
@pytest.mark.usefixtures("prefect_harness")
def test_index_command_can_embed_on_a_local_dask_cluster(photo_set, tiny_checkpoint, tmp_path):
    args = ["index", "--catalog", str(photo_set["gallery"]), "--model", str(tiny_checkpoint)]
    result = CliRunner().invoke(_app(index_command, "index"), [*args, "--home", str(tmp_path / "dask"), "--dask-workers", "2"])
    assert result.exit_code == 0, result.output
    fanned, alone = ArtifactStore(tmp_path / "dask"), ArtifactStore(tmp_path / "alone")
    index_catalog(alone, photo_set["gallery"], model=tiny_checkpoint)
    assert fanned.manifests("embed_chunk"), "the vectors did not come from the Dask flow"
    ref = fanned.latest("catalog_embed", "embeddings")
    assert ref == alone.latest("catalog_embed", "embeddings")  # same version wherever it was computed
    a, b = fanned.read_table(ref), alone.read_table(ref)
    assert a.column("image_id").to_pylist() == b.column("image_id").to_pylist()
    np.testing.assert_allclose(np.stack(a.column("vector").to_numpy(zero_copy_only=False)),
                               np.stack(b.column("vector").to_numpy(zero_copy_only=False)), atol=1e-5)


def test_index_command_without_a_published_model_says_so(photo_set, tmp_path):
    result = CliRunner().invoke(_app(index_command, "index"), ["index", "--catalog", str(photo_set["gallery"]), "--home", str(tmp_path / "h")])
    assert result.exit_code == 2
    assert "no published version of train/checkpoint" in result.output


@pytest.mark.slow  # int8 quantisation of the plain and one-pass graphs, in the stage and in each eval
def test_eval_runs_the_served_precision_and_localisation_and_flags_override_them(photo_set, tiny_checkpoint, tmp_path):
    """A store whose evaluate stage served int8 (calibrated on training photos) and the learned
    localiser: `eval` rebuilds that int8 model from serving.json's calibration, loads the
    localiser from its artifact, says both, and scores as the service would; the flags
    override either."""
    pytest.importorskip("openvino")
    pytest.importorskip("nncf")
    from isolated import in_child, run_in_child

    if not in_child():
        return run_in_child(f"{__file__}::test_eval_runs_the_served_precision_and_localisation_and_flags_override_them")
    from labelled_testing import publish_localiser, publish_shop

    from street2shop.retrieval.evaluation import Benchmark, EvaluateParams, LocaliseParams
    from street2shop.storage.names import SERVING_FILE
    from street2shop.tasks.evaluate import run_evaluate

    store, data, checkpoint = publish_shop(tmp_path / "home", tiny_checkpoint)
    localiser = publish_localiser(store, checkpoint)
    bench = Benchmark(name="real", gallery=str(photo_set["gallery"]), queries=str(photo_set["queries"]))
    pooled = LocaliseParams(name="boxhead", options={"factors": [1.1], "pooled": True})
    params = EvaluateParams(baselines=[], expansions=[], report=False, benchmarks=[bench], calibration_photos=8, precision_tolerance=1.0,
                            precisions=["openvino_int8"], localise_candidates=[], learned_candidates=[pooled], latency_budget_ms=1e6)
    result = run_evaluate(store, data, checkpoint, params, localiser=localiser)
    serving = json.loads(store.file(result["checkpoint"], SERVING_FILE).read_text())
    figures = store.manifest(result["metrics"]).metrics
    args = ["eval", "--home", str(tmp_path / "home"), "--gallery", str(photo_set["gallery"]), "--queries", str(photo_set["queries"])]
    app = _app(eval_command, "eval")

    said = CliRunner().invoke(app, args)
    assert said.exit_code == 0, said.output
    assert f"precision: {serving['inference_mode']} (as served)" in said.output
    assert f"query localisation: {serving['localise']['name']}" in said.output.replace("_pooled", "")
    got = json.loads(CliRunner().invoke(app, [*args, "--json"]).stdout)
    assert got["inference_mode"] == serving["inference_mode"] and got["localise"] == serving["localise"]
    # the benchmark is the stage's: eval scores exactly what the stage scored for the served variant
    assert got["overall"]["top1"] == pytest.approx(figures["real:served_top1"], abs=1e-9)
    assert got["overall"]["top20"] == pytest.approx(figures["real:served_top20"], abs=1e-9)

    # the learned localiser (loaded from the newest localise artifact) gives the stage's figures of it
    learned = json.loads(CliRunner().invoke(app, [*args, "--json", "--localise", pooled.model_dump_json()]).stdout)
    assert learned["inference_mode"] == serving["inference_mode"] and learned["localise"]["name"] == "boxhead"
    assert learned["overall"]["top1"] == pytest.approx(figures["localise:boxhead_pooled:real:top1"], abs=1e-9)
    assert learned["overall"]["map"] == pytest.approx(figures["localise:boxhead_pooled:real:map"], abs=1e-9)
    override = json.loads(CliRunner().invoke(app, [*args, "--json", "--inference-mode", "eager", "--localise", '{"name": "none"}']).stdout)
    assert override["inference_mode"] == "eager" and override["localise"]["name"] == "none"
