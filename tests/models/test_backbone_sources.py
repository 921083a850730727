"""Backbones from timm and open_clip by name: tiny models saved to a folder (or a file) and
loaded through the path a real checkpoint takes; their maps, pooled vectors, preprocessing,
checkpoints, localiser plumbing and the one-line errors of bad names."""

from __future__ import annotations

import pytest
import timm
import torch
import torch.nn.functional as F
from PIL import Image
from pydantic import ValidationError

from backbone_testing import OPEN_CLIP_CONFIG, SIZE, save_tiny_open_clip, save_tiny_timm_vit
from street2shop.cleaning.dedup import DedupParams
from street2shop.cleaning.noise import NoiseParams
from street2shop.models.backbones import check_backbone_name, create_backbone, list_backbones, parse_backbone_name
from street2shop.models.embedder import build_embedder, init_projections_from_pca, load_embedder, pretrained_features, save_checkpoint
from street2shop.models.features import FeatureParams
from street2shop.models.localise import BoxHead, LearnedBoxes, RegionSearch, feature_map_of
from street2shop.models.training import TrainParams
from street2shop.models.views import ViewParams

open_clip = pytest.importorskip("open_clip")  # the clip extra (CI installs it with the test extra)


@pytest.fixture(scope="module")
def vit(tmp_path_factory) -> str:
    return save_tiny_timm_vit(tmp_path_factory.mktemp("tiny-vit"))


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> str:
    return save_tiny_open_clip(tmp_path_factory.mktemp("tiny-clip"))


def _folder(name: str) -> str:
    return name.split("local-dir:", 1)[1]


def _images(n: int = 3, size: int = SIZE, seed: int = 1) -> torch.Tensor:
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


# ------------------------------------------------------------------------------ timm


def test_timm_vit_loads_its_saved_weights_and_preprocessing(vit):
    reference = timm.create_model(f"local-dir:{_folder(vit)}", pretrained=True)
    backbone = create_backbone(vit).eval()
    assert torch.equal(backbone.model.blocks[1].mlp.fc1.weight, reference.blocks[1].mlp.fc1.weight)
    # random weights with pretrained=False, same architecture (read from the folder's config)
    empty = create_backbone(vit, pretrained=False)
    assert not torch.equal(empty.model.blocks[1].mlp.fc1.weight, reference.blocks[1].mlp.fc1.weight)
    assert backbone.preprocess.image_size == SIZE and backbone.preprocess.mean == (0.5, 0.5, 0.5)
    assert backbone.preprocess.interpolation == "bicubic"
    assert (backbone.num_features, backbone.global_features, backbone.feature_stride) == (32, 32, 16)


def test_timm_vit_map_is_its_patch_tokens_on_the_grid_and_cls_its_class_token(vit):
    backbone = create_backbone(vit).eval()
    x = _images(2, size=96)  # not the native 64: the positional embedding is resampled
    with torch.no_grad():
        fmap, pooled = backbone.forward_pooled(x)
        tokens = backbone.model.forward_features(x)  # (B, 1 + 6 * 6, 32)
    assert fmap.shape == (2, 32, 6, 6)
    # patch (row 2, column 5) is token 1 + 2 * 6 + 5
    assert torch.equal(fmap[:, :, 2, 5], tokens[:, 1 + 2 * 6 + 5])
    assert torch.equal(pooled, tokens[:, 0])


def test_cls_and_gem_poolings_of_a_vit_embedder(vit):
    cls = pretrained_features(vit, pool="cls")
    gem = pretrained_features(vit, pool="gem")
    x = _images()
    with torch.no_grad():
        tokens = cls.backbone.model.forward_features(x)
        assert torch.allclose(cls(x), F.normalize(tokens[:, 0], dim=-1), atol=1e-6)
        patches = tokens[:, 1:].clamp(min=1e-6)
        by_hand = patches.pow(3).mean(dim=1).pow(1 / 3)
        assert torch.allclose(gem(x), F.normalize(by_hand, dim=-1), atol=1e-5)
    both = pretrained_features(vit, pool="gem+cls")
    assert both.dim == 64


