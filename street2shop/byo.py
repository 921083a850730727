"""Bring your own data: evaluate a model on, or build a search index from, labelled CSVs.

A retailer's product feed or a benchmark set is two CSV files (or one, for an index):

* ``path``: the image file, relative to the CSV's folder (absolute paths work too);
* ``item_id``: the sellable item (product x colour) the photo shows;
* optional ``product_id``, ``category``, ``colour``: item attributes. They are read from
  the gallery / catalogue; a query CSV may repeat them but must agree.

``street2shop eval`` scores street-photo queries against the gallery through the one
evaluation path (:func:`street2shop.evaluate.evaluate_features`) and can write the same HTML
report as the evaluate stage. ``street2shop index`` imports a catalogue into the store and
publishes the same ``index_ids`` artifact the pipeline's index stage does (by calling that
stage's function), with the checkpoint among its inputs, so the search service serves it
like any other index.

Nothing is skipped: a missing file, an unreadable image, a duplicated path, a missing
column or an empty cell stops the command with an error naming the CSV rows at fault.
"""

from __future__ import annotations

import csv
import hashlib
import json
import shutil
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import numpy as np
import pyarrow as pa
import typer
from PIL import Image

from street2shop.storage.blobs import BlobStore
from street2shop.storage.schemas import IMAGES, ITEMS, embeddings_schema
from street2shop.storage.store import ArtifactRef, ArtifactStore, content_version
from street2shop.tasks.stage import StageResult, run_stage

if TYPE_CHECKING:  # torch and the models load when a command runs, not for `street2shop --help`
    from street2shop.models.embedder import Embedder
    from street2shop.retrieval.evaluation import RetrievalReport

REQUIRED_COLUMNS = ("path", "item_id")
ITEM_ATTRIBUTES = ("product_id", "category", "colour")
#: The split the queries are given (the selection rules need one; every query is used).
SPLIT = "test"
#: Where an imported catalogue and checkpoint live in the store.
CATALOG_STAGE = "catalog"
CATALOG_EMBED_STAGE = "catalog_embed"
IMPORT_STAGE = "import"
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


# --------------------------------------------------------------------------- reading


def read_labelled_csv(csv_path: str | Path, check_images: bool = True) -> LabelledPhotos:
    """Read and validate a CSV of labelled photos (see the module docstring).

    Raises :class:`DataError` listing every bad row (line numbers as an editor shows them,
    the header being line 1) rather than skipping any.
    """
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise DataError(f"CSV not found: {csv_path}")
    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            header = list(reader.fieldnames or [])
            rows, lines = [], []
            for row in reader:
                rows.append(row)
                lines.append(reader.line_num)  # as an editor numbers it (a quoted cell may span lines)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{csv_path}: not a readable CSV: {exc}") from exc
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        raise DataError(f"{csv_path}: missing column(s) {missing}; found {header} (need {list(REQUIRED_COLUMNS)})")
    if not rows:
        raise DataError(f"{csv_path}: no rows")
    attributes = tuple(c for c in ITEM_ATTRIBUTES if c in header)
    rows = [{c: row.get(c) for c in (*REQUIRED_COLUMNS, *attributes)} for row in rows]

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
                with Image.open(path) as im:
                    sizes[i] = im.size
                    im.convert("RGB")  # decodes every pixel: a truncated file fails here
            except (OSError, ValueError, Image.DecompressionBombError) as exc:
                errors.append(f"line {line}: {path.name}: {exc}")
        _raise(csv_path, "unreadable images", errors)

    columns = {
        "path": [str(p) for p in paths],
        "item_id": [row["item_id"].strip() for row in rows],
        **{c: [row[c].strip() for row in rows] for c in attributes},
        "width": pa.array([w for w, _ in sizes], pa.int32()),
        "height": pa.array([h for _, h in sizes], pa.int32()),
        "line": lines,
    }
    photos = LabelledPhotos(csv_path, pa.table(columns), attributes)
    _check_items_agree(photos)
    return photos


def _raise(csv_path: Path, what: str, errors: list[str]) -> None:
    if errors:
        listed = "; ".join(errors[:_MAX_LISTED])
        more = f"; and {len(errors) - _MAX_LISTED} more" if len(errors) > _MAX_LISTED else ""
        raise DataError(f"{csv_path}: {len(errors)} row(s) with {what}: {listed}{more}")


