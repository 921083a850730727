"""Views stage task: the pretrained descriptors of many views of the clean data, cached.

A head on the frozen backbone (``TrainParams.recipe="head"``) trains on these, and so do the
offline mining rounds; re-running training with other head settings skips this stage, the
only one that runs the backbone over the training photos (:mod:`street2shop.models.views`).
"""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from street2shop.models.fast import optimize_for_inference
from street2shop.models.views import ViewParams, view_features, view_model
from street2shop.storage.names import VIEWS
from street2shop.storage.store import ArtifactStore
from street2shop.storage.stages import STAGES_BY_NAME
from street2shop.tasks.data import DataRefs, load_annotated
from street2shop.tasks.stage import StageResult, report_to_prefect, run_stage

STAGE = VIEWS
CODE_VERSION = "1"
OUTPUTS = STAGES_BY_NAME[STAGE].outputs  # as storage/stages.py declares them


def run_views(store: ArtifactStore, data: DataRefs, params: ViewParams) -> StageResult:
    def compute(writers) -> None:
        model = view_model(params)
        # OpenVINO fp32: the same descriptors up to float rounding, several times faster
        fast = optimize_for_inference(model, "openvino", fallback="eager")
        table = view_features(load_annotated(store, data), fast, params)
        writers[VIEWS].write_table(table, table.schema)
        views = table.column("view").to_pylist()
        writers[VIEWS].metrics.update(
            {
                "views": table.num_rows,
                "shop_views": sum(not v.startswith("crop") for v in views),
                "street_crop_views": sum(v.startswith("crop") for v in views),
                "dim": table.schema.field("vector").type.list_size,
            }
        )

    return run_stage(store, STAGE, CODE_VERSION, OUTPUTS, compute, inputs=data.as_inputs(), params=params)


@task(name="views", cache_policy=NO_CACHE)
def views_task(home: str, data: DataRefs, params: ViewParams) -> StageResult:
    result = run_views(ArtifactStore(home), data, params)
    report_to_prefect(result, "views")
    return result
