"""Metric-learning losses and miners by name, from pytorch-metric-learning (PML) 2.x.

Losses: ``triplet`` (margin), ``contrastive`` (Siamese pairs), ``arcface`` and ``softmax``
(normalised softmax with temperature and label smoothing). The last two are classification
losses with a weight matrix of their own: pass ``loss.parameters()`` to the optimiser and
save ``loss.state_dict()`` with the checkpoint. Pair/triplet losses accept PML's
``ref_emb``/``ref_labels``, which is how shop anchors are compared with street photos.

Miners: ``semihard``, ``hard``, ``all`` (``TripletMarginMiner`` types), ``batch_hard``
(one hardest positive and negative per anchor), ``random`` (one uniformly drawn positive and
negative per anchor, ignoring distances: the "no mining" control of the ablation) and
``none``.

Distances: ``euclidean`` (L2 on normalised embeddings, the default: ranking equals cosine
ranking, and a margin is a length) or ``cosine`` (similarity; PML flips the inequalities).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
from pytorch_metric_learning import distances, losses, miners, reducers
from pytorch_metric_learning.utils import loss_and_miner_utils as lmu

from street2shop.registry import Registry

Distance = Literal["euclidean", "cosine"]
#: losses that classify against per-item weights: they need ``num_classes`` and ignore ref_emb.
CLASSIFICATION_LOSSES = frozenset({"arcface", "softmax"})


def create_distance(name: Distance = "euclidean") -> distances.BaseDistance:
    if name == "euclidean":
        return distances.LpDistance(p=2, normalize_embeddings=True)
    if name == "cosine":
        return distances.CosineSimilarity()
    raise ValueError(f"unknown distance {name!r}; choose 'euclidean' or 'cosine'")


class LabelSmoothedNormalizedSoftmaxLoss(losses.NormalizedSoftmaxLoss):
    """PML's ``NormalizedSoftmaxLoss`` (cosine logits / temperature) with label smoothing."""

    def __init__(self, num_classes: int, embedding_size: int, temperature: float = 0.05,
                 label_smoothing: float = 0.1, **kwargs) -> None:
        super().__init__(num_classes, embedding_size, temperature=temperature, **kwargs)
        # The parent computes its loss with this criterion; only the smoothing differs.
        self.cross_entropy = torch.nn.CrossEntropyLoss(reduction="none", label_smoothing=label_smoothing)


class RandomTripletMiner(miners.BaseMiner):
    """One triplet per anchor, positive and negative drawn uniformly from the references.

    Distances play no part, so this is what a triplet loss sees without any mining (with the
    same number of triplets per batch as ``batch_hard``). Anchors without a positive or a
    negative among the references are skipped. Draws use torch's global generator, which
    training seeds and checkpoints, so a resumed run replays them.
    """

    def mine(self, embeddings, labels, ref_emb, ref_labels):
        # ``ref_labels is labels`` when no references were given: the anchor itself is then
        # excluded from its positives (PML's convention for in-batch tuples).
        matches, diffs = lmu.get_matches_and_diffs(labels, ref_labels)
        usable = (matches.sum(dim=1) > 0) & (diffs.sum(dim=1) > 0)
        anchors = torch.nonzero(usable).flatten()
        if len(anchors) == 0:
            empty = torch.empty(0, dtype=torch.long, device=labels.device)
            return empty, empty.clone(), empty.clone()
        # multinomial over a 0/1 row draws uniformly among that row's ones.
        positives = torch.multinomial(matches[anchors].float(), 1).flatten()
        negatives = torch.multinomial(diffs[anchors].float(), 1).flatten()
        return anchors, positives, negatives


#: Losses by name: ``factory(margin=, distance=, num_classes=, embedding_size=, scale=,
#: temperature=, label_smoothing=)`` -> a PML loss. Classification losses (a weight matrix
#: per class) are listed in :data:`CLASSIFICATION_LOSSES`.
LOSSES: Registry[Callable[..., losses.BaseMetricLossFunction]] = Registry("loss")
#: Miners by name: ``factory(margin=, distance=)`` -> a PML miner, or None (every tuple).
MINERS: Registry[Callable[..., miners.BaseMiner | None]] = Registry("miner")


