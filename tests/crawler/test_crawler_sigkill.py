"""A crawl process killed with SIGKILL mid-way, restarted on the same state: same rows."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from crawler_testing import fast_params

from street2shop.crawler.core import crawl
from street2shop.crawler.journal import JOURNAL_FILE
from street2shop.shop.server import ShopServer
from street2shop.storage.blobs import BlobStore

_CHILD = """
import sys
from street2shop.crawler.core import CrawlParams, crawl
from street2shop.storage.blobs import BlobStore
params = CrawlParams.model_validate_json(sys.argv[1])
crawl(params, BlobStore(sys.argv[2]), sys.argv[3])
"""


def _journaled_images(state: Path) -> int:
    try:
        with sqlite3.connect(f"file:{state / JOURNAL_FILE}?mode=ro", uri=True) as db:
            return db.execute("SELECT count(*) FROM images").fetchone()[0]
    except sqlite3.OperationalError:  # not created yet
        return 0


def test_sigkilled_crawl_resumes_to_the_same_rows(shop_template: Path, tmp_path: Path) -> None:
    home, state = tmp_path / "home", tmp_path / "state"
    with ShopServer(shop_template) as shop:
        # Rate-limited so that the child is surely still running when it is killed.
        params = fast_params(shop.url, rate_limit_rps=100.0)
        child = subprocess.Popen([sys.executable, "-c", _CHILD, params.model_dump_json(), str(home), str(state)])
        try:
            deadline = time.monotonic() + 60
            while _journaled_images(state) < 40 and child.poll() is None and time.monotonic() < deadline:
                time.sleep(0.02)
            child.send_signal(signal.SIGKILL)
        finally:
            child.wait()
        assert child.returncode == -signal.SIGKILL  # it did not finish on its own
        done_before = _journaled_images(state)
        assert done_before >= 40

        fast = fast_params(shop.url)
        resumed = crawl(fast, BlobStore(home), state)
        reference = crawl(fast, BlobStore(tmp_path / "ref"), tmp_path / "ref-state")
    assert resumed.stats["resumed"] == 1
    assert resumed.stats["images_from_journal"] == done_before
    assert resumed.stats["images_fetched"] == reference.stats["images_fetched"] - done_before
    assert resumed.items.equals(reference.items)
    assert resumed.images.equals(reference.images)
    assert resumed.rejects.num_rows == 0
