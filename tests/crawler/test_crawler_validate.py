"""validate_image: good photos pass; bombs, truncation, junk and tiny images are rejected."""

from __future__ import annotations

import io
import struct
import zlib

import pytest
from PIL import Image

from street2shop.crawler.validate import ImageLimits, validate_image


def _encode(fmt: str, size: tuple[int, int] = (64, 48), mode: str = "RGB") -> bytes:
    buf = io.BytesIO()
    Image.new(mode, size, (200, 30, 90) if mode == "RGB" else 0).save(buf, format=fmt)
    return buf.getvalue()


def _png_claiming(width: int, height: int) -> bytes:
    """A real small PNG whose IHDR is rewritten to claim ``width x height`` (CRC fixed up),
    i.e. a decompression bomb's header: tiny file, enormous pixel count."""
    data = bytearray(_encode("PNG", (8, 8)))
    ihdr = 8  # after the signature: length(4) type(4) data(13) crc(4)
    assert data[ihdr + 4 : ihdr + 8] == b"IHDR"
    data[ihdr + 8 : ihdr + 16] = struct.pack(">II", width, height)
    crc = zlib.crc32(bytes(data[ihdr + 4 : ihdr + 21]))
    data[ihdr + 21 : ihdr + 25] = struct.pack(">I", crc)
    return bytes(data)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_good_images_pass_with_their_size(fmt: str) -> None:
    check = validate_image(_encode(fmt))
    assert check.ok and check.reason is None
    assert (check.width, check.height, check.format) == (64, 48, fmt)
    assert check.extension == {"JPEG": "jpg", "PNG": "png", "WEBP": "webp"}[fmt]


def test_decompression_bomb_rejected_from_the_header() -> None:
    # 50_000 x 50_000 = 2.5e9 pixels: beyond PIL's own bomb limit (2 x 89M) and ours.
    check = validate_image(_png_claiming(50_000, 50_000))
    assert not check.ok and "decompression bomb" in check.reason
    # 9_000 x 9_000 = 81M: below PIL's error threshold, above our max_pixels (40M):
    # rejected by our header check before a single pixel is decoded.
    check = validate_image(_png_claiming(9_000, 9_000))
    assert not check.ok and "too many pixels" in check.reason
    assert (check.width, check.height) == (9_000, 9_000)


def test_truncated_jpeg_rejected() -> None:
    data = _encode("JPEG", (256, 256))
    check = validate_image(data[: len(data) * 2 // 3])
    assert not check.ok and "truncated" in check.reason


def test_header_only_check_leaves_truncation_to_the_decoder_but_keeps_the_size_guards() -> None:
    data = _encode("JPEG", (256, 256))
    assert validate_image(data[: len(data) * 2 // 3], decode=False).ok  # the header is intact
    bomb = validate_image(_png_claiming(9_000, 9_000), decode=False)
    assert not bomb.ok and "too many pixels" in bomb.reason


def test_not_an_image_empty_and_too_large() -> None:
    assert validate_image(b"<html>oops</html>").reason == "not an image (unrecognised format)"
    assert validate_image(b"").reason == "empty file"
    data = _encode("JPEG")
    assert "too large" in validate_image(data, ImageLimits(max_bytes=len(data) - 1)).reason


def test_size_limits_and_formats() -> None:
    small = validate_image(_encode("PNG", (40, 20)), ImageLimits(min_side=32))
    assert not small.ok and small.reason == "too small: 40x20, min side 32"
    big = validate_image(_encode("PNG", (300, 10)), ImageLimits(min_side=1, max_side=256))
    assert not big.ok and "too big" in big.reason
    gif = validate_image(_encode("GIF", (64, 64), mode="L"))
    assert not gif.ok and gif.reason.startswith("format GIF not accepted")
    with pytest.raises(ValueError, match="min_side"):
        ImageLimits(min_side=100, max_side=50)
    with pytest.raises(ValueError, match="unsupported formats"):
        ImageLimits(formats=frozenset({"TIFF"}))


def test_sniff_names_what_the_bytes_are() -> None:
    from street2shop.crawler.validate import sniff

    assert [sniff(_encode(f)) for f in ("JPEG", "PNG", "WEBP")] == ["a JPEG image", "a PNG image", "a WEBP image"]
    assert sniff(_encode("GIF", mode="L")) == "a GIF image"
    assert sniff(b"\xef\xbb\xbf\n  <!DOCTYPE html><html>") == "HTML"
    assert sniff(b"Just words, no markup") == "text"
    assert sniff(b"\x00\x01\x02binary") == "binary data"
    assert sniff(b"") == "nothing"
    assert sniff(b"%PDF-1.7 ...") == "a PDF document"
