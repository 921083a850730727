"""The shop-the-look stages in the pipeline of a demo shop of real garments (tiny backbone)."""

from __future__ import annotations

import pytest

from street2shop.storage import names as N
from street2shop.storage.store import ArtifactStore

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_harness")]


def test_the_pipeline_runs_the_looks_stages_last(real_tiny_demo):
    home, cfg, first = real_tiny_demo
    assert cfg.looks is not None and cfg.looks.features == cfg.outfits.features
    assert first.ran[-3:] == ["features[snaps]", "looks_train", "looks_evaluate"]
    assert first.ran.index("looks_train") > first.ran.index("outfit_evaluate")
    assert first.stage("crawl")["metrics"]["snaps"] > 0
    trained = first.stage("looks_train")["metrics"]
    assert trained["posts_test"] > 0 and trained["leaking_keys"] == 0
    figures = first.stage("looks_evaluate")["metrics"]
    assert figures["served"] == trained["served"] and figures["test_posts"] == trained["posts_test"]
    assert "street2shop" in trained["candidates"]  # the served embedder is a candidate
    for model in ("backbone", "cgd_softmax", "cgd_arcface", "street2shop", "cgd_arcface_s2s"):  # the served embedder as a baseline
        assert 0.0 <= figures[f"{model}_snap_to_items_map6"] <= figures[f"{model}_snap_to_items_hit6"] <= 1.0, model
    # the looks model reads the features of the items' photos the outfit stages made, not its own copy
    store = ArtifactStore(home)
    model = store.latest(N.LOOKS_TRAIN, N.LOOKS_MODEL)
    outfit_model = store.latest(N.OUTFIT_TRAIN, N.OUTFIT_MODEL)
    shared = {r for r in store.manifest(outfit_model).inputs if r.name == N.PHOTO_FEATURES}
    assert shared <= set(store.manifest(model).inputs)
