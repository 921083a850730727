"""A small real-garment demo shop, generated, served over loopback, crawled and
deduplicated: what the outfit and looks tests build their stages on."""

from __future__ import annotations

from pathlib import Path

from street2shop.cleaning.dedup import DedupParams
from street2shop.crawler.core import CrawlParams
from street2shop.shop.generator import ShopParams, generate_shop
from street2shop.shop.server import ShopServer
from street2shop.storage.store import ArtifactStore
from street2shop.tasks.crawl import run_crawl
from street2shop.tasks.dedup import run_dedup


def crawled_shop(root: Path, n_products: int):
    """``(store, crawl result, dedup result)`` of a seeded shop of ``n_products`` real garments."""
    shop = generate_shop(root / "shop", ShopParams(seed=1, n_products=n_products, garments="real", image_size=48,
                                                   reviews_per_item=(0, 1)), workers=1)
    store = ArtifactStore(root / "home")
    with ShopServer(shop) as server:
        crawl = run_crawl(store, CrawlParams(base_url=server.url, progress=False, rate_limit_rps=None))
    dedup = run_dedup(store, crawl["items"], crawl["images"], DedupParams(methods=["hash"]))
    return store, crawl, dedup
