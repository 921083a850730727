"""How each declared stage runs inside a pipeline run, or alone (``street2shop run --stage``).

One function per entry of ``storage/stages.py`` (its ``runner``), each ``<stage>(run)``: it
takes its inputs from what the run published so far (``run.ref(stage, name)``; None when the
stage runs alone, and the stage's flow then reads the newest published version) and adds its
results to the run. The pipeline flow calls them in the declared order; ``run --stage`` calls
one of them on an empty run.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

from prefect import flow

from street2shop.flows.config import PipelineConfig
from street2shop.flows.looks import looks_evaluate_flow, looks_train_flow
from street2shop.flows.outfits import features_flow, outfit_evaluate_flow, outfit_train_flow
from street2shop.flows.stages import (
    build_index_flow,
    crawl_flow,
    dedup_flow,
    evaluate_flow,
    localise_flow,
    mine_flow,
    noise_filter_flow,
    source_flow,
    train_flow,
    views_flow,
)
from street2shop.models.looks_view import LooksRefs
from street2shop.models.outfit_view import OutfitRefs
from street2shop.models.recipes import recipe_of
from street2shop.storage import names as N
from street2shop.storage.stages import STAGES, Stage
from street2shop.storage.store import ArtifactRef, ArtifactStore
from street2shop.tasks.data import DataRefs
from street2shop.tasks.stage import StageResult


class StageNotConfigured(ValueError):
    """``run --stage`` of a stage whose config section is missing."""


@dataclass
class Run:
    """A pipeline run in progress: its config, and each stage's newest result by stage name."""

    home: str
    cfg: PipelineConfig
    #: one stage run alone (``run --stage``): inputs are the newest published versions
    alone: bool = False
    results: dict[str, StageResult] = field(default_factory=dict)
    #: (label, result) of every stage run, in order (the pipeline's summary)
    steps: list[tuple[str, StageResult]] = field(default_factory=list)
    #: the looks stages' inputs, once ``looks_train`` made the posts' features
    looks: LooksRefs | None = None

    def ref(self, stage: str, name: str) -> ArtifactRef | None:
        """What ``stage`` published as ``name`` in this run (None: not run here)."""
        result = self.results.get(stage)
        return result.refs.get(name) if result is not None else None

    def add(self, label: str, stage: str, result: StageResult) -> StageResult:
        self.results[stage] = result
        self.steps.append((label, result))
        return result

    def data(self) -> DataRefs | None:
        """The clean data train, mine and evaluate read (None alone: the newest published)."""
        if self.alone:
            return None
        return DataRefs(
            items=self.ref(N.CRAWL, N.ITEMS), images=self.ref(N.CRAWL, N.IMAGES), groups=self.ref(N.DEDUP, N.GROUPS),
            splits=self.ref(N.DEDUP, N.SPLITS), noise_scores=self.ref(N.NOISE, N.NOISE_SCORES),
            noise_labels=self.ref(N.NOISE, N.NOISE_LABELS),
        )


def _resolve(dotted: str):
    module, _, name = dotted.partition(":")
    return getattr(importlib.import_module(module), name)


def runner_of(stage: Stage) -> Callable[[Run], None]:
    """The function the declaration names as the stage's runner (or the generic one)."""
    if stage.runner is None:
        return partial(declared, stage=stage)
    return _resolve(stage.runner)


def section_of(cfg: PipelineConfig, section: str):
    """The config's params at a dotted ``section`` (``outfits.features``)."""
    value = cfg
    for part in section.split("."):
        value = getattr(value, part)
    return value


def declared(run: Run, stage: Stage) -> None:
    """The runner of a stage whose entry names its ``task``: each declared input is what the
    run published (alone: the newest published, of the crawl or a dataset source for
    ``crawl/...``), its params are its config section, and it runs as a sub-flow of its name."""
    store = ArtifactStore(run.home)
    inputs = {}
    for declared_input in stage.inputs:
        producer, name = declared_input.split("/")
        stages = (N.CRAWL, N.SOURCE) if producer == N.CRAWL else producer
        inputs[name] = run.ref(producer, name) or store.newest(stages, name, missing=f"{stage.name} reads {declared_input}: run {producer} first")
    task = _resolve(stage.task)
    sub_flow = flow(name=stage.name.replace("_", "-"), log_prints=True)(lambda: task(run.home, section_of(run.cfg, stage.section), **inputs))
    run.add(stage.name, stage.name, sub_flow())


def run_stages(run: Run, stages: tuple[Stage, ...] = STAGES) -> None:
    """Run ``stages`` in order; those whose config section is missing are left out, and so
    is one run alone without it (:class:`StageNotConfigured`)."""
    for stage in stages:
        if stage.needs is not None and getattr(run.cfg, stage.needs) is None:
            if run.alone:
                article = "an" if stage.needs[0] in "aeiou" else "a"
                raise StageNotConfigured(f"stage {stage.name!r} needs {article} {stage.needs}: section in the config")
            continue
        runner_of(stage)(run)


# -- the runners, one per declared stage ---------------------------------------------------------
def crawl(run: Run) -> None:
    """The photos: a crawl of the shop, or a labelled dataset in its place."""
    cfg = run.cfg
    result = crawl_flow(run.home, cfg.crawl) if cfg.crawl is not None else source_flow(run.home, cfg.source)
    run.add(cfg.photos_stage, N.CRAWL, result)


def noise(run: Run) -> None:
    run.add(N.NOISE, N.NOISE, noise_filter_flow(run.home, run.cfg.labels_path, run.cfg.noise, images=run.ref(N.CRAWL, N.IMAGES)))


