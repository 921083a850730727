"""Faults injected at named points of a stage run, for the reliability suite; off by default.

The kill, crash and full-disk tests (``tests/reliability``, ``bench/reliability.py``) run the
real pipeline in a child process and tell it, through the environment, where to fail::

    STREET2SHOP_FAULTS="train:compute#2=kill"           # SIGKILL itself the 2nd time train computes
    STREET2SHOP_FAULTS="train@1c8272aab20800e8:computed=raise,*:table=enospc"
    STREET2SHOP_FAULT_TRACE=/tmp/trace.txt               # append "<stage> <version> <point> <n> <pid>"

An entry is ``STAGE[@VERSION]:POINT[#N]=ACTION``: ``STAGE`` a stage name or ``*``;
``VERSION`` one version of it (a stage such as ``train`` runs once per round, each its own
version); ``#N`` the N-th time this process reaches that point of that stage and version
(default: every time); ``ACTION`` one of :data:`ACTIONS`. The points, in the order a stage
run reaches them (:data:`POINTS`):

``skip``      every output already published: the stage is skipped (nothing else follows)
``compute``   temporary version folders made, the stage's work not started
``table``     a table is about to be written into its temporary folder
``computed``  the work is done, every file written, no manifest yet
``written``   every manifest written (fsynced) in the temporary folders, none renamed yet
``renamed``   one output renamed into place (reached once per output)
``published`` every output published, the stage about to return

With neither variable set, :func:`fault_point` returns after one dictionary lookup, so the
points cost nothing outside the tests. Nothing else in the code base reads these variables.
"""

from __future__ import annotations

import errno
import os
import signal
import sys
import time
from collections import Counter
from dataclasses import dataclass

FAULTS_ENV = "STREET2SHOP_FAULTS"
TRACE_ENV = "STREET2SHOP_FAULT_TRACE"

POINTS = ("skip", "compute", "table", "computed", "written", "renamed", "published")
#: ``kill``: SIGKILL (nothing runs after it: no ``finally``, no atexit); ``raise``: an
#: :class:`InjectedFault` exception; ``enospc``: ``OSError(ENOSPC)``, a full disk;
#: ``pause``: sleep until signalled (a stage that is running when a signal arrives).
ACTIONS = ("kill", "raise", "enospc", "pause")


class InjectedFault(RuntimeError):
    """The exception the ``raise`` action injects."""


@dataclass(frozen=True)
class Fault:
    stage: str
    version: str | None
    point: str
    nth: int | None
    action: str

    def matches(self, stage: str, version: str, point: str, n: int) -> bool:
        return (
            self.stage in ("*", stage) and self.version in (None, version) and self.point == point and self.nth in (None, n)
        )


def parse_faults(spec: str) -> tuple[Fault, ...]:
    """``"train:compute#2=kill,*:table=enospc"`` as :class:`Fault` entries; a typo is an error."""
    faults = []
    for entry in filter(None, (e.strip() for e in spec.split(","))):
        where, _, action = entry.partition("=")
        stage, _, point = where.partition(":")
        stage, _, version = stage.partition("@")
        point, _, nth = point.partition("#")
        if not stage or point not in POINTS or action not in ACTIONS or (nth and not nth.isdigit()):
            raise ValueError(
                f"bad {FAULTS_ENV} entry {entry!r}: want STAGE[@VERSION]:POINT[#N]=ACTION, points {POINTS}, actions {ACTIONS}"
            )
        faults.append(Fault(stage, version or None, point, int(nth) if nth else None, action))
    return tuple(faults)


_parsed: dict[str, tuple[Fault, ...]] = {}
_reached: Counter[tuple[str, str, str]] = Counter()


def fault_point(stage: str, point: str, version: str = "") -> None:
    """Reached ``point`` of ``stage`` (writing ``version``): trace it and act on a matching
    fault, if any is set."""
    spec, trace = os.environ.get(FAULTS_ENV), os.environ.get(TRACE_ENV)
    if not spec and not trace:
        return
    _reached[stage, version, point] += 1
    n = _reached[stage, version, point]
    if trace:
        # One O_APPEND write: whole lines even from several processes, and in the kernel's
        # hands before a SIGKILL that follows.
        fd = os.open(trace, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, f"{stage} {version or '-'} {point} {n} {os.getpid()}\n".encode())
        finally:
            os.close(fd)
    if spec:
        if spec not in _parsed:
            _parsed[spec] = parse_faults(spec)
        for fault in _parsed[spec]:
            if fault.matches(stage, version, point, n):
                _act(fault, f"{stage}@{version}:{point}#{n}" if version else f"{stage}:{point}#{n}")


def _act(fault: Fault, where: str) -> None:
    if fault.action == "kill":
        sys.stderr.flush()
        os.kill(os.getpid(), signal.SIGKILL)
    elif fault.action == "raise":
        raise InjectedFault(f"fault injected at {where}")
    elif fault.action == "enospc":
        raise OSError(errno.ENOSPC, f"{os.strerror(errno.ENOSPC)} (fault injected at {where})")
    elif fault.action == "pause":
        while True:  # a signal handler that raises ends it
            time.sleep(0.2)


__all__ = ["ACTIONS", "FAULTS_ENV", "POINTS", "TRACE_ENV", "Fault", "InjectedFault", "fault_point", "parse_faults"]
