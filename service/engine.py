"""What the search service serves: one published index, the checkpoint it was built with, and
the crawl it indexes, loaded together as a :class:`SearchEngine`.

Everything here is plain Python (no HTTP), so the API in :mod:`street2shop.service.app` is a
thin layer and the engine is testable on its own. An engine is immutable once loaded; the app
switches versions by loading a new engine and swapping one reference (see ``/admin/reload``),
so a request always sees one consistent (index, checkpoint, crawl) triple.

Reverse search (item -> customer photos) needs a vector for every street photo, while the
index holds shop photos only. The evaluate stage already embedded the test split's street
photos with the same checkpoint (the ``embeddings`` artifact the index was built from); the
rest are embedded **in a background thread started when the engine loads**, so neither the
startup nor the first reverse search blocks for the minute a large crawl takes, and
``/search`` works meanwhile. Until that finishes, reverse search answers 503 with progress.

Photo queries are embedded through a :class:`MicroBatcher`: concurrent requests that arrive
while a forward pass runs (or within ``batch_wait_ms`` of each other) go through the network
as one batch. On two cores one batched pass of several photos costs far less than as many
single passes, so under load this raises throughput and cuts queueing (``bench/serve.py``);
with one request at a time it adds at most ``batch_wait_ms``. The inference backend
(``inference_mode``, a name from :data:`street2shop.models.fast.MODES`) is a parameter.

A photo search runs the served localisation (``serving.json``'s ``localise``: what the
evaluate stage scored). The learned localiser (``boxhead``, crop or pooled) runs the evaluate
stage's own one-pass search (:func:`street2shop.retrieval.served.served_search`, a
:class:`~street2shop.models.onepass.OnePassSearch` at the served precision): the photo is
decoded as the evaluation decodes it, and its query vectors and garments come from the passes
the evaluation scored, micro-batched across concurrent requests like the plain pass. The
answer names the garments and searches the best one; a request may name another
(``garment=``) or any region (``box=``): that region is cut out and embedded, one pass more
(:meth:`SearchEngine.query_of`).
"""

from __future__ import annotations

import logging
import math
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from PIL import Image

from street2shop.crawler.validate import WEB_FORMATS, ImageLimits
from street2shop.models.embed import embed_images
from street2shop.models.embedder import Embedder, load_embedder
from street2shop.models.fast import optimize_for_inference
from street2shop.models.localise import WHOLE, Box, Garment, Localisation, Localiser, create_localiser, crop, expand_box
from street2shop.models.onepass import OnePassSearch
from street2shop.retrieval.evaluation import LocaliseParams
from street2shop.retrieval.index import load_index, search
from street2shop.retrieval.ranking import GalleryItems, combine_crop_scores, rank_items
from street2shop.retrieval.served import served_search
from street2shop.service.batching import MicroBatcher
from street2shop.service.regions import BadRegion, check_box
from street2shop.service.uploads import decode_upload
from street2shop.storage import names as N
from street2shop.storage.promotions import serving_of
from street2shop.storage.images import open_image
from street2shop.storage.schemas import vectors_matrix
from street2shop.storage.store import ArtifactNotFound, ArtifactRef, ArtifactStore

log = logging.getLogger(__name__)

#: Inference backend of the served model (see ``models/fast.py``); eager is the fallback
#: where its library is missing. A parameter of the engine, the app and ``serve``. OpenVINO
#: gives the fp32 model's exact top-k and the best throughput here at the demo's 160 px
#: (``python bench/embed.py --home H --modes eager,onnx,openvino``).
DEFAULT_INFERENCE_MODE = "openvino"

#: Micro-batching defaults: at most this many photos per forward pass, and how long the
#: first photo of a batch waits for company when the model is idle (a few ms: small next to
#: a forward pass, enough for requests that arrive together). Compare settings with
#: ``bench/serve.py --batch-max 1,16``.
DEFAULT_BATCH_MAX = 16
DEFAULT_BATCH_WAIT_MS = 2.0

#: Inference streams of the served model (see ``models/fast.py``): forward passes that run
#: at once, each with its batching thread, on a share of the CPUs. Compare settings with
#: ``bench/serve.py --streams 1,2``.
DEFAULT_STREAMS = 1

#: What an upload may be: the crawler's limits, plus HEIC/HEIF (what an iPhone sends).
UPLOAD_LIMITS = ImageLimits(formats=WEB_FORMATS | {"HEIF"})

