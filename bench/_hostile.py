"""A corpus of hostile uploads for the search API, made in memory (nothing downloaded).

Each :class:`Hostile` is one file the ``image`` field of ``POST /search`` receives, with the
answers it may get: a usable photo in an odd encoding (CMYK, 16-bit, palette, alpha, EXIF
rotation) must be searched (200); anything else must be refused with a clear 4xx (bombs 413,
formats that are not accepted 415, broken files 400). Never a 5xx, never a hang. Used by
``tests/reliability/test_api_hostile.py`` and ``bench/reliability.py`` (``hostile``, and
mixed into ``soak``).

Beyond the files: the requests that attack the HTTP layer and the paths (a 150 MB body
declared or streamed, 200 files in one form, path traversal on every path parameter and
``/static``), sent over raw connections so that nothing normalises them on the way.

The bombs are small files that declare (or decompress to) huge images; they are built
chunk by chunk, so making them costs a few MB, not the gigabytes they would decode to.
"""

from __future__ import annotations

import http.client
import io
import select
import socket
import struct
import uuid
import zlib
from dataclasses import dataclass
from functools import cache
from urllib.parse import urlsplit

from PIL import Image, ImageDraw

OK = frozenset({200})


@dataclass(frozen=True)
class Hostile:
    name: str
    data: bytes
    filename: str = "upload.jpg"
    content_type: str = "image/jpeg"
    #: statuses a correct service may answer
    expect: frozenset[int] = frozenset({400})


