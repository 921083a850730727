"""Query-side localisation: which crops of a street photo to embed, and how to score them.

A street photo shows the garment somewhere in a larger scene; a shop photo shows it filling
the frame. Embedding the whole street photo compares a scene with a garment, so the garment
is first looked for. A :class:`Localiser` maps a photo to a :class:`Localisation`: the
crops to embed (boxes in fractions of the photo) and how a gallery photo's scores against
those crops combine into one score:

- ``max``: the best crop decides (a shop photo matches the crop that shows its garment);
  this is "search with every crop, merge the result lists by best score".
- ``mean``: the mean of the crop scores, i.e. searching with the (unnormalised) mean of the
  crop vectors: one search, but the background crops dilute it.
- ``top2``: the mean of the two best crop scores (``topK`` for any K): one lucky crop alone
  no longer decides.

Localisers by name, in :data:`LOCALISERS` (the shared :class:`~street2shop.registry.Registry`):

- ``none``: the whole photo, one forward pass.
- ``multicrop``: the whole photo plus a grid of crops at several scales, each crop keeping
  the photo's aspect ratio (the shop photos are framed like the street photos, so a crop of
  the same aspect, padded like a shop photo, frames the garment the same way). Positions per
  scale: ``"centre"``, ``"corners"``, ``"corners+centre"`` (5), ``"column"`` (top, middle,
  bottom, horizontally centred), or ``"grid3"`` (3 x 3, overlapping).
- ``regions``: one forward pass of the whole photo at a larger size (672 x 448 by default)
  and GeM over every window of its feature map (the photo's aspect, heights from
  ``min_frac`` of the map up to all of it, ``stride`` cells apart), computed from an integral
  image of x^p: hundreds of "crops" for the price of one pass (:class:`RegionSearch`).
- ``boxhead``: a learned box regressor (:class:`BoxHead`) on the backbone's feature map of
  the whole photo predicts the garment's box; the crops are that box at a few enlargements.
  It needs the feature map, so it is built with ``feature_map=`` (a callable image -> map).

Both feature-map localisers work on any backbone of :mod:`street2shop.models.backbones`, a
vision transformer included (its patch tokens laid on their grid): :func:`feature_map_of`
makes the image -> map callable, and :meth:`RegionSearch.for_backbone` takes the map's
stride (32 for EfficientNet, the patch size for a ViT) from the backbone.

Everything here is pure: no weights are loaded, nothing reads files. Embedding the crops is the
caller's job (:func:`crop` cuts them; the embedder's own preprocessing resizes them).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from torchvision.ops import generalized_box_iou_loss, nms

from street2shop.registry import Registry
from street2shop.retrieval.ranking import combine_crop_scores, parse_crop_scoring

#: (x0, y0, x1, y1) as fractions of the photo's width and height; may reach past the edges.
Box = tuple[float, float, float, float]
WHOLE: Box = (0.0, 0.0, 1.0, 1.0)
Positions = Literal["centre", "corners", "corners+centre", "column", "grid3"]
POSITIONS = ("centre", "corners", "corners+centre", "column", "grid3")


@dataclass(frozen=True)
class Garment:
    """A garment found in a photo: its box (fractions of the photo), how sure the localiser
    is (0..1) and its category where the localiser predicts one."""

    box: Box
    score: float
    category: str | None = None


@dataclass(frozen=True)
class Localisation:
    """The crops of one photo to embed and the rule that combines their scores.

    ``input_size`` ``None``: each box is cut out (:func:`crop`) and embedded on its own.
    ``(height, width)``: the whole photo is embedded once at that size and each box is
    pooled from its feature map (:func:`pool_boxes`); boxes then follow the map's cells.
    """

    boxes: tuple[Box, ...]
    scoring: str = "max"
    input_size: tuple[int, int] | None = None
    #: the garments a detecting localiser found, best first (empty: none found, or a
    #: localiser that does not detect, e.g. ``none`` and ``multicrop``)
    garments: tuple[Garment, ...] = ()

    @property
    def passes(self) -> int:
        """Forward passes of the network this localisation costs (besides any it used itself)."""
        return 1 if self.input_size is not None else len(self.boxes)

    def __post_init__(self) -> None:
        if not self.boxes:
            raise ValueError("a localisation needs at least one box")
        for box in self.boxes:
            x0, y0, x1, y1 = box
            if not (x1 > x0 and y1 > y0):
                raise ValueError(f"empty box {box}")
        parse_scoring(self.scoring)


class Localiser(Protocol):
    def __call__(self, image: Image.Image) -> Localisation: ...


LocaliserFactory = Callable[..., Localiser]
LOCALISERS: Registry[LocaliserFactory] = Registry("localiser")
register_localiser = LOCALISERS.register


def list_localisers() -> list[str]:
    return LOCALISERS.names()


def create_localiser(name: str, **params) -> Localiser:
    """The localiser registered as ``name``, configured by ``params``."""
    return LOCALISERS.get(name)(**params)


# ----------------------------------------------------------------------------- scoring
# How a gallery photo's crop scores combine is the ranking's rule (retrieval/ranking.py), named
# here too because a localiser says which one its crops want.
parse_scoring = parse_crop_scoring
combine_scores = combine_crop_scores


# ------------------------------------------------------------------------------- boxes
def position_offsets(positions: str) -> list[tuple[float, float]]:
    """Where a crop sits in the room the photo leaves it: (fx, fy) in [0, 1] (0 = left/top)."""
    table = {
        "centre": [(0.5, 0.5)],
        "corners": [(0.0, 0.0), (1.0, 0.0), (0.0, 1.0), (1.0, 1.0)],
        "corners+centre": [(0.0, 0.0), (1.0, 0.0), (0.0, 1.0), (1.0, 1.0), (0.5, 0.5)],
        "column": [(0.5, 0.0), (0.5, 0.5), (0.5, 1.0)],
        "grid3": [(fx, fy) for fy in (0.0, 0.5, 1.0) for fx in (0.0, 0.5, 1.0)],
    }
    if positions not in table:
        raise ValueError(f"unknown positions {positions!r}; choose one of {POSITIONS}")
    return table[positions]


def grid_boxes(
    scales: Sequence[float] = (0.75, 0.55),
    positions: str = "corners+centre",
    include_whole: bool = True,
    aspect: float = 1.0,
) -> tuple[Box, ...]:
    """The whole photo (optionally) and, per scale ``s``, crops of ``s`` of each side.

    ``aspect`` != 1 changes the width only: width fraction ``s * aspect`` (capped at 1),
    height fraction ``s`` (> 1: relatively wider crops, < 1: narrower). Boxes are rounded to 1e-6 so that equal crops compare equal.
    """
    boxes: list[Box] = [WHOLE] if include_whole else []
    for s in scales:
        if not 0 < s <= 1:
            raise ValueError(f"crop scales must be in (0, 1], got {s}")
        w, h = min(1.0, s * aspect), s
        for fx, fy in position_offsets(positions):
            x0, y0 = (1 - w) * fx, (1 - h) * fy
            box = tuple(round(v, 6) for v in (x0, y0, x0 + w, y0 + h))
            if box not in boxes:
                boxes.append(box)  # a scale of 1 repeats the whole photo: keep one
    if not boxes:
        raise ValueError("no boxes: give scales or include_whole=True")
    return tuple(boxes)


def crop(image: Image.Image, box: Box, fill: tuple[int, int, int] = (128, 128, 128)) -> Image.Image:
    """The part of ``image`` inside ``box``; parts past the photo's edges are ``fill``."""
    width, height = image.size
    x0, y0, x1, y1 = (round(box[0] * width), round(box[1] * height), round(box[2] * width), round(box[3] * height))
    x1, y1 = max(x1, x0 + 1), max(y1, y0 + 1)
    if x0 >= 0 and y0 >= 0 and x1 <= width and y1 <= height:
        return image.crop((x0, y0, x1, y1))
    out = Image.new(image.mode, (x1 - x0, y1 - y0), fill if image.mode == "RGB" else 0)
    out.paste(image, (-x0, -y0))
    return out


