"""read_body's byte budget (while streaming, after decoding) and the watchdog's deadline."""

from __future__ import annotations

import gzip
import itertools
import socket
import threading
import time
import tracemalloc
import zlib
from collections.abc import Iterable, Iterator

import pytest

from street2shop.crawler.transfer import (
    CHUNK_BYTES,
    DeadlineExceeded,
    DeadlineRetry,
    TooLarge,
    UndecodableBody,
    Watchdog,
    read_body,
)


class _Raw:
    """Stands in for urllib3's streamed response: ``read(amt)`` from a (possibly endless)
    stream of pieces, counting what was taken from it."""

    def __init__(self, pieces: Iterable[bytes]):
        self._pieces = iter(pieces)
        self._buf = b""
        self.consumed = 0

    def read(self, amt: int, decode_content: bool | None = None) -> bytes:
        assert decode_content is False  # decoding is read_body's, under its budget
        while len(self._buf) < amt and (nxt := next(self._pieces, None)) is not None:
            self._buf += nxt
        out, self._buf = self._buf[:amt], self._buf[amt:]
        self.consumed += len(out)
        return out


def test_a_declared_length_over_the_limit_is_refused_unread() -> None:
    raw = _Raw(itertools.repeat(b"x" * 1000))
    with pytest.raises(TooLarge, match=r"^too large: Content-Length 52428800 > 1000 bytes \(nothing read\)$"):
        read_body(raw, {"Content-Length": "52428800"}, 1000)
    assert raw.consumed == 0


def test_an_endless_body_is_cut_off_while_streaming() -> None:
    raw = _Raw(itertools.repeat(b"<p>x</p>" * 128))
    with pytest.raises(TooLarge, match=r"^too large: more than 100000 bytes \(cut off while streaming\)$"):
        read_body(raw, {}, 100_000)
    assert raw.consumed <= 100_000 + CHUNK_BYTES


def test_the_limit_is_inclusive() -> None:
    assert read_body(_Raw([b"a" * 500, b"b" * 500]), {"Content-Length": "1000"}, 1000) == b"a" * 500 + b"b" * 500
    with pytest.raises(TooLarge):
        read_body(_Raw([b"a" * 1001]), {}, 1000)
    assert read_body(_Raw(itertools.repeat(b"r")), {}, 10, truncate=True) == b"r" * 10  # robots.txt's way


def test_a_gzip_bomb_is_inflated_only_up_to_the_budget() -> None:
    member = gzip.compress(b"\0" * 16 * 2**20, mtime=0)  # 16 MiB in about 16 KB
    raw = _Raw(itertools.repeat(member, 256))  # 4 GiB once inflated
    tracemalloc.start()
    try:
        with pytest.raises(TooLarge, match=r"^too large: more than 1000000 bytes once decompressed, from 65536 "
                                            r"bytes of gzip \(a decompression bomb\?\); cut off while streaming$"):
            read_body(raw, {"Content-Encoding": "gzip", "Content-Length": str(len(member) * 256)}, 1_000_000)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert raw.consumed == CHUNK_BYTES
    assert peak < 8 * 2**20  # a few times the budget, never one member's 16 MiB


def test_gzip_members_back_to_back_and_trailing_junk() -> None:
    body = gzip.compress(b"hello ", mtime=0) + gzip.compress(b"world", mtime=0)
    assert read_body(_Raw([body[:7], body[7:]]), {"Content-Encoding": "gzip"}, 100) == b"hello world"
    assert read_body(_Raw([body + b"\0\0junk"]), {"Content-Encoding": "x-gzip"}, 100) == b"hello world"
    with pytest.raises(UndecodableBody, match="^corrupt gzip body"):
        read_body(_Raw([b"not gzip at all"]), {"Content-Encoding": "gzip"}, 100)


def test_deflate_with_and_without_its_zlib_wrapper() -> None:
    text = b"<html>" + b"deflated " * 100 + b"</html>"
    raw_deflate = zlib.compressobj(wbits=-15)
    bare = raw_deflate.compress(text) + raw_deflate.flush()
    for body in (zlib.compress(text), bare):
        assert read_body(_Raw([body]), {"Content-Encoding": "deflate"}, 10_000) == text


