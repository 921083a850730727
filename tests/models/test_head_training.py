"""A residual head trained on cached descriptors (TrainParams.recipe="head"): it starts as the
pretrained descriptor, learns the shop -> street shift, and is one ordinary checkpoint."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
import torch

from street2shop.models.embedder import build_embedder, load_embedder
from street2shop.models.training import TrainParams, train_embedder
from street2shop.retrieval.metrics import evaluate_retrieval

DIM = 32  # the tiny backbone's width


def shifted_views(n_items: int = 24, street_per_item: int = 3, seed: int = 0):
    """Unit descriptors: a shop view per item, and street views = the shop view plus a
    shared "street" direction and noise, so the untrained descriptor confuses items."""
    rng = np.random.default_rng(seed)
    shop = rng.normal(size=(n_items, DIM))
    shift = rng.normal(size=DIM) * 3.0
    rows, vectors = [], []
    for i in range(n_items):
        rows.append({"image_id": f"s{i}", "item_id": f"i{i}", "role": "shop"})
        vectors.append(shop[i])
        for j in range(street_per_item):
            rows.append({"image_id": f"q{i}-{j}", "item_id": f"i{i}", "role": "street"})
            vectors.append(shop[i] + shift + rng.normal(size=DIM) * 0.6)
    x = np.asarray(vectors, np.float32)
    return pa.Table.from_pylist(rows), x / np.linalg.norm(x, axis=1, keepdims=True)


def top1(views: pa.Table, vectors: np.ndarray) -> float:
    roles = np.asarray(views.column("role").to_pylist())
    items = np.asarray(views.column("item_id").to_pylist())
    report = evaluate_retrieval(vectors[roles == "street"], items[roles == "street"], vectors[roles == "shop"], items[roles == "shop"], ks=(1,))
    return report.overall["top1"]


PARAMS = dict(recipe="head", backbone="tiny", pretrained=False, batch_p=8, batch_k=4, lr=3e-3, head_lr_mult=1.0,
              margin=0.2, epochs=6, steps_per_epoch=25, num_workers=0, weight_decay=0.0, seed=0)  # fmt: skip


def test_an_untrained_head_is_the_pretrained_descriptor() -> None:
    model = build_embedder(backbone="tiny", pretrained=False, head="residual", freeze_backbone=True)
    _, x = shifted_views()
    np.testing.assert_allclose(model.refine_descriptors(x), x, atol=1e-6)


def test_the_head_learns_the_street_shift_on_descriptors_alone(tmp_path) -> None:
    views, x = shifted_views()
    before = top1(views, x)
    result = train_embedder(views, TrainParams(**PARAMS), tmp_path, descriptors=x)
    model = load_embedder(result.checkpoint)
    assert model.refines_pretrained and model.config.head == "residual"
    after = top1(views, model.refine_descriptors(x))
    assert after > before + 0.2, (before, after)
    # the backbone is the frozen one it started from (built under the same seed): only the head moved
    torch.manual_seed(0)
    start = build_embedder(backbone="tiny", pretrained=False, head="residual", freeze_backbone=True)
    for name, tensor in start.backbone.state_dict().items():
        assert torch.equal(tensor, model.backbone.state_dict()[name]), name
    assert not torch.equal(start.head.refine_layer.weight, model.head.refine_layer.weight)


def test_resume_continues_where_it_stopped(tmp_path) -> None:
    views, x = shifted_views()
    params = TrainParams(**{**PARAMS, "epochs": 2})
    whole = train_embedder(views, params, tmp_path / "whole", descriptors=x)
    train_embedder(views, params.model_copy(update={"epochs": 1}), tmp_path / "parts", descriptors=x)
    resumed = train_embedder(views, params, tmp_path / "parts", descriptors=x)
    a, b = load_embedder(whole.checkpoint), load_embedder(resumed.checkpoint)
    np.testing.assert_allclose(a.refine_descriptors(x), b.refine_descriptors(x), atol=1e-6)


def test_descriptors_and_recipe_must_agree(tmp_path) -> None:
    views, x = shifted_views()
    with pytest.raises(ValueError, match="trains on photos"):
        train_embedder(views, TrainParams(**{**PARAMS, "recipe": "fine_tune"}), tmp_path, descriptors=x)
    with pytest.raises(ValueError, match="trains on descriptors"):
        train_embedder(views, TrainParams(**PARAMS), tmp_path)
