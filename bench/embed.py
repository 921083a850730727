"""Embedding throughput of the served model on this machine, per CPU inference mode.

Measures images/s at the backbone's input size (224 px for the default efficientnet_lite0 +
GeM head), batch 1 and batch 32, with JPEG decoding + preprocessing included (the served
path, ``embed_images`` over files) and excluded (network on already-preprocessed tensors),
plus each mode's peak RSS (in a fresh child process per mode, since a process's peak is
monotonic) and the cosine between each mode's embeddings and eager fp32 on the same photos.

The machine is shared, so absolute figures drift with other people's load: every variant
is measured in the same run, repeats are interleaved (mode after mode, repeat after repeat)
and the median is reported, together with the load average before and after.

With ``--home`` (an artifact store holding a trained checkpoint), the served model is that
checkpoint and every mode also runs the evaluate stage's path (``evaluate_features``) on the
test split side by side, so top-20 can be compared with fp32 eager.

Quantising modes (``openvino_int8``) are calibrated on training photos only, never on the
photos they are measured or evaluated on: with ``--home`` a seeded sample of the store's
training split (``training_images``), otherwise the ``train/`` folder beside the timing photos.
Their build time includes the calibration pass (decoding excluded).

    python bench/embed.py                                   # default backbone, real photos
    python bench/embed.py --home /tmp/demo-home --modes eager,onnx,openvino,openvino_int8
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import numpy as np
import torch
import typer
from street2shop.models.embed import embed_images
from street2shop.models.embedder import Embedder, build_embedder, load_embedder
from street2shop.models.fast import optimize_for_inference
from street2shop.models.preprocess import read_image

PHOTOS = Path("/work/shared/data/clothing-small/test")
CALIBRATION_PHOTOS = PHOTOS.parent / "train"
QUANTISED_MODES = {"openvino_int8"}


def photo_paths(n: int, folder: Path = PHOTOS) -> list[str]:
    """``n`` real photos (cycled if the folder has fewer), or generated JPEGs if it is absent."""
    suffixes = {".jpg", ".jpeg", ".png"}
    paths = sorted(str(p) for p in folder.rglob("*") if p.suffix.lower() in suffixes) if folder.is_dir() else []
    if not paths:
        out = Path(tempfile.mkdtemp(prefix="bench-embed-"))
        rng = np.random.default_rng(0)
        from PIL import Image

        for i in range(min(n, 64)):
            # Smooth random colour fields at a phone-ish size, so decode cost is realistic.
            small = rng.integers(0, 255, (12, 9, 3), dtype=np.uint8)
            image = Image.fromarray(small).resize((600, 800), Image.Resampling.BICUBIC)
            path = out / f"generated_{i}.jpg"
            image.save(path, quality=90)
            paths.append(str(path))
    return [paths[i % len(paths)] for i in range(n)]


def served_model(home: str | None, load_data: bool = True) -> tuple[Embedder, str, object]:
    """The model to measure, a description of it, and the store's annotated data (or None)."""
    if home is None:
        torch.manual_seed(0)
        return build_embedder().eval(), "efficientnet_lite0 + GeM (pretrained backbone, seeded head)", None
    from street2shop.storage.names import CHECKPOINT_FILE
    from street2shop.storage.store import ArtifactStore
    from street2shop.tasks.data import DataRefs, load_annotated

    store = ArtifactStore(home)
    ref = store.latest("train", "checkpoint")
    inputs = {r.name: r for r in store.manifest(ref).inputs}
    data = DataRefs(**{name: inputs[name] for name in DataRefs.model_fields})
    model = load_embedder(store.file(ref, CHECKPOINT_FILE))
    return model, f"trained checkpoint {ref}", load_annotated(store, data) if load_data else None


def calibration_tensors(model: Embedder, annotated, count: int, seed: int = 0) -> torch.Tensor:
    """``count`` preprocessed training photos for quantising modes, sampled with ``seed``.

    From the store's training split when there is one, else from ``CALIBRATION_PHOTOS``;
    never from the photos that are timed or evaluated (test split, ``PHOTOS``).
    """
    if annotated is not None:
        from street2shop.cleaning.selection import training_images

        paths = training_images(annotated).column("path").to_pylist()
    else:
        paths = sorted(str(p) for p in CALIBRATION_PHOTOS.rglob("*.jpg")) if CALIBRATION_PHOTOS.is_dir() else []
    if not paths:
        raise ValueError("no training photos to calibrate a quantised mode on")
    rng = np.random.default_rng(seed)
    chosen = [paths[i] for i in sorted(rng.choice(len(paths), min(count, len(paths)), replace=False))]
    preprocess = model.preprocess
    return torch.stack([preprocess(read_image(p, min_size=preprocess.image_size)) for p in chosen])


