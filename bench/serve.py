"""Serving benchmark: ``POST /search`` latency under concurrent load, over loopback.

Starts the service (uvicorn, one process, ``create_app`` on ``--home``) in a subprocess, waits
until it is healthy and its reverse-search vectors are built (so background embedding does not
compete with the measurement), then sends one photo from ``--clients`` concurrent clients in
this process until ``--requests`` requests or ``--duration`` seconds, whichever comes first.
Each request is the whole path a shopper's photo takes: upload, decode, preprocess, embed,
search, JSON. Reports client-side p50/p99 latency, throughput, errors, and the server's RSS
after a warm-up and at the end (memory should stay flat).

    python bench/serve.py --home /tmp/demo-home --clients 10 --requests 2000
    python bench/serve.py --home /tmp/e2e --clients 10 --requests 10000 --duration 600

``--batch-max 1,16`` runs the whole measurement once per micro-batching setting (a fresh
server each), so with and without batching are compared in one run on the same machine
state; ``--inference-mode`` picks the model backend the same way (``models/fast.py``;
comma-separated to compare, e.g. ``openvino,openvino_bf16``), and ``--streams`` the number
of inference streams (every mode x streams x batch setting is run). ``--repeats N`` measures
each setting N times, interleaved, and adds a table of medians: on a shared 2-core VM the
same setting can move by 20 % from one minute to the next. The server's CPU time and the
load generator's, per request, say where the two cores went, and the server's is split by
what its threads do (event loop, request threads, batching threads, the inference backend's
own pool; ``server_cpu_ms_by_thread``). While loading, the server's
RSS is sampled every ``--rss-every`` seconds (``rss_samples``: [requests done, MB]) so a
leak shows as a trend rather than a single end-point.

    python bench/serve.py --home /tmp/demo-home --clients 10 --requests 500 --batch-max 1,16

``--localise none,multicrop,boxhead,boxhead_pooled`` compares query localisations side by
side, each in a fresh server on the same store: the whole photo (1 pass), the 11-crop grid,
and the learned localiser as the evaluate stage scores it (the one-pass search: the whole
photo's pass gives the map, then the box crop's pass, or the box pooled from the map).
``--localiser`` names the localise/localiser store ref; without it a **random-init stand-in**
box head on the served backbone's map (at the localise stage's 224 px input) is published
into the store as ``localise/localiser@stand-in-random-init`` (run on a copy of a store): it
costs what a trained one costs but finds nothing real. ``crops2`` embeds the whole photo and
one crop (two plain passes). Each setting also reports one client's p50 (``--single-requests``)
and 10 clients' p50 on a 12-megapixel phone JPEG of the same photo (``--phone-requests``).

    python bench/serve.py --home H --clients 10 --requests 2000 --localise none,multicrop,boxhead,boxhead_pooled

Target (issue 5, this 2-core machine): p50 <= 50 ms, p99 <= 150 ms at 10 clients, no errors,
memory flat over 10,000 requests. The clients run on the same two cores as the server, so
they are kept cheap: keep-alive connections of the standard library, the request body
encoded once (about 0.4 ms of CPU a request).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import httpx
import numpy as np


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def _stat_cpu_s(stat_path: str) -> float:
    """User + system CPU seconds from a /proc ``stat`` file (a process's or one thread's)."""
    with open(stat_path) as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_s(pid: int) -> float:
    """CPU seconds (user + system, all threads) a process has used so far."""
    return _stat_cpu_s(f"/proc/{pid}/stat")


def thread_cpu_s(pid: int) -> dict[int, float]:
    """CPU seconds used so far by each live thread of a process, by native thread id."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            out[int(tid)] = _stat_cpu_s(f"/proc/{pid}/task/{tid}/stat")
        except OSError:  # the thread ended meanwhile
            continue
    return out


#: What each of the server's threads does, by its Python name (see :func:`cpu_by_role`).
ROLES = (
    ("AnyIO worker", "request threads (decode, preprocess, search, response)"),
    ("embed-street", "reverse-search embedding (background)"),
    ("embed-", "batching threads (run the model)"),
)


