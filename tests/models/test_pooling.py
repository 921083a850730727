"""Pooling heads: GeM between SPoC and MAC, and the combined global descriptor."""

from __future__ import annotations

import pytest
import torch

from street2shop.models.pooling import MAC, SPoC, GeM, create_pooling

# one channel, 2x2 map [[1, 2], [3, 4]] and a second channel [[0, 0], [0, 8]]
FEATURES = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]], [[0.0, 0.0], [0.0, 8.0]]]])


def test_spoc_and_mac_by_hand():
    assert SPoC()(FEATURES).tolist() == [[2.5, 2.0]]
    assert MAC()(FEATURES).tolist() == [[4.0, 8.0]]


def test_gem_by_hand_and_limits():
    # p = 2: sqrt((1 + 4 + 9 + 16) / 4) = sqrt(7.5); second channel sqrt(64 / 4) = 4 (zeros clamp to eps)
    gem2 = GeM(p=2.0)(FEATURES)
    assert gem2[0].tolist() == pytest.approx([7.5**0.5, 4.0], rel=1e-5)
    assert torch.allclose(GeM(p=1.0)(FEATURES), SPoC()(FEATURES), atol=1e-5)
    # (mean x^p)^(1/p) = max * (1/4)^(1/p) when one cell holds the max: within 1% of MAC at p=200,
    # which also checks the max-factoring keeps large p from overflowing float32 (8^200).
    big = GeM(p=200.0)(FEATURES)
    assert torch.isfinite(big).all()
    assert torch.allclose(big, MAC()(FEATURES), rtol=0.01)


def test_gem_p_is_learnable_or_fixed():
    learnable = GeM(p=3.0)
    assert [name for name, _ in learnable.named_parameters()] == ["p"]
    learnable(FEATURES).sum().backward()
    assert learnable.p.grad is not None and learnable.p.grad != 0
    fixed = GeM(p=3.0, learnable=False)
    assert list(fixed.parameters()) == [] and float(fixed.p) == 3.0
    with pytest.raises(ValueError):
        GeM(p=0.0)


@pytest.mark.parametrize("name, branches", [("gem", 1), ("gem+spoc", 2), ("gem+mac+spoc", 3)])
def test_descriptor_width_and_norm(name, branches):
    torch.manual_seed(0)
    head = create_pooling(name, in_dim=16, out_dim=100)
    assert head.out_dim == 100
    assert sum(p.out_features for p in head.projections) == 100
    assert len(head.projections) == branches
    with torch.no_grad():
        out = head(torch.rand(5, 16, 4, 4))
    assert out.shape == (5, 100)
    if branches > 1:  # combined descriptors are normalised by the head itself
        assert torch.allclose(out.norm(dim=-1), torch.ones(5), atol=1e-5)
        # each branch was normalised before concatenation: equal energy per branch
        first = head.projections[0].out_features
        assert out[:, :first].norm(dim=-1).tolist() == pytest.approx([branches**-0.5] * 5, abs=1e-5)


def test_parameter_free_descriptor_for_pretrained_features():
    head = create_pooling("gem+spoc", in_dim=8, out_dim=None, learnable_p=False)
    assert head.out_dim == 16 and list(head.parameters()) == []


def test_bad_pooling_names():
    with pytest.raises(ValueError, match="unknown pooling"):
        create_pooling("avg", 8, 8)
    with pytest.raises(ValueError, match="repeats"):
        create_pooling("gem+gem", 8, 8)
    with pytest.raises(ValueError, match="shared"):
        create_pooling("gem+mac+spoc", 8, 2)
