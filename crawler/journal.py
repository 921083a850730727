"""The crawl journal: what a crawl pass has already fetched, durable across crashes.

A pass is replayable: the walk is a pure function of page contents, so the journal records
*fetch outcomes* (a page's status and body, an image's stored blob or reject reason) and a
restarted crawl re-runs the same walk with journaled URLs answered from here instead of the
network. It therefore ends with exactly the rows of an uninterrupted pass, and fetches each
URL once.

Storage is one SQLite file in WAL mode, written in autocommit: every outcome is its own
transaction, so a process killed at any instant (SIGKILL included) loses at most the fetch in
flight. ``synchronous=NORMAL`` is the WAL setting that is safe against process crashes (only an
OS crash may lose the last transactions, which would merely be fetched again).
"""

from __future__ import annotations

import sqlite3
import threading
import zlib
from dataclasses import dataclass
from pathlib import Path

__all__ = ["CrawlJournal", "ImageOutcome", "PageOutcome"]

JOURNAL_FILE = "crawl-journal.sqlite"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS pages (
    url TEXT PRIMARY KEY, status INTEGER, content_type TEXT NOT NULL,
    body BLOB NOT NULL, error TEXT);
CREATE TABLE IF NOT EXISTS images (
    url TEXT PRIMARY KEY, image_id TEXT, path TEXT, width INTEGER, height INTEGER,
    nbytes INTEGER NOT NULL, reason TEXT);
"""


@dataclass(frozen=True)
class PageOutcome:
    status: int | None
    content_type: str
    body: bytes
    error: str | None


@dataclass(frozen=True)
class ImageOutcome:
    """Either a stored image (``image_id`` ... set) or a reject (``reason`` set)."""

    image_id: str | None = None
    path: str | None = None
    width: int | None = None
    height: int | None = None
    nbytes: int = 0
    reason: str | None = None

    @property
    def ok(self) -> bool:
        return self.reason is None


class CrawlJournal:
    """Thread-safe (one connection behind a lock; SQLite serialises writers anyway)."""

    def __init__(self, state_dir: str | Path):
        self.state_dir = Path(state_dir)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(
            self.state_dir / JOURNAL_FILE, check_same_thread=False, isolation_level=None
        )
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> CrawlJournal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- pass lifecycle --------------------------------------------------------------------
    def begin(self, fingerprint: str) -> bool:
        """Start or resume a pass; True when resuming an unfinished pass of the same crawl.

        A finished pass, or an unfinished one of a different crawl (other shop, adapter or
        limits), is discarded: replaying it would mix two crawls' pages.
        """
        with self._lock:
            meta = dict(self._db.execute("SELECT key, value FROM meta").fetchall())
            if meta.get("status") == "running" and meta.get("fingerprint") == fingerprint:
                return True
            self._db.execute("BEGIN")
            for table in ("meta", "pages", "images"):
                self._db.execute(f"DELETE FROM {table}")  # noqa: S608 (fixed names)
            self._db.executemany(
                "INSERT INTO meta VALUES (?, ?)",
                [("status", "running"), ("fingerprint", fingerprint)],
            )
            self._db.execute("COMMIT")
            return False

    def mark_complete(self) -> None:
        with self._lock:
            self._db.execute("UPDATE meta SET value = 'complete' WHERE key = 'status'")

    def status(self) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT value FROM meta WHERE key = 'status'").fetchone()
        return row[0] if row else None

    def counts(self) -> dict[str, int]:
        with self._lock:
            pages = self._db.execute("SELECT count(*) FROM pages").fetchone()[0]
            images = self._db.execute("SELECT count(*) FROM images").fetchone()[0]
        return {"pages": pages, "images": images}

    # -- outcomes --------------------------------------------------------------------------
    def page(self, url: str) -> PageOutcome | None:
        with self._lock:
            row = self._db.execute(
                "SELECT status, content_type, body, error FROM pages WHERE url = ?", (url,)
            ).fetchone()
        if row is None:
            return None
        status, ctype, body, error = row
        return PageOutcome(status, ctype, zlib.decompress(body), error)

    def put_page(self, url: str, outcome: PageOutcome) -> None:
        body = zlib.compress(outcome.body, 6)  # HTML compresses ~5x; the journal stays small
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO pages VALUES (?, ?, ?, ?, ?)",
                (url, outcome.status, outcome.content_type, body, outcome.error),
            )

    def image(self, url: str) -> ImageOutcome | None:
        with self._lock:
            row = self._db.execute(
                "SELECT image_id, path, width, height, nbytes, reason FROM images WHERE url = ?",
                (url,),
            ).fetchone()
        return ImageOutcome(*row) if row else None

    def put_image(self, url: str, outcome: ImageOutcome) -> None:
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO images VALUES (?, ?, ?, ?, ?, ?, ?)",
                (url, outcome.image_id, outcome.path, outcome.width, outcome.height,
                 outcome.nbytes, outcome.reason),
            )
