"""Outfit compatibility benchmark: FITB and AUC of every model, training time, and the latency
of ``POST /outfits/complete``.

On a store where the demo ran (``street2shop demo --home H``), the newest crawl with outfits
and its dedup groups: the features stage (reused when published), then for each split kind and
seed the ``outfit_train`` and ``outfit_evaluate`` stages (the same code the pipeline runs;
published, so a second run reuses them), and a table of test-split figures per model::

    python bench/outfits.py --home H --splits group,outfit --seeds 0,1,2 [--truth H/demo-shop/real-300-s0]

``--truth``: the demo shop's folder; adds the hidden rule itself as a model ("oracle"), the
ceiling of the generated task (a random swap is sometimes compatible by the rule).
``--train JSON``: training parameters over the defaults (``'{"pca": 16, "dropout": 0.2}'``);
every run prints the model served and each candidate's validation figures beside the served
one's test figures (95 % intervals) and its figures on training outfits.
``--latency N``: N requests to ``POST /outfits/complete`` (item ids; and with a photo) against
the app serving H's index (in-process client), p50 / p99 ms.

On Polyvore Outfits in its own layout (``--polyvore DIR --version nondisjoint``): the data
set's items, split and questions (``--home`` is where to publish)::

    python bench/outfits.py --home /data/s2s-polyvore --polyvore /data/polyvore_outfits --version nondisjoint
"""

from __future__ import annotations

import argparse
import csv
import json
import io
import os
import platform
import statistics
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
from _results import emit  # bench/ is on sys.path when a benchmark is run as a script

from street2shop.cleaning.outfits import OutfitSplitParams
from street2shop.flows.outfits import latest_outfit_inputs
from street2shop.models.outfit_view import OutfitRefs
from street2shop.models.features import FeatureParams
from street2shop.retrieval.outfit_metrics import score_questions
from street2shop.storage import names as N
from street2shop.storage.store import ArtifactRef, ArtifactStore
from street2shop.tasks.features import run_features
from street2shop.sources.polyvore import PolyvoreParams
from street2shop.tasks.outfits import (
    OutfitConfig,
    run_outfit_evaluate,
    run_outfit_train,
    run_polyvore,
)

ORDER = ["random", "backbone", "siamese", "type_aware", "type_aware_sat", "oracle"]


def _oracle(shop: Path):
    """Scorers that answer by the demo shop's hidden rule (1 compatible, 0 not)."""
    from street2shop.shop import outfits as O

    with open(shop / "truth" / "items.csv", newline="") as f:
        items = {r["item_id"]: r for r in csv.DictReader(f)}
    with open(shop / "truth" / "styles.csv", newline="") as f:
        traits = O.traits_from_rows(csv.DictReader(f))

    def piece(item_id: str):
        r = items[item_id]
        return O.OutfitPiece(item_id, r["design_id"].split(":")[0], r["colour"], O.TYPE_OF_CATEGORY[r["category"]])

    return (lambda its: float(O.compatible([piece(i) for i in its], traits)),
            lambda ctx, cands: [float(O.compatible([piece(i) for i in ctx] + [piece(c)], traits)) for c in cands])


