"""The pipeline's stages, each declared once: what it is called, the pure core it wraps, where
its parameters sit in the pipeline config, what it reads and publishes, and its key figures.

Everything else is read from :data:`STAGES` (the way a Dagster ``Definitions`` or a kedro
``register_pipelines()`` holds every node): the pipeline flow runs the stages in this order
(``flows/pipeline.py`` calls each entry's runner), ``street2shop run --stage`` accepts these
names and calls the same runner alone, ``street2shop status`` orders the store by them and
shows their figures, and the Prefect figures artifact of a stage lists its figures first.
Strings name the core and the runner (a registry by string) so this module stays on the
ground floor; ``tests/storage/test_stages.py`` resolves every one of them.

How to add a stage (three files: a new module, one entry, the regenerated docs page):

1. ``tasks/<stage>.py``, new: ``run_stage(...)`` around the stage's pure core (a function with
   typed params in its core package, ``models/``, ``cleaning/``, ``retrieval/``...), publishing
   ``stage("<stage>").outputs`` (``.output("<name>")`` checks a name against them), and a Prefect
   task ``<stage>_task(home, params, **inputs)`` taking each input by its artifact name (copy
   ``tasks/views.py``).
2. ``storage/stages.py``: its entry in :data:`STAGES`, in pipeline order: its name and its
   outputs' names as strings (the entry is their home; ``storage/names.py`` holds the names other
   layers import, and needs no edit), ``core`` by dotted name, ``runner=None`` and ``task`` (the
   generic runner reads each ``inputs`` entry, ``"stage/name"``, from the run or the newest
   published version and passes it to the task), ``section`` and ``params`` (its params model,
   ``module:Class``: ``PipelineConfig`` in ``flows/config.py`` builds the section from them),
   ``figures``, and ``needs`` when the stage runs only when its section is set (the section is
   then optional, None by default).
3. ``docs/stages.md``, regenerated: ``python -m street2shop.storage.stages > docs/stages.md``.

The pipeline, ``run --stage``, ``status`` and the figures artifact know the stage from its entry;
``tests/storage/test_stages.py`` checks that its core, task and params resolve, that its section
is a config field of that model, and that its inputs are published by stages before it. A stage whose inputs need more than looking up by name (the
train <-> mine rounds, the looks' two feature sets) names its own ``runner`` in
``flows/runners.py`` instead.
"""

from __future__ import annotations

from dataclasses import dataclass

from street2shop.storage import names as N


@dataclass(frozen=True)
class Stage:
    """One stage of the pipeline, declared once."""

    name: str
    #: the pure function that does the work, ``module:function``
    core: str
    #: the flow-layer function that runs it inside a pipeline run (or alone), ``module:function``;
    #: None: the generic one, which calls ``task`` with the declared inputs and params
    runner: str | None
    #: the ``PipelineConfig`` field of its params (dotted for a nested one)
    section: str
    #: what it reads, ``"stage/name"`` (``crawl/...`` is the crawl's, or the dataset source's)
    inputs: tuple[str, ...]
    #: the artifacts it publishes, all under one version
    outputs: tuple[str, ...]
    #: its key figures (what ``status`` and the pipeline's summary show)
    figures: tuple[str, ...] = ()
    #: the config section without which it does not run (None: it always can)
    needs: str | None = None
    #: with no ``runner``: the Prefect task, ``module:function``, called as
    #: ``task(home, params, **inputs)`` (inputs by artifact name)
    task: str | None = None
    #: the params model, ``module:Class``: ``PipelineConfig`` builds its ``section`` field from it
    params: str | None = None

    def output(self, name: str) -> str:
        """``name``, checked against the declared outputs (a one-line error names them)."""
        if name not in self.outputs:
            raise KeyError(f"stage {self.name!r} publishes no {name!r}; it declares {', '.join(self.outputs)}")
        return name


_RUNNERS = "street2shop.flows.runners"

