"""The demo shop's outfits: the hidden rule, the truth files, the pages, and that adding
outfits leaves products and photos exactly as they were."""

from __future__ import annotations

import hashlib
import json
import urllib.error
import urllib.request
from collections import Counter, defaultdict

import numpy as np
import pytest

from shop_testing import REAL, first_outfit_page, read_rows

from street2shop.shop import garments as G
from street2shop.shop import outfits as O
from street2shop.shop import pages
from street2shop.shop.catalog import load_catalog, outfits_by_product, variants_by_item
from street2shop.shop.generator import ShopParams, generate_shop
from street2shop.shop.server import ShopServer

def piece(item_id, colour, type_, design="d1"):
    return O.OutfitPiece(item_id, design, colour, type_)


def test_pair_rules_by_hand():
    T = O.Traits
    traits = {"plain0": T("casual", 0, "warm", False), "plain1": T("formal", 1, "cold", False),
              "plain2": T("formal", 2, "cold", False), "print0": T("street", 0, "warm", True),
              "print1": T("sporty", 1, "cold", True), "coat": T("formal", 2, "cold", False)}
    ok = lambda a, b: O.pair_ok(a, b, traits)  # noqa: E731
    # top and bottom: formality within one step, one patterned piece at most, at least 20 L* apart
    # (white 94.7 vs black 7.3; white vs light-grey 76.3 is 18.4)
    assert ok(piece("a", "white", "top", "plain0"), piece("b", "black", "bottom", "plain1"))
    assert not ok(piece("a", "white", "top", "plain0"), piece("b", "light-grey", "bottom", "plain1"))
    assert not ok(piece("a", "white", "top", "plain0"), piece("b", "black", "bottom", "plain2"))  # 0 and 2
    assert ok(piece("a", "white", "top", "print0"), piece("b", "black", "bottom", "plain1"))
    assert not ok(piece("a", "white", "top", "print0"), piece("b", "black", "bottom", "print1"))  # a clash
    # shoes with the bottom: formality within one step; neutral or of its hue family, and at most
    # 10 L* lighter (beige 79.3 over grey 53.7: no)
    assert ok(piece("s", "black", "shoes", "plain1"), piece("b", "white", "bottom", "plain2"))
    assert not ok(piece("s", "black", "shoes", "plain0"), piece("b", "white", "bottom", "plain2"))
    assert not ok(piece("s", "beige", "shoes", "plain1"), piece("b", "grey", "bottom", "plain1"))
    assert ok(piece("s", "burgundy", "shoes", "plain1"), piece("b", "red", "bottom", "plain1"))  # hues 17 and 33
    assert not ok(piece("s", "emerald", "shoes", "plain1"), piece("b", "red", "bottom", "plain1"))
    # the same formality gap is free between shoes and a top, and patterns are free between a top and a coat
    assert ok(piece("s", "yellow", "shoes", "plain0"), piece("t", "purple", "top", "plain2"))
    assert ok(piece("o", "navy", "outerwear", "print1"), piece("t", "white", "top", "print1"))
    # a hat picks up the top's colour family
    assert ok(piece("h", "pink", "hat", "plain0"), piece("t", "dusty-pink", "top", "plain2"))
    assert not ok(piece("h", "pink", "hat", "plain0"), piece("t", "black", "top", "plain0"))
    # outerwear: the season of the top, not its colour
    assert not ok(piece("o", "navy", "outerwear", "coat"), piece("t", "navy", "top", "plain1"))
    assert not ok(piece("o", "navy", "outerwear", "coat"), piece("t", "white", "top", "plain0"))
    # not transitive: a summer top ~ trousers ~ a winter coat, yet the top !~ the coat (season)
    top, trousers, coat = piece("t", "white", "top", "plain0"), piece("b", "black", "bottom", "plain1"), \
        piece("o", "camel", "outerwear", "coat")
    assert ok(top, trousers) and ok(trousers, coat) and not ok(top, coat)
    assert not O.compatible([top, trousers, coat], traits)


