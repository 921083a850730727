"""Latency of the side endpoints: ``POST /outfits/complete`` (item ids) and ``POST
/looks/related`` (a post's photo), at 1 and 10 concurrent clients, p50 / p90 / p99 ms.

On a store with a crawl that has outfits and a lookbook, its ``outfit_train`` and
``looks_train`` models published (``street2shop demo --home H`` makes one; so do
``bench/outfits.py`` and ``bench/looks.py``) and a served index::

    python bench/side_latency.py --home H [--clients 1,10] [--requests 200] [--threads 1,2] [--side-modes eager,openvino]

``--build-index``: when H serves no index, publish one of the crawl's shop photos with an
untrained tiny embedder (``backbone="tiny"``), only so the app starts: the side endpoints
never read the search index, so their latency does not depend on it. The checkpoint is
imported under its own stage, not as the evaluate stage's, so no stage takes it for the
street-to-shop embedder.

``--threads``: the app's ``torch_threads`` (intra-op threads; default: the CPUs the process
may use), each measured in turn: on a busy 2-core machine one thread is faster per photo than
two (two wait on each other), which is most of ``/looks/related``'s time.

``--side-modes``: the side engines' fp32 inference paths for uploads (``create_app``'s
``side_inference_mode``; default: the served one, OpenVINO fp32), each measured in turn, in
one process, so their figures are side by side; each row also says how far that path's
features of the photos are from eager fp32's, the precision the side stages' features were
made in (min cosine, max absolute difference).

The app runs in-process (FastAPI's TestClient, the search engine ``inference_mode="eager"``); clients are
threads, each sending its share of the requests back to back. The timings include the
multipart encoding and the app's whole handler (the upload's decoding and features for
``/looks/related``), not a network hop. Other work on the machine slows every figure: the
record carries the load average before and after.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from _results import emit  # bench/ is on sys.path when a benchmark is run as a script

from street2shop.storage import names as N
from street2shop.storage.store import ArtifactStore, images_with_paths


def build_index(store: ArtifactStore, images) -> None:
    """An index of the crawl's shop photos by an untrained tiny embedder (the app needs one)."""
    import tempfile

    from street2shop.models.embedder import build_embedder, save_checkpoint
    from street2shop.retrieval.index import IndexParams
    from street2shop.tasks.catalog import embed_catalog, resolve_checkpoint
    from street2shop.tasks.index import run_build_index

    with tempfile.TemporaryDirectory() as tmp:
        path = save_checkpoint(Path(tmp) / "model.pt", build_embedder(backbone="tiny", dim=16, pretrained=False, image_size=32))
        checkpoint = resolve_checkpoint(store, path)
    embeddings = embed_catalog(store, images, checkpoint)
    run_build_index(store, embeddings[N.EMBEDDINGS], images, checkpoint, IndexParams(factory="Flat"))


def _percentiles(times: list[float]) -> dict:
    return {"p50_ms": round(statistics.median(times), 1), "p90_ms": round(float(np.percentile(times, 90)), 1),
            "p99_ms": round(float(np.percentile(times, 99)), 1), "n": len(times)}


def agreement(photos: list[bytes], params, mode: str) -> dict:
    """How far ``mode``'s features of ``photos`` are from eager fp32's (the side stages')."""
    import io

    from PIL import Image

    from street2shop.models.features import feature_extractor, image_features
    from street2shop.service.side_engine import fp32_inference

    model = feature_extractor(params)
    eager, fast = fp32_inference(model, "eager"), fp32_inference(model, mode)
    a = np.stack([image_features(eager, Image.open(io.BytesIO(p)), params) for p in photos])
    b = np.stack([image_features(fast, Image.open(io.BytesIO(p)), params) for p in photos])
    cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    return {"min_cosine_to_eager": round(float(cos.min()), 6), "max_abs_diff": float(np.abs(a - b).max())}


