"""Outfits fit to learn from, and their splits (no product in two splits, by default).

``usable_outfits`` keeps the outfits whose items can be scored (the items have features) and
that still have two items of distinct types; ``split_outfits`` assigns outfits to
train / val / test by connected units:

* ``"group"`` (default): outfits that share a product group (the dedup stage's groups: a
  product's colours and its re-listings) are one unit, so **no product is in two splits**,
  nor any item. The demo shop's stylists work in lookbooks, so its units are lookbooks, as
  far as dedup merges only true copies: a false merge glues two lookbooks into one unit
  (the default demo: 11 such groups chain 16 of its 20 lookbooks together, so train takes
  that unit whole and test is small). ``largest_unit_share`` says how much one unit holds.
* ``"item"``: outfits that share an item are one unit: **no item in two splits**, the
  disjoint protocol of Polyvore Outfits (two colours of one product may be in two splits).
* ``"outfit"``: every outfit is its own unit, so an item may be in outfits of two splits:
  Polyvore's *non-disjoint* protocol, the one its published figures are for.

Units go to the split furthest below its target share of outfits, largest units first, in
a seeded order among equals: deterministic, and every split with a positive fraction gets
a unit when there are enough.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Literal

import numpy as np
import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field

from street2shop.storage.schemas import OUTFIT_SPLITS, OUTFITS

SplitKind = Literal["group", "item", "outfit"]
SPLIT_NAMES = ("train", "val", "test")


class OutfitSplitParams(BaseModel):
    """How outfits are split (part of the outfit models' version)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: SplitKind = "group"
    fractions: tuple[float, float, float] = (0.7, 0.1, 0.2)
    seed: int = 0
    #: items an outfit needs (with features, of distinct types) to be used at all
    min_items: int = Field(2, ge=2)


def usable_outfits(outfits: pa.Table, known_items: set[str], min_items: int = 2) -> pa.Table:
    """``outfits`` restricted to ``known_items`` (those with features); an outfit keeps its
    order and needs ``min_items`` items left, of distinct types."""
    by_outfit: dict[str, list[dict]] = defaultdict(list)
    for row in outfits.to_pylist():
        by_outfit[row["outfit_id"]].append(row)
    rows = []
    for oid in sorted(by_outfit):
        members = [r for r in sorted(by_outfit[oid], key=lambda r: r["position"]) if r["item_id"] in known_items]
        types = [r["type"] for r in members]
        if len(members) < min_items or len(set(types)) != len(types):
            continue
        rows += [{**r, "position": k} for k, r in enumerate(members)]
    return pa.Table.from_pylist(rows, schema=OUTFITS)


class _Units:
    """Union-find over outfit ids."""

    def __init__(self, ids: Sequence[str]) -> None:
        self.parent = {i: i for i in ids}

    def find(self, x: str) -> str:
        while self.parent[x] != x:
            self.parent[x] = self.parent[self.parent[x]]
            x = self.parent[x]
        return x

    def union(self, a: str, b: str) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def split_units(outfits: pa.Table, kind: SplitKind = "group", group_of: Mapping[str, str] | None = None) -> dict[str, list[str]]:
    """The units a split keeps whole: root outfit id -> its outfits (see the module docstring)."""
    if kind not in ("group", "item", "outfit"):
        raise ValueError(f"unknown outfit split {kind!r}; choose 'group', 'item' or 'outfit'")
    members: dict[str, list[str]] = defaultdict(list)
    for oid, item in zip(outfits.column("outfit_id").to_pylist(), outfits.column("item_id").to_pylist()):
        members[oid].append(item)
    ids = sorted(members)
    units = _Units(ids)
    if kind != "outfit":
        owner: dict[str, str] = {}
        for oid in ids:
            for item in members[oid]:
                key = (group_of or {}).get(item, item) if kind == "group" else item
                if key in owner:
                    units.union(oid, owner[key])
                else:
                    owner[key] = oid
    by_unit: dict[str, list[str]] = defaultdict(list)
    for oid in ids:
        by_unit[units.find(oid)].append(oid)
    return dict(by_unit)


def largest_unit_share(outfits: pa.Table, kind: SplitKind = "group", group_of: Mapping[str, str] | None = None) -> float:
    """The share of outfits in the largest unit (above the train fraction, a split cannot meet
    its fractions)."""
    units = split_units(outfits, kind, group_of)
    return max((len(u) for u in units.values()), default=0) / max(1, sum(len(u) for u in units.values()))


def split_outfits(
    outfits: pa.Table,
    kind: SplitKind = "group",
    group_of: Mapping[str, str] | None = None,
    fractions: Sequence[float] = (0.7, 0.1, 0.2),
    seed: int = 0,
) -> pa.Table:
    """``outfit_splits`` (outfit_id, split). ``group_of``: item id -> product group (for
    ``"group"``; an item missing from it is its own group)."""
    if len(fractions) != 3 or min(fractions) < 0 or abs(sum(fractions) - 1) > 1e-6:
        raise ValueError(f"fractions must be three shares of train, val, test summing to 1, got {tuple(fractions)}")
    by_unit = split_units(outfits, kind, group_of)
    ids = sorted(o for unit in by_unit.values() for o in unit)
    rng = np.random.default_rng([seed, 17])
    roots = sorted(by_unit)
    tie = {r: float(t) for r, t in zip(roots, rng.random(len(roots)))}
    order = sorted(roots, key=lambda r: (-len(by_unit[r]), tie[r]))
    total = len(ids)
    have = np.zeros(3)
    split_of: dict[str, str] = {}
    wanted = np.asarray(fractions, float)
    for k, root in enumerate(order):
        # A split with a share but no unit yet goes first while units remain for the others.
        empty = [s for s in range(3) if wanted[s] > 0 and have[s] == 0]
        if empty and len(order) - k <= len(empty):
            s = max(empty, key=lambda s: wanted[s])
        else:
            s = int(np.argmax(wanted * total - have))
        have[s] += len(by_unit[root])
        for oid in by_unit[root]:
            split_of[oid] = SPLIT_NAMES[s]
    return pa.Table.from_pylist([{"outfit_id": oid, "split": split_of[oid]} for oid in ids], schema=OUTFIT_SPLITS)


def leaks(outfits: pa.Table, splits: pa.Table, key_of: Mapping[str, str] | None = None) -> dict[str, list[str]]:
    """Keys (product groups, or items when ``key_of`` is None) found in outfits of more than
    one split: key -> the splits. Empty for a leak-free split."""
    split_of = dict(zip(splits.column("outfit_id").to_pylist(), splits.column("split").to_pylist()))
    found: dict[str, set[str]] = defaultdict(set)
    for oid, item in zip(outfits.column("outfit_id").to_pylist(), outfits.column("item_id").to_pylist()):
        found[(key_of or {}).get(item, item)].add(split_of[oid])
    return {k: sorted(v) for k, v in sorted(found.items()) if len(v) > 1}