def test_traits_are_the_photos_pattern_silhouette_and_category():
    names = sorted(G.real_index())
    styles = Counter(O.style_of_photo(n) for n in names)
    assert set(styles) == set(O.STYLES) and min(styles.values()) > len(names) / 10
    traits = [O.traits_of_photo(n) for n in names]
    assert set(Counter(t.formality for t in traits)) == {0, 1, 2} and set(Counter(t.season for t in traits)) == set(O.SEASONS)
    for n in names[:50]:
        info = G.real_info(n)
        x0, y0, x1, y1 = info["box"]
        long = (y1 - y0) / (x1 - x0) >= O._median_aspects()[info["category"]]
        patterned = info["pattern"] != "solid"
        t = O.traits_of_photo(n)
        assert t.style == {(False, False): "casual", (True, False): "street", (False, True): "formal",
                           (True, True): "sporty"}[(patterned, long)]
        assert t.patterned == patterned
        assert t.formality == min(2, max(0, O.FORMALITY[info["category"]] + (long and not patterned) - patterned))
        assert t.season == O.SEASON.get(info["category"], "cold" if long else "warm")


def test_outfits_keep_the_rule_and_the_truth_agrees(shop):
    catalog = load_catalog(shop)
    truth = read_rows(shop / "truth" / "outfits.csv")
    styles = {r["design_id"]: r for r in read_rows(shop / "truth" / "styles.csv")}
    traits = O.traits_from_rows(styles.values())
    items = {r["item_id"]: r for r in read_rows(shop / "truth" / "items.csv")}
    assert len(catalog.outfits) >= 20
    by_rule, keeps = [], []
    by_outfit = defaultdict(list)
    for r in truth:
        by_outfit[r["outfit_id"]].append(r)
    assert sorted(by_outfit) == [o.outfit_id for o in catalog.outfits]
    for outfit in catalog.outfits:
        rows = by_outfit[outfit.outfit_id]
        assert [(r["item_id"], r["type"]) for r in rows] == [(i.item_id, i.type) for i in outfit.items]
        types = [i.type for i in outfit.items]
        slots = len(types) + types.count("dress")  # a dress counts as top and bottom
        assert 3 <= len(types) <= 5 and len(set(types)) == len(types) and slots <= 6
        assert ("dress" in types) != ({"top", "bottom"} <= set(types))
        pieces = []
        for i in outfit.items:
            row = items[i.item_id]
            design = row["design_id"].split(":")[0]
            assert not row["relist_of"] and O.TYPE_OF_CATEGORY[row["category"]] == i.type
            assert styles[design]["lookbook"] == rows[0]["lookbook"]  # one lookbook per outfit
            pieces.append(O.OutfitPiece(i.item_id, design, row["colour"], i.type))
        assert {r["by_rule"] for r in rows} <= {"0", "1"} and len({r["by_rule"] for r in rows}) == 1
        by_rule.append(rows[0]["by_rule"] == "1")
        keeps.append(O.compatible(pieces, traits))
        assert keeps[-1] or not by_rule[-1]  # a stylist keeps the rule; a noisy curator may not
    # noisy curators: about 10 % of the outfits (ShopParams.curator_noise), most of which break the rule
    noisy = [k for b, k in zip(by_rule, keeps) if not b]
    assert 0.03 < len(noisy) / len(keeps) < 0.25 and np.mean(noisy) < 0.6
    # every product is in one lookbook at most
    lookbooks = defaultdict(set)
    for r in truth:
        lookbooks[r["item_id"].split(":")[0]].add(r["lookbook"])
    assert all(len(v) == 1 for v in lookbooks.values())


