"""Threaded decoding in embed_images (street2shop.models.embed): same vectors as worker
processes, in order, and a bad photo still names itself."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import Dataset

from street2shop.models.embed import embed_images, threaded_batches
from street2shop.models.embedder import build_embedder
from street2shop.models.preprocess import UnreadableImageError


class Numbers(Dataset):
    def __init__(self, n: int, bad: int | None = None) -> None:
        self.n, self.bad = n, bad

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int):
        if i == self.bad:
            raise ValueError(f"item {i} is bad")
        return torch.tensor([i])


def test_batches_come_in_order_and_complete() -> None:
    batches = list(threaded_batches(Numbers(11), batch_size=4, threads=3))
    assert [b.flatten().tolist() for b in batches] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10]]
    assert list(threaded_batches(Numbers(0), batch_size=4)) == []


def test_a_failing_item_raises_in_the_caller() -> None:
    with pytest.raises(ValueError, match="item 6 is bad"):
        list(threaded_batches(Numbers(9, bad=6), batch_size=4))


def test_threads_and_worker_processes_give_the_same_vectors(synthetic_images, tmp_path) -> None:
    from isolated import in_child, run_in_child

    if not in_child():  # a forked DataLoader worker of a long test session that ran OpenVINO died at start-up
        return run_in_child(f"{__file__}::test_threads_and_worker_processes_give_the_same_vectors")
    torch.manual_seed(0)
    model = build_embedder(backbone="tiny", dim=8, pretrained=False, image_size=32).eval()
    paths = synthetic_images.column("path").to_pylist()
    threaded = embed_images(model, paths, batch_size=5, num_workers=0)
    processes = embed_images(model, paths, batch_size=5, num_workers=1)
    np.testing.assert_allclose(threaded, processes, atol=1e-6)
    (tmp_path / "bad.jpg").write_bytes(b"not a photo")
    with pytest.raises(UnreadableImageError, match="bad.jpg"):
        embed_images(model, [*paths[:3], str(tmp_path / "bad.jpg")], batch_size=2, num_workers=0)
