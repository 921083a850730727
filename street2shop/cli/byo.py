"""Bring your own data: ``street2shop eval`` (score a model on labelled CSVs) and
``street2shop index --catalog`` (a served index from a product feed, without crawling)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer
from rich.table import Table

from street2shop.cli._common import console, open_store

if TYPE_CHECKING:
    from street2shop.retrieval.metrics import RetrievalReport


def eval_command(
    gallery: Path = typer.Option(..., help="CSV of gallery (shop) photos: path,item_id[,product_id,category,colour]"),
    queries: Path = typer.Option(..., help="CSV of query (street) photos: path,item_id"),
    model: Optional[Path] = typer.Option(None, help="embedder checkpoint file (default: the model the store serves, at its precision, with its localisation)"),
    home: Optional[str] = typer.Option(None, help="artifact store (folder or s3:// URL), for the published model"),
    localise: Optional[str] = typer.Option(
        None, help="query localisation as JSON, e.g. '{\"name\": \"multicrop\"}' (default: the served one, as /search runs it; none with --model)"
    ),
    inference_mode: Optional[str] = typer.Option(
        None, "--inference-mode", help="precision to run the model in, e.g. openvino, openvino_int8, eager (default: the served one; openvino with --model)"
    ),
    json_output: bool = typer.Option(False, "--json", help="print one JSON object: overall and per category, the precision and localisation"),
    report_path: Optional[Path] = typer.Option(None, "--report", help="also write the HTML report here"),
    batch_size: int = typer.Option(32, min=1),
) -> None:
    """Evaluate what the store serves (its checkpoint, precision and query localisation), or a
    named model, on your own labelled gallery and queries."""
    import pyarrow as pa

    from street2shop.cli._common import check_out_folder

    if report_path is not None:
        check_out_folder(report_path, "--report")
    from pydantic import ValidationError

    from street2shop.retrieval.evaluation import TRAINED, evaluate_csvs, metrics_json
    from street2shop.sources.labelled import SPLIT, DataError
    from street2shop.storage.store import ArtifactNotFound

    try:
        served = _served(model, home, localise, inference_mode, gallery)
        if not json_output:
            typer.echo(f"model: {served['which']}; precision: {served['mode']}{served['mode_note']}; "
                       f"query localisation: {served['localise'].label} {served['localise'].options or ''}{served['localise_note']}")
        report, vectors, annotated = evaluate_csvs(served["runner"], gallery, queries, batch_size=batch_size,
                                                   localise=served["localise"], learned=served["learned"])
    except ValidationError as exc:
        raise typer.BadParameter(str(exc), param_hint="--localise") from None
    except (DataError, ArtifactNotFound, FileNotFoundError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    if json_output:
        figures = metrics_json(report) | {"inference_mode": served["mode"], "localise": served["localise"].model_dump(mode="json")}
        typer.echo(json.dumps(figures, sort_keys=True))
    else:
        _print_metrics(report)
    if report_path is not None:
        from street2shop.retrieval.report import build_report_data, render_report

        metrics = pa.Table.from_pylist(report.to_rows(TRAINED, SPLIT))
        page = build_report_data(f"street2shop evaluation of {gallery.name} / {queries.name}", metrics, annotated, SPLIT, report, vectors)
        report_path.write_text(render_report(page), encoding="utf-8")
        if not json_output:
            typer.echo(f"report: {report_path}")


def _served(model: Path | None, home: str | None, localise: str | None, inference_mode: str | None, gallery: Path) -> dict:
    """The model to evaluate as the service runs it: the checkpoint, its runner at the served
    precision (or ``--inference-mode``), the localisation (or ``--localise``) and, for a learned
    one, its one-pass search. Bad flags are one line (exit 2)."""
    import numpy as np

    from street2shop.cli._errors import InputError
    from street2shop.models.embedder import load_embedder
    from street2shop.retrieval.evaluation import LocaliseParams
    from street2shop.retrieval.served import (
        calibration_of,
        check_localisation,
        pixels_of,
        served_mode,
        served_runner,
        served_search,
    )
    from street2shop.sources.labelled import read_labelled_csv
    from street2shop.storage.promotions import served_checkpoint, serving_of
    from street2shop.tasks.catalog import load_checkpoint

    # the flags first, before any model is loaded
    given = LocaliseParams.model_validate_json(localise) if localise is not None else None
    for flag, check in (("--inference-mode", lambda: served_mode({}, inference_mode)), ("--localise", lambda: check_localisation(given))):
        try:
            if (inference_mode if flag == "--inference-mode" else given) is not None:
                check()
        except ValueError as exc:
            raise InputError(f"{flag}: {exc}") from None
    if given is not None and given.learned and model is not None:
        raise InputError(f"--localise: {given.name!r} is the learned localiser, read from a store's localise stage: give --home, not --model")
    serving: dict = {}
    store = None
    if model is not None:
        embedder, which = _checkpoint(model, load_embedder), str(model)
    else:
        store = open_store(home, must_exist=True)
        checkpoint = served_checkpoint(store)
        embedder, serving = load_checkpoint(store, checkpoint), serving_of(store, checkpoint)
        which = f"{checkpoint} ({serving.get('model', 'trained')}, as served)"
    mode = served_mode(serving, inference_mode)
    how = given or LocaliseParams(**serving.get("localise", {}))
    calibration = None
    if "int8" in mode:
        if serving.get("calibration"):  # the photos the served int8 model was calibrated on
            calibration = calibration_of(store, checkpoint, serving, embedder)
        else:  # a checkpoint from elsewhere: calibrate on a seeded sample of the gallery, never on queries
            paths = read_labelled_csv(gallery).table.column("path").to_pylist()
            calibration = pixels_of(embedder, [paths[i] for i in sorted(np.random.default_rng(0).permutation(len(paths))[:64])])
    runner = served_runner(embedder, mode, calibration)
    learned = served_search(store, how, embedder, mode, runner, calibration) if how.learned else None
    return {
        "which": which, "mode": getattr(runner, "mode", "eager"), "runner": runner, "localise": how, "learned": learned,
        "mode_note": " (as served)" if inference_mode is None and "inference_mode" in serving else "",
        "localise_note": " (as served)" if localise is None and "localise" in serving else "",
    }


def _checkpoint(path: Path, load_embedder):
    """The embedder saved at ``path``; a file that is not a checkpoint is one line."""
    from street2shop.cli._errors import InputError

    if not path.is_file():
        raise InputError(f"--model {path}: no such file (an embedder checkpoint, e.g. the train stage's model.pt)")
    try:
        return load_embedder(path)
    except Exception as exc:  # noqa: BLE001 (torch raises many kinds for a file that is not a checkpoint)
        raise InputError(
            f"--model {path}: not an embedder checkpoint ({type(exc).__name__}); give a model.pt the train stage published"
        ) from None


def _print_metrics(report: RetrievalReport) -> None:
    keys = [f"top{k}" for k in report.ks] + ["map"] + (["wrong_colour_top1"] if "wrong_colour_top1" in report.overall else []) + ["n_queries"]
    table = Table(title=f"gallery: {int(report.overall['gallery_size'])} photos of {int(report.overall['gallery_items'])} items, exact search")
    table.add_column("category")
    for key in keys:
        table.add_column(key, justify="right")
    for category, values in [("all", report.overall), *sorted(report.per_category.items())]:
        table.add_row(category, *[f"{values[k]:.4g}" for k in keys])
    console.print(table)


def index_command(
    catalog: Path = typer.Option(..., help="CSV of catalogue photos: path,item_id[,product_id,category,colour]"),
    home: Optional[str] = typer.Option(None, help="artifact store (folder or s3:// URL) the index is published to"),
    model: Optional[Path] = typer.Option(None, help="embedder checkpoint file (default: the store's latest trained one)"),
    factory: str = typer.Option("auto", help="faiss index factory string, or 'auto' (exact for small catalogues)"),
    dask_address: Optional[str] = typer.Option(None, help="embed on this Dask cluster (tcp://host:8786); the store must be one every worker reaches"),
    dask_workers: int = typer.Option(0, min=0, help="embed on a local Dask cluster of this many worker processes (0: in this process)"),
) -> None:
    """Build a searchable index from your own catalogue CSV, without crawling."""
    from street2shop.flows.catalog import DaskOptions, index_catalog
    from street2shop.sources.labelled import DataError
    from street2shop.storage.store import ArtifactNotFound

    dask = DaskOptions(dask_address, dask_workers or 2) if dask_address or dask_workers else None
    try:
        result = index_catalog(open_store(home), catalog, model, factory, dask=dask)
    except (DataError, ArtifactNotFound, FileNotFoundError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    typer.echo(f"index: version {result.version} ({'reused' if result.skipped else 'new'})")
    for key, value in sorted(result.metrics.items()):
        typer.echo(f"  {key}: {value}")
