"""The artifact store on an S3 URL (a moto server on loopback stands in for S3).

Every test reads what one "machine" published through a second store with its own empty
mirror, as another machine would, so nothing passes by reading the writer's local copy.
"""

from __future__ import annotations

import socket
import uuid
from pathlib import Path

import pyarrow as pa
import pytest

from street2shop.storage.catalog import query
from street2shop.storage.remote import is_url, resolve_home
from street2shop.storage.store import MANIFEST, ArtifactNotFound, ArtifactRef, ArtifactStore


@pytest.fixture(scope="module")
def s3_endpoint():
    """A moto S3 server on a free loopback port, with dummy credentials in the environment."""
    moto_server = pytest.importorskip("moto.server")
    pytest.importorskip("s3fs")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
    }
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    with pytest.MonkeyPatch.context() as mp:
        for key, value in env.items():
            mp.setenv(key, value)
        yield env["AWS_ENDPOINT_URL"]
    server.stop()


@pytest.fixture
def url(s3_endpoint, tmp_path, monkeypatch) -> str:
    """A fresh bucket per test; mirrors go under the test's tmp folder."""
    import s3fs

    monkeypatch.setenv("STREET2SHOP_CACHE", str(tmp_path / "cache"))
    bucket = f"s2s-{uuid.uuid4().hex[:12]}"
    s3fs.S3FileSystem().mkdir(bucket)
    return f"s3://{bucket}/store"


def machine(url: str, tmp_path: Path, name: str) -> ArtifactStore:
    """A store on ``url`` as seen from one machine (its own mirror)."""
    return ArtifactStore(url, mirror=tmp_path / name)


def _splits(n: int = 3) -> pa.Table:
    return pa.table({"group_id": [f"g{i}" for i in range(n)], "split": ["train", "val", "test"][:n]})


def _publish(store: ArtifactStore, version: str, table: pa.Table, blob: bytes = b"weights") -> ArtifactRef:
    with store.publish("dedup", ["splits"], version, params={"seed": 0}) as w:
        w["splits"].write_table(table)
        w["splits"].path("model.bin").write_bytes(blob)
        w["splits"].metrics["pairs"] = 7
    return ArtifactRef(stage="dedup", name="splits", version=version)


def test_home_urls_and_paths_are_told_apart(tmp_path) -> None:
    assert is_url("s3://bucket/prefix") and is_url("memory://x")
    assert not is_url("relative/dir") and not is_url(Path("/abs")) and not is_url("file:///tmp/x")
    assert resolve_home("s3://bucket/prefix/") == "s3://bucket/prefix"
    assert resolve_home("S3://bucket") == "s3://bucket"
    assert resolve_home(f"file://{tmp_path}") == tmp_path.resolve()
    assert resolve_home(tmp_path / "a" / ".." / "b") == (tmp_path / "b").resolve()
    with pytest.raises(ValueError, match="names no bucket"):
        resolve_home("s3://")
    local = ArtifactStore(tmp_path)
    assert local.url is None and local.remote is None and local.home == tmp_path.resolve()


def test_published_version_is_read_on_another_machine(url, tmp_path) -> None:
    writer = machine(url, tmp_path, "a")
    ref = _publish(writer, "v1", _splits())
    assert writer.url == url and writer.location == url

    reader = machine(url, tmp_path, "b")
    assert not (reader.root).exists()  # nothing local yet: all of it comes from S3
    assert reader.exists(ref) and reader.latest("dedup", "splits") == ref
    assert reader.read_table(ref).to_pylist() == _splits().to_pylist()
    manifest = reader.manifest(ref)
    assert manifest.rows == 3 and manifest.metrics == {"pairs": 7} and manifest.files == ["model.bin", "part-0.parquet"]
    path = reader.file(ref, "model.bin")
    assert path.read_bytes() == b"weights" and path.is_relative_to(tmp_path / "b")
    assert (reader.version_dir(ref) / MANIFEST).exists()  # the mirror now holds the whole version
    with pytest.raises(ArtifactNotFound, match="no file 'missing.bin'"):
        reader.file(ref, "missing.bin")
    with pytest.raises(ArtifactNotFound):
        reader.read_table(ArtifactRef(stage="dedup", name="splits", version="nope"))


