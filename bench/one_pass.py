"""What the learned localisation's first pass costs: the served embedder's plain pass against
its one pass that also returns the feature map, and the box head on that map, per photo.

    python bench/one_pass.py --home H [--benchmark ../shared/data/hm-dev] [--photos 32] [--repeats 3]

On the store's served checkpoint, at fp32 (OpenVINO) and at the served int8 (calibrated on
``serving.json``'s photos), one batch of ``--photos`` benchmark queries, already decoded and
preprocessed: the best of ``--repeats`` runs of each step, side by side in one process. The
box head is an untrained :class:`~street2shop.models.localise.BoxHead` of the default width
(its cost does not depend on its weights); ``detect`` is ``detect_garments`` (the head plus
each photo's boxes and NMS).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch

from street2shop.models.fast import optimize_for_inference
from street2shop.models.localise import BoxHead, detect_garments
from street2shop.models.preprocess import read_image
from street2shop.retrieval.served import calibration_of
from street2shop.storage.promotions import served_checkpoint, serving_of
from street2shop.storage.store import ArtifactStore
from street2shop.tasks.catalog import load_checkpoint

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import emit  # noqa: E402


def best_ms(fn, n: int, repeats: int) -> float:
    """The best of ``repeats`` runs of ``fn`` after a warm-up, in ms per photo of ``n``."""
    fn()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return 1000 * min(times) / n


def served_model(home: str):
    """``(store, served checkpoint, its serving.json, the embedder)`` of the store at ``home``."""
    store = ArtifactStore(home)
    checkpoint = served_checkpoint(store)
    return store, checkpoint, serving_of(store, checkpoint), load_checkpoint(store, checkpoint)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--home", required=True)
    ap.add_argument("--benchmark", default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "hm-dev"))
    ap.add_argument("--photos", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--modes", default="openvino,openvino_int8")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)

    store, checkpoint, serving, embedder = served_model(args.home)
    paths = sorted(p for p in (Path(args.benchmark) / "queries").iterdir())[: args.photos]
    pixels = torch.stack([embedder.preprocess(read_image(p)) for p in paths])
    size = embedder.preprocess.image_size
    torch.manual_seed(0)
    head = BoxHead(embedder.backbone.num_features).eval()
    rows = {}
    for mode in args.modes.split(","):
        calibration = calibration_of(store, checkpoint, serving, embedder) if "int8" in mode else None
        plain = optimize_for_inference(embedder, mode, calibration=calibration)
        both = optimize_for_inference(embedder, mode, calibration=calibration, feature_map=(size, size))
        with torch.inference_mode():
            fmap = both(pixels)[1]
            rows[mode] = {
                "plain pass": best_ms(lambda: plain(pixels), len(paths), args.repeats),
                "one pass (+ map)": best_ms(lambda: both(pixels), len(paths), args.repeats),
                "box head": best_ms(lambda: head(fmap), len(paths), args.repeats),
                "detect (head + boxes + NMS)": best_ms(lambda: detect_garments(head, fmap), len(paths), args.repeats),
            }
        print(mode, rows[mode], file=sys.stderr)
    print(f"\n{checkpoint} on {len(paths)} {Path(args.benchmark).name} queries (batch {len(paths)}), ms per photo, best of "
          f"{args.repeats}; torch threads {torch.get_num_threads()}; {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}")
    steps = list(next(iter(rows.values())))
    print("| precision | " + " | ".join(steps) + " |")
    print("| --- |" + " --- |" * len(steps))
    for mode, row in rows.items():
        print(f"| {mode} | " + " | ".join(f"{row[s]:.1f}" for s in steps) + " |")
    emit({"bench": "one_pass", "checkpoint": str(checkpoint), "photos": len(paths), "ms_per_photo": rows,
          "cores": os.cpu_count(), "load": os.getloadavg()[0]}, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
