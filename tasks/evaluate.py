"""Evaluate stage task: the trained embedder, its baselines and the real-photo benchmarks,
through the one evaluation path.

Reads the clean data, the checkpoint and the configured benchmark sets, calls
:func:`~street2shop.retrieval.evaluation.evaluate_models` and publishes

* ``metrics``: every figure (a ``benchmark`` column says which set), with the HTML report as
  ``report.html``;
* ``checkpoint``: the served model (the better of the trained model and the untrained
  backbone on the set that judges them), with ``serving.json`` saying which one, its
  precision, and how street photos are localised: the localisation chosen by a stated rule
  (accuracy within a latency budget) among ``none``, the configured grid and, given the
  localise stage's artifact, the learned localiser, each scored at the served precision
  with its passes and ms per query;
* ``embeddings``: the served model's vectors of the shop split, which the index stage
  indexes.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import replace
from pathlib import Path

import pyarrow as pa
from prefect import task
from prefect.cache_policies import NO_CACHE

from street2shop.models.embedder import load_embedder, save_checkpoint
from street2shop.models.fast import optimize_for_inference
from street2shop.models.localise import load_localiser
from street2shop.models.onepass import one_pass_searches
from street2shop.retrieval.evaluation import (
    HEADLINE_KEYS,
    TRAINED,
    EvaluateParams,
    LocalisationChoice,
    calibration_pixels,
    calibration_sample,
    candidate_models,
    evaluate_models,
    evaluated_vectors,
    feature_functions,
    score_localisations,
    score_precisions,
)
from street2shop.retrieval.report import build_report_data, render_report
from street2shop.sources.labelled import annotated_from_csvs, read_labelled_csv
from street2shop.storage.names import (
    CHECKPOINT,
    CHECKPOINT_FILE,
    EMBEDDINGS,
    EVALUATE,
    LOCALISER_FILE,
    METRICS,
    REPORT_FILE,
    SERVING_FILE,
)
from street2shop.storage.schemas import vectors_table
from street2shop.storage.store import ArtifactRef, ArtifactStore
from street2shop.storage.stages import STAGES_BY_NAME
from street2shop.tasks.data import DataRefs, load_annotated
from street2shop.tasks.stage import LOADER_WORKERS, StageResult, report_to_prefect, run_stage

STAGE = EVALUATE
CODE_VERSION = "4"  # 3: benchmarks, localisation, the served model (and its precision); 4: the served localisation
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
    store: ArtifactStore, data: DataRefs, checkpoint: ArtifactRef, params: EvaluateParams, localiser: ArtifactRef | None = None
) -> StageResult:
    """``localiser``: the localise stage's artifact; its learned localiser becomes a candidate."""
    fingerprints = benchmark_fingerprint(params)

    def compute(writers) -> None:
        annotated = load_annotated(store, data)
        benchmarks = {
            b.name: annotated_from_csvs(read_labelled_csv(b.gallery), read_labelled_csv(b.queries)) for b in params.benchmarks
        }
        models = candidate_models(load_embedder(store.file(checkpoint, CHECKPOINT_FILE)), params)
        result = evaluate_models(annotated, feature_functions(models, params, LOADER_WORKERS), params, benchmarks)
        # which precision of the served model the service runs (each scored like the rest)
        choice, calibration, pixels = (
            _choose_precision(models[result.served], annotated, benchmarks, result.figures, params)
            if params.precisions else (None, [], None)
        )  # fmt: skip
        if choice is not None and choice.mode != params.inference_mode:
            _set_served(result.figures, choice.figures[choice.mode])  # "served" is what the service runs
        placed = _choose_localisation(store, localiser, models[result.served], annotated, benchmarks, result.figures, params, choice, pixels)
        _set_served(result.figures, placed.figures[placed.served.label])
        localise_figures = {f"localise:{label}:{k}": v for label, fig in placed.figures.items() for k, v in fig.items()}
        result.figures.update({**localise_figures, "localise": placed.served.label, "localise_rule": placed.rule})
        metrics = pa.Table.from_pylist(result.rows + (choice.rows if choice else []) + placed.rows)
        writers[METRICS].write_table(metrics)
        writers[METRICS].metrics.update(result.figures)
        if params.report:
            title = f"street2shop evaluation {writers[METRICS].version}"
            page = build_report_data(title, metrics, annotated, params.split, result.report, result.vectors[TRAINED],
                                     seed=params.report_seed, figures=result.figures)
            writers[METRICS].path(REPORT_FILE).write_text(render_report(page), encoding="utf-8")

        served = writers[CHECKPOINT]
        if result.served == TRAINED:
            shutil.copyfile(store.file(checkpoint, CHECKPOINT_FILE), served.path(CHECKPOINT_FILE))
        else:
            save_checkpoint(served.path(CHECKPOINT_FILE), models[result.served])
        serving = {
            "model": result.served, "localise": placed.served.model_dump(mode="json"), "trained_checkpoint": str(checkpoint),
            # every localisation scored at the served precision, and the rule that chose one
            "localisations": placed.figures, "localise_rule": placed.rule, "latency_budget_ms": params.latency_budget_ms,
        }  # fmt: skip
        served_figures = {k: v for k, v in result.figures.items() if k.startswith("served") or k.endswith(":served_top20")}
        served_figures["localise"] = placed.served.label
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

    inputs = {**data.as_inputs(), "checkpoint": checkpoint, **({"localiser": localiser} if localiser is not None else {})}
    version_params = {**params.model_dump(mode="json"), "benchmarks_sha256": fingerprints}
    return run_stage(store, STAGE, CODE_VERSION, OUTPUTS, compute, inputs=inputs, params=version_params)


