"""Synthetic street-to-shop photos for the embedder tests: coloured shapes, seconds on CPU."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from PIL import Image, ImageDraw

from street2shop.storage.schemas import IMAGES

# Four items that differ in colour and shape, as real items differ in colour and cut.
ITEM_STYLES = {
    "p1:red": ((220, 30, 30), "square"),
    "p2:blue": ((30, 60, 220), "disc"),
    "p3:green": ((30, 180, 60), "square"),
    "p4:yellow": ((230, 200, 20), "disc"),
}


def draw_item(style, rng: np.random.Generator, street: bool, size: int = 48) -> Image.Image:
    """A shop photo is the item near the centre on white; a street photo is shifted, scaled, noisy."""
    colour, shape = style
    background = tuple(int(v) for v in rng.integers(90, 200, 3)) if street else (255, 255, 255)
    image = Image.new("RGB", (size, size), background)
    half = int(size * (rng.uniform(0.22, 0.34) if street else rng.uniform(0.28, 0.32)))
    cx, cy = size // 2 + rng.integers(-6, 7, 2) if street else size // 2 + rng.integers(-2, 3, 2)
    box = (cx - half, cy - half, cx + half, cy + half)
    draw = ImageDraw.Draw(image)
    (draw.rectangle if shape == "square" else draw.ellipse)(box, fill=colour)
    if street:
        noise = rng.normal(0, 12, (size, size, 3))
        image = Image.fromarray(np.clip(np.asarray(image) + noise, 0, 255).astype(np.uint8))
    return image


def make_images_table(root: Path, shop_per_item: int = 2, street_per_item: int = 4, seed: int = 0) -> pa.Table:
    rng = np.random.default_rng(seed)
    rows = []
    for item_id, style in ITEM_STYLES.items():
        for role, count in (("shop", shop_per_item), ("street", street_per_item)):
            for i in range(count):
                image = draw_item(style, rng, street=role == "street")
                path = root / f"{item_id.replace(':', '_')}_{role}_{i}.png"
                image.save(path)
                rows.append({
                    "image_id": hashlib.sha256(path.read_bytes()).hexdigest(),
                    "item_id": item_id,
                    "role": role,
                    "path": str(path),
                    "width": image.width,
                    "height": image.height,
                    "source_url": f"http://shop.test/{path.name}",
                    "review_id": f"r{i}" if role == "street" else None,
                })
    return pa.Table.from_pylist(rows, schema=IMAGES)


@pytest.fixture(autouse=True)
def _one_torch_thread(single_torch_thread):
    """Every models test runs on one torch thread (tests/conftest.py)."""


@pytest.fixture(scope="session")
def synthetic_images(tmp_path_factory) -> pa.Table:
    """4 items x (2 shop + 4 street) PNG photos, an IMAGES table with absolute paths."""
    return make_images_table(tmp_path_factory.mktemp("synthetic_images"))
