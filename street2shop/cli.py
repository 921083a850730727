"""The ``street2shop`` command line."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

# Before Prefect is imported (it is imported lazily, inside commands).
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
# Without a Prefect server configured, a run starts a temporary one; Prefect waits 20 s for it,
# which a busy 2-core machine (the nightly run beside a training job) can exceed.
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")

app = typer.Typer(help="street2shop: crawl a shop, clean its data, train an embedder, evaluate, index, serve.", no_args_is_help=True)
console = Console()

HOME_HELP = "artifact store: a folder or an fsspec URL like s3://bucket/prefix (default: $STREET2SHOP_HOME or ./.street2shop)"
STAGES = ("crawl", "noise", "dedup", "train", "mine", "evaluate", "index")


def _home(home: Optional[str | Path]) -> Path | str:
    """``--home`` (a folder or a store URL such as ``s3://bucket/prefix``), else $STREET2SHOP_HOME."""
    from street2shop.settings import store_home

    resolved = store_home(home)
    os.environ["STREET2SHOP_HOME"] = str(resolved)
    return resolved


def _print_table(table, title: str | None = None, max_rows: int = 200) -> None:
    out = Table(title=title, show_lines=False)
    for name in table.column_names:
        out.add_column(name, overflow="fold")
    for row in table.slice(0, max_rows).to_pylist():
        out.add_row(*["" if v is None else (f"{v:.4g}" if isinstance(v, float) else str(v)) for v in row.values()])
    console.print(out)
    if table.num_rows > max_rows:
        console.print(f"... {table.num_rows - max_rows} more rows")


def _headline(result) -> None:
    table = Table(title="pipeline run")
    for col in ("stage", "version", "status", "key figures"):
        table.add_column(col, overflow="fold")
    from street2shop.ops import KEY_FIGURES

    keys = set(KEY_FIGURES) | {"pretrained_top1", "pretrained_top20", "colour_histogram_top20", "hog_top20"}
    for s in result.stages:
        figs = ", ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in s["metrics"].items() if k in keys)
        table.add_row(s["label"], s["version"], "reused" if s["skipped"] else "new", figs)
    console.print(table)
    if result.promotion:
        p = result.promotion
        console.print(f"promotion: {'served now' if p.get('promoted') else 'not promoted'} — {p.get('reason')}")


@app.command()
def demo(
    home: Optional[Path] = typer.Option(None, help="artifact store root (default: $STREET2SHOP_HOME or ./.street2shop)"),
    products: int = typer.Option(150, help="products in the generated demo shop"),
    garments: str = typer.Option("real", help="'real' (bundled CC0 photos) or 'procedural'"),
    backbone: str = typer.Option("efficientnet_lite0", help="backbone by name ('tiny' for a quick smoke run)"),
    epochs: int = typer.Option(2),
    rounds: int = typer.Option(1, help="offline re-mining rounds"),
    seed: int = typer.Option(0),
) -> None:
    """Generate a demo shop, serve it on loopback and run the whole pipeline on it."""
    from street2shop.demo import DemoSize, demo_config, serving_demo_shop
    from street2shop.flows.pipeline import pipeline

    home = _home(home)
    size = DemoSize(products=products, garments=garments, backbone=backbone, epochs=epochs, rounds=rounds, seed=seed)
    if backbone == "tiny":
        size = size.model_copy(update={"train_image_size": 64})
    with serving_demo_shop(home, size) as (shop_dir, url):
        console.print(f"demo shop [bold]{shop_dir}[/] served at {url}")
        cfg = demo_config(shop_dir, url, size)
        cfg.to_file(home / "demo-config.yaml")
        result = pipeline(str(home), cfg)
    _headline(result)
    console.print(f"artifacts: [bold]{home / 'artifacts'}[/]  (config: {home / 'demo-config.yaml'})")
    console.print('query them: street2shop sql "select stage, name, version, rows from versions"')


@app.command()
def run(
    config: Path = typer.Option(..., exists=True, help="pipeline config (YAML), e.g. the demo's demo-config.yaml"),
    stage: Optional[str] = typer.Option(None, help=f"run only this stage from the latest upstream versions: {', '.join(STAGES)}"),
    home: Optional[str] = typer.Option(None, help=HOME_HELP),
) -> None:
    """Run the pipeline (skipping stages already published for these inputs), or one stage."""
    from street2shop.flows import stages as s
    from street2shop.flows.config import PipelineConfig
    from street2shop.flows.pipeline import pipeline

    home = _home(home)
    cfg = PipelineConfig.from_file(config)
    if stage is None:
        _headline(pipeline(str(home), cfg))
        return
    if stage not in STAGES:
        raise typer.BadParameter(f"unknown stage {stage!r}; one of {', '.join(STAGES)}")
    h = str(home)
    runners = {
        "crawl": lambda: s.crawl_flow(h, cfg.crawl),
        "noise": lambda: s.noise_filter_flow(h, cfg.labels_path, cfg.noise),
        "dedup": lambda: s.dedup_flow(h, cfg.dedup, truth_items_csv=cfg.truth_items_csv),
        "train": lambda: s.train_flow(h, cfg.train),
        "mine": lambda: s.mine_flow(h, cfg.mine),
        "evaluate": lambda: s.evaluate_flow(h, cfg.evaluate),
        "index": lambda: s.build_index_flow(h, cfg.index),
    }
    result = runners[stage]()
    console.print(f"{stage}: version {result.version} ({'reused' if result.skipped else 'new'})")
    for key, value in sorted(result.metrics.items()):
        console.print(f"  {key}: {value}")


@app.command()
def sql(query: str = typer.Argument(..., help="SQL over the artifact views, e.g. \"select * from versions\""), home: Optional[str] = typer.Option(None, help=HOME_HELP)) -> None:
    """Query every artifact with DuckDB (views: <name>, latest_<name>, versions)."""
    from street2shop.storage.catalog import query as run_query
    from street2shop.storage.store import ArtifactStore

    _print_table(run_query(ArtifactStore(_home(home)), query))


@app.command()
def versions(stage: Optional[str] = typer.Argument(None), home: Optional[str] = typer.Option(None, help=HOME_HELP)) -> None:
    """List published versions with their lineage (inputs) and row counts."""
    import pyarrow as pa

    from street2shop.storage.store import ArtifactStore

    manifests = ArtifactStore(_home(home)).manifests(stage)
    rows = [
        {"stage": m.stage, "name": m.name, "version": m.version, "created_at": m.created_at[:19], "rows": m.rows, "inputs": ", ".join(str(r) for r in m.inputs)}
        for m in manifests
    ]
    if not rows:
        console.print("no published versions" + (f" of stage {stage!r}" if stage else ""))
        raise typer.Exit(0)
    _print_table(pa.Table.from_pylist(rows), title="published versions (oldest first)")


def _mount_subcommands() -> None:
    from street2shop.byo import eval_command, index_command
    from street2shop.flows.deploy import deploy
    from street2shop.labels_cli import labels_app
    from street2shop.ops import status
    from street2shop.report import report
    from street2shop.service.cli import serve
    from street2shop.shop.cli import shop_app

    app.add_typer(shop_app, name="shop", help="Generate or serve the demo shop.")
    app.add_typer(labels_app, name="labels", help="Export photos to label next; import labelled ones.")
    app.command("serve")(serve)
    app.command("report")(report)
    app.command("eval")(eval_command)
    app.command("index")(index_command)
    app.command("status")(status)
    app.command("deploy")(deploy)


_mount_subcommands()

if __name__ == "__main__":
    app()
