"""Reliability: the pipeline killed and failed at every stage, and the API under hostile load.

    python bench/reliability.py                  # all three below, then the table of figures (README)
    python bench/reliability.py --quick          # the same at a small size: 2 kills per stage run, a 60 s soak
    python bench/reliability.py faults --per-stage 5 --seed 0     # every stage killed at 5 points, + an exception in each
    python bench/reliability.py hostile --fuzz-examples 100       # hostile files, traversal, 150 MB, fuzzing
    python bench/reliability.py soak --clients 50 --duration 600   # 50 clients for 10 min, hostile files mixed in, then a reload

``faults`` runs the tiny demo pipeline (``street2shop.flows.demo.TINY``) as ``street2shop run``
child processes against one demo shop and one Prefect API (``prefect_test_harness``):

1. **two runs started at once** on a fresh store: the store's lock makes the second wait,
   then skip every stage; both must exit 0 with the same versions. That store is the
   *reference*: an uninterrupted run.
2. a seeded **plan** of faults, one child run each, on a second store, one after the other:
   a SIGKILL at a named point of a stage (``storage/faults.py``: work started, a table
   about to be written, work done, manifests written, one output renamed into place, all
   published), a SIGKILL from outside at a seeded moment of the stage's work (``timed``),
   an exception, or a full disk (``ENOSPC``) at the write layer. After each: every listed
   version is complete and one the reference has, no published manifest was rewritten, and
   the stages that did work are exactly the unpublished ones from the first onwards (the
   trace says which computed and which skipped).
3. a last run without faults; then every version must be the reference's, **its contents
   compared**: every Parquet table equal, every checkpoint's tensors equal (``torch.save``
   names its zip records after the temporary file, so the bytes differ), every other file
   byte for byte.

The children run on one intra-op thread: with several, the CPU kernels' reductions change
order between runs and training is not bit-reproducible, while on one it is, which is what
makes "the same rows" a check rather than a hope.

``hostile`` serves the tiny store of the service tests from a server subprocess and sends it
every attack of ``tests/reliability/test_api_hostile.py``, fuzzing at a larger size: each
answer must be one of those expected (never a 5xx), and a search must still work after.

``soak`` serves a store (``--home``, else the tiny store of the service tests) from a server
subprocess and loads it from this process: ``--clients`` keep-alive clients sending a
customer photo, the hostile corpus of ``bench/_hostile.py`` mixed in (each file must get one
of its allowed answers) and item / photo lookups, for ``--duration`` seconds while the
server's RSS is sampled; then it publishes a second index and ``POST /admin/reload`` switches
to it while the load goes on. Any answer other than the expected ones counts as an error.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(BENCH))  # the sibling helpers, also when imported by the tests

import _hostile  # noqa: E402
import serve as serve_bench  # noqa: E402  (rss_mb, free_port, wait_ready)
from _results import emit  # noqa: E402

# ---------------------------------------------------------------------------------------
# pipeline faults

#: The points a kill may land on, in the order a stage reaches them ("timed": from outside,
#: at a seeded moment between "compute" and "computed").
KILL_POINTS = ("compute", "table", "timed", "computed", "written", "renamed", "published")
#: Shortest reference stage run a timed kill is aimed at, and where in it (a share of its work).
MIN_TIMED_S = 0.5
TIMED_RANGE = (0.05, 0.7)
#: One thread: see the module docstring.
ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}


@dataclass(frozen=True)
class StageRun:
    """One stage run of the reference pipeline, in order: ``train`` runs once per round."""

    stage: str
    version: str
    outputs: int
    tables: int
    duration_s: float

    @property
    def label(self) -> str:
        return f"{self.stage}@{self.version[:8]}"


@dataclass(frozen=True)
class Fault:
    """One fault of a plan: ``action`` at ``point`` of one stage run."""

    stage: str
    version: str
    point: str
    action: str = "kill"  # kill | raise | enospc
    fraction: float = 0.0  # "timed": when, as a share of the reference run's work

    @property
    def label(self) -> str:
        return f"{self.stage}@{self.version[:8]}:{self.point}={self.action}"

    def spec(self) -> str | None:
        """The STREET2SHOP_FAULTS entry (None for a timed kill, which comes from outside)."""
        if self.point == "timed":
            return None
        nth = "#1" if self.point in ("table", "renamed") else ""
        return f"{self.stage}@{self.version}:{self.point}{nth}={self.action}"


def plan_faults(runs: list[StageRun], seed: int, per_stage: int = 5, exceptions: int | None = None) -> list[Fault]:
    """``per_stage`` kills at seeded points of every stage run, in pipeline order (the points
    that publish the stage last), and an exception in ``exceptions`` seeded stage runs (all
    by default): a raised error, or for every second of three a full disk (``ENOSPC``) as a
    table is written. The crawl gets none: its task retries (on purpose) and would succeed."""
    rng = random.Random(seed)
    candidates = [k for k, run in enumerate(runs) if run.stage != "crawl"]
    failing = set(candidates if exceptions is None else rng.sample(candidates, min(exceptions, len(candidates))))
    faults: list[Fault] = []
    for k, run in enumerate(runs):
        # a timed kill needs work long enough to land in (the index of a tiny demo takes 0.01 s)
        reachable = [p for p in KILL_POINTS if (p != "table" or run.tables) and (p != "timed" or run.duration_s >= MIN_TIMED_S)]
        # points after the one that publishes the stage could never be reached again
        terminal = "renamed" if run.outputs == 1 else "published"
        reachable = reachable[: reachable.index(terminal) + 1]
        points = sorted(rng.sample(reachable, min(per_stage, len(reachable))), key=KILL_POINTS.index)
        if k in failing:
            n = sorted(failing).index(k)
            if n % 3 == 1:
                faults.append(Fault(run.stage, run.version, "table", "enospc"))
            else:
                faults.append(Fault(run.stage, run.version, rng.choice(["compute", "table", "computed"]), "raise"))
        faults += [Fault(run.stage, run.version, p, fraction=rng.uniform(*TIMED_RANGE) if p == "timed" else 0.0) for p in points]
    return faults


def read_trace(path: Path) -> list[tuple[str, str, str, int]]:
    """``(stage, version, point, n)`` lines a child wrote (``STREET2SHOP_FAULT_TRACE``)."""
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        stage, version, point, n, _pid = line.split()
        out.append((stage, version, point, int(n)))
    return out


@dataclass
class Child:
    returncode: int | None
    output: str
    trace: list[tuple[str, str, str, int]]
    seconds: float
    killed_from_outside: bool = False


def street2shop() -> str:
    return str(Path(sys.executable).with_name("street2shop"))


def child_env(api_url: str, faults: str | None, trace: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("STREET2SHOP_FAULTS", "STREET2SHOP_FAULT_TRACE")}
    env.update(ONE_THREAD, PREFECT_API_URL=api_url, STREET2SHOP_FAULT_TRACE=str(trace), PREFECT_LOGGING_LEVEL="WARNING")
    if faults:
        env["STREET2SHOP_FAULTS"] = faults
    return env


def start_run(home: Path, config: Path, api_url: str, trace: Path, faults: str | None = None) -> subprocess.Popen:
    trace.unlink(missing_ok=True)
    return subprocess.Popen(
        [street2shop(), "run", "--config", str(config), "--home", str(home)],
        env=child_env(api_url, faults, trace), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,
    )


def finish(proc: subprocess.Popen, trace: Path, started: float, timeout_s: float, killed: bool = False) -> Child:
    try:
        output, _ = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        output, _ = proc.communicate()
        raise AssertionError(f"pipeline run still running after {timeout_s} s:\n{output[-3000:]}") from None
    return Child(proc.returncode, output, read_trace(trace), time.monotonic() - started, killed)


def run_pipeline(home: Path, config: Path, api_url: str, trace: Path, fault: Fault | None = None,
                 duration_s: float = 0.0, timeout_s: float = 900) -> Child:
    """One ``street2shop run`` child; a timed fault is a SIGKILL sent ``fault.fraction`` of
    ``duration_s`` after the child reached that stage's ``compute`` point."""
    started = time.monotonic()
    proc = start_run(home, config, api_url, trace, fault.spec() if fault else None)
    if fault is None or fault.point != "timed":
        return finish(proc, trace, started, timeout_s)
    mark = (fault.stage, fault.version, "compute")
    while proc.poll() is None and not any(t[:3] == mark for t in read_trace(trace)):
        time.sleep(0.01)
    if proc.poll() is None:
        time.sleep(fault.fraction * duration_s)
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:  # it had finished meanwhile: check_fault_step says so
            pass
    return finish(proc, trace, started, timeout_s, killed=True)


