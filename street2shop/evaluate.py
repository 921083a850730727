"""The one evaluation path: street queries of a split against the whole shop gallery.

Training's validation, the evaluate stage, the benchmarks, bring-your-own-data evaluation
(``street2shop eval``) and the API's self-check all call :func:`evaluate_features` (or
:func:`score_vectors`, when the vectors already exist); only the feature function differs
(trained embedder, pretrained backbone, white-box baselines) or the post-processing of the
vectors (αQE, DBA).

The gallery is every shop photo of the annotated table (for the pipeline: the whole
catalogue), so a figure always says which gallery it used through ``gallery_size`` and
``gallery_items``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pyarrow as pa

from street2shop.retrieval.evaluation import RetrievalReport, evaluate_retrieval
from street2shop.retrieval.expansion import alpha_qe, dba
from street2shop.selection import gallery_images, query_images

FeatureFn = Callable[[list[str]], np.ndarray]

#: Post-processing variants measured on top of a model's vectors (name -> what it does).
EXPANSIONS = ("qe", "dba", "dba+qe")


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


def expand(
    name: str,
    query_vectors: np.ndarray,
    gallery_vectors: np.ndarray,
    qe_k: int = 2,
    qe_alpha: float = 3.0,
    dba_k: int = 2,
    dba_alpha: float = 3.0,
) -> tuple[np.ndarray, np.ndarray]:
    """``(queries, gallery)`` after the post-processing ``name`` (one of :data:`EXPANSIONS`).

    For ``dba+qe`` the queries are expanded with the augmented gallery, the order the
    method's authors use: the query borrows from neighbours that are already denoised.
    """
    if name not in EXPANSIONS:
        raise ValueError(f"unknown expansion {name!r}; one of {', '.join(EXPANSIONS)}")
    gallery = dba(gallery_vectors, dba_k, dba_alpha) if "dba" in name else gallery_vectors
    queries = alpha_qe(query_vectors, gallery, qe_k, qe_alpha) if "qe" in name else query_vectors
    return queries, gallery


def _has_values(table: pa.Table, column: str) -> bool:
    return column in table.column_names and table.num_rows > 0 and table.column(column).null_count == 0
