"""The demo shop's curated outfits ("complete the look") and the hidden rule behind them.

A shop's stylists put 3-5 items of distinct *types* together (``TYPES``: a top and a bottom,
or a dress, which counts as both, plus some of shoes, outerwear and a hat). What makes items
go together is a rule the generator keeps to itself (written to ``truth/`` only), and a model
can learn it only from the photos:

* **style**: every design has a latent style (``STYLES``) that shows in its look: whether the
  garment is plain or patterned (``make_assets`` measured it on the photo) and whether its
  silhouette is long or short for its category (the height / width of the garment in its
  photo against the category's median). Recolouring keeps both, so every colour of a design
  has the design's style.
* **type-pair rules** (``PAIR_RULES``): what must agree depends on which two types meet, so
  "a goes with b, b with c" need not make "a goes with c":

  - garments worn together (top, bottom, dress, outerwear) share a style;
  - a top and its bottom contrast in lightness; outerwear is not the colour of what it covers;
  - shoes go with the bottom (or the dress) by colour: neutral, or of its hue family, and
    not lighter than it;
  - a hat picks up the top's (or the dress's) colour family;
  - the other pairs (shoes with a top, a hat with shoes, ...) are free.

Stylists work in *lookbooks*: a lookbook is a set of garments of one style plus shoes and
hats (which have no style constraint), and its outfits use only its designs, so every product
belongs to one lookbook (split by lookbook and no product is in two splits). A random item of
the same type swapped into an outfit is usually incompatible (another style, or a colour that
breaks a pair's rule) but not always: that share is the ceiling any model meets.

Everything draws from its own seeded stream, so adding outfits to a shop leaves its
products, items and photos exactly as they were.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from street2shop.shop import garments as G

#: the latent styles, the order the truth files list them in
STYLES = ("casual", "street", "formal", "sporty")
#: outfit slot of each shop category (hoodies are tops; procedural shops have no bottoms)
TYPE_OF_CATEGORY: dict[str, str] = {
    "dresses": "dress",
    "blouses-shirts": "top",
    "t-shirts": "top",
    "hoodies-sweatshirts": "top",
    "sweaters": "top",
    "trousers": "bottom",
    "skirts": "bottom",
    "shorts": "bottom",
    "jackets-coats": "outerwear",
    "shoes": "shoes",
    "hats": "hat",
}
#: the item types of an outfit; a dress fills the top and the bottom
TYPES = ("top", "bottom", "dress", "outerwear", "shoes", "hat")
EXTRAS = ("shoes", "outerwear", "hat")
#: colours that go with anything (the rest are chromatic)
NEUTRALS = frozenset({"black", "charcoal", "grey", "light-grey", "white", "ivory", "beige", "camel",
                      "brown", "chocolate", "navy", "khaki"})
#: two chromatic colours are of one hue family within this many degrees
FAMILY_DEG = 40.0
#: a top and its bottom differ in L* by at least this much
TOP_BOTTOM_CONTRAST = 20.0
#: shoes at most this much lighter (L*) than the bottom or dress
SHOES_OVER_BOTTOM = 10.0
#: the types whose style must agree
GARMENTS = frozenset({"top", "bottom", "dress", "outerwear"})


@dataclass(frozen=True)
class OutfitPiece:
    """One item of an outfit: which item, its design, colour and type."""

    item_id: str
    design_id: str
    colour: str
    type: str


@dataclass(frozen=True)
class PlannedOutfit:
    outfit_id: str
    lookbook: str
    style: str
    pieces: tuple[OutfitPiece, ...]


# -- style ---------------------------------------------------------------------------------
def _aspect(info: dict) -> float:
    x0, y0, x1, y1 = info["box"]
    return (y1 - y0) / max(1, x1 - x0)


@functools.lru_cache(maxsize=1)
def _median_aspects() -> dict[str, float]:
    """The median garment height / width of each category over the whole bundle."""
    by_category: dict[str, list[float]] = {}
    for name, category in G.real_index().items():
        by_category.setdefault(category, []).append(_aspect(G.real_info(name)))
    return {c: float(np.median(v)) for c, v in by_category.items()}


def style_of_photo(asset: str) -> str:
    """The latent style of a garment photo: plain or patterned x long or short for its kind."""
    info = G.real_info(asset)
    patterned = info["pattern"] != "solid"
    long = _aspect(info) >= _median_aspects()[info["category"]]
    return {(False, False): "casual", (True, False): "street", (False, True): "formal", (True, True): "sporty"}[
        (patterned, long)
    ]


def style_of(design: G.Design) -> str | None:
    """A design's style; None for procedural garments (they have no outfits)."""
    return style_of_photo(design.asset) if design.kind == "real" and design.asset else None


