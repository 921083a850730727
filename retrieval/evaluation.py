"""The one evaluation path: street queries against a shop gallery, on the shop and on benchmarks.

Training's validation, the evaluate stage, bring-your-own-data evaluation (``street2shop
eval``) and the benchmarks all call :func:`evaluate_features` (or :func:`score_vectors`, when
the vectors already exist); only the features differ (trained embedder, pretrained backbone,
white-box baselines), the query-side localisation (several crops of each street photo,
:mod:`street2shop.models.localise`), or the post-processing of the vectors (αQE, DBA). The
evaluate stage's whole computation is :func:`evaluate_models`; its task only reads the
artifacts, calls it and publishes the result.

What is measured where:

* **shop**: the store's own split (queries: labelled-clean street photos of the test split;
  gallery: every shop photo of the catalogue). Every model and baseline, and αQE/DBA.
* **benchmarks** (``EvaluateParams.benchmarks``): labelled sets in the CSV format of
  ``street2shop eval``, e.g. real retailer photos with real street backgrounds. The
  trained model and the untrained backbone, under the same localisation.
* **served**: of the trained model and the untrained backbone, the one that scores best on
  ``serve_metric`` of ``serve_on`` (by default the first benchmark, else the shop split) is
  what the index is built with, so the pipeline never serves a model that is worse than not
  training at all on the set that judges it.

A figure always says which gallery it used (``gallery_size``, ``gallery_items``); the metrics
themselves are defined in :mod:`street2shop.retrieval.metrics`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, Field, field_validator, model_validator

from street2shop.cleaning.selection import gallery_images, query_images
from street2shop.models.embed import embed_images
from street2shop.models.embedder import Embedder, pretrained_features
from street2shop.models.fast import BackendUnavailableError, list_modes, optimize_for_inference
from street2shop.models.localise import create_localiser
from street2shop.models.onepass import OnePassSearch
from street2shop.retrieval.baselines import baseline_features
from street2shop.retrieval.expansion import EXPANSIONS, expand
from street2shop.retrieval.metrics import RetrievalReport, evaluate_retrieval
from street2shop.retrieval.ranking import parse_crop_scoring
from street2shop.sources.labelled import SPLIT, annotated_from_csvs, read_labelled_csv
from street2shop.storage.images import open_image

if TYPE_CHECKING:  # annotations only
    import torch
    from torch import nn

#: paths -> ``(len(paths), dim)`` float32 vectors (``(len(paths), n_crops, dim)`` for localised queries)
FeatureFn = Callable[[list[str]], np.ndarray]

#: The model under evaluation and the untrained backbone, in the metrics table.
TRAINED, PRETRAINED = "trained", "pretrained"
#: The models that may be served (the index is built with the better one).
SERVABLE = (TRAINED, PRETRAINED)
#: The benchmark name of the store's own test split in the metrics table.
SHOP = "shop"
#: The figures of each model copied into the ``metrics`` manifest (``<model>_<key>``).
HEADLINE_KEYS = ("top1", "top20", "map")


class Benchmark(BaseModel):
    """A labelled query/gallery set scored beside the shop's own split (``street2shop eval`` CSVs)."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")
    gallery: str
    queries: str

    @field_validator("name")
    @classmethod
    def _not_the_shop(cls, value: str) -> str:
        if value == SHOP:
            raise ValueError(f"{SHOP!r} names the store's own split; give the benchmark another name")
        return value


class LocaliseParams(BaseModel):
    """Query-side localisation by name (a localiser of :mod:`street2shop.models.localise`).

    ``boxhead`` is the learned localiser on the served embedder's one pass
    (:class:`~street2shop.models.onepass.OnePassSearch`; options ``factors``, ``aspect``,
    ``include_whole``, ``pooled``, ``scoring``), loaded from the artifact ``localiser``."""

    name: str = "none"
    #: the localiser's own parameters, e.g. ``{"scales": [0.75, 0.55], "scoring": "max"}``
    options: dict[str, Any] = {}
    #: the localise stage's artifact a learned localiser is loaded from ("localise/localiser@...")
    localiser: str | None = None

    @property
    def label(self) -> str:
        """How figures name it: the localiser's name; for the learned one, ``_x<factors>`` when its
        box enlargements are not the default 1.1, ``_free`` when the box keeps its own aspect, and
        ``_pooled`` for a box pooled from the map."""
        parts = [self.name]
        if self.learned:
            factors = [float(f) for f in self.options.get("factors", [1.1])]
            if factors != [1.1]:
                parts.append("x" + "-".join(f"{f:g}" for f in factors))
            if "aspect" in self.options and self.options["aspect"] is None:
                parts.append("free")
        if self.options.get("pooled"):
            parts.append("pooled")
        return "_".join(parts)

    @property
    def learned(self) -> bool:
        return self.name == LEARNED


