"""Offline mining round: embed a sample of items, choose semi-hard shop->street triplets.

Anchors are shop photos, positives street photos of the same item, negatives street
photos of other items (the retrieval direction reversed, which is the one training with
``anchor_domain="shop"`` optimises). Distances are Euclidean between unit vectors, as in
the triplet loss. A negative is *semi-hard* (Schroff et al., FaceNet 2015) when

    d_ap < d_an < d_ap + margin

i.e. farther than the positive yet still inside the margin: it has a non-zero loss without
being one of the hardest negatives that make early training collapse.

Fallback, per anchor: when no (positive, negative) pair of the anchor is semi-hard, the
pair whose negative is the *closest one beyond the margin* (smallest ``d_an - d_ap`` among
``d_an >= d_ap + margin``) is kept, so every anchor stays represented in the round with the
most informative triplet it has; such rows are recognisable by ``d_an - d_ap >= margin``.
Hard negatives (``d_an <= d_ap``) are never chosen; an anchor that only has those is skipped.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field

from street2shop.models.embed import embed_images
from street2shop.models.embedder import Embedder
from street2shop.storage.schemas import TRIPLETS


class MineParams(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    round: int = Field(default=1, ge=0)
    #: items sampled for this round (only items with both shop and street photos count).
    sample_items: int = Field(default=500, ge=2)
    margin: float = Field(default=0.2, gt=0)
    #: at most this many triplets per anchor, drawn uniformly among its semi-hard ones.
    per_anchor: int = Field(default=4, ge=1)
    seed: int = 0
    batch_size: int = Field(default=32, ge=1)
    num_workers: int = Field(default=2, ge=0)


def select_semi_hard(
    anchor_emb: np.ndarray,
    anchor_labels: np.ndarray,
    ref_emb: np.ndarray,
    ref_labels: np.ndarray,
    margin: float,
    per_anchor: int,
    rng: np.random.Generator,
) -> list[tuple[int, int, int, float, float]]:
    """``(anchor, positive, negative, d_ap, d_an)`` index tuples (rows of the two arrays)."""
    anchor_labels, ref_labels = np.asarray(anchor_labels), np.asarray(ref_labels)
    # ||a - r||^2 = 2 - 2 a.r for unit vectors; clip rounding below zero.
    distances = np.sqrt(np.clip(2.0 - 2.0 * anchor_emb @ ref_emb.T, 0.0, None))
    chosen: list[tuple[int, int, int, float, float]] = []
    for a, label in enumerate(anchor_labels):
        positives = np.flatnonzero(ref_labels == label)
        negatives = np.flatnonzero(ref_labels != label)
        if not len(positives) or not len(negatives):
            continue
        d_ap = distances[a, positives][:, None]  # (P, 1)
        d_an = distances[a, negatives][None, :]  # (1, N)
        semi_hard = (d_an > d_ap) & (d_an < d_ap + margin)
        pi, ni = np.nonzero(semi_hard)
        if len(pi):
            take = rng.choice(len(pi), size=min(per_anchor, len(pi)), replace=False)
            pairs = [(pi[t], ni[t]) for t in np.sort(take)]
        else:
            gap = np.where(d_an >= d_ap + margin, d_an - d_ap, np.inf)
            if not np.isfinite(gap).any():
                continue  # only hard negatives: skip rather than risk collapse
            pairs = [np.unravel_index(np.argmin(gap), gap.shape)]
        for p, n in pairs:
            chosen.append((a, int(positives[p]), int(negatives[n]),
                           float(d_ap[p, 0]), float(d_an[0, n])))
    return chosen


def mine_semi_hard(model: Embedder, images: pa.Table, params: MineParams) -> pa.Table:
    """One mining round over a seeded sample of items -> a ``schemas.TRIPLETS`` table.

    ``images`` is shaped like ``schemas.IMAGES`` with absolute ``path``s; they are embedded
    with ``model``.
    """
    missing = {"image_id", "item_id", "role", "path"} - set(images.column_names)
    if missing:
        raise ValueError(f"images table lacks columns {sorted(missing)}")
    rng = np.random.default_rng([params.seed, params.round])
    rows = _sample(images, params, rng)
    paths = images.column("path").to_pylist()
    vectors = embed_images(model, [paths[r] for r in rows], batch_size=params.batch_size, num_workers=params.num_workers)
    return _triplets(images, rows, vectors, params, rng)


def mine_semi_hard_vectors(rows: pa.Table, vectors: np.ndarray, params: MineParams) -> pa.Table:
    """The same round over rows that already have their vectors (``image_id``, ``item_id``,
    ``role`` and one unit vector each; e.g. cached views refined by a head)."""
    missing = {"image_id", "item_id", "role"} - set(rows.column_names)
    if missing:
        raise ValueError(f"rows table lacks columns {sorted(missing)}")
    rng = np.random.default_rng([params.seed, params.round])
    chosen = _sample(rows, params, rng)
    return _triplets(rows, chosen, vectors[chosen], params, rng)


def _sample(images: pa.Table, params: MineParams, rng: np.random.Generator) -> np.ndarray:
    """Rows of a seeded sample of items that have both shop and street photos."""
    items = np.asarray(images.column("item_id").to_pylist(), dtype=object)
    roles = np.asarray(images.column("role").to_pylist(), dtype=object)
    eligible = sorted(set(items[roles == "shop"]) & set(items[roles == "street"]))
    if len(eligible) < 2:
        raise ValueError("mining needs at least 2 items with both shop and street photos")
    sample = rng.choice(np.asarray(eligible, dtype=object), size=min(params.sample_items, len(eligible)), replace=False)
    return np.flatnonzero(np.isin(items, sample))


def _triplets(images: pa.Table, rows: np.ndarray, vectors: np.ndarray, params: MineParams, rng: np.random.Generator) -> pa.Table:
    items = np.asarray(images.column("item_id").to_pylist(), dtype=object)
    roles = np.asarray(images.column("role").to_pylist(), dtype=object)
    shop_rows = rows[roles[rows] == "shop"]
    street_rows = rows[roles[rows] == "street"]
    vector_of = dict(zip(rows.tolist(), vectors, strict=True))
    shop_emb = np.stack([vector_of[r] for r in shop_rows])
    street_emb = np.stack([vector_of[r] for r in street_rows])

    found = select_semi_hard(shop_emb, items[shop_rows], street_emb, items[street_rows],
                             params.margin, params.per_anchor, rng)
    image_ids = images.column("image_id").to_pylist()
    a, p, n, d_ap, d_an = (list(column) for column in zip(*found, strict=True)) if found else ([],) * 5
    return pa.table(
        {
            "round": pa.array([params.round] * len(found), pa.int32()),
            "anchor_id": [image_ids[shop_rows[i]] for i in a],
            "positive_id": [image_ids[street_rows[i]] for i in p],
            "negative_id": [image_ids[street_rows[i]] for i in n],
            "d_ap": pa.array(d_ap, pa.float32()),
            "d_an": pa.array(d_an, pa.float32()),
        },
        schema=TRIPLETS,
    )
