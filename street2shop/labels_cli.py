"""``street2shop labels``: the human side of the noise filter's labelling round trip.

``export`` writes the street photos the latest noise model is least sure about (``p_noise``
closest to its keep threshold, not yet labelled) as a CSV with absolute file paths and an
empty ``label`` column for a person to fill in; ``import`` checks a filled-in CSV against the
latest crawl (:func:`~street2shop.cleaning.noise.validate_labels`: every bad row is named)
and merges it into the labels file the noise stage trains on. Re-running the noise stage
then trains on the new labels (the labels file's hash is part of its version id).

Mounted by ``street2shop/cli.py`` as ``app.add_typer(labels_app, name="labels")``.
"""

from __future__ import annotations

import csv
import os
import tempfile
from pathlib import Path
from typing import Optional

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import typer

from street2shop.storage.schemas import NOISE_LABELS
from street2shop.storage.store import ArtifactStore

labels_app = typer.Typer(help="Export photos to label next; import labelled photos.", no_args_is_help=True)

EXPORT_COLUMNS = ("image_id", "path", "item_id", "p_noise", "label")


def _store(home: Optional[str]) -> ArtifactStore:
    from street2shop.settings import store_home

    return ArtifactStore(store_home(home))


def _street_photos(store: ArtifactStore) -> pa.Table:
    """Latest crawl's street photos, one row per image_id, with absolute paths."""
    from street2shop.tasks.stage import images_with_paths

    images = images_with_paths(store, store.latest("crawl", "images"))
    street = images.filter(pc.equal(images.column("role"), "street"))
    _, first = np.unique(np.asarray(street.column("image_id").to_pylist(), dtype=object), return_index=True)
    return street.take(pa.array(np.sort(first), pa.int64())).select(["image_id", "path", "item_id"])


def least_certain(store: ArtifactStore, n: int) -> pa.Table:
    """The ``n`` unlabelled street photos whose ``p_noise`` is closest to the latest noise
    model's keep threshold (ties: by image_id), with an empty ``label`` column."""
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    from street2shop.cleaning.noise import NoiseFilter  # torch: loaded when the command runs, not on import

    scores_ref = store.latest("noise", "noise_scores")
    threshold = NoiseFilter.load(store.version_dir(store.latest("noise", "noise_model"))).threshold
    labelled = set(store.read_table(store.latest("noise", "noise_labels")).column("image_id").to_pylist())
    p_of = dict(
        zip(*(store.read_table(scores_ref, ["image_id", "p_noise"]).column(c).to_pylist() for c in ("image_id", "p_noise")))
    )
    street = _street_photos(store)
    rows = [
        (abs(p_of[r["image_id"]] - threshold), r["image_id"], r)
        for r in street.to_pylist()
        if r["image_id"] in p_of and r["image_id"] not in labelled
    ]
    rows.sort(key=lambda t: (t[0], t[1]))
    chosen = [r for _, _, r in rows[:n]]
    return pa.table(
        {
            "image_id": pa.array([r["image_id"] for r in chosen], pa.string()),
            "path": pa.array([r["path"] for r in chosen], pa.string()),
            "item_id": pa.array([r["item_id"] for r in chosen], pa.string()),
            "p_noise": pa.array([round(float(p_of[r["image_id"]]), 4) for r in chosen], pa.float64()),
            "label": pa.array([""] * len(chosen), pa.string()),
        }
    )


def _read_existing(path: Path) -> pa.Table:
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


@labels_app.command("export")
def export(
    out: Path = typer.Argument(..., help="CSV to write"),
    n: int = typer.Option(200, "--n", help="how many photos"),
    home: Optional[str] = typer.Option(None, help="artifact store: a folder or a URL like s3://bucket/prefix (default: $STREET2SHOP_HOME)"),
) -> None:
    """Write the N unlabelled street photos the latest noise model is least sure about."""
    try:
        table = least_certain(_store(home), n)
    except (ValueError, LookupError, FileNotFoundError) as exc:
        raise typer.BadParameter(str(exc)) from exc
    write_atomically(table, out)
    typer.echo(f"wrote {table.num_rows} photos to {out}: fill the 'label' column with good or noise")


@labels_app.command("import")
def import_(
    labelled: Path = typer.Argument(..., exists=True, dir_okay=False, help="labelled CSV (image_id or path, label)"),
    into: Optional[Path] = typer.Option(None, help="labels file to merge into (default: labels_path of --config)"),
    config: Optional[Path] = typer.Option(None, exists=True, help="pipeline YAML whose labels_path to merge into"),
    overwrite: bool = typer.Option(False, help="accept labels that differ from existing ones"),
    home: Optional[str] = typer.Option(None, help="artifact store: a folder or a URL like s3://bucket/prefix (default: $STREET2SHOP_HOME)"),
) -> None:
    """Check a labelled CSV against the latest crawl and merge it into the labels file."""
    if into is None:
        if config is None:
            raise typer.BadParameter("give --into PATH or --config YAML (its labels_path)")
        from street2shop.flows.config import PipelineConfig

        into = Path(PipelineConfig.from_file(config).labels_path)
    try:
        street = _street_photos(_store(home))
        # A row left unlabelled is refused like any bad row (named): delete rows not labelled.
        from street2shop.cleaning.noise import validate_labels

        new = validate_labels(labelled, set(street.column("image_id").to_pylist()))
        merged, counts = merge_labels(_read_existing(into), new, overwrite)
    except (ValueError, LookupError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    write_atomically(merged, into)
    typer.echo(
        f"{into}: {counts['added']} added, {counts['relabelled']} relabelled, "
        f"{counts['unchanged']} unchanged; {merged.num_rows} labels in all"
    )