def build_modes(
    model: Embedder, modes: list[str], calibration: torch.Tensor | None = None
) -> dict[str, tuple[torch.nn.Module, float]]:
    """Each mode's module and its build time (export/compilation/quantisation)."""
    built = {}
    for mode in modes:
        start = time.perf_counter()
        # channels_last/compile convert the weights' layout in place: give each its own copy.
        # The exporting modes only read the weights.
        source = model if mode in ("eager", "onnx", "openvino", "openvino_int8") else _copy(model)
        fast = optimize_for_inference(source, mode, calibration=calibration if mode in QUANTISED_MODES else None)
        built[mode] = (fast, time.perf_counter() - start)
    return built


def _copy(model: Embedder) -> Embedder:
    import copy

    return copy.deepcopy(model).eval()


def forward_rate(model: torch.nn.Module, tensors: torch.Tensor, batch: int) -> tuple[float, torch.Tensor]:
    """Images/s of the network alone over ``tensors`` in batches, and the embeddings."""
    outputs = []
    with torch.inference_mode():
        start = time.perf_counter()
        for i in range(0, len(tensors), batch):
            outputs.append(model(tensors[i : i + batch]))
        elapsed = time.perf_counter() - start
    return len(tensors) / elapsed, torch.cat(outputs)


def served_rate(model: torch.nn.Module, paths: list[str], batch: int, workers: int) -> float:
    """Images/s of ``embed_images`` over files: decoding, preprocessing and the network."""
    start = time.perf_counter()
    embed_images(model, paths, batch_size=batch, num_workers=workers, device="cpu")
    return len(paths) / (time.perf_counter() - start)


def child_peak_rss(mode: str, home: str | None, images: int, batch: int, workers: int, calibration: int) -> float:
    """Peak RSS (MiB) of a fresh process that builds ``mode`` and embeds ``images`` photos.

    For a quantising mode the peak includes quantisation (NNCF's statistics pass), which a
    server loading a pre-quantised model would not pay.
    """
    command = [sys.executable, __file__, "--rss-child", mode, "--images", str(images), "--workers", str(workers)]
    command += ["--batch", str(batch), "--calibration", str(calibration)] + (["--home", home] if home else [])
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return float(done.stdout.strip().splitlines()[-1])


