"""Operations: which model version is served (the promotion rule) and ``street2shop status``.

A pipeline run publishes a new index version whenever its inputs changed, but the API
must not move to a model that is worse than the one it serves. The promotion rule
decides: a candidate index is promoted only when the evaluate stage's headline metric of
the model it was built with beats the promoted one's by more than a margin.

Every decision (promoted or not, with its reason) is appended to a log under the store's
home, one JSON file per decision, written atomically and never overwritten::

    <home>/promotions/<decided_at>-<index_version>.json

What is served is derived, never stored: the newest record that promoted something
(:func:`served_index`). Rolling back is therefore another record, and the log is the
audit trail the nightly run leaves behind.
"""

from __future__ import annotations

import math
import os
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional

import typer
from pydantic import BaseModel, Field

from street2shop.storage.store import ArtifactNotFound, ArtifactRef, ArtifactStore, Manifest

PROMOTIONS_DIR = "promotions"
#: what a promotion promotes: the index the API loads (its lineage names the checkpoint)
INDEX_STAGE, INDEX_NAME = "index", "index_ids"
#: where the headline metric lives: the evaluate stage's ``metrics`` manifest
EVALUATE_STAGE, METRICS_NAME = "evaluate", "metrics"
#: the figures ``status`` shows per stage (those present in a stage's manifest)
KEY_FIGURES = (
    "items", "images", "rejected", "roc_auc", "kept", "merge_precision", "merge_recall", "groups",
    "round", "epochs", "last_loss", "triplets", "trained_top1", "trained_top20", "queries",
    "factory", "vectors", "recall@20_vs_exact",
)  # fmt: skip
STAGE_ORDER = ("crawl", "noise", "dedup", "train", "mine", "evaluate", "index")


class PromoteParams(BaseModel):
    """The promotion rule's knobs (part of the pipeline config)."""

    #: a figure of the evaluate stage's ``metrics`` manifest; higher is better
    metric: str = "trained_top20"
    #: the candidate must beat the served model by more than this (absolute, metric units)
    margin: float = Field(default=0.0, ge=0.0)


class PromotionDecision(BaseModel):
    """One line of the promotion log: what was decided about a candidate index, and why."""

    promoted: bool
    reason: str
    candidate: ArtifactRef
    metric: str
    value: float
    margin: float
    #: what was served when the decision was taken (None: nothing yet)
    previous: ArtifactRef | None = None
    previous_value: float | None = None
    decided_at: str


def _evaluation_of(store: ArtifactStore, index: ArtifactRef) -> Manifest:
    """The ``metrics`` manifest of the evaluation whose embeddings built ``index``."""
    for ref in store.manifest(index).inputs:
        if ref.stage == EVALUATE_STAGE:
            return store.manifest(ArtifactRef(stage=EVALUATE_STAGE, name=METRICS_NAME, version=ref.version))
    raise ValueError(f"{index} records no {EVALUATE_STAGE} input: cannot tell how good its model is")


def headline_metric(store: ArtifactStore, index: ArtifactRef, metric: str) -> float:
    """The evaluate stage's ``metric`` for the model behind ``index``."""
    figures = _evaluation_of(store, index).metrics
    if metric not in figures:
        known = ", ".join(sorted(k for k, v in figures.items() if isinstance(v, (int, float))))
        raise ValueError(f"evaluate metrics have no {metric!r}; numeric figures: {known}")
    value = figures[metric]
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise ValueError(f"evaluate metric {metric!r} is {value!r}, not a number")
    return float(value)


def promotion_log(home: str | Path) -> list[PromotionDecision]:
    """Every decision taken under ``home``, oldest first."""
    folder = ArtifactStore(home).home / PROMOTIONS_DIR
    if not folder.exists():
        return []
    # file names start with a fixed-width UTC timestamp: name order is time order
    return [PromotionDecision.model_validate_json(p.read_text()) for p in sorted(folder.glob("*.json"))]


def current_promotion(home: str | Path) -> PromotionDecision | None:
    """The newest decision that promoted a version: what the API serves."""
    promoted = [d for d in promotion_log(home) if d.promoted]
    return promoted[-1] if promoted else None


def served_index(home: str | Path) -> ArtifactRef | None:
    """The index version the API should load (None until a version has been promoted)."""
    current = current_promotion(home)
    return current.candidate if current else None


def _append(home: Path, decision: PromotionDecision) -> Path:
    folder = home / PROMOTIONS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    stamp = datetime.fromisoformat(decision.decided_at).strftime("%Y%m%dT%H%M%S%fZ")
    final = folder / f"{stamp}-{decision.candidate.version}.json"
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=".json")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(decision.model_dump_json(indent=2))
            fh.flush()
            os.fsync(fh.fileno())
        # a hard link publishes the complete file atomically and, unlike rename, refuses
        # to replace an existing record: the log is append-only
        os.link(tmp, final)
    finally:
        os.unlink(tmp)
    return final


