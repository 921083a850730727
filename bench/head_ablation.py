"""Ablation of the demo's training recipe (a residual head on the frozen backbone, trained on
cached views), every row scored on the demo's test split **and** on a real-photo benchmark.

    python bench/head_ablation.py --home H [--benchmark ../shared/data/hm-dev] [--rows all]

``H`` is a store the demo (or the pipeline with ``train.recipe: head``) ran on: the bench
reads its latest ``views`` artifact (the cached pretrained descriptors the head trains on)
and the train stage's parameters (the reference row), and runs each row through the same
``train_embedder`` and ``head_training_rows`` as the train stage. Scoring goes through
``evaluate_retrieval`` with the queries' localisation crops (the views' grid, best crop per
shop photo, as ``/search``), against every shop photo of the set: the demo's test-split
street photos (their crops are embedded here once) and the benchmark's queries (once too;
both cached under ``--work``, keyed by the views version and the benchmark's CSVs). Rows
differ from the reference in one choice each; the pretrained backbone's rows show what
training adds, under the same localisation and without it (the whole photo only).

Rows that need other cached views (input size, pooling, another grid) or a trainable
backbone (the old full fine-tune; ``bench/ablation.py``) are not rows here: each is a
views stage of its own (minutes of backbone passes on 2 cores).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from street2shop.cleaning.selection import gallery_images, query_images
from street2shop.flows.stages import latest_data_refs
from street2shop.models.embed import embed_images
from street2shop.models.embedder import load_embedder
from street2shop.models.fast import optimize_for_inference
from street2shop.models.training import TrainParams, train_embedder
from street2shop.models.views import ViewParams, crop_boxes, head_training_rows, validation_fn, view_model
from street2shop.retrieval.metrics import evaluate_retrieval
from street2shop.sources.labelled import annotated_from_csvs, read_labelled_csv
from street2shop.storage import names as N
from street2shop.storage.store import ArtifactStore
from street2shop.tasks.data import load_annotated

#: each row: one change of the reference (the train stage's own TrainParams)
ROWS: dict[str, dict] = {
    "reference (the demo's train[0]): shop anchors, semi-hard, triplet": {},
    "anchor from street": {"anchor_domain": "street"},
    "hard triplets": {"miner": "hard"},
    "random triplets": {"miner": "random"},
    "ArcFace (28.6 deg margin, no miner)": {"loss": "arcface", "miner": "none", "margin": 28.6},
    "1 street crop per photo (of the closest)": {"street_crops": 1},
    "all 11 crops per street photo": {"street_crops": 11},
    "margin 0.2": {"margin": 0.2},
    # closer to the pretrained descriptor: the residual layer pulled harder towards zero, or learning slower
    "weight decay 0.05": {"weight_decay": 0.05},
    "lr 1e-4": {"lr": 1e-4},
    "lr 1e-4, seed 1": {"lr": 1e-4, "seed": 1},
    "lr 1e-4, seed 2": {"lr": 1e-4, "seed": 2},
    "lr 3e-5": {"lr": 3e-5},
    "lr 1e-4, all 11 crops": {"lr": 1e-4, "street_crops": 11},
    "lr 1e-4, anchor from street": {"lr": 1e-4, "anchor_domain": "street"},
}
KS = (1, 20)


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _cached(path: Path, compute) -> dict[str, np.ndarray]:
    if path.exists():
        with np.load(path, allow_pickle=True) as f:
            return dict(f)
    out = compute()
    np.savez(path, **out)
    return out


def _queries_and_gallery(annotated, model, boxes, split: str) -> dict[str, np.ndarray]:
    """Every crop of the split's street photos and every shop photo, pretrained descriptors."""
    queries, gallery = query_images(annotated, split), gallery_images(annotated)
    min_side = min(min(b[2] - b[0], b[3] - b[1]) for b in boxes)
    crops = embed_images(model, queries.column("path").to_pylist(), num_workers=0, crops=lambda image: boxes, min_crop_side=min_side)
    whole = embed_images(model, gallery.column("path").to_pylist(), num_workers=0)
    return {"queries": crops, "query_items": np.asarray(queries.column("item_id").to_pylist(), dtype=object),
            "gallery": whole, "gallery_items": np.asarray(gallery.column("item_id").to_pylist(), dtype=object)}