def test_unknown_encodings_are_refused() -> None:
    with pytest.raises(UndecodableBody, match=r"^unsupported Content-Encoding 'br'"):
        read_body(_Raw([b"x"]), {"Content-Encoding": "br"}, 100)
    assert read_body(_Raw([b"plain"]), {"Content-Encoding": "identity"}, 100) == b"plain"


# -- the deadline --------------------------------------------------------------------------
class _Conn:
    """What the watch needs of a urllib3 connection: its socket."""

    def __init__(self, sock: socket.socket):
        self.sock = sock


@pytest.fixture()
def watched() -> Iterator[tuple[Watchdog, socket.socket, socket.socket]]:
    """A watchdog and a connected socket pair (ours, theirs), all closed after the test."""
    dog = Watchdog()
    ours, theirs = socket.socketpair()
    yield dog, ours, theirs
    dog.close()
    ours.close()
    theirs.close()


def test_the_watchdog_wakes_a_read_blocked_past_the_deadline(watched) -> None:
    dog, ours, theirs = watched
    theirs.sendall(b"x")  # a byte now and then would never trip a read timeout
    ours.settimeout(10)
    watch = dog.watch(0.3)
    t0 = time.monotonic()
    with watch.running():
        watch.attach(_Conn(ours))  # type: ignore[arg-type]
        assert ours.recv(1) == b"x"
        assert ours.recv(1) == b""  # blocked until the watchdog shut the socket down
    assert 0.25 < time.monotonic() - t0 < 2
    assert watch.expired and watch.reason == "deadline exceeded: no complete answer within 0.3 s"
    with pytest.raises(DeadlineExceeded):  # the budget is spent: no second attempt
        with watch.running():
            pass


def test_a_watch_that_finishes_in_time_never_fires(watched) -> None:
    dog, ours, theirs = watched
    watch = dog.watch(0.2)
    with watch.running():
        watch.attach(_Conn(ours))  # type: ignore[arg-type]
    time.sleep(0.4)  # past the deadline: the socket now serves someone else
    theirs.sendall(b"still open")
    assert ours.recv(10) == b"still open" and not watch.expired
    assert 0 < watch.left_s < 0.2


def test_the_budget_is_shared_by_every_hop_but_not_by_waits_outside() -> None:
    dog = Watchdog()
    try:
        watch = dog.watch(0.5)
        for _ in range(2):
            with watch.running():
                time.sleep(0.15)
            time.sleep(0.3)  # the crawler's own rate limiter, say: not counted
        # 0.3 s inside counted (more on a loaded machine); the 0.6 s outside would make it -0.4.
        assert -0.1 < watch.left_s <= 0.2
    finally:
        dog.close()


class _Response:
    def __init__(self, retry_after: str):
        self.headers = {"Retry-After": retry_after}


def test_a_retry_wait_longer_than_the_deadline_is_not_slept() -> None:
    dog = Watchdog()
    retry = DeadlineRetry(total=3, backoff_factor=0, respect_retry_after_header=True, retry_after_max=60)
    try:
        watch = dog.watch(1.0)
        t0 = time.monotonic()
        with pytest.raises(DeadlineExceeded, match=r"the next retry would wait 30 s, the server's Retry-After"):
            with watch.running():
                retry.sleep(_Response("30"))  # type: ignore[arg-type]
        assert time.monotonic() - t0 < 0.5
        short = dog.watch(5.0)
        with short.running():
            retry.sleep(_Response("1"))  # type: ignore[arg-type]  # affordable: slept
    finally:
        dog.close()


def test_watch_is_per_thread() -> None:
    """A connection used by another thread never reports to this thread's watch."""
    from street2shop.crawler.transfer import current_watch

    dog = Watchdog()
    seen: list[object] = []
    try:
        watch = dog.watch(1.0)
        with watch.running():
            assert current_watch() is watch
            t = threading.Thread(target=lambda: seen.append(current_watch()))
            t.start()
            t.join()
        assert seen == [None] and current_watch() is None
    finally:
        dog.close()
