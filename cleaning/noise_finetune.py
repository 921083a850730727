"""Fine-tuning the noise filter's CNN: linear probe, then the last block(s) end to end (LP-FT).

Kumar et al. 2022: the logistic regression fitted on frozen features initialises a linear
head, then the CNN's last block(s) and that head train together with a class-balanced BCE
loss, on the train side of the by-product split only. The frozen trunk below those blocks
runs once per photo and its activations are cached (:func:`trunk_activations`), so each
epoch costs only the trained blocks.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from street2shop.cleaning.images import open_rgb
from street2shop.models.backbones import Backbone, SequentialBackbone, TimmBackbone
from street2shop.models.embedder import Embedder


def split_trunk(backbone: Backbone, blocks: int) -> tuple[nn.Sequential, nn.Sequential]:
    """``(frozen, tail)`` with ``tail(frozen(x)) == backbone.forward_features(x)``.

    ``tail`` is the last ``blocks`` blocks and the layers after them (EfficientNet's 1x1
    ``conv_head``: it makes the pooled features, so it is always trained with them). The
    modules are shared, not copied: training ``tail`` trains the backbone.
    """
    if isinstance(backbone, TimmBackbone) and hasattr(backbone.model, "blocks") and hasattr(backbone.model, "conv_stem"):
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


class TrainedPart(nn.Module):
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


def trunk_activations(network: Embedder, frozen: nn.Module, paths: Sequence[str | Path], batch_size: int) -> tuple[torch.Tensor, np.ndarray]:
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


def fine_tune(
    part: TrainedPart, activations: torch.Tensor, is_noise: np.ndarray, *, lr: float, epochs: int, batch_size: int, seed: int
) -> list[float]:
    """Train ``part`` (trunk tail + head) on these rows only; returns the mean loss per epoch.

    Class-balanced like the logistic regression (``class_weight="balanced"``: each row
    weighs ``n / (2 n_its_class)``), shuffled by a generator seeded with ``seed``.
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
        batch_size=batch_size,
        shuffle=True,
        generator=torch.Generator().manual_seed(seed),
        num_workers=0,  # worker processes die under Prefect
    )
    part.eval()
    # The trunk tail and the head learn; the pooling stays as the extractor defines it (GeM p=3).
    part.tail.requires_grad_(True)
    part.linear.requires_grad_(True)
    # No weight decay: the head starts from a logistic regression already L2-regularised by C.
    optimizer = torch.optim.AdamW([p for p in part.parameters() if p.requires_grad], lr=lr, weight_decay=0.0)
    losses = []
    for _ in range(epochs):
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
