"""The crawl stage's core: walk a shop, download and validate its photos, return tables.

``crawl(params, blobs, state_dir, previous)`` is a pure-ish core function in the pipeline's
sense: it reads a shop over HTTP and writes image bytes to the content-addressed
``BlobStore``, and returns the ``items``, ``images``, ``outfits`` and ``crawl_rejects`` tables
(exactly the schemas in ``street2shop.storage.schemas``) for the task to publish. It knows no
artifact paths.

The walk: home -> categories -> listing pages (following ``rel=next``) -> product pages ->
feedback pages (newest first) -> images. Pages and images are fetched by a bounded thread
pool through one ``PoliteFetcher``; every fetch outcome is journaled (``journal.py``), so a
killed crawl restarted with the same ``state_dir`` replays what it already has and ends with
the same rows as an uninterrupted one. Outputs are sorted by their keys, so they do not
depend on thread timing, and an unchanged shop gives byte-identical tables.

Incremental re-crawl (``previous`` = the last published items and images): listing and
product pages are re-read (that is how new products and colours are found), images already
known by source URL are not downloaded again, feedback paging stops at the first known
review, and the result is the full snapshot: rows of the previous crawl still in the shop
plus the new ones.

A hostile shop is expected. What the fetcher refuses (off-site and private URLs, redirect
loops, oversized or slow answers: ``fetch.py``) and what the adapter cannot trust (parser
traps, truncated pages: ``adapters.py``) become reject rows; on top of that the walk
itself:

- reads a page only if its bytes look like HTML and stores an image only if its bytes
  are one (``validate.py``), whatever the ``Content-Type`` says;
- stops a pagination chain (a category's listing, a product's feedback) at a page that
  adds nothing new yet links a next one, at a link back to a page already read, and after
  ``pagination_budget`` pages;
- reads every URL a product is listed under; the lowest URL that reads wins, so the
  result does not depend on listing order, and every item another URL describes
  differently is reported;
- keeps an outfit ("complete the look", read from the product pages that show it) only when
  every page agrees on it and all its items were crawled; every other is a reject;
- walks the lookbook when the home page links one (listing pages, then each post and its
  photo): a post keeps the linked items the crawl has (any other is a reject), and a post
  whose photo or page cannot be read is a reject;
- treats a robots.txt that forbids the home page as the shop's answer, not a failure: the
  previous snapshot stands (unchanged tables, so nothing new is published) and the reject
  says why; with no previous snapshot ``RobotsDisallowed`` says it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field, field_validator
from tqdm.auto import tqdm

from street2shop.crawler.adapters import (
    ADAPTERS,
    ImageRef,
    ItemRecord,
    OutfitRecord,
    PageParseError,
    ProductLink,
    ProductPage,
    ShopAdapter,
    SnapRecord,
    get_adapter,
    item_id,
)
from street2shop.crawler.fetch import DEFAULT_USER_AGENT, DISALLOWED, FetchResult, PoliteFetcher
from street2shop.crawler.guard import UrlGuard
from street2shop.crawler.journal import CrawlJournal, ImageOutcome, PageOutcome
from street2shop.crawler.validate import ImageLimits, sniff, validate_image
from street2shop.storage.blobs import BlobStore
from street2shop.storage.schemas import CRAWL_REJECTS, IMAGES, ITEMS, OUTFITS, SNAP_ITEMS, SNAPS

__all__ = ["CrawlError", "CrawlParams", "CrawlResult", "RobotsDisallowed", "crawl"]

log = logging.getLogger(__name__)

#: ``after_fetch(kind, url)`` is called once per URL fetched from the network, after its
#: outcome is journaled; ``kind`` is "page" or "image". Tests use it to interrupt a crawl.
FetchHook = Callable[[str, str], None]


class CrawlError(RuntimeError):
    """The crawl cannot produce a meaningful snapshot (e.g. the home page is unreachable)."""


class RobotsDisallowed(CrawlError):
    """The shop's robots.txt forbids this crawler its home page (an unreachable robots.txt
    forbids everything, RFC 9309), and there is no previous snapshot to keep: nothing was
    crawled, nothing can be published. The message says which of the two it was."""


class CrawlParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    base_url: str
    adapter: str = "demo"
    concurrency: int = Field(4, ge=1, le=64)
    rate_limit_rps: float | None = Field(50.0, gt=0)  # None: no limit (loopback benchmarks)
    timeout_s: float = Field(10.0, gt=0)
    max_retries: int = Field(4, ge=0)
    backoff_factor: float = Field(0.2, ge=0)
    max_retry_after_s: float = Field(60.0, ge=0)
    #: The most one URL may take, end to end: redirect hops, retries and their waits (one
    #: Retry-After of max_retry_after_s fits in the default).
    deadline_s: float = Field(120.0, gt=0)
    max_products: int | None = Field(None, ge=1)
    categories: list[str] | None = None  # slugs; None: every category on the home page
    image_limits: ImageLimits = Field(default_factory=ImageLimits)
    #: Hosts besides the shop's that pages may send the crawler to (an image CDN); each
    #: must still resolve to public addresses only.
    allowed_hosts: list[str] = Field(default_factory=list)
    max_page_bytes: int = Field(5_000_000, gt=0)  # after decompression
    max_redirects: int = Field(5, ge=0)
    #: Pages one pagination chain (a category's listing, a product's feedback) may take.
    pagination_budget: int = Field(1000, ge=1)
    user_agent: str = DEFAULT_USER_AGENT
    progress: bool = True

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, v: str) -> str:
        parts = urlsplit(v)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"base_url must be an http(s) URL with a host, got {v!r}")
        return v.rstrip("/")

    @field_validator("adapter")
    @classmethod
    def _known_adapter(cls, v: str) -> str:
        if v not in ADAPTERS:
            raise ValueError(f"unknown shop adapter {v!r}; known: {sorted(ADAPTERS)}")
        return v

    def fingerprint(self) -> str:
        """What decides the crawl's pages and images (not how fast they are fetched)."""
        what = self.model_dump(
            mode="json",
            include={"base_url", "adapter", "max_products", "categories", "image_limits",
                     "allowed_hosts", "max_page_bytes", "max_redirects", "pagination_budget"},
        )
        return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()


