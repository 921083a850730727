"""Shop adapters on HTML written from docs/shop-protocol.md, and on the shop's own renderer."""

from __future__ import annotations

import json

import pytest

from street2shop.crawler.adapters import (
    ADAPTERS,
    DemoShopAdapter,
    ImageRef,
    JsonLdProductAdapter,
    PageParseError,
    ProductLink,
    get_adapter,
)
from street2shop.shop import pages
from street2shop.shop.catalog import Catalog, Category, Product, Review, Seller, Variant

BASE = "http://shop.test"
LINK = ProductLink("p000123", f"{BASE}/p/p000123", "dresses")


def _doc(body: str) -> str:
    return f"<!DOCTYPE html><html><head><title>t</title></head><body>{body}</body></html>\n"


BLOB = {
    "product_id": "p000123",
    "title": "Wrap Dress",
    "category": "dresses",
    "seller": {"id": "s0042", "name": "Acme"},
    "variants": [
        {"colour": "navy", "colour_name": "Navy", "image": "/img/abc.jpg"},
        {"colour": "dusty-pink", "colour_name": "Dusty Pink", "image": "/img/def.jpg"},
    ],
    "feedback_url": "/p/p000123/feedback",
    "review_count": 3,
}

MARKUP = """
<h1 class="title">Wrap Dress</h1>
<span class="seller" data-seller-id="s0042">Sold by Acme</span>
<ul class="variants">
  <li class="variant" data-colour="navy"><img class="seller-photo" src="/img/abc.jpg" alt="Navy"></li>
  <li class="variant" data-colour="dusty-pink"><img class="seller-photo" src="/img/def.jpg" alt="Dusty Pink"></li>
</ul>
<a class="feedback-link" href="/p/p000123/feedback">3 reviews</a>
"""


def _item_page(blob: dict | str | None = BLOB, markup: str = MARKUP) -> str:
    script = ""
    if blob is not None:
        text = blob if isinstance(blob, str) else json.dumps(blob)
        script = f'<script id="__PRODUCT__" type="application/json">{text}</script>'
    return _doc(script + markup)


def test_registry_by_name() -> None:
    assert set(ADAPTERS) >= {"demo", "jsonld"}
    assert isinstance(get_adapter("demo"), DemoShopAdapter)
    assert isinstance(get_adapter("jsonld"), JsonLdProductAdapter)
    with pytest.raises(ValueError, match="unknown shop adapter 'nope'.*demo"):
        get_adapter("nope")


def test_home_lists_categories_as_absolute_urls() -> None:
    html = _doc('<a class="logo" href="/">x</a><a class="category" href="/c/dresses">Dresses</a>'
                '<a class="category" href="/c/sweaters">Sweaters</a>')
    assert DemoShopAdapter().parse_home(html, BASE + "/") == {
        "dresses": f"{BASE}/c/dresses",
        "sweaters": f"{BASE}/c/sweaters",
    }
    with pytest.raises(PageParseError, match="no categories"):
        DemoShopAdapter().parse_home(_doc("<p>hi</p>"), BASE + "/")


def test_listing_products_and_next_page() -> None:
    cards = "".join(
        f'<div class="product-card" data-product-id="p00000{i}">'
        f'<a class="product-link" href="/p/p00000{i}">T{i}</a></div>' for i in (1, 2)
    )
    url = f"{BASE}/c/dresses?page=1"
    page = DemoShopAdapter().parse_listing(_doc(cards + '<a rel="next" href="/c/dresses?page=2">n</a>'), url, "dresses")
    assert page.products == [
        ProductLink("p000001", f"{BASE}/p/p000001", "dresses"),
        ProductLink("p000002", f"{BASE}/p/p000002", "dresses"),
    ]
    assert page.next_url == f"{BASE}/c/dresses?page=2"
    last = DemoShopAdapter().parse_listing(_doc(cards), url, "dresses")
    assert last.next_url is None


def test_demo_product_from_blob() -> None:
    page = DemoShopAdapter().parse_product(_item_page(), LINK.url, LINK)
    assert [i.item_id for i in page.items] == ["p000123:navy", "p000123:dusty-pink"]
    assert {(i.seller_id, i.category, i.title, i.url) for i in page.items} == {
        ("s0042", "dresses", "Wrap Dress", LINK.url)
    }
    assert page.images == [
        ImageRef(f"{BASE}/img/abc.jpg", "p000123:navy", "shop"),
        ImageRef(f"{BASE}/img/def.jpg", "p000123:dusty-pink", "shop"),
    ]
    assert page.feedback_url == f"{BASE}/p/p000123/feedback"


