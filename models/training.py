"""Training the embedder: seeded, checkpointed every epoch, resumable after a kill.

``train_embedder(images, params, out_dir)`` trains with in-batch mining on P x K batches
(anchors from one domain and references from the other, see ``anchor_domain``) or, when a
``triplets`` table from an offline mining round is given, on exactly those triplets.

Reproducibility: batches are a function of ``(seed, epoch)`` (the sampler is re-seeded per
epoch) and the checkpoint written after every epoch carries model, optimiser and loss
weights plus the torch / numpy / random RNG states. A run that finds ``last.pt`` in
``out_dir`` continues from it and reaches the same weights as an uninterrupted run.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pyarrow as pa
import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from street2shop.models import losses as L
from street2shop.models.backbones import BackboneNameStr
from street2shop.models.data import AnchorDomain, PKBatchSampler, encode_labels, encode_roles, labelled_dataset, split_by_domain
from street2shop.models.recipes import RECIPES, recipe_of
from street2shop.models.embedder import (
    Embedder,
    build_embedder,
    init_projections_from_pca,
    read_checkpoint,
    save_checkpoint,
)
from street2shop.storage.schemas import TRAIN_LOG

LAST = "last.pt"
BEST = "best.pt"


#: the names the registries hold, as the types of the params that choose among them
RecipeName = Literal[tuple(RECIPES.names())]
LossName = Literal[tuple(L.LOSSES.names())]
MinerName = Literal[tuple(L.MINERS.names())]


class TrainParams(BaseModel):
    """Everything that decides what a training run computes."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    #: a registered recipe (:mod:`street2shop.models.recipes`): "head", a residual head on the
    #: frozen backbone trained on cached views; "fine_tune", the whole network on photos
    recipe: RecipeName = "head"
    backbone: BackboneNameStr = "efficientnet_lite0"
    pool: str = "gem"
    dim: int = Field(default=256, gt=0)
    pretrained: bool = True
    loss: LossName = "triplet"
    miner: MinerName = "semihard"
    distance: Literal["euclidean", "cosine"] = "euclidean"
    margin: float = Field(default=0.2, gt=0)
    lr: float = Field(default=1e-4, gt=0)
    #: the pooling head and loss weights learn this many times faster than the backbone.
    head_lr_mult: float = Field(default=10.0, gt=0)
    weight_decay: float = Field(default=1e-4, ge=0)
    batch_p: int = Field(default=8, ge=2)
    batch_k: int = Field(default=4, ge=2)
    #: triplets per step when training on offline-mined triplets.
    triplet_batch: int = Field(default=32, ge=1)
    epochs: int = Field(default=10, ge=1)
    steps_per_epoch: int | None = Field(default=None, ge=1)
    image_size: int | None = Field(default=None, gt=0)
    #: photo-to-square policy of the model's preprocessing (None: the backbone's, "pad");
    #: recipe "head": the same as the views' (``ViewParams.resize``)
    resize: Literal["pad", "squash", "centre"] | None = None
    freeze_backbone: bool = False
    #: "pca": projections start at the PCA of the pretrained pooled features of up to
    #: ``head_init_images`` training photos (so training starts from the pretrained
    #: descriptor); "random": PyTorch's default init. Only for a run that starts from scratch.
    head_init: Literal["random", "pca"] = "pca"
    head_init_images: int = Field(default=512, ge=2)
    anchor_domain: AnchorDomain = "shop"
    #: recipe "head": per training street photo, the localisation crops closest to its
    #: item's shop photos that train as its views (the crops that show the garment)
    street_crops: int = Field(default=3, ge=1)
    augment: bool = True
    seed: int = 0
    round: int = Field(default=0, ge=0)
    num_workers: int = Field(default=2, ge=0)
    #: stop after this many epochs without a better validation score (needs ``val_fn``).
    patience: int | None = Field(default=None, ge=1)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    amp: bool = True  # CUDA only: bfloat16 autocast
    channels_last: bool = True  # CUDA only

    @model_validator(mode="after")
    def _check(self) -> TrainParams:
        if self.loss in L.CLASSIFICATION_LOSSES and self.miner != "none":
            raise ValueError(f"loss {self.loss!r} classifies every sample; use miner='none'")
        return self

    def resume_key(self) -> dict:
        """The fields a resumed run must share with the checkpoint it continues."""
        return self.model_dump(exclude={"epochs", "num_workers", "patience", "device"})


@dataclass(frozen=True)
class TrainResult:
    checkpoint: Path  # best by validation when ``val_fn`` is given, else the last epoch
    log: pa.Table  # schemas.TRAIN_LOG
    epochs_done: int
    best_val: float | None


