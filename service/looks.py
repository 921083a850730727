"""The "shop the look" API: a router mounted by ``create_app``.

* ``POST /looks/related``: a snapshot photo (multipart ``image``) -> the ``k`` items nearest
  it in the looks space, the items a stylist would link to it (optional ``style``: only
  items linked by posts of that style; ``category``: only items of that category);
* ``GET /items/{item_id}/looks``: an item -> the ``k`` lookbook posts nearest it ("how do I
  wear it?"; optional ``style``);
* ``GET /looks/styles``: the lookbook's styles (posts per style) and the items' categories;
* ``GET /looks/{snap_id}/photo``: a post's photo (looked up by id in the served posts).

The model is the published looks model of the crawl the served index indexes (see
:mod:`street2shop.service.look_engine`), loaded on first use and again when a reload serves
another crawl. Bad input (an unknown item, style, category or post, a broken photo) is a 4xx
saying what is wrong; no looks model for the served crawl is a 404 saying so.
"""

# No `from __future__ import annotations`: FastAPI reads the endpoint annotations at runtime.
import mimetypes
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, File, HTTPException, Path as PathParam, Query, UploadFile
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field

from street2shop.service.deps import AbsoluteUrls
from street2shop.service.look_engine import LookEngine, find_looks_model
from street2shop.service.side_engine import SIDE_INFERENCE
from street2shop.service.side_routes import ServedSideEngine, ShopItem, answer, shop_fields, upload_features
from street2shop.storage.store import ArtifactStore

MAX_K = 50


class RelatedItem(ShopItem):
    score: float = Field(description="cosine to the photo in the looks space; higher is more related")


class RelatedResponse(BaseModel):
    k: int
    style: str | None
    category: str | None
    results: list[RelatedItem]
    looks_model: str
    took_ms: float


class LookHit(BaseModel):
    snap_id: str
    score: float = Field(description="cosine to the item in the looks space")
    style: str | None = None
    image_url: str
    items: list[str] = Field(description="the items the post's stylists linked")


class LooksResponse(BaseModel):
    item_id: str
    k: int
    style: str | None
    results: list[LookHit]
    looks_model: str


class StylesResponse(BaseModel):
    styles: dict[str, int] = Field(description="style -> posts of that style")
    categories: list[str]
    looks_model: str


_ERRORS = {400: {"description": "unknown style or category, empty or broken photo"},
           404: {"description": "unknown item or post, or no looks model for the served crawl"},
           413: {"description": "photo too large"}, 415: {"description": "not an image"}}


def looks_router(store: ArtifactStore, search_engine: Callable, inference_mode: str = SIDE_INFERENCE) -> APIRouter:
    """The router; ``search_engine()`` is the served search engine (its crawl decides the model);
    ``inference_mode``: the fp32 path uploads' features run on."""
    router = APIRouter(tags=["looks"])
    engine = ServedSideEngine(store, search_engine, LookEngine, find_looks_model, inference_mode)

    @router.post("/looks/related", response_model=RelatedResponse, responses=_ERRORS,
                 summary="Shop the look: a snapshot photo in, the items related to it out")
    def related(
        urls: AbsoluteUrls,
        image: Annotated[UploadFile, File(description="a photo of a look (JPEG, PNG or WebP)")],
        k: Annotated[int, Query(ge=1, le=MAX_K, description="how many items")] = 6,
        style: Annotated[str | None, Query(description="only items linked by posts of this style (GET /looks/styles)")] = None,
        category: Annotated[str | None, Query(description="only items of this category")] = None,
    ) -> RelatedResponse:
        started = time.perf_counter()
        looks, served = engine()
        features = upload_features(looks, served, image)
        hits = answer(lambda: looks.related(features, k, style, category))
        return RelatedResponse(k=k, style=style or None, category=category or None, looks_model=looks.version,
                               results=[RelatedItem(score=h.score, **shop_fields(served, h.id, urls)) for h in hits],
                               took_ms=1000 * (time.perf_counter() - started))

    @router.get("/items/{item_id}/looks", response_model=LooksResponse, responses=_ERRORS,
                summary="Wear it with: the lookbook posts nearest an item")
    def item_looks(
        urls: AbsoluteUrls,
        item_id: Annotated[str, PathParam(description="item id (product x colour)")],
        k: Annotated[int, Query(ge=1, le=MAX_K, description="how many posts")] = 6,
        style: Annotated[str | None, Query(description="only posts of this style")] = None,
    ) -> LooksResponse:
        looks, served = engine()
        if item_id not in served.items:
            raise HTTPException(404, f"unknown item {item_id!r}")
        hits = answer(lambda: looks.looks_of(item_id, k, style))
        return LooksResponse(item_id=item_id, k=k, style=style or None, looks_model=looks.version, results=[
            LookHit(snap_id=h.id, score=h.score, style=looks.style_of.get(h.id) or None, image_url=f"{urls.base}/looks/{h.id}/photo",
                    items=list(looks.view.links.get(h.id, []))) for h in hits])

    @router.get("/looks/styles", response_model=StylesResponse, responses={404: _ERRORS[404]},
                summary="The lookbook's styles and the items' categories")
    def styles() -> StylesResponse:
        looks, _ = engine()
        return StylesResponse(styles=dict(sorted(Counter(s for s in looks.style_of.values() if s).items())),
                              categories=looks.categories, looks_model=looks.version)

    @router.get("/looks/{snap_id}/photo", response_class=FileResponse, responses={404: _ERRORS[404]}, summary="A post's photo")
    def snap_photo(snap_id: Annotated[str, PathParam(description="post id")]) -> FileResponse:
        looks, _ = engine()
        known = looks.image_of_snap.get(snap_id)
        path = Path(known) if known else None  # the store's own path, never built from the request
        if path is None or not path.is_file():
            raise HTTPException(404, f"unknown post {snap_id!r}")
        return FileResponse(path, media_type=mimetypes.guess_type(path.name)[0] or "application/octet-stream",
                            headers={"Cache-Control": "public, max-age=3600"})

    return router
