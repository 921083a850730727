"""The promotion rule: does a candidate index replace the one the API serves?

A candidate is promoted only when the evaluate stage's headline metric of the model it was
built with beats the served one's by more than a margin. The decision and its reason are
appended to the store's promotion log (:mod:`street2shop.storage.promotions`), which is also
where what is served is read from.
"""

from __future__ import annotations

import math
from datetime import datetime, timezone

from pydantic import BaseModel, Field

from street2shop.storage.names import EVALUATE, INDEX, INDEX_IDS, METRICS
from street2shop.storage.promotions import PromotionDecision, append_decision, current_promotion
from street2shop.storage.store import ArtifactNotFound, ArtifactRef, ArtifactStore, Manifest


class PromoteParams(BaseModel):
    """The promotion rule's knobs (part of the pipeline config)."""

    #: a figure of the evaluate stage's ``metrics`` manifest (higher is better), e.g.
    #: ``served_top20`` (the served model on the shop's split) or ``benchmark:hm-dev:top20``
    #: (the served model on a configured benchmark, ``hm-dev:served_top20`` in the manifest)
    metric: str = "served_top20"
    #: the candidate must beat the served model by more than this (absolute, metric units)
    margin: float = Field(default=0.0, ge=0.0)


def _evaluation_of(store: ArtifactStore, index: ArtifactRef) -> Manifest:
    """The ``metrics`` manifest of the evaluation whose embeddings built ``index``."""
    for ref in store.manifest(index).inputs:
        if ref.stage == EVALUATE:
            return store.manifest(ArtifactRef(stage=EVALUATE, name=METRICS, version=ref.version))
    raise ValueError(f"{index} records no {EVALUATE} input: cannot tell how good its model is")


def figure_key(metric: str) -> str:
    """The manifest key of a promotion metric: ``benchmark:<name>:<key>`` is the served
    model's ``<key>`` on that benchmark (``<name>:served_<key>``); anything else is a key."""
    if metric.startswith("benchmark:"):
        parts = metric.split(":")
        if len(parts) != 3 or not all(parts[1:]):
            raise ValueError(f"a benchmark metric reads benchmark:<name>:<figure>, e.g. benchmark:hm-dev:top20; got {metric!r}")
        return f"{parts[1]}:served_{parts[2]}"
    return metric


def headline_metric(store: ArtifactStore, index: ArtifactRef, metric: str) -> float:
    """The evaluate stage's ``metric`` for the model behind ``index``.

    Evaluations from before the served model was chosen (code version 2) served the trained
    model: their ``served_*`` figure is the ``trained_*`` one.
    """
    figures = _evaluation_of(store, index).metrics
    metric = figure_key(metric)
    if metric not in figures and metric.startswith("served_") and "served" not in figures:
        metric = "trained_" + metric.removeprefix("served_")
    if metric not in figures:
        known = ", ".join(sorted(k for k, v in figures.items() if isinstance(v, (int, float))))
        raise ValueError(f"evaluate metrics have no {metric!r}; numeric figures: {known}")
    value = figures[metric]
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise ValueError(f"evaluate metric {metric!r} is {value!r}, not a number")
    return float(value)


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


def promote(store: ArtifactStore, index: ArtifactRef, params: PromoteParams | None = None) -> PromotionDecision:
    """Decide whether ``index`` replaces the served version, and append the decision to the log."""
    params = params or PromoteParams()
    if not store.exists(index):
        raise ArtifactNotFound(f"cannot promote {index}: no such published version")
    if (index.stage, index.name) != (INDEX, INDEX_IDS):
        raise ValueError(f"only {INDEX}/{INDEX_IDS} versions are promoted, not {index}")
    value = headline_metric(store, index, params.metric)
    current = current_promotion(store)
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
    append_decision(store, decision)
    return decision
