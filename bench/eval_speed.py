"""``street2shop eval`` end to end on 1,000 queries x 3,000 gallery photos: wall time and figures.

    python bench/eval_speed.py --home H [--benchmark ../shared/data/hm-dev] [--queries 1000]
        [--gallery 3000] [--localise '{"name": "none"}' ...] [--inference-mode M] [--out results.jsonl]

The set is built from a real-photo benchmark in ``street2shop eval``'s CSV format: its
queries and gallery photos as they are, then, to reach the sizes asked for, mirrored copies
of its queries (the same items; written to a temporary folder, never into the project) and
real garment photos of another set as further gallery items no query belongs to
(``--distractors``, default ``clothing-small``: photos of garments on beds, floors and
hangers). On hm-dev (600 queries, 2,000 gallery photos) that is 400 mirrored queries and
1,000 distractors.

Each run is the command a user types, in a fresh process (``python -m street2shop.cli eval
--home H --json``): start-up, loading the served checkpoint, rebuilding its precision (int8
quantisation from serving.json's calibration photos), the served localisation (or the one
given with ``--localise``), decoding and embedding every photo, and scoring. The target is
<= 180 s on 2 cores at the served int8 precision.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image, ImageOps

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import emit  # noqa: E402

TARGET_S = 180.0


def _rows(csv_path: Path) -> list[dict]:
    with open(csv_path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    for row in rows:
        row["path"] = str((csv_path.parent / row["path"]).resolve())
    return rows


def _mirrored(row: dict, folder: Path, suffix: str) -> dict:
    """A mirrored copy of the row's photo in ``folder``; the row pointing at it."""
    out = folder / f"{Path(row['path']).stem}-{suffix}.jpg"
    with Image.open(row["path"]) as image:
        ImageOps.mirror(image.convert("RGB")).save(out, quality=90)
    return {**row, "path": str(out)}


def _write(path: Path, rows: list[dict]) -> Path:
    fields = list(dict.fromkeys(k for row in rows for k in row))
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    return path


def build_set(benchmark: Path, n_queries: int, n_gallery: int, folder: Path, distractors: Path) -> tuple[Path, Path, dict]:
    """``(gallery.csv, queries.csv, how it was built)`` of the sizes asked for, in ``folder``."""
    queries, gallery = _rows(benchmark / "queries.csv"), _rows(benchmark / "gallery.csv")
    others = sorted(p for p in distractors.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    if n_queries > 2 * len(queries) or n_gallery > len(gallery) + len(others):
        raise SystemExit(f"{benchmark.name} has {len(queries)} queries and {len(gallery)} gallery photos, {distractors.name} "
                         f"{len(others)} photos: at most {2 * len(queries)} queries and {len(gallery) + len(others)} gallery photos")
    photos = folder / "photos"
    photos.mkdir(parents=True, exist_ok=True)
    extra_q = [_mirrored(row, photos, "q") for row in queries[: max(0, n_queries - len(queries))]]
    # a distractor is an item of its own, which no query belongs to
    extra_g = [{"path": str(p.resolve()), "item_id": f"distractor-{i}", "product_id": f"distractor-{i}", "category": "distractor",
                "colour": "distractor"}
               for i, p in enumerate(others[: max(0, n_gallery - len(gallery))])]
    q = _write(folder / "queries.csv", (queries + extra_q)[:n_queries])
    g = _write(folder / "gallery.csv", (gallery + extra_g)[:n_gallery])
    how = {"benchmark": benchmark.name, "queries": n_queries, "gallery": n_gallery, "mirrored_queries": len(extra_q),
           "distractors": len(extra_g), "distractors_from": distractors.name}
    return g, q, how


def run_eval(home: str, gallery: Path, queries: Path, extra: list[str]) -> tuple[float, float, dict, str]:
    """Wall seconds, CPU seconds (user + system, every thread), the JSON figures and what was
    run, of one ``eval`` process. On a machine shared with other work the wall time grows with
    the load; the CPU time much less so: CPU / cores is the wall time on idle cores if the
    process kept them all busy (a lower bound)."""
    command = [sys.executable, "-m", "street2shop.cli", "eval", "--home", home, "--gallery", str(gallery), "--queries", str(queries), *extra]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run([*command, "--json"], capture_output=True, text=True)
    seconds = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"eval failed (exit {done.returncode}): {done.stderr.strip()[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return seconds, cpu, json.loads(done.stdout.strip().splitlines()[-1]), " ".join(extra) or "as served"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--home", required=True, help="a store the pipeline ran on: its served model is evaluated")
    ap.add_argument("--benchmark", default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "hm-dev"))
    ap.add_argument("--distractors", default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "clothing-small"),
                    help="a folder of other garment photos: the gallery's photos beyond the benchmark's")
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--gallery", type=int, default=3000)
    ap.add_argument("--localise", action="append", default=[], help="also run with this --localise (JSON); repeatable")
    ap.add_argument("--inference-mode", default=None, help="run every row at this precision (default: the served one)")
    ap.add_argument("--out", default=None, help="append the result as one JSON line here (default: print it)")
    args = ap.parse_args(argv)

    mode = ["--inference-mode", args.inference_mode] if args.inference_mode else []
    rows = []
    with tempfile.TemporaryDirectory(prefix="street2shop-eval-speed-") as folder:
        gallery, queries, how = build_set(Path(args.benchmark), args.queries, args.gallery, Path(folder), Path(args.distractors))
        for extra in [mode, *([*mode, "--localise", loc] for loc in args.localise)]:
            seconds, cpu, figures, what = run_eval(args.home, gallery, queries, extra)
            rows.append({"run": what, "seconds": seconds, "cpu_seconds": cpu, "precision": figures["inference_mode"], "localise": figures["localise"],
                         "top1": figures["overall"]["top1"], "top20": figures["overall"]["top20"],
                         "queries": figures["overall"]["n_queries"], "gallery": figures["overall"]["gallery_size"]})
            print(rows[-1], file=sys.stderr)
    print(f"\n`street2shop eval` on {how['queries']} queries x {how['gallery']} gallery photos built from {how['benchmark']} "
          f"({how['mirrored_queries']} mirrored queries, {how['distractors']} distractors from {how['distractors_from']}); "
          f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}; target <= {TARGET_S:.0f} s")
    cores = len(os.sched_getaffinity(0))
    print(f"| run | precision | localisation | wall s | CPU s | CPU s / {cores} cores | top-1 | top-20 |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        label = r["localise"]["name"] + ("_pooled" if r["localise"].get("options", {}).get("pooled") else "")
        print(f"| {r['run']} | {r['precision']} | {label} | {r['seconds']:.0f} | {r['cpu_seconds']:.0f} | "
              f"{r['cpu_seconds'] / cores:.0f} | {r['top1']:.3f} | {r['top20']:.3f} |")
    emit({"bench": "eval_speed", "set": how, "rows": rows, "target_s": TARGET_S, "cores": os.cpu_count(), "load": os.getloadavg()[0]}, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
