"""Features the noise filter classifies on, by name: cheap hand-made ones or a frozen CNN.

``"colour_edge"`` (HSV colour histograms, edge density and orientation, texture and layout
statistics) needs nothing but PIL/numpy/scipy; ``"cnn"`` is the frozen pretrained
EfficientNet-Lite0 (GeM pooled, 1280 numbers). Both feed the same logistic-regression head
(:mod:`street2shop.cleaning.noise`); an extractor is chosen through the ``EXTRACTORS``
registry, and a new one registers itself with :func:`register_extractor`.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from PIL import Image
from scipy import ndimage

from street2shop.cleaning.images import open_rgb
from street2shop.models.embedder import Embedder, pretrained_features
from street2shop.models.fast import optimize_for_inference
from street2shop.registry import Registry



class FeatureExtractor(ABC):
    """Turns images into fixed-width feature rows. Subclasses fill :meth:`features`.

    The base class owns loading: unreadable files are reported through a mask instead of
    raising, and images are passed in batches so that a CNN extractor can batch on its side.
    """

    name: ClassVar[str]
    batch_size: ClassVar[int] = 64

    def __init__(self, image_size: int = 128):
        if image_size < 16:
            raise ValueError(f"image_size must be at least 16, got {image_size}")
        self.image_size = image_size

    @property
    def config(self) -> dict[str, Any]:
        """Keyword arguments that rebuild this extractor with :func:`build_extractor`."""
        return {"image_size": self.image_size}

    @abstractmethod
    def features(self, images: Sequence[Image.Image]) -> np.ndarray:
        """``(len(images), dim)`` float32 features of decoded RGB images."""

    def extract(self, paths: Sequence[str | Path]) -> tuple[np.ndarray, np.ndarray]:
        """Features of the readable files and a boolean mask of which files were readable."""
        ok = np.zeros(len(paths), dtype=bool)
        rows: list[np.ndarray] = []
        for start in range(0, len(paths), self.batch_size):
            batch: list[Image.Image] = []
            for k, path in enumerate(paths[start : start + self.batch_size], start=start):
                image = open_rgb(path)
                if image is not None:
                    ok[k] = True
                    batch.append(image)
            if batch:
                rows.append(np.asarray(self.features(batch), dtype=np.float32))
        if not rows:
            return np.zeros((0, 0), dtype=np.float32), ok
        return np.concatenate(rows), ok


EXTRACTORS: Registry[type[FeatureExtractor]] = Registry("feature extractor")


def register_extractor(name: str) -> Callable[[type[FeatureExtractor]], type[FeatureExtractor]]:
    """Class decorator: make an extractor available to :func:`build_extractor` by ``name``."""

    def wrap(cls: type[FeatureExtractor]) -> type[FeatureExtractor]:
        EXTRACTORS.add(name, cls)
        cls.name = name
        return cls

    return wrap


def available_extractors() -> list[str]:
    return EXTRACTORS.names()


def build_extractor(name: str, **kwargs: Any) -> FeatureExtractor:
    """Instantiate the feature extractor registered as ``name``."""
    return EXTRACTORS.get(name)(**kwargs)


@register_extractor("colour_edge")
class ColourEdgeExtractor(FeatureExtractor):
    """Cheap, deterministic hand-made features (49 numbers per image).

    What separates noise from garment photos: a parcel is brown and low-saturation with a few
    long straight edges; a fabric close-up has the same texture everywhere and no object
    against a background; a garment photo has an object in the centre that differs from its
    border. Hence colour histograms, edge statistics, texture and centre-vs-border layout.
    """

    HUE_BINS, SAT_BINS, VAL_BINS, ORIENT_BINS, GRID = 12, 6, 6, 8, 4

    def features(self, images: Sequence[Image.Image]) -> np.ndarray:
        return np.stack([self._one(image) for image in images])

    def _one(self, image: Image.Image) -> np.ndarray:
        aspect = math.log(image.width / image.height)
        small = image.resize((self.image_size, self.image_size), Image.Resampling.BILINEAR)
        hsv = np.asarray(small.convert("HSV"), dtype=np.float32) / 255.0
        h, s, v = hsv[..., 0], hsv[..., 1], hsv[..., 2]
        # Hue is meaningless for greys: weight each pixel's hue vote by its saturation.
        hue_hist = np.histogram(h, bins=self.HUE_BINS, range=(0, 1), weights=s)[0]
        hue_hist = hue_hist / (hue_hist.sum() + 1e-6)
        sat_hist = np.histogram(s, bins=self.SAT_BINS, range=(0, 1))[0] / s.size
        val_hist = np.histogram(v, bins=self.VAL_BINS, range=(0, 1))[0] / v.size

        gray = np.asarray(small.convert("L"), dtype=np.float32) / 255.0
        gx, gy = ndimage.sobel(gray, axis=1), ndimage.sobel(gray, axis=0)
        magnitude = np.hypot(gx, gy) / 4.0  # Sobel's kernel sums to 4: scale to [0, ~1.4]
        orientation = np.mod(np.arctan2(gy, gx), np.pi)  # edge direction, sign-free
        orient_hist = np.histogram(orientation, bins=self.ORIENT_BINS, range=(0, np.pi), weights=magnitude)[0]
        orient_hist = orient_hist / (orient_hist.sum() + 1e-6)
        edges = magnitude > 0.1
        laplacian = ndimage.laplace(gray)
        gray_hist = np.histogram(gray, bins=16, range=(0, 1))[0] / gray.size
        entropy = -np.sum(gray_hist * np.log2(gray_hist + 1e-12))

        # Layout: a GRID x GRID mosaic of block means and edge densities. A close-up has the
        # same statistics in every block; an object on a background does not.
        g = self.GRID
        cut = self.image_size - self.image_size % g
        blocks = gray[:cut, :cut].reshape(g, cut // g, g, cut // g).mean(axis=(1, 3))
        block_edges = edges[:cut, :cut].reshape(g, cut // g, g, cut // g).mean(axis=(1, 3))
        centre = np.zeros(gray.shape, dtype=bool)
        q = self.image_size // 4
        centre[q:-q, q:-q] = True
        rgb = np.asarray(small, dtype=np.float32) / 255.0
        centre_border = np.linalg.norm(rgb[centre].mean(axis=0) - rgb[~centre].mean(axis=0))

        return np.concatenate(
            [
                hue_hist,
                sat_hist,
                val_hist,
                orient_hist,
                [
                    s.mean(), s.std(), v.mean(), v.std(),
                    magnitude.mean(), magnitude.std(), edges.mean(), (magnitude > 0.25).mean(),
                    gray.std(), laplacian.var(), entropy,
                    blocks.std(), block_edges.std(),
                    centre_border, abs(v[centre].mean() - v[~centre].mean()),
                    gray[centre].std() - gray[~centre].std(),
                    aspect,
                ],
            ]
        ).astype(np.float32)


@register_extractor("cnn")
class CnnExtractor(FeatureExtractor):
    """Frozen ImageNet features: GeM-pooled, L2-normalised EfficientNet-Lite0 (1280 numbers).

    A parcel, a screenshot and a fabric close-up are exactly what ImageNet features tell
    apart from a garment. The network is the no-training baseline of
    :func:`~street2shop.models.embedder.pretrained_features`, fed by that model's own
    :class:`~street2shop.models.preprocess.Preprocess`, i.e. the pixels ``embed_images``
    would produce; it runs on the images the base class has already decoded (once, with
    unreadable files masked out rather than raised), built lazily on first use. A fine-tuned
    network replaces it through :attr:`network` (then no pretrained weights are read).
    """

    batch_size = 32

    def __init__(self, image_size: int = 160, backbone: str = "efficientnet_lite0", weights_path: str | None = None):
        super().__init__(image_size)
        self.backbone = backbone
        self.weights_path = weights_path
        self._model: Embedder | None = None
        self._runner = None

    @property
    def config(self) -> dict[str, Any]:
        return {"image_size": self.image_size, "backbone": self.backbone, "weights_path": self.weights_path}

    @property
    def network(self) -> Embedder:
        if self._model is None:
            self._model = pretrained_features(
                self.backbone, image_size=self.image_size, weights_path=self.weights_path
            ).eval()
        return self._model

    @network.setter
    def network(self, model: Embedder) -> None:
        self._model = model.eval()
        self._runner = None

    def features(self, images: Sequence[Image.Image]) -> np.ndarray:
        model = self.network
        if self._runner is None:
            # OpenVINO fp32: the network's features up to float rounding, several times
            # eager PyTorch on CPU (eager where OpenVINO is missing)
            self._runner = optimize_for_inference(model, "openvino", fallback="eager")
        batch = torch.stack([model.preprocess(image) for image in images])
        with torch.inference_mode():
            return self._runner(batch).float().numpy()
