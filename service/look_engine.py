"""What "shop the look" serves: the published looks model of the crawl the search index
indexes, found by its lineage, with the embeddings of every item and every lookbook post.

:func:`find_looks_model` looks for the newest ``looks_train`` version whose inputs include the
served crawl's ``images``; :class:`LookEngine` loads the space the stage chose by measurement
(a head, or a baseline: the untrained features, or the street-to-shop embedder's embedding),
the posts and items it was trained from (``models/looks_view.load_looks_view``) and what
featurises an uploaded photo as the posts were: the frozen feature extractor, or the embedder
(its descriptors of the shop are kept in the model file), each behind the fp32 fast path
(``side_engine.SIDE_INFERENCE``: OpenVINO fp32, the posts' precision). Plain Python, no HTTP; the
router is :mod:`street2shop.service.looks`.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from dataclasses import dataclass
from functools import partial

import numpy as np
import torch
from PIL import Image

from street2shop.models.embedder import load_embedder
from street2shop.models.features import FeatureParams
from street2shop.models.looks import STREET2SHOP, embed, load_looks
from street2shop.models.looks_view import load_looks_view, refs_of_model
from street2shop.service.side_engine import (
    SIDE_INFERENCE,
    EngineInputError,
    SideEngine,
    find_model,
    fp32_inference,
    served_by_measurement,
)
from street2shop.storage import names as N
from street2shop.storage.store import ArtifactRef, ArtifactStore


#: a request the looks engine cannot answer (the API answers 4xx)
LooksInputError = EngineInputError
#: ``(store, crawl_version)`` -> the newest looks model trained on that crawl
find_looks_model = partial(find_model, N.LOOKS_TRAIN, N.LOOKS_MODEL)


@dataclass(frozen=True)
class Hit:
    id: str  # an item id or a snap id
    score: float  # cosine in the looks space


class LookEngine(SideEngine):
    """Posts and items of one crawl in the served looks space."""

    def __init__(self, store: ArtifactStore, model_ref: ArtifactRef, inference_mode: str = SIDE_INFERENCE) -> None:
        refs = refs_of_model(store, model_ref)
        self.version = model_ref.version
        self.crawl = refs.images.version
        loaded = load_looks(store.file(model_ref, N.LOOKS_MODEL_FILE))
        #: the space served (a head, "backbone" or "street2shop") and why
        self.served = loaded.served_name
        self.selection = served_by_measurement(store, model_ref)
        super().__init__(FeatureParams(**loaded.features), inference_mode)
        self.view = load_looks_view(store, refs)
        self._head = loaded.served
        self._reads = loaded.served_reads
        self._store = store
        self._embedded = loaded.embedded
        self._embedder = None
        self._embedder_lock = threading.Lock()
        self.item_ids = sorted(self.view.items)
        self.snap_ids = sorted(self.view.snaps)
        if self._reads == STREET2SHOP:
            items = np.stack([loaded.embedded.items[i] for i in self.item_ids])
            snaps = np.stack([loaded.embedded.snaps[s] for s in self.snap_ids])
        else:
            items = np.stack([self.view.items[i] for i in self.item_ids])
            snaps = np.stack([self.view.snaps[s] for s in self.snap_ids])
        self.items, self.snaps = self._project(items), self._project(snaps)
        self.item_row = {i: k for k, i in enumerate(self.item_ids)}
        self.style_of = {s: self.view.style_of.get(s, "") for s in self.snap_ids}
        self.styles = sorted({s for s in self.style_of.values() if s})
        # an item's styles: those of the posts that link it (the only styles a crawl knows)
        styles_of_item: dict[str, set[str]] = defaultdict(set)
        for snap, linked in self.view.links.items():
            for item in linked:
                styles_of_item[item].add(self.style_of.get(snap, ""))
        self.styles_of_item = dict(styles_of_item)
        self.categories = sorted({c for i, c in self.view.category_of.items() if i in self.item_row and c})
        self.image_of_snap = {r: self.view.snap_photo[r] for r in self.snap_ids if r in self.view.snap_photo}

    def _project(self, x: np.ndarray) -> np.ndarray:
        """Rows of what the served space reads -> unit vectors in it."""
        if self._head is not None:
            return embed(self._head, x)
        x = np.atleast_2d(np.asarray(x, np.float32))
        return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)

    def photo_features(self, image: Image.Image) -> np.ndarray:
        """What the served space reads of a photo: its frozen features, or the embedder's
        descriptor (the embedder loaded on first use)."""
        if self._reads != STREET2SHOP:
            return super().photo_features(image)
        with self._embedder_lock:
            if self._embedder is None:
                ref = ArtifactRef(**self._embedded.checkpoint)
                self._embedder = fp32_inference(load_embedder(self._store.file(ref, N.CHECKPOINT_FILE)).eval(),
                                                self.inference_mode)
            with torch.inference_mode():
                return self._embedder(self._embedder.preprocess(image.convert("RGB"))[None]).float().numpy()[0]

    # -- checks ------------------------------------------------------------------------------
    def _style(self, style: str | None) -> str | None:
        if style and style not in self.styles:
            raise LooksInputError(f"no post has the style {style!r}; the lookbook's styles: {self.styles}")
        return style or None

    def _category(self, category: str | None) -> str | None:
        if category and category not in self.categories:
            raise LooksInputError(f"no item of category {category!r}; categories: {self.categories}")
        return category or None

    # -- answers -----------------------------------------------------------------------------
    def related(self, features: np.ndarray, k: int = 6, style: str | None = None,
                category: str | None = None) -> list[Hit]:
        """The ``k`` items nearest a photo's features in the looks space, best first; only of
        ``category``, and only items linked by a post of ``style``, when given."""
        style, category = self._style(style), self._category(category)
        keep = [j for j, i in enumerate(self.item_ids)
                if (category is None or self.view.category_of.get(i) == category)
                and (style is None or style in self.styles_of_item.get(i, ()))]
        return self._top(self._project(features)[0], self.items, self.item_ids, keep, k)

    def looks_of(self, item_id: str, k: int = 6, style: str | None = None) -> list[Hit]:
        """The ``k`` posts nearest an item in the looks space ("how do I wear it?"), best
        first; only posts of ``style``, when given."""
        style = self._style(style)
        if item_id not in self.item_row:
            raise LooksInputError(f"item {item_id!r} has no shop photo features in the looks model", 404)
        keep = [j for j, s in enumerate(self.snap_ids) if style is None or self.style_of[s] == style]
        return self._top(self.items[self.item_row[item_id]], self.snaps, self.snap_ids, keep, k)

    @staticmethod
    def _top(query: np.ndarray, gallery: np.ndarray, ids: list[str], keep: list[int], k: int) -> list[Hit]:
        if not keep:
            return []
        scores = gallery[keep] @ query
        order = np.argsort(-scores, kind="stable")[:k]
        return [Hit(ids[keep[j]], float(scores[j])) for j in order]
