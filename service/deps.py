"""What the routers share, as FastAPI dependencies: the engine being served (swapped by a
reload), the service's settings, and the absolute URLs answers carry."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from street2shop.service.engine import SearchEngine
from street2shop.storage.store import ArtifactStore


class Served:
    """The engine being served, swapped atomically by ``/admin/reload``."""

    def __init__(self, engine: SearchEngine) -> None:
        self.engine = engine
        self.reload_lock = threading.Lock()


@dataclass(frozen=True)
class ServiceConfig:
    """What the app was created with that the routers need."""

    store: ArtifactStore
    admin_token: str | None
    public_url: str | None
    load: object  # (version | None) -> SearchEngine
    side_models: object  # (crawl version) -> the side models served for it (side_engine.SideModels)


def get_served(request: Request) -> Served:
    return request.app.state.served


def get_engine(request: Request) -> SearchEngine:
    """The engine, read once per request: a reload cannot change it mid-request."""
    return request.app.state.served.engine


def get_config(request: Request) -> ServiceConfig:
    return request.app.state.config


class Urls:
    """Absolute URLs of the service's own resources: ``--public-url`` when given, else the
    scheme, host and port the request came to."""

    def __init__(self, request: Request) -> None:
        public = request.app.state.config.public_url
        self.base = (public or str(request.base_url)).rstrip("/")

    def image(self, image_id: str) -> str:
        return f"{self.base}/images/{image_id}"

    def item(self, item_id: str) -> str:
        return f"{self.base}/items/{item_id}"


Engine = Annotated[SearchEngine, Depends(get_engine)]
Config = Annotated[ServiceConfig, Depends(get_config)]
AbsoluteUrls = Annotated[Urls, Depends(Urls)]

__all__ = ["AbsoluteUrls", "Config", "Engine", "Served", "ServiceConfig", "Urls", "get_config", "get_engine", "get_served"]
