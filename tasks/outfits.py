"""Outfit stages' tasks: ``outfit_train`` and ``outfit_evaluate``, and the Polyvore source.

* ``outfit_train``: the outfits of a crawl (or of Polyvore), restricted to items with
  features, split (``cleaning/outfits.py``: by product group by default, or the data set's
  own split), and every compatibility model variant trained on the frozen photo features
  (early stopping on validation outfits); the model served is the best of the variants and
  the untrained features on the *validation* questions (``serve_by_validation``: mean of AUC
  and FITB; the baseline wins a tie), and every candidate's validation figures are in the
  manifest (``candidates``, ``served``, ``serve_rule``); publishes ``outfit_splits`` and
  ``outfit_model`` (``outfits.pt``).
* ``outfit_evaluate``: compatibility AUC and FITB accuracy of every variant and the
  baselines (chance, the untrained features), per outfit size, on the test split, with 95 %
  bootstrap intervals, and on training outfits (the train-test gap); publishes the questions
  asked (``outfit_questions``) and ``outfit_metrics`` with ``outfits.html``.
* ``polyvore``: a Polyvore Outfits folder published as ``items``, ``images``, ``outfits``,
  its own ``outfit_splits`` and ``outfit_questions`` (versioned by content), so the two stages
  above run on it unchanged and score the data set's own questions.

An item's features are the mean of its shop photos' features; its type is the type the
outfits give it, and an item in no outfit takes the usual type of its category.
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from prefect import task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel, ConfigDict, Field

from street2shop.cleaning.outfits import OutfitSplitParams, largest_unit_share, leaks, split_outfits
from street2shop.models.outfit_view import OutfitRefs, load_view, outfit_data
from street2shop.models.outfits import (
    BACKBONE,
    VARIANTS,
    OutfitScorer,
    OutfitTrainParams,
    load_outfit_models,
    save_outfit_models,
    train_variant,
)
from street2shop.retrieval.outfit_metrics import (
    chance_rows,
    make_questions,
    question_intervals,
    score_questions,
    serve_by_validation,
)
from street2shop.retrieval.outfit_report import RANDOM, outfit_report
from street2shop.sources.polyvore import PolyvoreParams, polyvore_tables
from street2shop.storage import names as N
from street2shop.storage.store import ArtifactRef, ArtifactStore, content_version
from street2shop.tasks.features import FeaturesConfig
from street2shop.tasks.stage import StageResult, report_to_prefect, run_stage

TRAIN_CODE_VERSION = "2"
EVALUATE_CODE_VERSION = "2"
POLYVORE_CODE_VERSION = "1"


class OutfitEvaluateParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    #: made-up outfits per real one in the compatibility questions
    negatives_per_outfit: int = Field(1, ge=1)
    seed: int = 0
    #: FITB questions shown in the report
    examples: int = Field(8, ge=0)


class OutfitConfig(FeaturesConfig):
    """The pipeline's ``outfits:`` section: features, split, training and evaluation."""

    train: OutfitTrainParams = Field(default_factory=OutfitTrainParams)
    evaluate: OutfitEvaluateParams = Field(default_factory=OutfitEvaluateParams)


# -- outfit_train ------------------------------------------------------------------------------
def run_outfit_train(store: ArtifactStore, refs: OutfitRefs, split: OutfitSplitParams, params: OutfitTrainParams) -> StageResult:
    for v in params.variants:
        VARIANTS.get(v)  # an unknown name fails before any work
    if params.serve not in (*params.variants, BACKBONE, "best"):
        raise ValueError(f"serve={params.serve!r} is not 'best', {BACKBONE!r} or a variant trained: {params.variants}")
    features_params = store.manifest(refs.features).params

    def compute(writers) -> None:
        view = load_view(store, refs, split.min_items)
        if refs.splits is not None:  # the data set's own
            given = store.read_table(refs.splits)
            known = set(view.outfits.column("outfit_id").to_pylist())
            splits = given.filter(pc.is_in(given.column("outfit_id"), pa.array(sorted(known), pa.string())))
        else:
            splits = split_outfits(view.outfits, split.kind, view.group_of, split.fractions, split.seed)
        data = outfit_data(view, splits)
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
        served, rule, candidates = _choose(view, val_q, trained, params.serve)
        train_items = sorted({data.item_ids[i] for o in data.outfits.get("train", []) for i in o})
        by_type: dict[str, list[np.ndarray]] = defaultdict(list)
        for item in train_items:
            by_type[view.type_of[item]].append(view.features[item])
        centroids = {t: (np.mean(v, 0) / max(float(np.linalg.norm(np.mean(v, 0))), 1e-12)).astype(np.float32)
                     for t, v in by_type.items()}
        w = writers[N.OUTFIT_MODEL]
        save_outfit_models(w.path(N.OUTFIT_MODEL_FILE), trained, params, in_dim=data.features.shape[1],
                           type_of_category=view.type_of_category, centroids=centroids, features=features_params,
                           served=served)
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
        figures.update({"served": served, "serve_rule": rule, "candidates": candidates})
        if refs.splits is None and split.kind != "outfit" and key_leaks:
            raise AssertionError(f"{split.kind} split leaks across splits: {list(key_leaks)[:5]}")
        for name in (N.OUTFIT_MODEL, N.OUTFIT_SPLITS):
            writers[name].metrics.update(figures)

    return run_stage(store, N.OUTFIT_TRAIN, TRAIN_CODE_VERSION, (N.OUTFIT_MODEL, N.OUTFIT_SPLITS), compute,
                     inputs=refs.as_inputs(), params={"split": split, "train": params})


