"""The artifact store: derived versions, atomic publish, never overwrite, schemas, catalog."""

from __future__ import annotations

import pyarrow as pa
import pytest

from street2shop.storage.catalog import query
from street2shop.storage.store import (
    ArtifactNotFound,
    ArtifactRef,
    ArtifactStore,
    SchemaError,
    content_version,
    version_id,
)


def _splits(n: int = 3) -> pa.Table:
    return pa.table({"group_id": [f"g{i}" for i in range(n)], "split": ["train", "val", "test"][:n]})


def test_version_id_depends_on_inputs_params_and_code() -> None:
    a = ArtifactRef(stage="crawl", name="items", version="abc")
    base = version_id("dedup", "1", [a], {"t": 4})
    assert base == version_id("dedup", "1", [a], {"t": 4})
    assert base != version_id("dedup", "2", [a], {"t": 4})
    assert base != version_id("dedup", "1", [a], {"t": 5})
    assert base != version_id("dedup", "1", [ArtifactRef(stage="crawl", name="items", version="abd")], {"t": 4})
    # key order of params does not matter
    assert version_id("s", "1", [], {"a": 1, "b": 2}) == version_id("s", "1", [], {"b": 2, "a": 1})


def test_content_version_is_the_content() -> None:
    assert content_version({"splits": _splits()}) == content_version({"splits": _splits()})
    assert content_version({"splits": _splits()}) != content_version({"splits": _splits(2)})


def test_publish_read_and_latest(tmp_path) -> None:
    store = ArtifactStore(tmp_path)
    with store.publish("dedup", ["splits"], "v1", params={"seed": 1}) as w:
        w["splits"].write_table(_splits())
        w["splits"].metrics["n"] = 3
    ref = ArtifactRef(stage="dedup", name="splits", version="v1")
    assert store.exists(ref)
    assert store.read_table(ref).num_rows == 3
    m = store.manifest(ref)
    assert m.rows == 3 and m.params == {"seed": 1} and m.metrics == {"n": 3}
    with store.publish("dedup", ["splits"], "v2") as w:
        w["splits"].write_table(_splits(2))
    assert store.latest("dedup", "splits").version == "v2"


def test_newest_matches_stages_inputs_and_rows(tmp_path) -> None:
    store = ArtifactStore(tmp_path)
    a = ArtifactRef(stage="crawl", name="splits", version="a")
    b = ArtifactRef(stage="source", name="splits", version="b")
    for ref, n in ((a, 3), (b, 0)):
        with store.publish(ref.stage, ["splits"], ref.version) as w:
            w["splits"].write_table(_splits(n))
    with store.publish("dedup", ["splits"], "d1", inputs={"x": a}) as w:
        w["splits"].write_table(_splits())
    with store.publish("dedup", ["splits"], "d2", inputs={"x": b}) as w:
        w["splits"].write_table(_splits())
    assert store.newest(("crawl", "source"), "splits") == b  # the newer of the two stages
    assert store.newest(("crawl", "source"), "splits", nonempty=True) == a  # b has no rows
    assert store.newest("dedup", "splits", with_input=a).version == "d1"
    assert store.newest("dedup", "splits", with_input=("splits", "b")).version == "d2"
    assert store.newest("dedup", "splits", with_input=a.sibling("items")) is None
    with pytest.raises(ArtifactNotFound, match="run dedup on it first"):
        store.newest("dedup", "splits", with_input=a.sibling("items"), missing="run dedup on it first")


def test_failed_write_publishes_nothing(tmp_path) -> None:
    store = ArtifactStore(tmp_path)
    with pytest.raises(RuntimeError):
        with store.publish("dedup", ["splits", "groups"], "v1") as w:
            w["splits"].write_table(_splits())
            raise RuntimeError("killed mid-stage")
    assert store.manifests() == []
    assert not list((tmp_path / "artifacts").rglob("*.parquet"))
    with pytest.raises(ArtifactNotFound):
        store.latest("dedup", "splits")


def test_published_version_is_never_overwritten(tmp_path) -> None:
    store = ArtifactStore(tmp_path)
    with store.publish("dedup", ["splits"], "v1") as w:
        w["splits"].write_table(_splits(3))
    with store.publish("dedup", ["splits"], "v1") as w:
        w["splits"].write_table(_splits(1))
    assert store.read_table(ArtifactRef(stage="dedup", name="splits", version="v1")).num_rows == 3
    assert len(store.manifests()) == 1


def test_schema_is_checked_on_write(tmp_path) -> None:
    store = ArtifactStore(tmp_path)
    with pytest.raises(SchemaError, match="missing \\['split'\\]"):
        with store.publish("dedup", ["splits"], "v1") as w:
            w["splits"].write_table(pa.table({"group_id": ["g1"]}))
    with pytest.raises(SchemaError, match="null"):
        with store.publish("dedup", ["splits"], "v1") as w:
            w["splits"].write_table(pa.table({"group_id": ["g1", None], "split": ["train", "test"]}))
    assert store.manifests() == []


def test_catalog_views_all_versions_and_latest(tmp_path) -> None:
    store = ArtifactStore(tmp_path)
    for v, n in [("0001", 3), ("0002", 2)]:  # numeric-looking ids must stay strings
        with store.publish("dedup", ["splits"], v) as w:
            w["splits"].write_table(_splits(n))
    rows = query(store, "select version, count(*) as n from splits group by version order by version").to_pylist()
    assert rows == [{"version": "0001", "n": 3}, {"version": "0002", "n": 2}]
    assert query(store, "select count(*) as n from latest_splits").to_pylist() == [{"n": 2}]
    stages = query(store, "select stage, count(*) as n from versions group by stage").to_pylist()
    assert stages == [{"stage": "dedup", "n": 2}]
