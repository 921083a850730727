"""Dedup benchmarks: Hamming search speed, and merge quality on a demo shop's ground truth.

Speed -- N random 64-bit hashes with planted near-duplicates. Searches every hash against all others at Hamming radius ``r`` through
:func:`street2shop.cleaning.dedup.hamming_pairs` (the same call the dedup stage makes), prints
the wall time and pairs found, and checks the result against numpy brute force for a random
subsample of queries (every pair involving a sampled hash must be found, and nothing else)::

    python bench/dedup.py --n 100000 --radius 8 --method auto

Roadmap target: 100,000 hashes searched in under 30 s on the 2-core dev machine.

Quality -- ``--shop DIR`` (a folder made by ``street2shop shop generate``) merges the shop's
seller photos straight from the folder (no crawl: items and photos come from ``truth/``) and
prints pairwise merge precision/recall against ``truth/items.csv``: per method over a sweep
of its threshold (hash radius; embedding cosine similarity), then the default
``DedupParams`` per method and combined. Embeddings are computed once per run and reused
across the sweep (the combined sweep keeps the default hash radius)::

    python bench/dedup.py --shop /tmp/demo-home/demo-shop/real-150-s0
"""

from __future__ import annotations

import argparse
import csv
import json
import platform
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
from street2shop.cleaning.dedup import (
    DedupParams,
    _search_method,
    embed_shop_photos,
    hamming_distance,
    hamming_pairs,
    merge_near_duplicates,
    merge_quality,
)


def make_hashes(n: int, planted_fraction: float, radius: int, seed: int) -> np.ndarray:
    """Uniform random 64-bit codes; a fraction of them re-drawn as copies of others with
    0..radius bits flipped (a re-listed photo after a light edit)."""
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, 256, (n, 8), dtype=np.uint8)
    n_planted = int(n * planted_fraction)
    dst = rng.choice(n, n_planted, replace=False)
    src = rng.integers(0, n, n_planted)
    bits = np.unpackbits(codes[src], axis=1)
    flips = rng.integers(0, radius + 1, n_planted)
    for row, k in enumerate(flips):
        bits[row, rng.choice(64, k, replace=False)] ^= 1
    codes[dst] = np.packbits(bits, axis=1)
    return codes


def check_subsample(codes: np.ndarray, pairs: set[tuple[int, int]], radius: int, n_queries: int, seed: int) -> int:
    """Brute force for ``n_queries`` random hashes against all; raise on any disagreement."""
    rng = np.random.default_rng(seed + 1)
    checked = 0
    for q in rng.choice(len(codes), n_queries, replace=False).tolist():
        dist = hamming_distance(codes, np.broadcast_to(codes[q], codes.shape))
        truth = {(min(q, j), max(q, j)) for j in np.flatnonzero(dist <= radius).tolist() if j != q}
        found = {p for p in pairs if q in p}
        if truth != found:
            raise AssertionError(f"query {q}: missing {sorted(truth - found)[:5]}, extra {sorted(found - truth)[:5]}")
        checked += len(truth)
    return checked


def shop_tables(shop_dir: Path) -> tuple[pa.Table, pa.Table, dict[str, str]]:
    """ITEMS, shop-photo IMAGES (absolute paths) and item -> design_id from a shop's truth."""
    with open(shop_dir / "truth" / "items.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    items = pa.table(
        {
            "item_id": [r["item_id"] for r in rows],
            "product_id": [r["product_id"] for r in rows],
            "category": [r["category"] for r in rows],
        }
    )
    with open(shop_dir / "truth" / "images.csv", newline="") as fh:
        shop = [r for r in csv.DictReader(fh) if r["kind"] == "shop"]
    images = pa.table(
        {
            "image_id": [r["image_id"] for r in shop],
            "item_id": [r["item_id"] for r in shop],
            "role": ["shop"] * len(shop),
            "path": [str((shop_dir / "images" / r["file"]).resolve()) for r in shop],
        }
    )
    return items, images, {r["item_id"]: r["design_id"] for r in rows}


