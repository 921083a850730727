"""What every command shares: where the store is, and how tables are printed (or written as
JSON or CSV for scripts)."""

from __future__ import annotations

import csv
import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.table import Table

from street2shop.cli._errors import InputError

# Piped or redirected, lines are never wrapped at 80 columns (a script reads whole ids).
console = Console(soft_wrap=not sys.stdout.isatty())

HOME_HELP = "artifact store: a folder or an fsspec URL like s3://bucket/prefix (default: $STREET2SHOP_HOME or ./.street2shop)"
JSON_HELP = "print JSON (one array of objects) instead of a table"
CSV_HELP = "print CSV with a header row instead of a table"
#: The options the reading commands share.
HomeOption = Annotated[Optional[str], typer.Option("--home", help=HOME_HELP)]
JsonFlag = Annotated[bool, typer.Option("--json", help=JSON_HELP)]
CsvFlag = Annotated[bool, typer.Option("--csv", help=CSV_HELP)]

#: Columns that hold ids: never folded over two lines, even on a narrow terminal.
_ID_COLUMNS = ("version", "id", "image_id", "item_id", "product_id")


def resolve_home(home: str | Path | None) -> Path | str:
    """``--home`` (a folder or a store URL such as ``s3://bucket/prefix``), else $STREET2SHOP_HOME.

    Exported as ``STREET2SHOP_HOME`` for what the command starts (flows, the service).
    """
    from street2shop.settings import store_home

    resolved = store_home(home)
    os.environ["STREET2SHOP_HOME"] = str(resolved)
    return resolved


def existing_home(home: str | Path | None) -> Path | str:
    """:func:`resolve_home` for a command that only reads: a local folder that does not exist
    is an error (a typo would otherwise read as an empty store)."""
    resolved = resolve_home(home)
    if isinstance(resolved, Path) and not resolved.is_dir():
        raise InputError(
            f"--home {resolved}: no such folder (a store is made by `street2shop demo` or `street2shop run`; "
            "or set $STREET2SHOP_HOME)"
        )
    return resolved


def open_store(home: str | Path | None, *, must_exist: bool = False):
    """The :class:`~street2shop.storage.store.ArtifactStore` a command works on (``must_exist``:
    a command that only reads refuses a missing folder)."""
    from street2shop.storage.store import ArtifactStore

    return ArtifactStore(existing_home(home) if must_exist else resolve_home(home))


def check_out_folder(path: Path, option: str = "--out") -> None:
    """A file a command will write goes into a folder that exists: never create folders at random."""
    if not path.parent.is_dir():
        raise InputError(f"{option} {path}: folder {path.parent} does not exist (create it first)")


def fmt(value: object) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def output_format(as_json: bool, as_csv: bool) -> str:
    if as_json and as_csv:
        raise InputError("--json and --csv: choose one")
    return "json" if as_json else "csv" if as_csv else "table"


def reading(home: str | Path | None, as_json: bool, as_csv: bool):
    """(output format, store) of a command that reads the store: the flags are checked first,
    then the folder must exist."""
    form = output_format(as_json, as_csv)
    return form, open_store(home, must_exist=True)


def print_rows(
    rows: list[dict[str, Any]], form: str, title: str | None = None, max_rows: int | None = 200, columns: list[str] | None = None,
) -> None:
    """Rows as a rich table (at most ``max_rows``), or every row as JSON or CSV for scripts
    (``columns``: the header when there may be no rows)."""
    columns = columns if columns is not None else list(rows[0]) if rows else []
    if form == "json":
        typer.echo(json.dumps(rows, default=str))
        return
    if form == "csv":
        writer = csv.DictWriter(sys.stdout, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        return
    out = Table(title=title, show_lines=False)
    for name in columns:
        out.add_column(name, overflow="fold", no_wrap=name.endswith(_ID_COLUMNS))
    shown = rows if max_rows is None else rows[:max_rows]
    for row in shown:
        out.add_row(*["" if v is None else fmt(v) for v in row.values()])
    print_wide(out)
    if len(rows) > len(shown):
        console.print(f"... {len(rows) - len(shown)} more rows (--json or --csv prints all)")


def print_wide(renderable: Any) -> None:
    """Print to a terminal at its width; to a pipe or file without wrapping lines at 80."""
    if console.is_terminal:
        console.print(renderable)
        return
    width = console.width
    console.width = 10_000  # rich never draws wider than the console, and a pipe's is 80
    try:
        console.print(renderable)
    finally:
        console.width = width


def print_table(table, title: str | None = None, max_rows: int = 200, form: str = "table") -> None:
    """A pyarrow table as a rich table (at most ``max_rows`` rows), or as JSON or CSV."""
    rows = table.to_pylist() if form != "table" else table.slice(0, max_rows).to_pylist()
    print_rows(rows, form, title, None, columns=table.column_names)
    if form == "table" and table.num_rows > max_rows:
        console.print(f"... {table.num_rows - max_rows} more rows (--json or --csv prints all)")
