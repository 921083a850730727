"""The shop-the-look model: CGD heads over feature branches, trained as classes of posts with
softmax (label smoothing, temperature) or ArcFace, saved and loaded."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from street2shop.models.looks import CGDHead, LooksTrainParams, embed, load_looks, save_looks, train_looks

LAYOUT = [("gem", 8), ("spoc", 8), ("colour", 4)]


def test_the_head_projects_each_branch_to_its_share_normalised_and_concatenated():
    head = CGDHead(LAYOUT, ["gem", "spoc", "shape"], dim=9)  # shape is not in the features: left out
    assert head.branches == ["gem", "spoc"] and head.slices == [(0, 8), (8, 16)]
    assert [p.out_features for p in head.projections] == [5, 4]  # the remainder goes to the first
    x = torch.randn(3, 20)
    out = head(x)
    assert out.shape == (3, 9) and torch.allclose(out.norm(dim=1), torch.ones(3), atol=1e-6)
    # each branch is a unit vector before the concatenation: each half has norm 1/sqrt(2)
    assert torch.allclose(out[:, :5].norm(dim=1), torch.full((3,), 2**-0.5), atol=1e-6)
    # the colour block (16:20) plays no part
    y = x.clone()
    y[:, 16:] = 0
    assert torch.allclose(head(y), out)
    with pytest.raises(ValueError, match="none of the branches"):
        CGDHead(LAYOUT, ["shape"], dim=4)


def _posts(n_posts=8, per_post=10, dim=20, scale=3.0, seed=0):
    """Samples of ``n_posts`` classes that differ in two dimensions of each CNN branch only,
    with unit noise in every dimension (the colour block is noise alone)."""
    rng = np.random.default_rng(seed)
    centres = np.zeros((n_posts, dim))
    centres[:, [0, 1, 8, 9]] = scale * rng.normal(size=(n_posts, 4))
    x = np.concatenate([c + rng.normal(size=(per_post, dim)) for c in centres]).astype(np.float32)
    return x, np.repeat(np.arange(n_posts), per_post)


def _nearest_same_class(z: np.ndarray, y: np.ndarray) -> float:
    s = z @ z.T
    np.fill_diagonal(s, -np.inf)
    return float(np.mean(y[np.argmax(s, axis=1)] == y))


@pytest.mark.parametrize("loss", ["softmax", "arcface"])
def test_training_brings_a_post_s_samples_together(loss):
    x, y = _posts()
    params = LooksTrainParams(dim=16, epochs=30, batch_size=32, lr=1e-2)
    torch.manual_seed(params.seed)  # the head training starts from
    untrained = CGDHead(LAYOUT, params.branches, params.dim)
    trained = train_looks(x, y, LAYOUT, loss, params)
    assert trained.loss == loss and len(trained.log) == 30
    assert trained.log[-1]["loss"] < trained.log[0]["loss"]
    before, after = _nearest_same_class(embed(untrained, x), y), _nearest_same_class(embed(trained.head, x), y)
    # a random projection keeps the noise (about 0.35 of nearest neighbours share the post);
    # the trained one weights the dimensions that tell posts apart (about 0.7)
    assert after > before + 0.25, (before, after)
    again = train_looks(x, y, LAYOUT, loss, params)  # seeded
    assert np.allclose(embed(again.head, x), embed(trained.head, x), atol=1e-5)


def test_only_classification_losses():
    x, y = _posts(n_posts=3)
    with pytest.raises(ValueError, match="classification loss"):
        train_looks(x, y, LAYOUT, "triplet", LooksTrainParams(epochs=1))


def test_save_and_load_give_the_same_embeddings(tmp_path):
    x, y = _posts(n_posts=4)
    params = LooksTrainParams(dim=8, epochs=2, serve="cgd_softmax")
    trained = [train_looks(x, y, LAYOUT, loss, params) for loss in params.losses]
    path = tmp_path / "looks.pt"
    save_looks(path, trained, params, LAYOUT, {"backbone": "tiny"})
    loaded = load_looks(path)
    assert loaded.params == params and set(loaded.heads) == {"cgd_softmax", "cgd_arcface"} and loaded.features == {"backbone": "tiny"}
    for t in trained:
        assert np.allclose(embed(loaded.heads[t.name], x), embed(t.head, x))
    assert loaded.served is loaded.heads["cgd_softmax"] and loaded.served_reads == "features"
    save_looks(path, trained, params, LAYOUT, {"backbone": "tiny"}, served="backbone")
    assert load_looks(path).served is None  # the baseline: the features themselves
    save_looks(path, trained, params, LAYOUT, {"backbone": "tiny"}, served="street2shop")
    with pytest.raises(ValueError, match="none of its descriptors"):
        load_looks(path)
    torch.save({"format": "something else"}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a street2shop looks model"):
        load_looks(tmp_path / "other.pt")


def test_a_head_stops_early_on_validation_and_keeps_its_best_epoch():
    x, y = _posts()
    params = LooksTrainParams(dim=16, epochs=40, batch_size=32, lr=1e-2, patience=3)
    calls = []

    def validate(head) -> float:  # a validation figure that peaks at epoch 4
        calls.append(embed(head, x[:1]).copy())
        return [0.1, 0.2, 0.3, 0.5, 0.4, 0.3, 0.2][min(len(calls) - 1, 6)]

    trained = train_looks(x, y, LAYOUT, "softmax", params, validate)
    assert trained.best_epoch == 4 and trained.val_map == 0.5 and len(trained.log) == 7
    assert np.allclose(embed(trained.head, x[:1]), calls[3], atol=1e-6)  # the head of epoch 4, not the last one
    assert [row["val_map"] for row in trained.log] == [0.1, 0.2, 0.3, 0.5, 0.4, 0.3, 0.2]
