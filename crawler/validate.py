"""Image validation: is this download a usable photo, and if not, why not.

Every crawled image passes through ``validate_image`` before it is stored. The checks run
cheapest first and, crucially, the pixel budget is checked from the header *before* any
pixel is decoded, so a 100 000 x 100 000 "decompression bomb" costs a few bytes of parsing
rather than gigabytes of memory. Truncated files are rejected: PIL's
``LOAD_TRUNCATED_IMAGES`` is deliberately left off (a half-grey photo is noise for training).

The bytes decide what a download is, never the server's ``Content-Type`` or the file name:
a PNG served as ``photo.jpg`` is stored as the PNG it is, an HTML error page served as
``image/jpeg`` is rejected as not an image. ``sniff`` names what bytes are, for the page
side of the same rule (a JPEG at a page URL is not parsed as HTML) and for reject reasons.
"""

from __future__ import annotations

import io
import threading
import warnings
from dataclasses import dataclass

from PIL import Image, UnidentifiedImageError
from pydantic import BaseModel, Field, field_serializer, model_validator

from street2shop.storage.images import DECODE_ERRORS, UnreadableImageError, open_image

__all__ = ["DECODE_ERRORS", "FORMAT_EXTENSIONS", "ImageCheck", "ImageLimits", "sniff", "validate_image"]

#: Accepted PIL formats and the file extension their blobs get.
FORMAT_EXTENSIONS = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp", "HEIF": "heic"}
#: What a crawl accepts by default: the web's photo formats (HEIF is for phone uploads).
WEB_FORMATS = frozenset({"JPEG", "PNG", "WEBP"})


#: Leading bytes of formats worth naming in a reject reason.
_MAGIC = (
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"GIF87a", "a GIF image"),
    (b"GIF89a", "a GIF image"),
    (b"%PDF-", "a PDF document"),
    (b"PK\x03\x04", "a ZIP archive"),
    (b"\x1f\x8b", "gzip data"),
)


def sniff(data: bytes) -> str:
    """What ``data`` is, from its first bytes: "a JPEG image" ... "HTML", "text", "binary
    data" or "nothing". A cheap look, not a validation."""
    if not data:
        return "nothing"
    head = data[:1024]
    for magic, name in _MAGIC:
        if head.startswith(magic):
            return name
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "a WEBP image"
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return "text"  # UTF-16, the one text with NUL bytes
    if b"\x00" in head:
        return "binary data"
    if head.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"<"):
        return "HTML"
    return "text"


class ImageLimits(BaseModel):
    max_bytes: int = Field(20_000_000, gt=0)
    min_side: int = Field(32, ge=1)  # smaller than a thumbnail: not a usable photo
    max_side: int = Field(12_000, ge=1)
    max_pixels: int = Field(40_000_000, gt=0)
    formats: frozenset[str] = WEB_FORMATS

    @field_serializer("formats")
    def _sorted_formats(self, formats: frozenset[str]) -> list[str]:
        # Set order varies between processes (hash randomisation); the crawl fingerprint
        # hashes this dump, so it must be stable for a restarted process to resume.
        return sorted(formats)

    @model_validator(mode="after")
    def _consistent(self) -> ImageLimits:
        if self.min_side > self.max_side:
            raise ValueError(f"min_side {self.min_side} > max_side {self.max_side}")
        unknown = set(self.formats) - set(FORMAT_EXTENSIONS)
        if unknown:
            raise ValueError(f"unsupported formats {sorted(unknown)}; known: {sorted(FORMAT_EXTENSIONS)}")
        return self


@dataclass(frozen=True)
class ImageCheck:
    ok: bool
    reason: str | None = None  # why it was rejected; None when ok
    width: int | None = None
    height: int | None = None
    format: str | None = None  # PIL format name, "JPEG"

    @property
    def extension(self) -> str:
        return FORMAT_EXTENSIONS.get(self.format or "", "bin")


# warnings.catch_warnings swaps process-global state; serialise it so concurrent validations
# cannot restore each other's filters. Only the header parse runs under it (microseconds).
_WARNINGS_LOCK = threading.Lock()




def _open(data: bytes) -> Image.Image:
    with _WARNINGS_LOCK, warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        return Image.open(io.BytesIO(data))


def validate_image(data: bytes, limits: ImageLimits | None = None, *, decode: bool = True) -> ImageCheck:
    """Decide whether ``data`` is a usable photo within ``limits``; never raises on bad data.

    ``decode=False`` checks the header only (format, size, pixel count: everything decided
    before a pixel is decoded), for a caller that decodes the photo next anyway and handles
    a truncated file there (the search API), rather than decoding it twice.
    """
    limits = limits or ImageLimits()
    if not data:
        return ImageCheck(False, "empty file")
    if len(data) > limits.max_bytes:
        return ImageCheck(False, f"too large: {len(data)} bytes > {limits.max_bytes}")
    try:
        img = _open(data)  # reads the header only
    except UnidentifiedImageError:
        return ImageCheck(False, "not an image (unrecognised format)")
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        return ImageCheck(False, f"decompression bomb: {e}")
    except (OSError, SyntaxError, ValueError) as e:  # broken header
        return ImageCheck(False, f"corrupt or truncated header: {e}")
    w, h, fmt = img.width, img.height, img.format
    bad = lambda reason: ImageCheck(False, reason, w, h, fmt)  # noqa: E731
    if fmt not in limits.formats:
        return bad(f"format {fmt} not accepted (accepted: {sorted(limits.formats)})")
    if w * h > limits.max_pixels:
        return bad(f"too many pixels: {w}x{h} > {limits.max_pixels} (decompression bomb guard)")
    if min(w, h) < limits.min_side:
        return bad(f"too small: {w}x{h}, min side {limits.min_side}")
    if max(w, h) > limits.max_side:
        return bad(f"too big: {w}x{h}, max side {limits.max_side}")
    if not decode:
        return ImageCheck(True, None, w, h, fmt)
    try:
        img.verify()  # structure and checksums (PNG CRCs); the image is unusable after it
        open_image(data)  # every pixel decoded, as every reader will: this catches a truncated JPEG
    except UnreadableImageError as e:
        return bad(f"corrupt or truncated {fmt}: {e.__cause__ or e}")
    except DECODE_ERRORS as e:  # from verify()
        return bad(f"corrupt or truncated {fmt}: {e}")
    return ImageCheck(True, None, w, h, fmt)
