"""Search benchmark: exact vs approximate FAISS indexes vs plain numpy, on synthetic vectors.

For each gallery size, builds every index through :func:`street2shop.retrieval.index.build_index`
(the code the index stage runs) and reports build time, memory (growth of this process's RSS
while building), query latency p50/p99 at batch 1 and batch 64, and recall@k against exact
search (:func:`~street2shop.retrieval.index.recall_at_k_vs_exact`). Plain numpy brute force
(matrix product + argpartition) runs in the same process on the same queries as the floor any
index has to beat.

Data: unit vectors at the production width (256) drawn around ``n / 100`` random centres, so
neighbourhoods exist as they do for garment embeddings (uniform random vectors would make every
approximate index look worse than it is on real data); queries are fresh draws from the same
centres, never gallery rows.

    python bench/search.py                      # 10k, 100k, 1M (the 1M row takes minutes)
    python bench/search.py --sizes 10k,100k     # quick run
    python bench/search.py --sizes 100k --approx HNSW32,IVF1264,Flat --threads 1 --json out.json

Targets (issue 5): single-query top-20 over 100k under 5 ms; at 1M an approximate index with
recall@20 >= 0.95 at least 10x faster than exact.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable

import faiss
import numpy as np

from street2shop.retrieval.index import build_index, recall_at_k_vs_exact, resolve_factory, search
from street2shop.retrieval.vectors import l2_normalize


def rss_bytes() -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def parse_size(text: str) -> int:
    text = text.strip().lower()
    scale = {"k": 1_000, "m": 1_000_000}.get(text[-1], 1)
    return int(float(text.rstrip("km")) * scale)


def synthetic(n: int, n_queries: int, dim: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Clustered unit vectors: gallery ``(n, dim)`` and queries ``(n_queries, dim)``."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((max(1, n // 100), dim), dtype=np.float32)

    def draw(m: int) -> np.ndarray:
        out = np.empty((m, dim), np.float32)
        for lo in range(0, m, 100_000):  # bounded temporaries at 1M
            hi = min(m, lo + 100_000)
            noise = rng.standard_normal((hi - lo, dim), dtype=np.float32)
            out[lo:hi] = centres[rng.integers(0, len(centres), hi - lo)] + 0.6 * noise
        return l2_normalize(out)

    return draw(n), draw(n_queries)


def latency_ms(fn: Callable[[np.ndarray], object], queries: np.ndarray, batch: int, repeats: int) -> dict:
    """p50/p99 wall time of ``fn`` on batches of ``batch`` queries (after one warm-up call)."""
    fn(queries[:batch])
    times = []
    for i in range(repeats):
        lo = (i * batch) % max(1, len(queries) - batch + 1)
        start = time.perf_counter()
        fn(queries[lo : lo + batch])
        times.append(1000 * (time.perf_counter() - start))
    return {"p50_ms": float(np.percentile(times, 50)), "p99_ms": float(np.percentile(times, 99))}


def numpy_top_k(gallery: np.ndarray, k: int) -> Callable[[np.ndarray], np.ndarray]:
    def run(q: np.ndarray) -> np.ndarray:
        scores = q @ gallery.T
        top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1)
        return np.take_along_axis(top, order, axis=1)

    return run


def bench_size(n: int, args: argparse.Namespace) -> list[dict]:
    gallery, queries = synthetic(n, args.queries, args.dim, args.seed)
    rows: list[dict] = []

    def record(method: str, build_s: float, mem: int, fn, recall: float | None) -> None:
        row = {"n": n, "method": method, "build_s": round(build_s, 3), "memory_mb": round(mem / 2**20, 1),
               "recall@k": None if recall is None else round(recall, 4)}
        for batch, repeats in ((1, args.repeats), (64, max(5, args.repeats // 10))):
            lat = latency_ms(fn, queries, batch, repeats)
            row[f"b{batch}_p50_ms"], row[f"b{batch}_p99_ms"] = round(lat["p50_ms"], 3), round(lat["p99_ms"], 3)
        rows.append(row)
        print(json.dumps(row), flush=True)

    record("numpy", 0.0, 0, numpy_top_k(gallery, args.k), 1.0)
    factories = ["Flat", *[f.strip() for f in args.approx.split(",") if f.strip() and f.strip() != "Flat"]]
    for factory in factories:
        concrete = resolve_factory(n, args.dim, factory)
        if factory != "Flat" and concrete == "Flat":
            continue  # ``auto`` picked exact search at this size: already measured
        before = rss_bytes()
        start = time.perf_counter()
        index = build_index(gallery, concrete, seed=args.seed)
        build_s = time.perf_counter() - start
        mem = rss_bytes() - before
        recall = recall_at_k_vs_exact(index, gallery, queries, k=args.k)
        label = concrete if factory == concrete else f"{factory}={concrete}"
        record(label, build_s, mem, lambda q, index=index: search(index, q, args.k), recall)
        del index
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10k,100k,1M", help="comma-separated gallery sizes, e.g. 10k,100k,1M")
    parser.add_argument("--dim", type=int, default=256, help="vector width (production embedder: 256)")
    parser.add_argument("--approx", default="auto,HNSW32", help="approximate factory strings ('auto' = the index stage's choice)")
    parser.add_argument("--k", type=int, default=20)
    parser.add_argument("--queries", type=int, default=1000, help="held-out queries (recall and latency)")
    parser.add_argument("--repeats", type=int, default=300, help="timed batch-1 calls (batch-64: a tenth)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, help="faiss OpenMP threads (default: faiss's, one per CPU); "
                        "1 avoids OpenMP spin-waiting on a busy machine, as a server running one query per request wants")
    parser.add_argument("--json", help="also write the rows to this file")
    args = parser.parse_args()
    if args.threads:
        faiss.omp_set_num_threads(args.threads)
    print(f"faiss {faiss.__version__}, {faiss.omp_get_max_threads()} OpenMP threads, "
          f"{len(os.sched_getaffinity(0))} CPUs, dim {args.dim}, k {args.k}", flush=True)
    rows = [row for size in args.sizes.split(",") for row in bench_size(parse_size(size), args)]
    header = ["n", "method", "build_s", "memory_mb", "recall@k", "b1_p50_ms", "b1_p99_ms", "b64_p50_ms", "b64_p99_ms"]
    print("\n| " + " | ".join(header) + " |\n|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join("" if row[h] is None else str(row[h]) for h in header) + " |")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=2)


if __name__ == "__main__":
    main()
