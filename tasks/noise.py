"""Noise-filter stage task: train the good/noise classifier on human labels, score every street photo.

Publishes ``noise_labels`` (the validated labels), ``noise_scores`` (every street photo,
nothing deleted: later stages read ``keep``) and ``noise_model`` (the fitted classifier).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
from prefect import task
from prefect.cache_policies import NO_CACHE

from street2shop.cleaning.labels import validate_labels
from street2shop.cleaning.noise import NoiseParams, train_and_score
from street2shop.storage.names import ITEMS, NOISE, NOISE_LABELS, NOISE_MODEL, NOISE_SCORES
from street2shop.storage.schemas import NOISE_LABELS as NOISE_LABELS_SCHEMA
from street2shop.storage.store import ArtifactRef, ArtifactStore, images_with_paths
from street2shop.storage.stages import STAGES_BY_NAME
from street2shop.tasks.stage import StageResult, report_to_prefect, run_stage

STAGE = NOISE
CODE_VERSION = "2"
OUTPUTS = STAGES_BY_NAME[STAGE].outputs  # as storage/stages.py declares them


def run_noise_filter(store: ArtifactStore, images_ref: ArtifactRef, labels_path: str | Path, params: NoiseParams) -> StageResult:
    labels_path = Path(labels_path)
    if not labels_path.exists():
        raise FileNotFoundError(f"labels file {labels_path} does not exist")
    labels_sha = hashlib.sha256(labels_path.read_bytes()).hexdigest()

    def compute(writers) -> None:
        images = images_with_paths(store, images_ref)
        street = images.filter(pc.equal(images.column("role"), "street"))
        labels = validate_labels(labels_path, set(street.column("image_id").to_pylist()))
        model_dir = writers[NOISE_MODEL].dir
        # the crawl publishes items and images under one version id: the items of these images
        items = store.read_table(ArtifactRef(stage=images_ref.stage, name=ITEMS, version=images_ref.version))
        report, scores = train_and_score(street, labels, params, model_dir, items)
        writers[NOISE_LABELS].write_table(labels)
        writers[NOISE_SCORES].write_table(scores)
        figures = report.model_dump() if hasattr(report, "model_dump") else dict(report)
        kept = pc.sum(scores.column("keep")).as_py() or 0
        figures.update({"scored": scores.num_rows, "kept": kept, "rejected": scores.num_rows - kept})
        writers[NOISE_SCORES].metrics.update(figures)
        writers[NOISE_MODEL].metrics.update(figures)

    return run_stage(
        store, STAGE, CODE_VERSION, OUTPUTS, compute, inputs={"images": images_ref},
        params={**params.model_dump(mode="json"), "labels_sha256": labels_sha},
    )


def run_keep_all(store: ArtifactStore, images_ref: ArtifactRef) -> StageResult:
    """No labels (a curated dataset rather than a crawl): every street photo is kept.

    Publishes the same three artifacts, so later stages read them as usual: ``noise_labels``
    empty, ``noise_scores`` with ``p_noise`` 0 and ``keep`` true, ``noise_model`` holding no model.
    """

    def compute(writers) -> None:
        images = store.read_table(images_ref, columns=["image_id", "role"])
        street = images.filter(pc.equal(images.column("role"), "street"))
        ids = sorted(set(street.column("image_id").to_pylist()))
        writers[NOISE_LABELS].write_table(NOISE_LABELS_SCHEMA.empty_table())
        writers[NOISE_SCORES].write_table(
            pa.table({"image_id": ids, "p_noise": pa.array([0.0] * len(ids), pa.float32()), "keep": [True] * len(ids)})
        )
        figures = {"scored": len(ids), "kept": len(ids), "rejected": 0, "filter": "none: no labels, every street photo kept"}
        writers[NOISE_SCORES].metrics.update(figures)
        writers[NOISE_MODEL].metrics.update(figures)

    return run_stage(store, STAGE, CODE_VERSION, OUTPUTS, compute, inputs={"images": images_ref}, params={"keep_all": True})


@task(name="noise-filter", cache_policy=NO_CACHE)
def noise_filter_task(home: str, images_ref: ArtifactRef, labels_path: str | None, params: NoiseParams) -> StageResult:
    store = ArtifactStore(home)
    result = run_keep_all(store, images_ref) if labels_path is None else run_noise_filter(store, images_ref, labels_path, params)
    report_to_prefect(result, "noise filter")
    return result
