"""Shop adapters: the only shop-specific part of the crawler.

An adapter turns the HTML of one page into typed records; it never fetches anything. The
crawler (``core.py``) owns the walk, home -> categories -> listing pages -> product pages ->
feedback pages, and asks the adapter what each page says. Adapters are chosen by name from
``ADAPTERS`` (``get_adapter("demo")``), so a new shop is a new class, not a new crawler.

Two adapters ship:

- ``demo``: the demo shop's own markup (``docs/shop-protocol.md``): the ``__PRODUCT__`` JSON
  blob cross-checked against the visible markup, and customer photos from the feedback pages.
- ``jsonld``: schema.org JSON-LD ``Product`` blocks only (one per colour, reviews with their
  photos inside), the structured data many real shops emit for search engines; it needs no
  feedback pages.

Both read the shop's outfits ("complete the look") where a product page shows them: the demo
adapter from the blob's ``outfits`` checked against the page's outfit markup, the JSON-LD
adapter from ``isRelatedTo``: a ``ProductCollection`` is one outfit (its items in order), and
plain related ``Product``s make one outfit of the item and them (``isSimilarTo`` names look-
alikes, substitutes rather than complements, so it makes no outfit).

A page that cannot be trusted raises ``PageParseError`` with a human-readable reason; the
crawler records it as a reject and carries on. That includes pages built to hurt a parser:
the tree is built under a nesting-depth and an element-count limit (``MAX_DEPTH``,
``MAX_ELEMENTS``), checked as each tag opens, so a page of 100 000 nested ``<div>`` is
refused at the 513th instead of costing a 100 000-deep tree (bs4 builds it without
recursing, but memory grows by about 1 KB an element and descendant selectors by the
depth).
"""

from __future__ import annotations

import json
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import ClassVar
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit, urlunsplit

from bs4 import BeautifulSoup, ParserRejectedMarkup
from bs4.element import Tag

__all__ = [
    "ADAPTERS",
    "MAX_DEPTH",
    "MAX_ELEMENTS",
    "DemoShopAdapter",
    "FeedbackPage",
    "ImageRef",
    "ItemRecord",
    "JsonLdProductAdapter",
    "ListingPage",
    "LooksPage",
    "OutfitRecord",
    "PageParseError",
    "ProductLink",
    "ProductPage",
    "Review",
    "ShopAdapter",
    "SnapRecord",
    "get_adapter",
    "register_adapter",
]


class PageParseError(ValueError):
    """A page whose content cannot be trusted.

    ``next_url`` is the pagination link salvaged from the broken page, if any, so the walk
    can go on past one bad page.
    """

    def __init__(self, reason: str, next_url: str | None = None):
        super().__init__(reason)
        self.reason = reason
        self.next_url = next_url


# -- records -------------------------------------------------------------------------------
@dataclass(frozen=True)
class ProductLink:
    product_id: str
    url: str
    category: str  # the listing it was found on: a hint for pages that do not say


@dataclass(frozen=True)
class ListingPage:
    products: list[ProductLink]
    next_url: str | None


@dataclass(frozen=True)
class ItemRecord:
    """One row of the ``items`` table: a product in one colour."""

    item_id: str
    product_id: str
    seller_id: str
    category: str
    colour: str
    title: str | None
    url: str | None


@dataclass(frozen=True)
class ImageRef:
    """An image to fetch and whom it belongs to; becomes an ``images`` row once stored."""

    url: str
    item_id: str
    role: str  # "shop" | "street"
    review_id: str | None = None


@dataclass(frozen=True)
class Review:
    review_id: str
    colour: str
    image_urls: tuple[str, ...]


@dataclass(frozen=True)
class OutfitRecord:
    """An outfit a product page shows: its id and its items, in order, with their types."""

    outfit_id: str
    items: tuple[tuple[str, str], ...]  # (item id, type)


@dataclass(frozen=True)
class SnapRecord:
    """A lookbook post: its photo, its style and tags, the items it links (page order)."""

    snap_id: str
    image_url: str
    style: str | None
    tags: tuple[str, ...]
    items: tuple[str, ...]