def _score(sets: dict, refine) -> dict[str, float]:
    out = {}
    for name, s in sets.items():
        report = evaluate_retrieval(refine(s["queries"]), s["query_items"], refine(s["gallery"]), s["gallery_items"], ks=KS)
        out |= {f"{name}_top{k}": float(report.overall[f"top{k}"]) for k in KS}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--home", required=True, help="a store the demo ran on (it has a views artifact)")
    ap.add_argument("--benchmark", default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "hm-dev"),
                    help="a folder with gallery.csv and queries.csv (default ../shared/data/hm-dev); 'none' to skip")
    ap.add_argument("--rows", default="all", help="comma-separated row names (prefixes), or all")
    ap.add_argument("--work", default=None, help="where descriptors and checkpoints go (default: a folder under H)")
    args = ap.parse_args(argv)

    store = ArtifactStore(args.home)
    views_ref = store.latest(N.VIEWS, N.VIEWS)
    views_params = ViewParams(**store.manifest(views_ref).params)
    train_manifests = [m for m in store.manifests(N.TRAIN, N.CHECKPOINT) if m.params.get("recipe") == "head" and m.params.get("round") == 0]
    if not train_manifests:
        sys.exit(f"{args.home} has no head-recipe train[0] checkpoint: run the demo first")
    reference = TrainParams(**{**max(train_manifests, key=lambda m: m.created_at).params, "num_workers": 0})
    work = Path(args.work or (Path(args.home) / "bench-head-ablation"))
    work.mkdir(parents=True, exist_ok=True)

    data = latest_data_refs(args.home)
    annotated = load_annotated(store, data)
    cached_views = store.read_table(views_ref)
    model = optimize_for_inference(view_model(views_params), "openvino", fallback="eager")
    boxes = crop_boxes(views_params)
    started = time.perf_counter()
    # the demo's test split: the gallery is every shop photo's "whole" view, the queries' crops are embedded here
    sets = {"demo": _cached(work / f"demo-{views_ref.version}.npz", lambda: _queries_and_gallery(annotated, model, boxes, "test"))}
    if args.benchmark != "none":
        bench = Path(args.benchmark)
        key = hashlib.sha256((bench / "gallery.csv").read_bytes() + (bench / "queries.csv").read_bytes()).hexdigest()[:12]
        real = annotated_from_csvs(read_labelled_csv(bench / "gallery.csv"), read_labelled_csv(bench / "queries.csv"))
        sets["real"] = _cached(work / f"real-{views_params.image_size}-{len(boxes)}-{key}.npz",
                               lambda: _queries_and_gallery(real, model, boxes, "test"))
    print(f"descriptors ready in {time.perf_counter() - started:.0f} s: " + ", ".join(
        f"{n}: {len(s['query_items'])} queries x {s['queries'].shape[1]} crops, {len(s['gallery_items'])} shop photos" for n, s in sets.items()),
        file=sys.stderr)

    results: list[tuple[str, dict]] = []
    whole_only = {n: {**s, "queries": s["queries"][:, :1]} for n, s in sets.items()}  # box 0 is the whole photo
    results.append(("untrained backbone, whole photo", _score(whole_only, lambda x: x) | {"train_s": 0.0}))
    results.append((f"untrained backbone, {len(boxes)} crops", _score(sets, lambda x: x) | {"train_s": 0.0}))
    train_rows_cache: dict[int, tuple] = {}
    val = validation_fn(cached_views, 20)
    wanted = list(ROWS) if args.rows == "all" else [r for r in ROWS if any(r.startswith(p) for p in args.rows.split(","))]
    for name in wanted:
        params = reference.model_copy(update=ROWS[name])
        params = TrainParams(**params.model_dump())  # validated
        if params.street_crops not in train_rows_cache:
            train_rows_cache[params.street_crops] = head_training_rows(cached_views, params.street_crops)
        rows, descriptors = train_rows_cache[params.street_crops]
        t0 = time.perf_counter()
        with tempfile.TemporaryDirectory(dir=work) as out:
            result = train_embedder(rows, params, Path(out), val_fn=val, descriptors=descriptors)
            trained = load_embedder(result.checkpoint)
        figures = _score(sets, trained.refine_descriptors) | {"train_s": time.perf_counter() - t0, "epochs": result.epochs_done}
        results.append((name, figures))
        print(f"{name}: {figures}", file=sys.stderr)

    published = list(store.manifests(N.EVALUATE, N.METRICS))
    print(f"\nviews {views_ref.version} ({views_params.image_size} px, grid {views_params.crop_scales} {views_params.crop_positions}: "
          f"{len(boxes)} crops a query); reference: {reference.loss}, {reference.miner}, margin {reference.margin}, "
          f"P{reference.batch_p} x K{reference.batch_k}, lr {reference.lr:g}, {reference.epochs} epochs x {reference.steps_per_epoch} steps, "
          f"patience {reference.patience}; {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}, peak RSS {_rss_mib():.0f} MiB")
    head = "| row | demo top-1 | demo top-20 |" + (" real top-1 | real top-20 |" if "real" in sets else "") + " train s | epochs |"
    print(head)
    print("|" + " --- |" * (head.count("|") - 1))
    for name, f in results:
        cells = [f"{f['demo_top1']:.3f}", f"{f['demo_top20']:.3f}"]
        if "real" in sets:
            cells += [f"{f['real_top1']:.3f}", f"{f['real_top20']:.3f}"]
        cells += [f"{f['train_s']:.0f}", str(f.get("epochs", "–"))]
        print(f"| {name} | " + " | ".join(cells) + " |")
    if published:
        m = max(published, key=lambda m: m.created_at).metrics
        print(f"\npublished by the pipeline (train[0] + offline-mined round, evaluate {max(published, key=lambda m: m.created_at).version}): "
              + ", ".join(f"{k} {m[k]:.3f}" for k in sorted(m) if k.endswith(("served_top1", "served_top20")) and isinstance(m[k], float)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
