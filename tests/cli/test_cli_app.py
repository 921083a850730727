"""The command line: `street2shop --help` (and tab completion) must not pay for torch."""

from __future__ import annotations

import subprocess
import sys


def test_importing_the_cli_loads_no_heavy_framework() -> None:
    # A fresh interpreter: this test process has long imported torch for other tests.
    code = (
        "import sys, street2shop.cli; "
        "print(','.join(sorted(m for m in ('torch', 'torchvision', 'timm', 'faiss', 'prefect', 'sklearn', 'scipy', "
        "'street2shop.shop.generator', 'fastapi', 'uvicorn', 'duckdb', 'PIL') if m in sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_version_and_a_bare_call() -> None:
    from importlib.metadata import version

    from cli_testing import street2shop

    ran = street2shop("--version")
    assert ran.exit_code == 0 and ran.stdout.strip() == f"street2shop {version('street2shop')}"
    bare = street2shop()
    assert bare.exit_code == 0 and "Commands:" in bare.output and "serve" in bare.output


def test_help_lists_every_command() -> None:
    from typer.testing import CliRunner

    from street2shop.cli import app

    result = CliRunner().invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("demo", "run", "sql", "versions", "serve", "report", "eval", "index", "status", "deploy", "shop", "labels"):
        assert command in result.output
