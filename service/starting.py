"""The service while it starts: answers from the moment its port is bound.

``street2shop serve`` binds the socket first and serves a :class:`Starting` app at once;
the real app (torch, the model, the index: many seconds) is built in a background thread.
Until it is ready ``/health`` answers ``{"status": "warming"}`` and every other path a 503
with ``Retry-After``, in the service's one error shape; then every request goes to the real
app. This module imports nothing heavy (no torch, no FastAPI), so the first answer comes
within a second of the command starting.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

Scope = dict[str, Any]
Receive = Callable[[], Any]
Send = Callable[[dict[str, Any]], Any]
ASGIApp = Callable[[Scope, Receive, Send], Any]

WARMING = {"status": "warming", "detail": "loading the model and the index"}
STARTING = {"detail": "the service is starting: loading the model and the index", "code": "warming"}


class Starting:
    """An ASGI app that builds the real one in a thread and serves ``warming`` meanwhile.

    Args:
        build: makes the real app (runs in the background thread).
        on_error: called with the exception if ``build`` fails (the command stops the server).
    """

    def __init__(self, build: Callable[[], ASGIApp], on_error: Callable[[BaseException], None]) -> None:
        self.app: ASGIApp | None = None
        self.error: BaseException | None = None
        self._build, self._on_error = build, on_error
        self.ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="load", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        try:
            self.app = self._build()
        except BaseException as exc:  # noqa: BLE001 (reported by on_error, which stops the server)
            self.error = exc
            self._on_error(exc)
        finally:
            self.ready.set()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.app is not None:
            await self.app(scope, receive, send)
            return
        if scope["type"] != "http":
            return  # lifespan is off (uvicorn lifespan="off"); websockets are not served
        if scope["path"] == "/health":
            await _json(send, 200, WARMING)
        else:
            await _json(send, 503, STARTING, [(b"retry-after", b"5")])


async def _json(send: Send, status: int, body: dict, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    data = json.dumps(body).encode()
    await send({
        "type": "http.response.start", "status": status,
        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode()), *(headers or [])],
    })
    await send({"type": "http.response.body", "body": data})


__all__ = ["STARTING", "WARMING", "Starting"]
