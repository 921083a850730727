"""The demo shop's HTTP server: a generated shop folder served as a marketplace on loopback.

``ShopServer`` runs a stdlib ``ThreadingHTTPServer`` on a background thread (a context
manager, for tests and benchmarks); ``serve`` blocks (for the CLI). The routes and markup
are the contract in ``docs/shop-protocol.md``; faults (latency, 429/5xx, corrupt or
truncated images, malformed feedback pages) come from a ``FaultConfig`` and are
deterministic per URL. The catalogue is re-read when ``catalog.json`` changes on disk, so
``grow_shop`` on a running shop is seen by the next request.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

from street2shop.shop import pages
from street2shop.shop.catalog import CATALOG_FILE, IMAGES_DIR, Catalog, Product, load_catalog
from street2shop.shop.faults import FaultConfig, canonical_url

__all__ = ["FaultConfig", "ShopServer", "serve"]

log = logging.getLogger(__name__)

_IMAGE_NAME = re.compile(r"^[A-Za-z0-9_-]+\.jpg$")
_PRODUCT_ID = re.compile(r"^p\d{6}$")


class _NotFound(Exception):
    pass


class _BadRequest(Exception):
    pass


@dataclass
class _ShopState:
    """The catalogue with the lookups the routes need; swapped whole on reload."""

    catalog: Catalog
    by_id: dict[str, Product]
    by_category: dict[str, list[Product]]
    stamp: tuple[int, int]  # (mtime_ns, size) of catalog.json when read

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
    if seg == ["static", "site.css"]:
        return "static"
    return "other"


class _Handler(BaseHTTPRequestHandler):
    server: _ShopHTTPServer
    protocol_version = "HTTP/1.1"  # keep-alive, so a crawler's connection pool is reused
    # Headers and body go out as two small writes; with Nagle on, the second waits for the
    # client's delayed ACK (~40 ms a response on loopback).
    disable_nagle_algorithm = True
    server_version = "DemoMarket/1.0"

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (stdlib name)
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
        fault: str | None = None
        if faults.latency_ms:
            time.sleep(faults.latency_ms / 1000)
        try:
            if kind not in ("robots", "stats") and (failure := shop.transient_failure(self.path)):
                status = failure
                fault = "429" if status == 429 else "5xx"
                headers = {"Retry-After": str(faults.retry_after_s)} if status == 429 else {}
                body, ctype = f"{status} try again later\n".encode(), "text/plain; charset=utf-8"
            else:
                status, headers = 200, {}
                body, ctype, fault = self._route(kind, parts.path, dict(parse_qsl(parts.query)))
        except _NotFound:
            status, headers = 404, {}
            body, ctype = b"404 not found\n", "text/plain; charset=utf-8"
        except _BadRequest as e:
            status, headers = 400, {}
            body, ctype = f"400 bad request: {e}\n".encode(), "text/plain; charset=utf-8"
        except Exception:  # a bug, not a fault: answer 500 and say why in the log
            log.exception("error serving %s", self.path)
            status, headers = 500, {}
            body, ctype = b"500 internal error\n", "text/plain; charset=utf-8"
        shop.stats.record(kind, status, fault)
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in headers.items():
            self.send_header(k, v)
        self.end_headers()
        if send_body:
            self.wfile.write(body)

    def _route(self, kind: str, path: str, query: dict[str, str]) -> tuple[bytes, str, str | None]:
        shop = self.server.shop
        html = "text/html; charset=utf-8"
        if kind == "robots":
            return pages.ROBOTS_TXT.encode(), "text/plain; charset=utf-8", None
        if kind == "stats":
            return json.dumps(shop.stats.snapshot()).encode(), "application/json", None
        if kind == "image":
            data, fault = shop.image_bytes(path)
            return data, "image/jpeg", fault
        if kind == "static":
            return pages.SITE_CSS.encode(), "text/css; charset=utf-8", None
        state = shop.state()
        if kind == "home":
            return pages.home_page(state.catalog).encode(), html, None
        if kind == "listing":
            slug = path.strip("/").split("/")[1]
            if slug not in state.by_category:
                raise _NotFound
            products = state.by_category[slug]
            page = _page_number(query)
            if page > pages.n_pages(len(products), pages.LISTING_PAGE_SIZE):
                raise _NotFound
            return pages.listing_page(state.catalog, slug, products, page).encode(), html, None
        if kind in ("item", "feedback"):
            product = state.by_id.get(path.strip("/").split("/")[1])
            if product is None:
                raise _NotFound
            if kind == "item":
                return pages.item_page(state.catalog, product).encode(), html, None
            page = _page_number(query)
            if page > pages.n_pages(len(product.reviews), pages.FEEDBACK_PAGE_SIZE):
                raise _NotFound
            malformed = shop.faults.is_malformed_page(self.path)
            text = pages.feedback_page(product, page, malformed=malformed)
            return text.encode(), html, ("malformed_page" if malformed else None)
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
        return data, None

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
