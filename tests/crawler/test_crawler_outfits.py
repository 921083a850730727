"""Outfits ("complete the look") read by both adapters and published by the crawl."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from crawler_testing import fast_params
from shop_testing import first_outfit_page

from street2shop.crawler.adapters import (
    DemoShopAdapter,
    JsonLdProductAdapter,
    PageParseError,
    ProductLink,
)
from street2shop.crawler.core import crawl
from street2shop.shop.generator import ShopParams, generate_shop
from street2shop.shop.outfits import TYPE_OF_CATEGORY
from street2shop.shop.server import ShopServer
from street2shop.storage.blobs import BlobStore
from street2shop.storage.store import ArtifactStore, content_version
from street2shop.tasks.crawl import run_crawl


@pytest.fixture(scope="module")
def real_shop(tmp_path_factory) -> Path:
    return generate_shop(tmp_path_factory.mktemp("rs") / "s",
                         ShopParams(seed=4, n_products=30, garments="real", image_size=48, reviews_per_item=(0, 1)),
                         workers=1)


def _truth(shop: Path) -> list[tuple]:
    with open(shop / "truth" / "outfits.csv", newline="") as f:
        return [(r["outfit_id"], r["item_id"], r["type"], int(r["position"])) for r in csv.DictReader(f)]


@pytest.mark.parametrize("adapter", ["demo", "jsonld"])
def test_crawl_reads_every_outfit(real_shop, tmp_path, adapter):
    with ShopServer(real_shop) as server:
        result = crawl(fast_params(server.url, adapter=adapter), BlobStore(tmp_path), tmp_path / "state")
    got = [(r["outfit_id"], r["item_id"], r["type"], r["position"]) for r in result.outfits.to_pylist()]
    truth = _truth(real_shop)
    assert truth and result.rejects.num_rows == 0
    if adapter == "demo":
        assert got == truth
    else:  # JSON-LD names an item's category, not its slot
        category = {r["item_id"]: r["category"] for r in result.items.to_pylist()}
        assert [(o, i, p) for o, i, _, p in got] == [(o, i, p) for o, i, _, p in truth]
        assert all(t == category[i] and TYPE_OF_CATEGORY[t] == tt for (_, i, t, _), (_, _, tt, _) in zip(got, truth))
    assert result.stats["outfits"] == len({t[0] for t in truth})


def test_an_outfit_with_an_uncrawled_item_is_a_reject(real_shop, tmp_path):
    with ShopServer(real_shop) as server:
        result = crawl(fast_params(server.url, max_products=6), BlobStore(tmp_path), tmp_path / "state")
    crawled = {r["item_id"] for r in result.items.to_pylist()}
    assert all(r["item_id"] in crawled for r in result.outfits.to_pylist())
    reasons = [r["reason"] for r in result.rejects.to_pylist()]
    assert any("holds items the crawl does not have" in r for r in reasons)


def test_crawl_version_moves_only_when_there_are_outfits(real_shop, shop_template, tmp_path):
    for shop, has in ((shop_template, False), (real_shop, True)):
        store = ArtifactStore(tmp_path / shop.name / "home")
        with ShopServer(shop) as server:
            published = run_crawl(store, fast_params(server.url))
        items, images = (store.read_table(published.refs[n]) for n in ("items", "images"))
        outfits = store.read_table(published.refs["outfits"])
        assert (outfits.num_rows > 0) == has
        plain = content_version({"items": items, "images": images}, extra={"code": "1"})
        assert (published.version == plain) == (not has)  # a shop without outfits keeps its old version


def _page(blob_outfits, markup_outfits: str) -> str:
    blob = {"product_id": "p000001", "title": "T", "category": "dresses", "seller": {"id": "s0001"},
            "variants": [{"colour": "navy", "image": "/img/a.jpg"}], "outfits": blob_outfits}
    return ("<!DOCTYPE html><html><body>"
            f"<script id=\"__PRODUCT__\" type=\"application/json\">{json.dumps(blob)}</script>"
            "<span class=\"seller\" data-seller-id=\"s0001\"></span><h1 class=\"title\">T</h1>"
            "<ul class=\"variants\"><li class=\"variant\" data-colour=\"navy\"><img class=\"seller-photo\" src=\"/img/a.jpg\"></li></ul>"
            f"{markup_outfits}</body></html>")


def _markup(outfit_id: str, items: list[tuple[str, str]]) -> str:
    lis = "".join(f"<li class=\"outfit-item\" data-item-id=\"{i}\" data-type=\"{t}\"></li>" for i, t in items)
    return (f"<section class=\"complete-the-look\"><div class=\"outfit\" data-outfit-id=\"{outfit_id}\">"
            f"<ul class=\"outfit-items\">{lis}</ul></div></section>")


LINK = ProductLink("p000001", "http://shop/p/p000001", "dresses")
MEMBERS = [("p000001:navy", "dress"), ("p000009:black", "shoes")]


def test_demo_adapter_outfits_from_blob_checked_against_markup():
    blob = [{"outfit_id": "o00001", "items": [{"item_id": i, "type": t} for i, t in MEMBERS]}]
    page = DemoShopAdapter().parse_product(_page(blob, _markup("o00001", MEMBERS)), LINK.url, LINK)
    assert [(o.outfit_id, o.items) for o in page.outfits] == [("o00001", tuple(MEMBERS))]
    with pytest.raises(PageParseError, match="disagree"):
        DemoShopAdapter().parse_product(_page(blob, _markup("o00001", MEMBERS[:1] + [("p000009:black", "hat")])), LINK.url, LINK)
    stranger = [{"outfit_id": "o00002", "items": [{"item_id": "p000005:red", "type": "top"}, {"item_id": "p000006:red", "type": "bottom"}]}]
    with pytest.raises(PageParseError, match="none of the page's items"):
        DemoShopAdapter().parse_product(_page(stranger, _markup("o00002", [("p000005:red", "top"), ("p000006:red", "bottom")])),
                                        LINK.url, LINK)
    twice = [{"outfit_id": "o00003", "items": [{"item_id": "p000001:navy", "type": "dress"}] * 2}]
    with pytest.raises(PageParseError, match="lists an item twice"):
        DemoShopAdapter().parse_product(_page(twice, _markup("o00003", [("p000001:navy", "dress")] * 2)), LINK.url, LINK)


def test_jsonld_related_products_make_one_outfit():
    block = {"@context": "https://schema.org", "@type": "Product", "productID": "p000001", "sku": "p000001:navy",
             "color": "navy", "category": "dresses", "image": ["/img/a.jpg"], "offers": {"seller": {"identifier": "s1"}},
             "isRelatedTo": [{"@type": "Product", "sku": "p000009:black", "category": "shoes"},
                             {"@type": "Product", "sku": "p000010:white", "category": "hats"}],
             "isSimilarTo": [{"@type": "Product", "sku": "p000011:navy"}]}
    html = f"<!DOCTYPE html><html><body><script type=\"application/ld+json\">{json.dumps(block)}</script></body></html>"
    page = JsonLdProductAdapter().parse_product(html, LINK.url, LINK)
    assert [(o.outfit_id, o.items) for o in page.outfits] == [
        ("related:p000001:navy", (("p000001:navy", "dresses"), ("p000009:black", "shoes"), ("p000010:white", "hats")))]


def test_the_shop_renderer_and_both_adapters_agree_on_a_products_outfits(real_shop):
    with ShopServer(real_shop) as server:
        _, pid, html = first_outfit_page(real_shop, server.url)
    link = ProductLink(pid, f"http://shop/p/{pid}", "x")
    demo = DemoShopAdapter().parse_product(html, link.url, link)
    ld = JsonLdProductAdapter().parse_product(html, link.url, link)
    assert [o.outfit_id for o in demo.outfits] == [o.outfit_id for o in ld.outfits]
    assert [[i for i, _ in o.items] for o in demo.outfits] == [[i for i, _ in o.items] for o in ld.outfits]