def _rng_state() -> dict:
    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        # numpy's state is stored as tensors/ints so the checkpoint loads with weights_only.
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
        "random": random.getstate(),
    }


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    kind, keys, *rest = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), *rest))
    version, internal, gauss = state["random"]
    random.setstate((version, tuple(internal), gauss))


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _device(params: TrainParams) -> torch.device:
    if params.device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if params.device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device='cuda' requested but CUDA is not available")
    return torch.device(params.device)


def _triplet_indices(images: pa.Table, triplets: pa.Table) -> np.ndarray:
    """Triplets of image ids -> ``(n, 3)`` row indices into ``images``, checking every id."""
    row_of = {image_id: row for row, image_id in enumerate(images.column("image_id").to_pylist())}
    columns = ("anchor_id", "positive_id", "negative_id")
    ids = [triplets.column(c).to_pylist() for c in columns]
    unknown = sorted({i for col in ids for i in col if i not in row_of})
    if unknown:
        raise ValueError(f"{len(unknown)} triplet image ids are not in the images table, e.g. {unknown[:3]}")
    return np.asarray([[row_of[i] for i in col] for col in ids], dtype=np.int64).T


class DescriptorDataset(torch.utils.data.Dataset):
    """``(descriptor, label index, role index)`` rows: what a head on a frozen backbone trains on."""

    def __init__(self, descriptors: np.ndarray, labels: np.ndarray, roles: np.ndarray) -> None:
        self.descriptors = torch.from_numpy(np.ascontiguousarray(descriptors, dtype=np.float32))
        self.labels = torch.as_tensor(labels, dtype=torch.long)
        self.roles = torch.as_tensor(roles, dtype=torch.long)

    def __len__(self) -> int:
        return len(self.descriptors)

    def __getitem__(self, index: int):
        return self.descriptors[index], self.labels[index], self.roles[index]


def descriptor_dataset(views: pa.Table, descriptors: np.ndarray) -> tuple[DescriptorDataset, np.ndarray, list[str]]:
    """``(dataset, labels, item vocabulary)`` of training views and their descriptors."""
    if len(descriptors) != views.num_rows:
        raise ValueError(f"{len(descriptors)} descriptors for {views.num_rows} views")
    labels, vocabulary = encode_labels(views.column("item_id").to_pylist())
    roles = encode_roles(views.column("role").to_pylist())
    return DescriptorDataset(descriptors, labels, roles), labels, vocabulary


