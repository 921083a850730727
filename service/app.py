"""The street2shop search API and its web page (FastAPI).

``create_app(home)`` loads the newest published index, the checkpoint it was built with and
the crawl it indexes (:class:`~street2shop.service.engine.SearchEngine`) and serves:

* ``POST /search``: a photo in, the top-k shop items out (optionally of one category);
* ``GET /items/{item_id}``, ``GET /items/{item_id}/street`` (reverse search),
  ``GET /images/{image_id}`` (the photo bytes);
* ``GET /health`` (versions served), ``POST /admin/reload`` (switch to the newest index);
* ``GET /``: a page to upload a photo and browse the results (``service/static``).

Defences, for a service that may face the internet (``tests/reliability`` attacks each):

* request bodies are limited at the HTTP layer (:class:`BodyLimit`): a declared
  ``Content-Length`` over the limit is refused before a byte of the body is read, and a
  chunked body is cut off once the limit is read, so an oversized upload is never spooled
  whole to disk; one photo per request;
* ``/admin/reload`` takes a token compared in constant time (``street2shop serve`` refuses
  to listen beyond loopback without one: :func:`check_exposure`);
* every answer carries ``X-Content-Type-Options: nosniff`` and a Content-Security-Policy
  (``frame-ancestors 'none'``; the page loads only its own script, style and photos);
* an unexpected error answers a bare 500 and is logged; no stack trace reaches a client;
* no file path is built from request input: photos are served by id from the engine's
  table of the store's own paths, ``/static`` by Starlette's checked lookup.

Versions switch without a restart: a reload builds a complete new engine off to the side and
then replaces one reference, so each request runs entirely on the engine it started with and
never sees a half-loaded mix. Endpoints are plain ``def`` functions: FastAPI runs them in its
thread pool, so decoding one upload overlaps with another's forward pass, and concurrent
uploads are embedded together by the engine's micro-batcher (``batch_max``, ``batch_wait_ms``).
"""

# No `from __future__ import annotations`: FastAPI reads the endpoint annotations at runtime,
# and they refer to the `Engine` alias defined inside create_app.
import hmac
import ipaddress
import logging
import mimetypes
import threading
import time
from pathlib import Path
from typing import Annotated

from fastapi import Depends, FastAPI, File, Header, HTTPException, Path as PathParam, Query, Request, UploadFile
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.datastructures import UploadFile as StarletteUploadFile
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from street2shop.crawler.validate import ImageLimits
from street2shop.retrieval.evaluation import LocaliseParams
from street2shop.service.engine import (
    DEFAULT_BATCH_MAX,
    DEFAULT_BATCH_WAIT_MS,
    DEFAULT_STREAMS,
    NotReady,
    SearchEngine,
    configure_torch_threads,
)
from street2shop.service.schemas import (
    ErrorDetail,
    Health,
    ItemDetail,
    Photo,
    ReloadResponse,
    SearchHit,
    SearchResponse,
    StreetHit,
    StreetResponse,
    StreetStatus,
)
from street2shop.service.looks import looks_router
from street2shop.service.outfits import outfits_router
from street2shop.service.side_engine import side_models
from street2shop.service.uploads import BadImage
from street2shop.storage.promotions import index_to_serve
from street2shop.storage.store import ArtifactStore

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).parent / "static"
MAX_K = 100

#: What a request body may hold beyond the photo itself: multipart boundaries and headers.
MULTIPART_OVERHEAD = 64 * 1024
#: Shortest admin token accepted when the service listens beyond loopback.
MIN_TOKEN_LENGTH = 16

