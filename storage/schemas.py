"""Arrow schemas of every tabular artifact: the contract between stages.

The store checks a table against its schema on write (same column names, compatible
types, non-null keys), so a stage that drifts fails loudly at publish time rather than
silently corrupting the stages after it.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

#: items: one row per sellable item = product x colour.
ITEMS = pa.schema(
    [
        pa.field("item_id", pa.string(), nullable=False),  # "<product_id>:<colour>"
        pa.field("product_id", pa.string(), nullable=False),
        pa.field("seller_id", pa.string(), nullable=False),
        pa.field("category", pa.string(), nullable=False),
        pa.field("colour", pa.string(), nullable=False),
        pa.field("title", pa.string()),
        pa.field("url", pa.string()),
    ]
)

#: images: every accepted photo. ``path`` is relative to the store's home
#: (content-addressed blob); the task resolves it before calling a core function.
IMAGES = pa.schema(
    [
        pa.field("image_id", pa.string(), nullable=False),  # sha256 of the bytes
        pa.field("item_id", pa.string(), nullable=False),
        pa.field("role", pa.string(), nullable=False),  # "shop" | "street"
        pa.field("path", pa.string(), nullable=False),
        pa.field("width", pa.int32(), nullable=False),
        pa.field("height", pa.int32(), nullable=False),
        pa.field("source_url", pa.string(), nullable=False),
        pa.field("review_id", pa.string()),  # street photos only
    ]
)

#: crawl_rejects: what the crawl refused and why (nothing is dropped silently).
CRAWL_REJECTS = pa.schema(
    [
        pa.field("url", pa.string(), nullable=False),
        pa.field("kind", pa.string(), nullable=False),  # "image" | "page"
        pa.field("item_id", pa.string()),
        pa.field("reason", pa.string(), nullable=False),
    ]
)

#: noise_labels: human labels of review photos.
NOISE_LABELS = pa.schema(
    [
        pa.field("image_id", pa.string(), nullable=False),
        pa.field("label", pa.string(), nullable=False),  # "good" | "noise"
    ]
)

#: noise_scores: the classifier's verdict on every street photo (nothing deleted).
NOISE_SCORES = pa.schema(
    [
        pa.field("image_id", pa.string(), nullable=False),
        pa.field("p_noise", pa.float32(), nullable=False),
        pa.field("keep", pa.bool_(), nullable=False),
    ]
)

#: groups: items merged into product groups (near-duplicate listings share a group).
GROUPS = pa.schema(
    [
        pa.field("item_id", pa.string(), nullable=False),
        pa.field("group_id", pa.string(), nullable=False),
        pa.field("evidence", pa.string()),  # e.g. "phash=4 a1b2..~c3d4.." or "" (singleton)
    ]
)

#: splits: by group, so no product leaks between train and test.
SPLITS = pa.schema(
    [
        pa.field("group_id", pa.string(), nullable=False),
        pa.field("split", pa.string(), nullable=False),  # "train" | "val" | "test"
    ]
)

#: triplets: offline-mined training triplets of one round.
TRIPLETS = pa.schema(
    [
        pa.field("round", pa.int32(), nullable=False),
        pa.field("anchor_id", pa.string(), nullable=False),
        pa.field("positive_id", pa.string(), nullable=False),
        pa.field("negative_id", pa.string(), nullable=False),
        pa.field("d_ap", pa.float32(), nullable=False),
        pa.field("d_an", pa.float32(), nullable=False),
    ]
)

#: pseudo_boxes: the box each training street photo's item's shop photos found in it (the
#: localise stage learns from them), fractions of the photo.
PSEUDO_BOXES = pa.schema(
    [
        pa.field("image_id", pa.string(), nullable=False),
        pa.field("x0", pa.float32(), nullable=False),
        pa.field("y0", pa.float32(), nullable=False),
        pa.field("x1", pa.float32(), nullable=False),
        pa.field("y1", pa.float32(), nullable=False),
        pa.field("category", pa.string()),  # the item's
        pa.field("match_score", pa.float32(), nullable=False),  # cosine of the window and the shop photo
        pa.field("round", pa.int32(), nullable=False),  # the refinement round that chose it (0: the first search)
    ]
)

#: metrics: long format, one row per figure.
METRICS = pa.schema(
    [
        # which queries and gallery: "shop" (the store's own split) or a configured benchmark
        pa.field("benchmark", pa.string(), nullable=False),
        pa.field("model", pa.string(), nullable=False),  # "trained" | baseline name
        pa.field("split", pa.string(), nullable=False),
        pa.field("category", pa.string(), nullable=False),  # "all" for overall
        pa.field("metric", pa.string(), nullable=False),  # "top_k" | "map" | ...
        pa.field("k", pa.int32()),
        pa.field("value", pa.float64(), nullable=False),
    ]
)

#: index_ids: FAISS row -> image and item.
INDEX_IDS = pa.schema(
    [
        pa.field("row", pa.int64(), nullable=False),
        pa.field("image_id", pa.string(), nullable=False),
        pa.field("item_id", pa.string(), nullable=False),
    ]
)

#: train_log: one row per logged training step.
TRAIN_LOG = pa.schema(
    [
        pa.field("round", pa.int32(), nullable=False),
        pa.field("epoch", pa.int32(), nullable=False),
        pa.field("step", pa.int32(), nullable=False),
        pa.field("loss", pa.float64(), nullable=False),
        pa.field("active_triplets", pa.int64()),
    ]
)

#: outfits: looks the shop put together, one row per item ("complete the look").
OUTFITS = pa.schema(
    [
        pa.field("outfit_id", pa.string(), nullable=False),
        pa.field("item_id", pa.string(), nullable=False),
        pa.field("type", pa.string(), nullable=False),  # the item's slot: "top", "bottom", "shoes", ...
        pa.field("position", pa.int32(), nullable=False),  # order in the outfit, from 0
    ]
)

#: outfit_splits: which split each outfit is in (no product in two splits, by default).
OUTFIT_SPLITS = pa.schema(
    [
        pa.field("outfit_id", pa.string(), nullable=False),
        pa.field("split", pa.string(), nullable=False),  # "train" | "val" | "test"
    ]
)

#: outfit_questions: compatibility questions (a whole outfit, label 1 real / 0 made up) and
#: fill-in-the-blank questions (an outfit less one item, candidates, ``answer`` the right one).
OUTFIT_QUESTIONS = pa.schema(
    [
        pa.field("question_id", pa.string(), nullable=False),
        pa.field("kind", pa.string(), nullable=False),  # "compatibility" | "fitb"
        pa.field("split", pa.string(), nullable=False),
        pa.field("items", pa.list_(pa.string()), nullable=False),  # the outfit (fitb: without the blank)
        pa.field("candidates", pa.list_(pa.string())),  # fitb only
        pa.field("label", pa.int32(), nullable=False),  # compatibility: 1 / 0; fitb: index of the right candidate
        pa.field("size", pa.int32(), nullable=False),  # items in the whole outfit
    ]
)

#: outfit_metrics: long format, one row per figure.
OUTFIT_METRICS = pa.schema(
    [
        pa.field("model", pa.string(), nullable=False),  # "type_aware_sat", "siamese", "random", ...
        pa.field("split", pa.string(), nullable=False),
        pa.field("size", pa.int32(), nullable=False),  # outfit size; 0 = every size
        pa.field("metric", pa.string(), nullable=False),  # "auc" | "fitb"
        pa.field("value", pa.float64(), nullable=False),
        pa.field("n", pa.int64(), nullable=False),  # questions behind the figure
    ]
)

#: snaps: lookbook posts ("shop the look"), one photo each.
SNAPS = pa.schema(
    [
        pa.field("snap_id", pa.string(), nullable=False),
        pa.field("image_id", pa.string(), nullable=False),  # sha256 of the photo's bytes
        pa.field("path", pa.string(), nullable=False),  # blob, relative to the store's home
        pa.field("width", pa.int32(), nullable=False),
        pa.field("height", pa.int32(), nullable=False),
        pa.field("source_url", pa.string(), nullable=False),
        pa.field("style", pa.string()),  # as the post says ("street", "casual", ...)
        pa.field("tags", pa.list_(pa.string())),
    ]
)

#: snap_items: the items a post links (those in the photo and related ones), in page order.
SNAP_ITEMS = pa.schema(
    [
        pa.field("snap_id", pa.string(), nullable=False),
        pa.field("item_id", pa.string(), nullable=False),
        pa.field("position", pa.int32(), nullable=False),
    ]
)

#: looks_splits: which split each lookbook post is in (no post, no product in two splits).
LOOKS_SPLITS = pa.schema(
    [
        pa.field("snap_id", pa.string(), nullable=False),
        pa.field("split", pa.string(), nullable=False),
    ]
)

#: looks_metrics: long format, one row per figure.
LOOKS_METRICS = pa.schema(
    [
        pa.field("model", pa.string(), nullable=False),  # "cgd_arcface", "backbone", ...
        pa.field("direction", pa.string(), nullable=False),  # "snap_to_items" | "item_to_snaps"
        pa.field("split", pa.string(), nullable=False),
        pa.field("expansion", pa.string(), nullable=False),  # "none" | "qe" | "dba" | "dba+qe"
        pa.field("group", pa.string(), nullable=False),  # "all" or a style
        pa.field("metric", pa.string(), nullable=False),  # "map" | "recall" | "hit"
        pa.field("k", pa.int32(), nullable=False),
        pa.field("value", pa.float64(), nullable=False),
        pa.field("n", pa.int64(), nullable=False),
    ]
)

SCHEMAS: dict[str, pa.Schema] = {
    "items": ITEMS,
    "images": IMAGES,
    "crawl_rejects": CRAWL_REJECTS,
    "noise_labels": NOISE_LABELS,
    "noise_scores": NOISE_SCORES,
    "groups": GROUPS,
    "splits": SPLITS,
    "triplets": TRIPLETS,
    "pseudo_boxes": PSEUDO_BOXES,
    "metrics": METRICS,
    "index_ids": INDEX_IDS,
    "train_log": TRAIN_LOG,
    "outfits": OUTFITS,
    "outfit_splits": OUTFIT_SPLITS,
    "outfit_questions": OUTFIT_QUESTIONS,
    "outfit_metrics": OUTFIT_METRICS,
    "snaps": SNAPS,
    "snap_items": SNAP_ITEMS,
    "looks_splits": LOOKS_SPLITS,
    "looks_metrics": LOOKS_METRICS,
}


def embeddings_schema(dim: int) -> pa.Schema:
    """Embeddings carry a fixed-size vector so DuckDB sees ``FLOAT[dim]``."""
    return pa.schema(
        [
            pa.field("image_id", pa.string(), nullable=False),
            pa.field("vector", pa.list_(pa.float32(), dim), nullable=False),
        ]
    )


def vectors_table(image_ids: list[str] | pa.Array, matrix: np.ndarray) -> pa.Table:
    """An ``embeddings`` table: one row per image id, its vector as ``FLOAT[dim]``."""
    matrix = np.ascontiguousarray(matrix, dtype=np.float32)
    if matrix.ndim != 2 or len(matrix) != len(image_ids):
        raise ValueError(f"{len(image_ids)} image ids for a vector matrix of shape {matrix.shape}")
    dim = matrix.shape[1]
    flat = pa.array(matrix.reshape(-1), pa.float32())
    ids = image_ids if isinstance(image_ids, (pa.Array, pa.ChunkedArray)) else pa.array(image_ids, pa.string())
    return pa.table({"image_id": ids, "vector": pa.FixedSizeListArray.from_arrays(flat, dim)}, schema=embeddings_schema(dim))


def vectors_matrix(table: pa.Table, column: str = "vector") -> np.ndarray:
    """The ``(rows, dim)`` float32 matrix of a table's fixed-size vector column."""
    vectors = table.column(column)
    dim = vectors.type.list_size
    flat = vectors.combine_chunks().flatten().to_numpy(zero_copy_only=False)
    return np.asarray(flat, dtype=np.float32).reshape(table.num_rows, dim)
