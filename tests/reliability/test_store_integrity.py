"""The store's own defences: a checksum for every published file (a damaged one is refused,
naming it, never used), ``street2shop verify``, a full disk during a publish, the lock that
keeps two runs apart, and the fault-injection hook the kill tests drive."""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

import street2shop.storage.store as store_module
from street2shop.cli import app as cli
from street2shop.service.app import create_app
from street2shop.storage import faults
from street2shop.storage.locks import LockTimeout, StoreLock
from street2shop.storage.names import CHECKPOINT_FILE, INDEX_FILE
from street2shop.storage.store import MANIFEST, ArtifactStore, CorruptArtifact, file_sha256
from street2shop.storage.verify import CORRUPT, OK, UNCHECKED, verify_store


def splits(n: int = 4) -> pa.Table:
    return pa.table({"group_id": [f"g{i}" for i in range(n)], "split": ["train"] * n})


def publish_splits(store: ArtifactStore, version: str = "v1", extra: bytes | None = None):
    with store.publish("dedup", ["splits"], version) as w:
        w["splits"].write_table(splits())
        if extra is not None:
            w["splits"].path("notes.bin").write_bytes(extra)
    return store.latest("dedup", "splits")


@pytest.fixture
def tiny_copy(tiny_home, tmp_path) -> Path:
    """A private copy of the tiny published store (crawl, checkpoint, embeddings, index)."""
    home = tmp_path / "home"
    shutil.copytree(tiny_home, home)
    return home


def folder(home: Path, ref) -> Path:
    """A version's folder, found without the store (which would check it)."""
    return home / "artifacts" / ref.stage / ref.name / f"version={ref.version}"


def flip_byte(path: Path, at: float = 0.5) -> None:
    data = bytearray(path.read_bytes())
    i = int(len(data) * at)
    data[i] ^= 0xFF
    path.write_bytes(bytes(data))


# ---- checksums ---------------------------------------------------------------------------


def test_publish_records_the_sha256_of_every_file(tmp_path) -> None:
    store = ArtifactStore(tmp_path)
    ref = publish_splits(store, extra=b"\x00" * 10)
    m = store.manifest(ref)
    vdir = store.version_dir(ref)
    assert sorted(m.sha256) == sorted(m.files) == ["notes.bin", "part-0.parquet"]
    assert all(m.sha256[f] == file_sha256(vdir / f) for f in m.files)


def test_a_rerun_with_nothing_changed_still_publishes_nothing_new(tmp_path) -> None:
    """Checksums are recorded beside the version id, not part of it."""
    store = ArtifactStore(tmp_path)
    publish_splits(store)
    manifest = (store.root / "dedup" / "splits" / "version=v1" / MANIFEST).read_bytes()
    publish_splits(store)  # the same version again: left untouched
    assert len(store.manifests()) == 1
    assert (store.root / "dedup" / "splits" / "version=v1" / MANIFEST).read_bytes() == manifest