#: The page's policy: its own script, style and photos (and the preview of the photo being
#: uploaded, a blob: URL); never framed. /docs loads Swagger UI from a CDN, so it keeps
#: only the framing rule.
CSP = (
    "default-src 'self'; img-src 'self' blob: data:; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
DOCS_CSP = "frame-ancestors 'none'"
_DOCS_PATHS = ("/docs", "/redoc")

#: How long reverse search waits for street photos still being embedded before answering 503.
STREET_WAIT_S = 2.0

_BAD_UPLOAD = {
    400: {"model": ErrorDetail, "description": "empty, corrupt or truncated image, or unknown category"},
    413: {"model": ErrorDetail, "description": "file too large, or too many pixels (decompression bomb)"},
    415: {"model": ErrorDetail, "description": "not an image, or an image format that is not accepted"},
}
_NOT_FOUND = {404: {"model": ErrorDetail, "description": "no such item or image"}}

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
    """ASGI middleware: 413 for a request body over ``max_bytes``, without reading it all.

    A ``Content-Length`` over the limit is answered at once (the body is never read); a
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
        if declared is not None:
            try:
                too_large = int(declared) > self.max_bytes
            except ValueError:
                too_large = False  # the HTTP server refuses a malformed length itself
            if too_large:
                response = JSONResponse({"detail": self._why(int(declared))}, status_code=413, headers={"Connection": "close"})
                await response(scope, receive, send)
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


async def _one_photo(request: Request) -> None:
    """400 for a form with more than one file (the form is parsed once; this reads it back)."""
    form = await request.form()
    files = sum(isinstance(value, StarletteUploadFile) for _, value in form.multi_items())
    if files > 1:
        raise HTTPException(400, f"one photo per request: the form holds {files} files")


class _Served:
    """The engine being served, swapped atomically by ``/admin/reload``."""

    def __init__(self, engine: SearchEngine) -> None:
        self.engine = engine
        self.reload_lock = threading.Lock()

def _photo(image_id: str, width: int | None = None, height: int | None = None) -> Photo:
    return Photo(image_id=image_id, url=f"/images/{image_id}", width=width, height=height)

def _item(engine: SearchEngine, item_id: str) -> dict:
    row = engine.items[item_id]
    return {
        "item_id": item_id,
        "product_id": row["product_id"],
        "category": row["category"],
        "colour": row["colour"],
        "title": row.get("title"),
        "shop_url": row.get("url"),
    }

def create_app(
    home: str | Path,
    index_version: str | None = None,
    *,
    limits: ImageLimits | None = None,
    admin_token: str | None = None,
    torch_threads: int | None = None,
    street_in_background: bool = True,
    inference_mode: str | None = None,
    localise: dict | None = None,
    batch_max: int = DEFAULT_BATCH_MAX,
    batch_wait_ms: float = DEFAULT_BATCH_WAIT_MS,
    streams: int = DEFAULT_STREAMS,
) -> FastAPI:
    """The API over the store at ``home``, serving ``index_version`` (default: the newest).

    Args:
        limits: upload limits (bytes, pixels, sides, formats); the crawler's defaults.
        admin_token: when set, ``/admin/reload`` requires it in the ``X-Admin-Token`` header.
        torch_threads: intra-op threads for inference (default: the CPUs this process may use).
        street_in_background: embed street photos for reverse search in a background thread
            (default) rather than before the app is returned.
        inference_mode: the model's inference backend (a ``models/fast.py`` mode name);
            default: the precision the evaluate stage chose for the served checkpoint.
        localise: the query-side localisation (``LocaliseParams`` fields); default: the one
            the evaluate stage scored the served checkpoint with.
        batch_max, batch_wait_ms: micro-batching of concurrent searches (``batch_max=1``: off);
            see :class:`~street2shop.service.batching.MicroBatcher`.
        streams: forward passes that may run at once (OpenVINO modes), each with its own
            batching thread and share of the threads.
    """
    store = ArtifactStore(home)
    configure_torch_threads(torch_threads)

    def load(version: str | None) -> SearchEngine:
        return SearchEngine(
            store,
            index_to_serve(store, version),
            limits=limits,
            street_in_background=street_in_background,
            inference_mode=inference_mode,
            localise=LocaliseParams(**localise) if localise is not None else None,
            batch_max=batch_max,
            batch_wait_ms=batch_wait_ms,
            streams=streams,
        )

    served = _Served(load(index_version))
    # ready means warm: the first passes run before /health says ok (searches meanwhile wait)
    threading.Thread(target=served.engine.warm, name="warm", daemon=True).start()
    app = FastAPI(
        title="street2shop search",
        summary="A shopper's photo of a garment in, the shop's matching items out.",
        version="1",
    )
    app.state.served = served
    upload_limit = served.engine.limits.max_bytes
    app.add_middleware(BodyLimit, max_bytes=upload_limit + MULTIPART_OVERHEAD)
    app.add_middleware(SecurityHeaders)

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> JSONResponse:
        # The trace goes to the log, never to the client.
        log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
        return JSONResponse({"detail": "internal error; it was logged"}, status_code=500)

    def engine() -> SearchEngine:
        return served.engine  # read once per request: a reload cannot change it mid-request

    Engine = Annotated[SearchEngine, Depends(engine)]
    app.include_router(outfits_router(store, engine))  # complete the look
    app.include_router(looks_router(store, engine))  # shop the look

    @app.post(
        "/search", response_model=SearchResponse, summary="Find shop items in a photo", responses=_BAD_UPLOAD,
        dependencies=[Depends(_one_photo)],
    )
    def search_photo(
        engine: Engine,
        image: Annotated[UploadFile, File(description="the shopper's photo (JPEG, PNG or WebP)")],
        k: Annotated[int, Query(ge=1, le=MAX_K, description="how many items to return")] = 20,
        category: Annotated[str | None, Query(description="only items of this category")] = None,
    ) -> Response:
        started = time.perf_counter()
        # Read one byte past the limit: enough to know it is too large without reading it all.
        data = image.file.read(engine.limits.max_bytes + 1)
        try:
            hits = engine.search_image(data, k, category)
        except BadImage as exc:
            raise HTTPException(exc.status, f"{image.filename or 'upload'}: {exc}") from None
        except KeyError:
            raise HTTPException(400, f"unknown category {category!r}; known: {engine.categories}") from None
        results = [
            SearchHit(
                **_item(engine, h["item_id"]),
                rank=rank,
                score=h["score"],
                image_url=f"/images/{h['image_id']}",
                item_url=f"/items/{h['item_id']}",
            )
            for rank, h in enumerate(hits, start=1)
        ]
        took = 1000 * (time.perf_counter() - started)
        body = SearchResponse(k=k, category=category, results=results, index_version=engine.versions.index, took_ms=took)
        # The hot path: returned as a Response, FastAPI skips re-validating the model it was
        # just built from (in another thread-pool hop) and json.dumps of a dict; response_model
        # still documents it.
        return Response(body.model_dump_json(), media_type="application/json")

    ItemId = Annotated[str, PathParam(description="item id (product x colour)")]

    def known_item(engine: SearchEngine, item_id: str) -> None:
        if item_id not in engine.items:
            raise HTTPException(404, f"unknown item {item_id!r}")

    @app.get("/items/{item_id}", response_model=ItemDetail, summary="An item with its photos", responses=_NOT_FOUND)
    def get_item(engine: Engine, item_id: ItemId) -> ItemDetail:
        known_item(engine, item_id)
        photos = engine.photos.get(item_id, {})
        return ItemDetail(
            **_item(engine, item_id),
            shop_photos=[_photo(**p) for p in photos.get("shop", [])],
            street_photos=[_photo(**p) for p in photos.get("street", [])],
        )

    @app.get(
        "/items/{item_id}/street",
        response_model=StreetResponse,
        summary="Reverse search: customer photos nearest to an item",
        responses={**_NOT_FOUND, 503: {"model": ErrorDetail, "description": "street photos still being embedded"}},
    )
    def item_street(
        engine: Engine,
        item_id: ItemId,
        k: Annotated[int, Query(ge=1, le=MAX_K, description="how many photos to return")] = 12,
    ) -> StreetResponse:
        known_item(engine, item_id)
        try:
            hits = engine.nearest_street(item_id, k, wait_s=STREET_WAIT_S)
        except NotReady as exc:
            raise HTTPException(503, str(exc), headers={"Retry-After": "5"}) from None
        return StreetResponse(
            item_id=item_id,
            results=[
                StreetHit(**_photo(h["image_id"]).model_dump(), score=h["score"], item_id=h["item_id"],
                          same_item=h["item_id"] == item_id)
                for h in hits
            ],
        )

    @app.get("/images/{image_id}", summary="A photo's bytes", response_class=FileResponse, responses=_NOT_FOUND)
    def get_image(engine: Engine, image_id: Annotated[str, PathParam(description="sha256 of the photo")]) -> FileResponse:
        path = engine.image_path.get(image_id)
        if path is None or not path.is_file():
            raise HTTPException(404, f"unknown image {image_id!r}")
        media_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        # Content-addressed: the bytes behind an id never change.
        return FileResponse(path, media_type=media_type, headers={"Cache-Control": "public, max-age=31536000, immutable"})

    @app.get("/health", response_model=Health, summary="Versions served and readiness")
    def health(engine: Engine) -> Health:
        v = engine.versions
        return Health(
            status="ok" if engine.warmed.is_set() else "warming",
            evaluated=engine.precision_figures,
            localise=engine.localise.name,
            index=v.index,
            checkpoint=v.checkpoint,
            crawl=v.crawl,
            factory=v.factory,
            inference_mode=engine.inference_mode,
            streams=engine.streams,
            vectors=engine.index.ntotal,
            items=len(engine.items),
            categories=engine.categories,
            street_photos=StreetStatus(**engine.street_status()),
            side_models=side_models(store, v.crawl),
        )

    @app.post(
        "/admin/reload",
        response_model=ReloadResponse,
        summary="Switch to the newest published index without restarting",
        responses={403: {"model": ErrorDetail, "description": "wrong or missing admin token"}},
    )
    def reload(x_admin_token: Annotated[str | None, Header()] = None) -> ReloadResponse:
        if admin_token and not hmac.compare_digest((x_admin_token or "").encode(), admin_token.encode()):
            raise HTTPException(403, "reload needs the X-Admin-Token header")
        # One reload at a time; searches keep running on the current engine meanwhile.
        with served.reload_lock:
            previous = served.engine.versions.index
            latest = index_to_serve(store)
            if latest.version != previous:
                fresh = load(latest.version)
                fresh.warm()  # the old engine serves until the new one is warm
                old, served.engine = served.engine, fresh
                # Requests already holding the old engine still finish: its batcher drains
                # its queue, and any later call on it embeds without batching.
                old.close()
            return ReloadResponse(changed=latest.version != previous, previous=previous, current=served.engine.versions.index)

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html")

    return app

__all__ = ["BodyLimit", "SecurityHeaders", "check_exposure", "create_app"]
