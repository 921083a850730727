"""Settings, read through a function (never at import time)."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel


class Settings(BaseModel):
    home: Path


def get_settings() -> Settings:
    return Settings(home=Path(os.environ.get("STREET2SHOP_HOME", "./.street2shop")).expanduser().resolve())


def get_store():
    """The artifact store under the configured home."""
    from street2shop.storage.store import ArtifactStore

    return ArtifactStore(get_settings().home)


__all__ = ["Settings", "get_settings", "get_store"]
