"""Re-crawls of a generated demo shop: resuming an interrupted crawl, incremental re-crawl."""

from __future__ import annotations

import threading
from pathlib import Path

import pyarrow.compute as pc
import pytest
from crawler_testing import fast_params, image_keys, ipc_bytes, truth_images, truth_keys

from street2shop.crawler.core import crawl
from street2shop.shop.generator import grow_shop
from street2shop.shop.server import ShopServer
from street2shop.storage.blobs import BlobStore


class _Stop(Exception):
    pass


def test_interrupted_crawl_resumes_to_the_same_rows(shop_template: Path, tmp_path: Path) -> None:
    lock, fetched = threading.Lock(), []

    def stop_after_60_images(kind: str, url: str) -> None:
        with lock:
            if kind == "image":
                fetched.append(url)
                if len(fetched) == 60:
                    raise _Stop

    with ShopServer(shop_template) as shop:
        params = fast_params(shop.url)
        reference = crawl(params, BlobStore(tmp_path / "ref"), tmp_path / "ref-state")
        blobs, state = BlobStore(tmp_path / "home"), tmp_path / "state"
        with pytest.raises(_Stop):
            crawl(params, blobs, state, after_fetch=stop_after_60_images)
        resumed = crawl(params, blobs, state, after_fetch=stop_after_60_images)
        fresh_pass = crawl(params, blobs, state)
    n_images = reference.stats["images_fetched"]
    assert resumed.stats["resumed"] == 1
    # Nothing fetched twice: the journal answers for what the first attempt got.
    assert resumed.stats["images_from_journal"] >= 60
    assert resumed.stats["images_from_journal"] + resumed.stats["images_fetched"] == n_images
    assert len(fetched) == n_images  # every image downloaded exactly once over both runs
    assert ipc_bytes(resumed.items) == ipc_bytes(reference.items)
    assert ipc_bytes(resumed.images) == ipc_bytes(reference.images)
    # The resumed pass completed, so the next crawl is a new pass that fetches again.
    assert fresh_pass.stats["resumed"] == 0 and fresh_pass.stats["images_fetched"] == n_images
    assert ipc_bytes(fresh_pass.images) == ipc_bytes(reference.images)


def test_incremental_recrawl_fetches_only_new_images(shop_dir: Path, tmp_path: Path) -> None:
    blobs, state = BlobStore(tmp_path / "home"), tmp_path / "state"
    with ShopServer(shop_dir) as shop:
        params = fast_params(shop.url)
        first = crawl(params, blobs, state)
        previous = (first.items, first.images)

        unchanged = crawl(params, blobs, state, previous=previous)
        assert unchanged.stats["images_fetched"] == 0
        # Seller photos are met again and skipped by URL; photos of reviews older than the
        # first known one are not even met: their rows are carried over.
        assert unchanged.stats["images_known"] == first.images.filter(
            pc.equal(first.images["role"], "shop")).num_rows
        assert (unchanged.stats["images_known"] + unchanged.stats["images_carried_over"]
                == first.images.num_rows)
        # Feedback paging stopped at the first known review: fewer pages than a full pass.
        assert unchanged.stats["pages_fetched"] < first.stats["pages_fetched"]
        assert ipc_bytes(unchanged.items) == ipc_bytes(first.items)  # no new version to publish
        assert ipc_bytes(unchanged.images) == ipc_bytes(first.images)

        n_before = len(truth_images(shop_dir))
        grow_shop(shop_dir, new_products=2, new_reviews=8, seed=5)
        n_new = len(truth_images(shop_dir)) - n_before
        assert n_new > 0
        grown = crawl(params, blobs, state, previous=previous)
        full = crawl(params, BlobStore(tmp_path / "home2"), tmp_path / "state2")
    assert grown.stats["images_fetched"] == n_new
    assert grown.stats["images_known"] + grown.stats["images_carried_over"] == first.images.num_rows
    assert ipc_bytes(grown.items) == ipc_bytes(full.items)
    assert ipc_bytes(grown.images) == ipc_bytes(full.images)
    assert image_keys(grown) == truth_keys(truth_images(shop_dir))
