"""``street2shop run --stage``: every declared stage beside the pipeline runs alone from the
newest published inputs through the same runner the pipeline calls, and one whose config
section is missing is refused in one line."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from street2shop.cli import app
from street2shop.flows.demo import TINY, demo_config
from street2shop.flows.pipeline import pipeline
from street2shop.storage import names as N
from street2shop.storage.store import ArtifactStore

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_harness")]

BESIDE = (N.FEATURES, N.OUTFIT_TRAIN, N.OUTFIT_EVALUATE, N.LOOKS_TRAIN, N.LOOKS_EVALUATE)


def test_a_rerun_skips_them_and_run_stage_runs_each_alone(real_tiny_demo, tmp_path):
    home, cfg, _ = real_tiny_demo
    assert pipeline(str(home), cfg).ran == []
    config = tmp_path / "pipeline.yaml"
    cfg.to_file(config)
    store = ArtifactStore(home)
    before = len(store.manifests())
    for stage in BESIDE:
        result = CliRunner().invoke(app, ["run", "--config", str(config), "--stage", stage, "--home", str(home)])
        assert result.exit_code == 0, result.output
        assert f"{stage}: version" in result.output and "reused" in result.output
    assert len(store.manifests()) == before


@pytest.mark.parametrize(("stage", "section"), [(N.OUTFIT_TRAIN, "an outfits:"), (N.LOOKS_TRAIN, "a looks:"), (N.FEATURES, "an outfits:")])
def test_a_config_without_their_section_refuses_them(tmp_path, stage, section):
    cfg = demo_config(tmp_path, "http://127.0.0.1:1", TINY, progress=False)
    assert cfg.outfits is None and cfg.looks is None
    config = tmp_path / "pipeline.yaml"
    cfg.to_file(config)
    result = CliRunner().invoke(app, ["run", "--config", str(config), "--stage", stage, "--home", str(tmp_path)])
    assert result.exit_code != 0 and f"needs {section} section" in result.output
