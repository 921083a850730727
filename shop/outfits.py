"""The demo shop's curated outfits ("complete the look") and the hidden rule behind them.

A shop's stylists put 3-5 items of distinct *types* together (``TYPES``: a top and a bottom,
or a dress, which counts as both, plus some of shoes, outerwear and a hat). What makes items
go together is a rule the generator keeps to itself (written to ``truth/`` only), and a model
can learn it only from the photos. The rule has the structure real outfits have: what must
agree depends on which two types meet, so no single notion of "similar" explains it.

* **traits** (``Traits``): every design has a few, all visible in its photo and kept by
  recolouring: whether it is patterned (``make_assets`` measured it on the photo), its
  silhouette (long or short for its category: height / width of the garment in its photo
  against the category's median), a **formality** 0-2 (its category's, ``FORMALITY``, one up
  for a long plain piece, one down for a patterned one) and a **season** (``SEASON`` of its
  category, or cold when long and warm when short). ``style`` (plain or patterned x short or
  long, ``STYLES``) is the look's label posts carry; the rule does not use it.
* **type-pair rules** (``PAIR_RULES``), each pair its own:

  - a top and its bottom: formality at most one step apart, one patterned piece at most (a
    pattern clash otherwise), and a contrast in lightness;
  - shoes with the bottom (or the dress): formality at most one step apart, and by colour:
    neutral or of its hue family, and not lighter than it;
  - outerwear and what it covers (the top or the dress) or tops (a hat): one season (a long
    coat is for the cold, a short jacket for the warm); not the top's or the dress's colour;
  - a hat picks up the top's (or the dress's) colour family;
  - the other pairs (shoes with a top, shoes with outerwear, a hat with shoes, ...) are free.

  So "a goes with b, b with c" need not make "a goes with c" (``test_pair_rules_by_hand``):
  a summer top goes with trousers, the trousers with a coat, the top not with the coat;
  a casual top with smart-casual trousers, those with dressy shoes, not casual with dressy.
* **noisy curators**: a share of the outfits (``curator_noise``) is put together by stylists
  who keep only the types, not the rule; the truth marks them (``by_rule`` 0), the crawled
  shop does not.

Stylists work in *lookbooks*: a lookbook is a seeded mix of about ``lookbook_size`` garments
of every type, plus shoes and hats (each type dealt round), and its outfits use only its designs, so every
product belongs to one lookbook (split by lookbook and no product is in two splits). An
outfit's style is its top's (or dress's). A random item of the same type swapped into an
outfit is usually incompatible but not always: that share is the ceiling any model meets.

Everything draws from its own seeded stream, so adding outfits to a shop leaves its
products, items and photos exactly as they were.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from street2shop.shop import garments as G

#: the looks' styles (plain or patterned x short or long), the order the truth files list them in
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
#: the garments a lookbook is made of (shoes and hats are dealt round the lookbooks)
GARMENTS = frozenset({"top", "bottom", "dress", "outerwear"})
#: colours that go with anything (the rest are chromatic)
NEUTRALS = frozenset({"black", "charcoal", "grey", "light-grey", "white", "ivory", "beige", "camel",
                      "brown", "chocolate", "navy", "khaki"})
#: two chromatic colours are of one hue family within this many degrees
FAMILY_DEG = 40.0
#: a top and its bottom differ in L* by at least this much
TOP_BOTTOM_CONTRAST = 20.0
#: shoes at most this much lighter (L*) than the bottom or dress
SHOES_OVER_BOTTOM = 10.0
#: each category's formality (0 casual, 1 smart, 2 dressy) before its silhouette and pattern
FORMALITY: dict[str, int] = {
    "t-shirts": 0, "hoodies-sweatshirts": 0, "shorts": 0, "hats": 0,
    "sweaters": 1, "trousers": 1, "skirts": 1, "jackets-coats": 1, "dresses": 1, "blouses-shirts": 1, "shoes": 1,
}
#: categories of one season whatever their silhouette (the others: cold when long, warm when short)
SEASON: dict[str, str] = {"sweaters": "cold", "hoodies-sweatshirts": "cold", "t-shirts": "warm", "shorts": "warm"}
SEASONS = ("warm", "cold")
#: a small shop still has this many lookbooks, so its outfits split into train, validation and test
MIN_LOOKBOOKS = 3


@dataclass(frozen=True)
class Traits:
    """What the hidden rule knows of a design (all of it visible in the design's photo)."""

    style: str
    formality: int
    season: str
    patterned: bool


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
    by_rule: bool = True  # False: a noisy curator's (types kept, the rule not)


# -- traits --------------------------------------------------------------------------------
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


def traits_of_photo(asset: str) -> Traits:
    """A garment photo's traits: its pattern and silhouette, and from them (with its
    category) its style, formality and season."""
    info = G.real_info(asset)
    category = info["category"]
    patterned = info["pattern"] != "solid"
    long = _aspect(info) >= _median_aspects()[category]
    style = {(False, False): "casual", (True, False): "street", (False, True): "formal", (True, True): "sporty"}[
        (patterned, long)
    ]
    formality = int(np.clip(FORMALITY[category] + (long and not patterned) - patterned, 0, 2))
    season = SEASON.get(category, "cold" if long else "warm")
    return Traits(style, formality, season, patterned)


def style_of_photo(asset: str) -> str:
    """The style of a garment photo: plain or patterned x long or short for its kind."""
    return traits_of_photo(asset).style


def traits_of(design: G.Design) -> Traits | None:
    """A design's traits; None for procedural garments (they have no outfits)."""
    return traits_of_photo(design.asset) if design.kind == "real" and design.asset else None


def style_of(design: G.Design) -> str | None:
    """A design's style; None for procedural garments."""
    t = traits_of(design)
    return t.style if t else None


#: the columns of ``truth/styles.csv`` that hold a design's traits
TRAIT_COLUMNS = ("style", "formality", "season", "patterned")


def trait_row(traits: Traits | None) -> dict[str, str]:
    """A design's traits as ``truth/styles.csv`` writes them (empty for procedural ones)."""
    if traits is None:
        return {c: "" for c in TRAIT_COLUMNS}
    return {"style": traits.style, "formality": str(traits.formality), "season": traits.season,
            "patterned": str(int(traits.patterned))}


def traits_from_rows(rows: Iterable[Mapping[str, str]]) -> dict[str, Traits]:
    """design id -> traits, from the rows of ``truth/styles.csv`` (procedural designs left out)."""
    return {r["design_id"]: Traits(r["style"], int(r["formality"]), r["season"], r["patterned"] == "1")
            for r in rows if r["style"]}


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


def _formality(a: OutfitPiece, b: OutfitPiece, traits: Mapping[str, Traits]) -> bool:
    return abs(traits[a.design_id].formality - traits[b.design_id].formality) <= 1


def _one_pattern(a: OutfitPiece, b: OutfitPiece, traits: Mapping[str, Traits]) -> bool:
    return not (traits[a.design_id].patterned and traits[b.design_id].patterned)


def _season(a: OutfitPiece, b: OutfitPiece, traits: Mapping[str, Traits]) -> bool:
    return traits[a.design_id].season == traits[b.design_id].season


def _contrast(a: OutfitPiece, b: OutfitPiece, traits: Mapping[str, Traits]) -> bool:
    return abs(_light(a.colour) - _light(b.colour)) >= TOP_BOTTOM_CONTRAST


def _not_same_colour(a: OutfitPiece, b: OutfitPiece, traits: Mapping[str, Traits]) -> bool:
    return a.colour != b.colour


def _shoes(a: OutfitPiece, b: OutfitPiece, traits: Mapping[str, Traits]) -> bool:
    shoes, other = (a, b) if a.type == "shoes" else (b, a)
    return (shoes.colour in NEUTRALS or _family(shoes.colour, other.colour)) and \
        _light(shoes.colour) <= _light(other.colour) + SHOES_OVER_BOTTOM


def _hat(a: OutfitPiece, b: OutfitPiece, traits: Mapping[str, Traits]) -> bool:
    return _family(a.colour, b.colour)


#: type pair -> the rules that pair must keep (pairs not listed are free)
PAIR_RULES: dict[frozenset[str], tuple] = {
    frozenset({"top", "bottom"}): (_formality, _one_pattern, _contrast),
    frozenset({"bottom", "shoes"}): (_formality, _shoes),
    frozenset({"dress", "shoes"}): (_formality, _shoes),
    frozenset({"top", "outerwear"}): (_season, _not_same_colour),
    frozenset({"dress", "outerwear"}): (_season, _not_same_colour),
    frozenset({"hat", "outerwear"}): (_season,),
    frozenset({"hat", "top"}): (_hat,),
    frozenset({"hat", "dress"}): (_hat,),
}


def pair_ok(a: OutfitPiece, b: OutfitPiece, traits: Mapping[str, Traits]) -> bool:
    """Do two items of an outfit go together (``traits``: design id -> traits)?"""
    return all(rule(a, b, traits) for rule in PAIR_RULES.get(frozenset({a.type, b.type}), ()))


def compatible(pieces: Sequence[OutfitPiece], traits: Mapping[str, Traits]) -> bool:
    """The whole hidden rule: every pair of the outfit keeps its rules."""
    return all(pair_ok(a, b, traits) for i, a in enumerate(pieces) for b in pieces[i + 1 :])


# -- lookbooks and outfits -----------------------------------------------------------------
def plan_outfits(
    designs: Sequence[G.Design],
    colours_of: dict[str, list[tuple[str, str]]],
    seed: int,
    lookbook_size: int = 12,
    outfits_per_design: float = 4.0,
    curator_noise: float = 0.0,
) -> tuple[dict[str, tuple[Traits, str]], list[PlannedOutfit]]:
    """Lookbooks and their outfits.

    ``colours_of``: design id -> the (item id, colour) of its original listing (re-listings
    are never styled). Returns (design id -> (traits, lookbook), outfits). The designs of each
    type are dealt, in a seeded order, round lookbooks of about ``lookbook_size`` garments
    (``MIN_LOOKBOOKS`` at least); a lookbook gets about
    ``outfits_per_design`` outfits per design, drawn item by item under the pair rules (given
    up on after a few tries, and a repeat of an earlier outfit is dropped); a share
    ``curator_noise`` of them keeps the types only.
    """
    rng = np.random.default_rng([seed, 4])
    traits = {d.design_id: t for d in designs if d.design_id in colours_of and (t := traits_of(d)) is not None}
    styled = [d for d in designs if d.design_id in traits]
    garments = [d for d in styled if TYPE_OF_CATEGORY[d.category] in GARMENTS]
    n_books = min(len(garments), max(MIN_LOOKBOOKS, round(len(garments) / lookbook_size)))
    lookbooks: list[tuple[str, list[G.Design]]] = [(f"lb{k + 1:02d}", []) for k in range(n_books)]
    # Each type's designs are dealt round the lookbooks in a seeded order, so every lookbook
    # has tops, bottoms, dresses, ... as far as the shop has them (shoes and hats too).
    dealt = 0
    for t in TYPES:
        mine = [d for d in styled if TYPE_OF_CATEGORY[d.category] == t]
        for i in rng.permutation(len(mine)):
            if lookbooks:
                lookbooks[dealt % n_books][1].append(mine[i])
                dealt += 1
    assigned = {d.design_id: (traits[d.design_id], name) for name, members in lookbooks for d in members}
    outfits: list[PlannedOutfit] = []
    seen: set[frozenset[str]] = set()
    for name, members in lookbooks:
        by_type: dict[str, list[G.Design]] = {}
        for d in members:
            by_type.setdefault(TYPE_OF_CATEGORY[d.category], []).append(d)
        for _ in range(round(outfits_per_design * len(members))):
            pieces = _draw_outfit(rng, by_type, colours_of, traits)
            if pieces is None or frozenset(p.item_id for p in pieces) in seen:
                continue
            by_rule = bool(rng.random() >= curator_noise)
            if not by_rule:  # the same types, any of them
                pieces = _draw_outfit(rng, by_type, colours_of, traits, [p.type for p in pieces])
            key = frozenset(p.item_id for p in pieces)
            if key in seen:
                continue
            seen.add(key)
            lead = traits[pieces[0].design_id].style  # the top or the dress
            outfits.append(PlannedOutfit(f"o{len(outfits) + 1:05d}", name, lead, pieces, by_rule))
    return assigned, outfits


def _draw_outfit(
    rng: np.random.Generator, by_type: dict[str, list[G.Design]], colours_of: dict[str, list[tuple[str, str]]],
    traits: Mapping[str, Traits], types: Sequence[str] | None = None, tries: int = 24, starts: int = 8,
) -> tuple[OutfitPiece, ...] | None:
    """One outfit of a lookbook: its types, then item by item a design and colour that keeps
    the rules with the items already chosen (a few tries each, a few fresh starts, or the
    outfit is given up). ``types`` given: a noisy curator's outfit of those types, any
    design and colour of each."""
    if types is not None:
        return tuple(_any_piece(rng, by_type[t], colours_of, t) for t in types)
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
    # Drawn greedily, so a first piece no later one goes with (a summer top under a coat) is
    # dropped and the outfit begun again, a few times.
    for _ in range(starts):
        pieces: list[OutfitPiece] = []
        for t in chosen:
            for _ in range(tries):
                piece = _any_piece(rng, by_type[t], colours_of, t)
                if all(pair_ok(piece, p, traits) for p in pieces):
                    pieces.append(piece)
                    break
            else:
                break
        if len(pieces) == len(chosen):
            return tuple(pieces)
    return None


def _any_piece(rng: np.random.Generator, designs: Sequence[G.Design], colours_of: dict[str, list[tuple[str, str]]],
               t: str) -> OutfitPiece:
    d = designs[int(rng.integers(len(designs)))]
    item_id, colour = colours_of[d.design_id][int(rng.integers(len(colours_of[d.design_id])))]
    return OutfitPiece(item_id, d.design_id, colour, t)
