"""The outfit stages in the pipeline of a demo shop of real garments (tiny backbone)."""

from __future__ import annotations

import pytest


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
    assert figures["random_auc"] == 0.5 and 0 <= figures["type_aware_sat_auc"] <= 1
    assert figures["served"] == first.stage("outfit_train")["metrics"]["served"]
    assert first.stage("crawl")["metrics"]["outfits"] > 0