def shop_quality(shop_dir: Path) -> dict:
    items, images, truth = shop_tables(shop_dir)
    defaults = DedupParams()
    cache: dict[tuple[str, ...], np.ndarray] = {}
    product = dict(zip(items.column("item_id").to_pylist(), items.column("product_id").to_pylist()))

    def embed(paths):
        key = tuple(paths)
        if key not in cache:
            started = time.perf_counter()
            cache[key] = embed_shop_photos(paths, defaults)
            print(f"embedded {len(paths)} shop photos in {time.perf_counter() - started:.1f} s "
                  f"({defaults.embed_backbone} at {defaults.embed_image_size} px)")
        return cache[key]

    def quality(params: DedupParams) -> dict:
        result = merge_near_duplicates(items, images, params, embed=embed)
        return merge_quality(result.groups, truth, product)

    curves: dict[str, list[dict]] = {"hash": [], "embedding": [], "combined": []}
    for radius in range(0, 27, 2):
        q = quality(defaults.model_copy(update={"methods": ["hash"], "max_distance": radius}))
        curves["hash"].append({"threshold": radius, **q})
    for sim in np.round(np.arange(0.80, 0.99, 0.01), 2).tolist():
        q = quality(defaults.model_copy(update={"methods": ["embedding"], "min_similarity": sim}))
        curves["embedding"].append({"threshold": sim, **q})
        q = quality(defaults.model_copy(update={"methods": ["hash", "embedding"], "min_similarity": sim}))
        curves["combined"].append({"threshold": sim, **q})
    for method, label in (("hash", "phash radius"), ("embedding", "min cosine"), ("combined", "min cosine")):
        print(f"\n{method}: {label:>12} precision recall  f1  predicted correct true")
        for row in curves[method]:
            print(f"{'':>10}{row['threshold']:>12} {row['precision']:9.3f} {row['recall']:6.3f} {row['f1']:5.3f} "
                  f"{row['n_pairs_predicted']:9d} {row['n_pairs_correct']:7d} {row['n_pairs_true']:4d}")

    result = merge_near_duplicates(items, images, defaults, embed=embed)
    at_default = {m: merge_quality(g, truth, product) for m, g in result.groups_by_method.items()}
    at_default["combined"] = merge_quality(result.groups, truth, product)
    print(f"\ndefaults: methods={defaults.methods} max_distance={defaults.max_distance} "
          f"min_similarity={defaults.min_similarity}")
    for name, q in at_default.items():
        print(f"  {name:>9}: precision {q['precision']:.3f} recall {q['recall']:.3f} f1 {q['f1']:.3f} "
              f"({q['n_pairs_correct']}/{q['n_pairs_predicted']} predicted pairs correct, {q['n_pairs_true']} true)")
    out = {"shop": str(shop_dir), "curves": curves, "defaults": at_default}
    print(json.dumps({"shop": out["shop"], "defaults": at_default}))
    return out


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--radius", type=int, default=8)
    ap.add_argument("--planted", type=float, default=0.05, help="fraction of hashes that are near-duplicates")
    ap.add_argument("--method", default="auto", choices=["auto", "multihash", "flat"])
    ap.add_argument("--check", type=int, default=2000, help="queries checked against brute force")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--shop", type=Path, help="measure merge quality on this generated shop instead")
    args = ap.parse_args(argv)
    if args.shop is not None:
        return shop_quality(args.shop)

    codes = make_hashes(args.n, args.planted, args.radius, args.seed)
    method = _search_method(args.n, 64, args.radius) if args.method == "auto" else args.method
    started = time.perf_counter()
    i, j, _ = hamming_pairs(codes, args.radius, method=method)
    wall = time.perf_counter() - started
    pairs = set(zip(i.tolist(), j.tolist()))
    checked = check_subsample(codes, pairs, args.radius, min(args.check, args.n), args.seed)
    result = {
        "n": args.n,
        "radius": args.radius,
        "method": method,
        "pairs": len(pairs),
        "wall_s": round(wall, 3),
        "brute_force_checked_queries": min(args.check, args.n),
        "brute_force_checked_pairs": checked,
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
    }
    print(f"{args.n:,} hashes, radius {args.radius}, {method}: {len(pairs):,} pairs in {wall:.2f} s "
          f"(brute force agrees on {result['brute_force_checked_queries']:,} queries, {checked:,} pairs)")
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
