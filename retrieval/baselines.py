"""White-box baseline descriptors computed straight from image files.

They give the learned embedder something to beat in the metrics table, and a sanity check
of the evaluation itself: a colour histogram should do well on "right colour" and badly on
"right garment", HOG the other way round. Each baseline is a function of one RGB image
registered by name; :func:`baseline_features` loads the files and stacks unit-norm float32
vectors that go into the one evaluation path (:mod:`street2shop.retrieval.evaluation`) like
any embedding.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
from PIL import Image

from street2shop.registry import Registry
from street2shop.retrieval.vectors import l2_normalize
from street2shop.storage.images import open_image

#: One RGB image (already resized to the working size) -> 1-D descriptor.
BaselineFn = Callable[[Image.Image], np.ndarray]

BASELINES: Registry[BaselineFn] = Registry("baseline")
register_baseline = BASELINES.register


def baseline_names() -> list[str]:
    return BASELINES.names()


@register_baseline("colour_histogram")
def colour_histogram(image: Image.Image, bins: tuple[int, int, int] = (8, 4, 4)) -> np.ndarray:
    """Joint HSV histogram (hue x saturation x value), L1-normalised then square-rooted.

    HSV separates hue (what shoppers call the colour) from lighting, which differs most
    between a studio shop photo and a street photo, hence more hue bins than value bins.
    The square root (Hellinger kernel) stops a large uniform background bin from
    dominating the dot product; the caller L2-normalises.
    """
    hsv = np.asarray(image.convert("HSV"), dtype=np.int64)  # each channel 0..255
    n_bins = np.asarray(bins, dtype=np.int64)
    # Hue is circular and red sits at 0: shifting by half a bin centres a bin on red, so
    # (220, 20, 30) and (200, 30, 20) share a bin instead of landing at opposite ends.
    hsv[..., 0] = (hsv[..., 0] + 128 // n_bins[0]) % 256
    idx = hsv * n_bins // 256  # per-channel bin, 0..bins-1
    joint = (idx[..., 0] * n_bins[1] + idx[..., 1]) * n_bins[2] + idx[..., 2]
    hist = np.bincount(joint.ravel(), minlength=int(n_bins.prod())).astype(np.float64)
    return np.sqrt(hist / hist.sum())


@register_baseline("hog")
def hog(image: Image.Image, cells: int = 8, orientations: int = 9) -> np.ndarray:
    """Histogram of oriented gradients (Dalal & Triggs 2005) on a ``cells x cells`` grid.

    Unsigned gradient orientation, magnitude-weighted votes split linearly between the two
    nearest orientation bins, 2x2-cell blocks with L2-Hys normalisation (clip at 0.2), so
    the descriptor describes shape and texture but ignores colour and global contrast.
    """
    gray = np.asarray(image.convert("L"), dtype=np.float32) / 255.0
    cell = min(gray.shape) // cells
    if cell < 2:
        raise ValueError(f"image {gray.shape} is too small for {cells}x{cells} HOG cells")
    gray = gray[: cell * cells, : cell * cells]
    gx = np.zeros_like(gray)
    gy = np.zeros_like(gray)
    gx[:, 1:-1] = gray[:, 2:] - gray[:, :-2]
    gy[1:-1, :] = gray[2:, :] - gray[:-2, :]
    magnitude = np.hypot(gx, gy)
    angle = np.rad2deg(np.arctan2(gy, gx)) % 180.0

    position = angle / (180.0 / orientations) - 0.5  # bin centres at 10, 30, ... degrees
    low = np.floor(position).astype(np.int64)
    frac = position - low
    # Each pixel votes into two bins; one bincount over (pixel, bin) slots does all votes.
    slot = np.arange(gray.size).reshape(gray.shape) * orientations
    votes = np.bincount(
        np.concatenate(
            [(slot + low % orientations).ravel(), (slot + (low + 1) % orientations).ravel()]
        ),
        weights=np.concatenate([(magnitude * (1 - frac)).ravel(), (magnitude * frac).ravel()]),
        minlength=gray.size * orientations,
    )
    cell_hist = votes.reshape(cells, cell, cells, cell, orientations).sum(axis=(1, 3))

    blocks = np.concatenate(
        [cell_hist[:-1, :-1], cell_hist[:-1, 1:], cell_hist[1:, :-1], cell_hist[1:, 1:]],
        axis=-1,
    )  # (cells-1, cells-1, 4 * orientations)
    eps = 1e-6
    blocks = blocks / np.sqrt((blocks**2).sum(-1, keepdims=True) + eps)
    blocks = np.minimum(blocks, 0.2)
    blocks = blocks / np.sqrt((blocks**2).sum(-1, keepdims=True) + eps)
    return blocks.ravel()


def load_image(path: str | Path, image_size: int) -> Image.Image:
    """RGB image squashed to ``image_size`` square, EXIF rotation applied (phone photos)."""
    return open_image(path).resize((image_size, image_size), Image.Resampling.BILINEAR)


def baseline_features(
    name: str, paths: Iterable[str | Path], image_size: int = 128
) -> np.ndarray:
    """``(n, d)`` float32 unit-norm descriptors of the images at ``paths``, in order."""
    fn = BASELINES.get(name)
    if image_size < 16:
        raise ValueError(f"image_size must be >= 16, got {image_size}")
    features = [fn(load_image(p, image_size)) for p in paths]
    if not features:
        raise ValueError("no image paths given")
    # A flat image has an all-zero HOG: a constant vector lets it normalise and leaves it
    # equally far from everything, which is the honest answer.
    stacked = np.stack(features).astype(np.float32)
    blank = ~stacked.any(axis=1)
    stacked[blank] = 1.0
    return l2_normalize(stacked, f"{name} features")
