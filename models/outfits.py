"""Outfit compatibility models: type-aware embeddings (Vasileva et al. 2018) and a
self-adaptive triplet loss, trained on frozen photo features.

An item is its photo's frozen features (``models/features.py``); a small network maps them to
a *general* embedding ``f(x)`` (unit norm). How compatible items ``x`` of type ``u`` and ``y``
of type ``v`` are is read in a subspace of that embedding chosen for the type pair: a learnt
non-negative mask ``m_uv`` (shared by ``(u, v)`` and ``(v, u)``), distance
``|| n(f(x) * m_uv) - n(f(y) * m_uv) ||`` (``n``: L2-normalise). So "a goes with b" and "b goes
with c" are read in two subspaces and do not force "a goes with c", which one space does.
The masks have an L1 penalty, as in the paper. Variants by name (``VARIANTS``):

* ``siamese``: one space, no masks: the single-space baseline;
* ``type_aware``: the type-pair masks, plain triplet loss;
* ``type_aware_sat``: the masks and the **self-adaptive triplet loss** (SAT): each triplet's
  hinge is weighted by its difficulty ``d(a, p) - d(a, n)``, ``w = N softmax(difficulty / T)``
  over the batch (detached), so the triplets the model gets most wrong weigh most and the
  already solved ones fade, without mining them out.

Triplets: an anchor item, a compatible item of type ``v`` from the same outfit, and an item of
type ``v`` from another outfit of the training split (drawn afresh each epoch). The epoch with
the best validation compatibility AUC is kept, and training stops ``patience`` epochs after it.

What the service uses is chosen by measurement (``serve="best"``): of the trained variants and
the untrained features (``BACKBONE``), the best on validation outfits
(``retrieval/outfit_metrics.serve_by_validation``), so a model that loses to the baseline is
never served: the baseline is.

An outfit's score is minus the mean pairwise distance of its items; a FITB candidate's score is
minus its mean distance to the outfit's items.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field

from street2shop.retrieval.outfit_metrics import compatibility_auc
from torch import nn

from street2shop.registry import Registry

FORMAT = "street2shop-outfits-1"
#: the untrained baseline: the frozen features, one space, cosine distance
BACKBONE = "backbone"


@dataclass(frozen=True)
class Variant:
    type_aware: bool
    sat: bool


VARIANTS: Registry[Variant] = Registry(
    "outfit model",
    {"siamese": Variant(False, False), "type_aware": Variant(True, False), "type_aware_sat": Variant(True, True)},
)


class OutfitTrainParams(BaseModel):
    """How the compatibility models are trained (part of their version)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    variants: list[str] = ["siamese", "type_aware", "type_aware_sat"]
    #: what the service uses: "best" (the best of the variants and the backbone on validation
    #: outfits), or a variant's name or "backbone" to force it
    serve: str = "best"
    dim: int = Field(32, gt=0)
    #: width of the hidden layer; 0: one linear projection
    hidden: int = Field(64, ge=0)
    epochs: int = Field(40, ge=1)
    #: stop after this many epochs without a better validation AUC (0: train every epoch)
    patience: int = Field(5, ge=0)
    batch_size: int = Field(256, ge=2)
    lr: float = Field(2e-3, gt=0)
    weight_decay: float = Field(1e-3, ge=0)
    dropout: float = Field(0.0, ge=0, lt=1)
    margin: float = Field(0.3, gt=0)
    #: SAT's temperature: smaller concentrates the weight on the hardest triplets
    sat_temperature: float = Field(0.1, gt=0)
    mask_l1: float = Field(5e-4, ge=0)
    #: principal components of the training items' features the network sees (0: all features)
    pca: int = Field(32, ge=0)
    seed: int = 0