def _item_attributes(photos: LabelledPhotos) -> dict[str, dict[str, str]]:
    """item_id -> its attributes, from the first row naming the item."""
    out: dict[str, dict[str, str]] = {}
    for row in photos.table.select(["item_id", *photos.attributes]).to_pylist():
        out.setdefault(row.pop("item_id"), row)
    return out


def _check_items_agree(photos: LabelledPhotos, reference: dict[str, dict[str, str]] | None = None) -> None:
    """Every row's attributes agree with its item's (first row's, or ``reference``'s)."""
    known = reference if reference is not None else _item_attributes(photos)
    errors = []
    for row in photos.table.select(["item_id", "line", *photos.attributes]).to_pylist():
        expected = known.get(row["item_id"], {})
        for c in photos.attributes:
            if c in expected and row[c] != expected[c]:
                errors.append(f"line {row['line']}: item {row['item_id']} has {c} {row[c]!r}, elsewhere {expected[c]!r}")
    _raise(photos.csv, "conflicting item attributes", errors)


# --------------------------------------------------------------------------- evaluation


def annotated_from_csvs(gallery: LabelledPhotos, queries: LabelledPhotos) -> pa.Table:
    """The two CSVs as the ``annotated`` table the evaluation path reads.

    Gallery rows are shop photos, query rows street photos of split :data:`SPLIT`, all kept
    and unlabelled, so :mod:`street2shop.selection` uses every one of them.
    """
    attributes = _item_attributes(gallery)
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


def evaluate_csvs(
    model: Embedder,
    gallery_csv: str | Path,
    queries_csv: str | Path,
    ks: tuple[int, ...] = (1, 5, 10, 20),
    batch_size: int = 32,
) -> tuple[RetrievalReport, dict[str, np.ndarray], pa.Table]:
    """Score ``model`` on a labelled set; returns the report, the vectors and the annotated table."""
    annotated = annotated_from_csvs(read_labelled_csv(gallery_csv), read_labelled_csv(queries_csv))
    from street2shop.evaluate import evaluate_features
    from street2shop.models.embed import embed_images

    features = partial(embed_images, model, batch_size=batch_size, num_workers=0)
    report, vectors = evaluate_features(features, annotated, SPLIT, ks=ks)
    return report, vectors, annotated


def metrics_json(report: RetrievalReport) -> dict:
    """``{"overall": {...}, "per_category": {category: {...}}}`` with keys ``top1``, ``map``, ..."""
    return {"overall": dict(report.overall), "per_category": {c: dict(v) for c, v in sorted(report.per_category.items())}}


# --------------------------------------------------------------------------- models


def resolve_checkpoint(store: ArtifactStore, model: Path | None) -> ArtifactRef:
    """The store's checkpoint to use: ``model`` imported into the store, or the published one
    (latest ``train/checkpoint``).

    Importing keeps one rule for what an index records: its checkpoint is an artifact ref,
    whatever file it came from. The version is the file's hash, so importing twice is a no-op.
    """
    from street2shop.tasks.train import CHECKPOINT_FILE

    if model is None:
        return store.latest("train", "checkpoint")
    from street2shop.models.embedder import load_embedder

    load_embedder(model)  # fail now, with the loader's message, on a file that is no checkpoint
    digest = hashlib.sha256(Path(model).read_bytes()).hexdigest()[:16]

    def compute(writers) -> None:
        shutil.copyfile(model, writers["checkpoint"].path(CHECKPOINT_FILE))
        writers["checkpoint"].metrics["source"] = str(Path(model).resolve())

    return run_stage(store, IMPORT_STAGE, "1", ("checkpoint",), compute, version=digest)["checkpoint"]


def load_checkpoint(store: ArtifactStore, ref: ArtifactRef) -> Embedder:
    from street2shop.tasks.train import CHECKPOINT_FILE

    from street2shop.models.embedder import load_embedder

    return load_embedder(store.file(ref, CHECKPOINT_FILE))


# --------------------------------------------------------------------------- index