#: What a photo search searched (``localised`` in the answer): a garment the localiser found,
#: the region the request gave, the whole photo (no garment found, or a localiser that
#: finds none), or the served localiser's fixed crops (``multicrop``).
Localised = Literal["garment", "box", "whole_photo", "fixed_crops"]

#: A requested box is decoded at up to this many times the model's input size on its
#: shorter side, so a small region keeps its detail without holding a 12-MP photo.
MAX_BOX_ZOOM = 4


class NotReady(RuntimeError):
    """A lazily built part of the engine is still being built."""


@dataclass(frozen=True)
class Query:
    """What of one photo is searched: the crops to embed (fractions of the photo), the
    garments found in it (best first), and which region the answer is for."""

    boxes: tuple[Box, ...]
    garments: tuple[Garment, ...]
    localised: Localised
    garment: int | None = None
    box: Box | None = None
    #: the ``(n_crops, dim)`` vectors of ``boxes`` when the localiser's passes already gave them
    vectors: np.ndarray | None = field(default=None, repr=False, compare=False)


@dataclass(frozen=True)
class PhotoSearch:
    """A photo search's answer: the hits for the searched region and what was searched."""

    hits: list[dict]
    query: Query


@dataclass(frozen=True)
class Versions:
    index: str
    checkpoint: str
    crawl: str
    factory: str


@dataclass
class _StreetVectors:
    """Street-photo vectors for reverse search, filled by a background thread."""

    image_ids: list[str]
    vectors: np.ndarray | None = None
    done: int = 0
    error: str | None = None
    ready: threading.Event = field(default_factory=threading.Event)


