"""README's promises: its test command is exactly what CI runs, and its CLI examples exist."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
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
    assert "\n" not in tests, "the test command stays one line"
    # what pip cannot install (the browser tests' Chromium) is installed by the command itself,
    # before pytest, so a fresh machine runs the browser tests instead of skipping them
    assert tests.index("bash .ci/install-test-deps") < tests.index("pytest")
    assert "apt-get" not in (ROOT / ".ci" / "run").read_text(), ".ci/run installs nothing the README command does not"


def _installer(tmp_path: Path, uid: int, chromium: Path) -> tuple[subprocess.CompletedProcess, Path]:
    """Run .ci/install-test-deps with stand-ins for id and apt-get that record their calls."""
    bin_dir, log = tmp_path / "bin", tmp_path / "calls"
    bin_dir.mkdir()
    (bin_dir / "id").write_text(f"#!/bin/sh\necho {uid}\n")
    (bin_dir / "apt-get").write_text(f'#!/bin/sh\necho "apt-get $*" >> {log}\n')
    for tool in bin_dir.iterdir():
        tool.chmod(0o755)
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "CHROMIUM": str(chromium)}
    done = subprocess.run(["bash", str(ROOT / ".ci" / "install-test-deps")], env=env, capture_output=True, text=True, timeout=60)
    return done, log


def test_the_installer_installs_chromium_when_missing_and_root(tmp_path) -> None:
    done, log = _installer(tmp_path, 0, tmp_path / "no-chromium")
    assert done.returncode == 0, done.stderr
    assert log.read_text().splitlines() == ["apt-get update -qq", "apt-get install -y -qq chromium"]


def test_the_installer_leaves_a_present_chromium_alone_and_says_why_it_cannot_install(tmp_path) -> None:
    present = tmp_path / "chromium"
    present.write_text("#!/bin/sh\n")
    present.chmod(0o755)
    done, log = _installer(tmp_path, 0, present)
    assert done.returncode == 0 and not log.exists()
    (tmp_path / "user").mkdir()
    done, log = _installer(tmp_path / "user", 1000, tmp_path / "no-chromium")
    assert done.returncode == 0 and not log.exists()
    assert "not root" in done.stderr


def test_readme_cli_commands_exist() -> None:
    readme = (ROOT / "README.md").read_text()
    runner = CliRunner()
    # a command: at the start of a line (the code blocks) or in backticks, not the name in prose
    used = set(re.findall(r"(?:^|`)(?:PREFECT_API_URL=\S+ )?street2shop ([a-z]+(?: [a-z]+)?)", readme, flags=re.M))
    assert {"demo", "run", "sql", "versions", "serve", "status"} <= {u.split()[0] for u in used}
    for command in sorted(used):
        words = command.split()
        result = runner.invoke(app, [*words, "--help"])
        if result.exit_code != 0 and len(words) == 2:  # "street2shop sql select": the second word is an argument
            result = runner.invoke(app, [words[0], "--help"])
        assert result.exit_code == 0, (command, result.output)


def test_readme_stays_short() -> None:
    assert len((ROOT / "README.md").read_text().splitlines()) <= 250


@pytest.mark.parametrize("doc", ["README.md", *sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "docs").glob("*.md"))])
def test_every_relative_link_resolves(doc: str) -> None:
    """No dangling link or picture: every relative target exists (anchors are not checked)."""
    path = ROOT / doc
    targets = re.findall(r"\]\(([^)\s]+)\)", path.read_text())
    local = [t.split("#", 1)[0] for t in targets if "://" not in t and not t.startswith(("#", "mailto:"))]
    missing = [t for t in local if t and not (path.parent / t).exists()]
    assert not missing, f"{doc} links to files that do not exist: {missing}"


def test_layout_table_lists_every_source_folder_and_nothing_else() -> None:
    readme = (ROOT / "README.md").read_text()
    table = readme.split("## Layout", 1)[1].split("## ", 1)[0]
    listed = set(re.findall(r"^\| `([\w/]+)/` \|", table, flags=re.M))
    packages = {p.parent.relative_to(ROOT).as_posix() for p in ROOT.glob("*/__init__.py")}
    packages |= {p.parent.relative_to(ROOT).as_posix() for p in ROOT.glob("street2shop/*/__init__.py") if not p.parent.is_symlink()}
    assert packages <= listed, f"folders missing from README's Layout: {sorted(packages - listed)}"
    assert all((ROOT / folder).is_dir() for folder in listed), f"README lists folders that do not exist: {listed}"
