"""The localise stage's core: a garment localiser learned from the shop's own data.

No box is drawn by hand. Each *training* street photo shows an item whose shop photos the
shop also has; the window of the photo's feature map whose GeM descriptor best matches
those shop photos' descriptors is where the garment most likely is: its **pseudo-box**
(hundreds of windows from one pass, :func:`~street2shop.models.localise.region_gem`). A
:class:`~street2shop.models.localise.BoxHead` then learns, on the frozen backbone's feature
map of the whole photo (the pass the service makes anyway), to predict that box and the
item's category from the photo alone, so it works on photos of unknown items.

A shop that knows its true boxes (the demo's ``truth/boxes.csv``) or a benchmark that has
them (hm-dev's ``boxes.csv``) *scores* the head by IoU (:func:`iou_figures`); truth never
trains it.

Everything here is pure: the caller passes the feature maps (``maps_of``: photo paths ->
``(n, C, h, w)``), as :mod:`street2shop.models.views` is passed its model.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torchvision.ops import box_iou

from street2shop.cleaning.selection import training_images
from street2shop.models.backbones import Backbone, BackboneNameStr
from street2shop.models.localise import BoxHead, box_loss
from street2shop.models.preprocess import read_image
from street2shop.storage.schemas import PSEUDO_BOXES

#: maps of this many photos at a time: the whole training set's maps are kept (float16)
MAP_BATCH = 32


class LocaliserParams(BaseModel):
    """How the garment localiser is learned: the backbone whose map it reads, the pseudo-box
    search and the head's training."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    backbone: BackboneNameStr = "efficientnet_lite0"
    #: False: the backbone's initial weights under torch.manual_seed(seed) (a test backbone)
    pretrained: bool = True
    seed: int = 0
    #: side of the square whole-photo pass whose feature map the head reads (the photo is
    #: resized to it whatever its shape): the service's embedding size
    input_size: int = Field(default=224, gt=0)
    #: the smallest pseudo-box side, as a share of the map's side
    min_frac: float = Field(default=0.4, gt=0, le=1)
    #: GeM exponent of the window and shop-photo descriptors
    gem_p: float = Field(default=3.0, gt=0)
    #: the pseudo-box is the similarity-weighted mean of the ``top_windows`` best windows
    #: (1: the best window alone); a mean follows the garment between the map's cells
    top_windows: int = Field(default=32, ge=1)
    hidden: int = Field(default=64, ge=8)
    steps: int = Field(default=150, ge=1)
    batch_size: int = Field(default=64, ge=1)
    lr: float = Field(default=3e-3, gt=0)
    weight_decay: float = Field(default=1e-4, ge=0)
    #: weight of the category loss beside the box loss (0: no category head)
    category_weight: float = Field(default=0.5, ge=0)
    #: refinement rounds: re-search each pseudo-box among windows near the head's box, retrain
    rounds: int = Field(default=0, ge=0)
    #: how the backbone runs while the maps are made ("openvino": several times faster on CPU)
    runtime: Literal["openvino", "eager"] = "openvino"


# ------------------------------------------------------------------------- feature maps
def photo_batch(paths: Sequence[str], backbone: Backbone, size: int) -> torch.Tensor:
    """The photos resized (squashed) to ``size`` square and normalised as the backbone wants."""
    from PIL import Image

    pre = backbone.preprocess
    images = [read_image(p, min_size=size).convert("RGB").resize((size, size), Image.Resampling.BICUBIC) for p in paths]
    return torch.stack([pre.to_tensor(im) for im in images])


