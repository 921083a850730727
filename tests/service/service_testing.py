"""A tiny published store for the service tests (helpers; the fixture is in conftest.py), built in about a second without the pipeline.

Six items in two categories, each with two shop and two street photos (coloured shapes), a
``tiny``-backbone checkpoint with seeded random weights, its embeddings and an index built by
the real index stage (``run_build_index``), so the service loads exactly what the pipeline
publishes. Random weights are enough here: a shop photo that is in the index scores 1.0
against itself, so "search with a shop photo returns its item first" is a sharp check.
"""

from __future__ import annotations

import io
import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch
import uvicorn
from PIL import Image, ImageDraw

from street2shop.models.embed import embed_images
from street2shop.models.embedder import build_embedder, save_checkpoint
from street2shop.models.localise import BoxHead, save_localiser
from street2shop.storage.blobs import BlobStore
from street2shop.storage.names import CHECKPOINT_FILE, LOCALISER, LOCALISER_FILE, SERVING_FILE
from street2shop.storage.schemas import embeddings_schema, vectors_table
from street2shop.storage.store import ArtifactRef, ArtifactStore, content_version
from street2shop.retrieval.index import IndexParams
from street2shop.tasks.index import run_build_index

# item id -> (category, colour, RGB, shape)
ITEMS = {
    "p1:red": ("tops", "red", (220, 30, 30), "square"),
    "p2:blue": ("tops", "blue", (30, 60, 220), "disc"),
    "p3:green": ("tops", "green", (30, 180, 60), "triangle"),
    "p4:yellow": ("skirts", "yellow", (230, 200, 20), "disc"),
    "p5:black": ("skirts", "black", (20, 20, 20), "square"),
    "p6:pink": ("skirts", "pink", (240, 120, 180), "triangle"),
}


def jpeg(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=90)
    return buf.getvalue()


def draw(rgb, shape: str, rng: np.random.Generator, street: bool, size: int = 64) -> bytes:
    background = tuple(int(v) for v in rng.integers(90, 200, 3)) if street else (255, 255, 255)
    image = Image.new("RGB", (size, size), background)
    pen = ImageDraw.Draw(image)
    c = size // 2 + int(rng.integers(-8, 9))
    half = int(size * rng.uniform(0.2, 0.34))
    box = (c - half, c - half, c + half, c + half)
    if shape == "square":
        pen.rectangle(box, fill=rgb)
    elif shape == "disc":
        pen.ellipse(box, fill=rgb)
    else:
        pen.polygon([(c, c - half), (c - half, c + half), (c + half, c + half)], fill=rgb)
    return jpeg(image)


def publish_crawl(store: ArtifactStore, seed: int = 0) -> ArtifactRef:
    rng = np.random.default_rng(seed)
    blobs = BlobStore(store.home)
    items, images = [], []
    for item_id, (category, colour, rgb, shape) in ITEMS.items():
        product = item_id.split(":")[0]
        items.append({"item_id": item_id, "product_id": product, "seller_id": "s1", "category": category,
                      "colour": colour, "title": f"{colour} {category[:-1]} {product}", "url": f"http://shop/{product}"})
        for role in ("shop", "shop", "street", "street"):
            data = draw(rgb, shape, rng, street=role == "street")
            sha, rel = blobs.put(data, "jpg")
            images.append({"image_id": sha, "item_id": item_id, "role": role, "path": rel, "width": 64, "height": 64,
                           "source_url": f"http://shop/img/{sha[:8]}.jpg", "review_id": "r1" if role == "street" else None})
    tables = {"items": pa.Table.from_pylist(items), "images": pa.Table.from_pylist(images)}
    version = content_version(tables)
    with store.publish("crawl", ["items", "images"], version) as w:
        w["items"].write_table(tables["items"])
        w["images"].write_table(tables["images"])
    return ArtifactRef(stage="crawl", name="images", version=version)


def publish_checkpoint(store: ArtifactStore, seed: int = 0) -> tuple[ArtifactRef, object]:
    torch.manual_seed(seed)
    model = build_embedder(backbone="tiny", dim=16, pretrained=False).eval()
    version = f"tiny-seed{seed}"
    with store.publish("train", ["checkpoint"], version, params={"seed": seed}) as w:
        save_checkpoint(w["checkpoint"].path("model.pt"), model)
    return ArtifactRef(stage="train", name="checkpoint", version=version), model


