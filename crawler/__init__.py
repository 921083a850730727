"""The crawl stage: walk a shop politely, validate and store its photos, return tables.

``crawl(CrawlParams(...), BlobStore(home), state_dir, previous=None) -> CrawlResult`` is the
entry point (``core.py``); shop-specific parsing lives in adapters chosen by name
(``adapters.py``: "demo", "jsonld").
"""

from street2shop.crawler.adapters import ADAPTERS, ShopAdapter, get_adapter, register_adapter
from street2shop.crawler.core import CrawlError, CrawlParams, CrawlResult, crawl
from street2shop.crawler.validate import ImageCheck, ImageLimits, validate_image

__all__ = [
    "ADAPTERS",
    "CrawlError",
    "CrawlParams",
    "CrawlResult",
    "ImageCheck",
    "ImageLimits",
    "ShopAdapter",
    "crawl",
    "get_adapter",
    "register_adapter",
    "validate_image",
]
