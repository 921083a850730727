"""Item rankings from photo hits, and crop scores combined per gallery photo (street2shop.retrieval.ranking)."""

from __future__ import annotations

import numpy as np
import pytest

from street2shop.retrieval.ranking import combine_crop_scores, parse_crop_scoring


def test_crop_scores_combine_by_hand() -> None:
    # 3 crops x 2 gallery photos
    scores = np.array([[0.9, 0.1], [0.2, 0.5], [0.4, 0.6]])
    assert combine_crop_scores(scores, "max").tolist() == pytest.approx([0.9, 0.6])
    assert combine_crop_scores(scores, "mean").tolist() == pytest.approx([0.5, 0.4])
    assert combine_crop_scores(scores, "top2").tolist() == pytest.approx([0.65, 0.55])
    assert combine_crop_scores(scores, "top9").tolist() == pytest.approx([0.5, 0.4])  # K >= crops: the mean
    stacked = np.stack([scores, scores[::-1]])  # a batch of 2 queries
    assert combine_crop_scores(stacked, "top2").shape == (2, 2)


def test_unknown_scoring_is_refused() -> None:
    assert parse_crop_scoring("top3") == 3 and parse_crop_scoring("mean") is None
    for bad in ("min", "top0", "topx", ""):
        with pytest.raises(ValueError, match="unknown crop scoring"):
            parse_crop_scoring(bad)