def version_folders(home: Path) -> list[Path]:
    root = home / "artifacts"
    return sorted(root.glob("*/*/version=*")) if root.exists() else []


def manifests(home: Path) -> dict[tuple[str, str, str], bytes]:
    """(stage, name, version) -> the manifest's bytes, of every version listed."""
    out = {}
    for folder in version_folders(home):
        path = folder / "_manifest.json"
        if path.exists():
            out[(folder.parts[-3], folder.parts[-2], folder.name.removeprefix("version="))] = path.read_bytes()
    return out


def half_written(home: Path) -> list[str]:
    """Version folders without a manifest (never listed, but they must not exist at all)."""
    return [str(f) for f in version_folders(home) if not (f / "_manifest.json").exists()]


def reference_runs(home: Path, trace: list[tuple[str, str, str, int]]) -> list[StageRun]:
    """The stage runs of an uninterrupted pipeline run, in order, from its trace and store."""
    from street2shop.storage.store import ArtifactStore

    store = ArtifactStore(home)
    runs, seen = [], set()
    for stage, version, point, _ in trace:
        if point == "compute" and (stage, version) not in seen:
            seen.add((stage, version))
            found = [m for m in store.manifests(stage) if m.version == version]
            tables = sum(1 for t in trace if t[:3] == (stage, version, "table"))
            runs.append(StageRun(stage, version, len(found), tables, max(m.duration_s or 0.0 for m in found)))
    return runs


def computed(child: Child) -> list[tuple[str, str]]:
    return list(dict.fromkeys((s, v) for s, v, p, _ in child.trace if p == "compute"))


def published_runs(home: Path, runs: list[StageRun]) -> set[tuple[str, str]]:
    have = Counter((stage, version) for stage, _, version in manifests(home))
    return {(r.stage, r.version) for r in runs if have[(r.stage, r.version)] == r.outputs}


