"""Small synthetic photos for the cleaning and labelling tests, drawn with PIL (no demo shop needed).

- ``garment``: a seeded garment-ish silhouette (body, sleeves, stripes, a motif) on a pale
  background: every seed is a different "design", the colour argument its colourway.
- ``near_duplicate``: a seller photo re-listed with a crop, resize, watermark or colour tweak.
- ``parcel`` / ``close_up``: the two commonest kinds of review-photo noise.
- ``upright`` / ``as_phone_stores_it``: a photo, and the same photo stored as a phone does
  (turned pixels plus the EXIF orientation tag that turns them back).
"""

from __future__ import annotations

import io
from pathlib import Path
from types import SimpleNamespace

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter

COLOURS = {
    "navy": (30, 40, 110),
    "red": (190, 30, 40),
    "green": (40, 140, 70),
    "mustard": (210, 170, 40),
    "black": (25, 25, 25),
    "pink": (230, 140, 170),
}


def garment(seed: int, colour: str = "navy", size: tuple[int, int] = (160, 200)) -> Image.Image:
    rng = np.random.default_rng(seed)
    w, h = size
    bg = tuple(int(v) for v in rng.integers(140, 250, 3))
    im = Image.new("RGB", size, bg)
    d = ImageDraw.Draw(im)
    fill = COLOURS[colour]
    # Body: a trapezoid whose widths and height vary by design.
    top, bottom = rng.uniform(0.25, 0.4) * w, rng.uniform(0.3, 0.48) * w
    y0, y1 = rng.uniform(0.12, 0.25) * h, rng.uniform(0.75, 0.92) * h
    cx = w / 2 + rng.uniform(-20, 20)
    d.polygon([(cx - top, y0), (cx + top, y0), (cx + bottom, y1), (cx - bottom, y1)], fill=fill)
    if rng.random() < 0.6:  # sleeves
        sl = rng.uniform(0.15, 0.35) * h
        d.polygon([(cx - top, y0), (cx - top - 25, y0 + sl), (cx - top - 5, y0 + sl + 8), (cx - top + 10, y0 + 20)], fill=fill)
        d.polygon([(cx + top, y0), (cx + top + 25, y0 + sl), (cx + top + 5, y0 + sl + 8), (cx + top - 10, y0 + 20)], fill=fill)
    # Pattern: stripes at a design-specific angle and pitch, and a motif.
    accent = tuple(int(255 - v) for v in fill)
    pitch, angle = int(rng.integers(8, 22)), rng.uniform(-0.8, 0.8)
    for k in range(-h, h, pitch):
        d.line([(cx - bottom, y0 + k), (cx + bottom, y0 + k + angle * 2 * bottom)], fill=accent, width=2)
    for _ in range(3):  # motifs: big blobs of design-specific colour and place
        mx, my = cx + rng.uniform(-0.8, 0.8) * top, rng.uniform(0.25, 0.75) * h
        r = rng.uniform(10, 26)
        d.ellipse([mx - r, my - r, mx + r, my + r], fill=tuple(int(v) for v in rng.integers(0, 255, 3)))
    # Re-draw the background outside the body so stripes stay on the garment.
    mask = Image.new("L", size, 0)
    ImageDraw.Draw(mask).polygon([(cx - top - 30, y0), (cx + top + 30, y0), (cx + bottom, y1), (cx - bottom, y1)], fill=255)
    return Image.composite(im, Image.new("RGB", size, bg), mask)


def near_duplicate(image: Image.Image, edit: str) -> Image.Image:
    w, h = image.size
    if edit == "crop":
        return image.crop((4, 5, w - 4, h - 5))
    if edit == "resize":
        return image.resize((int(w * 0.7), int(h * 0.7)), Image.Resampling.BILINEAR)
    if edit == "watermark":
        out = image.copy()
        d = ImageDraw.Draw(out)
        d.rectangle([w - 50, h - 18, w - 4, h - 4], fill=(255, 255, 255))
        d.text((w - 48, h - 17), "SHOP", fill=(120, 120, 120))
        return out
    if edit == "colour":
        return ImageEnhance.Brightness(ImageEnhance.Color(image).enhance(1.25)).enhance(1.06)
    raise ValueError(edit)


def parcel(seed: int, size: tuple[int, int] = (160, 200)) -> Image.Image:
    """A brown cardboard box with tape, on a grey floor."""
    rng = np.random.default_rng(10_000 + seed)
    floor = tuple(int(v) for v in rng.integers(90, 140, 3))
    im = Image.new("RGB", size, floor)
    d = ImageDraw.Draw(im)
    brown = (int(rng.integers(150, 185)), int(rng.integers(105, 130)), int(rng.integers(60, 85)))
    x0, y0 = rng.integers(5, 35, 2)
    d.rectangle([x0, y0, size[0] - rng.integers(5, 35), size[1] - rng.integers(5, 35)], fill=brown)
    d.rectangle([x0, size[1] // 2 - 6, size[0], size[1] // 2 + 6], fill=(200, 185, 150))
    return im


def close_up(seed: int, size: tuple[int, int] = (160, 200)) -> Image.Image:
    """A zoomed-in fabric texture filling the frame."""
    rng = np.random.default_rng(20_000 + seed)
    base = rng.integers(40, 220, 3)
    grain = rng.normal(0, 35, (size[1], size[0], 1))
    weave = 20 * np.sin(np.arange(size[0])[None, :, None] * rng.uniform(0.8, 2.0))
    pixels = np.clip(base[None, None, :] + grain + weave, 0, 255).astype(np.uint8)
    return Image.fromarray(pixels).filter(ImageFilter.GaussianBlur(0.6))


def save(image: Image.Image, path: Path, quality: int = 90) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, "JPEG", quality=quality)
    return str(path)


def helpers() -> SimpleNamespace:
    """The drawing helpers above, as the ``draw`` fixture hands them to tests."""
    return SimpleNamespace(garment=garment, near_duplicate=near_duplicate, parcel=parcel, close_up=close_up, save=save)


#: EXIF Orientation 6: "rotate 90° clockwise to view", what a phone writes for an upright portrait
ROTATE_CW = 6


def upright(seed: int = 0, size: tuple[int, int] = (64, 40)) -> Image.Image:
    """A photo whose orientation matters: random pixels, wider than tall."""
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))


def as_phone_stores_it(image: Image.Image, fmt: str = "PNG") -> bytes:
    """The photo's pixels turned a quarter anti-clockwise plus the tag that turns them back."""
    exif = Image.Exif()
    exif[0x0112] = ROTATE_CW
    buf = io.BytesIO()
    image.transpose(Image.Transpose.ROTATE_90).save(buf, fmt, exif=exif)
    return buf.getvalue()


def png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "PNG")
    return buf.getvalue()
