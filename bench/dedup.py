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
``DedupParams`` per method and combined::

    python bench/dedup.py --shop /tmp/demo-home/demo-shop/real-150-s0

Tuning and report -- the demo's own shops (``DemoSize(seed=s)``: 300 products of real
garments, generated under ``--root`` once, the way ``street2shop demo`` generates them).
``--tune`` sweeps ``min_similarity`` x ``hash_min_similarity`` on the *tuning* seeds (7 and
8) and picks the pair with the best worst-shop recall among those with precision >= 0.95 on
each and groups never larger than the truth's; ``--report`` measures the defaults (and the previous rule, union-find over raw
cosine >= 0.92 or pHash <= 8) on the *report* seeds (0: the default demo; 1, 2), which the
thresholds never saw::

    python bench/dedup.py --tune --root /tmp/dedup-shops
    python bench/dedup.py --report --root /tmp/dedup-shops

Embeddings are computed once per shop and kept beside it (``.dedup-emb-*.npy``).
``--evidence 7 8`` prints, for those shops, how pHash distance, raw cosine and whitened cosine
tell true copies from unrelated garments (photo pairs, not products)::

    python bench/dedup.py --evidence 7 8 --root /tmp/dedup-shops

Scale -- ``--scale 100000``: that many products with one photo each, as synthetic pHashes
and 1,280-d embeddings (seeded, 10% re-listed copies), through the stage's own calls
(:func:`whiten`, :func:`find_copy_pairs`, :func:`group_products`); prints the wall time of
each step, the process's peak memory, the copies found and the largest group. Embedding
100,000 real photos is not part of it: its time is given apart from the shops' measured rate.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
from street2shop.cleaning.dedup import (
    DedupParams,
    _search_method,
    cosine_pairs,
    embed_shop_photos,
    find_copy_pairs,
    group_products,
    hamming_distance,
    hamming_pairs,
    merge_near_duplicates,
    merge_quality,
    whiten,
)

TUNING_SEEDS = (7, 8)
REPORT_SEEDS = (0, 1, 2)
#: the rule before issue 21: union-find over raw cosine >= 0.92 or pHash <= 8
PREVIOUS = dict(whiten_dim=0, min_similarity=0.92, hash_min_similarity=None, linkage="single")


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


# ------------------------------------------------------------------ the demo's shops


def demo_shop(root: Path, seed: int, products: int = 300) -> Path:
    """The demo's shop for ``seed`` (``DemoSize(seed=seed, products=products)``: what
    ``street2shop demo --products N`` makes), generated under ``root`` once."""
    from street2shop.flows.demo import DemoSize, ensure_shop

    size = DemoSize(seed=seed, products=products)
    return ensure_shop(root / f"{size.garments}-{size.products}-s{seed}", size)


def cached_embedder(shop_dir: Path, params: DedupParams):
    """``embed`` for :func:`merge_near_duplicates` that keeps the shop's embeddings beside it."""

    def embed(paths):
        path = shop_dir / f".dedup-emb-{params.embed_backbone}-{params.embed_image_size}-{len(paths)}.npy"
        if path.exists():
            return np.load(path)
        started = time.perf_counter()
        vectors = embed_shop_photos(paths, params)
        np.save(path, vectors)
        print(f"embedded {len(paths)} shop photos of {shop_dir.name} in {time.perf_counter() - started:.1f} s")
        return vectors

    return embed


def measure(shop_dir: Path, params: DedupParams) -> dict:
    """Merge quality, groups and the truth's largest group on one shop."""
    items, images, truth = shop_tables(shop_dir)
    product = dict(zip(items.column("item_id").to_pylist(), items.column("product_id").to_pylist()))
    result = merge_near_duplicates(items, images, params, embed=cached_embedder(shop_dir, params))
    q = merge_quality(result.groups, truth, product)
    designs = {}
    for item, design in truth.items():
        designs.setdefault(design, set()).add(product[item])
    # the truth's groups: products sharing a design, transitively (as merge_quality counts them)
    parent = {p: p for p in product.values()}

    def find(p):
        while parent[p] != p:
            p = parent[p]
        return p

    for members in designs.values():
        first, *rest = sorted(members)
        for p in rest:
            parent[find(p)] = find(first)
    truth_sizes = Counter(find(p) for p in set(product.values()))
    return {
        "shop": shop_dir.name,
        "precision": round(q["precision"], 4),
        "recall": round(q["recall"], 4),
        "f1": round(q["f1"], 4),
        "pairs_predicted": q["n_pairs_predicted"],
        "pairs_correct": q["n_pairs_correct"],
        "pairs_true": q["n_pairs_true"],
        "products": result.stats["n_products"],
        "groups": result.stats["n_groups"],
        "largest_group": result.stats["largest_group_products"],
        "truth_largest_group": max(truth_sizes.values()),
        "relisted_products": sum(1 for r in csv.DictReader(open(shop_dir / "truth" / "items.csv")) if r["relist_of"]) and
        len({r["product_id"] for r in csv.DictReader(open(shop_dir / "truth" / "items.csv")) if r["relist_of"]}),
    }