#: the learned localiser's name (models/localise.py registers it as ``boxhead``)
LEARNED = "boxhead"


class EvaluateParams(BaseModel):
    split: str = "test"
    ks: list[int] = [1, 5, 10, 20]
    #: white-box baselines by name, plus "pretrained" (the trained model's backbone, untrained head)
    baselines: list[str] = ["colour_histogram", "hog", "pretrained"]
    baseline_image_size: int = 128
    batch_size: int = 32
    #: post-processing of the trained vectors measured on top of them: "qe", "dba", "dba+qe"
    expansions: list[str] = ["qe", "dba", "dba+qe"]
    #: αQE: gallery neighbours averaged into a query, and their weight exponent
    qe_k: int = 2
    qe_alpha: float = 3.0
    #: DBA: neighbours (itself included) averaged into a gallery vector
    dba_k: int = 2
    dba_alpha: float = 3.0
    report: bool = True
    report_seed: int = 0
    #: labelled sets scored beside the shop's split (real photos judge the model)
    benchmarks: list[Benchmark] = []
    #: how street photos are searched: the same step in every evaluation and in the service
    localise: LocaliseParams = Field(default_factory=LocaliseParams)
    #: how the models run while evaluated (a ``models/fast.py`` mode): OpenVINO fp32 gives
    #: eager PyTorch's embeddings up to float rounding, several times faster, and is what
    #: the service runs by default
    inference_mode: str = "openvino"
    #: further precisions of the served model to score (``models/fast.py`` modes, e.g.
    #: "openvino_bf16", "openvino_int8"; one not runnable on this CPU is reported and skipped):
    #: each is scored on the shop split and every benchmark, and the served variant is the
    #: fastest whose ``serve_metric`` on ``judged_on`` is within ``precision_tolerance`` of
    #: ``inference_mode``'s
    precisions: list[str] = []
    precision_tolerance: float = Field(default=0.01, ge=0)
    #: training-split photos that calibrate quantised precisions (never evaluation photos)
    calibration_photos: int = Field(default=64, ge=1)
    #: localisations scored beside ``localise`` with the served model at the served precision
    #: (forward passes and ms per query measured too); the served one is chosen among them
    localise_candidates: list[LocaliseParams] = Field(default_factory=lambda: [LocaliseParams(name="none")])
    #: the learned localiser's variants, scored when the evaluation is given a localiser
    #: artifact: a second pass over the box's crop, and the box pooled from the first pass's map
    learned_candidates: list[LocaliseParams] = Field(default_factory=lambda: [
        LocaliseParams(name=LEARNED, options={"factors": [1.1]}),
        LocaliseParams(name=LEARNED, options={"factors": [1.1], "pooled": True}),
    ])  # fmt: skip
    #: the served localisation: the best ``localise_metric`` on ``judged_on`` among those whose
    #: ms per query is within this budget (ties: fewer passes, then fewer ms); None: no budget.
    #: If none is within it, the fastest is served.
    latency_budget_ms: float | None = Field(default=None, gt=0)
    localise_metric: str = "top1"
    #: query photos of the judging set each localisation's ms per query is timed on
    timing_queries: int = Field(default=64, ge=1)
    #: the served model is the better of trained / pretrained on this figure ...
    serve_metric: str = "top20"
    #: ... of this set (a benchmark's name, or "shop"; default: the first benchmark, else "shop")
    serve_on: str | None = None

    @field_validator("expansions")
    @classmethod
    def _known_expansions(cls, value: list[str]) -> list[str]:
        unknown = sorted(set(value) - set(EXPANSIONS))
        if unknown:
            raise ValueError(f"unknown expansion(s) {unknown}; known: {', '.join(EXPANSIONS)}")
        return value

    @field_validator("precisions", "inference_mode")
    @classmethod
    def _known_modes(cls, value):
        known = list_modes()
        unknown = sorted(set([value] if isinstance(value, str) else value) - set(known))
        if unknown:
            raise ValueError(f"unknown inference mode(s) {unknown}; known: {', '.join(known)}")
        return value

    @field_validator("serve_metric", "localise_metric")
    @classmethod
    def _headline(cls, value: str) -> str:
        if value not in HEADLINE_KEYS:
            raise ValueError(f"serve_metric must be one of {HEADLINE_KEYS}, got {value!r}")
        return value

    @model_validator(mode="after")
    def _benchmarks_known(self) -> EvaluateParams:
        names = [b.name for b in self.benchmarks]
        if len(set(names)) != len(names):
            raise ValueError(f"benchmark names repeat: {names}")
        if self.serve_on is not None and self.serve_on not in (SHOP, *names):
            raise ValueError(f"serve_on {self.serve_on!r} is neither {SHOP!r} nor a benchmark ({names})")
        if self.localise.learned:
            raise ValueError(f"localise: {LEARNED!r} needs the localise stage's artifact; it is a learned candidate, chosen by the rule")
        if any(c.learned for c in self.localise_candidates) or not all(c.learned for c in self.learned_candidates):
            raise ValueError(f"learned_candidates are the {LEARNED!r} ones, localise_candidates the others")
        labels = [c.label for c in (*self.localise_candidates, *self.learned_candidates)]
        if len(set(labels)) != len(labels):
            raise ValueError(f"localisation candidates repeat: {labels}")
        return self

    @property
    def judged_on(self) -> str:
        """Where the served model is chosen: ``serve_on``, else the first benchmark, else the shop."""
        return self.serve_on or (self.benchmarks[0].name if self.benchmarks else SHOP)


