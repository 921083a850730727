"""From a clean garment to what a customer uploads: the street/shop domain gap, and noise.

``street_photo`` returns a plausible review photo of the garment of a seller photo. For a
real garment, either its own photo (the floor, bed or hanger it was shot on; recoloured
with the item) re-shot, or the garment cut out and laid into another real room: the empty
scene of another bundled photo (``garments.empty_scene``). Then, for any garment: scale
(the garment's longer side mostly 45-85 % of the frame; sometimes a closer, partial shot),
rotation, perspective, a worn-like bend, a contact shadow, now and then another garment
lying over it, uneven light with a colour cast, blur, sensor noise and one lossy JPEG.
Procedural garments get procedural rooms and occluders (no data needed).

The noise generators make what real review sections also contain: parcels, fabric
close-ups, photos of something else.

Every function takes a ``numpy.random.Generator``; nothing reads global randomness, so the
same generator state gives the same pixels.
"""

from __future__ import annotations

import functools
import io
from typing import NamedTuple

import numpy as np
from PIL import Image, ImageDraw, ImageFilter
from pydantic import BaseModel, Field

from street2shop.shop.garments import garment_box

#: a garment to lay over another one (RGB and its "L" mask, the same size)
Cutout = tuple[Image.Image, Image.Image]


class DomainGapParams(BaseModel):
    """How far street photos drift from seller photos. Defaults: clearly harder, still the
    same garment to a human."""

    scale: tuple[float, float] = (0.45, 0.85)  # the garment's longer side, share of the frame
    p_partial: float = Field(0.15, ge=0, le=1)  # a closer shot: the garment partly out of frame
    max_rotation_deg: float = Field(15.0, ge=0, le=180)
    perspective: float = Field(0.08, ge=0, le=0.4)  # corner jitter, share of the garment
    warp: float = Field(0.025, ge=0, le=0.2)  # worn-like bend, share of the garment
    max_offset: float = Field(0.12, ge=0, le=0.5)  # centre jitter, share of the frame
    p_occlusion: float = Field(0.3, ge=0, le=1)
    colour_cast: float = Field(0.1, ge=0, le=0.5)  # warm/cool gain spread, red vs blue
    lighting: float = Field(0.35, ge=0, le=1)  # depth of the light gradient
    p_blur: float = Field(0.5, ge=0, le=1)
    max_blur: float = Field(1.4, ge=0)
    noise_sigma: tuple[float, float] = (1.0, 6.0)
    jpeg_quality: tuple[int, int] = (35, 90)  # re-encode once: blocking/ringing artefacts
    p_keep_background: float = Field(0.5, ge=0, le=1)  # a real garment: its own photo re-shot


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
    return Image.fromarray(np.clip(arr + 0.5, 0, 255).astype(np.uint8))


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
_CELLS = 4  # a bent view: 4 x 4 quads (the bend is smooth), each resampled by PIL in C


class View(NamedTuple):
    """Where each output pixel reads the source: the homography ``h`` (output -> source),
    and, for a bent view, the source points of a mesh over the output."""

    h: np.ndarray
    bend: np.ndarray | None = None  # (cells+1, cells+1, 2)


def _homography(dst: np.ndarray, src: np.ndarray) -> np.ndarray:
    """3x3 matrix taking the four points ``dst`` to ``src``."""
    rows, rhs = [], []
    for (x, y), (u, v) in zip(dst, src):
        rows += [[x, y, 1, 0, 0, 0, -u * x, -u * y], [0, 0, 0, x, y, 1, -v * x, -v * y]]
        rhs += [u, v]
    return np.append(np.linalg.solve(np.array(rows, np.float64), np.array(rhs, np.float64)), 1.0).reshape(3, 3)


def _vertices(size: int) -> np.ndarray:
    """(cells+1, cells+1, 2) output pixel coordinates (x, y) of the mesh vertices."""
    e = np.round(np.linspace(0, size, _CELLS + 1))
    return np.stack(np.meshgrid(e, e), -1)