def dedup(run: Run) -> None:
    result = dedup_flow(run.home, run.cfg.dedup, items=run.ref(N.CRAWL, N.ITEMS), images=run.ref(N.CRAWL, N.IMAGES),
                        truth_items_csv=run.cfg.truth_items_csv)
    run.add(N.DEDUP, N.DEDUP, result)


def views(run: Run) -> None:
    """In the pipeline only for a recipe that trains on cached descriptors (a head)."""
    if run.alone or recipe_of(run.cfg.train).uses_views:
        run.add(N.VIEWS, N.VIEWS, views_flow(run.home, run.cfg.views, data=run.data()))


def train(run: Run) -> None:
    """The first round (online mining); the mine stage runs the re-mining rounds after it."""
    result = train_flow(run.home, run.cfg.train, round=0, data=run.data(), views=run.ref(N.VIEWS, N.VIEWS))
    run.add(f"{N.TRAIN}[0]" if not run.alone else N.TRAIN, N.TRAIN, result)


def mine(run: Run) -> None:
    """Alone: one mining round with the newest checkpoint. In the pipeline: each re-mining
    round, mine with the last checkpoint, then train on its triplets."""
    cfg = run.cfg
    if run.alone:
        run.add(N.MINE, N.MINE, mine_flow(run.home, cfg.mine, train=cfg.train))
        return
    views_ref = run.ref(N.VIEWS, N.VIEWS)
    for r in range(1, cfg.rounds + 1):
        mined = mine_flow(run.home, cfg.mine.model_copy(update={"round": r}), checkpoint=run.ref(N.TRAIN, N.CHECKPOINT),
                          data=run.data(), views=views_ref, train=cfg.train)
        run.add(f"{N.MINE}[{r}]", N.MINE, mined)
        trained = train_flow(run.home, cfg.train, round=r, data=run.data(), init=run.ref(N.TRAIN, N.CHECKPOINT),
                             triplets=mined[N.TRIPLETS], views=views_ref)
        run.add(f"{N.TRAIN}[{r}]", N.TRAIN, trained)


def localise(run: Run) -> None:
    """Scored against the shop's true boxes and the evaluation's benchmarks that have theirs."""
    cfg = run.cfg
    result = localise_flow(run.home, cfg.localise, data=run.data(), truth_boxes_csv=cfg.truth_boxes_csv,
                           benchmarks=cfg.evaluate.benchmarks)
    run.add(N.LOCALISE, N.LOCALISE, result)


def evaluate(run: Run) -> None:
    result = evaluate_flow(run.home, run.cfg.evaluate, checkpoint=run.ref(N.TRAIN, N.CHECKPOINT), data=run.data(),
                           localiser=run.ref(N.LOCALISE, N.LOCALISER))
    run.add(N.EVALUATE, N.EVALUATE, result)


def index(run: Run) -> None:
    """The index serves the model the evaluate stage chose (trained, or the untrained backbone)."""
    result = build_index_flow(run.home, run.cfg.index, embeddings=run.ref(N.EVALUATE, N.EMBEDDINGS),
                              images=run.ref(N.CRAWL, N.IMAGES), checkpoint=run.ref(N.EVALUATE, N.CHECKPOINT))
    run.add(N.INDEX, N.INDEX, result)


def features(run: Run) -> None:
    """The frozen features of the shop photos the outfit stages read (the looks stages add
    their posts' own in ``looks_train``)."""
    run.add(N.FEATURES, N.FEATURES, features_flow(run.home, run.cfg.outfits.features, run.ref(N.CRAWL, N.IMAGES)))


def _outfit_refs(run: Run) -> OutfitRefs | None:
    if run.alone:
        return None
    return OutfitRefs.of_photos(run.ref(N.CRAWL, N.IMAGES), run.ref(N.DEDUP, N.GROUPS), run.ref(N.FEATURES, N.PHOTO_FEATURES))


def outfit_train(run: Run) -> None:
    run.add(N.OUTFIT_TRAIN, N.OUTFIT_TRAIN, outfit_train_flow(run.home, run.cfg.outfits, _outfit_refs(run)))


def outfit_evaluate(run: Run) -> None:
    result = outfit_evaluate_flow(run.home, run.cfg.outfits, _outfit_refs(run), run.ref(N.OUTFIT_TRAIN, N.OUTFIT_MODEL))
    run.add(N.OUTFIT_EVALUATE, N.OUTFIT_EVALUATE, result)


def looks_train(run: Run) -> None:
    """In the pipeline, first the features of the items' photos (shared with the outfit
    stages when their params agree) and of the posts' photos."""
    cfg = run.cfg.looks
    if not run.alone:
        items = features_flow(run.home, cfg.features, run.ref(N.CRAWL, N.IMAGES))
        snaps = features_flow(run.home, cfg.features, run.ref(N.CRAWL, N.SNAPS))
        run.steps += [(N.FEATURES, items), (f"{N.FEATURES}[snaps]", snaps)]
        run.looks = LooksRefs.of_crawl(run.ref(N.CRAWL, N.IMAGES), items[N.PHOTO_FEATURES], snaps[N.PHOTO_FEATURES],
                                       run.ref(N.DEDUP, N.GROUPS))
    run.add(N.LOOKS_TRAIN, N.LOOKS_TRAIN, looks_train_flow(run.home, cfg, run.looks, run.ref(N.EVALUATE, N.CHECKPOINT)))


def looks_evaluate(run: Run) -> None:
    """With the served street-to-shop embedder as a baseline."""
    result = looks_evaluate_flow(run.home, run.cfg.looks, run.looks, run.ref(N.LOOKS_TRAIN, N.LOOKS_MODEL),
                                 run.ref(N.EVALUATE, N.CHECKPOINT))
    run.add(N.LOOKS_EVALUATE, N.LOOKS_EVALUATE, result)
