"""Run the ``street2shop`` command as its console script does (``app()``), in this process:
the exit code and what it printed, after the command line's error boundary
(``street2shop/cli/_errors.py``), which typer's ``CliRunner`` skips."""

from __future__ import annotations

import io
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass

from street2shop.cli import app


@dataclass
class Ran:
    exit_code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def street2shop(*args: str) -> Ran:
    out, err = io.StringIO(), io.StringIO()
    code = 0
    with redirect_stdout(out), redirect_stderr(err):
        try:
            app(list(args), prog_name="street2shop")
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return Ran(code, out.getvalue(), err.getvalue())
