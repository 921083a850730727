"""The promotion rule, its append-only log, and ``street2shop status``, on hand-made versions."""

from __future__ import annotations

import math

import pytest
import typer
from typer.testing import CliRunner

from street2shop.ops import (
    PromoteParams,
    PromotionDecision,
    _append,
    collect_status,
    decide,
    promote,
    promotion_log,
    served_index,
    status,
)
from street2shop.storage.store import ArtifactNotFound, ArtifactRef, ArtifactStore, version_id


def publish_model(store: ArtifactStore, top20: float, tag: str) -> ArtifactRef:
    """An evaluate version with headline ``top20`` and an index built from its embeddings."""
    ev = version_id("evaluate", "1", params={"tag": tag})
    with store.publish("evaluate", ["metrics", "embeddings"], ev) as writers:
        writers["metrics"].metrics.update({"trained_top20": top20, "trained_top1": top20 / 2})
    embeddings = ArtifactRef(stage="evaluate", name="embeddings", version=ev)
    idx = version_id("index", "1", inputs={"embeddings": embeddings})
    with store.publish("index", ["index_ids"], idx, inputs={"embeddings": embeddings}) as writers:
        writers["index_ids"].metrics.update({"factory": "Flat", "vectors": 10})
    return ArtifactRef(stage="index", name="index_ids", version=idx)


@pytest.fixture
def store(tmp_path) -> ArtifactStore:
    return ArtifactStore(tmp_path)


def test_first_version_is_promoted_and_served(store) -> None:
    first = publish_model(store, 0.5, "a")
    assert served_index(store.home) is None
    d = promote(store.home, first)
    assert d.promoted and d.reason.startswith("first version") and d.previous is None
    assert d.value == 0.5 and d.metric == "trained_top20"
    assert served_index(store.home) == first


def test_candidate_must_beat_the_served_one_by_more_than_the_margin(store) -> None:
    params = PromoteParams(margin=0.125)
    served = publish_model(store, 0.5, "a")
    promote(store.home, served, params)
    # exactly the margin better (0.625 - 0.5 == 0.125 in binary floating point): not enough
    same = publish_model(store, 0.625, "b")
    d = promote(store.home, same, params)
    assert not d.promoted and "not more than the margin" in d.reason
    assert (d.previous, d.previous_value) == (served, 0.5)
    assert served_index(store.home) == served
    worse = publish_model(store, 0.25, "c")
    assert not promote(store.home, worse, params).promoted
    better = publish_model(store, 0.75, "d")
    d = promote(store.home, better, params)
    assert d.promoted and "+0.2500" in d.reason
    assert served_index(store.home) == better
    # every decision stays in the log, oldest first
    assert [x.candidate for x in promotion_log(store.home)] == [served, same, worse, better]
    assert [x.promoted for x in promotion_log(store.home)] == [True, False, False, True]


def test_re_promoting_the_served_version_changes_nothing(store) -> None:
    idx = publish_model(store, 0.5, "a")
    promote(store.home, idx)
    d = promote(store.home, idx)
    assert not d.promoted and d.reason == "already served"
    assert served_index(store.home) == idx


def test_decide_rule_by_hand() -> None:
    assert decide(0.3, None, 0.1) == (True, "first version: nothing was served")
    assert decide(0.4, 0.3, 0.0)[0] and not decide(0.3, 0.3, 0.0)[0]  # margin 0: must strictly improve
    assert not decide(0.35, 0.3, 0.1)[0]
    assert not decide(math.nan, None, 0.0)[0]


def test_bad_requests_fail_clearly(store) -> None:
    idx = publish_model(store, 0.5, "a")
    with pytest.raises(ValueError, match=r"no 'trained_map'.*trained_top1, trained_top20"):
        promote(store.home, idx, PromoteParams(metric="trained_map"))
    with pytest.raises(ValueError, match="only index/index_ids"):
        promote(store.home, ArtifactRef(stage="evaluate", name="metrics", version=store.manifests("evaluate")[0].version))
    with pytest.raises(ArtifactNotFound):
        promote(store.home, idx.model_copy(update={"version": "0" * 16}))
    with pytest.raises(ValueError):
        PromoteParams(margin=-0.1)
    assert promotion_log(store.home) == []


def test_log_records_are_never_overwritten(store) -> None:
    idx = publish_model(store, 0.5, "a")
    d = promote(store.home, idx)
    again = PromotionDecision.model_validate(d.model_dump() | {"promoted": False, "reason": "tampered"})
    with pytest.raises(FileExistsError):
        _append(store.home, again)  # same timestamp and version: same file name
    assert promotion_log(store.home) == [d]
    assert not list((store.home / "promotions").glob(".tmp-*"))


def test_status_shows_latest_versions_and_what_is_served(store) -> None:
    first = publish_model(store, 0.5, "a")
    promote(store.home, first)
    second = publish_model(store, 0.25, "b")
    promote(store.home, second)
    report = collect_status(store.home)
    assert [s.stage for s in report.stages] == ["evaluate", "index"]
    index = report.stages[1]
    assert (index.version, index.versions, index.figures) == (second.version, 2, {"factory": "Flat", "vectors": 10})
    assert report.stages[0].figures == {"trained_top20": 0.25, "trained_top1": 0.125}
    assert report.last_published == str(second)
    assert report.served.candidate == first and report.last_decision.candidate == second

    app = typer.Typer()
    app.command()(status)
    out = CliRunner().invoke(app, ["--home", str(store.home)], terminal_width=200)
    assert out.exit_code == 0, out.output
    assert f"served: index {first.version} (trained_top20 = 0.5000)" in out.output
    assert f"last decision: index {second.version} not promoted" in out.output


def test_status_of_an_empty_store(tmp_path) -> None:
    app = typer.Typer()
    app.command()(status)
    out = CliRunner().invoke(app, ["--home", str(tmp_path)])
    assert out.exit_code == 0 and "no published versions" in out.output
