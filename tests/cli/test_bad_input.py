"""Bad input to every command: one line on stderr naming what was wrong, exit code 2, never a
traceback (``street2shop/cli/_errors.py``).

Each case runs the command as its console script does, in this process (``cli_testing``); none
loads a model except ``demo --backbone`` (which reads the backbone registry).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from cli_testing import street2shop
from store_testing import publish_small_store

from street2shop.cli._errors import DEBUG_ENV


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, str]:
    """A small store and one of each kind of bad file."""
    root = tmp_path_factory.mktemp("bad-input")
    publish_small_store(root / "store")
    (root / "empty-store").mkdir()
    (root / "broken.yaml").write_text("crawl:\n  base_url: [unclosed\n")
    (root / "unknown-key.yaml").write_text("crawl:\n  base_url: http://127.0.0.1:9/\n  nosuch_key: 1\n")
    (root / "unknown-section.yaml").write_text("crawl:\n  base_url: http://127.0.0.1:9/\nnosuch_section: 1\n")
    (root / "binary.yaml").write_bytes(b"\xff\xfe\x00garbage\x00")
    (root / "photo.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a checkpoint")
    (root / "gallery.csv").write_text("path,item_id\nphoto.jpg,a\n")
    (root / "queries.csv").write_text("path,item_id\nphoto.jpg,a\n")
    (root / "labels.csv").write_text("image_id,label\nabc,good\n")
    shop = root / "a-shop"
    shop.mkdir()
    (shop / "catalog.json").write_text("{}")
    (root / "not-empty").mkdir()
    (root / "not-empty" / "notes.txt").write_text("mine")
    (root / "plain-folder").mkdir()
    return {name: str(root / name) for name in (
        "store", "empty-store", "broken.yaml", "unknown-key.yaml", "unknown-section.yaml", "binary.yaml", "photo.jpg", "gallery.csv",
        "queries.csv", "labels.csv", "a-shop", "not-empty", "plain-folder",
    )} | {"missing": str(root / "no-such-folder"), "root": str(root)}


# (case name, arguments with {placeholders} from `files`, words the one line must hold)
CASES = [
    # sql
    ("sql column typo", ["sql", "select nosuch from items", "--home", "{store}"], ["nosuch", "tables: items"]),
    ("sql missing table", ["sql", "select * from nosuch", "--home", "{store}"], ["nosuch", "latest_items"]),
    ("sql syntax", ["sql", "selec * from items", "--home", "{store}"], ["sql:", "syntax"]),
    ("sql json and csv", ["sql", "select 1", "--json", "--csv", "--home", "{store}"], ["--json and --csv"]),
    ("sql missing home", ["sql", "select 1", "--home", "{missing}"], ["--home", "no such folder"]),
    ("sql no query", ["sql"], ["Missing argument 'query'"]),
    ("sql unknown option", ["sql", "select 1", "--nosuch"], ["--nosuch"]),
    # versions, status, verify, report
    ("versions unknown stage", ["versions", "nosuch", "--home", "{store}"], ["nosuch", "crawl, noise"]),
    ("versions missing home", ["versions", "--home", "{missing}"], ["no-such-folder"]),
    ("versions json and csv", ["versions", "--json", "--csv", "--home", "{store}"], ["choose one"]),
    ("status missing home", ["status", "--home", "{missing}"], ["no such folder"]),
    ("verify unknown stage", ["verify", "nosuch", "--home", "{store}"], ["unknown stage 'nosuch'"]),
    ("verify missing home", ["verify", "--home", "{missing}"], ["no such folder"]),
    ("report out in missing folder", ["report", "--home", "{store}", "--out", "/nonexistent/dir/x.html"], ["/nonexistent/dir", "does not exist"]),
    ("report nothing evaluated", ["report", "--home", "{store}", "--out", "{root}/r.html"], ["run the evaluate stage first"]),
    ("report missing home", ["report", "--home", "{missing}", "--out", "{root}/r.html"], ["no such folder"]),
    # run
    ("run broken yaml", ["run", "--config", "{broken.yaml}", "--home", "{root}/run"], ["broken.yaml", "not valid YAML", "line"]),
    ("run unknown key", ["run", "--config", "{unknown-key.yaml}", "--home", "{root}/run"], ["unknown-key.yaml", "crawl.nosuch_key"]),
    ("run unknown section", ["run", "--config", "{unknown-section.yaml}", "--home", "{root}/run"], ["unknown section nosuch_section"]),
    ("run binary config", ["run", "--config", "{binary.yaml}", "--home", "{root}/run"], ["binary.yaml"]),
    ("run missing config", ["run", "--config", "{root}/none.yaml"], ["none.yaml", "does not exist"]),
    ("run unknown stage", ["run", "--config", "{broken.yaml}", "--stage", "nosuch"], ["nosuch", "crawl"]),
    # demo (refused before a shop is generated)
    ("demo bad garments", ["demo", "--garments", "nosuch", "--home", "{root}/demo"], ["--garments", "procedural"]),
    ("demo too few products", ["demo", "--products", "-5", "--home", "{root}/demo"], ["--products -5"]),
    ("demo unknown backbone", ["demo", "--backbone", "nosuch", "--home", "{root}/demo"], ["--backbone", "tiny"]),
    ("demo bad number", ["demo", "--products", "many"], ["--products", "integer"]),
    # serve (refused before the model loads; more in test_serve.py)
    ("serve port out of range", ["serve", "--port", "80000", "--home", "{store}"], ["--port", "65535"]),
    ("serve missing home", ["serve", "--home", "{missing}"], ["no such folder"]),
    # (found while loading, after the bind: the one case here that starts uvicorn)
    ("serve store without index", ["serve", "--home", "{empty-store}", "--port", "0"], ["index", "street2shop demo"]),
    ("serve exposed without token", ["serve", "--host", "0.0.0.0", "--home", "{store}"], ["--host 0.0.0.0", "admin token"]),
    ("serve short token", ["serve", "--host", "0.0.0.0", "--admin-token", "short", "--home", "{store}"], ["at least 16"]),
    ("serve no threads", ["serve", "--threads", "0", "--home", "{store}"], ["--threads"]),
    ("serve public url without scheme", ["serve", "--public-url", "shop.example", "--home", "{store}"], ["--public-url", "https://"]),
    ("serve batch of none", ["serve", "--batch-max", "0", "--home", "{store}"], ["--batch-max"]),
    # eval, index
    ("eval photo as model", ["eval", "--gallery", "{gallery.csv}", "--queries", "{queries.csv}", "--model", "{photo.jpg}"],
     ["--model", "photo.jpg", "not an embedder checkpoint"]),
    ("eval missing model", ["eval", "--gallery", "{gallery.csv}", "--queries", "{queries.csv}", "--model", "{root}/none.pt"],
     ["none.pt", "no such file"]),
    ("eval report in missing folder", ["eval", "--gallery", "{gallery.csv}", "--queries", "{queries.csv}", "--report", "/nonexistent/r.html"],
     ["--report", "/nonexistent"]),
    ("eval missing home", ["eval", "--gallery", "{gallery.csv}", "--queries", "{queries.csv}", "--home", "{missing}"], ["no such folder"]),
    ("eval unknown precision", ["eval", "--gallery", "{gallery.csv}", "--queries", "{queries.csv}", "--inference-mode", "int4"],
     ["--inference-mode", "'int4'", "openvino_int8"]),
    ("eval unknown localiser", ["eval", "--gallery", "{gallery.csv}", "--queries", "{queries.csv}", "--localise", '{"name": "nosuch"}'],
     ["--localise", "'nosuch'", "multicrop"]),
    ("eval unknown localiser option", ["eval", "--gallery", "{gallery.csv}", "--queries", "{queries.csv}", "--localise",
                                       '{"name": "multicrop", "options": {"zoom": 2}}'], ["--localise", "multicrop", "zoom"]),
    ("eval unknown learned option", ["eval", "--gallery", "{gallery.csv}", "--queries", "{queries.csv}", "--localise",
                                     '{"name": "boxhead", "options": {"zoom": 2}}'], ["--localise", "zoom", "factors"]),
    ("eval localisation not JSON", ["eval", "--gallery", "{gallery.csv}", "--queries", "{queries.csv}", "--localise", "multicrop"],
     ["--localise", "Invalid JSON"]),
    ("eval learned localiser without a store", ["eval", "--gallery", "{gallery.csv}", "--queries", "{queries.csv}", "--model", "{photo.jpg}",
                                                "--localise", '{"name": "boxhead"}'], ["--localise", "give --home"]),
    ("eval no batch", ["eval", "--gallery", "{gallery.csv}", "--queries", "{queries.csv}", "--batch-size", "0"], ["--batch-size"]),
    ("index no catalog option", ["index"], ["--catalog"]),
    ("index negative workers", ["index", "--catalog", "{gallery.csv}", "--dask-workers", "-1"], ["--dask-workers"]),
    # labels
    ("labels export into missing folder", ["labels", "export", "/nonexistent/x.csv", "--home", "{store}"], ["/nonexistent"]),
    ("labels export missing home", ["labels", "export", "{root}/x.csv", "--home", "{missing}"], ["no such folder"]),
    ("labels import missing file", ["labels", "import", "{root}/none.csv"], ["none.csv"]),
    ("labels import without target", ["labels", "import", "{labels.csv}"], ["--into PATH or --config YAML"]),
    ("labels import broken config", ["labels", "import", "{labels.csv}", "--config", "{broken.yaml}"], ["not valid YAML"]),
    # shop
    ("shop generate into a shop", ["shop", "generate", "{a-shop}"], ["holds a shop", "shop grow"]),
    ("shop generate into a full folder", ["shop", "generate", "{not-empty}"], ["is not empty"]),
    ("shop generate bad garments", ["shop", "generate", "{root}/new", "--garments", "nosuch"], ["--garments", "procedural"]),
    ("shop generate no products", ["shop", "generate", "{root}/new", "--products", "0"], ["n_products"]),
    ("shop grow not a shop", ["shop", "grow", "{plain-folder}"], ["holds no shop"]),
    ("shop serve not a shop", ["shop", "serve", "{plain-folder}"], ["holds no shop"]),
    ("shop serve bad fraction", ["shop", "serve", "{a-shop}", "--p-429", "2"], ["p_429"]),
    # deploy, and the command line itself
    ("deploy missing config", ["deploy", "--config", "{root}/none.yaml"], ["none.yaml"]),
    ("unknown command", ["nosuch"], ["nosuch"]),
    ("unknown subcommand", ["shop", "nosuch"], ["nosuch"]),
]


@pytest.fixture(autouse=True)
def _no_debug(monkeypatch) -> None:
    # set (not deleted), so that the variable --debug sets is undone after the test
    monkeypatch.setenv(DEBUG_ENV, "0")


def _args(template: list[str], files: dict[str, str]) -> list[str]:
    filled = []
    for arg in template:
        for key, value in files.items():
            arg = arg.replace("{" + key + "}", value)
        filled.append(arg)
    return filled


@pytest.mark.parametrize(("args", "words"), [pytest.param(a, w, id=name) for name, a, w in CASES])
def test_bad_input_is_one_line_and_exit_code_2(files, args, words) -> None:
    ran = street2shop(*_args(args, files))
    assert ran.exit_code == 2, ran.output
    assert "Traceback" not in ran.output
    lines = ran.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), ran.stderr
    for word in words:
        assert word in lines[0], (word, lines[0])


def test_the_suite_covers_every_command() -> None:
    from street2shop.cli import app

    commands = {c.name or c.callback.__name__ for c in app.registered_commands} | {g.name for g in app.registered_groups}
    tried = {args[0] for _, args, _ in CASES}
    assert len(CASES) >= 40 and commands <= tried, sorted(commands - tried)


def test_nothing_is_created_by_a_refused_command(files) -> None:
    street2shop("report", "--home", files["store"], "--out", "/nonexistent/dir/x.html")
    street2shop("shop", "generate", files["a-shop"])
    assert not Path("/nonexistent").exists()
    assert sorted(p.name for p in Path(files["a-shop"]).iterdir()) == ["catalog.json"]


def test_debug_shows_the_traceback(files, monkeypatch) -> None:
    import duckdb

    # --debug sets the variable for the rest of this process; the autouse fixture clears it
    with pytest.raises(Exception, match="nosuch") as raised:
        street2shop("--debug", "sql", "select * from nosuch", "--home", files["store"])
    assert isinstance(raised.value.__cause__, duckdb.Error)  # the cause's traceback comes first


def test_an_internal_error_is_one_line_too(files, monkeypatch) -> None:
    import street2shop.storage.catalog as catalog

    def broken(store, sql):
        raise KeyError(101)

    monkeypatch.setattr(catalog, "query", broken)
    ran = street2shop("sql", "select 1", "--home", files["store"])
    assert ran.exit_code == 1 and "Traceback" not in ran.output
    [line] = ran.stderr.strip().splitlines()
    assert line.startswith("error: KeyError: 101") and "--debug" in line


def test_a_library_error_that_escapes_a_command_is_described_by_kind() -> None:
    import duckdb
    import yaml

    from street2shop.cli._errors import describe

    assert describe(duckdb.CatalogException("Catalog Error: Table with name x does not exist!\nDid you mean \"y\"?")) == (
        'sql: Catalog Error: Table with name x does not exist! (tables: run `street2shop sql "show tables"`)', 2)
    try:
        yaml.safe_load("a: [1,\n")
    except yaml.YAMLError as exc:
        message, code = describe(exc)
    assert code == 2 and message.startswith("not valid YAML: line 2, column 1: ")
    assert describe(FileNotFoundError(2, "No such file or directory", "/x/y.csv")) == ("/x/y.csv: No such file or directory", 2)
    assert describe(ValueError("--k must be positive\nsecond line")) == ("--k must be positive; second line", 2)
    assert describe(AttributeError("'NoneType' object has no attribute 'x'"))[1] == 1  # a bug, not bad input