#: the issue's targets, which the tuning must meet on every tuning shop
TARGET_PRECISION = 0.95


def tune(root: Path) -> dict:
    """The (min_similarity, hash_min_similarity) with the best worst-shop recall on the tuning
    seeds, among those with precision >= TARGET_PRECISION on each and groups never larger
    than the truth's (ties: the stricter thresholds)."""
    shops = [demo_shop(root, s) for s in TUNING_SEEDS]
    best = None
    rows = []
    # hash_min_similarity == min_similarity: a hash pair adds nothing the embedding did not find
    # (None, a hash pair alone, measured 0.51-0.54 precision at every threshold: left out)
    # (a coarse grid: one shop's merge takes a minute on the loaded 2-core machine)
    for sim in (0.70, 0.74, 0.78):
        for hash_sim in sorted({0.7, sim}):
            if hash_sim > sim:
                continue
            params = DedupParams(min_similarity=sim, hash_min_similarity=hash_sim)
            ms = [measure(shop, params) for shop in shops]
            worst = min(m["recall"] for m in ms)
            fits = all(m["largest_group"] <= m["truth_largest_group"] and m["precision"] >= TARGET_PRECISION for m in ms)
            rows.append({"min_similarity": sim, "hash_min_similarity": hash_sim, "worst_recall": worst, "fits": fits,
                         **{f"{m['shop']}": (m["precision"], m["recall"]) for m in ms}})
            print(f"min_similarity {sim:.2f} hash_min_similarity {hash_sim!s:>4}: "
                  + "  ".join(f"{m['shop']} P {m['precision']:.3f} R {m['recall']:.3f} largest {m['largest_group']}" for m in ms),
                  flush=True)
            key = (fits, worst, sim, hash_sim)
            if best is None or key > best[0]:
                best = (key, sim, hash_sim)
    print(f"\nchosen on seeds {TUNING_SEEDS}: min_similarity={best[1]} hash_min_similarity={best[2]}")
    out = {"tuning_seeds": list(TUNING_SEEDS), "min_similarity": best[1], "hash_min_similarity": best[2], "sweep": rows}
    print(json.dumps({k: v for k, v in out.items() if k != "sweep"}))
    return out


def report(root: Path, products: int = 300, seeds: tuple[int, ...] | None = None) -> dict:
    """The defaults, and the previous rule, on the report seeds (and the tuning ones, marked)."""
    out = {}
    plan = ((REPORT_SEEDS, "report"), (TUNING_SEEDS, "tuning")) if seeds is None else ((seeds, "report"),)
    for seeds_, role in plan:
        for seed in seeds_:
            shop = demo_shop(root, seed, products)
            for name, params in (("defaults", DedupParams()), ("previous", DedupParams(**PREVIOUS))):
                m = measure(shop, params)
                out[f"{role}:s{seed}:{name}"] = m
                print(f"seed {seed} ({role}) {name:>8}: precision {m['precision']:.3f} recall {m['recall']:.3f} "
                      f"f1 {m['f1']:.3f}; {m['products']} products -> {m['groups']} groups, largest {m['largest_group']} "
                      f"(truth's largest {m['truth_largest_group']}); {m['pairs_correct']}/{m['pairs_predicted']} merged "
                      f"pairs correct, {m['pairs_true']} true", flush=True)
    print(json.dumps(out))
    return out


