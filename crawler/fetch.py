"""A polite HTTP fetcher: retries with backoff, Retry-After, robots.txt, a rate limit.

One ``requests.Session`` is shared by every worker thread; its connection pool is sized to
the crawl's concurrency so threads never wait on each other for a socket. Retries are
urllib3's ``Retry`` (429 and 5xx, exponential backoff, the server's ``Retry-After``
honoured up to a cap), not a hand-written loop. ``get`` never raises for HTTP or network
trouble: it returns a ``FetchResult`` whose ``error`` says what went wrong, because to a
crawler a failed URL is data (a reject row), not an exception.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit
from urllib.robotparser import RobotFileParser

import requests
from requests.adapters import HTTPAdapter
from urllib3.util import Retry

__all__ = ["DEFAULT_USER_AGENT", "FetchResult", "PoliteFetcher", "RateLimiter"]

log = logging.getLogger(__name__)

#: Robots rules are matched against the product token, the part before the slash.
DEFAULT_USER_AGENT = "street2shop-crawler/0.1 (+https://github.com/street2shop/street2shop)"

RETRY_STATUSES = (429, 500, 502, 503, 504)


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


class PoliteFetcher:
    """GETs URLs the way a well-behaved crawler should. Thread-safe; use as a context manager.

    Retries (of any kind) happen inside urllib3 and do not pass through the rate limiter,
    which paces first attempts only; the backoff and ``Retry-After`` waits already space
    the retries out.
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
    ):
        self.user_agent = user_agent
        self.timeout_s = timeout_s
        self.limiter = RateLimiter(rate_limit_rps, burst=max(1, concurrency)) if rate_limit_rps else None
        retry = Retry(
            total=max_retries,
            connect=max_retries,
            read=max_retries,
            status=max_retries,
            backoff_factor=backoff_factor,
            status_forcelist=RETRY_STATUSES,
            allowed_methods=frozenset({"GET"}),
            respect_retry_after_header=True,
            # A hostile or buggy "Retry-After: 86400" must not park a worker for a day.
            retry_after_max=max_retry_after_s,
            # Hand back the last 429/5xx response instead of raising, so it becomes a reject.
            raise_on_status=False,
        )
        adapter = HTTPAdapter(
            max_retries=retry, pool_connections=4, pool_maxsize=max(1, concurrency), pool_block=True
        )
        self.session = requests.Session()
        self.session.headers["User-Agent"] = user_agent
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self._robots: dict[str, RobotFileParser] = {}
        self._robots_lock = threading.Lock()
        self._count_lock = threading.Lock()
        self.requests = 0
        self.bytes = 0

    # -- lifecycle -------------------------------------------------------------------------
    def close(self) -> None:
        self.session.close()

    def __enter__(self) -> PoliteFetcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- robots.txt ------------------------------------------------------------------------
    def robots(self, url: str) -> RobotFileParser:
        """The parsed robots.txt of ``url``'s host, fetched once per host."""
        parts = urlsplit(url)
        origin = f"{parts.scheme}://{parts.netloc}"
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
        res = self._get(origin + "/robots.txt")
        if res.ok:
            rp.parse(res.content.decode("utf-8", errors="replace").splitlines())
        elif res.status in (401, 403):
            rp.disallow_all = True
        elif res.status is not None and 400 <= res.status < 500:
            rp.allow_all = True  # no robots.txt: everything is allowed
        else:
            # RFC 9309 2.3.1.4: an unreachable robots.txt (5xx, network) means "disallow all".
            log.warning("robots.txt of %s unreachable (%s): not crawling it", origin, res.error)
            rp.disallow_all = True
        delay = rp.crawl_delay(self.user_agent)
        if delay and self.limiter is not None:
            self.limiter.slow_down_to(1.0 / float(delay))
        elif delay:
            self.limiter = RateLimiter(1.0 / float(delay))
        return rp

    def allowed(self, url: str) -> bool:
        return self.robots(url).can_fetch(self.user_agent, url)

    # -- fetching --------------------------------------------------------------------------
    def get(self, url: str) -> FetchResult:
        """GET ``url`` unless robots.txt forbids it; never raises for HTTP/network errors."""
        if not self.allowed(url):
            return FetchResult(url, None, error="disallowed by robots.txt")
        return self._get(url)

    def _get(self, url: str) -> FetchResult:
        if self.limiter is not None:
            self.limiter.acquire()
        try:
            resp = self.session.get(url, timeout=self.timeout_s)
            content = resp.content
        except requests.RequestException as e:
            return FetchResult(url, None, error=f"{type(e).__name__}: {_root_cause(e)}")
        with self._count_lock:
            self.requests += 1
            self.bytes += len(content)
        error = None if resp.status_code == 200 else f"HTTP {resp.status_code}"
        return FetchResult(url, resp.status_code, content, resp.headers.get("Content-Type", ""), error)


def _root_cause(e: BaseException) -> str:
    # requests wraps urllib3's MaxRetryError which wraps the socket error: report the last.
    for _ in range(10):  # bounded: a chain is short, but must never loop
        nxt = e.__cause__ or e.__context__
        if nxt is None:
            break
        e = nxt
    return str(e) or type(e).__name__
