"""Settings, read through a function (never at import time)."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel


class Settings(BaseModel):
    home: Path


def get_settings() -> Settings:
    return Settings(home=Path(os.environ.get("STREET2SHOP_HOME", "./.street2shop")).expanduser().resolve())


__all__ = ["Settings", "get_settings"]
