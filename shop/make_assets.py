"""Rebuild ``shop/assets/real``: the CC0 garment photos the "real" demo shop is made from,
each with its mask, measured once here so that the generator needs no heavy dependency.

Source: the public GitHub repository alexeygrigorev/clothing-dataset-small (CC0 1.0), as
unpacked in ``/work/shared/data/clothing-small``; its train and validation splits only (the
test split stays unused). Its ten classes map to shop categories (``CLASSES``).

For every class, photos are taken in a fixed pseudo-random order (sha256 of the file name):
the first ``UNRELATED_PER_CLASS`` become "unrelated" review photos (never a product, shown
whole, so they need no mask); the rest are cut out until the class has its ``QUOTA``:

1. the photo is downsized to ``MAX_SIDE``;
2. a simple background model (``garments.estimate_mask``) seeds OpenCV's GrabCut;
3. an independent GrabCut from a plain rectangle must agree with it (IoU >= ``MIN_IOU``):
   two different starts landing on the same cut is the evidence that the cut is right;
4. the cut must cover a sane part of the frame, keep off its edges (a garment cut by the
   frame edge would look amputated on a studio backdrop) and have at most three parts
   (shoes come in pairs).

Each kept photo ships as JPEG q``QUALITY`` with a 1-bit PNG mask of the same name, and the
index records its category, pattern (solid / patterned, from the garment's colour spread),
mean L*a*b* colour, garment box and coverage (a photo whose garment leaves most of the
frame free is also a room to lay other garments in). Same source folder, same output bytes.

OpenCV is needed here only: ``pip install opencv-python-headless`` (not a dependency of
the package).

    python -m street2shop.shop.make_assets [--source DIR] [--workers 2]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing as mp
import shutil
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

from street2shop.shop.garments import (
    REAL_DIR,
    REAL_INDEX,
    REAL_PATTERNS,
    estimate_mask,
    mask_file,
    mask_quality,
    srgb_to_lab,
)

DEFAULT_SOURCE = Path("/work/shared/data/clothing-small")
SPLITS = ("train", "validation")
MAX_SIDE = 320
QUALITY = 84
MIN_IOU = 0.88

#: source class -> shop category slug
CLASSES: dict[str, str] = {
    "dress": "dresses",
    "shirt": "blouses-shirts",
    "t-shirt": "t-shirts",
    "longsleeve": "sweaters",  # long-sleeved tops and sweaters: the source does not separate them
    "outwear": "jackets-coats",
    "pants": "trousers",
    "skirt": "skirts",
    "shorts": "shorts",
    "shoes": "shoes",
    "hat": "hats",
}
#: garment photos kept per class (the bundle's size budget, spent where the shop sells most)
QUOTA: dict[str, int] = {"dress": 140, "shirt": 130, "t-shirt": 150, "longsleeve": 140, "outwear": 110,
                         "pants": 130, "skirt": 70, "shorts": 80, "shoes": 70, "hat": 55}
UNRELATED_PER_CLASS = 6
#: source photos left out by hand (file name: why)
EXCLUDE: dict[str, str] = {"e4bee2e0-0ccb-4a3a-af3b-5d02a6456e92.jpg": "a cap printed with a swear word"}


def _cv2():
    try:
        import cv2
    except ImportError as e:  # a dev-only step: say how to get it
        raise SystemExit("make_assets needs OpenCV: pip install opencv-python-headless") from e
    cv2.setNumThreads(1)
    return cv2


def _clean(m: np.ndarray, min_share: float = 0.2) -> np.ndarray:
    """Open, keep the parts at least ``min_share`` of the largest (a pair of shoes), close,
    fill holes."""
    m = ndimage.binary_opening(m, iterations=2)
    labels, n = ndimage.label(m)
    if n == 0:
        return m
    sizes = ndimage.sum(m, labels, range(1, n + 1))
    m = np.isin(labels, [i + 1 for i, s in enumerate(sizes) if s >= min_share * sizes.max()])
    return ndimage.binary_fill_holes(ndimage.binary_closing(m, iterations=2))


def _grabcut(rgb: np.ndarray, seed: np.ndarray | None, iterations: int = 4) -> np.ndarray:
    """GrabCut from a seed mask (probable garment; its core certain; the frame edge away
    from it certain background) or, with ``seed=None``, from the frame minus a margin."""
    cv2 = _cv2()
    h, w = rgb.shape[:2]
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    cv2.setRNGSeed(0)  # GrabCut's k-means start: the same cut every run
    bgr = np.ascontiguousarray(rgb[..., ::-1])
    if seed is not None:
        gm = np.where(seed, cv2.GC_PR_FGD, cv2.GC_PR_BGD).astype(np.uint8)
        gm[ndimage.binary_erosion(seed, iterations=max(3, min(h, w) // 25))] = cv2.GC_FGD
        b = max(2, min(h, w) // 40)
        edge = np.zeros_like(seed)
        edge[:b], edge[-b:], edge[:, :b], edge[:, -b:] = True, True, True, True
        gm[edge & ~seed] = cv2.GC_BGD
        cv2.grabCut(bgr, gm, None, bgd, fgd, iterations, cv2.GC_INIT_WITH_MASK)
    else:
        mx, my = max(1, w // 25), max(1, h // 25)
        gm = np.zeros((h, w), np.uint8)
        cv2.grabCut(bgr, gm, (mx, my, w - 2 * mx, h - 2 * my), bgd, fgd, iterations, cv2.GC_INIT_WITH_RECT)
    return (gm == cv2.GC_FGD) | (gm == cv2.GC_PR_FGD)


def cut_out(photo: Image.Image) -> tuple[np.ndarray, dict]:
    """The garment mask of a (downsized) photo and the measures it is judged by."""
    rgb = np.asarray(photo.convert("RGB"))
    h, w = rgb.shape[:2]
    seed = _clean(estimate_mask(photo))
    if not seed.any():
        return seed, {"iou": 0.0, "coverage": 0.0, "edge": 1.0, "parts": 0}
    mask = _clean(_grabcut(rgb, seed))
    half = photo.resize((w // 2, h // 2), Image.BILINEAR)
    check = _clean(_grabcut(np.asarray(half), None), 0.2)
    check = np.asarray(Image.fromarray(check.astype(np.uint8) * 255).resize((w, h), Image.BILINEAR)) > 127
    iou = float((mask & check).sum() / max(1, (mask | check).sum()))
    coverage, edge = mask_quality(mask, band=max(2, min(h, w) // 40) + 1)
    return mask, {"iou": iou, "coverage": coverage, "edge": edge, "parts": int(ndimage.label(mask)[1])}


def usable(q: dict) -> bool:
    return q["iou"] >= MIN_IOU and 0.1 < q["coverage"] < 0.75 and q["edge"] < 0.04 and 1 <= q["parts"] <= 3


def pattern_of(lab: np.ndarray, mask: np.ndarray) -> str:
    """"patterned" when over 8 % of the garment is far (dE > 20) from its median colour:
    prints, stripes, checks, most graphics; folds alone mostly stay below that. Rough: it
    only names the product and fills the truth table's ``pattern``."""
    inner = ndimage.binary_erosion(mask, iterations=3)
    g = lab[inner if inner.sum() > 50 else mask]
    far = np.linalg.norm(g - np.median(g, axis=0), axis=1) > 20
    solid, patterned = REAL_PATTERNS
    return patterned if far.mean() > 0.08 else solid


