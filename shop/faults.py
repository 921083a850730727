"""Fault injection for the demo shop: latency, throttling, server errors, broken payloads,
and a hostile shop's tricks.

Every decision is a pure function of ``(seed, canonical URL)``, so a test can ask which URLs
are permanently broken (``is_corrupt_image``...) and the server answers the same way on
every run. Transient faults (429 / 5xx) fail the first one or two attempts of a URL, then the
URL succeeds, so a polite crawler that retries gets everything.

Hostile behaviours (``FaultConfig.hostile``, names in ``HOSTILE``) are switches. Most add
*traps* next to the real catalogue, which stays complete and reachable: trap product cards
on page 1 of every listing (``page_traps``) and a trap review at the top of page 1 of every
product's feedback whose photos are traps (``photo_traps``). A crawler that defends itself
ends with exactly the clean shop's items and photos, plus one reject per trap. The others
bend real answers (wrong Content-Types, PNGs served as ``.jpg``, endless pagination, a
second URL per product with different data, a robots.txt that disallows everything);
``docs/shop-protocol.md`` lists what each switch does.
"""

from __future__ import annotations

import hashlib
import threading
from collections import Counter
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlencode, urlsplit

from pydantic import BaseModel, Field, field_serializer, field_validator, model_validator

#: At most this many failing attempts per URL for transient faults (the protocol's promise).
MAX_TRANSIENT_FAILURES = 2

#: The hostile behaviours, each a switch in ``FaultConfig.hostile``.
HOSTILE = (
    "redirects",  # redirect loops, endless chains, off-site and private targets; real photos move once
    "ssrf",  # links straight at private / loopback addresses that are not the shop
    "endless_pagination",  # every listing and feedback page links a next one, forever
    "huge_pages",  # 50 MB answers, with and without a Content-Length
    "deep_nesting",  # a page of 100 000 nested <div>
    "gzip_bomb",  # Content-Encoding gzip inflating to 4 GiB
    "slow_drip",  # a byte at a time, in the body and in the headers
    "wrong_content_type",  # item pages served as image/jpeg, photos as text/html
    "lying_images",  # PNGs as .jpg, JPEG-looking garbage, pixel bombs, GIFs as .jpg
    "duplicate_items",  # half the products listed twice, the second URL with other data
    "robots_disallow_all",  # robots.txt: Disallow: /
)

#: Trap pages per switch, linked from page 1 of every listing as ``/trap/<name>/<slug>``
#: (the ``-link`` ones point straight off the shop instead).
PAGE_TRAPS: dict[str, tuple[str, ...]] = {
    "redirects": ("redirect-loop", "redirect-chain", "redirect-offsite", "redirect-private"),
    "ssrf": ("ssrf-link", "private-link"),
    "huge_pages": ("huge", "huge-chunked"),
    "deep_nesting": ("deep",),
    "gzip_bomb": ("gzip-bomb",),
    "slow_drip": ("slow-body",),
    "wrong_content_type": ("image-as-page",),
}

#: Trap photos per switch, on the trap review of every product as ``/trap/<name>/<pid>.jpg``.
PHOTO_TRAPS: dict[str, tuple[str, ...]] = {
    "redirects": ("redirect-private",),
    "ssrf": ("ssrf-link", "loopback-link"),
    "huge_pages": ("huge-chunked",),
    "gzip_bomb": ("gzip-bomb",),
    "slow_drip": ("slow-headers",),
    "wrong_content_type": ("html-as-image",),
    "lying_images": ("garbage-jpeg", "pixel-bomb", "gif-as-jpeg"),
}

#: Where "private-link" and "loopback-link" traps point: a private address, and another port
#: of the loopback interface the demo shop is normally served on.
PRIVATE_URL = "http://10.0.0.1/admin"
LOOPBACK_URL = "http://127.0.0.1:1/"


@dataclass(frozen=True)
class Trap:
    """One trap link: the switch it belongs to, its name, and where it points."""

    switch: str
    name: str
    url: str  # a shop path ("/trap/huge/dresses") or an absolute URL off the shop


