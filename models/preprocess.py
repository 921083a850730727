"""Image preprocessing shared by training, embedding and serving.

A :class:`Preprocess` is declared by each backbone, stored inside every checkpoint and read
back by :func:`street2shop.models.embedder.load_embedder`, so the pixels the API feeds the
model are produced by exactly the code and numbers the model was trained with.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
import torch
from PIL import Image, ImageOps
from pydantic import BaseModel, ConfigDict, Field

from street2shop.storage.images import UnreadableImageError, open_image

__all__ = ["Preprocess", "UnreadableImageError", "read_image"]

_RESAMPLE = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC}


class Preprocess(BaseModel):
    """How a PIL image becomes a normalised ``(3, size, size)`` float tensor.

    ``resize="pad"`` letterboxes the whole photo into the square (filled with the mean
    colour, i.e. zeros after normalisation): a garment photographed in portrait keeps its
    shape and nothing of it is cropped away. ``"squash"`` stretches to the square instead.
    ``"centre"`` scales the short side to the square and crops the centre: no padding, the
    garment fills more of the input (on the real-photo benchmark hm-dev, 11 crops a query,
    untrained: top-1 0.308 vs 0.257 padded; ``bench/localise.py``).
    """

    model_config = ConfigDict(frozen=True)

    image_size: int = Field(gt=0)
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    resize: Literal["pad", "squash", "centre"] = "pad"
    interpolation: Literal["bilinear", "bicubic"] = "bicubic"

    def resize_image(self, image: Image.Image) -> Image.Image:
        """RGB image resized to ``image_size`` square according to the resize policy."""
        image = image.convert("RGB")
        size = (self.image_size, self.image_size)
        method = _RESAMPLE[self.interpolation]
        if self.resize == "squash":
            return image.resize(size, method)
        if self.resize == "centre":
            return ImageOps.fit(image, size, method=method)
        fill = tuple(round(m * 255) for m in self.mean)
        return ImageOps.pad(image, size, method=method, color=fill)

    def to_tensor(self, image: Image.Image) -> torch.Tensor:
        """Normalised ``(3, H, W)`` float32 tensor of an already resized RGB image.

        The arithmetic of torchvision's ``normalize(to_tensor(image))`` (``x / 255``, then
        ``(x - mean) / std`` in float32), bit for bit (tested), done in numpy on one thread:
        torchvision's version spreads a 160-px image over torch's intra-op pool and costs
        several times the CPU, which a search server pays on every photo.
        """
        rgb = image if image.mode == "RGB" else image.convert("RGB")
        array = np.asarray(rgb, dtype=np.uint8).transpose(2, 0, 1).astype(np.float32, order="C")
        array /= 255
        array -= np.asarray(self.mean, dtype=np.float32).reshape(3, 1, 1)
        array /= np.asarray(self.std, dtype=np.float32).reshape(3, 1, 1)
        return torch.from_numpy(array)

    def __call__(self, image: Image.Image) -> torch.Tensor:
        return self.to_tensor(self.resize_image(image))


def read_image(path: str | Path, min_size: int | None = None) -> Image.Image:
    """Decode an image file to upright RGB (:func:`street2shop.storage.images.open_image`),
    raising :class:`UnreadableImageError` naming the file.

    ``min_size``: a JPEG may be decoded at a reduced scale (libjpeg DCT scaling), as long as
    both sides stay >= ``min_size``. A 12-megapixel phone photo headed for 224 px then
    decodes several times faster, which matters when decoding competes with the network
    for two cores.
    """
    return open_image(path, min_size=min_size)