class _Trainer:
    """One training run; the public entry point is :func:`train_embedder`."""

    def __init__(self, images: pa.Table, params: TrainParams, out_dir: Path,
                 init_checkpoint: Path | None, triplets: pa.Table | None, descriptors: np.ndarray | None = None) -> None:
        self.params, self.out_dir = params, Path(out_dir)
        self.images, self.init_checkpoint = images, init_checkpoint
        self.device = _device(params)
        self.cuda = self.device.type == "cuda"
        _seed_everything(params.seed)
        recipe = recipe_of(params)
        on_descriptors = recipe.uses_views
        if on_descriptors != (descriptors is not None):
            raise ValueError(f"recipe {params.recipe!r} trains on {'descriptors' if on_descriptors else 'photos'}")
        self.model = build_embedder(
            params.backbone, params.pool, params.dim,
            pretrained=params.pretrained and init_checkpoint is None,
            freeze_backbone=params.freeze_backbone or recipe.frozen_backbone, image_size=params.image_size,
            head=recipe.head, resize=params.resize,
        )
        if init_checkpoint is not None:
            # Continue from an earlier round's weights (e.g. the previous mining round).
            self._load_init(Path(init_checkpoint))
        self.model.to(self.device)
        if self.cuda and params.channels_last:
            self.model.to(memory_format=torch.channels_last)
        if on_descriptors:
            # the head alone learns, on descriptors the backbone made once (models/views.py)
            self.dataset, labels, vocabulary = descriptor_dataset(images, descriptors)
            self.forward = lambda x: torch.nn.functional.normalize(self.model.head.refine(x), dim=-1)
        else:
            self.dataset, labels, _, vocabulary = labelled_dataset(images, self.model.preprocess, augment=params.augment)
            self.forward = self.model
        self.loss = L.create_loss(
            params.loss, margin=params.margin, distance=params.distance,
            num_classes=len(vocabulary), embedding_size=self.model.dim,
        ).to(self.device)
        self.miner = L.create_miner(params.miner, params.margin, params.distance)
        self.triplet_rows = None
        if triplets is not None:
            if params.loss != "triplet":
                raise ValueError("offline triplets train with loss='triplet'")
            if len(triplets) == 0:
                raise ValueError("the triplets table is empty")
            self.triplet_rows = _triplet_indices(images, triplets)
            self.sampler = None
        else:
            self.sampler = PKBatchSampler(
                labels, self.dataset.roles.numpy(), params.batch_p, params.batch_k, seed=params.seed,
                anchor_domain="any" if params.loss in L.CLASSIFICATION_LOSSES else params.anchor_domain,
                num_batches=params.steps_per_epoch,
            )
        backbone_params = [p for p in self.model.backbone.parameters() if p.requires_grad]
        head_params = list(self.model.head.parameters()) + list(self.loss.parameters())
        groups = [{"params": head_params, "lr": params.lr * params.head_lr_mult}]
        if backbone_params:
            groups.append({"params": backbone_params, "lr": params.lr})
        self.optimizer = torch.optim.AdamW(groups, weight_decay=params.weight_decay)
        self.log_rows: list[dict] = []
        self.epoch = 0
        self.best_val: float | None = None
        self.best_epoch: int | None = None

    # ------------------------------------------------------------------ checkpointing
    def _load_init(self, path: Path) -> None:
        payload = read_checkpoint(path)
        saved = payload["embedder"]
        wanted = self.model.config.model_dump(include={"backbone", "pool", "dim", "mode", "head"})
        differ = {k: (saved.get(k, "projection"), v) for k, v in wanted.items() if saved.get(k, "projection") != v}
        if differ:
            raise ValueError(f"init checkpoint {path} has another architecture: {differ} (saved, params)")
        self.model.load_state_dict(payload["state_dict"], strict=True)

    def save(self, path: Path) -> None:
        extra = {
            "epoch": self.epoch,
            "loss_state": self.loss.state_dict(),
            "rng": _rng_state(),
            "log": self.log_rows,
            "best_val": self.best_val,
            "best_epoch": self.best_epoch,
        }
        save_checkpoint(path, self.model, self.optimizer, self.params.model_dump(), extra)

    def resume(self, path: Path) -> None:
        payload = read_checkpoint(path, map_location=self.device)
        saved, current = TrainParams(**payload["config"]).resume_key(), self.params.resume_key()
        if saved != current:
            diff = {k: (v, current[k]) for k, v in saved.items() if current[k] != v}
            raise ValueError(
                f"{path} was written with other parameters {diff} (saved, now); use a new out_dir"
            )
        self.model.load_state_dict(payload["state_dict"], strict=True)
        self.optimizer.load_state_dict(payload["optimizer"])
        extra = payload["extra"]
        self.loss.load_state_dict(extra["loss_state"])
        _set_rng_state(extra["rng"])
        self.epoch = int(extra["epoch"])
        self.log_rows = list(extra["log"])
        self.best_val, self.best_epoch = extra["best_val"], extra["best_epoch"]

    def _init_head_from_pca(self) -> None:
        # Un-augmented photos from a generator of its own: the global RNG streams that
        # training draws from (and checkpoints) are untouched, so resuming stays exact.
        rng = np.random.default_rng([self.params.seed, 0x9CA])
        n = min(self.params.head_init_images, len(self.images))
        rows = np.sort(rng.choice(len(self.images), size=n, replace=False))
        dataset, *_ = labelled_dataset(self.images.take(pa.array(rows)), self.model.preprocess, augment=False)
        loader = DataLoader(dataset, batch_size=32, num_workers=0)
        init_projections_from_pca(self.model, (images.to(self.device) for images, _, _ in loader))

    # ------------------------------------------------------------------ one step
    def _loader(self, batch_sampler) -> DataLoader:
        workers = 0 if isinstance(self.dataset, DescriptorDataset) else self.params.num_workers
        return DataLoader(self.dataset, batch_sampler=batch_sampler, num_workers=workers, pin_memory=self.cuda, persistent_workers=False)

    def _embed(self, images: torch.Tensor) -> torch.Tensor:
        channels_last = self.cuda and self.params.channels_last
        memory_format = torch.channels_last if channels_last else torch.contiguous_format
        images = images.to(self.device, non_blocking=True, memory_format=memory_format)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.cuda and self.params.amp):
            embeddings = self.forward(images)
        return embeddings.float()

    def _pk_step(self, images, labels, roles) -> tuple[torch.Tensor, int | None]:
        embeddings = self._embed(images)
        labels, roles = labels.to(self.device), roles.to(self.device)
        if self.params.loss in L.CLASSIFICATION_LOSSES:
            return self.loss(embeddings, labels), None
        kwargs = split_by_domain(embeddings, labels, roles, self.params.anchor_domain)
        indices = None
        if self.miner is not None:
            indices = self.miner(**kwargs)
        loss = self.loss(indices_tuple=indices, **kwargs)
        active = L.active_tuples(self.loss)
        if active is None and indices is not None:
            active = len(indices[0])
        return loss, active

    def _triplet_step(self, images, labels, rows: np.ndarray) -> tuple[torch.Tensor, int | None]:
        # ``rows`` are the (n, 3) image rows of this batch's triplets; the batch holds each
        # distinct image once, so the triplets index into it.
        embeddings = self._embed(images)
        unique = np.unique(rows)
        position = {row: i for i, row in enumerate(unique.tolist())}
        a, p, n = (torch.as_tensor([position[r] for r in rows[:, j]], device=self.device) for j in range(3))
        loss = self.loss(embeddings, labels.to(self.device), indices_tuple=(a, p, n))
        return loss, L.active_tuples(self.loss)

    def _epoch_batches(self):
        """``(batch_sampler, per-batch triplet rows or None)`` for the current epoch."""
        if self.sampler is not None:
            self.sampler.set_epoch(self.epoch)
            return self.sampler, None
        rng = np.random.default_rng([self.params.seed, self.epoch])
        order = self.triplet_rows[rng.permutation(len(self.triplet_rows))]
        size = self.params.triplet_batch
        chunks = [order[i : i + size] for i in range(0, len(order), size)]
        if self.params.steps_per_epoch:
            chunks = chunks[: self.params.steps_per_epoch]
        return [np.unique(c).tolist() for c in chunks], chunks

    def train_epoch(self) -> None:
        self.model.train()
        batch_sampler, triplet_chunks = self._epoch_batches()
        # disable=None: a bar on a terminal, nothing when the output goes to a log file
        bar = tqdm(self._loader(batch_sampler), total=len(batch_sampler),
                   desc=f"epoch {self.epoch + 1}/{self.params.epochs}", leave=False, disable=None)
        for step, (images, labels, roles) in enumerate(bar):
            self.loss.reducer.reset_stats()
            if triplet_chunks is None:
                loss, active = self._pk_step(images, labels, roles)
            else:
                loss, active = self._triplet_step(images, labels, triplet_chunks[step])
            self.optimizer.zero_grad(set_to_none=True)
            if loss.requires_grad:  # no mined tuple at all gives a constant zero loss
                loss.backward()
                self.optimizer.step()
            value = float(loss.detach())
            self.log_rows.append({
                "round": self.params.round, "epoch": self.epoch, "step": len(self.log_rows),
                "loss": value, "active_triplets": active,
            })
            bar.set_postfix(loss=f"{value:.4f}", active=active)

    def run(self, val_fn: Callable[[Embedder], float] | None) -> TrainResult:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        last, best = self.out_dir / LAST, self.out_dir / BEST
        if last.exists():
            self.resume(last)
        elif self.params.head_init == "pca" and self.init_checkpoint is None and recipe_of(self.params).head != "residual":
            self._init_head_from_pca()  # a residual head starts as the pretrained descriptor itself
        stale = 0 if self.best_epoch is None else self.epoch - 1 - self.best_epoch
        while self.epoch < self.params.epochs:
            if self.params.patience is not None and stale >= self.params.patience:
                break
            self.train_epoch()
            self.epoch += 1
            improved = False
            if val_fn is not None:
                self.model.eval()
                with torch.inference_mode():
                    score = float(val_fn(self.model))
                if self.best_val is None or score > self.best_val:
                    self.best_val, self.best_epoch, improved = score, self.epoch - 1, True
                stale = 0 if improved else stale + 1
            self.save(last)
            if improved:
                self.save(best)
        log = pa.Table.from_pylist(self.log_rows, schema=TRAIN_LOG)
        checkpoint = best if val_fn is not None and best.exists() else last
        return TrainResult(checkpoint=checkpoint, log=log, epochs_done=self.epoch, best_val=self.best_val)


def train_embedder(
    train_images: pa.Table,
    params: TrainParams,
    out_dir: Path,
    init_checkpoint: Path | None = None,
    triplets: pa.Table | None = None,
    val_fn: Callable[[Embedder], float] | None = None,
    descriptors: np.ndarray | None = None,
) -> TrainResult:
    """Train (or resume training) an embedder; checkpoints land in ``out_dir``.

    ``train_images`` is shaped like ``schemas.IMAGES`` with absolute ``path``s, or, for
    ``recipe="head"``, the training views (``image_id`` = view id, ``item_id``, ``role``) with
    their pretrained ``descriptors`` ``(n, d)`` row for row. ``val_fn`` scores the model after
    every epoch (higher is better, e.g. recall@k): the best epoch is kept as ``best.pt`` and
    ``params.patience`` stops a run that no longer improves.
    """
    trainer = _Trainer(train_images, params, Path(out_dir), init_checkpoint, triplets, descriptors)
    return trainer.run(val_fn)