class SearchEngine:
    """A loaded (index, checkpoint, crawl) triple answering item and photo queries."""

    def __init__(
        self,
        store: ArtifactStore,
        index_ref: ArtifactRef,
        *,
        limits: ImageLimits | None = None,
        street_in_background: bool = True,
        inference_mode: str | None = None,
        batch_max: int = DEFAULT_BATCH_MAX,
        batch_wait_ms: float = DEFAULT_BATCH_WAIT_MS,
        streams: int = DEFAULT_STREAMS,
        localise: LocaliseParams | None = None,
    ) -> None:
        """Load ``index_ref`` with its checkpoint and crawl.

        Args:
            inference_mode: how the checkpoint runs (a mode of ``models/fast.py``; eager is
                the fallback when its backend is missing). Default: the precision the
                evaluate stage chose and scored for it (``serving.json``), else OpenVINO fp32.
            batch_max: most photos embedded in one forward pass; 1 turns micro-batching off.
            batch_wait_ms: how long an idle model waits for more photos before a pass.
            localise: the query-side localisation; default: the one the evaluate stage scored
                this model with (``serving.json``), so /search runs what was evaluated (an
                override is for measuring the accuracy/latency trade, ``bench/serve.py``).
            streams: forward passes that may run at once, each on a share of the threads
                (OpenVINO modes; others run one at a time). With batching on, one batching
                thread per stream.
        """
        if batch_max < 1:
            raise ValueError(f"batch_max must be >= 1, got {batch_max}")
        manifest = store.manifest(index_ref)
        inputs = {ref.name: ref for ref in manifest.inputs}
        for needed in ("checkpoint", "images"):
            if needed not in inputs:
                raise ArtifactNotFound(f"{index_ref} does not record its {needed} input; rebuild the index")
        self.store = store
        self.limits = limits or UPLOAD_LIMITS
        images_ref = inputs["images"]
        self.versions = Versions(
            index=index_ref.version,
            checkpoint=inputs["checkpoint"].version,
            crawl=images_ref.version,
            factory=str(manifest.metrics.get("factory", "")),
        )
        self._load_index(store, index_ref)
        self._load_model(store, inputs["checkpoint"], images_ref, inference_mode, streams, localise)
        # As many forward passes at a time as the model has streams (one for eager: it
        # spreads one pass over every intra-op thread; two would fight over them). Searches,
        # reverse-search set-up and background embedding all take a slot.
        self._model_lock = threading.BoundedSemaphore(self.streams)
        self._batcher: MicroBatcher[torch.Tensor, np.ndarray] | None = (
            MicroBatcher(
                self._embed_pixels, batch_max, batch_wait_ms / 1000, name=f"embed-{index_ref.version}", workers=self.streams
            )
            if batch_max > 1
            else None
        )
        # The learned localiser's passes of concurrent requests are batched the same way.
        self._one_pass_batcher: MicroBatcher[tuple[Image.Image, torch.Tensor], tuple[np.ndarray, Localisation]] | None = (
            MicroBatcher(self._one_pass_search, batch_max, batch_wait_ms / 1000, name=f"embed-one-pass-{index_ref.version}")
            if batch_max > 1 and self._one_pass is not None
            else None
        )
        # The crawl publishes items and images under one version id.
        self._load_items(store, ArtifactRef(stage=images_ref.stage, name=N.ITEMS, version=images_ref.version))
        self._load_photos(store, images_ref)
        #: set once :meth:`warm` has run the query path (the service is ``warming`` until then)
        self.warmed = threading.Event()
        self._load_vectors(store, inputs.get("embeddings"), images_ref)
        if street_in_background:
            threading.Thread(target=self._embed_street, name="embed-street", daemon=True).start()
        else:
            self._embed_street()

    # ------------------------------------------------------------------ loaders

    def _load_index(self, store: ArtifactStore, index_ref: ArtifactRef) -> None:
        """The FAISS index and, row by row, the photo and item each vector is."""
        self.index = load_index(store.file(index_ref, N.INDEX_FILE))
        ids = store.read_table(index_ref)
        order = np.argsort(np.asarray(ids.column("row").to_numpy()))
        self.row_image = np.asarray(ids.column("image_id").to_pylist(), dtype=object)[order]
        self.row_item = np.asarray(ids.column("item_id").to_pylist(), dtype=object)[order]
        if len(self.row_item) != self.index.ntotal:
            raise ValueError(f"{index_ref}: ids table has {len(self.row_item)} rows, index {self.index.ntotal}")
        self.gallery = GalleryItems.of(self.row_item)  # coded once, not per query

    def _load_model(
        self, store: ArtifactStore, checkpoint: ArtifactRef, images_ref: ArtifactRef, inference_mode: str | None,
        streams: int, localise: LocaliseParams | None,
    ) -> None:
        """The checkpoint in the precision and with the query localisation the evaluate stage
        scored it with (``serving.json`` beside it), unless told otherwise; defaults for
        checkpoints from elsewhere. OpenVINO / ONNX Runtime are several times eager PyTorch
        here at identical top-k (bench/embed.py); eager is the fallback where the backend's
        library is missing."""
        if streams > torch.get_num_threads():
            log.warning("%d streams asked for, but only %d threads: using %d", streams, torch.get_num_threads(), torch.get_num_threads())
        self.serving = serving_of(store, checkpoint)
        mode = inference_mode or self.serving.get("inference_mode", DEFAULT_INFERENCE_MODE)
        embedder = load_embedder(store.file(checkpoint, N.CHECKPOINT_FILE))
        calibration = self._calibration(store, images_ref, embedder) if "int8" in mode else None
        self.model: Embedder = optimize_for_inference(
            embedder, mode, fallback="eager", streams=min(streams, torch.get_num_threads()), calibration=calibration
        )
        self.inference_mode = getattr(self.model, "mode", "eager")
        self.streams = getattr(self.model, "streams", 1)  # what the backend really runs
        #: the served precision's figures from the evaluate stage (empty when none were scored)
        self.precision_figures: dict = self.serving.get("precisions", {}).get(self.inference_mode, {})
        self.localise = localise or LocaliseParams(**self.serving.get("localise", {}))
        #: the learned localisation's one-pass search, as the evaluate stage and ``eval`` build it
        #: (its plain runner, the served model, embeds the box crops); None for the others
        self._one_pass: OnePassSearch | None = served_search(store, self.localise, embedder, mode, self.model, calibration)
        self._localiser: Localiser | None = (
            create_localiser(self.localise.name, **self.localise.options)
            if self.localise.name != "none" and self._one_pass is None
            else None
        )
        self.crop_scoring = self._one_pass.scoring if self._one_pass is not None else getattr(self._localiser, "scoring", "max")
        #: whether the served localiser finds garments (answers name them; garment= works)
        self.detects_garments = self._one_pass is not None
        # threads that cut and preprocess the learned localiser's box crops (Pillow releases the GIL)
        self._crop_pool = ThreadPoolExecutor(2, thread_name_prefix="crops") if self.detects_garments else None

    def _load_items(self, store: ArtifactStore, items_ref: ArtifactRef) -> None:
        """The crawl's items by id, their categories, each index row's category, and the
        crawled shop's address (items keep the shop's own, often relative, links)."""
        items = store.read_table(items_ref).to_pylist()
        self.shop_base_url: str | None = (store.manifest(items_ref).params or {}).get("base_url")
        self.items = {row["item_id"]: row for row in items}
        self.categories = sorted({row["category"] for row in items})
        self.row_category = np.asarray([self.items[i]["category"] for i in self.row_item], dtype=object)
        # An item can have at most this many photos in the index, so searching
        # k * max_photos rows always yields k distinct items.
        counts = np.bincount(self.gallery.codes)
        self.max_photos_per_item = int(counts.max()) if counts.size else 1

    def _load_photos(self, store: ArtifactStore, images_ref: ArtifactRef) -> None:
        """Every photo's local file, each item's shop and street photos, each street photo's item."""
        images = store.read_table(images_ref, columns=["image_id", "item_id", "role", "path", "width", "height"])
        rows = images.to_pylist()
        # one batch: a store on S3 fetches the photos its local mirror lacks together
        local_paths = store.blobs.resolve_many([row["path"] for row in rows])
        self.image_path: dict[str, Path] = {}
        self.photos: dict[str, dict[str, list[dict]]] = {}
        for row, local_path in zip(rows, local_paths, strict=True):
            self.image_path.setdefault(row["image_id"], local_path)
            per_item = self.photos.setdefault(row["item_id"], {"shop": [], "street": []})
            per_item.setdefault(row["role"], []).append(
                {"image_id": row["image_id"], "width": row["width"], "height": row["height"]}
            )
        self.street_owner = {row["image_id"]: row["item_id"] for row in rows if row["role"] == "street"}

    def _load_vectors(self, store: ArtifactStore, embeddings: ArtifactRef | None, images_ref: ArtifactRef) -> None:
        """The published shop vectors, and the street photos reverse search will embed (those
        the noise filter kept)."""
        self._gallery_matrix: np.ndarray | None = None
        known = _vectors_of(store, embeddings)
        self.shop_vectors = {img: known[img] for img in self.row_image if img in known}
        keep = _noise_verdicts(store, images_ref)
        street_ids = [i for i in sorted(self.street_owner) if keep.get(i, True)]
        self._street = _StreetVectors(image_ids=street_ids)
        self._known_vectors = known

    def _calibration(self, store: ArtifactStore, images_ref: ArtifactRef, model: Embedder) -> torch.Tensor:
        """The evaluate stage's calibration photos (training split), preprocessed: a
        quantised precision calibrated on them is the one that was scored."""
        wanted = self.serving.get("calibration") or []
        if not wanted:
            raise ArtifactNotFound("a quantised precision needs the evaluate stage's calibration photos (serving.json has none)")
        table = store.read_table(images_ref, columns=["image_id", "path"])
        path_of = dict(zip(table.column("image_id").to_pylist(), table.column("path").to_pylist()))
        missing = [i for i in wanted if i not in path_of]
        if missing:
            raise ArtifactNotFound(f"{len(missing)} calibration photo(s) are not in {images_ref}, e.g. {missing[0]}")
        paths = store.blobs.resolve_many([path_of[i] for i in wanted])
        return torch.stack([model.preprocess(open_image(p)) for p in paths])

    def warm(self) -> None:
        """Run the query path once at each batch size a search can use (a first OpenVINO
        inference compiles kernels for its shape: the first /search once took 17 s), then
        mark the engine warm. The service says ``warming`` until this returns."""
        try:
            blank = Image.new("RGB", (self.model.preprocess.image_size,) * 2, (127, 127, 127))
            for _ in range(2):  # the first pass compiles, the second runs as every later one
                self.search_vector(self.embed(blank), 1)
            size = self.model.preprocess.image_size
            if self._one_pass is not None:  # two searches in one micro-batch; a garment= or box= search's one crop
                self._one_pass_search([(blank, self._one_pass.prepare(blank))] * 2)
                self._embed_pixels([torch.zeros(1, 3, size, size)])
            else:
                self._embed_pixels([torch.zeros(2 * len(self.embed(blank)), 3, size, size)])  # a micro-batch of two searches
        finally:
            self.warmed.set()

    # ------------------------------------------------------------------ search

    def embed(self, image: Image.Image) -> np.ndarray:
        """``(n_crops, dim)`` unit-norm embeddings of one photo as the served localisation
        searches it: the whole photo (``(1, dim)``) or each of its crops."""
        return self.embed_query(image, self.query_of(image))

    def query_of(self, image: Image.Image, garment: int | None = None, box: Box | None = None) -> Query:
        """What of ``image`` a search embeds, and the garments the served localiser finds in it.

        No ``garment`` nor ``box``: the served localisation (what the evaluate stage scored),
        for the best garment where one was found. ``garment=i``: that garment, cut out as the
        localiser cuts its best one (its enlargements, without the whole photo, which would let
        the best garment win again); ``garment=0`` is the default. ``box``: that region alone.
        Raises :class:`BadRegion` for a box a search cannot use or a garment not found.
        """
        if garment is not None and box is not None:
            raise BadRegion("give garment= or box=, not both")
        if box is not None:
            box = check_box(box)
        vectors, localisation = None, None
        if self._one_pass is not None:  # the evaluated passes: vectors and garments together
            vectors, localisation = self._learned(image)
        elif self._localiser is not None:
            localisation = self._localiser(image)
        served = localisation.boxes if localisation is not None else (WHOLE,)
        # a detector's only "garment" being the whole photo is its way of finding none
        garments = tuple(g for g in (localisation.garments if localisation is not None else ()) if g.box != WHOLE)
        if box is not None:
            return Query((box,), garments, "box", None, box)
        if garment is not None and not 0 <= garment < len(garments):
            found = f"garments 0..{len(garments) - 1}" if garments else "no garment (search the whole photo, or pass box=)"
            raise BadRegion(f"garment={garment} is out of range: the photo has {len(garments)} ({found})")
        if garment:  # another garment than the best
            return Query(self._garment_crops(image, garments[garment].box), garments, "garment", garment, garments[garment].box)
        if garments:
            return Query(served, garments, "garment", 0, garments[0].box, vectors)
        return Query(served, (), "whole_photo" if served == (WHOLE,) or self.detects_garments else "fixed_crops", vectors=vectors)

    def _garment_crops(self, image: Image.Image, box: Box) -> tuple[Box, ...]:
        """A found garment's crops as the learned localiser cuts its best one: the box at each
        of its enlargements, reshaped to the shop photos' aspect."""
        learned = self._one_pass
        return tuple(expand_box(box, f, learned.aspect, image.width / image.height) for f in learned.factors)

    def _learned(self, image: Image.Image) -> tuple[np.ndarray, Localisation]:
        """The learned localiser's ``(n_crops, dim)`` vectors and localisation of one photo, from
        the evaluated one-pass search, batched with concurrent requests'."""
        item = (image, self._one_pass.prepare(image))  # pass 1's input, in the request's thread
        if self._one_pass_batcher is None:
            return self._one_pass_search([item])[0]
        return self._one_pass_batcher.submit(item)

    def _one_pass_search(self, items: list[tuple[Image.Image, torch.Tensor]]) -> list[tuple[np.ndarray, Localisation]]:
        """:meth:`OnePassSearch.search` of a batch of photos, holding a model slot."""
        images, pixels = zip(*items)
        with self._model_lock:
            vectors, localisations = self._one_pass.search(images, torch.stack(pixels), self._crop_pool)
        return list(zip(vectors, localisations))

    def embed_query(self, image: Image.Image, query: Query) -> np.ndarray:
        """``(n_crops, dim)`` unit-norm embeddings of ``query``'s crops of ``image``, each
        preprocessed by the checkpoint's own :class:`~street2shop.models.preprocess.Preprocess`."""
        if query.vectors is not None:
            return query.vectors
        # Preprocessing runs in the caller's thread, in parallel with other requests; only
        # the forward pass is batched and serialised.
        if query.boxes == (WHOLE,):
            pixels = self.model.preprocess(image)[None]
        else:
            pixels = torch.stack([self.model.preprocess(crop(image, box)) for box in query.boxes])
        if self._batcher is None:
            return self._embed_pixels([pixels])[0]
        return self._batcher.submit(pixels)

    def _embed_pixels(self, pixels: list[torch.Tensor]) -> list[np.ndarray]:
        """The embeddings of each ``(n_i, 3, S, S)`` stack of preprocessed photos or crops,
        all in one forward pass."""
        with self._model_lock, torch.inference_mode():
            vectors = self.model(torch.cat(pixels)).float().numpy()
        return np.split(vectors, np.cumsum([len(p) for p in pixels])[:-1])

    def close(self) -> None:
        """Stop the batching thread after the queued photos (later calls embed directly)."""
        for batcher in (self._batcher, self._one_pass_batcher):
            if batcher is not None:
                batcher.close()
        if self._crop_pool is not None:
            self._crop_pool.shutdown(wait=False)

    def search_vector(self, query: np.ndarray, k: int, category: str | None = None) -> list[dict]:
        """Top ``k`` items for a query, best first, optionally of one category.

        ``query`` is ``(n_crops, dim)``: one row for a whole photo, or the crops of the
        served localisation, whose scores combine per shop photo as in the evaluation
        (``max``: the best crop's; ``mean`` / ``topK``: the photos any crop found are
        re-scored exactly against every crop). Photo hits are de-duplicated to items by
        :func:`rank_items` (an item scores its best photo). With a category filter the photo
        list is widened (doubling) until ``k`` items of that category are found or the whole
        index was searched, so any index type works.
        """
        if category is not None and category not in self.categories:
            raise KeyError(category)
        query = np.atleast_2d(query)
        n = self.index.ntotal
        m = min(n, k * self.max_photos_per_item)
        while True:
            scores, rows = self._photo_hits(query, m)
            if category is not None:
                wanted = (rows >= 0) & (self.row_category[np.maximum(rows, 0)] == category)
                rows, scores = np.where(wanted, rows, -1), np.where(wanted, scores, np.nan)
            items, item_scores = rank_items(rows, scores, self.gallery, k)
            found = sum(item is not None for item in items[0])
            if found >= k or m >= n:
                break
            m = min(n, 2 * m)
        best_photo = {}
        for row in rows[0]:
            if row >= 0:
                best_photo.setdefault(self.row_item[row], self.row_image[row])
        return [
            {"item_id": item, "score": float(score), "image_id": best_photo[item]}
            for item, score in zip(items[0], item_scores[0])
            if item is not None
        ]

    def _photo_hits(self, query: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
        """``(scores, rows)`` of shape ``(1, <= n_crops * m)``, best first: the shop photos the
        query's crops found, each once, scored by the crops' combination."""
        scores, rows = search(self.index, query, m)
        if len(query) == 1:
            return scores, rows
        found = np.unique(rows[rows >= 0])
        if self.crop_scoring == "max":
            best = np.full(self.index.ntotal, -np.inf, dtype=np.float32)
            np.maximum.at(best, rows[rows >= 0], scores[rows >= 0])
            combined = best[found]
        else:  # every crop's score of every photo found, exactly
            combined = combine_crop_scores(query @ self._gallery_vectors()[found].T, self.crop_scoring)
        order = np.argsort(-combined, kind="stable")
        return combined[order][None].astype(np.float32), found[order][None]

    def _gallery_vectors(self) -> np.ndarray:
        """The indexed shop photos' vectors in index row order (for exact crop re-scoring)."""
        if self._gallery_matrix is None:
            self._gallery_matrix = np.stack([self._shop_vector(i) for i in self.row_image])
        return self._gallery_matrix

    def search_image(self, data: bytes, k: int, category: str | None = None) -> list[dict]:
        return self.search_photo(data, k, category).hits

    def search_photo(
        self, data: bytes, k: int, category: str | None = None, *, garment: int | None = None, box: Box | None = None,
    ) -> PhotoSearch:
        """Top ``k`` items for an uploaded photo (as :meth:`search_vector`), searching the
        region :meth:`query_of` picks, with the garments found in the photo."""
        if box is not None:
            box = check_box(box)
        size = self.model.preprocess.image_size
        if box is not None:  # decode enough pixels that the region fills the model's input
            size = min(MAX_BOX_ZOOM * size, math.ceil(size / min(box[2] - box[0], box[3] - box[1])))
        if self._one_pass is not None:  # at least as the evaluation decodes the photo
            size = max(size, self._one_pass.decode_size)
        image = decode_upload(data, self.limits, size)
        query = self.query_of(image, garment, box)
        return PhotoSearch(self.search_vector(self.embed_query(image, query), k, category), query)

    # ------------------------------------------------------------------ reverse search

    def street_status(self) -> dict:
        s = self._street
        return {"ready": s.ready.is_set() and s.error is None, "embedded": s.done, "total": len(s.image_ids), "error": s.error}

    def nearest_street(self, item_id: str, k: int, wait_s: float = 0.0) -> list[dict]:
        """Customer photos nearest to ``item_id``'s seller photos (a street photo scores its
        best match over the item's shop photos), best first."""
        shop = [p["image_id"] for p in self.photos.get(item_id, {}).get("shop", [])]
        if item_id not in self.items:
            raise KeyError(item_id)
        s = self._street
        if not s.ready.wait(wait_s):
            raise NotReady(f"street photos are still being embedded ({s.done}/{len(s.image_ids)})")
        if s.error is not None:
            raise NotReady(f"embedding street photos failed: {s.error}")
        if not shop or s.vectors is None or not len(s.vectors):
            return []
        queries = np.stack([self._shop_vector(i) for i in shop])
        scores = (s.vectors @ queries.T).max(axis=1)
        top = np.argsort(-scores, kind="stable")[:k]
        return [
            {"image_id": s.image_ids[i], "score": float(scores[i]), "item_id": self.street_owner[s.image_ids[i]]}
            for i in top
        ]

    def _shop_vector(self, image_id: str) -> np.ndarray:
        if image_id not in self.shop_vectors:  # not in the embeddings artifact: embed it once
            path = str(self.image_path[image_id])
            with self._model_lock:
                self.shop_vectors[image_id] = embed_images(self.model, [path], num_workers=0, device="cpu")[0]
        return self.shop_vectors[image_id]

    def _embed_street(self) -> None:
        s = self._street
        try:
            missing = [i for i in s.image_ids if i not in self._known_vectors]
            fresh: dict[str, np.ndarray] = {}
            s.done = len(s.image_ids) - len(missing)
            for lo in range(0, len(missing), 32):
                batch = missing[lo : lo + 32]
                with self._model_lock:  # interleave with /search rather than starve it
                    vecs = embed_images(
                        self.model, [str(self.image_path[i]) for i in batch], num_workers=0, device="cpu"
                    )
                fresh.update(zip(batch, vecs))
                s.done += len(batch)
            dim = self.model.dim
            s.vectors = np.stack(
                [self._known_vectors.get(i, fresh.get(i)) for i in s.image_ids]
            ) if s.image_ids else np.empty((0, dim), np.float32)
        except Exception as exc:  # noqa: BLE001 - reported by /health and the endpoint
            log.exception("embedding street photos failed")
            s.error = f"{type(exc).__name__}: {exc}"
        finally:
            s.ready.set()



def _noise_verdicts(store: ArtifactStore, images_ref: ArtifactRef) -> dict[str, bool]:
    """``image_id -> keep`` from the newest noise filter run over this crawl (empty if none):
    reverse search shows only the customer photos the filter kept, the ones training used."""
    runs = [m for m in store.manifests(N.NOISE, N.NOISE_SCORES) if images_ref in m.inputs]
    if not runs:
        return {}
    table = store.read_table(runs[-1].ref, columns=["image_id", "keep"])
    return dict(zip(table.column("image_id").to_pylist(), table.column("keep").to_pylist()))


def _vectors_of(store: ArtifactStore, ref: ArtifactRef | None) -> dict[str, np.ndarray]:
    """Vectors of the ``embeddings`` artifact the index was built from (same checkpoint)."""
    if ref is None or not store.exists(ref):
        return {}
    table = store.read_table(ref)
    return dict(zip(table.column("image_id").to_pylist(), vectors_matrix(table)))


def configure_torch_threads(threads: int | None = None) -> int:
    """Intra-op threads for inference: the CPUs this process may use unless told otherwise.

    torch defaults to the machine's core count, which oversubscribes a container limited by
    affinity; forward passes are serialised (see :meth:`SearchEngine.embed`), so one pass may
    use every allowed core.
    """
    n = threads or len(os.sched_getaffinity(0))
    torch.set_num_threads(max(1, n))
    return torch.get_num_threads()


__all__ = [
    "DEFAULT_BATCH_MAX",
    "DEFAULT_BATCH_WAIT_MS",
    "DEFAULT_STREAMS",
    "DEFAULT_INFERENCE_MODE",
    "NotReady",
    "PhotoSearch",
    "Query",
    "SearchEngine",
    "Versions",
    "configure_torch_threads",
]
