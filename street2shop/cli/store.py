"""Looking into the store: ``sql``, ``versions``, ``status``, ``report`` and ``verify``."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from street2shop.cli._common import (
    HOME_HELP,
    CsvFlag,
    HomeOption,
    JsonFlag,
    check_out_folder,
    console,
    fmt,
    open_store,
    print_rows,
    print_table,
    print_wide,
    reading,
)
from street2shop.cli._errors import InputError

#: What "version" means in every command: one run of one stage, named by its version id.
#: A version publishes one or more artifacts (stage, name, version): ``sql``'s ``versions``
#: view has a row per artifact, ``count(distinct version)`` counts versions.
VERSIONS_NOTE = "a version is one run of a stage (its id); it may publish several artifacts (stage/name)"


def sql(
    query: str = typer.Argument(..., help="SQL over the artifact views, e.g. \"select * from versions\""),
    home: HomeOption = None,
    as_json: JsonFlag = False,
    as_csv: CsvFlag = False,
) -> None:
    """Query every artifact with DuckDB (views: <name>, latest_<name>, and versions: a row per artifact)."""
    import duckdb

    from street2shop.storage.catalog import query as run_query

    form, store = reading(home, as_json, as_csv)
    try:
        result = run_query(store, query)
    except duckdb.Error as exc:
        message = " ".join(str(exc).split("\n")[0].split())
        views = run_query(
            store, "select table_name from information_schema.tables where table_name not like '\\_%' escape '\\' order by 1")
        views = views.column(0).to_pylist()
        raise InputError(f"sql: {message} (tables: {', '.join(views)})") from None
    print_table(result, form=form)


def _known_stage(store, stage: str | None) -> None:
    """An unknown stage name is an error, not an empty answer."""
    from street2shop.storage.stages import STAGE_NAMES

    if stage is None:
        return
    known = list(dict.fromkeys([*STAGE_NAMES, *(m.stage for m in store.manifests())]))
    if stage not in known:
        raise InputError(f"unknown stage {stage!r}; one of {', '.join(known)}")


def versions(
    stage: Optional[str] = typer.Argument(None, help="only this stage's versions"),
    home: HomeOption = None,
    as_json: JsonFlag = False,
    as_csv: CsvFlag = False,
) -> None:
    """List published versions, one row per artifact, with lineage (inputs) and row counts."""
    form, store = reading(home, as_json, as_csv)
    _known_stage(store, stage)
    manifests = store.manifests(stage)
    rows = [
        {"stage": m.stage, "name": m.name, "version": m.version, "created_at": m.created_at[:19], "rows": m.rows, "inputs": ", ".join(str(r) for r in m.inputs)}
        for m in manifests
    ]
    if not rows and form == "table":
        console.print("no published versions" + (f" of stage {stage!r}" if stage else ""))
        raise typer.Exit(0)
    count = len({(m.stage, m.version) for m in manifests})
    print_rows(rows, form, title=f"{count} published versions, {len(rows)} artifacts (oldest first)", max_rows=None)


def status(
    home: Optional[str] = typer.Option(None, help=HOME_HELP),
    as_json: bool = typer.Option(False, "--json", help="print the status as one JSON object"),
) -> None:
    """Latest version per stage, the last pipeline activity, and what is promoted and served."""
    import json

    from street2shop.storage.status import collect_status

    report = collect_status(open_store(home, must_exist=True))
    if as_json:
        typer.echo(json.dumps(report.model_dump(mode="json")))
        return
    if not report.stages:
        console.print(f"no published versions under {report.home}: run `street2shop demo` or `street2shop run` first")
        raise typer.Exit(0)
    table = Table(title=f"latest versions under {report.home}")
    for col in ("stage", "version", "created (UTC)", "versions", "key figures"):
        table.add_column(col, overflow="fold", no_wrap=col == "version")
    for s in report.stages:
        figures = ", ".join(f"{k}={fmt(v)}" for k, v in s.figures.items())
        table.add_row(s.stage, s.version, s.created_at[:19], str(s.versions), figures)
    print_wide(table)
    console.print(f"last published: {report.last_published_at[:19]} UTC ({report.last_published})", highlight=False)
    if report.served is None:
        console.print("served: nothing promoted yet (the API has no index to serve)")
    else:
        d = report.served
        console.print(f"served: index {d.candidate.version} ({d.metric} = {d.value:.4f}), promoted {d.decided_at[:19]} UTC", highlight=False)
    if report.last_decision is not None and report.last_decision != report.served:
        d = report.last_decision
        console.print(f"last decision: index {d.candidate.version} not promoted at {d.decided_at[:19]} UTC: {d.reason}", highlight=False)


def report(
    home: Optional[str] = typer.Option(None, help=HOME_HELP),
    version: Optional[str] = typer.Option(None, help="evaluate version (default: the latest)"),
    out: Path = typer.Option(Path("report.html"), help="where to write the HTML file"),
) -> None:
    """Write the self-contained HTML evaluation report of an evaluated version."""
    from street2shop.storage.names import EVALUATE, METRICS
    from street2shop.storage.store import ArtifactNotFound, ArtifactRef
    from street2shop.tasks.report import write_report

    check_out_folder(out)
    store = open_store(home, must_exist=True)
    ref = ArtifactRef(stage=EVALUATE, name=METRICS, version=version) if version else store.latest_or_none(EVALUATE, METRICS)
    if ref is None or not store.exists(ref):
        typer.echo(f"error: no evaluated version {version or ''} in {store.home}: run the evaluate stage first", err=True)
        raise typer.Exit(2)
    try:
        path = write_report(store, ref, out)
    except ArtifactNotFound as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    typer.echo(f"report of {ref}: {path}")


def verify(
    stage: Optional[str] = typer.Argument(None, help="only this stage's versions"),
    home: Optional[str] = typer.Option(None, help=HOME_HELP),
) -> None:
    """Check every published version's files against the sha256 its manifest recorded.

    Exits 1 if any file is damaged, missing or unexpected; versions published before
    checksums were recorded are listed as unchecked, not as damaged.
    """
    from street2shop.storage.verify import CORRUPT, OK, UNCHECKED, temporary_folders, verify_store

    store = open_store(home, must_exist=True)
    _known_stage(store, stage)
    checks = verify_store(store, stage)
    if not checks:
        console.print(f"no published versions under {store.location}" + (f" of stage {stage!r}" if stage else ""))
        raise typer.Exit(0)
    n_versions = len({(c.ref.stage, c.ref.version) for c in checks})
    counts = {status: sum(c.status == status for c in checks) for status in (OK, UNCHECKED, CORRUPT)}
    for c in checks:
        if c.status == CORRUPT:
            for problem in c.problems:
                console.print(f"[red]damaged[/] {c.ref}: {problem}", highlight=False)
    unchecked = [c for c in checks if c.status == UNCHECKED]
    if unchecked:
        console.print(f"{len(unchecked)} artifact(s) have no checksums recorded (published before they were): "
                      + ", ".join(str(c.ref) for c in unchecked[:10]) + (" ..." if len(unchecked) > 10 else ""), highlight=False)
    leftovers = temporary_folders(store)
    console.print(
        f"{n_versions} versions ({len(checks)} artifacts) under {store.location}; artifacts: {counts[OK]} ok, "
        f"{counts[UNCHECKED]} unchecked, {counts[CORRUPT]} damaged" + (f"; {leftovers} temporary folder(s) of killed writers (never listed)" if leftovers else ""),
        highlight=False,
    )
    if counts[CORRUPT]:
        console.print("remove a damaged version's folder and re-run its stage to publish it again", highlight=False)
        raise typer.Exit(1)
