"""Outfit splits: no product in two splits (group), Polyvore's non-disjoint split (outfit),
and which outfits are usable."""

from __future__ import annotations

import pyarrow as pa
import pytest

from street2shop.cleaning.outfits import largest_unit_share, leaks, split_outfits, split_units, usable_outfits
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


def test_usable_outfits_drop_unknown_items_and_repeated_types():
    t = table({"a": [("x", "top"), ("y", "bottom"), ("z", "shoes")], "b": [("x", "top"), ("w", "top")],
               "c": [("x", "top"), ("q", "bottom")]})
    out = usable_outfits(t, {"x", "y", "w"})
    assert [(r["outfit_id"], r["item_id"], r["position"]) for r in out.to_pylist()] == [("a", "x", 0), ("a", "y", 1)]
