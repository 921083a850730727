"""The pipeline flow: the stages ``storage/stages.py`` declares, in their order (crawl or a
dataset source -> noise filter -> dedup/merge -> views -> train <-> mine -> evaluate -> build
index), promotion, then the stages beside them (outfits, looks).

Every stage is a sub-flow, so the Prefect UI shows the DAG, each round of the train/mine
loop, and each stage's figures. A stage whose output for these inputs and params is
already published is skipped, so re-running after a failure redoes only the failed
stage and those after it.
"""

from __future__ import annotations

from prefect import flow
from pydantic import BaseModel

from street2shop.flows.config import PipelineConfig
from street2shop.flows.promote import promote_flow
from street2shop.flows.runners import Run, run_stages
from street2shop.storage import names as N
from street2shop.storage.stages import STAGE_NAMES, STAGES
from street2shop.storage.store import ArtifactStore
from street2shop.tasks.stage import StageResult

#: the street-to-shop stages up to the index (promotion follows them; the localiser among
#: them when configured), then those beside them
_MAIN = STAGES[: STAGE_NAMES.index(N.INDEX) + 1]
_BESIDE = STAGES[len(_MAIN) :]


class PipelineResult(BaseModel):
    """Per stage: the version it produced or reused, whether it was skipped, and its figures."""

    stages: list[dict]
    #: whether this run's index now serves, and why (or why not)
    promotion: dict | None = None

    def stage(self, name: str) -> dict:
        for s in self.stages:
            if s["stage"] == name or s.get("label") == name:
                return s
        raise KeyError(name)

    @property
    def ran(self) -> list[str]:
        return [s["label"] for s in self.stages if not s["skipped"]]


def _summary(label: str, r: StageResult) -> dict:
    return {"label": label, "stage": r.stage, "version": r.version, "skipped": r.skipped, "refs": {k: str(v) for k, v in r.refs.items()}, "metrics": r.metrics}


@flow(name="street2shop", log_prints=True)
def pipeline(home: str, cfg: PipelineConfig) -> PipelineResult:
    # One run at a time per store (they would share the crawl journal and training state):
    # a second run waits, then finds every stage published and skips it.
    with ArtifactStore(home).lock():
        return _run_stages(home, cfg)


def _run_stages(home: str, cfg: PipelineConfig) -> PipelineResult:
    # the stages as storage/stages.py declares them: their runners pass each one's outputs on
    run = Run(home, cfg)
    run_stages(run, _MAIN)
    decision = promote_flow(home, run.ref(N.INDEX, N.INDEX_IDS), cfg.promote)
    run_stages(run, _BESIDE)
    result = PipelineResult(stages=[_summary(label, r) for label, r in run.steps], promotion=decision.model_dump(mode="json"))
    for s in result.stages:
        print(f"{s['label']:<10} {'reused ' if s['skipped'] else 'new    '} {s['version']}")
    return result