@dataclass
class CrawlResult:
    items: pa.Table  # ITEMS
    images: pa.Table  # IMAGES
    rejects: pa.Table  # CRAWL_REJECTS (of this pass)
    stats: dict[str, float | int] = field(default_factory=dict)
    outfits: pa.Table = field(default_factory=lambda: OUTFITS.empty_table())  # OUTFITS
    snaps: pa.Table = field(default_factory=lambda: SNAPS.empty_table())  # SNAPS
    snap_items: pa.Table = field(default_factory=lambda: SNAP_ITEMS.empty_table())  # SNAP_ITEMS


@dataclass
class _ProductOutcome:
    link: ProductLink
    items: list[ItemRecord] = field(default_factory=list)
    refs: list[ImageRef] = field(default_factory=list)
    outfits: tuple[OutfitRecord, ...] = ()
    visited_reviews: set[str] = field(default_factory=set)
    #: every review of the product was seen this pass (none older left to carry over).
    reviews_complete: bool = False
    #: the page exists but could not be read: keep the previous crawl's rows of the product.
    failed: bool = False


@dataclass(frozen=True)
class _Previous:
    """The last published snapshot, indexed for the incremental re-crawl."""

    items_by_product: dict[str, list[dict]]
    images_by_item: dict[str, list[dict]]
    by_source_url: dict[str, dict]
    review_ids: frozenset[str]

    @classmethod
    def of(cls, previous: tuple[pa.Table, pa.Table] | None) -> _Previous:
        if previous is None:
            return cls({}, {}, {}, frozenset())
        items, images = previous
        for name, table, schema in (("items", items, ITEMS), ("images", images, IMAGES)):
            missing = set(schema.names) - set(table.column_names)
            if missing:
                raise ValueError(f"previous {name} table lacks columns {sorted(missing)}")
        items_by_product: dict[str, list[dict]] = defaultdict(list)
        for row in items.select(ITEMS.names).to_pylist():
            items_by_product[row["product_id"]].append(row)
        images_by_item: dict[str, list[dict]] = defaultdict(list)
        by_url: dict[str, dict] = {}
        for row in images.select(IMAGES.names).to_pylist():
            images_by_item[row["item_id"]].append(row)
            by_url[row["source_url"]] = row
        reviews = frozenset(r for r in images.column("review_id").to_pylist() if r)
        return cls(dict(items_by_product), dict(images_by_item), by_url, reviews)


