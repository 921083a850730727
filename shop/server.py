"""The demo shop's HTTP server: a generated shop folder served as a marketplace on loopback.

``ShopServer`` runs a stdlib ``ThreadingHTTPServer`` on a background thread (a context
manager, for tests and benchmarks); ``serve`` blocks (for the CLI). The routes and markup
are the contract in ``docs/shop-protocol.md``; faults (latency, 429/5xx, corrupt or
truncated images, malformed feedback pages, and the hostile behaviours: redirect traps,
endless pagination, huge, nested, compressed and slow answers, lying types) come from a
``FaultConfig`` and are deterministic per URL. The catalogue is re-read when
``catalog.json`` changes on disk, so ``grow_shop`` on a running shop is seen by the next
request.

A handler answers with a ``_Reply``: a body of bytes, or a stream of pieces (sent with a
``Content-Length`` or chunked), optionally dripped a byte at a time. The hostile traps need
all of that; a client that hangs up mid-answer (a crawler refusing a trap) ends the answer,
quietly.
"""

from __future__ import annotations

import functools
import gzip
import io
import itertools
import json
import logging
import os
import re
import struct
import sys
import threading
import time
import zlib
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

from street2shop.shop import pages
from street2shop.shop.catalog import (
    CATALOG_FILE,
    IMAGES_DIR,
    Catalog,
    Outfit,
    Product,
    Snap,
    Variant,
    load_catalog,
    outfits_by_product,
    variants_by_item,
)
from street2shop.shop.faults import PAGE_TRAPS, PHOTO_TRAPS, FaultConfig, canonical_url

__all__ = ["FaultConfig", "ShopServer", "serve"]

log = logging.getLogger(__name__)

_IMAGE_NAME = re.compile(r"^[A-Za-z0-9_-]+\.jpg$")
_PRODUCT_ID = re.compile(r"^p\d{6}$")
_HTML = "text/html; charset=utf-8"
_TEXT = "text/plain; charset=utf-8"

#: The sizes of the hostile traps (docs/shop-protocol.md).
HUGE_BYTES = 50 * 2**20
NESTING_DEPTH = 100_000
BOMB_MEMBER_BYTES = 16 * 2**20  # one gzip member of spaces ...
BOMB_MEMBERS = 256  # ... back to back: 4 GiB once inflated, about 4 MB on the wire
BOMB_PIXELS = (20_000, 20_000)  # what the pixel bomb's header claims
#: A dripping answer gives up after this long, so a client that never hangs up cannot keep
#: a server thread forever.
DRIP_FOR_S = 300.0
#: Where the "redirect-offsite" trap sends a crawler (.example never resolves: RFC 2606).
OFFSITE_URL = "http://mirror.demomarket.example"


class _NotFound(Exception):
    pass


def _named(entries: dict, path: str):
    """The entry the path's second segment names (``/o/<id>``); an unknown one is a 404."""
    entry = entries.get(path.strip("/").split("/")[1])
    if entry is None:
        raise _NotFound
    return entry


class _BadRequest(Exception):
    pass


@dataclass
class _ShopState:
    """The catalogue with the lookups the routes need; swapped whole on reload."""

    catalog: Catalog
    by_id: dict[str, Product]
    by_category: dict[str, list[Product]]
    stamp: tuple[int, int]  # (mtime_ns, size) of catalog.json when read
    outfits: dict[str, Outfit] = field(default_factory=dict)
    outfits_of: dict[str, list[Outfit]] = field(default_factory=dict)  # product id -> its outfits
    variants: dict[str, tuple[Product, Variant]] = field(default_factory=dict)  # item id -> product, variant
    snaps: dict[str, Snap] = field(default_factory=dict)

    @classmethod
    def read(cls, shop_dir: Path) -> _ShopState:
        st = (shop_dir / CATALOG_FILE).stat()
        catalog = load_catalog(shop_dir)
        by_category: dict[str, list[Product]] = {c.slug: [] for c in catalog.categories}
        for p in sorted(catalog.products, key=lambda p: p.product_id):
            by_category.setdefault(p.category, []).append(p)
        return cls(
            catalog=catalog,
            by_id={p.product_id: p for p in catalog.products},
            by_category=by_category,
            stamp=(st.st_mtime_ns, st.st_size),
            outfits={o.outfit_id: o for o in catalog.outfits},
            outfits_of=outfits_by_product(catalog),
            variants=variants_by_item(catalog),
            snaps={s.snap_id: s for s in catalog.snaps},
        )


