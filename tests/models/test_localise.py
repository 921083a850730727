"""Query-side localisation: crop grids, score combination, the learned box head."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from street2shop.models import localise as L


def test_the_eleven_crop_grid():
    boxes = L.grid_boxes((0.75, 0.55), "corners+centre")
    assert len(boxes) == 11 and boxes[0] == L.WHOLE
    for x0, y0, x1, y1 in boxes:
        assert 0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1
    sizes = sorted({round(b[2] - b[0], 6) for b in boxes})
    assert sizes == [0.55, 0.75, 1.0]
    assert (0.125, 0.125, 0.875, 0.875) in boxes  # the centred 0.75 crop
    assert (0.45, 0.45, 1.0, 1.0) in boxes  # the bottom-right 0.55 crop


def test_grid_variants_and_bad_arguments():
    assert len(L.grid_boxes((0.7, 0.5), "grid3")) == 19
    assert len(L.grid_boxes((0.7,), "column", include_whole=False)) == 3
    # a scale of 1 is the whole photo: kept once
    assert L.grid_boxes((1.0, 0.5), "centre") == (L.WHOLE, (0.25, 0.25, 0.75, 0.75))
    wide = L.grid_boxes((0.5,), "centre", include_whole=False, aspect=1.5)[0]
    assert wide[2] - wide[0] == pytest.approx(0.75) and wide[3] - wide[1] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="positions"):
        L.grid_boxes((0.5,), "diagonal")
    with pytest.raises(ValueError, match="scales"):
        L.grid_boxes((1.5,))
    with pytest.raises(ValueError, match="no boxes"):
        L.grid_boxes((), include_whole=False)


def test_combine_scores_by_hand():
    s = np.array([[0.1, 0.9, 0.3], [0.5, 0.2, 0.4], [0.3, 0.1, 0.8]])
    assert L.combine_scores(s, "max").tolist() == pytest.approx([0.5, 0.9, 0.8])
    assert L.combine_scores(s, "mean").tolist() == pytest.approx([0.3, 0.4, 0.5])
    assert L.combine_scores(s, "top2").tolist() == pytest.approx([0.4, 0.55, 0.6])
    assert L.combine_scores(s, "top5").tolist() == pytest.approx([0.3, 0.4, 0.5])  # K >= crops: mean
    stacked = L.combine_scores(np.stack([s, s[::-1]]), "top2")
    assert stacked.shape == (2, 3) and stacked[1].tolist() == pytest.approx([0.4, 0.55, 0.6])
    for bad in ("median", "top0", "topx"):
        with pytest.raises(ValueError, match="scoring"):
            L.combine_scores(s, bad)


def test_crop_inside_and_past_the_edges():
    arr = np.arange(10 * 20 * 3, dtype=np.uint8).reshape(10, 20, 3)
    image = Image.fromarray(arr)
    inner = L.crop(image, (0.25, 0.2, 0.75, 0.6))
    assert np.array_equal(np.asarray(inner), arr[2:6, 5:15])
    outer = np.asarray(L.crop(image, (-0.5, 0.0, 0.5, 1.0), fill=(1, 2, 3)))
    assert outer.shape == (10, 20, 3)
    assert (outer[:, :10] == (1, 2, 3)).all() and np.array_equal(outer[:, 10:], arr[:, :10])


def test_expand_box_reshapes_to_the_shop_aspect():
    # a square box (in pixels) of a 2:3 portrait photo, made 2:3 (taller) and grown 1.2x
    box = (0.25, 0.4, 0.75, 0.4 + 1 / 3)  # 0.5 x 600 px = 300 px wide, 1/3 x 900 = 300 px high
    grown = L.expand_box(box, 1.2, aspect=2 / 3, image_aspect=600 / 900)
    w_px, h_px = (grown[2] - grown[0]) * 600, (grown[3] - grown[1]) * 900
    assert w_px / h_px == pytest.approx(2 / 3) and w_px == pytest.approx(360)
    centre = ((grown[0] + grown[2]) / 2, (grown[1] + grown[3]) / 2)
    assert centre == pytest.approx((0.5, 0.4 + 1 / 6))


def test_localisers_by_name():
    image = Image.new("RGB", (30, 45))
    assert L.create_localiser("none")(image).boxes == (L.WHOLE,)
    multi = L.create_localiser("multicrop", scales=(0.5,), positions="corners", scoring="top2")(image)
    assert len(multi.boxes) == 5 and multi.scoring == "top2"
    assert {"none", "multicrop", "boxhead"} <= set(L.list_localisers())
    with pytest.raises(ValueError, match="unknown localiser"):
        L.create_localiser("yolo")
    with pytest.raises(ValueError, match="scoring"):
        L.create_localiser("multicrop", scoring="median")


def _mean_colour(image: Image.Image) -> np.ndarray:
    v = np.asarray(image.convert("RGB"), np.float32).reshape(-1, 3).mean(0) - 128
    return v / np.linalg.norm(v)


def test_multicrop_finds_a_small_garment_the_whole_photo_misses():
    """A small red garment in a corner of a green-and-blue scene: the whole photo looks
    greenish, the best crop looks red, so max-over-crops ranks the red shop item first."""
    yy, xx = np.mgrid[:90, :60]
    scene = np.where((((yy // 3 + xx // 3) % 2) == 1)[..., None], (40, 200, 60), (40, 60, 220)).astype(np.uint8)
    scene[5:40, 3:28] = (220, 30, 30)  # the red garment, top-left
    query = Image.fromarray(scene)
    gallery = np.stack([_mean_colour(Image.new("RGB", (8, 8), c)) for c in ((220, 30, 30), (40, 200, 60))])

    def ranking(localiser):
        loc = localiser(query)
        crops = np.stack([_mean_colour(c) for c in L.crops(query, loc)])
        return np.argsort(-L.combine_scores(crops @ gallery.T, loc.scoring))

    assert ranking(L.create_localiser("none"))[0] == 1  # green wins on the whole photo
    assert ranking(L.create_localiser("multicrop", scales=(0.75, 0.45)))[0] == 0  # red wins
    # the mean of the crops is still dominated by the background
    assert ranking(L.create_localiser("multicrop", scales=(0.75, 0.45), scoring="mean"))[0] == 1


def _box_maps(n: int, rng: np.random.Generator):
    """Feature maps whose channel 0 lights up the cells of a random box (the 'garment')."""
    h, w = 9, 6
    maps = rng.normal(0, 0.1, (n, 4, h, w)).astype(np.float32)
    boxes = []
    for i in range(n):
        bh, bw = rng.integers(3, 7), rng.integers(2, 5)
        y0, x0 = rng.integers(0, h - bh + 1), rng.integers(0, w - bw + 1)
        maps[i, 0, y0 : y0 + bh, x0 : x0 + bw] += 1.0
        boxes.append((x0 / w, y0 / h, (x0 + bw) / w, (y0 + bh) / h))
    return torch.from_numpy(maps), torch.tensor(boxes, dtype=torch.float32)


def test_box_head_learns_where_the_garment_is():
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    head = L.BoxHead(in_channels=4, hidden=16)
    maps, boxes = _box_maps(256, rng)
    out = head(maps[:3])
    assert out.shape == (3, 4) and (out[:, 2] > out[:, 0]).all() and (out[:, 3] > out[:, 1]).all()
    from torchvision.ops import box_iou

    test_maps, test_boxes = _box_maps(64, rng)
    before = box_iou(head(test_maps), test_boxes).diag().mean()
    opt = torch.optim.Adam(head.parameters(), lr=3e-3)
    for _ in range(150):
        loss = L.box_loss(head, maps, boxes)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        after = box_iou(head(test_maps), test_boxes).diag().mean()
    assert after > 0.7 and after > before + 0.2


def test_boxhead_localiser_crops_around_the_prediction():
    class FixedHead(torch.nn.Module):
        def forward(self, fmap):
            return torch.tensor([[0.2, 0.3, 0.6, 0.7]]).expand(len(fmap), 4)

    loc = L.create_localiser(
        "boxhead", feature_map=lambda image: torch.zeros(1, 4, 3, 2), head=FixedHead(),
        factors=(1.0, 1.5), aspect=None, include_whole=True,
    )(Image.new("RGB", (40, 60)))
    assert loc.boxes[0] == pytest.approx((0.2, 0.3, 0.6, 0.7))
    assert loc.boxes[1] == pytest.approx((0.1, 0.2, 0.7, 0.8))
    assert loc.boxes[2] == L.WHOLE and loc.scoring == "max"


def _gem(x: np.ndarray, p: float = 3.0) -> np.ndarray:
    return np.power(np.power(np.clip(x, 1e-6, None), p).mean(axis=(-2, -1)), 1 / p)


def test_region_windows_cover_the_map():
    win = L.region_windows(9, 6, min_frac=0.55, stride=2)
    assert tuple(win[-1]) == (0, 0, 9, 6)  # the whole map is the last window
    heights = sorted({int(y1 - y0) for y0, x0, y1, x1 in win})
    assert heights == [5, 6, 7, 8, 9]
    for y0, x0, y1, x1 in win:
        assert 0 <= y0 < y1 <= 9 and 0 <= x0 < x1 <= 6
        assert x1 - x0 == max(1, min(6, round((y1 - y0) * 6 / 9)))  # the map's aspect
    # with stride 2 the far edges are still reached by some window of every height
    for h in heights:
        rows = win[(win[:, 2] - win[:, 0]) == h]
        assert rows[:, 2].max() == 9 and rows[:, 3].max() == 6
    assert len(L.region_windows(9, 6, 0.55, 1)) > len(win)
    with pytest.raises(ValueError, match="min_frac"):
        L.region_windows(9, 6, min_frac=0)


def test_region_gem_equals_pooling_each_window():
    rng = np.random.default_rng(0)
    fmap = rng.uniform(0, 6, (5, 7, 4)).astype(np.float32)
    win = L.region_windows(7, 4, min_frac=0.3)
    fast = L.region_gem(fmap, win)
    slow = np.stack([_gem(fmap[:, y0:y1, x0:x1]) for y0, x0, y1, x1 in win])
    assert fast.shape == (len(win), 5)
    np.testing.assert_allclose(fast, slow, rtol=1e-5)
    np.testing.assert_allclose(L.pool_boxes(torch.from_numpy(fmap), [L.WHOLE])[0], _gem(fmap), rtol=1e-5)
    with pytest.raises(ValueError, match="inside the map"):
        L.region_gem(fmap, np.array([[0, 0, 8, 2]]))


def test_regions_localiser_is_one_pass_and_finds_the_garment():
    loc = L.create_localiser("regions", input_size=(288, 192), min_frac=0.3)(Image.new("RGB", (60, 90)))
    assert loc.input_size == (288, 192) and loc.passes == 1 and loc.boxes[-1] == L.WHOLE
    search = L.RegionSearch(input_size=(288, 192), min_frac=0.3)
    # a 9 x 6 map: background cells in channel 1, a 4 x 3 "garment" block in channel 0;
    # shop item A is the garment (plus a little of channel 2), item B a garment-and-background
    # mixture (plus more of channel 2) that no window matches exactly
    fmap = np.zeros((3, 9, 6), np.float32)
    fmap[1] = 1.0
    fmap[:, 1:5, 0:3] = np.array([1.0, 0.0, 0.0], np.float32)[:, None, None]
    gallery = np.array([[1.0, 0.0, 0.3], [0.6, 1.0, 0.5]], np.float32)
    gallery /= np.linalg.norm(gallery, axis=1, keepdims=True)
    vectors = search.describe(fmap)
    assert len(vectors) == len(loc.boxes)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    assert (vectors[-1] @ gallery.T).argmax() == 1  # the whole photo looks like B
    assert L.combine_scores(vectors @ gallery.T, "max").argmax() == 0  # a window finds A
    assert L.combine_scores(vectors @ gallery.T, "mean").argmax() == 1  # the mean does not


def test_box_loss_adds_the_category_cross_entropy():
    torch.manual_seed(0)
    head = L.BoxHead(8, 16, categories=("tops", "shoes", "bags"))
    maps, boxes = torch.rand(4, 8, 5, 5), torch.tensor([[0.1, 0.1, 0.6, 0.9]] * 4)
    labels = torch.tensor([0, 1, 2, 1])
    logits, _, cats = head.detect(maps)
    pooled = (logits.softmax(1).unsqueeze(-1) * cats).sum(1)
    by_hand = torch.nn.functional.cross_entropy(pooled, labels)
    with_categories = L.box_loss(head, maps, boxes, categories=labels, category_weight=0.7)
    assert float(with_categories - L.box_loss(head, maps, boxes)) == pytest.approx(0.7 * float(by_hand), rel=1e-5)
    with pytest.raises(ValueError, match="no categories"):
        L.box_loss(L.BoxHead(8, 16), maps, boxes, categories=labels)
