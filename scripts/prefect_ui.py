"""Watch a pipeline run in the Prefect UI on one machine, and screenshot it (README's pictures).

Starts ``prefect server start`` (its own PREFECT_HOME, loopback port), runs ``street2shop
demo`` against it with ``PREFECT_API_URL``, counts the flow runs and the figures artifacts
through Prefect's client, and with ``--screenshots`` saves the run graph and the evaluate
stage's figures from the UI, rendered by Debian's Chromium through playwright::

    python scripts/prefect_ui.py --home /tmp/ui-home --screenshots docs/        # the default demo
    python scripts/prefect_ui.py --home /tmp/ui-home -- --backbone tiny --garments procedural --products 16

Everything after ``--`` goes to ``street2shop demo``. Prints one JSON line: flow runs by
name and state, artifacts by key.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic"]  # fmt: skip


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(url: str, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(1)
    raise TimeoutError(f"{url} did not answer within {timeout:.0f} s")


def _post(url: str, body: dict) -> list[dict]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as r:
        return json.loads(r.read())


def summary(api: str) -> dict:
    """Flow runs (name, state) and artifacts (key) the server holds, from its REST API."""
    runs = _post(f"{api}/flow_runs/filter", {"limit": 200})
    flows = {f["id"]: f["name"] for f in _post(f"{api}/flows/filter", {"limit": 200})}
    artifacts = _post(f"{api}/artifacts/filter", {"limit": 200})
    named = [(flows.get(r["flow_id"], r["flow_id"]), r) for r in runs]
    return {
        "flow_runs": sorted(f"{name}:{r['state_name']}" for name, r in named),
        "artifacts": sorted(a["key"] for a in artifacts if a.get("key")),
        "pipeline_run": next((r["id"] for name, r in named if name == "street2shop"), None),
        "evaluate_run": next((r["id"] for name, r in named if name == "evaluate"), None),
        # the newest evaluate figures artifact: its own page renders the markdown table
        "evaluate_artifact": next((a["id"] for a in sorted(artifacts, key=lambda a: a.get("created") or "", reverse=True)
                                   if a.get("key") == "evaluate-figures"), None),
    }


def screenshots(ui: str, found: dict, out: Path) -> list[str]:
    from playwright.sync_api import sync_playwright

    out.mkdir(parents=True, exist_ok=True)
    shots = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        pages = {"prefect-run-graph.png": f"{ui}/runs/flow-run/{found['pipeline_run']}", "prefect-evaluate-figures.png": f"{ui}/artifacts/artifact/{found['evaluate_artifact']}"}
        for name, url in pages.items():
            page.goto(url, wait_until="networkidle")
            time.sleep(3)  # the graph lays itself out after the data arrives
            page.screenshot(path=str(out / name), full_page=False)
            shots.append(str(out / name))
        browser.close()
    return shots


def main() -> None:
    argv = sys.argv[1:]
    demo_args = argv[argv.index("--") + 1 :] if "--" in argv else []
    argv = argv[: argv.index("--")] if "--" in argv else argv
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--home", type=Path, required=True)
    ap.add_argument("--screenshots", type=Path, help="folder for the PNGs (default: none taken)")
    args = ap.parse_args(argv)

    port = free_port()
    env = dict(os.environ, PREFECT_HOME=tempfile.mkdtemp(prefix="prefect-ui-"), PREFECT_SERVER_ANALYTICS_ENABLED="false",
               PREFECT_UI_API_URL=f"http://127.0.0.1:{port}/api")  # the UI asks this API, not 4200
    server = subprocess.Popen(["prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
    api, ui = f"http://127.0.0.1:{port}/api", f"http://127.0.0.1:{port}"
    try:
        wait_for(f"{api}/health")
        started = time.perf_counter()
        demo = subprocess.run(["street2shop", "demo", "--home", str(args.home), *demo_args], env=dict(env, PREFECT_API_URL=api))
        found = summary(api) | {"demo_exit": demo.returncode, "demo_s": round(time.perf_counter() - started, 1)}
        if args.screenshots is not None:
            found["screenshots"] = screenshots(ui, found, args.screenshots)
        print(json.dumps(found))
    finally:
        os.killpg(server.pid, 15)
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