def _photo(size: tuple[int, int] = (160, 120), mode: str = "RGB") -> Image.Image:
    """A small drawn garment photo (a coloured shape on a light background)."""
    image = Image.new("RGB", size, (235, 232, 228))
    pen = ImageDraw.Draw(image)
    w, h = size
    pen.rectangle((w // 4, h // 5, 3 * w // 4, 4 * h // 5), fill=(180, 40, 60))
    pen.ellipse((w // 3, h // 3, w // 2, h // 2), fill=(30, 60, 200))
    return image.convert(mode) if mode != "RGB" else image


def _save(image: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt, **kw)
    return buf.getvalue()


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_bomb(side: int = 12_000) -> bytes:
    """A greyscale PNG of ``side`` x ``side`` zeros: ~0.1 % of its decoded size on disk."""
    comp = zlib.compressobj(9)
    row = b"\x00" * (side + 1)  # filter byte + pixels
    idat = b"".join(comp.compress(row) for _ in range(side)) + comp.flush()
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")


def png_declaring(width: int, height: int) -> bytes:
    """A PNG header declaring ``width`` x ``height`` with one tiny IDAT (a lie about its size)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + _png_chunk(b"IEND", b"")


def gif_bomb() -> bytes:
    """A GIF whose logical screen and one frame claim 65535 x 65535 pixels."""
    small = _save(_photo((8, 8)).convert("P"), "GIF")
    # logical screen width/height at bytes 6..10; the image descriptor's at its offset + 5
    data = bytearray(small)
    data[6:10] = struct.pack("<HH", 65535, 65535)
    i = data.index(b",", 13)  # image descriptor
    data[i + 5 : i + 9] = struct.pack("<HH", 65535, 65535)
    return bytes(data)


def webp_bomb() -> bytes:
    """A WebP (VP8X) whose canvas claims 16383 x 16383, the format's largest."""
    tiny = _save(_photo((8, 8)), "WEBP", lossless=True)
    vp8l = tiny[12:]  # the VP8L chunk of a valid 8x8 image
    flags = 0
    canvas = (16383 - 1).to_bytes(3, "little") * 2
    vp8x = b"VP8X" + struct.pack("<I", 10) + bytes([flags, 0, 0, 0]) + canvas
    body = b"WEBP" + vp8x + vp8l
    return b"RIFF" + struct.pack("<I", len(body)) + body


def jpeg_declaring(width: int, height: int) -> bytes:
    """A JPEG whose frame header (SOF0) claims ``width`` x ``height``."""
    data = bytearray(_save(_photo((16, 16)), "JPEG"))
    i = data.index(b"\xff\xc0")
    data[i + 5 : i + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def exif_rotated_jpeg() -> bytes:
    image = _photo((160, 120))
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90° clockwise to display
    return _save(image, "JPEG", exif=exif.tobytes())


def animated_gif() -> bytes:
    frames = [_photo((64, 64)).rotate(a) for a in (0, 90, 180)]
    return _save(frames[0], "GIF", save_all=True, append_images=frames[1:], loop=0, duration=50)


def animated_webp() -> bytes:
    frames = [_photo((64, 64)).rotate(a) for a in (0, 90, 180)]
    return _save(frames[0], "WEBP", save_all=True, append_images=frames[1:], duration=50)


def many_page_tiff(pages: int = 200) -> bytes:
    frame = _photo((32, 32))
    return _save(frame, "TIFF", save_all=True, append_images=[frame] * (pages - 1))


def sixteen_bit_png() -> bytes:
    return _save(_photo().convert("I;16"), "PNG")


def zip_bytes() -> bytes:
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("evil.html", "<script>alert(1)</script>")
    return buf.getvalue()


SVG = b"""<?xml version="1.0"?>
<!DOCTYPE svg [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<svg xmlns="http://www.w3.org/2000/svg" width="100" height="100" onload="alert(1)">
<text>&xxe;</text><script>alert(document.cookie)</script></svg>"""


@cache
def corpus() -> tuple[Hostile, ...]:
    """Every hostile upload, each with the answers it may get."""
    jpeg = _save(_photo(), "JPEG", quality=90)
    png = _save(_photo(), "PNG")
    webp = _save(_photo(), "WEBP")
    bomb = frozenset({413})
    unsupported = frozenset({415})
    return (
        # decompression bombs: huge declared sizes, refused from the header
        Hostile("png bomb 12000x12000 zeros", png_bomb(), "bomb.png", "image/png", bomb),
        Hostile("png bomb 7000x7000 (over the API's pixel limit)", png_bomb(7000), "bomb7k.png", "image/png", bomb),
        Hostile("png 6000x6000 zeros (under it: decoded)", png_bomb(6000), "big.png", "image/png", OK | bomb),
        Hostile("png header claims 100000x100000", png_declaring(100_000, 100_000), "huge.png", "image/png", bomb),
        Hostile("jpeg header claims 65000x65000", jpeg_declaring(65000, 65000), "huge.jpg", expect=bomb | {400}),
        Hostile("gif bomb 65535x65535", gif_bomb(), "bomb.gif", "image/gif", bomb | unsupported),
        Hostile("webp canvas 16383x16383", webp_bomb(), "bomb.webp", "image/webp", bomb | {400}),
        Hostile("jpeg 12001 px wide (max side)", jpeg_declaring(12_001, 40), "wide.jpg", expect=bomb | {400}),
        # broken files
        Hostile("empty file", b"", expect=frozenset({400})),
        Hostile("one byte", b"\xff", expect=frozenset({400, 415})),
        Hostile("jpeg cut in half", jpeg[: len(jpeg) // 2]),
        Hostile("jpeg without its end", jpeg[:-2], expect=OK | {400}),
        Hostile("png cut in half", png[: len(png) // 2], "cut.png", "image/png"),
        Hostile("webp cut in half", webp[: len(webp) // 2], "cut.webp", "image/webp"),
        Hostile("jpeg magic then html", b"\xff\xd8\xff\xe0" + b"<html><script>alert(1)</script></html>" * 50),
        Hostile("png signature only", b"\x89PNG\r\n\x1a\n", "sig.png", "image/png", frozenset({400, 415})),
        Hostile("random bytes", bytes(range(256)) * 64, "noise.jpg", expect=frozenset({400, 415})),
        Hostile("1x1 pixel", _save(_photo((1, 1)), "PNG"), "dot.png", "image/png"),
        # polyglots: the bytes decide, not the name or the declared type
        Hostile("jpeg + zip appended", jpeg + zip_bytes(), "poly.jpg", expect=OK),
        Hostile("png + html after IEND", png + b"<html><script>alert(1)</script></html>", "poly.png", "image/png", OK),
        Hostile("zip named photo.jpg", zip_bytes(), "photo.jpg", expect=unsupported),
        Hostile("html named photo.jpg", b"<!doctype html><script>alert(1)</script>", "photo.jpg", expect=unsupported),
        Hostile("png served as image/jpeg", png, "photo.jpg", "image/jpeg", OK),
        Hostile("pdf", b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF", "doc.pdf", "application/pdf", unsupported),
        # odd but usable encodings: searched like any photo
        Hostile("cmyk jpeg", _save(_photo(mode="CMYK"), "JPEG"), "cmyk.jpg", expect=OK),
        Hostile("greyscale jpeg", _save(_photo(mode="L"), "JPEG"), "grey.jpg", expect=OK),
        Hostile("progressive jpeg", _save(_photo(), "JPEG", progressive=True), "prog.jpg", expect=OK),
        Hostile("16-bit png", sixteen_bit_png(), "deep.png", "image/png", OK),
        Hostile("palette png", _save(_photo().convert("P"), "PNG"), "pal.png", "image/png", OK),
        Hostile("rgba png", _save(_photo(mode="RGBA"), "PNG"), "alpha.png", "image/png", OK),
        Hostile("la png", _save(_photo(mode="LA"), "PNG"), "la.png", "image/png", OK),
        Hostile("1-bit png", _save(_photo(mode="1"), "PNG"), "bw.png", "image/png", OK),
        Hostile("exif-rotated jpeg", exif_rotated_jpeg(), "rotated.jpg", expect=OK),
        Hostile("lossless webp with alpha", _save(_photo(mode="RGBA"), "WEBP", lossless=True), "a.webp", "image/webp", OK),
        Hostile("12000x32 strip", _save(Image.new("RGB", (12_000, 32), (200, 30, 30)), "PNG"), "strip.png", "image/png", OK),
        # formats that are not accepted
        Hostile("animated gif", animated_gif(), "anim.gif", "image/gif", unsupported),
        Hostile("animated webp", animated_webp(), "anim.webp", "image/webp", OK | unsupported),
        Hostile("svg with xxe and script", SVG, "evil.svg", "image/svg+xml", unsupported),
        Hostile("tiff, 200 pages", many_page_tiff(), "pages.tif", "image/tiff", unsupported),
        Hostile("bmp", _save(_photo(), "BMP"), "photo.bmp", "image/bmp", unsupported),
        Hostile("ico", _save(_photo((64, 64)), "ICO"), "icon.ico", "image/x-icon", unsupported),
    )


# ---- requests beyond the corpus ------------------------------------------------------------

#: A path parameter (or ``/static`` path) that tries to leave where it is looked up.
TRAVERSALS = (
    "../../../../etc/passwd",
    "..%2F..%2F..%2F..%2Fetc%2Fpasswd",
    "%2e%2e%2f%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    "..%252F..%252F..%252Fetc%252Fpasswd",
    "....//....//....//etc/passwd",
    "..\\..\\..\\etc\\passwd",
    "%2Fetc%2Fpasswd",
    "/etc/passwd",
    "..%00/etc/passwd",
    "%00",
    "%c0%ae%c0%ae/%c0%ae%c0%ae/etc/passwd",
    "..%c0%af..%c0%afetc%c0%afpasswd",
    "~root%2F.ssh%2Fid_rsa",
    "x" * 8000,
)
#: Every path that takes a parameter, and /static (also reached through ``..``).
TEMPLATES = ("/items/{}", "/items/{}/street", "/images/{}", "/static/{}", "/static/../{}", "/{}")
#: Statuses a traversal may get: not found, or refused as malformed.
TRAVERSAL_EXPECT = frozenset({400, 404, 405, 422})

HUGE = 150 * 1024 * 1024
FILE_PART = (
    b'--b\r\nContent-Disposition: form-data; name="image"; filename="huge.jpg"\r\n'
    b"Content-Type: image/jpeg\r\n\r\n\xff\xd8\xff\xe0"
)


def multipart(files: list[tuple[str, str, str, bytes]], fields: list[tuple[str, str]] = ()) -> tuple[bytes, str]:
    """A multipart/form-data body of ``(field, filename, content type, bytes)`` files."""
    boundary = uuid.uuid4().hex
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode() for name, value in fields
    ]
    for field, filename, ctype, data in files:
        head = f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; filename="{filename}"\r\nContent-Type: {ctype}\r\n\r\n'
        parts.append(head.encode() + data + b"\r\n")
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def request(url: str, method: str, path: str, body: bytes | None = None, headers: dict | None = None, timeout: float = 120):
    """``(status, headers, body)`` of one request over a fresh connection, the path sent
    exactly as given (no normalising)."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    try:
        conn.putrequest(method, path, skip_accept_encoding=True)
        for key, value in {**({"Content-Length": str(len(body))} if body is not None else {}), **(headers or {})}.items():
            conn.putheader(key, value)
        conn.endheaders(body)
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def search(url: str, data: bytes, filename: str = "q.jpg", ctype: str = "image/jpeg", query: str = "k=3"):
    """``POST /search`` with ``data`` as its one photo."""
    body, content_type = multipart([("image", filename, ctype, data)])
    return request(url, "POST", f"/search?{query}", body, {"Content-Type": content_type})


def _read_all(s: socket.socket) -> bytes:
    """What the server sends until it closes the connection (or stops for 10 s)."""
    s.settimeout(10)
    data = b""
    try:
        while chunk := s.recv(65536):
            data += chunk
    except (TimeoutError, ConnectionResetError):
        pass
    return data


def _status(response: bytes) -> int | None:
    return int(response.split(b" ", 2)[1]) if response.startswith(b"HTTP/") else None


def declared_huge_upload(url: str) -> tuple[int | None, bytes]:
    """A form declaring a :data:`HUGE` Content-Length, of which not a byte is sent: the
    answer must come anyway (from the length alone). ``(status, raw response)``."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=60) as s:
        s.sendall(
            f"POST /search HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
            f"Content-Length: {HUGE}\r\n\r\n".encode()
        )
        response = _read_all(s)
    return _status(response), response


def chunked_huge_upload(url: str) -> tuple[int, int | None, bytes]:
    """A :data:`HUGE` chunked form (no Content-Length), sent until the server answers or
    closes: ``(bytes sent, status or None, raw response)``."""
    parts = urlsplit(url)
    chunk = b"\0" * (1 << 20)
    sent, answer = 0, b""
    with socket.create_connection((parts.hostname, parts.port), timeout=60) as s:
        s.sendall(
            b"POST /search HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n" + b"%x\r\n" % len(FILE_PART) + FILE_PART + b"\r\n"
        )
        try:
            while sent < HUGE:
                if select.select([s], [], [], 0)[0]:
                    break  # the server answered
                s.sendall(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
                sent += len(chunk)
            else:
                s.sendall(b"0\r\n\r\n")
            answer = _read_all(s)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server closed the connection once it had answered
    return sent, _status(answer), answer


def fuzz_checks() -> list:
    """What every answer to a request fuzzed from the OpenAPI schema must satisfy: no 5xx, a
    documented status and content type, a body of the documented schema, and invalid input
    refused. (Not "valid input accepted": the schema cannot say that the ``image`` must be
    an image, so arbitrary bytes rightly get a 415.)"""
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import (
        content_type_conformance,
        negative_data_rejection,
        response_schema_conformance,
        status_code_conformance,
    )

    return [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance, negative_data_rejection]


def many_files(photo: bytes, n: int = 200) -> tuple[bytes, str]:
    """One form holding ``n`` photos."""
    return multipart([("image", f"q{i}.jpg", "image/jpeg", photo) for i in range(n)])


__all__ = [
    "HUGE", "TEMPLATES", "TRAVERSALS", "TRAVERSAL_EXPECT", "Hostile", "chunked_huge_upload", "corpus",
    "declared_huge_upload", "fuzz_checks", "many_files", "multipart", "png_bomb", "request", "search",
]
