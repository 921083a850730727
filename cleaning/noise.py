"""Noise filter for customer review photos: which street photos are usable for training.

Review photos include parcels, fabric close-ups, screenshots and unrelated pictures. A few
thousand human labels (``good`` / ``noise``) train a small classifier on cheap image features;
it scores every street photo with ``p_noise`` and a ``keep`` verdict (nothing is deleted).

- Features come from an extractor chosen by name (:func:`build_extractor`). ``"colour_edge"``
  (HSV colour histograms, edge density and orientation, texture and layout statistics) needs
  nothing but PIL/numpy/scipy; ``"cnn"`` is the frozen pretrained EfficientNet-Lite0 (GeM
  pooled, 1280 numbers). Both feed the same logistic-regression head.
- ``fine_tune=True`` (``"cnn"`` only) goes one step further, linear-probe-then-fine-tune
  (LP-FT, Kumar et al. 2022): the logistic regression above initialises a linear head, then
  the CNN's last block(s) and that head are trained end to end with a seeded, class-balanced
  BCE loss, on the train side of the split only. The frozen trunk below those blocks is run
  once per photo and its activations cached, so each epoch costs only the trained blocks.
- The labelled photos are split into train and held-out *by product*, so photos of one
  product never sit on both sides and the held-out figures are honest.
- The ``keep`` threshold is chosen on the held-out labels: the largest kept set whose
  precision of "good" reaches the target. The model is fitted on the train side only, so the
  threshold is calibrated for exactly the model that is saved.
"""

from __future__ import annotations

import json
import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import joblib
import numpy as np
import torch
import torch.nn.functional as F
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from PIL import Image
from pydantic import BaseModel, Field, model_validator
from scipy import ndimage
from scipy.special import expit
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import precision_recall_fscore_support, roc_auc_score
from sklearn.model_selection import StratifiedGroupKFold
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from street2shop.cleaning.images import open_rgb
from street2shop.models.backbones import Backbone, SequentialBackbone, TimmBackbone
from street2shop.models.embedder import Embedder, load_embedder, pretrained_features, save_checkpoint
from street2shop.registry import Registry
from street2shop.storage.blobs import BlobStore
from street2shop.storage.schemas import NOISE_LABELS, NOISE_SCORES

LABELS: tuple[str, str] = ("good", "noise")
MODEL_FILE = "noise_filter.joblib"
NETWORK_FILE = "noise_cnn.pt"  #: the fine-tuned CNN's state dict, next to MODEL_FILE
REPORT_FILE = "noise_report.json"

# ------------------------------------------------------------------ feature extractors


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

    def features(self, images: Sequence[Image.Image]) -> np.ndarray:
        model = self.network
        batch = torch.stack([model.preprocess(image) for image in images])
        with torch.inference_mode():
            return model(batch).float().numpy()


# --------------------------------------------------------------------------- params


class NoiseParams(BaseModel):
    """Parameters of the noise filter (they go into the version id)."""

    #: "cnn" by default: on the default demo shop's held-out labels it reaches ROC AUC 0.999
    #: and noise F1 0.84 against colour_edge's 0.883 and 0.59, for ~8x the CPU time per photo
    #: (119 vs 15 ms on 2 cores; python bench/noise.py --home /tmp/demo-home --labels .../labels.csv)
    features: str = "cnn"
    target_precision_good: float = Field(0.95, gt=0.0, le=1.0)
    #: never keep fewer held-out photos than this, even if the precision target is missed:
    #: a weak classifier must not silently throw away nearly every customer photo
    min_kept_fraction: float = Field(0.5, ge=0.0, le=1.0)
    holdout_fraction: float = Field(0.25, gt=0.0, lt=1.0)
    seed: int = 0
    C: float = Field(1.0, gt=0.0)
    image_size: int = Field(160, ge=16)
    #: the "cnn" extractor's network (any name of ``street2shop.models.backbones``) and,
    #: optionally, a local weights file for it instead of the backbone's own pretrained ones
    backbone: str = "efficientnet_lite0"
    backbone_weights: str | None = None
    #: train the CNN's last ``fine_tune_blocks`` block(s) and a linear head end to end
    #: (initialised from the logistic regression) on the train side; "cnn" features only
    fine_tune: bool = False
    fine_tune_blocks: int = Field(1, ge=1)
    fine_tune_epochs: int = Field(5, ge=1)
    fine_tune_lr: float = Field(1e-4, gt=0.0)
    fine_tune_batch_size: int = Field(32, ge=1)

    @model_validator(mode="after")
    def _fine_tune_needs_a_cnn(self) -> NoiseParams:
        if self.fine_tune and self.features != "cnn":
            raise ValueError(f"fine_tune needs features='cnn', got {self.features!r}")
        return self