@dataclass(frozen=True)
class Features:
    """How one model turns photos into vectors: the gallery's, and the queries' (maybe
    several crops each, combined per gallery photo by ``crop_scoring``)."""

    gallery: FeatureFn
    queries: FeatureFn
    crop_scoring: str = "max"

    @classmethod
    def of(cls, fn: FeatureFn | Features) -> Features:
        return fn if isinstance(fn, Features) else cls(fn, fn)


def evaluate_features(
    features: FeatureFn | Features,
    annotated: pa.Table,
    split: str = "test",
    ks: Sequence[int] = (1, 5, 10, 20),
    gallery_vectors: np.ndarray | None = None,
) -> tuple[RetrievalReport, dict[str, np.ndarray]]:
    """Embed queries of ``split`` and the gallery with ``features`` and score retrieval.

    Returns the report and the vectors (``gallery``, ``queries``) so callers can store them.
    """
    features = Features.of(features)
    queries = query_images(annotated, split)
    gallery = gallery_images(annotated)
    if queries.num_rows == 0:
        raise ValueError(f"no evaluation queries in split {split!r}: is the shop too small or every photo filtered?")
    if gallery_vectors is None:
        gallery_vectors = features.gallery(gallery.column("path").to_pylist())
    query_vectors = features.queries(queries.column("path").to_pylist())
    report = score_vectors(query_vectors, gallery_vectors, annotated, split, ks, features.crop_scoring)
    return report, {"gallery": gallery_vectors, "queries": query_vectors}


def score_vectors(
    query_vectors: np.ndarray,
    gallery_vectors: np.ndarray,
    annotated: pa.Table,
    split: str = "test",
    ks: Sequence[int] = (1, 5, 10, 20),
    crop_scoring: str = "max",
) -> RetrievalReport:
    """Score vectors already computed for ``query_images(annotated, split)`` (rows in that
    order; ``(n, n_crops, d)`` for localised queries) against ``gallery_images(annotated)``.

    ``category`` and ``product_id`` are optional columns: without categories there are no
    per-category figures, without products no "right product, wrong colour" rate (rather
    than a rate that is 0 by construction).
    """
    queries = query_images(annotated, split)
    gallery = gallery_images(annotated)
    if len(query_vectors) != queries.num_rows or len(gallery_vectors) != gallery.num_rows:
        raise ValueError(
            f"got {len(query_vectors)} query and {len(gallery_vectors)} gallery vectors for "
            f"{queries.num_rows} queries and {gallery.num_rows} gallery photos"
        )
    item_product = None
    if _has_values(annotated, "product_id"):
        item_product = dict(zip(annotated.column("item_id").to_pylist(), annotated.column("product_id").to_pylist()))
    categories = queries.column("category").to_pylist() if _has_values(queries, "category") else None
    return evaluate_retrieval(
        query_vectors,
        queries.column("item_id").to_pylist(),
        gallery_vectors,
        gallery.column("item_id").to_pylist(),
        ks=tuple(ks),
        query_categories=categories,
        item_product=item_product,
        crop_scoring=crop_scoring,
    )


def _has_values(table: pa.Table, column: str) -> bool:
    return column in table.column_names and table.num_rows > 0 and table.column(column).null_count == 0


# --------------------------------------------------------------------------- models as features