class CompatibilityModel(nn.Module):
    """Features ``(B, in_dim)`` -> general embedding ``(B, dim)``; distances per type pair."""

    def __init__(self, in_dim: int, types: Sequence[str], dim: int = 32, hidden: int = 64, dropout: float = 0.0,
                 type_aware: bool = True, pca: int = 0) -> None:
        super().__init__()
        self.types = list(types)
        self.type_aware = type_aware
        # A fixed projection onto the training items' principal components (set by fit_pca):
        # a few hundred items shatter in thousands of dimensions, so without it the network
        # memorises which training items go together instead of learning why.
        width = pca or in_dim
        self.register_buffer("pca_mean", torch.zeros(in_dim if pca else 0))
        self.register_buffer("pca_components", torch.zeros(pca, in_dim) if pca else torch.zeros(0))
        layers: list[nn.Module] = [nn.Dropout(dropout)]
        layers += [nn.Linear(width, hidden), nn.ReLU(), nn.Linear(hidden, dim)] if hidden else [nn.Linear(width, dim)]
        self.net = nn.Sequential(*layers)
        n = len(self.types)
        pairs = n * (n + 1) // 2
        # Masks start near one (every dimension shared), a little apart so pairs can diverge.
        self.masks = nn.Parameter(1.0 + 0.1 * torch.randn(pairs, dim)) if type_aware else None
        index = torch.zeros(n, n, dtype=torch.long)
        k = 0
        for i in range(n):
            for j in range(i, n):
                index[i, j] = index[j, i] = k
                k += 1
        self.register_buffer("pair_index", index, persistent=False)

    def type_ids(self, types: Sequence[str]) -> torch.Tensor:
        return torch.as_tensor([self.types.index(t) for t in types], dtype=torch.long)

    @torch.no_grad()
    def fit_pca(self, features: torch.Tensor) -> None:
        """Set the fixed input projection from ``features`` (rows: training items): the
        leading components, scaled together so the first has unit variance (not whitened:
        whitening would blow the minor, noisy components up to the size of the main ones)."""
        k = self.pca_components.shape[0]
        if not k:
            return
        mean = features.mean(dim=0)
        _, s, v = torch.linalg.svd(features - mean, full_matrices=False)
        comps = v[:k] / (s[0] / max(1, len(features) - 1) ** 0.5).clamp(min=1e-6)
        self.pca_mean.copy_(mean)
        self.pca_components.zero_()
        self.pca_components[: len(comps)] = comps

    def general(self, features: torch.Tensor) -> torch.Tensor:
        if self.pca_components.numel():
            features = (features - self.pca_mean) @ self.pca_components.T
        return F.normalize(self.net(features), dim=-1)

    def distance(self, ex: torch.Tensor, ey: torch.Tensor, tx: torch.Tensor, ty: torch.Tensor) -> torch.Tensor:
        """Distances of embedding rows ``ex`` (types ``tx``) to ``ey`` (types ``ty``), row by row."""
        if self.masks is None:
            return (ex - ey).norm(dim=-1)
        m = F.relu(self.masks[self.pair_index[tx, ty]])
        return (F.normalize(ex * m, dim=-1) - F.normalize(ey * m, dim=-1)).norm(dim=-1)

    def mask_penalty(self) -> torch.Tensor:
        return F.relu(self.masks).abs().mean() if self.masks is not None else torch.zeros(())