def test_latest_and_manifests_list_the_remote(url, tmp_path) -> None:
    a, b = machine(url, tmp_path, "a"), machine(url, tmp_path, "b")
    first = _publish(a, "v1", _splits(3))
    second = _publish(b, "v2", _splits(2))  # published by the other machine
    assert [m.version for m in a.manifests()] == ["v1", "v2"]
    assert [m.version for m in a.manifests("dedup", "splits")] == ["v1", "v2"]
    assert a.manifests("train") == []
    assert a.latest("dedup", "splits") == second
    assert a.read_table(first).num_rows == 3 and a.read_table(second).num_rows == 2
    with pytest.raises(ArtifactNotFound, match="run that stage first"):
        a.latest("train", "checkpoint")


def test_published_version_is_never_overwritten(url, tmp_path) -> None:
    a, b = machine(url, tmp_path, "a"), machine(url, tmp_path, "b")
    ref = _publish(a, "v1", _splits(3))
    created = a.manifest(ref).created_at
    _publish(b, "v1", _splits(1), blob=b"other")  # same id again, from another machine
    reader = machine(url, tmp_path, "c")
    assert reader.read_table(ref).num_rows == 3
    assert reader.file(ref, "model.bin").read_bytes() == b"weights"
    assert reader.manifest(ref).created_at == created
    # the machine that lost keeps the remote's copy in its mirror, not its own
    assert b.read_table(ref).num_rows == 3 and b.manifest(ref).created_at == created


def test_version_published_while_writing_wins_over_the_late_writer(url, tmp_path) -> None:
    late, early = machine(url, tmp_path, "late"), machine(url, tmp_path, "early")
    with late.publish("dedup", ["splits"], "v1") as w:
        w["splits"].write_table(_splits(1))
        _publish(early, "v1", _splits(3))  # commits while ``late`` is still writing
    assert late.read_table(ArtifactRef(stage="dedup", name="splits", version="v1")).num_rows == 3
    assert len(machine(url, tmp_path, "c").manifests()) == 1


def test_failed_write_uploads_nothing(url, tmp_path) -> None:
    store = machine(url, tmp_path, "a")
    with pytest.raises(RuntimeError):
        with store.publish("dedup", ["splits"], "v1") as w:
            w["splits"].write_table(_splits())
            raise RuntimeError("boom")
    assert store.remote.glob("artifacts/*/*/*") == []
    assert not store.exists(ArtifactRef(stage="dedup", name="splits", version="v1"))


def test_half_uploaded_version_is_invisible_and_cleaned(url, tmp_path) -> None:
    store = machine(url, tmp_path, "a")
    done = _publish(store, "v1", _splits())
    # A writer killed after uploading its files but before the manifest (the commit).
    store.remote.write("artifacts/dedup/splits/version=v2/part-0.parquet", b"half")
    store.remote.write("artifacts/dedup/splits/version=v2/model.bin", b"half")
    half = ArtifactRef(stage="dedup", name="splits", version="v2")
    reader = machine(url, tmp_path, "b")
    assert not reader.exists(half)
    assert [m.version for m in reader.manifests()] == ["v1"] and reader.latest("dedup", "splits") == done
    with pytest.raises(ArtifactNotFound):
        reader.read_table(half)
    with pytest.raises(ArtifactNotFound):
        reader.file(half, "model.bin")
    assert reader.clean_temporary() == 0  # too young: may be an upload still running elsewhere
    assert reader.clean_temporary(remote_grace_s=0) == 1
    assert reader.remote.glob("artifacts/dedup/splits/*") == ["artifacts/dedup/splits/version=v1"]
    assert reader.read_table(done).to_pylist() == _splits().to_pylist()
    # the stage re-runs and publishes the version for real
    _publish(store, "v2", _splits(2))
    assert machine(url, tmp_path, "c").read_table(half).num_rows == 2


def test_catalog_queries_a_remote_store(url, tmp_path) -> None:
    a = machine(url, tmp_path, "a")
    _publish(a, "v1", _splits(3))
    _publish(a, "v2", _splits(2))
    reader = machine(url, tmp_path, "b")
    rows = query(reader, "select version, count(*) as n from splits group by version order by version").to_pylist()
    assert rows == [{"version": "v1", "n": 3}, {"version": "v2", "n": 2}]
    assert query(reader, "select count(*) as n from latest_splits").to_pylist() == [{"n": 2}]
    assert query(reader, "select name, rows from versions order by version").to_pylist() == [
        {"name": "splits", "rows": 3},
        {"name": "splits", "rows": 2},
    ]
    # only the tables were fetched for DuckDB, not the other files of each version
    assert not list(reader.root.glob("*/*/version=*/model.bin"))


