"""A DuckDB catalog over every artifact in the store.

For each tabular artifact ``<name>`` there is a view over all its versions (hive
partitioning gives a ``version`` column) and a ``latest_<name>`` view of its newest
version. ``versions`` lists every published version with its lineage and metrics, and
``metrics_latest`` the headline figures of each stage's newest versions.

For a store on an fsspec URL the views read the local mirror, into which the Parquet
parts of every published version are synced first (published parts never change, so each
is downloaded once); DuckDB itself never talks to the object store.
"""

from __future__ import annotations

import json

import duckdb
import pyarrow as pa

from street2shop.storage.store import ArtifactStore


def _quote(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def manifests_table(store: ArtifactStore) -> pa.Table:
    rows = [
        {
            "stage": m.stage,
            "name": m.name,
            "version": m.version,
            "created_at": m.created_at,
            "rows": m.rows,
            "code_version": m.code_version,
            "duration_s": m.duration_s,
            "inputs": ", ".join(str(r) for r in m.inputs),
            "params": json.dumps(m.params, sort_keys=True),
            "metrics": json.dumps(m.metrics, sort_keys=True),
            "files": ", ".join(m.files),
        }
        for m in store.manifests()
    ]
    schema = pa.schema(
        [
            ("stage", pa.string()),
            ("name", pa.string()),
            ("version", pa.string()),
            ("created_at", pa.string()),
            ("rows", pa.int64()),
            ("code_version", pa.string()),
            ("duration_s", pa.float64()),
            ("inputs", pa.string()),
            ("params", pa.string()),
            ("metrics", pa.string()),
            ("files", pa.string()),
        ]
    )
    return pa.Table.from_pylist(rows, schema=schema)


def connect(store: ArtifactStore) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection with a view per artifact (all and latest)."""
    store.sync_tables()
    con = duckdb.connect(":memory:")
    versions = manifests_table(store)
    con.register("_versions", versions)
    con.execute("CREATE VIEW versions AS SELECT * EXCLUDE (created_at), CAST(created_at AS TIMESTAMPTZ) AS created_at FROM _versions")
    latest: dict[tuple[str, str], str] = {}
    for m in store.manifests():  # oldest first, so the last one wins
        if m.rows is not None:
            latest[(m.stage, m.name)] = m.version
    names: dict[str, list[str]] = {}
    for stage, name in latest:
        names.setdefault(name, []).append(stage)
    for (stage, name), version in sorted(latest.items()):
        view = name if len(names[name]) == 1 else f"{stage}_{name}"
        glob = str(store.root / stage / name / "version=*" / "part-*.parquet")
        con.execute(
            f'CREATE VIEW "{view}" AS SELECT * FROM read_parquet({_quote(glob)}, '
            "hive_partitioning = true, hive_types = {'version': VARCHAR}, union_by_name = true)"
        )
        con.execute(f'CREATE VIEW "latest_{view}" AS SELECT * FROM "{view}" WHERE version = {_quote(version)}')
    return con


def query(store: ArtifactStore, sql: str) -> pa.Table:
    con = connect(store)
    try:
        return con.sql(sql).to_arrow_table()
    finally:
        con.close()
