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
* The manifest records the sha256 of every file of the version; a file is checked against it
  the first time this process uses it (``file``, ``read_table``, ``version_dir``), so a
  damaged or edited file raises :class:`CorruptArtifact` naming it instead of being used
  (``street2shop verify`` checks every version; :mod:`street2shop.storage.verify`).
* One pipeline at a time writes to a store: :meth:`ArtifactStore.lock` (an ``flock`` under
  ``<home>/locks``; on a remote store it guards this machine's mirror only).

``home`` may also be an fsspec URL (``s3://bucket/prefix``): the same layout then lives
there, with a local mirror that versions are written in and read from (see
:mod:`street2shop.storage.remote`), so every reader still gets local paths.
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
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.ipc
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict

from street2shop.storage.faults import fault_point
from street2shop.storage.locks import StoreLock
from street2shop.storage.remote import Remote, default_mirror, resolve_home
from street2shop.storage.schemas import SCHEMAS

if TYPE_CHECKING:
    from street2shop.storage.blobs import BlobStore

MANIFEST = "_manifest.json"
_TMP_PREFIX = ".tmp-"
#: A version folder on a remote store without a manifest this old (seconds) was left by a
#: killed upload; younger ones may still be uploading from another machine.
REMOTE_GRACE_S = 3600.0


class SchemaError(ValueError):
    """A table does not match its artifact's schema."""


class ArtifactNotFound(LookupError):
    """No published version matches the request."""


class CorruptArtifact(ValueError):
    """A published file no longer matches the sha256 its manifest recorded (damaged or edited)."""


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


#: Files already checked in this process: (path, size, mtime_ns) -> their sha256. A version
#: never changes, so a file is hashed once per process, not on every read.
_checked: dict[tuple[str, int, int], str] = {}


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

    def sibling(self, name: str) -> ArtifactRef:
        """The artifact ``name`` the same stage published in the same version."""
        return ArtifactRef(stage=self.stage, name=name, version=self.version)


class ArtifactRefs(BaseModel):
    """A stage's inputs as named references (subclasses name them); part of its version."""

    def as_inputs(self) -> dict[str, ArtifactRef]:
        """The references given, by field name, in field order (what ``run_stage`` records)."""
        return {n: v for n in type(self).model_fields if (v := getattr(self, n)) is not None}


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
    #: sha256 of each file in ``files``, recorded at publish (empty in versions published
    #: before checksums were recorded: those are used unchecked, and ``verify`` says so)
    sha256: dict[str, str] = {}

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


def _not_published(exc: OSError, what: str, root: Path) -> OSError:
    """``exc`` (same errno) saying which version it stopped and that nothing of it is visible."""
    return OSError(exc.errno, f"{exc.strerror or exc} while publishing {what} under {root}: nothing of it was published")


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
        try:
            fault_point(self.stage, "table", self.version)
            pq.write_table(table, self.dir / "part-0.parquet", compression="zstd")
        except OSError as exc:  # a full disk, most likely: say what was not published
            raise _not_published(exc, f"{self.stage}/{self.name}@{self.version}", self.store.root) from exc
        self.rows = table.num_rows

    def path(self, filename: str) -> Path:
        """Where to write an extra file (checkpoint, index, report) of this version."""
        if "/" in filename or filename.startswith(".") or filename == MANIFEST:
            raise ValueError(f"invalid artifact file name {filename!r}")
        return self.dir / filename


def _made_from(manifest: Manifest, wanted: ArtifactRef | tuple[str, str] | None) -> bool:
    if wanted is None:
        return True
    if isinstance(wanted, ArtifactRef):
        return wanted in manifest.inputs
    name, version = wanted
    return any(r.name == name and r.version == version for r in manifest.inputs)


class ArtifactStore:
    """Versioned artifacts under ``home``: a local folder, or an fsspec URL with a local mirror.

    For a URL, ``home`` (and ``root``) is the local mirror and ``url`` the remote store;
    for a folder, ``url`` is None. ``mirror`` overrides where the mirror lives and
    ``storage_options`` are passed to fsspec (e.g. ``{"endpoint_url": ...}``).
    """

    def __init__(self, home: str | Path, *, mirror: str | Path | None = None, storage_options: dict[str, Any] | None = None):
        location = resolve_home(home)
        self.remote: Remote | None = None
        self.url: str | None = None
        if isinstance(location, str):
            self.remote = Remote(location, storage_options)
            self.url = location
            location = Path(mirror).expanduser().resolve() if mirror is not None else default_mirror(location)
        self.home = location
        self.root = self.home / "artifacts"
        self._manifests: dict[str, Manifest] = {}  # remote manifests read so far (immutable)

    def __repr__(self) -> str:
        return f"ArtifactStore({self.url or str(self.home)!r})"

    @property
    def location(self) -> str:
        """Where the artifacts really are: the URL of a remote store, else the folder."""
        return self.url or str(self.home)

    @property
    def blobs(self) -> "BlobStore":
        """The image blob store that goes with this store (remote-backed for a URL)."""
        from street2shop.storage.blobs import BlobStore

        return BlobStore(self.home, remote=self.remote)

    # ---- paths (the only code that knows them) ----
    @staticmethod
    def _key(ref: ArtifactRef) -> str:
        return f"artifacts/{ref.stage}/{ref.name}/version={ref.version}"

    def version_dir(self, ref: ArtifactRef) -> Path:
        """The folder of a version; for a remote store, a published version is first
        downloaded into the mirror, so the folder's files can be read."""
        if self.remote is not None and self.remote_exists(ref):
            self._fetch(ref)
        vdir = self._local_dir(ref)
        if (vdir / MANIFEST).exists():
            manifest = self.manifest(ref)
            for name in manifest.sha256:
                self._check(ref, manifest, vdir / name)
        return vdir

    def _local_dir(self, ref: ArtifactRef) -> Path:
        return self.root / ref.stage / ref.name / f"version={ref.version}"

    def work_dir(self, stage: str, key: str) -> Path:
        """A private scratch folder for a stage run (e.g. resumable training state).

        Not an artifact: nothing reads it but the stage that owns ``key``, which lets a
        killed run resume; the published version is what the rest of the system sees.
        """
        path = self.home / "work" / stage / key
        path.mkdir(parents=True, exist_ok=True)
        return path

    def remove_work_dir(self, stage: str, key: str) -> None:
        """Drop a stage run's scratch folder once its version is published (nothing reads it)."""
        shutil.rmtree(self.home / "work" / stage / key, ignore_errors=True)

    def file(self, ref: ArtifactRef, filename: str) -> Path:
        if self.remote is not None:
            if filename not in self.manifest(ref).files:
                raise ArtifactNotFound(f"{ref} has no file {filename!r}")
            self._fetch(ref)
        path = self._local_dir(ref) / filename
        if not path.exists():
            raise ArtifactNotFound(f"{ref} has no file {filename!r}")
        self._check(ref, self.manifest(ref), path)
        return path

    def _check(self, ref: ArtifactRef, manifest: Manifest, path: Path) -> None:
        """Raise :class:`CorruptArtifact` if ``path`` differs from the sha256 its manifest
        recorded (once per process per file; unrecorded files pass)."""
        want = manifest.sha256.get(path.name)
        if want is None:
            return
        try:
            st = path.stat()
        except FileNotFoundError:
            raise CorruptArtifact(f"{ref}: {path.name} is missing from {path.parent} although its manifest lists it") from None
        key = (str(path), st.st_size, st.st_mtime_ns)
        if _checked.get(key) == want:
            return
        found = file_sha256(path)
        if found != want:
            raise CorruptArtifact(
                f"{ref}: {path.name} does not match the sha256 recorded when it was published "
                f"(recorded {want[:16]}..., found {found[:16]}...): the file at {path} was damaged or "
                f"changed, so it is not used. `street2shop verify` lists every damaged file; remove "
                f"{path.parent} and re-run the {ref.stage} stage to publish it again."
            )
        _checked[key] = found

    # ---- queries ----
    def exists(self, ref: ArtifactRef) -> bool:
        if (self._local_dir(ref) / MANIFEST).exists():
            return True
        return self.remote is not None and self.remote_exists(ref)

    def remote_exists(self, ref: ArtifactRef) -> bool:
        """Whether the remote store has published ``ref`` (its manifest is there)."""
        assert self.remote is not None
        key = f"{self._key(ref)}/{MANIFEST}"
        return key in self._manifests or self.remote.exists(key)

    def manifest(self, ref: ArtifactRef) -> Manifest:
        path = self._local_dir(ref) / MANIFEST
        if path.exists():
            return Manifest.model_validate_json(path.read_text())
        if self.remote is not None:
            key = f"{self._key(ref)}/{MANIFEST}"
            if key not in self._manifests and self.remote.exists(key):
                self._manifests[key] = Manifest.model_validate_json(self.remote.cat([key])[key])
            if key in self._manifests:
                return self._manifests[key]
        raise ArtifactNotFound(f"no published version {ref}")

    def manifests(self, stage: str | None = None, name: str | None = None) -> list[Manifest]:
        """Every published manifest (optionally of one stage / artifact), oldest first."""
        pattern = f"{stage or '*'}/{name or '*'}/version=*/{MANIFEST}"
        if self.remote is not None:
            found = self._remote_manifests(f"artifacts/{pattern}")
        elif not self.root.exists():
            return []
        else:
            found = [Manifest.model_validate_json(p.read_text()) for p in self.root.glob(pattern)]
        return sorted(found, key=lambda m: (m.created_at, m.stage, m.name, m.version))

    def _remote_manifests(self, pattern: str) -> list[Manifest]:
        assert self.remote is not None
        keys = self.remote.glob(pattern)
        unknown = []
        for key in keys:
            if key not in self._manifests:
                local = self.home / key
                if local.exists():  # a version already in the mirror
                    self._manifests[key] = Manifest.model_validate_json(local.read_text())
                else:
                    unknown.append(key)
        for key, data in self.remote.cat(unknown).items():
            self._manifests[key] = Manifest.model_validate_json(data)
        return [self._manifests[k] for k in keys]

    def latest(self, stage: str, name: str) -> ArtifactRef:
        found = self.manifests(stage, name)
        if not found:
            raise ArtifactNotFound(f"no published version of {stage}/{name}: run that stage first")
        return found[-1].ref

    def newest(
        self,
        stage: str | Sequence[str],
        name: str,
        *,
        with_input: ArtifactRef | tuple[str, str] | None = None,
        nonempty: bool = False,
        missing: str | None = None,
    ) -> ArtifactRef | None:
        """The newest published ``name`` of ``stage`` (or of any of several stages) that
        matches: made from ``with_input`` (a ref, or ``(name, version)`` of any stage), with
        rows when ``nonempty``. None when nothing matches, or :class:`ArtifactNotFound` with
        the message ``missing`` when one is given."""
        stages = (stage,) if isinstance(stage, str) else tuple(stage)
        found = [m for s in stages for m in self.manifests(s, name) if (not nonempty or (m.rows or 0) > 0) and _made_from(m, with_input)]
        if found:
            return max(found, key=lambda m: m.created_at).ref
        if missing is not None:
            raise ArtifactNotFound(missing)
        return None

    def latest_or_none(self, stage: str, name: str) -> ArtifactRef | None:
        try:
            return self.latest(stage, name)
        except ArtifactNotFound:
            return None

    def read_table(self, ref: ArtifactRef, columns: list[str] | None = None) -> pa.Table:
        vdir = self._local_dir(ref)
        if self.remote is not None and self.exists(ref):
            self._fetch(ref, tables_only=True)
        parts = sorted(vdir.glob("part-*.parquet"))
        if not self.exists(ref) or not parts:
            raise ArtifactNotFound(f"{ref} has no table")
        manifest = self.manifest(ref)
        for part in parts:
            self._check(ref, manifest, part)
        return pa.concat_tables([pq.read_table(p, columns=columns) for p in parts])

    # ---- writing ----
    def lock(self, name: str = "pipeline", *, timeout_s: float | None = None) -> StoreLock:
        """An exclusive, process-reentrant lock on this store (``with store.lock(): ...``):
        another process taking it waits until it is released, or the holder dies."""
        return StoreLock(self.home / "locks" / f"{name}.lock", timeout_s=timeout_s)

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
        On a remote store, the files are uploaded and then the manifest (the commit), and
        the folder becomes the mirror's copy of the version.
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
            try:
                self._write_manifests(writers, inputs, params, code_version, started)
            except OSError as exc:  # a full disk, most likely: say what was not published
                raise _not_published(exc, f"{stage}/{','.join(names)}@{version}", self.root) from exc
            fault_point(stage, "written", version)
            committed = writers
            if self.remote is not None:
                # A version published meanwhile by another writer is the remote's copy:
                # the mirror must hold that one, so ours is dropped (in ``finally``).
                committed = {name: w for name, w in writers.items() if self._upload(w)}
            for name, w in committed.items():
                final = self._local_dir(ArtifactRef(stage=stage, name=name, version=version))
                if self.remote is not None and final.exists() and not (final / MANIFEST).exists():
                    shutil.rmtree(final)  # a partial download in the mirror: ours is complete
                try:
                    os.rename(w.dir, final)
                except OSError:
                    if not (final / MANIFEST).exists():
                        raise
                    shutil.rmtree(w.dir, ignore_errors=True)  # published meanwhile: keep it
                fault_point(stage, "renamed", version)
        finally:
            for w in writers.values():
                if w.dir.exists():
                    shutil.rmtree(w.dir, ignore_errors=True)

    @staticmethod
    def _write_manifests(
        writers: Mapping[str, VersionWriter], inputs: Sequence[ArtifactRef], params: Any, code_version: str, started: float
    ) -> None:
        duration = time.perf_counter() - started
        created = datetime.now(timezone.utc).isoformat(timespec="microseconds")
        for w in writers.values():
            files = sorted(p.name for p in w.dir.iterdir())
            manifest = Manifest(
                stage=w.stage,
                name=w.name,
                version=w.version,
                inputs=list(inputs),
                params=_canonical(params) if params is not None else {},
                code_version=code_version,
                rows=w.rows,
                files=files,
                created_at=created,
                duration_s=round(duration, 3),
                metrics=_canonical(w.metrics),
                sha256={f: file_sha256(w.dir / f) for f in files if (w.dir / f).is_file()},
            )
            with open(w.dir / MANIFEST, "w") as fh:
                fh.write(manifest.model_dump_json(indent=2))
                fh.flush()
                os.fsync(fh.fileno())

    def clean_temporary(self, remote_grace_s: float = REMOTE_GRACE_S) -> int:
        """Remove temp folders left by killed writers (never visible as versions).

        On a remote store also the half-uploaded versions (files but no manifest) whose
        newest file is older than ``remote_grace_s``: younger ones may be uploads still
        running on another machine.
        """
        n = 0
        if self.root.exists():
            for tmp in self.root.glob(f"*/*/{_TMP_PREFIX}*"):
                shutil.rmtree(tmp, ignore_errors=True)
                n += 1
        if self.remote is not None:
            n += self._clean_remote(remote_grace_s)
        return n

    # ---- the remote side ----
    def _upload(self, w: VersionWriter) -> bool:
        """Upload a written version: its files, then its manifest (the commit).

        False if the version was already published (same id, same content): it is kept.
        """
        assert self.remote is not None
        key = self._key(ArtifactRef(stage=w.stage, name=w.name, version=w.version))
        if self.remote.exists(f"{key}/{MANIFEST}"):
            return False
        files = sorted(p for p in w.dir.iterdir() if p.name != MANIFEST)
        self.remote.upload((p, f"{key}/{p.name}") for p in files)
        return self.remote.create(f"{key}/{MANIFEST}", (w.dir / MANIFEST).read_bytes())

    def _fetch(self, ref: ArtifactRef, tables_only: bool = False) -> None:
        """Download a published version into the mirror (its tables only, if asked).

        The manifest is written last, so a mirror folder with a manifest is complete.
        """
        assert self.remote is not None
        vdir = self._local_dir(ref)
        if (vdir / MANIFEST).exists():
            return
        manifest = self.manifest(ref)
        wanted = [f for f in manifest.files if f != MANIFEST and (not tables_only or f.startswith("part-"))]
        key = self._key(ref)
        self.remote.download((f"{key}/{f}", vdir / f) for f in wanted if not (vdir / f).exists())
        if not tables_only:
            vdir.mkdir(parents=True, exist_ok=True)
            tmp = vdir / f"{_TMP_PREFIX}{MANIFEST}"
            tmp.write_text(manifest.model_dump_json(indent=2))
            os.replace(tmp, vdir / MANIFEST)

    def sync_tables(self) -> int:
        """Download the tables (Parquet parts) of every published version not yet in the
        mirror, so DuckDB can read them there; returns how many versions were fetched."""
        if self.remote is None:
            return 0
        n = 0
        for m in self.manifests():
            vdir = self._local_dir(m.ref)
            if m.rows is not None and not all((vdir / f).exists() for f in m.files if f.startswith("part-")):
                self._fetch(m.ref, tables_only=True)
                n += 1
        return n

    def _clean_remote(self, grace_s: float) -> int:
        assert self.remote is not None
        published = {k.rsplit("/", 1)[0] for k in self.remote.glob(f"artifacts/*/*/version=*/{MANIFEST}")}
        n = 0
        for folder in {k.rsplit("/", 1)[0] for k in self.remote.glob("artifacts/*/*/version=*/*")} - published:
            modified = self.remote.modified(folder)
            if modified is None or time.time() - modified >= grace_s:
                self.remote.remove_prefix(folder)
                n += 1
        return n


def images_with_paths(store: ArtifactStore, ref: ArtifactRef) -> pa.Table:
    """The ``images`` table with ``path`` resolved to absolute local paths for the cores."""
    table = store.read_table(ref)
    # one batch: a store on S3 downloads the photos its mirror lacks together
    paths = pa.array([str(p) for p in store.blobs.resolve_many(table.column("path").to_pylist())], pa.string())
    return table.set_column(table.schema.get_field_index("path"), "path", paths)