class NoiseReport(BaseModel):
    """Held-out quality of a trained noise filter (noise = positive class)."""

    features: str
    fine_tuned: bool = False
    n_train: int
    n_heldout: int
    n_unreadable: int  #: labelled photos that could not be decoded (left out of training)
    precision_noise: float  #: at the chosen threshold (noise = not kept)
    recall_noise: float
    f1_noise: float
    roc_auc: float
    threshold: float  #: keep a photo when p_noise <= threshold
    precision_good_at_threshold: float
    kept_fraction: float  #: of the held-out photos
    target_precision_good: float
    target_met: bool


@dataclass(frozen=True)
class ThresholdChoice:
    threshold: float
    precision_good: float
    kept_fraction: float
    target_met: bool


def choose_threshold(
    p_noise: np.ndarray, is_noise: np.ndarray, target_precision_good: float, min_kept_fraction: float = 0.0
) -> ThresholdChoice:
    """The ``p_noise`` cut that keeps the most photos while precision of "good" >= target.

    Photos are kept from the most confidently good upwards; cuts only fall between distinct
    scores (tied photos are kept or dropped together). When no cut reaches the target, the
    cut with the best precision is taken (and ``target_met`` is False) rather than keeping
    nothing, so the caller can decide. A cut keeping fewer than ``min_kept_fraction`` of the
    photos is widened to the smallest cut that keeps that many (``target_met`` is then False).
    """
    p = np.asarray(p_noise, dtype=np.float64)
    noise = np.asarray(is_noise, dtype=bool)
    if p.size == 0:
        raise ValueError("cannot choose a threshold without held-out photos")
    order = np.argsort(p, kind="stable")
    p_sorted, good_sorted = p[order], ~noise[order]
    kept = np.arange(1, p.size + 1)
    precision = np.cumsum(good_sorted) / kept
    # Only the last photo of each run of tied scores is a valid cut.
    is_cut = np.append(p_sorted[1:] != p_sorted[:-1], True)
    feasible = is_cut & (precision >= target_precision_good - 1e-12)
    if feasible.any():
        k = int(np.flatnonzero(feasible)[-1])
    else:
        # Best precision, the larger kept set among equals.
        candidates = np.flatnonzero(is_cut)
        k = int(candidates[np.lexsort((-candidates, -precision[candidates]))[0]])
    target_met = bool(feasible.any())
    floor = np.flatnonzero(is_cut & (kept / p.size >= min_kept_fraction - 1e-12))[0]
    if k < floor:
        k, target_met = int(floor), False
    return ThresholdChoice(
        threshold=float(p_sorted[k]),
        precision_good=float(precision[k]),
        kept_fraction=float(kept[k] / p.size),
        target_met=target_met,
    )


def _street_images(images: pa.Table) -> pa.Table:
    """Street photos, one row per image_id (the same bytes may be listed under two items),
    with the product the photo was posted under."""
    street = images.filter(pc.equal(images.column("role"), "street"))
    seen: set[str] = set()
    keep: list[int] = []
    for k, image_id in enumerate(street.column("image_id").to_pylist()):
        if image_id not in seen:
            seen.add(image_id)
            keep.append(k)
    street = street.take(pa.array(keep, type=pa.int64()))
    product = [item.split(":", 1)[0] for item in street.column("item_id").to_pylist()]
    return pa.table(
        {
            "image_id": street.column("image_id"),
            "path": street.column("path"),
            "product_id": pa.array(product, type=pa.string()),
        }
    )


