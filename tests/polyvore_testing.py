"""A tiny Polyvore Outfits folder in the data set's own layout (helpers for the tests)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

TYPES = ("tops", "bottoms", "shoes")
#: split file -> its outfits: set id -> item ids (tops, bottoms, shoes); items recur across
#: splits, as in the non-disjoint version
OUTFITS = {
    "train": {"100": ["1", "2", "3"], "101": ["4", "5", "6"], "102": ["7", "8", "9"], "103": ["1", "5", "9"]},
    "valid": {"200": ["10", "11", "12"], "201": ["13", "14", "15"]},
    "test": {"300": ["16", "17", "18"], "301": ["19", "20", "21"], "302": ["22", "23", "24"], "303": ["25", "26", "27"]},
}


def write_polyvore(root: Path, version: str = "nondisjoint") -> Path:
    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True)
    meta = {}
    for outfits in OUTFITS.values():
        for items in outfits.values():
            for t, item in zip(TYPES, items):
                meta[item] = {"semantic_category": t, "title": f"item {item}"}
                if not (root / "images" / f"{item}.jpg").exists():
                    colour = tuple(int(v) for v in rng.integers(0, 255, 3))
                    Image.new("RGB", (40, 48), colour).save(root / "images" / f"{item}.jpg")
    (root / "polyvore_item_metadata.json").write_text(json.dumps(meta))
    folder = root / version
    folder.mkdir()
    for split, outfits in OUTFITS.items():
        (folder / f"{split}.json").write_text(json.dumps(
            [{"set_id": s, "items": [{"item_id": i, "index": k + 1} for k, i in enumerate(items)]} for s, items in outfits.items()]))
        sets = list(outfits)
        lines = []
        for s in sets:
            lines.append("1 " + " ".join(f"{s}_{k}" for k in (1, 2, 3)))
        # a made-up outfit: the top of one set, the bottom of the next, the shoes of the one after
        lines.append(f"0 {sets[0]}_1 {sets[1 % len(sets)]}_2 {sets[-1]}_3")
        (folder / f"compatibility_{split}.txt").write_text("\n".join(lines) + "\n")
        # the outfit less its shoes; answers: shoes of other sets (repeating when there are few), then its own
        fitb = []
        for s in sets:
            pool = [o for o in sets if o != s]
            others = [pool[j % len(pool)] for j in range(3)]
            fitb.append({"question": [f"{s}_1", f"{s}_2"], "blank_position": 3,
                         "answers": [f"{o}_3" for o in others] + [f"{s}_3"]})
        (folder / f"fill_in_blank_{split}.json").write_text(json.dumps(fitb))
    return root
