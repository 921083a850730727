"""Human good/noise labels of review photos: validated, merged, written atomically.

The labelling team hands over a CSV or Parquet file; :func:`validate_labels` checks it
against the crawled street photos and names every bad row, :func:`merge_labels` adds a new
round of labels to the file the noise stage trains on (refusing silent relabelling), and
:func:`write_atomically` replaces that file so a crash never leaves half of it.
"""

from __future__ import annotations

import csv
import os
import tempfile
from collections.abc import Collection
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from street2shop.storage.blobs import BlobStore
from street2shop.storage.schemas import NOISE_LABELS

LABELS: tuple[str, str] = ("good", "noise")


def _read_labels(source: pa.Table | str | Path) -> tuple[pa.Table, Path | None]:
    if isinstance(source, pa.Table):
        return source, None
    path = Path(source)
    if not path.exists():
        raise ValueError(f"label file {path} does not exist")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        # Read ids as text: a hex sha256 made only of digits must not become a number.
        options = pacsv.ConvertOptions(
            column_types={c: pa.string() for c in ("image_id", "path", "label")},
            strings_can_be_null=True,
        )
        return pacsv.read_csv(path, convert_options=options), path.parent
    if suffix in (".parquet", ".pq"):
        return pq.read_table(path), path.parent
    raise ValueError(f"unsupported label file {path.name!r}: use .csv or .parquet")


def _rows(rows: list[int], values: list[Any] | None = None, limit: int = 10) -> str:
    """'rows 2, 5 (...)' — 1-based data rows, not counting a CSV header."""
    shown = [f"{r + 1}" + (f" ({values[i]!r})" if values is not None else "") for i, r in enumerate(rows[:limit])]
    more = f" and {len(rows) - limit} more" if len(rows) > limit else ""
    return f"row{'s' if len(rows) > 1 else ''} " + ", ".join(shown) + more


def validate_labels(table_or_path: pa.Table | str | Path, known_image_ids: Collection[str]) -> pa.Table:
    """Check a user's noise labels and return them as NOISE_LABELS, or refuse with ValueError.

    Accepts a table or a .csv/.parquet file with a ``label`` column and either ``image_id``
    or ``path`` (an image file whose sha256 is its image_id; relative to the label file).
    Labels are compared after trimming and lower-casing. Refuses, naming the offending
    rows (1-based, header not counted): a missing column, an empty cell, an unknown label,
    an unknown image, an image labelled twice.
    """
    table, base = _read_labels(table_or_path)
    columns = set(table.column_names)
    if "label" not in columns or not columns & {"image_id", "path"}:
        raise ValueError(
            f"noise labels need a 'label' column and an 'image_id' or 'path' column; got {sorted(columns)}"
        )
    id_column = "image_id" if "image_id" in columns else "path"
    raw_ids = table.column(id_column).cast(pa.string()).to_pylist()
    raw_labels = table.column("label").cast(pa.string()).to_pylist()
    ids = [v.strip() if isinstance(v, str) and v.strip() else None for v in raw_ids]
    labels = [v.strip().lower() if isinstance(v, str) and v.strip() else None for v in raw_labels]
    problems: list[str] = []
    empty = [k for k in range(table.num_rows) if ids[k] is None or labels[k] is None]
    if empty:
        problems.append(f"empty {id_column} or label in {_rows(empty)}")
    if id_column == "path":
        # A photo given by file: its image_id is the sha256 of its bytes, as in the store.
        missing_files: list[int] = []
        for k, value in enumerate(ids):
            if value is None:
                continue
            file = Path(value)
            if base is not None and not file.is_absolute():
                file = base / file
            if file.is_file():
                ids[k] = BlobStore.digest(file.read_bytes())
            else:
                ids[k] = None
                missing_files.append(k)
        if missing_files:
            problems.append(f"image file not found in {_rows(missing_files, [raw_ids[k] for k in missing_files])}")
    bad_label = [k for k, lab in enumerate(labels) if lab is not None and lab not in LABELS]
    if bad_label:
        expected = " or ".join(LABELS)
        problems.append(f"unknown label (expected {expected}) in {_rows(bad_label, [raw_labels[k] for k in bad_label])}")
    known = known_image_ids if isinstance(known_image_ids, (set, frozenset, dict)) else set(known_image_ids)
    unknown = [k for k, i in enumerate(ids) if i is not None and i not in known]
    if unknown:
        problems.append(f"image not among the street photos in {_rows(unknown, [ids[k] for k in unknown])}")
    first: dict[str, int] = {}
    duplicated: list[int] = []
    for k, i in enumerate(ids):
        if i is None:
            continue
        if i in first:
            duplicated.append(k)
        else:
            first[i] = k
    if duplicated:
        firsts = ", ".join(str(first[ids[k]] + 1) for k in duplicated[:10])
        problems.append(f"image labelled more than once in {_rows(duplicated)} (first labelled in rows {firsts})")
    if problems:
        raise ValueError("noise labels refused:\n  - " + "\n  - ".join(problems))
    return pa.table({"image_id": ids, "label": labels}, schema=NOISE_LABELS)


