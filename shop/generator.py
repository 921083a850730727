"""Generate (and grow) a demo shop folder: catalogue, photos, ground truth, noise labels.

Layout of a shop folder::

    catalog.json        what the server renders (``catalog.Catalog``)
    shop_params.json    the ``ShopParams`` it was made with (``grow_shop`` reuses them)
    images/*.jpg        every photo the server can serve, named by a prefix of its sha256
    truth/items.csv     item_id, design_id, product_id, seller_id, category, colour, pattern, relist_of
    truth/images.csv    file, image_id, item_id, kind, review_id
    truth/designs.csv   design_id, category, pattern, kind, seed, asset, flip (to re-render)
    truth/styles.csv    design_id, style, formality, season, patterned, lookbook: each design's
                        traits, the hidden rule's half per design (``outfits.py``)
    truth/outfits.csv   outfit_id, lookbook, style, item_id, type, position, by_rule (``outfits.py``)
    truth/snaps.csv     snap_id, outfit_id, lookbook, style, file, image_id (``looks.py``)
    truth/snap_items.csv snap_id, item_id, shown (1: in the photo, 0: related), position
    truth/boxes.csv     file, image_id, x0, y0, x1, y1: each customer (street) photo's true
                        garment box, fractions of the photo (scores a localiser; never trains one)
    labels.csv          image_id, label (good | noise): the labelling team's hand-over

``design_id`` (``d00012:navy``) is the true garment identity: a product re-listed by another
seller (``relist_of``) shares it, which is what dedup must discover. Everything is a pure
function of the parameters: the same seed gives byte-identical files.

With real garments every design is one bundled photo (the shop takes them in a seeded
order; only past the last photo does a design reuse one, mirrored). Its first colour is the
palette colour nearest to the photo's own; further colours are recolourings. The seller
photo is the cut-out on the seller's studio backdrop; review photos re-shoot the garment's
own photo or lay it into another real scene (``domain_gap``), in the item's colour.

A shop of real garments also has curated outfits ("complete the look", ``outfits.py``),
drawn from their own random stream after the products, and a lookbook of snapshot posts
(``looks.py``): the products, items and photos are the same with or without them.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import io
import multiprocessing as mp
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance
from pydantic import BaseModel, Field, model_validator

from street2shop.shop import garments as G
from street2shop.shop import looks as L
from street2shop.shop import outfits as O
from street2shop.shop.catalog import (
    CATEGORIES,
    IMAGES_DIR,
    Catalog,
    Category,
    Outfit,
    OutfitItem,
    Product,
    Review,
    Seller,
    Snap,
    Variant,
    load_catalog,
    save_catalog,
)
from street2shop.shop.domain_gap import (
    DomainGapParams,
    closeup_photo,
    parcel_photo,
    street_photo_with_box,
    unrelated_photo,
)

PARAMS_FILE = "shop_params.json"
ITEM_COLUMNS = ["item_id", "design_id", "product_id", "seller_id", "category", "colour", "pattern", "relist_of"]
IMAGE_COLUMNS = ["file", "image_id", "item_id", "kind", "review_id"]
LABEL_COLUMNS = ["image_id", "label"]
DESIGN_COLUMNS = ["design_id", "category", "pattern", "kind", "seed", "asset", "flip"]
STYLE_COLUMNS = ["design_id", "style", "formality", "season", "patterned", "lookbook"]
OUTFIT_COLUMNS = ["outfit_id", "lookbook", "style", "item_id", "type", "position", "by_rule"]
SNAP_COLUMNS = ["snap_id", "outfit_id", "lookbook", "style", "file", "image_id"]
SNAP_ITEM_COLUMNS = ["snap_id", "item_id", "shown", "position"]
BOX_COLUMNS = ["file", "image_id", "x0", "y0", "x1", "y1"]
NOISE_KINDS = ("noise_parcel", "noise_closeup", "noise_unrelated")
IMAGE_KINDS = ("shop", "street", *NOISE_KINDS)


class ShopParams(BaseModel):
    """What shop to make. Ranges are inclusive ``(low, high)``."""

    seed: int = 0
    n_products: int = Field(300, ge=1, le=999_999)
    garments: Literal["procedural", "real"] = "real"
    image_size: int = Field(224, ge=32, le=1024)
    colours: tuple[int, int] = (1, 4)
    reviews_per_item: tuple[int, int] = (0, 3)
    photos_per_review: tuple[int, int] = (1, 2)
    p_text_only_review: float = Field(0.15, ge=0, le=1)
    noise_fraction: float = Field(0.15, ge=0, le=1)
    relist_fraction: float = Field(0.1, ge=0, le=0.5)
    label_fraction: float = Field(1.0, ge=0, le=1)
    jpeg_quality: int = Field(90, ge=30, le=100)
    p_near_colour: float = Field(0.4, ge=0, le=1)  # a product's next colour is a near one
    #: curated outfits (real garments only): designs per lookbook, outfits per design
    lookbook_size: int = Field(12, ge=1)
    outfits_per_design: float = Field(5.5, ge=0)
    #: the share of outfits a noisy curator puts together by type only, not by the rule
    curator_noise: float = Field(0.1, ge=0, le=1)
    #: snapshot posts of the lookbook, per outfit (real garments only). 0.45: the default demo
    #: has 316 posts and its looks split tests 64 of them, every style (0.35: 218 and 44);
    #: 98 more photos to draw, crawl and embed (``bench/lookbook_size.py``)
    snaps_per_outfit: float = Field(0.45, ge=0, le=1)
    domain_gap: DomainGapParams = Field(default_factory=DomainGapParams)

    @model_validator(mode="after")
    def _check_ranges(self) -> ShopParams:
        for name in ("colours", "reviews_per_item", "photos_per_review"):
            lo, hi = getattr(self, name)
            if not 0 <= lo <= hi:
                raise ValueError(f"{name} must be (low, high) with 0 <= low <= high, got {(lo, hi)}")
        if not (1 <= self.colours[0] and self.colours[1] <= len(G.PALETTE)):
            raise ValueError(f"colours must lie in [1, {len(G.PALETTE)}], got {self.colours}")
        if self.photos_per_review[0] < 1:
            raise ValueError("photos_per_review low must be >= 1 (text-only reviews have their own knob)")
        return self


# -- words --------------------------------------------------------------------------------
_SELLER_A = ["Urban", "Cosy", "Blue", "Golden", "Little", "Happy", "Nordic", "Silk", "Velvet", "Maple",
             "Coral", "Sunny", "Wild", "Modern", "Vintage", "Pure"]
_SELLER_B = ["Thread", "Closet", "Wardrobe", "Boutique", "Outlet", "Fashion", "Store", "Stitch",
             "Trends", "Styles", "Corner", "House"]
_NOUN = {
    "dresses": ["Dress", "Midi Dress", "Maxi Dress", "Shift Dress", "Wrap Dress"],
    "blouses-shirts": ["Blouse", "Shirt", "Button-Up Shirt", "Tunic Top"],
    "t-shirts": ["T-Shirt", "Tee", "Crew Neck T-Shirt", "Cotton Tee"],
    "hoodies-sweatshirts": ["Hoodie", "Sweatshirt", "Pullover Hoodie", "Zip Hoodie"],
    "sweaters": ["Sweater", "Knit Jumper", "Long Sleeve Top", "Pullover"],
    "jackets-coats": ["Jacket", "Coat", "Trench Coat", "Blazer", "Parka"],
    "trousers": ["Trousers", "Jeans", "Chinos", "Joggers", "Slim Pants"],
    "skirts": ["Skirt", "Midi Skirt", "Mini Skirt", "Pencil Skirt", "A-Line Skirt"],
    "shorts": ["Shorts", "Denim Shorts", "Bermuda Shorts", "Sweat Shorts"],
    "shoes": ["Sneakers", "Shoes", "Loafers", "Boots", "Sandals"],
    "hats": ["Cap", "Hat", "Beanie", "Baseball Cap", "Bucket Hat"],
}
_PATTERN_WORD = {"solid": ["Classic", "Plain", "Basic", "Essential"], "stripes": ["Striped", "Stripe"],
                 "checks": ["Plaid", "Checked", "Gingham"], "dots": ["Polka Dot", "Dotted"],
                 "print": ["Floral", "Printed", "Flower Print"], "patterned": ["Printed", "Patterned", "Graphic"]}
_ADJ = ["Women's", "Casual", "Elegant", "Loose", "Slim Fit", "Oversized", "Soft", "Summer", "Winter", "Chic"]
_RELIST_PREFIX = ["NEW", "HOT SALE", "2024", "Free Shipping", "Best Quality", "Korean Style"]
_REVIEW_TEXT = {
    5: ["Love it, exactly as pictured!", "Great quality, fits perfectly.", "Beautiful, will buy again.",
        "Very soft fabric, true to size.", "Perfect, my daughter loves it."],
    4: ["Good value for the price.", "Nice, but the colour is a bit different.", "Fits well, shipping was slow.",
        "Pretty, slightly thin material."],
    3: ["It's ok.", "Runs small, order a size up.", "Colour is darker than in the photo."],
    2: ["Threads everywhere, not great.", "Smaller than expected."],
    1: ["Not what I ordered.", "Poor quality, returned it."],
}


# -- plan ---------------------------------------------------------------------------------
@dataclass
class _Item:
    item_id: str
    design: G.Design
    colour: str
    product_id: str
    seller_id: str
    relist_of: str = ""
    seller_edit_seed: int | None = None  # relists: how the copied seller photo was edited


@dataclass(frozen=True)
class _PhotoJob:
    """One photo to draw: everything its pixels depend on, so it can run in any process."""

    item_id: str
    design: G.Design
    colour: str
    kind: str  # one of IMAGE_KINDS
    review_id: str = ""
    seed: int = 0  # review photos: their own random stream
    edit_seed: int | None = None  # a re-lister's copied seller photo: how it was edited
    seller_name: str = ""  # the re-lister's watermark
    studio: int = 0  # seller photos: index of the studio backdrop (G.STUDIO_BACKGROUNDS)
    look: tuple[tuple[G.Design, str, str], ...] = ()  # a snapshot: (design, colour, type) of each garment
    room: str = ""  # a snapshot: the bundled photo whose empty scene it is laid on


#: how many bundled photos one shop uses as rooms and as occluding garments: few enough
#: that every worker prepares each once (``G.empty_scene`` is cached), enough for variety
ROOMS_PER_SHOP = 40
OCCLUDERS_PER_SHOP = 40


@functools.lru_cache(maxsize=32)
def _cached_render(design: G.Design, colour: str, size: int) -> G.GarmentRender:
    # Jobs come grouped by item, so one render serves its seller photo and every review.
    return G.render_garment(design, colour, size)


@functools.lru_cache(maxsize=4)
def _props(seed: int) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(rooms, occluders) of a shop: bundled photos picked by its seed."""
    rng = np.random.default_rng([seed, 3])

    def pick(names: list[str], n: int) -> tuple[str, ...]:
        return tuple(names[i] for i in sorted(rng.permutation(len(names))[:n]))

    return pick(G.room_names(), ROOMS_PER_SHOP), pick(sorted(G.real_index()), OCCLUDERS_PER_SHOP)


