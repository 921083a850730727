"""Batch inference: photos -> L2-normalised float32 embeddings.

The one function every consumer calls (evaluation, mining, indexing, benchmarks): decoding
runs beside the network, so on this 2-core machine both cores stay busy. With
``num_workers=0`` (inside Prefect tasks, where forked DataLoader workers die at shutdown
and spawned ones cost seconds to start) photos are decoded by a small thread pool, one
batch ahead of the network: Pillow's decoding and resizing release the GIL, so the
threads decode in parallel with the forward pass (``bench/embed.py`` measures it against
DataLoader worker processes). ``num_workers > 0`` uses DataLoader worker processes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, default_collate

from street2shop.models.data import ImageDataset
from street2shop.models.embedder import Embedder


#: Threads decoding photos when ``num_workers=0``: more than the cores, because a thread
#: also waits on file reads and on the GIL between Pillow's C calls.
DECODE_THREADS = 3


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def threaded_batches(dataset: Dataset, batch_size: int, threads: int = DECODE_THREADS) -> Iterator:
    """The dataset's items in order, collated into batches, decoded by ``threads`` threads
    while the caller works on the previous batch (one batch of look-ahead). An item that
    fails raises its exception in the caller, at that batch."""
    starts = list(range(0, len(dataset), batch_size))

    with ThreadPoolExecutor(max(1, threads), thread_name_prefix="decode") as pool, ThreadPoolExecutor(1) as ahead:

        def batch(start: int):
            indices = range(start, min(start + batch_size, len(dataset)))
            return default_collate(list(pool.map(dataset.__getitem__, indices)))

        pending = ahead.submit(batch, starts[0]) if starts else None
        for k in range(len(starts)):
            current = pending.result()
            pending = ahead.submit(batch, starts[k + 1]) if k + 1 < len(starts) else None
            yield current


def embed_images(
    model: Embedder,
    paths: Sequence[str],
    batch_size: int = 32,
    num_workers: int = 2,
    device: str | torch.device | None = None,
    progress: bool = False,
    crops: Callable[[Image.Image], Sequence[tuple[float, float, float, float]]] | None = None,
    min_crop_side: float = 1.0,
    flip: bool = False,
) -> np.ndarray:
    """Embeddings ``(len(paths), model.dim)`` float32, unit-norm rows, in ``paths`` order.

    With ``crops`` (photo -> boxes, the query-side localisation of
    :mod:`street2shop.models.localise`), every box of every photo is embedded: the result is
    ``(len(paths), n_crops, model.dim)``. ``min_crop_side``: the smallest box side, as a
    fraction of the photo, so a large JPEG is decoded just large enough for it. ``flip``
    embeds every photo mirrored.

    An unreadable image raises :class:`~street2shop.models.preprocess.UnreadableImageError`
    naming the file (re-raised from the worker that hit it).
    """
    device = torch.device(device) if device is not None else default_device()
    out: np.ndarray | None = None if crops is not None else np.empty((len(paths), model.dim), dtype=np.float32)
    if not len(paths):
        return out if out is not None else np.empty((0, 0, model.dim), dtype=np.float32)
    dataset = ImageDataset(paths, model.preprocess, crops=crops, min_crop_side=min_crop_side, flip=flip)
    if num_workers > 0:
        loader = DataLoader(
            dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers, pin_memory=device.type == "cuda", persistent_workers=False
        )
    else:
        loader = threaded_batches(dataset, batch_size)
    was_training = model.training
    model.eval().to(device)
    memory_format = torch.channels_last if device.type == "cuda" else torch.contiguous_format
    model.to(memory_format=memory_format)
    start = 0
    try:
        with torch.inference_mode():
            batches = loader
            if progress:
                from tqdm.auto import tqdm

                batches = tqdm(loader, desc="embed", unit="batch", total=-(-len(paths) // batch_size), disable=None)  # none in a log file
            for images, _, _ in batches:
                n_crops = images.shape[1] if images.ndim == 5 else None
                if n_crops is not None:  # (B, crops, 3, S, S): every crop is one more image
                    images = images.flatten(0, 1)
                images = images.to(device, non_blocking=True, memory_format=memory_format)
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
                    # at most batch_size images a pass, crops included: 32 photos x 11 crops
                    # at once held several GB of activations
                    vectors = torch.cat([model(chunk) for chunk in images.split(batch_size)])
                # Renormalise in float32: half-precision outputs are only approximately unit-norm.
                vectors = torch.nn.functional.normalize(vectors.float(), dim=-1).cpu().numpy()
                if n_crops is not None:
                    vectors = vectors.reshape(-1, n_crops, vectors.shape[-1])
                    if out is None:
                        out = np.empty((len(paths), n_crops, vectors.shape[-1]), dtype=np.float32)
                out[start : start + len(vectors)] = vectors
                start += len(vectors)
    finally:
        model.train(was_training)
    return out
