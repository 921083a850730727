"""The localise stage's core: windows, pseudo-boxes from matching shop photos, the head's training, IoU."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from street2shop.models import localise as L
from street2shop.models import localise_training as T


def test_box_windows_are_every_rectangle_of_at_least_the_least_side():
    windows = T.box_windows(4, 4, min_frac=0.5)  # sides of 2, 3 or 4 cells: 3 + 2 + 1 spans per axis
    assert len(windows) == 6 * 6 and len({tuple(w) for w in windows.tolist()}) == 36
    assert ((windows[:, 2] - windows[:, 0]) >= 2).all() and ((windows[:, 3] - windows[:, 1]) >= 2).all()
    assert [0, 0, 4, 4] in windows.tolist() and [1, 2, 3, 4] in windows.tolist()
    assert T.windows_as_boxes(np.array([[1, 2, 3, 4]]), 4, 8).tolist() == [[0.25, 0.25, 0.5, 0.75]]
    with pytest.raises(ValueError, match="min_frac"):
        T.box_windows(4, 4, 0.0)


def test_window_gem_is_region_gem_normalised():
    fmap = np.random.default_rng(0).random((5, 6, 7)).astype(np.float32)
    windows = T.box_windows(6, 7, 0.3)
    expected = L.region_gem(fmap, windows, p=3.0)
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    got = T.window_gem(torch.from_numpy(fmap[None]), windows, 3.0)[0].numpy()
    assert np.allclose(got, expected, atol=1e-5)
    whole = T.descriptors(fmap[None])[0]
    assert np.allclose(whole, expected[[w.tolist() for w in windows].index([0, 0, 6, 7])], atol=1e-5)


def _scene(rng, box_cells, size=7, channels=16):
    """A map whose background cells share one vector and whose garment cells (y0, x0, y1, x1)
    are each a different one; the garment's descriptor is what its shop photo would give."""
    fmap = np.zeros((channels, size, size), np.float32)
    fmap[0] = 1.0
    y0, x0, y1, x1 = box_cells
    fmap[:, y0:y1, x0:x1] = rng.random((channels, y1 - y0, x1 - x0)) + np.eye(channels)[1][:, None, None]
    fmap[0, y0:y1, x0:x1] = 0.0
    shop = T.descriptors(fmap[None, :, y0:y1, x0:x1])
    return fmap, shop


def test_the_pseudo_box_is_the_window_that_matches_the_shop_photo():
    rng = np.random.default_rng(1)
    cells = [(1, 2, 5, 6), (0, 0, 4, 3), (3, 3, 7, 7)]
    scenes = [_scene(rng, c) for c in cells]
    boxes, scores = T.pseudo_boxes(np.stack([m for m, _ in scenes]), [s for _, s in scenes], min_frac=0.4, top_windows=1)
    for box, (y0, x0, y1, x1) in zip(boxes, cells):
        assert box == pytest.approx([x0 / 7, y0 / 7, x1 / 7, y1 / 7], abs=1e-6)
    assert scores == pytest.approx(1.0, abs=1e-5)
    # a mean of the best windows stays on the garment; a round near another box looks there
    mean, _ = T.pseudo_boxes(np.stack([m for m, _ in scenes]), [s for _, s in scenes], 0.4, top_windows=8)
    assert (T.iou(mean, boxes) > 0.6).all()
    near, _ = T.pseudo_boxes(scenes[0][0][None], [scenes[0][1]], 0.4, near=np.array([[0.0, 0.0, 0.3, 0.3]], np.float32))
    assert T.iou(near, boxes[:1])[0] < 0.5
    with pytest.raises(ValueError, match="reference sets"):
        T.pseudo_boxes(np.stack([m for m, _ in scenes]), [scenes[0][1]])


def test_iou_figures_by_hand():
    truth = np.array([[0, 0, 1, 1], [0, 0, 1, 1], [0, 0, 0.5, 0.5]], np.float32)
    predicted = np.array([[0, 0, 1, 1], [0, 0, 0.5, 1], [0.5, 0.5, 1, 1]], np.float32)
    assert T.iou(predicted, truth) == pytest.approx([1.0, 0.5, 0.0])
    figures = T.iou_figures(predicted, truth, "test_iou")
    assert figures == pytest.approx({"test_iou_median": 0.5, "test_iou_mean": 0.5, "test_iou_ge_0_5": 2 / 3, "test_iou_photos": 3})
    assert T.iou_figures(predicted[:0], truth[:0]) == {"iou_photos": 0}


def test_the_head_learns_where_the_garment_is_and_what_it_is():
    rng = np.random.default_rng(2)
    maps, boxes, labels = [], [], []
    for k in range(96):
        y0, x0 = rng.integers(0, 4, 2)
        y1, x1 = y0 + rng.integers(2, 8 - y0), x0 + rng.integers(2, 8 - x0)
        fmap = rng.random((8, 7, 7)).astype(np.float32) * 0.2
        fmap[2 + k % 2, y0 : min(y1, 7), x0 : min(x1, 7)] += 1.0  # the category shows in its channel
        maps.append(fmap)
        boxes.append([x0 / 7, y0 / 7, min(x1, 7) / 7, min(y1, 7) / 7])
        labels.append(k % 2)
    maps, boxes = np.stack(maps), np.asarray(boxes, np.float32)
    params = T.LocaliserParams(backbone="tiny", hidden=16, steps=150, lr=1e-2, batch_size=32)
    head, figures = T.fit_box_head(maps[:64], boxes[:64], params, np.asarray(labels[:64]), ["tops", "trousers"])
    assert figures["train_seconds"] > 0 and head.categories == ("tops", "trousers")
    predicted = T.predict_boxes(head, maps[64:])
    assert np.median(T.iou(predicted, boxes[64:])) > 0.6
    found = L.detect_garments(head, torch.from_numpy(maps[64:]))
    assert np.mean([g[0].category == ["tops", "trousers"][k % 2] for k, g in zip(range(64, 96), found)]) > 0.8
    with pytest.raises(ValueError, match="no training photos"):
        T.fit_box_head(maps[:0], boxes[:0], params)
