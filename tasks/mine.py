"""Mine stage task: embed a sample of the train split with the current checkpoint and
choose semi-hard triplets (offline re-mining round), published as ``triplets``."""

from __future__ import annotations

import pyarrow.compute as pc
from prefect import task
from prefect.cache_policies import NO_CACHE

from street2shop.cleaning.selection import training_images
from street2shop.models.embedder import load_embedder
from street2shop.models.mining import MineParams, mine_semi_hard, mine_semi_hard_vectors
from street2shop.models.views import training_views
from street2shop.storage.schemas import vectors_matrix
from street2shop.storage.names import CHECKPOINT_FILE, MINE, TRIPLETS
from street2shop.storage.store import ArtifactRef, ArtifactStore
from street2shop.storage.stages import STAGES_BY_NAME
from street2shop.tasks.data import DataRefs, load_annotated
from street2shop.tasks.stage import LOADER_WORKERS, StageResult, report_to_prefect, run_stage

STAGE = MINE
CODE_VERSION = "1"
OUTPUTS = STAGES_BY_NAME[STAGE].outputs  # as storage/stages.py declares them


def run_mine(
    store: ArtifactStore, data: DataRefs, checkpoint: ArtifactRef, params: MineParams, views: ArtifactRef | None = None, street_crops: int = 3
) -> StageResult:
    """Mine with ``checkpoint`` over the training photos, or, with ``views`` (a head on the
    frozen backbone), over the cached training views it trained on (``street_crops`` per
    street photo), refined by the head: no photo is decoded."""
    params = params.model_copy(update={"num_workers": LOADER_WORKERS})

    def compute(writers) -> None:
        model = load_embedder(store.file(checkpoint, CHECKPOINT_FILE))
        if views is None:
            triplets = mine_semi_hard(model, training_images(load_annotated(store, data)), params)
        else:
            train = training_views(store.read_table(views), street_crops)
            rows = train.rename_columns(["image_id" if c == "view_id" else ("photo_id" if c == "image_id" else c) for c in train.column_names])
            triplets = mine_semi_hard_vectors(rows, model.refine_descriptors(vectors_matrix(train)), params)
        writers[TRIPLETS].write_table(triplets)
        n = triplets.num_rows
        writers[TRIPLETS].metrics.update(
            {
                "round": params.round,
                "triplets": n,
                "mean_d_ap": pc.mean(triplets.column("d_ap")).as_py() if n else None,
                "mean_d_an": pc.mean(triplets.column("d_an")).as_py() if n else None,
            }
        )

    inputs = {**data.as_inputs(), "checkpoint": checkpoint, **({"views": views} if views is not None else {})}
    version_params = params if views is None else {**params.model_dump(mode="json"), "street_crops": street_crops}
    return run_stage(store, STAGE, CODE_VERSION, OUTPUTS, compute, inputs=inputs, params=version_params)


@task(name="mine", cache_policy=NO_CACHE, task_run_name="mine-round-{params.round}")
def mine_task(
    home: str, data: DataRefs, checkpoint: ArtifactRef, params: MineParams, views: ArtifactRef | None = None, street_crops: int = 3
) -> StageResult:
    result = run_mine(ArtifactStore(home), data, checkpoint, params, views, street_crops)
    report_to_prefect(result, f"mine round {params.round}")
    return result
