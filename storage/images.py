"""The one way street2shop turns image bytes into pixels: :func:`open_image`.

Every decoder (the model's preprocessing, the cleaning stages, the white-box baselines,
the report's thumbnails, the service's uploads, bring-your-own CSV checks) calls it, so a
photo is the same picture everywhere:

* **EXIF orientation applied.** A phone stores an upright portrait photo as landscape pixels
  plus an orientation tag; a decoder that ignores the tag embeds the garment sideways.
* **RGB**, whatever the file's mode (palette, CMYK, greyscale; alpha is dropped).
* **Refused when it is a decompression bomb**: more pixels than PIL's ``MAX_IMAGE_PIXELS``
  is an error, checked from the header before a pixel is decoded (no thread-unsafe warning
  filters needed).
* **HEIC/HEIF too** (the format iPhones save by default): ``pillow-heif``'s opener is
  registered with Pillow here, so every reader above decodes it.
* **Decoded at reduced size on request**: ``min_size`` lets libjpeg's DCT scaling decode a
  large JPEG at 1/2, 1/4 or 1/8 scale as long as both sides stay at least ``min_size``
  (a 12-megapixel phone photo headed for 224 px then decodes several times faster).

Every failure raises :class:`UnreadableImageError` naming the file; :data:`DECODE_ERRORS` is
what PIL raises for bytes it cannot decode, for callers that validate without this helper.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import pillow_heif
from PIL import Image, ImageOps, UnidentifiedImageError

pillow_heif.register_heif_opener()

#: What PIL raises while reading a corrupt, truncated or oversized image.
DECODE_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    SyntaxError,
    ValueError,
    UnidentifiedImageError,
    Image.DecompressionBombError,
)


class UnreadableImageError(ValueError):
    """An image is missing, truncated, too large or not an image; the message names it."""


ImageSource = str | os.PathLike[str] | bytes


def _name(source: ImageSource) -> str:
    return "uploaded bytes" if isinstance(source, bytes) else repr(str(source))


def open_image(source: ImageSource, min_size: int | None = None) -> Image.Image:
    """Decode ``source`` (a path or the file's bytes) to an upright RGB image.

    ``min_size``: decode a JPEG at a reduced scale keeping both sides >= ``min_size``.
    Raises :class:`UnreadableImageError` for anything that is not a usable image.
    """
    try:
        stream = io.BytesIO(source) if isinstance(source, bytes) else Path(source)
        with Image.open(stream) as image:
            w, h = image.size
            limit = Image.MAX_IMAGE_PIXELS
            if limit is not None and w * h > limit:
                raise Image.DecompressionBombError(f"{w}x{h} = {w * h} pixels is more than the limit of {limit}")
            if min_size is not None:
                image.draft("RGB", (min_size, min_size))
            image.load()  # decode now, inside the try: a truncated file fails here
            return ImageOps.exif_transpose(image).convert("RGB")
    except DECODE_ERRORS as exc:
        raise UnreadableImageError(f"cannot read image {_name(source)}: {exc}") from exc


__all__ = ["DECODE_ERRORS", "UnreadableImageError", "open_image"]
