"""The demo shop over real HTTP: pages as docs/shop-protocol.md says, and every fault."""

from __future__ import annotations

import io
import json
import math
import shutil
import socket
import time
import zlib

import pytest
import requests
from bs4 import BeautifulSoup
from PIL import Image

from street2shop.shop.catalog import load_catalog
from street2shop.shop.faults import FaultConfig
from street2shop.shop.generator import grow_shop
from street2shop.shop.server import ShopServer


@pytest.fixture(scope="module")
def shop(small_shop):
    with ShopServer(small_shop) as server:
        yield server


def _soup(url: str) -> BeautifulSoup:
    r = requests.get(url, timeout=5)
    assert r.status_code == 200, url
    return BeautifulSoup(r.text, "html.parser")


def test_robots_home_and_404s(shop):
    robots = requests.get(shop.url + "/robots.txt", timeout=5).text.splitlines()
    assert robots == ["User-agent: *", "Disallow: /cart", "Disallow: /admin", "Crawl-delay: 0"]
    slugs = [a["href"] for a in _soup(shop.url + "/").select("a.category")]
    assert slugs == ["/c/dresses", "/c/blouses-shirts", "/c/hoodies-sweatshirts", "/c/sweaters", "/c/jackets-coats"]
    for path in ["/c/shoes", "/p/p999999", "/p/p999999/feedback", "/img/nope.jpg", "/img/../catalog.json",
                 "/nowhere", "/c/dresses?page=0", "/p/p000001/feedback?page=99"]:
        assert requests.get(shop.url + path, timeout=5).status_code == 404, path
    assert requests.get(shop.url + "/c/dresses?page=x", timeout=5).status_code == 400
    css = requests.get(shop.url + "/static/site.css", timeout=5)
    assert css.ok and css.headers["Content-Type"].startswith("text/css")
    head = requests.head(shop.url + "/", timeout=5)
    assert head.status_code == 200 and head.content == b"" and int(head.headers["Content-Length"]) > 100


def test_listing_pagination_covers_each_category(small_shop, shop):
    catalog = load_catalog(small_shop)
    for c in catalog.categories:
        want = sorted(p.product_id for p in catalog.products if p.category == c.slug)
        got, url = [], f"{shop.url}/c/{c.slug}"
        while url:
            soup = _soup(url)
            cards = soup.select("div.product-card")
            assert len(cards) <= 24
            got += [card["data-product-id"] for card in cards]
            assert [a["href"] for a in soup.select("a.product-link")] == [f"/p/{c['data-product-id']}" for c in cards]
            nxt = soup.find("a", rel="next")
            url = shop.url + nxt["href"] if nxt else None
        assert got == want


def test_listing_pages_of_24(tmp_path, small_shop):
    # One category with 30 products: pages of 24 + 6, then 404.
    shop_dir = tmp_path / "s"
    shutil.copytree(small_shop, shop_dir)
    catalog = load_catalog(shop_dir)
    base = catalog.products[0]
    catalog.products = [base.model_copy(update={"product_id": f"p{k:06d}", "category": "sweaters"}) for k in range(1, 31)]
    (shop_dir / "catalog.json").write_text(catalog.model_dump_json())
    with ShopServer(shop_dir) as server:
        p1 = _soup(server.url + "/c/sweaters")
        p2 = _soup(server.url + "/c/sweaters?page=2")
        assert len(p1.select("div.product-card")) == 24 and p1.find("a", rel="next")["href"] == "/c/sweaters?page=2"
        assert len(p2.select("div.product-card")) == 6 and p2.find("a", rel="next") is None
        assert requests.get(server.url + "/c/sweaters?page=3", timeout=5).status_code == 404
        assert _soup(server.url + "/c/dresses").select("div.product-card") == []  # empty page 1 exists


