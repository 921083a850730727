"""Training a tiny embedder on synthetic photos: it learns, it resumes exactly, it logs."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
import torch

from street2shop.models.embedder import load_embedder, read_checkpoint
from street2shop.models.training import TrainParams, train_embedder
from street2shop.storage.schemas import TRAIN_LOG, TRIPLETS

TINY = dict(recipe="fine_tune", backbone="tiny", pretrained=False, dim=16, batch_p=4, batch_k=4, num_workers=0, augment=False)


def mean_loss(log: pa.Table, epoch: int) -> float:
    rows = [r["loss"] for r in log.to_pylist() if r["epoch"] == epoch]
    return float(np.mean(rows))


def test_tiny_embedder_loss_drops_on_four_coloured_items(synthetic_images, tmp_path):
    params = TrainParams(**TINY, loss="triplet", miner="all", margin=0.5, lr=3e-3, epochs=3,
                         steps_per_epoch=4, anchor_domain="shop", seed=0)
    result = train_embedder(synthetic_images, params, tmp_path)
    assert result.log.schema.equals(TRAIN_LOG) and len(result.log) == 3 * 4
    assert result.log.column("step").to_pylist() == list(range(12))
    assert result.epochs_done == 3 and result.checkpoint == tmp_path / "last.pt"
    assert mean_loss(result.log, 2) < 0.5 * mean_loss(result.log, 0)
    model = load_embedder(result.checkpoint)
    assert model.dim == 16 and model.preprocess.image_size == 32


def _state(path):
    return read_checkpoint(path)["state_dict"]


def test_resumed_run_reaches_the_same_weights(synthetic_images, tmp_path):
    params = TrainParams(**{**TINY, "augment": True}, loss="arcface", miner="none", margin=20.0,
                         lr=1e-3, epochs=3, steps_per_epoch=2, seed=3)
    straight = train_embedder(synthetic_images, params, tmp_path / "straight")

    calls = []

    def killed_during_epoch_2(model):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt  # as if the process died before epoch 2 was saved
        return 0.0

    with pytest.raises(KeyboardInterrupt):
        train_embedder(synthetic_images, params, tmp_path / "resumed", val_fn=killed_during_epoch_2)
    assert read_checkpoint(tmp_path / "resumed" / "last.pt")["extra"]["epoch"] == 1
    resumed = train_embedder(synthetic_images, params, tmp_path / "resumed", val_fn=lambda m: 0.0)
    assert resumed.epochs_done == 3
    assert resumed.log.equals(straight.log)
    a, b = _state(straight.checkpoint.parent / "last.pt"), _state(tmp_path / "resumed" / "last.pt")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    arcface_w = read_checkpoint(tmp_path / "resumed" / "last.pt")["extra"]["loss_state"]["W"]
    assert arcface_w.shape == (16, 4)  # loss weights are checkpointed with the model


def test_resume_refuses_other_parameters(synthetic_images, tmp_path):
    params = TrainParams(**TINY, miner="semihard", epochs=1, steps_per_epoch=1)
    train_embedder(synthetic_images, params, tmp_path)
    with pytest.raises(ValueError, match="other parameters.*margin"):
        train_embedder(synthetic_images, params.model_copy(update={"margin": 0.9}), tmp_path)


def test_validation_keeps_the_best_epoch_and_stops_early(synthetic_images, tmp_path):
    scores = iter([0.2, 0.5, 0.4, 0.3, 0.9])
    params = TrainParams(**{**TINY, "batch_p": 2, "batch_k": 2}, miner="semihard", epochs=5,
                         steps_per_epoch=1, patience=2)
    result = train_embedder(synthetic_images, params, tmp_path, val_fn=lambda model: next(scores))
    assert result.best_val == 0.5 and result.epochs_done == 4  # epochs 3 and 4 did not improve
    assert result.checkpoint == tmp_path / "best.pt"
    assert read_checkpoint(result.checkpoint)["extra"]["epoch"] == 2


def test_training_on_offline_triplets(synthetic_images, tmp_path):
    rows = synthetic_images.to_pylist()
    shop = [r for r in rows if r["role"] == "shop"]
    street = [r for r in rows if r["role"] == "street"]
    triplets = [
        {"round": 1, "anchor_id": a["image_id"], "positive_id": p["image_id"], "negative_id": n["image_id"],
         "d_ap": 0.5, "d_an": 0.6}
        for a in shop for p in street for n in street
        if p["item_id"] == a["item_id"] != n["item_id"]
    ][::7]
    table = pa.Table.from_pylist(triplets, schema=TRIPLETS)
    params = TrainParams(**TINY, miner="none", margin=0.5, lr=3e-3, epochs=2, triplet_batch=16,
                         steps_per_epoch=2, round=1)
    result = train_embedder(synthetic_images, params, tmp_path, triplets=table)
    assert len(result.log) == 4 and set(result.log.column("round").to_pylist()) == {1}
    active = result.log.column("active_triplets").to_pylist()
    assert all(0 <= a <= 16 for a in active) and active[0] > 0
    bad = table.set_column(1, "anchor_id", pa.array(["nope"] * len(table)))
    with pytest.raises(ValueError, match="not in the images table"):
        train_embedder(synthetic_images, params, tmp_path / "bad", triplets=bad)


def test_params_reject_miners_for_classification_losses():
    with pytest.raises(ValueError, match="miner='none'"):
        TrainParams(loss="arcface", miner="semihard")


def test_next_round_starts_from_the_previous_checkpoint(synthetic_images, tmp_path):
    first = train_embedder(synthetic_images, TrainParams(**TINY, epochs=1, steps_per_epoch=1), tmp_path / "r0")
    params = TrainParams(**TINY, epochs=1, steps_per_epoch=1, lr=1e-12, head_lr_mult=1.0, round=1)
    second = train_embedder(synthetic_images, params, tmp_path / "r1", init_checkpoint=first.checkpoint)
    a, b = _state(first.checkpoint), _state(second.checkpoint)
    # a vanishing learning rate: the weights are the first round's, not a fresh initialisation
    assert all(torch.allclose(a[k].float(), b[k].float(), atol=1e-6) for k in a
               if "running" not in k and "num_batches" not in k)  # BN statistics do move
    with pytest.raises(ValueError, match="another architecture"):
        train_embedder(synthetic_images, params.model_copy(update={"dim": 8}), tmp_path / "r2",
                       init_checkpoint=first.checkpoint)


@pytest.mark.parametrize(
    "loss, miner, anchor_domain, pool",
    [
        ("triplet", "semihard", "street", "gem+mac+spoc"),
        ("triplet", "batch_hard", "any", "spoc"),
        ("contrastive", "none", "shop", "gem+spoc"),
        ("softmax", "none", "shop", "mac"),
    ],
)
def test_every_loss_and_domain_trains_a_step(synthetic_images, tmp_path, loss, miner, anchor_domain, pool):
    params = TrainParams(**TINY, loss=loss, miner=miner, anchor_domain=anchor_domain, pool=pool,
                         epochs=1, steps_per_epoch=2)
    result = train_embedder(synthetic_images, params, tmp_path)
    losses = result.log.column("loss").to_pylist()
    assert len(losses) == 2 and all(np.isfinite(losses)) and losses[0] > 0
