"""``street2shop status`` and ``street2shop report`` (street2shop.cli.store), and the status
data they print (street2shop.storage.status)."""

from __future__ import annotations

import pytest
import typer
from typer.testing import CliRunner

from promotion_testing import publish_model
from street2shop.cli.store import report, status
from street2shop.storage.status import collect_status
from street2shop.storage.store import ArtifactStore
from street2shop.tasks.promote import promote


@pytest.fixture
def store(tmp_path) -> ArtifactStore:
    return ArtifactStore(tmp_path)


def test_status_shows_latest_versions_and_what_is_served(store) -> None:
    first = publish_model(store, 0.5, "a")
    promote(store, first)
    second = publish_model(store, 0.25, "b")
    promote(store, second)
    report = collect_status(store)
    assert [s.stage for s in report.stages] == ["evaluate", "index"]
    index = report.stages[1]
    assert (index.version, index.versions, index.figures) == (second.version, 2, {"factory": "Flat", "vectors": 10})
    assert report.stages[0].figures == {"trained_top20": 0.25, "trained_top1": 0.125}
    assert report.last_published == str(second)
    assert report.served.candidate == first and report.last_decision.candidate == second

    app = typer.Typer()
    app.command()(status)
    out = CliRunner().invoke(app, ["--home", str(store.home)], terminal_width=200)
    assert out.exit_code == 0, out.output
    assert f"served: index {first.version} (served_top20 = 0.5000)" in out.output
    assert f"last decision: index {second.version} not promoted" in out.output


def test_status_of_an_empty_store(tmp_path) -> None:
    app = typer.Typer()
    app.command()(status)
    out = CliRunner().invoke(app, ["--home", str(tmp_path)])
    assert out.exit_code == 0 and "no published versions" in out.output


def test_report_command_without_an_evaluated_version(tmp_path):
    app = typer.Typer()
    app.command("report")(report)
    app.callback()(lambda: None)
    cli = CliRunner().invoke(app, ["report", "--home", str(tmp_path), "--out", str(tmp_path / "r.html")])
    assert cli.exit_code == 2 and "run the evaluate stage first" in cli.output
