"""Ablation of the embedder's training choices, small enough to run on CPU in minutes.

Every row trains with the real training path (``train_embedder``) on the training photos of
a store's cleaned data (``selection.training_images``) and is scored by THE evaluation path
(``evaluate_features``: labelled-clean street test photos against every shop photo, exact
search), changing one choice of the reference setting at a time:

* reference: anchors from shop photos, semi-hard triplets, triplet loss, GeM pooling;
* anchors from street photos (``anchor_domain="street"``);
* hard and random triplets (``miner="hard"`` / ``"random"``);
* ArcFace instead of the triplet loss (its margin is an angle: 28.6 deg, PML's default);
* SPoC and the combined descriptor (GeM + MAC + SPoC) instead of GeM;
* the projection head initialised at random instead of at the PCA of the pretrained features;

plus the untrained model (the backbone's pretrained features) as the baseline. Each row
runs in a forked child process, so its training time and peak RSS are its own: a forked
child's peak RSS counts every page it shares with the parent (the imported libraries and the
photo table, about what any training process holds) plus what training added; the parent's
RSS at the fork is printed so the two can be told apart.

``--memory-check`` adds a row that trains with the default demo settings (the demo's
backbone and 160 px, ``TrainParams``' P x K batches, trainable backbone) for a few steps:
issue 4 asks that training the demo embedder fits in 4 GiB.

    python bench/ablation.py --home /tmp/demo-home                       # one seed, ~10 min
    python bench/ablation.py --home /tmp/demo-home --seeds 0 1 --memory-check
    python bench/ablation.py --annotated table.parquet --backbone tiny    # smoke run

``--home`` reads the cleaned data the store's latest training checkpoint was trained on (the
same inputs as ``tasks/train.py`` and ``tasks/evaluate.py``); ``--annotated`` reads a table
shaped like ``tasks.data.load_annotated``'s output instead.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import platform
import resource
import statistics
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from _results import emit  # bench/ is on sys.path when a benchmark is run as a script
from street2shop.cleaning.selection import training_images
from street2shop.models.embed import embed_images
from street2shop.models.embedder import (
    build_embedder,
    load_embedder,
    pretrained_features,
)
from street2shop.models.training import TrainParams, train_embedder
from street2shop.retrieval.evaluation import evaluate_features

BASELINE = "untrained (pretrained features)"
#: the other rows, each one change of the reference setting (name -> TrainParams fields)
ROWS: dict[str, dict] = {
    "reference: shop anchors, semi-hard, triplet, GeM": {},
    "anchor from street": {"anchor_domain": "street"},
    "hard triplets": {"miner": "hard"},
    "random triplets": {"miner": "random"},
    # ArcFace classifies every photo (no miner); PML takes its margin in degrees.
    "ArcFace": {"loss": "arcface", "miner": "none", "margin": 28.6},
    "SPoC": {"pool": "spoc"},
    "combined descriptor (GeM+MAC+SPoC)": {"pool": "gem+mac+spoc"},
    # the projection starts random instead of at the PCA of the pretrained features
    "random head init": {"head_init": "random"},
}
MEMORY_CHECK = "memory check: default demo training"
KS = (1, 20)


@dataclass(frozen=True)
class Settings:
    """The small settings every ablation row shares (stated in the table's caption)."""

    backbone: str = "efficientnet_lite0"
    image_size: int = 128
    epochs: int = 1
    steps_per_epoch: int = 15
    batch_p: int = 8
    batch_k: int = 4
    lr: float = 1e-4
    freeze_backbone: bool = False
    memory_check_steps: int = 5

    @property
    def pretrained(self) -> bool:
        return self.backbone != "tiny"  # the tiny test backbone has no pretrained weights

    def caption(self) -> str:
        frozen = "frozen" if self.freeze_backbone else "trainable"
        return (
            f"{self.backbone} ({'ImageNet weights' if self.pretrained else 'random init'}, {frozen} backbone) "
            f"at {self.image_size} px, {self.epochs} epoch x {self.steps_per_epoch} steps of "
            f"P{self.batch_p} x K{self.batch_k} photos, AdamW lr {self.lr:g} (head x10), dim 256 (PCA-initialised), "
            f"augmentation on, CPU, DataLoader in-process"
        )

    def params(self, seed: int, **changes) -> TrainParams:
        base = dict(
            backbone=self.backbone, pretrained=self.pretrained, image_size=self.image_size,
            epochs=self.epochs, steps_per_epoch=self.steps_per_epoch, batch_p=self.batch_p,
            batch_k=self.batch_k, lr=self.lr, freeze_backbone=self.freeze_backbone,
            seed=seed, num_workers=0, device="cpu", recipe="fine_tune",
        )
        return TrainParams(**{**base, **changes})


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def _score(model, annotated: pa.Table) -> dict:
    features = partial(embed_images, model, batch_size=32, num_workers=0, device="cpu")
    report, _ = evaluate_features(features, annotated, "test", ks=KS)
    return {f"top{k}": float(report.overall[f"top{k}"]) for k in KS} | {"queries": int(report.overall["n_queries"])}


def run_row(name: str, settings: Settings, seed: int, annotated: pa.Table, work: Path) -> dict:
    """One row in the current process: train (unless baseline), then score on the test split."""
    base_rss = _rss_mib()
    if name == BASELINE:
        if settings.pretrained:
            model = pretrained_features(settings.backbone, image_size=settings.image_size)
        else:  # no weights to show: the seeded random network the rows start from
            import torch

            torch.manual_seed(seed)
            model = build_embedder(settings.backbone, pretrained=False, image_size=settings.image_size).eval()
        return {"train_s": 0.0, "train_peak_rss_mib": None, "base_rss_mib": base_rss, **_score(model, annotated)}
    if name == MEMORY_CHECK:
        # The demo's train stage: TrainParams defaults + DemoSize's backbone and 160 px.
        params = TrainParams(image_size=160, epochs=1, steps_per_epoch=settings.memory_check_steps,
                             seed=seed, num_workers=0, device="cpu", recipe="fine_tune")
    else:
        params = settings.params(seed, **ROWS[name])
    started = time.perf_counter()
    result = train_embedder(training_images(annotated), params, work)
    train_s = time.perf_counter() - started
    row = {"train_s": train_s, "train_peak_rss_mib": _rss_mib(), "base_rss_mib": base_rss,
           "steps": len(result.log), "last_loss": result.log.column("loss").to_pylist()[-1]}
    if name == MEMORY_CHECK:
        row["params"] = params.model_dump()
        return row
    return row | _score(load_embedder(result.checkpoint), annotated)


def _child(conn, name, settings, seed, annotated, work) -> None:
    try:
        conn.send(("ok", run_row(name, settings, seed, annotated, work)))
    except BaseException:  # noqa: BLE001 - the parent reports it with the row's name
        conn.send(("error", traceback.format_exc()))
    finally:
        conn.close()


def run_row_in_child(name: str, settings: Settings, seed: int, annotated: pa.Table, work: Path) -> dict:
    """``run_row`` in a forked process, so its peak RSS and wall time are the row's own.

    Fork, not spawn: the child inherits the imported libraries and the table instead of
    spending ~10 s re-importing torch on a busy 2-core machine.
    """
    ctx = mp.get_context("fork")
    parent, child = ctx.Pipe(duplex=False)
    process = ctx.Process(target=_child, args=(child, name, settings, seed, annotated, work))
    process.start()
    child.close()
    status, payload = "error", "interrupted"
    try:
        status, payload = parent.recv()
    except EOFError:
        process.join()
        payload = f"died with exit code {process.exitcode}"
    finally:
        if status != "ok" and process.is_alive():  # interrupted: leave no orphan training
            process.terminate()
        process.join()
    if status != "ok":
        raise RuntimeError(f"row {name!r} (seed {seed}) failed: {payload}")
    return payload


def load_store_annotated(home: Path) -> pa.Table:
    """The cleaned data the store's latest training checkpoint used (as the train stage sees it)."""
    from street2shop.storage.store import ArtifactStore
    from street2shop.tasks.data import DataRefs, load_annotated

    store = ArtifactStore(home)
    ref = store.latest("train", "checkpoint")
    if ref is None:
        raise SystemExit(f"{home} has no train checkpoint: run the pipeline (street2shop demo) first")
    inputs = {r.name: r for r in store.manifest(ref).inputs}
    return load_annotated(store, DataRefs(**{name: inputs[name] for name in DataRefs.model_fields}))


def _summary(values: list[float | None], fmt: str) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    mean = statistics.fmean(values)
    if len(values) == 1:
        return format(mean, fmt)
    return f"{format(mean, fmt)} ± {format((max(values) - min(values)) / 2, fmt)}"


def markdown(results: list[dict], settings: Settings, seeds: list[int], parent_rss: float) -> str:
    names = list(dict.fromkeys(r["row"] for r in results))
    spread = "mean ± half the range over seeds " + ", ".join(map(str, seeds)) if len(seeds) > 1 else f"seed {seeds[0]}"
    lines = [
        f"Ablation ({spread}): {settings.caption()}. Test split, street -> shop, gallery = every shop photo. "
        f"Peak RSS is the forked training process's (parent at fork: {parent_rss:.0f} MiB).",
        "",
        "| row | top-1 | top-20 | train s | peak RSS MiB |",
        "|---|---|---|---|---|",
    ]
    for name in names:
        rows = [r for r in results if r["row"] == name]
        lines.append(
            f"| {name} | {_summary([r.get('top1') for r in rows], '.3f')} | {_summary([r.get('top20') for r in rows], '.3f')} "
            f"| {_summary([r['train_s'] for r in rows], '.0f')} | {_summary([r['train_peak_rss_mib'] for r in rows], '.0f')} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    source = ap.add_mutually_exclusive_group(required=True)
    source.add_argument("--home", type=Path, help="store with a finished train stage (e.g. /tmp/demo-home)")
    source.add_argument("--annotated", type=Path, help="parquet table shaped like load_annotated's output")
    ap.add_argument("--backbone", default=Settings.backbone, help="'tiny' for a quick smoke run")
    ap.add_argument("--image-size", type=int, default=None, help="default: 128 (64 for tiny)")
    ap.add_argument("--steps", type=int, default=None, help="training steps per row (default: 15, 4 for tiny)")
    ap.add_argument("--epochs", type=int, default=Settings.epochs)
    ap.add_argument("--batch-p", type=int, default=None, help="items per batch (default: 8, 4 for tiny)")
    ap.add_argument("--batch-k", type=int, default=Settings.batch_k, help="photos per item in a batch")
    ap.add_argument("--freeze-backbone", action="store_true")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--rows", nargs="+", default=None, help=f"subset of rows (default all): {[BASELINE, *ROWS]}")
    ap.add_argument("--memory-check", action="store_true", help="add a row training the default demo settings")
    ap.add_argument("--memory-check-steps", type=int, default=Settings.memory_check_steps)
    ap.add_argument("--out", default=None, help="append the JSON line to this file instead of stdout")
    args = ap.parse_args(argv)

    tiny = args.backbone == "tiny"
    settings = Settings(
        backbone=args.backbone,
        image_size=args.image_size or (64 if tiny else Settings.image_size),
        steps_per_epoch=args.steps or (4 if tiny else Settings.steps_per_epoch),
        epochs=args.epochs,
        batch_p=args.batch_p or (4 if tiny else Settings.batch_p),
        batch_k=args.batch_k,
        freeze_backbone=args.freeze_backbone,
        memory_check_steps=args.memory_check_steps,
    )
    names = args.rows or [BASELINE, *ROWS]
    unknown = sorted(set(names) - {BASELINE, *ROWS})
    if unknown:
        ap.error(f"unknown rows {unknown}; choose from {[BASELINE, *ROWS]}")
    if args.memory_check:
        names = [*names, MEMORY_CHECK]

    annotated = load_store_annotated(args.home) if args.home else pq.read_table(args.annotated)
    parent_rss = _rss_mib()
    results = []
    with tempfile.TemporaryDirectory(prefix="ablation-") as work:
        for seed in args.seeds:
            for name in names:
                if name == MEMORY_CHECK and seed != args.seeds[0]:
                    continue  # one memory figure is enough
                row = run_row_in_child(name, settings, seed, annotated, Path(work) / f"{len(results)}")
                results.append({"row": name, "seed": seed, **row})
                shown = " ".join(f"{k}={row[k]:.3f}" for k in ("top1", "top20") if k in row)
                print(f"[seed {seed}] {name}: {shown} train {row['train_s']:.0f} s, "
                      f"peak RSS {row['train_peak_rss_mib'] or 0:.0f} MiB", file=sys.stderr, flush=True)
    table = markdown(results, settings, args.seeds, parent_rss)
    print(table)
    record = {
        "bench": "ablation", "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "settings": settings.caption(), "seeds": args.seeds, "parent_rss_mib": parent_rss, "results": results,
    }
    emit(record, args.out)
    return record


if __name__ == "__main__":
    main()
