"""The embedder: backbone -> pooling head -> L2-normalised embedding, and its checkpoints.

A checkpoint carries the :class:`EmbedderConfig` and the :class:`Preprocess` next to the
weights, so :func:`load_embedder` rebuilds exactly the trained network and the serving side
cannot drift from the preprocessing the model was trained with.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from street2shop.models.backbones import Backbone, BackboneNameStr, create_backbone
from street2shop.models.pooling import GlobalDescriptor, ResidualDescriptor, create_pooling, parse_pooling, pool_input
from street2shop.models.preprocess import Preprocess

CHECKPOINT_FORMAT = 1


class EmbedderConfig(BaseModel):
    """Everything needed to rebuild an embedder's architecture (weights come separately).

    ``mode="pretrained_features"`` is the no-training baseline: parameter-free pooling
    (GeM with p fixed at 3, or SPoC/MAC) of the pretrained backbone, no projection.
    ``head="residual"``: that baseline's descriptor refined by a residual linear layer
    (:class:`~street2shop.models.pooling.ResidualDescriptor`; ``dim`` is the descriptor's
    width); ``"projection"``: each pooling branch projected to its share of ``dim``.
    """

    model_config = ConfigDict(frozen=True)

    backbone: BackboneNameStr = "efficientnet_lite0"
    pool: str = "gem"
    dim: int | None = Field(default=256, gt=0)
    mode: Literal["trained", "pretrained_features"] = "trained"
    freeze_backbone: bool = False
    image_size: int | None = Field(default=None, gt=0)
    head: Literal["projection", "residual"] = "projection"
    #: the photo-to-square policy (:class:`~street2shop.models.preprocess.Preprocess`);
    #: None: the backbone's own ("pad")
    resize: Literal["pad", "squash", "centre"] | None = None


class Embedder(nn.Module):
    """Images ``(B, 3, S, S)`` -> unit-norm embeddings ``(B, dim)``."""

    def __init__(
        self, backbone: Backbone, head: GlobalDescriptor, preprocess: Preprocess, config: EmbedderConfig
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.preprocess = preprocess
        self.config = config
        if config.freeze_backbone:
            self.backbone.requires_grad_(False)

    @property
    def dim(self) -> int:
        return self.head.out_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.head.reads_global:  # a ``cls`` branch: the backbone's pooled vector too
            return F.normalize(self.head(*self.backbone.forward_pooled(x)), dim=-1)
        return F.normalize(self.head(self.backbone.forward_features(x)), dim=-1)

    @property
    def refines_pretrained(self) -> bool:
        """Whether this model is the pretrained descriptor of its (frozen, ImageNet) backbone
        refined by a residual head: then its embeddings are :meth:`refine_descriptors` of
        :func:`pretrained_features`' ones, and one backbone pass serves both."""
        return self.config.freeze_backbone and isinstance(self.head, ResidualDescriptor)

    @torch.no_grad()
    def refine_descriptors(self, descriptors: np.ndarray) -> np.ndarray:
        """This model's unit-norm embeddings from the pretrained descriptors ``(..., d)``."""
        if not self.refines_pretrained:
            raise ValueError("only a residual head on a frozen backbone refines pretrained descriptors")
        shape = descriptors.shape
        flat = torch.from_numpy(np.ascontiguousarray(descriptors.reshape(-1, shape[-1]), dtype=np.float32))
        return F.normalize(self.head.refine(flat), dim=-1).numpy().reshape(shape)

    def train(self, mode: bool = True) -> Embedder:
        super().train(mode)
        if self.config.freeze_backbone:
            # A frozen backbone must also keep its BatchNorm statistics frozen.
            self.backbone.eval()
        return self


@torch.no_grad()
def init_projections_from_pca(model: Embedder, batches: Iterable[torch.Tensor]) -> int:
    """Start each projection of ``model.head`` at the PCA of its branch's pooled features.

    A randomly initialised projection scrambles the pretrained descriptor, so the first
    training steps are spent recovering what the backbone already knew; projecting onto the
    leading principal components instead starts training from (a compressed copy of) the
    pretrained features. Weights become the top components, biases centre the features.
    Rows beyond the rank of the sample (fewer photos than dimensions) keep their random
    init. Returns the number of photos used.
    """
    head = model.head
    if head.projections is None:
        raise ValueError("this embedder has no projection to initialise (pretrained_features mode)")
    was_training = model.training
    model.eval()
    pooled: list[list[torch.Tensor]] = [[] for _ in head.pools]
    n = 0
    for images in batches:
        feature_map, vector = model.backbone.forward_pooled(images)
        for k, pool in enumerate(head.pools):
            pooled[k].append(pool(pool_input(pool, feature_map, vector)).double())
        n += len(images)
    model.train(was_training)
    if n < 2:
        raise ValueError(f"PCA needs at least 2 photos, got {n}")
    for branch, projection in zip(pooled, head.projections, strict=True):
        features = torch.cat(branch)
        mean = features.mean(dim=0)
        _, _, components = torch.linalg.svd(features - mean, full_matrices=False)
        rank = min(projection.out_features, components.shape[0])
        projection.weight[:rank] = components[:rank].to(projection.weight.dtype)
        projection.bias[:rank] = -(components[:rank] @ mean).to(projection.bias.dtype)
    return n