def _heldout_split(is_noise: np.ndarray, products: np.ndarray, params: NoiseParams) -> tuple[np.ndarray, np.ndarray]:
    """Train/held-out indices grouped by product and stratified by label.

    StratifiedGroupKFold (rather than GroupShuffleSplit) keeps both labels on both sides
    even with few products; one fold of ``round(1 / holdout_fraction)`` is held out.
    """
    n_splits = max(2, round(1.0 / params.holdout_fraction))
    n_products = len(np.unique(products))
    if n_products < n_splits:
        raise ValueError(
            f"labelled photos come from {n_products} products; holding out "
            f"{params.holdout_fraction:.0%} by product needs at least {n_splits}"
        )
    splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=params.seed)
    train, heldout = next(splitter.split(np.zeros(len(is_noise)), is_noise, groups=products))
    for side, idx in (("train", train), ("held-out", heldout)):
        if len(np.unique(is_noise[idx])) < 2:
            raise ValueError(
                f"the {side} side of the by-product split has only one label; label more "
                "photos of both kinds (good and noise) across more products"
            )
    return train, heldout


# ---------------------------------------------------------------------- fine-tuning


def split_trunk(backbone: Backbone, blocks: int) -> tuple[nn.Sequential, nn.Sequential]:
    """``(frozen, tail)`` with ``tail(frozen(x)) == backbone.forward_features(x)``.

    ``tail`` is the last ``blocks`` blocks and the layers after them (EfficientNet's 1x1
    ``conv_head``: it makes the pooled features, so it is always trained with them). The
    modules are shared, not copied: training ``tail`` trains the backbone.
    """
    if isinstance(backbone, TimmBackbone) and hasattr(backbone.model, "blocks"):
        m = backbone.model
        stages = list(m.blocks)
        if blocks > len(stages):
            raise ValueError(f"fine_tune_blocks={blocks} but the backbone has {len(stages)} blocks")
        after = [getattr(m, name) for name in ("conv_head", "bn2") if hasattr(m, name)]
        return nn.Sequential(m.conv_stem, m.bn1, *stages[:-blocks]), nn.Sequential(*stages[-blocks:], *after)
    if isinstance(backbone, SequentialBackbone):
        layers = list(backbone.body)
        # A block starts at each layer with weights that is not a norm layer (a conv, a ResNet
        # stage); the norm and activation after it belong to it.
        starts = [
            k for k, layer in enumerate(layers)
            if any(True for _ in layer.parameters()) and not isinstance(layer, nn.modules.batchnorm._BatchNorm)
        ]
        if blocks > len(starts):
            raise ValueError(f"fine_tune_blocks={blocks} but the backbone has {len(starts)} blocks")
        cut = starts[-blocks]
        return nn.Sequential(*layers[:cut]), nn.Sequential(*layers[cut:])
    raise ValueError(f"fine-tuning does not know where the blocks of a {type(backbone).__name__} are")


class _TrainedPart(nn.Module):
    """The trained blocks -> the network's pooling -> L2 norm (the extractor's features) -> logit."""

    def __init__(self, tail: nn.Module, pooling: nn.Module, dim: int) -> None:
        super().__init__()
        self.tail, self.pooling, self.linear = tail, pooling, nn.Linear(dim, 1)

    def embed(self, activations: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.pooling(self.tail(activations)), dim=-1)

    def forward(self, activations: torch.Tensor) -> torch.Tensor:
        return self.linear(self.embed(activations)).squeeze(-1)

    def embed_all(self, activations: torch.Tensor, batch_size: int) -> np.ndarray:
        with torch.no_grad():
            rows = [self.embed(activations[k : k + batch_size]) for k in range(0, len(activations), batch_size)]
        return torch.cat(rows).float().numpy()


