"""An exclusive lock on a store, so two pipeline runs never work on it at once.

Publishing alone is safe under concurrency (a version is renamed into place and never
replaced), but a stage's scratch state is not: two runs would share the crawl journal and
the training folder under ``work/``. So a pipeline run holds ``<home>/locks/pipeline.lock``
and a second one waits until the first is done, then finds every stage published and skips
it: both finish with the same versions and nothing is lost.

The lock is an ``flock`` on an open file: the kernel releases it when its holder exits in
any way (a SIGKILL included), so a dead run never leaves a stale lock behind. The file
holds who has it (pid, host, start time, command), for the message a waiting run prints.
It is reentrant within a process (a ``run`` command that takes it, then the pipeline flow).
On a remote store the lock lives in this machine's mirror: it keeps two runs on one
machine apart, not runs on two machines.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import socket
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

log = logging.getLogger("street2shop")

#: How often a waiting run retries, and how often it repeats who it is waiting for.
POLL_S = 0.5
REPORT_EVERY_S = 60.0

# path -> (open file, depth): the locks this process holds
_held: dict[str, tuple[int, int]] = {}
_held_lock = threading.Lock()


class LockTimeout(TimeoutError):
    """The lock was still held by another process after the time allowed."""


class StoreLock:
    """``with StoreLock(path): ...`` holds an exclusive lock on ``path`` (created if needed).

    ``timeout_s``: give up with :class:`LockTimeout` after this long (default: wait for as
    long as the holder runs).
    """

    def __init__(self, path: Path, timeout_s: float | None = None) -> None:
        self.path = Path(path)
        self.timeout_s = timeout_s

    def holder(self) -> dict:
        """Who holds (or last held) the lock, as its holder wrote it; {} if unknown."""
        try:
            return json.loads(self.path.read_text() or "{}")
        except (OSError, ValueError):
            return {}

    def __enter__(self) -> StoreLock:
        key = str(self.path)
        with _held_lock:
            if key in _held:
                fd, depth = _held[key]
                _held[key] = (fd, depth + 1)
                return self
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            self._acquire(fd)
        except BaseException:
            os.close(fd)
            raise
        info = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "since": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "command": " ".join(sys.argv)[:500],
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode(), 0)
        with _held_lock:
            _held[key] = (fd, 1)
        return self

    def _acquire(self, fd: int) -> None:
        started = time.monotonic()
        reported = None
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                if reported is not None:
                    log.warning("took the lock %s after waiting %.0f s", self.path, time.monotonic() - started)
                return
            except BlockingIOError:
                pass
            waited = time.monotonic() - started
            if self.timeout_s is not None and waited >= self.timeout_s:
                raise LockTimeout(f"{self.path} is still held after {waited:.0f} s by {_describe(self.holder())}")
            if reported is None or waited - reported >= REPORT_EVERY_S:
                log.warning("waiting for %s: another run works on this store (%s)", self.path, _describe(self.holder()))
                reported = waited
            time.sleep(POLL_S)

    def __exit__(self, *exc: object) -> None:
        key = str(self.path)
        with _held_lock:
            fd, depth = _held[key]
            if depth > 1:
                _held[key] = (fd, depth - 1)
                return
            del _held[key]
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def _describe(holder: dict) -> str:
    if not holder:
        return "holder unknown"
    return f"pid {holder.get('pid')} on {holder.get('host')} since {holder.get('since')}: {holder.get('command')}"


__all__ = ["LockTimeout", "StoreLock"]