def _other(names: tuple[str, ...], own: str | None, rng: np.random.Generator) -> str:
    """One of ``names`` that is not the garment's own photo."""
    names = tuple(n for n in names if n != own) or names
    return names[int(rng.integers(len(names)))]


def _draw(job: _PhotoJob, params: ShopParams) -> tuple[Image.Image, tuple[float, float, float, float] | None]:
    """The job's photo and, for a customer (street) photo, its garment's true box."""
    size = params.image_size
    design = job.design
    render = _cached_render(design, job.colour, size)
    rng = np.random.default_rng(job.seed)
    real = design.kind == "real"
    rooms, occluders = _props(params.seed) if real else ((), ())
    if job.kind == "shop":
        img = G.seller_photo(render, size, G.STUDIO_BACKGROUNDS[job.studio])
        if job.edit_seed is not None:
            img = _edit_copied_photo(img, np.random.default_rng(job.edit_seed), job.seller_name)
        return img, None
    if job.kind == "street":
        side = G.working_side(size)
        room = G.empty_scene(_other(rooms, design.asset, rng), side) if real else None
        occluder = None
        if real:
            other = G.real_photo(_other(occluders, design.asset, rng), side)
            occluder = (Image.fromarray(other.rgb), Image.fromarray((other.alpha * 255).astype(np.uint8)))
        return street_photo_with_box(render.rgb, render.mask, rng, size, params.domain_gap,
                                     scene=render.scene, room=room, occluder=occluder)
    if job.kind == "noise_parcel":
        room = G.empty_scene(_other(rooms, design.asset, rng), G.working_side(size)) if real else None
        return parcel_photo(rng, size, room), None
    if job.kind == "noise_closeup":
        # Real garments: a crop of the photo itself, its own weave and print (in the item's colour).
        return closeup_photo(render.scene if real else render.rgb, render.mask, rng, size, weave=not real), None
    if job.kind == "look":
        renders = [(t, _cached_render(d, c, size)) for d, c, t in job.look]
        return L.compose_look(renders, G.empty_scene(job.room, G.working_side(size)), rng, size, params.domain_gap), None
    if job.kind == "noise_unrelated":
        photo = None
        if real:  # a photo of something else: never of the item's own category
            pool = sorted(n for n, c in G.real_unrelated().items() if c != design.category)
            photo = G.unrelated_photo(pool[int(rng.integers(len(pool)))])
        return unrelated_photo(rng, size, photo), None
    raise ValueError(f"unknown photo kind {job.kind!r}; known: {IMAGE_KINDS}")


