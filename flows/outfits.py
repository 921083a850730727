"""The outfit flows ("complete the look"): features -> outfit_train -> outfit_evaluate.

They need the photos (a crawl's or a data set's ``items`` and ``images``), the shop's
``outfits`` and, for a crawl, the dedup stage's product groups, and nothing of the
street-to-shop embedder's stages: in the pipeline's DAG they sit beside train <-> mine.
Each flow runs alone from the latest published inputs (``street2shop run --stage
outfit_train``), and ``polyvore_flow`` runs the three on a Polyvore Outfits folder.
"""

from __future__ import annotations

from prefect import flow

from street2shop.models.features import FeatureParams
from street2shop.models.outfit_view import OutfitRefs
from street2shop.sources.polyvore import PolyvoreParams
from street2shop.storage import names as N
from street2shop.storage.store import (
    ArtifactNotFound,
    ArtifactRef,
    ArtifactStore,
    version_id,
)
from street2shop.tasks import features as F
from street2shop.tasks.features import features_task
from street2shop.tasks.outfits import OutfitConfig, outfit_evaluate_task, outfit_train_task, polyvore_task
from street2shop.tasks.stage import StageResult


def latest_outfit_inputs(home: str) -> tuple[ArtifactRef, ArtifactRef | None]:
    """(images, groups) the outfit stages use by default: the newest crawl (or Polyvore)
    that published outfits, and for a crawl the newest dedup groups of it."""
    store = ArtifactStore(home)
    outfits = store.newest((N.CRAWL, N.POLYVORE), N.OUTFITS, nonempty=True,
                           missing="no crawl or data set with outfits is published: crawl a shop with outfits first")
    images = outfits.sibling(N.IMAGES)
    groups = store.newest(N.DEDUP, N.GROUPS, with_input=images) if outfits.stage == N.CRAWL else None
    return images, groups


def features_of(home: str, photos: ArtifactRef, params: FeatureParams) -> ArtifactRef:
    """The features of ``photos`` with these params (the version run_stage gives them)."""
    ref = ArtifactRef(stage=N.FEATURES, name=N.PHOTO_FEATURES,
                      version=version_id(N.FEATURES, F.CODE_VERSION, {"images": photos}, params))
    if not ArtifactStore(home).exists(ref):
        raise ArtifactNotFound(f"no features of {photos} with these parameters: run the features stage first")
    return ref


def _latest_refs(home: str, params: FeatureParams) -> OutfitRefs:
    images, groups = latest_outfit_inputs(home)
    return OutfitRefs.of_photos(images, groups, features_of(home, images, params))


@flow(name="features", log_prints=True)
def features_flow(home: str, params: FeatureParams, images: ArtifactRef | None = None) -> StageResult:
    images = images or latest_outfit_inputs(home)[0]
    return features_task(home, images, params)


@flow(name="outfit-train", log_prints=True)
def outfit_train_flow(home: str, cfg: OutfitConfig, refs: OutfitRefs | None = None) -> StageResult:
    refs = refs or _latest_refs(home, cfg.features)
    return outfit_train_task(home, refs, cfg.split, cfg.train)


@flow(name="outfit-evaluate", log_prints=True)
def outfit_evaluate_flow(home: str, cfg: OutfitConfig, refs: OutfitRefs | None = None,
                         model: ArtifactRef | None = None) -> StageResult:
    refs = refs or _latest_refs(home, cfg.features)
    model = model or ArtifactStore(home).newest(N.OUTFIT_TRAIN, N.OUTFIT_MODEL, with_input=refs.features,
                                                missing="no outfit model trained on these features: run outfit_train first")
    return outfit_evaluate_task(home, refs, model, cfg.evaluate)


def outfit_stages(home: str, cfg: OutfitConfig, images: ArtifactRef, groups: ArtifactRef | None) -> list[tuple[str, StageResult]]:
    """The three stages in order, on one set of photos: (label, result) each."""
    features = features_flow(home, cfg.features, images)
    refs = OutfitRefs.of_photos(images, groups, features[N.PHOTO_FEATURES])
    trained = outfit_train_flow(home, cfg, refs)
    evaluated = outfit_evaluate_flow(home, cfg, refs, trained[N.OUTFIT_MODEL])
    return [(N.FEATURES, features), (N.OUTFIT_TRAIN, trained), (N.OUTFIT_EVALUATE, evaluated)]


@flow(name="polyvore-outfits", log_prints=True)
def polyvore_flow(home: str, params: PolyvoreParams, cfg: OutfitConfig) -> list[tuple[str, StageResult]]:
    """A Polyvore Outfits folder, end to end: published, features, the models, its own questions."""
    source = polyvore_task(home, params)
    return [(N.POLYVORE, source), *outfit_stages(home, cfg, source[N.IMAGES], None)]
