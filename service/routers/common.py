"""What the search and items routers both answer with: an item's fields, photos, the documented
error answers."""

from __future__ import annotations

from urllib.parse import urljoin

from street2shop.service.deps import Urls
from street2shop.service.engine import SearchEngine
from street2shop.service.schemas import ErrorDetail, Photo
from street2shop.storage import names as N
from street2shop.storage.store import ArtifactRef

MAX_K = 100
NOT_FOUND = {404: {"model": ErrorDetail, "description": "no such item or image"}}


def photo(urls: Urls, image_id: str, width: int | None = None, height: int | None = None) -> Photo:
    return Photo(image_id=image_id, url=urls.image(image_id), width=width, height=height)


def shop_base(engine: SearchEngine) -> str | None:
    """The crawled shop's address (its crawl's ``base_url``), to make item links absolute."""
    if not hasattr(engine, "_shop_base"):
        try:
            params = engine.store.manifest(ArtifactRef(stage=N.CRAWL, name=N.ITEMS, version=engine.versions.crawl)).params
            engine._shop_base = (params or {}).get("base_url")
        except Exception:  # noqa: BLE001 (a crawl from a dataset source has no base URL)
            engine._shop_base = None
    return engine._shop_base


def item_fields(engine: SearchEngine, item_id: str) -> dict:
    row = engine.items[item_id]
    url, base = row.get("url"), shop_base(engine)
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