def crops(image: Image.Image, localisation: Localisation) -> list[Image.Image]:
    return [crop(image, box) for box in localisation.boxes]


def expand_box(box: Box, factor: float, aspect: float | None = None, image_aspect: float = 1.0) -> Box:
    """``box`` grown by ``factor`` about its centre; with ``aspect`` (width / height in
    pixels) the shorter side is first extended so the box has that shape.
    ``image_aspect`` is the photo's width / height (fractions -> pixels)."""
    x0, y0, x1, y1 = box
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    w, h = (x1 - x0) * image_aspect, y1 - y0  # in units of the photo's height
    if aspect is not None:
        if w / h < aspect:
            w = h * aspect
        else:
            h = w / aspect
    w, h = w * factor / image_aspect, h * factor
    return (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)


# ------------------------------------------------------------------------- localisers
@dataclass(frozen=True)
class FixedBoxes:
    """The same boxes for every photo (``none`` and ``multicrop``)."""

    boxes: tuple[Box, ...]
    scoring: str = "max"

    def __post_init__(self) -> None:
        Localisation(self.boxes, self.scoring)  # validates

    def __call__(self, image: Image.Image) -> Localisation:
        return Localisation(self.boxes, self.scoring)


@register_localiser("none")
def _none() -> Localiser:
    return FixedBoxes((WHOLE,), "max")


