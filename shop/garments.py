"""Garments of the demo shop: designs, colours, and their clean renders.

A ``Design`` is one garment identity (shape, pattern, print); a design in one colour is one
sellable item. Two kinds of garment, chosen by name in ``GARMENT_KINDS``:

- ``procedural``: drawn with PIL per category (dress, blouse/shirt, hoodie, sweater, jacket)
  with pattern (solid, stripes, checks, dots, print), folds and seams. Fast, no data.
- ``real``: CC0 photos shipped in ``assets/real`` (see ``make_assets.py``), cut out with a
  simple background model and recoloured by luminance transfer, so folds and texture stay.

The palette holds near colours on purpose (navy / dark-blue, burgundy / wine, ...), so
same-category, same-pattern, near-colour items exist and retrieval is genuinely hard.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter
from scipy import ndimage

#: colour slug -> (display name, sRGB). Groups of near colours are deliberate.
PALETTE: dict[str, tuple[str, tuple[int, int, int]]] = {
    "black": ("Black", (22, 22, 24)),
    "charcoal": ("Charcoal", (58, 58, 62)),
    "grey": ("Grey", (128, 128, 132)),
    "light-grey": ("Light Grey", (188, 188, 190)),
    "white": ("White", (240, 240, 236)),
    "ivory": ("Ivory", (238, 230, 208)),
    "beige": ("Beige", (214, 194, 160)),
    "camel": ("Camel", (190, 146, 92)),
    "brown": ("Brown", (112, 72, 42)),
    "chocolate": ("Chocolate", (82, 52, 32)),
    "navy": ("Navy", (24, 32, 72)),
    "dark-blue": ("Dark Blue", (30, 44, 100)),
    "royal-blue": ("Royal Blue", (42, 72, 170)),
    "sky-blue": ("Sky Blue", (122, 170, 220)),
    "light-blue": ("Light Blue", (164, 196, 230)),
    "red": ("Red", (190, 32, 36)),
    "burgundy": ("Burgundy", (112, 22, 42)),
    "wine": ("Wine", (96, 28, 54)),
    "pink": ("Pink", (234, 152, 172)),
    "dusty-pink": ("Dusty Pink", (204, 150, 156)),
    "coral": ("Coral", (240, 122, 100)),
    "orange": ("Orange", (234, 122, 32)),
    "mustard": ("Mustard", (208, 164, 42)),
    "yellow": ("Yellow", (240, 214, 62)),
    "olive": ("Olive", (108, 110, 50)),
    "khaki": ("Khaki", (166, 150, 102)),
    "forest-green": ("Forest Green", (36, 86, 52)),
    "emerald": ("Emerald", (22, 130, 82)),
    "mint": ("Mint", (162, 220, 190)),
    "teal": ("Teal", (22, 118, 124)),
    "purple": ("Purple", (100, 52, 130)),
    "lavender": ("Lavender", (180, 160, 212)),
}

CATEGORY_SLUGS = ("dresses", "blouses-shirts", "hoodies-sweatshirts", "sweaters", "jackets-coats")
PATTERNS = ("solid", "stripes", "checks", "dots", "print")
GARMENT_KINDS = ("procedural", "real")

ASSETS_DIR = Path(__file__).parent / "assets"
REAL_DIR = ASSETS_DIR / "real"
REAL_INDEX = ASSETS_DIR / "real_index.json"


@dataclass(frozen=True)
class Design:
    """One garment identity; ``seed`` fixes every shape and pattern detail."""

    design_id: str  # "d00012"
    category: str
    pattern: str
    kind: str  # "procedural" | "real"
    seed: int
    asset: str | None = None  # real: file name in assets/real
    flip: bool = False  # real: a mirrored cut of a reused photo is another design


@dataclass
class GarmentRender:
    """A design in one colour: the clean garment and its mask (mode "L"), both square.

    ``scene`` is, for real garments, the recoloured original photo with its own background
    (what a customer at home would have photographed); None for procedural ones."""

    rgb: Image.Image
    mask: Image.Image
    scene: Image.Image | None = None


# -- patterns -----------------------------------------------------------------------------
@functools.lru_cache(maxsize=8)
def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    return yy, xx


def _accent(rgb: tuple[int, int, int], rng: np.random.Generator) -> np.ndarray:
    """A pattern colour that stays visible on the base colour."""
    lum = 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]
    light = np.array([240, 236, 225], np.float32)
    dark = np.array([28, 28, 34], np.float32)
    k = rng.uniform(0.0, 0.25)  # design-specific tint so accents differ a little
    return (dark if lum > 150 else light) * (1 - k) + np.array(rgb, np.float32) * k


def pattern_layer(design: Design, size: int, rgb: tuple[int, int, int]) -> np.ndarray:
    """Float32 HxWx3 texture of the design in base colour ``rgb`` (before shading)."""
    rng = np.random.default_rng([design.seed, 1])
    base = np.broadcast_to(np.array(rgb, np.float32), (size, size, 3)).copy()
    accent = _accent(rgb, rng)
    yy, xx = _grid(size)
    pat = design.pattern
    if pat == "solid":
        return base
    if pat in ("stripes", "checks"):
        period = size * rng.uniform(0.04, 0.11)
        duty = rng.uniform(0.25, 0.55)
        angle = rng.choice([0.0, np.pi / 2, np.pi / 4, rng.uniform(0, np.pi)])
        u = (xx * np.cos(angle) + yy * np.sin(angle)) / period
        w = ((u % 1.0) < duty).astype(np.float32)
        if pat == "checks":
            v = (-xx * np.sin(angle) + yy * np.cos(angle)) / period
            w = 0.5 * w + 0.5 * ((v % 1.0) < duty).astype(np.float32)
        return base * (1 - w[..., None]) + accent * w[..., None]
    if pat == "dots":
        spacing = size * rng.uniform(0.05, 0.1)
        radius = spacing * rng.uniform(0.15, 0.35)
        row = np.floor(yy / spacing)
        x_shift = (row % 2) * spacing / 2 * (rng.random() < 0.5)
        dx = (xx + x_shift) % spacing - spacing / 2
        dy = yy % spacing - spacing / 2
        w = (dx**2 + dy**2 < radius**2).astype(np.float32)
        return base * (1 - w[..., None]) + accent * w[..., None]
    if pat == "print":  # scattered small flowers/leaves, fixed by the design seed
        img = Image.fromarray(base.astype(np.uint8))
        draw = ImageDraw.Draw(img)
        second = tuple(int(v) for v in PALETTE[list(PALETTE)[int(rng.integers(len(PALETTE)))]][1])
        n = int(rng.integers(25, 60))
        r0 = size * rng.uniform(0.012, 0.03)
        for x, y, s, c in zip(rng.uniform(0, size, n), rng.uniform(0, size, n),
                              rng.uniform(0.6, 1.6, n), rng.random(n)):
            col = tuple(int(v) for v in accent) if c < 0.6 else second
            r = r0 * s
            for a in range(5):  # five petals
                px, py = x + 1.3 * r * np.cos(a * 1.2566), y + 1.3 * r * np.sin(a * 1.2566)
                draw.ellipse([px - r, py - r, px + r, py + r], fill=col)
            draw.ellipse([x - r * 0.6, y - r * 0.6, x + r * 0.6, y + r * 0.6], fill=second)
        return np.asarray(img, np.float32)
    raise ValueError(f"unknown pattern {pat!r}; known: {PATTERNS}")


# -- procedural silhouettes ---------------------------------------------------------------
def _sleeve(shoulder: tuple[float, float], armpit: tuple[float, float], direction: np.ndarray,
            length: float, cuff: float) -> list[tuple[float, float]]:
    d = direction / np.linalg.norm(direction)
    perp = np.array([-d[1], d[0]])
    mid = (np.array(shoulder) + np.array(armpit)) / 2
    end = mid + d * length
    a, b = end + perp * cuff, end - perp * cuff
    return [shoulder, tuple(a), tuple(b), armpit] if np.dot(a - b, np.array(shoulder) - np.array(armpit)) > 0 \
        else [shoulder, tuple(b), tuple(a), armpit]


def _silhouette(design: Design) -> dict:
    """Polygons (normalised coordinates) and details of a procedural design."""
    rng = np.random.default_rng([design.seed, 0])
    cat = design.category
    out: dict = {"polys": [], "lines": [], "dots": [], "neck": None, "hood": None}
    if cat == "dresses":
        sy, waist_y, hem_y = 0.14, rng.uniform(0.36, 0.46), rng.uniform(0.82, 0.94)
        sw, ww, hw = rng.uniform(0.12, 0.16), rng.uniform(0.09, 0.12), rng.uniform(0.18, 0.34)
        out["polys"].append([(0.5 - sw, sy), (0.5 - ww, waist_y), (0.5 - hw, hem_y), (0.5 + hw, hem_y),
                             (0.5 + ww, waist_y), (0.5 + sw, sy)])
        sleeve = rng.choice(["none", "short", "long"])
        armpit_y = sy + 0.11
        if sleeve != "none":
            length = 0.12 if sleeve == "short" else rng.uniform(0.3, 0.4)
            for s in (-1, 1):
                out["polys"].append(_sleeve((0.5 + s * sw, sy), (0.5 + s * (sw - 0.015), armpit_y),
                                            np.array([s * 0.6, 1.0]), length, rng.uniform(0.04, 0.06)))
        if rng.random() < 0.5:  # a belt at the waist
            out["lines"].append(([(0.5 - ww, waist_y), (0.5 + ww, waist_y)], 0.018))
        out["neck"] = (rng.choice(["round", "v"]), sw * rng.uniform(0.4, 0.7), sy, rng.uniform(0.05, 0.12))
        return out
    sy = 0.2
    tw = rng.uniform(0.16, 0.22)
    hem_y = rng.uniform(0.7, 0.8) if cat != "jackets-coats" else rng.uniform(0.78, 0.92)
    hw = tw * rng.uniform(0.9, 1.15)
    armpit_y = sy + rng.uniform(0.13, 0.18)
    out["polys"].append([(0.5 - tw * 0.45, sy - 0.02), (0.5 - tw, sy + 0.03), (0.5 - tw, armpit_y),
                         (0.5 - hw, hem_y), (0.5 + hw, hem_y), (0.5 + tw, armpit_y),
                         (0.5 + tw, sy + 0.03), (0.5 + tw * 0.45, sy - 0.02)])
    long_sleeve = cat != "blouses-shirts" or rng.random() < 0.5
    length = rng.uniform(0.42, 0.52) if long_sleeve else rng.uniform(0.12, 0.18)
    spread = rng.uniform(0.35, 0.8)
    for s in (-1, 1):
        out["polys"].append(_sleeve((0.5 + s * tw, sy + 0.03), (0.5 + s * tw, armpit_y),
                                    np.array([s * spread, 1.0]), length, rng.uniform(0.05, 0.075)))
    if cat in ("sweaters", "hoodies-sweatshirts"):  # ribbed hem band
        band = 0.035
        out["lines"].append(([(0.5 - hw, hem_y - band), (0.5 + hw, hem_y - band)], 0.006))
    if cat == "hoodies-sweatshirts":
        out["hood"] = (tw * 0.55, sy)
        if rng.random() < 0.7:  # kangaroo pocket
            py = hem_y - rng.uniform(0.17, 0.22)
            out["lines"].append(([(0.5 - tw * 0.6, hem_y - 0.05), (0.5 - tw * 0.45, py), (0.5 + tw * 0.45, py),
                                  (0.5 + tw * 0.6, hem_y - 0.05)], 0.008))
        out["neck"] = ("round", tw * 0.4, sy - 0.02, 0.04)
    elif cat == "jackets-coats":
        out["lines"].append(([(0.5, sy + 0.02), (0.5, hem_y)], 0.008))
        if rng.random() < 0.6:
            out["dots"] = [(0.5, y) for y in np.linspace(sy + 0.1, hem_y - 0.05, int(rng.integers(3, 6)))]
        for s in (-1, 1):  # lapels and pockets
            out["lines"].append(([(0.5 + s * tw * 0.45, sy - 0.02), (0.5 + s * tw * 0.6, sy + 0.12), (0.5, sy + 0.2)], 0.008))
            px = 0.5 + s * tw * 0.55
            out["lines"].append(([(px - 0.05, hem_y - 0.14), (px + 0.05, hem_y - 0.14)], 0.008))
        out["neck"] = ("v", tw * 0.45, sy - 0.02, 0.2)
    elif cat == "blouses-shirts":
        kind = rng.choice(["collar", "round", "v"])
        if kind == "collar":
            out["lines"].append(([(0.5 - tw * 0.45, sy - 0.02), (0.5 - 0.02, sy + 0.07), (0.5 + 0.02, sy + 0.07),
                                  (0.5 + tw * 0.45, sy - 0.02)], 0.01))
            out["dots"] = [(0.5, y) for y in np.linspace(sy + 0.1, hem_y - 0.05, int(rng.integers(4, 7)))]
            out["neck"] = ("v", tw * 0.3, sy - 0.02, 0.07)
        else:
            out["neck"] = (kind, tw * rng.uniform(0.35, 0.5), sy - 0.02, rng.uniform(0.04, 0.12))
    else:  # sweaters
        out["neck"] = (rng.choice(["round", "v", "turtle"]), tw * rng.uniform(0.35, 0.45), sy - 0.02, rng.uniform(0.04, 0.1))
    return out


def _render_procedural(design: Design, rgb: tuple[int, int, int], size: int) -> GarmentRender:
    shape = _silhouette(design)
    scale = 2  # draw at twice the size and downsample: anti-aliased edges for free
    big = size * scale

    def px(pts):
        return [(x * big, y * big) for x, y in pts]

    mask = Image.new("L", (big, big), 0)
    draw = ImageDraw.Draw(mask)
    if shape["hood"] is not None:
        r, sy = shape["hood"]
        draw.ellipse(px([(0.5 - r, sy - 0.13), (0.5 + r, sy + 0.06)]), fill=255)
    for poly in shape["polys"]:
        draw.polygon(px(poly), fill=255)
    details = Image.new("L", (big, big), 0)  # seams, buttons: drawn darker
    ddraw = ImageDraw.Draw(details)
    if shape["neck"] is not None:
        kind, nw, ny, depth = shape["neck"]
        if kind == "round":
            draw.ellipse(px([(0.5 - nw, ny - depth), (0.5 + nw, ny + depth)]), fill=0)
        elif kind == "v":
            draw.polygon(px([(0.5 - nw, ny - 0.01), (0.5 + nw, ny - 0.01), (0.5, ny + depth)]), fill=0)
        else:  # turtle neck: a collar tube above the shoulders
            draw.rectangle(px([(0.5 - nw, ny - 0.07), (0.5 + nw, ny + 0.01)]), fill=255)
            ddraw.line(px([(0.5 - nw, ny + 0.01), (0.5 + nw, ny + 0.01)]), fill=255, width=max(1, big // 150))
    for pts, width in shape["lines"]:
        ddraw.line(px(pts), fill=255, width=max(1, int(width * big)))
    for x, y in shape["dots"]:
        r = 0.012 * big
        ddraw.ellipse([x * big - r, y * big - r, x * big + r, y * big + r], fill=255)
    mask = mask.resize((size, size), Image.BOX)
    details = details.resize((size, size), Image.BOX)
    tex = pattern_layer(design, size, rgb)
    # Shading: folds (fixed per design, so the seller photo is stable) and darker edges.
    rng = np.random.default_rng([design.seed, 2])
    folds = np.asarray(Image.fromarray((rng.random((1, 7)) * 255).astype(np.uint8)).resize((size, size), Image.BICUBIC),
                       np.float32) / 255
    small = mask.resize((size // 4, size // 4), Image.BILINEAR).filter(ImageFilter.GaussianBlur(size / 180))
    edge = np.asarray(small.resize((size, size), Image.BILINEAR), np.float32) / 255
    shade = (0.86 + 0.14 * folds) * (0.75 + 0.25 * edge)
    d = np.asarray(details, np.float32)[..., None] / 255
    arr = tex * shade[..., None] * (1 - 0.45 * d)
    return GarmentRender(rgb=Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)), mask=mask)


# -- real garments ------------------------------------------------------------------------
def _otsu(values: np.ndarray) -> float:
    hist, edges = np.histogram(values, bins=64)
    centres = (edges[:-1] + edges[1:]) / 2
    w0 = np.cumsum(hist)
    w1 = w0[-1] - w0
    m0 = np.cumsum(hist * centres) / np.maximum(w0, 1)
    m1 = ((hist * centres).sum() - np.cumsum(hist * centres)) / np.maximum(w1, 1)
    return float(centres[np.argmax(w0 * w1 * (m0 - m1) ** 2)])


def estimate_mask(photo: Image.Image) -> np.ndarray:
    """Garment-vs-background mask (bool) of a flat-lay photo: distance to the border's
    colour, Otsu threshold, largest component, holes filled. Crude but deterministic;
    ``make_assets`` keeps only photos where it looks sane (``mask_quality``)."""
    arr = np.asarray(photo.convert("RGB").filter(ImageFilter.GaussianBlur(2)), np.float32)
    b = max(4, arr.shape[0] // 20)
    border = np.concatenate([arr[:b].reshape(-1, 3), arr[-b:].reshape(-1, 3),
                             arr[:, :b].reshape(-1, 3), arr[:, -b:].reshape(-1, 3)])
    med = np.median(border, axis=0)
    spread = np.median(np.abs(border - med), axis=0).mean() + 4
    dist = np.linalg.norm(arr - med, axis=2) / spread
    m = dist > max(_otsu(dist), 3.0)
    m = ndimage.binary_opening(m, iterations=2)
    labels, n = ndimage.label(m)
    if n == 0:
        return m
    biggest = 1 + int(np.argmax(ndimage.sum(m, labels, range(1, n + 1))))
    m = ndimage.binary_fill_holes(ndimage.binary_closing(labels == biggest, iterations=3))
    return m


def mask_quality(mask: np.ndarray) -> tuple[float, float]:
    """(coverage, fraction of the border touched): a usable cut-out covers a fair part of
    the frame and mostly stays off its edges."""
    border = np.concatenate([mask[0], mask[-1], mask[:, 0], mask[:, -1]])
    return float(mask.mean()), float(border.mean())


@functools.lru_cache(maxsize=1)
def _real_index_file() -> dict:
    if not REAL_INDEX.is_file():
        raise FileNotFoundError(f"{REAL_INDEX} missing: run `python -m street2shop.shop.make_assets`")
    return json.loads(REAL_INDEX.read_text())


def real_index() -> dict[str, str]:
    """file name -> category of the shipped real garment photos."""
    return _real_index_file()["garments"]


@functools.lru_cache(maxsize=4)
def real_unrelated_photos(size: int) -> tuple[Image.Image, ...]:
    """The shipped photos of things the shop does not sell (shoes, hats, trousers...),
    square-cropped to ``size``: real-looking "unrelated" review photos."""
    out = []
    for name in _real_index_file()["unrelated"]:
        with Image.open(REAL_DIR / name) as im:
            im = im.convert("RGB")
            side = min(im.size)
            left, top = (im.width - side) // 2, (im.height - side) // 2
            out.append(im.resize((size, size), Image.BILINEAR, box=(left, top, left + side, top + side)))
    return tuple(out)


@functools.lru_cache(maxsize=256)
def _real_asset(name: str, size: int) -> tuple[Image.Image, np.ndarray]:
    """The photo, square-padded by edge extension and resized, and its soft mask in [0, 1]."""
    photo = Image.open(REAL_DIR / name).convert("RGB")
    w, h = photo.size
    side = max(w, h)
    arr = np.asarray(photo)
    py, px = (side - h) // 2, (side - w) // 2
    arr = np.pad(arr, ((py, side - h - py), (px, side - w - px), (0, 0)), mode="edge")
    sq = Image.fromarray(arr).resize((size, size), Image.BILINEAR)
    m = estimate_mask(sq)
    soft = np.asarray(Image.fromarray((m * 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(1)), np.float32) / 255
    return sq, soft


def _render_real(design: Design, rgb: tuple[int, int, int], size: int) -> GarmentRender:
    photo, soft = _real_asset(design.asset, size)
    arr = np.asarray(photo, np.float32)
    if design.flip:
        arr, soft = arr[:, ::-1], soft[:, ::-1]
    lum = arr @ np.array([0.299, 0.587, 0.114], np.float32)
    inside = soft > 0.5
    ref = float(np.median(lum[inside])) if inside.any() else 128.0
    # Luminance transfer keeps folds and fabric texture whatever the source colour was.
    shade = np.clip(1 + 0.8 * (lum / max(ref, 1.0) - 1), 0.35, 1.5)[..., None]
    tex = pattern_layer(design, size, rgb)
    garment = np.clip(tex * shade, 0, 255)
    a = soft[..., None]
    scene = garment * a + arr * (1 - a)
    mask = Image.fromarray((soft * 255).astype(np.uint8))
    return GarmentRender(rgb=Image.fromarray(garment.astype(np.uint8)), mask=mask,
                         scene=Image.fromarray(scene.astype(np.uint8)))


def render_garment(design: Design, colour: str, size: int) -> GarmentRender:
    """The clean garment of ``design`` in palette colour ``colour`` at ``size`` px."""
    if colour not in PALETTE:
        raise ValueError(f"unknown colour {colour!r}; known: {sorted(PALETTE)}")
    rgb = PALETTE[colour][1]
    if design.kind == "procedural":
        return _render_procedural(design, rgb, size)
    if design.kind == "real":
        return _render_real(design, rgb, size)
    raise ValueError(f"unknown garment kind {design.kind!r}; known: {GARMENT_KINDS}")


def seller_photo(render: GarmentRender, size: int, background: tuple[int, int, int] = (244, 244, 242)) -> Image.Image:
    """The listing photo: the garment cut out, centred and filling the frame, on a plain
    light background with a faint floor shadow."""
    m = np.asarray(render.mask) > 128
    ys, xs = np.nonzero(m)
    if len(ys):
        cy, cx = (ys.min() + ys.max()) / 2, (xs.min() + xs.max()) / 2
        half = max(ys.max() - ys.min(), xs.max() - xs.min()) / 2 * 1.12 + 2
    else:
        cy = cx = half = render.mask.width / 2
    box = (cx - half, cy - half, cx + half, cy + half)
    # EXTENT (unlike resize's box) may reach past the edges; outside is background anyway.
    rgb = np.asarray(render.rgb.transform((size, size), Image.EXTENT, box, Image.BILINEAR), np.float32)
    mask_img = render.mask.transform((size, size), Image.EXTENT, box, Image.BILINEAR, fillcolor=0)
    a = np.asarray(mask_img, np.float32)[..., None] / 255
    small = mask_img.resize((size // 4, size // 4), Image.BILINEAR).filter(ImageFilter.GaussianBlur(size / 120))
    shadow = np.asarray(small.resize((size, size), Image.BILINEAR), np.float32)[..., None] / 255
    shadow = np.roll(shadow, size // 60, axis=0)
    bg = np.array(background, np.float32) * (1 - 0.12 * shadow)
    return Image.fromarray(np.clip(rgb * a + bg * (1 - a), 0, 255).astype(np.uint8))
