"""Garments of the demo shop: designs, colours, and their clean renders.

A ``Design`` is one garment identity; a design in one colour is one sellable item. Two
kinds of garment, chosen by name in ``GARMENT_KINDS``:

- ``procedural``: drawn with PIL per category (dress, blouse/shirt, hoodie, sweater, jacket)
  with pattern (solid, stripes, checks, dots, print), folds and seams. Fast, no data.
- ``real``: CC0 photos of real garments shipped in ``assets/real`` with their masks (made
  offline by ``make_assets.py``). Nothing is painted on them: a colour variant moves the
  garment's hue and chroma to the palette colour in CIE L*a*b* inside the mask and keeps
  its lightness variations, so folds, fabric texture and prints stay the photo's own.

The palette holds near colours on purpose (navy / dark-blue, burgundy / wine, ...), so
same-category, near-colour items exist and retrieval is genuinely hard.
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

#: the categories procedural garments are drawn for (real ones: those of the bundled photos)
PROCEDURAL_CATEGORIES = ("dresses", "blouses-shirts", "hoodies-sweatshirts", "sweaters", "jackets-coats")
PATTERNS = ("solid", "stripes", "checks", "dots", "print")  # procedural
REAL_PATTERNS = ("solid", "patterned")  # real: measured on the photo by make_assets
GARMENT_KINDS = ("procedural", "real")
#: light studio backdrops of seller photos (each seller shoots on one of them)
STUDIO_BACKGROUNDS: tuple[tuple[int, int, int], ...] = (
    (244, 244, 242), (250, 250, 250), (236, 237, 239), (243, 241, 237), (232, 232, 232),
)

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
    flip: bool = False  # real: the mirrored photo, when a shop has more designs than photos


@dataclass
class GarmentRender:
    """A design in one colour: the clean garment and its mask (mode "L"), same size.

    Procedural: square renders at the asked size. Real: the photo on a square canvas a bit
    wider than it (``SCENE_MARGIN``); ``rgb`` is the recoloured garment evenly lit, for
    cutting out (its pixels outside the mask mean nothing), and ``scene`` the recoloured photo
    with its own background and light (what the customer at home photographed), its room
    continued to the canvas' edges; None for procedural garments."""

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


# -- colour -------------------------------------------------------------------------------
_RGB_TO_XYZ = np.array([[0.4124564, 0.3575761, 0.1804375],
                        [0.2126729, 0.7151522, 0.0721750],
                        [0.0193339, 0.1191920, 0.9503041]], np.float32)
_XYZ_TO_RGB = np.linalg.inv(_RGB_TO_XYZ).astype(np.float32)
_WHITE = np.array([0.95047, 1.0, 1.08883], np.float32)  # D65
_EPS, _KAPPA = 216 / 24389, 24389 / 27


@functools.lru_cache(maxsize=1)
def _linear_lut() -> np.ndarray:
    c = np.arange(256, dtype=np.float64) / 255
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4).astype(np.float32)


def srgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """CIE L*a*b* (D65, float32) of sRGB pixels (uint8, ...x3)."""
    xyz = _linear_lut()[np.asarray(rgb, np.uint8)] @ _RGB_TO_XYZ.T / _WHITE
    f = np.where(xyz > _EPS, np.cbrt(xyz), (_KAPPA * xyz + 16) / 116)
    return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], -1)


def _lab_to_linear(lab: np.ndarray) -> np.ndarray:
    fy = (lab[..., 0] + 16) / 116
    f = np.stack([fy + lab[..., 1] / 500, fy, fy - lab[..., 2] / 200], -1)
    xyz = np.where(f**3 > _EPS, f**3, (116 * f - 16) / _KAPPA) * _WHITE
    return xyz @ _XYZ_TO_RGB.T


