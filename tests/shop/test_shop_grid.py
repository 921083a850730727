"""The picture of a shop: the right photos in the right rows."""

from __future__ import annotations

import csv

from PIL import Image

from street2shop.shop.generator import NOISE_KINDS
from street2shop.shop.grid import demo_grid, main, pick_rows


def _truth(shop):
    with open(shop / "truth" / "images.csv", newline="") as f:
        return {r["file"]: r for r in csv.DictReader(f)}


def test_rows_pair_a_seller_photo_with_its_own_customer_photos(small_shop):
    truth = _truth(small_shop)
    picked, noise, variants = pick_rows(small_shop, rows=4, per_row=3)
    assert len(picked) == 4
    with open(small_shop / "truth" / "items.csv", newline="") as f:
        items = {r["item_id"]: r for r in csv.DictReader(f)}
    shown = {items[r["item_id"]]["category"] for r in truth.values() if r["kind"] == "street"}
    assert len({item["category"] for item, _, _ in picked}) == min(4, len(shown))  # one category after another
    for item, seller, street in picked:
        assert truth[seller]["kind"] == "shop" and truth[seller]["item_id"] == item["item_id"]
        assert 1 <= len(street) <= 3
        assert all(truth[f]["kind"] == "street" and truth[f]["item_id"] == item["item_id"] for f in street)
    assert noise and all(truth[f]["kind"] in NOISE_KINDS for f in noise)
    products = {truth[f]["item_id"].split(":")[0] for f in variants}
    assert len(products) == 1 and all(truth[f]["kind"] == "shop" for f in variants)


def test_grid_picture_and_command(small_shop, tmp_path):
    picture = demo_grid(small_shop, rows=3, per_row=2, tile=40)
    assert picture.size == (3 * 44 + 4, 16 + 5 * 60 + 4)  # 3 item rows, noise, colours
    out = tmp_path / "grid.jpg"
    main([str(small_shop), str(out), "--rows", "3", "--tile", "48"])
    with Image.open(out) as im:
        assert im.format == "JPEG" and out.stat().st_size < 500_000
