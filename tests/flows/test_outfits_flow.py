"""The outfit stages in the pipeline of a demo shop of real garments (tiny backbone), and
``street2shop run --stage`` for each of them."""

from __future__ import annotations

import pytest

from street2shop.flows.demo import TINY, demo_config, serving_demo_shop
from street2shop.flows.pipeline import pipeline
from street2shop.storage.store import ArtifactStore

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_harness")]

REAL_TINY = TINY.model_copy(update={"products": 40, "garments": "real", "image_size": 48})


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    home = tmp_path_factory.mktemp("outfit-home")
    with serving_demo_shop(home, REAL_TINY) as (shop_dir, url):
        cfg = demo_config(shop_dir, url, REAL_TINY, progress=False)
        first = pipeline(str(home), cfg)
        yield home, cfg, first


def test_the_pipeline_runs_the_outfit_stages_after_the_rest(demo):
    _, cfg, first = demo
    assert cfg.outfits is not None and cfg.outfits.features.backbone == "tiny"
    assert first.ran[-3:] == ["features", "outfit_train", "outfit_evaluate"]
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