def evidence(shop_dir: Path) -> dict:
    """How well each kind of pair evidence tells copies from unrelated garments on one shop:
    every pair of shop photos of two different products, a *copy* when both show the same
    design and colour, *unrelated* when they show different designs (two colours of one design
    are neither); pHash distance, raw cosine and whitened cosine of each."""
    from street2shop.cleaning.dedup import hash_image
    from street2shop.cleaning.images import open_rgb

    items, images, truth = shop_tables(shop_dir)
    params = DedupParams()
    product = dict(zip(items.column("item_id").to_pylist(), items.column("product_id").to_pylist()))
    rows = images.to_pylist()
    raw = cached_embedder(shop_dir, params)([r["path"] for r in rows])
    white, _ = whiten(raw, params.whiten_dim, params.seed)
    codes = np.stack([hash_image(open_rgb(r["path"]), ["phash"], 8)[0] for r in rows])
    prod = np.array([product[r["item_id"]] for r in rows])
    design = np.array([truth[r["item_id"]] for r in rows])
    garment = np.array([d.split(":")[0] for d in design])
    i, j = np.triu_indices(len(rows), 1)
    keep = prod[i] != prod[j]
    i, j = i[keep], j[keep]
    copy, unrelated = design[i] == design[j], garment[i] != garment[j]
    phash = hamming_distance(codes[i], codes[j])
    cos_raw = np.einsum("nd,nd->n", raw[i], raw[j])
    cos_white = np.einsum("nd,nd->n", white[i], white[j])
    out = {
        "shop": shop_dir.name,
        "pairs": int(len(i)),
        "copies": int(copy.sum()),
        "unrelated": int(unrelated.sum()),
        f"copies_phash_le_{params.max_distance}": int((phash[copy] <= params.max_distance).sum()),
        f"unrelated_phash_le_{params.max_distance}": int((phash[unrelated] <= params.max_distance).sum()),
        "copies_raw_cos_min": round(float(cos_raw[copy].min()), 3),
        "unrelated_raw_cos_max": round(float(cos_raw[unrelated].max()), 3),
        "copies_raw_cos_ge_0.92": int((cos_raw[copy] >= 0.92).sum()),
        "copies_whitened_cos_min": round(float(cos_white[copy].min()), 3),
        "unrelated_whitened_cos_max": round(float(cos_white[unrelated].max()), 3),
        f"copies_whitened_ge_{params.min_similarity}": int((cos_white[copy] >= params.min_similarity).sum()),
        f"unrelated_whitened_ge_{params.min_similarity}": int((cos_white[unrelated] >= params.min_similarity).sum()),
    }
    print(json.dumps(out))
    return out


# ------------------------------------------------------------------------ scale


