"""Offline semi-hard mining on hand-placed embeddings, then end to end on synthetic photos."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from street2shop.models.embed import embed_images
from street2shop.models.embedder import build_embedder
from street2shop.models.mining import MineParams, mine_semi_hard, select_semi_hard
from street2shop.storage.schemas import TRIPLETS


def at(*degrees):
    """Unit vectors at the given angles; the chord between angles t apart is 2 sin(t/2)."""
    rad = np.radians(degrees)
    return np.stack([np.cos(rad), np.sin(rad)], axis=1).astype(np.float32)


def chord(degrees):
    return 2 * math.sin(math.radians(degrees) / 2)


ANCHOR = at(0)  # a shop photo of item "x"
# street photos: positive at 40 deg (0.684), negatives at 60 (1.0), 90 (1.414), -50 (0.845)
REFS = at(40, 60, 90, -50)
REF_LABELS = np.array(["x", "y", "y", "z"])


def test_semi_hard_window_by_hand():
    # margin 0.4: window (0.684, 1.084) holds the negatives at 60 and -50 deg, not the one at 90.
    found = select_semi_hard(ANCHOR, ["x"], REFS, REF_LABELS, 0.4, 5, np.random.default_rng(0))
    assert [t[:3] for t in found] == [(0, 0, 1), (0, 0, 3)]
    assert [t[3] for t in found] == pytest.approx([chord(40)] * 2, abs=1e-5)
    assert [t[4] for t in found] == pytest.approx([chord(60), chord(50)], abs=1e-5)
    one = select_semi_hard(ANCHOR, ["x"], REFS, REF_LABELS, 0.4, 1, np.random.default_rng(0))
    assert len(one) == 1 and one[0][:3] in [(0, 0, 1), (0, 0, 3)]


def test_fallback_takes_the_closest_negative_beyond_the_margin():
    refs = at(40, 120, 180)  # negatives at 1.732 and 2.0: both beyond 0.684 + 0.4
    found = select_semi_hard(ANCHOR, ["x"], refs, ["x", "y", "y"], 0.4, 5, np.random.default_rng(0))
    assert [t[:3] for t in found] == [(0, 0, 1)]
    assert found[0][4] - found[0][3] >= 0.4


def test_hard_only_and_positive_less_anchors_are_skipped():
    hard_only = select_semi_hard(ANCHOR, ["x"], at(90, 10), ["x", "y"], 0.4, 5, np.random.default_rng(0))
    assert hard_only == []  # the only negative (0.174) is closer than the positive (1.414)
    no_positive = select_semi_hard(ANCHOR, ["w"], REFS, REF_LABELS, 0.4, 5, np.random.default_rng(0))
    assert no_positive == []


def test_mine_semi_hard_on_synthetic_photos(synthetic_images):
    torch.manual_seed(0)
    model = build_embedder("tiny", pretrained=False, dim=8).eval()
    params = MineParams(round=2, sample_items=3, margin=0.5, per_anchor=2, seed=0, num_workers=0)
    table = mine_semi_hard(model, synthetic_images, params)
    assert table.schema.equals(TRIPLETS) and len(table) > 0
    rows = {r["image_id"]: r for r in synthetic_images.to_pylist()}
    vectors = dict(zip(rows, embed_images(model, [r["path"] for r in rows.values()], num_workers=0), strict=True))
    for t in table.to_pylist():
        anchor, positive, negative = rows[t["anchor_id"]], rows[t["positive_id"]], rows[t["negative_id"]]
        assert t["round"] == 2
        assert (anchor["role"], positive["role"], negative["role"]) == ("shop", "street", "street")
        assert anchor["item_id"] == positive["item_id"] != negative["item_id"]
        d_ap = np.linalg.norm(vectors[t["anchor_id"]] - vectors[t["positive_id"]])
        d_an = np.linalg.norm(vectors[t["anchor_id"]] - vectors[t["negative_id"]])
        assert (t["d_ap"], t["d_an"]) == pytest.approx((d_ap, d_an), abs=1e-4)
        assert d_an > d_ap  # semi-hard, or the fallback beyond the margin; never hard
    assert len({rows[t]["item_id"] for t in table.column("anchor_id").to_pylist()}) <= 3
    # same seed and round -> same triplets
    assert mine_semi_hard(model, synthetic_images, params).equals(table)


def test_mine_semi_hard_needs_paired_items(synthetic_images):
    shop_only = synthetic_images.filter(synthetic_images.column("role").to_numpy(zero_copy_only=False) == "shop")
    model = build_embedder("tiny", pretrained=False, dim=8)
    with pytest.raises(ValueError, match="both shop and street"):
        mine_semi_hard(model, shop_only, MineParams(num_workers=0))
