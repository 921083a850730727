"""The runners of the declared stages: ``street2shop run --stage`` runs every stage beside the
pipeline alone from the newest published inputs through the same runner the pipeline calls,
one whose config section is missing is refused in one line, and a stage declared with only
a task runs through the generic runner."""

from __future__ import annotations

import pyarrow as pa
import pytest
from prefect import task
from prefect.cache_policies import NO_CACHE
from typer.testing import CliRunner

from street2shop.cleaning.noise import NoiseParams
from street2shop.cli import app
from street2shop.flows.demo import TINY, demo_config
from street2shop.flows.pipeline import pipeline
from street2shop.flows.runners import Run, run_stages
from street2shop.storage import names as N
from street2shop.storage.stages import Stage
from street2shop.storage.store import ArtifactNotFound, ArtifactRef, ArtifactStore
from street2shop.tasks.stage import StageResult, run_stage

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


# -- the generic runner: a stage declared with only a task -----------------------------------------
@task(name="echo", cache_policy=NO_CACHE)
def echo_task(home: str, params: NoiseParams, photos: ArtifactRef) -> StageResult:
    """A stage for the test: one row per input photo, published under its declared output."""
    store = ArtifactStore(home)

    def compute(writers) -> None:
        table = store.read_table(photos).select(["image_id"])
        writers["echo"].write_table(table, table.schema)
        writers["echo"].metrics["rows"] = table.num_rows

    return run_stage(store, "echo", "1", ("echo",), compute, inputs={"photos": photos}, params=params)


ECHO = Stage("echo", "street2shop.storage.store:content_version", None, "noise", (f"{N.CRAWL}/photos",), ("echo",),
             task=f"{__name__}:echo_task")


def test_a_stage_declared_with_a_task_runs_from_its_declared_inputs(tmp_path):
    home = str(tmp_path)
    cfg = demo_config(tmp_path, "http://127.0.0.1:1", TINY, progress=False)
    with pytest.raises(ArtifactNotFound, match="echo reads crawl/photos: run crawl first"):
        run_stages(Run(home, cfg, alone=True), (ECHO,))
    with ArtifactStore(home).publish(N.CRAWL, ["photos"], "c1") as w:
        table = pa.table({"image_id": ["a", "b"], "item_id": ["i", "i"]})
        w["photos"].write_table(table, table.schema)
    run = Run(home, cfg, alone=True)
    run_stages(run, (ECHO,))
    (label, first), = run.steps
    assert label == "echo" and first.metrics["rows"] == 2 and not first.skipped
    assert ArtifactStore(home).manifest(first["echo"]).inputs == [ArtifactRef(stage=N.CRAWL, name="photos", version="c1")]
    again = Run(home, cfg, alone=True)
    run_stages(again, (ECHO,))
    assert again.steps[0][1].skipped and again.steps[0][1].version == first.version
