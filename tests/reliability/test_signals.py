"""``street2shop demo`` and ``street2shop run`` stopped by SIGTERM or SIGINT mid-pipeline:
the command exits (128 + the signal), its Prefect runs are marked crashed or cancelled, and
no process it started survives it: not the demo shop, not Prefect's temporary API server
(a ``uvicorn ... prefect.server.api.server:create_app`` child that used to be left running).

Each command runs as a child in a session of its own with its own Prefect home (so it starts
its own temporary server, the thing under test), is held inside a stage by the fault hook's
``pause`` action (``storage/faults.py``), and gets the signal on its own pid, as ``kill`` or
a supervisor's timeout sends it. Its descendants are recorded while it runs; afterwards
none may be alive, nor any process left in its session. A ``run`` starts from a copy of the
uninterrupted run's store without the stage it is stopped in and those after it, so it
reaches that stage after skipping the others, as a resumed run does.
"""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

from street2shop.storage import faults
from street2shop.storage.stages import STAGE_NAMES

pytestmark = pytest.mark.slow

DEMO = ["demo", "--products", "16", "--garments", "procedural", "--backbone", "tiny", "--epochs", "1", "--rounds", "0", "--no-benchmark"]
#: generous: a hang guard, not a measurement (a clean stop takes a few seconds)
STOP_WITHIN_S = 120


def store_before(reference_home: Path, home: Path, stage: str) -> None:
    """``home``: the reference store as it was before ``stage`` ran (it and later stages removed)."""
    shutil.copytree(reference_home, home)
    for later in STAGE_NAMES[STAGE_NAMES.index(stage):]:
        shutil.rmtree(home / "artifacts" / later, ignore_errors=True)


class Command:
    """A street2shop command in its own session, its output and descendants watched."""

    def __init__(self, args: list[str], tmp: Path, pause_at: str | None) -> None:
        self.prefect_home = tmp / "prefect"
        self.prefect_home.mkdir()
        self.trace = tmp / "trace"
        env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL", faults.FAULTS_ENV)}
        env.update(PREFECT_HOME=str(self.prefect_home), OMP_NUM_THREADS="1", **{faults.TRACE_ENV: str(self.trace)})
        if pause_at:
            env[faults.FAULTS_ENV] = f"{pause_at}=pause"
        exe = str(Path(sys.executable).with_name("street2shop"))
        self.proc = subprocess.Popen(
            [exe, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
        )
        self.lines: list[str] = []
        self.descendants: dict[int, str] = {}
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line)

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def watch_until(self, ready, timeout_s: float = 600) -> None:
        deadline = time.monotonic() + timeout_s
        while not ready():
            assert self.proc.poll() is None, f"exited {self.proc.returncode} early:\n{self.output[-3000:]}"
            assert time.monotonic() < deadline, f"not ready after {timeout_s} s:\n{self.output[-3000:]}"
            self._record_descendants()
            time.sleep(0.1)
        self._record_descendants()

    def _record_descendants(self) -> None:
        try:
            for p in psutil.Process(self.proc.pid).children(recursive=True):
                self.descendants.setdefault(p.pid, " ".join(p.cmdline())[:160])
        except psutil.Error:
            pass

    def paused(self, point: str) -> bool:
        stage, _, where = point.partition(":")
        return self.trace.exists() and any(
            line.split()[0] == stage and line.split()[2] == where for line in self.trace.read_text().splitlines()
        )

    def stop(self, sig: int) -> tuple[int, float]:
        started = time.monotonic()
        os.kill(self.proc.pid, sig)
        try:
            code = self.proc.wait(STOP_WITHIN_S)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            raise AssertionError(f"still running {STOP_WITHIN_S} s after {signal.Signals(sig).name}:\n{self.output[-3000:]}") from None
        return code, time.monotonic() - started

    def survivors(self) -> list[str]:
        """Descendants still alive (or anything left in the session), after a short grace."""
        deadline = time.monotonic() + 10
        while True:
            alive = [f"{pid} {cmd}" for pid, cmd in self.descendants.items() if _alive(pid)]
            alive += [f"{p.pid} {' '.join(p.cmdline())[:160]}" for p in _in_session(self.proc.pid)]
            if not alive or time.monotonic() > deadline:
                return sorted(set(alive))
            time.sleep(0.2)

    def flow_run_states(self) -> list[tuple[str, str]]:
        db = self.prefect_home / "prefect.db"
        if not db.exists():
            return []
        with sqlite3.connect(db) as conn:
            return conn.execute("select name, state_type from flow_run").fetchall()


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _in_session(sid: int) -> list[psutil.Process]:
    found = []
    for p in psutil.process_iter():
        try:
            if p.pid != sid and os.getsid(p.pid) == sid and p.status() != psutil.STATUS_ZOMBIE:
                found.append(p)
        except (ProcessLookupError, PermissionError, psutil.Error):
            continue
    return found


CASES = [
    # (command, signal, where it is when the signal comes)
    ("demo", signal.SIGTERM, "crawl:compute"),  # a supervisor's stop during the crawl
    ("demo", signal.SIGINT, "prefect server starting"),  # Ctrl-C before any flow runs
    ("run", signal.SIGINT, "train:compute"),  # Ctrl-C inside a stage's work
]
# (both commands share one handler, street2shop/cli/pipeline.py's _stops_cleanly)


@pytest.mark.parametrize(("command", "sig", "where"), CASES, ids=[f"{c}-{s.name}-{w.split(':')[0].split()[0]}" for c, s, w in CASES])
def test_a_signal_stops_everything_the_command_started(tmp_path, pipeline_demo, reference, command, sig, where) -> None:
    home = tmp_path / "home"
    pause_at = where if ":" in where else None
    if command == "demo":
        args = [*DEMO, "--home", str(home)]
    else:
        store_before(reference[0], home, pause_at.split(":")[0])
        args = ["run", "--config", str(pipeline_demo[1]), "--home", str(home)]
    cmd = Command(args, tmp_path, pause_at)
    if pause_at:
        cmd.watch_until(lambda: cmd.paused(pause_at))
        assert any("prefect.server.api.server:create_app" in c for c in cmd.descendants.values()), cmd.descendants
    else:  # the shop is served and the pipeline is starting its temporary Prefect server
        cmd.watch_until(lambda: "served at" in cmd.output and cmd.descendants)
    code, took = cmd.stop(sig)
    print(f"{command} {sig.name} at {where}: exit {code} after {took:.1f} s")
    assert code == 128 + sig, cmd.output[-3000:]
    assert f"stopped by {sig.name}" in cmd.output
    assert cmd.survivors() == [], cmd.output[-2000:]
    states = cmd.flow_run_states()
    if pause_at:
        assert states, "no flow run recorded"
        # the runs the signal interrupted are crashed; none is left running
        assert not [s for s in states if s[1] in ("RUNNING", "PENDING", "SCHEDULED")], states
        assert any(s[1] in ("CRASHED", "CANCELLED") for s in states), states
    # nothing half-written became visible
    root = home / "artifacts"
    folders = list(root.glob("*/*/version=*")) if root.exists() else []
    assert all((f / "_manifest.json").exists() for f in folders)
