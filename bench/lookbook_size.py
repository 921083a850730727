"""What a bigger lookbook buys and costs: posts, test posts per style, and generation time.

Generates the demo's shop (``DemoSize(seed=s)``: 300 products of real garments) once per
``snaps_per_outfit`` value, side by side in one process, and splits its posts the way the
``looks_train`` stage does by default (``cleaning/outfits.split_outfits`` with kind
``"look"``, photo and style of each post, fractions 0.7/0.1/0.2), from the shop's own truth
(``truth/snaps.csv``, ``truth/snap_items.csv``: what a crawl of it records). Also checks the
split against the truth's outfits: no outfit and no photo in two splits::

    python bench/lookbook_size.py --seed 0 --values 0.35 0.45 --root /tmp/lookbook-size

The wall time of generating the shop is the demo's extra time for the snapshots themselves;
each extra post then costs one more page to crawl and one more photo through the features
stage (reported by the demo's own stages).
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from collections import Counter, defaultdict
from pathlib import Path

import pyarrow as pa

from street2shop.cleaning.outfits import look_leaks, split_outfits
from street2shop.flows.demo import DemoSize
from street2shop.shop.generator import ShopParams, generate_shop
from street2shop.storage.schemas import OUTFITS


def split_lookbook(shop: Path) -> dict:
    truth = shop / "truth"
    with open(truth / "snaps.csv", newline="") as fh:
        snaps = {r["snap_id"]: r for r in csv.DictReader(fh)}
    with open(truth / "snap_items.csv", newline="") as fh:
        rows = [{"outfit_id": r["snap_id"], "item_id": r["item_id"], "type": "", "position": int(r["position"])}
                for r in csv.DictReader(fh)]
    posts = pa.Table.from_pylist(rows, schema=OUTFITS)
    photo = {k: r["image_id"] for k, r in snaps.items()}
    style = {k: r["style"] for k, r in snaps.items()}
    splits = split_outfits(posts, "look", fractions=(0.7, 0.1, 0.2), photo_of=photo, style_of=style)
    split_of = dict(zip(splits.column("outfit_id").to_pylist(), splits.column("split").to_pylist()))
    outfits = defaultdict(set)
    for snap, split in split_of.items():
        outfits[snaps[snap]["outfit_id"]].add(split)
    return {
        "posts": len(split_of),
        "splits": dict(Counter(split_of.values())),
        "test_posts_per_style": dict(sorted(Counter(style[s] for s, v in split_of.items() if v == "test").items())),
        "styles": sorted(set(style.values())),
        "leaks": len(look_leaks(posts, splits, photo)),
        "outfits_in_two_splits": sum(len(v) > 1 for v in outfits.values()),
    }


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--values", type=float, nargs="+", default=[0.35, 0.45])
    ap.add_argument("--root", type=Path, default=Path("/tmp/street2shop-lookbook-size"))
    args = ap.parse_args(argv)
    size = DemoSize(seed=args.seed)
    out = {}
    for value in args.values:
        shop = args.root / f"s{args.seed}-snaps{value}"
        params = ShopParams(seed=size.seed, n_products=size.products, garments=size.garments, image_size=size.image_size,
                            label_fraction=size.label_fraction, snaps_per_outfit=value)
        started = time.perf_counter()
        if not (shop / "catalog.json").exists():
            generate_shop(shop, params)
        seconds = round(time.perf_counter() - started, 1)
        out[str(value)] = {"generate_s": seconds, **split_lookbook(shop)}
        print(f"snaps_per_outfit {value}: generated in {seconds} s; {json.dumps(out[str(value)])}", flush=True)
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
