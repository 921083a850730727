"""Noise-filter benchmark: every feature extractor trained and judged on the same labels and split.

Reads the latest crawled ``images`` of a store and a labels file (the demo shop's by default),
trains :func:`street2shop.cleaning.noise.train_noise_filter` once per extractor with otherwise
identical ``NoiseParams`` (same seed, so the same by-product held-out split), and prints the
held-out ROC AUC, F1/precision/recall of the noise class at the chosen threshold, and the
wall time of training (feature extraction of the labelled photos dominates it)::

    python bench/noise.py --home /tmp/demo-home \
        --labels /tmp/demo-home/demo-shop/real-150-s0/labels.csv --features colour_edge cnn

``--fine-tune`` adds a run of the ``cnn`` extractor with ``NoiseParams(fine_tune=True)``
(last block + head trained on the train side, same split) next to the frozen one.
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path

import pyarrow.compute as pc
from _results import emit  # bench/ is on sys.path when a benchmark is run as a script
from street2shop.cleaning.labels import validate_labels
from street2shop.cleaning.noise import NoiseParams, train_noise_filter
from street2shop.storage.store import ArtifactStore, images_with_paths


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--home", type=Path, required=True, help="store holding a crawl")
    ap.add_argument("--labels", type=Path, required=True, help="labels .csv/.parquet")
    ap.add_argument("--features", nargs="+", default=["colour_edge", "cnn"])
    ap.add_argument("--image-size", type=int, nargs="+", default=None,
                    help="one per --features (default: 128 for colour_edge, 160 for cnn)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--fine-tune", action="store_true", help="also run cnn with fine_tune=True")
    args = ap.parse_args(argv)

    store = ArtifactStore(args.home)
    images_ref = store.latest("crawl", "images")
    images = images_with_paths(store, images_ref)
    items = store.read_table(images_ref.model_copy(update={"name": "items"}))
    street = images.filter(pc.equal(images.column("role"), "street"))
    labels = validate_labels(args.labels, set(street.column("image_id").to_pylist()))
    sizes = args.image_size or [160 if f == "cnn" else 128 for f in args.features]
    if len(sizes) != len(args.features):
        ap.error("--image-size needs one value per --features")

    runs = [(features, size, False) for features, size in zip(args.features, sizes)]
    if args.fine_tune:
        runs += [("cnn", size, True) for features, size in zip(args.features, sizes) if features == "cnn"]
    results = []
    for features, size, fine_tune in runs:
        params = NoiseParams(features=features, image_size=size, seed=args.seed, fine_tune=fine_tune)
        with tempfile.TemporaryDirectory() as out:
            started = time.perf_counter()
            report = train_noise_filter(street, labels, params, Path(out), items)
            wall = time.perf_counter() - started
        row = {"features": features, "fine_tune": fine_tune, "image_size": size, "train_wall_s": round(wall, 1),
               "ms_per_photo": round(1000 * wall / (report.n_train + report.n_heldout + report.n_unreadable), 1),
               **report.model_dump()}
        results.append(row)
        name = features + (" (fine-tuned)" if fine_tune else "")
        print(f"{name:>17} @{size}px: ROC AUC {report.roc_auc:.3f}  F1 {report.f1_noise:.3f}  "
              f"P {report.precision_noise:.3f}  R {report.recall_noise:.3f}  kept {report.kept_fraction:.2f} "
              f"(target met: {report.target_met})  {wall:.0f} s for {report.n_train}+{report.n_heldout} photos")
    emit({"bench": "noise", "machine": f"{platform.machine()} {platform.processor() or ''}".strip(), "results": results})
    return results


if __name__ == "__main__":
    main()
