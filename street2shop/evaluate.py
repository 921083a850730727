"""The one evaluation path: street queries of a split against the whole shop gallery.

Training's validation, the evaluate stage, the benchmarks and the API's self-check all
call :func:`evaluate_features`; only the feature function differs (trained embedder,
pretrained backbone, white-box baselines).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pyarrow as pa

from street2shop.retrieval.evaluation import RetrievalReport, evaluate_retrieval
from street2shop.selection import gallery_images, query_images

FeatureFn = Callable[[list[str]], np.ndarray]


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
    item_product = dict(zip(annotated.column("item_id").to_pylist(), annotated.column("product_id").to_pylist()))
    report = evaluate_retrieval(
        query_vectors,
        queries.column("item_id").to_pylist(),
        gallery_vectors,
        gallery.column("item_id").to_pylist(),
        ks=tuple(ks),
        query_categories=queries.column("category").to_pylist(),
        item_product=item_product,
    )
    return report, {"gallery": gallery_vectors, "queries": query_vectors}
