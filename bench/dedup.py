"""Near-duplicate search benchmark: N random 64-bit hashes with planted near-duplicates.

Searches every hash against all others at Hamming radius ``r`` through
:func:`street2shop.cleaning.dedup.hamming_pairs` (the same call the dedup stage makes), prints
the wall time and pairs found, and checks the result against numpy brute force for a random
subsample of queries (every pair involving a sampled hash must be found, and nothing else)::

    python bench/dedup.py --n 100000 --radius 8 --method auto

Roadmap target: 100,000 hashes searched in under 30 s on the 2-core dev machine.
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import numpy as np

from street2shop.cleaning.dedup import _search_method, hamming_distance, hamming_pairs


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


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--radius", type=int, default=8)
    ap.add_argument("--planted", type=float, default=0.05, help="fraction of hashes that are near-duplicates")
    ap.add_argument("--method", default="auto", choices=["auto", "multihash", "flat"])
    ap.add_argument("--check", type=int, default=2000, help="queries checked against brute force")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

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