def check_fault_step(fault: Fault, child: Child, before: dict, home: Path, reference: dict, runs: list[StageRun]) -> None:
    """What must hold after one faulted run (raises AssertionError saying what does not)."""
    where = f"after {fault.label}"
    if fault.action == "kill":
        assert child.returncode == -signal.SIGKILL, f"{where}: exit {child.returncode}\n{child.output[-2000:]}"
    else:
        assert child.returncode not in (0, -signal.SIGKILL), f"{where}: exit {child.returncode}"
        expected = "No space left on device" if fault.action == "enospc" else "fault injected at"
        assert expected in child.output, f"{where}: {expected!r} not in the output\n{child.output[-2000:]}"
        if fault.action == "enospc":
            assert "nothing of it was published" in child.output, child.output[-2000:]
    assert not half_written(home), f"{where}: half-written versions {half_written(home)}"
    after = manifests(home)
    assert set(after) <= set(reference), f"{where}: versions the uninterrupted run never made: {set(after) - set(reference)}"
    rewritten = [k for k in before if after.get(k) != before[k]]
    assert not rewritten, f"{where}: published manifests changed or vanished: {rewritten}"
    # the work done: every stage run that was not published, from the first on, and no other
    published_before = {(r.stage, r.version) for r in runs if _complete(before, r.stage, r.version, runs)}
    did = computed(child)
    order = [(r.stage, r.version) for r in runs]
    pending = [sv for sv in order if sv not in published_before]
    assert not set(did) & published_before, f"{where}: redid published stages {set(did) & published_before}"
    assert did == pending[: len(did)], f"{where}: computed {did}, expected a prefix of {pending}"
    target = (fault.stage, fault.version)
    if not child.killed_from_outside:
        assert did and did[-1] == target, f"{where}: the fault's stage did not run last: {did}"


def _complete(found: dict, stage: str, version: str, runs: list[StageRun]) -> bool:
    outputs = next(r.outputs for r in runs if (r.stage, r.version) == (stage, version))
    return sum(1 for s, _, v in found if (s, v) == (stage, version)) == outputs


@dataclass
class Comparison:
    versions: int = 0
    tables: int = 0
    rows: int = 0
    checkpoints: int = 0
    files: int = 0
    differences: list[str] = field(default_factory=list)


def compare_stores(reference: Path, home: Path) -> Comparison:
    """Every version of ``home`` against the same version of ``reference``, by content."""
    import pyarrow.parquet as pq
    import torch

    out = Comparison()
    ref, got = manifests(reference), manifests(home)
    if set(ref) != set(got):
        out.differences.append(f"versions differ: only in the reference {sorted(set(ref) - set(got))}, only here {sorted(set(got) - set(ref))}")
    for stage, name, version in sorted(set(ref) & set(got)):
        out.versions += 1
        a = reference / "artifacts" / stage / name / f"version={version}"
        b = home / "artifacts" / stage / name / f"version={version}"
        names_a = sorted(p.name for p in a.iterdir() if p.name != "_manifest.json")
        names_b = sorted(p.name for p in b.iterdir() if p.name != "_manifest.json")
        if names_a != names_b:
            out.differences.append(f"{stage}/{name}@{version}: files {names_a} vs {names_b}")
            continue
        for filename in names_a:
            fa, fb = a / filename, b / filename
            what = f"{stage}/{name}@{version}/{filename}"
            if filename.endswith(".parquet"):
                ta, tb = pq.read_table(fa), pq.read_table(fb)
                out.tables += 1
                out.rows += ta.num_rows
                if not ta.equals(tb):
                    out.differences.append(f"{what}: table differs ({ta.num_rows} vs {tb.num_rows} rows)")
            elif filename.endswith(".pt"):
                sa, sb = torch.load(fa, weights_only=False), torch.load(fb, weights_only=False)
                out.checkpoints += 1
                if not _same(_untimed(sa), _untimed(sb)):
                    out.differences.append(f"{what}: checkpoint differs")
            else:
                out.files += 1
                if _untimed_bytes(filename, fa.read_bytes()) != _untimed_bytes(filename, fb.read_bytes()):
                    out.differences.append(f"{what}: bytes differ")
    return out


#: a measured wall-clock time: differs between any two runs, so the comparison leaves it out
_TIME_KEY = re.compile(r"(seconds|_ms|ms_per_query)$")
_TIME_CELL = re.compile(rb"<td class='timing'>[^<]*</td>")


def _untimed(value):
    """``value`` without the dict entries whose key names a measured time, at any depth."""
    if isinstance(value, dict):
        return {k: _untimed(v) for k, v in value.items() if not (isinstance(k, str) and _TIME_KEY.search(k))}
    if isinstance(value, (list, tuple)):
        return type(value)(_untimed(v) for v in value)
    return value


def _untimed_bytes(filename: str, data: bytes) -> bytes:
    if filename.endswith(".json"):
        return json.dumps(_untimed(json.loads(data)), sort_keys=True).encode()
    if filename.endswith(".html"):
        return _TIME_CELL.sub(b"<td class='timing'></td>", data)
    return data


def _same(a, b) -> bool:
    import torch

    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return isinstance(b, (list, tuple)) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)
    if isinstance(a, np.ndarray):
        return isinstance(b, np.ndarray) and np.array_equal(a, b)
    return a == b


@dataclass
class FaultReport:
    concurrent_runs: int = 2
    stage_runs: int = 0
    faults: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    runs: int = 0
    comparison: Comparison | None = None
    lost: int = 0
    seconds: float = 0.0
    slowest_run_s: float = 0.0