def test_item_page_blob_markup_and_json_ld_agree(small_shop, shop):
    catalog = load_catalog(small_shop)
    for p in catalog.products:
        soup = _soup(f"{shop.url}/p/{p.product_id}")
        blob = json.loads(soup.find("script", id="__PRODUCT__").string)
        assert blob["product_id"] == p.product_id and blob["category"] == p.category
        assert blob["seller"]["id"] == p.seller_id and blob["review_count"] == len(p.reviews)
        assert blob["feedback_url"] == f"/p/{p.product_id}/feedback"
        assert soup.select_one("h1.title").get_text() == blob["title"]
        assert soup.select_one("span.seller")["data-seller-id"] == p.seller_id
        markup = [(li["data-colour"], li.select_one("img.seller-photo")["src"]) for li in soup.select("li.variant")]
        assert markup == [(v["colour"], v["image"]) for v in blob["variants"]]
        assert soup.select_one("a.feedback-link")["href"] == blob["feedback_url"]
        lds = [json.loads(s.string) for s in soup.find_all("script", type="application/ld+json")]
        assert [(ld["sku"], ld["image"][0]) for ld in lds] == [(f"{p.product_id}:{c}", i) for c, i in markup]
        for ld in lds:
            assert ld["@type"] == "Product" and ld["offers"]["seller"]["identifier"] == p.seller_id
            want = sorted((r.review_id for r in p.reviews if r.colour == ld["color"] and r.images), reverse=True)
            assert [r["identifier"] for r in ld["review"]] == want
        for _, src in markup:
            r = requests.get(shop.url + src, timeout=5)
            assert r.headers["Content-Type"] == "image/jpeg"
            Image.open(io.BytesIO(r.content)).verify()


def test_feedback_pages_newest_first(small_shop, shop):
    catalog = load_catalog(small_shop)
    p = max(catalog.products, key=lambda p: len(p.reviews))
    assert len(p.reviews) > 10, "fixture shop should have a product with two feedback pages"
    seen, url, pages = [], f"{shop.url}/p/{p.product_id}/feedback", 0
    while url:
        soup = _soup(url)
        pages += 1
        for div in soup.select("div.review"):
            seen.append(div["data-review-id"])
            review = next(r for r in p.reviews if r.review_id == div["data-review-id"])
            assert div["data-colour"] == review.colour
            assert div.select_one("p.review-text").get_text() == review.text
            assert [img["src"] for img in div.select("img.review-photo")] == [f"/img/{f}" for f in review.images]
        nxt = soup.find("a", rel="next")
        url = shop.url + nxt["href"] if nxt else None
    assert pages == math.ceil(len(p.reviews) / 10)
    assert seen == sorted((r.review_id for r in p.reviews), reverse=True)
    empty = next((q for q in catalog.products if not q.reviews), None)
    if empty is not None:
        assert _soup(f"{shop.url}/p/{empty.product_id}/feedback").select("div.review") == []


def test_transient_faults_succeed_on_retry(small_shop):
    faults = FaultConfig(seed=1, p_429=0.5, p_5xx=0.5, retry_after_s=3)
    paths = ["/", "/c/dresses", *(f"/p/{p.product_id}" for p in load_catalog(small_shop).products)]
    with ShopServer(small_shop, faults) as server:
        for path in paths:
            statuses = []
            for _ in range(3):
                r = requests.get(server.url + path, timeout=5)
                statuses.append(r.status_code)
                if r.status_code == 429:
                    assert r.headers["Retry-After"] == "3"
                if r.ok:
                    break
            assert statuses[-1] == 200 and 1 <= len(statuses) <= 3, (path, statuses)
            status, n = faults.transient_failure(path)
            assert statuses[:-1] == [status] * n
        assert requests.get(server.url + "/robots.txt", timeout=5).status_code == 200  # never throttled
        stats = requests.get(server.url + "/__stats", timeout=5).json()
    n_fail = sum(faults.transient_failure(p)[1] for p in paths)
    assert stats["by_status"]["200"] == len(paths) + 1
    assert stats["faults"]["429"] + stats["faults"]["5xx"] == n_fail
    assert stats["by_kind"]["item"] >= 12