def localised_features(
    model: Embedder, localise: LocaliseParams, batch_size: int = 32, num_workers: int = 0, learned: OnePassSearch | None = None
) -> Features:
    """A model's features with the query-side localisation ``localise`` (what ``/search`` runs);
    a learned one (``boxhead``) needs ``learned``, that model's one-pass search."""
    gallery = partial(embed_images, model, batch_size=batch_size, num_workers=num_workers)
    if localise.name == "none":
        return Features(gallery, gallery)
    if localise.learned:
        if learned is None:
            raise ValueError(f"localisation {LEARNED!r} needs the learned localiser (a localise artifact)")
        return Features(gallery, partial(learned.embed_paths, batch_size=batch_size), learned.scoring)
    localiser = create_localiser(localise.name, **localise.options)
    scoring = getattr(localiser, "scoring", "max")
    parse_crop_scoring(scoring)
    boxes = getattr(localiser, "boxes", None)  # fixed boxes: the smallest side is known
    min_side = min(min(b[2] - b[0], b[3] - b[1]) for b in boxes) if boxes else 0.25
    queries = partial(
        embed_images, model, batch_size=batch_size, num_workers=num_workers,
        crops=lambda image: localiser(image).boxes, min_crop_side=min_side,
    )  # fmt: skip
    return Features(gallery, queries, scoring)


def candidate_models(model: Embedder, params: EvaluateParams) -> dict[str, Embedder]:
    """The servable models: the trained one and, when asked for as a baseline, its backbone
    with ImageNet weights and a parameter-free head at the same input size."""
    models = {TRAINED: model}
    if PRETRAINED in params.baselines:
        models[PRETRAINED] = pretrained_features(model.config.backbone, image_size=model.preprocess.image_size,
                                                resize=model.preprocess.resize)
    return models


class _Memo:
    """A feature function that computes each list of paths once (the shared backbone pass)."""

    def __init__(self, fn: FeatureFn) -> None:
        self.fn, self.seen = fn, {}

    def __call__(self, paths: list[str]) -> np.ndarray:
        key = tuple(paths)
        if key not in self.seen:
            self.seen[key] = self.fn(paths)
        return self.seen[key]


def feature_functions(models: Mapping[str, Embedder], params: EvaluateParams, num_workers: int = 0) -> dict[str, Features]:
    """Each servable model under the configured localisation (run by ``params.inference_mode``,
    eager where its backend is missing), then the white-box baselines.

    A trained model that refines the pretrained descriptor of its frozen backbone (a residual
    head) reuses the pretrained baseline's backbone pass: its vectors are the head applied to
    the baseline's, so the two cost one pass over the photos (and their crops).
    """
    def fast(model: Embedder) -> Embedder:
        return optimize_for_inference(model, params.inference_mode, fallback="eager")

    fns: dict[str, Features] = {}
    trained, pretrained = models[TRAINED], models.get(PRETRAINED)
    shares_trunk = (
        pretrained is not None and trained.refines_pretrained and trained.config.backbone == pretrained.config.backbone
        and trained.preprocess == pretrained.preprocess
    )  # fmt: skip
    if shares_trunk:
        base = localised_features(fast(pretrained), params.localise, params.batch_size, num_workers)
        base = Features(_Memo(base.gallery), _Memo(base.queries), base.crop_scoring)
        fns[TRAINED] = Features(
            lambda paths: trained.refine_descriptors(base.gallery(paths)),
            lambda paths: trained.refine_descriptors(base.queries(paths)),
            base.crop_scoring,
        )
        fns[PRETRAINED] = base
    else:
        for name, model in models.items():
            fns[name] = localised_features(fast(model), params.localise, params.batch_size, num_workers)
    for name in params.baselines:
        if name not in fns:
            fns[name] = Features.of(partial(baseline_features, name, image_size=params.baseline_image_size))
    return fns


# --------------------------------------------------------------------------- the evaluate stage


@dataclass(frozen=True)
class ModelsEvaluation:
    """What :func:`evaluate_models` measured: the metrics rows, the headline figures, which
    model is served, and the trained model's report and every servable model's vectors on
    the shop split (rows as ``gallery_images`` / ``query_images``)."""

    rows: list[dict[str, Any]]
    figures: dict[str, Any]
    served: str
    report: RetrievalReport
    vectors: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)


