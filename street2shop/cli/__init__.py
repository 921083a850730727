"""The ``street2shop`` command line: one module per command group, mounted here.

Only this package knows typer; every command imports the layers below it when it runs, so
``street2shop --help`` loads neither torch, scipy, the shop generator nor Prefect
(``tests/cli/test_cli_app.py`` checks). Every failure is one line (``_errors.py``).
"""

from __future__ import annotations

import os
from typing import Optional

import typer

# Before Prefect is imported (it is imported lazily, inside commands).
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
# Without a Prefect server configured, a run starts a temporary one; Prefect waits 20 s for it,
# which a busy 2-core machine (the nightly run beside a training job) can exceed.
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")

from street2shop.cli import byo, deploy, labels, pipeline, serve, shop, store  # noqa: E402
from street2shop.cli._errors import DEBUG_ENV, Street2ShopApp  # noqa: E402

app = Street2ShopApp(
    help="street2shop: crawl a shop, clean its data, train an embedder, evaluate, index, serve.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    # plain help (click's formatter): rich's panels cost a third of a second per `--help`
    rich_markup_mode=None,
)


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        typer.echo(f"street2shop {version('street2shop')}")
        raise typer.Exit(0)


@app.callback()
def _main(
    debug: bool = typer.Option(False, "--debug", help="show the full traceback of an error (also: STREET2SHOP_DEBUG=1)"),
    version: Optional[bool] = typer.Option(None, "--version", callback=_version, is_eager=True, help="print the version and exit"),
) -> None:
    if debug:
        os.environ[DEBUG_ENV] = "1"


app.command()(pipeline.demo)
app.command()(pipeline.run)
app.command()(store.sql)
app.command()(store.versions)
app.command()(store.status)
app.command()(store.report)
app.command()(store.verify)
app.command("eval")(byo.eval_command)
app.command("index")(byo.index_command)
app.command()(serve.serve)
app.command()(deploy.deploy)
app.add_typer(labels.labels_app, name="labels", help="Export photos to label next; import labelled ones.")
app.add_typer(shop.shop_app, name="shop", help="Generate or serve the demo shop.")

if __name__ == "__main__":
    app()