def test_timm_model_weights_from_a_local_file(tmp_path):
    torch.manual_seed(3)
    model = timm.create_model("test_vit", num_classes=0)
    path = tmp_path / "weights.pth"
    torch.save(model.state_dict(), path)
    loaded = create_backbone(f"timm:test_vit@{path}")
    same = create_backbone("timm:test_vit", weights_path=path)
    assert torch.equal(loaded.model.patch_embed.proj.weight, model.patch_embed.proj.weight)
    assert torch.equal(same.model.patch_embed.proj.weight, model.patch_embed.proj.weight)
    with pytest.raises(FileNotFoundError, match="not found"):
        create_backbone(f"timm:test_vit@{tmp_path / 'missing.pth'}")


def test_timm_cnn_keeps_its_map_and_pools_with_its_own_head():
    backbone = create_backbone("timm:test_resnet", pretrained=False).eval()
    x = _images(2, size=64)
    with torch.no_grad():
        fmap, pooled = backbone.forward_pooled(x)
    assert fmap.shape[:2] == (2, backbone.num_features) and fmap.shape[-1] == 64 // backbone.feature_stride
    assert torch.allclose(pooled, fmap.mean(dim=(-2, -1)), atol=1e-5)  # timm's global average


# ------------------------------------------------------------------------- open_clip


def test_open_clip_tower_loads_its_weights_and_cls_is_its_image_embedding(clip):
    reference = open_clip.create_model(f"local-dir:{_folder(clip)}", pretrained_text=False).eval()
    model = pretrained_features(clip, pool="cls")
    pre = model.preprocess
    assert pre.image_size == SIZE and pre.interpolation == "bilinear"
    assert pre.mean == tuple(OPEN_CLIP_CONFIG["preprocess_cfg"]["mean"])
    assert pre.std == tuple(OPEN_CLIP_CONFIG["preprocess_cfg"]["std"])
    x = _images()
    with torch.no_grad():
        assert torch.allclose(model(x), F.normalize(reference.encode_image(x), dim=-1), atol=1e-5)
        fmap, _ = model.backbone.forward_pooled(x)
    assert fmap.shape == (3, 32, SIZE // 16, SIZE // 16)
    assert (model.backbone.num_features, model.backbone.global_features) == (32, 24)


def test_open_clip_tower_takes_its_own_input_size_only(clip):
    with pytest.raises(ValueError, match=f"takes {SIZE} px inputs only"):
        build_embedder(clip, image_size=SIZE + 16)


def test_open_clip_names_its_weights():
    with pytest.raises(ValueError, match="names no weights"):
        create_backbone("open_clip:ViT-B-32")


# ------------------------------------------------------------- embedders and checkpoints


@pytest.mark.parametrize("which", ["vit", "clip"])
def test_checkpoint_round_trip_rebuilds_the_same_embedder(which, request, tmp_path):
    name = request.getfixturevalue(which)
    torch.manual_seed(0)
    model = build_embedder(name, pool="gem+cls", dim=16).eval()
    assert init_projections_from_pca(model, [_images(8)]) == 8
    path = save_checkpoint(tmp_path / "model.pt", model)
    loaded = load_embedder(path)
    x = _images()
    with torch.no_grad():
        assert torch.allclose(loaded(x), model(x), atol=1e-6)
    assert loaded.preprocess == model.preprocess and loaded.config.backbone == name


def test_cls_pooling_needs_a_backbone_with_a_pooled_vector():
    with pytest.raises(ValueError, match="pooling 'cls' needs"):
        build_embedder("tiny", pool="cls", pretrained=False)


# ------------------------------------------------------------------------- localiser


def test_regions_and_boxhead_run_on_a_vit_map(vit):
    backbone = create_backbone(vit).eval()
    search = RegionSearch.for_backbone(backbone, input_size=(96, 64))
    feature_map = feature_map_of(backbone, backbone.preprocess, search.input_size)
    photo = Image.new("RGB", (40, 60), (200, 30, 30))
    fmap = feature_map(photo)
    assert tuple(fmap.shape) == (32, *search.map_shape) == (32, 6, 4)
    assert search.describe(fmap).shape == (len(search(photo).boxes), 32)
    boxes = LearnedBoxes(feature_map, BoxHead(in_channels=32, hidden=16))(photo)
    assert len(boxes.boxes) == 2


def test_feature_map_of_a_fixed_size_tower_refuses_other_sizes(clip):
    backbone = create_backbone(clip)
    with pytest.raises(ValueError, match="inputs only"):
        feature_map_of(backbone, backbone.preprocess, (96, 64))


# ----------------------------------------------------------------------------- names


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("foo:bar", "unknown backbone source 'foo'"),
        ("timm:", "malformed backbone name"),
        ("timm:resnet18@", "malformed backbone name"),
        ("timm:local-dir:", "malformed backbone name"),
        ("timm:s3:bucket/model", "unknown model location 's3'"),
        ("timm:no_such_model", "unknown timm model 'no_such_model'"),
        ("open_clip:No-Such-Arch@file.bin", "unknown open_clip model"),
        ("timm:local-dir:/no/such/folder", "folder not found"),
        ("timm:hf-hub:org/repo@file.bin", "names its weights twice"),
        ("vit", "unknown backbone 'vit'"),
    ],
)
def test_a_bad_name_is_a_one_line_error(name, message):
    with pytest.raises(ValueError, match=message) as raised:
        check_backbone_name(name)
    assert "\n" not in str(raised.value)