@pytest.mark.parametrize("damage", ["truncated", "flipped byte", "replaced", "deleted"])
def test_a_damaged_table_is_refused_naming_the_file(tmp_path, damage) -> None:
    store = ArtifactStore(tmp_path)
    ref = publish_splits(store)
    part = store.version_dir(ref) / "part-0.parquet"
    if damage == "truncated":
        part.write_bytes(part.read_bytes()[: part.stat().st_size // 2])
    elif damage == "flipped byte":
        flip_byte(part)
    elif damage == "replaced":
        import pyarrow.parquet as pq

        pq.write_table(splits(5), part)  # a valid Parquet file, other rows
    else:
        part.unlink()
    fresh = ArtifactStore(tmp_path)  # as a new process would: nothing checked yet
    store_module._checked.clear()
    if damage == "deleted":
        with pytest.raises(LookupError):
            fresh.read_table(ref)
        return
    with pytest.raises(CorruptArtifact, match=r"dedup/splits@v1: part-0\.parquet does not match the sha256") as err:
        fresh.read_table(ref)
    assert "street2shop verify" in str(err.value) and "re-run the dedup stage" in str(err.value)


@pytest.mark.parametrize("filename", [CHECKPOINT_FILE, INDEX_FILE])
def test_a_flipped_byte_in_the_checkpoint_or_index_stops_the_service_from_loading_it(tiny_copy, filename) -> None:
    store = ArtifactStore(tiny_copy)
    stage = "train" if filename == CHECKPOINT_FILE else "index"
    m = next(m for m in store.manifests(stage) if filename in m.files)
    flip_byte(store.version_dir(m.ref) / filename)
    store_module._checked.clear()
    with pytest.raises(CorruptArtifact, match=rf"{stage}/\w+@{m.version}: {filename.replace('.', '[.]')} does not match"):
        create_app(tiny_copy, street_in_background=False)


def test_a_file_is_hashed_once_per_process(tmp_path, monkeypatch) -> None:
    store = ArtifactStore(tmp_path)
    ref = publish_splits(store)
    store_module._checked.clear()
    hashed = []
    real = store_module.file_sha256
    monkeypatch.setattr(store_module, "file_sha256", lambda p: hashed.append(p.name) or real(p))
    for _ in range(5):
        store.read_table(ref)
    assert hashed == ["part-0.parquet"]


def test_versions_published_before_checksums_are_used_and_reported_unchecked(tmp_path) -> None:
    store = ArtifactStore(tmp_path)
    ref = publish_splits(store)
    path = store.version_dir(ref) / MANIFEST
    old = json.loads(path.read_text())
    del old["sha256"]
    path.write_text(json.dumps(old))
    store_module._checked.clear()
    assert store.read_table(ref).num_rows == 4
    [check] = verify_store(store)
    assert check.status == UNCHECKED and "no checksums recorded" in check.problems[0]


# ---- street2shop verify --------------------------------------------------------------------


def test_verify_checks_every_version_and_names_each_damaged_file(tiny_copy) -> None:
    runner = CliRunner()
    ok = runner.invoke(cli, ["verify", "--home", str(tiny_copy)])
    assert ok.exit_code == 0, ok.output
    n = len(ArtifactStore(tiny_copy).manifests())
    assert f"({n} artifacts)" in ok.output and f"{n} ok" in ok.output and "0 damaged" in ok.output

    store = ArtifactStore(tiny_copy)
    index = store.latest("index", "index_ids")
    flip_byte(folder(tiny_copy, index) / INDEX_FILE)
    images = store.latest("crawl", "images")
    part = folder(tiny_copy, images) / "part-0.parquet"
    part.write_bytes(part.read_bytes()[:100])
    (folder(tiny_copy, images) / "stray.txt").write_text("added later")
    bad = runner.invoke(cli, ["verify", "--home", str(tiny_copy)])
    assert bad.exit_code == 1, bad.output
    out = " ".join(bad.output.split())
    assert f"index/index_ids@{index.version}: index.faiss: sha256" in out
    assert f"crawl/images@{images.version}: part-0.parquet: sha256" in out
    assert "stray.txt: not in the manifest" in out
    assert f"{n - 2} ok" in out and "2 damaged" in out
    statuses = {c.ref: c.status for c in verify_store(store)}
    assert statuses[index] == statuses[images] == CORRUPT and list(statuses.values()).count(OK) == n - 2


# ---- a full disk during a publish -----------------------------------------------------------


@pytest.mark.parametrize("point", ["table", "manifest"])
def test_a_full_disk_during_a_publish_publishes_nothing_and_says_what(tmp_path, monkeypatch, point) -> None:
    store = ArtifactStore(tmp_path)
    if point == "table":
        monkeypatch.setenv(faults.FAULTS_ENV, "dedup:table=enospc")
    else:  # the manifest's write fails
        real_open = open

        def full_disk_open(path, mode="r", *args, **kwargs):
            if str(path).endswith(MANIFEST) and "w" in mode:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return real_open(path, mode, *args, **kwargs)

        monkeypatch.setattr("builtins.open", full_disk_open)
    with pytest.raises(OSError) as err:
        publish_splits(store)
    monkeypatch.undo()
    assert err.value.errno == errno.ENOSPC
    assert "No space left on device" in str(err.value) and "while publishing dedup/splits@v1" in str(err.value)
    assert "nothing of it was published" in str(err.value)
    assert store.manifests() == [] and not list(store.root.glob("*/*/*"))  # no version, no temp folder
    publish_splits(store)  # space again: the same publish goes through
    assert [m.version for m in store.manifests()] == ["v1"]


# ---- the lock ---------------------------------------------------------------------------


#: a holder in a process of its own, importing only the lock (so it starts in a fraction of a second)
HOLDER = """
import sys, time
from pathlib import Path
from street2shop.storage.locks import StoreLock
path, seconds = Path(sys.argv[1]), float(sys.argv[2])
with StoreLock(path):
    print("ready", flush=True)
    time.sleep(seconds)
    path.with_suffix(".done").write_text("the holder's last act under the lock")
"""


def hold(path: Path, seconds: float) -> subprocess.Popen:
    """A process that holds the lock at ``path`` for ``seconds``, once it has said so."""
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(path), str(seconds)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "ready"
    return holder


def test_the_lock_keeps_a_second_process_out_until_the_first_lets_go(tmp_path) -> None:
    path = tmp_path / "locks" / "pipeline.lock"
    holder = hold(path, 2.0)
    with pytest.raises(LockTimeout, match=rf"still held .* by pid {holder.pid}"):
        with StoreLock(path, timeout_s=0.5):
            pass
    with StoreLock(path):  # waits for the holder to finish
        assert path.with_suffix(".done").exists()
    assert holder.wait(30) == 0


def test_a_killed_holder_leaves_no_stale_lock(tmp_path) -> None:
    path = tmp_path / "locks" / "pipeline.lock"
    holder = hold(path, 600.0)
    holder.kill()
    holder.wait(30)
    with StoreLock(path, timeout_s=30):
        pass
    assert not path.with_suffix(".done").exists()


def test_the_lock_is_reentrant_within_a_process(tmp_path) -> None:
    store = ArtifactStore(tmp_path)
    with store.lock(), store.lock(timeout_s=0.1):
        pass
    with store.lock(timeout_s=0.1):
        pass


# ---- the fault hook -------------------------------------------------------------------------


def test_fault_specs_parse_and_typos_are_refused() -> None:
    parsed = faults.parse_faults("train@abc:compute#2=kill, *:table=enospc")
    assert parsed == (faults.Fault("train", "abc", "compute", 2, "kill"), faults.Fault("*", None, "table", None, "enospc"))
    for bad in ["train:comptue=kill", "train:compute=explode", "train:compute#x=kill", ":compute=kill"]:
        with pytest.raises(ValueError, match="STREET2SHOP_FAULTS"):
            faults.parse_faults(bad)


def test_a_fault_fires_at_its_point_version_and_occurrence_only(tmp_path, monkeypatch) -> None:
    trace = tmp_path / "trace"
    monkeypatch.setenv(faults.FAULTS_ENV, "train@v2:computed#2=raise")
    monkeypatch.setenv(faults.TRACE_ENV, str(trace))
    monkeypatch.setattr(faults, "_reached", faults.Counter())
    faults.fault_point("train", "computed", "v1")
    faults.fault_point("train", "computed", "v2")  # 1st time for v2
    with pytest.raises(faults.InjectedFault, match="train@v2:computed#2"):
        faults.fault_point("train", "computed", "v2")
    lines = [line.split()[:4] for line in trace.read_text().splitlines()]
    assert lines == [["train", "v1", "computed", "1"], ["train", "v2", "computed", "1"], ["train", "v2", "computed", "2"]]


def test_without_the_variables_a_fault_point_does_nothing(monkeypatch) -> None:
    monkeypatch.delenv(faults.FAULTS_ENV, raising=False)
    monkeypatch.delenv(faults.TRACE_ENV, raising=False)
    reached = faults.Counter()
    monkeypatch.setattr(faults, "_reached", reached)
    faults.fault_point("train", "compute", "v1")
    assert not reached


def test_search_still_works_on_a_store_verified_clean(tiny_copy) -> None:
    """The lazy checks on the service's load path pass on an intact store."""
    store_module._checked.clear()
    app = create_app(tiny_copy, street_in_background=False)
    with TestClient(app) as client:
        assert client.get("/health").json()["vectors"] > 0
    assert np.all([v for v in store_module._checked.values()])
