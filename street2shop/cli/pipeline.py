"""``street2shop demo`` and ``street2shop run``: the pipeline on the demo shop, or on a config.

Both stop cleanly on SIGTERM or SIGINT (``kill``, ``timeout``, Ctrl-C, a container stop):
the signal becomes an exception that unwinds the command, so the Prefect runs are marked
crashed, the demo shop's server closes, nothing half-written becomes visible, and the process
exits normally, which is what stops Prefect's temporary API server (a ``uvicorn`` subprocess
it starts when no server is configured, stopped only from ``atexit``): dying of the signal,
as before, left it running as an orphan. Re-running the same command resumes.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from street2shop.cli._common import HOME_HELP, console, resolve_home
from street2shop.storage.stages import STAGE_NAMES


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


class _Stopped(BaseException):
    """A SIGTERM or SIGINT received by ``demo`` or ``run`` (a BaseException, like
    KeyboardInterrupt: Prefect marks the runs it unwinds as crashed)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@contextmanager
def _stops_cleanly() -> Iterator[None]:
    """Turn SIGTERM and SIGINT into :class:`_Stopped` for the block, then exit 128 + signal.

    Inside a flow run Prefect's own SIGTERM handler runs first: it marks the run crashed and
    then re-sends the signal to the handler it replaced, this one. A signal that arrives
    while the block is already unwinding is ignored, so the clean-up is not cut short.
    """
    stopping: list[int] = []

    def on_signal(signum: int, frame: object) -> None:
        if stopping:
            return
        stopping.append(signum)
        raise _Stopped(signum)

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    except _Stopped as exc:
        # Exiting normally (not dying of the signal) is what stops Prefect's temporary API
        # server: its atexit hook runs, after Prefect's log and event workers have drained.
        console.print(
            f"stopped by {signal.Signals(exc.signum).name}: runs marked crashed, nothing half-written is "
            "published; run the same command again to resume", highlight=False,
        )
        raise typer.Exit(128 + exc.signum) from None
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def demo(
    home: Optional[Path] = typer.Option(None, help="artifact store root (default: $STREET2SHOP_HOME or ./.street2shop)"),
    products: int = typer.Option(300, help="products in the generated demo shop"),
    garments: str = typer.Option("real", help="'real' (bundled CC0 photos) or 'procedural'"),
    backbone: str = typer.Option("efficientnet_lite0", help="backbone by name ('tiny' for a quick smoke run)"),
    epochs: Optional[int] = typer.Option(None, help="training epochs (default: the demo's, 10 of 50 steps)"),
    rounds: int = typer.Option(1, help="offline re-mining rounds"),
    seed: int = typer.Option(0),
    benchmark: Optional[Path] = typer.Option(
        None, help="a real-photo benchmark folder (gallery.csv, queries.csv) that judges the model "
        "(default: $STREET2SHOP_BENCHMARK, else ../shared/data/hm-dev when it is there)",
    ),
    no_benchmark: bool = typer.Option(False, "--no-benchmark", help="score the demo shop's own split only"),
) -> None:
    """Generate a demo shop, serve it on loopback and run the whole pipeline on it."""
    _check_demo_options(products, garments, backbone, epochs, rounds)
    with _stops_cleanly():
        _demo(resolve_home(home), products, garments, backbone, epochs, rounds, seed, benchmark, no_benchmark)


def _check_demo_options(products: int, garments: str, backbone: str, epochs: int | None, rounds: int) -> None:
    """Bad sizes are refused before a shop is generated or a server started."""
    from street2shop.cli._errors import InputError

    if garments not in ("real", "procedural"):
        raise InputError(f"--garments {garments!r}: one of 'real', 'procedural'")
    for option, value in (("--products", products), ("--epochs", epochs), ("--rounds", rounds)):
        if value is not None and value < (2 if option == "--products" else 0):
            raise InputError(f"{option} {value}: must be at least {2 if option == '--products' else 0}")
    from street2shop.models.backbones import BACKBONES

    if backbone not in BACKBONES.names():
        raise InputError(f"--backbone {backbone!r}: one of {', '.join(BACKBONES.names())}")


def _demo(
    home: Path, products: int, garments: str, backbone: str, epochs: int, rounds: int, seed: int,
    benchmark: Path | None, no_benchmark: bool,
) -> None:
    from street2shop.flows.demo import DemoSize, demo_config, find_benchmark, serving_demo_shop
    from street2shop.flows.pipeline import pipeline

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
    size = DemoSize(products=products, garments=garments, backbone=backbone, rounds=rounds, seed=seed, benchmark=found,
                    **({"epochs": epochs} if epochs is not None else {}))
    if backbone == "tiny":
        size = size.model_copy(update={"train_image_size": 64})
    if products < 2 * size.batch_p:  # a small shop has fewer training items than a P x K batch needs
        size = size.model_copy(update={"batch_p": max(4, products // 2)})
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
        None, help=f"run only this stage from the latest upstream versions: {', '.join(STAGE_NAMES)} (crawl: the config's dataset source, if it has one)"
    ),
    home: Optional[str] = typer.Option(None, help=HOME_HELP),
) -> None:
    """Run the pipeline (skipping stages already published for these inputs), or one stage."""
    if stage is not None and stage not in STAGE_NAMES:
        raise typer.BadParameter(f"unknown stage {stage!r}; one of {', '.join(STAGE_NAMES)}")
    with _stops_cleanly():
        _run(config, stage, resolve_home(home))


def _run(config: Path, stage: str | None, home: Path | str) -> None:
    from street2shop.flows.config import PipelineConfig
    from street2shop.flows.pipeline import pipeline
    from street2shop.flows.runners import Run, StageNotConfigured, run_stages
    from street2shop.storage.stages import STAGES_BY_NAME
    from street2shop.storage.store import ArtifactStore

    cfg = _config(config, PipelineConfig)
    if stage is None:
        _headline(pipeline(str(home), cfg))  # the flow holds the store's lock
        return
    run = Run(str(home), cfg, alone=True)
    try:
        with ArtifactStore(home).lock():  # not beside a pipeline run on the same store
            run_stages(run, (STAGES_BY_NAME[stage],))
    except StageNotConfigured as exc:
        raise typer.BadParameter(f"{exc} {config}", param_hint="--stage") from None
    _, result = run.steps[-1]
    console.print(f"{stage}: version {result.version} ({'reused' if result.skipped else 'new'})")
    for key, value in sorted(result.metrics.items()):
        console.print(f"  {key}: {value}")


def _config(path: Path, config_class):
    """The pipeline config at ``path``; a file that is not valid YAML, or a field that does not
    validate, is one line naming the file and the field."""
    import yaml
    from pydantic import ValidationError

    from street2shop.cli._errors import InputError, describe

    try:
        data = yaml.safe_load(path.read_text())
        # the config's top level ignores what it does not know; a typo there would go unseen
        unknown = sorted(set(data) - set(config_class.model_fields)) if isinstance(data, dict) else []
        if unknown:
            raise InputError(f"{path}: unknown section {', '.join(unknown)}; known: {', '.join(config_class.model_fields)}")
        return config_class.from_file(path)
    except (yaml.YAMLError, ValidationError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: {describe(exc)[0]}") from None

