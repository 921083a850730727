"""What the two side engines ("complete the look", "shop the look") share: finding the model
published for the served crawl, the one-line request error, featurising an uploaded photo
with the frozen extractor the model's features were made with (built on first use, behind an
fp32 fast path: :data:`SIDE_INFERENCE`), and what
was served by measurement (:func:`served_by_measurement`, :func:`side_models`: the rule, each
candidate's validation figures and the served one's test figures, for ``/health``, read once
per served crawl by :class:`SideModels`)."""

from __future__ import annotations

import threading

import numpy as np
from PIL import Image

from street2shop.models.fast import optimize_for_inference
from street2shop.models.features import FeatureParams, feature_extractor, image_features
from street2shop.storage import names as N
from street2shop.storage.store import ArtifactNotFound, ArtifactRef, ArtifactStore

#: side -> (train stage, model artifact, evaluate stage, metrics artifact)
SIDE_STAGES = {
    "outfits": (N.OUTFIT_TRAIN, N.OUTFIT_MODEL, N.OUTFIT_EVALUATE, N.OUTFIT_METRICS),
    "looks": (N.LOOKS_TRAIN, N.LOOKS_MODEL, N.LOOKS_EVALUATE, N.LOOKS_METRICS),
}


class EngineInputError(ValueError):
    """A request the engine cannot answer: the message says why (the API answers 4xx)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def find_model(stage: str, name: str, store: ArtifactStore, crawl_version: str) -> ArtifactRef:
    """The newest ``name`` of ``stage`` trained on the crawl (or data set) ``crawl_version``."""
    return store.newest(stage, name, with_input=(N.IMAGES, crawl_version),
                        missing=f"no {name.replace('_', ' ')} is published for crawl {crawl_version}: run {stage} on it")


def served_by_measurement(store: ArtifactStore, model_ref: ArtifactRef) -> dict:
    """What a side model serves and why, from the manifests: ``served``, ``rule``,
    ``validation`` (each candidate's validation figures, by which it was chosen) and ``test``
    (the served one's test figures with 95 % intervals, once its evaluate stage ran)."""
    figures = store.manifest(model_ref).metrics
    out = {"model": model_ref.version, "served": figures.get("served"), "rule": figures.get("serve_rule"),
           "validation": figures.get("candidates", {}), "test": {}}
    for _, name, evaluate, metrics in SIDE_STAGES.values():
        if name == model_ref.name:
            evaluated = store.newest(evaluate, metrics, with_input=model_ref)
            if evaluated is not None:
                out["test"] = store.manifest(evaluated).metrics.get("served_test", {})
    return out


def side_models(store: ArtifactStore, crawl_version: str) -> dict[str, dict]:
    """:func:`served_by_measurement` of each side model published for the crawl (a side
    without one is left out)."""
    out = {}
    for side, (stage, name, _, _) in SIDE_STAGES.items():
        try:
            out[side] = served_by_measurement(store, find_model(stage, name, store, crawl_version))
        except ArtifactNotFound:
            continue
    return out


class SideModels:
    """``self(crawl_version)``: :func:`side_models` of the served crawl, read from the manifests
    once per crawl (again only when a reload serves another one), as the side engines are
    built once per crawl: ``/health`` is polled, and each call would otherwise read every side
    stage's manifests."""

    def __init__(self, store: ArtifactStore) -> None:
        self.store = store
        self._crawl: str | None = None
        self._models: dict[str, dict] = {}
        self._lock = threading.Lock()

    def __call__(self, crawl_version: str) -> dict[str, dict]:
        with self._lock:
            if crawl_version != self._crawl:
                self._models, self._crawl = side_models(self.store, crawl_version), crawl_version
            return self._models


#: how the side engines run the network on an upload: OpenVINO fp32 (``models/fast.py``), the
#: precision the side stages' features were made in (eager fp32; equal up to float rounding),
#: so their figures are those of what is served; eager where OpenVINO is missing
SIDE_INFERENCE = "openvino"
SIDE_FALLBACK = "eager"
#: the fp32 modes: a lower precision would serve other features than the side stages measured
FP32_MODES = ("eager", "channels_last", "onnx", "openvino")


def check_fp32(mode: str) -> str:
    """``mode`` if it is an fp32 inference mode; else the one-line error."""
    if mode not in FP32_MODES:
        raise ValueError(f"side inference mode {mode!r} is not fp32 (the side stages' features are): "
                         f"choose from {FP32_MODES}")
    return mode


def fp32_inference(model, mode: str = SIDE_INFERENCE):
    """``model`` (an ``Embedder``) behind the fp32 inference path ``mode``, or eager's (with a
    warning) where that backend is missing."""
    return optimize_for_inference(model, check_fp32(mode), fallback=SIDE_FALLBACK)


class SideEngine:
    """A model of one crawl that also answers for an uploaded photo (the frozen extractor
    behind ``inference_mode``, an fp32 mode: :data:`SIDE_INFERENCE` by default)."""

    def __init__(self, feature_params: FeatureParams, inference_mode: str = SIDE_INFERENCE) -> None:
        self.feature_params = feature_params
        self.inference_mode = check_fp32(inference_mode)
        self._extractor = None
        self._extractor_lock = threading.Lock()

    def photo_features(self, image: Image.Image) -> np.ndarray:
        with self._extractor_lock:
            if self._extractor is None:
                self._extractor = fp32_inference(feature_extractor(self.feature_params), self.inference_mode)
            return image_features(self._extractor, image, self.feature_params)
