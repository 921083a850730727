"""A polite, guarded HTTP fetcher: robots.txt, a rate limit, retries, and hard limits.

Polite: robots.txt is read once per host and obeyed (also for every redirect hop), first
attempts are paced by a rate limit, 429 and 5xx are retried with backoff and the server's
``Retry-After`` honoured up to a cap. Retries are urllib3's ``Retry``, not a hand-written
loop.

Guarded, because a shop may be hostile (``transfer.py`` and ``guard.py`` hold the parts):

- every URL, found in a page or met as a redirect hop, passes ``UrlGuard`` before it is
  requested (no off-site hosts, no private or loopback addresses but the shop's own);
- redirects are followed by hand, at most ``max_redirects`` hops, a loop is named as one;
- each fetch has a total deadline (``deadline_s``, hops and retries included), not only
  per-read timeouts, so a server dripping a byte a second cannot hold a worker;
- a body is read while it streams and cut off past its byte budget, counted after
  gzip/deflate decoding, so neither a 50 MB page nor a gzip bomb is ever held in memory.

One ``requests.Session`` is shared by every worker thread; its connection pool is sized to
the crawl's concurrency so threads never wait on each other for a socket. ``get`` never
raises for HTTP or network trouble, or a refused URL: it returns a ``FetchResult`` whose
``error`` says what went wrong, because to a crawler a failed URL is data (a reject row),
not an exception.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit, urlunsplit
from urllib.robotparser import RobotFileParser

import requests
import urllib3

from street2shop.crawler.guard import UrlGuard
from street2shop.crawler.transfer import (
    DeadlineExceeded,
    DeadlineRetry,
    TooLarge,
    UndecodableBody,
    Watch,
    WatchedAdapter,
    Watchdog,
    read_body,
)

__all__ = ["DEFAULT_USER_AGENT", "DISALLOWED", "FetchResult", "PoliteFetcher", "RateLimiter"]

log = logging.getLogger(__name__)

#: Robots rules are matched against the product token, the part before the slash.
DEFAULT_USER_AGENT = "street2shop-crawler/0.1 (+https://github.com/street2shop/street2shop)"

RETRY_STATUSES = (429, 500, 502, 503, 504)
REDIRECT_STATUSES = (301, 302, 303, 307, 308)

#: The error of a URL that robots.txt forbids.
DISALLOWED = "disallowed by robots.txt"
#: RFC 9309 2.5: a crawler must read at least 500 KiB of a robots.txt and may ignore the rest.
ROBOTS_MAX_BYTES = 512 * 1024
#: Of a non-200 answer (an error page, a redirect) at most this much body is read: enough
#: to reuse the connection after a normal one, never a hostile one's megabytes.
SMALL_BODY_BYTES = 64 * 1024


class RateLimiter:
    """Thread-safe token bucket: at most ``rate`` acquisitions a second, ``burst`` at once.

    Each caller reserves a token under the lock (the count may go negative: that is a queue
    of reservations) and sleeps outside it, so waiting threads never block the lock and the
    long-run rate is exact whatever the number of threads.
    """

    def __init__(
        self,
        rate: float,
        burst: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ):
        if rate <= 0 or burst < 1:
            raise ValueError(f"rate must be > 0 and burst >= 1, got rate={rate}, burst={burst}")
        self.rate = float(rate)
        self.burst = float(burst)
        self._clock, self._sleep = clock, sleep
        self._lock = threading.Lock()
        self._tokens = self.burst
        self._last = clock()

    def slow_down_to(self, rate: float) -> None:
        """Lower the rate (never raise it), e.g. to honour a robots.txt ``Crawl-delay``."""
        with self._lock:
            self.rate = min(self.rate, rate)

    def acquire(self) -> float:
        """Take one token, sleeping until it is available; returns the seconds waited."""
        with self._lock:
            now = self._clock()
            self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
            self._last = now
            self._tokens -= 1.0
            wait = -self._tokens / self.rate if self._tokens < 0 else 0.0
        if wait > 0:
            self._sleep(wait)
        return wait


@dataclass(frozen=True)
class FetchResult:
    url: str
    status: int | None  # None when no HTTP answer came (network error, robots.txt)
    content: bytes = b""
    content_type: str = ""
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.status == 200


@dataclass(frozen=True)
class _Hop:
    """One request's answer: a redirect (``location``) or the final status and body."""

    status: int | None = None
    content_type: str = ""
    body: bytes = b""
    error: str | None = None
    location: str | None = None


