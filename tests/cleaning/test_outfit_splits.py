"""Outfit splits: no product in two splits (group), Polyvore's non-disjoint split (outfit),
and which outfits are usable."""

from __future__ import annotations

import pyarrow as pa
import pytest

from street2shop.cleaning.outfits import largest_unit_share, leaks, look_leaks, split_outfits, split_units, usable_outfits
from street2shop.storage.schemas import OUTFITS


def table(outfits: dict[str, list[tuple[str, str]]]) -> pa.Table:
    rows = [{"outfit_id": o, "item_id": i, "type": t, "position": k} for o, items in outfits.items()
            for k, (i, t) in enumerate(items)]
    return pa.Table.from_pylist(rows, schema=OUTFITS)


# three lookbooks: o1-o3 share products (p1's two colours count as one product), o4-o5, o6
OUTFITS_ = table({
    "o1": [("p1:red", "top"), ("p2:black", "bottom")],
    "o2": [("p1:blue", "top"), ("p3:white", "shoes")],
    "o3": [("p3:white", "shoes"), ("p4:grey", "bottom")],
    "o4": [("p5:red", "top"), ("p6:red", "bottom")],
    "o5": [("p6:red", "bottom"), ("p7:tan", "shoes")],
    "o6": [("p8:red", "dress"), ("p9:red", "hat")],
})
GROUP = {f"p{k}:{c}": f"p{k}" for k in range(1, 10) for c in ("red", "blue", "black", "white", "grey", "tan")}


def split_of(splits: pa.Table) -> dict[str, str]:
    return dict(zip(splits.column("outfit_id").to_pylist(), splits.column("split").to_pylist()))


def test_group_split_keeps_each_connected_set_whole():
    s = split_of(split_outfits(OUTFITS_, "group", GROUP, (0.5, 0.2, 0.3)))
    # units by size: {o1,o2,o3} (3), {o4,o5} (2), {o6} (1); the largest goes to train, the next to
    # the split furthest below its share (test: 0.3 * 6 = 1.8), the last to the empty val split
    assert s == {"o1": "train", "o2": "train", "o3": "train", "o4": "test", "o5": "test", "o6": "val"}
    assert leaks(OUTFITS_, split_outfits(OUTFITS_, "group", GROUP, (0.5, 0.2, 0.3)), GROUP) == {}


def test_item_split_is_polyvores_disjoint_one():
    # p1:red and p1:blue are different items: {o2,o3}, {o1}, {o4,o5}, {o6} are the units
    assert sorted(len(u) for u in split_units(OUTFITS_, "item").values()) == [1, 1, 2, 2]
    assert sorted(len(u) for u in split_units(OUTFITS_, "group", GROUP).values()) == [1, 2, 3]
    assert largest_unit_share(OUTFITS_, "group", GROUP) == 0.5 and largest_unit_share(OUTFITS_, "outfit") == 1 / 6
    splits = split_outfits(OUTFITS_, "item", fractions=(0.5, 0.2, 0.3))
    assert leaks(OUTFITS_, splits, None) == {}


def test_outfit_split_is_polyvores_non_disjoint_one():
    splits = split_outfits(OUTFITS_, "outfit", fractions=(0.5, 0.0, 0.5), seed=1)
    assert sorted(split_of(splits).values()).count("train") == 3
    assert leaks(OUTFITS_, splits, GROUP)  # a product in two splits is what this split allows


def test_split_is_deterministic_and_checks_fractions():
    a = split_outfits(OUTFITS_, "outfit", fractions=(0.5, 0.2, 0.3), seed=3)
    assert a.equals(split_outfits(OUTFITS_, "outfit", fractions=(0.5, 0.2, 0.3), seed=3))
    with pytest.raises(ValueError, match="fractions"):
        split_outfits(OUTFITS_, "group", fractions=(0.5, 0.5, 0.5))
    with pytest.raises(ValueError, match="unknown outfit split"):
        split_outfits(OUTFITS_, "items")


# posts of one lookbook share items by design; k3 re-posts k1's photo, k5 re-posts k4's outfit
POSTS = table({
    "k1": [("p1:red", ""), ("p2:black", ""), ("p3:white", "")],
    "k2": [("p1:red", ""), ("p2:black", ""), ("p4:grey", "")],
    "k3": [("p1:red", ""), ("p2:black", ""), ("p3:white", ""), ("p5:red", "")],
    "k4": [("p2:black", ""), ("p4:grey", ""), ("p6:red", "")],
    "k5": [("p6:red", ""), ("p2:black", ""), ("p4:grey", "")],
    "k6": [("p3:white", ""), ("p4:grey", ""), ("p7:tan", "")],
})
PHOTO = {"k1": "img-a", "k2": "img-b", "k3": "img-a", "k4": "img-c", "k5": "img-d", "k6": "img-e"}


def test_look_split_keeps_photos_and_outfits_whole_but_shares_items():
    units = split_units(POSTS, "look", photo_of=PHOTO)
    assert sorted(sorted(u) for u in units.values()) == [["k1", "k3"], ["k2"], ["k4", "k5"], ["k6"]]
    # by product group every post is one unit: the lookbook chains
    assert largest_unit_share(POSTS, "group", GROUP) == 1.0
    splits = split_outfits(POSTS, "look", fractions=(0.5, 0.2, 0.3), photo_of=PHOTO)
    assert look_leaks(POSTS, splits, PHOTO) == {}
    assert set(split_of(splits).values()) == {"train", "val", "test"}
    assert leaks(POSTS, splits, GROUP)  # items are shared across splits: meant, not a leak


def test_look_leaks_catch_a_photo_or_an_outfit_in_two_splits():
    def splits(assigned):
        return pa.Table.from_pylist([{"outfit_id": o, "split": s} for o, s in assigned.items()])

    fine = {"k1": "train", "k3": "train", "k2": "test", "k4": "val", "k5": "val", "k6": "test"}
    assert look_leaks(POSTS, splits(fine), PHOTO) == {}
    photo = look_leaks(POSTS, splits({**fine, "k3": "test"}), PHOTO)
    assert photo == {"photo:img-a": ["test", "train"]}
    outfit = look_leaks(POSTS, splits({**fine, "k5": "test"}), PHOTO)
    assert list(outfit) == ["outfit:p2:black,p4:grey,p6:red"]


def test_look_split_is_stratified_by_style():
    posts = table({f"k{n:02d}": [(f"p{n}:red", ""), (f"p{n + 100}:red", "")] for n in range(40)})
    style = {f"k{n:02d}": ("casual" if n < 30 else "sporty") for n in range(40)}
    s = split_of(split_outfits(posts, "look", fractions=(0.7, 0.1, 0.2), style_of=style))
    per = {(style[k], v) for k, v in s.items()}
    assert {("casual", "test"), ("sporty", "test"), ("sporty", "train")} <= per
    assert sum(1 for k, v in s.items() if style[k] == "sporty" and v == "test") == 2  # 0.2 of 10


def test_usable_outfits_drop_unknown_items_and_repeated_types():
    t = table({"a": [("x", "top"), ("y", "bottom"), ("z", "shoes")], "b": [("x", "top"), ("w", "top")],
               "c": [("x", "top"), ("q", "bottom")]})
    out = usable_outfits(t, {"x", "y", "w"})
    assert [(r["outfit_id"], r["item_id"], r["position"]) for r in out.to_pylist()] == [("a", "x", 0), ("a", "y", 1)]
