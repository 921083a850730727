"""Embedder assembly, checkpoints that carry their preprocessing, and batch embedding."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from street2shop.models.embed import embed_images
from street2shop.models.embedder import (
    EmbedderConfig,
    _build,
    build_embedder,
    init_projections_from_pca,
    load_embedder,
    pretrained_features,
    read_checkpoint,
    save_checkpoint,
)
from street2shop.models.preprocess import Preprocess, UnreadableImageError, read_image


def tiny(**kwargs):
    torch.manual_seed(0)
    return build_embedder("tiny", pretrained=False, **kwargs)


def test_embeddings_are_unit_norm_with_the_requested_width():
    model = tiny(pool="gem+mac+spoc", dim=24).eval()
    with torch.no_grad():
        out = model(torch.randn(6, 3, 32, 32))
    assert out.shape == (6, 24) and model.dim == 24
    assert torch.allclose(out.norm(dim=-1), torch.ones(6), atol=1e-5)


def test_checkpoint_round_trip_restores_weights_config_and_preprocessing(tmp_path):
    model = tiny(pool="gem+spoc", dim=16, image_size=40).eval()
    assert model.preprocess.image_size == 40  # the override replaces the backbone's 32
    with torch.no_grad():  # change p so that a default-initialised model would differ
        model.head.pools[0].p.fill_(4.5)
    path = save_checkpoint(tmp_path / "ckpt" / "model.pt", model, config={"lr": 0.1}, extra={"epoch": 3})
    assert [p.name for p in path.parent.iterdir()] == ["model.pt"]  # no temporary file left
    loaded = load_embedder(path)
    assert not loaded.training
    assert loaded.config == model.config and loaded.preprocess == model.preprocess
    x = torch.randn(3, 3, 40, 40)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    payload = read_checkpoint(path)
    assert payload["config"] == {"lr": 0.1} and payload["extra"] == {"epoch": 3}


def test_load_rejects_missing_and_foreign_files(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_embedder(tmp_path / "nope.pt")
    torch.save({"weights": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a street2shop embedder checkpoint"):
        load_embedder(tmp_path / "other.pt")


def test_frozen_backbone_has_no_gradients_and_frozen_batchnorm():
    model = tiny(freeze_backbone=True).train()
    assert all(not p.requires_grad for p in model.backbone.parameters())
    assert all(p.requires_grad for p in model.head.parameters())
    assert not model.backbone.training and model.head.training
    batchnorm = model.backbone.body[1]
    before = batchnorm.running_mean.clone()
    model(torch.randn(4, 3, 32, 32))
    assert torch.equal(batchnorm.running_mean, before)


def test_pretrained_features_baseline_is_parameter_free_pooling():
    model = pretrained_features("efficientnet_lite0", pool="gem")
    assert model.dim == 1280 and not model.training
    assert float(model.head.pools[0].p) == 3.0
    assert list(model.head.parameters()) == []
    spoc = pretrained_features("efficientnet_lite0", pool="spoc")
    # Same backbone weights: the pretrained ones, not a random initialisation.
    assert torch.equal(spoc.backbone.model.conv_stem.weight, model.backbone.model.conv_stem.weight)


def test_preprocess_pads_with_the_mean_and_keeps_aspect_ratio():
    preprocess = Preprocess(image_size=8, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    tall = Image.new("RGB", (4, 8), (255, 255, 255))
    x = preprocess(tall)
    assert x.shape == (3, 8, 8)
    # white (1.0 -> +1) in the middle columns, padding (mean -> 0) on the sides
    assert x[:, :, 2:6].min() == pytest.approx(1.0) and x[:, :, :2].abs().max() < 0.01
    squash = preprocess.model_copy(update={"resize": "squash"})(tall)
    assert squash.min() == pytest.approx(1.0)


def test_preprocess_centre_crops_the_long_side_and_checkpoints_keep_the_policy(tmp_path):
    from street2shop.models.embedder import load_embedder, pretrained_features, save_checkpoint

    preprocess = Preprocess(image_size=8, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), resize="centre")
    tall = Image.new("RGB", (8, 16), (0, 0, 0))
    tall.paste((255, 255, 255), (0, 4, 8, 12))  # white in the middle half, black top and bottom
    x = preprocess(tall)
    assert x.shape == (3, 8, 8) and x.min() == pytest.approx(1.0)  # only the white middle is kept: no padding
    model = pretrained_features("tiny", image_size=16, pretrained=False, resize="centre")
    assert model.preprocess.resize == "centre"
    again = load_embedder(save_checkpoint(tmp_path / "m.pt", model))
    assert again.preprocess == model.preprocess


@pytest.mark.parametrize("mean,std", [((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)), ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))])
def test_to_tensor_equals_torchvision_bit_for_bit(mean, std):
    from torchvision.transforms import functional as TF

    rng = np.random.default_rng(0)
    preprocess = Preprocess(image_size=24, mean=mean, std=std)
    for _ in range(20):  # every uint8 value occurs across these photos
        image = Image.fromarray(rng.integers(0, 256, (24, 24, 3), dtype=np.uint8))
        got = preprocess.to_tensor(image)
        assert got.dtype == torch.float32 and got.is_contiguous() and got.shape == (3, 24, 24)
        assert torch.equal(got, TF.normalize(TF.to_tensor(image), mean, std))
    grey = Image.fromarray(rng.integers(0, 256, (24, 24), dtype=np.uint8), mode="L")
    assert torch.equal(preprocess.to_tensor(grey), TF.normalize(TF.to_tensor(grey.convert("RGB")), mean, std))


def test_embed_images_matches_the_model_and_keeps_order(synthetic_images):
    model = tiny().eval()
    paths = synthetic_images.column("path").to_pylist()[:7]
    vectors = embed_images(model, paths, batch_size=3, num_workers=0)
    assert vectors.dtype == np.float32 and vectors.shape == (7, model.dim)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    with torch.no_grad():
        expected = model(torch.stack([model.preprocess(read_image(p)) for p in paths])).numpy()
    assert np.allclose(vectors, expected, atol=1e-5)
    assert embed_images(model, [], num_workers=0).shape == (0, model.dim)


def test_unreadable_image_error_names_the_file(tmp_path, synthetic_images):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not a jpeg")
    paths = synthetic_images.column("path").to_pylist()[:2] + [str(bad)]
    with pytest.raises(UnreadableImageError, match="broken.jpg"):
        embed_images(tiny(), paths, batch_size=2, num_workers=1)
    with pytest.raises(UnreadableImageError, match="missing.png"):
        embed_images(tiny(), [str(tmp_path / "missing.png")], num_workers=0)


def test_read_image_decodes_large_jpegs_at_a_reduced_scale(tmp_path):
    path = tmp_path / "big.jpg"
    Image.new("RGB", (800, 600), (200, 10, 10)).save(path)
    assert read_image(path).size == (800, 600)
    # libjpeg scales by 1/2, 1/4, 1/8: 1/4 (200 x 150) is the smallest with both sides >= 100
    assert read_image(path, min_size=100).size == (200, 150)
    assert read_image(path, min_size=100).getpixel((10, 10))[0] > 150


@pytest.mark.parametrize("pool", ["gem", "gem+spoc"])
def test_pca_init_projects_onto_the_principal_components(pool):
    torch.manual_seed(0)
    model = tiny(pool=pool, dim=64 * len(pool.split("+"))).eval()  # BatchNorm as at inference
    images = torch.rand(12, 3, 32, 32)
    assert init_projections_from_pca(model, [images[:5], images[5:]]) == 12
    with torch.no_grad():
        feature_map = model.backbone.forward_features(images)
        for pool_k, projection in zip(model.head.pools, model.head.projections):
            pooled = pool_k(feature_map).double()
            projected = projection(pool_k(feature_map)).double()[:, :11]  # rank of 12 centred photos
            # centred, uncorrelated, in decreasing order of variance ...
            assert projected.mean(0).abs().max() < 1e-4
            gram = projected.T @ projected
            off = gram - torch.diag(torch.diag(gram))
            assert off.abs().max() < 1e-3 * gram.diag().max()
            assert (gram.diag()[:-1] >= gram.diag()[1:] - 1e-6).all()
            # ... and, holding every direction the sample spans, a rotation: distances are kept.
            assert torch.allclose(torch.cdist(projected, projected), torch.cdist(pooled, pooled), atol=1e-3)


def test_pca_init_refuses_a_head_without_projection():
    config = EmbedderConfig(backbone="tiny", dim=None, mode="pretrained_features", freeze_backbone=True)
    with pytest.raises(ValueError, match="no projection"):
        init_projections_from_pca(_build(config, pretrained=False, weights_path=None), [torch.rand(2, 3, 32, 32)])