@register_localiser("multicrop")
def _multicrop(
    scales: Sequence[float] = (0.75, 0.55),
    positions: str = "corners+centre",
    include_whole: bool = True,
    aspect: float = 1.0,
    scoring: str = "max",
) -> Localiser:
    return FixedBoxes(grid_boxes(scales, positions, include_whole, aspect), scoring)


# ------------------------------------------------------------------ feature-map regions
def region_windows(height: int, width: int, min_frac: float = 0.3, stride: int = 1) -> np.ndarray:
    """Cell windows ``(n, 4)`` as (y0, x0, y1, x1) of a ``height x width`` feature map.

    Each window has the map's aspect (its width is its height scaled by width / height,
    rounded), heights run from ``round(min_frac * height)`` to ``height``, positions step by
    ``stride`` cells, and the last position of each row/column is always included so the
    map's far edges are covered. The whole map is the last window.
    """
    if not 0 < min_frac <= 1:
        raise ValueError(f"min_frac must be in (0, 1], got {min_frac}")
    if stride < 1 or height < 1 or width < 1:
        raise ValueError(f"need stride >= 1 and a non-empty map, got stride={stride}, map {height}x{width}")
    out = []
    for rh in range(max(1, round(min_frac * height)), height + 1):
        rw = max(1, min(width, round(rh * width / height)))
        ys = sorted(set(range(0, height - rh + 1, stride)) | {height - rh})
        xs = sorted(set(range(0, width - rw + 1, stride)) | {width - rw})
        out.extend((y, x, y + rh, x + rw) for y in ys for x in xs)
    return np.asarray(out, dtype=np.int64)


