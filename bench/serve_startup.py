"""How soon ``street2shop serve`` answers: the first ``/health`` (``warming``), the ``serving on``
line, and ``/health`` saying ``ok`` (model loaded and warm), from the moment the command starts.

    python bench/serve_startup.py --home .street2shop              # the demo's store
    python bench/serve_startup.py --home .street2shop --runs 5 --json

Each run starts a fresh ``street2shop serve`` on a free loopback port and polls ``/health``
every 10 ms. Also ``street2shop --help`` and ``import street2shop.cli``, side by side with a bare
``python -c pass``, so a loaded machine's slowness shows as a ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request

import psutil


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def health(port: int) -> dict | None:
    """The service's /health answer on a loopback port, or None while nothing answers."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as answer:
            return json.loads(answer.read())
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return None


def one_start(home: str, extra: list[str]) -> dict[str, float]:
    port = free_port()
    env = {**os.environ, "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    t0 = time.monotonic()
    server = subprocess.Popen([shutil.which("street2shop"), "serve", "--home", home, "--port", str(port), *extra],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    first = ok = first_cpu = None
    process = psutil.Process(server.pid)
    try:
        while ok is None and time.monotonic() - t0 < 300 and server.poll() is None:
            status = health(port)
            now = time.monotonic() - t0
            if status is not None and first is None:
                first = now
                cpu = process.cpu_times()  # what the server had used by then: less noisy under load
                first_cpu = cpu.user + cpu.system
            if status is not None and status.get("status") == "ok":
                ok = now
            time.sleep(0.01)
        server.stdout.readline()
        serving_line = time.monotonic() - t0  # an upper bound: read after the first answer
    finally:
        server.terminate()
        server.wait(timeout=30)
    return {"first_health_s": first, "first_health_cpu_s": first_cpu, "ok_s": ok, "serving_line_read_s": serving_line}


def command_time(args: list[str], runs: int, env: dict | None = None) -> tuple[float, float]:
    """Median wall and CPU (user + system) seconds of a command; CPU time is what a loaded
    machine changes least."""
    walls, cpus = [], []
    for _ in range(runs):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.monotonic()
        # not from a checkout: `python -c` puts the working folder first on sys.path
        subprocess.run(args, capture_output=True, check=True, env=env, cwd="/")
        walls.append(time.monotonic() - t0)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return statistics.median(walls), statistics.median(cpus)


def help_times(runs: int, compare: str | None) -> dict[str, float]:
    """``street2shop --help`` (and, with ``compare``, the CLI package found first under that
    folder, e.g. a checkout of main), interleaved run by run, beside ``python -c pass``."""
    ours = [sys.executable, "-c", "from street2shop.cli import app; app()", "--help"]
    out: dict[str, list] = {"help": [], "python_pass": [], "import_cli": [], "help_compared": []}
    for _ in range(runs):
        out["help"].append(command_time(ours, 1))
        out["python_pass"].append(command_time([sys.executable, "-c", "pass"], 1))
        out["import_cli"].append(command_time([sys.executable, "-c", "import street2shop.cli"], 1))
        if compare:
            out["help_compared"].append(command_time(ours, 1, env={**os.environ, "PYTHONPATH": compare}))
    result = {}
    for name, pairs in out.items():
        if pairs:
            result[f"{name}_wall_s"] = statistics.median(p[0] for p in pairs)
            result[f"{name}_cpu_s"] = statistics.median(p[1] for p in pairs)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", help="a store with a published index (the demo's: .street2shop); none: --help only")
    parser.add_argument("--compare-cli", help="a checkout whose street2shop/cli to time beside this one (e.g. /work/main)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("serve_args", nargs="*", help="more arguments for serve, after --")
    args = parser.parse_args()
    result: dict = {"home": args.home, "runs": args.runs, "load_average_1min": os.getloadavg()[0]}
    if args.home:
        starts = [one_start(args.home, args.serve_args) for _ in range(args.runs)]
        oks = [s["ok_s"] for s in starts if s["ok_s"] is not None]
        result |= {
            "first_health_s_median": statistics.median(s["first_health_s"] for s in starts),
            "first_health_s_max": max(s["first_health_s"] for s in starts),
            "first_health_cpu_s_median": statistics.median(s["first_health_cpu_s"] for s in starts),
            "ok_s_median": statistics.median(oks) if oks else None,
        }
    result |= help_times(max(args.runs, 5), args.compare_cli)
    if args.json:
        print(json.dumps(result, indent=2))
        return
    for key, value in result.items():
        print(f"{key:24s} {value:.3f}" if isinstance(value, float) else f"{key:24s} {value}")


if __name__ == "__main__":
    main()
