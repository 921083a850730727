"""What the search and items routers both answer with: an item's fields, photos, the documented
error answers."""

from __future__ import annotations

from urllib.parse import urljoin

from street2shop.service.deps import Urls
from street2shop.service.engine import SearchEngine
from street2shop.service.schemas import ErrorDetail, Photo

MAX_K = 100
NOT_FOUND = {404: {"model": ErrorDetail, "description": "no such item or image"}}


def photo(urls: Urls, image_id: str, width: int | None = None, height: int | None = None) -> Photo:
    return Photo(image_id=image_id, url=urls.image(image_id), width=width, height=height)


def item_fields(engine: SearchEngine, item_id: str) -> dict:
    row = engine.items[item_id]
    url, base = row.get("url"), engine.shop_base_url
    return {
        "item_id": item_id,
        "product_id": row["product_id"],
        "category": row["category"],
        "colour": row["colour"],
        "title": row.get("title"),
        # a crawl keeps the shop's own (often relative) link; answers carry a full one, or none
        "shop_url": urljoin(base, url) if url and base else url if url and "://" in url else None,
    }


def canonical_category(engine: SearchEngine, category: str | None) -> str | None:
    """``category`` as the index spells it, matched without regard to case; KeyError if none."""
    if category is None:
        return None
    found = {c.lower(): c for c in engine.categories}.get(category.strip().lower())
    if found is None:
        raise KeyError(category)
    return found
