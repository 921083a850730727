"""``street2shop serve``: run the search API and web page with uvicorn."""

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
    # Defaults (None) mean the engine's own (service/engine.py), so they live in one place and
    # `--help` does not import torch to show them.
    inference_mode: Optional[str] = typer.Option(
        None, "--inference-mode", help="model inference backend, a models/fast.py mode (default: openvino, fp32; openvino_bf16 is faster on CPUs with AMX)"
    ),
    batch_max: Optional[int] = typer.Option(
        None, "--batch-max", min=1, help="most concurrent photos embedded in one forward pass; 1 = no batching (default: 16)"
    ),
    batch_wait_ms: Optional[float] = typer.Option(
        None, "--batch-wait-ms", min=0.0, help="how long an idle model waits to fill a batch (default: 2)"
    ),
    streams: Optional[int] = typer.Option(
        None, "--streams", min=1, help="forward passes at once, each on a share of the threads (OpenVINO modes; default: 1)"
    ),
    admin_token: Optional[str] = typer.Option(
        None, envvar="STREET2SHOP_ADMIN_TOKEN",
        help="require this X-Admin-Token for POST /admin/reload (required, 16+ characters, off loopback)",
    ),
) -> None:
    """Serve photo search over the newest published index (API docs at /docs, page at /)."""
    import uvicorn

    from street2shop.service.app import check_exposure, create_app
    from street2shop.settings import get_settings
    from street2shop.storage.store import ArtifactNotFound, CorruptArtifact

    try:
        check_exposure(host, admin_token)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--host") from None
    if home is not None:
        os.environ["STREET2SHOP_HOME"] = str(home)
    try:
        api = create_app(
            get_settings().home,
            index_version,
            admin_token=admin_token,
            torch_threads=threads,
            **{
                name: value
                for name, value in {
                    "inference_mode": inference_mode, "batch_max": batch_max, "batch_wait_ms": batch_wait_ms,
                    "streams": streams,
                }.items()
                if value is not None
            },
        )
    except ArtifactNotFound as exc:
        raise typer.BadParameter(f"{exc} (run `street2shop demo` or the pipeline first)", param_hint="--home") from None
    except CorruptArtifact as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"serving index {api.state.served.engine.versions.index} on http://{host}:{port}/")
    # One worker process: the model and index live in this process's memory and the engine
    # serialises forward passes itself; more processes would each load their own copy.
    uvicorn.run(api, host=host, port=port, log_level="warning")
