"""The demo shop's lookbook: posts of outfits that link the items shown and related ones kept
by the hidden rule, styles unevenly frequent, the photo of a look, the pages, and that adding
a lookbook leaves products, items, photos and outfits as they were."""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from collections import Counter, defaultdict

import numpy as np
import pytest
from PIL import Image

from shop_testing import REAL, read_rows

from street2shop.shop import garments as G
from street2shop.shop import looks as L
from street2shop.shop import outfits as O
from street2shop.shop.catalog import load_catalog
from street2shop.shop.domain_gap import DomainGapParams
from street2shop.shop.generator import ShopParams, generate_shop
from street2shop.shop.server import ShopServer

def _pieces(shop):
    items = {r["item_id"]: r for r in read_rows(shop / "truth" / "items.csv")}
    traits = O.traits_from_rows(read_rows(shop / "truth" / "styles.csv"))

    def piece(item_id):
        r = items[item_id]
        return O.OutfitPiece(item_id, r["design_id"].split(":")[0], r["colour"], O.TYPE_OF_CATEGORY[r["category"]])

    return piece, traits


def test_a_post_links_the_items_shown_then_related_ones_that_keep_the_rule(shop):
    piece, traits = _pieces(shop)
    snaps = {r["snap_id"]: r for r in read_rows(shop / "truth" / "snaps.csv")}
    outfits = defaultdict(list)
    for r in sorted(read_rows(shop / "truth" / "outfits.csv"), key=lambda r: int(r["position"])):
        outfits[r["outfit_id"]].append(r["item_id"])
    lookbook_of = {r["item_id"]: r["lookbook"] for r in read_rows(shop / "truth" / "outfits.csv")}
    links = defaultdict(list)
    for r in sorted(read_rows(shop / "truth" / "snap_items.csv"), key=lambda r: int(r["position"])):
        links[r["snap_id"]].append((r["item_id"], r["shown"] == "1"))
    assert len(snaps) >= 5 and set(links) == set(snaps)
    not_look_alike = 0
    for snap_id, linked in links.items():
        shown = [i for i, s in linked if s]
        related = [i for i, s in linked if not s]
        assert [s for _, s in linked] == sorted((s for _, s in linked), reverse=True)  # shown first
        assert shown == outfits[snaps[snap_id]["outfit_id"]]
        assert len(related) <= L.MAX_RELATED and not set(related) & set(shown)
        types = {piece(i).type: i for i in shown}
        for item in related:
            assert piece(item).type in types
            swapped = [piece(item) if piece(i).type == piece(item).type else piece(i) for i in shown]
            assert O.compatible(swapped, traits), (snap_id, item)  # the stylists' rule
            assert lookbook_of.get(item, snaps[snap_id]["lookbook"]) == snaps[snap_id]["lookbook"]
            replaced = piece(types[piece(item).type])
            not_look_alike += piece(item).design_id != replaced.design_id
    assert not_look_alike > 0  # a post links items that do not look like what its photo shows
    catalog = load_catalog(shop)
    assert {s.snap_id: s.items for s in catalog.snaps} == {k: [i for i, _ in v] for k, v in links.items()}
    assert {s.snap_id: s.style for s in catalog.snaps} == {k: r["style"] for k, r in snaps.items()}


def test_styles_are_unevenly_frequent_as_on_real_sites():
    pieces = (O.OutfitPiece("a", "d1", "black", "top"), O.OutfitPiece("b", "d2", "white", "bottom"))
    outfits = [O.PlannedOutfit(f"o{k:04d}", "lb01", style, pieces) for k in range(200) for style in L.STYLE_WEIGHTS]
    snaps = L.plan_snaps(outfits, {}, {}, ["room"], seed=0, per_outfit=0.35)
    counts = Counter(s.style for s in snaps)
    assert counts["casual"] > counts["street"] > counts["formal"] > counts["sporty"] > 0
    # each style at its weight relative to the mean (0.25): 0.35 * w / 0.25 of its 200 outfits
    for style, w in L.STYLE_WEIGHTS.items():
        assert counts[style] == pytest.approx(200 * 0.35 * w / 0.25, rel=0.25), style
    assert L.plan_snaps(outfits, {}, {}, ["room"], seed=0) == snaps  # seeded
    assert L.plan_snaps([], {}, {}, ["room"], seed=0) == []


def test_a_look_photo_lays_the_garments_where_they_are_worn():
    size = 96
    rgb = Image.new("RGB", (size, size), (200, 20, 20))
    mask = Image.new("L", (size, size), 0)
    mask.paste(255, (24, 24, 72, 72))  # a red square garment
    render = G.GarmentRender(rgb, mask)
    room = Image.new("RGB", (size, size), (40, 160, 40))
    p = DomainGapParams()
    photo = np.asarray(L.compose_look([("bottom", render)], room, np.random.default_rng(0), size, p), np.float32)
    empty = np.asarray(L.compose_look([], room, np.random.default_rng(0), size, p), np.float32)
    assert photo.shape == (size, size, 3)
    (cx, cy), _ = L.SLOTS["bottom"]
    centre = photo[int(cy * size) - 4 : int(cy * size) + 4, int(cx * size) - 4 : int(cx * size) + 4]
    assert centre[..., 0].mean() > centre[..., 1].mean() + 40  # red where a bottom is worn
    corner = slice(0, 10)
    assert abs(photo[corner, corner].mean() - empty[corner, corner].mean()) < 25  # the room elsewhere
    assert np.abs(photo - empty).mean() > 5


def test_the_lookbook_pages(shop):
    catalog = load_catalog(shop)
    snap = catalog.snaps[0]
    with ShopServer(shop) as server:
        home = urllib.request.urlopen(server.url + "/").read().decode()
        assert 'class="lookbook" href="/looks"' in home
        listing = urllib.request.urlopen(server.url + "/looks").read().decode()
        assert set(re.findall(r'data-snap-id="(k\d+)"', listing)) == {s.snap_id for s in catalog.snaps[:24]}
        page = urllib.request.urlopen(f"{server.url}/l/{snap.snap_id}").read().decode()
        blob = json.loads(re.search(r'<script id="__SNAP__" type="application/json">(.*?)</script>', page, re.DOTALL).group(1))
        assert blob["items"] == snap.items and blob["style"] == snap.style
        assert re.findall(r'li class="snap-item" data-item-id="([^"]+)"', page) == snap.items
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(server.url + "/l/k99999")
        assert e.value.code == 404


def test_adding_a_lookbook_changes_no_product_item_photo_or_outfit(shop, tmp_path):
    plain = generate_shop(tmp_path / "plain", ShopParams(seed=2, snaps_per_outfit=0, **REAL), workers=1)
    assert load_catalog(plain).snaps == [] and read_rows(plain / "truth" / "snaps.csv") == []
    snap_photos = {r["file"] for r in read_rows(shop / "truth" / "snaps.csv")}
    assert {p.name for p in (shop / "images").iterdir()} - snap_photos == {p.name for p in (plain / "images").iterdir()}
    for name in ("items.csv", "images.csv", "designs.csv", "outfits.csv", "styles.csv"):
        assert (plain / "truth" / name).read_bytes() == (shop / "truth" / name).read_bytes(), name
    a, b = load_catalog(plain), load_catalog(shop)
    assert a.products == b.products and a.outfits == b.outfits
    with ShopServer(plain) as server:
        assert "lookbook" not in urllib.request.urlopen(server.url + "/").read().decode()
