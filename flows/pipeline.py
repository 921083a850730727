"""The pipeline flow: crawl (or a dataset source) -> noise filter -> dedup/merge -> train <-> mine -> evaluate -> build index -> promote.

Every stage is a sub-flow, so the Prefect UI shows the DAG, each round of the train/mine
loop, and each stage's figures. A stage whose output for these inputs and params is
already published is skipped, so re-running after a failure redoes only the failed
stage and those after it.
"""

from __future__ import annotations

from prefect import flow
from pydantic import BaseModel

from street2shop.flows.config import PipelineConfig
from street2shop.flows.looks import looks_stages
from street2shop.flows.outfits import outfit_stages
from street2shop.flows.promote import promote_flow
from street2shop.flows.stages import (
    build_index_flow,
    crawl_flow,
    dedup_flow,
    evaluate_flow,
    mine_flow,
    noise_filter_flow,
    source_flow,
    train_flow,
    views_flow,
)
from street2shop.storage.store import ArtifactStore
from street2shop.tasks.data import DataRefs
from street2shop.tasks.stage import StageResult


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
    # the photos: a crawl of the shop, or a labelled dataset in its place
    crawled = crawl_flow(home, cfg.crawl) if cfg.crawl is not None else source_flow(home, cfg.source)
    scores = noise_filter_flow(home, cfg.labels_path, cfg.noise, images=crawled["images"])
    merged = dedup_flow(home, cfg.dedup, items=crawled["items"], images=crawled["images"], truth_items_csv=cfg.truth_items_csv)
    data = DataRefs(
        items=crawled["items"],
        images=crawled["images"],
        groups=merged["groups"],
        splits=merged["splits"],
        noise_scores=scores["noise_scores"],
        noise_labels=scores["noise_labels"],
    )
    steps = [(cfg.photos_stage, crawled), ("noise", scores), ("dedup", merged)]
    views = None
    if cfg.train.recipe == "head":  # a head on the frozen backbone trains on cached descriptors
        cached = views_flow(home, cfg.views, data=data)
        views = cached["views"]
        steps.append(("views", cached))
    trained = train_flow(home, cfg.train, round=0, data=data, views=views)
    steps.append(("train[0]", trained))
    for r in range(1, cfg.rounds + 1):
        mined = mine_flow(home, cfg.mine.model_copy(update={"round": r}), checkpoint=trained["checkpoint"], data=data, views=views, train=cfg.train)
        trained = train_flow(home, cfg.train, round=r, data=data, init=trained["checkpoint"], triplets=mined["triplets"], views=views)
        steps += [(f"mine[{r}]", mined), (f"train[{r}]", trained)]
    evaluated = evaluate_flow(home, cfg.evaluate, checkpoint=trained["checkpoint"], data=data)
    # the index serves the model the evaluate stage chose (trained, or the untrained backbone)
    indexed = build_index_flow(home, cfg.index, embeddings=evaluated["embeddings"], images=crawled["images"], checkpoint=evaluated["checkpoint"])
    steps += [("evaluate", evaluated), ("index", indexed)]
    decision = promote_flow(home, indexed["index_ids"], cfg.promote)
    if cfg.outfits is not None:  # needs only the photos and the groups: beside train <-> mine
        steps += outfit_stages(home, cfg.outfits, crawled["images"], merged["groups"])
    if cfg.looks is not None:  # the posts and the items, and the served embedder as a baseline
        steps += looks_stages(home, cfg.looks, crawled, merged["groups"], evaluated["checkpoint"])
    result = PipelineResult(stages=[_summary(label, r) for label, r in steps], promotion=decision.model_dump(mode="json"))
    for s in result.stages:
        print(f"{s['label']:<10} {'reused ' if s['skipped'] else 'new    '} {s['version']}")
    return result