STAGES: tuple[Stage, ...] = (
    Stage(N.CRAWL, "street2shop.crawler.core:crawl", f"{_RUNNERS}:crawl", "crawl", (),
          (N.ITEMS, N.IMAGES, N.CRAWL_REJECTS, N.OUTFITS, N.SNAPS, N.SNAP_ITEMS), ("items", "images", "rejected"),
          params="street2shop.crawler.core:CrawlParams"),
    Stage(N.NOISE, "street2shop.cleaning.noise:train_and_score", f"{_RUNNERS}:noise", "noise", (f"{N.CRAWL}/{N.IMAGES}",),
          (N.NOISE_SCORES, N.NOISE_LABELS, N.NOISE_MODEL), ("roc_auc", "kept"), params="street2shop.cleaning.noise:NoiseParams"),
    Stage(N.DEDUP, "street2shop.cleaning.dedup:merge_near_duplicates", f"{_RUNNERS}:dedup", "dedup",
          (f"{N.CRAWL}/{N.ITEMS}", f"{N.CRAWL}/{N.IMAGES}"), (N.GROUPS, N.SPLITS), ("merge_precision", "merge_recall", "groups"),
          params="street2shop.cleaning.dedup:DedupParams"),
    Stage(N.VIEWS, "street2shop.models.views:view_features", f"{_RUNNERS}:views", "views",
          (f"{N.CRAWL}/{N.IMAGES}", f"{N.DEDUP}/{N.SPLITS}"), (N.VIEWS,), params="street2shop.models.views:ViewParams"),
    Stage(N.TRAIN, "street2shop.models.training:train_embedder", f"{_RUNNERS}:train", "train",
          (f"{N.CRAWL}/{N.IMAGES}", f"{N.DEDUP}/{N.SPLITS}", f"{N.VIEWS}/{N.VIEWS}", f"{N.MINE}/{N.TRIPLETS}"),
          (N.CHECKPOINT, N.TRAIN_LOG), ("round", "epochs", "last_loss"), params="street2shop.models.training:TrainParams"),
    Stage(N.MINE, "street2shop.models.mining:mine_semi_hard", f"{_RUNNERS}:mine", "mine",
          (f"{N.TRAIN}/{N.CHECKPOINT}", f"{N.DEDUP}/{N.SPLITS}", f"{N.VIEWS}/{N.VIEWS}"), (N.TRIPLETS,), ("triplets",),
          params="street2shop.models.mining:MineParams"),
    # needs the split only; after train <-> mine so that they do not wait for it
    Stage(N.LOCALISE, "street2shop.models.localise_training:learn_localiser", f"{_RUNNERS}:localise", "localise",
          (f"{N.CRAWL}/{N.IMAGES}", f"{N.DEDUP}/{N.SPLITS}"), (N.LOCALISER, N.PSEUDO_BOXES),
          ("pseudo_boxes", "training_seconds", "test_iou_median", "test_iou_ge_0_5"), needs="localise",
          params="street2shop.models.localise_training:LocaliserParams"),
    Stage(N.EVALUATE, "street2shop.retrieval.evaluation:evaluate_features", f"{_RUNNERS}:evaluate", "evaluate",
          (f"{N.TRAIN}/{N.CHECKPOINT}", f"{N.DEDUP}/{N.SPLITS}", f"{N.LOCALISE}/{N.LOCALISER}"), (N.METRICS, N.CHECKPOINT, N.EMBEDDINGS),
          ("trained_top1", "trained_top20", "queries", "served", "served_precision", "served_top1", "served_top20"),
          params="street2shop.retrieval.evaluation:EvaluateParams"),
    Stage(N.INDEX, "street2shop.retrieval.index:build_index", f"{_RUNNERS}:index", "index",
          (f"{N.EVALUATE}/{N.EMBEDDINGS}", f"{N.EVALUATE}/{N.CHECKPOINT}", f"{N.CRAWL}/{N.IMAGES}"), (N.INDEX_IDS,),
          ("factory", "vectors", "recall@20_vs_exact"), params="street2shop.retrieval.index:IndexParams"),
    # beside train <-> mine: outfit compatibility, then shop the look (run when configured)
    Stage(N.FEATURES, "street2shop.models.features:photo_features", f"{_RUNNERS}:features", "outfits.features",
          (f"{N.CRAWL}/{N.IMAGES}",), (N.PHOTO_FEATURES,), needs="outfits", params="street2shop.models.features:FeatureParams"),
    Stage(N.OUTFIT_TRAIN, "street2shop.models.outfits:train_variant", f"{_RUNNERS}:outfit_train", "outfits",
          (f"{N.CRAWL}/{N.OUTFITS}", f"{N.FEATURES}/{N.PHOTO_FEATURES}", f"{N.DEDUP}/{N.GROUPS}"),
          (N.OUTFIT_MODEL, N.OUTFIT_SPLITS), needs="outfits", params="street2shop.tasks.outfits:OutfitConfig"),
    Stage(N.OUTFIT_EVALUATE, "street2shop.retrieval.outfit_metrics:score_questions", f"{_RUNNERS}:outfit_evaluate", "outfits",
          (f"{N.OUTFIT_TRAIN}/{N.OUTFIT_MODEL}", f"{N.FEATURES}/{N.PHOTO_FEATURES}"), (N.OUTFIT_METRICS, N.OUTFIT_QUESTIONS),
          needs="outfits", params="street2shop.tasks.outfits:OutfitConfig"),
    Stage(N.LOOKS_TRAIN, "street2shop.models.looks:train_looks", f"{_RUNNERS}:looks_train", "looks",
          (f"{N.CRAWL}/{N.SNAPS}", f"{N.CRAWL}/{N.SNAP_ITEMS}", f"{N.FEATURES}/{N.PHOTO_FEATURES}", f"{N.DEDUP}/{N.GROUPS}",
           f"{N.EVALUATE}/{N.CHECKPOINT}"), (N.LOOKS_MODEL, N.LOOKS_SPLITS), needs="looks", params="street2shop.tasks.looks:LooksConfig"),
    Stage(N.LOOKS_EVALUATE, "street2shop.retrieval.look_metrics:rank_metrics", f"{_RUNNERS}:looks_evaluate", "looks",
          (f"{N.LOOKS_TRAIN}/{N.LOOKS_MODEL}", f"{N.EVALUATE}/{N.CHECKPOINT}"), (N.LOOKS_METRICS,), needs="looks", params="street2shop.tasks.looks:LooksConfig"),
)  # fmt: skip