def test_names_parse_and_list():
    assert parse_backbone_name("tiny") is None
    spec = parse_backbone_name("timm:convnext_tiny@/w/file.safetensors")
    assert (spec.source, spec.model, spec.weights, spec.location) == ("timm", "convnext_tiny", "/w/file.safetensors", None)
    assert parse_backbone_name("open_clip:hf-hub:Marqo/marqo-fashionSigLIP").location == "hf-hub"
    assert {"timm:<model>", "open_clip:<model>", "tiny"} <= set(list_backbones())
    # a hub name is checked without going online
    assert check_backbone_name("open_clip:hf-hub:Marqo/marqo-fashionSigLIP").startswith("open_clip:")


def test_every_stage_takes_the_new_names_and_refuses_bad_ones(vit):
    for make in (
        lambda b: ViewParams(backbone=b), lambda b: TrainParams(backbone=b), lambda b: FeatureParams(backbone=b),
        lambda b: DedupParams(embed_backbone=b), lambda b: NoiseParams(backbone=b),
    ):
        assert vit in make(vit).model_dump().values()
        with pytest.raises(ValidationError, match="unknown timm model"):
            make("timm:no_such_model")


# ------------------------------------------------------------------------ inference


@pytest.mark.slow  # exports and compiles two networks (seconds each on two busy cores)
@pytest.mark.parametrize("which", ["vit", "clip"])
def test_openvino_runs_the_transformer_and_int8_keeps_its_ends_in_fp32(which, request):
    from street2shop.models.fast import int8_kept_in_fp32, openvino_model, optimize_for_inference

    torch.manual_seed(0)
    model = build_embedder(request.getfixturevalue(which), pool="gem+cls", dim=16).eval()
    x = _images()
    with torch.no_grad():  # an open_clip tower takes the fused attention kernel here: the export must not
        fast = optimize_for_inference(model, "openvino")
        assert torch.allclose(fast(x), model(x), atol=1e-4)
    kept, transformer = int8_kept_in_fp32(openvino_model(model))
    assert transformer
    first_conv = "/patch_embed/proj/Conv" if which == "vit" else "/conv1/Conv"
    assert any(name.startswith(first_conv) for name in kept)  # the patch embedding (raw pixels)
    assert any("projections.0" in name for name in kept) and any("pools.0" in name for name in kept)  # the head


def test_a_hub_name_offline_is_a_one_line_error_naming_the_local_ways(tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)  # and an empty cache: nothing to find
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    for name in ("timm:hf-hub:timm/vit_tiny_patch16_224.augreg_in21k", "open_clip:hf-hub:Marqo/marqo-fashionSigLIP"):
        with pytest.raises(RuntimeError, match="local-dir:<folder>") as raised:
            create_backbone(name, pretrained=False)
        assert "\n" not in str(raised.value)
