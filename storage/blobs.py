"""Content-addressed blob store for image bytes.

Images are stored once, under ``blobs/<aa>/<bb>/<sha256>.<ext>``, whatever item or
crawl refers to them; the same bytes crawled twice are written once. Writes are atomic
(temporary file + rename) so a killed crawl never leaves a half-written image behind.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path


class BlobStore:
    """Stores bytes by their sha256; paths handed out are relative to ``home``."""

    def __init__(self, home: str | Path):
        self.home = Path(home)
        self.root = self.home / "blobs"

    @staticmethod
    def digest(data: bytes) -> str:
        return hashlib.sha256(data).hexdigest()

    def relpath(self, sha256: str, ext: str = "jpg") -> str:
        return f"blobs/{sha256[:2]}/{sha256[2:4]}/{sha256}.{ext.lstrip('.')}"

    def put(self, data: bytes, ext: str = "jpg") -> tuple[str, str]:
        """Store ``data``; return ``(sha256, relative path)``. Idempotent."""
        sha = self.digest(data)
        rel = self.relpath(sha, ext)
        dest = self.home / rel
        if not dest.exists():
            dest.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=".tmp-")
            try:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(data)
                os.replace(tmp, dest)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        return sha, rel

    def resolve(self, relpath: str) -> Path:
        """Absolute path of a relative blob path (as stored in the ``images`` table)."""
        return self.home / relpath

    def exists(self, sha256: str, ext: str = "jpg") -> bool:
        return (self.home / self.relpath(sha256, ext)).exists()
