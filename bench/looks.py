"""Shop-the-look benchmark: mAP@6, recall@6 and hit@6 of every model and baseline, both ways
(a post's photo -> the items its stylists linked; a linked item -> the posts that link it),
with αQE / DBA off and on, per style, and ArcFace against softmax over training epochs.

On a store with a crawl of a shop with a lookbook (``street2shop demo --home H`` makes one):
the newest such crawl, its dedup groups and the features stage of its shop photos and of its
posts' photos (reused when published); then, per training seed, ``looks_train`` and
``looks_evaluate`` (the code the pipeline runs; published, so a second run reuses them)::

    python bench/looks.py --home H [--checkpoint H2/artifacts/evaluate/checkpoint/version=V/model.pt]

``--build``: when H has no such crawl, generate the demo's shop (``DemoSize()``: 300 products
of real garments, seed 0) under ``H/demo-shop``, serve it on loopback, crawl it and dedup it
as the demo does (``DemoSize().dedup_methods``); nothing else of the demo runs.

``--checkpoint``: a street-to-shop embedder checkpoint file (imported into H) scored as the
"street2shop" baseline and given to ``looks_train`` (heads on its descriptor, and a candidate
to serve); default: the checkpoint H serves, when it has one. Each seed prints the space served
by the validation rule, every candidate's validation mAP@6, and the served one's test mAP@6
with its 95 % interval and its figure on training posts.
``--epochs``: the epochs ArcFace and softmax are trained for in the overfitting sweep
(train-post and test-post mAP per epoch count, each a fresh training run).
``--split-key product``: posts split by product id instead of the dedup stage's product
groups (the pipeline's rule). On the demo shop dedup's false merges chain most lookbooks into
one unit (198 of 218 posts), which leaves 16 test posts of two styles; by product id the
lookbooks stay apart (44 test posts), and the dedup groups linked from two splits are counted.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
from _results import emit  # bench/ is on sys.path when a benchmark is run as a script

from street2shop.flows.looks import latest_looks_refs
from street2shop.storage import names as N
from street2shop.storage.store import ArtifactNotFound, ArtifactRef, ArtifactStore
from street2shop.tasks.features import run_features
from street2shop.models.looks_view import LooksRefs
from street2shop.tasks.looks import LooksConfig, run_looks_evaluate, run_looks_train

ORDER = ["backbone", "street2shop", "cgd_softmax", "cgd_arcface", "cgd_softmax_s2s", "cgd_arcface_s2s"]
EXPANSIONS = ["none", "qe", "dba", "dba+qe"]
DIRECTIONS = ("snap_to_items", "item_to_snaps")


def build(home: Path) -> None:
    """The demo's shop, crawled and deduplicated into ``home`` (the demo's settings)."""
    from street2shop.cleaning.dedup import DedupParams
    from street2shop.crawler.core import CrawlParams
    from street2shop.flows.demo import DemoSize, serving_demo_shop
    from street2shop.tasks.crawl import run_crawl
    from street2shop.tasks.dedup import run_dedup

    size = DemoSize()
    started = time.perf_counter()
    with serving_demo_shop(home, size) as (shop_dir, url):
        print(f"shop {shop_dir} ({time.perf_counter() - started:.0f} s)")
        store = ArtifactStore(home)
        crawl = run_crawl(store, CrawlParams(base_url=url, progress=False, concurrency=8, rate_limit_rps=400.0))
    print(f"crawl {crawl.version}: {crawl.metrics.get('items')} items, {crawl.metrics.get('snaps')} posts "
          f"({time.perf_counter() - started:.0f} s)")
    dedup = run_dedup(store, crawl["items"], crawl["images"], DedupParams(seed=size.seed, methods=size.dedup_methods))
    print(f"dedup {dedup.version} ({time.perf_counter() - started:.0f} s)")


def refs_of(home: Path, cfg: LooksConfig) -> tuple[LooksRefs, dict]:
    """The newest crawl with a lookbook in ``home``, with the features of its photos (run
    here when missing), and how long each features run took."""
    store = ArtifactStore(home)
    try:
        return latest_looks_refs(str(home), cfg.features), {}
    except ArtifactNotFound:
        pass
    snaps = store.newest(N.CRAWL, N.SNAPS, nonempty=True)
    if snaps is None:
        raise SystemExit(f"{home} has no crawl with a lookbook: run `street2shop demo --home {home}`, or pass --build")
    seconds = {}
    for name in (N.IMAGES, N.SNAPS):
        started = time.perf_counter()
        r = run_features(store, snaps.sibling(name), cfg.features)
        seconds[f"features[{name}]_s"] = round(time.perf_counter() - started, 1)
        print(f"features of {name}: {r.metrics.get('photos')} photos, dim {r.metrics.get('dim')} ({seconds[f'features[{name}]_s']} s)")
    return latest_looks_refs(str(home), cfg.features), seconds


def checkpoint_of(store: ArtifactStore, path: Path | None) -> ArtifactRef | None:
    from street2shop.tasks.catalog import resolve_checkpoint

    try:
        return resolve_checkpoint(store, path)
    except (ArtifactNotFound, FileNotFoundError, ValueError) as exc:
        print(f"no street-to-shop checkpoint ({exc}): the street2shop baseline is left out")
        return None


def _dedup_leaks(store: ArtifactStore, refs: LooksRefs, splits: ArtifactRef, groups: ArtifactRef | None) -> int | None:
    """Dedup groups whose items are linked by posts of two splits (None: no dedup groups)."""
    if groups is None:
        return None
    split_of = dict(zip(*(store.read_table(splits).column(c).to_pylist() for c in ("snap_id", "split"))))
    g = store.read_table(groups)
    group_of = dict(zip(g.column("item_id").to_pylist(), g.column("group_id").to_pylist()))
    found = defaultdict(set)
    for r in store.read_table(refs.snap_items).to_pylist():
        if r["snap_id"] in split_of:
            found[group_of.get(r["item_id"], r["item_id"])].add(split_of[r["snap_id"]])
    return sum(len(s) > 1 for s in found.values())


def _fmt(values: list[float]) -> str:
    if not values:
        return "-"
    return f"{np.mean(values):.3f}" + (f"±{np.std(values):.3f}" if len(values) > 1 else "")


def _table(rows: list[dict], split: str, group: str = "all") -> dict:
    """(model, expansion, direction, metric) -> values over seeds."""
    out: dict[tuple, list[float]] = defaultdict(list)
    for r in rows:
        if r["split"] == split and r["group"] == group:
            out[(r["model"], r["expansion"], r["direction"], r["metric"])].append(r["value"])
    return out


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--home", required=True, type=Path)
    ap.add_argument("--build", action="store_true", help="build the demo's shop, crawl and dedup into H when it has no lookbook")
    ap.add_argument("--checkpoint", type=Path, help="a street-to-shop embedder checkpoint file (the street2shop baseline)")
    ap.add_argument("--seeds", default="0,1,2", help="training seeds, comma-separated")
    ap.add_argument("--epochs", default="5,10,20,40,80,160", help="epoch counts of the ArcFace/softmax sweep ('' : none)")
    ap.add_argument("--split-key", default="group", choices=["group", "product"],
                    help="what a split keeps whole besides a post: the dedup stage's product groups (the pipeline's "
                         "default), or product ids alone (dedup's false merges then chain no lookbooks together; "
                         "the dedup groups found in two splits are counted)")
    ap.add_argument("--out", help="append the JSON results to this file")
    args = ap.parse_args(argv)
    store = ArtifactStore(args.home)
    cfg = LooksConfig()
    if args.build and not any((m.rows or 0) > 0 for m in store.manifests(N.CRAWL, N.SNAPS)):
        build(args.home)
    refs, feature_s = refs_of(args.home, cfg)
    dedup_groups = refs.groups
    if args.split_key == "product":
        refs = refs.model_copy(update={"groups": None})  # an item is then in its product's group
    checkpoint = checkpoint_of(store, args.checkpoint)
    seeds = [int(s) for s in args.seeds.split(",")]
    records, metric_rows, train_s = [], [], defaultdict(list)
    stage_s = defaultdict(list)
    for seed in seeds:
        train = cfg.train.model_copy(update={"seed": seed})
        started = time.perf_counter()
        trained = run_looks_train(store, refs, cfg.split, train, checkpoint)
        stage_s["looks_train"].append(time.perf_counter() - started)
        started = time.perf_counter()
        evaluated = run_looks_evaluate(store, refs, trained[N.LOOKS_MODEL], cfg.evaluate, checkpoint)
        stage_s["looks_evaluate"].append(time.perf_counter() - started)
        rows = store.read_table(evaluated[N.LOOKS_METRICS]).to_pylist()
        leaking = _dedup_leaks(store, refs, trained[N.LOOKS_SPLITS], dedup_groups)
        metric_rows += rows
        for name in ORDER:
            if f"{name}_train_s" in trained.metrics:
                train_s[name].append(trained.metrics[f"{name}_train_s"])
        served = evaluated.metrics["served_test"]
        print(f"seed {seed}: served {trained.metrics['served']} (validation: "
              + ", ".join(f"{n} {c['val_map6']}" for n, c in trained.metrics["candidates"].items())
              + f"); its test snap→items mAP@6 {served['map6']} (95 % interval {served['map6_ci95']}), "
              f"train {served['map6_train']}")
        record = {"bench": "looks", "seed": seed, "split_key": args.split_key, "dedup_groups_in_two_splits": leaking,
                  "train_version": trained.version, "evaluate_version": evaluated.version,
                  "train": trained.metrics, "figures": evaluated.metrics, "checkpoint": checkpoint.version if checkpoint else None,
                  "report": str(store.file(evaluated[N.LOOKS_METRICS], N.LOOKS_REPORT_FILE)),
                  "machine": platform.machine(), "load_avg": os.getloadavg()[0]}
        records.append(record)
        emit(record, args.out)
    t = trained.metrics
    key = "dedup product group" if args.split_key == "group" else "product id"
    print(f"\nposts: {t['posts_train']} train, {t['posts_val']} val, {t['posts_test']} test (split by post and {key}; "
          f"dedup groups linked from two splits: {leaking}); seeds {args.seeds}; k = {cfg.evaluate.k}")
    test = _table(metric_rows, "test")
    models = [m for m in ORDER if any(key[0] == m for key in test)]
    print(f"{'model':<13} {'expansion':<8} {'snap→items mAP@6':>18} {'recall@6':>12} {'hit@6':>12} "
          f"{'item→snaps mAP@6':>18} {'recall@6':>12} {'hit@6':>12} {'train s':>8}")
    for model in models:
        for exp in EXPANSIONS:
            cells = [_fmt(test.get((model, exp, d, m), [])) for d in DIRECTIONS for m in ("map", "recall", "hit")]
            secs = f"{np.mean(train_s[model]):.1f}" if model in train_s and exp == "none" else ""
            print(f"{model:<13} {exp:<8} {cells[0]:>18} {cells[1]:>12} {cells[2]:>12} {cells[3]:>18} {cells[4]:>12} {cells[5]:>12} {secs:>8}")
    styles = sorted({r["group"] for r in metric_rows if r["group"] != "all"})
    n_of = {r["group"]: r["n"] for r in metric_rows if r["split"] == "test" and r["direction"] == "snap_to_items"}
    print("\nsnap→items mAP@6 per style (test posts; no expansion)")
    print(f"{'model':<13} " + " ".join(f"{f'{s} ({n_of.get(s, 0)})':>16}" for s in styles))
    for model in models:
        cells = [_fmt(_table(metric_rows, "test", s).get((model, "none", "snap_to_items", "map"), [])) for s in styles]
        print(f"{model:<13} " + " ".join(f"{c:>16}" for c in cells))
    train_rows = _table(metric_rows, "train")
    print("\nthe same heads on their own training posts (no expansion): how much each fits its training posts")
    for model in [m for m in ORDER if any(key[0] == m for key in train_rows)]:
        cells = [_fmt(train_rows.get((model, "none", d, "map"), [])) for d in DIRECTIONS]
        print(f"{model:<13} train snap→items mAP@6 {cells[0]:>12}   item→snaps mAP@6 {cells[1]:>12}")
    print(f"\nlooks stages (mean of {len(seeds)}): looks_train {np.mean(stage_s['looks_train']):.1f} s, "
          f"looks_evaluate {np.mean(stage_s['looks_evaluate']):.1f} s" + "".join(f", {k} {v} s" for k, v in feature_s.items()))
    epochs = [int(e) for e in args.epochs.split(",") if e]
    if epochs:
        print(f"\nArcFace vs softmax over training epochs (seed {seeds[0]}; snap→items mAP@6, no expansion; "
              f"each a fresh training run)")
        print(f"{'loss':<9} {'epochs':>6} {'train mAP':>10} {'test mAP':>9} {'test item→snaps':>16} {'final loss':>11} {'s':>6}")
        sweep = []
        for loss in ("softmax", "arcface"):
            for e in epochs:
                train = cfg.train.model_copy(update={"seed": seeds[0], "epochs": e, "losses": [loss], "serve": f"cgd_{loss}",
                                                "patience": 0})
                trained = run_looks_train(store, refs, cfg.split, train)
                figures = run_looks_evaluate(store, refs, trained[N.LOOKS_MODEL], cfg.evaluate).metrics
                row = {"loss": loss, "epochs": e, "train_map": figures[f"cgd_{loss}_snap_to_items_map6_train"],
                       "test_map": figures[f"cgd_{loss}_snap_to_items_map6"], "test_item_map": figures[f"cgd_{loss}_item_to_snaps_map6"],
                       "final_loss": trained.metrics[f"cgd_{loss}_final_loss"], "train_s": trained.metrics[f"cgd_{loss}_train_s"]}
                sweep.append(row)
                print(f"{loss:<9} {e:>6} {row['train_map']:>10.3f} {row['test_map']:>9.3f} {row['test_item_map']:>16.3f} "
                      f"{row['final_loss']:>11.3f} {row['train_s']:>6.1f}")
        record = {"bench": "looks_epochs", "seed": seeds[0], "sweep": sweep, "load_avg": os.getloadavg()[0]}
        records.append(record)
        emit(record, args.out)
    return records


if __name__ == "__main__":
    main()