def _choose_precision(model, annotated: pa.Table, benchmarks: dict, figures: dict, params: EvaluateParams):
    """Score the served model in each configured precision; the chosen one, the image ids
    of its calibration photos (training split only) and those photos preprocessed."""
    sample = calibration_sample(annotated, params.calibration_photos)
    pixels = calibration_pixels(model, sample.column("path").to_pylist())
    choice = score_precisions(model, annotated, params, benchmarks, figures, pixels, LOADER_WORKERS)
    return choice, sample.column("image_id").to_pylist(), pixels


def _set_served(figures: dict, chosen: dict) -> None:
    """The ``[<set>:]served_<key>`` figures from a chosen variant's ``[<set>:]<key>``."""
    for key, value in chosen.items():
        prefix, _, name = key.rpartition(":")
        if name in HEADLINE_KEYS:
            figures[f"{prefix + ':' if prefix else ''}served_{name}"] = value


def _choose_localisation(
    store: ArtifactStore, localiser: ArtifactRef | None, model, annotated: pa.Table, benchmarks: dict, figures: dict,
    params: EvaluateParams, choice, pixels,
) -> LocalisationChoice:
    """Score the localisations with the served model at the served precision and choose one;
    the learned localiser's variants too when the localise stage's artifact is given."""
    mode = choice.mode if choice is not None else params.inference_mode
    runner = choice.runner if choice is not None else optimize_for_inference(model, mode, fallback="eager")
    learned = {}
    if localiser is not None:
        head, meta = load_localiser(store.file(localiser, LOCALISER_FILE))
        variants = {c.label: c.options for c in params.learned_candidates}
        learned = one_pass_searches(model, mode, head, meta, variants, calibration=pixels, crops_runner=runner)
    placed = score_localisations(runner, annotated, params, benchmarks, figures, learned, LOADER_WORKERS)
    if placed.served.learned:
        placed = replace(placed, served=placed.served.model_copy(update={"localiser": str(localiser)}))
    return placed


@task(name="evaluate", cache_policy=NO_CACHE)
def evaluate_task(
    home: str, data: DataRefs, checkpoint: ArtifactRef, params: EvaluateParams, localiser: ArtifactRef | None = None
) -> StageResult:
    result = run_evaluate(ArtifactStore(home), data, checkpoint, params, localiser)
    report_to_prefect(result, "evaluate")
    return result
