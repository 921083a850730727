"""Outfit stages' tasks: ``outfit_train`` and ``outfit_evaluate``, and the Polyvore source.

* ``outfit_train``: the outfits of a crawl (or of Polyvore), restricted to items with
  features, split (``cleaning/outfits.py``: by product group by default, or the data set's
  own split), and every compatibility model variant trained on the frozen photo features;
  publishes ``outfit_splits`` and ``outfit_model`` (``outfits.pt``).
* ``outfit_evaluate``: compatibility AUC and FITB accuracy of every variant and the
  baselines (chance, the untrained features), per outfit size, on the test split; publishes
  the questions asked (``outfit_questions``) and ``outfit_metrics`` with ``outfits.html``.
* ``polyvore``: a Polyvore Outfits folder published as ``items``, ``images``, ``outfits``,
  its own ``outfit_splits`` and ``outfit_questions`` (versioned by content), so the two stages
  above run on it unchanged and score the data set's own questions.

An item's features are the mean of its shop photos' features; its type is the type the
outfits give it, and an item in no outfit takes the usual type of its category.
"""

from __future__ import annotations

import base64
import io
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from html import escape
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from prefect import task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel, ConfigDict, Field

from street2shop.cleaning.outfits import (
    OutfitSplitParams,
    largest_unit_share,
    leaks,
    split_outfits,
    usable_outfits,
)
from street2shop.models.features import FeatureParams
from street2shop.models.outfits import (
    VARIANTS,
    OutfitData,
    OutfitScorer,
    OutfitTrainParams,
    load_outfit_models,
    save_outfit_models,
    train_variant,
)
from street2shop.retrieval.outfit_metrics import (
    chance_rows,
    make_questions,
    score_questions,
)
from street2shop.sources.polyvore import Version, read_polyvore
from street2shop.storage import names as N
from street2shop.storage.images import open_image
from street2shop.storage.schemas import IMAGES as IMAGES_SCHEMA
from street2shop.storage.store import ArtifactRef, ArtifactStore, content_version
from street2shop.tasks.features import item_features
from street2shop.tasks.stage import StageResult, report_to_prefect, run_stage

TRAIN_CODE_VERSION = "1"
EVALUATE_CODE_VERSION = "1"
POLYVORE_CODE_VERSION = "1"
#: the untrained baseline: the frozen features, cosine distance
BACKBONE = "backbone"
RANDOM = "random"


class OutfitEvaluateParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    #: made-up outfits per real one in the compatibility questions
    negatives_per_outfit: int = Field(1, ge=1)
    seed: int = 0
    #: FITB questions shown in the report
    examples: int = Field(8, ge=0)


class OutfitConfig(BaseModel):
    """The pipeline's ``outfits:`` section: features, split, training and evaluation."""

    model_config = ConfigDict(extra="forbid")

    features: FeatureParams = Field(default_factory=FeatureParams)
    split: OutfitSplitParams = Field(default_factory=OutfitSplitParams)
    train: OutfitTrainParams = Field(default_factory=OutfitTrainParams)
    evaluate: OutfitEvaluateParams = Field(default_factory=OutfitEvaluateParams)


class OutfitRefs(BaseModel):
    """The inputs of the outfit stages (part of their versions)."""

    items: ArtifactRef
    images: ArtifactRef
    outfits: ArtifactRef
    features: ArtifactRef
    #: product groups (a crawl's dedup); None: each item is its own product
    groups: ArtifactRef | None = None
    #: a data set's own split and questions (Polyvore); None: made here
    splits: ArtifactRef | None = None
    questions: ArtifactRef | None = None

    def as_inputs(self) -> dict[str, ArtifactRef]:
        return {k: v for k, v in ((n, getattr(self, n)) for n in type(self).model_fields) if v is not None}


# -- the shared view -------------------------------------------------------------------------
@dataclass
class OutfitView:
    """What both stages read: usable outfits, item features and types."""

    outfits: pa.Table  # usable OUTFITS
    features: dict[str, np.ndarray]  # item id -> mean feature of its shop photos
    type_of: dict[str, str]  # every item with features -> type
    type_of_category: dict[str, str]
    category_of: dict[str, str]
    photo_of: dict[str, str]  # item id -> a shop photo's path (the report)
    group_of: dict[str, str]


