"""Tiny labelled photo sets (coloured shapes written as files) and a ``tiny`` checkpoint."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from evaluate_testing import ITEMS, draw, write_csv

from street2shop.models.embedder import build_embedder, save_checkpoint


@pytest.fixture
def photo_set(tmp_path: Path) -> dict[str, Path]:
    """``gallery.csv`` (2 shop photos per item) and ``queries.csv`` (2 street photos per item)
    next to a ``photos/`` folder, paths relative to the CSVs."""
    rng = np.random.default_rng(0)
    (tmp_path / "photos").mkdir()
    rows = {"gallery": [], "queries": []}
    for item, (product, category, colour_name, colour, shape) in ITEMS.items():
        for kind, street in (("gallery", False), ("queries", True)):
            for i in range(2):
                name = f"photos/{item.replace(':', '_')}_{kind}_{i}.jpg"
                draw(colour, shape, rng, street).save(tmp_path / name, quality=90)
                row = {"path": name, "item_id": item}
                if kind == "gallery":
                    row |= {"product_id": product, "category": category, "colour": colour_name}
                rows[kind].append(row)
    return {kind: write_csv(tmp_path / f"{kind}.csv", r) for kind, r in rows.items()}


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    model = build_embedder(backbone="tiny", dim=16, pretrained=False, image_size=32)
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "model.pt", model)
