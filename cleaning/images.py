"""Opening photos for the cleaning stages without letting one bad file stop a run.

A crawl can store truncated or non-image bytes (an injected fault, a CDN error page). The
cleaning stages must score such a file as unusable rather than crash, so every reader here
returns ``None`` for an image that cannot be decoded.
"""

from __future__ import annotations

import warnings
from pathlib import Path

from PIL import Image, UnidentifiedImageError

# What PIL raises for bytes it cannot decode. DecompressionBombError guards against a
# hostile "image" that would expand to gigabytes of pixels.
UNREADABLE_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    UnidentifiedImageError,
    ValueError,
    SyntaxError,
    Image.DecompressionBombError,
)


def open_rgb(path: str | Path) -> Image.Image | None:
    """Decode ``path`` fully as RGB, or return ``None`` when it is missing or unreadable."""
    try:
        with warnings.catch_warnings():
            # A file over PIL's pixel limit only warns; refuse it like any undecodable file
            # rather than expanding it to gigabytes.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                im.load()  # decode now: a truncated file fails here, not later
                return im.convert("RGB")
    except UNREADABLE_ERRORS:
        return None
