"""Every wrapped loss and miner against values worked out by hand on 2-D points."""

from __future__ import annotations

import math

import pytest
import torch

from street2shop.models.data import split_by_domain
from street2shop.models.losses import active_tuples, create_loss, create_miner

# Four unit vectors: items 0 and 1, two photos each. Squared chord = 2 - 2 cos, so
#   d(0,1) = d(2,3) = sqrt(0.4), d(0,2) = d(1,3) = sqrt(0.8), d(1,2) = sqrt(0.08), d(0,3) = sqrt(2).
CIRCLE = torch.tensor([[1.0, 0.0], [0.8, 0.6], [0.6, 0.8], [0.0, 1.0]])
CIRCLE_LABELS = torch.tensor([0, 0, 1, 1])


def triplets(indices):
    return sorted(zip(*(t.tolist() for t in indices), strict=True))


def test_semihard_miner_returns_the_hand_determined_triplets():
    # margin 0.5: anchor 0 -> (p 1 at .632, n 2 at .894 in the window, n 3 at 1.414 beyond it);
    # anchor 1 -> n 2 is closer than p (hard), n 3 at .894 is semi-hard; symmetric for 2 and 3.
    mined = create_miner("semihard", margin=0.5)(CIRCLE, CIRCLE_LABELS)
    assert triplets(mined) == [(0, 1, 2), (1, 0, 3), (2, 3, 0), (3, 2, 1)]


def test_hard_and_all_miners():
    hard = create_miner("hard", margin=0.5)(CIRCLE, CIRCLE_LABELS)
    assert triplets(hard) == [(1, 0, 2), (2, 3, 1)]  # d_an < d_ap
    every = create_miner("all", margin=0.5)(CIRCLE, CIRCLE_LABELS)  # every d_an < d_ap + margin
    assert triplets(every) == [(0, 1, 2), (1, 0, 2), (1, 0, 3), (2, 3, 0), (2, 3, 1), (3, 2, 1)]


def test_batch_hard_miner_takes_farthest_positive_and_closest_negative():
    anchors, positives, negatives = create_miner("batch_hard")(CIRCLE, CIRCLE_LABELS)
    assert anchors.tolist() == [0, 1, 2, 3]
    assert positives.tolist() == [1, 0, 3, 2]
    assert negatives.tolist() == [2, 2, 1, 1]


def test_no_miner_and_unknown_names():
    assert create_miner("none") is None
    with pytest.raises(ValueError, match="unknown miner"):
        create_miner("hardest")
    with pytest.raises(ValueError, match="unknown loss"):
        create_loss("hinge")
    with pytest.raises(ValueError, match="num_classes"):
        create_loss("arcface")


def test_triplet_loss_on_three_hand_placed_points():
    # a=(1,0), p=(0,1) same item, n=(-1,0). Triplet (a,p,n): sqrt2 - 2 + 1; (p,a,n): sqrt2 - sqrt2 + 1.
    points = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    loss = create_loss("triplet", margin=1.0)
    value = loss(points, torch.tensor([0, 0, 1]))
    assert value.item() == pytest.approx(((math.sqrt(2) - 1) + 1) / 2, abs=1e-5)
    assert active_tuples(loss) == 2
    # Cosine similarity: loss = s_an - s_ap + margin -> (-1 - 0 + .5) clipped to 0, and (0 - 0 + .5).
    cosine = create_loss("triplet", margin=0.5, distance="cosine")
    assert cosine(points, torch.tensor([0, 0, 1])).item() == pytest.approx(0.5, abs=1e-5)
    assert active_tuples(cosine) == 1


def test_triplet_loss_with_mined_triplets():
    loss = create_loss("triplet", margin=0.5)
    value = loss(CIRCLE, CIRCLE_LABELS, create_miner("semihard", margin=0.5)(CIRCLE, CIRCLE_LABELS))
    # the four semi-hard triplets all have d_ap = sqrt(.4), d_an = sqrt(.8)
    assert value.item() == pytest.approx(0.5 + math.sqrt(0.4) - math.sqrt(0.8), abs=1e-5)


def test_triplet_loss_across_domains_uses_shop_anchors_and_street_references():
    # rows: shop photo of item 0, street photos of items 0 and 1, and one more shop of item 1
    embeddings = torch.tensor([[1.0, 0.0], [0.8, 0.6], [0.6, 0.8], [0.0, 1.0]])
    labels = torch.tensor([0, 0, 1, 1])
    roles = torch.tensor([0, 1, 1, 0])  # 0 = shop, 1 = street
    kwargs = split_by_domain(embeddings, labels, roles, "shop")
    assert kwargs["embeddings"].tolist() == [[1.0, 0.0], [0.0, 1.0]]
    assert kwargs["ref_labels"].tolist() == [0, 1]
    loss = create_loss("triplet", margin=0.5)
    # Only shop->street triplets: (shop0, street0, street1) = .5 + sqrt(.4) - sqrt(.8);
    # (shop1, street1, street0): d_ap = sqrt(.4), d_an = sqrt(.8) as well.
    assert loss(**kwargs).item() == pytest.approx(0.5 + math.sqrt(0.4) - math.sqrt(0.8), abs=1e-5)
    assert active_tuples(loss) == 2
    street = split_by_domain(embeddings, labels, roles, "street")
    assert street["labels"].tolist() == [0, 1] and street["ref_emb"].shape == (2, 2)
    assert split_by_domain(embeddings, labels, roles, "any")["ref_emb"] is None