class PoliteFetcher:
    """GETs URLs the way a well-behaved, suspicious crawler should. Thread-safe; use as a
    context manager.

    Retries (of any kind) happen inside urllib3 and do not pass through the rate limiter,
    which paces first attempts (and redirect hops) only; the backoff and ``Retry-After``
    waits already space the retries out. ``guard=None`` requests any URL (the crawl always
    passes one).
    """

    def __init__(
        self,
        *,
        user_agent: str = DEFAULT_USER_AGENT,
        concurrency: int = 4,
        rate_limit_rps: float | None = None,
        timeout_s: float = 10.0,
        max_retries: int = 4,
        backoff_factor: float = 0.2,
        max_retry_after_s: float = 60.0,
        deadline_s: float = 120.0,
        max_bytes: int = 20_000_000,
        max_redirects: int = 5,
        guard: UrlGuard | None = None,
    ):
        self.user_agent = user_agent
        self.timeout_s = timeout_s
        self.deadline_s = deadline_s
        self.max_bytes = max_bytes
        self.max_redirects = max_redirects
        self.guard = guard
        self.limiter = RateLimiter(rate_limit_rps, burst=max(1, concurrency)) if rate_limit_rps else None
        retry = DeadlineRetry(
            total=max_retries,
            connect=max_retries,
            read=max_retries,
            status=max_retries,
            redirect=False,  # followed by hand, hop by hop through the guard
            backoff_factor=backoff_factor,
            status_forcelist=RETRY_STATUSES,
            allowed_methods=frozenset({"GET"}),
            respect_retry_after_header=True,
            # A hostile or buggy "Retry-After: 86400" must not park a worker for a day.
            retry_after_max=max_retry_after_s,
            # Hand back the last 429/5xx response instead of raising, so it becomes a reject.
            raise_on_status=False,
        )
        adapter = WatchedAdapter(
            max_retries=retry, pool_connections=4, pool_maxsize=max(1, concurrency), pool_block=True
        )
        self.session = requests.Session()
        self.session.headers["User-Agent"] = user_agent
        # The encodings read_body decodes (within its budget); nothing else is asked for.
        self.session.headers["Accept-Encoding"] = "gzip, deflate"
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self.watchdog = Watchdog()
        self._robots: dict[str, RobotFileParser] = {}
        self._robots_why: dict[str, str | None] = {}
        self._robots_lock = threading.Lock()
        self._count_lock = threading.Lock()
        self.requests = 0
        self.bytes = 0
        #: Network seconds of the slowest ``get`` so far (redirect hops and retries included).
        self.slowest_s = 0.0

    # -- lifecycle -------------------------------------------------------------------------
    def close(self) -> None:
        self.session.close()
        self.watchdog.close()

    def __enter__(self) -> PoliteFetcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def display(self, url: str) -> str:
        """``url`` as messages show it: relative to the shop when it is the shop's."""
        return self.guard.shop_relative(url) if self.guard is not None else url

    # -- robots.txt ------------------------------------------------------------------------
    def robots(self, url: str) -> RobotFileParser:
        """The parsed robots.txt of ``url``'s host, fetched once per host."""
        origin = _origin(url)
        # One lock for all hosts: robots.txt is fetched once per host, so contention is nil,
        # and it guarantees a host's robots.txt is read before any of its pages.
        with self._robots_lock:
            rp = self._robots.get(origin)
            if rp is None:
                rp = self._read_robots(origin)
                self._robots[origin] = rp
        return rp

    def _read_robots(self, origin: str) -> RobotFileParser:
        rp = RobotFileParser(origin + "/robots.txt")
        res = self._fetch(origin + "/robots.txt", ROBOTS_MAX_BYTES, truncate=True, obey_robots=False)
        if res.ok:
            rp.parse(res.content.decode("utf-8", errors="replace").splitlines())
            why = None  # its own rules say it
        elif res.status in (401, 403):
            rp.disallow_all = True
            why = f"HTTP {res.status}, which means disallow all"
        elif res.status is not None and 400 <= res.status < 500:
            rp.allow_all = True  # no robots.txt: everything is allowed
            why = f"HTTP {res.status}: no rules"
        else:
            # RFC 9309 2.3.1.4: an unreachable robots.txt (5xx, network) means "disallow all".
            log.warning("robots.txt of %s unreachable (%s): not crawling it", origin, res.error)
            rp.disallow_all = True
            why = f"unreachable ({res.error}), which RFC 9309 says means disallow all"
        self._robots_why[origin] = why
        delay = rp.crawl_delay(self.user_agent)
        if delay and self.limiter is not None:
            self.limiter.slow_down_to(1.0 / float(delay))
        elif delay:
            self.limiter = RateLimiter(1.0 / float(delay))
        return rp

    def allowed(self, url: str) -> bool:
        return self.robots(url).can_fetch(self.user_agent, url)

    def robots_verdict(self, url: str) -> str:
        """Why robots.txt answers as it does for ``url``, for a person to read."""
        self.robots(url)
        agent = self.user_agent.split("/", 1)[0]
        path = urlsplit(url).path or "/"
        verdict = "allows" if self.allowed(url) else "disallows"
        why = self._robots_why.get(_origin(url))
        return (f"robots.txt ({self.display(_origin(url) + '/robots.txt')}) {verdict} {path} for "
                f"{agent}" + (f": {why}" if why else ""))

    # -- fetching --------------------------------------------------------------------------
    def get(self, url: str, max_bytes: int | None = None) -> FetchResult:
        """GET ``url`` unless the guard or robots.txt forbids it, following allowed redirects;
        at most ``max_bytes`` of body (default: the fetcher's). Never raises for HTTP,
        network or policy trouble."""
        return self._fetch(url, max_bytes or self.max_bytes)

    def _fetch(self, url: str, max_bytes: int, *, truncate: bool = False, obey_robots: bool = True) -> FetchResult:
        watch = self.watchdog.watch(self.deadline_s)
        try:
            return self._follow(url, max_bytes, truncate, obey_robots, watch)
        finally:
            spent = watch.budget_s - watch.left_s
            with self._count_lock:
                self.slowest_s = max(self.slowest_s, spent)

    def _follow(self, url: str, max_bytes: int, truncate: bool, obey_robots: bool, watch: Watch) -> FetchResult:
        chain = [url]
        status: int | None = None
        while True:
            target = chain[-1]
            refusal = self._refusal(target, obey_robots)
            if refusal is not None:
                if len(chain) == 1:
                    return FetchResult(url, None, error=refusal)
                return FetchResult(url, status, error=f"redirected to {self.display(target)}: {refusal}")
            hop = self._hop(target, max_bytes, truncate, watch)
            if hop.location is None:
                return FetchResult(url, hop.status, hop.body, hop.content_type, hop.error)
            status = hop.status
            nxt = urlunsplit(urlsplit(urljoin(target, hop.location))._replace(fragment=""))
            if nxt in chain:
                hops = " -> ".join(self.display(u) for u in [*chain, nxt])
                return FetchResult(url, status, error=f"redirect loop: {hops}")
            if len(chain) > self.max_redirects:
                return FetchResult(url, status, error=(
                    f"too many redirects: more than {self.max_redirects} hops "
                    f"({self.display(url)} -> ... -> {self.display(nxt)})"))
            chain.append(nxt)

    def _refusal(self, url: str, obey_robots: bool) -> str | None:
        # The guard first: even robots.txt of a forbidden host must not be requested.
        if self.guard is not None and (why := self.guard.refusal(url)) is not None:
            return why
        if obey_robots and not self.allowed(url):
            return DISALLOWED
        return None

    def _hop(self, url: str, max_bytes: int, truncate: bool, watch: Watch) -> _Hop:
        if self.limiter is not None:
            self.limiter.acquire()  # our own pacing: outside the deadline's clock
        try:
            with watch.running():
                hop = self._exchange(url, max_bytes, truncate, watch)
        except DeadlineExceeded as e:
            return _Hop(error=str(e) or watch.reason)
        if watch.expired and hop.error is None:
            # The socket was shut mid-body: what arrived is not the whole answer.
            return _Hop(hop.status, hop.content_type, error=watch.reason)
        return hop

    def _exchange(self, url: str, max_bytes: int, truncate: bool, watch: Watch) -> _Hop:
        connect_s = max(0.001, min(self.timeout_s, watch.remaining()))
        try:
            resp = self.session.get(url, timeout=(connect_s, self.timeout_s), stream=True, allow_redirects=False)
        except requests.RequestException as e:
            return _Hop(error=watch.reason if watch.expired else f"{type(e).__name__}: {_root_cause(e)}")
        with resp:  # closes the connection unless its body was read to the end
            with self._count_lock:
                self.requests += 1
            status, ctype = resp.status_code, resp.headers.get("Content-Type", "")
            location = resp.headers.get("Location")
            if status in REDIRECT_STATUSES and location:
                declared = resp.headers.get("Content-Length", "")
                if declared.isdigit() and int(declared) <= SMALL_BODY_BYTES:
                    self._read(resp, SMALL_BODY_BYTES, truncate=True, watch=watch)  # keep-alive
                return _Hop(status, ctype, location=location)
            if status != 200:
                body, _ = self._read(resp, SMALL_BODY_BYTES, truncate=True, watch=watch)
                return _Hop(status, ctype, body, f"HTTP {status}")
            body, error = self._read(resp, max_bytes, truncate=truncate, watch=watch)
            return _Hop(status, ctype, body, error)

    def _read(self, resp: requests.Response, limit: int, *, truncate: bool, watch: Watch) -> tuple[bytes, str | None]:
        try:
            body = read_body(resp.raw, resp.headers, limit, truncate=truncate)
        except (TooLarge, UndecodableBody) as e:
            return b"", str(e)
        except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as e:
            if watch.expired:
                return b"", watch.reason
            return b"", f"body cut short: {type(e).__name__}: {_root_cause(e)}"
        with self._count_lock:
            self.bytes += len(body)
        return body, None


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _root_cause(e: BaseException) -> str:
    # requests wraps urllib3's MaxRetryError which wraps the socket error: report the last.
    for _ in range(10):  # bounded: a chain is short, but must never loop
        nxt = e.__cause__ or e.__context__
        if nxt is None:
            break
        e = nxt
    return str(e) or type(e).__name__
