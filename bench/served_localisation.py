"""The served model's query localisations side by side on a real-photo benchmark: accuracy,
forward passes and ms per query, and which one the evaluate stage's rule would serve.

    python bench/served_localisation.py --home H [--benchmark ../shared/data/hm-dev]
        [--inference-mode M] [--budget-ms 60] [--grid '{"scales": [0.75, 0.55], "positions": "corners+centre"}']
        [--queries N] [--out results.jsonl]

``--home``: a store the pipeline ran on (``street2shop demo``). Its served checkpoint runs at
its served precision (the calibrated int8 rebuilt from ``serving.json``, as ``/search`` and
``street2shop eval`` run it; ``--inference-mode`` overrides) and is scored through the
evaluate stage's own code (:func:`~street2shop.retrieval.evaluation.score_localisations`):

- ``none``: the whole photo, one pass;
- ``multicrop``: the 11-crop grid (the whole photo and 0.75 / 0.55 crops at the corners and
  centre; ``--grid`` changes it);
- ``boxhead``: the learned localiser of the store's newest ``localise`` artifact on the
  embedder's one pass (whole photo: descriptor + map -> box), then one pass over the box crop;
- ``boxhead_pooled``: the same box pooled from the first pass's map (no further pass).

The learned rows need a localise artifact in the store; without one they are left out, and
the output says so (``--stand-in``: an untrained box head instead, to time the learned rows'
passes before a localiser is trained; their accuracy then means nothing). ``ms/query`` is the wall time of searching one query's vectors
(decoding, localisation, every pass; batches of 32 photos), timed on the first
``timing_queries`` queries, on this machine, at its load (printed).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from dataclasses import replace
from pathlib import Path

import torch

from street2shop.models.localise import BoxHead, load_localiser
from street2shop.models.onepass import one_pass_searches
from street2shop.retrieval.evaluation import LEARNED, Benchmark, EvaluateParams, LocaliseParams, score_localisations
from street2shop.retrieval.served import calibration_of, served_mode, served_runner
from street2shop.sources.labelled import annotated_from_csvs, read_labelled_csv
from street2shop.storage.names import LOCALISE, LOCALISER, LOCALISER_FILE
from street2shop.storage.promotions import served_checkpoint, serving_of
from street2shop.storage.store import ArtifactStore
from street2shop.tasks.catalog import load_checkpoint

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import emit  # noqa: E402

GRID = {"scales": [0.75, 0.55], "positions": "corners+centre"}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--home", required=True, help="a store the pipeline ran on (its served model and localise artifact)")
    ap.add_argument("--benchmark", default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "hm-dev"))
    ap.add_argument("--inference-mode", default=None, help="precision (default: the served one)")
    ap.add_argument("--budget-ms", type=float, default=None, help="the rule's latency budget, ms per query (default: none)")
    ap.add_argument("--grid", default=json.dumps(GRID), help="the multicrop grid's options as JSON")
    ap.add_argument("--queries", type=int, default=0, help="score the first N queries only (0: all)")
    ap.add_argument("--timing-queries", type=int, default=64)
    ap.add_argument("--stand-in", action="store_true",
                    help="without a localise artifact, time the learned rows with an untrained box head (accuracy meaningless)")
    ap.add_argument("--learned", default=None,
                    help='the learned localiser\'s variants as a JSON list of options, e.g. \'[{"factors": [1.0, 1.4]}, {"pooled": true}]\' '
                         "(default: the evaluate stage's learned candidates)")
    ap.add_argument("--out", default=None, help="append the result as one JSON line here (default: print it)")
    args = ap.parse_args(argv)

    store = ArtifactStore(args.home)
    checkpoint = served_checkpoint(store)
    serving = serving_of(store, checkpoint)
    embedder = load_checkpoint(store, checkpoint)
    mode = served_mode(serving, args.inference_mode)
    calibration = calibration_of(store, checkpoint, serving, embedder) if "int8" in mode else None
    runner = served_runner(embedder, mode, calibration)

    folder = Path(args.benchmark)
    name = re.sub(r"[^a-z0-9_-]+", "-", folder.name.lower()).strip("-") or "benchmark"
    queries = read_labelled_csv(folder / "queries.csv")
    if args.queries:
        queries = replace(queries, table=queries.table.slice(0, args.queries))
    real = annotated_from_csvs(read_labelled_csv(folder / "gallery.csv"), queries)
    params = EvaluateParams(
        benchmarks=[Benchmark(name=name, gallery=str(folder / "gallery.csv"), queries=str(folder / "queries.csv"))],
        localise=LocaliseParams(name="multicrop", options=json.loads(args.grid)),
        **({"learned_candidates": [LocaliseParams(name=LEARNED, options=o) for o in json.loads(args.learned)]} if args.learned else {}),
        latency_budget_ms=args.budget_ms, timing_queries=args.timing_queries, ks=[1, 5, 10, 20],
    )
    localiser = store.latest_or_none(LOCALISE, LOCALISER)
    learned = {}
    if localiser is None and args.stand_in:
        # timing only: an untrained head reads the same map and costs the same passes
        torch.manual_seed(0)
        size = embedder.preprocess.image_size
        head, meta = BoxHead(embedder.backbone.num_features), {"backbone": embedder.config.backbone, "input_size": [size, size]}
        localiser = "stand-in (an untrained BoxHead: its accuracy means nothing, its cost is the learned one's)"
    elif localiser is not None:
        head, meta = load_localiser(store.file(localiser, LOCALISER_FILE))
    if localiser is not None:
        variants = {c.label: c.options for c in params.learned_candidates}
        learned = one_pass_searches(embedder, mode, head, meta, variants, calibration=calibration, crops_runner=runner)
    placed = score_localisations(runner, None, params, {name: real}, learned=learned)

    n_queries = sum(role == "street" for role in real.column("role").to_pylist())
    print(f"\n{name}: {n_queries} queries against {real.num_rows - n_queries} shop photos; served model {checkpoint} "
          f"({serving.get('model', 'trained')}) at {getattr(runner, 'mode', 'eager')}; localiser: {localiser or 'none in the store'}; "
          f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}")
    print(f"rule: {placed.rule}")
    print("| localisation | passes / query | ms / query | top-1 | top-20 | mAP |")
    print("| --- | --- | --- | --- | --- | --- |")
    for label, fig in placed.figures.items():
        served = " (served by the rule)" if label == placed.served.label else ""
        print(f"| {label}{served} | {fig['passes']} | {fig['ms_per_query']:.0f} | {fig[f'{name}:top1']:.3f} | "
              f"{fig[f'{name}:top20']:.3f} | {fig[f'{name}:map']:.3f} |")
    emit({"bench": "served_localisation", "benchmark": name, "queries": n_queries, "checkpoint": str(checkpoint),
          "precision": getattr(runner, "mode", "eager"), "localiser": str(localiser) if localiser else None,
          "served": placed.served.label, "rule": placed.rule, "figures": placed.figures,
          "cores": os.cpu_count(), "load": os.getloadavg()[0]}, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