def load_view(store: ArtifactStore, refs: OutfitRefs, min_items: int = 2) -> OutfitView:
    features, photo_of = item_features(store, refs.images, refs.features)
    items = store.read_table(refs.items)
    category_of = dict(zip(items.column("item_id").to_pylist(), items.column("category").to_pylist()))
    raw = store.read_table(refs.outfits)
    outfit_type = dict(zip(raw.column("item_id").to_pylist(), raw.column("type").to_pylist()))
    votes: dict[str, Counter] = defaultdict(Counter)
    for item, t in outfit_type.items():
        votes[category_of.get(item, "unknown")][t] += 1
    type_of_category = {c: v.most_common(1)[0][0] for c, v in sorted(votes.items())}
    type_of = {}
    for item in features:
        t = outfit_type.get(item) or type_of_category.get(category_of.get(item, ""))
        if t is not None:
            type_of[item] = t
    group_of = {}
    if refs.groups is not None:
        groups = store.read_table(refs.groups)
        group_of = dict(zip(groups.column("item_id").to_pylist(), groups.column("group_id").to_pylist()))
    usable = usable_outfits(raw, set(type_of), min_items)
    return OutfitView(usable, {i: features[i] for i in type_of}, type_of, type_of_category, category_of, photo_of, group_of)


def _data(view: OutfitView, splits: pa.Table) -> OutfitData:
    ids = sorted(view.features)
    data = OutfitData(np.stack([view.features[i] for i in ids]), ids, [view.type_of[i] for i in ids], {})
    split_of = dict(zip(splits.column("outfit_id").to_pylist(), splits.column("split").to_pylist()))
    members: dict[str, list[int]] = defaultdict(list)
    for oid, item in zip(view.outfits.column("outfit_id").to_pylist(), view.outfits.column("item_id").to_pylist()):
        members[oid].append(data.index[item])
    for oid in sorted(members):
        if oid in split_of:
            data.outfits.setdefault(split_of[oid], []).append(members[oid])
    return data


# -- outfit_train ------------------------------------------------------------------------------
def run_outfit_train(store: ArtifactStore, refs: OutfitRefs, split: OutfitSplitParams, params: OutfitTrainParams) -> StageResult:
    for v in (*params.variants, params.serve):
        VARIANTS.get(v)  # an unknown name fails before any work
    if params.serve not in params.variants:
        raise ValueError(f"serve={params.serve!r} is not among the variants trained: {params.variants}")
    features_params = store.manifest(refs.features).params

    def compute(writers) -> None:
        view = load_view(store, refs, split.min_items)
        if refs.splits is not None:  # the data set's own
            given = store.read_table(refs.splits)
            known = set(view.outfits.column("outfit_id").to_pylist())
            splits = given.filter(pc.is_in(given.column("outfit_id"), pa.array(sorted(known), pa.string())))
        else:
            splits = split_outfits(view.outfits, split.kind, view.group_of, split.fractions, split.seed)
        data = _data(view, splits)
        val = []
        if refs.questions is None:
            val_q = make_questions(view.outfits, splits, view.type_of, seed=split.seed, which=("val",))
        else:
            q = store.read_table(refs.questions)
            val_q = q.filter(pc.equal(q.column("split"), "val"))
        for row in val_q.to_pylist():
            if row["kind"] == "compatibility" and all(i in data.index for i in row["items"]):
                val.append(([data.index[i] for i in row["items"]], row["label"]))
        trained = [train_variant(data, v, params, val) for v in params.variants]
        train_items = sorted({data.item_ids[i] for o in data.outfits.get("train", []) for i in o})
        by_type: dict[str, list[np.ndarray]] = defaultdict(list)
        for item in train_items:
            by_type[view.type_of[item]].append(view.features[item])
        centroids = {t: (np.mean(v, 0) / max(float(np.linalg.norm(np.mean(v, 0))), 1e-12)).astype(np.float32)
                     for t, v in by_type.items()}
        w = writers[N.OUTFIT_MODEL]
        save_outfit_models(w.path(N.OUTFIT_MODEL_FILE), trained, params, in_dim=data.features.shape[1],
                           type_of_category=view.type_of_category, centroids=centroids, features=features_params)
        writers[N.OUTFIT_SPLITS].write_table(splits)
        counts = Counter(splits.column("split").to_pylist())
        key_leaks = leaks(view.outfits, splits, view.group_of if split.kind == "group" else None)
        if refs.splits is None:
            figures_unit = {"largest_unit_share": round(largest_unit_share(view.outfits, split.kind, view.group_of), 4)}
        else:
            figures_unit = {}
        figures = {f"outfits_{s}": counts.get(s, 0) for s in ("train", "val", "test")} | figures_unit
        figures.update({"items": len(view.features), "split": "given" if refs.splits is not None else split.kind,
                        "leaking_keys": len(key_leaks) if refs.splits is None else -1,
                        "types": sorted(set(view.type_of.values()))})
        for t in trained:
            figures[f"{t.variant}_train_s"] = round(t.seconds, 2)
            figures[f"{t.variant}_best_epoch"] = t.best_epoch
            figures[f"{t.variant}_val_auc"] = round(t.val_auc, 4) if t.val_auc == t.val_auc else None
        figures["train_s"] = round(sum(t.seconds for t in trained), 2)
        if refs.splits is None and split.kind != "outfit" and key_leaks:
            raise AssertionError(f"{split.kind} split leaks across splits: {list(key_leaks)[:5]}")
        for name in (N.OUTFIT_MODEL, N.OUTFIT_SPLITS):
            writers[name].metrics.update(figures)

    return run_stage(store, N.OUTFIT_TRAIN, TRAIN_CODE_VERSION, (N.OUTFIT_MODEL, N.OUTFIT_SPLITS), compute,
                     inputs=refs.as_inputs(), params={"split": split, "train": params})