@dataclass(frozen=True)
class LooksPage:
    snaps: list[tuple[str, str]]  # (snap id, absolute URL)
    next_url: str | None


@dataclass(frozen=True)
class ProductPage:
    product_id: str
    items: list[ItemRecord]
    #: seller photos, plus customer photos where the page itself lists them (JSON-LD).
    images: list[ImageRef]
    #: first feedback page to walk for customer photos, or None when the page has them all.
    feedback_url: str | None = None
    #: outfits the page shows ("complete the look"), by id
    outfits: tuple[OutfitRecord, ...] = ()


@dataclass(frozen=True)
class FeedbackPage:
    reviews: list[Review]  # newest first, as the shop lists them
    next_url: str | None


def item_id(product_id: str, colour: str) -> str:
    return f"{product_id}:{colour}"


# -- parsing under limits ------------------------------------------------------------------
#: Deepest element nesting accepted: Blink's HTML parser stops nesting at 512 too.
MAX_DEPTH = 512
#: Most elements in one page; a big real product page has a few thousand.
MAX_ELEMENTS = 100_000


class _LimitExceeded(Exception):
    pass


class _LimitedSoup(BeautifulSoup):
    """BeautifulSoup that stops building as soon as the tree passes the limits."""

    _elements = 0

    def pushTag(self, tag: Tag) -> None:
        super().pushTag(tag)
        self._elements += 1
        if len(self.tagStack) > MAX_DEPTH + 1:  # + the soup itself, the root of the stack
            raise _LimitExceeded(f"HTML nested deeper than {MAX_DEPTH} elements (a parser trap?)")
        if self._elements > MAX_ELEMENTS + 1:
            raise _LimitExceeded(f"more than {MAX_ELEMENTS} HTML elements in one page")


# -- the interface -------------------------------------------------------------------------
_CLOSING_HTML = re.compile(r"</html\s*>\s*$", re.IGNORECASE)


