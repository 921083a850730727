"""Shop-the-look stages' tasks: ``looks_train`` and ``looks_evaluate``.

* ``looks_train``: lookbook posts (``snaps`` + ``snap_items`` of a crawl) split so that no
  post and no product group is in two splits (posts sharing a product are one unit:
  ``cleaning/outfits.split_outfits`` with posts for outfits), then one CGD head per loss
  (softmax with label smoothing and temperature, ArcFace) on the frozen features of the
  posts' photos and of the items' shop photos, and, given the street-to-shop embedder, one per
  loss on its descriptor; each stops early on validation posts. The space served is the best
  on *validation* posts (snapshot -> items mAP@k) of the heads and the baselines (the untrained
  features, the embedder's own embedding): ``serve_by_validation``, a baseline wins a tie; the
  rule and every candidate's validation figure are in the manifest (``candidates``,
  ``served``, ``serve_rule``); publishes ``looks_splits`` and ``looks_model``.
* ``looks_evaluate``: on held-out posts, snapshot -> items (gallery: every item of the shop)
  and item -> snapshots (gallery: every post), mAP@6, recall@6 and hit@6, for the trained
  heads and the baselines (the untrained features; the street-to-shop embedder's own
  embedding, when its checkpoint is given), each with αQE and DBA off and on, per style, and
  the training posts' figures beside the test ones (how much each loss overfits) and 95 %
  bootstrap intervals of the test mAP; publishes ``looks_metrics`` with ``looks.html``.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pyarrow as pa
from prefect import task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel, ConfigDict, Field

from street2shop.cleaning.outfits import OutfitSplitParams, leaks, look_leaks, split_outfits
from street2shop.models.embed import embed_images
from street2shop.models.embedder import load_embedder
from street2shop.models.looks import (
    BACKBONE,
    STREET2SHOP,
    Embedded,
    LooksTrainParams,
    embed,
    load_looks,
    save_looks,
    train_and_select,
    unit,
)
from street2shop.models.looks_view import LooksRefs, layout_of, load_looks_view, posts_table
from street2shop.retrieval.expansion import EXPANSIONS
from street2shop.retrieval.look_metrics import K, invert, rank_metrics
from street2shop.retrieval.looks_report import looks_report
from street2shop.storage import names as N
from street2shop.storage.schemas import LOOKS_METRICS, LOOKS_SPLITS
from street2shop.storage.store import ArtifactRef, ArtifactStore
from street2shop.tasks.features import FeaturesConfig
from street2shop.tasks.stage import StageResult, report_to_prefect, run_stage

TRAIN_CODE_VERSION = "2"
EVALUATE_CODE_VERSION = "2"


class LooksEvaluateParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    k: int = Field(K, ge=1)
    #: test posts shown in the report's grids
    examples: int = Field(6, ge=0)


class LooksConfig(FeaturesConfig):
    """The pipeline's ``looks:`` section."""

    #: "look": no post, photo or outfit in two splits; items may be (cleaning/outfits.py)
    split: OutfitSplitParams = Field(default_factory=lambda: OutfitSplitParams(kind="look"))
    train: LooksTrainParams = Field(default_factory=LooksTrainParams)
    evaluate: LooksEvaluateParams = Field(default_factory=LooksEvaluateParams)


# -- looks_train -------------------------------------------------------------------------------
def _embedded(store: ArtifactStore, checkpoint: ArtifactRef, view) -> Embedded:
    """The street-to-shop embedder's descriptors of every item and post of ``view``."""
    embedder = load_embedder(store.file(checkpoint, N.CHECKPOINT_FILE))
    item_ids, snap_ids = sorted(view.items), sorted(view.snaps)
    items = embed_images(embedder, [view.photo_of[i] for i in item_ids], num_workers=0, device="cpu")
    snaps = embed_images(embedder, [view.snap_photo[s] for s in snap_ids], num_workers=0, device="cpu")
    return Embedded(checkpoint.model_dump(mode="json"), dict(zip(item_ids, items)), dict(zip(snap_ids, snaps)))


