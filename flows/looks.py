"""The shop-the-look flows: features of the posts' photos, looks_train, looks_evaluate.

They need a crawl with a lookbook (``snaps``, ``snap_items``), its items' features (the
features stage, shared with the outfit flows) and, for a crawl, the dedup stage's groups;
``looks_evaluate`` also scores the street-to-shop embedder's own embedding when it is given
the served checkpoint. Each runs alone from the latest published inputs (``street2shop run
--stage looks_train``).
"""

from __future__ import annotations

from prefect import flow

from street2shop.models.features import FeatureParams
from street2shop.storage import names as N
from street2shop.storage.store import ArtifactNotFound, ArtifactRef, ArtifactStore, version_id
from street2shop.tasks import features as F
from street2shop.tasks.looks import LooksConfig, LooksRefs, looks_evaluate_task, looks_train_task
from street2shop.tasks.stage import StageResult


def _sibling(ref: ArtifactRef, name: str) -> ArtifactRef:
    return ArtifactRef(stage=ref.stage, name=name, version=ref.version)


def _features_of(home: str, photos: ArtifactRef, params: FeatureParams) -> ArtifactRef:
    ref = ArtifactRef(stage=N.FEATURES, name=N.PHOTO_FEATURES, version=version_id(N.FEATURES, F.CODE_VERSION, {"images": photos}, params))
    if not ArtifactStore(home).exists(ref):
        raise ArtifactNotFound(f"no features of {photos} with these parameters: run the features stage first")
    return ref


def latest_looks_refs(home: str, params: FeatureParams) -> LooksRefs:
    """The newest crawl with a lookbook, its groups and features."""
    store = ArtifactStore(home)
    found = [m for m in store.manifests(N.CRAWL, N.SNAPS) if (m.rows or 0) > 0]
    if not found:
        raise ArtifactNotFound("no crawl with a lookbook is published: crawl a shop with snapshot posts first")
    snaps = max(found, key=lambda m: m.created_at).ref
    images = _sibling(snaps, N.IMAGES)
    runs = [m for m in store.manifests(N.DEDUP, N.GROUPS) if images in m.inputs]
    return LooksRefs(items=_sibling(snaps, N.ITEMS), images=images, snaps=snaps, snap_items=_sibling(snaps, N.SNAP_ITEMS),
                     item_features=_features_of(home, images, params), snap_features=_features_of(home, snaps, params),
                     groups=max(runs, key=lambda m: m.created_at).ref if runs else None)


@flow(name="looks-train", log_prints=True)
def looks_train_flow(home: str, cfg: LooksConfig, refs: LooksRefs | None = None) -> StageResult:
    return looks_train_task(home, refs or latest_looks_refs(home, cfg.features), cfg.split, cfg.train)


@flow(name="looks-evaluate", log_prints=True)
def looks_evaluate_flow(home: str, cfg: LooksConfig, refs: LooksRefs | None = None, model: ArtifactRef | None = None,
                        checkpoint: ArtifactRef | None = None) -> StageResult:
    refs = refs or latest_looks_refs(home, cfg.features)
    store = ArtifactStore(home)
    if model is None:
        runs = [m for m in store.manifests(N.LOOKS_TRAIN, N.LOOKS_MODEL) if refs.snap_features in m.inputs]
        if not runs:
            raise ArtifactNotFound("no looks model trained on these features: run looks_train first")
        model = max(runs, key=lambda m: m.created_at).ref
    if checkpoint is None:  # the street-to-shop embedder the evaluate stage chose, when there is one
        checkpoint = store.latest_or_none(N.EVALUATE, N.CHECKPOINT)
    return looks_evaluate_task(home, refs, model, cfg.evaluate, checkpoint)


def looks_stages(home: str, cfg: LooksConfig, crawled: StageResult, groups: ArtifactRef | None,
                 checkpoint: ArtifactRef | None) -> list[tuple[str, StageResult]]:
    """The posts' features, looks_train and looks_evaluate, for the pipeline."""
    from street2shop.flows.outfits import features_flow

    item_features = features_flow(home, cfg.features, crawled[N.IMAGES])  # shared with the outfit stages
    snap_features = features_flow(home, cfg.features, crawled[N.SNAPS])
    refs = LooksRefs(items=crawled[N.ITEMS], images=crawled[N.IMAGES], snaps=crawled[N.SNAPS], snap_items=crawled[N.SNAP_ITEMS],
                     item_features=item_features[N.PHOTO_FEATURES], snap_features=snap_features[N.PHOTO_FEATURES], groups=groups)
    trained = looks_train_flow(home, cfg, refs)
    evaluated = looks_evaluate_flow(home, cfg, refs, trained[N.LOOKS_MODEL], checkpoint)
    return [(N.FEATURES, item_features), (f"{N.FEATURES}[snaps]", snap_features), (N.LOOKS_TRAIN, trained),
            (N.LOOKS_EVALUATE, evaluated)]