def publish_index(store: ArtifactStore, images: ArtifactRef, seed: int = 0, factory: str = "Flat") -> ArtifactRef:
    """Checkpoint -> embeddings of the shop photos (as the evaluate stage publishes them,
    street photos left for the service to embed) -> index by the real index stage."""
    checkpoint, model = publish_checkpoint(store, seed)
    table = store.read_table(images)
    shop = table.filter(pc.equal(table.column("role"), "shop"))
    paths = [str(BlobStore(store.home).resolve(p)) for p in shop.column("path").to_pylist()]
    vectors = embed_images(model, paths, num_workers=0, device="cpu")
    flat = pa.array(vectors.reshape(-1), pa.float32())
    emb = pa.table({"image_id": shop.column("image_id"), "vector": pa.FixedSizeListArray.from_arrays(flat, vectors.shape[1])})
    emb_version = f"emb-{checkpoint.version}"
    with store.publish("evaluate", ["embeddings"], emb_version, inputs=[checkpoint, images]) as w:
        w["embeddings"].write_table(emb, embeddings_schema(vectors.shape[1]))
    embeddings = ArtifactRef(stage="evaluate", name="embeddings", version=emb_version)
    result = run_build_index(store, embeddings, images, checkpoint, IndexParams(factory=factory))
    return result.refs["index_ids"]


def shop_photo(store: ArtifactStore, item_id: str) -> tuple[str, bytes]:
    """(image_id, bytes) of an item's first shop photo in the latest crawl."""
    table = store.read_table(store.latest("crawl", "images")).to_pylist()
    row = next(r for r in table if r["item_id"] == item_id and r["role"] == "shop")
    return row["image_id"], (store.home / row["path"]).read_bytes()


def publish_served_store(home) -> ArtifactStore:
    """A store at ``home`` the service can serve: the crawl above and an index built on it."""
    store = ArtifactStore(home)
    publish_index(store, publish_crawl(store), seed=0)
    return store


def publish_serving(store: ArtifactStore, images: ArtifactRef, trained: ArtifactRef, model, version: str,
                    serving: dict) -> ArtifactRef:
    """An evaluate version serving ``trained`` as ``serving`` says (its serving.json), the shop
    photos' vectors by ``model`` and the Flat index the real index stage builds on them."""
    table = store.read_table(images)
    shop = table.filter(pc.equal(table.column("role"), "shop"))
    with store.publish("evaluate", ["checkpoint", "embeddings"], version, inputs=[trained, images]) as w:
        w["checkpoint"].path(CHECKPOINT_FILE).write_bytes(store.file(trained, CHECKPOINT_FILE).read_bytes())
        w["checkpoint"].path(SERVING_FILE).write_text(json.dumps({"model": "trained", **serving}))
        paths = [str(store.home / p) for p in shop.column("path").to_pylist()]
        vectors = vectors_table(shop.column("image_id").to_pylist(), embed_images(model, paths, num_workers=0))
        w["embeddings"].write_table(vectors, vectors.schema)
    checkpoint = ArtifactRef(stage="evaluate", name="checkpoint", version=version)
    embeddings = ArtifactRef(stage="evaluate", name="embeddings", version=version)
    return run_build_index(store, embeddings, images, checkpoint, IndexParams(factory="Flat"))["index_ids"]


def publish_box_head(store: ArtifactStore, version: str = "random-head", garment_bias: float = 2.0,
                     edge_bias: float | None = None, seed: int = 0) -> ArtifactRef:
    """A randomly initialised :class:`BoxHead` on the ``tiny`` backbone's map (32 channels),
    published as the localise stage publishes one. ``garment_bias`` raises every cell's
    garment logit (so several garments are found); ``edge_bias`` -30 shrinks every box to
    nothing (the head then finds no garment)."""
    torch.manual_seed(seed)
    head = BoxHead(in_channels=32, hidden=16, categories=("tops", "skirts"))
    with torch.no_grad():
        head.out.bias[0] += garment_bias
        if edge_bias is not None:
            head.out.weight[1:] = 0.0
            head.out.bias[1:] = edge_bias
    with store.publish("localise", [LOCALISER], version) as w:
        save_localiser(w[LOCALISER].path(LOCALISER_FILE), head, backbone="tiny", input_size=[32, 32], map_stride=4)
    return ArtifactRef(stage="localise", name=LOCALISER, version=version)


def publish_boxhead_store(home, options: dict | None = None, serving: dict | None = None,
                          **head) -> tuple[ArtifactStore, ArtifactRef, object, ArtifactRef]:
    """A store serving the learned ``boxhead`` localiser (a random head, see
    :func:`publish_box_head`) with ``options`` (e.g. ``{"pooled": True}``), in eager fp32
    unless ``serving`` says otherwise: (store, index, the tiny model, the localiser's ref)."""
    store = ArtifactStore(home)
    images = publish_crawl(store)
    trained, model = publish_checkpoint(store)
    localiser = publish_box_head(store, **head)
    served = {"inference_mode": "eager", **(serving or {}),
              "localise": {"name": "boxhead", "options": options or {}, "localiser": str(localiser)}}
    return store, publish_serving(store, images, trained, model, "served-boxhead", served), model, localiser


@contextmanager
def served_in_thread(app, log_level: str = "warning", start_s: float = 20) -> Iterator[str]:
    """``app`` served by uvicorn on a free loopback port, in a thread of this process: its URL."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level=log_level))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + start_s
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