def triplet_loss(d_ap: torch.Tensor, d_an: torch.Tensor, margin: float, sat_temperature: float | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss, weights): the mean hinge ``max(0, d_ap - d_an + margin)``; with
    ``sat_temperature``, each hinge weighted by ``N softmax((d_ap - d_an) / T)`` (detached:
    the weights follow the difficulty, they are not trained)."""
    hinge = F.relu(d_ap - d_an + margin)
    if sat_temperature is None:
        weights = torch.ones_like(hinge)
    else:
        weights = len(hinge) * torch.softmax((d_ap - d_an).detach() / sat_temperature, dim=0)
    return (weights * hinge).mean(), weights


@dataclass
class OutfitData:
    """The training view of outfits: item features and types, outfits as item index lists."""

    features: np.ndarray  # (items, in_dim) float32
    item_ids: list[str]
    types: list[str]  # type per item
    outfits: dict[str, list[list[int]]]  # split -> outfits (item indexes)
    index: dict[str, int] = field(init=False)

    def __post_init__(self) -> None:
        self.index = {i: k for k, i in enumerate(self.item_ids)}


def _triplets(data: OutfitData, rng: np.random.Generator, split: str = "train") -> np.ndarray:
    """(anchor, positive, negative) item indexes: every ordered pair of an outfit of the
    split, a negative of the positive's type from another outfit of the split."""
    outfits = data.outfits.get(split, [])
    pool: dict[str, list[int]] = {}
    for o in outfits:
        for i in o:
            pool.setdefault(data.types[i], []).append(i)
    pool = {t: np.unique(v) for t, v in pool.items()}
    rows = []
    for o in outfits:
        members = set(o)
        for a in o:
            for p in o:
                if a == p:
                    continue
                candidates = pool[data.types[p]]
                for _ in range(8):
                    n = int(candidates[rng.integers(len(candidates))])
                    if n not in members:
                        rows.append((a, p, n))
                        break
    return np.asarray(rows, dtype=np.int64).reshape(-1, 3)


def outfit_scores(model: CompatibilityModel, embeddings: torch.Tensor, types: torch.Tensor,
                  outfits: Sequence[Sequence[int]]) -> np.ndarray:
    """Minus the mean pairwise distance of each outfit's items (higher: more compatible)."""
    out = np.empty(len(outfits))
    for k, o in enumerate(outfits):
        idx = torch.as_tensor(o)
        a, b = torch.triu_indices(len(o), len(o), 1)
        d = model.distance(embeddings[idx[a]], embeddings[idx[b]], types[idx[a]], types[idx[b]])
        out[k] = -float(d.mean()) if len(d) else 0.0
    return out


@dataclass
class TrainedOutfitModel:
    variant: str
    model: CompatibilityModel
    best_epoch: int
    val_auc: float
    seconds: float
    log: list[dict]


def train_variant(data: OutfitData, variant: str, params: OutfitTrainParams,
                  val_outfits: Sequence[tuple[Sequence[int], int]] = ()) -> TrainedOutfitModel:
    """Train one variant; ``val_outfits`` ((item indexes, label 1/0), ...) choose the epoch
    (without them the last epoch is kept)."""
    spec = VARIANTS.get(variant)
    started = time.perf_counter()
    torch.manual_seed(params.seed)
    rng = np.random.default_rng([params.seed, 31])
    types = sorted(set(data.types))
    model = CompatibilityModel(data.features.shape[1], types, params.dim, params.hidden, params.dropout, spec.type_aware,
                               min(params.pca, data.features.shape[1]))
    x = torch.as_tensor(data.features, dtype=torch.float32)
    t = model.type_ids(data.types)
    train_items = sorted({i for o in data.outfits.get("train", []) for i in o})
    model.fit_pca(x[train_items])
    opt = torch.optim.AdamW(model.parameters(), lr=params.lr, weight_decay=params.weight_decay)
    best = (-1.0, 0, {k: v.clone() for k, v in model.state_dict().items()})
    log = []
    for epoch in range(1, params.epochs + 1):
        model.train()
        trip = _triplets(data, rng)
        if not len(trip):
            raise ValueError("no training triplets: the train split has no outfit of two items")
        trip = trip[rng.permutation(len(trip))]
        losses = []
        for lo in range(0, len(trip), params.batch_size):
            b = torch.as_tensor(trip[lo : lo + params.batch_size])
            e = model.general(x[b.flatten()]).view(len(b), 3, -1)
            ta, tp, tn = t[b[:, 0]], t[b[:, 1]], t[b[:, 2]]
            d_ap = model.distance(e[:, 0], e[:, 1], ta, tp)
            d_an = model.distance(e[:, 0], e[:, 2], ta, tn)
            loss, _ = triplet_loss(d_ap, d_an, params.margin, params.sat_temperature if spec.sat else None)
            loss = loss + params.mask_l1 * model.mask_penalty()
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
        row = {"epoch": epoch, "loss": float(np.mean(losses))}
        if val_outfits:
            model.eval()
            with torch.no_grad():
                emb = model.general(x)
                scores = outfit_scores(model, emb, t, [o for o, _ in val_outfits])
            row["val_auc"] = compatibility_auc(scores, [y for _, y in val_outfits])
            if row["val_auc"] > best[0]:
                best = (row["val_auc"], epoch, {k: v.clone() for k, v in model.state_dict().items()})
        log.append(row)
        if val_outfits and params.patience and epoch - best[1] >= params.patience:
            break  # early stopping: no better validation AUC for `patience` epochs
    if val_outfits:
        model.load_state_dict(best[2])
        best_epoch, val_auc = best[1], best[0]
    else:
        best_epoch, val_auc = params.epochs, float("nan")
    model.eval()
    return TrainedOutfitModel(variant, model, best_epoch, val_auc, time.perf_counter() - started, log)