# -- the type-pair rules -------------------------------------------------------------------
def _lab(colour: str) -> np.ndarray:
    return G.palette_lab(colour)


def _hue(colour: str) -> float:
    _, a, b = _lab(colour)
    return float(np.degrees(np.arctan2(b, a)) % 360)


def _family(a: str, b: str) -> bool:
    """Both neutral, or both chromatic of one hue family."""
    if (a in NEUTRALS) != (b in NEUTRALS):
        return False
    if a in NEUTRALS:
        return True
    d = abs(_hue(a) - _hue(b)) % 360
    return min(d, 360 - d) <= FAMILY_DEG


def _light(colour: str) -> float:
    return float(_lab(colour)[0])


def _style(a: OutfitPiece, b: OutfitPiece, style: dict[str, str]) -> bool:
    return style[a.design_id] == style[b.design_id]


def _contrast(a: OutfitPiece, b: OutfitPiece, style: dict[str, str]) -> bool:
    return abs(_light(a.colour) - _light(b.colour)) >= TOP_BOTTOM_CONTRAST


def _not_same_colour(a: OutfitPiece, b: OutfitPiece, style: dict[str, str]) -> bool:
    return a.colour != b.colour


def _shoes(a: OutfitPiece, b: OutfitPiece, style: dict[str, str]) -> bool:
    shoes, other = (a, b) if a.type == "shoes" else (b, a)
    return (shoes.colour in NEUTRALS or _family(shoes.colour, other.colour)) and \
        _light(shoes.colour) <= _light(other.colour) + SHOES_OVER_BOTTOM


def _hat(a: OutfitPiece, b: OutfitPiece, style: dict[str, str]) -> bool:
    return _family(a.colour, b.colour)


#: type pair -> the rules that pair must keep (pairs not listed are free)
PAIR_RULES: dict[frozenset[str], tuple] = {
    frozenset({"top", "bottom"}): (_style, _contrast),
    frozenset({"top", "outerwear"}): (_style, _not_same_colour),
    frozenset({"bottom", "outerwear"}): (_style,),
    frozenset({"dress", "outerwear"}): (_style, _not_same_colour),
    frozenset({"bottom", "shoes"}): (_shoes,),
    frozenset({"dress", "shoes"}): (_shoes,),
    frozenset({"hat", "top"}): (_hat,),
    frozenset({"hat", "dress"}): (_hat,),
}


def pair_ok(a: OutfitPiece, b: OutfitPiece, style: dict[str, str]) -> bool:
    """Do two items of an outfit go together (``style``: design id -> style)?"""
    return all(rule(a, b, style) for rule in PAIR_RULES.get(frozenset({a.type, b.type}), ()))


def compatible(pieces: Sequence[OutfitPiece], style: dict[str, str]) -> bool:
    """The whole hidden rule: every pair of the outfit keeps its rules."""
    return all(pair_ok(a, b, style) for i, a in enumerate(pieces) for b in pieces[i + 1 :])