def canonical_url(url: str) -> str:
    """Path plus sorted query, without scheme and host: the key every fault is drawn from.

    ``http://127.0.0.1:8000/p/p000001/feedback?page=2`` and ``/p/p000001/feedback?page=2``
    are the same URL to the fault model, so tests can ask with either.
    """
    parts = urlsplit(url)
    query = urlencode(sorted(parse_qsl(parts.query, keep_blank_values=True)))
    return parts.path + (f"?{query}" if query else "")


def _feedback_page(url: str) -> int | None:
    """The page number of a feedback URL, or None for any other URL."""
    parts = urlsplit(url)
    segments = parts.path.strip("/").split("/")
    if len(segments) != 3 or segments[0] != "p" or segments[2] != "feedback":
        return None
    page = dict(parse_qsl(parts.query)).get("page", "1")
    try:
        return int(page)
    except ValueError:
        return None


class FaultConfig(BaseModel):
    """What can go wrong, and how often. All probabilities are fractions of URLs."""

    seed: int = 0
    latency_ms: float = Field(0.0, ge=0)
    p_429: float = Field(0.0, ge=0, le=1)
    retry_after_s: int = Field(1, ge=0)
    p_5xx: float = Field(0.0, ge=0, le=1)
    p_corrupt_image: float = Field(0.0, ge=0, le=1)
    p_truncated_image: float = Field(0.0, ge=0, le=1)
    p_malformed_page: float = Field(0.0, ge=0, le=1)
    #: Hostile behaviours switched on (names from ``HOSTILE``).
    hostile: frozenset[str] = frozenset()
    #: What the "ssrf-link" and "redirect-private" traps point at. The default is a cloud's
    #: metadata service; tests point it at a canary server that must never be asked.
    ssrf_url: str = "http://169.254.169.254/latest/meta-data/"
    #: Seconds between the bytes of a slow-drip answer.
    drip_interval_s: float = Field(0.05, gt=0)

    @field_validator("hostile")
    @classmethod
    def _known_behaviours(cls, v: frozenset[str]) -> frozenset[str]:
        unknown = sorted(set(v) - set(HOSTILE))
        if unknown:
            raise ValueError(f"unknown hostile behaviours {unknown}; known: {list(HOSTILE)}")
        return frozenset(v)

    @field_serializer("hostile")
    def _sorted_hostile(self, v: frozenset[str]) -> list[str]:
        return sorted(v)  # a stable dump, whatever the set's order in this process

    @model_validator(mode="after")
    def _disjoint_fractions(self) -> FaultConfig:
        # Each pair is drawn from one uniform number, so their sum must fit in [0, 1].
        if self.p_429 + self.p_5xx > 1:
            raise ValueError("p_429 + p_5xx must be <= 1")
        if self.p_corrupt_image + self.p_truncated_image > 1:
            raise ValueError("p_corrupt_image + p_truncated_image must be <= 1")
        return self

    # -- the deterministic draws -------------------------------------------------------
    def uniform(self, url: str, purpose: str) -> float:
        """A number in [0, 1) fixed by (seed, purpose, canonical URL)."""
        key = f"{self.seed}\x00{purpose}\x00{canonical_url(url)}".encode()
        digest = hashlib.blake2b(key, digest_size=8).digest()
        return int.from_bytes(digest, "big") / 2**64

    def transient_failure(self, url: str) -> tuple[int, int] | None:
        """``(status, n_failing_attempts)`` for a URL that fails transiently, else None."""
        u = self.uniform(url, "transient")
        if u >= self.p_429 + self.p_5xx:
            return None
        attempts = 1 + int(self.uniform(url, "attempts") * MAX_TRANSIENT_FAILURES)
        if u < self.p_429:
            return 429, attempts
        return (503 if self.uniform(url, "5xx-code") < 0.5 else 500), attempts

    def is_corrupt_image(self, url: str) -> bool:
        return self.uniform(url, "image") < self.p_corrupt_image

    def is_truncated_image(self, url: str) -> bool:
        u = self.uniform(url, "image")
        return self.p_corrupt_image <= u < self.p_corrupt_image + self.p_truncated_image

    def is_malformed_page(self, url: str) -> bool:
        """Only feedback pages after the first can be malformed (so every item stays reachable)."""
        page = _feedback_page(url)
        if page is None or page < 2:
            return False
        return self.uniform(url, "malformed") < self.p_malformed_page

    def garbage_bytes(self, url: str, n: int) -> bytes:
        """Deterministic non-JPEG bytes standing in for a corrupt image."""
        out = bytearray()
        counter = 0
        while len(out) < n:
            key = f"{self.seed}\x00garbage\x00{canonical_url(url)}\x00{counter}".encode()
            out += hashlib.blake2b(key, digest_size=64).digest()
            counter += 1
        # Never start with the JPEG SOI marker, so the bytes cannot pass for a JPEG header.
        out[0:2] = b"GB"
        return bytes(out[:n])

    # -- hostile behaviours --------------------------------------------------------------
    def is_hostile(self, name: str) -> bool:
        if name not in HOSTILE:
            raise ValueError(f"unknown hostile behaviour {name!r}")
        return name in self.hostile

    def _traps(self, table: dict[str, tuple[str, ...]], arg: str, ext: str) -> list[Trap]:
        out = []
        for switch in HOSTILE:  # a fixed order, whatever the set's
            if switch not in self.hostile:
                continue
            for name in table.get(switch, ()):
                if name == "ssrf-link":
                    url = self.ssrf_url
                elif name == "private-link":
                    url = f"{PRIVATE_URL}/{arg}{ext}"
                elif name == "loopback-link":
                    url = f"{LOOPBACK_URL}{arg}{ext}"
                else:
                    url = f"/trap/{name}/{arg}{ext}"
                out.append(Trap(switch, name, url))
        return out

    def page_traps(self, slug: str) -> list[Trap]:
        """The trap pages linked from page 1 of the ``slug`` listing, in page order."""
        return self._traps(PAGE_TRAPS, slug, "")

    def photo_traps(self, product_id: str) -> list[Trap]:
        """The trap photos of ``product_id``'s trap review, in page order."""
        return self._traps(PHOTO_TRAPS, product_id, ".jpg")

    @staticmethod
    def trap_product_id(category_index: int, k: int) -> str:
        """The product id on the card of a listing's ``k``-th trap: ``p9`` + 4 digits, never
        a real product's (those count up from ``p000001``)."""
        return f"p9{category_index:02d}{k:03d}"

    @staticmethod
    def trap_review_id(product_id: str) -> str:
        """The trap review's id: the newest-looking of the product (``r9`` + its digits)."""
        return "r9" + product_id[1:]

    def is_png_disguised(self, url: str) -> bool:
        """lying_images: half the real photos are served as PNG bytes under their .jpg name."""
        return "lying_images" in self.hostile and self.uniform(url, "png") < 0.5

    def has_alias(self, product_id: str) -> bool:
        """duplicate_items: half the products are listed a second time, under another URL."""
        return "duplicate_items" in self.hostile and self.uniform(f"/p/{product_id}", "alias") < 0.5

    @staticmethod
    def alias_category(own: str, slugs: list[str]) -> str | None:
        """The listing a product's second card is on: the first category that is not its own
        (so, for most products, a listing the crawler reads before the product's own)."""
        return next((s for s in slugs if s != own), None)

    @staticmethod
    def alias_url(product_id: str, slug: str) -> str:
        return f"/p/{product_id}?ref={slug}"


class Canary:
    """A loopback server that only counts who asked it something: the SSRF target that a crawler
    must never reach (``FaultConfig.ssrf_url``, for the tests and bench/hostile_crawl.py). Use as
    a context manager; ``url`` is where to point traps, ``hits`` counts requests by path."""

    def __init__(self) -> None:
        hits: Counter = Counter()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                hits[self.path] += 1
                self.send_response(200)
                self.send_header("Content-Length", "7")
                self.end_headers()
                self.wfile.write(b"secret\n")

            def log_message(self, *args: object) -> None:
                pass

        self.hits = hits
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}/latest/meta-data/"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    def __enter__(self) -> Canary:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join()
