"""Labelled photos from CSV files: a product feed, a benchmark set, a user's own data.

A labelled set is a CSV (or two: gallery and queries):

* ``path``: the image file, relative to the CSV's folder (absolute paths work too);
* ``item_id``: the sellable item (product x colour) the photo shows;
* optional ``product_id``, ``category``, ``colour``: item attributes. They are read from
  the gallery / catalogue; a query CSV may repeat them but must agree.

:func:`read_labelled_csv` validates one, and :func:`annotated_from_csvs` turns a gallery and a
query CSV into the ``annotated`` table the one evaluation path reads (``street2shop eval``,
the evaluate stage's benchmarks); ``street2shop index --catalog`` imports one into the store.

Nothing is skipped: a missing file, an unreadable image, a duplicated path, a missing
column or an empty cell stops with an error naming the CSV rows at fault.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from street2shop.storage.images import UnreadableImageError, open_image

REQUIRED_COLUMNS = ("path", "item_id")
ITEM_ATTRIBUTES = ("product_id", "category", "colour")
#: The split the queries are given (the selection rules need one; every query is used).
SPLIT = "test"
#: Row errors listed in one message before "... and N more".
_MAX_LISTED = 10


class DataError(ValueError):
    """A CSV or the images it names cannot be used; the message names the rows."""


@dataclass(frozen=True)
class LabelledPhotos:
    """One validated CSV: absolute image paths, their items, the optional attributes."""

    csv: Path
    table: pa.Table  # path (absolute), item_id, the attribute columns the CSV has, width, height, line
    attributes: tuple[str, ...]


def read_labelled_csv(csv_path: str | Path, check_images: bool = True, required: Sequence[str] = ()) -> LabelledPhotos:
    """Read and validate a CSV (or Parquet file) of labelled photos (see the module docstring).

    ``required``: columns needed beyond ``path`` and ``item_id`` (e.g. ``role`` for a
    dataset), kept in the table. Raises :class:`DataError` listing every bad row (line
    numbers as an editor shows them, the header being line 1; a Parquet file's rows are
    numbered the same way) rather than skipping any.
    """
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise DataError(f"CSV not found: {csv_path}")
    header, rows, lines = _read_rows(csv_path)
    need = (*REQUIRED_COLUMNS, *(c for c in required if c not in REQUIRED_COLUMNS))
    missing = [c for c in need if c not in header]
    if missing:
        raise DataError(f"{csv_path}: missing column(s) {missing}; found {header} (need {list(need)})")
    if not rows:
        raise DataError(f"{csv_path}: no rows")
    attributes = tuple(c for c in ITEM_ATTRIBUTES if c in header)
    extra = tuple(c for c in need if c not in REQUIRED_COLUMNS and c not in attributes)
    rows = [{c: (None if row.get(c) is None else str(row.get(c))) for c in (*REQUIRED_COLUMNS, *attributes, *extra)} for row in rows]

    errors: list[str] = []
    for line, row in zip(lines, rows):
        empty = [c for c, v in row.items() if v is None or not str(v).strip()]
        if empty:
            errors.append(f"line {line}: empty {', '.join(empty)}")
    _raise(csv_path, "empty cells", errors)

    folder = csv_path.resolve().parent
    paths = [(folder / row["path"].strip()).resolve() for row in rows]
    first_line: dict[Path, int] = {}
    for line, path in zip(lines, paths):
        if path in first_line:
            errors.append(f"line {line}: {path.name} repeats line {first_line[path]}")
        first_line.setdefault(path, line)
    _raise(csv_path, "duplicate paths", errors)

    errors = [f"line {line}: {path}" for line, path in zip(lines, paths) if not path.is_file()]
    _raise(csv_path, "missing image files", errors)

    sizes = [(0, 0)] * len(paths)
    if check_images:
        for i, (line, path) in enumerate(zip(lines, paths)):
            try:
                sizes[i] = open_image(path).size  # decodes every pixel: a truncated file fails here
            except UnreadableImageError as exc:
                errors.append(f"line {line}: {path.name}: {exc.__cause__ or exc}")
        _raise(csv_path, "unreadable images", errors)

    columns = {
        "path": [str(p) for p in paths],
        "item_id": [row["item_id"].strip() for row in rows],
        **{c: [row[c].strip() for row in rows] for c in (*attributes, *extra)},
        "width": pa.array([w for w, _ in sizes], pa.int32()),
        "height": pa.array([h for _, h in sizes], pa.int32()),
        "line": lines,
    }
    photos = LabelledPhotos(csv_path, pa.table(columns), attributes)
    _check_items_agree(photos)
    return photos


def _read_rows(path: Path) -> tuple[list[str], list[dict], list[int]]:
    """``(header, rows, line numbers)`` of a CSV or Parquet file."""
    if path.suffix.lower() in (".parquet", ".pq"):
        try:
            table = pq.read_table(path)
        except (OSError, pa.ArrowInvalid) as exc:
            raise DataError(f"{path}: not a readable Parquet file: {exc}") from exc
        return table.column_names, table.to_pylist(), list(range(2, table.num_rows + 2))
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            header = list(reader.fieldnames or [])
            rows, lines = [], []
            for row in reader:
                rows.append(row)
                lines.append(reader.line_num)  # as an editor numbers it (a quoted cell may span lines)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{path}: not a readable CSV: {exc}") from exc
    return header, rows, lines


def _raise(csv_path: Path, what: str, errors: list[str]) -> None:
    if errors:
        listed = "; ".join(errors[:_MAX_LISTED])
        more = f"; and {len(errors) - _MAX_LISTED} more" if len(errors) > _MAX_LISTED else ""
        raise DataError(f"{csv_path}: {len(errors)} row(s) with {what}: {listed}{more}")


def item_attributes(photos: LabelledPhotos) -> dict[str, dict[str, str]]:
    """item_id -> its attributes, from the first row naming the item."""
    out: dict[str, dict[str, str]] = {}
    for row in photos.table.select(["item_id", *photos.attributes]).to_pylist():
        out.setdefault(row.pop("item_id"), row)
    return out


def _check_items_agree(photos: LabelledPhotos, reference: dict[str, dict[str, str]] | None = None) -> None:
    """Every row's attributes agree with its item's (first row's, or ``reference``'s)."""
    known = reference if reference is not None else item_attributes(photos)
    errors = []
    for row in photos.table.select(["item_id", "line", *photos.attributes]).to_pylist():
        expected = known.get(row["item_id"], {})
        for c in photos.attributes:
            if c in expected and row[c] != expected[c]:
                errors.append(f"line {row['line']}: item {row['item_id']} has {c} {row[c]!r}, elsewhere {expected[c]!r}")
    _raise(photos.csv, "conflicting item attributes", errors)


def annotated_from_csvs(gallery: LabelledPhotos, queries: LabelledPhotos) -> pa.Table:
    """The two CSVs as the ``annotated`` table the evaluation path reads.

    Gallery rows are shop photos, query rows street photos of split :data:`SPLIT`, all kept
    and unlabelled, so :mod:`street2shop.cleaning.selection` uses every one of them.
    """
    attributes = item_attributes(gallery)
    _check_items_agree(queries, attributes)
    absent = [f"line {line}: item {item}" for item, line in zip(queries.table.column("item_id").to_pylist(), queries.table.column("line").to_pylist()) if item not in attributes]
    _raise(queries.csv, f"items that have no photo in the gallery {gallery.csv.name}", absent)
    overlap = set(gallery.table.column("path").to_pylist()) & set(queries.table.column("path").to_pylist())
    if overlap:
        raise DataError(f"{len(overlap)} photo(s) are both a query and a gallery photo, e.g. {sorted(overlap)[0]}")

    def part(photos: LabelledPhotos, role: str) -> pa.Table:
        items = photos.table.column("item_id").to_pylist()
        n = len(items)
        columns = {
            "image_id": photos.table.column("path"),
            "item_id": photos.table.column("item_id"),
            "role": [role] * n,
            "path": photos.table.column("path"),
        }
        for c in gallery.attributes:
            columns[c] = [attributes[i][c] for i in items]
        columns |= {"split": [SPLIT] * n, "keep": [True] * n, "label": pa.nulls(n, pa.string())}
        return pa.table(columns)

    return pa.concat_tables([part(gallery, "shop"), part(queries, "street")])