# -- outfit_evaluate ---------------------------------------------------------------------------
def run_outfit_evaluate(store: ArtifactStore, refs: OutfitRefs, model: ArtifactRef, params: OutfitEvaluateParams) -> StageResult:
    splits_ref = ArtifactRef(stage=model.stage, name=N.OUTFIT_SPLITS, version=model.version)
    inputs = {**refs.as_inputs(), "outfit_model": model, "outfit_splits": splits_ref}

    def compute(writers) -> None:
        view = load_view(store, refs)
        splits = store.read_table(splits_ref)
        if refs.questions is not None:
            questions = store.read_table(refs.questions)
            known = set(view.features)
            ok = [all(i in known for i in (r["items"] + (r["candidates"] or []))) for r in questions.to_pylist()]
            questions = questions.filter(pa.array(ok))
        else:
            questions = make_questions(view.outfits, splits, view.type_of, params.seed, params.negatives_per_outfit)
        test = questions.filter(pc.equal(questions.column("split"), "test"))
        loaded = load_outfit_models(store.file(model, N.OUTFIT_MODEL_FILE))
        scorers = {BACKBONE: OutfitScorer.of_features(view.features, view.type_of)}
        scorers.update({name: OutfitScorer.of_model(m, view.features, view.type_of) for name, m in loaded.models.items()})
        tables = [chance_rows(test, RANDOM)]
        answers = {}
        seconds = {}
        for name, scorer in scorers.items():
            started = time.perf_counter()
            table, answers[name] = score_questions(test, name, scorer.outfit, scorer.candidates)
            seconds[name] = time.perf_counter() - started
            tables.append(table)
        metrics = pa.concat_tables(tables)
        writers[N.OUTFIT_QUESTIONS].write_table(questions)
        w = writers[N.OUTFIT_METRICS]
        w.write_table(metrics)
        figures = {}
        for row in metrics.to_pylist():
            if row["size"] == 0:
                figures[f"{row['model']}_{row['metric']}"] = round(row["value"], 4)
        figures["test_compatibility_questions"] = int(pc.sum(pc.equal(test.column("kind"), "compatibility")).as_py() or 0)
        figures["test_fitb_questions"] = int(pc.sum(pc.equal(test.column("kind"), "fitb")).as_py() or 0)
        figures["served"] = loaded.params.serve
        w.metrics.update(figures)
        writers[N.OUTFIT_QUESTIONS].metrics.update(figures)
        (w.path(N.OUTFIT_REPORT_FILE)).write_text(
            outfit_report(metrics, test, answers, view, params.examples, store.manifest(model).metrics), encoding="utf-8")

    return run_stage(store, N.OUTFIT_EVALUATE, EVALUATE_CODE_VERSION, (N.OUTFIT_METRICS, N.OUTFIT_QUESTIONS), compute,
                     inputs=inputs, params=params)


def _thumb(path: str | None, side: int = 96) -> str:
    if not path:
        return ""
    try:
        image = open_image(path)
    except Exception:  # noqa: BLE001 - a report shows what it can
        return ""
    image.thumbnail((side, side))
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=80)
    return f"<img src=\"data:image/jpeg;base64,{base64.b64encode(buf.getvalue()).decode()}\" width=\"{image.width}\">"


