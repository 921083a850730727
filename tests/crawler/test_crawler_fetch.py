"""The polite fetcher against a scripted loopback server: Retry-After, retries, robots.txt,
rate limit."""

from __future__ import annotations

import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from street2shop.crawler.fetch import PoliteFetcher, RateLimiter


class _Scripted(BaseHTTPRequestHandler):
    """Answers from ``server.script``: path -> list of (status, headers, body), one per hit;
    the last entry repeats."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        srv = self.server
        with srv.lock:
            srv.hits[self.path] += 1
            srv.times.setdefault(self.path, []).append(time.monotonic())
            answers = srv.script.get(self.path, [(404, {}, b"nope")])
            status, headers, body = answers[min(srv.hits[self.path], len(answers)) - 1]
        self.send_response(status)
        for k, v in {"Content-Length": str(len(body)), **headers}.items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def server() -> Iterator[ThreadingHTTPServer]:
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Scripted)
    srv.daemon_threads = True
    srv.lock, srv.hits, srv.times = threading.Lock(), Counter(), {}
    srv.script = {"/robots.txt": [(200, {}, b"User-agent: *\nDisallow: /private\n")]}
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    srv.url = f"http://127.0.0.1:{srv.server_address[1]}"
    yield srv
    srv.shutdown()
    srv.server_close()
    thread.join()


def test_429_retry_after_is_honoured(server) -> None:
    server.script["/busy"] = [(429, {"Retry-After": "1"}, b"slow down"), (200, {}, b"ok")]
    with PoliteFetcher(backoff_factor=0.0) as f:
        res = f.get(server.url + "/busy")
    assert res.ok and res.content == b"ok"
    first, second = server.times["/busy"]
    assert 0.95 <= second - first < 2.0  # the server's 1 s, not the (zero) backoff


def test_5xx_retried_then_reported_not_raised(server) -> None:
    server.script["/flaky"] = [(503, {}, b""), (500, {}, b""), (200, {}, b"fine")]
    server.script["/down"] = [(503, {}, b"")]
    with PoliteFetcher(max_retries=2, backoff_factor=0.01) as f:
        assert f.get(server.url + "/flaky").content == b"fine"
        down = f.get(server.url + "/down")
    assert server.hits["/flaky"] == 3
    assert not down.ok and down.status == 503 and down.error == "HTTP 503"
    assert server.hits["/down"] == 3  # one attempt + max_retries


def test_robots_txt_disallow_is_honoured(server) -> None:
    server.script["/public"] = [(200, {}, b"hello")]
    server.script["/private/secret"] = [(200, {}, b"secret")]
    with PoliteFetcher() as f:
        assert f.get(server.url + "/public").ok
        blocked = f.get(server.url + "/private/secret")
    assert blocked.error == "disallowed by robots.txt" and blocked.status is None
    assert server.hits["/private/secret"] == 0  # never requested
    assert server.hits["/robots.txt"] == 1  # read once per host


def test_missing_robots_allows_and_unreachable_host_is_an_error(server) -> None:
    del server.script["/robots.txt"]  # 404: no rules
    server.script["/x"] = [(200, {}, b"x")]
    with PoliteFetcher() as f:
        assert f.get(server.url + "/x").ok
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with PoliteFetcher(max_retries=0, timeout_s=2) as f:
        res = f.get(f"http://127.0.0.1:{port}/x")
    assert not res.ok and res.status is None and res.error


def test_rate_limiter_reserves_tokens_in_order() -> None:
    now, slept = [0.0], []
    limiter = RateLimiter(rate=5, burst=1, clock=lambda: now[0], sleep=slept.append)
    waits = [limiter.acquire() for _ in range(4)]
    # Frozen clock: the first token is free, then one every 1/5 s, queued behind each other.
    assert waits == pytest.approx([0.0, 0.2, 0.4, 0.6])
    assert slept == pytest.approx([0.2, 0.4, 0.6])
    now[0] = 10.0  # a long pause refills the bucket, but only up to `burst`
    assert limiter.acquire() == 0.0
    assert limiter.acquire() == pytest.approx(0.2)
    with pytest.raises(ValueError, match="rate must be > 0"):
        RateLimiter(rate=0)


def test_rate_limit_holds_across_threads() -> None:
    limiter = RateLimiter(rate=50, burst=1)
    start = time.monotonic()
    threads = [threading.Thread(target=lambda: [limiter.acquire() for _ in range(5)]) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # 20 tokens at 50/s with a burst of 1: at least 19/50 s, whatever the thread count.
    assert time.monotonic() - start >= 19 / 50 - 0.01