def evaluate_models(
    annotated: pa.Table,
    features: Mapping[str, FeatureFn | Features],
    params: EvaluateParams,
    benchmarks: Mapping[str, pa.Table] | None = None,
) -> ModelsEvaluation:
    """Score every model (one of them :data:`TRAINED`) and each expansion of the trained
    vectors on the shop split, the servable models on each benchmark (``name -> annotated``
    table, as :func:`street2shop.sources.labelled.annotated_from_csvs` builds them), and
    choose the served model."""
    if TRAINED not in features:
        raise ValueError(f"features must include {TRAINED!r}; got {sorted(features)}")
    benchmarks = dict(benchmarks or {})
    missing = [b.name for b in params.benchmarks if b.name not in benchmarks]
    if missing:
        raise ValueError(f"benchmark(s) {missing} are configured but were not given")
    features = {name: Features.of(fn) for name, fn in features.items()}
    rows: list[dict[str, Any]] = []
    figures: dict[str, Any] = {}
    vectors: dict[str, dict[str, np.ndarray]] = {}
    trained_report = None
    for name, fn in features.items():
        report, vecs = evaluate_features(fn, annotated, params.split, ks=params.ks)
        rows.extend(report.to_rows(name, params.split))
        figures.update(_headline(name, report))
        if name in SERVABLE:
            vectors[name] = vecs
        if name == TRAINED:
            trained_report = report
            figures.update(
                {
                    "queries": report.overall.get("n_queries"),
                    "gallery": report.overall.get("gallery_size"),
                    "gallery_items": report.overall.get("gallery_items"),
                    # which gallery every figure used: a bigger gallery is harder
                    "gallery_scope": "whole catalogue (every shop photo), exact search",
                }
            )
    assert trained_report is not None
    trained = vectors[TRAINED]
    for expansion in params.expansions:
        queries_x, gallery_x = expand(
            expansion, _one_vector_per_query(trained["queries"]), trained["gallery"],
            params.qe_k, params.qe_alpha, params.dba_k, params.dba_alpha,
        )  # fmt: skip
        report = score_vectors(queries_x, gallery_x, annotated, params.split, params.ks)
        name = f"{TRAINED}+{expansion}"
        rows.extend(report.to_rows(name, params.split))
        figures.update(_headline(name, report))
    for benchmark in params.benchmarks:
        for name in (m for m in SERVABLE if m in features):
            report, _ = evaluate_features(features[name], benchmarks[benchmark.name], "test", ks=params.ks)
            rows.extend(report.to_rows(name, "test", benchmark=benchmark.name))
            figures.update(_headline(name, report, prefix=f"{benchmark.name}:"))
            figures[f"{benchmark.name}:queries"] = report.overall.get("n_queries")
            figures[f"{benchmark.name}:gallery"] = report.overall.get("gallery_size")
    served = choose_served(figures, params, [m for m in SERVABLE if m in features])
    figures["served"] = served
    figures["served_on"] = f"{params.judged_on}:{params.serve_metric}"
    for prefix in ["", *(f"{b.name}:" for b in params.benchmarks)]:
        for key in HEADLINE_KEYS:
            if f"{prefix}{served}_{key}" in figures:
                figures[f"{prefix}served_{key}"] = figures[f"{prefix}{served}_{key}"]
    figures["localise"] = params.localise.name
    return ModelsEvaluation(rows, figures, served, trained_report, vectors)


def choose_served(figures: Mapping[str, Any], params: EvaluateParams, candidates: Sequence[str]) -> str:
    """The candidate with the best ``serve_metric`` on ``judged_on``; the trained model wins ties.

    A NaN (no queries) never wins over a number.
    """
    prefix = "" if params.judged_on == SHOP else f"{params.judged_on}:"

    def value(name: str) -> float:
        v = figures.get(f"{prefix}{name}_{params.serve_metric}", math.nan)
        return -math.inf if v is None or math.isnan(v) else float(v)

    best = TRAINED
    for name in candidates:
        if value(name) > value(best):
            best = name
    return best


# --------------------------------------------------------------------------- precisions


@dataclass(frozen=True)
class PrecisionChoice:
    """The served variant: its mode, and every scored mode's figures (``mode -> figures``:
    ``images_per_s`` of the network on the calibration batch, and the headline figures)."""

    mode: str
    figures: dict[str, dict[str, float]]
    rows: list[dict[str, Any]]
    skipped: dict[str, str]
    #: each scored precision's vectors of the shop split (the reference's are the evaluation's)
    vectors: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    #: the chosen mode's runner (what the localisations are then scored with)
    runner: nn.Module | None = None


