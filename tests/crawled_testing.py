"""A small real-garment demo shop, generated, served over loopback, crawled and
deduplicated (and with the looks stages' features): what the outfit and looks tests build on."""

from __future__ import annotations

from pathlib import Path

from street2shop.cleaning.dedup import DedupParams
from street2shop.crawler.core import CrawlParams
from street2shop.models.looks_view import LooksRefs
from street2shop.shop.generator import ShopParams, generate_shop
from street2shop.shop.server import ShopServer
from street2shop.storage import names as N
from street2shop.storage.store import ArtifactStore
from street2shop.tasks.crawl import run_crawl
from street2shop.tasks.dedup import run_dedup
from street2shop.tasks.features import run_features


def crawled_shop(root: Path, n_products: int):
    """``(store, crawl result, dedup result)`` of a seeded shop of ``n_products`` real garments."""
    shop = generate_shop(root / "shop", ShopParams(seed=1, n_products=n_products, garments="real", image_size=48,
                                                   reviews_per_item=(0, 1)), workers=1)
    store = ArtifactStore(root / "home")
    with ShopServer(shop) as server:
        crawl = run_crawl(store, CrawlParams(base_url=server.url, progress=False, rate_limit_rps=None))
    dedup = run_dedup(store, crawl["items"], crawl["images"], DedupParams(methods=["hash"]))
    return store, crawl, dedup


def crawled_looks(root: Path, n_products: int, features):
    """``(store, crawl result, looks refs)``: the shop above with the features (``FeatureParams``
    ``features``) of its items' and its posts' photos, the looks stages' inputs."""
    store, crawl, dedup = crawled_shop(root, n_products)
    items = run_features(store, crawl[N.IMAGES], features)
    snaps = run_features(store, crawl[N.SNAPS], features)
    return store, crawl, LooksRefs.of_crawl(crawl[N.IMAGES], items[N.PHOTO_FEATURES], snaps[N.PHOTO_FEATURES], dedup[N.GROUPS])
