"""Evaluate stage task: the trained embedder and its baselines through the one evaluation path.

Queries are labelled-clean street photos of the test split, the gallery is every shop
photo of the catalogue, search is exact. Baselines (white-box features, the same
backbone's pretrained features) go through the same code, so the ``metrics`` table always
shows how far training moved. Average query expansion (αQE) and database-side
augmentation (DBA) are each measured on and off on the trained model's vectors (models
``trained+qe``, ``trained+dba``, ``trained+dba+qe``). The trained model's vectors are
published as ``embeddings`` for the index stage, and a self-contained HTML report as
``report.html`` of the ``metrics`` version.
"""

from __future__ import annotations

from functools import partial

import numpy as np
import pyarrow as pa
from prefect import task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel, field_validator

from street2shop.evaluate import EXPANSIONS, evaluate_features, expand, score_vectors
from street2shop.models.embed import embed_images
from street2shop.models.embedder import load_embedder, pretrained_features
from street2shop.report import REPORT_FILE, build_report_data, render_report
from street2shop.retrieval.baselines import baseline_features
from street2shop.selection import gallery_images, query_images
from street2shop.storage.schemas import embeddings_schema
from street2shop.storage.store import ArtifactRef, ArtifactStore
from street2shop.tasks.data import DataRefs, load_annotated
from street2shop.tasks.stage import LOADER_WORKERS, StageResult, report_to_prefect, run_stage
from street2shop.tasks.train import CHECKPOINT_FILE

STAGE = "evaluate"
CODE_VERSION = "2"
OUTPUTS = ("metrics", "embeddings")


class EvaluateParams(BaseModel):
    split: str = "test"
    ks: list[int] = [1, 5, 10, 20]
    #: white-box baselines by name, plus "pretrained" (the trained model's backbone, untrained head)
    baselines: list[str] = ["colour_histogram", "hog", "pretrained"]
    baseline_image_size: int = 128
    batch_size: int = 32
    #: post-processing of the trained vectors measured on top of them: "qe", "dba", "dba+qe"
    expansions: list[str] = ["qe", "dba", "dba+qe"]
    #: αQE: gallery neighbours averaged into a query, and their weight exponent
    qe_k: int = 2
    qe_alpha: float = 3.0
    #: DBA: neighbours (itself included) averaged into a gallery vector
    dba_k: int = 2
    dba_alpha: float = 3.0
    report: bool = True
    report_seed: int = 0

    @field_validator("expansions")
    @classmethod
    def _known_expansions(cls, value: list[str]) -> list[str]:
        unknown = sorted(set(value) - set(EXPANSIONS))
        if unknown:
            raise ValueError(f"unknown expansion(s) {unknown}; known: {', '.join(EXPANSIONS)}")
        return value


def run_evaluate(store: ArtifactStore, data: DataRefs, checkpoint: ArtifactRef, params: EvaluateParams) -> StageResult:
    def compute(writers) -> None:
        annotated = load_annotated(store, data)
        model = load_embedder(store.file(checkpoint, CHECKPOINT_FILE))
        feature_fns = {"trained": partial(embed_images, model, batch_size=params.batch_size, num_workers=LOADER_WORKERS)}
        for name in params.baselines:
            if name == "pretrained":
                baseline = pretrained_features(model.config.backbone, image_size=model.preprocess.image_size)
                feature_fns[name] = partial(embed_images, baseline, batch_size=params.batch_size, num_workers=LOADER_WORKERS)
            else:
                feature_fns[name] = partial(baseline_features, name, image_size=params.baseline_image_size)
        rows, figures, vectors = [], {}, None
        for name, fn in feature_fns.items():
            report, vecs = evaluate_features(fn, annotated, params.split, ks=params.ks)
            rows.extend(report.to_rows(name, params.split))
            for key in ("top1", "top20", "map"):
                if key in report.overall:
                    figures[f"{name}_{key}"] = report.overall[key]
            if name == "trained":
                vectors, trained_report = vecs, report
                figures.update(
                    {
                        "queries": report.overall.get("n_queries"),
                        "gallery": report.overall.get("gallery_size"),
                        "gallery_items": report.overall.get("gallery_items"),
                        # which gallery every figure used: a bigger gallery is harder
                        "gallery_scope": "whole catalogue (every shop photo), exact search",
                    }
                )
        for expansion in params.expansions:
            queries_x, gallery_x = expand(
                expansion, vectors["queries"], vectors["gallery"], params.qe_k, params.qe_alpha, params.dba_k, params.dba_alpha
            )
            report = score_vectors(queries_x, gallery_x, annotated, params.split, params.ks)
            name = f"trained+{expansion}"
            rows.extend(report.to_rows(name, params.split))
            figures.update({f"{name}_{key}": report.overall[key] for key in ("top1", "top20", "map") if key in report.overall})
        metrics = pa.Table.from_pylist(rows)
        writers["metrics"].write_table(metrics)
        writers["metrics"].metrics.update(figures)
        if params.report:
            title = f"street2shop evaluation {writers['metrics'].version}"
            page = build_report_data(title, metrics, annotated, params.split, trained_report, vectors, seed=params.report_seed)
            writers["metrics"].path(REPORT_FILE).write_text(render_report(page), encoding="utf-8")

        gallery, queries = gallery_images(annotated), query_images(annotated, params.split)
        ids = gallery.column("image_id").to_pylist() + queries.column("image_id").to_pylist()
        matrix = np.concatenate([vectors["gallery"], vectors["queries"]]).astype(np.float32)
        dim = matrix.shape[1]
        flat = pa.array(matrix.reshape(-1), pa.float32())
        table = pa.table({"image_id": pa.array(ids, pa.string()), "vector": pa.FixedSizeListArray.from_arrays(flat, dim)})
        # the same photo may be a gallery image of two items: one vector per image id
        _, first = np.unique(np.asarray(ids, dtype=object), return_index=True)
        table = table.take(pa.array(np.sort(first)))
        writers["embeddings"].write_table(table, embeddings_schema(dim))
        writers["embeddings"].metrics.update({"dim": dim, "vectors": table.num_rows})

    inputs = {**data.as_inputs(), "checkpoint": checkpoint}
    return run_stage(store, STAGE, CODE_VERSION, OUTPUTS, compute, inputs=inputs, params=params)


@task(name="evaluate", cache_policy=NO_CACHE)
def evaluate_task(home: str, data: DataRefs, checkpoint: ArtifactRef, params: EvaluateParams) -> StageResult:
    result = run_evaluate(ArtifactStore(home), data, checkpoint, params)
    report_to_prefect(result, "evaluate")
    return result
