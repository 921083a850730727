"""Features stage task: the frozen backbone's features of every shop photo (or of every post's
photo of a lookbook), published once.

The outfit models (and the looks models) train on these, so their training takes a minute
instead of hours on CPU; the artifact is versioned by the photos and ``FeatureParams``, so a
second model stage, or a re-run, reuses it.
"""

from __future__ import annotations

import time

import pyarrow.compute as pc
from prefect import task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel, ConfigDict, Field

from street2shop.cleaning.outfits import OutfitSplitParams
from street2shop.models.features import FeatureParams, feature_extractor, photo_features
from street2shop.storage.names import FEATURES, PHOTO_FEATURES
from street2shop.storage.schemas import embeddings_schema, vectors_table
from street2shop.storage.store import ArtifactRef, ArtifactStore, images_with_paths
from street2shop.storage.stages import STAGES_BY_NAME
from street2shop.tasks.stage import StageResult, report_to_prefect, run_stage

class FeaturesConfig(BaseModel):
    """A config section of stages on frozen photo features (``outfits:``, ``looks:``): the
    features, the split, and (in the subclass) the training and evaluation params."""

    model_config = ConfigDict(extra="forbid")

    features: FeatureParams = Field(default_factory=FeatureParams)
    split: OutfitSplitParams = Field(default_factory=OutfitSplitParams)


STAGE = FEATURES
CODE_VERSION = "1"
OUTPUTS = STAGES_BY_NAME[STAGE].outputs  # as storage/stages.py declares them


def run_features(store: ArtifactStore, images: ArtifactRef, params: FeatureParams) -> StageResult:
    """Features of the shop photos of ``images`` (a crawl's or a data set's), or of every
    photo of a table without roles (``snaps``)."""

    def compute(writers) -> None:
        table = images_with_paths(store, images)
        shop = table.filter(pc.equal(table.column("role"), "shop")) if "role" in table.column_names else table
        paths: dict[str, str] = {}
        for image_id, path in zip(shop.column("image_id").to_pylist(), shop.column("path").to_pylist()):
            paths.setdefault(image_id, path)  # a photo shared by items is computed once
        ids = sorted(paths)
        started = time.perf_counter()
        vectors = photo_features(feature_extractor(params), [paths[i] for i in ids], params)
        seconds = time.perf_counter() - started
        w = writers[PHOTO_FEATURES]
        w.write_table(vectors_table(ids, vectors), embeddings_schema(vectors.shape[1]))
        w.metrics.update({"photos": len(ids), "dim": int(vectors.shape[1]), "seconds": round(seconds, 2),
                          "photos_per_s": round(len(ids) / max(seconds, 1e-9), 2)})

    return run_stage(store, STAGE, CODE_VERSION, OUTPUTS, compute, inputs={"images": images}, params=params)


@task(name="features", cache_policy=NO_CACHE)
def features_task(home: str, images: ArtifactRef, params: FeatureParams) -> StageResult:
    result = run_features(ArtifactStore(home), images, params)
    report_to_prefect(result, "features")
    return result