def reference_pipeline(base: Path, config: Path, api_url: str, timeout_s: float = 900) -> tuple[Path, list[StageRun], Child, Child]:
    """Two runs started at once on a fresh store: the uninterrupted reference."""
    home = base / "reference"
    started = time.monotonic()
    procs = [start_run(home, config, api_url, base / f"reference-{i}.trace") for i in range(2)]
    first, second = (finish(p, base / f"reference-{i}.trace", started, timeout_s) for i, p in enumerate(procs))
    for child in (first, second):
        assert child.returncode == 0, child.output[-3000:]
    # one of them did the work; the lock made the other wait for it and then skip everything
    worker, waiter = (first, second) if computed(first) else (second, first)
    assert computed(worker) and not computed(waiter), (computed(first), computed(second))
    assert "waiting for" in waiter.output and "another run works on this store" in waiter.output, waiter.output[-3000:]
    return home, reference_runs(home, worker.trace), worker, waiter


def run_fault_plan(base: Path, config: Path, api_url: str, faults: list[Fault] | None = None, *, seed: int = 0,
                   per_stage: int = 5, exceptions: int | None = None, chains: int = 1, reference: tuple | None = None,
                   log=print) -> FaultReport:
    """The whole ``faults`` benchmark (see the module docstring); AssertionError on a failure.

    ``chains``: the faults are split (by stage run, round robin) over this many stores, each
    worked through by its own sequence of runs, the sequences side by side: a child run is
    mostly one busy core, so two chains use a 2-core machine's both.
    """
    t0 = time.monotonic()
    report = FaultReport()
    ref_home, runs, *_ = reference or reference_pipeline(base, config, api_url)
    report.runs += 2
    ref_manifests = manifests(ref_home)
    report.stage_runs = len(runs)
    if faults is None:
        faults = plan_faults(runs, seed, per_stage, exceptions)
    order = [(r.stage, r.version) for r in runs]
    groups = [[f for f in faults if order.index((f.stage, f.version)) % chains == c] for c in range(chains)]
    durations = {(r.stage, r.version): r.duration_s for r in runs}
    lock = threading.Lock()
    failures: list[BaseException] = []

    def chain(c: int, plan: list[Fault]) -> None:
        home = base / f"faulted-{c}"
        try:
            for i, fault in enumerate(plan):
                before = manifests(home)
                if _complete(before, fault.stage, fault.version, runs):
                    # a timed kill that landed after its stage had published it: the stage's
                    # later faults have nothing left to interrupt
                    with lock:
                        report.skipped.append(fault.label)
                    log(f"  [{c}] {fault.label:<44} skipped: the stage was already published")
                    continue
                child = run_pipeline(home, config, api_url, base / f"fault-{c}-{i}.trace", fault, durations[(fault.stage, fault.version)])
                check_fault_step(fault, child, before, home, ref_manifests, runs)
                with lock:
                    report.runs += 1
                    report.slowest_run_s = max(report.slowest_run_s, child.seconds)
                    report.faults.append(fault.label)
                    log(f"  [{c}] {fault.label:<44} exit {child.returncode:>4}  computed {[f'{s}@{v[:8]}' for s, v in computed(child)]}")
            last = run_pipeline(home, config, api_url, base / f"final-{c}.trace")
            assert last.returncode == 0, last.output[-3000:]
            comparison = compare_stores(ref_home, home)
            with lock:
                report.runs += 1
                if report.comparison is None:
                    report.comparison = comparison
                else:
                    for key in ("versions", "tables", "rows", "checkpoints", "files"):
                        setattr(report.comparison, key, getattr(report.comparison, key) + getattr(comparison, key))
                    report.comparison.differences += comparison.differences
                report.lost += len(set(ref_manifests) - set(manifests(home))) + len(comparison.differences)
        except BaseException as exc:  # noqa: BLE001 - re-raised below, in the caller's thread
            failures.append(exc)

    threads = [threading.Thread(target=chain, args=(c, plan)) for c, plan in enumerate(groups) if plan]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if failures:
        raise failures[0]
    report.seconds = round(time.monotonic() - t0, 1)
    return report


def faults_bench(seed: int = 0, per_stage: int = 5, chains: int = 3) -> dict:
    """The ``faults`` benchmark on the tiny demo (see the module docstring); its figures."""
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    from street2shop.flows.demo import TINY, demo_config, serving_demo_shop

    base = Path(tempfile.mkdtemp(prefix="s2s-faults-"))
    with prefect_test_harness(server_startup_timeout=180), serving_demo_shop(base / "shop", TINY) as (shop_dir, url):
        config = base / "config.yaml"
        demo_config(shop_dir, url, TINY, progress=False).to_file(config)
        report = run_fault_plan(base, config, PREFECT_API_URL.value(), seed=seed, per_stage=per_stage, chains=chains)
    c = report.comparison
    return {
        "bench": "reliability.faults", "seed": seed, "per_stage": per_stage, "chains": chains, "faults": len(report.faults),
        "kills": sum(f.endswith("=kill") for f in report.faults), "exceptions": sum(f.endswith("=raise") for f in report.faults),
        "full_disks": sum(f.endswith("=enospc") for f in report.faults), "stage_runs": report.stage_runs,
        "skipped": report.skipped, "runs": report.runs, "versions_compared": c.versions, "tables_compared": c.tables, "rows_compared": c.rows,
        "checkpoints_compared": c.checkpoints, "other_files_compared": c.files, "differences": c.differences,
        "data_lost": report.lost, "seconds": report.seconds, "slowest_run_s": round(report.slowest_run_s, 1),
        "load_avg": os.getloadavg(), "base": str(base),
    }


# ---------------------------------------------------------------------------------------
# the soak

TOKEN = "soak-admin-token-" + "0" * 8


