"""``street2shop serve``: run the search API and web page with uvicorn.

The order is what a user watching the terminal (or a health check) needs: check the host, the
port and that the store's folder exists (one-line errors, exit 2), bind the socket, say so, and
answer at once: the index, model and crawl are found and loaded in the background (many
seconds) while ``/health`` already answers ``warming`` (:mod:`street2shop.service.starting`).
A store without an index, or an unknown ``--inference-mode``, is then one line and exit 2.
"""

from __future__ import annotations

import errno
import socket
import sys
from typing import Optional

import typer

from street2shop.cli._common import HOME_HELP, existing_home
from street2shop.cli._errors import InputError, describe


def serve(
    home: Optional[str] = typer.Option(None, help=HOME_HELP),
    host: str = typer.Option("127.0.0.1", help="interface to listen on (0.0.0.0 exposes it to the network)"),
    port: int = typer.Option(8000, min=0, max=65535, help="TCP port (0: any free one, printed)"),
    public_url: Optional[str] = typer.Option(
        None, "--public-url", help="the URL clients reach the service at, for the absolute URLs in answers (default: from each request)"
    ),
    index_version: Optional[str] = typer.Option(None, "--index-version", help="index_ids version to serve (default: newest)"),
    threads: Optional[int] = typer.Option(None, min=1, help="torch intra-op threads (default: the CPUs this process may use)"),
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

    from street2shop.service.security import check_exposure
    from street2shop.service.starting import Starting

    try:
        check_exposure(host, admin_token)
    except ValueError as exc:
        raise InputError(f"--host {host}: {exc}") from None
    if public_url is not None and not public_url.startswith(("http://", "https://")):
        raise InputError(f"--public-url {public_url}: an http:// or https:// URL, e.g. https://shop.example/api")
    store_home = existing_home(home)
    listening = bind(host, port)
    options = {
        name: value
        for name, value in {
            "inference_mode": inference_mode, "batch_max": batch_max, "batch_wait_ms": batch_wait_ms, "streams": streams,
        }.items()
        if value is not None
    }
    failed: list[int] = []

    def build():
        from street2shop.storage.promotions import index_to_serve
        from street2shop.storage.store import ArtifactNotFound, ArtifactStore

        try:
            index = index_to_serve(ArtifactStore(store_home), index_version)
        except ArtifactNotFound as exc:
            raise InputError(f"--home {store_home}: {exc} (run `street2shop demo` or the pipeline first)") from None
        typer.echo(f"loading index {index.version} ...")
        from street2shop.service.app import create_app

        return create_app(store_home, index.version, admin_token=admin_token, torch_threads=threads, public_url=public_url, **options)

    def on_error(exc: BaseException) -> None:
        failed.append(report_load_error(exc, inference_mode))
        server.should_exit = True

    app = Starting(build, on_error)
    # One worker process: the model and index live in this process's memory and the engine
    # serialises forward passes itself; more processes would each load their own copy.
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    shown = f"[{host}]" if ":" in host else host
    typer.echo(f"serving on http://{shown}:{listening.getsockname()[1]}/ (/health answers 'warming' until the model is ready)")
    app.start()
    server.run(sockets=[listening])
    if failed:
        raise typer.Exit(failed[0])


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port``, or a one-line error naming what is wrong with them."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror as exc:
        raise InputError(f"--host {host}: not an address or a name this machine resolves ({exc.strerror})") from None
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        why = "is in use (another server is listening there): pick another --port" if exc.errno == errno.EADDRINUSE else exc.strerror
        raise InputError(f"--port {port} on {host}: {why}") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def report_load_error(exc: BaseException, inference_mode: str | None) -> int:
    """Print why the model or index could not be loaded, in one line; the exit code."""
    from street2shop.cli._errors import debugging

    if debugging():
        import traceback

        traceback.print_exception(exc)
    if isinstance(exc, InputError):
        message, code = exc.format_message(), exc.exit_code
    elif inference_mode is not None and isinstance(exc, (LookupError, ValueError)) and inference_mode in str(exc):
        message, code = f"--inference-mode {inference_mode}: {describe(exc)[0]}", 2
    else:
        message, code = describe(exc)
    print(f"error: {message}", file=sys.stderr, flush=True)
    return code


__all__ = ["bind", "serve"]