@dataclass
class _Stats:
    lock: threading.Lock = field(default_factory=threading.Lock)
    by_status: Counter = field(default_factory=Counter)
    by_kind: Counter = field(default_factory=Counter)
    faults: Counter = field(default_factory=Counter)

    def record(self, kind: str, status: int, fault: str | None) -> None:
        with self.lock:
            self.by_status[str(status)] += 1
            self.by_kind[kind] += 1
            if fault:
                self.faults[fault] += 1

    def snapshot(self) -> dict:
        with self.lock:
            return {
                "requests": sum(self.by_status.values()),
                "by_status": dict(self.by_status),
                "by_kind": dict(self.by_kind),
                "faults": dict(self.faults),
            }


def path_kind(path: str) -> str:
    """The route a path belongs to, for statistics and for choosing which faults apply."""
    seg = path.strip("/").split("/") if path != "/" else []
    if not seg:
        return "home"
    if seg == ["robots.txt"]:
        return "robots"
    if seg == ["__stats"]:
        return "stats"
    if seg[0] == "c" and len(seg) == 2:
        return "listing"
    if seg[0] == "p" and len(seg) == 2:
        return "item"
    if seg[0] == "p" and len(seg) == 3 and seg[2] == "feedback":
        return "feedback"
    if seg[0] == "img" and len(seg) == 2:
        return "image"
    if seg[0] == "o" and len(seg) == 2:
        return "outfit"
    if seg == ["looks"]:
        return "looks"
    if seg[0] == "l" and len(seg) == 2:
        return "snap"
    if seg == ["static", "site.css"]:
        return "static"
    if seg[0] == "trap" and len(seg) == 3:
        return "trap"
    return "other"


@dataclass
class _Reply:
    """One answer: status, Content-Type, headers, and a body of bytes or a stream of pieces."""

    status: int
    body: bytes | Iterable[bytes]
    ctype: str = _TEXT
    headers: dict[str, str] = field(default_factory=dict)
    fault: str | None = None  # counted in /__stats
    length: int | None = None  # a stream's Content-Length; None: sent chunked
    drip_s: float = 0.0  # > 0: the body goes out one byte at a time, this far apart
    drip_headers: bool = False  # the headers never finish: they drip until DRIP_FOR_S


def _plain(status: int, text: str, **kw: object) -> _Reply:
    return _Reply(status, text.encode(), _TEXT, **kw)  # type: ignore[arg-type]


