"""The house rule on size, read from the source: no function (or method) in the service, the
tasks or the flows runs over 80 lines, so each stays readable in one screen."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FOLDERS = ("service", "tasks", "flows")
MAX_LINES = 80


def long_functions(path: Path, most: int = MAX_LINES) -> list[str]:
    """``file:line name (N lines)`` for each function of ``path`` longer than ``most`` lines,
    decorators and docstring included; a nested function counts inside its parent too."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            first = min([node.lineno] + [d.lineno for d in node.decorator_list])
            lines = node.end_lineno - first + 1
            if lines > most:
                found.append(f"{path.relative_to(REPO) if path.is_relative_to(REPO) else path}:{first} {node.name} ({lines} lines)")
    return found


def test_no_function_in_service_tasks_or_flows_is_over_80_lines():
    paths = [p for folder in FOLDERS for p in sorted((REPO / folder).rglob("*.py"))]
    assert len(paths) > 30
    assert [f for p in paths for f in long_functions(p)] == []


def test_the_counter_sees_a_long_function(tmp_path):
    body = "\n".join(f"    x{i} = {i}" for i in range(80))
    source = tmp_path / "long.py"
    source.write_text(f"import functools\n\n\n@functools.cache\ndef long():\n{body}\n\n\ndef short():\n    return 1\n")
    assert long_functions(source) == [f"{source}:4 long (82 lines)"]
    assert long_functions(source, most=82) == []
