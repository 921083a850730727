"""End-to-end crawls of a generated demo shop on loopback: truth, adapters, faults."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from crawler_testing import fast_params, image_keys, truth_images, truth_items, truth_keys

from street2shop.crawler.core import CrawlParams, crawl
from street2shop.shop.catalog import load_catalog
from street2shop.shop.faults import FaultConfig, canonical_url
from street2shop.shop.pages import FEEDBACK_PAGE_SIZE
from street2shop.shop.server import ShopServer
from street2shop.storage.blobs import BlobStore
from street2shop.storage.schemas import CRAWL_REJECTS, IMAGES, ITEMS


def test_full_crawl_equals_the_shops_truth(shop_template: Path, tmp_path: Path) -> None:
    blobs = BlobStore(tmp_path / "home")
    with ShopServer(shop_template) as shop:
        result = crawl(fast_params(shop.url), blobs, tmp_path / "state")
    assert result.items.schema.equals(ITEMS, check_metadata=True)
    assert result.images.schema.equals(IMAGES, check_metadata=True)
    assert result.rejects.schema.equals(CRAWL_REJECTS, check_metadata=True)
    assert result.rejects.num_rows == 0

    want_items = {(r["item_id"], r["product_id"], r["seller_id"], r["category"], r["colour"])
                  for r in truth_items(shop_template)}
    got_items = {(r["item_id"], r["product_id"], r["seller_id"], r["category"], r["colour"])
                 for r in result.items.to_pylist()}
    assert got_items == want_items
    truth = truth_images(shop_template)
    assert image_keys(result) == truth_keys(truth)
    assert result.images.num_rows == len(truth)
    # Every stored blob holds exactly the bytes its id names, under the shop's own file.
    for row in result.images.to_pylist():
        data = blobs.resolve(row["path"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == row["image_id"]
        assert (row["width"], row["height"]) == (64, 64)
    # Sorted by key, so thread timing cannot change the bytes.
    ids = result.items.column("item_id").to_pylist()
    assert ids == sorted(ids)
    s = result.stats
    assert s["images_fetched"] == len({r["file"] for r in truth}) and s["images_known"] == 0
    assert s["items"] == len(want_items) and s["rejected"] == 0 and s["bytes"] > 0


def test_both_adapters_see_the_same_shop(shop_template: Path, tmp_path: Path) -> None:
    with ShopServer(shop_template) as shop:
        demo = crawl(fast_params(shop.url, adapter="demo"), BlobStore(tmp_path / "h"), tmp_path / "s1")
        ld = crawl(fast_params(shop.url, adapter="jsonld"), BlobStore(tmp_path / "h"), tmp_path / "s2")
    assert demo.items.equals(ld.items)
    assert demo.images.equals(ld.images)
    # JSON-LD lists the reviews on the item page: no feedback pages to walk.
    assert ld.stats["pages_fetched"] < demo.stats["pages_fetched"]


def test_max_products_and_categories(shop_template: Path, tmp_path: Path) -> None:
    with ShopServer(shop_template) as shop:
        capped = crawl(fast_params(shop.url, max_products=3), BlobStore(tmp_path / "h"), tmp_path / "s1")
        assert sorted(set(capped.items.column("product_id").to_pylist())) == ["p000001", "p000002", "p000003"]
        one = crawl(fast_params(shop.url, categories=["dresses"]), BlobStore(tmp_path / "h"), tmp_path / "s2")
        assert set(one.items.column("category").to_pylist()) == {"dresses"}
        with pytest.raises(ValueError, match="not on the shop"):
            crawl(fast_params(shop.url, categories=["hats"]), BlobStore(tmp_path / "h"), tmp_path / "s3")
    with pytest.raises(ValueError, match="http"):
        CrawlParams(base_url="ftp://x")


def _expected_under_faults(shop: Path, faults: FaultConfig, url: str) -> tuple[set, set, set]:
    """(good image keys, bad image (url, item) pairs, malformed page URLs), by hand from the
    catalogue and the fault model: review photos on a malformed page are never seen."""
    catalog = load_catalog(shop)
    truth = {r["file"]: r for r in truth_images(shop)}
    lost_pages, reachable = set(), []
    for p in catalog.products:
        for v in p.variants:
            reachable.append((v.image, f"{p.product_id}:{v.colour}"))
        ordered = sorted(p.reviews, key=lambda r: r.review_id, reverse=True)
        for i, review in enumerate(ordered):
            page_url = f"{url}/p/{p.product_id}/feedback?page={i // FEEDBACK_PAGE_SIZE + 1}"
            if faults.is_malformed_page(page_url):
                lost_pages.add(page_url)
                continue
            reachable += [(f, f"{p.product_id}:{review.colour}") for f in review.images]
    good, bad = set(), set()
    for file, item in reachable:
        img_url = f"{url}/img/{file}"
        if faults.is_corrupt_image(img_url) or faults.is_truncated_image(img_url):
            bad.add((img_url, item))
        else:
            good |= truth_keys([truth[file]])
    return good, bad, lost_pages


def test_faulty_shop_every_good_page_and_every_bad_image(shop_template: Path, tmp_path: Path) -> None:
    faults = FaultConfig(seed=4, latency_ms=1, p_429=0.1, retry_after_s=0, p_5xx=0.1,
                         p_corrupt_image=0.06, p_truncated_image=0.06, p_malformed_page=0.5)
    with ShopServer(shop_template, faults=faults) as shop:
        result = crawl(fast_params(shop.url), BlobStore(tmp_path / "h"), tmp_path / "s")
        served = shop.stats.snapshot()["faults"]
        good, bad, lost_pages = _expected_under_faults(shop_template, faults, shop.url)
    # The faults really happened (else this test proves nothing).
    assert served["429"] > 0 and served["5xx"] > 0 and served["malformed_page"] > 0
    assert len(bad) > 0 and len(lost_pages) > 0
    assert image_keys(result) == good
    rejects = result.rejects.to_pylist()
    # URLs on the shop's own host are stored relative to it.
    assert {(r["url"], r["item_id"]) for r in rejects if r["kind"] == "image"} == {(canonical_url(u), i) for u, i in bad}
    # Transient 429/5xx never become rejects: only the malformed pages do.
    assert {r["url"] for r in rejects if r["kind"] == "page"} == {canonical_url(u) for u in lost_pages}
    for r in rejects:
        if r["kind"] == "page":
            assert "truncated HTML" in r["reason"]
        elif faults.is_truncated_image(r["url"]):
            assert "truncated" in r["reason"]
        else:
            assert "not an image" in r["reason"]


def test_tables_do_not_depend_on_where_the_shop_is_served(shop_template: Path, tmp_path: Path) -> None:
    with ShopServer(shop_template) as one:
        first = crawl(fast_params(one.url), BlobStore(tmp_path / "h"), tmp_path / "s1")
    with ShopServer(shop_template) as two:
        assert two.url != one.url
        second = crawl(fast_params(two.url), BlobStore(tmp_path / "h"), tmp_path / "s2")
    assert first.items.equals(second.items) and first.images.equals(second.images)
    assert all(u.startswith("/img/") for u in first.images.column("source_url").to_pylist())