def tiny_store(home: Path) -> tuple[str, str]:
    """The service tests' tiny store (tests/service/service_testing.py) with two indexes:
    ``(served first, newer)`` index versions."""
    sys.path.insert(0, str(REPO / "tests" / "service"))
    from service_testing import publish_crawl, publish_index

    from street2shop.storage.store import ArtifactStore

    store = ArtifactStore(home)
    images = publish_crawl(store)
    first = publish_index(store, images, seed=0)
    time.sleep(0.01)  # a later created_at: the newest
    second = publish_index(store, images, seed=1)
    return first.version, second.version


def serve_forever(home: str, port: int, index_version: str | None) -> None:
    import uvicorn

    from street2shop.service.app import create_app

    app = create_app(home, index_version, admin_token=TOKEN)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="error")


@dataclass
class Request:
    name: str
    method: str
    path: str
    body: bytes | None
    headers: dict[str, str]
    expect: frozenset[int]
    normal: bool = False  # a shopper's photo search (its latency is the one reported)


def upload(name: str, data: bytes, filename: str, ctype: str, expect: frozenset[int], normal: bool = False, k: int = 20) -> Request:
    boundary = uuid.uuid4().hex
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="{filename}"\r\nContent-Type: {ctype}\r\n\r\n'
    ).encode() + data + f"\r\n--{boundary}--\r\n".encode()
    return Request(name, "POST", f"/search?k={k}", body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}, expect, normal)


def request_mix(home: Path, hostile_share: float) -> tuple[list[Request], list[float]]:
    """What the clients send, with weights: a customer photo, the hostile corpus, lookups."""
    from street2shop.storage.promotions import latest_index
    from street2shop.storage.store import ArtifactStore

    store = ArtifactStore(home)
    index = store.manifest(latest_index(store))
    images_ref = next(r for r in index.inputs if r.name == "images")
    rows = store.read_table(images_ref).to_pylist()
    street = next(r for r in rows if r["role"] == "street")
    item = rows[0]["item_id"]
    photo = (store.home / street["path"]).read_bytes()
    ok = frozenset({200})
    normal = [upload("customer photo", photo, "q.jpg", "image/jpeg", ok, normal=True)]
    lookups = [
        Request("item", "GET", f"/items/{item}", None, {}, ok),
        Request("photo bytes", "GET", f"/images/{rows[0]['image_id']}", None, {}, ok),
        Request("health", "GET", "/health", None, {}, ok),
        Request("unknown item", "GET", "/items/..%2F..%2Fetc%2Fpasswd", None, {}, frozenset({404})),
    ]
    hostile = [upload(h.name, h.data, h.filename, h.content_type, h.expect) for h in _hostile.corpus()]
    requests = normal + lookups + hostile
    weights = [1 - hostile_share - 0.1] + [0.1 / len(lookups)] * len(lookups) + [hostile_share / len(hostile)] * len(hostile)
    return requests, weights


@dataclass
class LoadResult:
    requests: int = 0
    by_status: Counter = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    normal_ms: list[float] = field(default_factory=list)
    slowest_ms: float = 0.0
    slowest: str = ""
    hostile_sent: int = 0


def load_mix(base: str, requests: list[Request], weights: list[float], clients: int, duration_s: float,
             stop: threading.Event | None = None, seed: int = 0) -> LoadResult:
    """``clients`` keep-alive clients sending the weighted mix until ``duration_s`` (or ``stop``)."""
    result = LoadResult()
    lock = threading.Lock()
    deadline = time.monotonic() + duration_s
    host, port = base.removeprefix("http://").rsplit(":", 1)

    def client(k: int) -> None:
        rng = random.Random(seed * 1000 + k)
        conn = http.client.HTTPConnection(host, int(port), timeout=60)
        try:
            while time.monotonic() < deadline and not (stop and stop.is_set()):
                r = rng.choices(requests, weights)[0]
                start = time.perf_counter()
                try:
                    conn.request(r.method, r.path, body=r.body, headers=r.headers)
                    response = conn.getresponse()
                    payload = response.read()
                    status = response.status
                    why = None if status in r.expect else f"{r.name}: {status} {payload[:200]!r}"
                    if response.getheader("connection", "").lower() == "close":
                        conn.close()
                except (OSError, http.client.HTTPException) as exc:
                    status, why = -1, f"{r.name}: {type(exc).__name__}: {exc}"
                    conn.close()
                elapsed = 1000 * (time.perf_counter() - start)
                with lock:
                    result.requests += 1
                    result.by_status[status] += 1
                    result.hostile_sent += not r.normal and r.method == "POST"
                    if why:
                        result.errors.append(why)
                    elif r.normal:
                        result.normal_ms.append(elapsed)
                    if elapsed > result.slowest_ms:
                        result.slowest_ms, result.slowest = elapsed, r.name
        finally:
            conn.close()

    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return result


def _summary(r: LoadResult) -> dict:
    lat = np.asarray(r.normal_ms)
    return {
        "requests": r.requests, "errors": len(r.errors), "first_errors": r.errors[:5],
        "by_status": {str(k): v for k, v in sorted(r.by_status.items())}, "hostile_uploads": r.hostile_sent,
        "search_p50_ms": round(float(np.percentile(lat, 50)), 1) if lat.size else None,
        "search_p99_ms": round(float(np.percentile(lat, 99)), 1) if lat.size else None,
        "slowest_ms": round(r.slowest_ms, 1), "slowest_request": r.slowest,
    }


