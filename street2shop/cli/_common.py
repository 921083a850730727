"""What every command shares: where the store is, and how tables are printed."""

from __future__ import annotations

import os
from pathlib import Path

from rich.console import Console
from rich.table import Table

console = Console()

HOME_HELP = "artifact store: a folder or an fsspec URL like s3://bucket/prefix (default: $STREET2SHOP_HOME or ./.street2shop)"


def resolve_home(home: str | Path | None) -> Path | str:
    """``--home`` (a folder or a store URL such as ``s3://bucket/prefix``), else $STREET2SHOP_HOME.

    Exported as ``STREET2SHOP_HOME`` for what the command starts (flows, the service).
    """
    from street2shop.settings import store_home

    resolved = store_home(home)
    os.environ["STREET2SHOP_HOME"] = str(resolved)
    return resolved


def open_store(home: str | Path | None):
    """The :class:`~street2shop.storage.store.ArtifactStore` a command works on."""
    from street2shop.storage.store import ArtifactStore

    return ArtifactStore(resolve_home(home))


def fmt(value: object) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def print_table(table, title: str | None = None, max_rows: int = 200) -> None:
    """A pyarrow table as a rich table (at most ``max_rows`` rows)."""
    out = Table(title=title, show_lines=False)
    for name in table.column_names:
        out.add_column(name, overflow="fold")
    for row in table.slice(0, max_rows).to_pylist():
        out.add_row(*["" if v is None else fmt(v) for v in row.values()])
    console.print(out)
    if table.num_rows > max_rows:
        console.print(f"... {table.num_rows - max_rows} more rows")