def map_function(backbone: Backbone, size: int, runtime: str = "openvino") -> Callable[[torch.Tensor], np.ndarray]:
    """batch ``(n, 3, size, size)`` -> the backbone's feature maps ``(n, C, h, w)`` float32.

    ``openvino``: the backbone converted once (seconds), then several times faster than
    eager PyTorch on a CPU; eager where OpenVINO is not installed or cannot convert it."""
    backbone = backbone.eval()
    if runtime == "openvino":
        try:
            import openvino as ov

            example = torch.zeros(1, 3, size, size)
            network = ov.convert_model(_FeatureMap(backbone), example_input=example, input=[-1, 3, size, size])
            compiled = ov.Core().compile_model(network, "CPU", {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"})
            return lambda x: compiled(x.numpy())[0].copy()
        except Exception:  # noqa: BLE001 - no OpenVINO, or a backbone it cannot trace: eager
            pass

    def eager(x: torch.Tensor) -> np.ndarray:
        with torch.no_grad():
            return backbone.forward_features(x).numpy()

    return eager


class _FeatureMap(torch.nn.Module):
    def __init__(self, backbone: Backbone) -> None:
        super().__init__()
        self.backbone = backbone

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone.forward_features(x)


def maps_function(backbone: Backbone, size: int, runtime: str = "openvino") -> Callable[[Sequence[str]], np.ndarray]:
    """photo paths -> their feature maps ``(n, C, h, w)`` (float16: a thousand maps fit)."""
    run = map_function(backbone, size, runtime)

    def maps_of(paths: Sequence[str]) -> np.ndarray:
        out = [run(photo_batch(paths[i : i + MAP_BATCH], backbone, size)).astype(np.float16)
               for i in range(0, len(paths), MAP_BATCH)]
        return np.concatenate(out) if out else np.empty((0, backbone.num_features, 1, 1), np.float16)

    return maps_of


# ---------------------------------------------------------------------------- pseudo-boxes
def box_windows(height: int, width: int, min_frac: float = 0.25) -> np.ndarray:
    """Every rectangle of cells ``(n, 4)`` as (y0, x0, y1, x1) of a ``height x width`` map
    whose sides are at least ``min_frac`` of the map's (any shape, unlike
    :func:`~street2shop.models.localise.region_windows`: a garment need not have the photo's)."""
    if not 0 < min_frac <= 1:
        raise ValueError(f"min_frac must be in (0, 1], got {min_frac}")
    min_h, min_w = max(1, round(min_frac * height)), max(1, round(min_frac * width))
    spans = lambda n, least: [(a, b) for a in range(n) for b in range(a + least, n + 1)]  # noqa: E731
    return np.asarray([(y0, x0, y1, x1) for y0, y1 in spans(height, min_h) for x0, x1 in spans(width, min_w)], np.int64)


def windows_as_boxes(windows: np.ndarray, height: int, width: int) -> np.ndarray:
    """Cell windows (y0, x0, y1, x1) -> boxes (x0, y0, x1, y1) in fractions of the photo."""
    w = np.asarray(windows, np.float32)
    return np.stack([w[:, 1] / width, w[:, 0] / height, w[:, 3] / width, w[:, 2] / height], axis=1)


def descriptors(maps: np.ndarray, p: float = 3.0) -> np.ndarray:
    """Unit GeM descriptors ``(n, C)`` of whole feature maps ``(n, C, h, w)``."""
    maps = torch.from_numpy(np.asarray(maps))
    with torch.no_grad():
        return window_gem(maps, np.asarray([(0, 0, maps.shape[-2], maps.shape[-1])]), p)[:, 0].numpy()


def window_gem(maps: torch.Tensor, windows: np.ndarray, p: float = 3.0) -> torch.Tensor:
    """Unit GeM descriptors ``(B, n, C)`` of every cell window ``(n, 4)`` of each map ``(B, C, h, w)``.

    The batched form of :func:`~street2shop.models.localise.region_gem`: the windows' means
    of x^p are one matrix product with their averaging matrix, float32, for a batch of maps."""
    _, _, h, w = maps.shape
    average = torch.zeros(len(windows), h, w)
    for k, (y0, x0, y1, x1) in enumerate(np.asarray(windows).tolist()):
        average[k, y0:y1, x0:x1] = 1.0 / ((y1 - y0) * (x1 - x0))
    means = maps.float().clamp(min=1e-6).pow(p).flatten(2) @ average.flatten(1).T  # (B, C, n)
    return F.normalize(means.clamp(min=1e-18).pow(1.0 / p).transpose(1, 2), dim=-1)


def pseudo_boxes(
    maps: np.ndarray, references: Sequence[np.ndarray], min_frac: float = 0.4, p: float = 3.0, top_windows: int = 1,
    near: np.ndarray | None = None, batch: int = 64,
) -> tuple[np.ndarray, np.ndarray]:
    """Per photo: the box of the window of its map ``(C, h, w)`` that best matches its
    ``references`` (unit descriptors ``(k, C)`` of its item's shop photos), and that cosine.

    ``top_windows`` > 1: the mean of that many best windows' boxes, weighted by how much
    each beats the last of them. ``near`` ``(n, 4)``: only windows overlapping that box by
    IoU >= 0.3 compete (a refinement round around the head's own box)."""
    if len(maps) != len(references):
        raise ValueError(f"{len(maps)} maps but {len(references)} reference sets")
    n, _, h, w = np.shape(maps) if len(maps) else (0, 0, 1, 1)
    windows = box_windows(h, w, min_frac)
    boxes = torch.from_numpy(windows_as_boxes(windows, h, w))
    out, scores = np.zeros((n, 4), np.float32), np.zeros(n, np.float32)
    top = min(top_windows, len(windows))
    with torch.no_grad():
        for start in range(0, n, batch):
            described = window_gem(torch.from_numpy(np.asarray(maps[start : start + batch])), windows, p)
            for j, vectors in enumerate(described):
                i = start + j
                similarity = (vectors @ torch.from_numpy(np.asarray(references[i], np.float32)).T).max(dim=1).values
                if near is not None:
                    overlap = box_iou(boxes, torch.from_numpy(near[i : i + 1].astype(np.float32)))[:, 0]
                    if bool((overlap >= 0.3).any()):
                        similarity = torch.where(overlap >= 0.3, similarity, torch.tensor(-2.0))
                best = torch.topk(similarity, top).indices
                weights = similarity[best] - similarity[best[-1]] + 1e-3
                out[i] = ((boxes[best] * weights[:, None]).sum(0) / weights.sum()).numpy()
                scores[i] = float(similarity[best[0]])
    return out, scores


# ------------------------------------------------------------------------------ the head
def fit_box_head(
    maps: np.ndarray, boxes: np.ndarray, params: LocaliserParams, labels: np.ndarray | None = None,
    categories: Sequence[str] = (),
) -> tuple[BoxHead, dict]:
    """A :class:`BoxHead` trained on feature maps ``(n, C, h, w)`` to predict ``boxes``
    ``(n, 4)`` and (``labels``: indexes into ``categories``) the category; and its figures."""
    if len(maps) == 0:
        raise ValueError("no training photos to learn the localiser from")
    torch.manual_seed(params.seed)
    use_categories = labels is not None and params.category_weight > 0 and len(categories) > 1
    head = BoxHead(int(maps.shape[1]), params.hidden, categories if use_categories else ())
    optimiser = torch.optim.AdamW(head.parameters(), lr=params.lr, weight_decay=params.weight_decay)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=params.steps)
    x_all, y_all = torch.from_numpy(np.asarray(maps)), torch.from_numpy(np.asarray(boxes, np.float32))
    c_all = torch.from_numpy(np.asarray(labels, np.int64)) if use_categories else None
    rng = torch.Generator().manual_seed(params.seed)
    started, losses = time.perf_counter(), []
    head.train()
    for _ in range(params.steps):
        idx = torch.randint(len(x_all), (min(params.batch_size, len(x_all)),), generator=rng)
        loss = box_loss(head, x_all[idx].float(), y_all[idx], categories=None if c_all is None else c_all[idx],
                        category_weight=params.category_weight)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        schedule.step()
        losses.append(float(loss.detach()))
    tail = losses[-max(1, len(losses) // 10) :]
    return head.eval(), {"train_seconds": time.perf_counter() - started, "last_loss": float(np.mean(tail))}


def predict_boxes(head: BoxHead, maps: np.ndarray, batch: int = 256) -> np.ndarray:
    """The head's box ``(n, 4)`` (fractions, clipped to the photo) of each map."""
    out = []
    with torch.no_grad():
        for i in range(0, len(maps), batch):
            out.append(head(torch.from_numpy(np.asarray(maps[i : i + batch])).float()).clamp(0, 1).numpy())
    return np.concatenate(out) if out else np.zeros((0, 4), np.float32)


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of each box of ``a`` ``(n, 4)`` with the same row of ``b``."""
    if len(a) != len(b):
        raise ValueError(f"{len(a)} boxes against {len(b)}")
    if not len(a):
        return np.zeros(0, np.float32)
    ta, tb = (torch.from_numpy(np.asarray(x, np.float32)).clamp(0, 1) for x in (a, b))
    return box_iou(ta, tb).diagonal().numpy()


def iou_figures(predicted: np.ndarray, truth: np.ndarray, prefix: str = "iou") -> dict[str, float | int]:
    """``{prefix}_median``, ``_mean``, ``_ge_0_5`` (share of photos with IoU >= 0.5), ``_photos``."""
    values = iou(predicted, truth)
    if not len(values):
        return {f"{prefix}_photos": 0}
    return {f"{prefix}_median": float(np.median(values)), f"{prefix}_mean": float(values.mean()),
            f"{prefix}_ge_0_5": float((values >= 0.5).mean()), f"{prefix}_photos": int(len(values))}


# ----------------------------------------------------------------------- the stage's core
@dataclass
class LearnedLocaliser:
    """What the localise stage publishes: the head, the pseudo-boxes it learned from, figures."""

    head: BoxHead
    pseudo_boxes: pa.Table
    figures: dict = field(default_factory=dict)


def _training_street(annotated: pa.Table) -> tuple[pa.Table, dict[str, list[str]]]:
    """The training split's clean street photos whose item has training shop photos, and the
    shop photos' paths per item."""
    train = training_images(annotated)
    shop_paths: dict[str, list[str]] = {}
    shop = train.filter(pc.equal(train.column("role"), "shop"))
    for item, path in zip(shop.column("item_id").to_pylist(), shop.column("path").to_pylist()):
        shop_paths.setdefault(item, []).append(path)
    street = train.filter(pc.equal(train.column("role"), "street"))
    keep = [item in shop_paths for item in street.column("item_id").to_pylist()]
    return street.filter(pa.array(keep, pa.bool_())), shop_paths


def learn_localiser(annotated: pa.Table, params: LocaliserParams, maps_of: Callable[[Sequence[str]], np.ndarray]) -> LearnedLocaliser:
    """Pseudo-boxes of the training street photos, then the box head trained on them
    (``rounds`` more times: pseudo-boxes re-searched near the head's box, head retrained)."""
    started = time.perf_counter()
    street, shop_paths = _training_street(annotated)
    if street.num_rows == 0:
        raise ValueError("no training street photo has a training shop photo of its item: nothing to learn boxes from")
    items = street.column("item_id").to_pylist()
    shop_items = sorted(set(items))
    paths = [p for item in shop_items for p in shop_paths[item]]
    shop_vectors = descriptors(maps_of(paths), params.gem_p)
    rows_of, k = {}, 0
    for item in shop_items:
        rows_of[item] = slice(k, k + len(shop_paths[item]))
        k += len(shop_paths[item])
    references = [shop_vectors[rows_of[item]] for item in items]
    maps = maps_of(street.column("path").to_pylist())
    maps_seconds = time.perf_counter() - started
    categories = sorted({c for c in street.column("category").to_pylist() if c})
    labels = np.asarray([categories.index(c) if c else 0 for c in street.column("category").to_pylist()])
    boxes, scores = pseudo_boxes(maps, references, params.min_frac, params.gem_p, params.top_windows)
    head, fit = fit_box_head(maps, boxes, params, labels, categories)
    for _ in range(params.rounds):
        boxes, scores = pseudo_boxes(maps, references, params.min_frac, params.gem_p, params.top_windows,
                                     near=predict_boxes(head, maps))
        head, fit = fit_box_head(maps, boxes, params, labels, categories)
    table = pa.table({
        "image_id": street.column("image_id"), "x0": boxes[:, 0], "y0": boxes[:, 1], "x1": boxes[:, 2], "y1": boxes[:, 3],
        "category": street.column("category"), "match_score": scores, "round": pa.array([params.rounds] * len(boxes), pa.int32()),
    }).cast(PSEUDO_BOXES)  # fmt: skip
    figures = {
        "pseudo_boxes": int(len(boxes)), "categories": len(head.categories), "maps_seconds": maps_seconds,
        "training_seconds": time.perf_counter() - started, "head_seconds": fit["train_seconds"], "last_loss": fit["last_loss"],
        "median_pseudo_box_side": float(np.median(np.sqrt((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])))),
    }  # fmt: skip
    return LearnedLocaliser(head, table, figures)


def score_localiser(
    head: BoxHead, maps_of: Callable[[Sequence[str]], np.ndarray], paths: Sequence[str], truth: np.ndarray, prefix: str = "iou"
) -> dict[str, float | int]:
    """:func:`iou_figures` of the head's boxes of the photos at ``paths`` against their ``truth``
    ``(n, 4)``, and the head's milliseconds per photo (its map given)."""
    maps = maps_of(list(paths))
    started = time.perf_counter()
    predicted = predict_boxes(head, maps, batch=1)
    ms = 1000 * (time.perf_counter() - started) / max(1, len(paths))
    return {**iou_figures(predicted, truth, prefix), f"{prefix}_head_ms": ms}
