"""The learned garment localiser against simple boxes, by IoU with the true garment box.

    python bench/localiser.py --home H --truth SHOP/truth/boxes.csv [--benchmark ../shared/data/hm-dev] [--rounds 0,1]

``H`` is a store the demo pipeline ran on (its newest crawl, dedup split and noise filter are
read); ``SHOP/truth/boxes.csv`` is the demo shop's true box of each customer photo (written by
the shop generator). The localiser is learned exactly as the localise stage learns it
(:func:`~street2shop.models.localise_training.learn_localiser`, the demo's params: the
pretrained EfficientNet-Lite0's 224 px whole-photo map), once per ``--rounds`` value, and
scored on the demo's test-split customer photos and on the benchmark's queries (its
``boxes.csv``; evaluation only) beside:

- ``whole photo``: the box (0, 0, 1, 1);
- ``centred, median pseudo-box size``: one fixed box, centred, as wide and as tall as the
  median pseudo-box the localiser learned from;
- ``pseudo-box (knows the item)``: the stage's pseudo-box search run on the test photo with
  its *own item's* shop photos (an oracle on the item: the head must find the box without it).

``train s``: the stage's learning time (feature maps of the training photos, the pseudo-box
search, the head's steps); ``head ms``: the head alone per photo (batch 1), its map given;
``map ms``: the backbone's whole-photo pass per photo (batch 32, OpenVINO fp32), which the
service makes anyway. Times are wall-clock on this machine.
"""

from __future__ import annotations

import argparse
import csv
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pyarrow.compute as pc

from street2shop.cleaning.selection import gallery_images, query_images
from street2shop.flows.stages import latest_data_refs
from street2shop.models.backbones import create_backbone
from street2shop.models.localise_training import (
    LocaliserParams,
    descriptors,
    iou_figures,
    learn_localiser,
    maps_function,
    predict_boxes,
    pseudo_boxes,
)
from street2shop.storage.store import ArtifactStore
from street2shop.tasks.data import load_annotated
from street2shop.tasks.localise import read_truth_boxes


def cached(maps_of):
    """``maps_of`` remembering each photo's map (several rounds settings share the passes)."""
    memory: dict[str, np.ndarray] = {}

    def maps(paths):
        missing = [p for p in dict.fromkeys(paths) if p not in memory]
        if missing:
            memory.update(zip(missing, maps_of(missing)))
        return np.stack([memory[p] for p in paths]) if paths else maps_of([])

    return maps


def demo_test_set(annotated, truth_csv: str):
    """(query paths, true boxes (n, 4), each query's own shop photo paths) of the test split."""
    truth = read_truth_boxes(truth_csv)
    test = query_images(annotated, "test")
    gallery = gallery_images(annotated)
    shop_of: dict[str, list[str]] = {}
    for item, path in zip(gallery.column("item_id").to_pylist(), gallery.column("path").to_pylist()):
        shop_of.setdefault(item, []).append(path)
    rows = {i: (p, it) for i, p, it in zip(test.column("image_id").to_pylist(), test.column("path").to_pylist(),
                                            test.column("item_id").to_pylist()) if i in truth and it in shop_of}
    ids = list(rows)
    return [rows[i][0] for i in ids], np.asarray([truth[i] for i in ids], np.float32), [shop_of[rows[i][1]] for i in ids]


def benchmark_set(folder: Path):
    """(query paths, true boxes, each query's gallery photo paths) of a benchmark folder."""
    gallery: dict[str, list[str]] = {}
    for row in csv.DictReader(open(folder / "gallery.csv")):
        gallery.setdefault(row["item_id"], []).append(str(folder / row["path"]))
    item_of = {row["path"]: row["item_id"] for row in csv.DictReader(open(folder / "queries.csv"))}
    rows = [row for row in csv.DictReader(open(folder / "boxes.csv")) if item_of.get(row["path"]) in gallery]
    boxes = np.asarray([[float(row[c]) for c in ("x0", "y0", "x1", "y1")] for row in rows], np.float32)
    return [str(folder / row["path"]) for row in rows], boxes, [gallery[item_of[row["path"]]] for row in rows]


