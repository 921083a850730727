"""The outfit stages in the pipeline of a demo shop of real garments (tiny backbone), and
``street2shop run --stage`` for each of them."""

from __future__ import annotations

import pytest

from street2shop.flows.demo import TINY, demo_config
from street2shop.flows.pipeline import pipeline
from street2shop.storage.store import ArtifactStore

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_harness")]


@pytest.fixture(scope="module")
def demo(real_tiny_demo):
    return real_tiny_demo


def test_the_pipeline_runs_the_outfit_stages_after_the_rest(demo):
    _, cfg, first = demo
    assert cfg.outfits is not None and cfg.outfits.features.backbone == "tiny"
    ran = first.ran
    # after every stage of the street-to-shop pipeline, in this order (other optional stages,
    # such as the looks stages, may follow)
    outfit = [ran.index(s) for s in ("features", "outfit_train", "outfit_evaluate")]
    assert outfit == sorted(outfit) and outfit == list(range(outfit[0], outfit[0] + 3))
    assert outfit[0] > ran.index("index")
    assert first.stage("outfit_train")["metrics"]["outfits_test"] > 0
    figures = first.stage("outfit_evaluate")["metrics"]
    assert figures["random_auc"] == 0.5 and 0 <= figures["type_aware_sat_auc"] <= 1 and figures["served"] == "type_aware_sat"
    assert first.stage("crawl")["metrics"]["outfits"] > 0


def test_a_rerun_skips_them_and_run_stage_runs_each_alone(demo, tmp_path):
    from typer.testing import CliRunner

    from street2shop.cli import app

    home, cfg, _ = demo
    assert pipeline(str(home), cfg).ran == []
    config = tmp_path / "pipeline.yaml"
    cfg.to_file(config)
    store = ArtifactStore(home)
    before = len(store.manifests())
    for stage in ("features", "outfit_train", "outfit_evaluate"):
        result = CliRunner().invoke(app, ["run", "--config", str(config), "--stage", stage, "--home", str(home)])
        assert result.exit_code == 0, result.output
        assert "reused" in result.output
    assert len(store.manifests()) == before


def test_a_config_without_outfits_has_no_outfit_stages(tmp_path):
    from typer.testing import CliRunner

    from street2shop.cli import app

    cfg = demo_config(tmp_path, "http://127.0.0.1:1", TINY, progress=False)
    assert cfg.outfits is None
    config = tmp_path / "pipeline.yaml"
    cfg.to_file(config)
    result = CliRunner().invoke(app, ["run", "--config", str(config), "--stage", "outfit_train", "--home", str(tmp_path)])
    assert result.exit_code != 0 and "needs an outfits: section" in result.output
