"""``POST /search``: a shopper's photo in, the shop's matching items out, a page at a time,
with the garments found in the photo; ``garment=`` or ``box=`` searches one region of it."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Depends, File, HTTPException, Query, Request, UploadFile
from fastapi.responses import Response
from starlette.datastructures import UploadFile as StarletteUploadFile

from street2shop.service.deps import AbsoluteUrls, Engine
from street2shop.service.routers.common import MAX_K, canonical_category, item_fields
from street2shop.service.regions import VALID, BadRegion, parse_box
from street2shop.service.schemas import ErrorDetail, FoundGarment, SearchHit, SearchResponse
from street2shop.service.uploads import BadImage

router = APIRouter(tags=["search"])

BAD_UPLOAD = {
    400: {"model": ErrorDetail, "description": "empty, corrupt or truncated image, or unknown category"},
    413: {"model": ErrorDetail, "description": "file too large, or too many pixels (decompression bomb)"},
    415: {"model": ErrorDetail, "description": "not an image, or an image format that is not accepted"},
    422: {"model": ErrorDetail, "description": "a parameter that does not validate: a box outside the photo, of no area, "
                                               "with NaN or not four numbers; a garment index the photo does not have"},
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
    garment: Annotated[int | None, Query(ge=0, description="search this garment of the answer's garments (its index; 0 = the best, the default)")] = None,
    box: Annotated[str | None, Query(description=f"search this region of the photo, {VALID}", examples=["0.2,0.1,0.8,0.7"])] = None,
) -> Response:
    started = time.perf_counter()
    try:
        wanted = canonical_category(engine, category)
    except KeyError:
        raise HTTPException(400, f"unknown category {category!r}; known: {engine.categories}") from None
    try:
        region = parse_box(box) if box is not None else None
    except BadRegion as exc:
        raise HTTPException(422, str(exc)) from None
    # Read one byte past the limit: enough to know it is too large without reading it all.
    data = image.file.read(engine.limits.max_bytes + 1)
    try:
        found = engine.search_photo(data, offset + k, wanted, garment=garment, box=region)
    except BadImage as exc:
        raise HTTPException(exc.status, f"{image.filename or 'upload'}: {exc}") from None
    except BadRegion as exc:
        raise HTTPException(422, str(exc)) from None
    hits, query = found.hits[offset:], found.query
    results = [
        SearchHit(**item_fields(engine, h["item_id"]), rank=rank, score=h["score"],
                  image_url=urls.image(h["image_id"]), item_url=urls.item(h["item_id"]))
        for rank, h in enumerate(hits, start=offset + 1)
    ]
    total = sum(1 for row in engine.items.values() if wanted is None or row["category"] == wanted)
    took = 1000 * (time.perf_counter() - started)
    body = SearchResponse(
        k=k, offset=offset, total=total, category=wanted, results=results, index_version=engine.versions.index, took_ms=took,
        garments=[FoundGarment(box=list(g.box), category=g.category, score=g.score) for g in query.garments],
        localised=query.localised, garment=query.garment, box=list(query.box) if query.box is not None else None,
    )
    # The hot path: returned as a Response, FastAPI skips re-validating the model it was
    # just built from; response_model still documents it.
    return Response(body.model_dump_json(), media_type="application/json")
