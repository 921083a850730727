"""Real garments: the bundle, recolouring that keeps the photo, clean seller photos, empty rooms."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage
from scipy.stats import spearmanr

from street2shop.shop import garments as G
from street2shop.shop.catalog import CATEGORIES

#: a few bundled photos, one per category (the first of each), for the tests below
SAMPLE = sorted({c: n for n, c in sorted(G.real_index().items(), reverse=True)}.values())
TARGETS = ["navy", "mustard", "white", "black", "emerald", "dusty-pink"]


def _corr(x: np.ndarray, y: np.ndarray) -> float:
    return float(np.corrcoef(x.ravel(), y.ravel())[0, 1])


def _detail(rgb) -> np.ndarray:
    """The fine structure of a photo's lightness (weave, print edges, seams)."""
    L = G.srgb_to_lab(np.asarray(rgb))[..., 0]
    return L - ndimage.gaussian_filter(L, 2)


def test_bundle_is_complete_and_small():
    index, unrelated = G.real_index(), G.real_unrelated()
    categories = set(index.values())
    assert len(categories) == 10 and categories <= set(CATEGORIES)  # every class of the source
    assert set(unrelated.values()) == categories
    counts = {c: sum(1 for v in index.values() if v == c) for c in categories}
    assert min(counts.values()) >= 40 and len(index) >= 600, counts  # several hundred distinct garments
    for name in index:
        with Image.open(G.REAL_DIR / name) as photo, Image.open(G.mask_file(name)) as mask:
            assert photo.size == mask.size and max(photo.size) <= 320
    files = [p for p in G.ASSETS_DIR.rglob("*") if p.is_file()]
    assert sum(p.stat().st_size for p in files) < 20.5e6 and max(p.stat().st_size for p in files) < 5e6
    credits = (G.REAL_DIR / "CREDITS.md").read_text()
    assert all(f"| {name} |" in credits for name in [*index, *unrelated])
    assert "CC0" in (G.REAL_DIR / "LICENSE").read_text()


def test_lab_round_trip():
    rgb = np.random.default_rng(0).integers(0, 256, (40, 40, 3)).astype(np.uint8)
    assert np.abs(G.lab_to_srgb(G.srgb_to_lab(rgb)) - rgb).max() < 0.1  # well under a grey level
    assert np.allclose(G.srgb_to_lab(np.array([255, 255, 255], np.uint8)), [100, 0, 0], atol=0.05)
    assert G.nearest_colour(G.palette_lab("wine")) == "wine"


@pytest.mark.parametrize("name", SAMPLE)
def test_recolouring_keeps_the_photo_and_moves_the_chroma(name):
    photo = G.real_photo(name)
    inside = photo.alpha > 0.99
    outside = photo.alpha == 0
    before = G.srgb_to_lab(photo.rgb)[..., 0][inside]
    lo, hi = np.percentile(before, [1, 99])
    bulk = (before >= lo) & (before <= hi)  # the fabric; the extremes are labels, seams, a collar
    for colour in TARGETS:
        out = G.recolour(photo.rgb, photo.alpha, colour)
        after = G.srgb_to_lab(np.clip(out + 0.5, 0, 255).astype(np.uint8))
        target = G.palette_lab(colour)
        # Folds, weave, print: the fabric's lightness is an affine map of the original's, and
        # the extremes keep their order (bent into the range, never clipped flat).
        L = after[..., 0][inside]
        assert _corr(before[bulk], L[bulk]) >= 0.95, colour
        assert spearmanr(before, L)[0] >= 0.95, colour
        assert abs(L.mean() - target[0]) < 12, colour
        # Hue and chroma are the target's (a print keeps part of its own differences, and
        # a dark fold cannot be as vivid: a share of the chroma may go).
        ab = after[..., 1:][inside].mean(axis=0)
        chroma = float(np.hypot(*target[1:]))
        assert np.linalg.norm(ab - target[1:]) < 0.4 * chroma + 4, (colour, ab, target)
        if chroma > 15:
            turn = np.degrees(np.arctan2(ab[1], ab[0]) - np.arctan2(target[2], target[1]))
            assert abs((turn + 180) % 360 - 180) < 15, colour
        assert np.array_equal(out[outside], photo.rgb[outside].astype(np.float32))  # the floor is not dyed


