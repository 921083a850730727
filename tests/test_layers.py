"""The house rules, read from the source: every import points down the layers, and only the
CLI knows typer.

Layers, bottom to top (a module may import its own layer and those below)::

    storage, street2shop.registry, street2shop.settings      the ground floor
    models, cleaning, retrieval, crawler, shop, sources      pure cores
    tasks                                                    thin Prefect tasks
    flows                                                    flows, the pipeline, deployments
    service                                                  the API
    street2shop.cli                                          the commands
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

#: source folder -> its layer (street2shop/ itself holds the leaves and the cli package)
LAYERS = {
    "storage": 0, "registry": 0, "settings": 0, "__init__": 0,
    "models": 1, "cleaning": 1, "retrieval": 1, "crawler": 1, "shop": 1, "sources": 1,
    "tasks": 2, "flows": 3, "service": 4, "cli": 5,
}  # fmt: skip
FOLDERS = ("storage", "models", "cleaning", "retrieval", "crawler", "shop", "sources", "tasks", "flows", "service", "street2shop")


def _modules() -> list[tuple[Path, str]]:
    """Every package source file with the layer name it belongs to."""
    found = []
    for folder in FOLDERS:
        for path in sorted((REPO / folder).rglob("*.py")):
            rel = path.relative_to(REPO)
            if folder == "street2shop":
                part = rel.parts[1]
                name = "cli" if part == "cli" else Path(part).stem
            else:
                name = folder
            found.append((rel, name))
    return found


def _imports(path: Path) -> list[tuple[int, str]]:
    """``(line, module)`` of every import in the file, function-level ones included."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append((node.lineno, node.module))
    return out


def _layer_of(module: str) -> tuple[str, int] | None:
    """The layer an imported ``street2shop.*`` module lives in (None: not ours)."""
    parts = module.split(".")
    if parts[0] != "street2shop":
        return None
    name = parts[1] if len(parts) > 1 else "__init__"
    return name, LAYERS[name]


MODULES = _modules()


def test_every_source_folder_is_walked():
    assert len(MODULES) > 80
    assert {name for _, name in MODULES} == set(LAYERS)


@pytest.mark.parametrize(("path", "layer"), MODULES, ids=[str(p) for p, _ in MODULES])
def test_imports_point_down_the_layers(path: Path, layer: str):
    upward = [
        f"{path}:{line} imports {module} ({target}, layer {rank}) from {layer} (layer {LAYERS[layer]})"
        for line, module in _imports(REPO / path)
        if (found := _layer_of(module)) is not None
        for target, rank in [found]
        if rank > LAYERS[layer]
    ]
    assert not upward, "\n".join(upward)


def test_only_the_cli_imports_typer():
    offenders = [
        f"{path}:{line}"
        for path, layer in MODULES
        if layer != "cli"
        for line, module in _imports(REPO / path)
        if module.split(".")[0] == "typer"
    ]
    assert not offenders, f"typer imported outside street2shop/cli/: {offenders}"


def test_the_walker_sees_an_upward_import(tmp_path):
    """The check itself can fail: a core importing a task is caught."""
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from street2shop.tasks.stage import run_stage\n")
    assert [_layer_of(m) for _, m in _imports(bad)] == [("tasks", 2)]


#: what the service may not import: the orchestration that builds what it serves
NOT_IN_SERVICE = ("tasks", "flows")


def test_the_service_imports_neither_tasks_nor_flows_nor_prefect():
    offenders = [
        f"{path}:{line} imports {module}"
        for path, layer in MODULES
        if layer == "service"
        for line, module in _imports(REPO / path)
        if (found := _layer_of(module)) is not None and found[0] in NOT_IN_SERVICE or module.split(".")[0] == "prefect"
    ]
    assert not offenders, "\n".join(offenders)


def test_the_api_process_never_imports_prefect():
    """Importing the app (and the engines it loads) pulls in no Prefect, directly or not."""
    import subprocess
    import sys

    code = (
        "import sys; import street2shop.service.app, street2shop.service.outfit_engine, street2shop.service.look_engine; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'prefect' or m.startswith(('street2shop.tasks', 'street2shop.flows'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.strip() == "[]", out.stdout


CORES = ("models", "cleaning", "retrieval")


def test_the_cores_import_each_other_at_the_top_of_the_module():
    """No import of one core inside a function (what hid a cycle between them): each core
    module's imports of street2shop.models/cleaning/retrieval sit at module level."""
    hidden = []
    for path, layer in MODULES:
        if layer not in CORES:
            continue
        tree = ast.parse((REPO / path).read_text())
        top = {id(node) for node in tree.body}
        hidden += [
            f"{path}:{node.lineno} imports {node.module} inside a function"
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and node.module and id(node) not in top
            and (found := _layer_of(node.module)) is not None and found[0] in CORES
        ]
    assert not hidden, "\n".join(hidden)