def main(
    modes: str = typer.Option("eager,channels_last,onnx", help="comma-separated inference modes"),
    images: int = typer.Option(64, help="photos per batch-32 measurement"),
    batch1_images: int = typer.Option(16, help="photos per batch-1 measurement"),
    repeats: int = typer.Option(3, help="interleaved repeats; the median is reported"),
    workers: int = typer.Option(2, help="DataLoader decoding workers for the decode-included runs"),
    batch: int = typer.Option(32, help="the large batch size"),
    home: str | None = typer.Option(None, help="store with a trained checkpoint: measure it and its top-20"),
    rss: bool = typer.Option(True, help="measure each mode's peak RSS in a child process"),
    calibration: int = typer.Option(128, help="training photos that calibrate quantising modes"),
    rss_child: str | None = typer.Option(None, hidden=True),
) -> None:
    names = [m.strip() for m in modes.split(",") if m.strip()]
    quantised = QUANTISED_MODES & ({rss_child} if rss_child is not None else set(names))
    model, description, annotated = served_model(home, load_data=rss_child is None or bool(quantised))
    calibration_images = calibration_tensors(model, annotated, calibration) if quantised else None
    if rss_child is not None:
        fast = optimize_for_inference(model, rss_child, calibration=calibration_images)
        embed_images(fast, photo_paths(images), batch_size=batch, num_workers=workers, device="cpu")
        # VmHWM, not getrusage's ru_maxrss: Linux carries ru_maxrss over from the parent
        # across fork+exec, so a child would report the (large) parent's peak.
        status = Path("/proc/self/status").read_text().splitlines()
        print(int(next(line for line in status if line.startswith("VmHWM:")).split()[1]) / 1024)
        return

    load_before = os.getloadavg()
    paths = photo_paths(max(images, batch1_images))
    preprocess = model.preprocess
    tensors = torch.stack([preprocess(read_image(p, min_size=preprocess.image_size)) for p in paths])
    built = build_modes(model, names, calibration_images)
    sizes = {1: batch1_images, batch: images}

    rates: dict[tuple[str, int, str], list[float]] = {}
    embeddings: dict[str, torch.Tensor] = {}
    for _ in range(repeats):
        for name in names:  # interleaved: every mode sees the same slice of other people's load
            fast, _ = built[name]
            for b, n in sizes.items():
                rate, out = forward_rate(fast, tensors[:n], b)
                rates.setdefault((name, b, "excluded"), []).append(rate)
                if b == batch:
                    embeddings[name] = out
                rates.setdefault((name, b, "included"), []).append(served_rate(fast, paths[:n], b, workers))

    reference = embeddings.get("eager")
    rows = []
    for name in names:
        cosine = None
        if reference is not None:
            cosine = float((torch.nn.functional.normalize(embeddings[name].float(), dim=-1) * reference).sum(-1).min())
        row = {
            "mode": name,
            "build_s": round(built[name][1], 2),
            "min_cosine_vs_eager": None if cosine is None else round(cosine, 6),
        }
        for b in sizes:
            for decode in ("excluded", "included"):
                row[f"ips_b{b}_decode_{decode}"] = round(statistics.median(rates[(name, b, decode)]), 2)
        if rss:
            row["peak_rss_mib"] = round(child_peak_rss(name, home, images, batch, workers, calibration), 1)
        rows.append(row)

    if annotated is not None:
        from street2shop.retrieval.evaluation import evaluate_features

        for row in rows:
            fast, _ = built[row["mode"]]
            features = partial(embed_images, fast, batch_size=batch, num_workers=0, device="cpu")
            report, _ = evaluate_features(features, annotated, "test", ks=(1, 20))
            row["top1"], row["top20"] = round(report.overall["top1"], 4), round(report.overall["top20"], 4)
        base = next((r["top20"] for r in rows if r["mode"] == "eager"), None)
        for row in rows:
            row["top20_delta_vs_eager"] = None if base is None else round(row["top20"] - base, 4)

    if home:  # the evaluate stage's own figures of each precision (shop split and benchmarks), beside the speed
        from street2shop.storage import names as N
        from street2shop.storage.store import ArtifactStore

        store = ArtifactStore(home)
        evaluated = store.manifest(store.latest(N.EVALUATE, N.METRICS)).metrics
        for row in rows:
            for key, value in evaluated.items():
                prefix = f"precision:{row['mode']}:"
                if key.startswith(prefix) and key.endswith(("top1", "top20")):
                    row["evaluated_" + key[len(prefix):]] = round(value, 4)
        served = evaluated.get("served_precision")
        for row in rows:
            row["served"] = row["mode"] == served

    load_after = os.getloadavg()
    header = f"model: {description}; {preprocess.image_size} px; torch threads {torch.get_num_threads()}; "
    header += f"{len(set(paths))} photos; repeats {repeats} (median); "
    if calibration_images is not None:
        header += f"int8 calibrated on {len(calibration_images)} training photos; "
    header += f"load avg before {load_before[0]:.2f} after {load_after[0]:.2f}"
    print(header)
    columns = list(dict.fromkeys(c for r in rows for c in r))
    widths = [max(len(c), *(len(str(r.get(c, "-"))) for r in rows)) for c in columns]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths)))
    for row in rows:
        print("  ".join(str(row.get(c, "-")).ljust(w) for c, w in zip(columns, widths)))
    print(json.dumps({
        "bench": "embed",
        "model": description,
        "image_size": preprocess.image_size,
        "threads": torch.get_num_threads(),
        "cpus": os.cpu_count(),
        "load_avg_before": load_before,
        "load_avg_after": load_after,
        "repeats": repeats,
        "calibration_photos": None if calibration_images is None else len(calibration_images),
        "rows": rows,
    }))


if __name__ == "__main__":
    typer.run(main)
