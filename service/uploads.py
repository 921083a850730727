"""Uploaded photos: validated from their header, then decoded once, upright and RGB.

A small upload can decode to a huge image (a 6000 x 6000 PNG of one colour is 35 KB on the
wire and 108 MB of pixels), and the API serves uploads from up to 40 request threads. So
uploads are decoded by a small pool of their own (:data:`DECODE_THREADS`; decoding is
CPU-bound, more at once than cores buys nothing), and an image over :data:`HELD_PIXELS` is
box-reduced there before it is handed on, so what each waiting request holds until its
embedding is done stays small. The pool matters beyond the count: glibc gives each thread
that allocates its own malloc arena and keeps what was freed there, so 24 request threads
that had each decoded one such PNG kept 2.5 GB between them; the pool's few threads keep
only their own. JPEGs are already decoded at a reduced scale (libjpeg's DCT scaling); the
reduction keeps both sides at least twice the model's input, as Pillow's own
``reducing_gap`` resize would.
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor

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

#: Threads that decode uploads, whatever the number of request threads.
DECODE_THREADS = max(2, len(os.sched_getaffinity(0)))
_decoder = ThreadPoolExecutor(DECODE_THREADS, thread_name_prefix="decode-upload")
#: Larger decoded images are reduced (by an integer factor) below this many pixels.
HELD_PIXELS = 1_000_000


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
        return _decoder.submit(_decode, data, min_size).result()
    except UnreadableImageError as exc:
        raise BadImage(f"corrupt or truncated {check.format}: {exc.__cause__ or exc}", 400) from exc


def _decode(data: bytes, min_size: int) -> Image.Image:
    """Upright RGB (as every photo in the store), box-reduced below :data:`HELD_PIXELS` with
    both sides kept >= 2 x ``min_size``."""
    image = open_image(data, min_size=min_size)
    w, h = image.size
    factor = min(math.ceil(math.sqrt(w * h / HELD_PIXELS)), min(w, h) // (2 * min_size))
    return image.reduce(factor) if factor > 1 else image
