"""``street2shop serve``: run the search API and web page with uvicorn.

A plain typer-decorated function; the main CLI mounts it with ``app.command("serve")(serve)``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import typer


def serve(
    home: Optional[Path] = typer.Option(None, help="artifact store root (default: $STREET2SHOP_HOME or ./.street2shop)"),
    host: str = typer.Option("127.0.0.1", help="interface to listen on (0.0.0.0 exposes it to the network)"),
    port: int = typer.Option(8000, help="TCP port"),
    index_version: Optional[str] = typer.Option(None, "--index-version", help="index_ids version to serve (default: newest)"),
    threads: Optional[int] = typer.Option(None, help="torch intra-op threads (default: the CPUs this process may use)"),
    admin_token: Optional[str] = typer.Option(
        None, envvar="STREET2SHOP_ADMIN_TOKEN", help="require this X-Admin-Token for POST /admin/reload"
    ),
) -> None:
    """Serve photo search over the newest published index (API docs at /docs, page at /)."""
    import uvicorn

    from street2shop.service.app import create_app
    from street2shop.settings import get_settings
    from street2shop.storage.store import ArtifactNotFound

    if home is not None:
        os.environ["STREET2SHOP_HOME"] = str(home)
    try:
        api = create_app(get_settings().home, index_version, admin_token=admin_token, torch_threads=threads)
    except ArtifactNotFound as exc:
        raise typer.BadParameter(f"{exc} (run `street2shop demo` or the pipeline first)", param_hint="--home") from None
    typer.echo(f"serving index {api.state.served.engine.versions.index} on http://{host}:{port}/")
    # One worker process: the model and index live in this process's memory and the engine
    # serialises forward passes itself; more processes would each load their own copy.
    uvicorn.run(api, host=host, port=port, log_level="warning")
