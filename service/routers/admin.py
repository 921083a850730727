"""``GET /health`` (versions served, readiness) and ``POST /admin/reload`` (serve the newest
index without a restart)."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import APIRouter, Depends, Header, HTTPException

from street2shop.service.deps import Config, Engine, Served, get_served
from street2shop.service.schemas import ErrorDetail, Health, ReloadResponse, StreetStatus
from street2shop.storage.promotions import index_to_serve

router = APIRouter(tags=["admin"])


@router.get("/health", response_model=Health, summary="Versions served and readiness")
def health(engine: Engine, config: Config) -> Health:
    v = engine.versions
    return Health(
        status="ok" if engine.warmed.is_set() else "warming",
        evaluated=engine.precision_figures,
        localise=engine.localise.name,
        detects_garments=engine.detects_garments,
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
        side_models=config.side_models(v.crawl),
    )


@router.post(
    "/admin/reload",
    response_model=ReloadResponse,
    summary="Switch to the newest published index without restarting",
    responses={403: {"model": ErrorDetail, "description": "wrong or missing admin token"}},
)
def reload(
    config: Config, served: Annotated[Served, Depends(get_served)], x_admin_token: Annotated[str | None, Header()] = None,
) -> ReloadResponse:
    token = config.admin_token
    if token and not hmac.compare_digest((x_admin_token or "").encode(), token.encode()):
        raise HTTPException(403, "reload needs the X-Admin-Token header")
    # One reload at a time; searches keep running on the current engine meanwhile.
    with served.reload_lock:
        previous = served.engine.versions.index
        latest = index_to_serve(config.store)
        if latest.version != previous:
            fresh = config.load(latest.version)
            fresh.warm()  # the old engine serves until the new one is warm
            old, served.engine = served.engine, fresh
            # Requests already holding the old engine still finish: its batcher drains
            # its queue, and any later call on it embeds without batching.
            old.close()
        return ReloadResponse(changed=latest.version != previous, previous=previous, current=served.engine.versions.index)