def _choose(view, val_q: pa.Table, trained, serve: str) -> tuple[str, str, dict]:
    """(served, rule, candidates' validation figures): each trained variant and the backbone
    answer the validation questions; the score is the mean of AUC and FITB accuracy."""
    known = set(view.features)
    ok = [all(i in known for i in (r["items"] + (r["candidates"] or []))) for r in val_q.to_pylist()]
    val_q = val_q.filter(pa.array(ok, pa.bool_()))
    scorers = {BACKBONE: OutfitScorer.of_features(view.features, view.type_of)}
    scorers.update({t.variant: OutfitScorer.of_model(t.model, view.features, view.type_of) for t in trained})
    candidates = {}
    for name, scorer in scorers.items():
        table, _ = score_questions(val_q, name, scorer.outfit, scorer.candidates)
        got = {r["metric"]: r["value"] for r in table.to_pylist() if r["size"] == 0}
        auc, fitb = got.get("auc", float("nan")), got.get("fitb", float("nan"))
        known = [v for v in (auc, fitb) if v == v]  # a split too small for one kind of question: the other alone
        candidates[name] = {"val_auc": round(auc, 4) if auc == auc else None,
                            "val_fitb": round(fitb, 4) if fitb == fitb else None,
                            "val_score": round(sum(known) / len(known), 4) if known else None}
    scores = {n: (c["val_score"] if c["val_score"] is not None else float("nan")) for n, c in candidates.items()}
    served, rule = serve_by_validation(scores, [BACKBONE], serve)
    return served, f"{rule} (score: mean of validation AUC and FITB)", candidates


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
        # the training outfits asked the same way: how far each model's figures fall from them
        train_q = make_questions(view.outfits, splits, view.type_of, params.seed, params.negatives_per_outfit, which=("train",))
        loaded = load_outfit_models(store.file(model, N.OUTFIT_MODEL_FILE))
        scorers = {BACKBONE: OutfitScorer.of_features(view.features, view.type_of)}
        scorers.update({name: OutfitScorer.of_model(m, view.features, view.type_of) for name, m in loaded.models.items()})
        tables = [chance_rows(test, RANDOM)]
        answers = {}
        seconds = {}
        intervals = {}
        train_figures = {}
        for name, scorer in scorers.items():
            started = time.perf_counter()
            table, answers[name] = score_questions(test, name, scorer.outfit, scorer.candidates)
            seconds[name] = time.perf_counter() - started
            tables.append(table)
            intervals[name] = question_intervals(test, answers[name], params.seed)
            on_train, _ = score_questions(train_q, name, scorer.outfit, scorer.candidates)
            train_figures.update({f"{name}_{r['metric']}_train": round(r["value"], 4) for r in on_train.to_pylist() if r["size"] == 0})
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
        for name, ci in intervals.items():
            for metric, (lo, hi) in ci.items():
                figures[f"{name}_{metric}_ci95"] = [round(lo, 4), round(hi, 4)] if lo == lo else None
                if f"{name}_{metric}" in figures and f"{name}_{metric}_train" in train_figures:
                    figures[f"{name}_{metric}_train_gap"] = round(train_figures[f"{name}_{metric}_train"] - figures[f"{name}_{metric}"], 4)
        figures.update(train_figures)
        figures["served"] = loaded.served_name
        figures["served_test"] = {m: figures.get(f"{loaded.served_name}_{m}") for m in ("auc", "fitb")} | {
            f"{m}_ci95": figures.get(f"{loaded.served_name}_{m}_ci95") for m in ("auc", "fitb")}
        w.metrics.update(figures)
        writers[N.OUTFIT_QUESTIONS].metrics.update(figures)
        (w.path(N.OUTFIT_REPORT_FILE)).write_text(
            outfit_report(metrics, test, answers, view, params.examples, store.manifest(model).metrics, figures), encoding="utf-8")

    return run_stage(store, N.OUTFIT_EVALUATE, EVALUATE_CODE_VERSION, (N.OUTFIT_METRICS, N.OUTFIT_QUESTIONS), compute,
                     inputs=inputs, params=params)


# -- polyvore ----------------------------------------------------------------------------------
POLYVORE_OUTPUTS = (N.ITEMS, N.IMAGES, N.OUTFITS, N.OUTFIT_SPLITS, N.OUTFIT_QUESTIONS)


def run_polyvore(store: ArtifactStore, params: PolyvoreParams) -> StageResult:
    data, tables = polyvore_tables(store, params)

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
    return report_to_prefect(run_outfit_train(ArtifactStore(home), refs, split, params))


@task(name="outfit-evaluate", cache_policy=NO_CACHE)
def outfit_evaluate_task(home: str, refs: OutfitRefs, model: ArtifactRef, params: OutfitEvaluateParams) -> StageResult:
    return report_to_prefect(run_outfit_evaluate(ArtifactStore(home), refs, model, params))


@task(name="polyvore", cache_policy=NO_CACHE)
def polyvore_task(home: str, params: PolyvoreParams) -> StageResult:
    return report_to_prefect(run_polyvore(ArtifactStore(home), params))