def soak(home: Path | None, clients: int, duration_s: float, reload_window_s: float, hostile_share: float = 0.2,
         rss_every_s: float = 10.0, ready_timeout_s: float = 600) -> dict:
    """The soak (see the module docstring), with the server in a subprocess; the figures."""
    home, _, newer, server, base = start_server(home)
    port = int(base.rsplit(":", 1)[1])
    try:
        serve_bench.wait_ready(base, server, ready_timeout_s)
        requests, weights = request_mix(home, hostile_share)
        load_mix(base, requests, weights, min(clients, 8), min(20.0, duration_s / 10), seed=99)  # warm-up
        rss: list[tuple[float, float]] = [(0.0, round(serve_bench.rss_mb(server.pid), 1))]
        done = threading.Event()
        t0 = time.monotonic()

        def sample() -> None:
            while not done.wait(rss_every_s):
                rss.append((round(time.monotonic() - t0, 1), round(serve_bench.rss_mb(server.pid), 1)))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        main = load_mix(base, requests, weights, clients, duration_s)
        rss.append((round(time.monotonic() - t0, 1), round(serve_bench.rss_mb(server.pid), 1)))
        # the reload under load: clients keep going while the newer index is switched in
        reloads: list[dict] = []
        window: dict = {}

        def reload_during_load() -> None:
            time.sleep(reload_window_s / 3)
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
            conn.request("POST", "/admin/reload", headers={"X-Admin-Token": TOKEN})
            response = conn.getresponse()
            reloads.append({"status": response.status, **json.loads(response.read())})

        reloader = threading.Thread(target=reload_during_load)
        reloader.start()
        during = load_mix(base, requests, weights, clients, reload_window_s, seed=7)
        reloader.join()
        done.set()
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.request("GET", "/health")
        health = json.loads(conn.getresponse().read())
        window = _summary(during)
    finally:
        server.terminate()
        server.wait(timeout=60)
    rss_mb = [mb for _, mb in rss]
    return {
        "bench": "reliability.soak", "clients": clients, "duration_s": duration_s, "hostile_share": hostile_share,
        "hostile_files": len(_hostile.corpus()), **_summary(main),
        "rss_start_mb": round(rss_mb[0], 1), "rss_end_mb": rss_mb[-1], "rss_max_mb": max(rss_mb), "rss_samples": rss,
        "reload": reloads[0] if reloads else None, "served_after_reload": health.get("index"), "newer_index": newer,
        "during_reload": window, "load_avg": os.getloadavg(), "home": str(home),
    }


def start_server(home: Path | None) -> tuple[Path, str, str | None, subprocess.Popen, str]:
    """A server subprocess on a free loopback port over ``home`` (else a tiny store made
    here): ``(home, index served, a newer index or None, process, base URL)``."""
    if home is None:
        home = Path(tempfile.mkdtemp(prefix="s2s-reliability-"))
        first, newer = tiny_store(home)
    else:
        from street2shop.storage.promotions import index_to_serve
        from street2shop.storage.store import ArtifactStore

        first, newer = index_to_serve(ArtifactStore(home)).version, None
    port = serve_bench.free_port()
    server = subprocess.Popen([sys.executable, __file__, "serve", "--home", str(home), "--port", str(port), "--index-version", first])
    return home, first, newer, server, f"http://127.0.0.1:{port}"


@dataclass
class Attack:
    """What the ``hostile`` benchmark saw."""

    tried: Counter = field(default_factory=Counter)  # by kind of attack
    by_status: Counter = field(default_factory=Counter)
    unexpected: list[str] = field(default_factory=list)
    slowest_ms: float = 0.0
    slowest: str = ""

    def note(self, kind: str, name: str, status: int | None, expect, started: float, why: str | None = None) -> None:
        ms = 1000 * (time.perf_counter() - started)
        self.tried[kind] += 1
        self.by_status[status] += 1
        if why is None and status not in expect:
            why = f"{status}, expected {sorted(s for s in expect if s is not None)}"
        if why:
            self.unexpected.append(f"{kind} {name[:80]}: {why}")
        if ms > self.slowest_ms:
            self.slowest_ms, self.slowest = ms, f"{kind}: {name[:60]}"


