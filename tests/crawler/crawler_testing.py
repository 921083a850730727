"""Helpers shared by the crawler tests (a plain module: conftest is for fixtures)."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pyarrow as pa

from street2shop.crawler.core import CrawlParams, CrawlResult
from street2shop.shop.catalog import load_catalog
from street2shop.shop.faults import FaultConfig, Trap


def fast_params(url: str, **kw: object) -> CrawlParams:
    """Loopback crawl settings: no rate limit, quick backoff, no progress bars."""
    defaults: dict = dict(base_url=url, rate_limit_rps=None, backoff_factor=0.01, progress=False,
                          concurrency=8)
    return CrawlParams(**{**defaults, **kw})


def truth_images(shop: Path) -> list[dict]:
    with open(shop / "truth" / "images.csv", newline="") as f:
        return list(csv.DictReader(f))


def truth_items(shop: Path) -> list[dict]:
    with open(shop / "truth" / "items.csv", newline="") as f:
        return list(csv.DictReader(f))


def ipc_bytes(table: pa.Table) -> bytes:
    """The table's Arrow IPC bytes: equal bytes = byte-identical published table."""
    sink = io.BytesIO()
    with pa.ipc.new_stream(sink, table.schema) as w:
        w.write_table(table)
    return sink.getvalue()


def image_keys(result: CrawlResult) -> set[tuple]:
    return {(r["image_id"], r["item_id"], r["role"], r["review_id"]) for r in result.images.to_pylist()}


def truth_keys(rows: list[dict]) -> set[tuple]:
    """The crawl's image keys expected from ``truth/images.csv`` rows. The truth tells noise
    photos apart ("noise_closeup"...); to a crawler every review photo is a street photo."""
    return {
        (r["image_id"], r["item_id"], "shop" if r["kind"] == "shop" else "street", r["review_id"] or None)
        for r in rows
    }


def trap_links(shop: Path, faults: FaultConfig) -> dict[tuple[str, str, str | None], Trap]:
    """Every trap link the hostile shop shows, keyed as its reject row is: (url, kind,
    item_id). Page traps are on page 1 of every listing; photo traps on the trap review
    (of the product's first colour) on page 1 of every product's feedback."""
    catalog = load_catalog(shop)
    out: dict[tuple[str, str, str | None], Trap] = {}
    for c in catalog.categories:
        out.update({(t.url, "page", None): t for t in faults.page_traps(c.slug)})
    for p in catalog.products:
        item = f"{p.product_id}:{p.variants[0].colour}"
        out.update({(t.url, "image", item): t for t in faults.photo_traps(p.product_id)})
    return out


def reject_keys(result: CrawlResult) -> set[tuple]:
    return {(r["url"], r["kind"], r["item_id"]) for r in result.rejects.to_pylist()}
