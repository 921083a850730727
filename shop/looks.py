"""The demo shop's lookbook ("shop the look"): snapshots of looks and the items stylists link.

A *snapshot* is a photo of one of the shop's outfits (``outfits.py``) laid out together, the
way a street-style or flat-lay post shows a look: each garment's real photo cut out along its
mask, in the item's colour, placed where it is worn (hat above the top, the bottom below it,
shoes at the foot, outerwear beside), a little turned, with a soft shadow, on the empty scene
of another bundled photo (a real floor, bed or wall), then lit and shot as a phone would
(``domain_gap``).

A snapshot post links the items shown **and related ones** the stylists chose by the hidden
rule: other items of the outfit's lookbook that could take the place of one shown and keep
every pair rule (another pair of shoes that goes, a second top), so what a post links is not
only what looks like its photo. Posts carry the look's style as metadata; styles are not
equally frequent (``STYLE_WEIGHTS``: casual most, sporty least), and a few tags.

Everything draws from its own seeded stream (after the products and the outfits), so adding
a lookbook changes no product, item, photo or outfit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFilter

from street2shop.shop import garments as G
from street2shop.shop import outfits as O
from street2shop.shop.domain_gap import DomainGapParams, _degrade, _light, _room

#: how often each style is photographed, relative to the others
STYLE_WEIGHTS = {"casual": 0.4, "street": 0.3, "formal": 0.2, "sporty": 0.1}
#: where each type lies in a look: centre (x, y) and longer side, shares of the frame
SLOTS = {
    "hat": ((0.74, 0.13), 0.22),
    "top": ((0.42, 0.36), 0.42),
    "dress": ((0.42, 0.46), 0.70),
    "outerwear": ((0.76, 0.42), 0.44),
    "bottom": ((0.42, 0.70), 0.46),
    "shoes": ((0.72, 0.86), 0.24),
}
#: drawn in this order: later ones lie on top
LAYERS = ("outerwear", "bottom", "dress", "top", "shoes", "hat")
MAX_RELATED = 3


@dataclass(frozen=True)
class PlannedSnap:
    snap_id: str
    outfit_id: str
    style: str
    shown: tuple[O.OutfitPiece, ...]
    related: tuple[str, ...]  # item ids
    tags: tuple[str, ...]
    room: str
    seed: int


def plan_snaps(
    outfits: Sequence[O.PlannedOutfit],
    pool: dict[str, list[O.OutfitPiece]],
    traits: dict[str, O.Traits],
    rooms: Sequence[str],
    seed: int,
    per_outfit: float = 0.35,
) -> list[PlannedSnap]:
    """Snapshot posts: about ``per_outfit`` of the outfits (more of the frequent styles),
    each with its related items. ``pool``: lookbook -> its items (as pieces); ``traits``:
    design id -> traits."""
    rng = np.random.default_rng([seed, 5])
    if not outfits or not rooms:
        return []
    mean = float(np.mean([STYLE_WEIGHTS[o.style] for o in outfits]))
    snaps: list[PlannedSnap] = []
    for outfit in outfits:
        p = min(1.0, per_outfit * STYLE_WEIGHTS[outfit.style] / mean)
        if rng.random() >= p:
            continue
        shown = {p_.item_id for p_ in outfit.pieces}
        alternatives = []
        for candidate in pool.get(outfit.lookbook, []):
            if candidate.item_id in shown or candidate.type not in {x.type for x in outfit.pieces}:
                continue
            swapped = [candidate if x.type == candidate.type else x for x in outfit.pieces]
            if outfit.by_rule and O.compatible(swapped, traits):
                alternatives.append(candidate.item_id)
        order = rng.permutation(len(alternatives))
        related = tuple(sorted(alternatives[i] for i in order[:MAX_RELATED]))
        colours = sorted({x.colour for x in outfit.pieces})
        tags = (outfit.style, *(f"#{c}" for c in colours[:3]), "#" + "-".join(sorted(x.type for x in outfit.pieces)))
        snaps.append(PlannedSnap(f"k{len(snaps) + 1:05d}", outfit.outfit_id, outfit.style, outfit.pieces, related, tags,
                                 rooms[int(rng.integers(len(rooms)))], int(rng.integers(2**63))))
    return snaps


def compose_look(renders: Sequence[tuple[str, G.GarmentRender]], room: Image.Image, rng: np.random.Generator,
                 size: int, p: DomainGapParams | None = None) -> Image.Image:
    """A photo of a look: ``renders`` ((type, garment in its colour), ...) laid on a view of
    ``room``, each where it is worn, turned a little, shadowed; then lit and degraded as a
    phone photo is."""
    p = p or DomainGapParams()
    canvas = Image.fromarray(np.clip(_room(room, rng, size), 0, 255).astype(np.uint8))
    shadow_layer = Image.new("L", (size, size), 0)
    placed = []
    for kind in LAYERS:
        for t, render in renders:
            if t != kind:
                continue
            (cx, cy), side = SLOTS[t]
            box = G.garment_box(render.mask)
            garment = render.rgb.crop(box)
            mask = render.mask.crop(box)
            longer = side * size * rng.uniform(0.9, 1.1)
            scale = longer / max(garment.size)
            shape = (max(1, round(garment.width * scale)), max(1, round(garment.height * scale)))
            angle = float(rng.uniform(-12, 12))
            garment = garment.resize(shape, Image.BILINEAR).rotate(angle, Image.BILINEAR, expand=True)
            mask = mask.resize(shape, Image.BILINEAR).rotate(angle, Image.BILINEAR, expand=True)
            x = int((cx + rng.uniform(-0.03, 0.03)) * size - garment.width / 2)
            y = int((cy + rng.uniform(-0.03, 0.03)) * size - garment.height / 2)
            placed.append((garment, mask, x, y))
            shadow_layer.paste(mask, (x + size // 60, y + size // 40), mask)
    shadow = np.asarray(shadow_layer.filter(ImageFilter.GaussianBlur(size / 80)), np.float32)[..., None] / 255
    canvas = Image.fromarray(np.clip(np.asarray(canvas, np.float32) * (1 - 0.35 * shadow), 0, 255).astype(np.uint8))
    for garment, mask, x, y in placed:
        canvas.paste(garment, (x, y), mask)
    return _degrade(_light(canvas, rng, p), rng, p)