STAGES_BY_NAME: dict[str, Stage] = {s.name: s for s in STAGES}
#: the stage names, in pipeline order (``run --stage``, ``status``)
STAGE_NAMES: tuple[str, ...] = tuple(STAGES_BY_NAME)
#: every stage's key figures
KEY_FIGURES: frozenset[str] = frozenset(f for s in STAGES for f in s.figures)


def stage(name: str) -> Stage:
    """The declaration of stage ``name``; a one-line error names the valid ones."""
    try:
        return STAGES_BY_NAME[name]
    except KeyError:
        raise KeyError(f"unknown stage {name!r}; one of {', '.join(STAGE_NAMES)}") from None


def docs_page() -> str:
    """``docs/stages.md``: the declaration as a markdown table (a test keeps the page current)."""
    return (
        "# The pipeline's stages\n\nGenerated from the one declaration, `storage/stages.py` (its docstring says how to add a\n"
        "stage), by `python -m street2shop.storage.stages > docs/stages.md`. The pipeline runs them in this\n"
        "order; `street2shop run --stage NAME` runs one alone; `street2shop status` lists them so.\n\n" + stage_table()
    )


def stage_table() -> str:
    """The declaration as a markdown table."""
    rows = ["| stage | core | params | reads | publishes | key figures |", "| --- | --- | --- | --- | --- | --- |"]
    for s in STAGES:
        section = f"`{s.section}`" + (f" (when `{s.needs}:` is set)" if s.needs and s.needs != s.section else "")
        rows.append(f"| {s.name} | `{s.core}` | {section} | {', '.join(s.inputs) or '(the shop)'} | {', '.join(s.outputs)} "
                    f"| {', '.join(s.figures)} |")
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    print(docs_page(), end="")
