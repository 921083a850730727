"""From a clean garment to what a customer uploads: the street/shop domain gap, and noise.

``street_photo`` takes a garment (RGB + alpha mask) and returns a plausible review photo of
that same garment: cluttered background (floor, bed sheet, carpet, tiles, clutter), random
scale, rotation, perspective and position, a cast shadow, partial occlusion, uneven
lighting with a colour cast, blur, sensor noise and JPEG artefacts. The noise generators
make what real review sections also contain: parcels, fabric close-ups, unrelated pictures.

Every function takes a ``numpy.random.Generator``; nothing reads global randomness, so the
same generator state gives the same pixels.
"""

from __future__ import annotations

import functools
import io
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFilter
from pydantic import BaseModel, Field


class DomainGapParams(BaseModel):
    """How far street photos drift from seller photos. Defaults: clearly harder, still the
    same garment to a human."""

    scale: tuple[float, float] = (0.55, 0.95)  # garment size relative to the frame
    max_rotation_deg: float = Field(30.0, ge=0, le=180)
    perspective: float = Field(0.12, ge=0, le=0.4)  # corner jitter, fraction of size
    max_offset: float = Field(0.15, ge=0, le=0.5)  # centre jitter, fraction of size
    p_occlusion: float = Field(0.4, ge=0, le=1)
    colour_cast: float = Field(0.15, ge=0, le=0.5)  # per-channel gain spread
    lighting: float = Field(0.45, ge=0, le=1)  # depth of the light gradient
    p_blur: float = Field(0.5, ge=0, le=1)
    max_blur: float = Field(1.6, ge=0)
    noise_sigma: tuple[float, float] = (1.0, 7.0)
    jpeg_quality: tuple[int, int] = (25, 80)  # re-encode once: blocking/ringing artefacts
    p_keep_background: float = Field(0.5, ge=0, le=1)  # for photos that have their own scene


# -- helpers ------------------------------------------------------------------------------
def _smooth_noise(rng: np.random.Generator, size: int, cells: int, channels: int = 1) -> np.ndarray:
    """Low-frequency noise in [0, 1]: a small random grid upsampled bicubically."""
    small = rng.random((cells, cells, channels)).astype(np.float32)
    out = np.empty((size, size, channels), np.float32)
    for c in range(channels):
        img = Image.fromarray((small[..., c] * 255).astype(np.uint8))
        out[..., c] = np.asarray(img.resize((size, size), Image.BICUBIC), np.float32) / 255
    return out


def _rand_colour(rng: np.random.Generator, lo: int = 30, hi: int = 230) -> tuple[int, int, int]:
    return tuple(int(v) for v in rng.integers(lo, hi, 3))


def _to_image(arr: np.ndarray) -> Image.Image:
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


@functools.lru_cache(maxsize=8)
def _noise_bank(size: int) -> np.ndarray:
    """Fixed standard-normal noise, twice the frame: a random window of it is as good as
    fresh noise for sensor grain, and far cheaper to draw."""
    return np.random.default_rng(size).standard_normal((2 * size, 2 * size, 3), dtype=np.float32)