def import_catalog(store: ArtifactStore, catalog: LabelledPhotos) -> StageResult:
    """Copy the catalogue's photos into the blob store and publish ``items`` and ``images``
    (the crawl's schemas) under stage :data:`CATALOG_STAGE`, versioned by content."""
    blobs = store.blobs
    attributes = _item_attributes(catalog)
    images, seen = [], {}
    for row in catalog.table.to_pylist():
        source = Path(row["path"])
        sha, rel = blobs.put(source.read_bytes(), source.suffix.lstrip(".").lower() or "jpg")
        key = (sha, row["item_id"])
        if key in seen:
            raise DataError(f"{catalog.csv}: line {row['line']} is the same photo of item {row['item_id']} as line {seen[key]}")
        seen[key] = row["line"]
        images.append(
            {"image_id": sha, "item_id": row["item_id"], "role": "shop", "path": rel, "width": row["width"],
             "height": row["height"], "source_url": source.as_uri(), "review_id": None}
        )
    items = [
        {"item_id": item, "product_id": a.get("product_id", item), "seller_id": catalog.csv.stem,
         "category": a.get("category", "unknown"), "colour": a.get("colour", "unknown"), "title": None, "url": None}
        for item, a in attributes.items()
    ]
    tables = {"items": pa.Table.from_pylist(items, ITEMS), "images": pa.Table.from_pylist(images, IMAGES)}

    def compute(writers) -> None:
        for name, table in tables.items():
            writers[name].write_table(table)
        writers["items"].metrics["source"] = str(catalog.csv.resolve())

    return run_stage(store, CATALOG_STAGE, "1", tuple(tables), compute, version=content_version(tables))


@dataclass(frozen=True)
class DaskOptions:
    """Where catalogue embedding fans out: an existing cluster, or a local one of ``workers``."""

    address: str | None = None
    workers: int = 2


def embed_catalog(
    store: ArtifactStore, images: ArtifactRef, checkpoint: ArtifactRef, batch_size: int = 32, dask: DaskOptions | None = None
) -> StageResult:
    """Publish one vector per catalogue photo (the ``embeddings`` the index stage reads).

    With ``dask``, chunks of photos are embedded on a Dask cluster through Prefect
    (:mod:`street2shop.flows.fanout`) by the same ``embed_images``; the version does not
    depend on where the vectors were computed.
    """

    def compute(writers) -> None:
        table = store.read_table(images, columns=["image_id", "path"])
        ids, first = np.unique(np.asarray(table.column("image_id").to_pylist(), dtype=object), return_index=True)
        blob_paths = [table.column("path")[int(i)].as_py() for i in first]
        if dask is not None:
            from street2shop.flows.fanout import embed_on_dask

            # blob paths, not local ones: every worker fetches the photos from the store itself
            vectors = embed_on_dask(store, checkpoint, blob_paths, address=dask.address, n_workers=dask.workers, batch_size=batch_size)
        else:
            from street2shop.models.embed import embed_images

            paths = [str(p) for p in store.blobs.resolve_many(blob_paths)]
            vectors = embed_images(load_checkpoint(store, checkpoint), paths, batch_size=batch_size, num_workers=0)
        dim = vectors.shape[1]
        flat = pa.array(vectors.reshape(-1), pa.float32())
        out = pa.table({"image_id": pa.array(ids.tolist(), pa.string()), "vector": pa.FixedSizeListArray.from_arrays(flat, dim)})
        writers["embeddings"].write_table(out, embeddings_schema(dim))
        writers["embeddings"].metrics.update({"dim": dim, "vectors": out.num_rows})

    inputs = {"images": images, "checkpoint": checkpoint}
    return run_stage(store, CATALOG_EMBED_STAGE, "1", ("embeddings",), compute, inputs=inputs, params={"batch_size": batch_size})


def index_catalog(
    store: ArtifactStore, catalog_csv: str | Path, model: Path | None = None, factory: str = "auto", dask: DaskOptions | None = None
) -> StageResult:
    """Import a catalogue CSV, embed it and publish its index through the index stage."""
    from street2shop.tasks.index import IndexParams, run_build_index

    catalog = read_labelled_csv(catalog_csv)
    checkpoint = resolve_checkpoint(store, model)
    imported = import_catalog(store, catalog)
    embeddings = embed_catalog(store, imported["images"], checkpoint, dask=dask)
    return run_build_index(store, embeddings["embeddings"], imported["images"], checkpoint, IndexParams(factory=factory))