@LOSSES.register("triplet")
def _triplet(margin: float, distance: Distance, **_) -> losses.BaseMetricLossFunction:
    # Collecting stats lets training log how many triplets were active (loss > 0).
    return losses.TripletMarginLoss(
        margin=margin, distance=create_distance(distance), reducer=reducers.AvgNonZeroReducer(collect_stats=True)
    )


@LOSSES.register("contrastive")
def _contrastive(margin: float, distance: Distance, **_) -> losses.BaseMetricLossFunction:
    dist = create_distance(distance)
    # Positives pulled to distance 0 (similarity 1), negatives pushed beyond the margin.
    pos_margin, neg_margin = (0.0, margin) if not dist.is_inverted else (1.0, 1.0 - margin)
    return losses.ContrastiveLoss(pos_margin=pos_margin, neg_margin=neg_margin, distance=dist)


def _classes(name: str, num_classes: int | None, embedding_size: int | None) -> tuple[int, int]:
    if not num_classes or not embedding_size:
        raise ValueError(f"loss {name!r} needs num_classes and embedding_size")
    return num_classes, embedding_size


@LOSSES.register("arcface")
def _arcface(margin: float, num_classes: int | None, embedding_size: int | None, scale: float, **_) -> losses.BaseMetricLossFunction:
    return losses.ArcFaceLoss(*_classes("arcface", num_classes, embedding_size), margin=margin, scale=scale)


@LOSSES.register("softmax")
def _softmax(
    num_classes: int | None, embedding_size: int | None, temperature: float, label_smoothing: float, **_
) -> losses.BaseMetricLossFunction:
    return LabelSmoothedNormalizedSoftmaxLoss(
        *_classes("softmax", num_classes, embedding_size), temperature=temperature, label_smoothing=label_smoothing
    )


def create_loss(
    name: str,
    margin: float = 0.2,
    distance: Distance = "euclidean",
    num_classes: int | None = None,
    embedding_size: int | None = None,
    scale: float = 64.0,
    temperature: float = 0.05,
    label_smoothing: float = 0.1,
) -> losses.BaseMetricLossFunction:
    """A PML loss by name (one of :data:`LOSSES`).

    ``margin`` is the triplet margin, the contrastive negative margin, and for ``arcface``
    the additive angular margin in *degrees* (PML's convention; 28.6 deg = 0.5 rad).
    """
    return LOSSES.get(name)(
        margin=margin, distance=distance, num_classes=num_classes, embedding_size=embedding_size,
        scale=scale, temperature=temperature, label_smoothing=label_smoothing,
    )  # fmt: skip


def _triplet_miner(kind: str) -> Callable[..., miners.BaseMiner]:
    def factory(margin: float, distance: Distance) -> miners.BaseMiner:
        return miners.TripletMarginMiner(margin=margin, type_of_triplets=kind, distance=create_distance(distance))

    return factory


for _kind in ("semihard", "hard", "all"):
    MINERS.add(_kind, _triplet_miner(_kind))
MINERS.add("batch_hard", lambda margin, distance: miners.BatchHardMiner(distance=create_distance(distance)))
MINERS.add("random", lambda margin, distance: RandomTripletMiner())
MINERS.add("none", lambda margin, distance: None)


def create_miner(
    name: str, margin: float = 0.2, distance: Distance = "euclidean"
) -> miners.BaseMiner | None:
    """A PML miner by name (one of :data:`MINERS`; ``None`` for ``"none"``: the loss then
    uses every tuple)."""
    return MINERS.get(name)(margin=margin, distance=distance)


def active_tuples(loss: losses.BaseMetricLossFunction) -> int | None:
    """How many tuples had a non-zero loss in the last call, when the reducer records it."""
    count = getattr(loss.reducer, "num_past_filter", None)
    return int(count) if count is not None else None
