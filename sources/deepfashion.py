"""DeepFashion's Consumer-to-shop Clothes Retrieval benchmark as labelled photos.

The benchmark (Liu et al., CVPR 2016) ships its pairs in ``Eval/list_eval_partition.txt``::

    239557
    image_pair_name_1 image_pair_name_2 item_id evaluation_status
    img/TOPS/Summer_Wear/id_00000001/comsumer_01.jpg img/TOPS/Summer_Wear/id_00000001/shop_01.jpg id_00000001 train

The first photo of a pair is a consumer's (a street photo), the second the shop's; the
photos lie under ``Img/`` (the released ``img.zip`` unpacked there) or beside ``Eval/``. An
item is a product (DeepFashion does not tell colours apart), its category the two folders
under ``img/`` (``TOPS/Summer_Wear``). :func:`read_consumer_to_shop` returns one row per
photo in the columns of a labelled dataset (``path, item_id, product_id, role, category,
colour``, plus DeepFashion's own ``split``); :func:`write_dataset_csv` writes them as the CSV
the pipeline's ``source`` stage and ``street2shop eval`` read.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pyarrow as pa

from street2shop.sources.labelled import DataError

PARTITION = Path("Eval") / "list_eval_partition.txt"
HEADER = ("image_pair_name_1", "image_pair_name_2", "item_id", "evaluation_status")
SPLITS = ("train", "val", "test")
COLUMNS = ("path", "item_id", "product_id", "role", "category", "colour", "split")


def _image_root(root: Path, first: str) -> Path:
    for base in (root / "Img", root):
        if (base / first).is_file():
            return base
    raise DataError(f"{root}: the photos of {PARTITION} are neither under {root / 'Img'} nor under {root} (first: {first})")


def read_consumer_to_shop(root: str | Path, splits: tuple[str, ...] = SPLITS) -> pa.Table:
    """Every photo of the chosen ``splits`` once, with its item, role and category.

    Raises :class:`DataError` naming the line of a malformed pair, an unknown split, a photo
    listed in two roles or two items, or missing photo files.
    """
    root = Path(root)
    listing = root / PARTITION
    if not listing.is_file():
        raise DataError(f"{root}: no {PARTITION} (is this DeepFashion's Consumer-to-shop benchmark?)")
    lines = listing.read_text().splitlines()
    if len(lines) < 2 or tuple(lines[1].split()) != HEADER:
        raise DataError(f"{listing}: line 2 should be the header {' '.join(HEADER)}")
    unknown = sorted(set(splits) - set(SPLITS))
    if unknown:
        raise DataError(f"unknown split(s) {unknown}; DeepFashion has {SPLITS}")
    rows: dict[str, dict] = {}
    errors: list[str] = []
    for number, line in enumerate(lines[2:], start=3):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 4 or fields[3] not in SPLITS:
            errors.append(f"line {number}: {line!r}")
            continue
        consumer, shop, item, split = fields
        if split not in splits:
            continue
        for path, role in ((consumer, "street"), (shop, "shop")):
            parts = Path(path).parts
            category = "/".join(parts[1:3]) if len(parts) >= 4 else "unknown"
            row = {"path": path, "item_id": item, "product_id": item, "role": role, "category": category, "colour": "unknown", "split": split}
            seen = rows.setdefault(path, row)
            if (seen["item_id"], seen["role"]) != (item, role):
                errors.append(f"line {number}: {path} is {role} of {item}, earlier {seen['role']} of {seen['item_id']}")
    if errors:
        shown = "; ".join(errors[:10]) + (f"; and {len(errors) - 10} more" if len(errors) > 10 else "")
        raise DataError(f"{listing}: {len(errors)} bad line(s): {shown}")
    if not rows:
        raise DataError(f"{listing}: no pairs in the split(s) {splits}")
    base = _image_root(root, next(iter(rows)))
    missing = [p for p in rows if not (base / p).is_file()]
    if missing:
        raise DataError(f"{base}: {len(missing)} photo(s) listed in {PARTITION} are missing, e.g. {missing[:3]}")
    ordered = [rows[p] | {"path": str((base / p).resolve())} for p in rows]
    return pa.Table.from_pylist(ordered, schema=pa.schema([(c, pa.string()) for c in COLUMNS]))


def write_dataset_csv(table: pa.Table, out: str | Path) -> Path:
    """The table as a labelled-dataset CSV (absolute photo paths)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=table.column_names)
        writer.writeheader()
        writer.writerows(table.to_pylist())
    return out
