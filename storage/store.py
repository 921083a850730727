"""The versioned artifact store: the only place that knows where artifacts live.

Layout under ``<home>/artifacts``::

    <stage>/<name>/version=<id>/part-0.parquet     tabular data (optional)
    <stage>/<name>/version=<id>/<file>             checkpoints, indexes, reports
    <stage>/<name>/version=<id>/_manifest.json     lineage, params, rows, metrics

Rules the rest of the code relies on:

* A version id is derived, never invented: ``version_id(stage, code_version, inputs,
  params)`` hashes what determines the output, so re-running a stage with the same
  inputs finds its published output and skips the work. Stages whose input is the live
  world (the crawl) derive it from the content they produced instead.
* A version is written to a temporary folder and renamed into place when complete, so a
  half-written version is never visible; a published version is never changed.
* "Latest" is derived from the manifests (newest ``created_at``), not stored.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.ipc
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict

from street2shop.storage.schemas import SCHEMAS

MANIFEST = "_manifest.json"
_TMP_PREFIX = ".tmp-"


class SchemaError(ValueError):
    """A table does not match its artifact's schema."""


class ArtifactNotFound(LookupError):
    """No published version matches the request."""


class ArtifactRef(BaseModel):
    """A small, serialisable pointer to one published artifact version.

    Tasks pass these between each other instead of DataFrames or tensors.
    """

    model_config = ConfigDict(frozen=True)

    stage: str
    name: str
    version: str

    def __str__(self) -> str:  # e.g. "crawl/items@3f2a..."
        return f"{self.stage}/{self.name}@{self.version}"


class Manifest(BaseModel):
    stage: str
    name: str
    version: str
    inputs: list[ArtifactRef] = []
    params: dict[str, Any] = {}
    code_version: str = ""
    rows: int | None = None
    files: list[str] = []
    created_at: str
    duration_s: float | None = None
    metrics: dict[str, Any] = {}

    @property
    def ref(self) -> ArtifactRef:
        return ArtifactRef(stage=self.stage, name=self.name, version=self.version)


