"""The street2shop search API and its web page (FastAPI).

``create_app(home)`` loads the newest published index, the checkpoint it was built with and
the crawl it indexes (:class:`~street2shop.service.engine.SearchEngine`) and serves:

* ``POST /search``: a photo in, the top-k shop items out (optionally of one category);
* ``GET /items/{item_id}``, ``GET /items/{item_id}/street`` (reverse search),
  ``GET /images/{image_id}`` (the photo bytes);
* ``GET /health`` (versions served), ``POST /admin/reload`` (switch to the newest index);
* ``GET /``: a page to upload a photo and browse the results (``service/static``);
  ``/docs``: the API's documentation, its assets served locally.

Each concern is a router (``service/routers/``: search, items, admin, page; the looks and
outfits routers come with their engines); shared state reaches them through FastAPI
dependencies (``service/deps.py``). Every error answer has one shape (``service/errors.py``).

Defences, for a service that may face the internet (``tests/reliability`` attacks each):

* request bodies are limited at the HTTP layer (:class:`~street2shop.service.security.BodyLimit`):
  an oversized upload gets a 413 its sender reads, and is never spooled to disk; one photo
  per request;
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

from __future__ import annotations

import threading
from functools import partial
from pathlib import Path

from fastapi import FastAPI

from street2shop.crawler.validate import ImageLimits
from street2shop.retrieval.evaluation import LocaliseParams
from street2shop.service.deps import Served, ServiceConfig, get_engine
from street2shop.service.engine import (
    DEFAULT_BATCH_MAX,
    DEFAULT_BATCH_WAIT_MS,
    DEFAULT_STREAMS,
    SearchEngine,
    configure_torch_threads,
)
from street2shop.service.errors import install_error_handlers
from street2shop.service.looks import looks_router
from street2shop.service.outfits import outfits_router
from street2shop.service.routers import admin, items, page, search
from street2shop.service.security import BodyLimit, SecurityHeaders, check_exposure
from street2shop.service.side_engine import SIDE_INFERENCE, SideModels
from street2shop.storage.promotions import index_to_serve
from street2shop.storage.store import ArtifactStore

#: What a request body may hold beyond the photo itself: multipart boundaries and headers.
MULTIPART_OVERHEAD = 64 * 1024


def _load_engine(store: ArtifactStore, version: str | None, *, localise: dict | None, **options) -> SearchEngine:
    return SearchEngine(
        store, index_to_serve(store, version), localise=LocaliseParams(**localise) if localise is not None else None, **options,
    )


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
    public_url: str | None = None,
    side_inference_mode: str = SIDE_INFERENCE,
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
        public_url: the address clients reach the service at, for the absolute URLs in
            answers (default: the scheme and host each request came to).
        side_inference_mode: the fp32 path the outfits and looks engines run an upload's
            features on (``side_engine.SIDE_INFERENCE``: OpenVINO fp32, eager without it).
    """
    store = ArtifactStore(home)
    configure_torch_threads(torch_threads)
    load = partial(
        _load_engine, store, limits=limits, street_in_background=street_in_background, inference_mode=inference_mode,
        localise=localise, batch_max=batch_max, batch_wait_ms=batch_wait_ms, streams=streams,
    )
    served = Served(load(index_version))
    # ready means warm: the first passes run before /health says ok (searches meanwhile wait)
    threading.Thread(target=served.engine.warm, name="warm", daemon=True).start()
    app = FastAPI(
        title="street2shop search",
        summary="A shopper's photo of a garment in, the shop's matching items out.",
        version="1",
        docs_url=None,  # served by routers/page.py from local files
        redoc_url=None,
    )
    app.state.served = served
    app.state.config = ServiceConfig(store=store, admin_token=admin_token, public_url=public_url, load=load,
                                     side_models=SideModels(store))
    app.add_middleware(BodyLimit, max_bytes=served.engine.limits.max_bytes + MULTIPART_OVERHEAD)
    app.add_middleware(SecurityHeaders)
    install_error_handlers(app)
    for router in (search.router, items.router, admin.router, page.router):
        app.include_router(router)
    engine = partial(get_engine_of, served)
    app.include_router(outfits_router(store, engine, side_inference_mode))  # complete the look
    app.include_router(looks_router(store, engine, side_inference_mode))  # shop the look
    page.mount_static(app)
    return app


def get_engine_of(served: Served) -> SearchEngine:
    """The engine being served, for the looks and outfits routers (which take a callable)."""
    return served.engine


__all__ = ["MULTIPART_OVERHEAD", "check_exposure", "create_app", "get_engine"]
