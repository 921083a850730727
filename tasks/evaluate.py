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
    calibration_pixels,
    calibration_sample,
    candidate_models,
    evaluate_models,
    evaluated_vectors,
    feature_functions,
    score_precisions,
)
from street2shop.retrieval.report import build_report_data, render_report
from street2shop.sources.labelled import annotated_from_csvs, read_labelled_csv
from street2shop.storage.names import CHECKPOINT, CHECKPOINT_FILE, EMBEDDINGS, EVALUATE, METRICS, REPORT_FILE, SERVING_FILE
from street2shop.storage.schemas import vectors_table
from street2shop.storage.store import ArtifactRef, ArtifactStore
from street2shop.storage.stages import STAGES_BY_NAME
from street2shop.tasks.data import DataRefs, load_annotated
from street2shop.tasks.stage import LOADER_WORKERS, StageResult, report_to_prefect, run_stage

STAGE = EVALUATE
CODE_VERSION = "3"  # 3: benchmarks, localisation, the served model (and its precision)
OUTPUTS = STAGES_BY_NAME[STAGE].outputs  # as storage/stages.py declares them


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


def run_evaluate(
    store: ArtifactStore, data: DataRefs, checkpoint: ArtifactRef, params: EvaluateParams, localiser: ArtifactRef | None = None,
) -> StageResult:
    """``localiser``: the localise stage's box head, where the pipeline learned one (not read yet:
    the learned localiser is scored beside ``none`` and the crop grid by the evaluate stage's
    next version; until then it is not an input of the version either)."""
    fingerprints = benchmark_fingerprint(params)

    def compute(writers) -> None:
        annotated = load_annotated(store, data)
        benchmarks = {
            b.name: annotated_from_csvs(read_labelled_csv(b.gallery), read_labelled_csv(b.queries)) for b in params.benchmarks
        }
        models = candidate_models(load_embedder(store.file(checkpoint, CHECKPOINT_FILE)), params)
        result = evaluate_models(annotated, feature_functions(models, params, LOADER_WORKERS), params, benchmarks)
        # which precision of the served model the service runs (each scored like the rest)
        choice, calibration = (
            _choose_precision(models[result.served], annotated, benchmarks, result.figures, params)
            if params.precisions else (None, [])
        )  # fmt: skip
        if choice is not None and choice.mode != params.inference_mode:
            # "served" is what the service runs: the chosen precision's figures
            for key, value in choice.figures[choice.mode].items():
                prefix, _, name = key.rpartition(":")
                if name in ("top1", "top20", "map"):
                    result.figures[f"{prefix + ':' if prefix else ''}served_{name}"] = value
        metrics = pa.Table.from_pylist(result.rows + (choice.rows if choice else []))
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
        served_figures = {k: v for k, v in result.figures.items() if k.startswith("served") or k.endswith(":served_top20")}
        if choice is not None:
            precision_figures = {f"precision:{mode}:{k}": v for mode, fig in choice.figures.items() for k, v in fig.items()}
            writers[METRICS].metrics.update({**precision_figures, "served_precision": choice.mode})
            serving |= {
                "inference_mode": choice.mode,
                "precisions": choice.figures,
                "precisions_skipped": choice.skipped,
                # the photos a quantised precision was calibrated on: the service rebuilds
                # the same calibration from them, so it runs the model that was scored
                "calibration": calibration,
            }
            served_figures["served_precision"] = choice.mode
        served.path(SERVING_FILE).write_text(json.dumps(serving, indent=2) + "\n")
        served.metrics.update(served_figures)

        # the index holds the served precision's vectors of the shop photos
        vectors = choice.vectors.get(choice.mode, result.vectors[result.served]) if choice else result.vectors[result.served]
        ids, matrix = evaluated_vectors(annotated, params.split, vectors)
        table = vectors_table(ids, matrix)
        writers[EMBEDDINGS].write_table(table, table.schema)
        writers[EMBEDDINGS].metrics.update({"dim": int(matrix.shape[1]), "vectors": len(ids), "served": result.served,
                                            "precision": choice.mode if choice else params.inference_mode})

    inputs = {**data.as_inputs(), "checkpoint": checkpoint}
    version_params = {**params.model_dump(mode="json"), "benchmarks_sha256": fingerprints}
    return run_stage(store, STAGE, CODE_VERSION, OUTPUTS, compute, inputs=inputs, params=version_params)


def _choose_precision(model, annotated: pa.Table, benchmarks: dict, figures: dict, params: EvaluateParams):
    """Score the served model in each configured precision; the chosen one and the image ids
    of its calibration photos (training split only)."""
    sample = calibration_sample(annotated, params.calibration_photos)
    pixels = calibration_pixels(model, sample.column("path").to_pylist())
    choice = score_precisions(model, annotated, params, benchmarks, figures, pixels, LOADER_WORKERS)
    return choice, sample.column("image_id").to_pylist()


@task(name="evaluate", cache_policy=NO_CACHE)
def evaluate_task(
    home: str, data: DataRefs, checkpoint: ArtifactRef, params: EvaluateParams, localiser: ArtifactRef | None = None,
) -> StageResult:
    result = run_evaluate(ArtifactStore(home), data, checkpoint, params, localiser=localiser)
    report_to_prefect(result, "evaluate")
    return result