# -- lookbooks and outfits -----------------------------------------------------------------
def plan_outfits(
    designs: Sequence[G.Design],
    colours_of: dict[str, list[tuple[str, str]]],
    seed: int,
    lookbook_size: int = 12,
    outfits_per_design: float = 4.0,
) -> tuple[dict[str, tuple[str, str]], list[PlannedOutfit]]:
    """Lookbooks and their outfits.

    ``colours_of``: design id -> the (item id, colour) of its original listing (re-listings
    are never styled). Returns (design id -> (style, lookbook), outfits). Each style's
    designs are cut into lookbooks of about ``lookbook_size``; a lookbook gets about
    ``outfits_per_design`` outfits per design, drawn item by item under the pair rules
    (given up on after a few tries, and a repeat of an earlier outfit is dropped).
    """
    rng = np.random.default_rng([seed, 4])
    styled = [d for d in designs if style_of(d) is not None and d.design_id in colours_of]
    assigned: dict[str, tuple[str, str]] = {}
    lookbooks: list[tuple[str, str, list[G.Design]]] = []
    accessories = [d for d in styled if TYPE_OF_CATEGORY[d.category] not in GARMENTS]
    for style in STYLES:
        mine = [d for d in styled if style_of(d) == style and TYPE_OF_CATEGORY[d.category] in GARMENTS]
        if not mine:
            continue
        order = rng.permutation(len(mine))
        n_books = max(1, round(len(mine) / lookbook_size))
        for k in range(n_books):
            lookbooks.append((f"lb{len(lookbooks) + 1:02d}", style, [mine[i] for i in sorted(order[k::n_books])]))
    # Shoes and hats have no style to keep: dealt round the lookbooks, in a seeded order.
    for k, i in enumerate(rng.permutation(len(accessories))):
        if lookbooks:
            lookbooks[k % len(lookbooks)][2].append(accessories[i])
    for name, style, members in lookbooks:
        for d in members:
            assigned[d.design_id] = (style_of(d), name)
    outfits: list[PlannedOutfit] = []
    seen: set[frozenset[str]] = set()
    for name, style, members in lookbooks:
        by_type: dict[str, list[G.Design]] = {}
        for d in members:
            by_type.setdefault(TYPE_OF_CATEGORY[d.category], []).append(d)
        style_of_design = {d.design_id: style_of(d) for d in members}
        for _ in range(round(outfits_per_design * len(members))):
            pieces = _draw_outfit(rng, by_type, colours_of, style_of_design)
            if pieces is None:
                continue
            key = frozenset(p.item_id for p in pieces)
            if key in seen:
                continue
            seen.add(key)
            outfits.append(PlannedOutfit(f"o{len(outfits) + 1:05d}", name, style, pieces))
    return assigned, outfits


def _draw_outfit(
    rng: np.random.Generator, by_type: dict[str, list[G.Design]], colours_of: dict[str, list[tuple[str, str]]],
    style: dict[str, str], tries: int = 12,
) -> tuple[OutfitPiece, ...] | None:
    """One outfit of a lookbook: its types, then item by item a design and colour that keeps
    the rules with the items already chosen (a few tries each, or the outfit is given up)."""
    has = {t for t, ds in by_type.items() if ds}
    bases = []
    if {"top", "bottom"} <= has:
        bases.append(("top", "bottom"))
    if "dress" in has:
        bases.append(("dress",))
    if not bases:
        return None
    # a dress in about one outfit in four where both are possible
    base = bases[0] if len(bases) == 1 or rng.random() >= 0.25 else bases[1]
    extras = [t for t in EXTRAS if t in has]
    want = int(rng.choice([3, 4, 5], p=[0.4, 0.4, 0.2]))
    n_extra = min(len(extras), max(3 - len(base), want - len(base)))
    if len(base) + n_extra < 3:
        return None
    chosen = list(base) + [extras[i] for i in sorted(rng.permutation(len(extras))[:n_extra])]
    pieces: list[OutfitPiece] = []
    for t in chosen:
        for _ in range(tries):
            d = by_type[t][int(rng.integers(len(by_type[t])))]
            item_id, colour = colours_of[d.design_id][int(rng.integers(len(colours_of[d.design_id])))]
            piece = OutfitPiece(item_id, d.design_id, colour, t)
            if all(pair_ok(piece, p, style) for p in pieces):
                pieces.append(piece)
                break
        else:
            return None
    return tuple(pieces)