class ShopAdapter(ABC):
    """Parses a shop's pages. Navigation (home, listings) is markup shared by both shipped
    adapters; a subclass overrides what differs."""

    name: ClassVar[str]

    # -- helpers ---------------------------------------------------------------------------
    @staticmethod
    def soup(html: str, url: str, *, next_selector: str | None = None) -> BeautifulSoup:
        """Parse ``html`` within ``MAX_DEPTH`` and ``MAX_ELEMENTS``; a document cut off before
        ``</html>`` is a ``PageParseError``.

        The lenient HTML parser would happily return the reviews before the cut, so the
        truncation check is explicit: a half page must not pass for a short page.
        """
        try:
            soup = _LimitedSoup(html, "html.parser")
        except _LimitExceeded as e:
            raise PageParseError(str(e)) from None
        except ParserRejectedMarkup as e:
            raise PageParseError(f"the HTML parser gave up on the page: {e}") from None
        if not _CLOSING_HTML.search(html):
            salvaged = None
            if next_selector and (a := soup.select_one(next_selector)) and a.get("href"):
                salvaged = urljoin(url, str(a["href"]))
            raise PageParseError("truncated HTML: no closing </html>", next_url=salvaged)
        return soup

    @staticmethod
    def _cards(soup: BeautifulSoup, url: str, kind: str, id_attr: str, link: str, what: str | None = None) -> list[tuple[str, str]]:
        """(id, absolute link) of each ``div.<kind>-card`` with its ``data-<id_attr>``; a card
        without its ``a.<kind>-link`` is a parse error naming it."""
        found = []
        for card in soup.select(f"div.{kind}-card[data-{id_attr}]"):
            a = card.select_one(f"a.{kind}-link[href]")
            if a is None:
                raise PageParseError(f"{what or kind} card {card[f'data-{id_attr}']} has no {link}")
            found.append((str(card[f"data-{id_attr}"]), urljoin(url, str(a["href"]))))
        return found

    @staticmethod
    def _next_link(soup: BeautifulSoup, url: str) -> str | None:
        a = soup.select_one('a[rel~="next"][href]')
        return urljoin(url, str(a["href"])) if a else None

    @staticmethod
    def _slug(url: str) -> str:
        return urlsplit(url).path.rstrip("/").rsplit("/", 1)[-1]

    # -- navigation ------------------------------------------------------------------------
    def parse_home(self, html: str, url: str) -> dict[str, str]:
        """Category slug -> absolute listing URL, in page order."""
        soup = self.soup(html, url)
        out: dict[str, str] = {}
        for a in soup.select("a.category[href]"):
            href = urljoin(url, str(a["href"]))
            out.setdefault(self._slug(href), href)
        if not out:
            raise PageParseError("home page lists no categories (no a.category links)")
        return out

    def parse_listing(self, html: str, url: str, category: str) -> ListingPage:
        soup = self.soup(html, url)
        products = [ProductLink(pid, link, category)
                    for pid, link in self._cards(soup, url, "product", "product-id", "product link")]
        return ListingPage(products, self._next_link(soup, url))

    # -- the lookbook (shared markup) ----------------------------------------------------
    def parse_lookbook_link(self, html: str, url: str) -> str | None:
        """The home page's link to the lookbook, if it has one."""
        a = self.soup(html, url).select_one("a.lookbook[href]")
        return urljoin(url, str(a["href"])) if a else None

    def parse_looks(self, html: str, url: str) -> LooksPage:
        soup = self.soup(html, url)
        return LooksPage(self._cards(soup, url, "snap", "snap-id", "link", what="lookbook"), self._next_link(soup, url))

    def parse_snap(self, html: str, url: str, snap_id: str) -> SnapRecord:
        """A post from its ``__SNAP__`` blob, checked against the markup (photo, style, items)."""
        soup = self.soup(html, url)
        script = soup.find("script", id="__SNAP__")
        img = soup.select_one("img.snap-photo[src]")
        style = soup.select_one("span.snap-style[data-style]")
        items = tuple(str(li["data-item-id"]) for li in soup.select("ul.snap-items li.snap-item[data-item-id]"))
        if img is None:
            raise PageParseError(f"post {snap_id} has no photo (img.snap-photo)")
        article = soup.select_one("article.snap[data-snap-id]")
        markup = SnapRecord(str(article["data-snap-id"]) if article else snap_id, urljoin(url, str(img["src"])), str(style["data-style"]) if style else None,
                            tuple(t.get_text(strip=True) for t in soup.select("div.tags span.tag")), items)
        if script is not None:
            try:
                state = json.loads(script.get_text())
                blob = SnapRecord(str(state["snap_id"]), urljoin(url, state["image"]), state.get("style"),
                                  tuple(state.get("tags") or ()), tuple(state["items"]))
            except (json.JSONDecodeError, KeyError, TypeError) as e:
                raise PageParseError(f"__SNAP__ blob of {snap_id} unreadable ({e!r})") from e
            if blob != markup:
                raise PageParseError(f"__SNAP__ blob and markup of {snap_id} disagree: blob={blob!r} markup={markup!r}")
        if markup.snap_id != snap_id or not items:
            raise PageParseError(f"post {snap_id} links no items" if not items else f"post page says {markup.snap_id!r}")
        if len(set(items)) != len(items):
            raise PageParseError(f"post {snap_id} links an item twice: {list(items)}")
        return markup

    @abstractmethod
    def parse_product(self, html: str, url: str, link: ProductLink) -> ProductPage:
        """Items (one per colour) and their seller photos; customer photos if on the page."""

    def parse_feedback(self, html: str, url: str) -> FeedbackPage:
        """One page of reviews. Only adapters whose ``parse_product`` sets ``feedback_url``
        are asked."""
        raise NotImplementedError(f"adapter {self.name!r} does not read feedback pages")

    def guess_next_page(self, url: str) -> str | None:
        """The page after ``url`` when the page itself is too broken to say (``?page=N+1``)."""
        parts = urlsplit(url)
        query = dict(parse_qsl(parts.query))
        try:
            page = int(query.get("page", "1"))
        except ValueError:
            return None
        query["page"] = str(page + 1)
        return urlunsplit(parts._replace(query=urlencode(query)))