# -- backgrounds --------------------------------------------------------------------------
def _wood_floor(rng: np.random.Generator, size: int) -> np.ndarray:
    base = np.array(rng.uniform([120, 75, 35], [200, 150, 100]), np.float32)
    y = np.arange(size, dtype=np.float32)[:, None]
    plank = max(8, int(size * rng.uniform(0.08, 0.2)))
    plank_shade = rng.uniform(0.8, 1.15, size // plank + 2).astype(np.float32)[(y // plank).astype(int)]
    x = np.arange(size, dtype=np.float32)[None, :]
    grain = 0.93 + 0.07 * np.sin(x * rng.uniform(0.05, 0.2) + 6 * _smooth_noise(rng, size, 6)[..., 0])
    seams = np.where((y % plank) < 1.5, 0.65, 1.0)
    arr = base * (plank_shade * grain * seams)[..., None]
    return arr if rng.random() < 0.5 else arr.transpose(1, 0, 2)


def _bed_sheet(rng: np.random.Generator, size: int) -> np.ndarray:
    base = np.array(_rand_colour(rng, 150, 250), np.float32)
    folds = 0.8 + 0.25 * _smooth_noise(rng, size, int(rng.integers(3, 7)))
    return base * folds


def _carpet(rng: np.random.Generator, size: int) -> np.ndarray:
    base = np.array(_rand_colour(rng, 40, 200), np.float32)
    y, x = (int(v) for v in rng.integers(0, size, 2))
    fine = 1.0 + 0.12 * _noise_bank(size)[y : y + size, x : x + size, :1]
    return base * fine * (0.85 + 0.3 * _smooth_noise(rng, size, 4))


def _tiles(rng: np.random.Generator, size: int) -> np.ndarray:
    base = np.array(_rand_colour(rng, 120, 240), np.float32)
    tile = max(10, int(size * rng.uniform(0.15, 0.35)))
    yy, xx = np.mgrid[0:size, 0:size]
    grout = ((yy % tile) < 2) | ((xx % tile) < 2)
    arr = np.broadcast_to(base, (size, size, 3)).copy()
    arr[grout] *= 0.6
    return arr * (0.9 + 0.15 * _smooth_noise(rng, size, 3))


def _clutter(rng: np.random.Generator, size: int) -> np.ndarray:
    half = size // 2  # drawn at half size: the upsampling is the out-of-focus look
    img = Image.new("RGB", (half, half), _rand_colour(rng, 60, 220))
    draw = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(6, 16))):
        x0, y0 = rng.integers(-half // 4, half, 2)
        w, h = rng.integers(half // 10, half // 2, 2)
        box = [int(x0), int(y0), int(x0 + w), int(y0 + h)]
        (draw.ellipse if rng.random() < 0.4 else draw.rectangle)(box, fill=_rand_colour(rng))
    img = img.filter(ImageFilter.GaussianBlur(rng.uniform(0.2, 1.2)))
    return np.asarray(img.resize((size, size), Image.BILINEAR), np.float32)


BACKGROUNDS = {
    "wood_floor": _wood_floor,
    "bed_sheet": _bed_sheet,
    "carpet": _carpet,
    "tiles": _tiles,
    "clutter": _clutter,
}


def cluttered_background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A random home-like background, float32 HxWx3 in [0, 255]."""
    name = list(BACKGROUNDS)[int(rng.integers(len(BACKGROUNDS)))]
    return BACKGROUNDS[name](rng, size)


# -- geometry -----------------------------------------------------------------------------
def _perspective_coeffs(src: np.ndarray, dst: np.ndarray) -> list[float]:
    """PIL's PERSPECTIVE coefficients mapping output points ``dst`` to input points ``src``."""
    rows = []
    for (x, y), (u, v) in zip(dst, src):
        rows.append([x, y, 1, 0, 0, 0, -u * x, -u * y])
        rows.append([0, 0, 0, x, y, 1, -v * x, -v * y])
    return np.linalg.solve(np.array(rows, np.float64), src.reshape(8)).tolist()


def _jitter_perspective(img: Image.Image, rng: np.random.Generator, amount: float) -> Image.Image:
    w, h = img.size
    corners = np.array([[0, 0], [w, 0], [w, h], [0, h]], np.float64)
    dst = corners + rng.uniform(-amount, amount, (4, 2)) * np.array([w, h])
    return img.transform((w, h), Image.PERSPECTIVE, _perspective_coeffs(corners, dst), Image.BILINEAR)


def _place_layer(
    layer: Image.Image, rng: np.random.Generator, size: int, p: DomainGapParams
) -> Image.Image:
    """Scale, rotate, tilt and position an RGBA garment layer on a transparent frame.

    All four are one homography, so the layer is resampled once (the garment may end up
    partly out of shot, as in real photos)."""
    w, h = layer.size
    src = np.array([[0, 0], [w, 0], [w, h], [0, h]], np.float64)
    side = size * rng.uniform(*p.scale)
    theta = np.radians(rng.uniform(-p.max_rotation_deg, p.max_rotation_deg))
    rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    centre = size / 2 + rng.uniform(-p.max_offset, p.max_offset, 2) * size
    dst = (src / [w, h] - 0.5) * side @ rot.T + centre
    dst += rng.uniform(-p.perspective, p.perspective, (4, 2)) * side
    return layer.transform((size, size), Image.PERSPECTIVE, _perspective_coeffs(src, dst), Image.BILINEAR)


def _reframe_scene(photo: Image.Image, rng: np.random.Generator, size: int, p: DomainGapParams) -> Image.Image:
    """Re-shoot a photo that already has its own scene: rotate, zoom, shift and tilt it, as
    one homography, always inside the photo (no black wedges)."""
    w = photo.width
    theta = np.radians(rng.uniform(-p.max_rotation_deg, p.max_rotation_deg) / 2)
    inner = w / (np.cos(abs(theta)) + np.sin(abs(theta)))  # largest square inside, rotated
    crop = inner * rng.uniform(0.7, 0.9)
    jitter = p.perspective / 3 * crop
    slack = max(0.0, (inner - crop) / 2 - jitter)
    centre = w / 2 + rng.uniform(-slack, slack, 2)
    rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    out = np.array([[0, 0], [size, 0], [size, size], [0, size]], np.float64)
    src = (out / size - 0.5) * crop @ rot.T + centre + rng.uniform(-jitter, jitter, (4, 2))
    return photo.transform((size, size), Image.PERSPECTIVE, _perspective_coeffs(src, out), Image.BILINEAR)


# -- photometric --------------------------------------------------------------------------
def _occlude(img: Image.Image, rng: np.random.Generator) -> None:
    """Something in front of the garment: a hand, a phone, a sleeve of another garment."""
    size = img.width
    draw = ImageDraw.Draw(img)
    skin = (int(rng.integers(150, 235)), int(rng.integers(100, 180)), int(rng.integers(80, 150)))
    colour = skin if rng.random() < 0.5 else _rand_colour(rng)
    w, h = (rng.uniform(0.15, 0.4, 2) * size).astype(int)
    side = int(rng.integers(4))
    pos = rng.uniform(0, size, 2).astype(int)
    x0, y0 = [(pos[0], -h // 2), (size - w // 2, pos[1]), (pos[0], size - h // 2), (-w // 2, pos[1])][side]
    shape = [int(x0), int(y0), int(x0 + w), int(y0 + h)]
    (draw.ellipse if rng.random() < 0.6 else draw.rectangle)(shape, fill=colour)


@functools.lru_cache(maxsize=8)
def _unit_grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size - 0.5
    return yy, xx


def _light(img: Image.Image, rng: np.random.Generator, p: DomainGapParams) -> Image.Image:
    """Uneven light (a directional ramp), a colour cast and a gamma change."""
    yy, xx = _unit_grid(img.width)
    theta = rng.uniform(0, 2 * np.pi)
    ramp = np.float32(np.cos(theta)) * xx + np.float32(np.sin(theta)) * yy  # about [-0.7, 0.7]
    gain = 1.0 + np.float32(p.lighting) * ramp + np.float32(rng.uniform(-0.25, 0.15))
    cast = (1.0 + rng.uniform(-p.colour_cast, p.colour_cast, 3)).astype(np.float32)
    arr = np.asarray(img, np.float32) * gain[..., None] * cast
    out = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
    gamma = rng.uniform(0.8, 1.25)
    lut = (255.0 * (np.arange(256) / 255.0) ** gamma).round().astype(np.uint8).tolist()
    return out.point(lut * 3)  # a lookup table: far cheaper than a per-pixel power


def _degrade(img: Image.Image, rng: np.random.Generator, p: DomainGapParams) -> Image.Image:
    """Camera and upload damage: blur, sensor noise, one lossy JPEG round trip."""
    if rng.random() < p.p_blur:
        img = img.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, p.max_blur)))
    bank = _noise_bank(img.width)
    y, x = (int(v) for v in rng.integers(0, img.width, 2))
    noise = bank[y : y + img.height, x : x + img.width] * np.float32(rng.uniform(*p.noise_sigma))
    img = _to_image(np.asarray(img, np.float32) + noise)
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=int(rng.integers(*p.jpeg_quality)))
    buf.seek(0)
    return Image.open(buf).convert("RGB")


