"""The one evaluation path: street queries of a split against the whole shop gallery.

Training's validation, the evaluate stage, bring-your-own-data evaluation (``street2shop
eval``) and the benchmarks all call :func:`evaluate_features` (or :func:`score_vectors`, when
the vectors already exist); only the feature function differs (trained embedder, pretrained
backbone, white-box baselines) or the post-processing of the vectors (αQE, DBA). The
evaluate stage's whole computation is :func:`evaluate_models`; its task only reads the
artifacts, calls it and publishes the result.

The gallery is every shop photo of the annotated table (for the pipeline: the whole
catalogue), so a figure always says which gallery it used through ``gallery_size`` and
``gallery_items``. The metrics themselves are defined in :mod:`street2shop.retrieval.metrics`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
from pydantic import BaseModel, field_validator

from street2shop.cleaning.selection import gallery_images, query_images
from street2shop.retrieval.expansion import EXPANSIONS, expand
from street2shop.retrieval.metrics import RetrievalReport, evaluate_retrieval

if TYPE_CHECKING:  # torch loads when a model is evaluated, not when this module is imported
    from street2shop.models.embedder import Embedder

#: paths -> ``(len(paths), dim)`` float32 vectors
FeatureFn = Callable[[list[str]], np.ndarray]

#: The name of the model under evaluation in the metrics table (baselines use their own).
TRAINED = "trained"
#: The figures of each model copied into the ``metrics`` manifest (``<model>_<key>``).
HEADLINE_KEYS = ("top1", "top20", "map")


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


def evaluate_features(
    features: FeatureFn,
    annotated: pa.Table,
    split: str = "test",
    ks: Sequence[int] = (1, 5, 10, 20),
    gallery_vectors: np.ndarray | None = None,
) -> tuple[RetrievalReport, dict[str, np.ndarray]]:
    """Embed queries of ``split`` and the gallery with ``features`` and score retrieval.

    Returns the report and the vectors (``gallery``, ``queries``) so callers can store them.
    """
    queries = query_images(annotated, split)
    gallery = gallery_images(annotated)
    if queries.num_rows == 0:
        raise ValueError(f"no evaluation queries in split {split!r}: is the shop too small or every photo filtered?")
    if gallery_vectors is None:
        gallery_vectors = features(gallery.column("path").to_pylist())
    query_vectors = features(queries.column("path").to_pylist())
    report = score_vectors(query_vectors, gallery_vectors, annotated, split, ks)
    return report, {"gallery": gallery_vectors, "queries": query_vectors}


def score_vectors(
    query_vectors: np.ndarray,
    gallery_vectors: np.ndarray,
    annotated: pa.Table,
    split: str = "test",
    ks: Sequence[int] = (1, 5, 10, 20),
) -> RetrievalReport:
    """Score vectors already computed for ``query_images(annotated, split)`` (rows in that
    order) against ``gallery_images(annotated)``.

    ``category`` and ``product_id`` are optional columns: without categories there are no
    per-category figures, without products no "right product, wrong colour" rate (rather
    than a rate that is 0 by construction).
    """
    queries = query_images(annotated, split)
    gallery = gallery_images(annotated)
    if len(query_vectors) != queries.num_rows or len(gallery_vectors) != gallery.num_rows:
        raise ValueError(
            f"got {len(query_vectors)} query and {len(gallery_vectors)} gallery vectors for "
            f"{queries.num_rows} queries and {gallery.num_rows} gallery photos"
        )
    item_product = None
    if _has_values(annotated, "product_id"):
        item_product = dict(zip(annotated.column("item_id").to_pylist(), annotated.column("product_id").to_pylist()))
    categories = queries.column("category").to_pylist() if _has_values(queries, "category") else None
    return evaluate_retrieval(
        query_vectors,
        queries.column("item_id").to_pylist(),
        gallery_vectors,
        gallery.column("item_id").to_pylist(),
        ks=tuple(ks),
        query_categories=categories,
        item_product=item_product,
    )


def _has_values(table: pa.Table, column: str) -> bool:
    return column in table.column_names and table.num_rows > 0 and table.column(column).null_count == 0


# --------------------------------------------------------------------------- the evaluate stage


def feature_functions(model: Embedder, params: EvaluateParams, num_workers: int = 0) -> dict[str, FeatureFn]:
    """The trained model first, then each baseline of ``params`` by name.

    ``pretrained`` is the trained model's backbone with its ImageNet weights and a
    parameter-free head, at the model's input size: how far training moved.
    """
    from street2shop.models.embed import embed_images
    from street2shop.models.embedder import pretrained_features
    from street2shop.retrieval.baselines import baseline_features

    fns: dict[str, FeatureFn] = {TRAINED: partial(embed_images, model, batch_size=params.batch_size, num_workers=num_workers)}
    for name in params.baselines:
        if name == "pretrained":
            baseline = pretrained_features(model.config.backbone, image_size=model.preprocess.image_size)
            fns[name] = partial(embed_images, baseline, batch_size=params.batch_size, num_workers=num_workers)
        else:
            fns[name] = partial(baseline_features, name, image_size=params.baseline_image_size)
    return fns


@dataclass(frozen=True)
class ModelsEvaluation:
    """What :func:`evaluate_models` measured: the metrics rows, the headline figures, and
    the trained model's report and vectors (rows as ``gallery_images`` / ``query_images``)."""

    rows: list[dict[str, Any]]
    figures: dict[str, Any]
    report: RetrievalReport
    vectors: dict[str, np.ndarray]


