"""An object store (S3 or any fsspec URL) as the home of the artifact and blob stores.

``ArtifactStore("s3://bucket/prefix")`` keeps the layout of a local home under that URL::

    <url>/artifacts/<stage>/<name>/version=<id>/...   (``_manifest.json`` uploaded last)
    <url>/blobs/<aa>/<bb>/<sha256>.<ext>

and a local *mirror* of it (``$STREET2SHOP_CACHE/<hash of the URL>``, by default under
``~/.cache/street2shop``) with the same layout, where versions are written before upload,
published versions are downloaded to be read, and stages keep their scratch ``work/``
folders. Every consumer therefore keeps getting local paths (checkpoints, FAISS files,
images), and a second machine pointed at the same URL sees what the first one published.

Why the mirror never goes stale: a published version and a blob are immutable (a version
id is derived from what determines its content, a blob is named by its sha256), so a
file downloaded once is right forever; only *which* versions exist is asked of the remote
each time.

Object stores have no atomic rename, so publishing a version uploads its files first and
its manifest last, with an exclusive create where the file system supports one (S3's
``If-None-Match: *``): a version without a manifest is never listed or read, and a
manifest, once there, is never overwritten.

Credentials and endpoints are fsspec's and the cloud SDK's usual ones (for S3: the
``AWS_*`` environment variables, ``~/.aws``, or ``AWS_ENDPOINT_URL`` for MinIO and other
S3-compatible servers).
"""

from __future__ import annotations

import hashlib
import os
import re
import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import fsspec

#: Environment variable naming the folder that holds the local mirrors of remote stores.
CACHE_ENV = "STREET2SHOP_CACHE"
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def is_url(home: str | os.PathLike[str]) -> bool:
    """True for an fsspec URL (``s3://...``, ``memory://...``), false for a local path.

    Only a ``str`` can be a URL: ``Path("s3://b/p")`` has already lost a slash.
    ``file://`` URLs count as local paths (see :func:`resolve_home`).
    """
    return isinstance(home, str) and bool(_URL.match(home)) and not home.startswith("file://")


def resolve_home(home: str | os.PathLike[str]) -> str | Path:
    """A store home as the stores use it: a normalised URL, or an absolute local path.

    What :class:`~street2shop.settings.Settings` and the CLI should pass on, instead of
    ``Path(home).resolve()`` (which turns ``s3://bucket/x`` into ``./s3:/bucket/x``).
    """
    if is_url(home):
        url = str(home).rstrip("/")
        protocol, _, rest = url.partition("://")
        if not rest:
            raise ValueError(f"store URL {home!r} names no bucket or folder")
        return f"{protocol.lower()}://{rest}"
    if isinstance(home, str) and home.startswith("file://"):
        home = home[len("file://") :]
    return Path(home).expanduser().resolve()


def default_mirror(url: str) -> Path:
    """Where the local mirror of the store at ``url`` lives (one folder per URL)."""
    base = Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "street2shop").expanduser()
    protocol = url.partition("://")[0]
    return (base / f"{protocol}-{hashlib.sha256(url.encode()).hexdigest()[:16]}").resolve()


class Remote:
    """The remote side of a store: relative keys under one fsspec URL.

    Keys are ``/``-separated paths relative to the URL (``artifacts/crawl/items/...``).
    Listings are never served from fsspec's listing cache, because other machines
    publish into the same store.
    """

    def __init__(self, url: str, storage_options: dict[str, Any] | None = None):
        self.url = url
        self.fs, root = fsspec.core.url_to_fs(url, **(storage_options or {}))
        self.root = root.rstrip("/")

    def __repr__(self) -> str:
        return f"Remote({self.url!r})"

    def path(self, key: str) -> str:
        return f"{self.root}/{key}" if key else self.root

    def key(self, path: str) -> str:
        path = path.rstrip("/")
        prefix = self.root.lstrip("/") + "/"
        stripped = path.lstrip("/")
        if not stripped.startswith(prefix):
            raise ValueError(f"{path!r} is not under {self.url}")
        return stripped[len(prefix) :]

    def exists(self, key: str) -> bool:
        path = self.path(key)
        self.fs.invalidate_cache(path)
        return self.fs.exists(path)

    def glob(self, pattern: str) -> list[str]:
        """Keys matching a glob pattern (``*`` within one path segment)."""
        self.fs.invalidate_cache()
        return sorted(self.key(p) for p in self.fs.glob(self.path(pattern)))

    def cat(self, keys: Sequence[str]) -> dict[str, bytes]:
        """The bytes of several small objects, fetched concurrently where fsspec can."""
        if not keys:
            return {}
        found = self.fs.cat([self.path(k) for k in keys])
        return {k: found[self.path(k)] for k in keys}

    def download(self, pairs: Iterable[tuple[str, Path]]) -> None:
        """Fetch ``(key, local path)`` pairs; each local file appears complete or not at all."""
        pairs = list(pairs)
        if not pairs:
            return
        tmps = []
        for _, local in pairs:
            local.parent.mkdir(parents=True, exist_ok=True)
            tmps.append(local.with_name(f".tmp-{uuid.uuid4().hex[:8]}-{local.name}"))
        try:
            self.fs.get([self.path(k) for k, _ in pairs], [str(t) for t in tmps])
            for tmp, (_, local) in zip(tmps, pairs):
                os.replace(tmp, local)
        finally:
            for tmp in tmps:
                tmp.unlink(missing_ok=True)

    def upload(self, pairs: Iterable[tuple[Path, str]]) -> None:
        """Upload ``(local path, key)`` pairs (overwriting: only for not-yet-published keys)."""
        pairs = list(pairs)
        if pairs:
            self.fs.put([str(p) for p, _ in pairs], [self.path(k) for _, k in pairs])

    def write(self, key: str, data: bytes) -> None:
        self.fs.pipe_file(self.path(key), data)

    def create(self, key: str, data: bytes) -> bool:
        """Write ``key`` only if it does not exist yet; False if it already did.

        Exclusive where the file system supports it (S3's conditional put, memory, local
        files); elsewhere a check before the write, which leaves a window in which two
        writers of the same version both write: harmless, as both wrote the same content.
        """
        path = self.path(key)
        if self.exists(key):
            return False
        try:
            self.fs.pipe_file(path, data, mode="create")
        except FileExistsError:
            return False
        except TypeError:  # an fsspec implementation without exclusive create
            self.fs.pipe_file(path, data)
        except OSError as exc:  # s3fs reports a failed If-None-Match as PreconditionFailed
            if "Precondition" in str(exc) or "412" in str(exc):
                return False
            raise
        return True

    def remove_prefix(self, key: str) -> None:
        self.fs.rm(self.path(key), recursive=True)

    def modified(self, key: str) -> float | None:
        """Newest modification time (POSIX seconds) among the objects under ``key``."""
        times = []
        for info in self.fs.find(self.path(key), detail=True).values():
            stamp = info.get("LastModified") or info.get("mtime") or info.get("created")
            if stamp is None:
                continue
            times.append(stamp.timestamp() if hasattr(stamp, "timestamp") else float(stamp))
        return max(times) if times else None
