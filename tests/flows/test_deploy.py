"""The scheduled deployment, as built for ``flow.serve``, and ``prefect.yaml`` for a worker setup."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer
import yaml
from typer.testing import CliRunner

from street2shop.crawler.core import CrawlParams
from street2shop.flows.config import PipelineConfig
from street2shop.cli.deploy import deploy
from street2shop.flows.deploy import build_deployment

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def config(tmp_path) -> tuple[Path, PipelineConfig]:
    cfg = PipelineConfig(crawl=CrawlParams(base_url="http://shop.example:8000", concurrency=2), labels_path="/data/labels.csv", rounds=2)
    path = tmp_path / "pipeline.yaml"
    cfg.to_file(path)
    return path, cfg


def test_deployment_has_the_schedule_and_the_config_as_parameters(config, tmp_path) -> None:
    path, cfg = config
    dep = build_deployment(path, "30 3 * * 1-5", tmp_path / "home", name="weekdays", timezone="Europe/Berlin")
    assert dep.name == "weekdays" and dep.flow_name == "street2shop"
    [schedule] = dep.schedules
    assert (schedule.schedule.cron, schedule.schedule.timezone) == ("30 3 * * 1-5", "Europe/Berlin")
    assert dep.parameters["home"] == str((tmp_path / "home").resolve())
    # what the scheduler will pass validates back into the very same config
    from street2shop.flows.pipeline import pipeline

    validated = pipeline.validate_parameters(dep.parameters)
    assert validated["cfg"] == cfg


def test_invalid_cron_is_rejected_before_anything_is_served(config, tmp_path, monkeypatch) -> None:
    path, _ = config
    with pytest.raises(ValueError, match=r"invalid schedule '61 2 \* \* \*'"):
        build_deployment(path, "61 2 * * *", tmp_path)
    served = []
    monkeypatch.setattr("prefect.serve", lambda *deployments: served.extend(deployments))
    app = typer.Typer()
    app.command()(deploy)
    bad = CliRunner().invoke(app, ["--config", str(path), "--cron", "every night", "--home", str(tmp_path)])
    assert bad.exit_code != 0 and "invalid schedule" in bad.output
    ok = CliRunner().invoke(app, ["--config", str(path), "--home", str(tmp_path)])
    assert ok.exit_code == 0, ok.output
    [dep] = served
    assert dep.schedules[0].schedule.cron == "0 2 * * *"


def test_prefect_yaml_names_a_real_entrypoint_with_valid_parameters() -> None:
    from prefect.client.schemas.schedules import CronSchedule
    from prefect.flows import load_flow_from_entrypoint

    spec = yaml.safe_load((REPO / "prefect.yaml").read_text())
    [dep] = spec["deployments"]
    file, _, func = dep["entrypoint"].partition(":")
    assert (REPO / file).is_file()
    loaded = load_flow_from_entrypoint(str(REPO / file) + ":" + func)
    assert loaded.name == "street2shop"
    validated = loaded.validate_parameters(dep["parameters"])
    assert isinstance(validated["cfg"], PipelineConfig) and validated["cfg"].crawl.base_url == "http://shop:8000"
    assert dep["work_pool"]["name"] == "street2shop"
    for s in dep["schedules"]:
        CronSchedule(cron=s["cron"], timezone=s.get("timezone"))
