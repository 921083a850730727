"""An item, its photos, and reverse search: ``/items/{item_id}``, ``/items/{item_id}/street``,
``/images/{image_id}``."""

from __future__ import annotations

import mimetypes
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path as PathParam, Query
from fastapi.responses import FileResponse

from street2shop.service.deps import AbsoluteUrls, Engine
from street2shop.service.engine import NotReady, SearchEngine
from street2shop.service.routers.common import MAX_K, NOT_FOUND, item_fields, photo
from street2shop.service.schemas import ErrorDetail, ItemDetail, StreetHit, StreetResponse

router = APIRouter(tags=["items"])

#: How long reverse search waits for street photos still being embedded before answering 503.
STREET_WAIT_S = 2.0

ItemId = Annotated[str, PathParam(description="item id (product x colour)")]


def known_item(engine: SearchEngine, item_id: str) -> None:
    if item_id not in engine.items:
        raise HTTPException(404, f"unknown item {item_id!r}")


@router.get("/items/{item_id}", response_model=ItemDetail, summary="An item with its photos", responses=NOT_FOUND)
def get_item(engine: Engine, urls: AbsoluteUrls, item_id: ItemId) -> ItemDetail:
    known_item(engine, item_id)
    photos = engine.photos.get(item_id, {})
    return ItemDetail(
        **item_fields(engine, item_id),
        shop_photos=[photo(urls, **p) for p in photos.get("shop", [])],
        street_photos=[photo(urls, **p) for p in photos.get("street", [])],
    )


@router.get(
    "/items/{item_id}/street",
    response_model=StreetResponse,
    summary="Reverse search: customer photos nearest to an item",
    responses={**NOT_FOUND, 503: {"model": ErrorDetail, "description": "street photos still being embedded"}},
)
def item_street(
    engine: Engine,
    urls: AbsoluteUrls,
    item_id: ItemId,
    k: Annotated[int, Query(ge=1, le=MAX_K, description="how many photos to return")] = 12,
) -> StreetResponse:
    known_item(engine, item_id)
    try:
        hits = engine.nearest_street(item_id, k, wait_s=STREET_WAIT_S)
    except NotReady as exc:
        raise HTTPException(503, str(exc), headers={"Retry-After": "5"}) from None
    return StreetResponse(
        item_id=item_id,
        results=[
            StreetHit(**photo(urls, h["image_id"]).model_dump(), score=h["score"], item_id=h["item_id"],
                      same_item=h["item_id"] == item_id)
            for h in hits
        ],
    )


@router.get("/images/{image_id}", summary="A photo's bytes", response_class=FileResponse, responses=NOT_FOUND)
def get_image(engine: Engine, image_id: Annotated[str, PathParam(description="sha256 of the photo")]) -> FileResponse:
    path = engine.image_path.get(image_id)
    if path is None or not path.is_file():
        raise HTTPException(404, f"unknown image {image_id!r}")
    media_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    # Content-addressed: the bytes behind an id never change.
    return FileResponse(path, media_type=media_type, headers={"Cache-Control": "public, max-age=31536000, immutable"})