def run_looks_train(store: ArtifactStore, refs: LooksRefs, split: OutfitSplitParams, params: LooksTrainParams,
                    checkpoint: ArtifactRef | None = None) -> StageResult:
    heads = [f"cgd_{loss}" for loss in params.losses] + ([f"cgd_{loss}_s2s" for loss in params.losses]
                                                           if checkpoint is not None and params.on_embedder else [])
    if params.serve not in ("best", BACKBONE, *heads, *([STREET2SHOP] if checkpoint is not None else [])):
        raise ValueError(f"serve={params.serve!r} is not 'best', a baseline or a head trained: {heads}")
    inputs = refs.as_inputs() | ({"checkpoint": checkpoint} if checkpoint is not None else {})

    def compute(writers) -> None:
        view = load_looks_view(store, refs)
        posts = posts_table(view)
        splits = split_outfits(posts, split.kind, view.group_of, split.fractions, split.seed, view.snap_photo, view.style_of)
        split_of = dict(zip(splits.column("outfit_id").to_pylist(), splits.column("split").to_pylist()))
        lay, feature_params = layout_of(store, refs)
        embedded = _embedded(store, checkpoint, view) if checkpoint is not None else None
        chosen = train_and_select(view, split_of, lay, params, embedded)
        trained, candidates, served = chosen.trained, chosen.candidates, chosen.served
        w = writers[N.LOOKS_MODEL]
        save_looks(w.path(N.LOOKS_MODEL_FILE), trained, params, lay, feature_params, served, embedded)
        writers[N.LOOKS_SPLITS].write_table(pa.Table.from_pylist([{"snap_id": s, "split": sp} for s, sp in sorted(split_of.items())],
                                                                 schema=LOOKS_SPLITS))
        counts = Counter(split_of.values())
        product_leaks = look_leaks(posts, splits, view.snap_photo) if split.kind == "look" else leaks(posts, splits, view.group_of)
        if split.kind != "outfit" and product_leaks:
            raise AssertionError(f"posts split leaks products across splits: {list(product_leaks)[:5]}")
        figures = {f"posts_{s}": counts.get(s, 0) for s in ("train", "val", "test")}
        figures.update({"samples": chosen.samples, "leaking_keys": len(product_leaks), "branches": trained[0].head.branches})
        for t in trained:
            figures[f"{t.name}_train_s"] = round(t.seconds, 2)
            figures[f"{t.name}_final_loss"] = round(t.log[-1]["loss"], 4)
            figures[f"{t.name}_best_epoch"] = t.best_epoch
        figures.update({"served": served, "serve_rule": f"{chosen.rule} (score: snapshot -> items mAP@{K} on validation posts)",
                        "candidates": {n: {f"val_map{K}": round(v, 4) if v == v else None} for n, v in candidates.items()}})
        for name in (N.LOOKS_MODEL, N.LOOKS_SPLITS):
            writers[name].metrics.update(figures)

    return run_stage(store, N.LOOKS_TRAIN, TRAIN_CODE_VERSION, (N.LOOKS_MODEL, N.LOOKS_SPLITS), compute,
                     inputs=inputs, params={"split": split, "train": params})