# -- public -------------------------------------------------------------------------------
def street_photo(
    garment: Image.Image,
    mask: Image.Image,
    rng: np.random.Generator,
    size: int,
    params: DomainGapParams | None = None,
    own_scene: bool = False,
) -> Image.Image:
    """A customer's photo of ``garment`` (RGB, same size as its ``mask``, mode "L").

    ``own_scene``: the garment image is a real photo with its own background; keep it
    (re-framed) with probability ``p_keep_background``, else cut the garment out onto a new
    background like a procedural garment.
    """
    p = params or DomainGapParams()
    if own_scene and rng.random() < p.p_keep_background:
        img = _reframe_scene(garment.convert("RGB"), rng, size, p)
    else:
        layer = garment.convert("RGB").copy()
        layer.putalpha(mask)
        placed = _place_layer(layer, rng, size, p)
        alpha = placed.getchannel("A")
        # Soft shadow: the garment's silhouette, blurred (at quarter size: cheap) and
        # offset, darkens the background.
        small = alpha.resize((size // 4, size // 4), Image.BILINEAR).filter(ImageFilter.GaussianBlur(size / 160))
        dx, dy = (int(v) for v in rng.integers(-size // 30, size // 30 + 1, 2))
        shadow = np.roll(np.asarray(small.resize((size, size), Image.BILINEAR), np.float32), (dy, dx), (0, 1))
        bg = cluttered_background(rng, size) * (1 - 0.35 / 255 * shadow)[..., None]
        img = Image.composite(placed.convert("RGB"), _to_image(bg), alpha)
    if rng.random() < p.p_occlusion:
        _occlude(img, rng)
    return _degrade(_light(img, rng, p), rng, p)


def parcel_photo(rng: np.random.Generator, size: int) -> Image.Image:
    """A delivery box on the floor: brown cardboard, packing tape, a shipping label."""
    img = _to_image(cluttered_background(rng, size))
    draw = ImageDraw.Draw(img)
    cx, cy = rng.uniform(0.35, 0.65, 2) * size
    w, h = rng.uniform(0.4, 0.75, 2) * size
    depth = rng.uniform(0.08, 0.18) * size
    brown = np.array(rng.uniform([150, 105, 60], [200, 150, 100]))
    front = [(cx - w / 2, cy - h / 2 + depth), (cx + w / 2, cy - h / 2 + depth),
             (cx + w / 2, cy + h / 2), (cx - w / 2, cy + h / 2)]
    top = [(cx - w / 2, cy - h / 2 + depth), (cx - w / 2 + depth, cy - h / 2),
           (cx + w / 2 + depth, cy - h / 2), (cx + w / 2, cy - h / 2 + depth)]
    side = [(cx + w / 2, cy - h / 2 + depth), (cx + w / 2 + depth, cy - h / 2),
            (cx + w / 2 + depth, cy + h / 2 - depth), (cx + w / 2, cy + h / 2)]
    draw.polygon(front, fill=tuple(int(v) for v in brown))
    draw.polygon(top, fill=tuple(int(v) for v in np.minimum(brown * 1.15, 255)))
    draw.polygon(side, fill=tuple(int(v) for v in brown * 0.75))
    tape = (int(rng.integers(170, 230)),) * 2 + (int(rng.integers(150, 210)),)
    tw = max(2, int(w * 0.1))
    draw.rectangle([cx - tw / 2, cy - h / 2 + depth, cx + tw / 2, cy + h / 2], fill=tape)
    draw.polygon([(cx - tw / 2, cy - h / 2 + depth), (cx - tw / 2 + depth, cy - h / 2),
                  (cx + tw / 2 + depth, cy - h / 2), (cx + tw / 2, cy - h / 2 + depth)], fill=tape)
    lx, ly = cx - w / 2 + w * rng.uniform(0.05, 0.2), cy + h * rng.uniform(-0.1, 0.15)
    lw, lh = w * 0.3, h * 0.25
    draw.rectangle([lx, ly, lx + lw, ly + lh], fill=(245, 245, 240))
    for i, bx in enumerate(np.linspace(lx + 3, lx + lw - 3, 18)):  # a barcode
        if rng.random() < 0.6:
            draw.line([(bx, ly + lh * 0.55), (bx, ly + lh * 0.9)], fill=(20, 20, 20), width=1)
    for k in range(3):  # address lines
        yk = ly + lh * (0.12 + 0.13 * k)
        draw.line([(lx + 3, yk), (lx + lw * rng.uniform(0.4, 0.9), yk)], fill=(60, 60, 60), width=1)
    p = DomainGapParams()
    return _degrade(_light(img, rng, p), rng, p)


def closeup_photo(garment: Image.Image, mask: Image.Image, rng: np.random.Generator, size: int) -> Image.Image:
    """A zoomed crop of the fabric: the right garment, but useless for retrieval."""
    m = np.asarray(mask) > 128
    ys, xs = np.nonzero(m)
    if len(ys) == 0:
        ys, xs = np.array([garment.height // 2]), np.array([garment.width // 2])
    k = int(rng.integers(len(ys)))
    crop = max(8, int(garment.width * rng.uniform(0.12, 0.25)))
    x0 = int(np.clip(xs[k] - crop // 2, 0, garment.width - crop))
    y0 = int(np.clip(ys[k] - crop // 2, 0, garment.height - crop))
    img = garment.convert("RGB").resize((size, size), Image.BICUBIC, box=(x0, y0, x0 + crop, y0 + crop))
    weave = 1 + 0.08 * np.sin(np.arange(size, dtype=np.float32) * rng.uniform(0.8, 1.6))
    arr = np.asarray(img, np.float32) * weave[None, :, None] * weave[:, None, None]
    p = DomainGapParams(p_blur=0.8)
    return _degrade(_light(_to_image(arr), rng, p), rng, p)


def unrelated_photo(
    rng: np.random.Generator, size: int, photos: Sequence[Image.Image] = (), p_photo: float = 0.6
) -> Image.Image:
    """Something else entirely: a landscape, a cup, a screenshot, or (with probability
    ``p_photo``, when ``photos`` are given) a real photo of something the shop does not sell,
    re-framed like a street photo."""
    p = DomainGapParams()
    if photos and rng.random() < p_photo:
        img = _reframe_scene(photos[int(rng.integers(len(photos)))], rng, size, p)
        return _degrade(_light(img, rng, p), rng, p)
    kind = int(rng.integers(3))
    if kind == 0:  # landscape: sky, horizon, sun, hills
        sky = np.array(rng.uniform([90, 140, 200], [170, 200, 250]), np.float32)
        ground = np.array(rng.uniform([40, 90, 30], [140, 170, 90]), np.float32)
        horizon = int(size * rng.uniform(0.4, 0.7))
        arr = np.empty((size, size, 3), np.float32)
        arr[:horizon] = sky
        arr[horizon:] = ground
        img = _to_image(arr * (0.85 + 0.3 * _smooth_noise(rng, size, 5)))
        draw = ImageDraw.Draw(img)
        r = size * rng.uniform(0.05, 0.1)
        sx, sy = rng.uniform(0.1, 0.9) * size, rng.uniform(0.1, 0.3) * size
        draw.ellipse([sx - r, sy - r, sx + r, sy + r], fill=(250, 240, 180))
        for _ in range(int(rng.integers(1, 4))):
            hx = rng.uniform(0, size)
            hw, hh = rng.uniform(0.2, 0.5) * size, rng.uniform(0.1, 0.25) * size
            draw.pieslice([hx - hw, horizon - hh, hx + hw, horizon + hh], 180, 360,
                          fill=tuple(int(v) for v in ground * 0.8))
    elif kind == 1:  # an object on a table: a mug or a plant pot
        img = _to_image(cluttered_background(rng, size))
        draw = ImageDraw.Draw(img)
        cx = size * rng.uniform(0.3, 0.7)
        w, h = size * rng.uniform(0.25, 0.45), size * rng.uniform(0.3, 0.5)
        top = size * rng.uniform(0.25, 0.45)
        col = _rand_colour(rng)
        draw.rectangle([cx - w / 2, top, cx + w / 2, top + h], fill=col)
        draw.ellipse([cx - w / 2, top - h * 0.1, cx + w / 2, top + h * 0.1], fill=tuple(c // 2 for c in col))
        draw.arc([cx + w / 2 - w * 0.15, top + h * 0.2, cx + w / 2 + w * 0.3, top + h * 0.7], 270, 90,
                 fill=col, width=max(2, size // 40))
    else:  # a screenshot-like picture: flat panels and text lines
        img = Image.new("RGB", (size, size), _rand_colour(rng, 200, 255))
        draw = ImageDraw.Draw(img)
        draw.rectangle([0, 0, size, size * rng.uniform(0.08, 0.15)], fill=_rand_colour(rng, 20, 120))
        y = size * 0.2
        while y < size * 0.95:
            draw.line([(size * 0.06, y), (size * rng.uniform(0.3, 0.94), y)], fill=(70, 70, 70),
                      width=max(1, size // 60))
            y += size * rng.uniform(0.05, 0.1)
    return _degrade(_light(img, rng, p), rng, p)