def crawl(
    params: CrawlParams,
    blobs: BlobStore,
    state_dir: str | Path,
    previous: tuple[pa.Table, pa.Table] | None = None,
    *,
    after_fetch: FetchHook | None = None,
) -> CrawlResult:
    """Crawl the shop at ``params.base_url``; see the module docstring for the contract.

    ``state_dir`` holds the journal: reuse it to resume an interrupted crawl. ``previous``
    makes the crawl incremental. Raises ``CrawlError`` only when nothing sensible can be
    returned (home page unreachable or unparseable); every other failure is a reject row.
    """
    with CrawlJournal(state_dir) as journal:
        resumed = journal.begin(params.fingerprint())
        if resumed:
            log.info("resuming crawl of %s from %s (%s)", params.base_url, state_dir, journal.counts())
        run = _CrawlRun(params, blobs, journal, _Previous.of(previous), after_fetch)
        result = run.run()
        result.stats["resumed"] = int(resumed)
        journal.mark_complete()
    return result


class _CrawlRun:
    """One pass of the walk; holds the shared state its worker threads report into."""

    def __init__(
        self,
        params: CrawlParams,
        blobs: BlobStore,
        journal: CrawlJournal,
        previous: _Previous,
        after_fetch: FetchHook | None,
    ):
        self.params = params
        self.adapter: ShopAdapter = get_adapter(params.adapter)
        self.blobs = blobs
        self.journal = journal
        self.previous = previous
        self.after_fetch = after_fetch
        self.guard = UrlGuard(params.base_url, params.allowed_hosts)
        self.fetcher = PoliteFetcher(
            user_agent=params.user_agent,
            concurrency=params.concurrency,
            rate_limit_rps=params.rate_limit_rps,
            timeout_s=params.timeout_s,
            max_retries=params.max_retries,
            backoff_factor=params.backoff_factor,
            max_retry_after_s=params.max_retry_after_s,
            deadline_s=params.deadline_s,
            max_redirects=params.max_redirects,
            guard=self.guard,
        )
        self._lock = threading.Lock()
        self.rejects: list[dict] = []
        self.lookbook_url: str | None = None
        self.counts: dict[str, int] = defaultdict(int)
        # disable=None: a bar on a terminal, nothing when the output goes to a log file
        self.page_bar = tqdm(desc="pages", unit="page", disable=None if params.progress else True)
        self.image_bar = tqdm(desc="images", unit="img", total=0, disable=None if params.progress else True)

    # -- bookkeeping -----------------------------------------------------------------------
    def stored_url(self, url: str) -> str:
        """URLs on the shop's own host are stored relative to it (``/img/a.jpg``), so the
        artifacts do not change when the same shop is served from another host or port."""
        return self.guard.shop_relative(url)

    def reject(self, url: str, kind: str, reason: str, item: str | None = None) -> None:
        with self._lock:
            self.rejects.append({"url": self.stored_url(url), "kind": kind, "item_id": item, "reason": reason})

    def count(self, key: str, n: int = 1) -> None:
        with self._lock:
            self.counts[key] += n

    # -- fetching through the journal ------------------------------------------------------
    def fetch_page(self, url: str) -> tuple[FetchResult, str]:
        """The page's fetch result and its text, from the journal when already fetched.

        A 200 whose bytes are not HTML (an image, a PDF, binary junk) comes back with an
        error: it is never parsed, whatever its Content-Type said.
        """
        cached = self.journal.page(url)
        if cached is None:
            res = self.fetcher.get(url, max_bytes=self.params.max_page_bytes)
            cached = PageOutcome(res.status, res.content_type, res.content, res.error)
            self.journal.put_page(url, cached)
            self.count("pages_fetched")
            self._notify("page", url)
        else:
            self.count("pages_from_journal")
        self.page_bar.update()
        error = cached.error
        if error is None and (what := sniff(cached.body)) not in ("HTML", "text"):
            error = f"not an HTML page: the bytes are {what} (served as {cached.content_type or 'no type'!r})"
        res = FetchResult(url, cached.status, cached.body, cached.content_type, error)
        return res, (_decode(cached.body, cached.content_type) if error is None else "")

    def fetch_image(self, url: str) -> ImageOutcome:
        known = self.previous.by_source_url.get(self.stored_url(url))
        if known is not None and self.blobs.resolve(known["path"]).exists():
            self.count("images_known")
            return self._done_image(
                ImageOutcome(known["image_id"], known["path"], known["width"], known["height"])
            )
        cached = self.journal.image(url)
        if cached is not None and (not cached.ok or self.blobs.resolve(cached.path).exists()):
            self.count("images_from_journal")
            return self._done_image(cached)
        res = self.fetcher.get(url, max_bytes=self.params.image_limits.max_bytes)
        if not res.ok:
            outcome = ImageOutcome(nbytes=len(res.content), reason=res.error)
        else:
            # The bytes decide the format (and the blob's extension), not the URL or the
            # Content-Type: a PNG served as photo.jpg is kept as the PNG it is.
            check = validate_image(res.content, self.params.image_limits)
            if check.ok:
                # Blob first, journal second: a crash in between re-fetches, never dangles.
                sha, rel = self.blobs.put(res.content, check.extension)
                outcome = ImageOutcome(sha, rel, check.width, check.height, len(res.content))
            else:
                reason = check.reason
                if check.format is None and sniff(res.content) == "HTML":  # a soft 404, say
                    reason += f": the bytes are HTML (served as {res.content_type or 'no type'!r})"
                outcome = ImageOutcome(nbytes=len(res.content), reason=reason)
        self.journal.put_image(url, outcome)
        self.count("images_fetched")
        self._notify("image", url)
        return self._done_image(outcome)

    def _done_image(self, outcome: ImageOutcome) -> ImageOutcome:
        self.image_bar.update()
        return outcome

    def _notify(self, kind: str, url: str) -> None:
        if self.after_fetch is not None:
            self.after_fetch(kind, url)

    # -- the walk --------------------------------------------------------------------------
    def run(self) -> CrawlResult:
        start = time.perf_counter()
        pool = ThreadPoolExecutor(self.params.concurrency, thread_name_prefix="crawl")
        try:
            posts: list[tuple[SnapRecord, ImageOutcome]] = []
            try:
                categories = self._categories()
            except RobotsDisallowed as refused:
                outcomes, images = self._keep_previous(refused), {}
            else:
                groups = self._product_links(pool, categories)
                outcomes, images = self._products_and_images(pool, groups)
                posts = self._lookbook(pool)
        except BaseException:
            # Do not wait for the queued fetches of a crawl that is being abandoned.
            pool.shutdown(wait=True, cancel_futures=True)
            raise
        finally:
            self.page_bar.close()
            self.image_bar.close()
            self.fetcher.close()
        pool.shutdown()
        items, image_rows = self._rows(outcomes, images)
        outfit_rows = self._outfit_rows(outcomes, {r["item_id"] for r in items})
        snap_rows, snap_item_rows = self._snap_rows(posts, {r["item_id"] for r in items})
        seconds = time.perf_counter() - start
        stats = dict(self.counts)
        stats.update(
            items=len(items),
            images=len(image_rows),
            outfits=len({r["outfit_id"] for r in outfit_rows}),
            snaps=len(snap_rows),
            rejected=len(self.rejects),
            bytes=self.fetcher.bytes,
            requests=self.fetcher.requests,
            slowest_fetch_s=round(self.fetcher.slowest_s, 3),
            seconds=round(seconds, 3),
            pages_per_s=round(stats.get("pages_fetched", 0) / seconds, 2),
            images_per_s=round(stats.get("images_fetched", 0) / seconds, 2),
        )
        for key in ("pages_fetched", "pages_from_journal", "images_fetched", "images_known",
                    "images_from_journal", "images_carried_over", "duplicate_pages"):
            stats.setdefault(key, 0)
        return CrawlResult(
            items=_table(items, ITEMS, ("item_id",)),
            images=_table(image_rows, IMAGES, ("item_id", "role", "review_id", "source_url")),
            rejects=_table(self.rejects, CRAWL_REJECTS, ("kind", "url", "item_id", "reason")),
            stats=stats,
            outfits=_table(outfit_rows, OUTFITS, ("outfit_id",)),  # stable: positions stay in order
            snaps=pa.Table.from_pylist(sorted(snap_rows, key=lambda r: r["snap_id"]), schema=SNAPS),
            snap_items=_table(snap_item_rows, SNAP_ITEMS, ("snap_id",)),
        )

    def _categories(self) -> dict[str, str]:
        home = self.params.base_url + "/"
        res, text = self.fetch_page(home)
        if res.error == DISALLOWED:
            raise RobotsDisallowed(f"{self.fetcher.robots_verdict(home)}: the shop does not allow "
                                   "this crawler, so nothing was fetched")
        if not res.ok:
            raise CrawlError(f"home page {home} failed: {res.error}")
        try:
            categories = self.adapter.parse_home(text, home)
            self.lookbook_url = self.adapter.parse_lookbook_link(text, home)
        except PageParseError as e:
            raise CrawlError(f"home page {home} unreadable: {e.reason}") from e
        wanted = self.params.categories
        if wanted is None:
            return categories
        unknown = sorted(set(wanted) - set(categories))
        if unknown:
            raise ValueError(f"categories {unknown} are not on the shop; it has {sorted(categories)}")
        return {slug: categories[slug] for slug in wanted}

    def _keep_previous(self, refused: RobotsDisallowed) -> list[_ProductOutcome]:
        """robots.txt forbids the crawl: the last snapshot stands, unchanged, or nothing does."""
        if not self.previous.items_by_product:
            raise RobotsDisallowed(f"{refused}; there is no previous snapshot to keep") from None
        log.warning("%s; keeping the previous snapshot", refused)
        self.reject(self.params.base_url + "/", "page", f"{refused}; the previous snapshot stands")
        return [_ProductOutcome(ProductLink(pid, "", ""), failed=True)
                for pid in sorted(self.previous.items_by_product)]

    def _pages(self, url: str | None, chain: _Pagination, parse: Callable, keys: Callable, salvage: bool) -> Iterator:
        """Each page of the ``rel=next`` chain from ``url``, parsed by ``parse(text, url)`` (its
        entries' ``keys(page)`` tell the chain when it stops finding new ones). A page that
        fails is rejected and ends the chain; an unreadable one too, unless ``salvage``: then
        the next link read from it is followed."""
        while url is not None and chain.enter(url):
            res, text = self.fetch_page(url)
            if not res.ok:
                self.reject(url, "page", res.error or "fetch failed")
                break
            try:
                page = parse(text, url)
            except PageParseError as e:
                self.reject(url, "page", e.reason)
                if not salvage:
                    break
                url = e.next_url
                continue
            yield page
            url = chain.next_of(url, keys(page), page.next_url)

    def _walk_listing(self, slug: str, url: str | None) -> list[ProductLink]:
        chain = _Pagination(self, f"listing of {slug}", "products")
        pages = self._pages(url, chain, lambda text, at: self.adapter.parse_listing(text, at, slug),
                            lambda page: [(p.product_id, p.url) for p in page.products], salvage=True)
        return [link for page in pages for link in page.products]

    def _product_links(self, pool: ThreadPoolExecutor, categories: dict[str, str]) -> list[list[ProductLink]]:
        """Every URL each product is listed under, lowest first, products by id.

        The lowest URL is the one read first and kept if it reads (``_crawl_product``): a
        choice that depends only on the URLs, not on which listing came first. Where one URL
        is on several listings, the first category in home-page order names it.
        """
        per_category = list(pool.map(lambda kv: self._walk_listing(*kv), categories.items()))
        by_id: dict[str, dict[str, ProductLink]] = defaultdict(dict)
        for links in per_category:
            for link in links:
                by_id[link.product_id].setdefault(link.url, link)
        groups = [[urls[u] for u in sorted(urls)] for _, urls in sorted(by_id.items())]
        return groups[: self.params.max_products] if self.params.max_products else groups

    def _products_and_images(
        self, pool: ThreadPoolExecutor, groups: list[list[ProductLink]]
    ) -> tuple[list[_ProductOutcome], dict[str, ImageOutcome]]:
        product_futures = [pool.submit(self._crawl_product, links) for links in groups]
        image_futures: dict[str, Future[ImageOutcome]] = {}
        outcomes = []
        # Images are queued as soon as their product is read, so pages and images overlap.
        for fut in as_completed(product_futures):
            outcome = fut.result()
            outcomes.append(outcome)
            new = [r.url for r in outcome.refs if r.url not in image_futures]
            self.image_bar.total += len(set(new))
            self.image_bar.refresh()
            for url in new:
                if url not in image_futures:
                    image_futures[url] = pool.submit(self.fetch_image, url)
        images = {url: fut.result() for url, fut in image_futures.items()}
        return outcomes, images

    def _crawl_product(self, links: list[ProductLink]) -> _ProductOutcome:
        """Read the product under each of its URLs, lowest first; the first that reads wins."""
        out = _ProductOutcome(links[0])
        kept: tuple[ProductLink, ProductPage] | None = None
        failed = False
        for link in links:
            page, gone = self._read_product(link)
            if page is None:
                failed |= not gone  # 404: the product is gone, nothing to keep
            elif kept is None:
                kept = link, page
            else:
                self.count("duplicate_pages")
                self._report_duplicate(link, page, *kept)
        if kept is None:
            out.failed = failed
            return out
        out.link, page = kept
        out.items = page.items
        out.refs = list(page.images)
        out.outfits = page.outfits
        out.visited_reviews = {r.review_id for r in page.images if r.review_id}
        if page.feedback_url is None:
            out.reviews_complete = True  # the page itself lists every review
        else:
            out.reviews_complete = self._walk_feedback(page.feedback_url, out)
        return out

    def _read_product(self, link: ProductLink) -> tuple[ProductPage | None, bool]:
        """The product page, or None (rejected) and whether it is gone (404)."""
        res, text = self.fetch_page(link.url)
        if not res.ok:
            self.reject(link.url, "page", res.error or "fetch failed")
            return None, res.status == 404
        try:
            return self.adapter.parse_product(text, link.url, link), False
        except PageParseError as e:
            self.reject(link.url, "page", e.reason)
            return None, False

    def _report_duplicate(self, link: ProductLink, page: ProductPage,
                          kept_link: ProductLink, kept: ProductPage) -> None:
        """One reject per item that ``link``'s page describes differently from the kept one."""
        here, there = self.stored_url(link.url), self.stored_url(kept_link.url)
        mine, theirs = _item_facts(page), _item_facts(kept)
        for iid in sorted(mine.keys() | theirs.keys()):
            a, b = mine.get(iid), theirs.get(iid)
            if a == b:
                continue  # the same item, said the same way: a harmless second listing
            if a is None or b is None:
                where, absent = (there, here) if a is None else (here, there)
                why = f"on {where} but not on {absent}"
            else:
                why = "; ".join(f"{name} {a[name]!r} here, {b[name]!r} there" for name in a if a[name] != b[name])
            self.reject(link.url, "page", f"duplicate item id {iid}, described differently by "
                        f"{here} and {there}: {why}; kept {there} (the lowest URL that reads)", iid)

    def _walk_feedback(self, url: str | None, out: _ProductOutcome) -> bool:
        """Collect customer photos, newest first; True when every review was seen."""
        colours = {i.colour for i in out.items}
        pid = out.link.product_id
        chain = _Pagination(self, f"feedback of {pid}", "reviews")
        guessed = False
        complete = True
        while url is not None:
            if not chain.enter(url):
                return False
            res, text = self.fetch_page(url)
            if not res.ok:
                if guessed and res.status == 404:
                    break  # the page after a broken one does not exist: the end
                self.reject(url, "page", res.error or "fetch failed")
                return False
            try:
                page = self.adapter.parse_feedback(text, url)
            except PageParseError as e:
                # The page's reviews are lost, later pages are not: go on to the next one.
                self.reject(url, "page", e.reason)
                complete = False
                guessed = e.next_url is None
                url = e.next_url or self.adapter.guess_next_page(url)
                continue
            guessed = False
            for review in page.reviews:
                if review.review_id in self.previous.review_ids:
                    # Newest first: everything from here on was crawled before.
                    return False
                out.visited_reviews.add(review.review_id)
                if review.colour not in colours:
                    self.reject(url, "page", f"review {review.review_id} is of colour "
                                f"{review.colour!r}, not one of the product's {sorted(colours)}")
                    continue
                iid = item_id(pid, review.colour)
                out.refs.extend(ImageRef(u, iid, "street", review.review_id) for u in review.image_urls)
            url = chain.next_of(url, [r.review_id for r in page.reviews], page.next_url)
            if url is None and chain.stopped:
                return False
        return complete

    # -- rows ------------------------------------------------------------------------------
    def _rows(
        self, outcomes: list[_ProductOutcome], images: dict[str, ImageOutcome]
    ) -> tuple[list[dict], list[dict]]:
        items: dict[str, dict] = {}
        image_rows: dict[tuple, dict] = {}

        def add_image(row: dict) -> None:
            image_rows.setdefault((row["item_id"], row["role"], row["review_id"], row["source_url"]), row)

        def carry_over(row: dict) -> None:
            self.count("images_carried_over")
            add_image(row)

        for out in outcomes:
            if out.failed:
                # Unreadable this time, not gone: the last snapshot's rows still stand.
                for row in self.previous.items_by_product.get(out.link.product_id, []):
                    items[row["item_id"]] = row
                    for img in self.previous.images_by_item.get(row["item_id"], []):
                        carry_over(img)
                continue
            for rec in out.items:
                items[rec.item_id] = {
                    "item_id": rec.item_id, "product_id": rec.product_id,
                    "seller_id": rec.seller_id, "category": rec.category, "colour": rec.colour,
                    "title": rec.title, "url": self.stored_url(rec.url),
                }
            for ref in out.refs:
                got = images[ref.url]
                if not got.ok:
                    self.reject(ref.url, "image", got.reason or "rejected", ref.item_id)
                    continue
                add_image({
                    "image_id": got.image_id, "item_id": ref.item_id, "role": ref.role,
                    "path": got.path, "width": got.width, "height": got.height,
                    "source_url": self.stored_url(ref.url), "review_id": ref.review_id,
                })
            if not out.reviews_complete:
                # Reviews this pass did not reach (older than the first known one) keep
                # their rows from the previous snapshot.
                for rec in out.items:
                    for img in self.previous.images_by_item.get(rec.item_id, []):
                        if img["role"] == "street" and img["review_id"] not in out.visited_reviews:
                            carry_over(img)
        return list(items.values()), list(image_rows.values())


    def _lookbook(self, pool: ThreadPoolExecutor) -> list[tuple[SnapRecord, ImageOutcome]]:
        """Every post of the lookbook (when the home page links one) and its photo."""
        links: dict[str, str] = {}
        chain = _Pagination(self, "lookbook", "posts")
        for page in self._pages(self.lookbook_url, chain, self.adapter.parse_looks, lambda page: [s for s, _ in page.snaps],
                                salvage=False):
            for snap_id, link in page.snaps:
                links.setdefault(snap_id, link)

        def read(item: tuple[str, str]) -> tuple[SnapRecord, ImageOutcome] | None:
            snap_id, link = item
            res, text = self.fetch_page(link)
            if not res.ok:
                self.reject(link, "page", res.error or "fetch failed")
                return None
            try:
                record = self.adapter.parse_snap(text, link, snap_id)
            except PageParseError as e:
                self.reject(link, "page", e.reason)
                return None
            photo = self.fetch_image(record.image_url)
            if not photo.ok:
                self.reject(record.image_url, "image", photo.reason or "rejected")
                return None
            return record, photo

        return [r for r in pool.map(read, sorted(links.items())) if r is not None]

    def _snap_rows(self, posts: list[tuple[SnapRecord, ImageOutcome]], crawled: set[str]) -> tuple[list[dict], list[dict]]:
        snaps, links = [], []
        for record, photo in posts:
            kept = [i for i in record.items if i in crawled]
            if len(kept) < len(record.items):
                self.reject(record.image_url, "page", f"post {record.snap_id} links items the crawl does not have: "
                            f"{sorted(set(record.items) - crawled)}")
            if not kept:
                continue
            snaps.append({"snap_id": record.snap_id, "image_id": photo.image_id, "path": photo.path, "width": photo.width,
                          "height": photo.height, "source_url": self.stored_url(record.image_url), "style": record.style,
                          "tags": list(record.tags)})
            links += [{"snap_id": record.snap_id, "item_id": i, "position": k} for k, i in enumerate(kept)]
        return snaps, links

    def _outfit_rows(self, outcomes: list[_ProductOutcome], crawled: set[str]) -> list[dict]:
        """``outfits`` rows: every outfit the product pages showed, once. An outfit that two
        pages show differently, or that holds an item the crawl does not have, is a reject."""
        seen: dict[str, tuple[OutfitRecord, str]] = {}
        bad: set[str] = set()
        for out in sorted(outcomes, key=lambda o: o.link.url):
            for record in out.outfits:
                first = seen.setdefault(record.outfit_id, (record, out.link.url))
                if first[0] != record and record.outfit_id not in bad:
                    bad.add(record.outfit_id)
                    self.reject(out.link.url, "page", f"outfit {record.outfit_id} is described differently by "
                                f"{self.stored_url(out.link.url)} and {self.stored_url(first[1])}: {record.items} vs {first[0].items}")
        rows = []
        for oid, (record, url) in sorted(seen.items()):
            missing = [i for i, _ in record.items if i not in crawled]
            if oid in bad:
                continue
            if missing:
                self.reject(url, "page", f"outfit {oid} holds items the crawl does not have: {missing}")
                continue
            rows += [{"outfit_id": oid, "item_id": i, "type": t, "position": k} for k, (i, t) in enumerate(record.items)]
        return rows


