"""Crawls of the demo shop with each hostile behaviour switched on.

Each test asserts three things: the crawl finishes; every good page is still read (the
items and photos equal a clean crawl's, unless the behaviour bends real answers, where the
test says what changes); and every trap is a reject row whose reason says what it was. SSRF
traps point at a canary server that must never be asked anything.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from crawler_testing import fast_params, ipc_bytes, reject_keys, trap_links
from PIL import Image

from street2shop.crawler.core import CrawlResult, RobotsDisallowed, crawl
from street2shop.shop.catalog import load_catalog
from street2shop.shop.faults import HOSTILE, Canary, FaultConfig
from street2shop.shop.pages import FEEDBACK_PAGE_SIZE, LISTING_PAGE_SIZE, n_pages
from street2shop.shop.server import ShopServer
from street2shop.storage.blobs import BlobStore

#: The deadline of the slow-drip crawl: short, so that its traps cost little. The other
#: crawls keep a roomy one, so that a loaded machine cannot turn a slow good answer (or a
#: 20 MB trap being cut off) into a deadline reject.
DEADLINE_S = 1.5


@pytest.fixture(scope="module")
def clean(shop_template: Path, tmp_path_factory: pytest.TempPathFactory) -> CrawlResult:
    """The reference: the same shop crawled with no fault at all."""
    tmp = tmp_path_factory.mktemp("clean")
    with ShopServer(shop_template) as shop:
        result = crawl(fast_params(shop.url), BlobStore(tmp / "home"), tmp / "state")
    assert result.rejects.num_rows == 0
    return result


@pytest.fixture(scope="module")
def canary():
    with Canary() as c:
        yield c


def _hostile(shop: Path, tmp: Path, faults: FaultConfig, previous: tuple | None = None,
             **params: object) -> tuple[CrawlResult, dict]:
    with ShopServer(shop, faults) as server:
        result = crawl(fast_params(server.url, **{"deadline_s": 30.0, **params}), BlobStore(tmp / "home"),
                       tmp / "state", previous=previous)
        stats = server.stats.snapshot()
    return result, stats


def _assert_traps(result: CrawlResult, shop: Path, faults: FaultConfig, reasons: dict[str, str]) -> None:
    """Exactly one reject per trap link, each with the reason its trap name maps to."""
    traps = trap_links(shop, faults)
    assert traps, "the switch should add traps"
    assert reject_keys(result) == set(traps)
    for row in result.rejects.to_pylist():
        trap = traps[(row["url"], row["kind"], row["item_id"])]
        assert re.search(reasons[trap.name], row["reason"]), (trap.name, row["reason"])


def _same_as_clean(result: CrawlResult, clean: CrawlResult) -> None:
    assert ipc_bytes(result.items) == ipc_bytes(clean.items)
    assert ipc_bytes(result.images) == ipc_bytes(clean.images)


#: hostile switch -> the reject reason of each of its traps
REFUSED_LINKS = {
    "redirects": {
        "redirect-loop": r"^redirect loop: /trap/redirect-loop/\S+ -> \S+\?hop=1 -> /trap/redirect-loop/",
        "redirect-chain": r"^too many redirects: more than 5 hops",
        "redirect-offsite": r"^redirected to http://mirror\.demomarket\.example/\S+: off-site URL",
        # The canary is on the shop's own host (127.0.0.1), another port: the address check.
        "redirect-private": r"^redirected to http://127\.0\.0\.1:\d+/latest/meta-data/: SSRF guard: .* a loopback "
                            r"address that is not the shop$",
    },
    "ssrf": {
        "ssrf-link": r"^SSRF guard: 127\.0\.0\.1:\d+ resolves to 127\.0\.0\.1, a loopback address that is not the shop",
        "private-link": r"^off-site URL: 10\.0\.0\.1, a private address, is not the shop's host \(never followed\)$",
        "loopback-link": r"^SSRF guard: 127\.0\.0\.1:1 resolves to 127\.0\.0\.1, a loopback address",
    },
}


@pytest.mark.parametrize("hostile", sorted(REFUSED_LINKS))
def test_redirect_loops_and_links_off_site_or_to_private_addresses_are_never_followed(
        hostile: str, shop_template: Path, tmp_path: Path, clean: CrawlResult, canary: Canary) -> None:
    faults = FaultConfig(hostile={hostile}, ssrf_url=canary.url)
    result, stats = _hostile(shop_template, tmp_path, faults)
    _assert_traps(result, shop_template, faults, REFUSED_LINKS[hostile])
    assert canary.hits == {}
    if hostile == "redirects":  # every real photo answered with a same-origin redirect first, and was still fetched
        assert stats["faults"]["redirect"] >= clean.stats["images_fetched"]
    _same_as_clean(result, clean)


def test_ssrf_guard_resolves_allowed_hosts_too(shop_template: Path, tmp_path: Path, canary: Canary) -> None:
    """A host the crawl allows (say, a CDN) that resolves to loopback is still refused."""
    port = canary.url.split(":")[2].split("/")[0]
    faults = FaultConfig(hostile={"ssrf"}, ssrf_url=f"http://localhost:{port}/latest/meta-data/")
    result, _ = _hostile(shop_template, tmp_path, faults, allowed_hosts=["localhost"])
    reasons = {r["reason"] for r in result.rejects.to_pylist() if r["url"] == faults.ssrf_url}
    assert reasons and all(re.match(rf"SSRF guard: localhost:{port} resolves to (127\.0\.0\.1|::1), a loopback", r)
                           for r in reasons)
    assert canary.hits == {}


def _pagination_stops(shop: Path) -> set[str]:
    """Where an endless-pagination crawl must stop, by hand: the first page past the end of
    every chain (a repeat of the last page), or page 1 when the chain is empty."""
    catalog = load_catalog(shop)
    stops = set()
    for c in catalog.categories:
        n = sum(1 for p in catalog.products if p.category == c.slug)
        stops.add(f"/c/{c.slug}?page={n_pages(n, LISTING_PAGE_SIZE) + 1}" if n else f"/c/{c.slug}")
    for p in catalog.products:
        base = f"/p/{p.product_id}/feedback"
        stops.add(f"{base}?page={n_pages(len(p.reviews), FEEDBACK_PAGE_SIZE) + 1}" if p.reviews else base)
    return stops


def test_endless_pagination_stops_at_the_first_page_with_nothing_new(
        shop_template: Path, tmp_path: Path, clean: CrawlResult) -> None:
    faults = FaultConfig(hostile={"endless_pagination"})
    result, stats = _hostile(shop_template, tmp_path, faults)
    stops = _pagination_stops(shop_template)
    assert reject_keys(result) == {(u, "page", None) for u in stops}
    for row in result.rejects.to_pylist():
        assert re.match(r"endless pagination: lists (no \w+|only \w+ seen on earlier pages), yet links a next page "
                        r"\(/\S+\?page=\d+\); the (listing|feedback) of \S+ ends here$", row["reason"]), row["reason"]
    # One page past the end of each non-empty chain, no more.
    extra = sum(1 for u in stops if "page=" in u)
    assert result.stats["pages_fetched"] == clean.stats["pages_fetched"] + extra
    assert stats["faults"]["endless_page"] > 0
    _same_as_clean(result, clean)


def test_pagination_budget_is_the_backstop(shop_template: Path, tmp_path: Path) -> None:
    faults = FaultConfig(hostile={"endless_pagination"})
    result, _ = _hostile(shop_template, tmp_path, faults, pagination_budget=1)
    budget = [r for r in result.rejects.to_pylist() if r["reason"].startswith("pagination budget")]
    assert budget  # every chain with products stopped after its first page
    assert all(re.match(r"pagination budget: 1 pages of the (listing of [\w-]+|feedback of p\d{6}) read; not "
                        r"following /(c|p)/\S+\?page=2$", r["reason"]) for r in budget)
    assert all(r["url"].endswith("?page=2") for r in budget)


def test_huge_pages_are_cut_off_while_streaming(
        shop_template: Path, tmp_path: Path, clean: CrawlResult) -> None:
    faults = FaultConfig(hostile={"huge_pages"})
    t0 = time.perf_counter()
    result, _ = _hostile(shop_template, tmp_path, faults)
    _assert_traps(result, shop_template, faults, {
        "huge": r"^too large: Content-Length 52428800 > 5000000 bytes \(nothing read\)$",
        "huge-chunked": r"^too large: more than (5000000|20000000) bytes \(cut off while streaming\)$",
    })
    assert result.stats["bytes"] < clean.stats["bytes"] + 1_000_000  # no trap's bytes were kept
    assert time.perf_counter() - t0 < 20
    _same_as_clean(result, clean)


def test_deeply_nested_html_is_refused_before_the_tree_is_built(
        shop_template: Path, tmp_path: Path, clean: CrawlResult) -> None:
    faults = FaultConfig(hostile={"deep_nesting"})
    result, _ = _hostile(shop_template, tmp_path, faults)
    _assert_traps(result, shop_template, faults, {"deep": r"^HTML nested deeper than 512 elements"})
    _same_as_clean(result, clean)


def test_gzip_bombs_are_inflated_only_as_far_as_the_budget(
        shop_template: Path, tmp_path: Path, clean: CrawlResult) -> None:
    faults = FaultConfig(hostile={"gzip_bomb"})
    result, _ = _hostile(shop_template, tmp_path, faults)
    _assert_traps(result, shop_template, faults, {
        "gzip-bomb": r"^too large: more than (5000000|20000000) bytes once decompressed, from \d+ bytes of gzip",
    })
    _same_as_clean(result, clean)


def test_slow_drip_answers_end_at_the_total_deadline(
        shop_template: Path, tmp_path: Path, clean: CrawlResult) -> None:
    faults = FaultConfig(hostile={"slow_drip"}, drip_interval_s=0.02)  # a byte per 20 ms never times a read out
    t0 = time.perf_counter()
    result, _ = _hostile(shop_template, tmp_path, faults, deadline_s=DEADLINE_S)
    elapsed = time.perf_counter() - t0
    _assert_traps(result, shop_template, faults, {
        "slow-body": r"^deadline exceeded: no complete answer within 1.5 s$",
        "slow-headers": r"^deadline exceeded: no complete answer within 1.5 s$",
    })
    # Without the deadline: 22 minutes for a 64 KiB body, 300 s for the endless headers.
    assert DEADLINE_S <= result.stats["slowest_fetch_s"] < DEADLINE_S + 2
    assert elapsed < 30  # 15 traps of 1.5 s on 8 workers, plus the shop itself: about 4 s
    _same_as_clean(result, clean)


def test_wrong_content_types_the_bytes_decide(shop_template: Path, tmp_path: Path, clean: CrawlResult) -> None:
    """Item pages served as image/jpeg and photos served as text/html are still read (their
    bytes are what they should be); a JPEG at a page URL and an HTML page at a photo URL
    are not."""
    faults = FaultConfig(hostile={"wrong_content_type"})
    result, stats = _hostile(shop_template, tmp_path, faults)
    _assert_traps(result, shop_template, faults, {
        "image-as-page": r"^not an HTML page: the bytes are a JPEG image \(served as 'text/html; charset=utf-8'\)$",
        "html-as-image": r"^not an image \(unrecognised format\): the bytes are HTML \(served as 'image/jpeg'\)$",
    })
    assert stats["faults"]["wrong_content_type"] >= clean.stats["images_fetched"] + clean.items.num_rows // 4
    _same_as_clean(result, clean)


def test_images_that_lie_about_their_format(shop_template: Path, tmp_path: Path, clean: CrawlResult) -> None:
    """A PNG named .jpg and served as image/jpeg is kept as the PNG it is (same pixels);
    garbage after a JPEG marker, a pixel bomb and a GIF named .jpg are refused."""
    faults = FaultConfig(hostile={"lying_images"})
    result, _ = _hostile(shop_template, tmp_path, faults)
    _assert_traps(result, shop_template, faults, {
        "garbage-jpeg": r"^corrupt or truncated",
        "pixel-bomb": r"^decompression bomb: Image size \(400000000 pixels\) exceeds limit",
        "gif-as-jpeg": r"^format GIF not accepted",
    })
    key = lambda r: (r["item_id"], r["role"], r["review_id"], r["source_url"])  # noqa: E731
    want = {key(r): r for r in clean.images.to_pylist()}
    got = {key(r): r for r in result.images.to_pylist()}
    assert got.keys() == want.keys()
    disguised = {k for k in got if faults.is_png_disguised(k[3])}
    assert 0 < len(disguised) < len(got)
    blobs = BlobStore(tmp_path / "home")
    for k, row in got.items():
        if k not in disguised:
            assert row == want[k]
            continue
        assert row["path"].endswith(".png") and row["image_id"] != want[k]["image_id"]
        assert (row["width"], row["height"]) == (want[k]["width"], want[k]["height"])
        original = shop_template / "images" / k[3].rsplit("/", 1)[1]
        with Image.open(blobs.resolve(row["path"])) as png, Image.open(original) as jpeg:
            assert png.format == "PNG" and jpeg.format == "JPEG"
            assert png.convert("RGB").tobytes() == jpeg.convert("RGB").tobytes()
    assert ipc_bytes(result.items) == ipc_bytes(clean.items)


def test_duplicate_item_ids_the_lowest_url_wins_and_the_conflict_is_reported(
        shop_template: Path, tmp_path: Path, clean: CrawlResult) -> None:
    faults = FaultConfig(hostile={"duplicate_items"})
    catalog = load_catalog(shop_template)
    slugs = [c.slug for c in catalog.categories]
    aliased = [p for p in catalog.products if faults.has_alias(p.product_id)]
    # The second listing comes first in home-page order for some products: "first listed
    # wins" would keep the alias, the lowest URL keeps the product's own page.
    assert any(slugs.index(faults.alias_category(p.category, slugs)) < slugs.index(p.category) for p in aliased)
    result, stats = _hostile(shop_template, tmp_path, faults)
    want = {(faults.alias_url(p.product_id, faults.alias_category(p.category, slugs)), "page",
             f"{p.product_id}:{v.colour}") for p in aliased for v in p.variants}
    assert reject_keys(result) == want
    for row in result.rejects.to_pylist():
        pid = row["item_id"].split(":")[0]
        assert re.match(rf"duplicate item id {re.escape(row['item_id'])}, described differently by "
                        rf"{re.escape(row['url'])} and /p/{pid}: title .* \(imported listing\)' here, .* there; "
                        rf"seller 's\d+' here, 's\d+' there; kept /p/{pid} \(the lowest URL that reads\)$",
                        row["reason"]), row["reason"]
    assert result.stats["duplicate_pages"] == len(aliased) == stats["faults"]["duplicate_item"]
    _same_as_clean(result, clean)


def test_robots_txt_that_disallows_everything(shop_template: Path, tmp_path: Path, clean: CrawlResult) -> None:
    """Respected: robots.txt is the only request. With a previous snapshot it stands,
    unchanged (a content-versioned publish then publishes nothing new), and the one reject
    says why; with none, the error says why."""
    faults = FaultConfig(hostile={"robots_disallow_all"})
    result, stats = _hostile(shop_template, tmp_path / "a", faults, previous=(clean.items, clean.images))
    assert stats["by_kind"] == {"robots": 1} and stats["requests"] == 1
    _same_as_clean(result, clean)
    [row] = result.rejects.to_pylist()
    assert (row["url"], row["kind"], row["item_id"]) == ("/", "page", None)
    assert row["reason"] == ("robots.txt (/robots.txt) disallows / for street2shop-crawler: the shop does not "
                             "allow this crawler, so nothing was fetched; the previous snapshot stands")
    assert result.stats["requests"] == 1 and result.stats["images_fetched"] == 0
    assert result.stats["images_carried_over"] == clean.images.num_rows
    with pytest.raises(RobotsDisallowed, match=r"^robots\.txt \(/robots\.txt\) disallows / for street2shop-crawler: "
                       r"the shop does not allow this crawler, so nothing was fetched; there is no previous "
                       r"snapshot to keep$"):
        _hostile(shop_template, tmp_path / "b", faults)


def test_every_switch_at_once_and_resumed_after_a_crash(
        shop_template: Path, tmp_path: Path, clean: CrawlResult, canary: Canary) -> None:
    """All the traps together are still each one reject, and a crawl interrupted half-way and
    resumed on its journal ends with the same rows as an uninterrupted one, fetching nothing
    twice. (Not robots_disallow_all, which stops everything, nor slow_drip, which only costs
    time here.)"""
    faults = FaultConfig(hostile=set(HOSTILE) - {"robots_disallow_all", "slow_drip"}, ssrf_url=canary.url)
    whole, _ = _hostile(shop_template, tmp_path / "whole", faults)
    fetched: list[str] = []

    def crash_half_way(kind: str, url: str) -> None:
        fetched.append(kind)
        if len(fetched) == whole.stats["pages_fetched"] // 2:
            raise _Crash

    with ShopServer(shop_template, faults) as server:
        params = fast_params(server.url, deadline_s=30.0)
        blobs, state = BlobStore(tmp_path / "home"), tmp_path / "state"
        with pytest.raises(_Crash):
            crawl(params, blobs, state, after_fetch=crash_half_way)
        resumed = crawl(params, blobs, state)
    assert resumed.stats["resumed"] == 1 and resumed.stats["pages_from_journal"] > 0
    for kind in ("page", "image"):  # every URL fetched once over the two runs
        assert fetched.count(kind) + resumed.stats[f"{kind}s_fetched"] == whole.stats[f"{kind}s_fetched"], kind
    for name in ("items", "images", "rejects"):
        assert ipc_bytes(getattr(resumed, name)) == ipc_bytes(getattr(whole, name)), name
    assert ipc_bytes(whole.items) == ipc_bytes(clean.items)
    assert set(trap_links(shop_template, faults)) <= reject_keys(whole)
    assert canary.hits == {}


class _Crash(Exception):
    pass