def measure(home: Path, clients: list[int], requests: int, threads: int | None = None, side_mode: str | None = None) -> dict:
    from fastapi.testclient import TestClient

    from street2shop.service.app import create_app
    from street2shop.service.side_engine import SIDE_INFERENCE

    side_mode = side_mode or SIDE_INFERENCE
    store = ArtifactStore(home)
    client = TestClient(create_app(home, street_in_background=False, inference_mode="eager", torch_threads=threads,
                                   side_inference_mode=side_mode))
    crawl = client.get("/health").json()["crawl"]
    snaps = store.newest(N.CRAWL, N.SNAPS, nonempty=True)
    outfits = store.read_table(snaps.sibling(N.OUTFITS)).to_pylist()
    if snaps.version != crawl:
        raise SystemExit(f"the index serves crawl {crawl}, not the newest crawl with a lookbook ({snaps.version})")
    by_outfit = defaultdict(list)
    for r in outfits:
        by_outfit[r["outfit_id"]].append(r)
    outfit_list = [o for o in by_outfit.values() if len(o) >= 2]
    photos = [Path(r["path"]).read_bytes() for r in images_with_paths(store, snaps).to_pylist()[:20]]

    def outfit_call(k: int):
        o = outfit_list[k % len(outfit_list)]
        return lambda: client.post("/outfits/complete?k=6", data={"items": [r["item_id"] for r in o[:-1]], "type": o[-1]["type"]})

    def looks_call(k: int):
        photo = photos[k % len(photos)]
        return lambda: client.post("/looks/related?k=6", files={"image": ("q.jpg", photo, "image/jpeg")})

    out: dict = {}
    for endpoint, make in (("/outfits/complete", outfit_call), ("/looks/related", looks_call)):
        r = make(0)()
        if r.status_code != 200:
            raise SystemExit(f"{endpoint}: {r.status_code} {r.text[:200]}")
        for _ in range(3):  # warm up
            make(0)()
        for n in clients:
            def one(k: int) -> float:
                call = make(k)
                started = time.perf_counter()
                got = call()
                if got.status_code != 200:
                    raise RuntimeError(f"{endpoint}: {got.status_code} {got.text[:200]}")
                return 1000 * (time.perf_counter() - started)

            started = time.perf_counter()
            with ThreadPoolExecutor(n) as pool:
                times = list(pool.map(one, range(requests)))
            wall = time.perf_counter() - started
            out[f"{endpoint} c{n}"] = _percentiles(times) | {"requests_per_s": round(requests / wall, 1)}
            print(f"{endpoint} at {n} client(s), torch threads {threads or 'all'}, side mode {side_mode}: "
                  f"{out[f'{endpoint} c{n}']}")
    health = client.get("/health").json().get("side_models", {})
    out["served"] = {side: v.get("served") for side, v in health.items()}
    out["side_mode"] = side_mode
    from street2shop.service.look_engine import LookEngine, find_looks_model

    looks = LookEngine(store, find_looks_model(store, crawl), side_mode)
    out["agreement"] = agreement(photos, looks.feature_params, side_mode)
    print(f"features by {side_mode} against eager fp32 on {len(photos)} photos: {out['agreement']}")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--home", required=True, type=Path)
    ap.add_argument("--clients", default="1,10", help="concurrent clients, comma-separated")
    ap.add_argument("--requests", type=int, default=200, help="requests per endpoint and client count")
    ap.add_argument("--threads", default="", help="the app's torch threads, comma-separated, each in turn ('': the default)")
    ap.add_argument("--side-modes", default="", help="the side engines' fp32 paths, comma-separated ('': the served one)")
    ap.add_argument("--build-index", action="store_true", help="publish a tiny index when H serves none")
    ap.add_argument("--out", help="append the JSON results to this file")
    args = ap.parse_args()
    store = ArtifactStore(args.home)
    if args.build_index and store.latest_or_none(N.INDEX, N.INDEX_IDS) is None:
        snaps = store.newest(N.CRAWL, N.SNAPS, nonempty=True, missing=f"{args.home} has no crawl with a lookbook")
        build_index(store, snaps.sibling(N.IMAGES))
    for threads, side_mode in [(t, m) for t in [int(n) for n in args.threads.split(",") if n] or [None]
                               for m in [m for m in args.side_modes.split(",") if m] or [None]]:
        load_before = os.getloadavg()
        figures = measure(args.home, [int(c) for c in args.clients.split(",")], args.requests, threads, side_mode)
        emit({"bench": "side_latency", "home": str(args.home), "machine": platform.node(), "cpus": os.cpu_count(),
              "torch_threads": threads, "load_before": [round(x, 1) for x in load_before],
              "load_after": [round(x, 1) for x in os.getloadavg()], "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
              **figures}, args.out)


if __name__ == "__main__":
    main()
