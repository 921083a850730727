"""generate_shop / grow_shop: determinism, ground truth, labels, re-listings, growth."""

from __future__ import annotations

import csv
import hashlib
import io
import shutil

import numpy as np
import pytest
from PIL import Image

from street2shop.shop import garments as G
from street2shop.shop.catalog import load_catalog
from street2shop.shop.garments import Design
from street2shop.shop.generator import (
    IMAGE_KINDS,
    NOISE_KINDS,
    ShopParams,
    _encode_all,
    _PhotoJob,
    generate_shop,
    grow_shop,
)


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _digests(shop):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(shop.rglob("*")) if p.is_file()}


def test_same_seed_gives_identical_files(small_shop, small_params, tmp_path):
    again = generate_shop(tmp_path / "again", ShopParams(seed=5, **small_params), workers=2)
    assert _digests(again) == _digests(small_shop)
    other = generate_shop(tmp_path / "other", ShopParams(seed=6, **small_params), workers=1)
    assert _digests(other)["items.csv"] != _digests(small_shop)["items.csv"]


def test_photos_do_not_depend_on_the_number_of_workers(small_params):
    params = ShopParams(seed=1, **small_params)
    design = Design("d00001", "jackets-coats", "checks", "procedural", seed=4)
    jobs = [_PhotoJob("p000001:navy", design, "navy", kind, "r0000001", seed=k)
            for k, kind in enumerate(["shop", *IMAGE_KINDS[1:], "street", "street"])]
    serial = _encode_all(jobs, params, workers=1)
    assert _encode_all(jobs, params, workers=2, min_parallel=0) == serial
    assert len(set(serial)) == len(jobs)