def _trunk_activations(network: Embedder, frozen: nn.Module, paths: Sequence[str | Path], batch_size: int) -> tuple[torch.Tensor, np.ndarray]:
    """The frozen trunk's output for each readable file (computed once, reused every epoch),
    and the readable mask; the network's own preprocessing makes the pixels."""
    ok = np.zeros(len(paths), dtype=bool)
    rows: list[torch.Tensor] = []
    for start in range(0, len(paths), batch_size):
        batch = []
        for k, path in enumerate(paths[start : start + batch_size], start=start):
            image = open_rgb(path)
            if image is not None:
                ok[k] = True
                batch.append(network.preprocess(image))
        if batch:
            # no_grad, not inference_mode: these tensors are inputs of training later.
            with torch.no_grad():
                rows.append(frozen(torch.stack(batch)))
    if not rows:
        return torch.zeros(0), ok
    return torch.cat(rows), ok


def fine_tune(part: _TrainedPart, activations: torch.Tensor, is_noise: np.ndarray, params: NoiseParams) -> list[float]:
    """Train ``part`` (trunk tail + head) on these rows only; returns the mean loss per epoch.

    Class-balanced like the logistic regression (``class_weight="balanced"``: each row
    weighs ``n / (2 n_its_class)``), shuffled by a generator seeded with ``params.seed``.
    The network stays in eval mode: BatchNorm keeps its ImageNet statistics, which batches of
    a few dozen photos would only make noisier.
    """
    target = torch.as_tensor(is_noise, dtype=torch.float32)
    n_noise = float(target.sum())
    if n_noise in (0.0, float(len(target))):
        raise ValueError("fine-tuning needs both good and noise photos")
    weight = torch.where(target > 0, len(target) / (2 * n_noise), len(target) / (2 * (len(target) - n_noise)))
    loader = DataLoader(
        TensorDataset(activations, target, weight),
        batch_size=params.fine_tune_batch_size,
        shuffle=True,
        generator=torch.Generator().manual_seed(params.seed),
        num_workers=0,  # worker processes die under Prefect
    )
    part.eval()
    # The trunk tail and the head learn; the pooling stays as the extractor defines it (GeM p=3).
    part.tail.requires_grad_(True)
    part.linear.requires_grad_(True)
    # No weight decay: the head starts from a logistic regression already L2-regularised by C.
    optimizer = torch.optim.AdamW([p for p in part.parameters() if p.requires_grad], lr=params.fine_tune_lr, weight_decay=0.0)
    losses = []
    for _ in range(params.fine_tune_epochs):
        total = 0.0
        for x, y, w in loader:
            loss = F.binary_cross_entropy_with_logits(part(x), y, weight=w)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.item() * len(y)
        losses.append(total / len(target))
    part.requires_grad_(False)
    return losses


@dataclass(frozen=True)
class LinearHead:
    """``p_noise = sigmoid(features @ coef + intercept)``: a fine-tuned head with the
    ``predict_proba`` of the scikit-learn model it replaces."""

    coef: np.ndarray
    intercept: float

    @classmethod
    def from_pipeline(cls, model: Pipeline) -> LinearHead:
        """The scaler + logistic regression folded into one linear map on raw features."""
        scaler, lr = model.named_steps["standardscaler"], model.named_steps["logisticregression"]
        coef = lr.coef_[0] / scaler.scale_
        return cls(coef.astype(np.float32), float(lr.intercept_[0] - coef @ scaler.mean_))

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        p = expit(np.asarray(features, np.float64) @ self.coef + self.intercept)
        return np.stack([1.0 - p, p], axis=1)


# ------------------------------------------------------------------------- training


def train_noise_filter(images: pa.Table, labels: pa.Table, params: NoiseParams, out_dir: Path) -> NoiseReport:
    """Fit the noise filter on labelled street photos, save it in ``out_dir``, report on held-out.

    ``images`` is shaped like IMAGES with absolute paths; ``labels`` like NOISE_LABELS (checked
    with :func:`validate_labels` against the street photos). Writes ``noise_filter.joblib``
    (model, extractor config, threshold), ``noise_report.json`` and, when fine-tuned,
    ``noise_cnn.pt`` (the network, an embedder checkpoint).
    """
    report, _ = _fit(images, labels, params, Path(out_dir), score_all=False)
    return report


