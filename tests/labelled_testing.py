"""Helpers shared by the evaluation tests: tiny labelled photos and CSVs."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

# Two products in two colours each: "right product, wrong colour" has something to find.
ITEMS = {
    "p1:red": ("p1", "tops", "red", (220, 30, 30), "square"),
    "p1:blue": ("p1", "tops", "blue", (30, 60, 220), "square"),
    "p2:red": ("p2", "shoes", "red", (220, 30, 30), "disc"),
    "p2:blue": ("p2", "shoes", "blue", (30, 60, 220), "disc"),
}


def draw(colour, shape, rng: np.random.Generator, street: bool, size: int = 40) -> Image.Image:
    background = tuple(int(v) for v in rng.integers(90, 200, 3)) if street else (255, 255, 255)
    image = Image.new("RGB", (size, size), background)
    half = int(size * rng.uniform(0.22, 0.32))
    c = size // 2 + int(rng.integers(-4, 5))
    (ImageDraw.Draw(image).rectangle if shape == "square" else ImageDraw.Draw(image).ellipse)((c - half, c - half, c + half, c + half), fill=colour)
    return image


def write_csv(path: Path, rows: list[dict]) -> Path:
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def publish_shop(home: Path, checkpoint: Path, seed: int = 0):
    """A store holding what the evaluate stage reads: crawl items/images (photos in blobs),
    dedup groups/splits (every item in ``test``), noise scores/labels and a train checkpoint.
    Returns ``(store, DataRefs, checkpoint ref)``."""
    import shutil

    import pyarrow as pa

    from street2shop.storage.blobs import BlobStore
    from street2shop.storage.store import ArtifactStore
    from street2shop.tasks.data import DataRefs

    store = ArtifactStore(home)
    blobs = BlobStore(store.home)
    rng = np.random.default_rng(seed)
    items, images = [], []
    for item, (product, category, colour_name, colour, shape) in ITEMS.items():
        items.append({"item_id": item, "product_id": product, "seller_id": "s1", "category": category,
                      "colour": colour_name, "title": None, "url": None})
        for role, n in (("shop", 2), ("street", 2)):
            for i in range(n):
                buf = io.BytesIO()
                draw(colour, shape, rng, street=role == "street").save(buf, format="JPEG", quality=90)
                sha, rel = blobs.put(buf.getvalue())
                images.append({"image_id": sha, "item_id": item, "role": role, "path": rel, "width": 40, "height": 40,
                               "source_url": f"http://shop.test/{sha}.jpg", "review_id": f"r{i}" if role == "street" else None})
    tables = {
        ("crawl", "items"): pa.Table.from_pylist(items),
        ("crawl", "images"): pa.Table.from_pylist(images),
        ("dedup", "groups"): pa.table({"item_id": list(ITEMS), "group_id": list(ITEMS), "evidence": [""] * len(ITEMS)}),
        ("dedup", "splits"): pa.table({"group_id": list(ITEMS), "split": ["test"] * len(ITEMS)}),
        ("noise", "noise_scores"): pa.table({"image_id": [r["image_id"] for r in images], "p_noise": pa.array([0.0] * len(images), pa.float32()), "keep": [True] * len(images)}),
        ("noise", "noise_labels"): pa.table({"image_id": pa.array([], pa.string()), "label": pa.array([], pa.string())}),
    }
    refs = {}
    for stage in ("crawl", "dedup", "noise"):
        names = [n for s, n in tables if s == stage]
        with store.publish(stage, names, "v1") as writers:
            for name in names:
                writers[name].write_table(tables[(stage, name)])
        refs |= {name: store.latest(stage, name) for name in names}
    with store.publish("train", ["checkpoint"], "v1") as writers:
        shutil.copyfile(checkpoint, writers["checkpoint"].path("model.pt"))
    return store, DataRefs(**refs), store.latest("train", "checkpoint")


def publish_localiser(store, checkpoint_ref, seed: int = 0):
    """A localise/localiser artifact: a randomly initialised BoxHead on the checkpoint's backbone."""
    import torch

    from street2shop.models.embedder import load_embedder
    from street2shop.models.localise import BoxHead, save_localiser
    from street2shop.storage.names import CHECKPOINT_FILE, LOCALISE, LOCALISER, LOCALISER_FILE

    model = load_embedder(store.file(checkpoint_ref, CHECKPOINT_FILE))
    torch.manual_seed(seed)
    head = BoxHead(model.backbone.num_features, hidden=8)
    size = model.preprocess.image_size
    with store.publish(LOCALISE, [LOCALISER], f"v{seed}") as writers:
        save_localiser(writers[LOCALISER].path(LOCALISER_FILE), head, backbone=model.config.backbone,
                       input_size=[size + 16, size], map_stride=model.backbone.feature_stride)
    return store.latest(LOCALISE, LOCALISER)