def _build(config: EmbedderConfig, pretrained: bool, weights_path: str | Path | None) -> Embedder:
    backbone = create_backbone(config.backbone, pretrained=pretrained, weights_path=weights_path)
    preprocess = backbone.preprocess
    if config.image_size is not None:
        fixed = backbone.fixed_input_size
        if fixed is not None and config.image_size != fixed:
            raise ValueError(f"backbone {config.backbone!r} takes {fixed} px inputs only; set image_size to {fixed} (or None)")
        preprocess = preprocess.model_copy(update={"image_size": config.image_size})
    if config.resize is not None:
        preprocess = preprocess.model_copy(update={"resize": config.resize})
    widths = {"in_dim": backbone.num_features, "global_dim": backbone.global_features}
    if config.mode == "pretrained_features":
        head = create_pooling(config.pool, out_dim=None, gem_p=3.0, learnable_p=False, **widths)
    elif config.head == "residual":
        head = ResidualDescriptor(parse_pooling(config.pool), gem_p=3.0, **widths)
    else:
        head = create_pooling(config.pool, out_dim=config.dim, **widths)
    return Embedder(backbone, head, preprocess, config)


def build_embedder(
    backbone: str = "efficientnet_lite0",
    pool: str = "gem",
    dim: int = 256,
    pretrained: bool = True,
    freeze_backbone: bool = False,
    image_size: int | None = None,
    weights_path: str | Path | None = None,
    head: str = "projection",
    resize: str | None = None,
) -> Embedder:
    """A trainable embedder: pretrained backbone, pooling head projected to ``dim`` (or, with
    ``head="residual"``, the pretrained descriptor refined by a residual layer)."""
    config = EmbedderConfig(
        backbone=backbone, pool=pool, dim=dim if head == "projection" else None, freeze_backbone=freeze_backbone,
        image_size=image_size, head=head, resize=resize,
    )  # fmt: skip
    return _build(config, pretrained, weights_path)


def pretrained_features(
    backbone: str = "efficientnet_lite0",
    pool: str = "gem",
    image_size: int | None = None,
    weights_path: str | Path | None = None,
    pretrained: bool = True,
    resize: str | None = None,
) -> Embedder:
    """The "pretrained backbone" baseline: no training, GeM (p=3 fixed) or SPoC features.

    ``pretrained=False`` keeps the backbone's initial weights (torch's current random state:
    seed it), for test backbones without pretrained weights."""
    config = EmbedderConfig(
        backbone=backbone,
        pool=pool,
        dim=None,
        mode="pretrained_features",
        freeze_backbone=True,
        image_size=image_size,
        resize=resize,
    )
    return _build(config, pretrained=pretrained, weights_path=weights_path).eval()


def save_checkpoint(
    path: str | Path,
    model: Embedder,
    optimizer: torch.optim.Optimizer | None = None,
    config: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write model weights, its architecture and preprocessing, and training state.

    ``config`` is the run's configuration (e.g. ``TrainParams.model_dump()``), ``extra`` any
    training state to resume from. The file is written to a temporary name and renamed, so
    a run killed while saving leaves the previous checkpoint intact.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": CHECKPOINT_FORMAT,
        "embedder": model.config.model_dump(),
        "preprocess": model.preprocess.model_dump(),
        "state_dict": model.state_dict(),
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "config": dict(config or {}),
        "extra": dict(extra or {}),
    }
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        torch.save(payload, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def read_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """The raw checkpoint dictionary (tensors and plain Python values only)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    # weights_only: a checkpoint is data, never code, even when it comes from a shared store.
    payload = torch.load(path, map_location=map_location, weights_only=True)
    found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
    if found != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not a street2shop embedder checkpoint (format {found!r})")
    return payload


def embedder_from_checkpoint(payload: Mapping[str, Any]) -> Embedder:
    """Rebuild the embedder described by a checkpoint dictionary and load its weights strictly."""
    config = EmbedderConfig(**payload["embedder"])
    # The checkpoint holds every weight, so the backbone is built empty (nothing to look up).
    model = _build(config, pretrained=False, weights_path=None)
    model.preprocess = Preprocess(**payload["preprocess"])
    model.load_state_dict(payload["state_dict"], strict=True)
    return model


def load_embedder(checkpoint_path: str | Path, map_location: str | torch.device = "cpu") -> Embedder:
    """The embedder saved at ``checkpoint_path``, in eval mode, with its own preprocessing."""
    return embedder_from_checkpoint(read_checkpoint(checkpoint_path, map_location)).eval()
