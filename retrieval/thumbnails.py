"""Small JPEG thumbnails inlined in the self-contained HTML reports (evaluate, outfits, looks)."""

from __future__ import annotations

import base64
import io
from html import escape
from pathlib import Path

from street2shop.storage.images import UnreadableImageError, open_image

#: a thumbnail's longest side in the reports, in pixels
THUMB_PX = 96


def thumbnail_data_uri(path: str | Path, size: int = THUMB_PX) -> tuple[str, int]:
    """A ``data:image/jpeg;base64`` URI of a small JPEG thumbnail of the photo at ``path``,
    and the thumbnail's width; ValueError when the photo cannot be read."""
    try:
        image = open_image(path)
    except UnreadableImageError as exc:
        raise ValueError(f"cannot read image for the report: {path}: {exc}") from exc
    image.thumbnail((size, size))
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=80)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii"), image.width


def thumb_img(path: str | None, side: int = THUMB_PX, mark: str = "") -> str:
    """An ``<img>`` of the photo at ``path`` (class ``mark``), or nothing: a report shows what it can."""
    if not path:
        return ""
    try:
        uri, width = thumbnail_data_uri(path, side)
    except Exception:  # noqa: BLE001 - a report shows what it can
        return ""
    cls = f"class=\"{escape(mark)}\" " if mark else ""
    return f"<img {cls}src=\"{uri}\" width=\"{width}\">"