def test_random_swaps_are_usually_but_not_always_incompatible(shop):
    items = {r["item_id"]: r for r in read_rows(shop / "truth" / "items.csv")}
    traits = O.traits_from_rows(read_rows(shop / "truth" / "styles.csv"))
    noisy = {r["outfit_id"] for r in read_rows(shop / "truth" / "outfits.csv") if r["by_rule"] == "0"}
    catalog = load_catalog(shop)
    pool = defaultdict(list)
    for item_id, r in items.items():
        if not r["relist_of"]:
            pool[O.TYPE_OF_CATEGORY[r["category"]]].append(item_id)

    def as_piece(item_id, type_):
        r = items[item_id]
        return O.OutfitPiece(item_id, r["design_id"].split(":")[0], r["colour"], type_)

    rng = np.random.default_rng(0)
    still = []
    for outfit in catalog.outfits:
        if outfit.outfit_id in noisy:
            continue
        for k, slot in enumerate(outfit.items):
            pieces = [as_piece(i.item_id, i.type) for i in outfit.items]
            pieces[k] = as_piece(pool[slot.type][int(rng.integers(len(pool[slot.type])))], slot.type)
            still.append(O.compatible(pieces, traits))
    # what is free for one type pair is not for another, so a swap keeps the rule a third to a half of the time
    assert 0.05 < np.mean(still) < 0.6


def test_adding_outfits_changes_no_product_item_or_photo(shop, tmp_path):
    plain = generate_shop(tmp_path / "plain", ShopParams(seed=2, outfits_per_design=0, **REAL), workers=1)
    assert load_catalog(plain).outfits == []

    def digests(folder):
        return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in (folder / "images").iterdir()}

    snap_photos = {r["file"] for r in read_rows(shop / "truth" / "snaps.csv")}  # the lookbook's own photos (test_shop_looks)
    assert snap_photos and digests(plain) == {n: d for n, d in digests(shop).items() if n not in snap_photos}
    for name in ("items.csv", "images.csv", "designs.csv"):
        assert (plain / "truth" / name).read_bytes() == (shop / "truth" / name).read_bytes()
    assert (plain / "labels.csv").read_bytes() == (shop / "labels.csv").read_bytes()
    a, b = load_catalog(plain), load_catalog(shop)
    assert a.products == b.products


def test_same_seed_same_outfits(shop, tmp_path):
    again = generate_shop(tmp_path / "again", ShopParams(seed=2, **REAL), workers=2)
    for name in ("catalog.json", "truth/outfits.csv", "truth/styles.csv"):
        assert (again / name).read_bytes() == (shop / name).read_bytes()


def test_item_and_outfit_pages(shop):
    with ShopServer(shop) as server:
        outfit, _, html = first_outfit_page(shop, server.url)
        look = urllib.request.urlopen(f"{server.url}/o/{outfit.outfit_id}").read().decode()
        with pytest.raises(urllib.error.HTTPError) as missing:
            urllib.request.urlopen(f"{server.url}/o/o99999")
    assert missing.value.code == 404
    assert "class=\"complete-the-look\"" in html and f"data-outfit-id=\"{outfit.outfit_id}\"" in html
    blob = json.loads(html.split('<script id="__PRODUCT__" type="application/json">')[1].split("</script>")[0])
    assert outfit.outfit_id in [o["outfit_id"] for o in blob["outfits"]]
    ld = [json.loads(part.split("</script>")[0]) for part in html.split('<script type="application/ld+json">')[1:]]
    related = [c["identifier"] for block in ld for c in block.get("isRelatedTo", [])]
    assert outfit.outfit_id in related and all(c["@type"] == "ProductCollection" for b in ld for c in b.get("isRelatedTo", []))
    for i in outfit.items:
        assert f"data-item-id=\"{i.item_id}\" data-type=\"{i.type}\"" in look


def test_a_page_without_outfits_is_as_it_was(shop):
    catalog = load_catalog(shop)
    by_product = outfits_by_product(catalog)
    lone = next(p for p in catalog.products if p.product_id not in by_product)
    assert pages.item_page(catalog, lone, by_product.get(lone.product_id, ()), variants_by_item(catalog)) == \
        pages.item_page(catalog, lone)
    assert "complete-the-look" not in pages.item_page(catalog, lone)
