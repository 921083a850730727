"""What the looks and outfits routers share: the side engine of the served crawl (built on first
use, again when a reload serves another crawl), an uploaded photo's features, a 4xx from the
engine's input error, and the shop fields of an item in their answers."""

from __future__ import annotations

import threading
from collections.abc import Callable
from functools import partial
from typing import Generic, TypeVar

import numpy as np
from fastapi import HTTPException, UploadFile
from pydantic import BaseModel

from street2shop.service.deps import Urls
from street2shop.service.side_engine import SIDE_INFERENCE, EngineInputError, SideEngine, check_fp32
from street2shop.service.uploads import BadImage, decode_upload
from street2shop.storage.store import ArtifactNotFound, ArtifactRef, ArtifactStore

E = TypeVar("E", bound=SideEngine)


class ServedSideEngine(Generic[E]):
    """``self()`` -> (the side engine of the served crawl, the served search engine); a crawl
    with no published model is a 404 saying so. ``inference_mode``: the side engine's fp32
    path for uploads."""

    def __init__(self, store: ArtifactStore, search_engine: Callable, build: Callable[..., E],
                 find: Callable[[ArtifactStore, str], ArtifactRef], inference_mode: str = SIDE_INFERENCE) -> None:
        self.store, self.search_engine, self.find = store, search_engine, find
        self.build = partial(build, inference_mode=check_fp32(inference_mode))
        self._cache: dict[str, E] = {}
        self._lock = threading.Lock()

    def __call__(self) -> tuple[E, object]:
        served = self.search_engine()
        crawl = served.versions.crawl
        with self._lock:
            if crawl not in self._cache:
                try:
                    loaded = self.build(self.store, self.find(self.store, crawl))
                except ArtifactNotFound as exc:
                    raise HTTPException(404, str(exc)) from None
                self._cache.clear()  # one crawl is served at a time
                self._cache[crawl] = loaded
            return self._cache[crawl], served


def upload_features(side: SideEngine, served, image: UploadFile) -> np.ndarray:
    """The frozen features of an uploaded photo; a broken or oversized one is a 4xx naming it."""
    data = image.file.read(served.limits.max_bytes + 1)
    try:
        return side.photo_features(decode_upload(data, served.limits, side.feature_params.image_size))
    except BadImage as exc:
        raise HTTPException(exc.status, f"{image.filename or 'upload'}: {exc}") from None


def answer(call: Callable):
    """``call()``; the engine's one-line input error as its 4xx."""
    try:
        return call()
    except EngineInputError as exc:
        raise HTTPException(exc.status, str(exc)) from None


class ShopItem(BaseModel):
    """An item as the side answers carry it (:func:`shop_fields`)."""

    item_id: str
    title: str | None = None
    category: str | None = None
    colour: str | None = None
    image_url: str | None = None
    item_url: str


def shop_fields(served, item_id: str, urls: Urls) -> dict:
    """An item's title, category, colour, first shop photo and page (absolute URLs), as the side
    answers carry them."""
    row = served.items.get(item_id, {})
    shop = served.photos.get(item_id, {}).get("shop", [])
    return {"item_id": item_id, "title": row.get("title"), "category": row.get("category"), "colour": row.get("colour"),
            "image_url": urls.image(shop[0]["image_id"]) if shop else None, "item_url": urls.item(item_id)}
