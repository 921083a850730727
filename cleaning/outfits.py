"""Outfits fit to learn from, and their splits (no product in two splits, by default; for
lookbook posts, no post, photo or outfit in two splits).

``usable_outfits`` keeps the outfits whose items can be scored (the items have features) and
that still have two items of distinct types; ``split_outfits`` assigns outfits to
train / val / test by connected units:

* ``"group"`` (default): outfits that share a product group (the dedup stage's groups: a
  product's colours and its re-listings) are one unit, so **no product is in two splits**,
  nor any item. The demo shop's stylists work in lookbooks, so its units are lookbooks, as
  far as dedup merges only true copies: a false merge glues two lookbooks into one unit
  (under the union-find dedup before issue 21, 11 such groups chained 16 of the default
  demo's 20 lookbooks together, so train took that unit whole and test was small).
  ``largest_unit_share`` says how much one unit holds.
* ``"item"``: outfits that share an item are one unit: **no item in two splits**, the
  disjoint protocol of Polyvore Outfits (two colours of one product may be in two splits).
* ``"outfit"``: every outfit is its own unit, so an item may be in outfits of two splits:
  Polyvore's *non-disjoint* protocol, the one its published figures are for.
* ``"look"``: for lookbook posts (snapshot -> items), where **a leak is the same or a
  near-duplicate snapshot, or the same outfit, in train and test**: a model that saw the photo
  (or the look) with its links has memorised the answer. Catalogue items are *meant* to be
  known (a shopper's photo is matched against the shop's items, which the model may have
  seen in any post), so an item or product shared by posts of two splits is **not** a leak.
  Posts are one unit when they show the same photo (``photo_of``: post -> photo key, e.g. the
  image id, or a near-duplicate cluster of the photos) or link exactly the same items (the
  same outfit posted twice); every other post is a unit of its own. Units are assigned per
  ``style_of`` (post -> style), so every style with enough posts is in every split. Grouping
  posts by shared products instead (``"group"``) chains a lookbook's posts into one unit
  (they share items by design) and leaves few test posts.

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

SplitKind = Literal["group", "item", "outfit", "look"]
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


def split_units(
    outfits: pa.Table,
    kind: SplitKind = "group",
    group_of: Mapping[str, str] | None = None,
    photo_of: Mapping[str, str] | None = None,
) -> dict[str, list[str]]:
    """The units a split keeps whole: root outfit id -> its outfits (see the module docstring)."""
    if kind not in ("group", "item", "outfit", "look"):
        raise ValueError(f"unknown outfit split {kind!r}; choose 'group', 'item', 'outfit' or 'look'")
    members: dict[str, list[str]] = defaultdict(list)
    for oid, item in zip(outfits.column("outfit_id").to_pylist(), outfits.column("item_id").to_pylist()):
        members[oid].append(item)
    ids = sorted(members)
    units = _Units(ids)
    if kind == "look":
        for key_of in (lambda o: (photo_of or {}).get(o), lambda o: tuple(sorted(members[o]))):
            owner: dict = {}
            for oid in ids:
                key = key_of(oid)
                if key is None:
                    continue
                if key in owner:
                    units.union(oid, owner[key])
                else:
                    owner[key] = oid
    elif kind != "outfit":
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
    photo_of: Mapping[str, str] | None = None,
    style_of: Mapping[str, str] | None = None,
) -> pa.Table:
    """``outfit_splits`` (outfit_id, split). ``group_of``: item id -> product group (for
    ``"group"``; an item missing from it is its own group). ``photo_of`` (``"look"``): post ->
    photo key. ``style_of`` (``"look"``): post -> style; units are then assigned style by
    style (a unit counts under its first post's style), so each style meets the fractions on
    its own. The other kinds' units (lookbooks, chained outfits) span styles: not stratified."""
    if len(fractions) != 3 or min(fractions) < 0 or abs(sum(fractions) - 1) > 1e-6:
        raise ValueError(f"fractions must be three shares of train, val, test summing to 1, got {tuple(fractions)}")
    by_unit = split_units(outfits, kind, group_of, photo_of)
    ids = sorted(o for unit in by_unit.values() for o in unit)
    rng = np.random.default_rng([seed, 17])
    roots = sorted(by_unit)
    tie = {r: float(t) for r, t in zip(roots, rng.random(len(roots)))}
    split_of: dict[str, str] = {}
    wanted = np.asarray(fractions, float)
    stratum = {r: (style_of or {}).get(r, "") if kind == "look" else "" for r in roots}
    for name in sorted(set(stratum.values())):
        order = sorted((r for r in roots if stratum[r] == name), key=lambda r: (-len(by_unit[r]), tie[r]))
        total = sum(len(by_unit[r]) for r in order)
        have = np.zeros(3)
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


def look_leaks(posts: pa.Table, splits: pa.Table, photo_of: Mapping[str, str] | None = None) -> dict[str, list[str]]:
    """Leaks of a posts split as the module docstring defines them for snapshot -> items: a
    photo key (``photo_of``) or an outfit (the exact set of items a post links) found in posts
    of more than one split: key -> the splits. Items shared across splits are not leaks."""
    split_of = dict(zip(splits.column("outfit_id").to_pylist(), splits.column("split").to_pylist()))
    members: dict[str, set[str]] = defaultdict(set)
    for oid, item in zip(posts.column("outfit_id").to_pylist(), posts.column("item_id").to_pylist()):
        members[oid].add(item)
    found: dict[str, set[str]] = defaultdict(set)
    for oid, items in members.items():
        found["outfit:" + ",".join(sorted(items))].add(split_of[oid])
        if photo_of and oid in photo_of:
            found["photo:" + photo_of[oid]].add(split_of[oid])
    return {k: sorted(v) for k, v in sorted(found.items()) if len(v) > 1}
