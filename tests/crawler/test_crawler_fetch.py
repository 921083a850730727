"""The polite fetcher against a scripted loopback server: Retry-After, retries, robots.txt,
rate limit; redirects hop by hop, the total deadline, bounded error bodies."""

from __future__ import annotations

import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from street2shop.crawler.fetch import PoliteFetcher, RateLimiter
from street2shop.crawler.guard import UrlGuard


class _Drip(bytes):
    """A body (or, with ``in_headers``, a header) sent one byte every ``interval_s``."""

    interval_s = 0.05
    in_headers = False


class _DripHeaders(_Drip):
    in_headers = True


class _Scripted(BaseHTTPRequestHandler):
    """Answers from ``server.script``: path -> list of (status, headers, body), one per hit;
    the last entry repeats. A ``_Drip`` body is sent a byte at a time."""

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
        try:
            if isinstance(body, _Drip) and body.in_headers:
                self.wfile.write(b"HTTP/1.1 200 OK\r\nX-Drip: ")
                for _ in range(10_000):
                    self.wfile.write(b"z")
                    time.sleep(body.interval_s)
                return
            self.send_response(status)
            for k, v in {"Content-Length": str(len(body)), **headers}.items():
                self.send_header(k, v)
            self.end_headers()
            if isinstance(body, _Drip):
                for i in range(len(body)):
                    self.wfile.write(body[i : i + 1])
                    time.sleep(body.interval_s)
            else:
                self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True


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


def test_same_origin_redirects_are_followed_hop_by_hop(server) -> None:
    server.script["/old"] = [(301, {"Location": "/moved"}, b"gone")]
    server.script["/moved"] = [(302, {"Location": "final?x=1#frag"}, b"")]
    server.script["/final?x=1"] = [(200, {"Content-Type": "text/html"}, b"<html>here</html>")]
    with PoliteFetcher(guard=UrlGuard(server.url)) as f:
        res = f.get(server.url + "/old")
    assert res.ok and res.content == b"<html>here</html>" and res.url == server.url + "/old"
    assert [server.hits[p] for p in ("/old", "/moved", "/final?x=1")] == [1, 1, 1]


def test_redirect_loops_chains_and_forbidden_targets_end_with_a_reason(server) -> None:
    server.script["/a"] = [(302, {"Location": "/b"}, b"")]
    server.script["/b"] = [(302, {"Location": "/a"}, b"")]
    for k in range(10):
        server.script[f"/hop{k}"] = [(307, {"Location": f"/hop{k + 1}"}, b"")]
    server.script["/to-private"] = [(302, {"Location": "/private/secret"}, b"")]
    server.script["/private/secret"] = [(200, {}, b"secret")]
    server.script["/to-other-port"] = [(302, {"Location": "http://127.0.0.1:9/x"}, b"")]
    with PoliteFetcher(guard=UrlGuard(server.url), max_redirects=3) as f:
        assert f.get(server.url + "/a").error == "redirect loop: /a -> /b -> /a"
        chain = f.get(server.url + "/hop0")
        assert chain.error == "too many redirects: more than 3 hops (/hop0 -> ... -> /hop4)" and chain.status == 307
        assert f.get(server.url + "/to-private").error == "redirected to /private/secret: disallowed by robots.txt"
        assert f.get(server.url + "/to-other-port").error == (
            "redirected to http://127.0.0.1:9/x: SSRF guard: 127.0.0.1:9 resolves to 127.0.0.1, a loopback "
            "address that is not the shop")
    assert server.hits["/hop3"] == 1 and server.hits["/hop4"] == 0
    assert server.hits["/private/secret"] == 0


@pytest.mark.parametrize("body", [_Drip(b"x" * 1000), _DripHeaders(b"")], ids=["body", "headers"])
def test_a_slow_drip_ends_at_the_total_deadline_and_is_not_retried(server, body: bytes) -> None:
    server.script["/drip"] = [(200, {}, body)]
    t0 = time.monotonic()
    with PoliteFetcher(deadline_s=0.5, timeout_s=5, max_retries=3) as f:
        res = f.get(server.url + "/drip")
        slowest = f.slowest_s
    elapsed = time.monotonic() - t0
    assert res.error == "deadline exceeded: no complete answer within 0.5 s" and not res.ok
    # A byte per 50 ms never trips the 5 s read timeout: without the deadline this takes
    # 50 s (the body) or 500 s (the headers). The slack is for a loaded machine.
    assert 0.5 <= slowest < 2 and elapsed < 5
    assert server.hits["/drip"] == 1


def test_a_retry_after_beyond_the_deadline_is_not_waited_for(server) -> None:
    server.script["/busy"] = [(429, {"Retry-After": "30"}, b"slow down"), (200, {}, b"ok")]
    t0 = time.monotonic()
    with PoliteFetcher(deadline_s=2, backoff_factor=0) as f:
        res = f.get(server.url + "/busy")
    assert res.error.startswith("deadline exceeded") and "Retry-After" in res.error
    assert time.monotonic() - t0 < 1 and server.hits["/busy"] == 1


def test_error_and_oversized_bodies_are_never_held_whole(server) -> None:
    server.script["/missing"] = [(404, {}, b"x" * 1_000_000)]
    server.script["/big"] = [(200, {}, b"y" * 2_000_000)]
    with PoliteFetcher(max_bytes=1_000_000) as f:
        missing = f.get(server.url + "/missing")
        big = f.get(server.url + "/big")
        small = f.get(server.url + "/big", max_bytes=3_000_000)
    assert missing.status == 404 and missing.error == "HTTP 404" and len(missing.content) == 64 * 1024
    assert big.error == "too large: Content-Length 2000000 > 1000000 bytes (nothing read)" and big.content == b""
    assert small.ok and len(small.content) == 2_000_000