def _latency(home: Path, n: int) -> dict:
    from fastapi.testclient import TestClient
    from PIL import Image
    from street2shop.service.app import create_app

    client = TestClient(create_app(home, street_in_background=False, inference_mode="eager"))
    types = client.get("/outfits/types").json()
    images, _ = latest_outfit_inputs(str(home))
    rows = ArtifactStore(home).read_table(ArtifactRef(stage=images.stage, name=N.OUTFITS, version=images.version)).to_pylist()
    by_outfit = defaultdict(list)
    for r in rows:
        by_outfit[r["outfit_id"]].append(r)
    outfits = list(by_outfit.values())
    rng = np.random.default_rng(0)
    out = {}
    photo = io.BytesIO()
    Image.open(next(p for p in (home / "blobs").rglob("*.jpg"))).convert("RGB").save(photo, "JPEG")
    for label, with_photo in (("items", False), ("photo", True)):
        times = []
        client.post("/outfits/complete", data={"items": [outfits[0][0]["item_id"]], "type": outfits[0][1]["type"]})  # warm up
        for k in range(n):
            o = outfits[int(rng.integers(len(outfits)))]
            given, wanted = o[:-1], o[-1]["type"]
            data = {"type": wanted} if with_photo else {"items": [r["item_id"] for r in given], "type": wanted}
            files = {"image": ("q.jpg", photo.getvalue(), "image/jpeg")} if with_photo else None
            started = time.perf_counter()
            r = client.post("/outfits/complete?k=6", data=data, files=files)
            times.append(1000 * (time.perf_counter() - started))
            assert r.status_code == 200, r.text
        out[label] = {"p50_ms": round(statistics.median(times), 1), "p99_ms": round(float(np.percentile(times, 99)), 1), "n": n}
    out["types"] = types["types"]
    return out


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--home", required=True, type=Path)
    ap.add_argument("--splits", default="group", help="split kinds, comma-separated: group, outfit")
    ap.add_argument("--seeds", default="0", help="training seeds, comma-separated")
    ap.add_argument("--truth", type=Path, help="the demo shop's folder: adds the hidden rule as 'oracle'")
    ap.add_argument("--polyvore", type=Path, help="a Polyvore Outfits folder in its own layout")
    ap.add_argument("--version", default="nondisjoint", choices=["nondisjoint", "disjoint"])
    ap.add_argument("--backbone", default="efficientnet_lite0")
    ap.add_argument("--train", default="{}", help="training params over the defaults, as JSON: '{\"pca\": 16}'")
    ap.add_argument("--latency", type=int, default=0, help="requests to POST /outfits/complete (0: none)")
    ap.add_argument("--out", help="append the JSON results to this file")
    args = ap.parse_args(argv)
    store = ArtifactStore(args.home)
    home = str(args.home)
    cfg = OutfitConfig(features=FeatureParams(backbone=args.backbone))
    cfg = cfg.model_copy(update={"train": cfg.train.model_copy(update=json.loads(args.train))})
    if args.polyvore is not None:
        source = run_polyvore(store, PolyvoreParams(path=str(args.polyvore), version=args.version))
        images, groups = source[N.IMAGES], None
    else:
        images, groups = latest_outfit_inputs(home)
    started = time.perf_counter()
    features = run_features(store, images, cfg.features)
    print(f"features {features.version} ({'reused' if features.skipped else f'{time.perf_counter() - started:.1f} s'}): "
          f"{features.metrics.get('photos')} photos, dim {features.metrics.get('dim')}")
    refs = OutfitRefs.of_photos(images, groups, features[N.PHOTO_FEATURES])
    records = []
    kinds = ["given"] if args.polyvore is not None else args.splits.split(",")
    for kind in kinds:
        per_model: dict[str, list[tuple[float, float]]] = defaultdict(list)
        seconds: dict[str, list[float]] = defaultdict(list)
        for seed in [int(s) for s in args.seeds.split(",")]:
            split = OutfitSplitParams(kind="group" if kind == "given" else kind, seed=0)
            train = cfg.train.model_copy(update={"seed": seed})
            trained = run_outfit_train(store, refs, split, train)
            evaluated = run_outfit_evaluate(store, refs, trained[N.OUTFIT_MODEL], cfg.evaluate)
            m = evaluated.metrics
            s = m["served"]
            print(f"{kind} seed {seed}: served {s} by {trained.metrics['serve_rule']}; validation "
                  + ", ".join(f"{n} AUC {c['val_auc']} FITB {c['val_fitb']}" for n, c in trained.metrics["candidates"].items())
                  + f"; served test AUC {m.get(s + '_auc')} {m.get(s + '_auc_ci95')} (train {m.get(s + '_auc_train')}), "
                  f"FITB {m.get(s + '_fitb')} {m.get(s + '_fitb_ci95')} (train {m.get(s + '_fitb_train')})")
            for model in ORDER:
                if f"{model}_auc" in m:
                    per_model[model].append((m[f"{model}_auc"], m[f"{model}_fitb"]))
                if f"{model}_train_s" in trained.metrics:
                    seconds[model].append(trained.metrics[f"{model}_train_s"])
            if args.truth is not None and kind != "given":
                questions = store.read_table(evaluated[N.OUTFIT_QUESTIONS])
                test = questions.filter(np.asarray([s == "test" for s in questions.column("split").to_pylist()]))
                table, _ = score_questions(test, "oracle", *_oracle(args.truth))
                rows = {r["metric"]: r["value"] for r in table.to_pylist() if r["size"] == 0}
                per_model["oracle"].append((rows["auc"], rows["fitb"]))
            per_size = [r for r in store.read_table(evaluated[N.OUTFIT_METRICS]).to_pylist() if r["size"] > 0]
            record = {"bench": "outfits", "split": kind, "seed": seed, "train_version": trained.version,
                      "evaluate_version": evaluated.version, "figures": m, "train": trained.metrics,
                      "per_size": per_size, "machine": platform.machine(), "load_avg": os.getloadavg()[0]}
            records.append(record)
            emit(record, args.out)
        print(f"\nsplit: {kind}   seeds: {args.seeds}   test outfits: {trained.metrics.get('outfits_test')}, "
              f"questions: {m['test_compatibility_questions']} compatibility, {m['test_fitb_questions']} FITB")
        print(f"{'model':<16} {'AUC':>14} {'FITB':>14} {'train s':>9}")
        for model in ORDER:
            if model not in per_model:
                continue
            auc = [a for a, _ in per_model[model]]
            fitb = [f for _, f in per_model[model]]

            def fmt(v):
                return f"{np.mean(v):.3f}" + (f" ± {np.std(v):.3f}" if len(v) > 1 else "")

            secs = f"{np.mean(seconds[model]):.1f}" if seconds.get(model) else "-"
            print(f"{model:<16} {fmt(auc):>14} {fmt(fitb):>14} {secs:>9}")
    if args.latency:
        lat = _latency(args.home, args.latency)
        print(f"\nPOST /outfits/complete, k=6: items p50 {lat['items']['p50_ms']} ms, p99 {lat['items']['p99_ms']} ms; "
              f"with a photo p50 {lat['photo']['p50_ms']} ms, p99 {lat['photo']['p99_ms']} ms ({args.latency} requests each)")
        record = {"bench": "outfits_latency", **lat, "load_avg": os.getloadavg()[0]}
        records.append(record)
        emit(record, args.out)
    return records


if __name__ == "__main__":
    main()
