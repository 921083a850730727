"""Backbone registry, offline weight loading and the shipped EfficientNet-Lite0 weights."""

from __future__ import annotations

import time
from collections import OrderedDict
from pathlib import Path

import pytest
import torch

from street2shop.models.backbones import (
    create_backbone,
    efficientnet_lite0_imagenet,
    list_backbones,
    remap_state_dict_by_position,
)
from street2shop.models.preprocess import read_image

TSHIRT = Path(__file__).parent / "data" / "tshirt.jpg"


def test_registry_lists_names_and_rejects_unknown():
    assert {"tiny", "efficientnet_lite0", "resnet18", "resnet50", "efficientnet_b0",
            "mobilenet_v3_large"} <= set(list_backbones())
    with pytest.raises(ValueError, match="unknown backbone 'vit'"):
        create_backbone("vit")


def test_tiny_backbone_contract_and_speed():
    backbone = create_backbone("tiny", pretrained=False).eval()
    size = backbone.preprocess.image_size
    x = torch.randn(32, 3, size, size)
    with torch.inference_mode():
        backbone.forward_features(x)  # warm-up
        start = time.perf_counter()
        features = backbone.forward_features(x)
        elapsed = time.perf_counter() - start
    assert features.shape == (32, backbone.num_features, size // 4, size // 4)
    assert elapsed < 0.5  # milliseconds in practice; generous for a busy 2-core machine
    with pytest.raises(ValueError, match="no pretrained weights"):
        create_backbone("tiny", pretrained=True)


def test_positional_remap_checks_every_pair():
    source = OrderedDict({"x.weight": torch.ones(2, 3), "x.bias": torch.ones(2)})
    target = OrderedDict({"y.weight": torch.zeros(2, 3), "y.bias": torch.zeros(2)})
    remapped = remap_state_dict_by_position(source, target)
    assert list(remapped) == ["y.weight", "y.bias"] and remapped["y.bias"].sum() == 2
    with pytest.raises(ValueError, match="shape mismatch"):
        remap_state_dict_by_position(source, {"y.weight": torch.zeros(3, 2), "y.bias": torch.zeros(2)})
    with pytest.raises(ValueError, match="kinds differ"):
        remap_state_dict_by_position(source, {"y.bias": torch.zeros(2, 3), "y.weight": torch.zeros(2)})
    with pytest.raises(ValueError, match="differ in size"):
        remap_state_dict_by_position(source, {"y.weight": torch.zeros(2, 3)})


def test_torchvision_backbones_never_download(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    with pytest.raises(FileNotFoundError, match="never downloads"):
        create_backbone("resnet18", pretrained=True)
    # A local file (here: random weights saved by us) loads strictly, also from the hub cache.
    reference = create_backbone("resnet18", pretrained=False)
    from torchvision.models import resnet18

    model = resnet18(weights=None)
    weights = tmp_path / "r18.pth"
    torch.save(model.state_dict(), weights)
    loaded = create_backbone("resnet18", weights_path=weights)
    assert torch.equal(loaded.body[0].weight, model.conv1.weight)
    assert not torch.equal(reference.body[0].weight, model.conv1.weight)
    cache = tmp_path / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    (cache / "resnet18-f37072fd.pth").write_bytes(weights.read_bytes())
    cached = create_backbone("resnet18", pretrained=True)
    assert torch.equal(cached.body[0].weight, model.conv1.weight)
    assert cached.num_features == 512 and cached.preprocess.image_size == 224


def test_efficientnet_lite0_weights_load_strictly_and_are_imagenet_weights():
    model = efficientnet_lite0_imagenet().eval()  # strict load: raises on any mismatch
    preprocess = create_backbone("efficientnet_lite0", pretrained=False).preprocess
    assert (preprocess.image_size, preprocess.mean, preprocess.std) == (224, (0.5,) * 3, (0.5,) * 3)
    with torch.inference_mode():
        probs = model(preprocess(read_image(TSHIRT))[None]).softmax(-1)[0]
    top5 = probs.topk(5).indices.tolist()
    # Observed: 610 "jersey, T-shirt" (p = 0.54), then 841 sweatshirt, 411 apron, 697 pajama,
    # 911 wool. Random weights would give ~1/1000 to every class.
    assert top5[0] == 610 and probs[610] > 0.3
    assert 841 in top5


def test_efficientnet_lite0_backbone_features():
    backbone = create_backbone("efficientnet_lite0", pretrained=False).eval()
    assert backbone.num_features == 1280
    with torch.inference_mode():
        features = backbone.forward_features(torch.zeros(1, 3, 224, 224))
    assert features.shape == (1, 1280, 7, 7)
