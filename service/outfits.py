"""The "complete the look" API: a router mounted by ``create_app``.

* ``POST /outfits/complete``: item ids and/or a photo, and the wanted type -> the items of
  that type that go best with them, with scores (multipart form: ``items`` repeated,
  ``type``, optional ``image`` and ``photo_type``);
* ``POST /outfits/score``: a set of items (JSON ``{"items": [...]}``) -> its compatibility;
* ``GET /outfits/types``: the types the shop has, and each category's type.

The model is the published outfit model of the crawl the served index indexes (see
:mod:`street2shop.service.outfit_engine`), loaded on first use and again when a reload
serves another crawl. Bad input (an unknown item, an empty outfit, an item twice, a type the
shop does not have, a broken photo) is a 4xx saying what is wrong; no outfit model for the
served crawl is a 404 saying so.
"""

# No `from __future__ import annotations`: FastAPI reads the endpoint annotations at runtime.
import time
from collections.abc import Callable
from typing import Annotated

from fastapi import APIRouter, File, Form, Query, UploadFile
from pydantic import BaseModel, Field

from street2shop.service.deps import AbsoluteUrls, Urls
from street2shop.service.outfit_engine import OutfitEngine, find_outfit_model
from street2shop.service.side_engine import SIDE_INFERENCE
from street2shop.service.side_routes import ServedSideEngine, ShopItem, answer, shop_fields, upload_features
from street2shop.storage.store import ArtifactStore

MAX_K = 50


class OutfitItemHit(ShopItem):
    type: str
    score: float = Field(description="minus the mean distance to the outfit's items in their type-pair spaces; higher goes better")


class CompleteResponse(BaseModel):
    type: str
    items: list[str]
    photo_type: str | None = Field(None, description="the type the photo was taken as (given, or the nearest type's)")
    results: list[OutfitItemHit]
    outfit_model: str
    took_ms: float


class ScoreRequest(BaseModel):
    items: list[str]


class ScoreResponse(BaseModel):
    items: list[str]
    score: float
    outfit_model: str


class TypesResponse(BaseModel):
    types: list[str]
    type_of_category: dict[str, str]
    outfit_model: str


_ERRORS = {400: {"description": "empty outfit, an item twice, a type the shop lacks, a broken photo"},
           404: {"description": "unknown item, or no outfit model for the served crawl"}}


def outfits_router(store: ArtifactStore, search_engine: Callable, inference_mode: str = SIDE_INFERENCE) -> APIRouter:
    """The router; ``search_engine()`` is the served search engine (its crawl decides the model);
    ``inference_mode``: the fp32 path uploads' features run on."""
    router = APIRouter(tags=["outfits"])
    engine = ServedSideEngine(store, search_engine, OutfitEngine, find_outfit_model, inference_mode)

    def hit(served, outfit: OutfitEngine, item_id: str, score: float, urls: Urls) -> OutfitItemHit:
        return OutfitItemHit(type=outfit.view.type_of[item_id], score=score, **shop_fields(served, item_id, urls))

    @router.post("/outfits/complete", response_model=CompleteResponse, responses=_ERRORS,
                 summary="Complete the look: the items of a type that go best with an outfit or a photo")
    def complete(
        urls: AbsoluteUrls,
        type: Annotated[str, Form(description="the type wanted (GET /outfits/types)")],
        items: Annotated[list[str], Form(description="item ids of the outfit so far")] = [],  # noqa: B006 (FastAPI form default)
        image: Annotated[UploadFile | None, File(description="a photo of a garment to build around")] = None,
        photo_type: Annotated[str | None, Form(description="the photo's type (default: guessed)")] = None,
        k: Annotated[int, Query(ge=1, le=MAX_K)] = 6,
    ) -> CompleteResponse:
        started = time.perf_counter()
        outfit, served = engine()
        features = None
        if image is not None:
            features = upload_features(outfit, served, image)
        found, guessed = answer(lambda: outfit.complete([i for i in items if i], type, k, features, photo_type))
        return CompleteResponse(type=type, items=items, photo_type=guessed, outfit_model=outfit.version,
                                results=[hit(served, outfit, c.item_id, c.score, urls) for c in found],
                                took_ms=1000 * (time.perf_counter() - started))

    @router.post("/outfits/score", response_model=ScoreResponse, responses=_ERRORS, summary="How well a set of items goes together")
    def score(body: ScoreRequest) -> ScoreResponse:
        outfit, _ = engine()
        value = answer(lambda: outfit.score(body.items))
        return ScoreResponse(items=body.items, score=value, outfit_model=outfit.version)

    @router.get("/outfits/types", response_model=TypesResponse, responses={404: _ERRORS[404]}, summary="The shop's item types")
    def types() -> TypesResponse:
        outfit, _ = engine()
        return TypesResponse(types=outfit.types, type_of_category=outfit.models.type_of_category, outfit_model=outfit.version)

    return router