def test_demo_product_falls_back_to_markup() -> None:
    from_blob = DemoShopAdapter().parse_product(_item_page(), LINK.url, LINK)
    for blob in (None, "{not json"):
        page = DemoShopAdapter().parse_product(_item_page(blob=blob), LINK.url, LINK)
        assert page == from_blob  # the category comes from the listing it was linked from


def test_demo_product_blob_and_markup_must_agree() -> None:
    lying = MARKUP.replace('src="/img/def.jpg"', 'src="/img/zzz.jpg"')
    with pytest.raises(PageParseError, match="disagree"):
        DemoShopAdapter().parse_product(_item_page(markup=lying), LINK.url, LINK)
    with pytest.raises(PageParseError, match="neither"):
        DemoShopAdapter().parse_product(_item_page(blob=None, markup="<p>gone</p>"), LINK.url, LINK)
    other = ProductLink("p000999", f"{BASE}/p/p000999", "dresses")
    with pytest.raises(PageParseError, match="p000999"):
        DemoShopAdapter().parse_product(_item_page(), other.url, other)


def test_feedback_reviews_and_truncated_page() -> None:
    url = f"{BASE}/p/p000123/feedback"
    body = (
        '<nav><a rel="next" href="/p/p000123/feedback?page=2">Next</a></nav>'
        '<div class="review" data-review-id="r0000009" data-colour="navy"><p class="review-text">ok</p>'
        '<img class="review-photo" src="/img/r9a.jpg"><img class="review-photo" src="/img/r9b.jpg"></div>'
        '<div class="review" data-review-id="r0000007" data-colour="dusty-pink"><p class="review-text">no photo</p></div>'
    )
    page = DemoShopAdapter().parse_feedback(_doc(body), url)
    assert [(r.review_id, r.colour, r.image_urls) for r in page.reviews] == [
        ("r0000009", "navy", (f"{BASE}/img/r9a.jpg", f"{BASE}/img/r9b.jpg")),
        ("r0000007", "dusty-pink", ()),
    ]
    assert page.next_url == f"{BASE}/p/p000123/feedback?page=2"
    # Cut off mid-tag with no closing tags: a reject, but the next link is salvaged.
    cut = _doc(body)[: _doc(body).index("r0000007") - 10]
    with pytest.raises(PageParseError, match="truncated") as err:
        DemoShopAdapter().parse_feedback(cut, url)
    assert err.value.next_url == f"{BASE}/p/p000123/feedback?page=2"


def test_guess_next_page() -> None:
    a = DemoShopAdapter()
    assert a.guess_next_page(f"{BASE}/p/p1/feedback") == f"{BASE}/p/p1/feedback?page=2"
    assert a.guess_next_page(f"{BASE}/p/p1/feedback?page=7") == f"{BASE}/p/p1/feedback?page=8"
    assert a.guess_next_page(f"{BASE}/p/p1/feedback?page=x") is None


def _ld(colour: str, image: str, reviews: list[tuple[str, list[str]]], sku: str | None = None) -> str:
    block = {
        "@context": "https://schema.org", "@type": "Product", "productID": "p000123",
        "sku": sku or f"p000123:{colour}", "name": "Wrap Dress", "color": colour,
        "category": "dresses", "image": [image],
        "offers": {"@type": "Offer", "seller": {"@type": "Organization", "identifier": "s0042"}},
        "review": [{"@type": "Review", "identifier": rid, "image": imgs} for rid, imgs in reviews],
    }
    return f'<script type="application/ld+json">{json.dumps(block)}</script>'


def test_jsonld_product_with_reviews() -> None:
    html = _doc(
        _ld("navy", "/img/abc.jpg", [("r0000009", ["/img/r9a.jpg", "/img/r9b.jpg"])])
        + _ld("dusty-pink", "/img/def.jpg", [])
        + '<script type="application/ld+json">{"@type": "BreadcrumbList"}</script>'
    )
    page = JsonLdProductAdapter().parse_product(html, LINK.url, LINK)
    assert [i.item_id for i in page.items] == ["p000123:navy", "p000123:dusty-pink"]
    assert page.feedback_url is None
    assert page.images == [
        ImageRef(f"{BASE}/img/abc.jpg", "p000123:navy", "shop"),
        ImageRef(f"{BASE}/img/r9a.jpg", "p000123:navy", "street", "r0000009"),
        ImageRef(f"{BASE}/img/r9b.jpg", "p000123:navy", "street", "r0000009"),
        ImageRef(f"{BASE}/img/def.jpg", "p000123:dusty-pink", "shop"),
    ]


