"""What "complete the look" serves: the published outfit model of the crawl the search index
indexes, found by its lineage, with the features of every item.

:func:`find_outfit_model` looks for the newest ``outfit_train`` version whose inputs include
the served crawl's ``images``; :class:`OutfitEngine` loads it with the item view the stage
trained on (features, types) and the frozen feature extractor the features were made with,
so a photo is featurised exactly as the catalogue was. Plain Python, no HTTP; the router is
:mod:`street2shop.service.outfits`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial

import numpy as np
import torch

from street2shop.models.features import FeatureParams
from street2shop.models.outfit_view import OutfitRefs, load_view
from street2shop.models.outfits import load_outfit_models
from street2shop.service.side_engine import SIDE_INFERENCE, EngineInputError, SideEngine, find_model, served_by_measurement
from street2shop.storage import names as N
from street2shop.storage.store import ArtifactRef, ArtifactStore


#: a request the outfit engine cannot answer (the API answers 4xx)
OutfitInputError = EngineInputError
#: ``(store, crawl_version)`` -> the newest outfit model trained on that crawl (or data set)
find_outfit_model = partial(find_model, N.OUTFIT_TRAIN, N.OUTFIT_MODEL)


@dataclass(frozen=True)
class Completion:
    item_id: str
    score: float


class OutfitEngine(SideEngine):
    """Compatibility of items (and photos) of one crawl, by the served outfit model."""

    def __init__(self, store: ArtifactStore, model_ref: ArtifactRef, inference_mode: str = SIDE_INFERENCE) -> None:
        refs = OutfitRefs.of_model(store, model_ref)
        self.version = model_ref.version
        self.crawl = refs.images.version
        self.models = load_outfit_models(store.file(model_ref, N.OUTFIT_MODEL_FILE))
        self.view = load_view(store, refs)
        #: the model served (a variant, or "backbone": the untrained features) and why
        self.served = self.models.served_name
        self.selection = served_by_measurement(store, model_ref)
        self.scorer = self.models.scorer(self.view.features, self.view.type_of)
        self.types = sorted(set(self.view.type_of.values()))
        self.by_type = {t: sorted(i for i, ty in self.view.type_of.items() if ty == t) for t in self.types}
        self.product_of = {i: i.split(":")[0] for i in self.view.type_of}
        super().__init__(FeatureParams(**self.models.features), inference_mode)

    # -- checks ------------------------------------------------------------------------------
    def _known(self, items: Sequence[str]) -> list[str]:
        items = list(items)
        duplicated = sorted({i for i in items if items.count(i) > 1})
        if duplicated:
            raise OutfitInputError(f"items listed more than once: {duplicated}")
        unknown = [i for i in items if i not in self.view.type_of]
        if unknown:
            raise OutfitInputError(f"unknown items (not in the served catalogue, or without a photo): {unknown}", 404)
        return items

    def _type(self, wanted: str) -> str:
        if wanted not in self.by_type:
            raise OutfitInputError(f"the shop has no items of type {wanted!r}; its types: {self.types}")
        return wanted

    # -- answers -----------------------------------------------------------------------------
    def score(self, items: Sequence[str]) -> float:
        """Compatibility of an outfit of known items: minus their mean pairwise distance."""
        items = self._known(items)
        if len(items) < 2:
            raise OutfitInputError(f"an outfit needs at least two items to score, got {len(items)}")
        return self.scorer.outfit(items)

    def complete(self, items: Sequence[str], wanted: str, k: int = 6, photo: np.ndarray | None = None,
                 photo_type: str | None = None) -> tuple[list[Completion], str | None]:
        """The ``k`` items of type ``wanted`` that go best with ``items`` (and a photo's
        features), best first, and the type the photo was taken for (given or guessed).
        Items of the outfit's products are never proposed."""
        items = self._known(items)
        wanted = self._type(wanted)
        if not items and photo is None:
            raise OutfitInputError("an empty outfit: give at least one item or a photo")
        parts = []
        if items:
            parts.append(self.scorer.tensors(items))
        if photo is not None:
            photo_type = self._type(photo_type) if photo_type else self.models.guess_type(photo)
            parts.append((self.scorer.embed(photo), torch.as_tensor([self.scorer.type_ids[photo_type]])))
        context = torch.cat([e for e, _ in parts]), torch.cat([t for _, t in parts])
        taken = {self.product_of[i] for i in items}
        candidates = [i for i in self.by_type[wanted] if self.product_of[i] not in taken]
        if not candidates:
            return [], photo_type
        scores = np.asarray(self.scorer.candidates_of(*context, candidates))
        top = np.argsort(-scores, kind="stable")[:k]
        return [Completion(candidates[j], float(scores[j])) for j in top], photo_type
