"""Datasets and batch samplers for training and embedding.

:class:`ImageDataset` reads photos with PIL and applies the backbone's :class:`Preprocess`
(plus optional light augmentation at train time). :class:`PKBatchSampler` draws P items x K
photos per batch, seeded per epoch like ``DistributedSampler.set_epoch``, so the batches of
epoch ``e`` are a function of ``(seed, e)`` alone and a resumed run replays them exactly.

Domain-adaptive batches (``anchor_domain="shop"`` or ``"street"``) hold, for every item,
photos of both roles: the loss takes anchors from one role and positives/negatives from
the other through PML's ``ref_emb`` (:func:`split_by_domain`).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterator, Sequence
from typing import Literal

import numpy as np
import pyarrow as pa
import torch
from PIL import Image
from torch.utils.data import Dataset, Sampler
from torchvision.transforms import functional as TF

from street2shop.models.localise import crop
from street2shop.models.preprocess import Preprocess, read_image

AnchorDomain = Literal["shop", "street", "any"]
ROLES = ("shop", "street")


class ImageDataset(Dataset):
    """``(image tensor, label index, role index)`` for each photo; labels/roles optional.

    ``augment`` applies a horizontal flip and a mild scale jitter only: colour jitter is
    deliberately absent, because an item is a product *in one colour* and recolouring a
    photo would turn it into a picture of a different item.

    ``crops``: a function photo -> boxes (fractions of the photo, see
    :mod:`street2shop.models.localise`); the image tensor is then ``(n_crops, 3, S, S)``, each
    crop preprocessed like a whole photo. Every photo must give the same number of crops.
    ``flip`` mirrors every photo first.
    """

    def __init__(
        self,
        paths: Sequence[str],
        preprocess: Preprocess,
        labels: Sequence[int] | None = None,
        roles: Sequence[int] | None = None,
        augment: bool = False,
        crops: Callable[[Image.Image], Sequence[tuple[float, float, float, float]]] | None = None,
        min_crop_side: float = 1.0,
        flip: bool = False,
    ) -> None:
        for name, column in (("labels", labels), ("roles", roles)):
            if column is not None and len(column) != len(paths):
                raise ValueError(f"{name} has {len(column)} entries for {len(paths)} paths")
        self.paths = list(paths)
        self.preprocess = preprocess
        self.labels = None if labels is None else torch.as_tensor(labels, dtype=torch.long)
        self.roles = None if roles is None else torch.as_tensor(roles, dtype=torch.long)
        self.augment = augment
        self.crops = crops
        self.flip = flip  # every photo mirrored (a shop photo's second view)
        # decode at reduced JPEG scale only as far as the smallest crop still gets its pixels
        self.min_size = math.ceil(preprocess.image_size / max(min_crop_side, 1e-3))

    def __len__(self) -> int:
        return len(self.paths)

    def _augment(self, image):
        # random (not torch) draws keep augmentation independent of the sampler's stream;
        # DataLoader seeds `random` in every worker from the torch base seed.
        if random.random() < 0.5:
            image = TF.hflip(image)
        scale = random.uniform(0.85, 1.0)
        width, height = image.size
        crop_w, crop_h = max(1, round(width * scale)), max(1, round(height * scale))
        left, top = random.randint(0, width - crop_w), random.randint(0, height - crop_h)
        return image.crop((left, top, left + crop_w, top + crop_h))

    def __getitem__(self, index: int):
        image = read_image(self.paths[index], min_size=self.min_size)
        if self.flip:
            image = TF.hflip(image)
        if self.augment:
            image = self._augment(image)
        if self.crops is None:
            tensor = self.preprocess(image)
        else:
            tensor = torch.stack([self.preprocess(crop(image, box)) for box in self.crops(image)])
        label = self.labels[index] if self.labels is not None else torch.tensor(-1)
        role = self.roles[index] if self.roles is not None else torch.tensor(-1)
        return tensor, label, role


def encode_labels(values: Sequence[str]) -> tuple[np.ndarray, list[str]]:
    """Strings -> dense int codes (sorted vocabulary, so codes do not depend on row order)."""
    vocabulary = sorted(set(values))
    index = {value: i for i, value in enumerate(vocabulary)}
    return np.fromiter((index[v] for v in values), dtype=np.int64, count=len(values)), vocabulary


def encode_roles(values: Sequence[str]) -> np.ndarray:
    bad = sorted(set(values) - set(ROLES))
    if bad:
        raise ValueError(f"unknown image roles {bad}; expected {ROLES}")
    return np.asarray([ROLES.index(v) for v in values], dtype=np.int64)


def labelled_dataset(images: pa.Table, preprocess: Preprocess, augment: bool = False):
    """``(dataset, labels, roles, item vocabulary)`` for an images table with absolute paths."""
    missing = {"path", "item_id", "role"} - set(images.column_names)
    if missing:
        raise ValueError(f"images table lacks columns {sorted(missing)}")
    labels, vocabulary = encode_labels(images.column("item_id").to_pylist())
    roles = encode_roles(images.column("role").to_pylist())
    dataset = ImageDataset(images.column("path").to_pylist(), preprocess, labels, roles, augment)
    return dataset, labels, roles, vocabulary


class PKBatchSampler(Sampler[list[int]]):
    """Batches of ``p`` items x ``k`` photos each, reproducible from ``(seed, epoch)``.

    ``anchor_domain="any"``: k photos of the item, whatever their role. ``"shop"`` or
    ``"street"``: ``ceil(k/2)`` photos of the anchor role and the rest of the other, and only
    items that have both roles are eligible. An item with fewer photos than needed is
    sampled with replacement (a repeated photo is just a zero-distance positive).
    """

    def __init__(
        self,
        labels: Sequence[int],
        roles: Sequence[int] | None,
        p: int,
        k: int,
        seed: int = 0,
        anchor_domain: AnchorDomain = "any",
        num_batches: int | None = None,
    ) -> None:
        if p < 2 or k < 2:
            raise ValueError(f"P x K sampling needs p >= 2 items and k >= 2 photos, got p={p}, k={k}")
        if anchor_domain != "any" and roles is None:
            raise ValueError(f"anchor_domain={anchor_domain!r} needs image roles")
        labels = np.asarray(labels)
        self.p, self.k, self.seed, self.anchor_domain = p, k, seed, anchor_domain
        self.epoch = 0
        # pools[item] = list of index arrays, one per role slot of the batch.
        self.pools: list[list[np.ndarray]] = []
        for item in np.unique(labels):
            rows = np.flatnonzero(labels == item)
            if anchor_domain == "any":
                self.pools.append([rows])
                continue
            item_roles = np.asarray(roles)[rows]
            anchor = ROLES.index(anchor_domain)
            anchor_rows, other_rows = rows[item_roles == anchor], rows[item_roles != anchor]
            if len(anchor_rows) and len(other_rows):
                self.pools.append([anchor_rows, other_rows])
        if len(self.pools) < p:
            raise ValueError(
                f"only {len(self.pools)} items are eligible for anchor_domain={anchor_domain!r}; "
                f"a batch needs p={p}"
            )
        self.num_batches = num_batches or len(self.pools) // p

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_batches

    def _take(self, rng: np.random.Generator, rows: np.ndarray, n: int) -> np.ndarray:
        return rng.choice(rows, size=n, replace=len(rows) < n)

    def __iter__(self) -> Iterator[list[int]]:
        rng = np.random.default_rng([self.seed, self.epoch])
        order = np.empty(0, dtype=np.int64)
        for _ in range(self.num_batches):
            if len(order) < self.p:  # walk through items in shuffled passes
                order = np.concatenate([order, rng.permutation(len(self.pools))])
            chosen, order = order[: self.p], order[self.p :]
            batch: list[int] = []
            for item in chosen:
                slots = self.pools[item]
                if len(slots) == 1:
                    batch.extend(self._take(rng, slots[0], self.k).tolist())
                else:
                    n_anchor = math.ceil(self.k / 2)
                    batch.extend(self._take(rng, slots[0], n_anchor).tolist())
                    batch.extend(self._take(rng, slots[1], self.k - n_anchor).tolist())
            yield batch


def split_by_domain(
    embeddings: torch.Tensor, labels: torch.Tensor, roles: torch.Tensor, anchor_domain: AnchorDomain
) -> dict[str, torch.Tensor | None]:
    """Keyword arguments for a PML loss/miner: anchors from one role, references from the other.

    ``"any"`` leaves the batch whole (``ref_emb=None``: PML compares the batch with itself).
    """
    if anchor_domain == "any":
        return {"embeddings": embeddings, "labels": labels, "ref_emb": None, "ref_labels": None}
    is_anchor = roles == ROLES.index(anchor_domain)
    return {
        "embeddings": embeddings[is_anchor],
        "labels": labels[is_anchor],
        "ref_emb": embeddings[~is_anchor],
        "ref_labels": labels[~is_anchor],
    }