# -- the demo shop's own markup ------------------------------------------------------------
class DemoShopAdapter(ShopAdapter):
    """Reads the ``__PRODUCT__`` blob, checks it against the markup, walks feedback pages.

    The blob is the shop's own state and the most reliable source; the markup is what a
    shopper sees. Where both exist they must agree (a disagreement means a parser or page
    bug, and silently picking one would hide it); where the blob is missing or not JSON the
    markup alone is used.
    """

    name = "demo"

    def parse_product(self, html: str, url: str, link: ProductLink) -> ProductPage:
        soup = self.soup(html, url)
        blob = self._blob(soup, url, link)
        markup = self._markup(soup, url, link)
        if blob is None and markup is None:
            raise PageParseError("product page has neither a __PRODUCT__ blob nor variant markup")
        if blob is not None and markup is not None:
            self._cross_check(blob, markup)
        page = blob if blob is not None else markup
        assert page is not None
        if page.product_id != link.product_id:
            raise PageParseError(
                f"product page says {page.product_id!r}, listing linked {link.product_id!r}"
            )
        return page

    def _blob(self, soup: BeautifulSoup, url: str, link: ProductLink) -> ProductPage | None:
        script = soup.find("script", id="__PRODUCT__")
        if script is None:
            return None
        try:
            state = json.loads(script.get_text())
            pid = state["product_id"]
            title = state.get("title")
            seller_id = state["seller"]["id"]
            category = state.get("category") or link.category
            variants = [(v["colour"], urljoin(url, v["image"])) for v in state["variants"]]
            feedback = state.get("feedback_url")
            outfits = [(str(o["outfit_id"]), [(str(i["item_id"]), str(i["type"])) for i in o["items"]])
                       for o in state.get("outfits") or []]
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            # A broken blob is not fatal by itself: the markup may still carry the page.
            if self._markup(soup, url, link) is None:
                raise PageParseError(f"__PRODUCT__ blob unreadable ({e!r}) and no markup") from e
            return None
        return _product_page(pid, title, seller_id, category, variants, url, feedback, outfits)

    def _markup(self, soup: BeautifulSoup, url: str, link: ProductLink) -> ProductPage | None:
        lis = soup.select("ul.variants li.variant[data-colour]")
        seller = soup.select_one("span.seller[data-seller-id]")
        if not lis or seller is None:
            return None
        variants = []
        for li in lis:
            img = li.select_one("img.seller-photo[src]")
            if img is None:
                raise PageParseError(f"variant {li['data-colour']!r} has no seller photo")
            variants.append((str(li["data-colour"]), urljoin(url, str(img["src"]))))
        h1 = soup.select_one("h1.title")
        fb = soup.select_one("a.feedback-link[href]")
        outfits = [
            (str(div["data-outfit-id"]),
             [(str(li.get("data-item-id", "")), str(li.get("data-type", ""))) for li in div.select("li.outfit-item")])
            for div in soup.select("section.complete-the-look div.outfit[data-outfit-id]")
        ]
        return _product_page(
            link.product_id,
            h1.get_text(strip=True) if h1 else None,
            str(seller["data-seller-id"]),
            link.category,  # the markup does not name the category; the listing does
            variants,
            url,
            str(fb["href"]) if fb else None,
            outfits,
        )

    @staticmethod
    def _cross_check(blob: ProductPage, markup: ProductPage) -> None:
        def key(p: ProductPage) -> tuple:
            return (
                sorted((i.item_id, i.seller_id, i.title) for i in p.items),
                sorted((r.item_id, r.url) for r in p.images),
                p.feedback_url,
                p.outfits,
            )

        if key(blob) != key(markup):
            raise PageParseError(
                "__PRODUCT__ blob and markup disagree: "
                f"blob={key(blob)!r} markup={key(markup)!r}"
            )

    def parse_feedback(self, html: str, url: str) -> FeedbackPage:
        soup = self.soup(html, url, next_selector='a[rel~="next"][href]')
        reviews = []
        for div in soup.select("div.review[data-review-id]"):
            colour = div.get("data-colour")
            if not colour:
                raise PageParseError(f"review {div['data-review-id']} names no colour")
            photos = tuple(urljoin(url, str(img["src"])) for img in div.select("img.review-photo[src]"))
            reviews.append(Review(str(div["data-review-id"]), str(colour), photos))
        return FeedbackPage(reviews, self._next_link(soup, url))


