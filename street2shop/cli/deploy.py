"""``street2shop deploy``: serve the nightly crawl-and-retrain deployment from this process."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from street2shop.cli._common import HOME_HELP
from street2shop.flows.deploy import DEFAULT_CRON, DEFAULT_NAME  # light: flows.deploy imports Prefect lazily


def deploy(
    config: Path = typer.Option(..., exists=True, dir_okay=False, help="pipeline config (YAML), e.g. the demo's demo-config.yaml"),
    cron: str = typer.Option(DEFAULT_CRON, help="when to run, cron syntax (default: every night at 02:00)"),
    home: Optional[str] = typer.Option(None, help=HOME_HELP),
    name: str = typer.Option(DEFAULT_NAME, help="deployment name shown in the Prefect UI"),
    timezone: str = typer.Option("UTC", help="time zone of the cron schedule"),
) -> None:
    """Serve the scheduled crawl-and-retrain pipeline from this process (Ctrl-C stops it)."""
    from prefect import serve

    from street2shop.flows.deploy import build_deployment
    from street2shop.settings import store_home

    try:
        deployment = build_deployment(config, cron, store_home(home), name, timezone)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    serve(deployment)
