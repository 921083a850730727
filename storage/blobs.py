"""Content-addressed blob store for image bytes.

Images are stored once, under ``blobs/<aa>/<bb>/<sha256>.<ext>``, whatever item or
crawl refers to them; the same bytes crawled twice are written once. Writes are atomic
(temporary file + rename) so a killed crawl never leaves a half-written image behind.

With a ``remote`` (the store's home is an fsspec URL, see :mod:`street2shop.storage.remote`)
``home`` is the local mirror: a blob is uploaded before it is written to the mirror, so a
blob in the mirror is always on the remote too, and a blob another machine stored is
downloaded into the mirror the first time it is resolved.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from street2shop.storage.remote import Remote


class BlobStore:
    """Stores bytes by their sha256; paths handed out are relative to ``home``."""

    def __init__(self, home: str | Path, remote: "Remote | None" = None):
        self.home = Path(home)
        self.root = self.home / "blobs"
        self.remote = remote

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
            if self.remote is not None:
                # Same name, same bytes: re-uploading a blob another machine stored is harmless.
                self.remote.write(rel, data)
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
        """Absolute path of a relative blob path (as stored in the ``images`` table).

        With a remote, a blob missing from the mirror is downloaded first; one the remote
        does not have either gives a path that does not exist, as locally.
        """
        return self.resolve_many([relpath])[0]

    def resolve_many(self, relpaths: Sequence[str]) -> list[Path]:
        """:meth:`resolve` for many paths, downloading the missing ones in one batch."""
        paths = [self.home / rel for rel in relpaths]
        if self.remote is not None:
            missing = sorted({rel for rel, path in zip(relpaths, paths) if not path.exists()})
            present = [rel for rel in missing if self.remote.exists(rel)] if len(missing) < 8 else self._listed(missing)
            self.remote.download((rel, self.home / rel) for rel in present)
        return paths

    def _listed(self, relpaths: Sequence[str]) -> list[str]:
        """Which of many blob paths the remote has, from one listing of the blob tree."""
        assert self.remote is not None
        have = set(self.remote.glob("blobs/*/*/*"))
        return [rel for rel in relpaths if rel in have]

    def exists(self, sha256: str, ext: str = "jpg") -> bool:
        rel = self.relpath(sha256, ext)
        if (self.home / rel).exists():
            return True
        return self.remote is not None and self.remote.exists(rel)
