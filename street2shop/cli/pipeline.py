"""``street2shop demo`` and ``street2shop run``: the pipeline on the demo shop, or on a config."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from street2shop.cli._common import HOME_HELP, console, resolve_home
from street2shop.storage.names import STAGE_ORDER


def _headline(result) -> None:
    from street2shop.storage.status import is_key_figure

    table = Table(title="pipeline run")
    for col in ("stage", "version", "status", "key figures"):
        table.add_column(col, overflow="fold")
    extra = {"pretrained_top1", "pretrained_top20", "colour_histogram_top20", "hog_top20"}
    for s in result.stages:
        figs = ", ".join(
            f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in s["metrics"].items() if is_key_figure(k) or k in extra
        )
        table.add_row(s["label"], s["version"], "reused" if s["skipped"] else "new", figs)
    console.print(table)
    if result.promotion:
        p = result.promotion
        console.print(f"promotion: {'served now' if p.get('promoted') else 'not promoted'} — {p.get('reason')}")


def demo(
    home: Optional[Path] = typer.Option(None, help="artifact store root (default: $STREET2SHOP_HOME or ./.street2shop)"),
    products: int = typer.Option(150, help="products in the generated demo shop"),
    garments: str = typer.Option("real", help="'real' (bundled CC0 photos) or 'procedural'"),
    backbone: str = typer.Option("efficientnet_lite0", help="backbone by name ('tiny' for a quick smoke run)"),
    epochs: int = typer.Option(2),
    rounds: int = typer.Option(1, help="offline re-mining rounds"),
    seed: int = typer.Option(0),
    benchmark: Optional[Path] = typer.Option(
        None, help="a real-photo benchmark folder (gallery.csv, queries.csv) that judges the model "
        "(default: $STREET2SHOP_BENCHMARK, else ../shared/data/hm-dev when it is there)",
    ),
    no_benchmark: bool = typer.Option(False, "--no-benchmark", help="score the demo shop's own split only"),
) -> None:
    """Generate a demo shop, serve it on loopback and run the whole pipeline on it."""
    from street2shop.flows.demo import DemoSize, demo_config, find_benchmark, serving_demo_shop
    from street2shop.flows.pipeline import pipeline

    home = resolve_home(home)
    found = None
    if not no_benchmark:
        found, looked = find_benchmark(benchmark)
        if found is not None:
            console.print(f"real-photo benchmark: [bold]{found}[/] (scored beside the demo's split; it judges the served model)")
        elif benchmark is not None:
            raise typer.BadParameter(f"{benchmark} holds no gallery.csv and queries.csv", param_hint="--benchmark")
        else:
            console.print(
                "no real-photo benchmark found (looked in " + ", ".join(str(p) for p in looked)
                + "): the evaluate stage scores the generated demo shop only, which says how hard the generated task is"
            )
    size = DemoSize(products=products, garments=garments, backbone=backbone, epochs=epochs, rounds=rounds, seed=seed, benchmark=found)
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


def run(
    config: Path = typer.Option(..., exists=True, help="pipeline config (YAML), e.g. the demo's demo-config.yaml"),
    stage: Optional[str] = typer.Option(
        None, help=f"run only this stage from the latest upstream versions: {', '.join(STAGE_ORDER)} (crawl: the config's dataset source, if it has one)"
    ),
    home: Optional[str] = typer.Option(None, help=HOME_HELP),
) -> None:
    """Run the pipeline (skipping stages already published for these inputs), or one stage."""
    from street2shop.flows import stages as s
    from street2shop.flows.config import PipelineConfig
    from street2shop.flows.pipeline import pipeline

    home = resolve_home(home)
    cfg = PipelineConfig.from_file(config)
    if stage is None:
        _headline(pipeline(str(home), cfg))
        return
    if stage not in STAGE_ORDER:
        raise typer.BadParameter(f"unknown stage {stage!r}; one of {', '.join(STAGE_ORDER)}")
    h = str(home)
    runners = {
        "crawl": lambda: s.crawl_flow(h, cfg.crawl) if cfg.crawl is not None else s.source_flow(h, cfg.source),
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
