"""Garment renders and the street/noise photo pipeline: seeded, right size, really different."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from street2shop.shop import domain_gap as D
from street2shop.shop import garments as G
from street2shop.shop.domain_gap import (
    DomainGapParams,
    closeup_photo,
    parcel_photo,
    street_photo,
    street_photo_with_box,
    unrelated_photo,
)
from street2shop.shop.generator import _pick_colours


@pytest.mark.parametrize("category", G.PROCEDURAL_CATEGORIES)
@pytest.mark.parametrize("pattern", G.PATTERNS)
def test_procedural_garments_are_centred_and_patterned(category, pattern):
    design = G.Design("d00001", category, pattern, "procedural", seed=7)
    r = G.render_garment(design, "navy", 96)
    m = np.asarray(r.mask) > 128
    assert 0.1 < m.mean() < 0.7  # a garment, not a blob or a speck
    ys, xs = np.nonzero(m)
    assert abs(xs.mean() - 48) < 8  # symmetric silhouettes are centred
    rgb = np.asarray(r.rgb, np.float32)[m]
    spread = rgb.std(axis=0).mean()
    assert spread > (12 if pattern != "solid" else 0)  # patterns show; solids only shade
    assert np.array_equal(np.asarray(G.render_garment(design, "navy", 96).rgb), np.asarray(r.rgb))


def test_palette_has_near_colours():
    rgb = np.array([c for _, c in G.PALETTE.values()], np.float32)
    d = np.sqrt(((rgb[:, None] - rgb[None]) ** 2).sum(-1)) + np.eye(len(rgb)) * 1e9
    nearest = d.min(axis=1)
    assert nearest.max() < 80 and (nearest < 40).sum() >= 8
    assert np.linalg.norm(np.subtract(G.PALETTE["navy"][1], G.PALETTE["dark-blue"][1])) < 35
    # p_near=1: every colour after the first is the nearest free one to one already chosen.
    colours = _pick_colours(np.random.default_rng(0), 2, p_near=1.0)
    first, second = (np.array(G.PALETTE[c][1], np.float32) for c in colours)
    assert np.linalg.norm(first - second) == pytest.approx(nearest[list(G.PALETTE).index(colours[0])])
    assert _pick_colours(np.random.default_rng(0), 3, p_near=0.5, first="wine")[0] == "wine"


def test_street_photos_are_seeded_and_far_from_the_seller_photo():
    r = G.render_garment(G.Design("d00001", "sweaters", "stripes", "procedural", seed=3), "red", 96)
    seller = np.asarray(G.seller_photo(r, 96), np.float32)
    a = street_photo(r.rgb, r.mask, np.random.default_rng(1), 96)
    b = street_photo(r.rgb, r.mask, np.random.default_rng(1), 96)
    c = street_photo(r.rgb, r.mask, np.random.default_rng(2), 96)
    assert a.size == (96, 96) and a.tobytes() == b.tobytes() and a.tobytes() != c.tobytes()
    assert np.abs(np.asarray(a, np.float32) - seller).mean() > 25
    # The seller photo is the clean one: plain light background in its corners.
    assert seller[:4, :4].mean() > 200 and seller[:4, :4].std() < 6


def _changed_box(a: Image.Image, b: Image.Image, size: int) -> tuple[float, ...]:
    """The box (fractions) of the pixels where two photos clearly differ."""
    diff = np.abs(np.asarray(a, np.float32) - np.asarray(b, np.float32)).mean(-1) > 40
    ys, xs = np.nonzero(diff)
    return xs.min() / size, ys.min() / size, (xs.max() + 1) / size, (ys.max() + 1) / size


@pytest.mark.parametrize("keep_background", [0.0, 1.0])
def test_the_true_box_is_where_the_garment_is(keep_background):
    """The same camera draws a black and a white garment: they differ exactly inside the box."""
    size = 128
    r = G.render_garment(G.Design("d00001", "dresses", "solid", "procedural", seed=3), "red", size)
    p = DomainGapParams(p_occlusion=0.0, p_keep_background=keep_background, p_blur=0.0)
    black, white = Image.new("RGB", r.mask.size, (0, 0, 0)), Image.new("RGB", r.mask.size, (255, 255, 255))
    grey = Image.new("RGB", r.mask.size, (128, 128, 128))
    for seed in range(4):
        photos = []
        for garment in (black, white):
            scene = Image.composite(garment, grey, r.mask)  # a real garment's own photo: re-shot when kept
            photos.append(street_photo_with_box(garment, r.mask, np.random.default_rng(seed), size, p, scene=scene))
        (a, box), (b, box_b) = photos
        assert box == box_b and 0 <= box[0] < box[2] <= 1 and 0 <= box[1] < box[3] <= 1
        assert a.tobytes() == street_photo(black, r.mask, np.random.default_rng(seed), size, p,
                                           scene=Image.composite(black, grey, r.mask)).tobytes()
        # one JPEG block and a pixel of resampling either way
        assert np.allclose(_changed_box(a, b, size), box, atol=9 / size), (seed, _changed_box(a, b, size), box)


def test_garment_takes_the_asked_share_of_the_frame():
    p = DomainGapParams()
    box = (10.0, 20.0, 70.0, 140.0)  # 60 x 120: the longer side is 120
    rng = np.random.default_rng(0)
    shares = [120 / D._place(rng, 224, box, p, partial=False)[1] for _ in range(300)]
    assert p.scale[0] <= min(shares) and max(shares) <= p.scale[1]
    assert max(shares) - min(shares) > 0.3  # spread over the range, not one size
    partial = [120 / D._place(rng, 224, box, p, partial=True)[1] for _ in range(100)]
    assert min(partial) >= 0.85  # a closer shot: the garment may leave the frame
    turns = [abs(np.degrees(D._place(rng, 224, box, p, partial=False)[2])) for _ in range(100)]
    assert max(turns) <= p.max_rotation_deg


def test_laid_garment_lands_where_placed_on_the_room():
    """Cut out onto a real room: the garment shows (its colour) and the room around it is
    the room's (no black wedges, no fill colour)."""
    size = 96
    garment = Image.new("RGB", (60, 120), (200, 30, 30))
    mask = Image.new("L", (60, 120), 255)
    room = Image.new("RGB", (150, 200), (90, 140, 90))
    src = D._view(np.random.default_rng(0), size, np.array([30.0, 60.0]), 120 / 0.6, 0.0, 0.0, 0.0)
    out = D._lay(np.asarray(D._room(room, np.random.default_rng(0), size)), garment, mask, src, size,
                 np.random.default_rng(0), shadow=0.0)
    centre, corner = out[size // 2, size // 2], out[2, 2]
    tint = (np.array([91, 141, 91]) / np.mean([91, 141, 91])) ** 0.2  # lit by the room's (greenish) light
    assert np.allclose(centre, np.array([200, 30, 30]) * tint, atol=2)
    assert np.allclose(corner, (90, 140, 90), atol=2)
    red = (out[..., 0] > 150) & (out[..., 1] < 80)
    ys = np.nonzero(red.any(axis=1))[0]
    assert abs((ys.max() - ys.min() + 1) / size - 0.6) < 0.05  # the longer side: 60 % of the frame


def test_reshoot_stays_inside_a_real_photo():
    """Re-shooting a garment's own photo never shows black outside the photo."""
    scene = Image.new("RGB", (120, 160), (180, 170, 150))
    rng = np.random.default_rng(3)
    for _ in range(20):
        centre, side, theta = D._place(rng, 64, (20.0, 20.0, 100.0, 150.0), DomainGapParams(), bool(rng.random() < 0.3))
        out = np.asarray(D._reshoot(scene, centre, side, theta, rng, 64, DomainGapParams(), (80.0, 130.0)))
        assert out.min() > 140


def test_noise_photos():
    r = G.render_garment(G.Design("d00001", "dresses", "solid", "procedural", seed=3), "emerald", 96)
    rng = np.random.default_rng(0)
    room = Image.new("RGB", (80, 100), (120, 100, 80))
    photo = Image.new("RGB", (90, 120), (30, 60, 200))
    for img in (parcel_photo(rng, 96), parcel_photo(rng, 96, room), unrelated_photo(rng, 96),
                unrelated_photo(rng, 96, photo), closeup_photo(r.rgb, r.mask, rng, 96)):
        assert img.size == (96, 96) and img.mode == "RGB"
    close = np.asarray(closeup_photo(r.rgb, r.mask, np.random.default_rng(5), 96), np.float32)
    # A close-up of a solid emerald dress is mostly green: G channel dominates.
    assert close[..., 1].mean() > close[..., 0].mean() + 20
    other = np.asarray(unrelated_photo(np.random.default_rng(1), 96, photo), np.float32)
    assert other[..., 2].mean() > other[..., 0].mean() + 60  # it is that (blue) photo, re-shot