def calibration_sample(annotated: pa.Table, n: int, seed: int = 0) -> pa.Table:
    """``n`` photos of the training split (shop and street alike), seeded: what a quantised
    precision is calibrated on. Never a query photo: a store without a training split (a
    catalogue scored with an imported model) calibrates on shop photos, which the service
    indexes anyway."""
    train = annotated.filter(pc.equal(annotated.column("split"), "train"))
    if train.num_rows == 0:
        train = annotated.filter(pc.equal(annotated.column("role"), "shop"))
    if train.num_rows == 0:
        raise ValueError("no training or shop photos to calibrate a quantised precision on")
    order = np.random.default_rng(seed).permutation(train.num_rows)[:n]
    return train.take(pa.array(np.sort(order)))


def calibration_pixels(model: Embedder, paths: Sequence[str]) -> torch.Tensor:
    """The preprocessed calibration photos ``(N, 3, S, S)`` (the service rebuilds the same
    tensor from the same photos, so its int8 model is the one evaluated)."""
    import torch

    return torch.stack([model.preprocess(open_image(path)) for path in paths])


def _images_per_s(model: nn.Module, pixels: torch.Tensor, batch_size: int, repeats: int = 2) -> float:
    """Throughput of the network alone over ``pixels`` (decode excluded; ``bench/embed.py``
    measures it with decoding): the best of ``repeats`` passes after a warm-up batch."""
    import torch

    with torch.inference_mode():
        model(pixels[:batch_size])
        best = math.inf
        for _ in range(repeats):
            started = time.perf_counter()
            for i in range(0, len(pixels), batch_size):
                model(pixels[i : i + batch_size])
            best = min(best, time.perf_counter() - started)
    return len(pixels) / best


def score_precisions(
    model: Embedder,
    annotated: pa.Table,
    params: EvaluateParams,
    benchmarks: Mapping[str, pa.Table],
    baseline_figures: Mapping[str, Any],
    calibration: torch.Tensor,
    num_workers: int = 0,
) -> PrecisionChoice:
    """Score the served ``model`` in each of ``params.precisions`` through the one evaluation
    path (shop split and every benchmark) beside ``params.inference_mode`` (whose figures,
    ``baseline_figures``, the evaluation already has: ``served_*``), and choose the served
    variant: the fastest whose ``serve_metric`` on ``judged_on`` is within
    ``precision_tolerance`` of the reference's."""
    reference = params.inference_mode
    key = params.serve_metric
    judged = "" if params.judged_on == SHOP else f"{params.judged_on}:"
    figures: dict[str, dict[str, float]] = {}
    rows: list[dict[str, Any]] = []
    skipped: dict[str, str] = {}
    vectors: dict[str, dict[str, np.ndarray]] = {}
    runners: dict[str, nn.Module] = {}
    for mode in [reference, *(m for m in params.precisions if m != reference)]:
        try:
            runners[mode] = optimize_for_inference(model, mode, calibration=calibration)
        except (BackendUnavailableError, RuntimeError, ValueError) as exc:
            if mode == reference:
                raise
            skipped[mode] = str(exc).splitlines()[0][:200]
    for mode, runner in runners.items():
        out = {"images_per_s": _images_per_s(runner, calibration, params.batch_size)}
        if mode == reference:
            out |= {f"{prefix}{k}": baseline_figures[f"{prefix}served_{k}"] for prefix in ["", *(f"{b.name}:" for b in params.benchmarks)]
                    for k in HEADLINE_KEYS if f"{prefix}served_{k}" in baseline_figures}
        else:
            fn = localised_features(runner, params.localise, params.batch_size, num_workers)
            report, vectors[mode] = evaluate_features(fn, annotated, params.split, ks=params.ks)
            rows.extend(report.to_rows(f"served@{mode}", params.split))
            out |= {k: report.overall[k] for k in HEADLINE_KEYS if k in report.overall}
            for b in params.benchmarks:
                report, _ = evaluate_features(fn, benchmarks[b.name], "test", ks=params.ks)
                rows.extend(report.to_rows(f"served@{mode}", "test", benchmark=b.name))
                out |= {f"{b.name}:{k}": report.overall[k] for k in HEADLINE_KEYS if k in report.overall}
        figures[mode] = out
    chosen = choose_precision(figures, reference, f"{judged}{key}", params.precision_tolerance)
    return PrecisionChoice(chosen, figures, rows, skipped, vectors, runners[chosen])


def choose_precision(figures: Mapping[str, Mapping[str, float]], reference: str, key: str, tolerance: float) -> str:
    """The fastest mode (``images_per_s``) whose ``key`` is within ``tolerance`` of the
    ``reference`` mode's; the reference itself is always a candidate."""
    floor = figures[reference].get(key, math.nan) - tolerance
    good = [m for m in figures if m == reference or figures[m].get(key, -math.inf) >= floor]
    return max(good, key=lambda m: (figures[m]["images_per_s"], m == reference))