def decide(value: float, previous_value: float | None, margin: float) -> tuple[bool, str]:
    """The rule itself: promote when nothing is served, or when ``value`` beats it by more than ``margin``."""
    if math.isnan(value):
        return False, "candidate metric is NaN (no test queries?)"
    if previous_value is None:
        return True, "first version: nothing was served"
    gain = value - previous_value
    if gain > margin:
        return True, f"beats the served version by {gain:+.4f} (> margin {margin:.4f})"
    return False, f"gain {gain:+.4f} over the served version is not more than the margin {margin:.4f}"


def promote(home: str | Path, index: ArtifactRef, params: PromoteParams | None = None) -> PromotionDecision:
    """Decide whether ``index`` replaces the served version, and append the decision to the log."""
    params = params or PromoteParams()
    store = ArtifactStore(home)
    if not store.exists(index):
        raise ArtifactNotFound(f"cannot promote {index}: no such published version")
    if (index.stage, index.name) != (INDEX_STAGE, INDEX_NAME):
        raise ValueError(f"only {INDEX_STAGE}/{INDEX_NAME} versions are promoted, not {index}")
    value = headline_metric(store, index, params.metric)
    current = current_promotion(home)
    previous = current.candidate if current else None
    # read from the served version's lineage, not the log: the metric may have changed
    previous_value = headline_metric(store, previous, params.metric) if previous else None
    if previous == index:
        promoted, reason = False, "already served"
    else:
        promoted, reason = decide(value, previous_value, params.margin)
    decision = PromotionDecision(
        promoted=promoted,
        reason=reason,
        candidate=index,
        metric=params.metric,
        value=value,
        margin=params.margin,
        previous=previous,
        previous_value=previous_value,
        decided_at=datetime.now(timezone.utc).isoformat(timespec="microseconds"),
    )
    _append(store.home, decision)
    return decision


# ---- street2shop status ------------------------------------------------------------------


class StageStatus(BaseModel):
    stage: str
    version: str
    created_at: str
    versions: int
    figures: dict[str, Any]


class Status(BaseModel):
    """What ``street2shop status`` shows, as data (tests and other tools read this)."""

    home: str
    stages: list[StageStatus]
    #: newest publish of any stage: when the pipeline last produced something
    last_published_at: str | None
    last_published: str | None
    served: PromotionDecision | None
    last_decision: PromotionDecision | None


def collect_status(home: str | Path) -> Status:
    store = ArtifactStore(home)
    manifests = store.manifests()
    by_stage: dict[str, list[Manifest]] = {}
    for m in manifests:
        by_stage.setdefault(m.stage, []).append(m)
    order = {s: i for i, s in enumerate(STAGE_ORDER)}
    stages = []
    for stage in sorted(by_stage, key=lambda s: (order.get(s, len(order)), s)):
        found = by_stage[stage]
        newest = found[-1]  # manifests() is oldest first
        # the version's figures: every output of a version shares created_at; merge them
        figures: dict[str, Any] = {}
        for m in found:
            if m.version == newest.version:
                figures.update({k: v for k, v in m.metrics.items() if k in KEY_FIGURES})
        stages.append(
            StageStatus(stage=stage, version=newest.version, created_at=newest.created_at, versions=len({m.version for m in found}), figures=figures)
        )
    log = promotion_log(home)
    last = manifests[-1] if manifests else None
    return Status(
        home=str(store.home),
        stages=stages,
        last_published_at=last.created_at if last else None,
        last_published=str(last.ref) if last else None,
        served=current_promotion(home),
        last_decision=log[-1] if log else None,
    )


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def status(home: Optional[str] = typer.Option(None, help="artifact store: a folder or a URL like s3://bucket/prefix (default: $STREET2SHOP_HOME)")) -> None:
    """Latest version per stage, the last pipeline activity, and what is promoted and served."""
    from rich.console import Console
    from rich.table import Table

    from street2shop.settings import store_home

    console = Console()
    report = collect_status(store_home(home))
    if not report.stages:
        console.print(f"no published versions under {report.home}: run `street2shop demo` or `street2shop run` first")
        raise typer.Exit(0)
    table = Table(title=f"latest versions under {report.home}")
    for col in ("stage", "version", "created (UTC)", "versions", "key figures"):
        table.add_column(col, overflow="fold")
    for s in report.stages:
        figures = ", ".join(f"{k}={_fmt(v)}" for k, v in s.figures.items())
        table.add_row(s.stage, s.version, s.created_at[:19], str(s.versions), figures)
    console.print(table)
    console.print(f"last published: {report.last_published_at[:19]} UTC ({report.last_published})")
    if report.served is None:
        console.print("served: nothing promoted yet (the API has no index to serve)")
    else:
        d = report.served
        console.print(f"served: index {d.candidate.version} ({d.metric} = {d.value:.4f}), promoted {d.decided_at[:19]} UTC")
    if report.last_decision is not None and report.last_decision != report.served:
        d = report.last_decision
        console.print(f"last decision: index {d.candidate.version} not promoted at {d.decided_at[:19]} UTC: {d.reason}")
