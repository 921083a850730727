"""``POST /search``: a shopper's photo in, the shop's matching items out, a page at a time."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Depends, File, HTTPException, Query, Request, UploadFile
from fastapi.responses import Response
from starlette.datastructures import UploadFile as StarletteUploadFile

from street2shop.service.deps import AbsoluteUrls, Engine
from street2shop.service.routers.common import MAX_K, canonical_category, item_fields
from street2shop.service.schemas import ErrorDetail, SearchHit, SearchResponse
from street2shop.service.uploads import BadImage

router = APIRouter(tags=["search"])

BAD_UPLOAD = {
    400: {"model": ErrorDetail, "description": "empty, corrupt or truncated image, or unknown category"},
    413: {"model": ErrorDetail, "description": "file too large, or too many pixels (decompression bomb)"},
    415: {"model": ErrorDetail, "description": "not an image, or an image format that is not accepted"},
}


async def one_photo(request: Request) -> None:
    """400 for a form with more than one file (the form is parsed once; this reads it back)."""
    form = await request.form()
    files = sum(isinstance(value, StarletteUploadFile) for _, value in form.multi_items())
    if files > 1:
        raise HTTPException(400, f"one photo per request: the form holds {files} files")


@router.post(
    "/search", response_model=SearchResponse, summary="Find shop items in a photo", responses=BAD_UPLOAD,
    dependencies=[Depends(one_photo)],
)
def search_photo(
    engine: Engine,
    urls: AbsoluteUrls,
    image: Annotated[UploadFile, File(description="the shopper's photo (JPEG, PNG, WebP or HEIC)")],
    k: Annotated[int, Query(ge=1, le=MAX_K, description="how many items to return")] = 20,
    offset: Annotated[int, Query(ge=0, le=10 * MAX_K, description="skip this many of the best items (the next page)")] = 0,
    category: Annotated[str | None, Query(description="only items of this category (any case)")] = None,
) -> Response:
    started = time.perf_counter()
    try:
        wanted = canonical_category(engine, category)
    except KeyError:
        raise HTTPException(400, f"unknown category {category!r}; known: {engine.categories}") from None
    # Read one byte past the limit: enough to know it is too large without reading it all.
    data = image.file.read(engine.limits.max_bytes + 1)
    try:
        hits = engine.search_image(data, offset + k, wanted)[offset:]
    except BadImage as exc:
        raise HTTPException(exc.status, f"{image.filename or 'upload'}: {exc}") from None
    results = [
        SearchHit(**item_fields(engine, h["item_id"]), rank=rank, score=h["score"],
                  image_url=urls.image(h["image_id"]), item_url=urls.item(h["item_id"]))
        for rank, h in enumerate(hits, start=offset + 1)
    ]
    total = sum(1 for row in engine.items.values() if wanted is None or row["category"] == wanted)
    took = 1000 * (time.perf_counter() - started)
    body = SearchResponse(k=k, offset=offset, total=total, category=wanted, results=results,
                          index_version=engine.versions.index, took_ms=took)
    # The hot path: returned as a Response, FastAPI skips re-validating the model it was
    # just built from; response_model still documents it.
    return Response(body.model_dump_json(), media_type="application/json")
