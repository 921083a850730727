"""Uploaded photos: validated from their header, then decoded once, upright and RGB."""

from __future__ import annotations

from PIL import Image

from street2shop.crawler.validate import ImageLimits, validate_image
from street2shop.storage.images import UnreadableImageError, open_image


class BadImage(ValueError):
    """An uploaded file is not a usable photo; ``status`` is the HTTP status it deserves."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


#: validate_image reasons (by prefix) that are about size rather than a broken file.
_TOO_LARGE = ("too large", "too many pixels", "too big", "decompression bomb")
_UNSUPPORTED = ("not an image", "format ")


def decode_upload(data: bytes, limits: ImageLimits, min_size: int) -> Image.Image:
    """Validate an uploaded photo (size from the header before any pixel is decoded) and
    decode it to RGB, or raise :class:`BadImage` with the reason and an HTTP status.

    ``min_size``: JPEGs are decoded at a reduced scale (libjpeg DCT scaling) as long as both
    sides stay >= ``min_size`` (the model's input size), as the embedding path does for files.
    """
    check = validate_image(data, limits, decode=False)  # header only: decoded once, below
    if not check.ok:
        reason = check.reason or "unusable image"
        if reason.startswith(_TOO_LARGE):
            raise BadImage(reason, 413)
        if reason.startswith(_UNSUPPORTED):
            raise BadImage(reason, 415)
        raise BadImage(reason, 400)
    try:
        return open_image(data, min_size=min_size)  # EXIF-upright, as every photo in the store
    except UnreadableImageError as exc:
        raise BadImage(f"corrupt or truncated {check.format}: {exc.__cause__ or exc}", 400) from exc
