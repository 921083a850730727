"""Train stage task: fit the embedder on the train split, one round at a time.

Round 0 trains with online in-batch mining; round r > 0 starts from round r-1's
checkpoint and trains on the triplets the ``mine`` stage chose with it. With the "head"
recipe the training rows are the cached views of the ``views`` stage (a residual head on
the frozen backbone, trained on descriptors); with "fine_tune" they are photos. Training state
lives in a work folder keyed by the version, so a killed run resumes where it stopped;
only the finished checkpoint is published.
"""

from __future__ import annotations

import shutil

from prefect import task
from prefect.cache_policies import NO_CACHE

from street2shop.cleaning.selection import training_images
from street2shop.models.embed import embed_images
from street2shop.models.recipes import recipe_of
from street2shop.models.training import TrainParams, train_embedder
from street2shop.models.views import head_training_rows, validation_fn
from street2shop.retrieval.evaluation import evaluate_features
from street2shop.storage.names import CHECKPOINT, CHECKPOINT_FILE, TRAIN, TRAIN_LOG
from street2shop.storage.store import ArtifactRef, ArtifactStore
from street2shop.storage.stages import STAGES_BY_NAME
from street2shop.tasks.data import DataRefs, load_annotated
from street2shop.tasks.stage import LOADER_WORKERS, StageResult, report_to_prefect, run_stage

STAGE = TRAIN
CODE_VERSION = "1"
OUTPUTS = STAGES_BY_NAME[STAGE].outputs  # as storage/stages.py declares them
VAL_K = 20


def run_train(
    store: ArtifactStore,
    data: DataRefs,
    params: TrainParams,
    round: int = 0,
    init: ArtifactRef | None = None,
    triplets: ArtifactRef | None = None,
    views: ArtifactRef | None = None,
) -> StageResult:
    params = params.model_copy(update={"round": round, "num_workers": LOADER_WORKERS})
    uses_views = recipe_of(params).uses_views
    if uses_views != (views is not None):
        raise ValueError(f"recipe {params.recipe!r} {'needs' if uses_views else 'takes no'} cached views (the views stage)")
    inputs = data.as_inputs()
    if init is not None:
        inputs["init"] = init
    if triplets is not None:
        inputs["triplets"] = triplets
    if views is not None:
        inputs["views"] = views

    def compute(writers) -> None:
        descriptors = None
        if views is None:
            annotated = load_annotated(store, data)
            train = training_images(annotated)

            def val_fn(model) -> float:
                try:
                    report, _ = evaluate_features(lambda paths: embed_images(model, paths, num_workers=LOADER_WORKERS), annotated, "val", ks=(VAL_K,))
                except ValueError:  # no validation queries (tiny shop): no early stopping signal
                    return float("nan")
                return float(report.overall[f"top{VAL_K}"])
        else:
            cached = store.read_table(views)
            train, descriptors = head_training_rows(cached, params.street_crops)
            val_fn = validation_fn(cached, VAL_K)

        work = store.work_dir(STAGE, writers[CHECKPOINT].version)
        result = train_embedder(
            train,
            params,
            work,
            init_checkpoint=store.file(init, CHECKPOINT_FILE) if init is not None else None,
            triplets=store.read_table(triplets) if triplets is not None else None,
            val_fn=val_fn,
            descriptors=descriptors,
        )
        shutil.copyfile(result.checkpoint, writers[CHECKPOINT].path(CHECKPOINT_FILE))
        writers[TRAIN_LOG].write_table(result.log)
        losses = result.log.column("loss").to_pylist()
        figures = {
            "round": round,
            "epochs": result.epochs_done,
            f"best_val_top{VAL_K}": result.best_val,
            "first_loss": losses[0] if losses else None,
            "last_loss": losses[-1] if losses else None,
            "train_images" if views is None else "train_views": train.num_rows,
        }
        writers[CHECKPOINT].metrics.update(figures)
        writers[TRAIN_LOG].metrics.update(figures)

    result = run_stage(store, STAGE, CODE_VERSION, OUTPUTS, compute, inputs=inputs, params=params)
    if not result.skipped:
        store.remove_work_dir(STAGE, result.version)
    return result


@task(name="train", cache_policy=NO_CACHE, task_run_name="train-round-{round}")
def train_task(
    home: str, data: DataRefs, params: TrainParams, round: int = 0, init: ArtifactRef | None = None,
    triplets: ArtifactRef | None = None, views: ArtifactRef | None = None,
) -> StageResult:
    result = run_train(ArtifactStore(home), data, params, round, init, triplets, views)
    report_to_prefect(result, f"train round {round}")
    return result
