"""Settings, read through a function (never at import time)."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel

from street2shop.storage.remote import resolve_home


class Settings(BaseModel):
    #: an absolute local folder, or an fsspec URL such as ``s3://bucket/street2shop``
    home: Path | str


def get_settings() -> Settings:
    return Settings(home=resolve_home(os.environ.get("STREET2SHOP_HOME", "./.street2shop")))


def store_home(home: str | os.PathLike[str] | None) -> Path | str:
    """The store a command works on: ``--home`` when given, else ``$STREET2SHOP_HOME``.

    Commands take ``--home`` as a string, not a ``Path``: ``Path("s3://b/x")`` loses a slash.
    """
    return resolve_home(home) if home is not None else get_settings().home


__all__ = ["Settings", "get_settings", "store_home"]
