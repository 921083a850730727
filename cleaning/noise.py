"""Noise filter for customer review photos: which street photos are usable for training.

Review photos include parcels, fabric close-ups, screenshots and unrelated pictures. A few
thousand human labels (``good`` / ``noise``) train a small classifier on cheap image features;
it scores every street photo with ``p_noise`` and a ``keep`` verdict (nothing is deleted).

- Features come from an extractor chosen by name (:mod:`street2shop.cleaning.noise_features`:
  cheap ``"colour_edge"`` statistics, or the frozen pretrained ``"cnn"``). Both feed the same
  logistic-regression head.
- ``fine_tune=True`` (``"cnn"`` only) goes one step further, linear-probe-then-fine-tune
  (:mod:`street2shop.cleaning.noise_finetune`).
- The labelled photos are split into train and held-out *by product* (the items table's
  ``product_id``), so photos of one product never sit on both sides and the held-out
  figures are honest. Labels are validated by :mod:`street2shop.cleaning.labels`.
- The ``keep`` threshold is chosen on the held-out labels: the largest kept set whose
  precision of "good" reaches the target. The model is fitted on the train side only, so the
  threshold is calibrated for exactly the model that is saved.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch
from pydantic import BaseModel, Field, model_validator
from scipy.special import expit
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import precision_recall_fscore_support, roc_auc_score
from sklearn.model_selection import StratifiedGroupKFold
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from street2shop.cleaning.labels import validate_labels
from street2shop.cleaning.noise_features import CnnExtractor, FeatureExtractor, build_extractor
from street2shop.cleaning.noise_finetune import TrainedPart, fine_tune, split_trunk, trunk_activations
from street2shop.models.backbones import BackboneNameStr
from street2shop.models.embedder import load_embedder, save_checkpoint
from street2shop.storage.schemas import NOISE_SCORES

MODEL_FILE = "noise_filter.joblib"
NETWORK_FILE = "noise_cnn.pt"  #: the fine-tuned CNN's state dict, next to MODEL_FILE
REPORT_FILE = "noise_report.json"


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
    backbone: BackboneNameStr = "efficientnet_lite0"
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


def _street_images(images: pa.Table, item_product: Mapping[str, str] | None = None) -> pa.Table:
    """Street photos, one row per image_id (the same bytes may be listed under two items),
    with the product the photo was posted under when ``item_product`` is given."""
    street = images.filter(pc.equal(images.column("role"), "street"))
    seen: set[str] = set()
    keep: list[int] = []
    for k, image_id in enumerate(street.column("image_id").to_pylist()):
        if image_id not in seen:
            seen.add(image_id)
            keep.append(k)
    street = street.take(pa.array(keep, type=pa.int64()))
    columns = {"image_id": street.column("image_id"), "path": street.column("path")}
    if item_product is not None:
        items = street.column("item_id").to_pylist()
        unknown = sorted({i for i in items if i not in item_product})
        if unknown:
            raise ValueError(f"{len(unknown)} street photo item(s) are not in the items table, e.g. {unknown[:3]}")
        columns["product_id"] = pa.array([item_product[i] for i in items], type=pa.string())
    return pa.table(columns)


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


# ---------------------------------------------------------------------- the fine-tuned head


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


def train_noise_filter(images: pa.Table, labels: pa.Table, params: NoiseParams, out_dir: Path, items: pa.Table) -> NoiseReport:
    """Fit the noise filter on labelled street photos, save it in ``out_dir``, report on held-out.

    ``images`` is shaped like IMAGES with absolute paths; ``labels`` like NOISE_LABELS (checked
    with :func:`validate_labels` against the street photos); ``items`` like ITEMS (its
    ``product_id`` groups the held-out split). Writes ``noise_filter.joblib``
    (model, extractor config, threshold), ``noise_report.json`` and, when fine-tuned,
    ``noise_cnn.pt`` (the network, an embedder checkpoint).
    """
    report, _ = _fit(images, labels, params, Path(out_dir), items, score_all=False)
    return report


def train_and_score(
    images: pa.Table, labels: pa.Table, params: NoiseParams, out_dir: Path, items: pa.Table
) -> tuple[NoiseReport, pa.Table]:
    """:func:`train_noise_filter`, then NOISE_SCORES for every street photo as
    :func:`score_images` would compute them from ``out_dir``, but with each photo decoded and
    run through the network once: the labelled photos' features serve both fitting and
    scoring (the stage's cost is feature extraction, not the linear model)."""
    report, scores = _fit(images, labels, params, Path(out_dir), items, score_all=True)
    assert scores is not None
    return report, scores


def _fit(
    images: pa.Table, labels: pa.Table, params: NoiseParams, out_dir: Path, items: pa.Table, score_all: bool
) -> tuple[NoiseReport, pa.Table | None]:
    item_product = dict(zip(items.column("item_id").to_pylist(), items.column("product_id").to_pylist()))
    street = _street_images(images, item_product)
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
        activations, readable = trunk_activations(network, frozen, paths, extractor.batch_size)
        part = TrainedPart(tail, network.head, network.dim)
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
        fine_tune(
            part, activations[torch.from_numpy(train)], is_noise_of[train],
            lr=params.fine_tune_lr, epochs=params.fine_tune_epochs, batch_size=params.fine_tune_batch_size, seed=params.seed,
        )  # fmt: skip
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
