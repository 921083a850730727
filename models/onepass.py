"""The learned localiser on the served embedder's own pass: find the garment, then embed it.

Pass 1 embeds the whole photo, resized to the localiser's ``input_size`` as
:func:`~street2shop.models.localise.feature_map_of` resizes it, with a runner built by
``optimize_for_inference(..., feature_map=input_size)``: one forward pass gives the whole
photo's descriptor *and* the backbone feature map the :class:`BoxHead` reads, in the
served precision (eager, OpenVINO fp32, calibrated int8). The head's box (its first
garment, enlarged by ``factors`` and reshaped to the shop photos' ``aspect``) is then
described either

- by a second pass over the box's crop (``pooled=False``; one pass per factor), or
- by the embedder's own head (GeM and projection) applied to the box's window of the
  pass-1 map (``pooled=True``; no further pass).

With ``include_whole`` the whole photo's pass-1 descriptor is one more crop, last (scores
combine by ``scoring``, as for every localiser). :class:`OnePassSearch` does this for a
batch of photos (the evaluation) or one photo (a service: ``vectors, (localisation,) =
search.search([image])`` gives the query's ``(n_boxes, dim)`` vectors ``vectors[0]`` and the
garments found, ``localisation.garments``, from the same passes).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from street2shop.models.embed import DECODE_THREADS
from street2shop.models.embedder import Embedder
from street2shop.models.fast import DescriptorAndMap, optimize_for_inference
from street2shop.models.localise import (
    WHOLE,
    BoxHead,
    Localisation,
    boxes_to_windows,
    crop,
    detect_garments,
    expand_box,
    parse_scoring,
)
from street2shop.models.preprocess import read_image


@dataclass(frozen=True)
class OnePassSearch:
    """Query vectors ``(n_boxes, dim)`` of street photos through the learned localiser.

    ``runner``: the one-pass runner (``optimize_for_inference(..., feature_map=...)``);
    ``crops_runner``: the plain runner of the same embedder and precision that embeds box
    crops (may be ``runner`` itself when the localiser reads photos of the embedder's square).
    """

    runner: nn.Module
    crops_runner: Callable[[torch.Tensor], torch.Tensor]
    head: BoxHead
    factors: tuple[float, ...] = (1.1,)
    aspect: float | None = 2 / 3
    include_whole: bool = True
    pooled: bool = False
    scoring: str = "max"

    def __post_init__(self) -> None:
        if not self.factors or min(self.factors) <= 0:
            raise ValueError(f"factors must be positive, got {list(self.factors)}")
        parse_scoring(self.scoring)
        if self.pooled and self.embedder.head.reads_global:
            raise ValueError("a head that reads the backbone's pooled vector cannot pool a box's window: use pooled=False")

    @property
    def one_pass(self) -> DescriptorAndMap:
        return self.runner if isinstance(self.runner, DescriptorAndMap) else self.runner.source

    @property
    def embedder(self) -> Embedder:
        return self.one_pass.embedder

    @property
    def input_size(self) -> tuple[int, int]:
        return self.one_pass.input_size

    @property
    def passes(self) -> int:
        """Forward passes per photo: the whole photo, plus one per box crop unless pooled."""
        return 1 if self.pooled else 1 + len(self.factors)

    def localise(
        self, images: Sequence[Image.Image], pixels: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, list[Localisation]]:
        """Pass 1: ``(whole-photo embeddings (B, dim), feature maps (B, C, h, w), localisations)``;
        each localisation's ``garments`` are the head's, best first, and its boxes the first
        garment's enlargements (then the whole photo, with ``include_whole``). ``pixels``: the
        photos already prepared by :meth:`prepare` (e.g. in decoding threads)."""
        if pixels is None:
            pixels = torch.stack([self.prepare(im) for im in images])
        with torch.inference_mode():
            whole, fmap = self.runner(pixels)
            garments = detect_garments(self.head.eval(), fmap.float())
        localisations = []
        for image, found in zip(images, garments, strict=True):
            boxes = [expand_box(found[0].box, f, self.aspect, image.width / image.height) for f in self.factors]
            localisations.append(Localisation(tuple(boxes) + ((WHOLE,) if self.include_whole else ()), self.scoring, garments=found))
        return whole.float(), fmap.float(), localisations

    def prepare(self, image: Image.Image) -> torch.Tensor:
        """Pass 1's input: the whole photo resized to ``input_size`` as the head was trained on it."""
        h, w = self.input_size
        return self.embedder.preprocess.to_tensor(image.convert("RGB").resize((w, h), Image.Resampling.BICUBIC))

    def vectors(self, images: Sequence[Image.Image]) -> np.ndarray:
        """``(B, n_boxes, dim)`` unit-norm vectors: each box's, then the whole photo's."""
        return self.search(images)[0]

    def search(
        self, images: Sequence[Image.Image], pixels: torch.Tensor | None = None, pool: ThreadPoolExecutor | None = None
    ) -> tuple[np.ndarray, list[Localisation]]:
        """:meth:`vectors` and each photo's localisation (its boxes and the garments found),
        from the same passes: what a service answers a photo with. ``pool``: threads that
        cut and preprocess the box crops (Pillow releases the GIL).

        With a compiled runner (OpenVINO, ONNX Runtime) the few eager ops around the passes
        (the box head, the box's pooling) run on one torch thread: on two cores torch's
        intra-op workers, spinning after each small op, took the CPUs from the compiled pass
        (a pooled search 25-60 ms a photo on 2 threads, 12-14 ms on one; bench/one_pass_overhead.py)."""
        if getattr(self.runner, "mode", "eager") == "eager":
            return self._search(images, pixels, pool)
        with _one_torch_thread():
            return self._search(images, pixels, pool)

    def _search(
        self, images: Sequence[Image.Image], pixels: torch.Tensor | None, pool: ThreadPoolExecutor | None
    ) -> tuple[np.ndarray, list[Localisation]]:
        whole, fmap, localisations = self.localise(images, pixels)
        n_boxes = len(self.factors)
        with torch.inference_mode():
            if self.pooled:
                boxes = torch.stack([self._pool(fmap[i], loc.boxes[:n_boxes]) for i, loc in enumerate(localisations)])
            else:
                preprocess = self.embedder.preprocess
                jobs = [(im, box) for im, loc in zip(images, localisations) for box in loc.boxes[:n_boxes]]
                cut = (pool.map if pool is not None else map)(lambda job: preprocess(crop(*job)), jobs)
                boxes = F.normalize(self.crops_runner(torch.stack(list(cut))).float(), dim=-1).reshape(len(images), n_boxes, -1)
        parts = [boxes, F.normalize(whole, dim=-1)[:, None]] if self.include_whole else [boxes]
        return torch.cat(parts, dim=1).numpy(), localisations

    def _pool(self, fmap: torch.Tensor, boxes: Sequence[tuple[float, float, float, float]]) -> torch.Tensor:
        """The embedder's head on each box's window of one photo's map ``(C, h, w)``."""
        windows = boxes_to_windows([tuple(np.clip(b, 0.0, 1.0)) for b in boxes], fmap.shape[-2], fmap.shape[-1])
        out = [self.embedder.head(fmap[None, :, r0:r1, c0:c1]) for r0, c0, r1, c1 in windows.tolist()]
        return F.normalize(torch.cat(out).float(), dim=-1)

    @property
    def decode_size(self) -> int:
        """The shorter side a JPEG is draft-decoded to at least (files here, uploads in the
        service): just large enough for pass 1, or for a box of a quarter of the photo."""
        return max(*self.input_size) if self.pooled else max(*self.input_size, 4 * self.embedder.preprocess.image_size)

    def embed_paths(self, paths: Sequence[str], batch_size: int = 32) -> np.ndarray:
        """``(len(paths), n_boxes, dim)`` for photo files, decoded and prepared by a few threads
        a batch ahead of the network."""
        min_size = self.decode_size

        def load(path: str) -> tuple[Image.Image, torch.Tensor]:
            image = read_image(path, min_size=min_size)
            return image, self.prepare(image)

        out = []
        batches = [paths[i : i + batch_size] for i in range(0, len(paths), batch_size)]
        with ThreadPoolExecutor(DECODE_THREADS) as pool, ThreadPoolExecutor(1) as ahead:
            pending = ahead.submit(lambda: list(pool.map(load, batches[0]))) if batches else None
            for k in range(len(batches)):  # one batch decoded ahead of the one the network works on
                images, pixels = zip(*pending.result())
                if k + 1 < len(batches):
                    pending = ahead.submit(lambda b=batches[k + 1]: list(pool.map(load, b)))
                out.append(self.search(images, torch.stack(pixels), pool)[0])
        if not out:
            return np.empty((0, len(self.factors) + self.include_whole, self.embedder.dim), dtype=np.float32)
        return np.concatenate(out).astype(np.float32)


_threads_lock = threading.Lock()
_threads_users = 0
_threads_before = 0


@contextmanager
def _one_torch_thread() -> Iterator[None]:
    """torch's intra-op threads set to 1 while any caller is inside (counted, so overlapping
    callers on several threads restore the setting once, when the last leaves)."""
    global _threads_users, _threads_before
    with _threads_lock:
        if _threads_users == 0:
            _threads_before = torch.get_num_threads()
            torch.set_num_threads(1)
        _threads_users += 1
    try:
        yield
    finally:
        with _threads_lock:
            _threads_users -= 1
            if _threads_users == 0:
                torch.set_num_threads(_threads_before)


def one_pass_searches(
    embedder: Embedder,
    mode: str,
    head: BoxHead,
    meta: dict,
    variants: Mapping[str, Mapping[str, Any]],
    calibration: torch.Tensor | None = None,
    threads: int | None = None,
    crops_runner: nn.Module | None = None,
) -> dict[str, OnePassSearch]:
    """The learned localiser ``(head, meta)`` (:func:`~street2shop.models.localise.load_localiser`)
    on ``embedder`` run in ``mode`` (calibrated on ``calibration`` for int8; eager where the
    mode's backend is missing), one :class:`OnePassSearch` per ``variants`` entry (its
    options), all on one one-pass runner. ``crops_runner``: the plain runner already built
    for that mode (built here when a variant needs it and none is given)."""
    backbone = meta.get("backbone")
    if backbone is not None and backbone != embedder.config.backbone:
        raise ValueError(f"the localiser reads backbone {backbone!r}'s map, but the embedder's backbone is {embedder.config.backbone!r}")
    size = embedder.preprocess.image_size
    input_size = tuple(int(v) for v in meta.get("input_size", (size, size)))
    runner = optimize_for_inference(embedder, mode, threads, fallback="eager", calibration=calibration, feature_map=input_size)
    if crops_runner is None:
        same = input_size == (size, size) or all(v.get("pooled", False) for v in variants.values())
        crops_runner = runner if same else optimize_for_inference(embedder, mode, threads, "eager", calibration)
    crops = _first_output(crops_runner)
    return {name: OnePassSearch(runner, crops, head, **_typed(options)) for name, options in variants.items()}


def one_pass_search(embedder: Embedder, mode: str, head: BoxHead, meta: dict, calibration: torch.Tensor | None = None,
                    threads: int | None = None, crops_runner: nn.Module | None = None, **options) -> OnePassSearch:
    """One :func:`one_pass_searches` variant: ``options`` are :class:`OnePassSearch`'s."""
    return one_pass_searches(embedder, mode, head, meta, {"": options}, calibration, threads, crops_runner)[""]


def _first_output(runner: nn.Module):
    """A runner that may return ``(embeddings, map)`` as one that returns the embeddings."""
    def run(pixels: torch.Tensor) -> torch.Tensor:
        out = runner(pixels)
        return out[0] if isinstance(out, tuple) else out

    return run


#: the options a learned localisation takes (LocaliseParams.options of ``boxhead``)
OPTIONS = ("factors", "aspect", "include_whole", "pooled", "scoring")


def _typed(options: Mapping[str, Any]) -> dict:
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise ValueError(f"unknown option(s) {unknown} of the learned localiser; known: {', '.join(OPTIONS)}")
    out = dict(options)
    if "factors" in out:
        out["factors"] = tuple(float(f) for f in out["factors"])
    return out


__all__ = ["OnePassSearch", "one_pass_search", "one_pass_searches"]