def _mesh(img: Image.Image, size: int, view: View, fill: int | tuple = 0) -> Image.Image:
    """Resample ``img`` onto a ``size`` square as ``view`` says: one perspective transform,
    or a mesh of them for a bent view."""
    if view.bend is None:
        return img.transform((size, size), Image.PERSPECTIVE, (view.h / view.h[2, 2]).ravel()[:8].tolist(),
                             Image.BILINEAR, fillcolor=fill)
    e = [int(v) for v in np.round(np.linspace(0, size, _CELLS + 1))]
    src = view.bend
    data = []
    for i in range(_CELLS):
        for j in range(_CELLS):
            ul, ll, lr, ur = src[i, j], src[i + 1, j], src[i + 1, j + 1], src[i, j + 1]
            data.append(((e[j], e[i], e[j + 1], e[i + 1]), (*ul, *ll, *lr, *ur)))
    return img.transform((size, size), Image.MESH, data, Image.BILINEAR, fillcolor=fill)


def _view(rng: np.random.Generator, size: int, centre: np.ndarray, side: float, theta: float,
          perspective: float, warp: float) -> View:
    """A camera looking at a ``side``-wide square of the source around ``centre``, turned by
    ``theta``, its corners jittered by ``perspective`` and bent smoothly by ``warp``
    (shares of ``side``)."""
    rot = np.array([[np.cos(theta), np.sin(theta)], [-np.sin(theta), np.cos(theta)]])
    corners = np.array([[0, 0], [size, 0], [size, size], [0, size]], np.float64)
    src = (corners / size - 0.5) * side @ rot.T + centre + rng.uniform(-perspective, perspective, (4, 2)) * side
    h = _homography(corners, src)
    if warp <= 0:
        return View(h)
    v = _vertices(size).reshape(-1, 2)
    p = np.c_[v, np.ones(len(v))] @ h.T
    pts = (p[:, :2] / p[:, 2:]).reshape(_CELLS + 1, _CELLS + 1, 2)
    uv = _vertices(size) / size
    for _ in range(2):  # a bend: two smooth waves across the garment in random directions
        k = rng.normal(0, 1.8, 2)
        phase = rng.uniform(0, 2 * np.pi)
        amp = rng.normal(0, warp, 2) * side
        pts = pts + np.sin(2 * np.pi * (uv @ k) + phase)[..., None] * amp
    return View(h, pts)


def _place(rng: np.random.Generator, size: int, box: tuple[float, float, float, float], p: DomainGapParams,
           partial: bool) -> tuple[np.ndarray, float, float]:
    """Where a garment with ``box`` lands in the frame: (centre of the source square seen,
    its side, the turn). Its longer side takes ``p.scale`` of the frame (more when
    ``partial``), and it stays in shot unless ``partial``."""
    x0, y0, x1, y1 = box
    extent = max(x1 - x0, y1 - y0, 1.0)
    share = rng.uniform(0.85, 1.2) if partial else rng.uniform(*p.scale)
    side = extent / share  # of the source, seen by the whole frame
    slack = p.max_offset if partial else min(p.max_offset, (1 - share) / 2)
    centre = np.array([(x0 + x1) / 2, (y0 + y1) / 2]) + rng.uniform(-slack, slack, 2) * side
    theta = np.radians(rng.uniform(-p.max_rotation_deg, p.max_rotation_deg))
    return centre, side, theta