def _canonical(obj: Any) -> Any:
    if isinstance(obj, BaseModel):
        return _canonical(obj.model_dump(mode="json"))
    if isinstance(obj, Mapping):
        return {str(k): _canonical(v) for k, v in sorted(obj.items(), key=lambda kv: str(kv[0]))}
    if isinstance(obj, (list, tuple)):
        return [_canonical(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    return obj


def version_id(
    stage: str,
    code_version: str,
    inputs: Sequence[ArtifactRef] | Mapping[str, ArtifactRef] = (),
    params: Any = None,
) -> str:
    """Deterministic id from what determines a stage's output."""
    if isinstance(inputs, Mapping):
        inputs = [inputs[k] for k in sorted(inputs)]
    payload = {
        "stage": stage,
        "code": code_version,
        "inputs": [str(r) for r in inputs],
        "params": _canonical(params),
    }
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def content_version(tables: Mapping[str, pa.Table], extra: Any = None) -> str:
    """Version id from the content itself (for stages whose input is the live world)."""
    h = hashlib.sha256()
    for name in sorted(tables):
        sink = io.BytesIO()
        table = tables[name]
        with pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
        h.update(name.encode())
        h.update(sink.getvalue())
    if extra is not None:
        h.update(json.dumps(_canonical(extra), sort_keys=True, default=str).encode())
    return h.hexdigest()[:16]


def conform(table: pa.Table, schema: pa.Schema, what: str = "table") -> pa.Table:
    """Check ``table`` against ``schema``: same columns, castable types, no null keys.

    Returns the table cast to the schema's column order and types.
    """
    have, want = set(table.column_names), set(schema.names)
    if have != want:
        missing, extra = sorted(want - have), sorted(have - want)
        raise SchemaError(f"{what}: columns differ from schema (missing {missing}, unexpected {extra})")
    cols = []
    for fld in schema:
        col = table.column(fld.name)
        if not col.type.equals(fld.type):
            try:
                col = col.cast(fld.type)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                raise SchemaError(f"{what}: column {fld.name!r} is {col.type}, expected {fld.type}: {exc}") from exc
        if not fld.nullable and col.null_count:
            raise SchemaError(f"{what}: column {fld.name!r} has {col.null_count} null value(s) but is required")
        cols.append(col)
    return pa.Table.from_arrays(cols, schema=schema)


@dataclass
class VersionWriter:
    """What a stage sees while writing one artifact version (inside a temp folder)."""

    store: "ArtifactStore"
    stage: str
    name: str
    version: str
    dir: Path
    metrics: dict[str, Any] = field(default_factory=dict)
    rows: int | None = None

    def write_table(self, table: pa.Table, schema: pa.Schema | None = None) -> None:
        schema = schema if schema is not None else SCHEMAS.get(self.name)
        if schema is None:
            raise SchemaError(f"no schema registered for artifact {self.name!r}; pass one explicitly")
        table = conform(table, schema, what=f"{self.stage}/{self.name}")
        pq.write_table(table, self.dir / "part-0.parquet", compression="zstd")
        self.rows = table.num_rows

    def path(self, filename: str) -> Path:
        """Where to write an extra file (checkpoint, index, report) of this version."""
        if "/" in filename or filename.startswith(".") or filename == MANIFEST:
            raise ValueError(f"invalid artifact file name {filename!r}")
        return self.dir / filename


class ArtifactStore:
    """Versioned artifacts on the local file system under ``home``."""

    def __init__(self, home: str | Path):
        self.home = Path(home).expanduser().resolve()
        self.root = self.home / "artifacts"

    # ---- paths (the only code that knows them) ----
    def version_dir(self, ref: ArtifactRef) -> Path:
        return self.root / ref.stage / ref.name / f"version={ref.version}"

    def work_dir(self, stage: str, key: str) -> Path:
        """A private scratch folder for a stage run (e.g. resumable training state).

        Not an artifact: nothing reads it but the stage that owns ``key``, which lets a
        killed run resume; the published version is what the rest of the system sees.
        """
        path = self.home / "work" / stage / key
        path.mkdir(parents=True, exist_ok=True)
        return path

    def file(self, ref: ArtifactRef, filename: str) -> Path:
        path = self.version_dir(ref) / filename
        if not path.exists():
            raise ArtifactNotFound(f"{ref} has no file {filename!r}")
        return path

    # ---- queries ----
    def exists(self, ref: ArtifactRef) -> bool:
        return (self.version_dir(ref) / MANIFEST).exists()

    def manifest(self, ref: ArtifactRef) -> Manifest:
        path = self.version_dir(ref) / MANIFEST
        if not path.exists():
            raise ArtifactNotFound(f"no published version {ref}")
        return Manifest.model_validate_json(path.read_text())

    def manifests(self, stage: str | None = None, name: str | None = None) -> list[Manifest]:
        """Every published manifest (optionally of one stage / artifact), oldest first."""
        if not self.root.exists():
            return []
        pattern = f"{stage or '*'}/{name or '*'}/version=*/{MANIFEST}"
        found = [Manifest.model_validate_json(p.read_text()) for p in self.root.glob(pattern)]
        return sorted(found, key=lambda m: (m.created_at, m.stage, m.name, m.version))

    def latest(self, stage: str, name: str) -> ArtifactRef:
        found = self.manifests(stage, name)
        if not found:
            raise ArtifactNotFound(f"no published version of {stage}/{name}: run that stage first")
        return found[-1].ref

    def latest_or_none(self, stage: str, name: str) -> ArtifactRef | None:
        try:
            return self.latest(stage, name)
        except ArtifactNotFound:
            return None

    def read_table(self, ref: ArtifactRef, columns: list[str] | None = None) -> pa.Table:
        vdir = self.version_dir(ref)
        parts = sorted(vdir.glob("part-*.parquet"))
        if not self.exists(ref) or not parts:
            raise ArtifactNotFound(f"{ref} has no table")
        return pa.concat_tables([pq.read_table(p, columns=columns) for p in parts])

    # ---- writing ----
    @contextmanager
    def publish(
        self,
        stage: str,
        names: Sequence[str],
        version: str,
        *,
        inputs: Sequence[ArtifactRef] | Mapping[str, ArtifactRef] = (),
        params: Any = None,
        code_version: str = "",
    ) -> Iterator[dict[str, VersionWriter]]:
        """Write one version of several artifacts of a stage, then publish them.

        Everything is written under temporary folders; on success each is renamed into
        place. A version that already exists is left untouched (same id = same content),
        so publishing is idempotent and never overwrites. On error nothing is published.
        """
        if isinstance(inputs, Mapping):
            inputs = [inputs[k] for k in sorted(inputs)]
        started = time.perf_counter()
        writers: dict[str, VersionWriter] = {}
        for name in names:
            parent = self.root / stage / name
            parent.mkdir(parents=True, exist_ok=True)
            tmp = parent / f"{_TMP_PREFIX}{version}-{uuid.uuid4().hex[:8]}"
            tmp.mkdir()
            writers[name] = VersionWriter(self, stage, name, version, tmp)
        try:
            yield writers
            duration = time.perf_counter() - started
            created = datetime.now(timezone.utc).isoformat(timespec="microseconds")
            for name, w in writers.items():
                manifest = Manifest(
                    stage=stage,
                    name=name,
                    version=version,
                    inputs=list(inputs),
                    params=_canonical(params) if params is not None else {},
                    code_version=code_version,
                    rows=w.rows,
                    files=sorted(p.name for p in w.dir.iterdir()),
                    created_at=created,
                    duration_s=round(duration, 3),
                    metrics=_canonical(w.metrics),
                )
                with open(w.dir / MANIFEST, "w") as fh:
                    fh.write(manifest.model_dump_json(indent=2))
                    fh.flush()
                    os.fsync(fh.fileno())
            for name, w in writers.items():
                final = self.version_dir(ArtifactRef(stage=stage, name=name, version=version))
                try:
                    os.rename(w.dir, final)
                except OSError:
                    if not (final / MANIFEST).exists():
                        raise
                    shutil.rmtree(w.dir, ignore_errors=True)  # published meanwhile: keep it
        finally:
            for w in writers.values():
                if w.dir.exists():
                    shutil.rmtree(w.dir, ignore_errors=True)

    def clean_temporary(self) -> int:
        """Remove temp folders left by killed writers (never visible as versions)."""
        n = 0
        if self.root.exists():
            for tmp in self.root.glob(f"*/*/{_TMP_PREFIX}*"):
                shutil.rmtree(tmp, ignore_errors=True)
                n += 1
        return n