class _Pagination:
    """One chain of ``rel=next`` pages, and when to stop following it.

    A shop can paginate forever (a next link on every page, pages past the end repeating the
    last one, a link back to page 1). The chain ends, with a reject saying why, at a next
    link back to a page already read, at a page that lists nothing the chain has not seen
    yet but still links a next page, and after ``pagination_budget`` pages.
    """

    def __init__(self, run: _CrawlRun, name: str, what: str):
        self.run, self.name, self.what = run, name, what
        self.read: set[str] = set()
        self.keys: set[object] = set()
        #: the chain was cut short (so what it collected may be incomplete).
        self.stopped = False

    def enter(self, url: str) -> bool:
        """May ``url`` be read as the chain's next page?"""
        budget = self.run.params.pagination_budget
        if url in self.read:  # a next link salvaged from a broken page may point back
            self.stop(url, f"pagination loop: {self.run.stored_url(url)} was read before; the "
                           f"{self.name} ends here")
            return False
        if len(self.read) >= budget:
            self.stop(url, f"pagination budget: {budget} pages of the {self.name} read; not following "
                           f"{self.run.stored_url(url)}")
            return False
        self.read.add(url)
        return True

    def next_of(self, url: str, keys: list, next_url: str | None) -> str | None:
        """The page to read after ``url`` (whose entries are ``keys``), or None: the end."""
        new = set(keys) - self.keys
        self.keys |= new
        if next_url is None:
            return None
        if next_url in self.read:
            self.stop(url, f"pagination loop: links back to {self.run.stored_url(next_url)}, read "
                           f"before; the {self.name} ends here")
            return None
        if not new:
            listed = f"only {self.what} seen on earlier pages" if keys else f"no {self.what}"
            self.stop(url, f"endless pagination: lists {listed}, yet links a next page "
                           f"({self.run.stored_url(next_url)}); the {self.name} ends here")
            return None
        return next_url

    def stop(self, url: str, reason: str) -> None:
        self.stopped = True
        self.run.reject(url, "page", reason)


