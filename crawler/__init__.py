"""The crawl stage: walk a shop politely, validate and store its photos, return tables.

``crawl(CrawlParams(...), BlobStore(home), state_dir, previous=None) -> CrawlResult`` is the
entry point (``core.py``); shop-specific parsing lives in adapters chosen by name
(``adapters.py``: "demo", "jsonld"). The crawler expects a hostile shop: what it may request
is ``guard.py``'s decision, how long and how much it reads ``transfer.py``'s, and whatever
it refuses ends as a reject row with the reason.
"""

from street2shop.crawler.adapters import ADAPTERS, ShopAdapter, get_adapter, register_adapter
from street2shop.crawler.core import CrawlError, CrawlParams, CrawlResult, RobotsDisallowed, crawl
from street2shop.crawler.validate import ImageCheck, ImageLimits, validate_image

__all__ = [
    "ADAPTERS",
    "CrawlError",
    "CrawlParams",
    "CrawlResult",
    "ImageCheck",
    "ImageLimits",
    "RobotsDisallowed",
    "ShopAdapter",
    "crawl",
    "get_adapter",
    "register_adapter",
    "validate_image",
]