def hostile(home: Path | None = None, fuzz_examples: int = 50, ready_timeout_s: float = 600) -> dict:
    """Every attack of ``tests/reliability/test_api_hostile.py`` on a server subprocess, at
    a larger size: the corpus, path traversal on every path, a 150 MB body declared and
    streamed, 200 files in a form, and schema-driven fuzzing of every operation
    (``fuzz_examples`` valid and as many invalid requests each). Every answer must be one
    of the expected ones; the service must still search afterwards."""
    import schemathesis
    from hypothesis import HealthCheck, given, settings
    from hypothesis.errors import Unsatisfiable
    from schemathesis import GenerationMode

    home, _, _, server, base = start_server(home)
    attack = Attack()
    try:
        serve_bench.wait_ready(base, server, ready_timeout_s)
        rss_before = serve_bench.rss_mb(server.pid)
        requests, _ = request_mix(home, 0.2)
        photo = next(r for r in requests if r.normal)
        for h in _hostile.corpus():
            t = time.perf_counter()
            status, _, body = _hostile.search(base, h.data, h.filename, h.content_type)
            why = "a stack trace in the body" if b"Traceback" in body else None
            attack.note("file", h.name, status, h.expect, t, why)
        for template in _hostile.TEMPLATES:
            for payload in _hostile.TRAVERSALS:
                t = time.perf_counter()
                status, _, body = _hostile.request(base, "GET", template.format(payload))
                attack.note("traversal", template.format(payload[:40]), status, _hostile.TRAVERSAL_EXPECT, t,
                            "served /etc/passwd" if b"root:" in body else None)
        t = time.perf_counter()
        status, _ = _hostile.declared_huge_upload(base)
        attack.note("oversized", "150 MB declared", status, {413}, t)
        t = time.perf_counter()
        sent, status, _ = _hostile.chunked_huge_upload(base)
        limit = 20_000_000 + 64 * 1024 + 32 * (1 << 20)  # the API's limit + multipart + what the kernel buffers
        attack.note("oversized", "150 MB chunked", status, {413, None}, t,
                    f"{sent >> 20} MB read before it stopped" if sent > limit else None)
        t = time.perf_counter()
        body, ctype = _hostile.many_files(photo.body, 200)
        status, _, _ = _hostile.request(base, "POST", "/search", body, {"Content-Type": ctype})
        attack.note("oversized", "200 files in one form", status, {400}, t)

        schema = schemathesis.openapi.from_url(f"{base}/openapi.json")
        checks = _hostile.fuzz_checks()
        for operation in (result.ok() for result in schema.get_all_operations()):
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                name = f"{operation.method.upper()} {operation.path} ({mode.value})"

                @given(case=operation.as_strategy(generation_mode=mode))
                @settings(max_examples=fuzz_examples, deadline=None, derandomize=True, database=None,
                          suppress_health_check=list(HealthCheck))
                def fuzz(case) -> None:
                    t = time.perf_counter()
                    try:
                        response = case.call(timeout=60)
                    except Exception as exc:  # noqa: BLE001 - a hang or a dropped connection is a finding
                        attack.note("fuzzed", name, None, set(), t, f"{type(exc).__name__}: {exc}")
                        return
                    try:
                        case.validate_response(response, checks=checks)
                        why = None
                    except Exception as exc:  # noqa: BLE001 - schemathesis raises one per failed check
                        why = f"{response.status_code}: {str(exc).splitlines()[0][:200]}"
                    attack.note("fuzzed", name, response.status_code, {response.status_code}, t, why)

                try:
                    fuzz()
                except Unsatisfiable:  # no parameter that could be invalid
                    pass
        # still serving: a shopper's search finds results
        status, _, body = _hostile.request(base, "POST", photo.path, photo.body, photo.headers)
        still = status == 200 and bool(json.loads(body)["results"])
        rss_after = serve_bench.rss_mb(server.pid)
    finally:
        server.terminate()
        server.wait(timeout=60)
    return {
        "bench": "reliability.hostile", "fuzz_examples": fuzz_examples, "tried": sum(attack.tried.values()),
        "tried_by_kind": dict(attack.tried), "by_status": {str(k): v for k, v in sorted(attack.by_status.items(), key=str)},
        "server_errors": sum(v for k, v in attack.by_status.items() if k is not None and k >= 500),
        "unexpected": len(attack.unexpected), "first_unexpected": attack.unexpected[:10],
        "slowest_ms": round(attack.slowest_ms, 1), "slowest_request": attack.slowest, "still_serving": still,
        "rss_before_mb": round(rss_before, 1), "rss_after_mb": round(rss_after, 1), "load_avg": os.getloadavg(),
    }


# ---------------------------------------------------------------------------------------
# the table

#: what ``python bench/reliability.py`` runs, at full size and with ``--quick``
SIZES = {
    "full": {"per_stage": 5, "fuzz_examples": 100, "clients": 50, "duration": 600.0, "reload_window": 30.0},
    "quick": {"per_stage": 2, "fuzz_examples": 30, "clients": 50, "duration": 60.0, "reload_window": 20.0},
}


