"""Crawl throughput benchmark: generate a demo shop, serve it on loopback, crawl it.

Prints pages/s and images/s at the given concurrency and rate limit, and one JSON line of
results (to stdout, or appended to ``--out``)::

    python bench/crawl.py --products 60 --concurrency 8 --rate 0 --latency-ms 20

``--rate 0`` means no rate limit; ``--latency-ms`` is added by the shop to every response,
standing in for a real network round trip (that is what concurrency buys back).
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from pathlib import Path

from _results import emit  # bench/ is on sys.path when a benchmark is run as a script

from street2shop.crawler.core import CrawlParams, crawl
from street2shop.shop.faults import FaultConfig
from street2shop.shop.generator import ShopParams, generate_shop
from street2shop.shop.server import ShopServer
from street2shop.storage.blobs import BlobStore


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--products", type=int, default=60)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--rate", type=float, default=0.0, help="requests/s limit; 0 = none")
    ap.add_argument("--latency-ms", type=float, default=0.0)
    ap.add_argument("--adapter", default="demo")
    ap.add_argument("--image-size", type=int, default=96)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, help="append the JSON result line here")
    args = ap.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="s2s-bench-crawl-") as tmp:
        t0 = time.perf_counter()
        shop_dir = generate_shop(
            Path(tmp) / "shop",
            ShopParams(seed=args.seed, n_products=args.products, garments="procedural",
                       image_size=args.image_size),
        )
        gen_s = time.perf_counter() - t0
        params = CrawlParams(
            base_url="http://placeholder",  # replaced below, once the server has its port
            adapter=args.adapter,
            concurrency=args.concurrency,
            rate_limit_rps=args.rate or None,
            progress=False,
        )
        with ShopServer(shop_dir, faults=FaultConfig(latency_ms=args.latency_ms)) as shop:
            params = params.model_copy(update={"base_url": shop.url})
            result = crawl(params, BlobStore(Path(tmp) / "home"), Path(tmp) / "state")
    s = result.stats
    record = {
        "bench": "crawl",
        "products": args.products,
        "adapter": args.adapter,
        "concurrency": args.concurrency,
        "rate_limit_rps": args.rate or None,
        "latency_ms": args.latency_ms,
        "image_size": args.image_size,
        "items": s["items"],
        "pages": s["pages_fetched"],
        "images": s["images_fetched"],
        "rejected": s["rejected"],
        "bytes": s["bytes"],
        "seconds": s["seconds"],
        "pages_per_s": s["pages_per_s"],
        "images_per_s": s["images_per_s"],
        "requests_per_s": round(s["requests"] / s["seconds"], 2),
        "generate_s": round(gen_s, 2),
        "python": platform.python_version(),
        "machine": platform.machine(),
    }
    print(
        f"crawled {s['items']} items: {s['pages_fetched']} pages, {s['images_fetched']} images "
        f"in {s['seconds']:.2f} s -> {s['pages_per_s']:.1f} pages/s, {s['images_per_s']:.1f} images/s "
        f"(concurrency {args.concurrency}, rate {args.rate or 'unlimited'}, latency {args.latency_ms} ms)",
        file=sys.stderr,
    )
    emit(record, args.out)
    return record


if __name__ == "__main__":
    main()
