"""An oversized upload from a client that keeps sending: it reads the 413 the server decided,
not a connection reset (``service/security.py``, ``BodyLimit``)."""

from __future__ import annotations

import json
import socket
import time
from urllib.parse import urlsplit

import pytest

pytestmark = pytest.mark.slow

MB = 1 << 20


def _send_then_read(url: str, declared: int, send: int) -> tuple[bytes, int]:
    """Send headers declaring ``declared`` bytes, then ``send`` bytes of body, then read."""
    parts = urlsplit(url)
    sent = 0
    with socket.create_connection((parts.hostname, parts.port), timeout=60) as s:
        s.sendall(
            b"POST /search HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
            + f"Content-Length: {declared}\r\n\r\n".encode()
        )
        chunk = b"\0" * MB
        while sent < send:
            s.sendall(chunk)  # a reset here is what the client saw before
            sent += len(chunk)
        s.settimeout(10)
        answer = b""
        while part := s.recv(65536):
            answer += part
    return answer, sent


def test_a_client_sending_150_mb_reads_the_413(live_url) -> None:
    answer, sent = _send_then_read(live_url, 150 * MB, 150 * MB)
    assert sent == 150 * MB
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413")
    assert json.loads(body)["code"] == "too_large" and "at most" in json.loads(body)["detail"]


def test_a_client_sending_nothing_gets_the_413_at_once(live_url) -> None:
    started = time.monotonic()
    answer, _ = _send_then_read(live_url, 150 * MB, 0)
    assert answer.startswith(b"HTTP/1.1 413")
    assert time.monotonic() - started < 5  # answered from the length, closed after a pause
