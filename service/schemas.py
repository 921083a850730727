"""Response models of the search API: what OpenAPI documents and what clients can rely on."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class Photo(BaseModel):
    image_id: str = Field(description="sha256 of the photo's bytes")
    url: str = Field(description="where the service serves the photo (absolute)")
    width: int | None = None
    height: int | None = None


class Item(BaseModel):
    item_id: str = Field(description="product x colour, e.g. 'p0012:red'")
    product_id: str
    category: str
    colour: str
    title: str | None = None
    shop_url: str | None = Field(None, description="the item's page in the crawled shop, an absolute URL (none if unknown)")


class SearchHit(Item):
    rank: int = Field(ge=1)
    score: float = Field(description="cosine similarity of the query to the item's best-matching shop photo")
    image_url: str = Field(description="URL of that best-matching seller photo")
    item_url: str = Field(description="API URL of the item's details")


#: A box in an answer or a request: x0, y0, x1, y1 in fractions of the photo's width and height.
BOX_DESCRIPTION = "x0, y0, x1, y1 in fractions of the photo's width and height (0 = left/top, 1 = right/bottom)"


class FoundGarment(BaseModel):
    box: list[float] = Field(min_length=4, max_length=4, description=BOX_DESCRIPTION + "; send it back as box= to search it")
    category: str | None = Field(None, description="the category the localiser predicts, where it predicts one")
    score: float = Field(description="how sure the localiser is that a garment is there, 0..1")


class SearchResponse(BaseModel):
    k: int
    offset: int = Field(0, description="how many better items were skipped (pages: offset = page x k)")
    total: int = Field(description="items that could be returned (of the category, if one was asked)")
    category: str | None = None
    results: list[SearchHit]
    index_version: str
    took_ms: float = Field(description="server time: decode, embed and search")
    garments: list[FoundGarment] = Field(
        default_factory=list,
        description="the garments the served localiser found in the photo, best first (empty: none found, or a "
                    "localiser that does not detect; /health's detects_garments says which); search one with garment=<index>",
    )
    localised: Literal["garment", "box", "whole_photo", "fixed_crops"] = Field(
        "whole_photo",
        description="what the results are for: a garment found (garment says which), the box asked for, the whole photo "
                    "(no garment found, or no localiser served), or the served localiser's fixed crops (multicrop)",
    )
    garment: int | None = Field(None, description="index in garments of the garment searched")
    box: list[float] | None = Field(None, description="the region searched, " + BOX_DESCRIPTION + " (none: the whole photo or fixed crops)")


class ItemDetail(Item):
    shop_photos: list[Photo]
    street_photos: list[Photo] = Field(description="customer photos posted with the item's reviews")


class StreetHit(Photo):
    score: float = Field(description="best cosine similarity to one of the item's shop photos")
    item_id: str = Field(description="the item whose review the photo came from")
    same_item: bool = Field(description="the photo was posted for the queried item itself")


class StreetResponse(BaseModel):
    item_id: str
    results: list[StreetHit]


class StreetStatus(BaseModel):
    ready: bool
    embedded: int
    total: int
    error: str | None = None


class Health(BaseModel):
    status: str = Field(default="ok", description="ok, or warming while the model runs its first passes (searches then wait)")
    index: str = Field(description="index_ids version served")
    checkpoint: str = Field(description="checkpoint version the index was built with")
    crawl: str = Field(description="crawl version indexed")
    factory: str = Field(description="faiss factory string of the index")
    inference_mode: str = Field(description="the model's inference backend actually serving (eager if the asked one is missing)")
    streams: int = Field(description="forward passes that may run at once")
    evaluated: dict[str, float] = Field(
        default_factory=dict,
        description="the evaluate stage's figures of the served precision (top-1/top-20/mAP on the shop split and each benchmark, images/s)",
    )
    localise: str = Field(default="none", description="the query-side localisation served, as evaluated")
    detects_garments: bool = Field(
        default=False,
        description="the served localiser finds garments: /search answers with them (garments) and takes garment=<index>",
    )
    vectors: int
    items: int
    categories: list[str]
    street_photos: StreetStatus
    side_models: dict[str, dict] = Field(
        default_factory=dict,
        description="complete the look ('outfits') and shop the look ('looks'): the model served, the rule that chose it "
                    "on validation data, each candidate's validation figures and the served one's test figures (95 % intervals)",
    )


class ReloadResponse(BaseModel):
    changed: bool
    previous: str
    current: str


class ErrorDetail(BaseModel):
    """Every error answer (4xx, 5xx) has this shape, whatever raised it."""

    detail: str = Field(description="what was wrong, in a sentence")
    code: str = Field(description="a stable name to branch on: bad_request, not_found, too_large, invalid_request, ...")
