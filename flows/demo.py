"""The bundled demo's set-up: a generated shop served on loopback, and the pipeline config
that crawls and trains on it (``street2shop demo`` runs the two together).

``demo_config`` is also what the end-to-end tests and ``bench/pipeline.py`` use, with a
smaller shop and the ``tiny`` backbone.
"""

from __future__ import annotations

import os
import re
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from pydantic import BaseModel

from street2shop.cleaning.dedup import DedupParams
from street2shop.cleaning.noise import NoiseParams
from street2shop.crawler.core import CrawlParams
from street2shop.flows.config import PipelineConfig
from street2shop.models.features import FeatureParams
from street2shop.models.localise_training import LocaliserParams
from street2shop.models.mining import MineParams
from street2shop.models.training import TrainParams
from street2shop.models.views import ViewParams
from street2shop.retrieval.evaluation import Benchmark, EvaluateParams, LocaliseParams
from street2shop.retrieval.index import IndexParams
from street2shop.shop.generator import ShopParams, generate_shop
from street2shop.shop.server import ShopServer
from street2shop.tasks.looks import LooksConfig
from street2shop.tasks.outfits import OutfitConfig
from street2shop.tasks.promote import PromoteParams


class DemoSize(BaseModel):
    """Knobs that scale the demo: the default shows real clothes end to end on 2 CPU cores."""

    products: int = 300
    garments: str = "real"
    image_size: int = 224
    backbone: str = "efficientnet_lite0"
    #: the embedder's input size, for training, evaluation and serving alike (the untrained
    #: backbone loses a third of its real-photo top-20 from 224 to 160 px)
    train_image_size: int = 224
    #: training: a residual head on the frozen backbone, on cached views ("head"), or the
    #: whole network on photos ("fine_tune")
    recipe: str = "head"
    epochs: int = 10
    steps_per_epoch: int = 50
    #: items per training batch (P of P x K)
    batch_p: int = 48
    rounds: int = 1
    #: how a photo (or crop) becomes the square input: "centre" crops the centre after
    #: scaling the short side (real-photo top-1 0.29 vs 0.22 padded, 11 crops, untrained;
    #: bench/localise.py)
    resize: str = "centre"
    #: the query-side localisation grid: the whole photo plus crops of these sides of it
    crop_scales: list[float] = [0.75, 0.55]
    crop_positions: str = "corners+centre"
    #: precisions of the served model scored beside OpenVINO fp32 (int8 calibrated on training
    #: photos; bf16, about half int8's speed on the AMX development machine at fp32's accuracy,
    #: is left to bench/embed.py to keep the demo short)
    precisions: list[str] = ["openvino_int8"]
    seed: int = 0
    #: share of review photos the "labelling team" labelled; the noise filter decides the rest
    label_fraction: float = 0.6
    #: noise-filter features ("cnn": frozen EfficientNet-Lite0; "colour_edge": cheap)
    noise_features: str = "cnn"
    #: dedup passes ("embedding" needs the pretrained backbone)
    dedup_methods: list[str] = ["hash", "embedding"]
    #: training steps of the garment localiser's box head
    localiser_steps: int = 150
    #: a real-photo benchmark folder (``gallery.csv`` + ``queries.csv``) scored beside the
    #: demo's split and judging which model is served; None: none
    benchmark: Path | None = None


#: the head's training settings (a residual layer on 1,280-d descriptors learns fast). lr 1e-4:
#: at 1e-3 the head moved away from the pretrained descriptor and lost real-photo accuracy
#: (hm-dev top-1 0.215 vs the untrained 0.308); at 1e-4 it gained on both sets over 3 seeds
#: (bench/head_ablation.py, README)
HEAD_TRAINING = dict(lr=1e-4, head_lr_mult=1.0, margin=0.1, batch_k=4, weight_decay=1e-4, patience=3)
#: the demo's training settings per recipe, over ``TrainParams``' defaults
RECIPE_TRAINING = {"head": HEAD_TRAINING}

#: what the tests and CI use: procedural garments, a tiny CNN, seconds not minutes
TINY = DemoSize(
    products=16,
    garments="procedural",
    image_size=96,
    backbone="tiny",
    train_image_size=64,
    epochs=2,
    steps_per_epoch=4,
    crop_scales=[0.75],
    batch_p=4,
    precisions=[],
    noise_features="colour_edge",
    dedup_methods=["hash"],
    localiser_steps=30,
)


#: the real-photo development benchmark, where this repository's workspace keeps it
BENCHMARK_NAME = "hm-dev"
BENCHMARK_ENV = "STREET2SHOP_BENCHMARK"


