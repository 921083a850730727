"""Frozen backbone features of photos: what the small models of outfits and looks train on.

Training a CNN end to end for outfit compatibility or for shop-the-look takes hours on two CPU
cores; the backbone's pooled features of every photo, computed once and kept as a versioned
artifact, make the training a matter of a minute (the trained parts are projections on top).
``pool="gem+spoc"`` keeps both poolings (each L2-normalised, then concatenated: the combined
global descriptor's branches before their projections), so a model can project each branch
on its own (``layout``).

Two white-box descriptors may join them (``extras``), because ImageNet features say little
about what an outfit hinges on: ``colour``, the joint HSV histogram of the whole photo (the
``colour_histogram`` baseline; EfficientNet's pooled features predict a demo item's palette
colour 40 % of the time, with the histogram 92 %), and ``shape``, the garment's silhouette and
texture on a plain seller backdrop (height / width, fill of its box, lightness spread, edge
density; meaningless for a photo on a busy background, where the other branches must do).
The vector is the blocks side by side, each of unit norm (``shape``: fixed standardisation),
divided by the square root of their number: unit norm overall.

``tiny`` (tests) has no pretrained weights: its random weights are seeded instead, so its
features are still the same every time.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image, ImageFilter
from pydantic import BaseModel, ConfigDict, Field

from street2shop.models.backbones import BackboneNameStr, create_backbone
from street2shop.models.embed import embed_images
from street2shop.models.embedder import Embedder, EmbedderConfig, pretrained_features
from street2shop.models.pooling import create_pooling, parse_pooling
from street2shop.retrieval.baselines import colour_histogram
from street2shop.storage.images import open_image

EXTRAS = ("colour", "shape")
#: the shape descriptor's typical values on seller photos (fixed, so one photo alone is
#: standardised the same way as the catalogue)
_SHAPE_MEAN = np.array([0.1, 0.7, 0.52, 0.58, 0.67, 0.43], np.float32)
_SHAPE_STD = np.array([0.34, 0.11, 0.17, 0.37, 0.27, 0.11], np.float32)


class FeatureParams(BaseModel):
    """Which frozen features (part of the version of everything trained on them)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    backbone: BackboneNameStr = "efficientnet_lite0"
    pool: str = "gem+spoc"
    image_size: int = Field(224, gt=0)
    #: white-box descriptors beside the backbone's (``EXTRAS``)
    extras: tuple[str, ...] = EXTRAS
    #: the random weights of a backbone without pretrained ones (``tiny``)
    seed: int = 0


def feature_extractor(params: FeatureParams) -> Embedder:
    """The frozen, parameter-free pooled backbone (eval mode)."""
    if params.backbone != "tiny":
        return pretrained_features(params.backbone, pool=params.pool, image_size=params.image_size)
    torch.manual_seed(params.seed)
    backbone = create_backbone("tiny", pretrained=False)
    config = EmbedderConfig(backbone="tiny", pool=params.pool, dim=None, mode="pretrained_features",
                            freeze_backbone=True, image_size=params.image_size)
    head = create_pooling(params.pool, backbone.num_features, None, gem_p=3.0, learnable_p=False)
    preprocess = backbone.preprocess.model_copy(update={"image_size": params.image_size})
    return Embedder(backbone, head, preprocess, config).eval()


def shape_descriptor(image: Image.Image) -> np.ndarray:
    """Silhouette and texture of a garment on a plain backdrop (6 numbers, standardised):
    log height / width of what differs from the border's colour, its fill of its box, the
    lightness spread and edge density inside it, its mean absolute lightness deviation, and
    its share of the frame."""
    a = np.asarray(image.convert("RGB"), np.float32)
    b = max(2, a.shape[0] // 32)
    border = np.concatenate([a[:b].reshape(-1, 3), a[-b:].reshape(-1, 3), a[:, :b].reshape(-1, 3), a[:, -b:].reshape(-1, 3)])
    m = np.linalg.norm(a - np.median(border, axis=0), axis=2) > 30
    ys, xs = np.nonzero(m)
    if len(ys) < 16:
        return np.zeros(6, np.float32)
    h, w = ys.max() - ys.min() + 1, xs.max() - xs.min() + 1
    lum = a.mean(axis=2)
    edges = np.asarray(Image.fromarray(lum.astype(np.uint8)).filter(ImageFilter.FIND_EDGES), np.float32)
    inside = lum[m]
    raw = np.array([np.log(h / w), m.sum() / (h * w), inside.std() / 64, edges[m].mean() / 32,
                    np.abs(inside - np.median(inside)).mean() / 32, m.mean()], np.float32)
    return (raw - _SHAPE_MEAN) / _SHAPE_STD


def _extra(name: str, image: Image.Image) -> np.ndarray:
    if name == "colour":
        v = colour_histogram(image).astype(np.float32)
        return v / max(float(np.linalg.norm(v)), 1e-12)
    if name == "shape":
        return shape_descriptor(image) / np.sqrt(6)
    raise ValueError(f"unknown feature extra {name!r}; choose from {EXTRAS}")


def _combine(cnn: np.ndarray, extras: list[np.ndarray]) -> np.ndarray:
    blocks = [cnn, *extras]
    return (np.concatenate(blocks, axis=-1) / np.sqrt(len(blocks))).astype(np.float32)


def photo_features(model: Embedder, paths: Sequence[str], params: FeatureParams, batch_size: int = 32) -> np.ndarray:
    """``(len(paths), dim)`` float32 features, in order (decoded in this process)."""
    cnn = embed_images(model, list(paths), batch_size=batch_size, num_workers=0, device="cpu")
    if not params.extras:
        return cnn
    per_photo = []
    for path in paths:
        rgb = open_image(path)
        per_photo.append([_extra(n, rgb) for n in params.extras])
    blocks = [np.stack([row[k] for row in per_photo]) if per_photo else np.empty((0, _width(n)), np.float32)
              for k, n in enumerate(params.extras)]
    return _combine(cnn, blocks)


def image_features(model: Embedder, image: Image.Image, params: FeatureParams) -> np.ndarray:
    """``(dim,)`` features of one decoded photo (an upload), as ``photo_features`` makes them."""
    image = image.convert("RGB")
    with torch.inference_mode():
        vector = model(model.preprocess(image)[None])
    cnn = torch.nn.functional.normalize(vector.float(), dim=-1)[0].numpy()
    return _combine(cnn, [_extra(n, image) for n in params.extras]) if params.extras else cnn


def _width(name: str) -> int:
    return {"colour": 128, "shape": 6}[name]


def layout(params: FeatureParams, cnn_width: int) -> list[tuple[str, int]]:
    """(branch, width) of the feature vector, in order: each pooling branch of the backbone
    (``cnn_width`` together), then each extra."""
    pools = parse_pooling(params.pool)
    return [(p, cnn_width // len(pools)) for p in pools] + [(n, _width(n)) for n in params.extras]
