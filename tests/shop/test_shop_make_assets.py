"""The offline bundle builder's judgements (GrabCut itself only where OpenCV is installed)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from street2shop.shop import make_assets as M
from street2shop.shop.garments import srgb_to_lab


def _garment_on_a_floor(seed: int = 0) -> tuple[Image.Image, np.ndarray]:
    rng = np.random.default_rng(seed)
    h, w = 160, 120
    floor = np.array([190, 160, 120], np.float32) + rng.normal(0, 6, (h, w, 3))
    truth = np.zeros((h, w), bool)
    truth[30:130, 25:95] = True
    truth[30:60, 10:110] = True  # sleeves
    photo = np.where(truth[..., None], np.array([40, 60, 150], np.float32) + rng.normal(0, 4, (h, w, 3)), floor)
    return Image.fromarray(np.clip(photo, 0, 255).astype(np.uint8)), truth


def test_usable_needs_agreement_coverage_and_a_clear_edge():
    good = {"iou": 0.95, "coverage": 0.4, "edge": 0.0, "parts": 1}
    assert M.usable(good)
    assert M.usable({**good, "parts": 2})  # a pair of shoes
    for bad in [{"iou": 0.8}, {"coverage": 0.05}, {"coverage": 0.8}, {"edge": 0.2}, {"parts": 0}, {"parts": 5}]:
        assert not M.usable({**good, **bad}), bad


def test_pattern_of_tells_prints_from_folds():
    yy, xx = np.mgrid[0:80, 0:80]
    mask = np.ones((80, 80), bool)
    folds = np.clip(120 + 15 * np.sin(xx / 9)[..., None] * np.ones(3), 0, 255).astype(np.uint8)
    stripes = np.where(((yy // 6) % 2 == 0)[..., None], 30, 220).astype(np.uint8) * np.ones((1, 1, 3), np.uint8)
    assert M.pattern_of(srgb_to_lab(folds), mask) == "solid"
    assert M.pattern_of(srgb_to_lab(stripes), mask) == "patterned"


def test_candidates_are_a_fixed_order_without_the_excluded(tmp_path, monkeypatch):
    for split in M.SPLITS:
        (tmp_path / split / "hat").mkdir(parents=True)
        for k in range(4):
            (tmp_path / split / "hat" / f"{split}-{k}.jpg").write_bytes(b"")
    (tmp_path / "test" / "hat").mkdir(parents=True)
    (tmp_path / "test" / "hat" / "kept-out.jpg").write_bytes(b"")  # the test split stays unused
    monkeypatch.setattr(M, "EXCLUDE", {"train-1.jpg": "a reason"})
    files = M.candidates(tmp_path, "hat")
    assert [f.name for f in files] == [f.name for f in M.candidates(tmp_path, "hat")]
    assert len(files) == 7 and {f.parent.parent.name for f in files} == set(M.SPLITS)
    assert files != sorted(files)  # shuffled by name hash, not listed by split
    with pytest.raises(FileNotFoundError):
        M.candidates(tmp_path, "shoes")


def test_cut_out_finds_the_garment():
    pytest.importorskip("cv2")  # a dev-only dependency of make_assets
    photo, truth = _garment_on_a_floor()
    mask, quality = M.cut_out(photo)
    iou = (mask & truth).sum() / (mask | truth).sum()
    assert iou > 0.9 and M.usable(quality), quality
