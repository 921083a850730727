"""The nightly crawl-and-retrain deployment, served from one machine.

``street2shop deploy --config pipeline.yaml --cron "0 2 * * *"`` registers the pipeline
(:func:`build_deployment`) as a Prefect deployment with that schedule and then runs it in
this process whenever the schedule (or a "Quick run" in the Prefect UI) asks: no work pool
or worker needed.
For a worker setup (docker-compose, several machines) ``prefect.yaml`` at the repository
root declares the same flow on a work pool instead.

The config file is read once, when the deployment is created: its content becomes the
deployment's parameters, visible and editable in the UI. Re-deploy after editing the
file. Every run is an ordinary pipeline run, so a stage already published for its
inputs is skipped, and re-running a failed nightly run redoes only what failed.
"""

from __future__ import annotations

from pathlib import Path

DEFAULT_NAME = "nightly"
DEFAULT_CRON = "0 2 * * *"


def build_deployment(config: Path, cron: str, home: Path | str, name: str = DEFAULT_NAME, timezone: str = "UTC"):
    """The pipeline as a :class:`prefect.deployments.runner.RunnerDeployment` on ``cron``."""
    from prefect.client.schemas.schedules import CronSchedule
    from prefect.schedules import Cron
    from pydantic import ValidationError

    from street2shop.flows.config import PipelineConfig
    from street2shop.flows.pipeline import pipeline
    from street2shop.storage.remote import resolve_home

    try:  # fail here, with the expression in the message, not when the server gets it
        CronSchedule(cron=cron, timezone=timezone)
    except ValidationError as exc:
        raise ValueError(f"invalid schedule {cron!r} ({timezone}): {exc.errors()[0]['msg']}") from exc
    cfg = PipelineConfig.from_file(config)
    return pipeline.to_deployment(
        name=name,
        schedule=Cron(cron, timezone=timezone),
        parameters={"home": str(resolve_home(home)), "cfg": cfg.model_dump(mode="json")},
        description=f"{f'crawl {cfg.crawl.base_url}' if cfg.crawl else f'read {cfg.source.path}'}, clean, retrain, evaluate, index, promote (config: {config})",
        tags=["street2shop", "scheduled"],
    )
