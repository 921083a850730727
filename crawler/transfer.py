"""One HTTP exchange under hard limits: a total deadline, and a byte budget counted after
decompression, enforced while the bytes arrive.

``requests``' ``timeout`` bounds each socket read, not the exchange: a server that sends one
byte every second never trips a 10 s read timeout, and holds a worker for as long as it
likes (in the headers as well as in the body). ``Watchdog`` gives each request a deadline
and, when it passes, shuts the request's socket down from its own thread, which ends any
read blocked on it; the request then fails with ``DeadlineExceeded`` and is not retried.
The watchdog learns which socket a thread is using from ``WatchedAdapter``, whose
connections report themselves at every request they send.

``read_body`` reads a streamed response into memory, never more than ``limit`` bytes: a
``Content-Length`` over the limit is refused before a byte of the body is read, and a body
without one (chunked, or a lying header) is cut off as soon as it passes the limit. Content
encodings (gzip, deflate) are decoded here, with zlib's ``max_length``, so a gzip bomb is
inflated only as far as the budget and its bytes are counted as they come out, not as they
went in.
"""

from __future__ import annotations

import heapq
import itertools
import socket
import threading
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.util import Retry

__all__ = [
    "DeadlineExceeded",
    "DeadlineRetry",
    "TooLarge",
    "UndecodableBody",
    "Watch",
    "WatchedAdapter",
    "Watchdog",
    "current_watch",
    "read_body",
]

#: Bytes asked of the socket per read while streaming a body.
CHUNK_BYTES = 64 * 1024


class DeadlineExceeded(Exception):  # noqa: N818 (reads as a sentence where it is caught)
    """A request outlived its deadline.

    Deliberately not an ``OSError`` or ``HTTPError``: urllib3 retries those, and a request
    cut off at its deadline must end, not start again.
    """


class TooLarge(Exception):  # noqa: N818
    """A body over its byte budget (the message says by how much and how it was found)."""


class UndecodableBody(Exception):  # noqa: N818
    """A Content-Encoding this reader does not decode, or a corrupt compressed stream."""


# -- the deadline --------------------------------------------------------------------------
_local = threading.local()
#: Guards which watch owns which connection: taken by the watchdog thread and by workers.
_OWNERS = threading.Lock()


def current_watch() -> Watch | None:
    """The watch of the request this thread is making, if any."""
    return getattr(_local, "watch", None)


class Watch:
    """The deadline of one fetch: ``budget_s`` seconds of network time over all its requests
    (redirect hops, retries and their waits); time spent outside ``running()`` (the crawler's
    own rate limiter) does not count."""

    def __init__(self, dog: Watchdog, budget_s: float):
        self.dog = dog
        self.budget_s = budget_s
        self.left_s = budget_s
        self.expired = False
        self._since: float | None = None
        self._token: object | None = None
        self._conn: HTTPConnection | None = None

    @property
    def reason(self) -> str:
        return f"deadline exceeded: no complete answer within {self.budget_s:g} s"

    def remaining(self) -> float:
        if self._since is None:
            return self.left_s
        return self.left_s - (time.monotonic() - self._since)

    @contextmanager
    def running(self) -> Iterator[Watch]:
        """Count network time while the block runs; past the deadline the socket is shut."""
        if self.left_s <= 0:
            self.expired = True
            raise DeadlineExceeded(self.reason)
        token = object()
        with _OWNERS:
            self._token, self._since = token, time.monotonic()
        _local.watch = self
        self.dog.arm(time.monotonic() + self.left_s, self, token)
        try:
            yield self
        finally:
            _local.watch = None
            with _OWNERS:
                self.left_s -= time.monotonic() - (self._since or 0.0)
                self._token = self._since = None
                self._conn = None

    def attach(self, conn: HTTPConnection) -> None:
        """Called by a connection about to send a request for this watch."""
        with _OWNERS:
            if self.expired:
                raise DeadlineExceeded(self.reason)
            self._conn = conn
            conn._s2s_watch = self  # type: ignore[attr-defined]

    def _expire(self, token: object) -> None:
        """Watchdog thread: the deadline armed with ``token`` has passed."""
        with _OWNERS:
            if token is not self._token:
                return  # finished (or re-armed) in time
            self.expired = True
            conn = self._conn
            # The connection may be back in the pool and serving another fetch by now.
            sock = conn.sock if conn is not None and getattr(conn, "_s2s_watch", None) is self else None
            if sock is not None:
                try:
                    # socket.socket's shutdown, also for an SSL socket: it wakes a thread
                    # blocked in recv on it, where close() would not.
                    socket.socket.shutdown(sock, socket.SHUT_RDWR)
                except OSError:
                    pass


