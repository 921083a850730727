"""Photo-level search results as item rankings: what a shopper sees is items, not photos.

A query photo may also be searched as several crops (query-side localisation): their
scores against each gallery photo are combined first (:func:`combine_crop_scores`).


An item (product x colour) may have several gallery photos; a ranking keeps each item's
first (= best-scored) photo. :class:`GalleryItems` codes a gallery's items once, so a search
service ranking every query against the same gallery pays for it once, and
:func:`rank_items` turns faiss ``search`` output into item rankings. The evaluation
(:mod:`street2shop.retrieval.metrics`) numbers items the same way, so its tie-break (the item
that appears first in the gallery) is the service's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


def parse_crop_scoring(scoring: str) -> int | None:
    """``"max"`` -> 1, ``"topK"`` -> K, ``"mean"`` -> None (all crops); anything else raises."""
    if scoring == "max":
        return 1
    if scoring == "mean":
        return None
    if scoring.startswith("top") and scoring[3:].isdigit() and int(scoring[3:]) >= 1:
        return int(scoring[3:])
    raise ValueError(f"unknown crop scoring {scoring!r}; use 'max', 'mean' or 'topK' (e.g. 'top2')")


def combine_crop_scores(scores: np.ndarray, scoring: str = "max") -> np.ndarray:
    """Similarities of several crops of one query photo -> one score per gallery photo.

    ``scores`` is ``(..., n_crops, n_gallery)``; the crop axis is combined: ``max`` (the crop
    that shows the garment decides), ``mean``, or ``topK`` (the mean of the K best crops;
    K >= the number of crops is the mean).
    """
    scores = np.asarray(scores)
    if scores.ndim < 2 or scores.shape[-2] == 0:
        raise ValueError(f"scores must be (..., n_crops, n_gallery) with at least one crop, got {scores.shape}")
    k = parse_crop_scoring(scoring)
    axis = scores.ndim - 2
    if k == 1:
        return scores.max(axis=axis)
    if k is None or k >= scores.shape[axis]:
        return scores.mean(axis=axis)
    best = -np.partition(-scores, k - 1, axis=axis)
    return np.take(best, np.arange(k), axis=axis).mean(axis=axis)


def as_labels(labels: Sequence[str] | np.ndarray, n: int | None, name: str) -> np.ndarray:
    arr = np.asarray(labels, dtype=object)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    if n is not None and len(arr) != n:
        raise ValueError(f"{name} has {len(arr)} labels for {n} vectors")
    if any(label is None for label in arr):
        raise ValueError(f"{name} contains None")
    return arr.astype(str)


def item_codes(gallery_items: np.ndarray) -> tuple[list[str], np.ndarray]:
    """Distinct items in order of first appearance, and each gallery row's item code.

    Numbering items by first appearance makes "lower code" mean "earlier in the gallery",
    which is the documented tie-break.
    """
    uniques, first_pos, inverse = np.unique(
        gallery_items, return_index=True, return_inverse=True
    )
    by_appearance = np.argsort(first_pos)
    code_of = np.empty_like(by_appearance)
    code_of[by_appearance] = np.arange(len(by_appearance))
    return uniques[by_appearance].tolist(), code_of[inverse.ravel()]


@dataclass(frozen=True)
class GalleryItems:
    """The item of every gallery row, coded once (see :func:`rank_items`).

    A search service ranks every query against the same gallery: building this once keeps
    the per-query cost of :func:`rank_items` independent of the gallery's size.
    """

    items: np.ndarray  # distinct item ids in order of first appearance (object array)
    codes: np.ndarray  # (n_gallery,) index into ``items`` of each gallery row

    @classmethod
    def of(cls, gallery_items: Sequence[str] | np.ndarray) -> GalleryItems:
        items, codes = item_codes(as_labels(gallery_items, None, "gallery_items"))
        return cls(np.asarray(items, dtype=object), codes)

    def __len__(self) -> int:
        return len(self.codes)


def rank_items(
    neighbours: np.ndarray,
    scores: np.ndarray,
    gallery_items: Sequence[str] | np.ndarray | GalleryItems,
    k: int,
) -> tuple[np.ndarray, np.ndarray]:
    """De-duplicate photo-level search results (e.g. from a faiss index) to items.

    ``neighbours`` and ``scores`` are faiss ``search`` output, ``(n_q, m)``, best first, with
    ``-1`` for empty slots. ``gallery_items``: each gallery row's item id, or those ids coded
    once as :class:`GalleryItems`. Returns ``(items, item_scores)`` of shape ``(n_q, k)``:
    each item's first (= best) occurrence in rank order, padded with ``None`` / NaN when the
    ``m`` photos hold fewer than ``k`` distinct items (search more photos to fill them).
    """
    neighbours = np.asarray(neighbours)
    scores = np.asarray(scores, dtype=np.float32)
    if neighbours.ndim != 2 or neighbours.shape != scores.shape:
        raise ValueError(
            f"neighbours {neighbours.shape} and scores {scores.shape} must be equal 2-D shapes"
        )
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    gallery = gallery_items if isinstance(gallery_items, GalleryItems) else GalleryItems.of(gallery_items)
    if neighbours.size and neighbours.max() >= len(gallery):
        raise ValueError(f"neighbour id {int(neighbours.max())} is outside the gallery")
    item_array, gallery_codes = gallery.items, gallery.codes
    n_q, m = neighbours.shape
    codes = np.where(neighbours >= 0, gallery_codes[np.maximum(neighbours, 0)], -1)

    rows = np.repeat(np.arange(n_q), m)
    pos = np.tile(np.arange(m), n_q)
    flat = codes.ravel()
    valid = flat >= 0
    rows, pos, flat = rows[valid], pos[valid], flat[valid]
    # Sort by (row, item, position): the first entry of each (row, item) run is the item's
    # first occurrence in that row's ranking.
    order = np.lexsort((pos, flat, rows))
    rows, pos, flat = rows[order], pos[order], flat[order]
    first = np.ones(rows.size, bool)
    first[1:] = (rows[1:] != rows[:-1]) | (flat[1:] != flat[:-1])
    rows, pos, flat = rows[first], pos[first], flat[first]
    order = np.lexsort((pos, rows))  # back to rank order within each row
    rows, pos, flat = rows[order], pos[order], flat[order]
    slot = np.arange(rows.size) - np.searchsorted(rows, rows)
    keep = slot < k

    out_items = np.full((n_q, k), None, dtype=object)
    out_scores = np.full((n_q, k), np.nan, dtype=np.float32)
    out_items[rows[keep], slot[keep]] = item_array[flat[keep]]
    out_scores[rows[keep], slot[keep]] = scores[rows[keep], pos[keep]]
    return out_items, out_scores
