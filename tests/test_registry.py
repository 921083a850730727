"""The name -> component registry every configurable part is chosen through."""

from __future__ import annotations

import pytest

from street2shop.registry import Registry


def test_register_get_and_list_in_order() -> None:
    reg: Registry[int] = Registry("widget")

    @reg.register("b")
    def b() -> int:
        return 2

    reg.add("a", 1)
    assert reg.get("b") is b and reg.get("a") == 1
    assert reg.names() == ["a", "b"] == list(reg) and len(reg) == 2
    assert "a" in reg and "c" not in reg


def test_unknown_and_repeated_names_are_refused_with_the_choices() -> None:
    reg: Registry[int] = Registry("widget", {"x": 1})
    with pytest.raises(ValueError, match=r"unknown widget 'y'; choose one of \['x'\]"):
        reg.get("y")
    with pytest.raises(ValueError, match="widget 'x' is already registered"):
        reg.add("x", 2)


def test_a_copy_does_not_leak_registrations_back() -> None:
    reg: Registry[int] = Registry("widget", {"x": 1})
    scratch = reg.copy()
    scratch.add("y", 2)
    assert reg.names() == ["x"] and scratch.names() == ["x", "y"]


def test_the_package_registries_are_filled_on_import() -> None:
    from street2shop.cleaning.noise_features import EXTRACTORS
    from street2shop.models.backbones import BACKBONES
    from street2shop.models.losses import LOSSES, MINERS
    from street2shop.models.pooling import POOLS
    from street2shop.retrieval.baselines import BASELINES

    assert {"efficientnet_lite0", "tiny", "resnet50"} <= set(BACKBONES.names())
    assert POOLS.names() == ["cls", "gem", "mac", "spoc"]
    assert BASELINES.names() == ["colour_histogram", "hog"]
    assert {"cnn", "colour_edge"} <= set(EXTRACTORS.names())
    assert LOSSES.names() == ["arcface", "contrastive", "softmax", "triplet"]
    assert MINERS.names() == ["all", "batch_hard", "hard", "none", "random", "semihard"]