# --------------------------------------------------------------------------- commands


def _store(home: str | None) -> ArtifactStore:
    from street2shop.settings import store_home

    return ArtifactStore(store_home(home))


def eval_command(
    gallery: Path = typer.Option(..., help="CSV of gallery (shop) photos: path,item_id[,product_id,category,colour]"),
    queries: Path = typer.Option(..., help="CSV of query (street) photos: path,item_id"),
    model: Optional[Path] = typer.Option(None, help="embedder checkpoint file (default: the store's latest trained one)"),
    home: Optional[str] = typer.Option(None, help="artifact store (folder or s3:// URL), for the published model"),
    json_output: bool = typer.Option(False, "--json", help="print one JSON object: overall and per category"),
    report_path: Optional[Path] = typer.Option(None, "--report", help="also write the HTML report here"),
    batch_size: int = typer.Option(32),
) -> None:
    """Evaluate the published (or a named) model on your own labelled gallery and queries."""
    from street2shop.models.embedder import load_embedder
    from street2shop.storage.store import ArtifactNotFound

    try:
        embedder = load_embedder(model) if model is not None else load_checkpoint(_store(home), _store(home).latest("train", "checkpoint"))
        report, vectors, annotated = evaluate_csvs(embedder, gallery, queries, batch_size=batch_size)
    except (DataError, ArtifactNotFound, FileNotFoundError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    if json_output:
        typer.echo(json.dumps(metrics_json(report), sort_keys=True))
    else:
        _print_metrics(report)
    if report_path is not None:
        from street2shop.report import build_report_data, render_report

        metrics = pa.Table.from_pylist(report.to_rows("trained", SPLIT))
        page = build_report_data(f"street2shop evaluation of {gallery.name} / {queries.name}", metrics, annotated, SPLIT, report, vectors)
        report_path.parent.mkdir(parents=True, exist_ok=True)
        report_path.write_text(render_report(page), encoding="utf-8")
        if not json_output:
            typer.echo(f"report: {report_path}")


def _print_metrics(report: RetrievalReport) -> None:
    from rich.console import Console
    from rich.table import Table

    keys = [f"top{k}" for k in report.ks] + ["map"] + (["wrong_colour_top1"] if "wrong_colour_top1" in report.overall else []) + ["n_queries"]
    table = Table(title=f"gallery: {int(report.overall['gallery_size'])} photos of {int(report.overall['gallery_items'])} items, exact search")
    table.add_column("category")
    for key in keys:
        table.add_column(key, justify="right")
    for category, values in [("all", report.overall), *sorted(report.per_category.items())]:
        table.add_row(category, *[f"{values[k]:.4g}" for k in keys])
    Console().print(table)


def index_command(
    catalog: Path = typer.Option(..., help="CSV of catalogue photos: path,item_id[,product_id,category,colour]"),
    home: Optional[str] = typer.Option(None, help="artifact store (folder or s3:// URL) the index is published to"),
    model: Optional[Path] = typer.Option(None, help="embedder checkpoint file (default: the store's latest trained one)"),
    factory: str = typer.Option("auto", help="faiss index factory string, or 'auto' (exact for small catalogues)"),
    dask_address: Optional[str] = typer.Option(None, help="embed on this Dask cluster (tcp://host:8786); the store must be one every worker reaches"),
    dask_workers: int = typer.Option(0, min=0, help="embed on a local Dask cluster of this many worker processes (0: in this process)"),
) -> None:
    """Build a searchable index from your own catalogue CSV, without crawling."""
    from street2shop.storage.store import ArtifactNotFound

    dask = DaskOptions(dask_address, dask_workers or 2) if dask_address or dask_workers else None
    try:
        result = index_catalog(_store(home), catalog, model, factory, dask=dask)
    except (DataError, ArtifactNotFound, FileNotFoundError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    typer.echo(f"index: version {result.version} ({'reused' if result.skipped else 'new'})")
    for key, value in sorted(result.metrics.items()):
        typer.echo(f"  {key}: {value}")
