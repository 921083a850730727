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
from street2shop.flows.outfits import features_of
from street2shop.storage.store import ArtifactRef, ArtifactStore
from street2shop.models.looks_view import LooksRefs
from street2shop.tasks.looks import LooksConfig, looks_evaluate_task, looks_train_task
from street2shop.tasks.stage import StageResult


def latest_looks_refs(home: str, params: FeatureParams) -> LooksRefs:
    """The newest crawl with a lookbook, its groups and features."""
    store = ArtifactStore(home)
    snaps = store.newest(N.CRAWL, N.SNAPS, nonempty=True,
                         missing="no crawl with a lookbook is published: crawl a shop with snapshot posts first")
    images = snaps.sibling(N.IMAGES)
    return LooksRefs.of_crawl(images, features_of(home, images, params), features_of(home, snaps, params),
                              store.newest(N.DEDUP, N.GROUPS, with_input=images))


@flow(name="looks-train", log_prints=True)
def looks_train_flow(home: str, cfg: LooksConfig, refs: LooksRefs | None = None,
                     checkpoint: ArtifactRef | None = None) -> StageResult:
    if checkpoint is None:  # the street-to-shop embedder: a baseline, and a descriptor the heads may start from
        checkpoint = ArtifactStore(home).latest_or_none(N.EVALUATE, N.CHECKPOINT)
    return looks_train_task(home, refs or latest_looks_refs(home, cfg.features), cfg.split, cfg.train, checkpoint)


@flow(name="looks-evaluate", log_prints=True)
def looks_evaluate_flow(home: str, cfg: LooksConfig, refs: LooksRefs | None = None, model: ArtifactRef | None = None,
                        checkpoint: ArtifactRef | None = None) -> StageResult:
    refs = refs or latest_looks_refs(home, cfg.features)
    store = ArtifactStore(home)
    model = model or store.newest(N.LOOKS_TRAIN, N.LOOKS_MODEL, with_input=refs.snap_features,
                                  missing="no looks model trained on these features: run looks_train first")
    if checkpoint is None:  # the street-to-shop embedder the evaluate stage chose, when there is one
        checkpoint = store.latest_or_none(N.EVALUATE, N.CHECKPOINT)
    return looks_evaluate_task(home, refs, model, cfg.evaluate, checkpoint)
