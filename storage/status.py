"""What ``street2shop status`` shows, as data: the latest version of each stage with its key
figures, the last pipeline activity, and what is promoted and served."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from street2shop.storage.promotions import PromotionDecision, current_promotion, promotion_log
from street2shop.storage.stages import KEY_FIGURES, STAGE_NAMES
from street2shop.storage.store import ArtifactStore, Manifest

#: the figures ``status`` (and the pipeline's summary) show per stage are those the stages
#: declare (``storage/stages.py``), and per benchmark (``<benchmark>:<figure>``) these
KEY_BENCHMARK_FIGURES = ("served_top1", "served_top20", "trained_top20", "pretrained_top20")


def is_key_figure(key: str) -> bool:
    """Whether ``status`` and the pipeline's summary show a stage's figure ``key``."""
    return key in KEY_FIGURES or (":" in key and key.split(":", 1)[1] in KEY_BENCHMARK_FIGURES)


class StageStatus(BaseModel):
    stage: str
    version: str
    created_at: str
    versions: int
    figures: dict[str, Any]


class Status(BaseModel):
    """The store's state (tests and other tools read this; the CLI prints it)."""

    home: str
    stages: list[StageStatus]
    #: newest publish of any stage: when the pipeline last produced something
    last_published_at: str | None
    last_published: str | None
    served: PromotionDecision | None
    last_decision: PromotionDecision | None


def collect_status(store: ArtifactStore) -> Status:
    manifests = store.manifests()
    by_stage: dict[str, list[Manifest]] = {}
    for m in manifests:
        by_stage.setdefault(m.stage, []).append(m)
    order = {s: i for i, s in enumerate(STAGE_NAMES)}
    stages = []
    for stage in sorted(by_stage, key=lambda s: (order.get(s, len(order)), s)):
        found = by_stage[stage]
        newest = found[-1]  # manifests() is oldest first
        # the version's figures: every output of a version shares created_at; merge them
        figures: dict[str, Any] = {}
        for m in found:
            if m.version == newest.version:
                figures.update({k: v for k, v in m.metrics.items() if is_key_figure(k)})
        stages.append(
            StageStatus(stage=stage, version=newest.version, created_at=newest.created_at, versions=len({m.version for m in found}), figures=figures)
        )
    log = promotion_log(store)
    last = manifests[-1] if manifests else None
    return Status(
        home=store.location,
        stages=stages,
        last_published_at=last.created_at if last else None,
        last_published=str(last.ref) if last else None,
        served=current_promotion(store),
        last_decision=log[-1] if log else None,
    )
