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

A head reads the frozen features (``cgd_<loss>``) or, when the street-to-shop embedder is
given, that embedder's descriptor (``cgd_<loss>_s2s``: one branch, its embedding). Each head
stops early on validation posts (snapshot -> items mAP@k, ``patience`` epochs without a
better one) and keeps its best epoch. What the service uses is chosen by measurement
(``serve="best"``): of the heads and the baselines (the untrained features ``BACKBONE``, the
embedder's own embedding ``STREET2SHOP``), the best on validation posts; a head that loses to
a baseline is never served, the baseline is.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from street2shop.models.losses import CLASSIFICATION_LOSSES, create_loss
from street2shop.retrieval.look_metrics import K, rank_metrics
from street2shop.retrieval.outfit_metrics import serve_by_validation

FORMAT = "street2shop-looks-1"
#: the baselines: the untrained features (cosine), and the street-to-shop embedder's embedding
BACKBONE = "backbone"
STREET2SHOP = "street2shop"
#: the layout of the embedder's descriptor as a head's input: one branch
EMBEDDING_LAYOUT = [("embedding", 0)]


class LooksTrainParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    #: the models trained, by loss name (``models/losses.py``); each is a CGD head
    losses: list[str] = ["softmax", "arcface"]
    #: what the service uses: "best" (the best on validation posts of the heads and the
    #: baselines), or a space's name ("cgd_arcface", "backbone", "street2shop", ...) to force it
    serve: str = "best"
    #: also train the heads on the street-to-shop embedder's descriptor, when one is given
    on_embedder: bool = True
    #: stop a head after this many epochs without a better validation mAP (0: every epoch)
    patience: int = Field(8, ge=0)
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
    #: the head's name: cgd_<loss>, or cgd_<loss>_s2s on the embedder's descriptor
    name: str = ""
    #: what the head reads: "features" or STREET2SHOP
    reads: str = "features"
    layout: list = field(default_factory=list)
    best_epoch: int = 0
    val_map: float = float("nan")

    def __post_init__(self) -> None:
        self.name = self.name or f"cgd_{self.loss}"


#: a head -> its validation figure (higher is better)
Validate = Callable[[CGDHead], float]


def train_looks(features: np.ndarray, labels: np.ndarray, layout: Sequence[tuple[str, int]], loss_name: str,
                params: LooksTrainParams, validate: Validate | None = None, reads: str = "features") -> TrainedLooks:
    """Train a CGD head on ``features`` (one row per sample) to classify ``labels`` (post
    index); ``validate`` scores the head after each epoch and the best epoch is kept (with
    early stopping). ``reads``: STREET2SHOP when the rows are the embedder's descriptors."""
    if loss_name not in CLASSIFICATION_LOSSES:
        raise ValueError(f"looks are classes: use a classification loss ({sorted(CLASSIFICATION_LOSSES)}), not {loss_name!r}")
    # Batches of a few hundred rows through a few small layers: one thread does them fastest,
    # and on a busy two-core machine two threads wait on each other (10 epochs of the demo's
    # 1,400 samples: 0.45 s on one thread, 6.6 s on two beside a test run).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        trained = _train(features, labels, layout, loss_name, params, validate)
    finally:
        torch.set_num_threads(threads)
    trained.reads = reads
    trained.name = f"cgd_{loss_name}" + ("_s2s" if reads == STREET2SHOP else "")
    return trained


def head_for(layout: Sequence[tuple[str, int]], params: LooksTrainParams) -> CGDHead:
    """A CGD head for ``layout``: the params' branches, or the embedder's one branch."""
    branches = [layout[0][0]] if [n for n, _ in layout] == [n for n, _ in EMBEDDING_LAYOUT] else params.branches
    return CGDHead(layout, branches, params.dim)


def _train(features: np.ndarray, labels: np.ndarray, layout: Sequence[tuple[str, int]], loss_name: str,
           params: LooksTrainParams, validate: Validate | None) -> TrainedLooks:
    started = time.perf_counter()
    torch.manual_seed(params.seed)
    head = head_for(layout, params)
    n_classes = int(labels.max()) + 1
    loss = create_loss(loss_name, margin=params.margin, num_classes=n_classes, embedding_size=params.dim,
                       scale=params.scale, temperature=params.temperature, label_smoothing=params.label_smoothing)
    opt = torch.optim.AdamW([*head.parameters(), *loss.parameters()], lr=params.lr, weight_decay=params.weight_decay)
    x = torch.as_tensor(features, dtype=torch.float32)
    y = torch.as_tensor(labels, dtype=torch.long)
    gen = torch.Generator().manual_seed(params.seed)
    log = []
    best = (-1.0, 0, None)
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
        row = {"epoch": epoch, "loss": total / max(n, 1)}
        if validate is not None:
            head.eval()
            row["val_map"] = float(validate(head))
            if row["val_map"] > best[0]:
                best = (row["val_map"], epoch, {k: v.clone() for k, v in head.state_dict().items()})
        log.append(row)
        if validate is not None and params.patience and epoch - best[1] >= params.patience:
            break  # early stopping: no better validation mAP for `patience` epochs
    if best[2] is not None:
        head.load_state_dict(best[2])
    head.eval()
    return TrainedLooks(loss_name, head, time.perf_counter() - started, log, layout=[list(x) for x in layout],
                        best_epoch=best[1] if best[2] is not None else len(log), val_map=best[0] if best[2] is not None else float("nan"))


def embed(head: CGDHead, features: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return head(torch.as_tensor(np.atleast_2d(features), dtype=torch.float32)).numpy()


@dataclass
class Embedded:
    """The street-to-shop embedder's descriptors of a crawl's items and posts (kept in the
    model file, so the service does not embed the shop again) and the checkpoint's version."""

    checkpoint: dict  # an ArtifactRef's fields
    items: dict[str, np.ndarray]
    snaps: dict[str, np.ndarray]


def save_looks(path, trained: Sequence[TrainedLooks], params: LooksTrainParams, layout: Sequence[tuple[str, int]],
               features: dict, served: str | None = None, embedded: Embedded | None = None) -> None:
    """Every head (by name, with what it reads and its layout), the name served (a head or a
    baseline) and, when the embedder was given, its descriptors of the items and posts."""
    payload = {"format": FORMAT, "params": params.model_dump(), "layout": [list(x) for x in layout],
               "heads": {t.name: t.head.state_dict() for t in trained}, "features": dict(features),
               "reads": {t.name: t.reads for t in trained}, "layouts": {t.name: t.layout for t in trained},
               "served": served or params.serve}
    if embedded is not None:
        item_ids, snap_ids = sorted(embedded.items), sorted(embedded.snaps)
        payload["embedded"] = {"checkpoint": dict(embedded.checkpoint), "item_ids": item_ids, "snap_ids": snap_ids,
                               "items": torch.as_tensor(np.stack([embedded.items[i] for i in item_ids])),
                               "snaps": torch.as_tensor(np.stack([embedded.snaps[s] for s in snap_ids]))}
    torch.save(payload, path)


@dataclass
class LoadedLooks:
    params: LooksTrainParams
    heads: dict[str, CGDHead]
    features: dict
    #: the space served: a head's name, BACKBONE or STREET2SHOP
    served_name: str = ""
    #: head name -> "features" or STREET2SHOP
    reads: dict[str, str] = field(default_factory=dict)
    embedded: Embedded | None = None

    @property
    def served(self) -> CGDHead | None:
        """The served head; None when a baseline is served."""
        return self.heads.get(self.served_name)

    @property
    def served_reads(self) -> str:
        """What the served space is computed from: "features" or STREET2SHOP."""
        if self.served_name in self.heads:
            return self.reads.get(self.served_name, "features")
        return STREET2SHOP if self.served_name == STREET2SHOP else "features"


def load_looks(path) -> LoadedLooks:
    payload = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ValueError(f"{path} is not a street2shop looks model file")
    params = LooksTrainParams(**payload["params"])
    layout = [(str(n), int(w)) for n, w in payload["layout"]]
    heads = {}
    for name, state in payload["heads"].items():
        head_layout = [(str(n), int(w)) for n, w in payload.get("layouts", {}).get(name, layout)]
        head = head_for(head_layout, params)
        head.load_state_dict(state)
        key = name if name.startswith("cgd_") else f"cgd_{name}"  # files before heads were named by space
        heads[key] = head.eval()
    reads = {(k if k.startswith("cgd_") else f"cgd_{k}"): v for k, v in payload.get("reads", {}).items()}
    embedded = None
    if "embedded" in payload:
        e = payload["embedded"]
        embedded = Embedded(dict(e["checkpoint"]), dict(zip(e["item_ids"], e["items"].numpy())),
                            dict(zip(e["snap_ids"], e["snaps"].numpy())))
    served = str(payload.get("served", f"cgd_{params.serve}"))
    if served not in heads and served not in (BACKBONE, STREET2SHOP):
        raise ValueError(f"{path} serves {served!r}, which it does not hold")
    if served == STREET2SHOP and embedded is None:
        raise ValueError(f"{path} serves the street-to-shop embedder but holds none of its descriptors")
    return LoadedLooks(params, heads, dict(payload["features"]), served, reads, embedded)


def unit(m: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (float32)."""
    return (m / np.maximum(np.linalg.norm(m, axis=1, keepdims=True), 1e-12)).astype(np.float32)


def post_rows(posts: Sequence[str], snaps: dict, items: dict, links: dict) -> tuple[list[np.ndarray], list[int]]:
    """Training rows of ``posts``: each post's photo and its items' photos, labelled by post."""
    rows, labels = [], []
    for label, s in enumerate(posts):
        rows.append(snaps[s])
        labels.append(label)
        for item in links[s]:
            rows.append(items[item])
            labels.append(label)
    return rows, labels


@dataclass
class LooksSelection:
    """The heads trained, every candidate's validation mAP@k (baselines included) and the
    one served by :func:`~street2shop.retrieval.outfit_metrics.serve_by_validation`."""

    trained: list[TrainedLooks]
    candidates: dict[str, float]
    served: str
    rule: str
    samples: int


def train_and_select(view, split_of: dict[str, str], lay: Sequence[tuple[str, int]], params: LooksTrainParams,
                     embedded: Embedded | None) -> LooksSelection:
    """One head per loss on the frozen features of the training posts (and, given the
    street-to-shop embedder's descriptors, one per loss on those), each stopping early on the
    validation posts; then the space served: the best on validation posts of the heads, the
    untrained features and the embedder's own embedding (a baseline wins a tie)."""
    train_posts = sorted(s for s, sp in split_of.items() if sp == "train")
    val_posts = sorted(s for s, sp in split_of.items() if sp == "val")
    item_ids = sorted(view.items)
    rows, labels = post_rows(train_posts, view.snaps, view.items, view.links)
    if not rows:
        raise ValueError("no training posts: the lookbook is empty or every post is held out")
    sources = {"features": (view.items, view.snaps)}
    if embedded is not None:
        sources[STREET2SHOP] = (embedded.items, embedded.snaps)

    def val_map(items_m: np.ndarray, snap_vec: dict) -> float:
        """Validation snapshot -> items mAP@k of a space (items matrix, snap id -> vector)."""
        if not val_posts:
            return float("nan")
        got = rank_metrics(np.stack([snap_vec[s] for s in val_posts]), items_m, item_ids,
                           [set(view.links[s]) for s in val_posts], K)
        return got["all"]["map"]

    def validate_on(reads: str):
        if not val_posts:
            return None
        items, snaps = sources[reads]
        x_items = np.stack([items[i] for i in item_ids])
        x_snaps = np.stack([snaps[s] for s in val_posts])
        return lambda head: val_map(embed(head, x_items), dict(zip(val_posts, embed(head, x_snaps))))

    trained = [train_looks(np.stack(rows), np.asarray(labels), lay, loss, params, validate_on("features"))
               for loss in params.losses]
    if embedded is not None and params.on_embedder:
        e_rows, _ = post_rows(train_posts, embedded.snaps, embedded.items, view.links)
        e_lay = [(EMBEDDING_LAYOUT[0][0], len(e_rows[0]))]
        trained += [train_looks(np.stack(e_rows), np.asarray(labels), e_lay, loss, params, validate_on(STREET2SHOP),
                                reads=STREET2SHOP) for loss in params.losses]
    candidates = {BACKBONE: val_map(unit(np.stack([view.items[i] for i in item_ids])),
                                    {s: v / max(float(np.linalg.norm(v)), 1e-12) for s, v in view.snaps.items()})}
    if embedded is not None:
        candidates[STREET2SHOP] = val_map(np.stack([embedded.items[i] for i in item_ids]), embedded.snaps)
    candidates.update({t.name: t.val_map for t in trained})
    served, rule = serve_by_validation(candidates, [BACKBONE, STREET2SHOP], params.serve)
    return LooksSelection(trained, candidates, served, rule, len(rows))
