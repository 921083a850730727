"""The crawler against a hostile shop: one crawl per hostile behaviour, and what each cost.

Generates a demo shop, crawls it once clean, then once with each behaviour of
``shop/faults.py`` ``HOSTILE`` switched on alone, and prints a table::

    python bench/hostile_crawl.py --products 20 --deadline-s 2

Columns: page and image URLs fetched (each URL's outcome, refused ones included), HTTP
requests made, rejects, photos stored, the slowest single fetch (network seconds, redirect
hops and retries included), the crawl's wall time, requests that reached the SSRF canary (must be 0), and
whether the items and the photos' keys equal the clean crawl's (every good page still
read). robots_disallow_all is crawled with the clean crawl as its previous snapshot, the
way a scheduled re-crawl meets it. One JSON line per row goes to stdout or ``--out``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections import Counter
from pathlib import Path

from _results import emit  # bench/ is on sys.path when a benchmark is run as a script

from street2shop.crawler.core import CrawlParams, CrawlResult, crawl
from street2shop.shop.faults import HOSTILE, Canary, FaultConfig
from street2shop.shop.generator import ShopParams, generate_shop
from street2shop.shop.server import ShopServer
from street2shop.storage.blobs import BlobStore


def _photo_keys(result: CrawlResult) -> set[tuple]:
    return {(r["item_id"], r["role"], r["review_id"], r["source_url"]) for r in result.images.to_pylist()}


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--products", type=int, default=20)
    ap.add_argument("--image-size", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--deadline-s", type=float, default=2.0, help="the crawl's per-URL total deadline")
    ap.add_argument("--drip-interval-s", type=float, default=0.05)
    ap.add_argument("--only", nargs="*", choices=HOSTILE, help="these behaviours only")
    ap.add_argument("--out", type=Path, help="append the JSON result lines here")
    args = ap.parse_args(argv)

    rows: list[dict] = []
    with Canary() as canary, tempfile.TemporaryDirectory(prefix="s2s-bench-hostile-") as tmp:
        hits = canary.hits
        root = Path(tmp)
        shop_dir = generate_shop(root / "shop", ShopParams(seed=args.seed, n_products=args.products,
                                                           garments="procedural", image_size=args.image_size))

        def run(name: str, faults: FaultConfig, previous: tuple | None = None) -> CrawlResult:
            with ShopServer(shop_dir, faults) as shop:
                params = CrawlParams(base_url=shop.url, concurrency=args.concurrency, rate_limit_rps=None,
                                     backoff_factor=0.01, deadline_s=args.deadline_s, progress=False)
                return crawl(params, BlobStore(root / "home"), root / "state" / name, previous=previous)

        clean = run("clean", FaultConfig())
        for name in ["clean", *(args.only or HOSTILE)]:
            before = sum(hits.values())
            if name == "clean":
                result = clean
            else:
                faults = FaultConfig(hostile={name}, ssrf_url=canary.url, drip_interval_s=args.drip_interval_s)
                previous = (clean.items, clean.images) if name == "robots_disallow_all" else None
                result = run(name, faults, previous)
            s = result.stats
            rows.append({
                "bench": "hostile_crawl", "behaviour": name, "products": args.products,
                "pages": s["pages_fetched"], "image_urls": s["images_fetched"], "requests": s["requests"],
                "rejected": s["rejected"], "photos": result.images.num_rows,
                "slowest_fetch_s": s["slowest_fetch_s"], "crawl_s": s["seconds"],
                "canary_hits": sum(hits.values()) - before, "deadline_s": args.deadline_s,
                "items_as_clean": result.items.equals(clean.items),
                "photos_as_clean": _photo_keys(result) == _photo_keys(clean),
                "reasons": sorted(Counter(r["reason"].split(":")[0] for r in result.rejects.to_pylist()).items()),
            })

    head = ("behaviour", "pages", "image URLs", "requests", "rejected", "photos", "slowest s", "crawl s", "canary",
            "as clean")
    table = [head] + [
        (r["behaviour"], r["pages"], r["image_urls"], r["requests"], r["rejected"], r["photos"],
         f"{r['slowest_fetch_s']:.3f}", f"{r['crawl_s']:.2f}", r["canary_hits"],
         "yes" if r["items_as_clean"] and r["photos_as_clean"] else
         f"items {'yes' if r['items_as_clean'] else 'no'}, photos {'yes' if r['photos_as_clean'] else 'no'}")
        for r in rows
    ]
    widths = [max(len(str(row[i])) for row in table) for i in range(len(head))]
    lines = [" | ".join(str(v).ljust(w) for v, w in zip(row, widths)).rstrip() for row in table]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    print("\n".join(lines), file=sys.stderr)
    for r in rows:
        emit(r, args.out)
    return rows


if __name__ == "__main__":
    main()
