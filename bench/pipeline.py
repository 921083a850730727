"""Pipeline wall-time benchmark: every stage on a demo shop, then a re-run with nothing changed.

Generates a demo shop of ``--products`` products (procedural garments, or real photos with
``--demo-defaults``), serves it on loopback and runs the whole pipeline twice in a fresh
artifact store: the first run publishes every stage, the second finds every version already
published and must skip them all (target: under 10% of the first run's wall time)::

    python bench/pipeline.py --demo-defaults            # the default demo shop, as `street2shop demo`
    python bench/pipeline.py --backbone tiny --products 40
    python bench/pipeline.py --backbone tiny --products 150 --scale 10  # a 10x larger shop, tiny model

Per-stage times are the wall time of each stage's sub-flow (Prefect run bookkeeping
included; the crawl fetches before it publishes, so its manifest's ``duration_s`` would
miss the fetching), for the first run and for the re-run, next to the ``duration_s`` the
store records for the compute-and-write part. One JSON line of results goes to stdout,
or is appended to ``--out``.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from _results import emit  # bench/ is on sys.path when a benchmark is run as a script

#: DemoSize().products, without importing the package (and torch) before Prefect's settings
DEFAULT_DEMO_PRODUCTS = 300
STAGE_FLOWS = ("crawl_flow", "noise_filter_flow", "dedup_flow", "train_flow", "mine_flow", "evaluate_flow", "build_index_flow")


def time_stage_flows(module, calls: list[float]) -> None:
    """Wrap the pipeline's sub-flows so each call appends its wall time to ``calls``."""

    def timed(fn: Callable) -> Callable:
        def wrapper(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                calls.append(time.perf_counter() - t0)

        return wrapper

    for name in STAGE_FLOWS:
        setattr(module, name, timed(getattr(module, name)))


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--demo-defaults", action="store_true",
                    help="every knob as `street2shop demo` sets it (real photos, EfficientNet-Lite0, CNN noise "
                         "filter, hash + embedding dedup); only --products/--scale/--seed apply")
    ap.add_argument("--products", type=int, default=None, help="products in the demo shop (default 40; 300 with --demo-defaults)")
    ap.add_argument("--scale", type=int, default=1, help="multiply --products (10: the 10x larger shop)")
    ap.add_argument("--backbone", default="tiny", help="'tiny' (seconds) or a real backbone, e.g. efficientnet_lite0")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--steps-per-epoch", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--home", type=Path, help="artifact store (default: a fresh temp folder, removed afterwards)")
    ap.add_argument("--out", type=Path, help="append the JSON result line here")
    args = ap.parse_args(argv)
    if args.products is None:
        args.products = DEFAULT_DEMO_PRODUCTS if args.demo_defaults else 40
    if args.products < 1 or args.scale < 1:
        ap.error("--products and --scale must be positive")

    # Prefect reads its settings on import: a private home and no analytics for the bench.
    os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="s2s-bench-prefect-"))
    os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    import street2shop.flows.pipeline as pipeline_module
    from prefect.testing.utilities import prefect_test_harness
    from street2shop.flows.demo import DemoSize, demo_config, serving_demo_shop
    from street2shop.flows.pipeline import pipeline
    from street2shop.storage.store import ArtifactStore

    tiny = args.backbone == "tiny"
    size = DemoSize(products=args.products * args.scale, seed=args.seed) if args.demo_defaults else DemoSize(
        products=args.products * args.scale,
        garments="procedural",
        image_size=96 if tiny else 224,
        backbone=args.backbone,
        train_image_size=64 if tiny else 160,
        epochs=args.epochs,
        steps_per_epoch=args.steps_per_epoch,
        rounds=args.rounds,
        seed=args.seed,
    )
    with tempfile.TemporaryDirectory(prefix="s2s-bench-pipeline-") as tmp, prefect_test_harness(server_startup_timeout=120):
        home = (args.home or Path(tmp) / "home").resolve()
        t0 = time.perf_counter()
        with serving_demo_shop(home, size) as (shop_dir, url):
            generate_s = time.perf_counter() - t0
            cfg = demo_config(shop_dir, url, size, progress=False)
            calls: list[float] = []
            time_stage_flows(pipeline_module, calls)
            t0 = time.perf_counter()
            first = pipeline(str(home), cfg)
            first_s = time.perf_counter() - t0
            first_calls = calls[:]
            calls.clear()
            t0 = time.perf_counter()
            again = pipeline(str(home), cfg)
            again_s = time.perf_counter() - t0
            again_calls = calls[:]
        store = ArtifactStore(home)
        # every output of a version records the same duration (one publish per stage run)
        duration = {(m.stage, m.version): m.duration_s for m in store.manifests()}
        compute = {s["label"]: duration[(s["stage"], s["version"])] for s in first.stages}
        # sub-flows are called in the order the pipeline reports its stages
        labels = [s["label"] for s in first.stages]
        stages = {label: round(t, 2) for label, t in zip(labels, first_calls)}
        rerun = {label: round(t, 2) for label, t in zip(labels, again_calls)}
        crawl = first.stage("crawl")["metrics"]
        record = {
            "bench": "pipeline",
            "products": size.products,
            "items": crawl.get("items"),
            "images": crawl.get("images"),
            "garments": size.garments,
            "backbone": size.backbone,
            "noise_features": size.noise_features,
            "epochs": size.epochs,
            "steps_per_epoch": size.steps_per_epoch,
            "rounds": size.rounds,
            "generate_shop_s": round(generate_s, 2),
            "first_run_s": round(first_s, 2),
            "stage_s": stages,
            "stage_compute_s": compute,
            "outside_stages_s": round(first_s - sum(stages.values()), 2),
            "rerun_s": round(again_s, 2),
            "rerun_stage_s": rerun,
            "rerun_fraction": round(again_s / first_s, 4),
            "rerun_stages_ran": again.ran,
            "trained_top20": first.stage("evaluate")["metrics"].get("trained_top20"),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
        }
    width = max(len(k) for k in stages) + 2
    print(f"demo shop: {size.products} products, {record['items']} items, {record['images']} images; backbone {size.backbone}", file=sys.stderr)
    print(f"  {'stage':<{width}}  {'first run':>10}  {'(compute)':>10}  {'re-run':>8}", file=sys.stderr)
    for label, secs in stages.items():
        print(f"  {label:<{width}}  {secs:8.2f} s  {compute[label]:8.2f} s  {rerun.get(label, 0):6.2f} s", file=sys.stderr)
    print(f"first run {first_s:.1f} s; no-change re-run {again_s:.2f} s ({100 * again_s / first_s:.1f}% of the first; "
          f"stages re-run: {again.ran or 'none'})", file=sys.stderr)
    emit(record, args.out)
    return record


if __name__ == "__main__":
    main()