def train_and_score(images: pa.Table, labels: pa.Table, params: NoiseParams, out_dir: Path) -> tuple[NoiseReport, pa.Table]:
    """:func:`train_noise_filter`, then NOISE_SCORES for every street photo as
    :func:`score_images` would compute them from ``out_dir``, but with each photo decoded and
    run through the network once: the labelled photos' features serve both fitting and
    scoring (the stage's cost is feature extraction, not the linear model)."""
    report, scores = _fit(images, labels, params, Path(out_dir), score_all=True)
    assert scores is not None
    return report, scores


def _fit(images: pa.Table, labels: pa.Table, params: NoiseParams, out_dir: Path, score_all: bool) -> tuple[NoiseReport, pa.Table | None]:
    street = _street_images(images)
    labels = validate_labels(labels, street.column("image_id").to_pylist())
    label_of = dict(zip(labels.column("image_id").to_pylist(), labels.column("label").to_pylist()))
    is_labelled = np.array([image_id in label_of for image_id in street.column("image_id").to_pylist()], dtype=bool)
    # The photos whose features are extracted: every street photo when scoring, else the labelled ones.
    pool = street if score_all else street.filter(pa.array(is_labelled))
    pool_labelled = is_labelled if score_all else np.ones(pool.num_rows, dtype=bool)

    kwargs: dict[str, Any] = {"image_size": params.image_size}
    if params.features == "cnn":
        kwargs.update(backbone=params.backbone, weights_path=params.backbone_weights)
    extractor = build_extractor(params.features, **kwargs)
    paths = pool.column("path").to_pylist()
    if params.fine_tune:
        if not isinstance(extractor, CnnExtractor):
            raise ValueError(f"fine_tune needs features='cnn', got {params.features!r}")
        network = extractor.network
        frozen, tail = split_trunk(network.backbone, params.fine_tune_blocks)
        activations, readable = _trunk_activations(network, frozen, paths, extractor.batch_size)
        part = _TrainedPart(tail, network.head, network.dim)
        features = part.embed_all(activations, extractor.batch_size)
    else:
        features, readable = extractor.extract(paths)
    # ``features`` has one row per readable photo of the pool; ``fit_rows`` are its labelled rows.
    fit_rows = np.flatnonzero(pool_labelled[readable])
    readable_ids = np.array(pool.column("image_id").to_pylist(), dtype=object)[readable][fit_rows]
    is_noise = np.array([label_of[i] == "noise" for i in readable_ids])
    products = np.array(pool.column("product_id").to_pylist(), dtype=object)[readable][fit_rows]
    train, heldout = _heldout_split(is_noise, products, params)
    train, heldout = fit_rows[train], fit_rows[heldout]
    is_noise_of = np.zeros(len(features), dtype=bool)
    is_noise_of[fit_rows] = is_noise

    model: Pipeline | LinearHead = make_pipeline(
        StandardScaler(),
        LogisticRegression(C=params.C, class_weight="balanced", max_iter=2000, random_state=params.seed),
    )
    model.fit(features[train], is_noise_of[train])
    if params.fine_tune:
        # LP-FT: the linear probe just fitted is the head's starting point.
        probe = LinearHead.from_pipeline(model)
        with torch.no_grad():
            part.linear.weight.copy_(torch.from_numpy(probe.coef)[None])
            part.linear.bias.fill_(probe.intercept)
        fine_tune(part, activations[torch.from_numpy(train)], is_noise_of[train], params)
        features = part.embed_all(activations, extractor.batch_size)
        model = LinearHead(part.linear.weight.detach()[0].numpy().copy(), float(part.linear.bias.detach()[0]))
    p_heldout = model.predict_proba(features[heldout])[:, 1]
    choice = choose_threshold(p_heldout, is_noise_of[heldout], params.target_precision_good, params.min_kept_fraction)
    predicted_noise = p_heldout > choice.threshold
    precision, recall, f1, _ = precision_recall_fscore_support(
        is_noise_of[heldout], predicted_noise, average="binary", pos_label=True, zero_division=0
    )
    report = NoiseReport(
        features=params.features,
        fine_tuned=params.fine_tune,
        n_train=len(train),
        n_heldout=len(heldout),
        n_unreadable=int((pool_labelled & ~readable).sum()),
        precision_noise=float(precision),
        recall_noise=float(recall),
        f1_noise=float(f1),
        roc_auc=float(roc_auc_score(is_noise_of[heldout], p_heldout)),
        threshold=choice.threshold,
        precision_good_at_threshold=choice.precision_good,
        kept_fraction=choice.kept_fraction,
        target_precision_good=params.target_precision_good,
        target_met=choice.target_met,
    )

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if params.fine_tune:
        save_checkpoint(out_dir / NETWORK_FILE, extractor.network, config=params.model_dump(mode="json"))
    joblib.dump(
        {
            "model": model,
            "extractor": {"name": extractor.name, "config": extractor.config},
            "network": NETWORK_FILE if params.fine_tune else None,
            "threshold": choice.threshold,
            "report": report.model_dump(),
        },
        out_dir / MODEL_FILE,
    )
    (out_dir / REPORT_FILE).write_text(json.dumps(report.model_dump(), indent=2) + "\n")
    if not score_all:
        return report, None
    p, keep = _verdicts(model, choice.threshold, features, readable)
    return report, _scores_table(pool.column("image_id"), p, keep)


