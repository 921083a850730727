"""End to end with library backbones: the whole pipeline on the small demo shop with a tiny
timm ViT and a tiny open_clip tower (saved to a folder, loaded by name as a real one is), then
``/search`` served in OpenVINO int8 and ``street2shop eval`` on the published model."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from backbone_testing import save_tiny_open_clip, save_tiny_timm_vit
from street2shop.cli import app as cli
from street2shop.flows.demo import TINY, demo_config, serving_demo_shop
from street2shop.flows.pipeline import pipeline
from street2shop.service.app import create_app
from street2shop.storage.promotions import serving_of
from street2shop.storage.store import ArtifactStore
from street2shop.tasks.catalog import load_checkpoint

pytest.importorskip("open_clip")  # the clip extra (CI installs it with the test extra)
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_harness")]

SAVERS = {"timm_vit": save_tiny_timm_vit, "open_clip": save_tiny_open_clip}


@pytest.fixture(scope="module", params=sorted(SAVERS))
def run(request, tmp_path_factory):
    """(backbone name, home, pipeline result): every backbone-taking stage given the one name."""
    name = SAVERS[request.param](tmp_path_factory.mktemp(request.param) / "model")
    home = tmp_path_factory.mktemp("home")
    size = TINY.model_copy(update={
        "backbone": name, "train_image_size": 64, "precisions": ["openvino_int8"],
        "noise_features": "cnn", "dedup_methods": ["hash", "embedding"],
    })
    with serving_demo_shop(home, size) as (shop_dir, url):
        cfg = demo_config(shop_dir, url, size, progress=False)
        cfg = cfg.model_copy(update={
            "noise": cfg.noise.model_copy(update={"backbone": name, "image_size": 64}),
            # random weights: only identical photos are copies
            "dedup": cfg.dedup.model_copy(update={"embed_backbone": name, "embed_image_size": 64, "min_similarity": 1.0}),
        })
        yield name, home, pipeline(str(home), cfg)


def test_every_stage_runs_with_the_library_backbone(run) -> None:
    name, home, result = run
    assert result.ran == ["crawl", "noise", "dedup", "views", "train[0]", "mine[1]", "train[1]", "localise", "evaluate", "index"]
    store = ArtifactStore(home)
    assert store.manifest(store.latest("noise", "noise_scores")).params["backbone"] == name
    assert store.manifest(store.latest("dedup", "splits")).params["embed_backbone"] == name
    checkpoint = store.latest("evaluate", "checkpoint")
    assert load_checkpoint(store, checkpoint).config.backbone == name
    metrics = result.stage("evaluate")["metrics"]
    assert 0.0 <= metrics["trained_top1"] <= metrics["trained_top20"] <= 1.0
    assert "openvino_int8" in serving_of(store, checkpoint)["precisions"]  # int8 was scored


def test_search_serves_the_library_backbone_in_int8(run) -> None:
    _, home, _ = run
    store = ArtifactStore(home)
    ids = store.read_table(store.latest("index", "index_ids")).to_pylist()
    images = {r["image_id"]: r for r in store.read_table(store.latest("crawl", "images")).to_pylist()}
    photo = images[ids[0]["image_id"]]
    app = create_app(home, street_in_background=False, inference_mode="openvino_int8", localise={"name": "none"})
    with TestClient(app) as client:
        assert client.get("/health").status_code == 200
        response = client.post("/search", params={"k": 3}, files={"image": ("q.jpg", (store.home / photo["path"]).read_bytes(), "image/jpeg")})
    assert response.status_code == 200, response.text
    assert app.state.served.engine.inference_mode == "openvino_int8"
    top = response.json()["results"][0]
    assert top["item_id"] == photo["item_id"] and top["score"] > 0.95  # the photo itself is indexed


def test_eval_command_scores_the_served_library_backbone(run, photo_set) -> None:
    _, home, _ = run
    result = CliRunner().invoke(cli, ["eval", "--home", str(home), "--gallery", str(photo_set["gallery"]),
                                      "--queries", str(photo_set["queries"]), "--json"])
    assert result.exit_code == 0, result.output
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    assert figures["overall"]["n_queries"] == 8 and 0.0 <= figures["overall"]["top1"] <= figures["overall"]["top5"] <= 1.0
