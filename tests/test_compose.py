"""docker-compose.yml, checked without a Docker engine: services, volume, health checks, commands.

Docker does not run on the CI machines. ``docker compose config -q`` validates the file
without an engine when the client has the compose plugin; the rest parses the file and
checks every service's command against the real ``street2shop`` and ``prefect`` CLIs.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import typer
import yaml

REPO = Path(__file__).resolve().parents[1]
SERVICES = {"postgres", "prefect-server", "shop", "worker", "api"}
APP_SERVICES = {"shop", "worker", "api"}  # built from this repository, sharing the artifact store


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((REPO / "docker-compose.yml").read_text())


def commands_of(service: dict) -> list[list[str]]:
    """The programs a service runs: its command, or each one of an ``sh -c`` chain."""
    command = service.get("command")
    if command is None:
        return []
    argv = shlex.split(command) if isinstance(command, str) else list(command)
    if argv[:2] == ["sh", "-c"]:
        chain = shlex.split(argv[2])
        runs, current = [], []
        for token in chain + ["&&"]:
            if token in ("&&", "||", ";"):
                runs.append(current)
                current = []
            else:
                current.append(token)
        return [r for r in runs if r and r[0] != "test"]  # `test -f` is the shell's own
    return [argv]


def test_services_volume_and_health_checks(compose) -> None:
    services = compose["services"]
    assert SERVICES <= set(services)
    assert "artifacts" in compose["volumes"]
    for name in APP_SERVICES:
        assert "artifacts:/data" in services[name]["volumes"], name
        assert services[name]["environment"]["STREET2SHOP_HOME"] == "/data"
        assert services[name]["environment"]["PREFECT_API_URL"] == "http://prefect-server:4200/api"
    for name in SERVICES:
        assert services[name]["healthcheck"]["test"], f"{name} has no health check"
    # the server keeps its state in PostgreSQL and starts after it is healthy
    server = services["prefect-server"]
    assert server["environment"]["PREFECT_API_DATABASE_CONNECTION_URL"].startswith("postgresql+asyncpg://")
    assert server["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert "4200:4200" in server["ports"]  # the UI
    assert services["worker"]["depends_on"]["prefect-server"]["condition"] == "service_healthy"
    # every dependency names a service of the file
    for name, service in services.items():
        assert set(service.get("depends_on", {})) <= set(services), name


def test_worker_polls_the_pool_prefect_yaml_deploys_to(compose) -> None:
    spec = yaml.safe_load((REPO / "prefect.yaml").read_text())
    pools = {d["work_pool"]["name"] for d in spec["deployments"]}
    [worker] = commands_of(compose["services"]["worker"])
    assert worker[worker.index("--pool") + 1] in pools
    params = spec["deployments"][0]["parameters"]
    assert params["home"] == "/data"
    assert params["cfg"]["crawl"]["base_url"] == "http://shop:8000"


def test_street2shop_commands_exist_with_those_options(compose) -> None:
    from street2shop.cli import app

    root = typer.main.get_command(app)
    checked = 0
    for name, service in compose["services"].items():
        for argv in commands_of(service):
            if argv[0] != "street2shop":
                continue
            cmd, rest = root, argv[1:]
            while hasattr(cmd, "commands"):  # a group (typer groups are not click.Group here)
                assert rest and rest[0] in cmd.commands, f"{name}: `{' '.join(argv)}` is not a street2shop command"
                cmd, rest = cmd.commands[rest[0]], rest[1:]
            options = {opt for p in cmd.params for opt in p.opts}
            for token in rest:
                if token.startswith("--"):
                    assert token.split("=")[0] in options, f"{name}: {argv[:3]} has no option {token}"
            checked += 1
    assert checked >= 3  # shop-init, shop, api


@pytest.mark.slow
def test_prefect_commands_exist_with_those_options(compose) -> None:
    """Each distinct ``prefect`` command's --help lists the options the file uses (one process each)."""
    wanted: dict[tuple[str, ...], set[str]] = {}
    for service in compose["services"].values():
        for argv in commands_of(service):
            if argv[0] != "prefect":
                continue
            root_flags = [t for t in argv[1:3] if t.startswith("--")]  # e.g. `prefect --no-prompt deploy`
            words = tuple(t for t in argv[1 + len(root_flags):] if not t.startswith("-"))[:2]
            words = tuple(w for w in words if w.replace("-", "").isalpha())
            opts = {t for t in argv[1 + len(root_flags):] if t.startswith("--")}
            wanted.setdefault(words, set()).update(opts)
            wanted.setdefault((), set()).update(root_flags)
    assert ("worker", "start") in wanted and ("server", "start") in wanted
    prefect = str(Path(sys.executable).with_name("prefect"))
    procs = {w: subprocess.Popen([prefect, *w, "--help"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for w in wanted}
    for words, proc in procs.items():
        out, _ = proc.communicate(timeout=120)
        assert proc.returncode == 0, f"`prefect {' '.join(words)}` is not a prefect command:\n{out}"
        for opt in wanted[words]:
            assert opt in out, f"`prefect {' '.join(words)}` has no option {opt}"


def test_docker_compose_config_validates() -> None:
    docker = shutil.which("docker")
    probe = subprocess.run([docker, "compose", "version"], capture_output=True, text=True) if docker else None
    if probe is None or probe.returncode != 0:
        pytest.skip("the docker compose plugin is not installed here; the checks above parse the file instead")
    done = subprocess.run([docker, "compose", "-f", str(REPO / "docker-compose.yml"), "config", "-q"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
