"""What the demo shop's tests share: the real-garment shop's parameters (its fixture is ``shop``
in tests/shop/conftest.py), its truth files read as rows, the page of its first outfit's product."""

from __future__ import annotations

import csv
import urllib.request
from pathlib import Path

from street2shop.shop.catalog import load_catalog

#: ShopParams (add a seed) of a 40-product shop of real garment photos, with outfits and a lookbook
REAL = {"n_products": 40, "garments": "real", "image_size": 48, "reviews_per_item": (0, 1)}


def read_rows(path) -> list[dict]:
    """A truth CSV as a list of dicts."""
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def first_outfit_page(shop: Path, url: str):
    """(the shop's first outfit, its first item's product id, that product's page as the shop
    at ``url`` serves it)."""
    outfit = load_catalog(shop).outfits[0]
    product_id = outfit.items[0].item_id.split(":")[0]
    return outfit, product_id, urllib.request.urlopen(f"{url}/p/{product_id}").read().decode()
