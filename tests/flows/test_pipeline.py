"""End to end: the whole pipeline on a small demo shop, then the skip/re-run rules."""

from __future__ import annotations

import pytest

from street2shop.flows.demo import TINY, demo_config, serving_demo_shop
from street2shop.flows.pipeline import pipeline
from street2shop.storage.catalog import query
from street2shop.storage.store import ArtifactStore

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_harness")]

ALL = ["crawl", "noise", "dedup", "views", "train[0]", "mine[1]", "train[1]", "localise", "evaluate", "index"]


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    home = tmp_path_factory.mktemp("home")
    with serving_demo_shop(home, TINY) as (shop_dir, url):
        cfg = demo_config(shop_dir, url, TINY, progress=False)
        first = pipeline(str(home), cfg)
        yield home, cfg, first


def test_first_run_publishes_every_stage(demo) -> None:
    home, _, first = demo
    assert first.ran == ALL
    store = ArtifactStore(home)
    for stage, name in [("crawl", "items"), ("crawl", "images"), ("noise", "noise_scores"), ("dedup", "splits"),
                        ("train", "checkpoint"), ("mine", "triplets"), ("evaluate", "metrics"), ("index", "index_ids")]:
        assert store.latest(stage, name), (stage, name)
    metrics = first.stage("evaluate")["metrics"]
    assert 0.0 <= metrics["trained_top1"] <= metrics["trained_top20"] <= 1.0
    assert "colour_histogram_top20" in metrics and "hog_top20" in metrics
    assert first.stage("index")["metrics"]["factory"] == "Flat"


def test_the_demo_publishes_a_localiser_that_loads_and_is_scored_against_truth(demo) -> None:
    from street2shop.models.localise import load_localiser
    from street2shop.storage.names import LOCALISE, LOCALISER, LOCALISER_FILE, PSEUDO_BOXES

    home, _, first = demo
    store = ArtifactStore(home)
    head, meta = load_localiser(store.file(store.latest(LOCALISE, LOCALISER), LOCALISER_FILE))
    assert meta["backbone"] == TINY.backbone and meta["input_size"] == [TINY.train_image_size] * 2 and meta["map_stride"] >= 1
    figures = first.stage("localise")["metrics"]
    assert figures["pseudo_boxes"] == store.read_table(store.latest(LOCALISE, PSEUDO_BOXES)).num_rows > 0
    assert figures["truth"] == "truth/boxes.csv" and figures["test_iou_photos"] > 0 and 0 <= figures["test_iou_median"] <= 1
    assert meta["figures"]["pseudo_boxes"] == figures["pseudo_boxes"] and head.categories


def test_sql_answers_from_the_artifacts(demo) -> None:
    home, _, _ = demo
    rows = query(ArtifactStore(home), "select stage, count(*) as n from versions group by stage order by stage").to_pylist()
    assert {r["stage"] for r in rows} == {"crawl", "noise", "dedup", "views", "train", "mine", "localise", "evaluate", "index"}
    n_items = query(ArtifactStore(home), "select count(*) as n from latest_items").to_pylist()[0]["n"]
    assert n_items >= TINY.products


def test_second_run_with_nothing_changed_skips_every_stage(demo) -> None:
    home, cfg, _ = demo
    store = ArtifactStore(home)
    before = len(store.manifests())
    again = pipeline(str(home), cfg)
    assert again.ran == []
    assert len(store.manifests()) == before


def test_changed_parameter_reruns_that_stage_and_those_after(demo) -> None:
    home, cfg, first = demo
    changed = cfg.model_copy(update={"evaluate": cfg.evaluate.model_copy(update={"ks": [1, 5, 20]})})
    again = pipeline(str(home), changed)
    assert again.ran == ["evaluate", "index"]
    assert again.stage("train[1]")["version"] == first.stage("train[1]")["version"]


def test_cli_reruns_one_stage_from_the_latest_upstream_versions(demo, tmp_path) -> None:
    from typer.testing import CliRunner

    from street2shop.cli import app

    home, cfg, _ = demo
    config = tmp_path / "pipeline.yaml"
    cfg.to_file(config)
    store = ArtifactStore(home)
    before = len(store.manifests())
    runner = CliRunner()
    for stage in ("dedup", "localise"):  # localise alone: from the newest split, the same version
        result = runner.invoke(app, ["run", "--config", str(config), "--stage", stage, "--home", str(home)])
        assert result.exit_code == 0, result.output
        assert "reused" in result.output
    assert len(store.manifests()) == before
    listed = runner.invoke(app, ["versions", "train", "--home", str(home)])
    assert listed.exit_code == 0 and "checkpoint" in listed.output
    bad = runner.invoke(app, ["run", "--config", str(config), "--stage", "nope", "--home", str(home)])
    assert bad.exit_code != 0 and "unknown stage" in bad.output