def baselines(maps_of, paths, shop_paths, pseudo_size, params: LocaliserParams) -> dict[str, np.ndarray]:
    n = len(paths)
    w, h = pseudo_size
    flat = sorted({p for group in shop_paths for p in group})
    vectors = dict(zip(flat, descriptors(maps_of(flat), params.gem_p)))
    searched, _ = pseudo_boxes(maps_of(paths), [np.stack([vectors[p] for p in group]) for group in shop_paths],
                               params.min_frac, params.gem_p, params.top_windows)
    return {
        "whole photo": np.tile(np.float32([0, 0, 1, 1]), (n, 1)),
        "centred, median pseudo-box size": np.tile(np.float32([0.5 - w / 2, 0.5 - h / 2, 0.5 + w / 2, 0.5 + h / 2]), (n, 1)),
        "pseudo-box (knows the item)": searched,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--home", required=True, help="a store the demo pipeline ran on")
    parser.add_argument("--truth", required=True, help="the demo shop's truth/boxes.csv")
    parser.add_argument("--benchmark", type=Path, default=None, help="a benchmark folder with boxes.csv (hm-dev)")
    parser.add_argument("--rounds", default="0", help="refinement rounds to compare, comma-separated")
    parser.add_argument("--steps", type=int, default=LocaliserParams().steps)
    args = parser.parse_args()

    store = ArtifactStore(args.home)
    annotated = load_annotated(store, latest_data_refs(args.home))
    base = LocaliserParams(steps=args.steps)
    backbone = create_backbone(base.backbone)
    started = time.perf_counter()
    maps_of = maps_function(backbone, base.input_size, base.runtime)
    convert_s = time.perf_counter() - started
    memo = cached(maps_of)
    sets = {"demo test": demo_test_set(annotated, args.truth)}
    if args.benchmark is not None:
        sets[args.benchmark.name] = benchmark_set(args.benchmark)

    rows: list[tuple[str, str, dict]] = []
    learned = {}
    for rounds in [int(r) for r in args.rounds.split(",")]:
        params = base.model_copy(update={"rounds": rounds})
        learned[rounds] = learn_localiser(annotated, params, memo)  # the first setting makes the maps, the rest reuse them
    first = learned[min(learned)]
    pseudo = first.pseudo_boxes
    size = (float(np.median(pc.subtract(pseudo["x1"], pseudo["x0"]).to_numpy())),
            float(np.median(pc.subtract(pseudo["y1"], pseudo["y0"]).to_numpy())))
    timing = {}
    for name, (paths, truth, shop_paths) in sets.items():
        t = time.perf_counter()
        maps = memo(paths)
        timing[name] = 1000 * (time.perf_counter() - t) / max(1, len(paths))
        for label, boxes in baselines(memo, paths, shop_paths, size, base).items():
            rows.append((name, label, iou_figures(boxes, truth)))
        for rounds, result in learned.items():
            t = time.perf_counter()
            boxes = predict_boxes(result.head, maps, batch=1)
            ms = 1000 * (time.perf_counter() - t) / max(1, len(paths))
            label = f"learned head, {rounds} refinement round{'s' if rounds != 1 else ''}"
            rows.append((name, label, {**iou_figures(boxes, truth), "head_ms": ms}))

    print(f"# bench/localiser.py, {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, store {args.home}")
    print(f"pseudo-boxes: {first.figures['pseudo_boxes']} training street photos; OpenVINO conversion {convert_s:.1f} s; "
          f"map ms/photo (batch 32, decode included): " + ", ".join(f"{k} {v:.1f}" for k, v in timing.items()))
    for rounds, result in learned.items():
        f = result.figures
        reused = " (maps made by the first setting, reused)" if rounds != min(learned) else ""
        print(f"rounds {rounds}: training {f['training_seconds']:.1f} s (maps {f['maps_seconds']:.1f} s, head {f['head_seconds']:.1f} s){reused}")
    print("\n| photos | boxes | IoU median | IoU mean | IoU >= 0.5 | photos | head ms/photo |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name, label, f in rows:
        head_ms = f"{f['head_ms']:.2f}" if "head_ms" in f else ""
        print(f"| {name} | {label} | {f['iou_median']:.3f} | {f['iou_mean']:.3f} | {f['iou_ge_0_5']:.3f} | {f['iou_photos']} | {head_ms} |")


if __name__ == "__main__":
    main()
