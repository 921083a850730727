"""P x K batch sampling, with and without shop/street domain slots."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from street2shop.models.data import PKBatchSampler, encode_labels, encode_roles

# 5 items; item 4 has no street photo. roles: 0 shop, 1 street.
LABELS = np.array([0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4])
ROLES = np.array([0, 1, 1, 0, 1, 1, 1, 0, 0, 1, 0, 1, 1, 0, 0])


def test_any_domain_batches_hold_p_items_times_k_photos():
    sampler = PKBatchSampler(LABELS, ROLES, p=2, k=3, seed=1, num_batches=6)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 6
    for batch in batches:
        counts = Counter(LABELS[batch].tolist())
        assert len(counts) == 2 and set(counts.values()) == {3}
    # shuffled passes over the items: the first 3 batches (6 slots) cover all 5 items
    assert {LABELS[i] for b in batches[:3] for i in b} == {0, 1, 2, 3, 4}


def test_domain_batches_split_each_item_into_anchor_and_reference_roles():
    sampler = PKBatchSampler(LABELS, ROLES, p=2, k=4, seed=0, anchor_domain="shop", num_batches=8)
    for batch in sampler:
        for item in set(LABELS[batch].tolist()):
            rows = [i for i in batch if LABELS[i] == item]
            assert sorted(ROLES[rows].tolist()) == [0, 0, 1, 1]  # ceil(4/2) shop, rest street
            assert item != 4  # no street photo: not eligible
    street = PKBatchSampler(LABELS, ROLES, p=2, k=3, anchor_domain="street", num_batches=3)
    for batch in street:
        assert sorted(ROLES[batch].tolist()) == [0, 0, 1, 1, 1, 1]


def test_batches_depend_on_seed_and_epoch_only():
    def epoch(seed, e):
        sampler = PKBatchSampler(LABELS, ROLES, p=2, k=2, seed=seed, anchor_domain="shop")
        sampler.set_epoch(e)
        return list(sampler)

    assert epoch(7, 3) == epoch(7, 3)
    assert epoch(7, 3) != epoch(7, 4) and epoch(7, 3) != epoch(8, 3)
    assert len(epoch(7, 0)) == 4 // 2  # default: one pass over the 4 eligible items


def test_sampler_rejects_impossible_batches():
    with pytest.raises(ValueError, match="only 4 items are eligible"):
        PKBatchSampler(LABELS, ROLES, p=5, k=2, anchor_domain="shop")
    with pytest.raises(ValueError, match="p >= 2"):
        PKBatchSampler(LABELS, ROLES, p=1, k=2)
    with pytest.raises(ValueError, match="needs image roles"):
        PKBatchSampler(LABELS, None, p=2, k=2, anchor_domain="street")


def test_label_and_role_encoding():
    codes, vocabulary = encode_labels(["b", "a", "b", "c"])
    assert codes.tolist() == [1, 0, 1, 2] and vocabulary == ["a", "b", "c"]
    assert encode_roles(["shop", "street"]).tolist() == [0, 1]
    with pytest.raises(ValueError, match="unknown image roles"):
        encode_roles(["shop", "catalogue"])