def region_gem(fmap: np.ndarray | torch.Tensor, windows: np.ndarray, p: float = 3.0, eps: float = 1e-6) -> np.ndarray:
    """GeM ``(mean x^p)^(1/p)`` of a feature map ``(C, h, w)`` over each cell window ``(n, 4)``.

    One integral image of x^p serves every window, so a thousand windows cost about as much
    as a few poolings of the whole map. Returns ``(n, C)`` float32 (not normalised).
    """
    x = fmap.detach().cpu().numpy() if isinstance(fmap, torch.Tensor) else np.asarray(fmap)
    if x.ndim != 3:
        raise ValueError(f"fmap must be (C, h, w), got shape {x.shape}")
    x = np.power(np.clip(x.astype(np.float64), eps, None), p)
    integral = np.zeros((x.shape[0], x.shape[1] + 1, x.shape[2] + 1))
    integral[:, 1:, 1:] = x.cumsum(1).cumsum(2)
    w = np.asarray(windows, dtype=np.int64).reshape(-1, 4)
    y0, x0, y1, x1 = w.T
    if (y0 < 0).any() or (x0 < 0).any() or (y1 > x.shape[1]).any() or (x1 > x.shape[2]).any() or \
            (y1 <= y0).any() or (x1 <= x0).any():
        raise ValueError("windows must be non-empty and inside the map")
    sums = integral[:, y1, x1] - integral[:, y0, x1] - integral[:, y1, x0] + integral[:, y0, x0]
    means = sums / ((y1 - y0) * (x1 - x0))
    return np.power(np.clip(means, eps**p, None), 1.0 / p).T.astype(np.float32)


def boxes_to_windows(boxes: Sequence[Box], height: int, width: int) -> np.ndarray:
    """Fractional boxes -> the cell windows of a ``height x width`` map that they cover
    (rounded to the nearest cell edges, at least one cell, clipped to the map)."""
    out = []
    for x0, y0, x1, y1 in boxes:
        r0, c0 = int(np.clip(round(y0 * height), 0, height - 1)), int(np.clip(round(x0 * width), 0, width - 1))
        r1 = int(np.clip(round(y1 * height), r0 + 1, height))
        c1 = int(np.clip(round(x1 * width), c0 + 1, width))
        out.append((r0, c0, r1, c1))
    return np.asarray(out, dtype=np.int64)


def pool_boxes(fmap: np.ndarray | torch.Tensor, boxes: Sequence[Box], p: float = 3.0) -> np.ndarray:
    """GeM of a photo's feature map ``(C, h, w)`` over each fractional box: ``(n, C)``."""
    return region_gem(fmap, boxes_to_windows(boxes, fmap.shape[-2], fmap.shape[-1]), p)


