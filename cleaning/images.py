"""Opening photos for the cleaning stages without letting one bad file stop a run.

A crawl can store truncated or non-image bytes (an injected fault, a CDN error page). The
cleaning stages must score such a file as unusable rather than crash, so :func:`open_rgb`
returns ``None`` for an image that cannot be decoded (the one decoder,
:func:`street2shop.storage.images.open_image`, says why).
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from street2shop.storage.images import UnreadableImageError, open_image


def open_rgb(path: str | Path) -> Image.Image | None:
    """Decode ``path`` fully as upright RGB, or return ``None`` when it is missing or unreadable."""
    try:
        return open_image(path)
    except UnreadableImageError:
        return None