def test_image_faults_are_permanent(small_shop):
    faults = FaultConfig(seed=2, p_corrupt_image=0.3, p_truncated_image=0.3)
    catalog = load_catalog(small_shop)
    files = [v.image for p in catalog.products for v in p.variants]
    kinds = set()
    with ShopServer(small_shop, faults) as server:
        for f in files:
            url = f"/img/{f}"
            original = (small_shop / "images" / f).read_bytes()
            bodies = {requests.get(server.url + url, timeout=5).content for _ in range(2)}
            assert len(bodies) == 1  # the same answer every time
            body = bodies.pop()
            if faults.is_corrupt_image(server.url + url):
                kinds.add("corrupt")
                assert body != original and len(body) == len(original) and not body.startswith(b"\xff\xd8")
            elif faults.is_truncated_image(url):
                kinds.add("truncated")
                assert body == original[: len(original) // 2]
                with pytest.raises(OSError):
                    Image.open(io.BytesIO(body)).load()
            else:
                kinds.add("ok")
                assert body == original
    assert kinds == {"corrupt", "truncated", "ok"}


def test_malformed_feedback_pages(small_shop):
    faults = FaultConfig(seed=0, p_malformed_page=1.0)
    p = max(load_catalog(small_shop).products, key=lambda p: len(p.reviews))
    with ShopServer(small_shop, faults) as server:
        first = requests.get(f"{server.url}/p/{p.product_id}/feedback", timeout=5).text
        second = requests.get(f"{server.url}/p/{p.product_id}/feedback?page=2", timeout=5).text
        item = requests.get(f"{server.url}/p/{p.product_id}", timeout=5).text
    assert first.rstrip().endswith("</html>") and item.rstrip().endswith("</html>")
    assert not faults.is_malformed_page(f"/p/{p.product_id}/feedback?page=1")
    assert faults.is_malformed_page(f"/p/{p.product_id}/feedback?page=2")
    assert "</html>" not in second and "</section>" not in second
    assert second.endswith('<div class="')  # cut inside a review's opening tag
    assert 'rel="next"' in second or len(p.reviews) <= 20  # pagination comes first, survives the cut


def test_catalog_reload_after_growth(small_shop, tmp_path):
    shop_dir = tmp_path / "s"
    shutil.copytree(small_shop, shop_dir)
    with ShopServer(shop_dir) as server:
        before = load_catalog(shop_dir)
        grow_shop(shop_dir, new_products=2, new_reviews=3, seed=9, workers=1)
        new = sorted({p.product_id for p in load_catalog(shop_dir).products} - {p.product_id for p in before.products})
        assert len(new) == 2
        for pid in new:  # picked up without restarting, via the catalog.json change check
            assert requests.get(f"{server.url}/p/{pid}", timeout=5).status_code == 200
        server.reload()
        assert requests.get(f"{server.url}/p/{new[0]}", timeout=5).status_code == 200


# -- the hostile shop ----------------------------------------------------------------------
def _get(server, path: str, **kw):
    return requests.get(server.url + path, timeout=5, allow_redirects=False, **kw)


def _cards(server, path: str) -> list[tuple[str, str]]:
    soup = BeautifulSoup(_get(server, path).text, "html.parser")
    return [(c["data-product-id"], c.select_one("a.product-link")["href"]) for c in soup.select("div.product-card")]


def _first_with_reviews(small_shop):
    return max(load_catalog(small_shop).products, key=lambda p: len(p.reviews))


def test_hostile_behaviours_are_off_by_default(small_shop, shop):
    assert _get(shop, "/trap/redirect-loop/dresses").status_code == 404
    assert _get(shop, "/trap/huge/dresses").status_code == 404
    real = {p.product_id for p in load_catalog(small_shop).products}
    assert {pid for pid, _ in _cards(shop, "/c/dresses")} <= real
    p = _first_with_reviews(small_shop)
    soup = _soup(f"{shop.url}/p/{p.product_id}/feedback")
    assert not soup.select(f'div.review[data-review-id="r9{p.product_id[1:]}"]')
    # A switch that is off keeps its traps closed even on a hostile shop.
    with ShopServer(small_shop, FaultConfig(hostile={"ssrf"})) as server:
        assert _get(server, "/trap/redirect-loop/dresses").status_code == 404


def test_redirect_traps_and_moved_photos(small_shop):
    faults = FaultConfig(hostile={"redirects"}, ssrf_url="http://169.254.169.254/latest/")
    photo = load_catalog(small_shop).products[0].variants[0].image
    with ShopServer(small_shop, faults) as server:
        assert _get(server, "/trap/redirect-loop/dresses").headers["Location"] == "/trap/redirect-loop/dresses?hop=1"
        assert _get(server, "/trap/redirect-loop/dresses?hop=1").headers["Location"] == "/trap/redirect-loop/dresses"
        chain = _get(server, "/trap/redirect-chain/dresses?hop=4")
        assert chain.headers["Location"] == "/trap/redirect-chain/dresses?hop=5"
        assert _get(server, "/trap/redirect-offsite/dresses").headers["Location"] == (
            "http://mirror.demomarket.example/p/dresses")
        assert _get(server, "/trap/redirect-private/p000001.jpg").headers["Location"] == faults.ssrf_url
        moved = _get(server, f"/img/{photo}")
        assert moved.status_code == 302 and moved.headers["Location"] == f"/img/{photo}?cdn=1"
        there = _get(server, f"/img/{photo}?cdn=1")
        assert there.status_code == 200 and there.content == (small_shop / "images" / photo).read_bytes()
        assert _cards(server, "/c/dresses")[-4:] == [(f"p9000{k:02d}", t.url) for k, t in
                                                    enumerate(faults.page_traps("dresses"))]
        stats = server.stats.snapshot()["faults"]
    assert stats["trap:redirect-loop"] == 2 and stats["redirect"] == 1


def test_ssrf_links_and_the_trap_review(small_shop):
    faults = FaultConfig(hostile={"ssrf"}, ssrf_url="http://127.0.0.1:9/meta")
    p = _first_with_reviews(small_shop)
    with ShopServer(small_shop, faults) as server:
        assert _cards(server, "/c/sweaters")[-2:] == [
            ("p903000", "http://127.0.0.1:9/meta"), ("p903001", "http://10.0.0.1/admin/sweaters")]
        soup = _soup(f"{server.url}/p/{p.product_id}/feedback")
        page2 = _soup(f"{server.url}/p/{p.product_id}/feedback?page=2")
    first = soup.select("div.review")[0]
    assert first["data-review-id"] == f"r9{p.product_id[1:]}" and first["data-colour"] == p.variants[0].colour
    assert [i["src"] for i in first.select("img.review-photo")] == [
        "http://127.0.0.1:9/meta", f"http://127.0.0.1:1/{p.product_id}.jpg"]
    assert len(soup.select("div.review")) == 11  # ten real reviews and the trap
    assert not page2.select(f'div.review[data-review-id="r9{p.product_id[1:]}"]')


def test_endless_pagination_never_ends(small_shop):
    catalog = load_catalog(small_shop)
    p = _first_with_reviews(small_shop)
    last = math.ceil(len(p.reviews) / 10)
    with ShopServer(small_shop, FaultConfig(hostile={"endless_pagination"})) as server:
        for page in (last, last + 1, last + 50):
            soup = _soup(f"{server.url}/p/{p.product_id}/feedback?page={page}")
            assert soup.find("a", rel="next")["href"] == f"/p/{p.product_id}/feedback?page={page + 1}"
        past = {d["data-review-id"] for d in soup.select("div.review")}
        end = _soup(f"{server.url}/p/{p.product_id}/feedback?page={last}")
        at_end = {d["data-review-id"] for d in end.select("div.review")}
        assert past == at_end  # past the end: the last page again
        slug = catalog.products[0].category
        assert _cards(server, f"/c/{slug}?page=9") == _cards(server, f"/c/{slug}")
        assert _soup(f"{server.url}/c/{slug}").find("a", rel="next")["href"] == f"/c/{slug}?page=2"


def test_huge_pages_with_and_without_a_length(small_shop):
    with ShopServer(small_shop, FaultConfig(hostile={"huge_pages"})) as server:
        with _get(server, "/trap/huge/dresses", stream=True) as r:
            assert r.headers["Content-Length"] == str(50 * 2**20)
            head = r.raw.read(1_000_000)
        assert head.startswith(b"<!DOCTYPE html>") and len(head) == 1_000_000
        with _get(server, "/trap/huge-chunked/dresses", stream=True) as r:
            assert r.headers["Transfer-Encoding"] == "chunked" and "Content-Length" not in r.headers
            assert len(r.raw.read(1_000_000)) == 1_000_000
        with _get(server, "/trap/huge-chunked/p000001.jpg", stream=True) as r:
            assert r.headers["Content-Type"] == "image/jpeg" and r.raw.read(4) == b"\xff\xd8\xff\xe0"
        assert _get(server, "/c/dresses").ok  # the shop still answers


def test_deeply_nested_page(small_shop):
    with ShopServer(small_shop, FaultConfig(hostile={"deep_nesting"})) as server:
        text = _get(server, "/trap/deep/dresses").text
    assert text.count("<div>") == text.count("</div>") == 100_000 and text.rstrip().endswith("</html>")


def test_gzip_bomb_inflates_to_gigabytes(small_shop):
    with ShopServer(small_shop, FaultConfig(hostile={"gzip_bomb"})) as server:
        with _get(server, "/trap/gzip-bomb/dresses", stream=True) as r:
            assert r.headers["Content-Encoding"] == "gzip"
            wire = int(r.headers["Content-Length"])
            start = r.raw.read(65536, decode_content=False)
    inflate = zlib.decompressobj(31)
    first = inflate.decompress(start, 32 * 2**20)
    assert first == b" " * 16 * 2**20 and inflate.eof  # one member of 256
    assert wire < 5 * 2**20 and wire == 256 * (len(start) - len(inflate.unused_data))


def _raw_get(server, path: str, seconds: float) -> bytes:
    """What a raw socket receives for ``GET path`` within ``seconds``."""
    host, port = server.url.removeprefix("http://").split(":")
    data = b""
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        until = time.monotonic() + seconds
        while (left := until - time.monotonic()) > 0:
            sock.settimeout(left)
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                break
            if not chunk:
                break
            data += chunk
    return data


def test_slow_drip_in_the_body_and_in_the_headers(small_shop):
    with ShopServer(small_shop, FaultConfig(hostile={"slow_drip"}, drip_interval_s=0.05)) as server:
        body = _raw_get(server, "/trap/slow-body/dresses", 0.5)
        headers = _raw_get(server, "/trap/slow-headers/p000001.jpg", 0.5)
    head, _, got = body.partition(b"\r\n\r\n")
    assert b"Content-Length: 65536" in head and 3 <= len(got) <= 15  # a byte every 50 ms
    assert headers.startswith(b"HTTP/1.1 200 OK\r\n") and b"\r\n\r\n" not in headers
    assert 3 <= headers.count(b"z") <= 15


def test_wrong_content_types(small_shop):
    p = load_catalog(small_shop).products[0]
    photo = p.variants[0].image
    with ShopServer(small_shop, FaultConfig(hostile={"wrong_content_type"})) as server:
        item = _get(server, f"/p/{p.product_id}")
        image = _get(server, f"/img/{photo}")
        as_page = _get(server, "/trap/image-as-page/dresses")
        as_image = _get(server, "/trap/html-as-image/p000001.jpg")
    assert item.headers["Content-Type"] == "image/jpeg" and item.text.rstrip().endswith("</html>")
    assert image.headers["Content-Type"].startswith("text/html")
    assert image.content == (small_shop / "images" / photo).read_bytes()
    assert as_page.headers["Content-Type"].startswith("text/html") and as_page.content.startswith(b"\xff\xd8\xff")
    assert as_image.headers["Content-Type"] == "image/jpeg" and as_image.content.startswith(b"<!DOCTYPE html>")


def test_images_that_lie(small_shop):
    faults = FaultConfig(hostile={"lying_images"})
    files = [v.image for p in load_catalog(small_shop).products for v in p.variants]
    with ShopServer(small_shop, faults) as server:
        kinds = set()
        for f in files:
            r = _get(server, f"/img/{f}")
            assert r.headers["Content-Type"] == "image/jpeg"
            original = (small_shop / "images" / f).read_bytes()
            if faults.is_png_disguised(f"/img/{f}"):
                kinds.add("png")
                with Image.open(io.BytesIO(r.content)) as png, Image.open(io.BytesIO(original)) as jpeg:
                    assert png.format == "PNG" and png.convert("RGB").tobytes() == jpeg.convert("RGB").tobytes()
            else:
                kinds.add("jpeg")
                assert r.content == original
        garbage = _get(server, "/trap/garbage-jpeg/p000001.jpg").content
        bomb = _get(server, "/trap/pixel-bomb/p000001.jpg").content
        gif = _get(server, "/trap/gif-as-jpeg/p000001.jpg").content
    assert kinds == {"png", "jpeg"}
    assert garbage.startswith(b"\xff\xd8\xff\xe0")
    with pytest.raises(OSError):
        Image.open(io.BytesIO(garbage)).load()
    with pytest.raises(Image.DecompressionBombError):
        Image.open(io.BytesIO(bomb))
    assert len(bomb) < 1000 and Image.open(io.BytesIO(gif)).format == "GIF"


def test_duplicate_items_second_listing_with_other_data(small_shop):
    faults = FaultConfig(hostile={"duplicate_items"})
    catalog = load_catalog(small_shop)
    slugs = [c.slug for c in catalog.categories]
    aliased = [p for p in catalog.products if faults.has_alias(p.product_id)]
    assert aliased
    with ShopServer(small_shop, faults) as server:
        for p in aliased:
            where = faults.alias_category(p.category, slugs)
            assert (p.product_id, faults.alias_url(p.product_id, where)) in _cards(server, f"/c/{where}")
            own = _soup(f"{server.url}/p/{p.product_id}")
            alias = _soup(server.url + faults.alias_url(p.product_id, where))
            blob = json.loads(alias.find("script", id="__PRODUCT__").string)
            assert blob["product_id"] == p.product_id and blob["title"] == f"{p.title} (imported listing)"
            assert alias.select_one("h1.title").get_text() == blob["title"]  # the page agrees with itself
            assert alias.select_one("span.seller")["data-seller-id"] == blob["seller"]["id"] != p.seller_id
            assert own.select_one("h1.title").get_text() == p.title


def test_robots_txt_can_disallow_everything(small_shop):
    with ShopServer(small_shop, FaultConfig(hostile={"robots_disallow_all"})) as server:
        assert _get(server, "/robots.txt").text == "User-agent: *\nDisallow: /\n"
        assert _get(server, "/").ok  # the shop itself still answers anyone who ignores it