def read_labels_file(path: Path) -> pa.Table:
    """The labels file being merged into (trusted: the noise stage validated it)."""
    if not path.exists():
        return NOISE_LABELS.empty_table()
    if path.suffix.lower() == ".csv":
        table = pacsv.read_csv(
            path, convert_options=pacsv.ConvertOptions(column_types={"image_id": pa.string(), "label": pa.string()})
        )
    elif path.suffix.lower() in (".parquet", ".pq"):
        table = pq.read_table(path)
    else:
        raise ValueError(f"unsupported labels file {path.name!r}: use .csv or .parquet")
    if not {"image_id", "label"} <= set(table.column_names):
        raise ValueError(f"{path} needs 'image_id' and 'label' columns to merge into; got {table.column_names}")
    return table.select(["image_id", "label"]).cast(NOISE_LABELS)


def merge_labels(existing: pa.Table, new: pa.Table, overwrite: bool) -> tuple[pa.Table, dict[str, int]]:
    """``existing`` with ``new`` added; a photo relabelled differently is refused (naming it)
    unless ``overwrite``. Existing order is kept, new photos are appended."""
    merged = dict(zip(existing.column("image_id").to_pylist(), existing.column("label").to_pylist()))
    conflicts = [
        (k, image_id, merged[image_id], label)
        for k, (image_id, label) in enumerate(zip(new.column("image_id").to_pylist(), new.column("label").to_pylist()))
        if image_id in merged and merged[image_id] != label
    ]
    if conflicts and not overwrite:
        shown = "; ".join(f"row {k + 1} ({i[:12]}…: {old} -> {lab})" for k, i, old, lab in conflicts[:10])
        more = f" and {len(conflicts) - 10} more" if len(conflicts) > 10 else ""
        raise ValueError(f"{len(conflicts)} photos are already labelled differently: {shown}{more}; pass --overwrite to relabel")
    added = sum(1 for i in new.column("image_id").to_pylist() if i not in merged)
    merged.update(zip(new.column("image_id").to_pylist(), new.column("label").to_pylist()))
    table = pa.table({"image_id": list(merged), "label": list(merged.values())}, schema=NOISE_LABELS)
    return table, {"added": added, "relabelled": len(conflicts), "unchanged": new.num_rows - added - len(conflicts)}


def write_atomically(table: pa.Table, path: Path) -> None:
    """Write ``table`` as CSV or Parquet (by suffix) to a temporary file and rename it over
    ``path``: a crash mid-write never leaves a half-written labels file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        if path.suffix.lower() == ".csv":
            with open(tmp, "w", newline="") as fh:
                writer = csv.writer(fh)
                writer.writerow(table.column_names)
                writer.writerows(zip(*(table.column(c).to_pylist() for c in table.column_names)))
        else:
            pq.write_table(table, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