class Watchdog:
    """One thread that expires the deadlines of every request of a fetcher."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, Watch, object]] = []
        self._order = itertools.count()
        self._thread: threading.Thread | None = None
        self._closed = False

    def watch(self, budget_s: float) -> Watch:
        return Watch(self, budget_s)

    def arm(self, when: float, watch: Watch, token: object) -> None:
        with self._cond:
            if self._closed:
                return
            heapq.heappush(self._heap, (when, next(self._order), watch, token))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="crawl-watchdog", daemon=True)
                self._thread.start()
            self._cond.notify()

    def _run(self) -> None:
        with self._cond:
            while not self._closed:
                if not self._heap:
                    self._cond.wait()
                    continue
                wait = self._heap[0][0] - time.monotonic()
                if wait > 0:
                    self._cond.wait(wait)
                    continue
                _, _, watch, token = heapq.heappop(self._heap)
                watch._expire(token)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._heap.clear()
            self._cond.notify()
            thread = self._thread
        if thread is not None:
            thread.join()


class _ReportsToWatch:
    def request(self, *args: Any, **kwargs: Any) -> None:
        watch = current_watch()
        if watch is not None:
            watch.attach(self)  # type: ignore[arg-type]
        super().request(*args, **kwargs)  # type: ignore[misc]


class _WatchedHTTPConnection(_ReportsToWatch, HTTPConnection):
    pass


class _WatchedHTTPSConnection(_ReportsToWatch, HTTPSConnection):
    pass


class _WatchedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _WatchedHTTPConnection


class _WatchedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection


class WatchedAdapter(HTTPAdapter):
    """``requests`` adapter whose connections tell the thread's ``Watch`` their socket."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _WatchedHTTPPool, "https": _WatchedHTTPSPool}


class DeadlineRetry(Retry):
    """urllib3's ``Retry``, except that a wait the deadline cannot afford is not slept."""

    def sleep(self, response: Any = None) -> None:
        watch = current_watch()
        if watch is not None and watch.expired:
            raise DeadlineExceeded(watch.reason)  # cut off mid-answer: no retry at all
        if watch is not None:
            after = self.get_retry_after(response) if response is not None and self.respect_retry_after_header else None
            wait = after or self.get_backoff_time()
            if wait >= watch.remaining():
                watch.expired = True
                raise DeadlineExceeded(
                    f"{watch.reason} (the next retry would wait {wait:g} s"
                    + (", the server's Retry-After)" if after else ")")
                )
        super().sleep(response)


# -- the byte budget -----------------------------------------------------------------------
class _Inflater:
    """zlib that never returns more than it is asked for, whatever the compression ratio."""

    def __init__(self, encoding: str, wbits: int):
        self.encoding = encoding
        self._wbits = wbits
        self._z = zlib.decompressobj(wbits)
        self._members = 0  # complete gzip members (RFC 1952 allows several, back to back)
        self._out = 0
        self._done = False

    @classmethod
    def for_encoding(cls, header: str) -> _Inflater | None:
        encoding = header.strip().lower()
        if encoding in ("", "identity"):
            return None
        if encoding in ("gzip", "x-gzip"):
            return cls(encoding, 16 + zlib.MAX_WBITS)
        if encoding == "deflate":
            return cls(encoding, zlib.MAX_WBITS)
        raise UndecodableBody(f"unsupported Content-Encoding {header!r} (asked for gzip or deflate)")

    def feed(self, data: bytes, room: int) -> bytes:
        """Inflate ``data``; returns at most ``room`` bytes (the rest is not needed: a caller
        that asks for one byte more than its budget stops as soon as it gets it)."""
        out = bytearray()
        while data and not self._done and len(out) < room:
            try:
                out += self._z.decompress(data, room - len(out))
            except zlib.error as e:
                if self._wbits == zlib.MAX_WBITS and self._out == 0 and not out:
                    # "deflate" sent raw, without its zlib wrapper: common enough to accept.
                    self._wbits = -zlib.MAX_WBITS
                    self._z = zlib.decompressobj(self._wbits)
                    continue
                if self._members:
                    self._done = True  # bytes after the last complete member: ignored
                    break
                raise UndecodableBody(f"corrupt {self.encoding} body: {e}") from None
            if self._z.eof:
                self._members += 1
                data = self._z.unused_data
                self._z = zlib.decompressobj(self._wbits)
            else:
                data = self._z.unconsumed_tail
        self._out += len(out)
        return bytes(out)


def read_body(raw: Any, headers: Any, limit: int, *, truncate: bool = False) -> bytes:
    """The body of a streamed urllib3 response, decoded, at most ``limit`` bytes.

    Over the limit: ``TooLarge``, or with ``truncate`` the first ``limit`` bytes (robots.txt:
    RFC 9309 lets a crawler ignore what follows its first 500 KiB).
    """
    inflater = _Inflater.for_encoding(headers.get("Content-Encoding", ""))
    declared = headers.get("Content-Length", "")
    if inflater is None and not truncate and declared.isdigit() and int(declared) > limit:
        raise TooLarge(f"too large: Content-Length {declared} > {limit} bytes (nothing read)")
    out = bytearray()
    wire = 0
    while chunk := raw.read(CHUNK_BYTES, decode_content=False):
        wire += len(chunk)
        out += inflater.feed(chunk, limit - len(out) + 1) if inflater else chunk
        if len(out) > limit:
            if truncate:
                return bytes(out[:limit])
            if inflater is None:
                raise TooLarge(f"too large: more than {limit} bytes (cut off while streaming)")
            raise TooLarge(
                f"too large: more than {limit} bytes once decompressed, from {wire} bytes of "
                f"{inflater.encoding} (a decompression bomb?); cut off while streaming"
            )
    return bytes(out)