class _Handler(BaseHTTPRequestHandler):
    server: _ShopHTTPServer
    protocol_version = "HTTP/1.1"  # keep-alive, so a crawler's connection pool is reused
    # Headers and body go out as two small writes; with Nagle on, the second waits for the
    # client's delayed ACK (~40 ms a response on loopback).
    disable_nagle_algorithm = True
    server_version = "DemoMarket/1.0"

    def log_message(self, format: str, *args: object) -> None:
        # One line per request on stderr would drown test and CLI output.
        log.debug("%s " + format, self.address_string(), *args)

    def do_HEAD(self) -> None:
        self._respond(send_body=False)

    def do_GET(self) -> None:
        self._respond(send_body=True)

    # -- dispatch ------------------------------------------------------------------------
    def _respond(self, send_body: bool) -> None:
        shop = self.server.shop
        parts = urlsplit(self.path)
        kind = path_kind(parts.path)
        faults = shop.faults
        if faults.latency_ms:
            time.sleep(faults.latency_ms / 1000)
        try:
            if kind not in ("robots", "stats") and (failure := shop.transient_failure(self.path)):
                headers = {"Retry-After": str(faults.retry_after_s)} if failure == 429 else {}
                reply = _plain(failure, f"{failure} try again later\n", headers=headers,
                               fault="429" if failure == 429 else "5xx")
            else:
                reply = self._route(kind, parts.path, dict(parse_qsl(parts.query)))
        except _NotFound:
            reply = _plain(404, "404 not found\n")
        except _BadRequest as e:
            reply = _plain(400, f"400 bad request: {e}\n")
        except Exception:  # a bug, not a fault: answer 500 and say why in the log
            log.exception("error serving %s", self.path)
            reply = _plain(500, "500 internal error\n")
        shop.stats.record(kind, reply.status, reply.fault)
        try:
            self._send(reply, send_body)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client hung up on a trap: nothing to finish

    def _send(self, reply: _Reply, send_body: bool) -> None:
        if reply.drip_headers:
            self._drip_headers(reply)
            return
        streamed = not isinstance(reply.body, bytes)
        self.send_response(reply.status)
        self.send_header("Content-Type", reply.ctype)
        if not streamed:
            self.send_header("Content-Length", str(len(reply.body)))  # type: ignore[arg-type]
        elif reply.length is not None:
            self.send_header("Content-Length", str(reply.length))
        else:
            self.send_header("Transfer-Encoding", "chunked")
        for k, v in reply.headers.items():
            self.send_header(k, v)
        self.end_headers()
        if not send_body:
            return
        if not streamed:
            if reply.drip_s:
                self._drip(reply.body, reply.drip_s)  # type: ignore[arg-type]
            else:
                self.wfile.write(reply.body)  # type: ignore[arg-type]
            return
        for piece in reply.body:
            self.wfile.write(piece if reply.length is not None else b"%x\r\n%s\r\n" % (len(piece), piece))
        if reply.length is None:
            self.wfile.write(b"0\r\n\r\n")

    def _drip(self, body: bytes, interval_s: float) -> None:
        until = time.monotonic() + DRIP_FOR_S
        for i in range(len(body)):
            if time.monotonic() > until:
                self.close_connection = True  # the rest is never sent
                return
            self.wfile.write(body[i : i + 1])
            time.sleep(interval_s)

    def _drip_headers(self, reply: _Reply) -> None:
        self.close_connection = True
        self.wfile.write(f"HTTP/1.1 {reply.status} OK\r\nContent-Type: {reply.ctype}\r\nX-Drip: ".encode())
        until = time.monotonic() + DRIP_FOR_S
        while time.monotonic() < until:
            self.wfile.write(b"z")
            time.sleep(reply.drip_s)

    def _route(self, kind: str, path: str, query: dict[str, str]) -> _Reply:
        shop = self.server.shop
        faults = shop.faults
        if kind == "robots":
            if faults.is_hostile("robots_disallow_all"):
                return _plain(200, pages.ROBOTS_TXT_DISALLOW_ALL, fault="robots_disallow_all")
            return _plain(200, pages.ROBOTS_TXT)
        if kind == "stats":
            return _Reply(200, json.dumps(shop.stats.snapshot()).encode(), "application/json")
        if kind == "trap":
            return shop.trap(path, query)
        if kind == "image":
            if faults.is_hostile("redirects") and "cdn" not in query:
                # A CDN-style move of every real photo: a redirect a crawler must follow.
                return _Reply(302, b"", headers={"Location": f"{path}?cdn=1"}, fault="redirect")
            data, fault = shop.image_bytes(path)
            if faults.is_hostile("wrong_content_type"):
                return _Reply(200, data, _HTML, fault=fault or "wrong_content_type")
            return _Reply(200, data, "image/jpeg", fault=fault)
        if kind == "static":
            return _Reply(200, pages.SITE_CSS.encode(), "text/css; charset=utf-8")
        state = shop.state()
        endless = faults.is_hostile("endless_pagination")
        if kind == "home":
            return _Reply(200, pages.home_page(state.catalog).encode(), _HTML)
        if kind == "outfit":
            outfit = _named(state.outfits, path)
            return _Reply(200, pages.outfit_page(outfit, state.variants).encode(), _HTML)
        if kind == "looks":
            snaps = [state.snaps[k] for k in sorted(state.snaps)]
            page = _page_number(query)
            if not snaps or page > pages.n_pages(len(snaps), pages.LOOKS_PAGE_SIZE):
                raise _NotFound
            return _Reply(200, pages.looks_page(snaps, page).encode(), _HTML)
        if kind == "snap":
            snap = _named(state.snaps, path)
            return _Reply(200, pages.snap_page(snap, state.variants).encode(), _HTML)
        if kind == "listing":
            slug = path.strip("/").split("/")[1]
            if slug not in state.by_category:
                raise _NotFound
            products = state.by_category[slug]
            page = _page_number(query)
            total = pages.n_pages(len(products), pages.LISTING_PAGE_SIZE)
            if page > total and not endless:
                raise _NotFound
            extra = shop.extra_cards(state, slug) if page == 1 else []
            text = pages.listing_page(state.catalog, slug, products, page, extra_cards=extra, endless=endless)
            return _Reply(200, text.encode(), _HTML, fault="endless_page" if endless and page >= total else None)
        if kind in ("item", "feedback"):
            product = state.by_id.get(path.strip("/").split("/")[1])
            if product is None:
                raise _NotFound
            if kind == "item":
                fault = None
                if "ref" in query and faults.has_alias(product.product_id):
                    product, fault = shop.alias_of(state, product), "duplicate_item"
                ctype = "image/jpeg" if faults.is_hostile("wrong_content_type") else _HTML
                page = pages.item_page(state.catalog, product, state.outfits_of.get(product.product_id, ()), state.variants)
                return _Reply(200, page.encode(), ctype,
                              fault=fault or ("wrong_content_type" if ctype != _HTML else None))
            page = _page_number(query)
            total = pages.n_pages(len(product.reviews), pages.FEEDBACK_PAGE_SIZE)
            if page > total and not endless:
                raise _NotFound
            malformed = shop.faults.is_malformed_page(self.path)
            traps = faults.photo_traps(product.product_id) if page == 1 else []
            trap_review = (faults.trap_review_id(product.product_id), [t.url for t in traps]) if traps else None
            text = pages.feedback_page(product, page, malformed=malformed, trap_review=trap_review, endless=endless)
            fault = "malformed_page" if malformed else ("endless_page" if endless and page >= total else None)
            return _Reply(200, text.encode(), _HTML, fault=fault)
        raise _NotFound


