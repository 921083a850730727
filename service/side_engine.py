"""What the two side engines ("complete the look", "shop the look") share: finding the model
published for the served crawl, the one-line request error, and featurising an uploaded photo
with the frozen extractor the model's features were made with (built on first use)."""

from __future__ import annotations

import threading

import numpy as np
from PIL import Image

from street2shop.models.features import FeatureParams, feature_extractor, image_features
from street2shop.storage import names as N
from street2shop.storage.store import ArtifactRef, ArtifactStore


class EngineInputError(ValueError):
    """A request the engine cannot answer: the message says why (the API answers 4xx)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def find_model(stage: str, name: str, store: ArtifactStore, crawl_version: str) -> ArtifactRef:
    """The newest ``name`` of ``stage`` trained on the crawl (or data set) ``crawl_version``."""
    return store.newest(stage, name, with_input=(N.IMAGES, crawl_version),
                        missing=f"no {name.replace('_', ' ')} is published for crawl {crawl_version}: run {stage} on it")


class SideEngine:
    """A model of one crawl that also answers for an uploaded photo."""

    def __init__(self, feature_params: FeatureParams) -> None:
        self.feature_params = feature_params
        self._extractor = None
        self._extractor_lock = threading.Lock()

    def photo_features(self, image: Image.Image) -> np.ndarray:
        with self._extractor_lock:
            if self._extractor is None:
                self._extractor = feature_extractor(self.feature_params)
            return image_features(self._extractor, image, self.feature_params)