# --------------------------------------------------------------------------- localisations


@dataclass(frozen=True)
class LocalisationChoice:
    """The served localisation and every candidate's figures (``label -> figures``: the
    headline figures on the shop split and each benchmark, ``passes`` and ``ms_per_query``)."""

    served: LocaliseParams
    figures: dict[str, dict[str, float]]
    rows: list[dict[str, Any]]
    rule: str


def localisation_rule(params: EvaluateParams) -> str:
    """The served-localisation rule in words (written into serving.json and the metrics)."""
    budget = "no latency budget" if params.latency_budget_ms is None else f"ms/query <= {params.latency_budget_ms:g}"
    return (f"best {params.localise_metric} on {params.judged_on} among the localisations with {budget} "
            "at the served precision; ties: fewer passes, then fewer ms/query; none within the budget: the fastest")


def choose_localisation(figures: Mapping[str, Mapping[str, float]], key: str, budget_ms: float | None) -> str:
    """The label of the best ``key`` among candidates within ``budget_ms`` ms per query
    (ties: fewer passes, then fewer ms); the fastest when none is within it. NaN never wins."""
    def value(label: str) -> float:
        v = figures[label].get(key, math.nan)
        return -math.inf if v is None or math.isnan(v) else float(v)

    within = [label for label in figures if budget_ms is None or figures[label]["ms_per_query"] <= budget_ms]
    if not within:
        return min(figures, key=lambda label: figures[label]["ms_per_query"])
    return max(within, key=lambda label: (value(label), -figures[label]["passes"], -figures[label]["ms_per_query"]))


def localisation_passes(localise: LocaliseParams, learned: OnePassSearch | None = None) -> int:
    """Forward passes of the network per query photo under ``localise``."""
    if localise.name == "none":
        return 1
    if localise.learned:
        assert learned is not None
        return learned.passes
    from PIL import Image

    return create_localiser(localise.name, **localise.options)(Image.new("RGB", (64, 96))).passes


def ms_per_query(features: Features, paths: Sequence[str], batch_size: int) -> float:
    """Wall-clock ms per query photo of ``features.queries`` (decoding, localisation and every
    pass included) over ``paths``, after one warm-up batch (a runner compiles per shape)."""
    features.queries(list(paths[: min(len(paths), batch_size)]))
    started = time.perf_counter()
    features.queries(list(paths))
    return 1000 * (time.perf_counter() - started) / max(1, len(paths))


def score_localisations(
    runner: nn.Module,
    annotated: pa.Table | None,
    params: EvaluateParams,
    benchmarks: Mapping[str, pa.Table],
    reference_figures: Mapping[str, Any] | None = None,
    learned: Mapping[str, OnePassSearch] | None = None,
    num_workers: int = 0,
) -> LocalisationChoice:
    """Score each localisation with the served model at the served precision (``runner``),
    side by side: ``params.localise`` (whose figures the evaluation may already have:
    ``reference_figures``, ``[<benchmark>:]served_<key>``), ``params.localise_candidates`` and
    the learned ones (``learned``: label -> that candidate's :class:`OnePassSearch`), on the
    shop split (``annotated``; ``None``: the benchmarks only) and each benchmark, with passes
    and ms per query (timed on the judging set's first ``timing_queries`` queries); then
    choose the served one by :func:`choose_localisation`."""
    learned = dict(learned or {})
    others = [c for c in params.localise_candidates if c.label != params.localise.label]
    candidates = [params.localise, *others, *(c for c in params.learned_candidates if c.label in learned)]
    sets = {**({SHOP: (annotated, params.split)} if annotated is not None else {}),
            **{b.name: (benchmarks[b.name], "test") for b in params.benchmarks}}
    judged_table, judged_split = sets[params.judged_on]
    timing_paths = query_images(judged_table, judged_split).column("path").to_pylist()[: params.timing_queries]
    gallery_vectors: dict[str, np.ndarray] = {}
    figures: dict[str, dict[str, float]] = {}
    rows: list[dict[str, Any]] = []
    for candidate in candidates:
        search = learned.get(candidate.label)
        features = localised_features(runner, candidate, params.batch_size, num_workers, learned=search)
        out = {"passes": localisation_passes(candidate, search), "ms_per_query": ms_per_query(features, timing_paths, params.batch_size)}
        for name, (table, split) in sets.items():
            prefix = "" if name == SHOP else f"{name}:"
            if candidate == params.localise and reference_figures is not None:
                out |= {f"{prefix}{k}": reference_figures[f"{prefix}served_{k}"] for k in HEADLINE_KEYS if f"{prefix}served_{k}" in reference_figures}
                continue
            if name not in gallery_vectors:
                gallery_vectors[name] = features.gallery(gallery_images(table).column("path").to_pylist())
            report, _ = evaluate_features(features, table, split, ks=params.ks, gallery_vectors=gallery_vectors[name])
            rows.extend(report.to_rows(f"served@{candidate.label}", split, **({} if name == SHOP else {"benchmark": name})))
            out |= {f"{prefix}{k}": report.overall[k] for k in HEADLINE_KEYS if k in report.overall}
        figures[candidate.label] = out
    judged = "" if params.judged_on == SHOP else f"{params.judged_on}:"
    label = choose_localisation(figures, f"{judged}{params.localise_metric}", params.latency_budget_ms)
    served = next(c for c in candidates if c.label == label)
    return LocalisationChoice(served, figures, rows, localisation_rule(params))