def cpu_by_role(before: dict[int, float], after: dict[int, float], names: dict[int, str], pid: int,
                requests: int) -> dict[str, float]:
    """Server CPU ms per request by what the threads do: ``before``/``after`` are
    :func:`thread_cpu_s` snapshots around the load, ``names`` the server's Python threads
    (native id -> name). The main thread runs the event loop (HTTP, multipart, JSON); threads
    Python does not know are the inference backend's own pool (OpenVINO / ONNX Runtime)."""
    totals: dict[str, float] = {}
    for tid, cpu in after.items():
        if tid == pid:
            role = "event loop (HTTP, upload parsing, JSON)"
        elif tid not in names:
            role = "inference backend's own threads"
        else:
            role = next((r for prefix, r in ROLES if names[tid].startswith(prefix)), "other Python threads")
        totals[role] = totals.get(role, 0.0) + cpu - before.get(tid, 0.0)
    n = max(1, requests)
    return {role: round(1000 * s / n, 2) for role, s in sorted(totals.items(), key=lambda kv: -kv[1]) if s > 0}


def phone_photo(data: bytes) -> bytes:
    """The photo upscaled to 4000 x 3000 (12 MP) and saved as a phone would (JPEG q90)."""
    import io

    from PIL import Image

    image = Image.open(io.BytesIO(data)).convert("RGB").resize((3000, 4000), Image.Resampling.BICUBIC)
    out = io.BytesIO()
    image.save(out, "JPEG", quality=90)
    return out.getvalue()


def served_inputs(home: Path):
    """(store, the served index's inputs by name: its checkpoint, the crawl's images, ...)."""
    from street2shop.storage.promotions import latest_index
    from street2shop.storage.store import ArtifactStore

    store = ArtifactStore(home)
    return store, {r.name: r for r in store.manifest(latest_index(store)).inputs}


#: the learned localisations by the name --localise gives them: their options
LEARNED = {"boxhead": {}, "boxhead_pooled": {"pooled": True}}


def localise_spec(home: Path, asked: str, localiser: str | None) -> dict | None:
    """The ``localise`` a server is created with: None = what serving.json says."""
    if asked == "served":
        return None
    if asked in LEARNED:
        return {"name": "boxhead", "options": LEARNED[asked], "localiser": localiser}
    if asked == "crops2":  # the whole photo and one crop: 2 passes, what boxhead embeds
        return {"name": "multicrop", "options": {"scales": [0.75], "positions": "centre"}}
    return {"name": asked}


def passes_per_query(home: Path, spec: dict | None) -> str:
    """Forward passes one default query costs under a localisation: the crops embedded,
    plus the box head's feature-map pass where there is one."""
    if spec is None:
        from street2shop.storage.promotions import serving_of

        store, inputs = served_inputs(home)
        spec = serving_of(store, inputs["checkpoint"]).get("localise", {"name": "none"})
    name, options = spec.get("name", "none"), dict(spec.get("options", {}))
    if name == "none":
        return "1"
    if name == "boxhead":  # the whole photo's pass gives the map; a pass per box crop unless pooled
        return "1" if options.get("pooled") else str(1 + len(options.get("factors", (1.1,))))
    from PIL import Image

    from street2shop.models.localise import create_localiser

    return str(len(create_localiser(name, **options)(Image.new("RGB", (300, 400))).boxes))


STAND_IN = "stand-in-random-init"


def stand_in_localiser(home: Path, seed: int = 0, input_size: int = 224) -> str:
    """A randomly initialised box head on the served checkpoint's backbone map at the localise
    stage's input size, published into the store as the localise stage publishes a trained one
    (once): the learned localiser's cost, none of its skill. Its store ref."""
    import torch

    from street2shop.models.embedder import load_embedder
    from street2shop.models.localise import BoxHead, save_localiser
    from street2shop.storage import names as N
    from street2shop.storage.store import ArtifactRef

    store, inputs = served_inputs(home)
    ref = ArtifactRef(stage=N.LOCALISE, name=N.LOCALISER, version=STAND_IN)
    if not store.exists(ref):
        model = load_embedder(store.file(inputs[N.CHECKPOINT], N.CHECKPOINT_FILE))
        items = store.read_table(inputs[N.IMAGES].sibling(N.ITEMS), columns=["category"])
        torch.manual_seed(seed)
        head = BoxHead(model.backbone.num_features, 128, sorted(set(items.column("category").to_pylist())))
        with store.publish(N.LOCALISE, [N.LOCALISER], STAND_IN) as w:
            save_localiser(w[N.LOCALISER].path(N.LOCALISER_FILE), head, backbone=model.config.backbone,
                           input_size=[input_size, input_size], map_stride=int(model.backbone.feature_stride),
                           stand_in="random init (bench/serve.py)")
    return str(ref)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def query_photo(home: Path, role: str) -> tuple[str, bytes]:
    """A photo of the served crawl (a customer photo by default: what shoppers send)."""
    from street2shop.storage.promotions import latest_index
    from street2shop.storage.store import ArtifactStore

    store = ArtifactStore(home)
    images = next(r for r in store.manifest(latest_index(store)).inputs if r.name == "images")
    rows = store.read_table(images, columns=["image_id", "role", "path"]).to_pylist()
    row = next(r for r in rows if r["role"] == role)
    return row["image_id"], store.blobs.resolve(row["path"]).read_bytes()