def synthetic_catalogue(n: int, dim: int, relist_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(embeddings, phashes, original)``: unit-norm rows that share a few "catalogue"
    directions (backdrop, garment class: what whitening removes) plus each photo's own
    detail; a ``relist_fraction`` of them are edited copies of an earlier row (``original``
    is -1 elsewhere), their hash 10-26 bits away as a crop moves it."""
    rng = np.random.default_rng(seed)
    classes = rng.normal(size=(11, dim)).astype(np.float32) * 3.0
    shared = rng.normal(size=(32, dim)).astype(np.float32)
    x = classes[rng.integers(0, 11, n)]
    x += rng.normal(size=(n, 32)).astype(np.float32) @ shared
    x += rng.normal(size=(n, dim)).astype(np.float32)
    codes = rng.integers(0, 256, (n, 8), dtype=np.uint8)
    original = np.full(n, -1, dtype=np.int64)
    copies = rng.choice(np.arange(n // 2, n), int(n * relist_fraction), replace=False)
    original[copies] = rng.integers(0, n // 2, len(copies))
    x[copies] = x[original[copies]] + 0.35 * rng.normal(size=(len(copies), dim)).astype(np.float32)
    bits = np.unpackbits(codes[original[copies]], axis=1)
    for row, k in enumerate(rng.integers(10, 27, len(copies))):
        bits[row, rng.choice(64, k, replace=False)] ^= 1
    codes[copies] = np.packbits(bits, axis=1)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x, codes, original


def scale(n: int, seed: int) -> dict:
    import resource

    params = DedupParams()
    started = time.perf_counter()
    x, codes, original = synthetic_catalogue(n, 1280, 0.1, seed)
    made = time.perf_counter()
    vectors, whitened = whiten(x, params.whiten_dim, params.seed)
    whitened_at = time.perf_counter()
    found = find_copy_pairs([codes], vectors, params)
    found_at = time.perf_counter()
    a, b = found.i[found.accepted], found.j[found.accepted]
    distance = np.clip((1.0 - found.cosine[found.accepted]) / 2.0, 0.0, 1.0)
    labels = group_products(n, a, b, distance, params.linkage)
    grouped_at = time.perf_counter()
    peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    copies = np.flatnonzero(original >= 0)
    found_copies = float(np.mean(labels[copies] == labels[original[copies]]))
    sizes = np.bincount(labels)
    truth = np.where(original >= 0, original, np.arange(n))

    def pairs(counts):
        return sum(c * (c - 1) // 2 for c in counts.values())

    n_pred, n_true = pairs(Counter(labels.tolist())), pairs(Counter(truth.tolist()))
    n_correct = pairs(Counter(zip(labels.tolist(), truth.tolist())))
    # the inverted file against exact search, on a sample of queries
    rng = np.random.default_rng(seed + 1)
    sample = rng.choice(copies, min(2000, len(copies)), replace=False)
    exact = (vectors[sample] * vectors[original[sample]]).sum(axis=1) >= params.min_similarity
    pair_keys = set((found.i[found.embedding_ok] * n + found.j[found.embedding_ok]).tolist())
    hit = np.array([min(q, o) * n + max(q, o) in pair_keys for q, o in zip(sample.tolist(), original[sample].tolist())])
    result = {
        "products": n,
        "photos": n,
        "dim": x.shape[1],
        "whitened": whitened,
        "synthetic_data_s": round(made - started, 2),
        "whiten_s": round(whitened_at - made, 2),
        "pairs_s": round(found_at - whitened_at, 2),
        "group_s": round(grouped_at - found_at, 2),
        "dedup_s": round(grouped_at - made, 2),
        "peak_rss_gib": round(peak_gib, 2),
        "candidate_pairs": int(len(found.i)),
        "accepted_pairs": int(found.accepted.sum()),
        "copies_grouped_with_original": round(found_copies, 4),
        "ivf_recall_of_exact_copy_pairs": round(float(hit[exact].mean()) if exact.any() else 1.0, 4),
        "precision": round(n_correct / n_pred, 4) if n_pred else 1.0,
        "recall": round(n_correct / n_true, 4) if n_true else 1.0,
        "largest_group": int(sizes.max()),
        "truth_largest_group": int(np.bincount(truth).max()),
        "cpu_count": os.cpu_count(),
        "load_average_1min": round(os.getloadavg()[0], 2),
    }
    print(f"{n:,} products: whiten {result['whiten_s']} s, pairs {result['pairs_s']} s, groups {result['group_s']} s "
          f"= {result['dedup_s']} s; peak RSS {result['peak_rss_gib']} GiB (synthetic data included); "
          f"copies grouped with their original {found_copies:.3f}; precision {result['precision']} recall {result['recall']}; "
          f"largest group {result['largest_group']} (truth's {result['truth_largest_group']}); load average {result['load_average_1min']}")
    print(json.dumps(result))
    return result


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--radius", type=int, default=8)
    ap.add_argument("--planted", type=float, default=0.05, help="fraction of hashes that are near-duplicates")
    ap.add_argument("--method", default="auto", choices=["auto", "multihash", "flat"])
    ap.add_argument("--check", type=int, default=2000, help="queries checked against brute force")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--shop", type=Path, help="measure merge quality on this generated shop instead")
    ap.add_argument("--root", type=Path, default=Path("/tmp/street2shop-dedup-shops"), help="where the demo's shops are made")
    ap.add_argument("--tune", action="store_true", help=f"choose the thresholds on seeds {TUNING_SEEDS}")
    ap.add_argument("--report", action="store_true", help=f"measure the defaults on seeds {REPORT_SEEDS}")
    ap.add_argument("--scale", type=int, help="products in the synthetic scale run (e.g. 100000)")
    ap.add_argument("--evidence", type=int, nargs="+", help="pair evidence of copies and unrelated garments on these seeds' shops")
    ap.add_argument("--products", type=int, default=300, help="--report: the shops' size (the demo's --products)")
    ap.add_argument("--seeds", type=int, nargs="+", help="--report: only these seeds")
    args = ap.parse_args(argv)
    if args.shop is not None:
        return shop_quality(args.shop)
    if args.evidence:
        return {s: evidence(demo_shop(args.root, s)) for s in args.evidence}
    if args.tune:
        return tune(args.root)
    if args.report:
        return report(args.root, args.products, tuple(args.seeds) if args.seeds else None)
    if args.scale:
        return scale(args.scale, args.seed)

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