def find_benchmark(explicit: Path | None = None) -> tuple[Path | None, list[Path]]:
    """The benchmark folder to use and the places looked in.

    ``explicit`` wins; else ``$STREET2SHOP_BENCHMARK``; else ``../shared/data/hm-dev`` beside
    the working directory or the repository. A folder counts when it holds ``gallery.csv``
    and ``queries.csv``.
    """
    if explicit is not None:
        return (explicit if _is_benchmark(explicit) else None), [explicit]
    looked: list[Path] = []
    if os.environ.get(BENCHMARK_ENV):
        looked.append(Path(os.environ[BENCHMARK_ENV]))
    repo = Path(__file__).resolve().parents[1]
    for base in (Path.cwd(), repo):
        candidate = (base / ".." / "shared" / "data" / BENCHMARK_NAME).resolve()
        if candidate not in looked:
            looked.append(candidate)
    return next((p for p in looked if _is_benchmark(p)), None), looked


def _is_benchmark(folder: Path) -> bool:
    return (folder / "gallery.csv").is_file() and (folder / "queries.csv").is_file()


def ensure_shop(shop_dir: Path, size: DemoSize) -> Path:
    """Generate the demo shop once; a complete shop folder is reused as it is."""
    if not (shop_dir / "catalog.json").exists():
        generate_shop(
            shop_dir,
            ShopParams(
                seed=size.seed,
                n_products=size.products,
                garments=size.garments,
                image_size=size.image_size,
                label_fraction=size.label_fraction,
            ),
        )
    return shop_dir


def demo_config(shop_dir: Path, base_url: str, size: DemoSize, progress: bool = True) -> PipelineConfig:
    return PipelineConfig(
        # loopback: the shop is ours, so the crawl may go faster than the polite default
        crawl=CrawlParams(base_url=base_url, progress=progress, concurrency=8, rate_limit_rps=400.0),
        labels_path=str(shop_dir / "labels.csv"),
        truth_items_csv=str(shop_dir / "truth" / "items.csv"),
        truth_boxes_csv=str(shop_dir / "truth" / "boxes.csv"),
        noise=NoiseParams(seed=size.seed, features=size.noise_features),
        dedup=DedupParams(seed=size.seed, methods=size.dedup_methods),
        views=ViewParams(
            backbone=size.backbone, pretrained=size.backbone != "tiny", seed=size.seed, image_size=size.train_image_size,
            resize=size.resize, crop_scales=size.crop_scales, crop_positions=size.crop_positions,
        ),
        train=TrainParams(
            recipe=size.recipe, backbone=size.backbone, pretrained=size.backbone != "tiny", image_size=size.train_image_size,
            resize=size.resize, epochs=size.epochs, steps_per_epoch=size.steps_per_epoch, batch_p=size.batch_p, seed=size.seed,
            **RECIPE_TRAINING.get(size.recipe, {}),
        ),
        rounds=size.rounds,
        mine=MineParams(seed=size.seed),
        # the garment localiser reads the map of the whole-photo pass the service makes
        localise=LocaliserParams(backbone=size.backbone, pretrained=size.backbone != "tiny", seed=size.seed,
                                 input_size=size.train_image_size, steps=size.localiser_steps,
                                 runtime="eager" if size.backbone == "tiny" else "openvino"),
        # the "pretrained" baseline needs a backbone with pretrained weights ("tiny" has none)
        evaluate=EvaluateParams(
            baselines=["colour_histogram", "hog"] + (["pretrained"] if size.backbone != "tiny" else []),
            benchmarks=[_benchmark(size.benchmark)] if size.benchmark is not None else [],
            # every street photo is searched as the crops the head trained on, as /search does
            localise=LocaliseParams(name="multicrop", options={"scales": size.crop_scales, "positions": size.crop_positions}),
            # the served precision: the fastest within 0.01 top-20 of fp32 on the real photos
            precisions=size.precisions,
        ),
        index=IndexParams(seed=size.seed),
        # real photos judge the served model when there are some; else the demo's own split
        promote=PromoteParams(metric=f"benchmark:{_benchmark(size.benchmark).name}:top20" if size.benchmark is not None else "served_top20"),
        # a shop of real garments has curated outfits ("complete the look"); a drawn one has none
        outfits=_outfits(size) if size.garments == "real" else None,
        looks=LooksConfig(features=_outfits(size).features) if size.garments == "real" else None,
    )


def _outfits(size: DemoSize) -> OutfitConfig:
    tiny = size.backbone == "tiny"
    return OutfitConfig(features=FeatureParams(backbone=size.backbone, image_size=64 if tiny else 224, seed=size.seed))


def _benchmark(folder: Path) -> Benchmark:
    name = BENCHMARK_NAME if folder.name == BENCHMARK_NAME else re.sub(r"[^a-z0-9_-]+", "-", folder.name.lower()).strip("-") or "benchmark"
    return Benchmark(name=name, gallery=str(folder / "gallery.csv"), queries=str(folder / "queries.csv"))


@contextmanager
def serving_demo_shop(home: Path, size: DemoSize) -> Iterator[tuple[Path, str]]:
    """Generate (once) and serve the demo shop on loopback for the duration of the block."""
    shop_dir = ensure_shop(home / "demo-shop" / f"{size.garments}-{size.products}-s{size.seed}", size)
    with ShopServer(shop_dir) as server:
        yield shop_dir, server.url