def lab_to_srgb(lab: np.ndarray) -> np.ndarray:
    """sRGB (float32 in [0, 255]) of CIE L*a*b* pixels. A colour outside the sRGB gamut is
    moved straight towards the grey of its own luminance until it fits: it loses chroma,
    not lightness (clipping each channel would shift both, and the hue)."""
    lin = _lab_to_linear(lab)
    r, g, b = lin[..., 0], lin[..., 1], lin[..., 2]
    out = (r < 0) | (r > 1) | (g < 0) | (g > 1) | (b < 0) | (b > 1)
    if out.any():
        sub = lin[out]
        y = np.clip(sub @ _RGB_TO_XYZ[1], 0, 1)[:, None]  # luminance: unchanged along the way
        d = sub - y
        with np.errstate(divide="ignore", invalid="ignore"):
            room = np.where(d > 0, (1 - y) / d, np.where(d < 0, -y / d, np.inf))
        lin[out] = y + np.minimum(room.min(axis=-1, keepdims=True), 1) * d
    lin = np.clip(lin, 0, 1)
    return _gamma_lut()[(lin * (_GAMMA_STEPS - 1) + 0.5).astype(np.int32)]


_GAMMA_STEPS = 16384  # a table: a fifth of a grey level at worst, far cheaper than a power


@functools.lru_cache(maxsize=1)
def _gamma_lut() -> np.ndarray:
    lin = np.linspace(0, 1, _GAMMA_STEPS, dtype=np.float64)
    return (255 * np.where(lin <= 0.0031308, 12.92 * lin, 1.055 * lin ** (1 / 2.4) - 0.055)).astype(np.float32)


@functools.lru_cache(maxsize=1)
def _palette_lab() -> tuple[tuple[str, ...], np.ndarray]:
    names = tuple(PALETTE)
    return names, srgb_to_lab(np.array([PALETTE[n][1] for n in names], np.uint8))


def palette_lab(colour: str) -> np.ndarray:
    """L*a*b* of a palette colour."""
    names, lab = _palette_lab()
    return lab[names.index(colour)].copy()


def nearest_colour(lab: np.ndarray) -> str:
    """The palette colour nearest to an L*a*b* colour (Euclidean, CIE76)."""
    names, table = _palette_lab()
    return names[int(np.argmin(((table - lab) ** 2).sum(axis=1)))]


def recolour_lab(lab: np.ndarray, inside: np.ndarray, target: np.ndarray, print_chroma: float = 0.6) -> np.ndarray:
    """Every pixel of ``lab`` moved as the garment (bool mask ``inside``) must move to look
    dyed in ``target`` (L*a*b*).

    Lightness: the garment's mean goes to the target's and its variations (folds, weave, the
    tones of a print) are kept, scaled by how much lighter or darker the garment becomes
    (shading is multiplicative, L* is nearly a cube root) and squeezed only as much as the
    range [2, 99] needs: over the fabric (1st to 99th percentile) L* is an affine map of
    the original, beyond it bent into the range (``_soft_range``). Chroma: the mean goes to
    the target's (less in the shadows, as on real cloth); a print's own colour differences
    are kept at ``print_chroma`` of their strength."""
    L, a, b = lab[..., 0], lab[..., 1], lab[..., 2]
    g = lab[inside] if inside.any() else lab.reshape(-1, 3)
    mean = g.mean(axis=0)
    dev = g[:, 0] - mean[0]
    lo, hi = (float(v) for v in np.percentile(dev, [1, 99]))
    k = float(np.clip(np.sqrt((target[0] + 16) / (mean[0] + 16)), 0.6, 1.5))
    centre = float(target[0])
    # Keep the shading's range inside [2, 99]: move the centre a little, then squeeze.
    centre = float(np.clip(centre, min(2 - k * lo, centre + 8), max(99 - k * hi, centre - 8)))
    k = min(k, (99 - centre) / hi if hi > 0 else k, (centre - 2) / -lo if lo < 0 else k)
    k = max(k, 0.05)
    L2 = _soft_range(centre + k * (L - mean[0]), centre + k * lo, centre + k * hi, 0.5, 99.5)
    shade = np.clip((L2 + 16) / (centre + 16), 0.45, 1.15)
    a2 = target[1] * shade + print_chroma * (a - mean[1])
    b2 = target[2] * shade + print_chroma * (b - mean[2])
    return np.stack([L2, a2, b2], -1).astype(np.float32)


