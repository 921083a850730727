"""Scriptable output of ``sql``, ``versions`` and ``status``: ``--json`` and ``--csv`` carry every
row, tables never fold an id when piped, and "version" means one thing in every command."""

from __future__ import annotations

import csv
import io
import json

import pytest
from cli_testing import street2shop
from store_testing import publish_small_store


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> str:
    home = tmp_path_factory.mktemp("output")
    publish_small_store(home)
    return str(home)


def test_sql_as_json_and_csv(home) -> None:
    query = "select stage, name, version from versions order by stage, name"
    rows = json.loads(street2shop("sql", query, "--json", "--home", home).stdout)
    assert [(r["stage"], r["name"]) for r in rows] == [("crawl", "items"), ("index", "index_ids"), ("index", "notes")]
    assert list(csv.DictReader(io.StringIO(street2shop("sql", query, "--csv", "--home", home).stdout))) == rows
    empty = street2shop("sql", "select item_id from items where false", "--csv", "--home", home)
    assert empty.exit_code == 0 and empty.stdout == "item_id\n"  # the header, even with no rows


def test_piped_tables_keep_every_id_whole(home) -> None:
    ran = street2shop("versions", "--home", home)
    assert ran.exit_code == 0
    crawl = json.loads(street2shop("versions", "crawl", "--json", "--home", home).stdout)[0]["version"]
    index_rows = [line for line in ran.stdout.splitlines() if "index_ids" in line]
    # on one line: its version and its input's full reference (folded at 80 columns before)
    assert len(index_rows) == 1 and "a" * 16 in index_rows[0] and f"crawl/items@{crawl}" in index_rows[0]
    items = street2shop("sql", "select item_id, title from items", "--home", home).stdout
    assert all(f"p{i}:red" in items for i in range(4))
    status = street2shop("status", "--home", home).stdout
    assert any("index" in line and "a" * 16 in line for line in status.splitlines())


def test_a_version_is_one_run_of_a_stage_in_every_command(home) -> None:
    """The small store: crawl (1 version, 1 artifact) and index (1 version, 2 artifacts)."""
    listed = json.loads(street2shop("versions", "--json", "--home", home).stdout)
    assert len(listed) == 3  # one row per artifact
    title = street2shop("versions", "--home", home).stdout.splitlines()[0]
    assert title.strip() == "2 published versions, 3 artifacts (oldest first)"
    status = json.loads(street2shop("status", "--json", "--home", home).stdout)
    assert {s["stage"]: s["versions"] for s in status["stages"]} == {"crawl": 1, "index": 1}
    verified = street2shop("verify", "--home", home).stdout
    assert "2 versions (3 artifacts)" in verified and "3 ok" in verified
    counted = json.loads(street2shop("sql", "select count(distinct version) as n from versions", "--json", "--home", home).stdout)
    assert counted == [{"n": 2}]
