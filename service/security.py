"""The service's defences at the HTTP layer (``tests/reliability`` attacks each).

* :class:`BodyLimit`: a request body over the limit gets a 413 in the service's error shape.
  A declared ``Content-Length`` over the limit is answered at once, before a byte of the body
  is read; then the body that keeps coming is read and dropped (never stored; up to
  :data:`DRAIN_MAX`, until the sender pauses for :data:`DRAIN_IDLE_S`) before the connection
  closes, so a client still sending reads the 413 instead of a connection reset. A chunked
  body is cut off once the limit is read.
* :class:`SecurityHeaders`: ``nosniff``, a Content-Security-Policy and no framing on every answer.
* :func:`check_exposure`: ``street2shop serve`` refuses to listen beyond loopback without an
  admin token.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

#: Shortest admin token accepted when the service listens beyond loopback.
MIN_TOKEN_LENGTH = 16
#: The most of an oversized body read (and dropped) after its 413, so that its sender reads
#: the answer; and how long a pause in the sending ends that early.
DRAIN_MAX = 512 * 1024 * 1024
DRAIN_IDLE_S = 1.0

#: The page's policy: its own script, style and photos (and the preview of the photo being
#: uploaded, a blob: URL); never framed. /docs and /redoc load their own assets from /static.
CSP = (
    "default-src 'self'; img-src 'self' blob: data:; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
#: Swagger UI and ReDoc start themselves with an inline script (served by us, not a CDN).
DOCS_CSP = "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; worker-src 'self' blob:; frame-ancestors 'none'"
_DOCS_PATHS = ("/docs", "/redoc")


def check_exposure(host: str, admin_token: str | None) -> None:
    """Refuse (ValueError, saying why) to serve beyond loopback without an admin token:
    anyone who can reach the port could otherwise make the service reload."""
    if _is_loopback(host):
        return
    if not admin_token:
        raise ValueError(
            f"listening on {host} exposes POST /admin/reload beyond this machine: set an admin token "
            "(--admin-token or STREET2SHOP_ADMIN_TOKEN), or listen on 127.0.0.1"
        )
    if len(admin_token) < MIN_TOKEN_LENGTH:
        raise ValueError(f"the admin token is {len(admin_token)} characters; at least {MIN_TOKEN_LENGTH} are needed off loopback")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a host name: it may resolve to anything
        return False


class BodyLimit:
    """ASGI middleware: 413 for a request body over ``max_bytes``, without storing it.

    A ``Content-Length`` over the limit is drained and answered before the endpoint runs; a
    body without one (chunked) is counted as it arrives and cut off at the limit: the
    endpoint's body parser gets an HTTP 413 instead of the rest.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        try:
            too_large = declared is not None and int(declared) > self.max_bytes
        except ValueError:
            too_large = False  # the HTTP server refuses a malformed length itself
        if too_large:
            await _refuse_then_drain(receive, send, self._why(int(declared)))
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise HTTPException(413, self._why(seen, at_least=True), headers={"Connection": "close"})
            return message

        await self.app(scope, counted, send)

    def _why(self, size: int, at_least: bool = False) -> str:
        return f"request body of {'more than ' if at_least else ''}{size} bytes; at most {self.max_bytes} are accepted"


async def _refuse_then_drain(receive: Receive, send: Send, detail: str) -> None:
    """Send the whole 413 (its ``Content-Length`` tells the client it is complete), keep the
    response open while the request body still arrives, dropping it, then close.

    The response is finished only after the drain: an ASGI server stops delivering the body
    once the response is complete, and closing a connection with unread data resets it.
    """
    body = json.dumps({"detail": detail, "code": "too_large"}).encode()
    await send({
        "type": "http.response.start", "status": 413,
        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), (b"connection", b"close")],
    })
    await send({"type": "http.response.body", "body": body, "more_body": True})
    drained = 0
    try:
        while drained <= DRAIN_MAX:
            message = await asyncio.wait_for(receive(), DRAIN_IDLE_S)
            if message["type"] != "http.request":
                break
            drained += len(message.get("body", b""))
            if not message.get("more_body", False):
                break
    except TimeoutError:
        pass  # the sender paused (or sends nothing): it has its answer
    await send({"type": "http.response.body", "body": b""})


class SecurityHeaders:
    """ASGI middleware: ``nosniff``, a Content-Security-Policy and no framing on every answer."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        csp = DOCS_CSP if scope["path"].startswith(_DOCS_PATHS) else CSP
        extra = [
            (b"x-content-type-options", b"nosniff"),
            (b"content-security-policy", csp.encode()),
            (b"x-frame-options", b"DENY"),
            (b"referrer-policy", b"no-referrer"),
        ]

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        await self.app(scope, receive, with_headers)


__all__ = ["CSP", "DOCS_CSP", "BodyLimit", "SecurityHeaders", "check_exposure"]
