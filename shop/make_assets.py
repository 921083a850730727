"""Rebuild ``shop/assets/real``: the CC0 garment photos the "real" demo shop is made from.

Source: the public GitHub repository alexeygrigorev/clothing-dataset-small (CC0 1.0), as
unpacked in ``/work/shared/data/clothing-small``. Its classes map to the shop's categories:

    dress                 -> dresses
    shirt, t-shirt        -> blouses-shirts   (a t-shirt is the plainest top a shop sells)
    longsleeve            -> hoodies-sweatshirts and sweaters (alternately: both are
                             long-sleeved tops photographed flat; the source does not
                             separate them)
    outwear               -> jackets-coats
    hat, pants, shoes, shorts, skirt -> not garments of the shop: a few of each are kept as
                             "unrelated" review photos (people post their other purchases)

Photos are taken in a fixed pseudo-random order (sha256 of the file name), kept only where
the generator's simple background model cuts the garment out sanely (``mask_quality``),
downsized to max side 256 and saved as JPEG q85. Same source folder, same output bytes.

    python -m street2shop.shop.make_assets [--source DIR] [--per-category 20]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
from pathlib import Path

from PIL import Image

from street2shop.shop.garments import REAL_DIR, REAL_INDEX, estimate_mask, mask_quality

DEFAULT_SOURCE = Path("/work/shared/data/clothing-small")
MAX_SIDE = 256
QUALITY = 85

#: category -> [(source class, share of the category's photos)]
SOURCES: dict[str, list[tuple[str, float]]] = {
    "dresses": [("dress", 1.0)],
    "blouses-shirts": [("shirt", 0.6), ("t-shirt", 0.4)],
    "hoodies-sweatshirts": [("longsleeve", 1.0)],
    "sweaters": [("longsleeve", 1.0)],
    "jackets-coats": [("outwear", 1.0)],
}
#: source classes of the "unrelated" noise photos, and how many of each
UNRELATED: dict[str, int] = {"shoes": 4, "hat": 4, "pants": 4, "shorts": 4, "skirt": 4}


def usable(photo: Image.Image) -> bool:
    """The cut-out covers a fair part of the frame and mostly keeps off its edges."""
    small = photo.copy()
    small.thumbnail((128, 128))
    coverage, border = mask_quality(estimate_mask(small))
    return 0.15 < coverage < 0.7 and border < 0.15


def _candidates(source: Path, cls: str) -> list[Path]:
    files = sorted((source / "train" / cls).glob("*.jpg"))
    if not files:
        raise FileNotFoundError(f"no photos in {source / 'train' / cls}")
    return sorted(files, key=lambda f: hashlib.sha256(f.name.encode()).hexdigest())


def select(source: Path, per_category: int) -> dict[str, list[Path]]:
    """category -> chosen source photos; a photo is never used by two categories."""
    used: set[Path] = set()
    chosen: dict[str, list[Path]] = {}
    for category, parts in SOURCES.items():
        picks: list[Path] = []
        for cls, share in parts:
            want = round(per_category * share) if cls != parts[-1][0] else per_category - len(picks)
            for f in _candidates(source, cls):
                if want == 0:
                    break
                if f in used:
                    continue
                with Image.open(f) as im:
                    ok = usable(im.convert("RGB"))
                if ok:
                    picks.append(f)
                    used.add(f)
                    want -= 1
        chosen[category] = picks
    return chosen


def _save_small(src: Path, dst: Path) -> None:
    with Image.open(src) as im:
        im = im.convert("RGB")
        im.thumbnail((MAX_SIDE, MAX_SIDE), Image.LANCZOS)
        im.save(dst, "JPEG", quality=QUALITY)


def build(source: Path = DEFAULT_SOURCE, out: Path = REAL_DIR, per_category: int = 20) -> dict:
    """Write the photos, LICENSE, CREDITS.md and the index; return the index
    ``{"garments": {file: category}, "unrelated": [file, ...]}``."""
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    garments: dict[str, str] = {}
    credits = []
    for category, files in select(source, per_category).items():
        for k, f in enumerate(files, 1):
            name = f"{category}-{k:02d}.jpg"
            _save_small(f, out / name)
            garments[name] = category
            credits.append(f"| {name} | {f.parent.name}/{f.name} |")
    unrelated = []
    for cls, n in UNRELATED.items():
        for k, f in enumerate(_candidates(source, cls)[:n], 1):
            name = f"other-{cls}-{k:02d}.jpg"
            _save_small(f, out / name)
            unrelated.append(name)
            credits.append(f"| {name} | {f.parent.name}/{f.name} |")
    index = {"garments": garments, "unrelated": unrelated}
    shutil.copyfile(source / "LICENSE", out / "LICENSE")
    (out / "CREDITS.md").write_text(
        "# Credits\n\nThese photos are downsized copies (max side 256 px, JPEG q85) of photos from the\n"
        "public GitHub repository alexeygrigorev/clothing-dataset-small (a subset of\n"
        "alexeygrigorev/clothing-dataset), released under CC0 1.0 (see LICENSE).\n"
        "Rebuilt by `python -m street2shop.shop.make_assets`.\n\n"
        "| file | source (train/<class>/<file>) |\n| --- | --- |\n" + "\n".join(credits) + "\n",
        encoding="utf-8",
    )
    REAL_INDEX.write_text(json.dumps(index, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    return index


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE)
    parser.add_argument("--per-category", type=int, default=20)
    args = parser.parse_args()
    index = build(args.source, REAL_DIR, args.per_category)
    size = sum(p.stat().st_size for p in REAL_DIR.glob("*.jpg"))
    n = len(index["garments"]) + len(index["unrelated"])
    print(f"{n} photos ({len(index['unrelated'])} unrelated), {size / 1e6:.2f} MB in {REAL_DIR}")


if __name__ == "__main__":
    main()