def _shrink(src: Path) -> Image.Image:
    with Image.open(src) as im:
        im = im.convert("RGB")
        im.thumbnail((MAX_SIDE, MAX_SIDE), Image.LANCZOS)
        return im


def _jpeg(img: Image.Image) -> Image.Image:
    """The photo as the generator will read it back (masks and colours measured on that)."""
    import io

    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=QUALITY)
    buf.seek(0)
    return Image.open(buf).convert("RGB")


def judge(src: Path) -> tuple[Path, np.ndarray, dict]:
    """Cut one source photo out (a worker's job)."""
    photo = _jpeg(_shrink(src))
    mask, q = cut_out(photo)
    return src, mask, q


def candidates(source: Path, cls: str) -> list[Path]:
    files = [f for split in SPLITS for f in (source / split / cls).glob("*.jpg") if f.name not in EXCLUDE]
    if not files:
        raise FileNotFoundError(f"no photos of class {cls!r} under {source}/{{{','.join(SPLITS)}}}")
    return sorted(files, key=lambda f: hashlib.sha256(f.name.encode()).hexdigest())


def build(source: Path = DEFAULT_SOURCE, out: Path = REAL_DIR, workers: int = 1, scale: float = 1.0) -> dict:
    """Write photos, masks, LICENSE, CREDITS.md and the index (``scale`` shrinks every
    quota, for a quick look); return the index and print what was rejected."""
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    garments: dict[str, dict] = {}
    unrelated: dict[str, dict] = {}
    credits: list[str] = []
    ctx = mp.get_context("forkserver" if "forkserver" in mp.get_all_start_methods() else "spawn")
    with ctx.Pool(workers) if workers > 1 else _Serial() as pool:
        for cls, category in CLASSES.items():
            files = candidates(source, cls)
            for k, f in enumerate(files[:UNRELATED_PER_CLASS], 1):
                name = f"other-{category}-{k:02d}.jpg"
                _shrink(f).save(out / name, "JPEG", quality=QUALITY)
                unrelated[name] = {"category": category, "source": _rel(f, source)}
                credits.append(f"| {name} | {_rel(f, source)} |")
            quota, kept, tried = max(1, round(QUOTA[cls] * scale)), 0, 0
            rest = files[UNRELATED_PER_CLASS:]
            batch = max(4, 4 * workers)
            for start in range(0, len(rest), batch):
                if kept >= quota:
                    break
                for src, mask, q in pool.map(judge, rest[start : start + batch]):
                    if kept >= quota:
                        break
                    tried += 1
                    if not usable(q):
                        continue
                    kept += 1
                    name = f"{category}-{kept:03d}.jpg"
                    photo = _shrink(src)
                    photo.save(out / name, "JPEG", quality=QUALITY)
                    Image.fromarray(mask).convert("1").save(out / mask_file(name).name, optimize=True)
                    lab = srgb_to_lab(np.asarray(_jpeg(photo)))
                    ys, xs = np.nonzero(mask)
                    garments[name] = {
                        "category": category,
                        "pattern": pattern_of(lab, mask),
                        "lab": [round(float(v), 1) for v in lab[mask].mean(axis=0)],
                        "box": [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1],
                        "coverage": round(float(mask.mean()), 3),
                        "source": _rel(src, source),
                    }
                    credits.append(f"| {name} | {_rel(src, source)} |")
            print(f"{cls:>10} -> {category:<15} kept {kept}/{tried} tried ({len(rest)} candidates)")
    index = {"garments": garments, "unrelated": unrelated}
    shutil.copyfile(source / "LICENSE", out / "LICENSE")
    (out / "CREDITS.md").write_text(
        f"# Credits\n\nThese photos are downsized copies (max side {MAX_SIDE} px, JPEG q{QUALITY}) of photos from the\n"
        "public GitHub repository alexeygrigorev/clothing-dataset-small (a subset of\n"
        "alexeygrigorev/clothing-dataset), released under CC0 1.0 (see LICENSE). The PNG masks\n"
        "next to them were computed from them (GrabCut) and are released under CC0 1.0 as well.\n"
        "Rebuilt by `python -m street2shop.shop.make_assets`.\n\n"
        "| file | source (<split>/<class>/<file>) |\n| --- | --- |\n" + "\n".join(credits) + "\n",
        encoding="utf-8",
    )
    (out.parent / REAL_INDEX.name).write_text(json.dumps(index, indent=0, sort_keys=True) + "\n", encoding="utf-8")
    return index


class _Serial:
    """``Pool``'s ``map`` in this process (one worker needs no pool)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    @staticmethod
    def map(fn, items):
        return [fn(x) for x in items]


def _rel(f: Path, source: Path) -> str:
    return f.relative_to(source).as_posix()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--scale", type=float, default=1.0, help="shrink every quota (a quick look)")
    args = parser.parse_args()
    index = build(args.source, REAL_DIR, args.workers, args.scale)
    size = sum(p.stat().st_size for p in REAL_DIR.iterdir())
    print(f"{len(index['garments'])} garments with masks, {len(index['unrelated'])} unrelated, "
          f"{size / 1e6:.2f} MB in {REAL_DIR} (+ {REAL_INDEX.stat().st_size / 1e3:.0f} kB index)")


if __name__ == "__main__":
    main()
