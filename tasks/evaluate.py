"""Evaluate stage task: the trained embedder, its baselines and the real-photo benchmarks,
through the one evaluation path.

Reads the clean data, the checkpoint and the configured benchmark sets, calls
:func:`~street2shop.retrieval.evaluation.evaluate_models` and publishes

* ``metrics``: every figure (a ``benchmark`` column says which set), with the HTML report as
  ``report.html``;
* ``checkpoint``: the served model (the better of the trained model and the untrained
  backbone on the set that judges them), with ``serving.json`` saying which one and how
  street photos are localised;
* ``embeddings``: the served model's vectors of the shop split, which the index stage
  indexes.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pyarrow as pa
from prefect import task
from prefect.cache_policies import NO_CACHE

from street2shop.models.embedder import load_embedder, save_checkpoint
from street2shop.retrieval.evaluation import (
    TRAINED,
    EvaluateParams,
    candidate_models,
    evaluate_models,
    evaluated_vectors,
    feature_functions,
)
from street2shop.retrieval.report import build_report_data, render_report
from street2shop.sources.labelled import annotated_from_csvs, read_labelled_csv
from street2shop.storage.names import CHECKPOINT, CHECKPOINT_FILE, EMBEDDINGS, EVALUATE, METRICS, REPORT_FILE, SERVING_FILE
from street2shop.storage.schemas import vectors_table
from street2shop.storage.store import ArtifactRef, ArtifactStore
from street2shop.tasks.data import DataRefs, load_annotated
from street2shop.tasks.stage import LOADER_WORKERS, StageResult, report_to_prefect, run_stage

STAGE = EVALUATE
CODE_VERSION = "3"  # 3: benchmarks, localisation, the served model
OUTPUTS = (METRICS, CHECKPOINT, EMBEDDINGS)


def benchmark_fingerprint(params: EvaluateParams) -> dict[str, str]:
    """sha256 of each benchmark's CSVs and of every photo they name: part of the version id,
    so a changed benchmark set is re-scored and an unchanged one is not."""
    out = {}
    for benchmark in params.benchmarks:
        digest = hashlib.sha256()
        for csv_path in (benchmark.gallery, benchmark.queries):
            photos = read_labelled_csv(csv_path, check_images=False)
            digest.update(Path(csv_path).read_bytes())
            for path in photos.table.column("path").to_pylist():
                digest.update(Path(path).read_bytes())
        out[benchmark.name] = digest.hexdigest()[:16]
    return out


def run_evaluate(store: ArtifactStore, data: DataRefs, checkpoint: ArtifactRef, params: EvaluateParams) -> StageResult:
    fingerprints = benchmark_fingerprint(params)

    def compute(writers) -> None:
        annotated = load_annotated(store, data)
        benchmarks = {
            b.name: annotated_from_csvs(read_labelled_csv(b.gallery), read_labelled_csv(b.queries)) for b in params.benchmarks
        }
        models = candidate_models(load_embedder(store.file(checkpoint, CHECKPOINT_FILE)), params)
        result = evaluate_models(annotated, feature_functions(models, params, LOADER_WORKERS), params, benchmarks)
        metrics = pa.Table.from_pylist(result.rows)
        writers[METRICS].write_table(metrics)
        writers[METRICS].metrics.update(result.figures)
        if params.report:
            title = f"street2shop evaluation {writers[METRICS].version}"
            page = build_report_data(title, metrics, annotated, params.split, result.report, result.vectors[TRAINED], seed=params.report_seed)
            writers[METRICS].path(REPORT_FILE).write_text(render_report(page), encoding="utf-8")

        served = writers[CHECKPOINT]
        if result.served == TRAINED:
            shutil.copyfile(store.file(checkpoint, CHECKPOINT_FILE), served.path(CHECKPOINT_FILE))
        else:
            save_checkpoint(served.path(CHECKPOINT_FILE), models[result.served])
        serving = {"model": result.served, "localise": params.localise.model_dump(mode="json"), "trained_checkpoint": str(checkpoint)}
        served.path(SERVING_FILE).write_text(json.dumps(serving, indent=2) + "\n")
        served.metrics.update({k: v for k, v in result.figures.items() if k.startswith("served") or k.endswith(":served_top20")})

        ids, matrix = evaluated_vectors(annotated, params.split, result.vectors[result.served])
        table = vectors_table(ids, matrix)
        writers[EMBEDDINGS].write_table(table, table.schema)
        writers[EMBEDDINGS].metrics.update({"dim": int(matrix.shape[1]), "vectors": len(ids), "served": result.served})

    inputs = {**data.as_inputs(), "checkpoint": checkpoint}
    version_params = {**params.model_dump(mode="json"), "benchmarks_sha256": fingerprints}
    return run_stage(store, STAGE, CODE_VERSION, OUTPUTS, compute, inputs=inputs, params=version_params)


@task(name="evaluate", cache_policy=NO_CACHE)
def evaluate_task(home: str, data: DataRefs, checkpoint: ArtifactRef, params: EvaluateParams) -> StageResult:
    result = run_evaluate(ArtifactStore(home), data, checkpoint, params)
    report_to_prefect(result, "evaluate")
    return result