def test_a_real_garment_is_its_photo_not_a_painted_pattern(monkeypatch):
    def no_painting(*args, **kwargs):
        raise AssertionError("a pattern was painted over a real photo")

    monkeypatch.setattr(G, "pattern_layer", no_painting)
    name = SAMPLE[0]
    own = G.nearest_colour(np.array(G.real_info(name)["lab"], np.float32))
    design = G.Design("d00001", G.real_index()[name], G.real_info(name)["pattern"], "real", 1, asset=name)
    render = G.render_garment(design, own, 224)
    photo = G.real_photo(name, G.working_side(224))
    h, w = photo.alpha.shape
    assert max(h, w) == min(G.working_side(224), max(G.real_photo(name).alpha.shape))
    side = int(round(max(w, h) * G.SCENE_MARGIN))
    assert render.scene.size == render.rgb.size == render.mask.size == (side, side)
    _, left, top = G._scene_canvas(name, G.working_side(224))
    scene = np.asarray(render.scene)[top : top + h, left : left + w]
    # In its own (nearest) colour, the scene is the photo: fine detail identical in structure.
    inside = photo.alpha > 0.99
    assert _corr(_detail(photo.rgb)[inside], _detail(scene)[inside]) > 0.95
    outside = photo.alpha == 0
    assert np.abs(scene[outside].astype(int) - photo.rgb[outside]).max() <= 1  # its own floor, as it was
    mirrored = G.Design("d00002", design.category, design.pattern, "real", 1, name, flip=True)
    flipped = G.render_garment(mirrored, own, 224)
    assert np.array_equal(np.asarray(flipped.mask), np.asarray(render.mask)[:, ::-1])


def test_even_lighting_removes_a_gradient_and_keeps_the_rest():
    yy, xx = np.mgrid[0:60, 0:80].astype(np.float32)
    lab = np.zeros((60, 80, 3), np.float32)
    texture = 4 * np.sin(xx)
    lab[..., 0] = 50 + 0.3 * xx + texture  # a window on the right
    xy = np.stack([xx.ravel(), yy.ravel()], 1)
    flat = lab.reshape(-1, 3)
    out = G.even_lighting(flat, xy, np.ones(len(flat), bool), strength=1.0)[:, 0].reshape(60, 80)
    assert abs(np.polyfit(xx[0], out[0], 1)[0]) < 0.02 and abs(out.mean() - lab[..., 0].mean()) < 0.5
    assert _corr(out - out.mean(), texture) > 0.99
    half = G.even_lighting(flat, xy, np.ones(len(flat), bool), strength=0.5)[:, 0].reshape(60, 80)
    assert np.polyfit(xx[0], half[0], 1)[0] == pytest.approx(0.15, abs=0.02)


@pytest.mark.parametrize("name", SAMPLE[:4])
def test_seller_photo_is_the_cut_out_on_a_uniform_studio_background(name):
    design = G.Design("d00001", G.real_index()[name], "solid", "real", 1, asset=name)
    render = G.render_garment(design, "red", 224)
    background = G.STUDIO_BACKGROUNDS[2]
    out = np.asarray(G.seller_photo(render, 224, background), np.float32)
    # Where the garment lands: the same cut of a black garment.
    black = G.GarmentRender(rgb=Image.new("RGB", render.rgb.size), mask=render.mask)
    where = np.asarray(G.seller_photo(black, 224, (255, 255, 255)), np.float32).min(axis=2) < 250
    far = ~ndimage.binary_dilation(where, iterations=224 // 8)
    assert far.mean() > 0.1
    assert np.abs(out[far] - background).max() <= 1  # exactly the studio colour
    off = ~ndimage.binary_dilation(where, iterations=1)
    ratio = out[off] / np.array(background, np.float32)
    assert ratio.min() > 0.86 and ratio.max() < 1.01  # elsewhere at most a soft shadow
    assert np.ptp(ratio, axis=1).max() < 0.03  # a grey shadow: no floor colour, no halo
    ys, xs = np.nonzero(where)
    assert abs((xs.min() + xs.max()) / 2 - 112) < 4 and abs((ys.min() + ys.max()) / 2 - 112) < 8  # centred
    assert max(np.ptp(xs), np.ptp(ys)) > 224 * 0.8  # and filling the frame


def test_empty_scene_keeps_the_room_and_removes_the_garment():
    name = G.room_names()[0]
    photo = G.real_photo(name)
    room = np.asarray(G.empty_scene(name), np.float32)
    rgb = photo.rgb.astype(np.float32)
    garment = photo.alpha > 0.5
    away = ~ndimage.binary_dilation(garment, iterations=16)
    assert np.abs(room[away] - rgb[away]).max() <= 1
    ring = ndimage.binary_dilation(garment, iterations=24) & away
    # Where the garment was, the room's own colours (a garment of another colour is gone).
    hole = ndimage.binary_erosion(garment, iterations=6)
    assert np.abs(room[hole].mean(axis=0) - rgb[ring].mean(axis=0)).max() < 25
    assert G.empty_scene(name) is G.empty_scene(name)  # prepared once per process