# -- looks_evaluate ----------------------------------------------------------------------------
def _spaces(store: ArtifactStore, view, loaded, checkpoint: ArtifactRef | None, item_ids: list[str],
            snap_ids: list[str]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Every space scored, name -> (items matrix, snaps matrix): the untrained features, the
    street-to-shop embedder's own embedding (the one the model was trained beside, else the
    one given) and each head over what it reads."""
    spaces = {BACKBONE: (unit(np.stack([view.items[i] for i in item_ids])), unit(np.stack([view.snaps[s] for s in snap_ids])))}
    embedded = loaded.embedded
    if embedded is None and checkpoint is not None:
        embedded = _embedded(store, checkpoint, view)
    sources = {"features": (np.stack([view.items[i] for i in item_ids]), np.stack([view.snaps[s] for s in snap_ids]))}
    if embedded is not None:
        sources[STREET2SHOP] = (np.stack([embedded.items[i] for i in item_ids]), np.stack([embedded.snaps[s] for s in snap_ids]))
        spaces[STREET2SHOP] = sources[STREET2SHOP]
    for name, head in loaded.heads.items():
        reads = loaded.reads.get(name, "features")
        if reads in sources:
            spaces[name] = (embed(head, sources[reads][0]), embed(head, sources[reads][1]))
    return spaces


def run_looks_evaluate(store: ArtifactStore, refs: LooksRefs, model: ArtifactRef, params: LooksEvaluateParams,
                       checkpoint: ArtifactRef | None = None) -> StageResult:
    splits_ref = ArtifactRef(stage=model.stage, name=N.LOOKS_SPLITS, version=model.version)
    inputs = {**refs.as_inputs(), "looks_model": model, "looks_splits": splits_ref}
    if checkpoint is not None:
        inputs["checkpoint"] = checkpoint

    def compute(writers) -> None:
        view = load_looks_view(store, refs)
        split_of = dict(zip(*(store.read_table(splits_ref).column(c).to_pylist() for c in ("snap_id", "split"))))
        item_ids = sorted(view.items)
        snap_ids = sorted(view.snaps)
        loaded = load_looks(store.file(model, N.LOOKS_MODEL_FILE))
        spaces = _spaces(store, view, loaded, checkpoint, item_ids, snap_ids)
        item_posts = invert(view.links)
        rows = []
        figures = {}
        for split in ("test", "train"):
            posts = [s for s in snap_ids if split_of.get(s) == split]
            if not posts:
                continue
            s_index = [snap_ids.index(s) for s in posts]
            queried_items = sorted({i for s in posts for i in view.links[s]})
            i_index = [item_ids.index(i) for i in queried_items]
            for name, (items_m, snaps_m) in spaces.items():
                if split == "train" and not name.startswith("cgd_") and name != loaded.served_name:
                    continue
                for expansion in (None, *EXPANSIONS):
                    exp = expansion or "none"
                    if split == "train" and expansion is not None:
                        continue
                    directions = {
                        "snap_to_items": rank_metrics(snaps_m[s_index], items_m, item_ids, [set(view.links[s]) for s in posts],
                                                      params.k, expansion, [view.style_of[s] for s in posts],
                                                      ci_seed=0 if split == "test" and expansion is None else None),
                        "item_to_snaps": rank_metrics(items_m[i_index], snaps_m, snap_ids, [item_posts[i] for i in queried_items],
                                                      params.k, expansion),
                    }
                    for direction, groups in directions.items():
                        for group, values in groups.items():
                            for metric in ("map", "recall", "hit"):
                                rows.append({"model": name, "direction": direction, "split": split, "expansion": exp, "group": group,
                                             "metric": metric, "k": params.k, "value": values[metric], "n": values["n"]})
                            if group == "all":
                                tag = "" if split == "test" else "_train"
                                suffix = "" if exp == "none" else f"_{exp}"
                                figures[f"{name}_{direction}_map{params.k}{suffix}{tag}"] = round(values["map"], 4)
                                if "map_ci95" in values and values["map_ci95"][0] == values["map_ci95"][0]:
                                    figures[f"{name}_{direction}_map{params.k}_ci95"] = [round(v, 4) for v in values["map_ci95"]]
                                if exp == "none":
                                    figures[f"{name}_{direction}_hit{params.k}{tag}"] = round(values["hit"], 4)
                                    figures[f"{name}_{direction}_recall{params.k}{tag}"] = round(values["recall"], 4)
        metrics = pa.Table.from_pylist(rows, schema=LOOKS_METRICS)
        w = writers[N.LOOKS_METRICS]
        w.write_table(metrics)
        figures["test_posts"] = sum(1 for s in snap_ids if split_of.get(s) == "test")
        figures["served"] = served = loaded.served_name
        key = f"{served}_snap_to_items_map{params.k}"
        figures["served_test"] = {f"map{params.k}": figures.get(key), f"map{params.k}_ci95": figures.get(f"{key}_ci95"),
                                  f"map{params.k}_train": figures.get(f"{key}_train")}
        for name in spaces:
            key = f"{name}_snap_to_items_map{params.k}"
            if figures.get(key) is not None and figures.get(f"{key}_train") is not None:
                figures[f"{key}_train_gap"] = round(figures[f"{key}_train"] - figures[key], 4)
        w.metrics.update(figures)
        test_posts = [s for s in snap_ids if split_of.get(s) == "test"][: params.examples]
        w.path(N.LOOKS_REPORT_FILE).write_text(looks_report(metrics, view, spaces, item_ids, snap_ids, test_posts,
                                                            figures["served"], params.k, figures, store.manifest(model).metrics),
                                                encoding="utf-8")

    return run_stage(store, N.LOOKS_EVALUATE, EVALUATE_CODE_VERSION, (N.LOOKS_METRICS,), compute, inputs=inputs, params=params)


@task(name="looks-train", cache_policy=NO_CACHE)
def looks_train_task(home: str, refs: LooksRefs, split: OutfitSplitParams, params: LooksTrainParams,
                     checkpoint: ArtifactRef | None = None) -> StageResult:
    return report_to_prefect(run_looks_train(ArtifactStore(home), refs, split, params, checkpoint))


@task(name="looks-evaluate", cache_policy=NO_CACHE)
def looks_evaluate_task(home: str, refs: LooksRefs, model: ArtifactRef, params: LooksEvaluateParams,
                        checkpoint: ArtifactRef | None = None) -> StageResult:
    return report_to_prefect(run_looks_evaluate(ArtifactStore(home), refs, model, params, checkpoint))