def outfit_report(metrics: pa.Table, test: pa.Table, answers: dict[str, dict], view: OutfitView, examples: int,
                  train_figures: dict) -> str:
    """A self-contained HTML page: the figures per model and size, and FITB examples with
    what each model picked, so a person can judge."""
    rows = metrics.to_pylist()
    models = list(dict.fromkeys(r["model"] for r in rows))
    sizes = sorted({r["size"] for r in rows})
    value = {(r["model"], r["metric"], r["size"]): r for r in rows}
    head = "".join(f"<th>{m} {'all' if z == 0 else f'size {z}'}</th>" for m in ("AUC", "FITB") for z in sizes)
    body = []
    for model in models:
        cells = []
        for metric in ("auc", "fitb"):
            for z in sizes:
                r = value.get((model, metric, z))
                cells.append(f"<td>{r['value']:.3f} <small>({r['n']})</small></td>" if r else "<td></td>")
        seconds = train_figures.get(f"{model}_train_s")
        body.append(f"<tr><td>{escape(model)}</td>{''.join(cells)}<td>{seconds if seconds is not None else ''}</td></tr>")
    table = f"<table><tr><th>model</th>{head}<th>train s</th></tr>{''.join(body)}</table>"
    fitb = [q for q in test.to_pylist() if q["kind"] == "fitb"][:examples]
    shown = [m for m in models if m != RANDOM]
    blocks = []
    for q in fitb:
        context = "".join(_thumb(view.photo_of.get(i)) for i in q["items"])
        cands = []
        for k, c in enumerate(q["candidates"]):
            picked = [m for m in shown if np.argmax(answers[m][q["question_id"]]) == k]
            mark = "right" if k == q["label"] else ""
            cands.append(f"<div class=\"cand {mark}\">{_thumb(view.photo_of.get(c))}<br><small>{escape(', '.join(picked))}</small></div>")
        blocks.append(f"<div class=\"q\"><div>{escape(q['question_id'])}: the outfit</div>{context}"
                      f"<div>candidates (green: right; under each: the models that chose it)</div>{''.join(cands)}</div>")
    style = ("body{font-family:sans-serif;margin:1em}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 6px}"
             ".q{margin:1em 0;padding:.5em;background:#f6f6f6}.cand{display:inline-block;margin:2px;padding:2px;text-align:center}"
             ".right{outline:3px solid #2a2}")
    return (f"<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>Outfit compatibility</title><style>{style}</style></head>"
            f"<body><h1>Outfit compatibility (test split)</h1><p>AUC: real outfits against outfits of random items of the "
            f"same types. FITB: four candidates of the blank's type; chance 0.25. In brackets: questions.</p>{table}"
            f"<h2>Fill in the blank: examples</h2>{''.join(blocks)}</body></html>")


# -- polyvore ----------------------------------------------------------------------------------
class PolyvoreParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    path: str
    version: Version = "nondisjoint"


POLYVORE_OUTPUTS = (N.ITEMS, N.IMAGES, N.OUTFITS, N.OUTFIT_SPLITS, N.OUTFIT_QUESTIONS)


def run_polyvore(store: ArtifactStore, params: PolyvoreParams) -> StageResult:
    data = read_polyvore(params.path, params.version)
    images = []
    for item, path in sorted(data.image_paths.items()):
        blob = Path(path).read_bytes()
        sha, rel = store.blobs.put(blob, "jpg")
        photo = open_image(blob)
        images.append({"image_id": sha, "item_id": item, "role": "shop", "path": rel, "width": photo.width,
                       "height": photo.height, "source_url": Path(path).resolve().as_uri(), "review_id": None})
    tables = {N.ITEMS: data.items, N.IMAGES: pa.Table.from_pylist(images, schema=IMAGES_SCHEMA), N.OUTFITS: data.outfits,
              N.OUTFIT_SPLITS: data.splits, N.OUTFIT_QUESTIONS: data.questions}

    def compute(writers) -> None:
        for name, table in tables.items():
            writers[name].write_table(table)
        counts = Counter(data.splits.column("split").to_pylist())
        writers[N.OUTFITS].metrics.update({"items": data.items.num_rows, "version": params.version,
                                           **{f"outfits_{s}": counts.get(s, 0) for s in ("train", "val", "test")},
                                           "questions": data.questions.num_rows})

    version = content_version(tables, extra={"code": POLYVORE_CODE_VERSION})
    return run_stage(store, N.POLYVORE, POLYVORE_CODE_VERSION, POLYVORE_OUTPUTS, compute, params=params, version=version)


# -- Prefect tasks -----------------------------------------------------------------------------
@task(name="outfit-train", cache_policy=NO_CACHE)
def outfit_train_task(home: str, refs: OutfitRefs, split: OutfitSplitParams, params: OutfitTrainParams) -> StageResult:
    result = run_outfit_train(ArtifactStore(home), refs, split, params)
    report_to_prefect(result, "outfit_train")
    return result


@task(name="outfit-evaluate", cache_policy=NO_CACHE)
def outfit_evaluate_task(home: str, refs: OutfitRefs, model: ArtifactRef, params: OutfitEvaluateParams) -> StageResult:
    result = run_outfit_evaluate(ArtifactStore(home), refs, model, params)
    report_to_prefect(result, "outfit_evaluate")
    return result


@task(name="polyvore", cache_policy=NO_CACHE)
def polyvore_task(home: str, params: PolyvoreParams) -> StageResult:
    result = run_polyvore(ArtifactStore(home), params)
    report_to_prefect(result, "polyvore")
    return result
