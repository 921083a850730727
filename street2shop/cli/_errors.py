"""The command line's error boundary: every failure is one line on stderr, never a traceback.

A command that meets bad input raises :class:`InputError` (or lets a library's error through);
:class:`Street2ShopApp` catches whatever reaches it and prints ``error: <what> ...`` in one line:

* bad input (an unknown option value, a file that is not what it should be, a SQL typo, a
  config that does not validate): exit code 2;
* anything else (a bug, a crash of a library): exit code 1, with a hint to run again with
  ``--debug``, which lets the traceback through.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any

import typer

# click's exceptions, or those of the copy of click that newer typers vendor (what typer raises)
_click = importlib.import_module(typer.BadParameter.__module__)

DEBUG_ENV = "STREET2SHOP_DEBUG"


class InputError(_click.ClickException):
    """Bad input a command found itself: one line, exit code 2."""

    exit_code = 2


def debugging() -> bool:
    return os.environ.get(DEBUG_ENV, "") not in ("", "0")


def _squash(text: object, first_only: bool = False) -> str:
    """One line: the non-empty lines of ``text`` joined by "; " (or the first), whitespace collapsed."""
    lines = [" ".join(line.split()) for line in str(text).splitlines() if line.strip()]
    return lines[0] if first_only and lines else "; ".join(lines)


def _validation(exc: Any) -> str:
    """A pydantic ValidationError as ``field: problem (got value)``, its first errors joined."""
    parts = []
    for err in exc.errors()[:3]:
        where = ".".join(str(p) for p in err["loc"]) or exc.title
        got = err.get("input")
        shown = "" if isinstance(got, dict) else f" (got {got!r:.60})"
        parts.append(f"{where}: {_squash(err['msg'])}{shown}")
    more = exc.error_count() - len(parts)
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")


def describe(exc: BaseException) -> tuple[str, int]:
    """(the one-line message, the exit code) for an exception that reached the command line."""
    from pydantic import ValidationError

    if isinstance(exc, ValidationError):
        return _validation(exc), 2
    module = type(exc).__module__.split(".")[0].lstrip("_")  # duckdb's errors live in _duckdb
    if module == "duckdb":
        return f"sql: {_squash(exc, first_only=True)} (tables: run `street2shop sql \"show tables\"`)", 2
    if module == "yaml":
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        return f"not valid YAML: {where}{_squash(getattr(exc, 'problem', None) or exc)}", 2
    if isinstance(exc, (FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError, FileExistsError)):
        target = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
        return f"{target}{_squash(exc.strerror or exc)}", 2
    if isinstance(exc, (ValueError, LookupError)) and not isinstance(exc, (KeyError, IndexError)):
        return _squash(exc), 2
    if type(exc).__module__.startswith("street2shop.") and not isinstance(exc, (KeyError, IndexError, AttributeError)):
        return f"{type(exc).__name__}: {_squash(exc)}", 1  # a failure the code names (a crawl refused, ...)
    return f"{type(exc).__name__}: {_squash(exc)} (an internal error; run `street2shop --debug ...` for the traceback)", 1


def report(exc: BaseException, code: int | None = None) -> int:
    message, exit_code = describe(exc)
    typer.echo(f"error: {message}", err=True)
    return exit_code if code is None else code


def _usage(exc: Any) -> str:
    message = _squash(exc.format_message())
    ctx = getattr(exc, "ctx", None)
    if isinstance(exc, _click.UsageError) and ctx is not None:
        message += f" (see `{ctx.command_path} --help`)"
    return message


class Street2ShopApp(typer.Typer):
    """A :class:`typer.Typer` whose call (the ``street2shop`` console script) answers every
    failure in one line (see the module docstring)."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        kwargs["standalone_mode"] = False
        try:
            code = typer.main.get_command(self)(*args, **kwargs)
        except _click.NoArgsIsHelpError as exc:  # a bare `street2shop`: its help
            typer.echo(exc.format_message())
            sys.exit(0)
        except _click.ClickException as exc:
            if debugging() and isinstance(exc, InputError) and exc.__context__ is not None:
                raise exc from exc.__context__  # the cause's traceback, then the one line
            typer.echo(f"error: {_usage(exc)}", err=True)
            sys.exit(exc.exit_code)
        except typer.Abort:
            typer.echo("aborted", err=True)
            sys.exit(1)
        except Exception as exc:  # noqa: BLE001 (the boundary: everything becomes one line)
            if debugging():
                raise
            sys.exit(report(exc))
        sys.exit(code if isinstance(code, int) else 0)


__all__ = ["DEBUG_ENV", "InputError", "Street2ShopApp", "debugging", "describe"]