def test_blobs_go_to_the_remote_and_come_back(url, tmp_path) -> None:
    a, b = machine(url, tmp_path, "a").blobs, machine(url, tmp_path, "b").blobs
    stored = [a.put(bytes([i]) * 100, "png") for i in range(10)]
    sha, rel = stored[0]
    assert a.put(bytes([0]) * 100, "png") == (sha, rel)  # idempotent
    assert a.remote.exists(rel) and b.exists(sha, "png") and not b.exists("0" * 64)
    assert not (b.home / rel).exists()
    assert b.resolve(rel).read_bytes() == bytes([0]) * 100  # downloaded on first use
    paths = b.resolve_many([r for _, r in stored] + ["blobs/00/00/absent.jpg"])  # one listing for many
    assert [p.read_bytes() for p in paths[:-1]] == [bytes([i]) * 100 for i in range(10)]
    assert not paths[-1].exists()


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_harness")
def test_pipeline_runs_on_s3_and_another_machine_reuses_it(url, tmp_path, monkeypatch) -> None:
    from street2shop.flows.demo import TINY, demo_config, serving_demo_shop
    from street2shop.flows.pipeline import pipeline
    from street2shop.retrieval.index import load_index
    from street2shop.storage.names import INDEX_FILE
    from street2shop.storage.promotions import served_index

    with serving_demo_shop(tmp_path / "shop-home", TINY) as (shop_dir, shop_url):
        cfg = demo_config(shop_dir, shop_url, TINY, progress=False)
        monkeypatch.setenv("STREET2SHOP_CACHE", str(tmp_path / "machine-a"))
        first = pipeline(url, cfg)
        assert first.ran == ["crawl", "noise", "dedup", "views", "train[0]", "mine[1]", "train[1]", "localise", "evaluate", "index"]
        # Machine B: an empty mirror, the same store URL: every stage is found published.
        monkeypatch.setenv("STREET2SHOP_CACHE", str(tmp_path / "machine-b"))
        again = pipeline(url, cfg)
    assert again.ran == []
    # machine B found machine A's promotion in the store, not in its own (empty) mirror
    assert first.promotion["promoted"] and again.promotion["reason"] == "already served"
    reader = machine(url, tmp_path, "c")
    index_ref = reader.latest("index", "index_ids")
    assert index_ref.version == first.stage("index")["version"]
    assert served_index(reader) == index_ref
    assert load_index(reader.file(index_ref, INDEX_FILE)).ntotal == reader.manifest(index_ref).rows
    n_items = query(reader, "select count(*) as n from latest_items").to_pylist()[0]["n"]
    assert n_items >= TINY.products


def test_cli_takes_a_store_url_for_home(url, tmp_path) -> None:
    """`--home s3://...` reaches the store as a URL (a typer Path option would eat a slash)."""
    from typer.testing import CliRunner

    from street2shop.cli import app

    _publish(machine(url, tmp_path, "a"), "v1", _splits(3))
    runner = CliRunner()
    result = runner.invoke(app, ["sql", "select count(*) as n from latest_splits", "--home", url + "/"])
    assert result.exit_code == 0, result.output
    assert "3" in result.output
    result = runner.invoke(app, ["versions", "dedup", "--home", url])
    assert result.exit_code == 0 and "v1" in result.output


def test_promotions_are_shared_through_the_store(url, tmp_path) -> None:
    """A promotion decided on one machine is what a service on another machine serves."""
    from promotion_testing import publish_model
    from street2shop.storage.promotions import PromotionDecision, append_decision, promotion_log, served_index
    from street2shop.tasks.promote import promote

    a, b = machine(url, tmp_path, "a"), machine(url, tmp_path, "b")
    first = publish_model(a, 0.5, "x")
    assert served_index(b) is None
    decision = promote(a, first)
    assert decision.promoted
    assert served_index(b) == first  # B's mirror never held the record: it came from the store
    assert a.remote.exists(f"promotions/{(a.home / 'promotions').iterdir().__next__().name}")
    worse = publish_model(b, 0.25, "y")
    assert not promote(b, worse).promoted  # B compares with what A promoted
    assert [d.candidate for d in promotion_log(a)] == [first, worse] == [d.candidate for d in promotion_log(b)]
    # create-only on the remote too: a second record of the same instant and candidate is refused
    again = PromotionDecision.model_validate(decision.model_dump() | {"reason": "tampered"})
    with pytest.raises(FileExistsError):
        append_decision(machine(url, tmp_path, "c"), again)
    assert promotion_log(machine(url, tmp_path, "d"))[0].reason == decision.reason
