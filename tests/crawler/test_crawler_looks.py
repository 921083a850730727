"""The lookbook ("shop the look") read by both adapters: every post, its photo, its style and
tags and the items it links, in page order; posts checked against their markup."""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path

import pytest
from crawler_testing import fast_params

from street2shop.crawler.adapters import DemoShopAdapter, PageParseError
from street2shop.crawler.core import crawl
from street2shop.shop import pages
from street2shop.shop.catalog import load_catalog, variants_by_item
from street2shop.shop.generator import ShopParams, generate_shop
from street2shop.shop.server import ShopServer
from street2shop.storage.blobs import BlobStore

REAL = {"seed": 4, "n_products": 24, "garments": "real", "image_size": 48, "reviews_per_item": (0, 1), "snaps_per_outfit": 1.0}


@pytest.fixture(scope="module")
def real_shop(tmp_path_factory) -> Path:
    return generate_shop(tmp_path_factory.mktemp("looks") / "s", ShopParams(**REAL), workers=1)


def _rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("adapter", ["demo", "jsonld"])
def test_crawl_reads_every_post(real_shop, tmp_path, adapter, monkeypatch):
    monkeypatch.setattr(pages, "LOOKS_PAGE_SIZE", 5)  # the lookbook on several pages
    with ShopServer(real_shop) as server:
        result = crawl(fast_params(server.url, adapter=adapter), BlobStore(tmp_path), tmp_path / "state")
    truth = {r["snap_id"]: r for r in _rows(real_shop / "truth" / "snaps.csv")}
    links = [(r["snap_id"], r["item_id"], int(r["position"])) for r in _rows(real_shop / "truth" / "snap_items.csv")]
    assert len(truth) > 2 * pages.LOOKS_PAGE_SIZE and result.rejects.num_rows == 0
    snaps = result.snaps.to_pylist()
    assert [r["snap_id"] for r in snaps] == sorted(truth) and result.stats["snaps"] == len(truth)
    catalog = {s.snap_id: s for s in load_catalog(real_shop).snaps}
    for r in snaps:
        assert r["style"] == truth[r["snap_id"]]["style"] and r["tags"] == catalog[r["snap_id"]].tags
        # the photo's bytes are the post's photo
        assert r["image_id"] == truth[r["snap_id"]]["image_id"]
        assert hashlib.sha256((tmp_path / r["path"]).read_bytes()).hexdigest() == r["image_id"]
    got = [(r["snap_id"], r["item_id"], r["position"]) for r in result.snap_items.to_pylist()]
    assert sorted(got) == sorted(links)


def test_a_post_keeps_only_the_items_the_crawl_has(real_shop, tmp_path):
    with ShopServer(real_shop) as server:
        result = crawl(fast_params(server.url, max_products=10), BlobStore(tmp_path), tmp_path / "state")
    crawled = {r["item_id"] for r in result.items.to_pylist()}
    kept = result.snap_items.to_pylist()
    assert kept and {r["item_id"] for r in kept} <= crawled
    assert {r["snap_id"] for r in kept} == {r["snap_id"] for r in result.snaps.to_pylist()}
    # positions stay 0, 1, ... per post after the others are dropped
    by_post: dict[str, list[int]] = {}
    for r in kept:
        by_post.setdefault(r["snap_id"], []).append(r["position"])
    assert all(sorted(p) == list(range(len(p))) for p in by_post.values())
    reasons = [r["reason"] for r in result.rejects.to_pylist()]
    assert any("links items the crawl does not have" in why for why in reasons)


def test_a_shop_without_a_lookbook_gives_empty_tables(tmp_path):
    shop = generate_shop(tmp_path / "plain", ShopParams(**{**REAL, "n_products": 8, "snaps_per_outfit": 0}), workers=1)
    with ShopServer(shop) as server:
        result = crawl(fast_params(server.url), BlobStore(tmp_path / "b"), tmp_path / "state")
    assert result.snaps.num_rows == 0 and result.snap_items.num_rows == 0 and result.stats["snaps"] == 0


def _page(real_shop: Path):
    catalog = load_catalog(real_shop)
    snap = catalog.snaps[0]
    return snap, pages.snap_page(snap, variants_by_item(catalog))


def test_a_post_page_is_checked_against_its_markup(real_shop):
    adapter = DemoShopAdapter()
    snap, html = _page(real_shop)
    url = f"http://shop.test/l/{snap.snap_id}"
    record = adapter.parse_snap(html, url, snap.snap_id)
    assert record.items == tuple(snap.items) and record.style == snap.style and record.tags == tuple(snap.tags)
    assert record.image_url.startswith("http://shop.test/")
    first = snap.items[0]
    # the blob says another style than the markup
    with pytest.raises(PageParseError, match="disagree"):
        adapter.parse_snap(html.replace(f'"style": "{snap.style}"', '"style": "goth"').replace(f'"style":"{snap.style}"', '"style":"goth"'),
                           url, snap.snap_id)
    # an item linked twice, in both blob and markup
    twice = html.replace(f'data-item-id="{snap.items[1]}"', f'data-item-id="{first}"')
    with pytest.raises(PageParseError):
        adapter.parse_snap(twice, url, snap.snap_id)
    # the page is of another post
    with pytest.raises(PageParseError):
        adapter.parse_snap(html, url, "k99999")
    # no photo
    with pytest.raises(PageParseError, match="no photo"):
        adapter.parse_snap(html.replace('class="snap-photo"', 'class="x"'), url, snap.snap_id)
