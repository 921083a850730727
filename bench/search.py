"""Search benchmark: exact vs approximate FAISS indexes vs plain numpy, on synthetic vectors.

For each gallery size, builds every index through :func:`street2shop.retrieval.index.build_index`
(the code the index stage runs) and reports build time, memory (growth of this process's RSS
while building), query latency p50/p99 at batch 1 and batch 64, and recall@k against exact
search. Plain numpy brute force (matrix product + argpartition, over the gallery in chunks so
1M x 256 floats never needs a second gigabyte of scores) runs in the same process on the same
queries as the floor any index has to beat. ``speedup_b1`` is exact ``Flat``'s batch-1 p50
over the row's batch-1 p50.

Data: unit vectors at the production width (256) shaped like a catalogue's embeddings, in two
levels: ``n / 1000`` "styles" (coarse centres), items around them (``--photos-per-item``
photos each, like a product x colour's shop photos), photos around their item. With the
default spreads the cosine between two photos of one item is ~0.8, of two items of one style
~0.55, of unrelated photos ~0: the top 20 of a query holds its own item's photos and then the
nearest items of its style, so approximate search has real work at ranks 10-20. Uniform
random vectors would have no neighbourhoods at all and make every approximate index look
broken. Queries are fresh photos of catalogue items, never gallery rows.

    python bench/search.py                        # 10k, 100k, 1M (the 1M row takes minutes)
    python bench/search.py --sizes 10k,100k       # quick run
    python bench/search.py --sizes 1M --approx auto --nprobe 8,16,32,64   # nprobe sweep
    python bench/search.py --sizes 100k --approx HNSW32 IVF1264,Flat --threads 1 --json out.json

Targets (issue 5): single-query top-20 over 100k under 5 ms; at 1M an approximate index with
recall@20 >= 0.95 at least 10x faster than exact.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time
from collections.abc import Callable

import faiss
import numpy as np

from street2shop.retrieval.index import build_index, recall_at_k, resolve_factory, search, set_search_params
from street2shop.retrieval.vectors import l2_normalize

#: HNSW inserts one vector at a time (graph search per insert); its build is the slowest here by
#: far, so above this size it is skipped unless ``--hnsw-max-n`` says otherwise.
HNSW_MAX_N = 200_000

#: Fewest timed calls per latency figure, however slow the call.
MIN_CALLS = 3

#: Rows of the gallery scored at once by the numpy baseline (batch 64 x 100k floats = 25 MB).
NUMPY_CHUNK = 100_000


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


def synthetic(
    n: int, n_queries: int, dim: int, seed: int, photos_per_item: int = 10
) -> tuple[np.ndarray, np.ndarray]:
    """Catalogue-like unit vectors: gallery ``(n, dim)`` and queries ``(n_queries, dim)``.

    Styles ~ N(0, I); items = style + 0.7 N(0, I); photos = item + 0.6 N(0, I) (see the module
    docstring for the cosines this gives). Built in chunks so temporaries stay ~100 MB at 1M.
    """
    rng = np.random.default_rng(seed)
    styles = rng.standard_normal((max(1, n // 1000), dim), dtype=np.float32)
    n_items = max(1, n // photos_per_item)
    items = styles[rng.integers(0, len(styles), n_items)]
    items += 0.7 * rng.standard_normal(items.shape, dtype=np.float32)

    def draw(m: int) -> np.ndarray:
        out = np.empty((m, dim), np.float32)
        for lo in range(0, m, 100_000):
            hi = min(m, lo + 100_000)
            out[lo:hi] = items[rng.integers(0, n_items, hi - lo)]
            out[lo:hi] += 0.6 * rng.standard_normal((hi - lo, dim), dtype=np.float32)
        return l2_normalize(out)

    return draw(n), draw(n_queries)


def latency_ms(fn: Callable[[np.ndarray], object], queries: np.ndarray, batch: int, repeats: int, budget_s: float) -> dict:
    """p50/p99 wall time of ``fn`` on batches of ``batch`` queries (after one warm-up call).

    Stops after ``repeats`` calls or ``budget_s`` seconds (at least ``MIN_CALLS``), so the slow
    exact rows at 1M do not take minutes; ``calls`` says how many were timed (with few calls
    p99 is the maximum).
    """
    fn(queries[:batch])
    times: list[float] = []
    deadline = time.perf_counter() + budget_s
    for i in range(repeats):
        lo = (i * batch) % max(1, len(queries) - batch + 1)
        start = time.perf_counter()
        fn(queries[lo : lo + batch])
        times.append(1000 * (time.perf_counter() - start))
        if len(times) >= MIN_CALLS and time.perf_counter() > deadline:
            break
    return {"p50_ms": float(np.percentile(times, 50)), "p99_ms": float(np.percentile(times, 99)), "calls": len(times)}


def numpy_top_k(gallery: np.ndarray, k: int, chunk: int = NUMPY_CHUNK) -> Callable[[np.ndarray], np.ndarray]:
    """Exact top-``k`` ids by numpy alone: per chunk of the gallery, score and keep the chunk's
    best ``k``; then pick the best ``k`` of those candidates."""

    def run(q: np.ndarray) -> np.ndarray:
        best_ids, best_scores = [], []
        for lo in range(0, len(gallery), chunk):
            scores = q @ gallery[lo : lo + chunk].T
            kk = min(k, scores.shape[1])
            top = np.argpartition(-scores, kk - 1, axis=1)[:, :kk]
            best_ids.append(top + lo)
            best_scores.append(np.take_along_axis(scores, top, axis=1))
        ids, scores = np.concatenate(best_ids, axis=1), np.concatenate(best_scores, axis=1)
        order = np.argsort(-scores, axis=1)[:, :k]
        return np.take_along_axis(ids, order, axis=1)

    return run


def bench_size(n: int, args: argparse.Namespace) -> list[dict]:
    gallery, queries = synthetic(n, args.queries, args.dim, args.seed, args.photos_per_item)
    rows: list[dict] = []
    flat_b1: list[float] = []

    def record(method: str, build_s: float, mem: int, fn, recall: float | None, **extra) -> None:
        row = {"n": n, "method": method, "build_s": round(build_s, 2), "memory_mb": round(mem / 2**20, 1),
               "recall@k": None if recall is None else round(recall, 4), **extra}
        for batch, repeats in ((1, args.repeats), (64, max(5, args.repeats // 10))):
            lat = latency_ms(fn, queries, batch, repeats, args.budget_s)
            row[f"b{batch}_p50_ms"], row[f"b{batch}_p99_ms"] = round(lat["p50_ms"], 3), round(lat["p99_ms"], 3)
            row[f"b{batch}_calls"] = lat["calls"]
        if method == "Flat":
            flat_b1.append(row["b1_p50_ms"])
        row["speedup_b1"] = round(flat_b1[0] / row["b1_p50_ms"], 1) if flat_b1 else None
        rows.append(row)
        print(json.dumps(row), flush=True)

    # Exact first: its answers are the truth every other row's recall is measured against.
    before = rss_bytes()
    start = time.perf_counter()
    exact = build_index(gallery, "Flat")
    build_s, mem = time.perf_counter() - start, rss_bytes() - before
    _, truth = search(exact, queries, args.k)
    record("Flat", build_s, mem, lambda q: search(exact, q, args.k), recall_at_k(truth, truth))

    numpy_fn = numpy_top_k(gallery, args.k)
    record("numpy", 0.0, 0, numpy_fn, recall_at_k(numpy_fn(queries), truth))
    del exact

    # None first: the index's own (calibrated) nprobe, then any sweep values.
    nprobes = [None] + ([int(p) for p in args.nprobe.split(",")] if args.nprobe else [])
    for factory in [f for f in args.approx if f != "Flat"]:
        concrete = resolve_factory(n, args.dim, factory)
        label = concrete if factory == concrete else f"{factory}={concrete}"
        if concrete == "Flat":
            print(f"# n={n}: {label}: exact search, measured above", flush=True)
            continue
        if "HNSW" in concrete and n > args.hnsw_max_n:
            print(f"# n={n}: {label} skipped: HNSW builds by single inserts and would take many minutes on "
                  f"this machine (see the 100k row's build_s; raise --hnsw-max-n to measure)", flush=True)
            continue
        before = rss_bytes()
        start = time.perf_counter()
        index = build_index(gallery, concrete, seed=args.seed)
        build_s, mem = time.perf_counter() - start, rss_bytes() - before
        is_ivf = hasattr(faiss.downcast_index(index), "nprobe")
        for nprobe in nprobes if is_ivf else [None]:
            if nprobe is not None:
                set_search_params(index, nprobe=nprobe)
            probe = faiss.downcast_index(index).nprobe if is_ivf else None
            _, found = search(index, queries, args.k)
            extra = {"nprobe": probe, "nprobe_from": "sweep" if nprobe else "build (calibrated)"} if is_ivf else {}
            record(label, build_s, mem, lambda q, index=index: search(index, q, args.k), recall_at_k(found, truth), **extra)
        del index
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10k,100k,1M", help="comma-separated gallery sizes, e.g. 10k,100k,1M")
    parser.add_argument("--dim", type=int, default=256, help="vector width (production embedder: 256)")
    parser.add_argument("--approx", nargs="+", default=["auto", "HNSW32"],
                        help="approximate factory strings, space-separated ('auto' = the index stage's choice)")
    parser.add_argument("--nprobe", help="comma-separated nprobe values to measure for IVF indexes (default: the index's own)")
    parser.add_argument("--k", type=int, default=20)
    parser.add_argument("--queries", type=int, default=1000, help="held-out queries (recall and latency)")
    parser.add_argument("--photos-per-item", type=int, default=10, help="gallery photos per synthetic item")
    parser.add_argument("--repeats", type=int, default=300, help="timed batch-1 calls (batch-64: a tenth)")
    parser.add_argument("--budget-s", type=float, default=15.0, help="stop timing one setting after this long (>= 10 calls)")
    parser.add_argument("--hnsw-max-n", type=int, default=HNSW_MAX_N, help="skip HNSW builds above this size")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, help="faiss OpenMP threads (default: faiss's, one per CPU); "
                        "1 avoids OpenMP spin-waiting on a busy machine, as a server running one query per request wants")
    parser.add_argument("--json", help="also write the rows to this file")
    args = parser.parse_args()
    if args.threads:
        faiss.omp_set_num_threads(args.threads)
    print(f"faiss {faiss.__version__}, {faiss.omp_get_max_threads()} OpenMP threads, "
          f"{len(os.sched_getaffinity(0))} CPUs, dim {args.dim}, k {args.k}", flush=True)
    started = time.perf_counter()
    rows = [row for size in args.sizes.split(",") for row in bench_size(parse_size(size), args)]
    header = ["n", "method", "nprobe", "build_s", "memory_mb", "recall@k", "b1_p50_ms", "b1_p99_ms",
              "b64_p50_ms", "b64_p99_ms", "speedup_b1"]
    print("\n| " + " | ".join(header) + " |\n|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join("" if row.get(h) is None else str(row[h]) for h in header) + " |")
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\nwall {time.perf_counter() - started:.0f} s, peak RSS {peak_mb:.0f} MB")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=2)


if __name__ == "__main__":
    main()
