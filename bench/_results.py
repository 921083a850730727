"""How every benchmark hands its result over: one JSON line, to stdout or appended to a file."""

from __future__ import annotations

import json
from pathlib import Path


def emit(record: dict, out: str | Path | None = None) -> None:
    """Append ``record`` as one JSON line to ``out``, or print it when no file is given."""
    line = json.dumps(record, sort_keys=True)
    if out:
        with open(out, "a") as fh:
            fh.write(line + "\n")
    else:
        print(line)