def _page_number(query: dict[str, str]) -> int:
    raw = query.get("page", "1")
    try:
        page = int(raw)
    except ValueError:
        raise _BadRequest(f"page must be an integer, got {raw!r}") from None
    if page < 1:
        raise _NotFound
    return page


class _ShopHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    shop: ShopServer

    def handle_error(self, request: object, client_address: object) -> None:
        # A client that resets a kept-alive connection (a crawler walking away from a trap)
        # is not a server error worth a traceback on stderr.
        if isinstance(sys.exc_info()[1], (ConnectionResetError, BrokenPipeError)):
            return
        super().handle_error(request, client_address)


class ShopServer:
    """A running demo shop. Use as a context manager::

        with ShopServer(shop_dir, FaultConfig(p_429=0.1)) as shop:
            requests.get(shop.url + "/robots.txt")
    """

    def __init__(
        self,
        shop_dir: str | Path,
        faults: FaultConfig | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.shop_dir = Path(shop_dir)
        self.faults = faults or FaultConfig()
        self.stats = _Stats()
        self._state = _ShopState.read(self.shop_dir)
        self._state_lock = threading.Lock()
        self._attempts: Counter = Counter()
        self._attempts_lock = threading.Lock()
        self._httpd = _ShopHTTPServer((host, port), _Handler)
        self._httpd.shop = self
        self._thread: threading.Thread | None = None

    # -- lifecycle -----------------------------------------------------------------------
    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> ShopServer:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._httpd.serve_forever, name=f"shop-{self.url}", daemon=True
            )
            self._thread.start()
        return self

    def serve_forever(self) -> None:
        self._httpd.serve_forever()

    def stop(self) -> None:
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join()
            self._thread = None
        self._httpd.server_close()

    def __enter__(self) -> ShopServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- catalogue -----------------------------------------------------------------------
    def reload(self) -> None:
        """Re-read ``catalog.json`` now (it is also re-read on change before any request)."""
        state = _ShopState.read(self.shop_dir)
        with self._state_lock:
            self._state = state

    def state(self) -> _ShopState:
        try:
            st = (self.shop_dir / CATALOG_FILE).stat()
            changed = (st.st_mtime_ns, st.st_size) != self._state.stamp
        except FileNotFoundError:  # mid-replace; keep serving the old catalogue
            changed = False
        if changed:
            self.reload()
        with self._state_lock:
            return self._state

    def image_bytes(self, path: str) -> tuple[bytes, str | None]:
        """The bytes served for an image path and the fault applied, if any."""
        name = path.rsplit("/", 1)[-1]
        file = self.shop_dir / IMAGES_DIR / name
        if not _IMAGE_NAME.match(name) or not file.is_file():
            raise _NotFound
        data = file.read_bytes()
        if self.faults.is_corrupt_image(path):
            return self.faults.garbage_bytes(path, len(data)), "corrupt_image"
        if self.faults.is_truncated_image(path):
            return data[: len(data) // 2], "truncated_image"
        if self.faults.is_png_disguised(path):
            return _png_of(data), "png_as_jpeg"
        return data, None

    # -- the hostile shop ----------------------------------------------------------------
    def extra_cards(self, state: _ShopState, slug: str) -> list[tuple[str, str, str]]:
        """(product id, href, title) of the trap and duplicate cards on page 1 of ``slug``."""
        index = list(state.by_category).index(slug)
        cards = [(self.faults.trap_product_id(index, k), t.url, f"Deal of the day ({t.name})")
                 for k, t in enumerate(self.faults.page_traps(slug))]
        slugs = [c.slug for c in state.catalog.categories]
        for p in sorted(state.catalog.products, key=lambda p: p.product_id):
            if self.faults.has_alias(p.product_id) and self.faults.alias_category(p.category, slugs) == slug:
                cards.append((p.product_id, self.faults.alias_url(p.product_id, slug), p.title))
        return cards

    @staticmethod
    def alias_of(state: _ShopState, product: Product) -> Product:
        """The product as its second listing describes it: another title, another seller."""
        sellers = [s.id for s in state.catalog.sellers]
        other = sellers[(sellers.index(product.seller_id) + 1) % len(sellers)]
        return product.model_copy(update={"title": f"{product.title} (imported listing)", "seller_id": other})

    def trap(self, path: str, query: dict[str, str]) -> _Reply:
        """The answer of a ``/trap/<name>/<arg>`` URL, if its switch is on."""
        _, name, arg = path.strip("/").split("/")
        photo = arg.endswith(".jpg")
        switch = next((sw for sw, names in (PHOTO_TRAPS if photo else PAGE_TRAPS).items() if name in names), None)
        if switch is None or not self.faults.is_hostile(switch):
            raise _NotFound
        fault = f"trap:{name}"
        ctype = "image/jpeg" if photo else _HTML
        if name == "redirect-loop":
            there = path if "hop" in query else f"{path}?hop=1"
            return _Reply(302, b"", headers={"Location": there}, fault=fault)
        if name == "redirect-chain":
            hop = _page_number({"page": query.get("hop", "1")}) + 1
            return _Reply(302, b"", headers={"Location": f"{path}?hop={hop}"}, fault=fault)
        if name == "redirect-offsite":
            return _Reply(302, b"", headers={"Location": f"{OFFSITE_URL}/p/{arg}"}, fault=fault)
        if name == "redirect-private":
            return _Reply(302, b"", headers={"Location": self.faults.ssrf_url}, fault=fault)
        if name == "huge":
            return _Reply(200, pages.filler_chunks(HUGE_BYTES), ctype, length=HUGE_BYTES, fault=fault)
        if name == "huge-chunked":
            head = [b"\xff\xd8\xff\xe0"] if photo else []
            return _Reply(200, itertools.chain(head, pages.filler_chunks(HUGE_BYTES)), ctype, fault=fault)
        if name == "deep":
            return _Reply(200, pages.deeply_nested_page(NESTING_DEPTH).encode(), ctype, fault=fault)
        if name == "gzip-bomb":
            member = _bomb_member()
            return _Reply(200, itertools.repeat(member, BOMB_MEMBERS), ctype, length=len(member) * BOMB_MEMBERS,
                          headers={"Content-Encoding": "gzip"}, fault=fault)
        if name == "slow-body":
            body = b"".join(pages.filler_chunks(64 * 1024))  # an hour of drip at 0.05 s a byte
            return _Reply(200, body, ctype, drip_s=self.faults.drip_interval_s, fault=fault)
        if name == "slow-headers":
            return _Reply(200, b"", ctype, drip_s=self.faults.drip_interval_s, drip_headers=True, fault=fault)
        if name == "image-as-page":
            product = min(self.state().catalog.products, key=lambda p: p.product_id)
            photo = (self.shop_dir / IMAGES_DIR / product.variants[0].image).read_bytes()
            return _Reply(200, photo, _HTML, fault=fault)
        if name == "html-as-image":
            return _Reply(200, pages.soft_404_page().encode(), "image/jpeg", fault=fault)
        if name == "garbage-jpeg":
            return _Reply(200, b"\xff\xd8\xff\xe0" + self.faults.garbage_bytes(path, 4096), ctype, fault=fault)
        if name == "pixel-bomb":
            return _Reply(200, _png_header_claiming(*BOMB_PIXELS), ctype, fault=fault)
        if name == "gif-as-jpeg":
            return _Reply(200, _gif(), ctype, fault=fault)
        raise _NotFound

    def transient_failure(self, url: str) -> int | None:
        """The status to answer for this attempt at ``url`` if it is still failing, else None."""
        failure = self.faults.transient_failure(url)
        if failure is None:
            return None
        status, n_failing = failure
        key = canonical_url(url)
        with self._attempts_lock:
            self._attempts[key] += 1
            attempt = self._attempts[key]
        return status if attempt <= n_failing else None


# -- trap payloads (built once, on first use) -----------------------------------------------
_BUILD_LOCK = threading.Lock()
_BUILT: dict[str, bytes] = {}


def _once(key: str, build: Callable[[], bytes]) -> bytes:
    with _BUILD_LOCK:
        if key not in _BUILT:
            _BUILT[key] = build()
        return _BUILT[key]


def _bomb_member() -> bytes:
    """One gzip member of BOMB_MEMBER_BYTES spaces (about 16 KB compressed)."""
    return _once("bomb", lambda: gzip.compress(b" " * BOMB_MEMBER_BYTES, compresslevel=9, mtime=0))


def _png_header_claiming(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width x height`` and whose data is a few rows: all a
    decompression bomb needs to look like one before any pixel is decoded."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = zlib.compress(b"\x00" * (1 + 3 * width) * 4)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", rows) + chunk(b"IEND", b""))


def _gif() -> bytes:
    def build() -> bytes:
        from PIL import Image

        buf = io.BytesIO()
        Image.new("P", (64, 64), 3).save(buf, format="GIF")
        return buf.getvalue()

    return _once("gif", build)


@functools.lru_cache(maxsize=256)
def _png_of(jpeg: bytes) -> bytes:
    """The same photo as PNG bytes (lossless: the pixels the JPEG decodes to)."""
    from PIL import Image

    buf = io.BytesIO()
    with Image.open(io.BytesIO(jpeg)) as im:
        im.convert("RGB").save(buf, format="PNG")
    return buf.getvalue()


def serve(
    shop_dir: str | Path,
    host: str = "127.0.0.1",
    port: int = 8000,
    faults: FaultConfig | None = None,
) -> None:
    """Serve a shop until interrupted (Ctrl-C)."""
    shop = ShopServer(shop_dir, faults=faults, host=host, port=port)
    print(f"Serving {os.fspath(shop.shop_dir)} at {shop.url} (Ctrl-C to stop)", flush=True)
    try:
        shop.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        shop.stop()
