"""``street2shop labels``: the human side of the noise filter's labelling round trip.

``export`` writes the street photos the latest noise model is least sure about (``p_noise``
closest to its keep threshold, not yet labelled) as a CSV with absolute file paths and an
empty ``label`` column for a person to fill in; ``import`` checks a filled-in CSV against the
latest crawl (:func:`~street2shop.cleaning.labels.validate_labels`: every bad row is named)
and merges it into the labels file the noise stage trains on. Re-running the noise stage
then trains on the new labels (the labels file's hash is part of its version id).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from street2shop.cli._common import HOME_HELP, check_out_folder, open_store
from street2shop.cli._errors import InputError, describe

labels_app = typer.Typer(help="Export photos to label next; import labelled photos.", no_args_is_help=True, rich_markup_mode=None)


@labels_app.command("export")
def export(
    out: Path = typer.Argument(..., help="CSV to write"),
    n: int = typer.Option(200, "--n", help="how many photos"),
    home: Optional[str] = typer.Option(None, help=HOME_HELP),
) -> None:
    """Write the N unlabelled street photos the latest noise model is least sure about."""
    check_out_folder(out, "OUT")
    from street2shop.cleaning.labels import write_atomically
    from street2shop.tasks.labels import least_certain

    try:
        table = least_certain(open_store(home, must_exist=True), n)
    except (ValueError, LookupError, FileNotFoundError) as exc:
        raise InputError(describe(exc)[0]) from None
    write_atomically(table, out)
    typer.echo(f"wrote {table.num_rows} photos to {out}: fill the 'label' column with good or noise")


@labels_app.command("import")
def import_(
    labelled: Path = typer.Argument(..., exists=True, dir_okay=False, help="labelled CSV (image_id or path, label)"),
    into: Optional[Path] = typer.Option(None, help="labels file to merge into (default: labels_path of --config)"),
    config: Optional[Path] = typer.Option(None, exists=True, help="pipeline YAML whose labels_path to merge into"),
    overwrite: bool = typer.Option(False, help="accept labels that differ from existing ones"),
    home: Optional[str] = typer.Option(None, help=HOME_HELP),
) -> None:
    """Check a labelled CSV against the latest crawl and merge it into the labels file."""
    from street2shop.cleaning.labels import merge_labels, read_labels_file, validate_labels, write_atomically
    from street2shop.tasks.labels import street_photos

    if into is None:
        if config is None:
            raise typer.BadParameter("give --into PATH or --config YAML (its labels_path)")
        from street2shop.flows.config import PipelineConfig

        into = Path(PipelineConfig.from_file(config).labels_path)
    try:
        street = street_photos(open_store(home, must_exist=True))
        # A row left unlabelled is refused like any bad row (named): delete rows not labelled.
        new = validate_labels(labelled, set(street.column("image_id").to_pylist()))
        merged, counts = merge_labels(read_labels_file(into), new, overwrite)
    except (ValueError, LookupError) as exc:
        raise InputError(f"{labelled}: {describe(exc)[0]}") from None
    write_atomically(merged, into)
    typer.echo(
        f"{into}: {counts['added']} added, {counts['relabelled']} relabelled, "
        f"{counts['unchanged']} unchanged; {merged.num_rows} labels in all"
    )