# -------------------------------------------------------------------------- scoring


@dataclass(frozen=True)
class NoiseFilter:
    """A trained noise filter loaded back from its directory."""

    model: Pipeline | LinearHead
    extractor: FeatureExtractor
    threshold: float

    @classmethod
    def load(cls, model_dir: Path) -> NoiseFilter:
        path = Path(model_dir) / MODEL_FILE
        if not path.exists():
            raise FileNotFoundError(f"no trained noise filter at {path}")
        saved = joblib.load(path)
        spec = saved["extractor"]
        extractor = build_extractor(spec["name"], **spec["config"])
        if saved.get("network"):
            # The fine-tuned weights replace the pretrained network before it is ever built,
            # so loading reads only this directory.
            extractor.network = load_embedder(Path(model_dir) / saved["network"])
        return cls(saved["model"], extractor, float(saved["threshold"]))

    def score(self, paths: Sequence[str | Path]) -> tuple[np.ndarray, np.ndarray]:
        """``(p_noise, keep)`` per file. An unreadable file is certainly unusable: p_noise
        1.0 and never kept (even under a degenerate threshold of 1.0)."""
        features, readable = self.extractor.extract(paths)
        return _verdicts(self.model, self.threshold, features, readable)


def _verdicts(model: Pipeline | LinearHead, threshold: float, features: np.ndarray, readable: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(p_noise, keep)`` per photo from the readable photos' features."""
    # float64 until compared: the threshold is a float64 score, and rounding the photo that
    # sits exactly on it to float32 first could flip its verdict.
    p = np.ones(len(readable), dtype=np.float64)
    if readable.any():
        p[readable] = model.predict_proba(features)[:, 1]
    return p.astype(np.float32), readable & (p <= threshold)


def _scores_table(image_ids: pa.Array | pa.ChunkedArray, p: np.ndarray, keep: np.ndarray) -> pa.Table:
    return pa.table({"image_id": image_ids, "p_noise": pa.array(p, pa.float32()), "keep": pa.array(keep)}, schema=NOISE_SCORES)


def score_images(images: pa.Table, model_dir: Path) -> pa.Table:
    """NOISE_SCORES for every street photo (once per image_id): p_noise and keep.

    ``keep`` is ``p_noise <= threshold`` for readable photos; an unreadable photo gets
    ``p_noise = 1.0`` and ``keep = False``.
    """
    noise_filter = NoiseFilter.load(model_dir)
    street = _street_images(images)
    p, keep = noise_filter.score(street.column("path").to_pylist())
    return _scores_table(street.column("image_id"), p, keep)


# ------------------------------------------------------------------------ validation


def _read_labels(source: pa.Table | str | Path) -> tuple[pa.Table, Path | None]:
    if isinstance(source, pa.Table):
        return source, None
    path = Path(source)
    if not path.exists():
        raise ValueError(f"label file {path} does not exist")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        # Read ids as text: a hex sha256 made only of digits must not become a number.
        options = pacsv.ConvertOptions(
            column_types={c: pa.string() for c in ("image_id", "path", "label")},
            strings_can_be_null=True,
        )
        return pacsv.read_csv(path, convert_options=options), path.parent
    if suffix in (".parquet", ".pq"):
        return pq.read_table(path), path.parent
    raise ValueError(f"unsupported label file {path.name!r}: use .csv or .parquet")


def _rows(rows: list[int], values: list[Any] | None = None, limit: int = 10) -> str:
    """'rows 2, 5 (...)' — 1-based data rows, not counting a CSV header."""
    shown = [f"{r + 1}" + (f" ({values[i]!r})" if values is not None else "") for i, r in enumerate(rows[:limit])]
    more = f" and {len(rows) - limit} more" if len(rows) > limit else ""
    return f"row{'s' if len(rows) > 1 else ''} " + ", ".join(shown) + more


def validate_labels(table_or_path: pa.Table | str | Path, known_image_ids: Collection[str]) -> pa.Table:
    """Check a user's noise labels and return them as NOISE_LABELS, or refuse with ValueError.

    Accepts a table or a .csv/.parquet file with a ``label`` column and either ``image_id``
    or ``path`` (an image file whose sha256 is its image_id; relative to the label file).
    Labels are compared after trimming and lower-casing. Refuses, naming the offending
    rows (1-based, header not counted): a missing column, an empty cell, an unknown label,
    an unknown image, an image labelled twice.
    """
    table, base = _read_labels(table_or_path)
    columns = set(table.column_names)
    if "label" not in columns or not columns & {"image_id", "path"}:
        raise ValueError(
            f"noise labels need a 'label' column and an 'image_id' or 'path' column; got {sorted(columns)}"
        )
    id_column = "image_id" if "image_id" in columns else "path"
    raw_ids = table.column(id_column).cast(pa.string()).to_pylist()
    raw_labels = table.column("label").cast(pa.string()).to_pylist()
    ids = [v.strip() if isinstance(v, str) and v.strip() else None for v in raw_ids]
    labels = [v.strip().lower() if isinstance(v, str) and v.strip() else None for v in raw_labels]
    problems: list[str] = []
    empty = [k for k in range(table.num_rows) if ids[k] is None or labels[k] is None]
    if empty:
        problems.append(f"empty {id_column} or label in {_rows(empty)}")
    if id_column == "path":
        # A photo given by file: its image_id is the sha256 of its bytes, as in the store.
        missing_files: list[int] = []
        for k, value in enumerate(ids):
            if value is None:
                continue
            file = Path(value)
            if base is not None and not file.is_absolute():
                file = base / file
            if file.is_file():
                ids[k] = BlobStore.digest(file.read_bytes())
            else:
                ids[k] = None
                missing_files.append(k)
        if missing_files:
            problems.append(f"image file not found in {_rows(missing_files, [raw_ids[k] for k in missing_files])}")
    bad_label = [k for k, lab in enumerate(labels) if lab is not None and lab not in LABELS]
    if bad_label:
        expected = " or ".join(LABELS)
        problems.append(f"unknown label (expected {expected}) in {_rows(bad_label, [raw_labels[k] for k in bad_label])}")
    known = known_image_ids if isinstance(known_image_ids, (set, frozenset, dict)) else set(known_image_ids)
    unknown = [k for k, i in enumerate(ids) if i is not None and i not in known]
    if unknown:
        problems.append(f"image not among the street photos in {_rows(unknown, [ids[k] for k in unknown])}")
    first: dict[str, int] = {}
    duplicated: list[int] = []
    for k, i in enumerate(ids):
        if i is None:
            continue
        if i in first:
            duplicated.append(k)
        else:
            first[i] = k
    if duplicated:
        firsts = ", ".join(str(first[ids[k]] + 1) for k in duplicated[:10])
        problems.append(f"image labelled more than once in {_rows(duplicated)} (first labelled in rows {firsts})")
    if problems:
        raise ValueError("noise labels refused:\n  - " + "\n  - ".join(problems))
    return pa.table({"image_id": ids, "label": labels}, schema=NOISE_LABELS)
