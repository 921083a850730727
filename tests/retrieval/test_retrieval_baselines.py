"""Baseline descriptors: hand-checkable bins, determinism, unit norm, sensible neighbours."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from street2shop.retrieval.baselines import (
    baseline_features,
    baseline_names,
    colour_histogram,
    hog,
)


def save(tmp_path, name: str, array: np.ndarray) -> str:
    path = tmp_path / f"{name}.png"
    Image.fromarray(array.astype(np.uint8)).save(path)
    return str(path)


def solid(rgb, size=64) -> np.ndarray:
    return np.broadcast_to(np.asarray(rgb, np.uint8), (size, size, 3)).copy()


def stripes(vertical: bool, period: int, size=64) -> np.ndarray:
    line = (np.arange(size) // (period // 2) % 2 * 255).astype(np.uint8)
    grid = np.tile(line, (size, 1)) if vertical else np.tile(line[:, None], (1, size))
    return np.repeat(grid[..., None], 3, axis=2)


def test_registry_lists_both_baselines():
    assert baseline_names() == ["colour_histogram", "hog"]
    with pytest.raises(ValueError, match=r"unknown baseline 'sift'; choose one of \['colour_histogram', 'hog'\]"):
        baseline_features("sift", ["x.png"])


def test_pure_red_falls_in_one_hand_computed_bin():
    # RGB (255, 0, 0) -> HSV (0, 255, 255) -> bins (0, 3, 3) of (8, 4, 4) -> 0*16 + 3*4 + 3.
    hist = colour_histogram(Image.fromarray(solid((255, 0, 0))))
    assert hist.shape == (128,)
    assert np.flatnonzero(hist).tolist() == [15] and hist[15] == 1.0


def test_colour_histogram_puts_red_nearer_red_than_blue(tmp_path):
    paths = [
        save(tmp_path, "red", solid((220, 20, 30))),
        save(tmp_path, "red2", solid((200, 30, 20))),
        save(tmp_path, "blue", solid((20, 30, 220))),
    ]
    red, red2, blue = baseline_features("colour_histogram", paths, image_size=32)
    assert red @ red2 > red @ blue
    assert red @ red2 == pytest.approx(1.0)


def test_hog_of_a_vertical_edge_votes_only_for_horizontal_gradients():
    image = np.zeros((64, 64, 3), np.uint8)
    image[:, 32:] = 255
    blocks = hog(Image.fromarray(image)).reshape(7, 7, 4, 9)
    # A horizontal gradient (0 degrees) sits between the bins centred at 170 and 10 degrees.
    assert np.abs(blocks[..., 1:8]).max() == 0
    np.testing.assert_allclose(blocks[..., 0], blocks[..., 8])
    assert blocks[..., 0].max() > 0


def test_hog_tells_stripe_orientation_apart(tmp_path):
    paths = [
        save(tmp_path, "v8", stripes(vertical=True, period=8)),
        save(tmp_path, "v12", stripes(vertical=True, period=12)),
        save(tmp_path, "h8", stripes(vertical=False, period=8)),
    ]
    v8, v12, h8 = baseline_features("hog", paths, image_size=64)
    assert v8 @ v12 > v8 @ h8 + 0.5


@pytest.mark.parametrize("name", ["colour_histogram", "hog"])
def test_features_are_deterministic_unit_norm_float32(tmp_path, name):
    rng = np.random.default_rng(0)
    paths = [save(tmp_path, f"n{i}", rng.integers(0, 256, (50, 70, 3))) for i in range(3)]
    paths.append(save(tmp_path, "grey", solid((128, 128, 128))))  # blank: zero HOG
    first = baseline_features(name, paths)
    assert first.dtype == np.float32 and first.shape[0] == 4
    np.testing.assert_allclose(np.linalg.norm(first, axis=1), 1.0, atol=1e-6)
    np.testing.assert_array_equal(baseline_features(name, paths), first)