def test_jsonld_rejects_inconsistent_blocks() -> None:
    adapter = JsonLdProductAdapter()
    with pytest.raises(PageParseError, match="no schema.org Product"):
        adapter.parse_product(_doc("<p>plain</p>"), LINK.url, LINK)
    with pytest.raises(PageParseError, match="sku"):
        adapter.parse_product(_doc(_ld("navy", "/i.jpg", [], sku="p000123:red")), LINK.url, LINK)
    with pytest.raises(PageParseError, match="not JSON"):
        adapter.parse_product(_doc('<script type="application/ld+json">{oops</script>'), LINK.url, LINK)


def test_both_adapters_agree_on_the_shop_renderer() -> None:
    """The real page template (shop/pages.py): both adapters must see the same catalogue."""
    product = Product(
        product_id="p000123", title="Wrap <Dress> & Co", category="dresses", seller_id="s0042",
        price_cents=1999,
        variants=[Variant(colour="navy", colour_name="Navy", image="abc.jpg"),
                  Variant(colour="dusty-pink", colour_name="Dusty Pink", image="def.jpg")],
        reviews=[
            Review(review_id="r0000002", colour="navy", rating=5, text="</script> ha", images=["r2.jpg"]),
            Review(review_id="r0000005", colour="dusty-pink", rating=3, text="meh", images=["r5a.jpg", "r5b.jpg"]),
            Review(review_id="r0000004", colour="navy", rating=4, text="no photo"),
        ],
    )
    catalog = Catalog(seed=0, categories=[Category(slug="dresses", name="Dresses")],
                      sellers=[Seller(id="s0042", name="Acme")], products=[product])
    html = pages.item_page(catalog, product)
    demo = DemoShopAdapter().parse_product(html, LINK.url, LINK)
    ld = JsonLdProductAdapter().parse_product(html, LINK.url, LINK)
    assert demo.items == ld.items
    assert demo.items[0].title == "Wrap <Dress> & Co"
    fb = DemoShopAdapter().parse_feedback(pages.feedback_page(product, 1), demo.feedback_url)
    assert [r.review_id for r in fb.reviews] == ["r0000005", "r0000004", "r0000002"]  # newest first
    street = {
        ImageRef(u, f"p000123:{r.colour}", "street", r.review_id) for r in fb.reviews for u in r.image_urls
    }
    assert set(demo.images) | street == set(ld.images)
    assert len(street) == 3


def test_parser_traps_are_refused_as_the_tree_is_built() -> None:
    from street2shop.crawler.adapters import MAX_DEPTH, MAX_ELEMENTS

    adapter = DemoShopAdapter()
    def nested(n: int) -> str:
        return "<!DOCTYPE html><html>" + "<div>" * n + "</div>" * n + "</html>"

    adapter.soup(nested(MAX_DEPTH - 1), BASE)  # <html> and MAX_DEPTH - 1 <div>: as deep as accepted
    with pytest.raises(PageParseError, match="nested deeper"):
        adapter.soup(nested(MAX_DEPTH), BASE)
    deep = _doc("<div>" * 100_000 + "deals" + "</div>" * 100_000)
    with pytest.raises(PageParseError, match=f"^HTML nested deeper than {MAX_DEPTH} elements"):
        adapter.parse_feedback(deep, BASE + "/p/p000123/feedback")
    wide = _doc("<span>x</span>" * (MAX_ELEMENTS + 1))
    with pytest.raises(PageParseError, match=f"^more than {MAX_ELEMENTS} HTML elements"):
        adapter.parse_listing(wide, BASE + "/c/dresses", "dresses")
    # Unclosed tags nest too: the limit counts what the parser builds, not closing tags.
    with pytest.raises(PageParseError, match="nested deeper"):
        adapter.parse_home(_doc("<b><i>" * 300), BASE + "/")
