"""The demo shop's catalogue file (``catalog.json``): the one thing the server reads.

The generator writes it, the server renders it, ``grow_shop`` extends it. Keeping it a typed
pydantic model means a hand-edited or stale catalogue fails loudly on load instead of
rendering half a page.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field

CATALOG_FILE = "catalog.json"
IMAGES_DIR = "images"

#: Every category a shop may sell, in the order the home page lists them. A shop lists
#: those its garments come in: procedural garments are drawn for five of them (hoodies
#: only there), the bundled real photos cover all but hoodies.
CATEGORIES: dict[str, str] = {
    "dresses": "Dresses",
    "blouses-shirts": "Blouses & Shirts",
    "t-shirts": "T-Shirts",
    "hoodies-sweatshirts": "Hoodies & Sweatshirts",
    "sweaters": "Sweaters & Long Sleeves",
    "jackets-coats": "Jackets & Coats",
    "trousers": "Trousers & Jeans",
    "skirts": "Skirts",
    "shorts": "Shorts",
    "shoes": "Shoes",
    "hats": "Hats & Caps",
}


class Category(BaseModel):
    slug: str
    name: str


class Seller(BaseModel):
    id: str  # "s0042"
    name: str


class Variant(BaseModel):
    """One colour of a product = one sellable item, with its seller photo."""

    colour: str  # slug, "dusty-pink"
    colour_name: str  # "Dusty Pink"
    image: str  # file name under images/


class Review(BaseModel):
    review_id: str  # "r0001234"; higher = newer
    colour: str
    rating: int = Field(ge=1, le=5)
    text: str
    images: list[str] = Field(default_factory=list)  # file names under images/


class Product(BaseModel):
    product_id: str  # "p000123"
    title: str
    category: str
    seller_id: str
    price_cents: int
    variants: list[Variant]
    reviews: list[Review] = Field(default_factory=list)


class OutfitItem(BaseModel):
    item_id: str  # "p000123:navy"
    type: str  # "top", "bottom", "dress", "outerwear", "shoes", "hat"


class Outfit(BaseModel):
    """A look the shop's stylists put together ("complete the look"), 3-5 items."""

    outfit_id: str  # "o00012"
    items: list[OutfitItem]


class Snap(BaseModel):
    """A lookbook post: a photo of a look and the items the stylists linked to it."""

    snap_id: str  # "k00012"
    image: str  # file name under images/
    style: str
    tags: list[str] = Field(default_factory=list)
    items: list[str]  # item ids: those shown first, then related ones


class Catalog(BaseModel):
    seed: int
    categories: list[Category]
    sellers: list[Seller]
    products: list[Product]
    outfits: list[Outfit] = Field(default_factory=list)
    snaps: list[Snap] = Field(default_factory=list)

    def seller(self, seller_id: str) -> Seller:
        for s in self.sellers:
            if s.id == seller_id:
                return s
        raise KeyError(seller_id)


def outfits_by_product(catalog: Catalog) -> dict[str, list[Outfit]]:
    """product id -> the outfits any of its colours is in, in outfit order."""
    out: dict[str, list[Outfit]] = {}
    for outfit in catalog.outfits:
        for pid in dict.fromkeys(i.item_id.split(":")[0] for i in outfit.items):
            out.setdefault(pid, []).append(outfit)
    return out


def variants_by_item(catalog: Catalog) -> dict[str, tuple[Product, Variant]]:
    """item id -> (its product, its variant)."""
    return {f"{p.product_id}:{v.colour}": (p, v) for p in catalog.products for v in p.variants}


def load_catalog(shop_dir: str | Path) -> Catalog:
    """Read ``shop_dir/catalog.json``; a clear error when the folder is not a shop."""
    path = Path(shop_dir) / CATALOG_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found: is {shop_dir} a shop made by `street2shop shop generate`?"
        )
    return Catalog.model_validate_json(path.read_bytes())


def save_catalog(catalog: Catalog, shop_dir: str | Path) -> Path:
    """Write the catalogue atomically (a running server may be polling it for changes)."""
    path = Path(shop_dir) / CATALOG_FILE
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(catalog.model_dump_json(indent=1) + "\n", encoding="utf-8")
    tmp.replace(path)
    return path