def _one_vector_per_query(query_vectors: np.ndarray) -> np.ndarray:
    """αQE/DBA expand one vector per query: the crops' mean direction for localised queries."""
    if query_vectors.ndim == 3:
        return query_vectors.mean(axis=1)
    return query_vectors


def _headline(name: str, report: RetrievalReport, prefix: str = "") -> dict[str, float]:
    return {f"{prefix}{name}_{key}": report.overall[key] for key in HEADLINE_KEYS if key in report.overall}


def evaluated_vectors(annotated: pa.Table, split: str, vectors: Mapping[str, np.ndarray]) -> tuple[list[str], np.ndarray]:
    """``(image_ids, matrix)`` of the gallery and query vectors, one row per image id.

    A localised query keeps one row: its first crop (the whole photo, for every shipped
    localiser). The same photo may be a gallery image of two items (a re-listing): it keeps
    its first row.
    """
    queries = vectors["queries"]
    if queries.ndim == 3:
        queries = queries[:, 0]
    ids = gallery_images(annotated).column("image_id").to_pylist() + query_images(annotated, split).column("image_id").to_pylist()
    matrix = np.concatenate([vectors["gallery"], queries]).astype(np.float32)
    _, first = np.unique(np.asarray(ids, dtype=object), return_index=True)
    keep = np.sort(first)
    return [ids[i] for i in keep], matrix[keep]


# --------------------------------------------------------------------------- labelled CSVs


def evaluate_csvs(
    model: Embedder,
    gallery_csv: str | Path,
    queries_csv: str | Path,
    ks: Sequence[int] = (1, 5, 10, 20),
    batch_size: int = 32,
    localise: LocaliseParams | None = None,
    learned: OnePassSearch | None = None,
) -> tuple[RetrievalReport, dict[str, np.ndarray], pa.Table]:
    """Score ``model`` on a labelled set of CSVs (:mod:`street2shop.sources.labelled`), with
    the query-side localisation ``localise`` (a learned one runs ``learned``); returns the
    report, the vectors and the annotated table."""
    annotated = annotated_from_csvs(read_labelled_csv(gallery_csv), read_labelled_csv(queries_csv))
    features = localised_features(model, localise or LocaliseParams(), batch_size=batch_size, learned=learned)
    report, vectors = evaluate_features(features, annotated, SPLIT, ks=ks)
    return report, vectors, annotated


def metrics_json(report: RetrievalReport) -> dict:
    """``{"overall": {...}, "per_category": {category: {...}}}`` with keys ``top1``, ``map``, ..."""
    return {"overall": dict(report.overall), "per_category": {c: dict(v) for c, v in sorted(report.per_category.items())}}


__all__ = [
    "EXPANSIONS",
    "Benchmark",
    "EvaluateParams",
    "FeatureFn",
    "Features",
    "LocaliseParams",
    "ModelsEvaluation",
    "candidate_models",
    "choose_precision",
    "choose_served",
    "choose_localisation",
    "LEARNED",
    "LocalisationChoice",
    "localisation_rule",
    "ms_per_query",
    "score_localisations",
    "PrecisionChoice",
    "calibration_pixels",
    "calibration_sample",
    "score_precisions",
    "evaluate_csvs",
    "evaluate_features",
    "evaluate_models",
    "evaluated_vectors",
    "expand",
    "feature_functions",
    "localised_features",
    "metrics_json",
    "score_vectors",
]