def _encode(args: tuple[_PhotoJob, ShopParams]) -> tuple[bytes, tuple[float, float, float, float] | None]:
    job, params = args
    buf = io.BytesIO()
    img, box = _draw(job, params)
    img.convert("RGB").save(buf, "JPEG", quality=params.jpeg_quality)
    return buf.getvalue(), box


def _encode_all(jobs: list[_PhotoJob], params: ShopParams, workers: int, min_parallel: int = 256) -> list[tuple]:
    """``(JPEG bytes, true garment box or None)`` of every job, in order; on ``workers`` processes when there are at least
    ``min_parallel`` jobs (fewer do not repay starting processes, about a second). The bytes
    do not depend on the number of workers (every job carries its own seed)."""
    # Drawn grouped by garment and colour (seller photo, reviews, re-listings together), so
    # each render is made once; put back in the callers' order after.
    order = sorted(range(len(jobs)), key=lambda i: (jobs[i].design.design_id, jobs[i].colour))
    args = [(jobs[i], params) for i in order]
    if workers <= 1 or len(jobs) < min_parallel:
        drawn = [_encode(a) for a in args]
    else:
        # forkserver, not fork: the caller may have threads (a Prefect task, a running shop
        # server), and forking a threaded process can deadlock; workers import this module.
        methods = mp.get_all_start_methods()
        ctx = mp.get_context("forkserver" if "forkserver" in methods else "spawn")
        with ctx.Pool(workers) as pool:
            drawn = pool.map(_encode, args, chunksize=max(1, len(jobs) // (workers * 8)))
    out: list[tuple] = [(b"", None)] * len(jobs)
    for k, i in enumerate(order):
        out[i] = drawn[k]
    return out


@dataclass
class _ShopBuilder:
    """Accumulates catalogue and truth rows; photos are queued as jobs and drawn at the end
    (in parallel), then their file names replace the ``@<job>`` placeholders."""

    out_dir: Path
    params: ShopParams
    catalog: Catalog
    items: list[dict] = field(default_factory=list)
    images: list[dict] = field(default_factory=list)
    labels: list[dict] = field(default_factory=list)
    designs: list[G.Design] = field(default_factory=list)
    jobs: list[_PhotoJob] = field(default_factory=list)
    labelled: set[int] = field(default_factory=set)  # job indexes the labelling team saw
    outfits: list[dict] = field(default_factory=list)  # truth/outfits.csv rows
    lookbook_of: dict[str, str] = field(default_factory=dict)  # design id -> lookbook
    snaps: list[dict] = field(default_factory=list)  # truth/snaps.csv rows
    snap_items: list[dict] = field(default_factory=list)  # truth/snap_items.csv rows
    boxes: list[dict] = field(default_factory=list)  # truth/boxes.csv rows

    def queue(self, job: _PhotoJob, labelled: bool = False) -> str:
        self.jobs.append(job)
        if labelled:
            self.labelled.add(len(self.jobs) - 1)
        return f"@{len(self.jobs) - 1}"

    def render(self, workers: int) -> None:
        """Draw every queued photo, write the files, fill in names and truth rows."""
        names: list[str] = []
        for k, (job, (data, box)) in enumerate(zip(self.jobs, _encode_all(self.jobs, self.params, workers))):
            sha = hashlib.sha256(data).hexdigest()
            name = f"{sha[:24]}.jpg"
            path = self.out_dir / IMAGES_DIR / name
            if not path.exists():
                path.write_bytes(data)
            names.append(name)
            if job.kind == "look":  # a snapshot post's photo: its own truth file
                next(r for r in self.snaps if r["snap_id"] == job.review_id).update(file=name, image_id=sha)
                continue
            self.images.append({"file": name, "image_id": sha, "item_id": job.item_id, "kind": job.kind,
                                "review_id": job.review_id})
            if box is not None:
                self.boxes.append({"file": name, "image_id": sha, **{c: f"{v:.6f}" for c, v in zip(BOX_COLUMNS[2:], box)}})
            if k in self.labelled:
                self.labels.append({"image_id": sha, "label": "good" if job.kind == "street" else "noise"})

        def resolve(ref: str) -> str:
            return names[int(ref[1:])] if ref.startswith("@") else ref

        for product in self.catalog.products:
            for v in product.variants:
                v.image = resolve(v.image)
            for r in product.reviews:
                r.images = [resolve(f) for f in r.images]
        for snap in self.catalog.snaps:
            snap.image = resolve(snap.image)
        self.jobs, self.labelled = [], set()


def _edit_copied_photo(img: Image.Image, rng: np.random.Generator, seller_name: str) -> Image.Image:
    """A re-lister's copy of someone else's listing photo: cropped, resized, recoloured a
    touch, watermarked. Near-duplicate, not identical (what perceptual hashing must catch)."""
    w, h = img.size
    m = rng.uniform(0.02, 0.09, 4) * np.array([w, h, w, h])
    img = img.crop((m[0], m[1], w - m[2], h - m[3]))
    img = img.resize((int(w * rng.uniform(0.85, 1.0)),) * 2, Image.BILINEAR).resize((w, h), Image.BILINEAR)
    img = ImageEnhance.Color(img).enhance(rng.uniform(0.85, 1.15))
    img = ImageEnhance.Brightness(img).enhance(rng.uniform(0.92, 1.08))
    if rng.random() < 0.7:
        overlay = Image.new("RGBA", img.size, (0, 0, 0, 0))
        draw = ImageDraw.Draw(overlay)
        x, y = rng.uniform(0.03, 0.4) * w, rng.choice([0.04, 0.88]) * h
        draw.text((x, y), seller_name.upper(), fill=(90, 90, 90, int(rng.integers(90, 170))))
        img = Image.alpha_composite(img.convert("RGBA"), overlay).convert("RGB")
    return img


def _pick_colours(rng: np.random.Generator, k: int, p_near: float, first: str | None = None) -> list[str]:
    """``k`` distinct palette colours, from ``first`` (else a random one); with probability
    ``p_near`` each next one is the nearest unused colour to one already chosen."""
    names = list(G.PALETTE)
    rgb = np.array([G.PALETTE[n][1] for n in names], np.float32)
    chosen = [names.index(first) if first is not None else int(rng.integers(len(names)))]
    while len(chosen) < k:
        free = [i for i in range(len(names)) if i not in chosen]
        if rng.random() < p_near:  # the nearest unused colour to one already chosen
            anchor = rgb[chosen[int(rng.integers(len(chosen)))]]
            chosen.append(min(free, key=lambda i: float(np.sum((rgb[i] - anchor) ** 2))))
        else:
            chosen.append(free[int(rng.integers(len(free)))])
    return [names[i] for i in chosen]


@functools.lru_cache(maxsize=4)
def _photo_order(seed: int) -> tuple[str, ...]:
    """The bundled garment photos in the order a shop's designs take them."""
    names = sorted(G.real_index())
    return tuple(names[i] for i in np.random.default_rng([seed, 2]).permutation(len(names)))


def _make_designs(rng: np.random.Generator, params: ShopParams, existing: list[G.Design], n: int) -> list[G.Design]:
    """``n`` new designs numbered after ``existing``. Procedural: a random category and
    pattern. Real: design k is the k-th photo of the shop's order (its category and pattern
    are the photo's); past the last photo, the order repeats mirrored."""
    out: list[G.Design] = []
    first = 1 + max((int(d.design_id[1:]) for d in existing), default=0)
    for k in range(first, first + n):
        category = G.PROCEDURAL_CATEGORIES[int(rng.integers(len(G.PROCEDURAL_CATEGORIES)))]
        pattern = G.PATTERNS[int(rng.integers(len(G.PATTERNS)))]
        seed = int(rng.integers(2**31))
        asset, flip = None, False
        if params.garments == "real":
            photos = _photo_order(params.seed)
            asset = photos[(k - 1) % len(photos)]
            flip = (k - 1) // len(photos) % 2 == 1
            info = G.real_info(asset)
            category, pattern = info["category"], info["pattern"]
        out.append(G.Design(f"d{k:05d}", category, pattern, params.garments, seed, asset, flip))
    return out


def _first_colour(design: G.Design) -> str | None:
    """A real garment's own colour (the nearest in the palette); None for procedural ones."""
    return G.nearest_colour(np.array(G.real_info(design.asset)["lab"], np.float32)) if design.kind == "real" else None


def _title(rng: np.random.Generator, design: G.Design) -> str:
    words = [_ADJ[int(rng.integers(len(_ADJ)))],
             _PATTERN_WORD[design.pattern][int(rng.integers(len(_PATTERN_WORD[design.pattern])))],
             _NOUN[design.category][int(rng.integers(len(_NOUN[design.category])))]]
    return " ".join(words)


def _add_products(
    b: _ShopBuilder, rng: np.random.Generator, n_products: int, first_product: int
) -> list[tuple[Product, list[_Item]]]:
    """Plan ``n_products`` products (originals and re-listings) without reviews."""
    p = b.params
    sellers = b.catalog.sellers
    n_relist = int(round(p.relist_fraction * n_products)) if n_products > 1 else 0
    n_base = n_products - n_relist
    designs = _make_designs(rng, p, b.designs, n_base)
    b.designs.extend(designs)
    # Shuffled ids, so re-listings are not simply the last products.
    numbers = first_product + rng.permutation(n_products)
    added: list[tuple[Product, list[_Item]]] = []
    for k, design in enumerate(designs):
        pid = f"p{numbers[k]:06d}"
        seller = sellers[int(rng.integers(len(sellers)))]
        colours = _pick_colours(rng, int(rng.integers(p.colours[0], p.colours[1] + 1)), p.p_near_colour,
                                first=_first_colour(design))
        items = [_Item(f"{pid}:{c}", design, c, pid, seller.id) for c in colours]
        product = Product(product_id=pid, title=_title(rng, design), category=design.category,
                          seller_id=seller.id, price_cents=int(rng.integers(999, 8999)), variants=[])
        added.append((product, items))
    originals = rng.choice(n_base, size=min(n_relist, n_base), replace=False) if n_relist else []
    for k, orig_k in enumerate(originals):
        orig, orig_items = added[int(orig_k)]
        pid = f"p{numbers[n_base + k]:06d}"
        others = [s for s in sellers if s.id != orig.seller_id]
        seller = others[int(rng.integers(len(others)))]
        keep = sorted(rng.choice(len(orig_items), size=int(rng.integers(1, len(orig_items) + 1)), replace=False))
        items = [_Item(f"{pid}:{orig_items[i].colour}", orig_items[i].design, orig_items[i].colour, pid, seller.id,
                       relist_of=orig_items[i].item_id, seller_edit_seed=int(rng.integers(2**31))) for i in keep]
        prefix = _RELIST_PREFIX[int(rng.integers(len(_RELIST_PREFIX)))]
        product = Product(product_id=pid, title=f"{prefix} {orig.title}", category=orig.category,
                          seller_id=seller.id, price_cents=int(orig.price_cents * rng.uniform(0.7, 0.95)), variants=[])
        added.append((product, items))
    seller_of = {it.item_id: it.seller_id for _, items in added for it in items}
    for product, items in added:
        seller_name = b.catalog.seller(product.seller_id).name
        for it in items:
            name = G.PALETTE[it.colour][0]
            # A re-lister's photo is a copy of the original's: shot in the original's studio.
            photographer = seller_of[it.relist_of] if it.relist_of else it.seller_id
            job = _PhotoJob(it.item_id, it.design, it.colour, "shop", edit_seed=it.seller_edit_seed,
                            seller_name=seller_name, studio=int(photographer[1:]) % len(G.STUDIO_BACKGROUNDS))
            product.variants.append(Variant(colour=it.colour, colour_name=name, image=b.queue(job)))
            b.items.append({"item_id": it.item_id, "design_id": f"{it.design.design_id}:{it.colour}",
                            "product_id": it.product_id, "seller_id": it.seller_id, "category": it.design.category,
                            "colour": it.colour, "pattern": it.design.pattern, "relist_of": it.relist_of})
        b.catalog.products.append(product)
    return added


def _add_outfits(b: _ShopBuilder) -> None:
    """The stylists' outfits over the shop's designs (real garments only), into the catalogue
    and the truth rows; originals only, never a re-listing."""
    colours_of: dict[str, list[tuple[str, str]]] = {}
    for row in sorted(b.items, key=lambda r: r["item_id"]):
        if not row["relist_of"]:
            colours_of.setdefault(row["design_id"].split(":")[0], []).append((row["item_id"], row["colour"]))
    assigned, planned = O.plan_outfits(b.designs, colours_of, b.params.seed, b.params.lookbook_size,
                                       b.params.outfits_per_design, b.params.curator_noise)
    b.lookbook_of = {d: lookbook for d, (_, lookbook) in assigned.items()}
    _add_snaps(b, planned, assigned, colours_of)
    for outfit in planned:
        b.catalog.outfits.append(Outfit(outfit_id=outfit.outfit_id,
                                        items=[OutfitItem(item_id=p.item_id, type=p.type) for p in outfit.pieces]))
        b.outfits.extend({"outfit_id": outfit.outfit_id, "lookbook": outfit.lookbook, "style": outfit.style,
                          "item_id": p.item_id, "type": p.type, "position": k,
                          "by_rule": int(outfit.by_rule)} for k, p in enumerate(outfit.pieces))


def _add_snaps(b: _ShopBuilder, planned: list[O.PlannedOutfit], assigned: dict[str, tuple[O.Traits, str]],
               colours_of: dict[str, list[tuple[str, str]]]) -> None:
    """The lookbook: snapshot posts of some outfits, their photos queued, their links."""
    designs = {d.design_id: d for d in b.designs}
    pool: dict[str, list[O.OutfitPiece]] = {}
    for design_id, (_, lookbook) in sorted(assigned.items()):
        t = O.TYPE_OF_CATEGORY[designs[design_id].category]
        pool.setdefault(lookbook, []).extend(O.OutfitPiece(i, design_id, c, t) for i, c in colours_of[design_id])
    traits = {d: t for d, (t, _) in assigned.items()}
    rooms, _ = _props(b.params.seed)
    for snap in L.plan_snaps(planned, pool, traits, rooms, b.params.seed, b.params.snaps_per_outfit):
        look = tuple((designs[p.design_id], p.colour, p.type) for p in snap.shown)
        job = _PhotoJob("", look[0][0], look[0][1], "look", snap.snap_id, seed=snap.seed, look=look, room=snap.room)
        linked = [p.item_id for p in snap.shown] + list(snap.related)
        b.catalog.snaps.append(Snap(snap_id=snap.snap_id, image=b.queue(job), style=snap.style, tags=list(snap.tags),
                                    items=linked))
        b.snaps.append({"snap_id": snap.snap_id, "outfit_id": snap.outfit_id, "lookbook": b.lookbook_of.get(snap.shown[0].design_id, ""),
                        "style": snap.style, "file": "", "image_id": ""})
        b.snap_items.extend({"snap_id": snap.snap_id, "item_id": i, "shown": int(k < len(snap.shown)), "position": k}
                            for k, i in enumerate(linked))


def _add_reviews(b: _ShopBuilder, rng: np.random.Generator, plan: list[tuple[Product, _Item]], first_review: int) -> None:
    """One review per ``plan`` entry; ids from ``first_review`` in a shuffled order (reviews
    of all products interleave in time, as on a real site)."""
    p = b.params
    numbers = first_review + rng.permutation(len(plan))
    for (product, item), number in zip(plan, numbers):
        review_id = f"r{number:07d}"
        rating = int(rng.choice([5, 4, 3, 2, 1], p=[0.5, 0.25, 0.12, 0.07, 0.06]))
        texts = _REVIEW_TEXT[rating]
        files = []
        if rng.random() >= p.p_text_only_review:
            for _ in range(int(rng.integers(p.photos_per_review[0], p.photos_per_review[1] + 1))):
                kind = "street"
                if rng.random() < p.noise_fraction:
                    kind = NOISE_KINDS[int(rng.integers(len(NOISE_KINDS)))]
                seed = int(rng.integers(2**63))
                job = _PhotoJob(item.item_id, item.design, item.colour, kind, review_id, seed=seed)
                files.append(b.queue(job, labelled=bool(rng.random() < p.label_fraction)))
        product.reviews.append(Review(review_id=review_id, colour=item.colour, rating=rating,
                                      text=texts[int(rng.integers(len(texts)))], images=files))


def _review_plan(rng: np.random.Generator, p: ShopParams, added: list[tuple[Product, list[_Item]]]) -> list:
    return [(product, it) for product, items in added for it in items
            for _ in range(int(rng.integers(p.reviews_per_item[0], p.reviews_per_item[1] + 1)))]


# -- files --------------------------------------------------------------------------------
def _write_csv(path: Path, columns: list[str], rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=columns, lineterminator="\n")
        w.writeheader()
        w.writerows(rows)


def _read_csv(path: Path) -> list[dict]:
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _save(b: _ShopBuilder) -> None:
    b.catalog.products.sort(key=lambda p: p.product_id)
    _write_csv(b.out_dir / "truth" / "items.csv", ITEM_COLUMNS, sorted(b.items, key=lambda r: r["item_id"]))
    _write_csv(b.out_dir / "truth" / "images.csv", IMAGE_COLUMNS,
               sorted(b.images, key=lambda r: (r["item_id"], r["review_id"], r["file"])))
    _write_csv(b.out_dir / "truth" / "designs.csv", DESIGN_COLUMNS,
               [{**vars(d), "asset": d.asset or "", "flip": int(d.flip)} for d in b.designs])
    _write_csv(b.out_dir / "truth" / "styles.csv", STYLE_COLUMNS,
               [{"design_id": d.design_id, **O.trait_row(O.traits_of(d)), "lookbook": b.lookbook_of.get(d.design_id, "")}
                for d in b.designs])
    _write_csv(b.out_dir / "truth" / "outfits.csv", OUTFIT_COLUMNS, b.outfits)
    _write_csv(b.out_dir / "truth" / "snaps.csv", SNAP_COLUMNS, b.snaps)
    _write_csv(b.out_dir / "truth" / "snap_items.csv", SNAP_ITEM_COLUMNS, b.snap_items)
    _write_csv(b.out_dir / "truth" / "boxes.csv", BOX_COLUMNS, sorted(b.boxes, key=lambda r: r["file"]))
    _write_csv(b.out_dir / "labels.csv", LABEL_COLUMNS, sorted(b.labels, key=lambda r: r["image_id"]))
    (b.out_dir / PARAMS_FILE).write_text(b.params.model_dump_json(indent=1) + "\n", encoding="utf-8")
    save_catalog(b.catalog, b.out_dir)  # last: a server polling it sees a complete shop


def _default_workers() -> int:
    return max(1, min(4, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1))


def generate_shop(out_dir: str | Path, params: ShopParams | None = None, workers: int | None = None) -> Path:
    """Write a new shop into ``out_dir`` (created; must not already hold a shop).

    ``workers`` processes draw the photos (default: the CPUs available, at most 4); the
    output does not depend on it."""
    params = params or ShopParams()
    out = Path(out_dir)
    if (out / "catalog.json").exists():
        raise FileExistsError(f"{out} already holds a shop; use grow_shop to extend it or pick a new folder")
    (out / IMAGES_DIR).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng([params.seed, 0])
    n_sellers = max(3, params.n_products // 6)
    names = rng.permutation([f"{a} {b}" for a in _SELLER_A for b in _SELLER_B])
    sellers = [Seller(id=f"s{k + 1:04d}", name=str(names[k % len(names)])) for k in range(n_sellers)]
    sold = set(G.real_index().values()) if params.garments == "real" else set(G.PROCEDURAL_CATEGORIES)
    categories = [Category(slug=s, name=n) for s, n in CATEGORIES.items() if s in sold]
    catalog = Catalog(seed=params.seed, categories=categories, sellers=sellers, products=[])
    b = _ShopBuilder(out, params, catalog)
    added = _add_products(b, rng, params.n_products, first_product=1)
    _add_reviews(b, rng, _review_plan(rng, params, added), first_review=1)
    if params.garments == "real":
        _add_outfits(b)
    b.render(workers or _default_workers())
    _save(b)
    return out


def grow_shop(
    shop_dir: str | Path, new_products: int, new_reviews: int, seed: int, workers: int | None = None
) -> Path:
    """Add ``new_products`` products (with their own reviews) and ``new_reviews`` more
    reviews on existing items, all with review ids above every existing one. The shop's
    own ``ShopParams`` are reused; ``seed`` makes this growth step reproducible."""
    if new_products < 0 or new_reviews < 0:
        raise ValueError("new_products and new_reviews must be >= 0")
    out = Path(shop_dir)
    params = ShopParams.model_validate_json((out / PARAMS_FILE).read_text())
    catalog = load_catalog(out)
    b = _ShopBuilder(out, params, catalog,
                     items=_read_csv(out / "truth" / "items.csv"),
                     images=_read_csv(out / "truth" / "images.csv"),
                     labels=_read_csv(out / "labels.csv"),
                     designs=[G.Design(r["design_id"], r["category"], r["pattern"], r["kind"], int(r["seed"]),
                                       r["asset"] or None, r["flip"] == "1")
                              for r in _read_csv(out / "truth" / "designs.csv")])
    # The outfits stay as the stylists made them (new products join no lookbook).
    if (out / "truth" / "outfits.csv").exists():
        b.outfits = _read_csv(out / "truth" / "outfits.csv")
        b.lookbook_of = {r["design_id"]: r["lookbook"] for r in _read_csv(out / "truth" / "styles.csv") if r["lookbook"]}
    if (out / "truth" / "snaps.csv").exists():
        b.snaps, b.snap_items = _read_csv(out / "truth" / "snaps.csv"), _read_csv(out / "truth" / "snap_items.csv")
    if (out / "truth" / "boxes.csv").exists():  # a shop made before boxes were written: the new photos' only
        b.boxes = _read_csv(out / "truth" / "boxes.csv")
    rng = np.random.default_rng([params.seed, 1, seed])
    last_product = max(int(p.product_id[1:]) for p in catalog.products)
    last_review = max((int(r.review_id[1:]) for p in catalog.products for r in p.reviews), default=0)
    added = _add_products(b, rng, new_products, last_product + 1)
    plan = _review_plan(rng, params, added)
    # Extra reviews land on random existing items (designs rebuilt from the truth table).
    new_ids = {product.product_id for product, _ in added}
    existing = [p for p in catalog.products if p.product_id not in new_ids]
    truth = {r["item_id"]: r for r in b.items}
    designs = {d.design_id: d for d in b.designs}
    for _ in range(new_reviews if existing else 0):
        product = existing[int(rng.integers(len(existing)))]
        v = product.variants[int(rng.integers(len(product.variants)))]
        row = truth[f"{product.product_id}:{v.colour}"]
        plan.append((product, _Item(row["item_id"], designs[row["design_id"].split(":")[0]], v.colour,
                                    product.product_id, product.seller_id, row["relist_of"])))
    _add_reviews(b, rng, plan, first_review=last_review + 1)
    b.render(workers or _default_workers())
    _save(b)
    return out