def test_image_ids_are_sha256_of_the_served_bytes(small_shop):
    rows = _rows(small_shop / "truth" / "images.csv")
    assert {r["kind"] for r in rows} <= set(IMAGE_KINDS)
    for r in rows:
        data = (small_shop / "images" / r["file"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == r["image_id"]
        assert r["file"] == r["image_id"][:24] + ".jpg"
        with Image.open(io.BytesIO(data)) as im:
            assert im.format == "JPEG" and im.size == (96, 96)


def test_catalog_and_truth_agree(small_shop):
    catalog = load_catalog(small_shop)
    items = {r["item_id"]: r for r in _rows(small_shop / "truth" / "items.csv")}
    images = _rows(small_shop / "truth" / "images.csv")
    by_file = {r["file"]: r for r in images}
    assert len(catalog.products) == 12
    seen_items = set()
    for p in catalog.products:
        assert 1 <= len(p.variants) <= 4
        for v in p.variants:
            item_id = f"{p.product_id}:{v.colour}"
            seen_items.add(item_id)
            assert items[item_id]["seller_id"] == p.seller_id and items[item_id]["category"] == p.category
            assert by_file[v.image]["kind"] == "shop" and by_file[v.image]["item_id"] == item_id
        for r in p.reviews:
            for f in r.images:
                assert by_file[f]["review_id"] == r.review_id
                assert by_file[f]["item_id"] == f"{p.product_id}:{r.colour}"
                assert by_file[f]["kind"] != "shop"
    assert seen_items == set(items)
    assert len(by_file) == len(images)  # no two photos share bytes


def test_labels_match_truth(small_shop):
    truth = {r["image_id"]: r["kind"] for r in _rows(small_shop / "truth" / "images.csv")}
    labels = _rows(small_shop / "labels.csv")
    review_photos = [i for i, k in truth.items() if k != "shop"]
    assert len(labels) == len(review_photos)  # label_fraction defaults to 1
    kinds = set()
    for r in labels:
        kinds.add(truth[r["image_id"]])
        assert r["label"] == ("noise" if truth[r["image_id"]] in NOISE_KINDS else "good")
    assert "street" in kinds and kinds & set(NOISE_KINDS)


def test_relists_share_design_with_another_seller(small_shop):
    items = {r["item_id"]: r for r in _rows(small_shop / "truth" / "items.csv")}
    relists = [r for r in items.values() if r["relist_of"]]
    assert len({r["product_id"] for r in relists}) == 3  # round(0.25 * 12)
    images = _rows(small_shop / "truth" / "images.csv")
    shop_photo = {r["item_id"]: r["image_id"] for r in images if r["kind"] == "shop"}
    for r in relists:
        orig = items[r["relist_of"]]
        assert orig["design_id"] == r["design_id"] and not orig["relist_of"]
        assert orig["seller_id"] != r["seller_id"] and orig["colour"] == r["colour"]
        assert shop_photo[orig["item_id"]] != shop_photo[r["item_id"]]  # edited copy, not the same bytes
    # Apart from re-listings, every item is its own design.
    originals = [r["design_id"] for r in items.values() if not r["relist_of"]]
    assert len(originals) == len(set(originals))


def test_label_fraction_and_bad_params(small_params, tmp_path):
    shop = generate_shop(tmp_path / "s", ShopParams(seed=1, **{**small_params, "n_products": 6}, label_fraction=0.0), workers=1)
    assert _rows(shop / "labels.csv") == []
    with pytest.raises(FileExistsError):
        generate_shop(shop, ShopParams(seed=1, **small_params))
    with pytest.raises(ValueError, match="reviews_per_item"):
        ShopParams(reviews_per_item=(3, 1))
    for colours in [(0, 2), (1, 99)]:
        with pytest.raises(ValueError, match="colours"):
            ShopParams(colours=colours)
    with pytest.raises(ValueError):
        ShopParams(garments="cartoon")


def test_grow_shop_adds_products_and_newer_reviews(small_shop, tmp_path):
    shop = tmp_path / "grown"
    shutil.copytree(small_shop, shop)
    before = load_catalog(shop)
    old_reviews = {r.review_id for p in before.products for r in p.reviews}
    old_files = _digests(shop)
    grow_shop(shop, new_products=4, new_reviews=15, seed=3, workers=1)
    after = load_catalog(shop)
    assert len(after.products) == 16
    assert {p.product_id for p in before.products} < {p.product_id for p in after.products}
    new = [r for p in after.products for r in p.reviews if r.review_id not in old_reviews]
    assert len(new) >= 15 and min(r.review_id for r in new) > max(old_reviews)
    # Old items got some of the new reviews; nothing already there changed.
    old_ids = {p.product_id for p in before.products}
    assert any(p.product_id in old_ids for p in after.products for r in p.reviews if r.review_id not in old_reviews)
    digests = _digests(shop)
    assert all(digests.get(name) == d for name, d in old_files.items() if name.endswith(".jpg"))
    truth = {r["image_id"] for r in _rows(shop / "truth" / "images.csv")}
    assert all(f"{r['image_id']}" in truth for r in _rows(shop / "labels.csv"))
    assert len(_rows(shop / "truth" / "items.csv")) == sum(len(p.variants) for p in after.products)


# -- a shop of real garments ----------------------------------------------------------------
REAL = dict(n_products=8, garments="real", image_size=64, relist_fraction=0.25, noise_fraction=0.5)


@pytest.fixture(scope="module")
def real_shop(tmp_path_factory):
    return generate_shop(tmp_path_factory.mktemp("real") / "s", ShopParams(seed=3, **REAL), workers=1)


def test_every_street_photo_has_its_true_box(small_shop, real_shop, tmp_path):
    grown = grow_shop(shutil.copytree(small_shop, tmp_path / "grown"), new_products=2, new_reviews=3, seed=1)
    for shop in (small_shop, real_shop, grown):
        street = {(r["file"], r["image_id"]) for r in _rows(shop / "truth" / "images.csv") if r["kind"] == "street"}
        boxes = _rows(shop / "truth" / "boxes.csv")
        assert street and {(r["file"], r["image_id"]) for r in boxes} == street and len(boxes) == len(street)
        for r in boxes:
            x0, y0, x1, y1 = (float(r[c]) for c in ("x0", "y0", "x1", "y1"))
            assert 0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1 and (x1 - x0) * (y1 - y0) > 0.02


def test_real_shop_same_seed_gives_identical_files(real_shop, tmp_path):
    again = generate_shop(tmp_path / "again", ShopParams(seed=3, **REAL), workers=1)
    assert _digests(again) == _digests(real_shop)


def test_real_designs_are_distinct_photos_first_in_their_own_colour(real_shop):
    designs = _rows(real_shop / "truth" / "designs.csv")
    assert len({d["asset"] for d in designs}) == len(designs) == 6  # 8 products, 2 re-listings
    for d in designs:
        assert d["kind"] == "real" and d["flip"] == "0"
        assert d["category"] == G.real_index()[d["asset"]] and d["pattern"] == G.real_info(d["asset"])["pattern"]
    catalog = load_catalog(real_shop)
    assert {c.slug for c in catalog.categories} == set(G.real_index().values())
    items = {r["item_id"]: r for r in _rows(real_shop / "truth" / "items.csv")}
    by_design = {d["design_id"]: d for d in designs}
    for p in catalog.products:
        first = items[f"{p.product_id}:{p.variants[0].colour}"]
        if not first["relist_of"]:
            photo = by_design[first["design_id"].split(":")[0]]["asset"]
            assert first["colour"] == G.nearest_colour(np.array(G.real_info(photo)["lab"], np.float32))


def test_real_shop_review_sections_hold_every_noise_kind(real_shop):
    kinds = [r["kind"] for r in _rows(real_shop / "truth" / "images.csv")]
    assert set(kinds) == set(IMAGE_KINDS)
    labels = {r["image_id"]: r["label"] for r in _rows(real_shop / "labels.csv")}
    for r in _rows(real_shop / "truth" / "images.csv"):
        if r["kind"] != "shop":
            assert labels[r["image_id"]] == ("noise" if r["kind"] in NOISE_KINDS else "good")


def test_real_garments_are_never_painted_over(monkeypatch, tmp_path):
    def no_painting(*args, **kwargs):
        raise AssertionError("a pattern was painted over a real photo")

    monkeypatch.setattr(G, "pattern_layer", no_painting)
    shop = generate_shop(tmp_path / "s", ShopParams(seed=4, **{**REAL, "n_products": 3}), workers=1)
    assert _rows(shop / "truth" / "images.csv")


def test_real_photos_do_not_depend_on_the_number_of_workers():
    params = ShopParams(seed=1, **REAL)
    name = sorted(G.real_index())[0]
    design = Design("d00001", G.real_index()[name], "solid", "real", seed=4, asset=name)
    jobs = [_PhotoJob("p000001:navy", design, "navy", kind, "r0000001", seed=k)
            for k, kind in enumerate(["shop", *IMAGE_KINDS[1:], "street", "street"])]
    serial = _encode_all(jobs, params, workers=1)
    assert _encode_all(jobs, params, workers=2, min_parallel=0) == serial
    assert len(set(serial)) == len(jobs)


def test_growing_a_real_shop_takes_the_next_photos(real_shop, tmp_path):
    shop = tmp_path / "grown"
    shutil.copytree(real_shop, shop)
    before = {d["asset"] for d in _rows(shop / "truth" / "designs.csv")}
    grow_shop(shop, new_products=3, new_reviews=2, seed=1, workers=1)
    designs = _rows(shop / "truth" / "designs.csv")
    assert len(designs) > len(before) and len({d["asset"] for d in designs}) == len(designs)