# -- scoring (the evaluate stage and the service) -------------------------------------------
Distance = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def _cosine_distance(ex: torch.Tensor, ey: torch.Tensor, tx: torch.Tensor, ty: torch.Tensor) -> torch.Tensor:
    return (ex - ey).norm(dim=-1)


class OutfitScorer:
    """Scores outfits and FITB candidates of known items: embeddings and a distance per type
    pair. ``of_model``: a trained model; ``of_features``: the untrained baseline (the frozen
    features themselves, one space, so visual similarity stands for compatibility)."""

    def __init__(self, embeddings: torch.Tensor, item_ids: Sequence[str], type_of: Mapping[str, str],
                 types: Sequence[str], distance: Distance, model: CompatibilityModel | None = None) -> None:
        self.embeddings = embeddings
        self.item_ids = list(item_ids)
        self.row = {i: k for k, i in enumerate(self.item_ids)}
        self.type_of = dict(type_of)
        self.type_ids = {ty: k for k, ty in enumerate(types)}
        self.distance = distance
        self.model = model

    @classmethod
    def of_model(cls, model: CompatibilityModel, features: Mapping[str, np.ndarray], type_of: Mapping[str, str]) -> OutfitScorer:
        ids = sorted(features)
        model.eval()
        with torch.no_grad():
            emb = model.general(torch.as_tensor(np.stack([features[i] for i in ids]), dtype=torch.float32))
        return cls(emb, ids, type_of, model.types, model.distance, model)

    @classmethod
    def of_features(cls, features: Mapping[str, np.ndarray], type_of: Mapping[str, str]) -> OutfitScorer:
        ids = sorted(features)
        emb = F.normalize(torch.as_tensor(np.stack([features[i] for i in ids]), dtype=torch.float32), dim=-1)
        return cls(emb, ids, type_of, sorted(set(type_of.values())), _cosine_distance)

    def embed(self, features: np.ndarray) -> torch.Tensor:
        """Embeddings ``(n, dim)`` of new photos' features, in this scorer's space."""
        x = torch.as_tensor(np.atleast_2d(features), dtype=torch.float32)
        with torch.no_grad():
            return self.model.general(x) if self.model is not None else F.normalize(x, dim=-1)

    def tensors(self, items: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        e = self.embeddings[torch.as_tensor([self.row[i] for i in items], dtype=torch.long)]
        t = torch.as_tensor([self.type_ids[self.type_of[i]] for i in items], dtype=torch.long)
        return e, t

    def outfit_of(self, e: torch.Tensor, t: torch.Tensor) -> float:
        """Minus the mean pairwise distance of embeddings ``e`` (types ``t``)."""
        a, b = torch.triu_indices(len(e), len(e), 1)
        with torch.no_grad():
            d = self.distance(e[a], e[b], t[a], t[b])
        return -float(d.mean()) if len(d) else 0.0

    def outfit(self, items: Sequence[str]) -> float:
        return self.outfit_of(*self.tensors(items))

    def candidates_of(self, ec: torch.Tensor, tc: torch.Tensor, candidates: Sequence[str]) -> list[float]:
        """Scores of ``candidates``: minus their mean distance to context embeddings ``ec``."""
        ek, tk = self.tensors(candidates)
        n, m = len(candidates), len(ec)
        with torch.no_grad():
            d = self.distance(ek.repeat_interleave(m, 0), ec.repeat(n, 1), tk.repeat_interleave(m), tc.repeat(n))
        return (-d.view(n, m).mean(dim=1)).tolist()

    def candidates(self, context: Sequence[str], candidates: Sequence[str]) -> list[float]:
        return self.candidates_of(*self.tensors(context), candidates)


# -- checkpoint ----------------------------------------------------------------------------
def save_outfit_models(path, trained: Sequence[TrainedOutfitModel], params: OutfitTrainParams, *, in_dim: int,
                       type_of_category: Mapping[str, str], centroids: Mapping[str, np.ndarray],
                       features: Mapping, served: str | None = None) -> None:
    """Every trained variant, how to rebuild it, and what the service needs beside it: the
    type of each category and the type centroids (to guess a photo's type), and the name
    served (a variant or ``BACKBONE``; default: ``params.serve``)."""
    payload = {
        "format": FORMAT,
        "served": served or params.serve,
        "params": params.model_dump(),
        "in_dim": int(in_dim),
        "types": trained[0].model.types if trained else [],
        "variants": {t.variant: t.model.state_dict() for t in trained},
        "best_epoch": {t.variant: t.best_epoch for t in trained},
        "type_of_category": dict(type_of_category),
        "centroids": {k: torch.as_tensor(v) for k, v in centroids.items()},
        "features": dict(features),
    }
    torch.save(payload, path)


@dataclass
class LoadedOutfitModels:
    params: OutfitTrainParams
    models: dict[str, CompatibilityModel]
    type_of_category: dict[str, str]
    centroids: dict[str, np.ndarray]
    features: dict
    #: the name served: a variant, or BACKBONE (the frozen features themselves)
    served_name: str = BACKBONE

    @property
    def served(self) -> CompatibilityModel | None:
        """The served model; None when the baseline (the frozen features) is served."""
        return None if self.served_name == BACKBONE else self.models[self.served_name]

    def scorer(self, features: Mapping[str, np.ndarray], type_of: Mapping[str, str]) -> OutfitScorer:
        """The served scorer of items with ``features``."""
        model = self.served
        return OutfitScorer.of_features(features, type_of) if model is None else OutfitScorer.of_model(model, features, type_of)

    def guess_type(self, features: np.ndarray) -> str:
        """The type whose items' mean features are nearest (cosine) to ``features``."""
        names = sorted(self.centroids)
        sims = [float(np.dot(features, self.centroids[n])) for n in names]
        return names[int(np.argmax(sims))]


def load_outfit_models(path) -> LoadedOutfitModels:
    payload = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ValueError(f"{path} is not a street2shop outfit model file")
    params = OutfitTrainParams(**payload["params"])
    models = {}
    for variant, state in payload["variants"].items():
        spec = VARIANTS.get(variant)
        m = CompatibilityModel(payload["in_dim"], payload["types"], params.dim, params.hidden, params.dropout, spec.type_aware,
                               min(params.pca, payload["in_dim"]))
        m.load_state_dict(state)
        models[variant] = m.eval()
    centroids = {k: v.numpy() for k, v in payload["centroids"].items()}
    served = str(payload.get("served", params.serve))
    if served not in models and served != BACKBONE:
        raise ValueError(f"{path} serves {served!r}, which it does not hold")
    return LoadedOutfitModels(params, models, dict(payload["type_of_category"]), centroids, dict(payload["features"]), served)
