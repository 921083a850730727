"""Where the learned localisation's time goes beyond the network: ``OnePassSearch.embed_paths``
(what ``street2shop eval`` and the evaluate stage run) and ``OnePassSearch.search`` on decoded
photos (what ``/search`` runs) against the plain whole-photo pass, per photo, side by side in
one process, on the served checkpoint at the served precision.

    python bench/one_pass_overhead.py --home H --localiser localise/localiser@V [--photos 64] [--profile]

``--localiser``: the localise stage's artifact (``bench/serve.py`` publishes a random-init
stand-in ``localise/localiser@stand-in-random-init``: the cost, not the skill). ``--profile``
prints the top of ``cProfile`` for the crop variant's ``embed_paths``.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import sys
from pathlib import Path

import torch

from street2shop.models.embed import embed_images
from street2shop.models.preprocess import read_image
from street2shop.retrieval.evaluation import LocaliseParams
from street2shop.retrieval.served import calibration_of, served_mode, served_runner, served_search

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import emit  # noqa: E402
from one_pass import best_ms, served_model  # noqa: E402

VARIANTS = {"boxhead": {}, "boxhead_pooled": {"pooled": True}}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--home", required=True)
    ap.add_argument("--localiser", required=True, help="localise/localiser@<version>")
    ap.add_argument("--benchmark", default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "hm-dev"))
    ap.add_argument("--photos", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--mode", default=None, help="precision (default: the served one)")
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)

    store, checkpoint, serving, embedder = served_model(args.home)
    mode = served_mode(serving, args.mode)
    calibration = calibration_of(store, checkpoint, serving, embedder) if "int8" in mode else None
    runner = served_runner(embedder, mode, calibration)
    paths = [str(p) for p in sorted((Path(args.benchmark) / "queries").iterdir())[: args.photos]]
    n = len(paths)
    rows: dict[str, dict[str, float]] = {"none": {"files (eval)": best_ms(lambda: embed_images(runner, paths, num_workers=0), n, args.repeats)}}
    for name, options in VARIANTS.items():
        learned = served_search(store, LocaliseParams(name="boxhead", options=options, localiser=args.localiser), embedder, mode, runner, calibration)
        images = [read_image(p, min_size=learned.decode_size) for p in paths]
        rows[name] = {
            "files (eval)": best_ms(lambda: learned.embed_paths(paths), n, args.repeats),
            "decoded, one at a time (service)": best_ms(lambda: [learned.search([im]) for im in images], n, args.repeats),
            "decoded, batch of 16 (service, batched)": best_ms(
                lambda: [learned.search(images[i : i + 16]) for i in range(0, n, 16)], n, args.repeats),
        }
        if args.profile and not options:
            profile = cProfile.Profile()
            profile.runcall(learned.embed_paths, paths)
            pstats.Stats(profile, stream=sys.stderr).sort_stats("cumulative").print_stats(25)
        print(name, rows[name], file=sys.stderr)
    print(f"\n{checkpoint} at {mode}, {n} {Path(args.benchmark).name} queries, ms per photo, best of {args.repeats}; "
          f"torch threads {torch.get_num_threads()}; {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}")
    steps = list(rows["boxhead"])
    print("| localisation | " + " | ".join(steps) + " |\n| --- |" + " --- |" * len(steps))
    for name, row in rows.items():
        print(f"| {name} | " + " | ".join(f"{row[s]:.1f}" if s in row else "" for s in steps) + " |")
    emit({"bench": "one_pass_overhead", "checkpoint": str(checkpoint), "mode": mode, "photos": n, "ms_per_photo": rows,
          "cores": os.cpu_count(), "load": os.getloadavg()[0]}, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
