"""README's promises: its test command is exactly what CI runs, and its CLI examples exist."""

from __future__ import annotations

import re
from pathlib import Path

from typer.testing import CliRunner

from street2shop.cli import app

ROOT = Path(__file__).resolve().parents[1]


def _bash_blocks(text: str) -> list[str]:
    return re.findall(r"```bash\n(.*?)```", text, flags=re.S)


def test_ci_runs_the_readme_test_command() -> None:
    readme = (ROOT / "README.md").read_text()
    setup = readme.split("## Set up", 1)[1].split("## ", 1)[0]
    blocks = _bash_blocks(setup)
    assert len(blocks) == 2, "README's set-up section keeps exactly two commands"
    demo, tests = (b.strip() for b in blocks)
    assert demo.endswith("street2shop demo")
    assert "pytest" in tests
    ci_lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert tests in ci_lines


def test_readme_cli_commands_exist() -> None:
    readme = (ROOT / "README.md").read_text()
    runner = CliRunner()
    used = set(re.findall(r"^street2shop ([a-z]+)", readme, flags=re.M))
    assert {"demo", "run", "sql", "versions", "shop"} <= used
    for command in sorted(used):
        result = runner.invoke(app, [command, "--help"])
        assert result.exit_code == 0, (command, result.output)


def test_layout_table_lists_every_source_folder_and_nothing_else() -> None:
    readme = (ROOT / "README.md").read_text()
    table = readme.split("## Layout", 1)[1].split("## ", 1)[0]
    listed = set(re.findall(r"^\| `([\w/]+)/` \|", table, flags=re.M))
    packages = {p.parent.relative_to(ROOT).as_posix() for p in ROOT.glob("*/__init__.py")}
    packages |= {p.parent.relative_to(ROOT).as_posix() for p in ROOT.glob("street2shop/*/__init__.py") if not p.parent.is_symlink()}
    assert packages <= listed, f"folders missing from README's Layout: {sorted(packages - listed)}"
    assert all((ROOT / folder).is_dir() for folder in listed), f"README lists folders that do not exist: {listed}"