def _soft_range(x: np.ndarray, lo: float, hi: float, floor: float, ceil: float) -> np.ndarray:
    """``x`` unchanged within [lo, hi]; beyond, bent smoothly (same value and slope at the
    bend) towards ``floor`` / ``ceil`` without reaching them: a black collar on a white
    blouse dyed navy stays darker than the navy, instead of clipping to one flat black."""
    lo, hi = max(lo, floor + 1e-3), min(hi, ceil - 1e-3)
    out = x.copy()
    below, above = x < lo, x > hi
    out[below] = lo - (lo - floor) * (1 - np.exp(-(lo - x[below]) / (lo - floor)))
    out[above] = hi + (ceil - hi) * (1 - np.exp(-(x[above] - hi) / (ceil - hi)))
    return out


def even_lighting(lab: np.ndarray, xy: np.ndarray, inside: np.ndarray, strength: float = 0.7) -> np.ndarray:
    """Pixels ``lab`` (N x 3, at image coordinates ``xy``, N x 2) with ``strength`` of the
    garment's (``inside``) light gradient taken out (a plane fitted to its L*): the
    studio's even light instead of a window on one side."""
    if inside.sum() < 16:
        return lab
    step = max(1, int(inside.sum()) // 4000)  # a subsample fits the plane as well
    g = xy[inside][::step].astype(np.float64)
    A = np.c_[np.ones(len(g)), g - g.mean(axis=0)]
    c = np.linalg.lstsq(A, lab[inside][::step, 0].astype(np.float64), rcond=None)[0]
    ramp = (xy - g.mean(axis=0)) @ c[1:]
    out = lab.copy()
    out[:, 0] = np.clip(out[:, 0] - strength * ramp.astype(np.float32), 0, 100)
    return out


def _dye(rgb: np.ndarray, alpha: np.ndarray, colour: str) -> tuple[np.ndarray, np.ndarray]:
    """(pixels touched by the garment, their L*a*b* once dyed ``colour``): only those are
    converted (the rest of the photo stays as it is)."""
    touched = alpha > 0
    return touched, recolour_lab(srgb_to_lab(rgb[touched]), alpha[touched] > 0.5, palette_lab(colour))


def _blend(rgb: np.ndarray, alpha: np.ndarray, touched: np.ndarray, dyed: np.ndarray) -> np.ndarray:
    out = np.asarray(rgb, np.float32).copy()
    a = alpha[touched][:, None]
    out[touched] = dyed * a + out[touched] * (1 - a)
    return out


def recolour(rgb: np.ndarray, alpha: np.ndarray, colour: str) -> np.ndarray:
    """The photo ``rgb`` (uint8 HxWx3) with its garment (soft mask ``alpha`` in [0, 1]) in
    palette colour ``colour``; float32 HxWx3, the background untouched."""
    touched, lab = _dye(rgb, alpha, colour)
    return _blend(rgb, alpha, touched, lab_to_srgb(lab))


# -- masks (used offline by make_assets) -------------------------------------------------
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
    colour, Otsu threshold, largest component, holes filled. Crude but deterministic:
    ``make_assets`` uses it only to seed GrabCut."""
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


def mask_quality(mask: np.ndarray, band: int = 0) -> tuple[float, float]:
    """(coverage, fraction of the frame's edge ring ``band`` px in that the mask touches):
    a usable cut-out covers a fair part of the frame and keeps off its edges."""
    h, w = mask.shape
    b = min(band, h // 2 - 1, w // 2 - 1)
    ring = np.concatenate([mask[b], mask[h - 1 - b], mask[:, b], mask[:, w - 1 - b]])
    return float(mask.mean()), float(ring.mean())


# -- the bundled real photos -------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def _real_index_file() -> dict:
    if not REAL_INDEX.is_file():
        raise FileNotFoundError(f"{REAL_INDEX} missing: run `python -m street2shop.shop.make_assets`")
    return json.loads(REAL_INDEX.read_text())


def real_index() -> dict[str, str]:
    """file name -> shop category of the bundled real garment photos (each has a mask)."""
    return {name: info["category"] for name, info in _real_index_file()["garments"].items()}


def real_info(name: str) -> dict:
    """What make_assets measured on a bundled garment photo: category, pattern, the
    garment's mean L*a*b* colour, its box (pixels) and the share of the frame it covers."""
    return _real_index_file()["garments"][name]


def real_unrelated() -> dict[str, str]:
    """file name -> category of the bundled photos kept out of every shop's products: the
    "not the item" review photos (no mask: they are only ever shown whole)."""
    return {name: info["category"] for name, info in _real_index_file()["unrelated"].items()}


def room_names() -> list[str]:
    """Bundled garment photos whose garment leaves most of the scene free: taken out
    (``empty_scene``), a real floor, bed or wall to lay another garment on."""
    return sorted(n for n, info in _real_index_file()["garments"].items() if info["coverage"] < 0.5)


def mask_file(name: str) -> Path:
    """The mask PNG shipped next to a garment photo."""
    return REAL_DIR / (Path(name).stem + ".png")


@dataclass(frozen=True)
class RealPhoto:
    """A bundled garment photo: pixels (uint8 HxWx3, read-only), soft mask (float32 HxW in
    [0, 1]) and the garment's box (x0, y0, x1, y1)."""

    rgb: np.ndarray
    alpha: np.ndarray
    box: tuple[int, int, int, int]


def working_side(size: int) -> int:
    """The longest side real photos are worked at for ``size`` px photos: a little more
    than the output (a close shot zooms in), never more than the bundle has (the smaller,
    the faster every step after)."""
    return round(size * 1.15)


@functools.lru_cache(maxsize=64)
def real_photo(name: str, side: int | None = None) -> RealPhoto:
    """A bundled garment photo and its mask, at most ``side`` px (None: as bundled)."""
    with Image.open(REAL_DIR / name) as im, Image.open(mask_file(name)) as mk:
        photo, mask = im.convert("RGB"), mk.convert("L")
    if side is not None and max(photo.size) > side:
        scale = side / max(photo.size)
        shape = (max(1, round(photo.width * scale)), max(1, round(photo.height * scale)))
        photo, mask = photo.resize(shape, Image.LANCZOS), mask.resize(shape, Image.BILINEAR)
    rgb = np.asarray(photo)
    m = np.asarray(mask) > 127
    # One pixel in from the cut, then feathered: no rim of the floor it lay on.
    m = ndimage.binary_erosion(m, iterations=1)
    alpha = ndimage.gaussian_filter(m.astype(np.float32), 0.8)
    ys, xs = np.nonzero(m)
    box = (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1) if len(ys) else (0, 0, *rgb.shape[1::-1])
    rgb.flags.writeable = False
    alpha.flags.writeable = False
    return RealPhoto(rgb, alpha, box)


def _fill(arr: np.ndarray, known: np.ndarray) -> np.ndarray:
    """Smooth guess of the unknown pixels from the known ones around them: normalised
    convolution at three scales, the finest that has enough known pixels near winning."""
    est = None
    h, w = known.shape
    for step, sigma in ((8, 2.5), (4, 2.0), (1, 3.0)):  # (downsampling, blur in its pixels)
        sub = (max(1, w // step), max(1, h // step))
        k = _resize_float(known.astype(np.float32), sub, Image.BOX)
        v = _resize_float(arr * known[..., None], sub, Image.BOX)
        num = ndimage.gaussian_filter(v, (sigma, sigma, 0))
        den = ndimage.gaussian_filter(k, sigma)
        e = num / np.maximum(den, 1e-4)[..., None]
        if step > 1:
            e, den = _resize_float(e, (w, h), Image.BILINEAR), _resize_float(den, (w, h), Image.BILINEAR)
        wgt = np.clip(den / 0.3, 0, 1)[..., None]
        est = e if est is None else e * wgt + est * (1 - wgt)
    return est


def _resize_float(arr: np.ndarray, size: tuple[int, int], resample: int) -> np.ndarray:
    """A float32 HxW(x3) array resized to ``size`` (w, h), channel by channel."""
    if arr.ndim == 2:
        return np.asarray(Image.fromarray(np.ascontiguousarray(arr, np.float32)).resize(size, resample))
    return np.stack([_resize_float(arr[..., c], size, resample) for c in range(arr.shape[2])], -1)


def _fill_in(rgb: np.ndarray, unknown: np.ndarray, reach: tuple[int, int]) -> np.ndarray:
    """``rgb`` (float32) with its ``unknown`` pixels made up from the known ones: a smooth
    fill plus grain copied from known pixels about ``reach`` (dx, dy) away (a floor's grain,
    a sheet's weave; wrapping round the frame: it is only grain). Made at half size (four
    times cheaper; the made-up part is the soft background of a phone photo anyway)."""
    h, w = unknown.shape
    small = (max(1, w // 2), max(1, h // 2))
    weight = _resize_float((~unknown).astype(np.float32), small, Image.BOX)
    half = _resize_float(rgb * ~unknown[..., None], small, Image.BOX) / np.maximum(weight, 1e-6)[..., None]
    hole = weight < 0.5
    smooth = _fill(half, ~hole)
    # Grain of the known pixels only: the hole (or the canvas' blank margin) is no edge.
    base = np.where(hole[..., None], smooth, half)
    grain = np.where(hole[..., None], 0, half - ndimage.gaussian_filter(base, (1, 1, 0)))
    # Fine texture only: the strong edges of a hanger or a clip copied about look wrong.
    limit = 3 * 1.4826 * float(np.median(np.abs(grain[~hole]))) + 1 if (~hole).any() else 1.0
    grain = np.clip(grain, -limit, limit)
    source = ~ndimage.binary_dilation(hole, iterations=2)  # grain from well clear of the hole
    texture = np.zeros_like(grain)
    todo = hole.copy()
    rx, ry = max(1, reach[0] // 2), max(1, reach[1] // 2)
    for dy, dx in ((0, rx), (0, -rx), (ry, 0), (-ry, 0), (0, 2 * rx), (0, -2 * rx), (2 * ry, 0), (-2 * ry, 0)):
        ok = todo & np.roll(source, (-dy, -dx), (0, 1))
        texture[ok] = np.roll(grain, (-dy, -dx), (0, 1))[ok]
        todo &= ~ok
    made = _resize_float(smooth + texture, (w, h), Image.BILINEAR)
    # Made-up pixels replace the unknown ones wholly and blend into the known ones nearby.
    soft = _resize_float(ndimage.gaussian_filter(hole.astype(np.float32), 1), (w, h), Image.BILINEAR)
    a = np.where(unknown, 1.0, soft)[..., None]
    return rgb * (1 - a) + made * a


def _hole(photo: RealPhoto) -> np.ndarray:
    return ndimage.binary_dilation(photo.alpha > 0.05, iterations=7)  # the garment's rim and shadow too


@functools.lru_cache(maxsize=48)
def empty_scene(name: str, side: int | None = None) -> Image.Image:
    """A bundled photo (at most ``side`` px) with its garment taken out (``_fill_in``).
    Blurry where the garment was, but another garment lands there: it is the room around
    that matters."""
    photo = real_photo(name, side)
    x0, y0, x1, y1 = photo.box
    filled = _fill_in(np.asarray(photo.rgb, np.float32), _hole(photo), ((x1 - x0) // 2 + 1, (y1 - y0) // 2 + 1))
    return Image.fromarray(_to_uint8(filled))


#: a real garment's scene is its photo on a square canvas this much wider than the
#: photo's longer side, the margin made up from the photo's own floor or bed: room for a
#: customer's photo to show the whole garment smaller in the frame than the photo does
SCENE_MARGIN = 1.3


@functools.lru_cache(maxsize=16)
def _scene_canvas(name: str, side: int | None = None) -> tuple[np.ndarray, int, int]:
    """(canvas, left, top): the photo (at most ``side`` px) with its room continued around
    it (``_fill_in``), and where the photo sits on it."""
    photo = real_photo(name, side)
    h, w = photo.alpha.shape
    side = int(round(max(w, h) * SCENE_MARGIN))
    left, top = (side - w) // 2, (side - h) // 2
    canvas = np.zeros((side, side, 3), np.float32)
    canvas[top : top + h, left : left + w] = photo.rgb
    unknown = np.ones((side, side), bool)
    unknown[top : top + h, left : left + w] = _hole(photo)
    canvas = _to_uint8(_fill_in(canvas, unknown, (w // 2, h // 2)))
    canvas.flags.writeable = False
    return canvas, left, top


@functools.lru_cache(maxsize=64)
def unrelated_photo(name: str) -> Image.Image:
    """A bundled "unrelated" photo (see ``real_unrelated``), whole."""
    with Image.open(REAL_DIR / name) as im:
        return im.convert("RGB")


def _render_real(design: Design, colour: str, side: int | None) -> GarmentRender:
    photo = real_photo(design.asset, side)
    rgb, alpha = photo.rgb, photo.alpha
    canvas, left, top = _scene_canvas(design.asset, side)
    if design.flip:
        rgb, alpha, canvas = rgb[:, ::-1], alpha[:, ::-1], canvas[:, ::-1]
        left = canvas.shape[1] - rgb.shape[1] - left
    touched, lab = _dye(rgb, alpha, colour)
    h, w = alpha.shape
    where = (slice(top, top + h), slice(left, left + w))
    scene = canvas.copy()
    scene[where] = _to_uint8(_blend(rgb, alpha, touched, lab_to_srgb(lab)))
    # The cut-out is dyed right to its edge, unblended: no rim of the floor's colour
    # around the garment on the studio backdrop.
    ys, xs = np.nonzero(touched)
    studio = np.zeros_like(canvas)
    on_photo = studio[where]  # a view
    on_photo[touched] = _to_uint8(lab_to_srgb(even_lighting(lab, np.stack([xs, ys], 1), alpha[touched] > 0.5)))
    mask = np.zeros(canvas.shape[:2], np.uint8)
    mask[where] = _to_uint8(alpha * 255)
    return GarmentRender(rgb=Image.fromarray(studio), mask=Image.fromarray(mask), scene=Image.fromarray(scene))


def _to_uint8(arr: np.ndarray) -> np.ndarray:
    return np.clip(arr + 0.5, 0, 255).astype(np.uint8)


def render_garment(design: Design, colour: str, size: int) -> GarmentRender:
    """The clean garment of ``design`` in palette colour ``colour``: ``size`` px square when
    procedural, the photo's canvas when real (the photo at ``working_side(size)``)."""
    if colour not in PALETTE:
        raise ValueError(f"unknown colour {colour!r}; known: {sorted(PALETTE)}")
    if design.kind == "procedural":
        return _render_procedural(design, PALETTE[colour][1], size)
    if design.kind == "real":
        return _render_real(design, colour, working_side(size))
    raise ValueError(f"unknown garment kind {design.kind!r}; known: {GARMENT_KINDS}")


def garment_box(mask: Image.Image, threshold: int = 128) -> tuple[float, float, float, float]:
    """(x0, y0, x1, y1) of the mask's pixels above ``threshold``; the whole frame if none."""
    m = np.asarray(mask) > threshold
    rows, cols = np.flatnonzero(m.any(axis=1)), np.flatnonzero(m.any(axis=0))
    if not len(rows):
        return 0.0, 0.0, float(mask.width), float(mask.height)
    return float(cols[0]), float(rows[0]), float(cols[-1] + 1), float(rows[-1] + 1)


def seller_photo(render: GarmentRender, size: int, background: tuple[int, int, int] = STUDIO_BACKGROUNDS[0],
                 margin: float = 1.14) -> Image.Image:
    """The listing photo: the garment cut out, centred and filling the frame (its longer
    side ``1/margin`` of it), on a plain light studio background with a soft floor shadow."""
    x0, y0, x1, y1 = garment_box(render.mask)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    half = max(x1 - x0, y1 - y0) / 2 * margin + 1
    box = (cx - half, cy - half, cx + half, cy + half)
    # EXTENT (unlike resize's box) may reach past the edges; outside is background anyway.
    rgb = np.asarray(render.rgb.transform((size, size), Image.EXTENT, box, Image.BILINEAR), np.float32)
    mask_img = render.mask.transform((size, size), Image.EXTENT, box, Image.BILINEAR, fillcolor=0)
    a = np.asarray(mask_img, np.float32)[..., None] / 255
    small = mask_img.resize((size // 4, size // 4), Image.BILINEAR).filter(ImageFilter.GaussianBlur(size / 120))
    shadow = np.asarray(small.resize((size, size), Image.BILINEAR), np.float32)[..., None] / 255
    shadow = np.roll(shadow, size // 60, axis=0)
    bg = np.array(background, np.float32) * (1 - 0.12 * shadow)
    return Image.fromarray(np.clip(rgb * a + bg * (1 - a) + 0.5, 0, 255).astype(np.uint8))