def table(f: dict, h: dict, s: dict, size: dict) -> str:
    """The figures of the three benchmarks as one markdown table, each row with its command."""
    faults_cmd = f"`python bench/reliability.py faults --per-stage {f['per_stage']} --seed {f['seed']}`"
    hostile_cmd = f"`python bench/reliability.py hostile --fuzz-examples {h['fuzz_examples']}`"
    soak_cmd = f"`python bench/reliability.py soak --clients {s['clients']} --duration {s['duration_s']:g}`"
    during = s["during_reload"]
    soak_5xx = sum(v for k, v in {**s["by_status"]}.items() if k.isdigit() and int(k) >= 500)
    soak_5xx += sum(v for k, v in during["by_status"].items() if k.isdigit() and int(k) >= 500)
    kinds = h["tried_by_kind"]
    rows = [
        ("faults injected", f"{f['faults']}: {f['kills']} SIGKILLs (at named points and timed from outside), "
         f"{f['exceptions']} exceptions, {f['full_disks']} full disks (ENOSPC), in all {f['stage_runs']} stage runs", "", faults_cmd),
        ("pipeline runs", f"{f['runs']} (2 of them at once on one store: one waits for the lock, then skips every stage)", "", faults_cmd),
        ("compared with an uninterrupted run", f"{f['versions_compared']} versions: {f['tables_compared']} Parquet tables "
         f"({f['rows_compared']:,} rows), {f['checkpoints_compared']} checkpoints (tensors), {f['other_files_compared']} other "
         f"files (bytes); {len(f['differences'])} differences", "0 differences", faults_cmd),
        ("data lost", str(f["data_lost"]), "0", faults_cmd),
        ("hostile inputs tried", f"{h['tried']:,}: {kinds.get('file', 0)} hostile files, {kinds.get('traversal', 0)} path "
         f"traversals, {kinds.get('oversized', 0)} oversized requests, {kinds.get('fuzzed', 0):,} fuzzed from the OpenAPI schema; "
         f"{h['unexpected']} unexpected answers", "0 unexpected", hostile_cmd),
        ("5xx seen", f"{h['server_errors']} under attack, {soak_5xx} in the soak", "0", f"{hostile_cmd}, {soak_cmd}"),
        ("longest request under attack", f"{h['slowest_ms']:,.0f} ms ({h['slowest_request']}); in the soak "
         f"{s['slowest_ms']:,.0f} ms ({s['slowest_request']})", "no hang", f"{hostile_cmd}, {soak_cmd}"),
        ("soak", f"{s['requests'] + during['requests']:,} requests from {s['clients']} clients in {s['duration_s']:g} s + "
         f"{size['reload_window']:g} s, {s['hostile_uploads'] + during['hostile_uploads']:,} of them hostile uploads; "
         f"{s['errors'] + during['errors']} unexpected answers; search p50 {s['search_p50_ms']} ms, p99 {s['search_p99_ms']} ms",
         "0 unexpected", soak_cmd),
        ("reload under load", f"{during['errors']} failed of {during['requests']:,} requests; served "
         f"{'the newer index' if s['served_after_reload'] == s['newer_index'] else s['served_after_reload']} after",
         "0 failed", soak_cmd),
        ("server memory, before / after the soak", f"{s['rss_start_mb']:,.0f} / {s['rss_end_mb']:,.0f} MB "
         f"(max {s['rss_max_mb']:,.0f})", "flat", soak_cmd),
    ]
    lines = ["| what | figure | goal | command |", "|---|---|---|---|"]
    lines += [f"| {what} | {figure} | {goal} | {cmd} |" for what, figure, goal, cmd in rows]
    return "\n".join(lines)


def all_main(args: argparse.Namespace) -> None:
    size = SIZES["quick" if args.quick else "full"]
    print(f"reliability ({'quick' if args.quick else 'full'}): {size}", file=sys.stderr)
    f = faults_bench(args.seed, size["per_stage"], args.chains)
    emit(f, args.json)
    h = hostile(None, size["fuzz_examples"])
    emit(h, args.json)
    s = soak(None, size["clients"], size["duration"], size["reload_window"])
    emit(s, args.json)
    print(table(f, h, s, size))
    failed = f["data_lost"] + h["unexpected"] + (not h["still_serving"]) + s["errors"] + s["during_reload"]["errors"]
    sys.exit(1 if failed else 0)


def soak_main(args: argparse.Namespace) -> None:
    record = soak(args.home, args.clients, args.duration, args.reload_window, args.hostile_share, args.rss_every)
    emit(record, args.json)
    lost = record["errors"] + record["during_reload"]["errors"]
    print(f"\n{record['requests'] + record['during_reload']['requests']} requests, {lost} unexpected answers; "
          f"search p50 {record['search_p50_ms']} ms, p99 {record['search_p99_ms']} ms; slowest {record['slowest_ms']} ms "
          f"({record['slowest_request']}); server RSS {record['rss_start_mb']} -> {record['rss_end_mb']} MB "
          f"(max {record['rss_max_mb']}); reload: {record['reload']}", file=sys.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="everything at a small size (minutes, not half an hour)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--chains", type=int, default=3, help="stores the faults are worked through on, side by side")
    parser.add_argument("--json", help="append the results to this file")
    sub = parser.add_subparsers(dest="command")
    f = sub.add_parser("faults", help="kill and fail every pipeline stage; compare with an uninterrupted run")
    f.add_argument("--seed", type=int, default=0)
    f.add_argument("--per-stage", type=int, default=5, help="kills per stage run")
    f.add_argument("--chains", type=int, default=3, help="stores worked through side by side")
    f.add_argument("--json", help="append the result to this file")
    h = sub.add_parser("hostile", help="the hostile corpus, path traversal, oversized requests and schema fuzzing")
    h.add_argument("--home", type=Path, help="a store with a published index (default: a tiny one made here)")
    h.add_argument("--fuzz-examples", type=int, default=100, help="valid and invalid requests per operation")
    h.add_argument("--json")
    s = sub.add_parser("soak", help="many clients, hostile files mixed in, then a reload under load")
    s.add_argument("--home", type=Path, help="a store with a published index (default: a tiny one made here)")
    s.add_argument("--clients", type=int, default=50)
    s.add_argument("--duration", type=float, default=600)
    s.add_argument("--reload-window", type=float, default=30, help="seconds of load around the reload")
    s.add_argument("--hostile-share", type=float, default=0.2)
    s.add_argument("--rss-every", type=float, default=10)
    s.add_argument("--json")
    v = sub.add_parser("serve", help=argparse.SUPPRESS)  # internal: the benchmarks' server process
    v.add_argument("--home", required=True)
    v.add_argument("--port", type=int, required=True)
    v.add_argument("--index-version")
    args = parser.parse_args()
    if args.command is None:
        all_main(args)
    elif args.command == "faults":
        emit(faults_bench(args.seed, args.per_stage, args.chains), args.json)
    elif args.command == "hostile":
        record = hostile(args.home, args.fuzz_examples)
        emit(record, args.json)
        sys.exit(1 if record["unexpected"] or not record["still_serving"] else 0)
    elif args.command == "soak":
        soak_main(args)
    else:
        serve_forever(args.home, args.port, args.index_version)


if __name__ == "__main__":
    main()
