"""One Prefect flow per stage, so any stage can be run (or re-run after a failure) alone.

Each flow takes the references of its inputs (defaulting to the latest published
versions) and returns a :class:`StageResult` of references to what it published.
"""

from __future__ import annotations

from prefect import flow

from street2shop.cleaning.dedup import DedupParams
from street2shop.cleaning.noise import NoiseParams
from street2shop.crawler.core import CrawlParams
from street2shop.models.localise_training import LocaliserParams
from street2shop.models.mining import MineParams
from street2shop.models.recipes import recipe_of
from street2shop.models.training import TrainParams
from street2shop.models.views import ViewParams
from street2shop.retrieval.evaluation import Benchmark, EvaluateParams
from street2shop.retrieval.index import IndexParams
from street2shop.storage import names as N
from street2shop.storage.store import ArtifactRef, ArtifactStore
from street2shop.tasks.crawl import crawl_task
from street2shop.tasks.data import DataRefs
from street2shop.tasks.dedup import dedup_task
from street2shop.tasks.evaluate import evaluate_task
from street2shop.tasks.index import build_index_task
from street2shop.tasks.localise import localise_task
from street2shop.tasks.mine import mine_task
from street2shop.tasks.noise import noise_filter_task
from street2shop.tasks.source import SourceParams, source_task
from street2shop.tasks.stage import StageResult
from street2shop.tasks.train import train_task
from street2shop.tasks.views import views_task


def latest_photos(store: ArtifactStore, name: str = N.IMAGES) -> ArtifactRef:
    """The newest ``images`` (or ``items``) of a crawl or a dataset source, whichever is newer."""
    return store.newest((N.CRAWL, N.SOURCE), name) or store.latest(N.CRAWL, name)  # latest: the usual error


def latest_data_refs(home: str) -> DataRefs:
    """The newest published clean data (what ``run --stage`` uses for train/mine/evaluate)."""
    store = ArtifactStore(home)
    return DataRefs(
        items=latest_photos(store, N.ITEMS),
        images=latest_photos(store, N.IMAGES),
        groups=store.latest(N.DEDUP, N.GROUPS),
        splits=store.latest(N.DEDUP, N.SPLITS),
        noise_scores=store.latest(N.NOISE, N.NOISE_SCORES),
        noise_labels=store.latest(N.NOISE, N.NOISE_LABELS),
    )


@flow(name="crawl", log_prints=True)
def crawl_flow(home: str, params: CrawlParams) -> StageResult:
    return crawl_task(home, params)


@flow(name="source", log_prints=True)
def source_flow(home: str, params: SourceParams) -> StageResult:
    return source_task(home, params)


@flow(name="noise-filter", log_prints=True)
def noise_filter_flow(home: str, labels_path: str | None, params: NoiseParams, images: ArtifactRef | None = None) -> StageResult:
    images = images or latest_photos(ArtifactStore(home))
    return noise_filter_task(home, images, labels_path, params)


@flow(name="dedup-merge", log_prints=True)
def dedup_flow(
    home: str, params: DedupParams, items: ArtifactRef | None = None, images: ArtifactRef | None = None, truth_items_csv: str | None = None
) -> StageResult:
    store = ArtifactStore(home)
    items = items or latest_photos(store, N.ITEMS)
    images = images or latest_photos(store)
    return dedup_task(home, items, images, params, truth_items_csv)


@flow(name="views", log_prints=True)
def views_flow(home: str, params: ViewParams, data: DataRefs | None = None) -> StageResult:
    return views_task(home, data or latest_data_refs(home), params)


def _views_for(home: str, params: TrainParams, views: ArtifactRef | None) -> ArtifactRef | None:
    """The cached views a head trains on (the newest, when run alone); none to fine-tune."""
    if not recipe_of(params).uses_views:
        return None
    return views or ArtifactStore(home).latest(N.VIEWS, N.VIEWS)


@flow(name="train", log_prints=True)
def train_flow(
    home: str, params: TrainParams, round: int = 0, data: DataRefs | None = None, init: ArtifactRef | None = None,
    triplets: ArtifactRef | None = None, views: ArtifactRef | None = None,
) -> StageResult:
    return train_task(home, data or latest_data_refs(home), params, round, init, triplets, _views_for(home, params, views))


@flow(name="mine", log_prints=True)
def mine_flow(
    home: str, params: MineParams, checkpoint: ArtifactRef | None = None, data: DataRefs | None = None,
    views: ArtifactRef | None = None, train: TrainParams | None = None,
) -> StageResult:
    """A mining round with ``checkpoint``: over the cached views when ``train`` (the training
    params of the rounds) is a recipe that trains on them, else over the training photos."""
    checkpoint = checkpoint or ArtifactStore(home).latest(N.TRAIN, N.CHECKPOINT)
    views = _views_for(home, train, views) if train is not None else views
    street_crops = (train or TrainParams()).street_crops
    return mine_task(home, data or latest_data_refs(home), checkpoint, params, views, street_crops)


@flow(name="localise", log_prints=True)
def localise_flow(
    home: str, params: LocaliserParams, data: DataRefs | None = None, truth_boxes_csv: str | None = None,
    benchmarks: list[Benchmark] | None = None,
) -> StageResult:
    """The garment localiser, learned from the training street photos; scored against the
    shop's true boxes and each benchmark's where there are some."""
    return localise_task(home, data or latest_data_refs(home), params, truth_boxes_csv, benchmarks or [])


@flow(name="evaluate", log_prints=True)
def evaluate_flow(
    home: str, params: EvaluateParams, checkpoint: ArtifactRef | None = None, data: DataRefs | None = None,
    localiser: ArtifactRef | None = None,
) -> StageResult:
    checkpoint = checkpoint or ArtifactStore(home).latest(N.TRAIN, N.CHECKPOINT)
    return evaluate_task(home, data or latest_data_refs(home), checkpoint, params, localiser=localiser)


@flow(name="build-index", log_prints=True)
def build_index_flow(
    home: str,
    params: IndexParams,
    embeddings: ArtifactRef | None = None,
    images: ArtifactRef | None = None,
    checkpoint: ArtifactRef | None = None,
) -> StageResult:
    store = ArtifactStore(home)
    embeddings = embeddings or store.latest(N.EVALUATE, N.EMBEDDINGS)
    images = images or latest_photos(store)
    checkpoint = checkpoint or _checkpoint_of(store, embeddings)
    return build_index_task(home, embeddings, images, checkpoint, params)


def _checkpoint_of(store: ArtifactStore, embeddings: ArtifactRef) -> ArtifactRef:
    """The checkpoint an embeddings version was made with: the evaluate stage's served model
    published beside it, else (older versions) the trained checkpoint of its lineage."""
    served = ArtifactRef(stage=embeddings.stage, name=N.CHECKPOINT, version=embeddings.version)
    if store.exists(served):
        return served
    for ref in store.manifest(embeddings).inputs:
        if ref.stage == N.TRAIN and ref.name == N.CHECKPOINT:
            return ref
    raise ValueError(f"{embeddings} records no checkpoint among its inputs")
