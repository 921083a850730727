"""``street2shop shop ...``: generate, grow and serve the demo shop from the command line."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

# The generator (scipy), the server and the fault settings (pydantic) are imported inside the
# commands: `street2shop --help` stays fast.
from street2shop.cli._errors import InputError, describe

shop_app = typer.Typer(help="The generated demo shop: make one, grow it, serve it over HTTP.", no_args_is_help=True, rich_markup_mode=None)


@shop_app.command("generate")
def generate_cmd(
    out_dir: Annotated[Path, typer.Argument(help="New folder for the shop.")],
    seed: Annotated[int, typer.Option(help="Same seed, same bytes.")] = 0,
    products: Annotated[int, typer.Option(help="Products, re-listings included.")] = 300,
    garments: Annotated[str, typer.Option(help="'real' (shipped CC0 photos) or 'procedural' (drawn).")] = "real",
    image_size: Annotated[int, typer.Option(help="Side of every photo, px.")] = 224,
    workers: Annotated[int, typer.Option(help="Processes drawing photos (0: one per CPU, at most 4).")] = 0,
) -> None:
    """Generate a shop: catalogue, photos, ground truth and noise labels."""
    from pydantic import ValidationError

    from street2shop.shop.generator import ShopParams, generate_shop

    if garments not in ("real", "procedural"):
        raise typer.BadParameter(f"--garments must be 'real' or 'procedural', got {garments!r}")
    t0 = time.perf_counter()
    try:
        params = ShopParams(seed=seed, n_products=products, garments=garments, image_size=image_size)
    except ValidationError as e:
        raise InputError(describe(e)[0]) from None
    if out_dir.exists() and any(out_dir.iterdir()):
        what = "holds a shop" if (out_dir / "catalog.json").exists() else "is not empty"
        raise InputError(f"{out_dir} {what}: give a new folder (`street2shop shop grow {out_dir}` adds to a shop)")
    path = generate_shop(out_dir, params, workers=workers or None)
    n_images = sum(1 for _ in (path / "images").iterdir())
    typer.echo(f"{path}: {products} products, {n_images} photos in {time.perf_counter() - t0:.1f}s")


@shop_app.command("grow")
def grow_cmd(
    shop_dir: Annotated[Path, typer.Argument(help="An existing shop folder.")],
    products: Annotated[int, typer.Option(help="New products.")] = 10,
    reviews: Annotated[int, typer.Option(help="New reviews on existing items.")] = 50,
    seed: Annotated[int, typer.Option(help="Seed of this growth step.")] = 1,
) -> None:
    """Add products and newer reviews to a shop (a running server picks them up)."""
    from street2shop.shop.generator import grow_shop

    if not (shop_dir / "catalog.json").is_file():
        raise InputError(f"{shop_dir} holds no shop (no catalog.json): make one with `street2shop shop generate {shop_dir}`")
    grow_shop(shop_dir, products, reviews, seed)
    typer.echo(f"{shop_dir}: +{products} products, +{reviews} reviews on existing items")


@shop_app.command("serve")
def serve_cmd(
    shop_dir: Annotated[Path, typer.Argument(help="A shop folder made by `generate`.")],
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port (0: any free one).")] = 8000,
    fault_seed: Annotated[int, typer.Option(help="Seed of the fault draws.")] = 0,
    latency_ms: Annotated[float, typer.Option(help="Added to every response.")] = 0.0,
    p_429: Annotated[float, typer.Option("--p-429", help="Fraction of URLs throttled at first.")] = 0.0,
    retry_after_s: Annotated[int, typer.Option(help="Retry-After of a 429.")] = 1,
    p_5xx: Annotated[float, typer.Option("--p-5xx", help="Fraction of URLs failing with 500/503 at first.")] = 0.0,
    p_corrupt_image: Annotated[float, typer.Option(help="Fraction of images always garbage.")] = 0.0,
    p_truncated_image: Annotated[float, typer.Option(help="Fraction of images always cut in half.")] = 0.0,
    p_malformed_page: Annotated[float, typer.Option(help="Fraction of feedback pages (after page 1) broken.")] = 0.0,
    hostile: Annotated[list[str] | None, typer.Option(
        help="Hostile behaviours to switch on (repeat, or comma-separate; a wrong name lists them), or 'all'.")] = None,
    ssrf_url: Annotated[str | None, typer.Option(help="Where the SSRF traps point (default: FaultConfig's).")] = None,
    drip_interval_s: Annotated[float, typer.Option(help="Seconds between the bytes of a slow-drip answer.")] = 0.05,
) -> None:
    """Serve a shop over HTTP until Ctrl-C, optionally with injected faults."""
    from pydantic import ValidationError

    from street2shop.shop.faults import HOSTILE, FaultConfig
    from street2shop.shop.server import serve

    names = {n.strip() for arg in hostile or [] for n in arg.split(",") if n.strip()}
    if "all" in names:
        names = (names - {"all"}) | set(HOSTILE)
    try:
        faults = FaultConfig(
            seed=fault_seed, latency_ms=latency_ms, p_429=p_429, retry_after_s=retry_after_s, p_5xx=p_5xx,
            p_corrupt_image=p_corrupt_image, p_truncated_image=p_truncated_image, p_malformed_page=p_malformed_page,
            hostile=frozenset(names), drip_interval_s=drip_interval_s, **({"ssrf_url": ssrf_url} if ssrf_url else {}),
        )
    except ValidationError as e:
        raise InputError(describe(e)[0]) from None
    if not (shop_dir / "catalog.json").is_file():
        raise InputError(f"{shop_dir} holds no shop (no catalog.json): make one with `street2shop shop generate {shop_dir}`")
    serve(shop_dir, host=host, port=port, faults=faults)