def _product_page(
    product_id: str,
    title: str | None,
    seller_id: str,
    category: str,
    variants: list[tuple[str, str]],
    url: str,
    feedback_url: str | None,
    outfits: list[tuple[str, list[tuple[str, str]]]] = (),
) -> ProductPage:
    if not variants:
        raise PageParseError(f"product {product_id} has no colours")
    colours = [c for c, _ in variants]
    if len(set(colours)) != len(colours):
        raise PageParseError(f"product {product_id} lists a colour twice: {colours}")
    items = [
        ItemRecord(item_id(product_id, c), product_id, seller_id, category, c, title, url)
        for c, _ in variants
    ]
    images = [ImageRef(img, item_id(product_id, c), "shop") for c, img in variants]
    return ProductPage(
        product_id, items, images, urljoin(url, feedback_url) if feedback_url else None,
        _outfit_records(product_id, outfits, {i.item_id for i in items}),
    )


def _outfit_records(
    product_id: str, outfits: list[tuple[str, list[tuple[str, str]]]], own: set[str]
) -> tuple[OutfitRecord, ...]:
    """Checked outfits of a product page, by id: each names its items once, with a type,
    and holds one of the page's own items (an outfit shown on a page it is not about is a
    page bug, not a look)."""
    records: dict[str, OutfitRecord] = {}
    for oid, members in outfits:
        ids = [i for i, _ in members]
        if not oid or not members or any(not i or not t for i, t in members):
            raise PageParseError(f"product {product_id}: outfit {oid!r} has an item without an id or a type")
        if len(set(ids)) != len(ids):
            raise PageParseError(f"product {product_id}: outfit {oid} lists an item twice: {ids}")
        if not own & set(ids):
            raise PageParseError(f"product {product_id}: outfit {oid} holds none of the page's items")
        record = OutfitRecord(oid, tuple(members))
        if records.setdefault(oid, record) != record:
            raise PageParseError(f"product {product_id}: outfit {oid} shown twice, differently")
    return tuple(records[k] for k in sorted(records))


