"""The promotion rule (street2shop.tasks.promote), on hand-made versions."""

from __future__ import annotations

import math

import pytest

from promotion_testing import publish_model
from street2shop.storage.promotions import promotion_log, served_index
from street2shop.storage.store import ArtifactNotFound, ArtifactRef, ArtifactStore
from street2shop.tasks.promote import PromoteParams, decide, promote


@pytest.fixture
def store(tmp_path) -> ArtifactStore:
    return ArtifactStore(tmp_path)


def test_first_version_is_promoted_and_served(store) -> None:
    first = publish_model(store, 0.5, "a")
    assert served_index(store) is None
    d = promote(store, first)
    assert d.promoted and d.reason.startswith("first version") and d.previous is None
    assert d.value == 0.5 and d.metric == "served_top20"  # an evaluation from before the served model: its trained figure
    assert served_index(store) == first


def test_candidate_must_beat_the_served_one_by_more_than_the_margin(store) -> None:
    params = PromoteParams(margin=0.125)
    served = publish_model(store, 0.5, "a")
    promote(store, served, params)
    # exactly the margin better (0.625 - 0.5 == 0.125 in binary floating point): not enough
    same = publish_model(store, 0.625, "b")
    d = promote(store, same, params)
    assert not d.promoted and "not more than the margin" in d.reason
    assert (d.previous, d.previous_value) == (served, 0.5)
    assert served_index(store) == served
    worse = publish_model(store, 0.25, "c")
    assert not promote(store, worse, params).promoted
    better = publish_model(store, 0.75, "d")
    d = promote(store, better, params)
    assert d.promoted and "+0.2500" in d.reason
    assert served_index(store) == better
    # every decision stays in the log, oldest first
    assert [x.candidate for x in promotion_log(store)] == [served, same, worse, better]
    assert [x.promoted for x in promotion_log(store)] == [True, False, False, True]


def test_re_promoting_the_served_version_changes_nothing(store) -> None:
    idx = publish_model(store, 0.5, "a")
    promote(store, idx)
    d = promote(store, idx)
    assert not d.promoted and d.reason == "already served"
    assert served_index(store) == idx


def test_decide_rule_by_hand() -> None:
    assert decide(0.3, None, 0.1) == (True, "first version: nothing was served")
    assert decide(0.4, 0.3, 0.0)[0] and not decide(0.3, 0.3, 0.0)[0]  # margin 0: must strictly improve
    assert not decide(0.35, 0.3, 0.1)[0]
    assert not decide(math.nan, None, 0.0)[0]


def test_bad_requests_fail_clearly(store) -> None:
    idx = publish_model(store, 0.5, "a")
    with pytest.raises(ValueError, match=r"no 'trained_map'.*trained_top1, trained_top20"):
        promote(store, idx, PromoteParams(metric="trained_map"))
    with pytest.raises(ValueError, match="only index/index_ids"):
        promote(store, ArtifactRef(stage="evaluate", name="metrics", version=store.manifests("evaluate")[0].version))
    with pytest.raises(ArtifactNotFound):
        promote(store, idx.model_copy(update={"version": "0" * 16}))
    with pytest.raises(ValueError):
        PromoteParams(margin=-0.1)
    assert promotion_log(store) == []


def test_a_benchmark_metric_names_the_served_models_figure_on_that_benchmark(store) -> None:
    idx = publish_model(store, 0.5, "a", figures={"served": "pretrained", "served_top20": 0.4, "hm-dev:served_top20": 0.61})
    d = promote(store, idx, PromoteParams(metric="benchmark:hm-dev:top20"))
    assert d.promoted and d.value == pytest.approx(0.61)
    assert promote(store, idx, PromoteParams(metric="served_top20")).value == pytest.approx(0.4)
    with pytest.raises(ValueError, match="benchmark:<name>:<figure>"):
        promote(store, idx, PromoteParams(metric="benchmark:hm-dev"))
    with pytest.raises(ValueError, match="no 'other:served_top20'"):
        promote(store, idx, PromoteParams(metric="benchmark:other:top20"))
