"""Noise-filter stage task: train the good/noise classifier on human labels, score every street photo.

Publishes ``noise_labels`` (the validated labels), ``noise_scores`` (every street photo,
nothing deleted: later stages read ``keep``) and ``noise_model`` (the fitted classifier).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pyarrow.compute as pc
from prefect import task
from prefect.cache_policies import NO_CACHE

from street2shop.cleaning.labels import validate_labels
from street2shop.cleaning.noise import NoiseParams, train_and_score
from street2shop.storage.names import ITEMS, NOISE, NOISE_LABELS, NOISE_MODEL, NOISE_SCORES
from street2shop.storage.store import ArtifactRef, ArtifactStore
from street2shop.tasks.stage import StageResult, images_with_paths, report_to_prefect, run_stage

STAGE = NOISE
CODE_VERSION = "2"
OUTPUTS = (NOISE_SCORES, NOISE_LABELS, NOISE_MODEL)


def run_noise_filter(store: ArtifactStore, images_ref: ArtifactRef, labels_path: str | Path, params: NoiseParams) -> StageResult:
    labels_path = Path(labels_path)
    if not labels_path.exists():
        raise FileNotFoundError(f"labels file {labels_path} does not exist")
    labels_sha = hashlib.sha256(labels_path.read_bytes()).hexdigest()

    def compute(writers) -> None:
        images = images_with_paths(store, images_ref)
        street = images.filter(pc.equal(images.column("role"), "street"))
        labels = validate_labels(labels_path, set(street.column("image_id").to_pylist()))
        model_dir = writers["noise_model"].dir
        # the crawl publishes items and images under one version id: the items of these images
        items = store.read_table(ArtifactRef(stage=images_ref.stage, name=ITEMS, version=images_ref.version))
        report, scores = train_and_score(street, labels, params, model_dir, items)
        writers["noise_labels"].write_table(labels)
        writers["noise_scores"].write_table(scores)
        figures = report.model_dump() if hasattr(report, "model_dump") else dict(report)
        kept = pc.sum(scores.column("keep")).as_py() or 0
        figures.update({"scored": scores.num_rows, "kept": kept, "rejected": scores.num_rows - kept})
        writers["noise_scores"].metrics.update(figures)
        writers["noise_model"].metrics.update(figures)

    return run_stage(
        store,
        STAGE,
        CODE_VERSION,
        OUTPUTS,
        compute,
        inputs={"images": images_ref},
        params={**params.model_dump(mode="json"), "labels_sha256": labels_sha},
    )


@task(name="noise-filter", cache_policy=NO_CACHE)
def noise_filter_task(home: str, images_ref: ArtifactRef, labels_path: str, params: NoiseParams) -> StageResult:
    result = run_noise_filter(ArtifactStore(home), images_ref, labels_path, params)
    report_to_prefect(result, "noise filter")
    return result