def _item_facts(page: ProductPage) -> dict[str, dict[str, object]]:
    """What a product page says about each of its items, the URL it was read from aside."""
    photos: dict[str, list[str]] = defaultdict(list)
    for ref in page.images:
        if ref.role == "shop":
            photos[ref.item_id].append(ref.url)
    return {
        i.item_id: {"title": i.title, "seller": i.seller_id, "category": i.category,
                    "seller photos": sorted(photos[i.item_id])}
        for i in page.items
    }


def _decode(body: bytes, content_type: str) -> str:
    charset = "utf-8"
    for part in content_type.split(";")[1:]:
        key, _, value = part.strip().partition("=")
        if key.lower() == "charset" and value:
            charset = value.strip('"')
    try:
        return body.decode(charset, errors="replace")
    except LookupError:  # an unknown charset name
        return body.decode("utf-8", errors="replace")


def _table(rows: list[dict], schema: pa.Schema, keys: tuple[str, ...]) -> pa.Table:
    """Rows as a table of ``schema``, sorted by ``keys`` (None first) and de-duplicated."""
    unique = {tuple(r[k] for k in schema.names): r for r in rows}
    ordered = sorted(unique.values(), key=lambda r: tuple((r[k] is not None, r[k] or "") for k in keys))
    return pa.Table.from_pylist(ordered, schema=schema)
