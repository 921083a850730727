"""Run one test in a fresh interpreter.

OpenVINO's int8 CPU kernels, once run in a long test session that has also run many other
native libraries, left it crashing (SIGSEGV in the interpreter, during a later unrelated
import). The pipeline and the service run int8 in a fresh process each (the demo, `serve`),
so the tests that run int8 do the same: the outer test re-runs itself in a child pytest
and asserts the child passed.
"""

from __future__ import annotations

import os
import subprocess
import sys

CHILD = "STREET2SHOP_ISOLATED_TEST"


def in_child() -> bool:
    return os.environ.get(CHILD) == "1"


def run_in_child(nodeid: str, timeout: float = 600) -> None:
    env = dict(os.environ, **{CHILD: "1"})
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", nodeid],
                          env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0 and " passed" in done.stdout, done.stdout[-3000:] + done.stderr[-2000:]
