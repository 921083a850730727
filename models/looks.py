"""Shop the look: one space for lookbook photos and the items stylists link to them.

A post (a snapshot of a look and the items linked to it, look-alikes or not) is a class. The
model is a combined global descriptor (CGD, Jun et al. 2019) on the frozen photo features
(``models/features.py``): each branch (GeM, SPoC, and the colour and shape descriptors when
the features have them) projected to its share of the width, L2-normalised, concatenated and
normalised, trained with a classification loss over posts (ArcFace, or softmax with label
smoothing and temperature: the registries of ``models/losses.py``, by name). A snapshot and
each of its items are samples of its post's class (an item linked by several posts is a
sample of each), so a snapshot lands near the items its post links and an item near the
posts that link it.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from street2shop.models.losses import CLASSIFICATION_LOSSES, create_loss

FORMAT = "street2shop-looks-1"


class LooksTrainParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    #: the models trained, by loss name (``models/losses.py``); each is a CGD head
    losses: list[str] = ["softmax", "arcface"]
    #: the loss of the model the service uses
    serve: str = "arcface"
    #: branches of the features the head projects (those the features have)
    branches: list[str] = ["gem", "spoc", "colour", "shape"]
    dim: int = Field(128, gt=0)
    epochs: int = Field(40, ge=1)
    batch_size: int = Field(128, ge=2)
    lr: float = Field(3e-3, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    #: ArcFace: additive angular margin (degrees) and scale
    margin: float = Field(28.6, ge=0)
    scale: float = Field(32.0, gt=0)
    #: softmax: temperature and label smoothing
    temperature: float = Field(0.05, gt=0)
    label_smoothing: float = Field(0.1, ge=0, lt=1)
    seed: int = 0


class CGDHead(nn.Module):
    """Feature vectors -> unit embeddings: per-branch projections, normalised, concatenated."""

    def __init__(self, layout: Sequence[tuple[str, int]], branches: Sequence[str], dim: int) -> None:
        super().__init__()
        offsets, start = {}, 0
        for name, width in layout:
            offsets[name] = (start, start + width)
            start += width
        self.branches = [b for b in branches if b in offsets]
        if not self.branches:
            raise ValueError(f"none of the branches {list(branches)} is in the features {[n for n, _ in layout]}")
        self.slices = [offsets[b] for b in self.branches]
        shares = [dim // len(self.branches)] * len(self.branches)
        shares[0] += dim - sum(shares)
        self.projections = nn.ModuleList(nn.Linear(b - a, s) for (a, b), s in zip(self.slices, shares))
        self.dim = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parts = [F.normalize(p(x[:, a:b]), dim=-1) for p, (a, b) in zip(self.projections, self.slices)]
        return F.normalize(torch.cat(parts, dim=-1), dim=-1)


@dataclass
class TrainedLooks:
    loss: str
    head: CGDHead
    seconds: float
    log: list[dict]


def train_looks(features: np.ndarray, labels: np.ndarray, layout: Sequence[tuple[str, int]], loss_name: str,
                params: LooksTrainParams) -> TrainedLooks:
    """Train a CGD head on ``features`` (one row per sample) to classify ``labels`` (post index)."""
    if loss_name not in CLASSIFICATION_LOSSES:
        raise ValueError(f"looks are classes: use a classification loss ({sorted(CLASSIFICATION_LOSSES)}), not {loss_name!r}")
    # Batches of a few hundred rows through a few small layers: one thread does them fastest,
    # and on a busy two-core machine two threads wait on each other (10 epochs of the demo's
    # 1,400 samples: 0.45 s on one thread, 6.6 s on two beside a test run).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _train(features, labels, layout, loss_name, params)
    finally:
        torch.set_num_threads(threads)


def _train(features: np.ndarray, labels: np.ndarray, layout: Sequence[tuple[str, int]], loss_name: str,
           params: LooksTrainParams) -> TrainedLooks:
    started = time.perf_counter()
    torch.manual_seed(params.seed)
    head = CGDHead(layout, params.branches, params.dim)
    n_classes = int(labels.max()) + 1
    loss = create_loss(loss_name, margin=params.margin, num_classes=n_classes, embedding_size=params.dim,
                       scale=params.scale, temperature=params.temperature, label_smoothing=params.label_smoothing)
    opt = torch.optim.AdamW([*head.parameters(), *loss.parameters()], lr=params.lr, weight_decay=params.weight_decay)
    x = torch.as_tensor(features, dtype=torch.float32)
    y = torch.as_tensor(labels, dtype=torch.long)
    gen = torch.Generator().manual_seed(params.seed)
    log = []
    for epoch in range(1, params.epochs + 1):
        head.train()
        order = torch.randperm(len(x), generator=gen)
        total, n = 0.0, 0
        for lo in range(0, len(x), params.batch_size):
            b = order[lo : lo + params.batch_size]
            value = loss(head(x[b]), y[b])
            opt.zero_grad()
            value.backward()
            opt.step()
            total += float(value.detach()) * len(b)
            n += len(b)
        log.append({"epoch": epoch, "loss": total / max(n, 1)})
    head.eval()
    return TrainedLooks(loss_name, head, time.perf_counter() - started, log)


def embed(head: CGDHead, features: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return head(torch.as_tensor(np.atleast_2d(features), dtype=torch.float32)).numpy()


def save_looks(path, trained: Sequence[TrainedLooks], params: LooksTrainParams, layout: Sequence[tuple[str, int]],
               features: dict) -> None:
    torch.save({"format": FORMAT, "params": params.model_dump(), "layout": [list(x) for x in layout],
                "heads": {t.loss: t.head.state_dict() for t in trained}, "features": dict(features)}, path)


@dataclass
class LoadedLooks:
    params: LooksTrainParams
    heads: dict[str, CGDHead]
    features: dict

    @property
    def served(self) -> CGDHead:
        return self.heads[self.params.serve]


def load_looks(path) -> LoadedLooks:
    payload = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ValueError(f"{path} is not a street2shop looks model file")
    params = LooksTrainParams(**payload["params"])
    layout = [(str(n), int(w)) for n, w in payload["layout"]]
    heads = {}
    for name, state in payload["heads"].items():
        head = CGDHead(layout, params.branches, params.dim)
        head.load_state_dict(state)
        heads[name] = head.eval()
    return LoadedLooks(params, heads, dict(payload["features"]))
