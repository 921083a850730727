"""Evaluate stage task: the trained embedder and its baselines through the one evaluation path.

Reads the clean data and the checkpoint, calls
:func:`~street2shop.retrieval.evaluation.evaluate_models` (queries: labelled-clean street
photos of the test split; gallery: every shop photo of the catalogue; exact search;
baselines and αQE/DBA beside the trained model), and publishes ``metrics`` (with the HTML
report as ``report.html``) and the trained model's vectors as ``embeddings`` for the index
stage.
"""

from __future__ import annotations

import pyarrow as pa
from prefect import task
from prefect.cache_policies import NO_CACHE

from street2shop.models.embedder import load_embedder
from street2shop.retrieval.evaluation import EvaluateParams, evaluate_models, evaluated_vectors, feature_functions
from street2shop.retrieval.report import build_report_data, render_report
from street2shop.storage.names import CHECKPOINT_FILE, EMBEDDINGS, EVALUATE, METRICS, REPORT_FILE
from street2shop.storage.schemas import vectors_table
from street2shop.storage.store import ArtifactRef, ArtifactStore
from street2shop.tasks.data import DataRefs, load_annotated
from street2shop.tasks.stage import LOADER_WORKERS, StageResult, report_to_prefect, run_stage

STAGE = EVALUATE
CODE_VERSION = "2"
OUTPUTS = (METRICS, EMBEDDINGS)


def run_evaluate(store: ArtifactStore, data: DataRefs, checkpoint: ArtifactRef, params: EvaluateParams) -> StageResult:
    def compute(writers) -> None:
        annotated = load_annotated(store, data)
        model = load_embedder(store.file(checkpoint, CHECKPOINT_FILE))
        result = evaluate_models(annotated, feature_functions(model, params, LOADER_WORKERS), params)
        metrics = pa.Table.from_pylist(result.rows)
        writers[METRICS].write_table(metrics)
        writers[METRICS].metrics.update(result.figures)
        if params.report:
            title = f"street2shop evaluation {writers[METRICS].version}"
            page = build_report_data(title, metrics, annotated, params.split, result.report, result.vectors, seed=params.report_seed)
            writers[METRICS].path(REPORT_FILE).write_text(render_report(page), encoding="utf-8")
        ids, matrix = evaluated_vectors(annotated, params.split, result.vectors)
        table = vectors_table(ids, matrix)
        writers[EMBEDDINGS].write_table(table, table.schema)
        writers[EMBEDDINGS].metrics.update({"dim": int(matrix.shape[1]), "vectors": len(ids)})

    inputs = {**data.as_inputs(), "checkpoint": checkpoint}
    return run_stage(store, STAGE, CODE_VERSION, OUTPUTS, compute, inputs=inputs, params=params)


@task(name="evaluate", cache_policy=NO_CACHE)
def evaluate_task(home: str, data: DataRefs, checkpoint: ArtifactRef, params: EvaluateParams) -> StageResult:
    result = run_evaluate(ArtifactStore(home), data, checkpoint, params)
    report_to_prefect(result, "evaluate")
    return result