def test_contrastive_loss_by_hand():
    # positives pulled to 0: both ordered pairs at sqrt2; negatives pushed past 1.5: only the
    # pair at sqrt2 violates (1.5 - sqrt2), the pair at distance 2 does not. Sum of the averages.
    points = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    value = create_loss("contrastive", margin=1.5)(points, torch.tensor([0, 0, 1]))
    assert value.item() == pytest.approx(math.sqrt(2) + (1.5 - math.sqrt(2)), abs=1e-5)


def test_arcface_adds_the_angular_margin_and_has_trainable_weights():
    loss = create_loss("arcface", margin=30.0, num_classes=2, embedding_size=2, scale=2.0)
    # class 0 at 30 deg from the embedding, class 1 at 90 deg.
    with torch.no_grad():
        loss.W.copy_(torch.tensor([[math.cos(math.pi / 6), 0.0], [math.sin(math.pi / 6), 1.0]]))
    embedding = torch.tensor([[1.0, 0.0]], requires_grad=True)
    value = loss(embedding, torch.tensor([0]))
    # logits: 2 cos(30 + 30 deg) = 1 for the true class, 2 cos 90 deg = 0 -> CE = log(1 + e^-1)
    assert value.item() == pytest.approx(math.log(1 + math.exp(-1)), abs=1e-5)
    value.backward()
    assert [p.shape for p in loss.parameters()] == [torch.Size([2, 2])]
    assert loss.W.grad is not None and loss.W.grad.abs().sum() > 0


def test_softmax_loss_with_temperature_and_label_smoothing():
    loss = create_loss("softmax", num_classes=2, embedding_size=2, temperature=0.5, label_smoothing=0.1)
    with torch.no_grad():
        loss.W.copy_(torch.eye(2))
    value = loss(torch.tensor([[1.0, 0.0]]), torch.tensor([0]))
    # logits [1/.5, 0] = [2, 0]; targets [.95, .05]: .95 log(1+e^-2) + .05 (2 + log(1+e^-2))
    assert value.item() == pytest.approx(math.log(1 + math.exp(-2)) + 0.05 * 2, abs=1e-5)


def test_random_miner_takes_the_only_valid_triplets_and_the_hand_computed_loss():
    # a=(1,0) and p=(0,1) share item 0, n=(-1,0) is item 1: each anchor of item 0 has exactly one
    # positive and one negative, and n has no positive, so the draw is forced.
    points = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    labels = torch.tensor([0, 0, 1])
    mined = create_miner("random")(points, labels)
    assert triplets(mined) == [(0, 1, 2), (1, 0, 2)]
    # the same two triplets as the unmined loss above: (sqrt2 - 2 + 1) and (sqrt2 - sqrt2 + 1)
    value = create_loss("triplet", margin=1.0)(points, labels, mined)
    assert value.item() == pytest.approx(((math.sqrt(2) - 1) + 1) / 2, abs=1e-5)


def test_random_miner_draws_one_valid_triplet_per_anchor_uniformly_and_reproducibly():
    miner = create_miner("random")
    torch.manual_seed(0)
    draws = [triplets(miner(CIRCLE, CIRCLE_LABELS)) for _ in range(400)]
    torch.manual_seed(0)
    assert triplets(miner(CIRCLE, CIRCLE_LABELS)) == draws[0]  # seeded by torch's generator
    labels = CIRCLE_LABELS.tolist()
    negatives_of_0 = []
    for draw in draws:
        assert [a for a, _, _ in draw] == [0, 1, 2, 3]
        for a, p, n in draw:
            assert p != a and labels[p] == labels[a] and labels[n] != labels[a]
        negatives_of_0.append(draw[0][2])
    # anchor 0's negatives are photos 2 and 3, each with probability 1/2 (400 draws: sd 10)
    assert 160 < negatives_of_0.count(2) < 240


def test_random_miner_across_domains_and_without_any_valid_triplet():
    # shop anchors of items 0 and 1 against street references of items 0, 1 and 1
    anchors = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    references = torch.tensor([[0.9, 0.1], [0.1, 0.9], [0.2, 0.8]])
    a, p, n = create_miner("random")(anchors, torch.tensor([0, 1]), references, torch.tensor([0, 1, 1]))
    assert a.tolist() == [0, 1]
    assert p[0].item() == 0 and p[1].item() in (1, 2)
    assert n[0].item() in (1, 2) and n[1].item() == 0
    one_item = create_miner("random")(CIRCLE, torch.zeros(4, dtype=torch.long))  # no negatives
    assert all(len(t) == 0 for t in one_item)
