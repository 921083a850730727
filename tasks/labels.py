"""The store side of the labelling round trip: which photos to label next, and which street
photos a labels file may name (``street2shop labels export|import``)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from street2shop.storage.names import CRAWL, IMAGES, NOISE, NOISE_LABELS, NOISE_MODEL, NOISE_SCORES
from street2shop.storage.store import ArtifactStore, images_with_paths


def street_photos(store: ArtifactStore) -> pa.Table:
    """Latest crawl's street photos, one row per image_id, with absolute paths."""
    images = images_with_paths(store, store.latest(CRAWL, IMAGES))
    street = images.filter(pc.equal(images.column("role"), "street"))
    _, first = np.unique(np.asarray(street.column("image_id").to_pylist(), dtype=object), return_index=True)
    return street.take(pa.array(np.sort(first), pa.int64())).select(["image_id", "path", "item_id"])


def least_certain(store: ArtifactStore, n: int) -> pa.Table:
    """The ``n`` unlabelled street photos whose ``p_noise`` is closest to the latest noise
    model's keep threshold (ties: by image_id), with an empty ``label`` column."""
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    from street2shop.cleaning.noise import NoiseFilter  # torch: loaded when the command runs, not on import

    scores_ref = store.latest(NOISE, NOISE_SCORES)
    threshold = NoiseFilter.load(store.version_dir(store.latest(NOISE, NOISE_MODEL))).threshold
    labelled = set(store.read_table(store.latest(NOISE, NOISE_LABELS)).column("image_id").to_pylist())
    p_of = dict(
        zip(*(store.read_table(scores_ref, ["image_id", "p_noise"]).column(c).to_pylist() for c in ("image_id", "p_noise")))
    )
    street = street_photos(store)
    rows = [
        (abs(p_of[r["image_id"]] - threshold), r["image_id"], r)
        for r in street.to_pylist()
        if r["image_id"] in p_of and r["image_id"] not in labelled
    ]
    rows.sort(key=lambda t: (t[0], t[1]))
    chosen = [r for _, _, r in rows[:n]]
    return pa.table(
        {
            "image_id": pa.array([r["image_id"] for r in chosen], pa.string()),
            "path": pa.array([r["path"] for r in chosen], pa.string()),
            "item_id": pa.array([r["item_id"] for r in chosen], pa.string()),
            "p_noise": pa.array([round(float(p_of[r["image_id"]]), 4) for r in chosen], pa.float64()),
            "label": pa.array([""] * len(chosen), pa.string()),
        }
    )