def serve_forever(home: str, port: int, threads: int | None, inference_mode: str, batch_max: int, batch_wait_ms: float,
                  streams: int, localise: str = "served", localiser: str | None = None) -> None:
    import uvicorn
    from street2shop.service.app import create_app

    app = create_app(home, torch_threads=threads, inference_mode=None if inference_mode == "served" else inference_mode,
                     batch_max=batch_max, batch_wait_ms=batch_wait_ms, streams=streams,
                     localise=localise_spec(Path(home), localise, localiser))

    @app.get("/_bench/threads", include_in_schema=False)
    def thread_names() -> dict[int, str]:  # for cpu_by_role: the benchmark's server only
        return {t.native_id: t.name for t in threading.enumerate()}

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


def wait_ready(base: str, proc: subprocess.Popen, timeout_s: float) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            health = httpx.get(f"{base}/health", timeout=2).json()
            if health["street_photos"]["ready"] and health.get("status", "ok") == "ok":  # warm, too
                return health
        except (httpx.HTTPError, KeyError, ValueError):
            pass
        time.sleep(0.5)
    raise TimeoutError(f"service not ready after {timeout_s} s")


def load(base: str, data: bytes, clients: int, requests: int, duration_s: float, k: int,
         server_pid: int | None = None, rss_every_s: float = 10.0) -> dict:
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    sent = [0]
    deadline = time.monotonic() + duration_s
    rss_samples: list[tuple[int, float]] = []
    done = threading.Event()

    def sample_rss() -> None:
        while not done.wait(rss_every_s):
            rss_samples.append((len(latencies) + len(errors), round(rss_mb(server_pid), 1)))

    # The load generator should cost the shared two cores as little as possible: the
    # multipart body is encoded once and sent over the standard library's keep-alive
    # connections (a tenth of httpx's CPU per request, measured), one per client thread.
    host, port = base.removeprefix("http://").rsplit(":", 1)
    boundary = uuid.uuid4().hex
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="q.jpg"\r\n'
        "Content-Type: image/jpeg\r\n\r\n"
    ).encode() + data + f"\r\n--{boundary}--\r\n".encode()
    headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}

    def client() -> None:
        conn = http.client.HTTPConnection(host, int(port), timeout=30)
        try:
            while time.monotonic() < deadline:
                with lock:
                    if sent[0] >= requests:
                        return
                    sent[0] += 1
                start = time.perf_counter()
                try:
                    conn.request("POST", f"/search?k={k}", body=body, headers=headers)
                    response = conn.getresponse()
                    payload = response.read()
                    ok = response.status == 200 and len(json.loads(payload)["results"]) > 0
                    why = None if ok else f"{response.status}: {payload[:200]!r}"
                except (OSError, http.client.HTTPException, ValueError, KeyError) as exc:
                    why = f"{type(exc).__name__}: {exc}"
                    conn.close()  # reconnects on the next request
                elapsed = 1000 * (time.perf_counter() - start)
                with lock:
                    (errors.append(why) if why else latencies.append(elapsed))
        finally:
            conn.close()

    started = time.perf_counter()
    workers = [threading.Thread(target=client) for _ in range(clients)]
    if server_pid is not None:
        workers.append(threading.Thread(target=sample_rss, daemon=True))
    for w in workers:
        w.start()
    for w in workers[:clients]:
        w.join()
    done.set()
    wall = time.perf_counter() - started
    lat = np.asarray(latencies)
    return {
        "rss_samples": rss_samples,
        "requests": len(latencies) + len(errors),
        "errors": len(errors),
        "first_errors": errors[:3],
        "wall_s": round(wall, 1),
        "throughput_rps": round((len(latencies) + len(errors)) / wall, 1),
        "p50_ms": round(float(np.percentile(lat, 50)), 1) if lat.size else None,
        "p99_ms": round(float(np.percentile(lat, 99)), 1) if lat.size else None,
        "mean_ms": round(float(lat.mean()), 1) if lat.size else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--home", required=True, type=Path)
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--requests", type=int, default=2000, help="stop after this many requests")
    parser.add_argument("--duration", type=float, default=300, help="or after this many seconds")
    parser.add_argument("--warmup", type=int, default=20, help="requests sent before measuring")
    parser.add_argument("--k", type=int, default=20)
    parser.add_argument("--role", default="street", choices=["street", "shop"], help="which kind of photo to send")
    parser.add_argument("--threads", type=int, help="server's torch threads (default: its CPUs)")
    parser.add_argument("--localise", default="served",
                        help="query localisation: 'served' (what the evaluate stage scored), 'none' (the whole photo, one pass), "
                             "'multicrop' (the 11-crop grid), 'boxhead' (the learned localiser: box crop pass), 'boxhead_pooled' "
                             "(the box pooled from the map: one pass) or 'crops2' (the whole photo and one crop, plain passes); "
                             "comma-separated to compare")
    parser.add_argument("--localiser", help="boxhead's localiser: a localise/localiser@<version> store ref "
                                            "(default: a random-init stand-in head published into the store, see stand_in_localiser)")
    parser.add_argument("--single-requests", type=int, default=200, help="then this many requests from one client (its p50)")
    parser.add_argument("--phone-requests", type=int, default=200,
                        help="then this many 12-megapixel phone JPEGs of the same photo from --clients clients (their p50); 0: skip")
    parser.add_argument("--phone", action="store_true",
                        help="upload the query photo upscaled to a 12-megapixel JPEG (4000 x 3000), as a phone sends it")
    parser.add_argument("--inference-mode", default="served",
                        help="server's model backend (models/fast.py mode; the service default); comma-separated to compare")
    parser.add_argument("--batch-max", default="16", help="server's micro-batch size; comma-separated to compare, 1 = off")
    parser.add_argument("--streams", default="1", help="server's inference streams (OpenVINO modes); comma-separated to compare")
    parser.add_argument("--batch-wait-ms", type=float, default=2.0, help="server's micro-batch wait")
    parser.add_argument("--repeats", type=int, default=1, help="measure every setting this many times, interleaved; report medians")
    parser.add_argument("--rss-every", type=float, default=10.0, help="seconds between server RSS samples")
    parser.add_argument("--ready-timeout", type=float, default=900)
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument("--serve-port", type=int, help=argparse.SUPPRESS)  # internal: run the server
    args = parser.parse_args()
    if args.serve_port:
        serve_forever(str(args.home), args.serve_port, args.threads, args.inference_mode, int(args.batch_max),
                      args.batch_wait_ms, int(args.streams), args.localise, args.localiser)
        return

    image_id, data = query_photo(args.home, args.role)
    args.phone_data = phone_photo(data) if args.phone_requests else None
    if args.phone:
        data = args.phone_data
    stand_in = bool(set(LEARNED) & set(args.localise.split(","))) and not args.localiser
    if stand_in:
        args.localiser = stand_in_localiser(args.home)
    results = []
    settings = [(m, s, int(b), loc) for m in args.inference_mode.split(",") for s in args.streams.split(",")
                for b in args.batch_max.split(",") for loc in args.localise.split(",")]
    # Repeats are interleaved (every setting once, then again), so a slow spell of a shared
    # machine hits every setting alike; the summary gives each setting's medians.
    for repeat in range(args.repeats):
        for mode, streams, batch_max, loc in settings:
            result = run_once(argparse.Namespace(**{**vars(args), "inference_mode": mode, "streams": streams, "localise": loc}),
                              batch_max, image_id, data)
            result.update(repeat=repeat, setting=[mode, streams, batch_max, loc])  # as asked (the server may fall back)
            print(json.dumps(result, indent=2), flush=True)
            results.append(result)
    keys = ["inference_mode", "localise", "passes_per_query", "evaluated", "streams", "batch_max", "repeat", "requests", "errors", "throughput_rps", "p50_ms", "p99_ms",
            "p50_1_client_ms", "phone_p50_ms", "phone_p99_ms", "server_cpu_ms_per_request", "client_cpu_ms_per_request", "ready_s",
            "first_search_ms", "rss_after_warmup_mb", "rss_end_mb"]
    print("\n| " + " | ".join(keys) + " |\n|" + "---|" * len(keys))
    for r in results:
        print("| " + " | ".join(str(r.get(key)) for key in keys) + " |")
    runs_of = {tuple(setting): [r for r in results if r["setting"] == list(setting)] for setting in settings}
    if args.repeats > 1:
        medians = ["throughput_rps", "p50_ms", "p99_ms", "server_cpu_ms_per_request"]
        print("\nmedians over repeats\n| inference_mode | streams | batch_max | localise | errors | " + " | ".join(medians) + " |\n|"
              + "---|" * (5 + len(medians)))
        for (mode, streams, batch_max, loc), runs in runs_of.items():
            cells = [str(round(float(np.median([r[key] for r in runs])), 1)) for key in medians]
            print(f"| {mode} | {streams} | {batch_max} | {loc} | {sum(r['errors'] for r in runs)} | " + " | ".join(cells) + " |")
    print("\nwhere the server's CPU went, ms a request (median over repeats)")
    for (mode, streams, batch_max, _loc), runs in runs_of.items():
        roles = sorted({role for r in runs for role in r["server_cpu_ms_by_thread"]})
        parts = [f"{role} {np.median([r['server_cpu_ms_by_thread'].get(role, 0.0) for r in runs]):.2f}" for role in roles]
        print(f"  {mode}, {streams} stream(s), batch {batch_max}: " + "; ".join(parts))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    if stand_in:
        print(f"\nboxhead ran a random-init stand-in box head ({args.localiser}): its cost, not its accuracy")


def run_once(args: argparse.Namespace, batch_max: int, image_id: str, data: bytes) -> dict:
    """Start a server with ``batch_max``, wait until ready, warm up, load it, stop it."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, __file__, "--home", str(args.home), "--serve-port", str(port),
           "--inference-mode", args.inference_mode, "--batch-max", str(batch_max), "--batch-wait-ms", str(args.batch_wait_ms),
           "--streams", str(args.streams), "--localise", args.localise]
    if args.localise in LEARNED:
        cmd += ["--localiser", args.localiser]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    started = time.monotonic()
    server = subprocess.Popen(cmd)
    try:
        health = wait_ready(base, server, args.ready_timeout)
        ready_s = time.monotonic() - started
        t0 = time.perf_counter()  # the first search after /health said ok: warm, or not
        httpx.post(f"{base}/search", files={"image": ("q.jpg", data, "image/jpeg")}, params={"k": args.k}, timeout=120).raise_for_status()
        first_search_ms = 1000 * (time.perf_counter() - t0)
        rss_start = rss_mb(server.pid)
        load(base, data, min(args.clients, args.warmup), args.warmup, 120, args.k)
        rss_warm = rss_mb(server.pid)
        server_cpu, client_cpu = cpu_s(server.pid), time.process_time()
        threads_before = thread_cpu_s(server.pid)
        result = load(base, data, args.clients, args.requests, args.duration, args.k, server.pid, args.rss_every)
        threads_after = thread_cpu_s(server.pid)
        names = {int(tid): name for tid, name in httpx.get(f"{base}/_bench/threads", timeout=10).json().items()}
        result["server_cpu_ms_by_thread"] = cpu_by_role(threads_before, threads_after, names, server.pid, result["requests"])
        # Where the two cores went: CPU ms per request in the server and in the load generator.
        n = max(1, result["requests"])
        result["server_cpu_ms_per_request"] = round(1000 * (cpu_s(server.pid) - server_cpu) / n, 2)
        result["client_cpu_ms_per_request"] = round(1000 * (time.process_time() - client_cpu) / n, 2)
        # the same server, then: one client alone, and phone-sized uploads under the same load
        if args.single_requests:
            single = load(base, data, 1, args.single_requests, args.duration, args.k)
            result.update(p50_1_client_ms=single["p50_ms"], errors_1_client=single["errors"])
        if args.phone_requests:
            phone = load(base, args.phone_data, args.clients, args.phone_requests, args.duration, args.k)
            result.update(phone_p50_ms=phone["p50_ms"], phone_p99_ms=phone["p99_ms"], phone_errors=phone["errors"],
                          phone_bytes=len(args.phone_data))
        result.update(
            home=str(args.home), index=health["index"], checkpoint=health["checkpoint"], vectors=health["vectors"],
            clients=args.clients, inference_mode=health["inference_mode"], streams=health["streams"],
            localise=health.get("localise"), passes_per_query=passes_per_query(args.home, localise_spec(args.home, args.localise, args.localiser)),
            localiser=args.localiser if args.localise in LEARNED else None,
            evaluated={k: round(v, 3) for k, v in health.get("evaluated", {}).items() if "top" in k}, batch_max=batch_max, batch_wait_ms=args.batch_wait_ms,
            query=f"{args.role} photo {image_id[:12]} ({len(data)} bytes)", ready_s=round(ready_s, 1),
            first_search_ms=round(first_search_ms, 1),
            rss_ready_mb=round(rss_start, 1), rss_after_warmup_mb=round(rss_warm, 1), rss_end_mb=round(rss_mb(server.pid), 1),
        )
    finally:
        server.terminate()
        server.wait(timeout=30)
    return result


if __name__ == "__main__":
    main()