# -- photometric --------------------------------------------------------------------------
def _occlude(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Something in front of a procedural garment: a hand, a phone, a sleeve."""
    img = img.copy()
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
    return img


@functools.lru_cache(maxsize=8)
def _unit_grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size - 0.5
    return yy, xx


def _light(img: Image.Image, rng: np.random.Generator, p: DomainGapParams) -> Image.Image:
    """Uneven light (a directional ramp), a colour cast (mostly warm or cool: lamps and
    windows) and a gamma change."""
    yy, xx = _unit_grid(img.width)
    theta = rng.uniform(0, 2 * np.pi)
    ramp = np.float32(np.cos(theta)) * xx + np.float32(np.sin(theta)) * yy  # about [-0.7, 0.7]
    gain = 1.0 + np.float32(p.lighting) * ramp + np.float32(rng.uniform(-0.15, 0.08))
    warmth = rng.uniform(-p.colour_cast, p.colour_cast)
    cast = (1.0 + np.array([warmth, 0.0, -warmth]) + rng.uniform(-0.25, 0.25, 3) * p.colour_cast).astype(np.float32)
    arr = np.asarray(img, np.float32) * gain[..., None] * cast
    out = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
    gamma = rng.uniform(0.85, 1.2)
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
    img.save(buf, "JPEG", quality=int(rng.integers(p.jpeg_quality[0], p.jpeg_quality[1] + 1)))
    buf.seek(0)
    return Image.open(buf).convert("RGB")


# -- composition --------------------------------------------------------------------------
def _room(room: Image.Image, rng: np.random.Generator, size: int) -> np.ndarray:
    """A square view of an empty real scene, float32 ``size`` x ``size`` x 3."""
    w, h = room.size
    side = min(w, h) * rng.uniform(0.7, 1.0)
    x0, y0 = rng.uniform(0, w - side), rng.uniform(0, h - side)
    view = room.transform((size, size), Image.EXTENT, (x0, y0, x0 + side, y0 + side), Image.BILINEAR)
    if rng.random() < 0.5:
        view = view.transpose(Image.FLIP_LEFT_RIGHT)
    return np.asarray(view, np.float32)


def _premultiplied(rgb: Image.Image, mask: Image.Image) -> Image.Image:
    """RGB times alpha: resampled together with the mask, edges blend with nothing but black."""
    arr = np.asarray(rgb.convert("RGB"), np.uint16) * np.asarray(mask, np.uint16)[..., None]
    return Image.fromarray(((arr + 127) // 255).astype(np.uint8))


def _lay(base: np.ndarray, garment: Image.Image, mask: Image.Image, src: View, size: int,
         rng: np.random.Generator, shadow: float) -> np.ndarray:
    """``garment`` seen through ``src``, laid on ``base``, with a soft shadow of
    depth ``shadow`` and a share of the room's colour balance (it is lit by the same light)."""
    alpha = _mesh(mask, size, src)
    a = np.asarray(alpha, np.float32)[..., None] / 255
    layer = np.asarray(_mesh(_premultiplied(garment, mask), size, src), np.float32)
    if shadow > 0:  # the silhouette, blurred (at quarter size: cheap) and offset
        small = alpha.resize((size // 4, size // 4), Image.BILINEAR).filter(ImageFilter.GaussianBlur(size / 160))
        dx, dy = (int(v) for v in rng.integers(-size // 30, size // 30 + 1, 2))
        s = np.roll(np.asarray(small.resize((size, size), Image.BILINEAR), np.float32), (dy, dx), (0, 1))
        base = base * (1 - shadow / 255 * s)[..., None]  # s in [0, 255]
    tint = base.reshape(-1, 3).mean(axis=0) + 1
    tint = (tint / tint.mean()) ** 0.2
    return layer * tint + base * (1 - a)


def _reshoot(scene: Image.Image, centre: np.ndarray, side: float, theta: float, rng: np.random.Generator,
             size: int, p: DomainGapParams, extent: tuple[float, float] = (0.0, 0.0)) -> Image.Image:
    """A new photo of a real scene: the camera looks at a ``side``-wide square around
    ``centre``, turned by ``theta``; pulled back inside the photo (a little mirrored margin
    at most: a real photo has no more room than it shows). When the photo is too small
    for that, the camera comes closer and frames some part of the ``extent`` (w, h) around
    ``centre``: a partial view."""
    view, pad = _reshoot_view(scene.size, centre, side, theta, rng, size, p, extent)
    return _shoot(scene.convert("RGB"), view, pad, size)


def _shoot(img: Image.Image, view: View, pad: int, size: int, mode: str = "reflect") -> Image.Image:
    """``img`` with a ``pad``-pixel margin (``mode`` of ``numpy.pad``) seen through ``view``."""
    arr = np.asarray(img)
    arr = np.pad(arr, ((pad, pad), (pad, pad)) + ((0, 0),) * (arr.ndim - 2), mode=mode)
    return _mesh(Image.fromarray(arr), size, view)


def _reshoot_view(scene_size: tuple[int, int], centre: np.ndarray, side: float, theta: float, rng: np.random.Generator,
                  size: int, p: DomainGapParams, extent: tuple[float, float]) -> tuple[View, int]:
    """The camera of :func:`_reshoot` and the mirrored margin (pixels) it sees the scene with."""
    w, h = scene_size
    pad = int(0.1 * min(w, h))
    jitter = p.perspective / 2
    spread = (abs(np.cos(theta)) + abs(np.sin(theta))) / 2 + jitter
    widest = (min(w, h) + 2 * pad) / (2 * spread)
    if side > widest:
        side = widest * rng.uniform(0.8, 1.0)
        centre = centre + rng.uniform(-1, 1, 2) * np.maximum(np.array(extent) - side, 0) / 2
    half = side * spread
    lo, hi = np.array([half - pad] * 2), np.array([w + pad - half, h + pad - half])
    centre = np.clip(centre, lo, np.maximum(lo, hi))
    return _view(rng, size, centre + pad, side, theta, jitter, 0.0), pad


def _lay_over(img: Image.Image, occluder: Cutout, rng: np.random.Generator, size: int) -> Image.Image:
    """Another garment lying over one edge of the photo (a pile on the bed, a sleeve)."""
    rgb, mask = occluder
    x0, y0, x1, y1 = garment_box(mask)
    side = max(x1 - x0, y1 - y0, 1.0) / rng.uniform(0.4, 0.7)
    theta = np.radians(rng.uniform(-40, 40))
    edge = int(rng.integers(4))
    along, out = rng.uniform(0.15, 0.85) * size, rng.uniform(0.05, 0.25) * size
    q = [(along, -out), (size + out, along), (along, size + out), (-out, along)][edge]
    rot = np.array([[np.cos(theta), np.sin(theta)], [-np.sin(theta), np.cos(theta)]])
    centre = np.array([(x0 + x1) / 2, (y0 + y1) / 2]) - (np.array(q) / size - 0.5) * side @ rot.T
    src = _view(rng, size, centre, side, theta, 0.04, 0.02)
    return _to_image(_lay(np.asarray(img, np.float32), rgb, mask, src, size, rng, shadow=0.3))


# -- public -------------------------------------------------------------------------------
def street_photo(garment: Image.Image, mask: Image.Image, rng: np.random.Generator, size: int,
                 params: DomainGapParams | None = None, **where: Image.Image | Cutout | None) -> Image.Image:
    """A customer's photo of ``garment`` (RGB, the same size as its ``mask``, mode "L").

    ``where``: ``scene``, ``room`` and ``occluder`` of :func:`street_photo_with_box`, which
    draws the same photo and also says where the garment is in it."""
    return street_photo_with_box(garment, mask, rng, size, params, **where)[0]


def street_photo_with_box(
    garment: Image.Image,
    mask: Image.Image,
    rng: np.random.Generator,
    size: int,
    params: DomainGapParams | None = None,
    *,
    scene: Image.Image | None = None,
    room: Image.Image | None = None,
    occluder: Cutout | None = None,
) -> tuple[Image.Image, tuple[float, float, float, float]]:
    """A customer's photo of ``garment`` (RGB, the same size as its ``mask``, mode "L") and the
    garment's true box in it: (x0, y0, x1, y1) in fractions of the photo, the bounding box of
    its mask seen by the same camera (its whole extent, an occluded part included; clipped
    to the frame).

    ``scene``: the garment's own photo (its real surroundings), re-shot with probability
    ``p_keep_background``; otherwise the garment is cut out and laid into ``room`` (an
    empty real scene) or, without one, a procedural background. ``occluder``: a real
    garment that may lie over an edge (else a procedural hand or object does).
    """
    p = params or DomainGapParams()
    box = garment_box(mask)
    partial = bool(rng.random() < p.p_partial)
    centre, side, theta = _place(rng, size, box, p, partial)
    if scene is not None and rng.random() < p.p_keep_background:
        src, pad = _reshoot_view(scene.size, centre, side, theta, rng, size, p, extent=(box[2] - box[0], box[3] - box[1]))
        img = _shoot(scene.convert("RGB"), src, pad, size)
        seen = _shoot(mask, src, pad, size, mode="constant")  # the garment only, not its mirrored margin
    else:
        base = _room(room, rng, size) if room is not None else cluttered_background(rng, size)
        src = _view(rng, size, centre, side, theta, p.perspective, p.warp)
        img = _to_image(_lay(base, garment, mask, src, size, rng, shadow=0.35))
        seen = _mesh(mask, size, src)
    if rng.random() < p.p_occlusion:
        img = _lay_over(img, occluder, rng, size) if occluder is not None else _occlude(img, rng)
    x0, y0, x1, y1 = garment_box(seen)
    return _degrade(_light(img, rng, p), rng, p), (x0 / size, y0 / size, x1 / size, y1 / size)


def closeup_photo(garment: Image.Image, mask: Image.Image, rng: np.random.Generator, size: int,
                  weave: bool = False) -> Image.Image:
    """A zoomed crop of the fabric: the right garment, but useless for retrieval. ``weave``
    draws a thread pattern over it (procedural garments only: a real photo has its own)."""
    m = np.asarray(mask) > 200
    w, h = garment.size
    side = min(w, h) * rng.uniform(0.18, 0.35)
    ys, xs = np.nonzero(m)
    if len(ys) == 0:
        ys, xs = np.array([h // 2]), np.array([w // 2])
    # Of a few random points on the garment, the one whose square is most garment.
    s = np.pad(m.astype(np.int32).cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    r = int(side / 2)
    picks = rng.integers(len(ys), size=8)
    cy = np.clip(ys[picks], r, h - r - 1)
    cx = np.clip(xs[picks], r, w - r - 1)
    inside = s[cy + r, cx + r] - s[cy - r, cx + r] - s[cy + r, cx - r] + s[cy - r, cx - r]
    k = int(np.argmax(inside))
    theta = np.radians(rng.uniform(-30, 30))
    src = _view(rng, size, np.array([cx[k], cy[k]], np.float64), side, theta, 0.03, 0.0)
    img = _mesh(garment.convert("RGB"), size, src)
    if weave:
        wv = 1 + 0.08 * np.sin(np.arange(size, dtype=np.float32) * rng.uniform(0.8, 1.6))
        img = _to_image(np.asarray(img, np.float32) * wv[None, :, None] * wv[:, None, None])
    p = DomainGapParams(p_blur=0.8)
    return _degrade(_light(img, rng, p), rng, p)


def parcel_photo(rng: np.random.Generator, size: int, room: Image.Image | None = None) -> Image.Image:
    """A delivery box on the floor (``room``, an empty real scene, or a procedural one):
    brown cardboard, packing tape, a shipping label."""
    img = _to_image(_room(room, rng, size) if room is not None else cluttered_background(rng, size))
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




def unrelated_photo(rng: np.random.Generator, size: int, photo: Image.Image | None = None) -> Image.Image:
    """A photo of something else: ``photo`` (a real one: another purchase, another
    garment) re-shot, or without one a procedural landscape, cup or screenshot."""
    p = DomainGapParams()
    if photo is not None:
        w, h = photo.size
        side = min(w, h) * rng.uniform(0.75, 1.0)
        centre = np.array([w, h]) / 2 + rng.uniform(-0.1, 0.1, 2) * side
        theta = np.radians(rng.uniform(-p.max_rotation_deg, p.max_rotation_deg))
        img = _reshoot(photo, centre, side, theta, rng, size, p)
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
