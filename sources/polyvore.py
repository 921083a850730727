"""Polyvore Outfits (Vasileva et al. 2018), read from its own layout, to train and score the
outfit models on the data set their published figures are for.

The layout (``polyvore_outfits/`` as distributed)::

    images/<item_id>.jpg
    polyvore_item_metadata.json       {item_id: {"semantic_category": "tops", "title": ..., ...}}
    nondisjoint/ (or disjoint/)
        train.json valid.json test.json       [{"set_id": s, "items": [{"item_id": i, "index": 1}, ...]}]
        compatibility_{train,valid,test}.txt  "1 <set>_<index> <set>_<index> ..." (label 1 / 0)
        fill_in_blank_{train,valid,test}.json [{"question": ["<set>_<index>", ...],
                                                "answers": [4 x "<set>_<index>"], "blank_position": n}]

An item of a question is ``<set_id>_<index>``: the ``index``-th item of that outfit in the
split's JSON. The right FITB answer is the one from the question's own outfit. The item's
type is its ``semantic_category`` (tops, bottoms, shoes, bags, all-body, ...). Published
figures on the non-disjoint version: type-aware embeddings compatibility AUC 0.86, FITB
55.3 %; CSA-Net 0.91 / 63.7 %; OutfitTransformer 0.93 / 67.1 %.

Everything is checked: a question naming an item no outfit has, or an image that is missing,
stops the read with the file and line at fault.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pyarrow as pa
from pydantic import BaseModel, ConfigDict

from street2shop.sources.labelled import DataError
from street2shop.storage import names as N
from street2shop.storage.images import open_image
from street2shop.storage.schemas import IMAGES as IMAGES_SCHEMA
from street2shop.storage.schemas import ITEMS, OUTFIT_QUESTIONS, OUTFIT_SPLITS, OUTFITS
from street2shop.storage.store import ArtifactStore

Version = Literal["nondisjoint", "disjoint"]
#: the data set's file names per split -> ours
SPLITS = {"train": "train", "valid": "val", "test": "test"}
METADATA = "polyvore_item_metadata.json"


@dataclass(frozen=True)
class PolyvoreOutfits:
    items: pa.Table  # ITEMS
    image_paths: dict[str, Path]  # item id -> photo
    outfits: pa.Table  # OUTFITS
    splits: pa.Table  # OUTFIT_SPLITS
    questions: pa.Table  # OUTFIT_QUESTIONS (valid and test, or those asked for)


def _load_json(path: Path):
    if not path.is_file():
        raise DataError(f"{path} not found: is this a Polyvore Outfits folder?")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: not JSON ({e})") from None


def read_polyvore(root: str | Path, version: Version = "nondisjoint",
                  question_splits: tuple[str, ...] = ("valid", "test")) -> PolyvoreOutfits:
    """The outfits of every split, their items and photos, and the questions of ``question_splits``."""
    root = Path(root)
    if version not in ("nondisjoint", "disjoint"):
        raise DataError(f"unknown Polyvore Outfits version {version!r}; choose nondisjoint or disjoint")
    meta = _load_json(root / METADATA)
    folder = root / version
    outfit_rows, split_rows = [], []
    slot: dict[str, dict[str, str]] = {}  # split -> "<set>_<index>" -> item id
    seen_items: dict[str, str] = {}
    for name, ours in SPLITS.items():
        slot[name] = {}
        for k, outfit in enumerate(_load_json(folder / f"{name}.json")):
            try:
                set_id = str(outfit["set_id"])
                members = sorted(outfit["items"], key=lambda i: int(i["index"]))
            except (KeyError, TypeError, ValueError) as e:
                raise DataError(f"{folder / f'{name}.json'}: outfit {k} lacks set_id or items ({e!r})") from None
            split_rows.append({"outfit_id": set_id, "split": ours})
            for pos, member in enumerate(members):
                item = str(member["item_id"])
                if item not in meta:
                    raise DataError(f"{folder / f'{name}.json'}: outfit {set_id} names item {item}, which {METADATA} lacks")
                slot[name][f"{set_id}_{member['index']}"] = item
                seen_items[item] = meta[item].get("semantic_category") or "unknown"
                outfit_rows.append({"outfit_id": set_id, "item_id": item, "type": seen_items[item], "position": pos})
    paths = {}
    missing = []
    for item in sorted(seen_items):
        path = root / "images" / f"{item}.jpg"
        if not path.is_file():
            missing.append(item)
        paths[item] = path
    if missing:
        raise DataError(f"{root / 'images'}: {len(missing)} item photo(s) missing, e.g. {missing[:5]}")
    items = [{"item_id": i, "product_id": i, "seller_id": "polyvore", "category": seen_items[i], "colour": "unknown",
              "title": meta[i].get("title") or meta[i].get("url_name"), "url": None} for i in sorted(seen_items)]
    sizes = {}
    for row in outfit_rows:
        sizes[row["outfit_id"]] = sizes.get(row["outfit_id"], 0) + 1
    questions = []
    for name in question_splits:
        questions += _compatibility(folder / f"compatibility_{name}.txt", slot[name], SPLITS[name])
        questions += _fitb(folder / f"fill_in_blank_{name}.json", slot[name], SPLITS[name], sizes)
    return PolyvoreOutfits(
        items=pa.Table.from_pylist(items, schema=ITEMS),
        image_paths=paths,
        outfits=pa.Table.from_pylist(outfit_rows, schema=OUTFITS),
        splits=pa.Table.from_pylist(split_rows, schema=OUTFIT_SPLITS),
        questions=pa.Table.from_pylist(questions, schema=OUTFIT_QUESTIONS),
    )


def _item(token: str, slots: dict[str, str], where: str) -> str:
    if token not in slots:
        raise DataError(f"{where}: {token!r} is no item of an outfit of this split")
    return slots[token]


def _compatibility(path: Path, slots: dict[str, str], split: str) -> list[dict]:
    if not path.is_file():
        raise DataError(f"{path} not found")
    rows = []
    for line_no, line in enumerate(path.read_text().splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        if parts[0] not in ("0", "1") or len(parts) < 3:
            raise DataError(f"{path}:{line_no}: expected a label 0/1 and at least two items, got {line!r}")
        items = [_item(t, slots, f"{path}:{line_no}") for t in parts[1:]]
        rows.append({"question_id": f"{split}:c{line_no}", "kind": "compatibility", "split": split, "items": items,
                     "candidates": None, "label": int(parts[0]), "size": len(items)})
    return rows


def _fitb(path: Path, slots: dict[str, str], split: str, sizes: dict[str, int]) -> list[dict]:
    rows = []
    for k, q in enumerate(_load_json(path)):
        where = f"{path}: question {k}"
        try:
            question, answers = list(q["question"]), list(q["answers"])
        except (KeyError, TypeError) as e:
            raise DataError(f"{where} lacks question or answers ({e!r})") from None
        own = {t.rsplit("_", 1)[0] for t in question}
        if len(own) != 1:
            raise DataError(f"{where}: the question's items come from several outfits: {sorted(own)}")
        right = [j for j, t in enumerate(answers) if t.rsplit("_", 1)[0] in own]
        if len(right) != 1:
            raise DataError(f"{where}: {len(right)} answers from the question's own outfit, expected exactly one")
        rows.append({"question_id": f"{split}:f{k}", "kind": "fitb", "split": split,
                     "items": [_item(t, slots, where) for t in question],
                     "candidates": [_item(t, slots, where) for t in answers], "label": right[0],
                     "size": sizes.get(next(iter(own)), len(question) + 1)})
    return rows


class PolyvoreParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    path: str
    version: Version = "nondisjoint"


def polyvore_tables(store: ArtifactStore, params: PolyvoreParams) -> tuple[PolyvoreOutfits, dict[str, pa.Table]]:
    """A Polyvore Outfits folder as the tables the polyvore stage publishes (``items``,
    ``images``, ``outfits``, its own ``outfit_splits`` and ``outfit_questions``), its photos
    put in the store's blobs."""
    data = read_polyvore(params.path, params.version)
    images = []
    for item, path in sorted(data.image_paths.items()):
        blob = Path(path).read_bytes()
        sha, rel = store.blobs.put(blob, "jpg")
        photo = open_image(blob)
        images.append({"image_id": sha, "item_id": item, "role": "shop", "path": rel, "width": photo.width,
                       "height": photo.height, "source_url": Path(path).resolve().as_uri(), "review_id": None})
    tables = {N.ITEMS: data.items, N.IMAGES: pa.Table.from_pylist(images, schema=IMAGES_SCHEMA), N.OUTFITS: data.outfits,
              N.OUTFIT_SPLITS: data.splits, N.OUTFIT_QUESTIONS: data.questions}
    return data, tables
