"""A picture of a generated shop: seller photos beside their customer photos, one item a
row, and a row of the noise its review sections hold. For looking at a shop (and for the
README's ``docs/demo-grid.jpg``)::

    python -m street2shop.shop.grid SHOP_DIR OUT.jpg [--rows 10] [--tile 128]
"""

from __future__ import annotations

import argparse
import csv
from collections import defaultdict
from pathlib import Path

from PIL import Image, ImageDraw

from street2shop.shop.catalog import IMAGES_DIR

_GAP = 4
_HEAD = 16


def _rows(path: Path) -> list[dict]:
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


Row = tuple[dict, str, list[str]]  # (item, its seller photo, its customer photos)


def pick_rows(shop_dir: Path, rows: int, per_row: int) -> tuple[list[Row], list[str], list[str]]:
    """([(item, seller photo, customer photos)], noise photos, colour variants): items with
    the most customer photos, one category after another so every category shows; noise of
    every kind; the seller photos of the product with the most colours."""
    items = {r["item_id"]: r for r in _rows(shop_dir / "truth" / "items.csv")}
    seller: dict[str, str] = {}
    street: dict[str, list[str]] = defaultdict(list)
    noise: dict[str, list[str]] = defaultdict(list)
    for r in _rows(shop_dir / "truth" / "images.csv"):
        if r["kind"] == "shop":
            seller[r["item_id"]] = r["file"]
        elif r["kind"] == "street":
            street[r["item_id"]].append(r["file"])
        else:
            noise[r["kind"]].append(r["file"])
    by_category: dict[str, list[str]] = defaultdict(list)
    for item_id in sorted(street, key=lambda i: (-min(len(street[i]), per_row), i)):
        if not items[item_id]["relist_of"]:
            by_category[items[item_id]["category"]].append(item_id)
    chosen: list[str] = []
    while len(chosen) < rows and any(by_category.values()):
        for category in sorted(by_category):
            if by_category[category] and len(chosen) < rows:
                chosen.append(by_category[category].pop(0))
    kinds = sorted(noise)
    mixed = [noise[k][i] for i in range(per_row + 1) for k in kinds if i < len(noise[k])][: per_row + 1]
    colours: dict[str, list[str]] = defaultdict(list)
    for item_id in sorted(items):
        if not items[item_id]["relist_of"] and item_id in seller:
            colours[items[item_id]["product_id"]].append(seller[item_id])
    variants = max(sorted(colours.items()), key=lambda kv: len(kv[1]), default=("", []))[1]
    return [(items[i], seller[i], street[i][:per_row]) for i in chosen], mixed, variants[: per_row + 1]


def demo_grid(shop_dir: str | Path, rows: int = 10, per_row: int = 4, tile: int = 128) -> Image.Image:
    """The picture: a header, then per row the seller photo and up to ``per_row`` customer
    photos (captioned with the item's category and colour), then a row of noise photos and
    one of a product's colours (each colour an item)."""
    shop_dir = Path(shop_dir)
    picked, noise, variants = pick_rows(shop_dir, rows, per_row)
    width = (per_row + 1) * (tile + _GAP) + _GAP
    height = _HEAD + (len(picked) + bool(noise) + bool(variants)) * (tile + _HEAD + _GAP) + _GAP
    sheet = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    draw.text((_GAP, 2), "seller photo", fill=(0, 0, 0))
    draw.text((tile + 2 * _GAP, 2), "customer photos (reviews) of the same item", fill=(0, 0, 0))

    def put(name: str, col: int, row: int) -> None:
        with Image.open(shop_dir / IMAGES_DIR / name) as im:
            sheet.paste(im.convert("RGB").resize((tile, tile), Image.LANCZOS),
                        (_GAP + col * (tile + _GAP), _HEAD + row * (tile + _HEAD + _GAP) + _HEAD))

    for row, (item, seller, street) in enumerate(picked):
        y = _HEAD + row * (tile + _HEAD + _GAP)
        draw.text((_GAP, y + 2), f"{item['category']} / {item['colour']}", fill=(60, 60, 60))
        for col, name in enumerate([seller, *street]):
            put(name, col, row)
    if noise:
        y = _HEAD + len(picked) * (tile + _HEAD + _GAP)
        draw.text((_GAP, y + 2), "noise in the review sections: parcels, close-ups, other things", fill=(60, 60, 60))
        for col, name in enumerate(noise):
            put(name, col, len(picked))
    if variants:
        row = len(picked) + bool(noise)
        y = _HEAD + row * (tile + _HEAD + _GAP)
        draw.text((_GAP, y + 2), "one product's colours (seller photos; each colour is an item)", fill=(60, 60, 60))
        for col, name in enumerate(variants):
            put(name, col, row)
    return sheet


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("shop_dir", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--rows", type=int, default=10)
    parser.add_argument("--per-row", type=int, default=4)
    parser.add_argument("--tile", type=int, default=128)
    parser.add_argument("--quality", type=int, default=82)
    args = parser.parse_args(argv)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    demo_grid(args.shop_dir, args.rows, args.per_row, args.tile).save(args.out, quality=args.quality, optimize=True)
    print(f"{args.out}: {args.out.stat().st_size / 1e3:.0f} kB")


if __name__ == "__main__":
    main()