# -- schema.org JSON-LD --------------------------------------------------------------------
class JsonLdProductAdapter(ShopAdapter):
    """Reads only ``<script type="application/ld+json">`` ``Product`` blocks.

    One block per colour (``color``, ``sku`` = item id); the seller photo is the first of
    ``image``; each ``review`` with an ``image`` list gives customer photos of that colour.
    """

    name = "jsonld"

    def parse_product(self, html: str, url: str, link: ProductLink) -> ProductPage:
        soup = self.soup(html, url)
        blocks = [b for b in self._json_ld(soup) if _is_type(b, "Product")]
        if not blocks:
            raise PageParseError("no schema.org Product in the page's JSON-LD")
        items: list[ItemRecord] = []
        images: list[ImageRef] = []
        outfits: list[tuple[str, list[tuple[str, str]]]] = []
        for b in blocks:
            try:
                pid = str(b["productID"])
                colour = str(b["color"])
                seller = b["offers"]["seller"]["identifier"]
                photos = _as_list(b["image"])
            except (KeyError, TypeError) as e:
                raise PageParseError(f"JSON-LD Product lacks a required field: {e!r}") from e
            iid = item_id(pid, colour)
            if b.get("sku") not in (None, iid):
                raise PageParseError(f"JSON-LD sku {b['sku']!r} does not match {iid!r}")
            if pid != link.product_id:
                raise PageParseError(f"JSON-LD productID {pid!r}, listing linked {link.product_id!r}")
            if not photos:
                raise PageParseError(f"JSON-LD Product {iid} has no image")
            items.append(
                ItemRecord(iid, pid, str(seller), str(b.get("category") or link.category),
                           colour, b.get("name"), url)
            )
            images.append(ImageRef(urljoin(url, _image_url(photos[0])), iid, "shop"))
            outfits.extend(_related_outfits(iid, str(b.get("category") or link.category), b.get("isRelatedTo")))
            for r in _as_list(b.get("review")):
                if not isinstance(r, dict) or "identifier" not in r:
                    raise PageParseError(f"JSON-LD review of {iid} without an identifier")
                images.extend(
                    ImageRef(urljoin(url, _image_url(p)), iid, "street", str(r["identifier"]))
                    for p in _as_list(r.get("image"))
                )
        if len({i.item_id for i in items}) != len(items):
            raise PageParseError("JSON-LD lists the same colour twice")
        records = _outfit_records(link.product_id, outfits, {i.item_id for i in items})
        return ProductPage(link.product_id, items, images, feedback_url=None, outfits=records)

    @staticmethod
    def _json_ld(soup: BeautifulSoup) -> Iterator[dict]:
        for script in soup.find_all("script", type="application/ld+json"):
            try:
                data = json.loads(script.get_text())
            except json.JSONDecodeError as e:
                raise PageParseError(f"JSON-LD block is not JSON: {e}") from e
            for node in _as_list(data):
                if isinstance(node, dict):
                    # "@graph" wraps several nodes in one block (common on real sites).
                    yield from (n for n in _as_list(node.get("@graph")) if isinstance(n, dict))
                    yield node


def _related_outfits(iid: str, category: str, related: object) -> list[tuple[str, list[tuple[str, str]]]]:
    """Outfits of one JSON-LD Product from its ``isRelatedTo``: each ``ProductCollection``
    (``includesObject`` -> ``typeOfGood``) is one, in order; the plain related ``Product``s
    together with the item itself are one more (id ``related:<item id>``). An item's type is
    its ``category``."""
    out: list[tuple[str, list[tuple[str, str]]]] = []
    plain: list[tuple[str, str]] = []
    for node in _as_list(related):
        if not isinstance(node, dict):
            continue
        try:
            if _is_type(node, "ProductCollection"):
                goods = [g["typeOfGood"] for g in _as_list(node.get("includesObject"))]
                out.append((str(node["identifier"]), [(str(g["sku"]), str(g.get("category") or "")) for g in goods]))
            elif _is_type(node, "Product") and node.get("sku"):
                plain.append((str(node["sku"]), str(node.get("category") or "")))
        except (KeyError, TypeError) as e:
            raise PageParseError(f"JSON-LD isRelatedTo of {iid} lacks a required field: {e!r}") from e
    if plain:
        out.append((f"related:{iid}", [(iid, category), *plain]))
    return out


def _as_list(value: object) -> list:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _is_type(node: dict, name: str) -> bool:
    return name in _as_list(node.get("@type"))


def _image_url(value: object) -> str:
    # schema.org allows an ImageObject where a URL is expected.
    if isinstance(value, dict) and "url" in value:
        return str(value["url"])
    if isinstance(value, str):
        return value
    raise PageParseError(f"JSON-LD image is neither a URL nor an ImageObject: {value!r}")


# -- registry ------------------------------------------------------------------------------
ADAPTERS: dict[str, Callable[[], ShopAdapter]] = {}


def register_adapter(cls: type[ShopAdapter]) -> type[ShopAdapter]:
    """Class decorator / call: make ``cls`` available to ``get_adapter(cls.name)``."""
    if cls.name in ADAPTERS:
        raise ValueError(f"adapter {cls.name!r} is already registered")
    ADAPTERS[cls.name] = cls
    return cls


def get_adapter(name: str) -> ShopAdapter:
    try:
        return ADAPTERS[name]()
    except KeyError:
        raise ValueError(f"unknown shop adapter {name!r}; known: {sorted(ADAPTERS)}") from None


register_adapter(DemoShopAdapter)
register_adapter(JsonLdProductAdapter)
