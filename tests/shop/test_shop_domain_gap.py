"""Garment renders and the street/noise photo pipeline: seeded, right size, really different."""

from __future__ import annotations

import numpy as np
import pytest

from street2shop.shop import garments as G
from street2shop.shop.domain_gap import closeup_photo, parcel_photo, street_photo, unrelated_photo
from street2shop.shop.generator import _pick_colours


@pytest.mark.parametrize("category", G.CATEGORY_SLUGS)
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


def test_noise_photos():
    r = G.render_garment(G.Design("d00001", "dresses", "solid", "procedural", seed=3), "emerald", 96)
    rng = np.random.default_rng(0)
    for img in (parcel_photo(rng, 96), unrelated_photo(rng, 96), closeup_photo(r.rgb, r.mask, rng, 96)):
        assert img.size == (96, 96) and img.mode == "RGB"
    close = np.asarray(closeup_photo(r.rgb, r.mask, np.random.default_rng(5), 96), np.float32)
    # A close-up of a solid emerald dress is mostly green: G channel dominates.
    assert close[..., 1].mean() > close[..., 0].mean() + 20
