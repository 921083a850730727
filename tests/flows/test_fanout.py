"""Embedding fanned out over a local Dask cluster of 2 worker processes through Prefect:
the same vectors, in the same order, as one process's ``embed_images``."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from street2shop.flows.fanout import embed_on_dask
from street2shop.storage.names import CHECKPOINT_FILE
from street2shop.tasks.embed_chunks import OUTPUT, STAGE, chunks, combine_chunks, embed_chunk_core
from street2shop.models.embed import embed_images
from street2shop.models.embedder import build_embedder, load_embedder, save_checkpoint
from street2shop.storage.store import ArtifactRef, ArtifactStore

pytest.importorskip("prefect_dask")

N_PHOTOS = 11  # chunks of 4: 4 + 4 + 3, so the last chunk is short


@pytest.fixture
def catalogue(tmp_path):
    """A store with a published tiny checkpoint, and N_PHOTOS photos: half as blobs of
    the store (relative paths), half as absolute paths."""
    torch.manual_seed(0)
    store = ArtifactStore(tmp_path / "home")
    with store.publish("train", ["checkpoint"], "tiny0") as w:
        save_checkpoint(w["checkpoint"].path(CHECKPOINT_FILE), build_embedder("tiny", dim=8, pretrained=False, image_size=32))
    rng = np.random.default_rng(0)
    paths = []
    for i in range(N_PHOTOS):
        image = Image.fromarray(rng.integers(0, 256, (24 + i, 32, 3), dtype=np.uint8))
        path = tmp_path / f"photo{i}.png"
        image.save(path)
        if i % 2:
            paths.append(store.blobs.put(path.read_bytes(), "png")[1])
        else:
            paths.append(str(path))
    return store, ArtifactRef(stage="train", name="checkpoint", version="tiny0"), paths


def test_chunks_cover_every_item_once() -> None:
    assert chunks(11, 4) == [(0, 4), (4, 8), (8, 11)]
    assert chunks(0, 4) == []
    with pytest.raises(ValueError, match="at least 1"):
        chunks(3, 0)


@pytest.mark.usefixtures("prefect_harness")
@pytest.mark.parametrize(
    "processes",
    [
        False,
        # worker processes each import torch and Prefect: seconds each, so marked slow
        pytest.param(True, marks=pytest.mark.slow),
    ],
    ids=["threads", "processes"],
)
def test_dask_fanout_equals_one_process(catalogue, processes) -> None:
    store, checkpoint, paths = catalogue
    vectors = embed_on_dask(store, checkpoint, paths, n_workers=2, processes=processes, chunk_size=4, batch_size=3)

    local = [p if p.startswith("/") else str(store.home / p) for p in paths]
    expected = embed_images(load_embedder(store.file(checkpoint, CHECKPOINT_FILE)), local, batch_size=3, num_workers=0)
    assert vectors.shape == (N_PHOTOS, 8)
    np.testing.assert_allclose(vectors, expected, rtol=1e-5, atol=1e-6)
    assert not np.allclose(vectors[0], vectors[1])  # distinct photos, distinct vectors
    published = store.manifests(STAGE, OUTPUT)
    assert sorted(m.params["start"] for m in published) == [0, 4, 8]
    assert sorted(m.rows for m in published) == [3, 4, 4]


def test_chunks_are_reused_and_combined_in_order(catalogue) -> None:
    store, checkpoint, paths = catalogue
    refs = [embed_chunk_core(store, checkpoint, paths[a:b], a).refs[OUTPUT] for a, b in chunks(len(paths), 5)]
    again = embed_chunk_core(store, checkpoint, paths[0:5], 0)
    assert again.skipped and again.refs[OUTPUT] == refs[0]
    whole = combine_chunks(store, refs[::-1], len(paths))  # the order of refs does not matter
    first = combine_chunks(store, refs[:1], 5)
    np.testing.assert_array_equal(whole[:5], first)
    with pytest.raises(ValueError, match="have no vector"):
        combine_chunks(store, refs[:1], len(paths))
    with pytest.raises(ValueError, match="overlap"):
        combine_chunks(store, [refs[0], refs[0]], len(paths))