@dataclass(frozen=True)
class RegionSearch:
    """``regions``: every window of the feature map of one larger pass is a crop.

    ``input_size`` (height, width) of the pass; ``map_stride``: the backbone's total stride
    (32 for EfficientNet-Lite0), which fixes the map's size. ``describe(fmap)`` gives the
    windows' GeM vectors in the order of ``boxes``.
    """

    input_size: tuple[int, int] = (672, 448)
    min_frac: float = 0.3
    stride: int = 1
    p: float = 3.0
    scoring: str = "max"
    map_stride: int = 32

    def __post_init__(self) -> None:
        parse_scoring(self.scoring)
        region_windows(*self.map_shape, self.min_frac, self.stride)  # validates

    @property
    def map_shape(self) -> tuple[int, int]:
        h, w = self.input_size
        return -(-h // self.map_stride), -(-w // self.map_stride)

    def windows(self, height: int | None = None, width: int | None = None) -> np.ndarray:
        h, w = (height, width) if height is not None else self.map_shape
        return region_windows(h, w, self.min_frac, self.stride)

    def describe(self, fmap: np.ndarray | torch.Tensor) -> np.ndarray:
        return region_gem(fmap, self.windows(fmap.shape[-2], fmap.shape[-1]), self.p)

    def __call__(self, image: Image.Image | None = None) -> Localisation:
        h, w = self.map_shape
        win = self.windows(h, w)
        boxes = tuple((x0 / w, y0 / h, x1 / w, y1 / h) for y0, x0, y1, x1 in win.tolist())
        return Localisation(boxes, self.scoring, input_size=self.input_size)


    @classmethod
    def for_backbone(cls, backbone, **options) -> RegionSearch:
        """The search over ``backbone``'s map: its stride (``Backbone.feature_stride``) fixes the map's size."""
        return cls(**{**options, "map_stride": int(backbone.feature_stride)})


def feature_map_of(backbone, preprocess, input_size: tuple[int, int] | None = None) -> Callable[[Image.Image], torch.Tensor]:
    """image -> ``backbone``'s feature map ``(C, h, w)`` of the whole photo, resized to
    ``input_size`` (height, width; default the preprocessing's square) and normalised as
    ``preprocess`` says (a :class:`~street2shop.models.preprocess.Preprocess`).

    A backbone with a fixed input size (an open_clip tower) takes its own square only.
    """
    h, w = input_size or (preprocess.image_size, preprocess.image_size)
    fixed = getattr(backbone, "fixed_input_size", None)
    if fixed is not None and (h, w) != (fixed, fixed):
        raise ValueError(f"this backbone takes {fixed}x{fixed} inputs only, not {h}x{w}")

    def feature_map(image: Image.Image) -> torch.Tensor:
        resized = image.convert("RGB").resize((w, h), Image.Resampling.BICUBIC)
        with torch.no_grad():
            return backbone.eval().forward_features(preprocess.to_tensor(resized)[None])[0]

    return feature_map


@register_localiser("regions")
def _regions(
    input_size: tuple[int, int] = (672, 448), min_frac: float = 0.3, stride: int = 1, p: float = 3.0,
    scoring: str = "max", map_stride: int = 32,
) -> Localiser:
    return RegionSearch(tuple(input_size), min_frac, stride, p, scoring, map_stride)


# ------------------------------------------------------------------- learned localiser
class BoxHead(nn.Module):
    """The garment's box from a backbone feature map ``(B, C, h, w)``.

    Every cell predicts a garment logit and its distances to the box's four edges
    (FCOS-style, in fractions of the photo); the box is the softmax(logit)-weighted mean of
    the cells' boxes, so it is differentiable and needs no threshold or NMS. One garment per
    photo is assumed (a shopper photographs the thing they look for).
    """

    def __init__(self, in_channels: int = 1280, hidden: int = 128, categories: Sequence[str] = ()) -> None:
        super().__init__()
        self.in_channels, self.hidden, self.categories = in_channels, hidden, tuple(categories)
        self.reduce = nn.Conv2d(in_channels, hidden, 1)
        self.norm = nn.GroupNorm(8 if hidden % 8 == 0 else 1, hidden)
        self.body = nn.Conv2d(hidden, hidden, 3, padding=1)
        self.out = nn.Conv2d(hidden, 5, 1)
        #: per-cell category logits (absent without categories)
        self.category = nn.Conv2d(hidden, len(self.categories), 1) if self.categories else None

    def _features(self, fmap: torch.Tensor) -> torch.Tensor:
        return F.relu(self.body(F.relu(self.norm(self.reduce(fmap)))))

    def cells(self, fmap: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(logits (B, h*w), boxes (B, h*w, 4))`` of every cell, boxes as x0, y0, x1, y1."""
        return self._cells(self._features(fmap), fmap)

    def _cells(self, z: torch.Tensor, fmap: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        o = self.out(z).flatten(2).transpose(1, 2)  # (B, h*w, 5)
        cx, cy = _cell_centres(fmap, o.dtype)
        d = F.softplus(o[..., 1:]) * 0.25
        boxes = torch.stack([cx - d[..., 0], cy - d[..., 1], cx + d[..., 2], cy + d[..., 3]], dim=-1)
        return o[..., 0], boxes

    def detect(self, fmap: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Every cell's ``(logits (B, h*w), boxes (B, h*w, 4), category logits (B, h*w, K) or None)``."""
        z = self._features(fmap)
        logits, boxes = self._cells(z, fmap)
        categories = None if self.category is None else self.category(z).flatten(2).transpose(1, 2)
        return logits, boxes, categories

    def forward(self, fmap: torch.Tensor) -> torch.Tensor:
        logits, boxes = self.cells(fmap)
        return (logits.softmax(dim=1).unsqueeze(-1) * boxes).sum(dim=1)


def _cell_centres(fmap: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    h, w = fmap.shape[-2:]
    ys, xs = torch.meshgrid(
        (torch.arange(h, dtype=dtype, device=fmap.device) + 0.5) / h,
        (torch.arange(w, dtype=dtype, device=fmap.device) + 0.5) / w,
        indexing="ij",
    )
    return xs.reshape(1, -1), ys.reshape(1, -1)


def box_loss(
    head: BoxHead, fmap: torch.Tensor, target: torch.Tensor, inside_weight: float = 0.5, cell_weight: float = 0.5,
    categories: torch.Tensor | None = None, category_weight: float = 0.5,
) -> torch.Tensor:
    """Training loss of a :class:`BoxHead` against true boxes ``(B, 4)`` (x0, y0, x1, y1).

    L1 + generalised IoU of the pooled box, plus BCE of each cell's logit against "my centre
    lies inside the true box" and the L1 of the boxes those inside cells predict. With
    ``categories`` (``(B,)`` indexes into ``head.categories``): plus ``category_weight`` times
    the cross-entropy of the category logits pooled as the box is (what
    :func:`detect_garments` names the first garment by).
    """
    logits, boxes, cat_logits = head.detect(fmap)
    weights = logits.softmax(dim=1).unsqueeze(-1)
    box = (weights * boxes).sum(dim=1)
    loss = F.l1_loss(box, target, reduction="none").sum(-1).mean()
    loss = loss + generalized_box_iou_loss(box, target, reduction="mean")
    cx, cy = _cell_centres(fmap, logits.dtype)
    t = target.unsqueeze(1)
    inside = ((cx >= t[..., 0]) & (cx <= t[..., 2]) & (cy >= t[..., 1]) & (cy <= t[..., 3])).to(logits.dtype)
    loss = loss + inside_weight * F.binary_cross_entropy_with_logits(logits, inside)
    cell_l1 = (boxes - t).abs().sum(-1)
    loss = loss + cell_weight * (cell_l1 * inside).sum() / inside.sum().clamp(min=1)
    if categories is not None:
        if cat_logits is None:
            raise ValueError("category targets given, but this head has no categories")
        loss = loss + category_weight * F.cross_entropy((weights * cat_logits).sum(dim=1), categories)
    return loss


@dataclass(frozen=True)
class LearnedBoxes:
    """``boxhead``: the predicted box at each of ``factors`` enlargements (reshaped to the
    shop photos' ``aspect``, width / height in pixels, when given), plus the whole photo.

    ``feature_map``: image -> the backbone's feature map ``(C, h, w)`` or ``(1, C, h, w)``
    of the whole photo (the pass the head was trained on).
    """

    feature_map: Callable[[Image.Image], torch.Tensor]
    head: nn.Module
    factors: tuple[float, ...] = (1.1,)
    aspect: float | None = 2 / 3
    include_whole: bool = True
    scoring: str = "max"

    def __post_init__(self) -> None:
        if not self.factors or min(self.factors) <= 0:
            raise ValueError(f"factors must be positive, got {self.factors}")
        parse_scoring(self.scoring)

    def predict(self, image: Image.Image) -> Box:
        with torch.no_grad():
            fmap = self.feature_map(image)
            if fmap.ndim == 3:
                fmap = fmap.unsqueeze(0)
            self.head.eval()
            return tuple(float(v) for v in self.head(fmap)[0])

    def garments(self, image: Image.Image, max_garments: int = 4, min_score: float = 0.3, iou: float = 0.5) -> tuple[Garment, ...]:
        """The garments in the photo, best first: the pooled box (the one garment the head was
        trained to find) and then each other cell whose garment probability reaches
        ``min_score`` and whose box overlaps no better one by IoU ``iou`` or more (NMS)."""
        with torch.no_grad():
            fmap = self.feature_map(image)
            if fmap.ndim == 3:
                fmap = fmap.unsqueeze(0)
            self.head.eval()
            return detect_garments(self.head, fmap, max_garments, min_score, iou)[0]

    def __call__(self, image: Image.Image) -> Localisation:
        if hasattr(self.head, "detect"):  # a BoxHead: its garments; the first is its box
            garments = self.garments(image)
            box = garments[0].box
        else:  # any module mapping a feature map to one box
            garments, box = (), self.predict(image)
        boxes = [expand_box(box, f, self.aspect, image.width / image.height) for f in self.factors]
        if self.include_whole:
            boxes.append(WHOLE)
        return Localisation(tuple(boxes), self.scoring, garments=garments)


def detect_garments(
    head: BoxHead, fmap: torch.Tensor, max_garments: int = 4, min_score: float = 0.3, iou: float = 0.5
) -> list[tuple[Garment, ...]]:
    """Per photo of ``fmap`` ``(B, C, h, w)``: the garments a :class:`BoxHead` finds, best first.

    The first is the softmax-pooled box (what :meth:`BoxHead.forward` returns), scored by the
    best cell's sigmoid; the others are cells of sigmoid >= ``min_score`` kept by NMS."""
    logits, boxes, cat_logits = head.detect(fmap)
    pooled = (logits.softmax(dim=1).unsqueeze(-1) * boxes).sum(dim=1)
    probs = logits.sigmoid()
    out = []
    for b in range(fmap.shape[0]):
        weights = logits[b].softmax(0)
        cands = torch.cat([pooled[b : b + 1], boxes[b]]).clamp(0.0, 1.0)
        scores = torch.cat([probs[b].max().reshape(1), probs[b]])
        cat_rows = None
        if cat_logits is not None:
            cat_rows = torch.cat([(weights.unsqueeze(-1) * cat_logits[b]).sum(0, keepdim=True), cat_logits[b]])
        keep_mask = scores >= min_score
        keep_mask[0] = True  # the pooled box is always a garment (or the photo is the whole garment)
        idx = torch.nonzero(keep_mask).flatten()
        # NMS wants unique scores ordering with the pooled box first
        order_scores = scores[idx].clone()
        order_scores[0] = float("inf")
        kept = idx[nms(cands[idx], order_scores, iou)][:max_garments]
        garments = []
        for i in kept.tolist():
            x0, y0, x1, y1 = (float(v) for v in cands[i])
            if x1 - x0 <= 1e-3 or y1 - y0 <= 1e-3:
                continue
            category = head.categories[int(cat_rows[i].argmax())] if cat_rows is not None else None
            garments.append(Garment((x0, y0, x1, y1), float(scores[i]), category))
        if not garments:
            garments.append(Garment(WHOLE, float(scores[0]), None))
        out.append(tuple(garments))
    return out


def save_localiser(path: str | Path, head: BoxHead, **meta) -> None:
    """Write a trained :class:`BoxHead` (its shape, categories, weights) and ``meta`` (e.g. the
    backbone and input size whose feature map it reads, training figures) to ``path``."""
    payload = {
        "format": "street2shop.localiser/1",
        "in_channels": head.in_channels, "hidden": head.hidden, "categories": list(head.categories),
        "state_dict": head.state_dict(), "meta": meta,
    }
    torch.save(payload, path)


def load_localiser(path: str | Path) -> tuple[BoxHead, dict]:
    """The :class:`BoxHead` and the ``meta`` that :func:`save_localiser` wrote."""
    payload = torch.load(path, map_location="cpu", weights_only=False)
    if payload.get("format") != "street2shop.localiser/1":
        raise ValueError(f"{path} is not a street2shop localiser (format {payload.get('format')!r})")
    head = BoxHead(payload["in_channels"], payload["hidden"], payload["categories"])
    head.load_state_dict(payload["state_dict"])
    return head.eval(), payload["meta"]


@register_localiser("boxhead")
def _boxhead(
    feature_map: Callable[[Image.Image], torch.Tensor],
    head: nn.Module,
    factors: Sequence[float] = (1.1,),
    aspect: float | None = 2 / 3,
    include_whole: bool = True,
    scoring: str = "max",
) -> Localiser:
    return LearnedBoxes(feature_map, head, tuple(factors), aspect, include_whole, scoring)
