"""Outfit compatibility models: SAT's weights by hand, type-pair masks, a toy world where one
space cannot hold every pair's rule, checkpoints; the frozen features they train on."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image

from street2shop.models.features import (
    FeatureParams,
    feature_extractor,
    image_features,
    layout,
    photo_features,
)
from street2shop.models.outfits import (
    CompatibilityModel,
    OutfitData,
    OutfitScorer,
    OutfitTrainParams,
    load_outfit_models,
    save_outfit_models,
    train_variant,
    triplet_loss,
)
from street2shop.retrieval.outfit_metrics import compatibility_auc


def test_triplet_loss_and_sat_weights_by_hand():
    d_ap = torch.tensor([0.5, 0.2, 0.9])
    d_an = torch.tensor([0.4, 0.8, 0.5])
    plain, w = triplet_loss(d_ap, d_an, margin=0.3)
    # hinges: 0.4, 0, 0.7 -> mean 0.3667
    assert plain.item() == pytest.approx((0.4 + 0.0 + 0.7) / 3) and torch.equal(w, torch.ones(3))
    sat, w = triplet_loss(d_ap, d_an, margin=0.3, sat_temperature=0.1)
    e = np.exp(np.array([0.1, -0.6, 0.4]) / 0.1)
    expected_w = 3 * e / e.sum()
    assert w.numpy() == pytest.approx(expected_w, rel=1e-5)
    assert sat.item() == pytest.approx(float((expected_w * [0.4, 0.0, 0.7]).mean()), rel=1e-5)
    assert w[2] > w[0] > w[1]  # the hardest triplet weighs most


def test_masks_are_shared_by_a_pair_and_its_reverse():
    torch.manual_seed(0)
    m = CompatibilityModel(6, ["a", "b", "c"], dim=4, hidden=0)
    ex, ey = torch.randn(2, 4), torch.randn(2, 4)
    ta, tb = m.type_ids(["a", "b"]), m.type_ids(["b", "a"])
    assert torch.allclose(m.distance(ex, ey, ta, tb), m.distance(ex, ey, tb, ta))
    assert m.pair_index.shape == (3, 3) and len(set(m.pair_index.flatten().tolist())) == 6
    with torch.no_grad():
        m.masks.zero_()
        m.masks[m.pair_index[0, 1], 0] = 1.0  # pair (a, b) reads dimension 0 only
    x = torch.tensor([[1.0, 0, 0, 0]])
    y = torch.tensor([[1.0, 5.0, 0, 0]])
    assert m.distance(x, y, m.type_ids(["a"]), m.type_ids(["b"])).item() == pytest.approx(0.0, abs=1e-6)
    assert CompatibilityModel(6, ["a"], dim=4, hidden=0, type_aware=False).distance(x, y, ta[:1], tb[:1]).item() == \
        pytest.approx(math.sqrt(25.0))


def _toy_world(n: int = 48, seed: int = 0) -> tuple[OutfitData, list, list]:
    """Three types; tops go with bottoms of their colour, bottoms with shoes of their shape,
    while a top's shape and a shoe's colour are free. An outfit (top, bottom, shoe) keeps both."""
    rng = np.random.default_rng(seed)
    feats, types, attrs = [], [], []
    for t in ("top", "bottom", "shoes"):
        for k in range(n):
            colour, shape = int(rng.integers(2)), int(rng.integers(2))
            f = np.zeros(6, np.float32)
            f[colour] = 1
            f[2 + shape] = 1
            f[4 + ("top", "bottom", "shoes").index(t) % 2] = 0.5
            feats.append(f + rng.normal(0, 0.05, 6).astype(np.float32))
            types.append(t)
            attrs.append((colour, shape))
    ids = [f"i{k}" for k in range(len(feats))]
    data = OutfitData(np.stack(feats), ids, types, {})
    by = {t: [k for k in range(len(ids)) if types[k] == t] for t in ("top", "bottom", "shoes")}
    outfits = []
    for _ in range(400):
        top = int(rng.choice(by["top"]))
        b = [k for k in by["bottom"] if attrs[k][0] == attrs[top][0]]
        bottom = int(rng.choice(b))
        s = [k for k in by["shoes"] if attrs[k][1] == attrs[bottom][1]]
        outfits.append([top, bottom, int(rng.choice(s))])
    data.outfits = {"train": outfits[:300]}
    test = []
    for o in outfits[300:]:
        test.append((o, 1))
        test.append(([int(rng.choice(by["top"])), int(rng.choice(by["bottom"])), int(rng.choice(by["shoes"]))], 0))
    return data, test, attrs


def test_type_aware_holds_rules_one_space_cannot():
    data, test, _ = _toy_world()
    params = OutfitTrainParams(dim=4, hidden=0, pca=0, epochs=20, lr=1e-2, seed=0)
    auc = {}
    for variant in ("siamese", "type_aware"):
        trained = train_variant(data, variant, params)
        scorer = OutfitScorer.of_model(trained.model, dict(zip(data.item_ids, data.features)), dict(zip(data.item_ids, data.types)))
        scores = [scorer.outfit([data.item_ids[i] for i in o]) for o, _ in test]
        auc[variant] = compatibility_auc(scores, [y for _, y in test])
    assert auc["type_aware"] > 0.85 and auc["type_aware"] > auc["siamese"] + 0.05, auc


def test_checkpoint_round_trip(tmp_path):
    data, _, _ = _toy_world(n=12)
    params = OutfitTrainParams(dim=4, hidden=8, pca=4, epochs=2, variants=["siamese", "type_aware_sat"], serve="type_aware_sat")
    trained = [train_variant(data, v, params) for v in params.variants]
    save_outfit_models(tmp_path / "m.pt", trained, params, in_dim=6, type_of_category={"tees": "top"},
                       centroids={"top": np.ones(6, np.float32) / 6 ** 0.5, "shoes": -np.ones(6, np.float32) / 6 ** 0.5},
                       features={"backbone": "tiny"})
    loaded = load_outfit_models(tmp_path / "m.pt")
    x = torch.as_tensor(data.features)
    for t in trained:
        assert torch.allclose(loaded.models[t.variant].general(x), t.model.general(x))
    assert loaded.served is loaded.models["type_aware_sat"] and loaded.guess_type(np.ones(6)) == "top"
    (tmp_path / "bad.pt").write_bytes(b"not a model")
    with pytest.raises(Exception):  # noqa: B017 - torch's own unpickling error
        load_outfit_models(tmp_path / "bad.pt")


def test_features_are_the_blocks_side_by_side(tmp_path):
    params = FeatureParams(backbone="tiny", image_size=32)
    paths = []
    for k, colour in enumerate([(200, 20, 20), (20, 20, 200)]):
        image = Image.new("RGB", (64, 64), (245, 245, 245))
        image.paste(Image.new("RGB", (20, 40), colour), (22, 12))
        image.save(tmp_path / f"{k}.jpg")
        paths.append(str(tmp_path / f"{k}.jpg"))
    model = feature_extractor(params)
    f = photo_features(model, paths, params)
    widths = layout(params, 64)
    assert widths == [("gem", 32), ("spoc", 32), ("colour", 128), ("shape", 6)] and f.shape == (2, 198)
    # three blocks (the backbone's two poolings are one), each of unit norm, divided by sqrt(3)
    assert np.linalg.norm(f[:, :64], axis=1) == pytest.approx([3 ** -0.5] * 2, abs=1e-4)
    assert np.linalg.norm(f[:, 64:192], axis=1) == pytest.approx([3 ** -0.5] * 2, abs=1e-4)
    # the shape block sees a tall garment: log(40/20) above the typical 0.1
    shape = f[:, -6:] * np.sqrt(3) * np.sqrt(6)
    assert shape[0, 0] == pytest.approx((np.log(40 / 20) - 0.1) / 0.34, abs=0.25)
    one = image_features(model, Image.open(paths[1]), params)
    assert one == pytest.approx(f[1], abs=5e-3)  # the loader may decode a JPEG at a reduced scale
    assert np.array_equal(photo_features(feature_extractor(params), paths, params), f)  # seeded: the same every time


def test_training_stops_early_on_validation_and_keeps_the_best_epoch():
    data, val, _ = _toy_world(n=24)
    params = OutfitTrainParams(dim=4, hidden=8, pca=4, epochs=25, patience=2, lr=5e-2, seed=0)
    trained = train_variant(data, "siamese", params, val[:60])
    aucs = [row["val_auc"] for row in trained.log]
    assert trained.val_auc == max(aucs) and aucs[trained.best_epoch - 1] == trained.val_auc
    # stopped `patience` epochs after the best one, or ran out of epochs
    assert len(trained.log) == min(params.epochs, trained.best_epoch + params.patience)
    every = train_variant(data, "siamese", params.model_copy(update={"patience": 0}), val[:60])
    assert len(every.log) == params.epochs
