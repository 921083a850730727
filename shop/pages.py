"""HTML of the demo shop's pages, as pure functions of the catalogue.

The markup follows ``docs/shop-protocol.md`` exactly (class names, data attributes, the
``__PRODUCT__`` JSON blob and one schema.org JSON-LD block per colour); everything else
(header, breadcrumbs, prices, stars) is there so the pages look like a marketplace and a
parser has real noise to ignore.

The hostile shop's extra markup is here too (trap product cards, the trap review, endless
pagination, the pages of a few traps); with every fault off the pages are byte-for-byte
what they always were.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator, Mapping, Sequence
from html import escape

from street2shop.shop.catalog import Catalog, Outfit, Product, Review, Snap, Variant

#: item id -> (product, variant): what an outfit's items link to and show
ItemLookup = Mapping[str, tuple[Product, Variant]]

LISTING_PAGE_SIZE = 24
LOOKS_PAGE_SIZE = 24
FEEDBACK_PAGE_SIZE = 10

ROBOTS_TXT = "User-agent: *\nDisallow: /cart\nDisallow: /admin\nCrawl-delay: 0\n"
#: The hostile shop's robots.txt (``robots_disallow_all``).
ROBOTS_TXT_DISALLOW_ALL = "User-agent: *\nDisallow: /\n"

#: Enough style for a person browsing the demo shop; crawlers never need it.
SITE_CSS = """body{font-family:sans-serif;margin:0;background:#fafafa;color:#222}
.site-header{display:flex;gap:1em;align-items:center;padding:.6em 1em;background:#e4572e;color:#fff}
.site-header a{color:#fff;text-decoration:none;font-weight:bold}main{padding:1em}
.product-grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(180px,1fr));gap:1em}
.product-card{background:#fff;padding:.5em;border-radius:6px;display:flex;flex-direction:column}
.product-card img,.variant img,.review img{max-width:180px;border-radius:4px}
.variants{display:flex;gap:1em;list-style:none;padding:0}.price{color:#e4572e;font-weight:bold}
.review{background:#fff;margin:.5em 0;padding:.5em;border-radius:6px}.review img{max-width:120px;margin:2px}
.pagination{margin:1em 0;display:flex;gap:1em}.site-footer{padding:1em;color:#888;font-size:.8em}
.outfit{background:#fff;margin:.5em 0;padding:.5em;border-radius:6px}.outfit-items{display:flex;gap:.5em;list-style:none;padding:0}
.outfit-item img{max-width:120px;border-radius:4px}
"""


def img_url(name: str) -> str:
    return f"/img/{name}"


def _json_script(obj: object) -> str:
    # "</" inside a <script> would end it early; JSON allows the escaped form.
    return json.dumps(obj, ensure_ascii=False).replace("</", "<\\/")


def _layout(title: str, body: str) -> str:
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>{escape(title)} | DemoMarket</title>"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        "<link rel=\"stylesheet\" href=\"/static/site.css\"></head>\n<body>\n"
        "<header class=\"site-header\"><a class=\"logo\" href=\"/\">DemoMarket</a>"
        "<form class=\"search\" action=\"/search\"><input name=\"q\" placeholder=\"Search\"></form>"
        "<a class=\"cart\" href=\"/cart\">Cart (0)</a></header>\n"
        f"<main>\n{body}\n</main>\n"
        "<footer class=\"site-footer\">&copy; DemoMarket, a generated shop for testing crawlers."
        "</footer>\n</body></html>\n"
    )


def n_pages(n_rows: int, page_size: int) -> int:
    """Pages needed for ``n_rows``; an empty list still has its page 1."""
    return max(1, math.ceil(n_rows / page_size))


def _pagination(base: str, page: int, total: int, endless: bool = False) -> str:
    prev = f"<a rel=\"prev\" href=\"{base}?page={page - 1}\">Previous</a>" if page > 1 else ""
    nxt = f"<a rel=\"next\" href=\"{base}?page={page + 1}\">Next</a>" if page < total or endless else ""
    return f"<nav class=\"pagination\">{prev}<span class=\"page\">Page {page} of {total}</span>{nxt}</nav>"


def _price(cents: int) -> str:
    return f"${cents // 100}.{cents % 100:02d}"


def home_page(catalog: Catalog) -> str:
    links = "\n".join(
        f"<li><a class=\"category\" href=\"/c/{c.slug}\">{escape(c.name)}</a></li>"
        for c in catalog.categories
    )
    # the lookbook link only where there is a lookbook: a shop without one is as it was
    looks = "\n<p><a class=\"lookbook\" href=\"/looks\">Lookbook: shop the look</a></p>" if catalog.snaps else ""
    return _layout("Home", f"<h1>Shop by category</h1>\n<ul class=\"categories\">\n{links}\n</ul>{looks}")


def looks_page(snaps: Sequence[Snap], page: int) -> str:
    """One page of the lookbook, posts in id order."""
    total = n_pages(len(snaps), LOOKS_PAGE_SIZE)
    rows = snaps[(page - 1) * LOOKS_PAGE_SIZE : page * LOOKS_PAGE_SIZE]
    cards = "\n".join(
        f"<div class=\"snap-card\" data-snap-id=\"{s.snap_id}\"><img class=\"thumb\" src=\"{img_url(s.image)}\" alt=\"\" loading=\"lazy\">"
        f"<a class=\"snap-link\" href=\"/l/{s.snap_id}\">{escape(s.style.title())} look</a></div>" for s in rows
    )
    body = (f"<nav class=\"breadcrumbs\"><a href=\"/\">Home</a> / Lookbook</nav>\n<h1>Lookbook</h1>\n"
            f"<div class=\"product-grid\">\n{cards}\n</div>\n" + _pagination("/looks", page, total))
    return _layout("Lookbook", body)


def snap_page(snap: Snap, items: ItemLookup) -> str:
    """A post: its photo, its style and tags, and the items the stylists linked (blob and markup)."""
    state = {"snap_id": snap.snap_id, "image": img_url(snap.image), "style": snap.style, "tags": snap.tags,
             "items": snap.items}
    rows = []
    for item_id in snap.items:
        product, variant = items[item_id]
        rows.append(f"<li class=\"snap-item\" data-item-id=\"{item_id}\"><a href=\"/p/{product.product_id}\">"
                    f"<img class=\"outfit-photo\" src=\"{img_url(variant.image)}\" alt=\"{escape(product.title)}\"></a>"
                    f"<span class=\"price\">{_price(product.price_cents)}</span></li>")
    tags = " ".join(f"<span class=\"tag\">{escape(t)}</span>" for t in snap.tags)
    body = (f"<script id=\"__SNAP__\" type=\"application/json\">{_json_script(state)}</script>\n"
            f"<nav class=\"breadcrumbs\"><a href=\"/\">Home</a> / <a href=\"/looks\">Lookbook</a></nav>\n"
            f"<article class=\"snap\" data-snap-id=\"{snap.snap_id}\">\n"
            f"<img class=\"snap-photo\" src=\"{img_url(snap.image)}\" alt=\"a look\">\n"
            f"<span class=\"snap-style\" data-style=\"{escape(snap.style)}\">{escape(snap.style.title())}</span>\n"
            f"<div class=\"tags\">{tags}</div>\n<h2>Shop the look</h2>\n<ul class=\"snap-items\">{''.join(rows)}</ul>\n</article>")
    return _layout(f"Look {snap.snap_id}", body)


def _card(product_id: str, href: str, title: str, thumb: str, price: str, colours: str) -> str:
    return (
        f"<div class=\"product-card\" data-product-id=\"{product_id}\">"
        f"<img class=\"thumb\" src=\"{escape(thumb)}\" alt=\"\" loading=\"lazy\">"
        f"<a class=\"product-link\" href=\"{escape(href)}\">{escape(title)}</a>"
        f"<span class=\"price\">{price}</span><span class=\"colours\">{colours}</span></div>"
    )


def listing_page(
    catalog: Catalog,
    slug: str,
    products: list[Product],
    page: int,
    *,
    extra_cards: Sequence[tuple[str, str, str]] = (),
    endless: bool = False,
) -> str:
    """One page of a category; ``products`` are that category's products sorted by id.

    ``extra_cards`` (product id, href, title) follow the real ones: the hostile shop's trap
    and duplicate cards. ``endless``: every page links a next one, and a page past the end
    repeats the last real page.
    """
    name = next(c.name for c in catalog.categories if c.slug == slug)
    total = n_pages(len(products), LISTING_PAGE_SIZE)
    shown = min(page, total) if endless else page
    rows = products[(shown - 1) * LISTING_PAGE_SIZE : shown * LISTING_PAGE_SIZE]
    cards = "\n".join(
        [_card(p.product_id, f"/p/{p.product_id}", p.title, img_url(p.variants[0].image),
               _price(p.price_cents), f"{len(p.variants)} colours") for p in rows]
        + [_card(pid, href, title, "/img/placeholder.jpg", "$0.00", "1 colours") for pid, href, title in extra_cards]
    )
    body = (
        f"<nav class=\"breadcrumbs\"><a href=\"/\">Home</a> / {escape(name)}</nav>\n"
        f"<h1>{escape(name)}</h1>\n<div class=\"product-grid\">\n{cards}\n</div>\n"
        + _pagination(f"/c/{slug}", page, total, endless)
    )
    return _layout(name, body)


def _product_state(catalog: Catalog, p: Product) -> dict:
    seller = catalog.seller(p.seller_id)
    return {
        "product_id": p.product_id,
        "title": p.title,
        "category": p.category,
        "price": _price(p.price_cents),
        "seller": {"id": seller.id, "name": seller.name},
        "variants": [
            {"colour": v.colour, "colour_name": v.colour_name, "image": img_url(v.image)}
            for v in p.variants
        ],
        "feedback_url": f"/p/{p.product_id}/feedback",
        "review_count": len(p.reviews),
    }


def outfit_url(outfit_id: str) -> str:
    return f"/o/{outfit_id}"


def _outfit_state(outfit: Outfit) -> dict:
    return {"outfit_id": outfit.outfit_id, "url": outfit_url(outfit.outfit_id),
            "items": [{"item_id": i.item_id, "type": i.type} for i in outfit.items]}


def _collection_ld(outfit: Outfit, items: ItemLookup) -> dict:
    """An outfit as schema.org: a ``ProductCollection`` (a kind of Product, so a valid
    ``isRelatedTo``) of its items in order."""
    def node(item_id: str) -> dict:
        product, _ = items[item_id]
        return {"@type": "Product", "sku": item_id, "url": f"/p/{product.product_id}", "category": product.category}

    return {
        "@type": "ProductCollection",
        "identifier": outfit.outfit_id,
        "name": "Complete the look",
        "url": outfit_url(outfit.outfit_id),
        "includesObject": [{"@type": "TypeAndQuantityNode", "amountOfThisGood": 1, "typeOfGood": node(i.item_id)}
                           for i in outfit.items],
    }


def _json_ld(catalog: Catalog, p: Product, colour: str, image: str) -> dict:
    seller = catalog.seller(p.seller_id)
    reviews = [
        {
            "@type": "Review",
            "identifier": r.review_id,
            "reviewRating": {"@type": "Rating", "ratingValue": r.rating},
            "reviewBody": r.text,
            "image": [img_url(f) for f in r.images],
        }
        for r in sorted(p.reviews, key=lambda r: r.review_id, reverse=True)
        if r.colour == colour and r.images
    ]
    return {
        "@context": "https://schema.org",
        "@type": "Product",
        "productID": p.product_id,
        "sku": f"{p.product_id}:{colour}",
        "name": p.title,
        "color": colour,
        "category": p.category,
        "image": [img_url(image)],
        "brand": {"@type": "Brand", "name": seller.name},
        "offers": {
            "@type": "Offer",
            "price": f"{p.price_cents / 100:.2f}",
            "priceCurrency": "USD",
            "seller": {"@type": "Organization", "identifier": seller.id, "name": seller.name},
        },
        "review": reviews,
    }


def _outfit_html(outfit: Outfit, items: ItemLookup, details: bool = False) -> str:
    rows = []
    for i in outfit.items:
        product, variant = items[i.item_id]
        extra = (f"<span class=\"title\">{escape(product.title)}</span><span class=\"price\">{_price(product.price_cents)}</span>"
                 if details else "")
        rows.append(f"<li class=\"outfit-item\" data-item-id=\"{i.item_id}\" data-type=\"{i.type}\">"
                    f"<a href=\"/p/{product.product_id}\"><img class=\"outfit-photo\" src=\"{img_url(variant.image)}\" "
                    f"alt=\"{escape(product.title)}\"></a>{extra}</li>")
    return (f"<div class=\"outfit\" data-outfit-id=\"{outfit.outfit_id}\">"
            f"<a class=\"outfit-link\" href=\"{outfit_url(outfit.outfit_id)}\">See the look</a>"
            f"<ul class=\"outfit-items\">{''.join(rows)}</ul></div>")


def item_page(catalog: Catalog, p: Product, outfits: Sequence[Outfit] = (), items: ItemLookup | None = None) -> str:
    """A product's page; ``outfits`` (those its colours are in) add a "complete the look"
    section, the blob's ``outfits`` and each colour's JSON-LD ``isRelatedTo`` (``items``
    says what each outfit item links to). With no outfits the page is as it always was."""
    if outfits and items is None:
        raise ValueError("item_page needs the item lookup to show outfits")
    seller = catalog.seller(p.seller_id)
    category = next((c.name for c in catalog.categories if c.slug == p.category), p.category)
    variants = "\n".join(
        f"<li class=\"variant\" data-colour=\"{v.colour}\">"
        f"<img class=\"seller-photo\" src=\"{img_url(v.image)}\" alt=\"{escape(v.colour_name)}\">"
        f"<span class=\"colour-name\">{escape(v.colour_name)}</span></li>"
        for v in p.variants
    )
    blocks = []
    for v in p.variants:
        block = _json_ld(catalog, p, v.colour, v.image)
        related = [_collection_ld(o, items) for o in outfits if any(i.item_id == f"{p.product_id}:{v.colour}" for i in o.items)]
        if related:
            block["isRelatedTo"] = related
        blocks.append(f"<script type=\"application/ld+json\">{_json_script(block)}</script>")
    ld = "\n".join(blocks)
    state = _product_state(catalog, p)
    looks = ""
    if outfits:
        state["outfits"] = [_outfit_state(o) for o in outfits]
        looks = ("\n<section class=\"complete-the-look\"><h2>Complete the look</h2>\n"
                 + "\n".join(_outfit_html(o, items) for o in outfits) + "\n</section>")
    body = (
        f"<script id=\"__PRODUCT__\" type=\"application/json\">{_json_script(state)}</script>\n"
        f"{ld}\n"
        f"<nav class=\"breadcrumbs\"><a href=\"/\">Home</a> / "
        f"<a href=\"/c/{p.category}\">{escape(category)}</a></nav>\n"
        f"<article class=\"product\">\n<h1 class=\"title\">{escape(p.title)}</h1>\n"
        f"<span class=\"seller\" data-seller-id=\"{seller.id}\">Sold by {escape(seller.name)}</span>\n"
        f"<span class=\"price\">{_price(p.price_cents)}</span>\n"
        f"<ul class=\"variants\">\n{variants}\n</ul>\n"
        f"<button class=\"add-to-cart\" formaction=\"/cart\">Add to cart</button>\n"
        f"<a class=\"feedback-link\" href=\"/p/{p.product_id}/feedback\">"
        f"{len(p.reviews)} reviews</a>\n</article>{looks}"
    )
    return _layout(p.title, body)


def outfit_page(outfit: Outfit, items: ItemLookup) -> str:
    """One look: its items in order, each linking its product page."""
    body = (f"<nav class=\"breadcrumbs\"><a href=\"/\">Home</a> / Looks</nav>\n"
            f"<h1>Complete the look</h1>\n{_outfit_html(outfit, items, details=True)}")
    return _layout(f"Look {outfit.outfit_id}", body)


def _review_html(r: Review, colour_names: dict[str, str], photo_urls: Sequence[str] | None = None) -> str:
    urls = [img_url(f) for f in r.images] if photo_urls is None else photo_urls
    photos = "".join(
        f"<img class=\"review-photo\" src=\"{escape(u)}\" alt=\"customer photo\">" for u in urls
    )
    stars = "&#9733;" * r.rating + "&#9734;" * (5 - r.rating)
    return (
        f"<div class=\"review\" data-review-id=\"{r.review_id}\" data-colour=\"{r.colour}\">"
        f"<span class=\"stars\" title=\"{r.rating} of 5\">{stars}</span>"
        f"<span class=\"bought\">Colour: {escape(colour_names.get(r.colour, r.colour))}</span>"
        f"<p class=\"review-text\">{escape(r.text)}</p>{photos}</div>"
    )


def feedback_page(
    p: Product,
    page: int,
    malformed: bool = False,
    *,
    trap_review: tuple[str, Sequence[str]] | None = None,
    endless: bool = False,
) -> str:
    """Reviews newest first. The pagination comes before the reviews, so even a malformed
    (cut-off) page still carries its ``rel="next"`` link and a crawler can go on.

    ``trap_review`` (review id, photo URLs) is put first, a review of the product's first
    colour; ``endless`` as for ``listing_page``.
    """
    ordered = sorted(p.reviews, key=lambda r: r.review_id, reverse=True)
    total = n_pages(len(ordered), FEEDBACK_PAGE_SIZE)
    shown = min(page, total) if endless else page
    rows = ordered[(shown - 1) * FEEDBACK_PAGE_SIZE : shown * FEEDBACK_PAGE_SIZE]
    names = {v.colour: v.colour_name for v in p.variants}
    html_rows = [_review_html(r, names) for r in rows]
    if trap_review is not None:
        rid, urls = trap_review
        trap = Review(review_id=rid, colour=p.variants[0].colour, rating=5, text="Look at my photos!")
        html_rows.insert(0, _review_html(trap, names, urls))
    reviews = "\n".join(html_rows)
    body = (
        f"<nav class=\"breadcrumbs\"><a href=\"/p/{p.product_id}\">{escape(p.title)}</a> / Reviews</nav>\n"
        f"<h1>Reviews of {escape(p.title)}</h1>\n"
        + _pagination(f"/p/{p.product_id}/feedback", page, total, endless)
        + f"\n<section class=\"reviews\">\n{reviews}\n</section>"
    )
    html = _layout(f"Reviews of {p.title}", body)
    return truncate_mid_review(html) if malformed else html


def truncate_mid_review(html: str) -> str:
    """Cut the page off inside the opening tag of its middle review, with no closing tags
    after it: the kind of page a dropped connection or a broken template gives. Reviews
    before the cut still parse, so a crawler must notice the page is broken (no ``</html>``),
    not merely that it is empty."""
    start = html.find("<section class=\"reviews\">")
    starts = [m.start() for m in re.finditer('<div class="review"', html[start:])]
    anchor = start + (starts[len(starts) // 2] if starts else 0)
    return html[: anchor + 12]


# -- the pages of a few traps --------------------------------------------------------------
def deeply_nested_page(depth: int) -> str:
    """A complete page (it ends with ``</html>``) whose body is ``depth`` nested ``<div>``."""
    return _layout("Deals", "<div>" * depth + "Today only!" + "</div>" * depth)


def soft_404_page() -> str:
    """The HTML "not found" page a broken CDN serves, with status 200, for a missing photo."""
    return _layout("Not found", "<h1>Image not available</h1><p>It may have been removed.</p>")


def filler_chunks(n_bytes: int, chunk: int = 64 * 1024) -> Iterator[bytes]:
    """An HTML page of exactly ``n_bytes``, made on the fly (never whole in memory)."""
    head = b"<!DOCTYPE html>\n<html><body>\n"
    tail = b"</body></html>\n"
    row = b"<p>Best deals of the season, every day, while stocks last.</p>\n"
    block = (row * (chunk // len(row) + 1))[:chunk]
    left = n_bytes - len(head) - len(tail)
    yield head
    while left > 0:
        piece = block[: min(chunk, left)]
        left -= len(piece)
        yield piece
    yield tail