def evaluate_models(annotated: pa.Table, features: Mapping[str, FeatureFn], params: EvaluateParams) -> ModelsEvaluation:
    """Score every feature function (one of them :data:`TRAINED`), then each expansion of
    the trained vectors, on the queries of ``params.split`` against the whole gallery."""
    if TRAINED not in features:
        raise ValueError(f"features must include {TRAINED!r}; got {sorted(features)}")
    rows: list[dict[str, Any]] = []
    figures: dict[str, Any] = {}
    trained_report, vectors = None, None
    for name, fn in features.items():
        report, vecs = evaluate_features(fn, annotated, params.split, ks=params.ks)
        rows.extend(report.to_rows(name, params.split))
        figures.update(_headline(name, report))
        if name == TRAINED:
            trained_report, vectors = report, vecs
            figures.update(
                {
                    "queries": report.overall.get("n_queries"),
                    "gallery": report.overall.get("gallery_size"),
                    "gallery_items": report.overall.get("gallery_items"),
                    # which gallery every figure used: a bigger gallery is harder
                    "gallery_scope": "whole catalogue (every shop photo), exact search",
                }
            )
    assert trained_report is not None and vectors is not None
    for expansion in params.expansions:
        queries_x, gallery_x = expand(
            expansion, vectors["queries"], vectors["gallery"], params.qe_k, params.qe_alpha, params.dba_k, params.dba_alpha
        )
        report = score_vectors(queries_x, gallery_x, annotated, params.split, params.ks)
        name = f"{TRAINED}+{expansion}"
        rows.extend(report.to_rows(name, params.split))
        figures.update(_headline(name, report))
    return ModelsEvaluation(rows, figures, trained_report, vectors)


def _headline(name: str, report: RetrievalReport) -> dict[str, float]:
    return {f"{name}_{key}": report.overall[key] for key in HEADLINE_KEYS if key in report.overall}


def evaluated_vectors(annotated: pa.Table, split: str, vectors: Mapping[str, np.ndarray]) -> tuple[list[str], np.ndarray]:
    """``(image_ids, matrix)`` of the gallery and query vectors, one row per image id.

    The same photo may be a gallery image of two items (a re-listing): it keeps its first row.
    """
    ids = gallery_images(annotated).column("image_id").to_pylist() + query_images(annotated, split).column("image_id").to_pylist()
    matrix = np.concatenate([vectors["gallery"], vectors["queries"]]).astype(np.float32)
    _, first = np.unique(np.asarray(ids, dtype=object), return_index=True)
    keep = np.sort(first)
    return [ids[i] for i in keep], matrix[keep]


# --------------------------------------------------------------------------- labelled CSVs


def evaluate_csvs(
    model: Embedder,
    gallery_csv: str | Path,
    queries_csv: str | Path,
    ks: Sequence[int] = (1, 5, 10, 20),
    batch_size: int = 32,
) -> tuple[RetrievalReport, dict[str, np.ndarray], pa.Table]:
    """Score ``model`` on a labelled set of CSVs (:mod:`street2shop.sources.labelled`);
    returns the report, the vectors and the annotated table."""
    from street2shop.models.embed import embed_images
    from street2shop.sources.labelled import SPLIT, annotated_from_csvs, read_labelled_csv

    annotated = annotated_from_csvs(read_labelled_csv(gallery_csv), read_labelled_csv(queries_csv))
    features = partial(embed_images, model, batch_size=batch_size, num_workers=0)
    report, vectors = evaluate_features(features, annotated, SPLIT, ks=ks)
    return report, vectors, annotated


def metrics_json(report: RetrievalReport) -> dict:
    """``{"overall": {...}, "per_category": {category: {...}}}`` with keys ``top1``, ``map``, ..."""
    return {"overall": dict(report.overall), "per_category": {c: dict(v) for c, v in sorted(report.per_category.items())}}


__all__ = [
    "EXPANSIONS",
    "EvaluateParams",
    "FeatureFn",
    "ModelsEvaluation",
    "evaluate_csvs",
    "evaluate_features",
    "evaluate_models",
    "evaluated_vectors",
    "expand",
    "feature_functions",
    "metrics_json",
    "score_vectors",
]
