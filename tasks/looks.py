"""Shop-the-look stages' tasks: ``looks_train`` and ``looks_evaluate``.

* ``looks_train``: lookbook posts (``snaps`` + ``snap_items`` of a crawl) split so that no
  post and no product group is in two splits (posts sharing a product are one unit:
  ``cleaning/outfits.split_outfits`` with posts for outfits), then one CGD head per loss
  (softmax with label smoothing and temperature, ArcFace) on the frozen features of the
  posts' photos and of the items' shop photos; publishes ``looks_splits`` and ``looks_model``.
* ``looks_evaluate``: on held-out posts, snapshot -> items (gallery: every item of the shop)
  and item -> snapshots (gallery: every post), mAP@6, recall@6 and hit@6, for the trained
  heads and the baselines (the untrained features; the street-to-shop embedder's own
  embedding, when its checkpoint is given), each with αQE and DBA off and on, per style, and
  the training posts' figures beside the test ones (how much each loss overfits);
  publishes ``looks_metrics`` with ``looks.html`` (example grids).
"""

from __future__ import annotations

import base64
import io
from collections import Counter, defaultdict
from html import escape

import numpy as np
import pyarrow as pa
from prefect import task
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel, ConfigDict, Field

from street2shop.cleaning.outfits import OutfitSplitParams, leaks, look_leaks, split_outfits
from street2shop.models.embed import embed_images
from street2shop.models.embedder import load_embedder
from street2shop.models.features import FeatureParams, layout
from street2shop.models.looks import LooksTrainParams, embed, load_looks, save_looks, train_looks
from street2shop.retrieval.expansion import EXPANSIONS
from street2shop.retrieval.look_metrics import K, invert, rank_metrics, top_k
from street2shop.storage import names as N
from street2shop.storage.images import open_image
from street2shop.storage.schemas import LOOKS_METRICS, LOOKS_SPLITS, OUTFITS, vectors_matrix
from street2shop.storage.store import ArtifactRef, ArtifactStore
from street2shop.tasks.features import item_features
from street2shop.tasks.stage import StageResult, images_with_paths, report_to_prefect, run_stage

TRAIN_CODE_VERSION = "1"
EVALUATE_CODE_VERSION = "1"
BACKBONE = "backbone"
STREET2SHOP = "street2shop"


class LooksEvaluateParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    k: int = Field(K, ge=1)
    #: test posts shown in the report's grids
    examples: int = Field(6, ge=0)


class LooksConfig(BaseModel):
    """The pipeline's ``looks:`` section."""

    model_config = ConfigDict(extra="forbid")

    features: FeatureParams = Field(default_factory=FeatureParams)
    #: "look": no post, photo or outfit in two splits; items may be (cleaning/outfits.py)
    split: OutfitSplitParams = Field(default_factory=lambda: OutfitSplitParams(kind="look"))
    train: LooksTrainParams = Field(default_factory=LooksTrainParams)
    evaluate: LooksEvaluateParams = Field(default_factory=LooksEvaluateParams)


class LooksRefs(BaseModel):
    items: ArtifactRef
    images: ArtifactRef
    snaps: ArtifactRef
    snap_items: ArtifactRef
    item_features: ArtifactRef
    snap_features: ArtifactRef
    groups: ArtifactRef | None = None

    def as_inputs(self) -> dict[str, ArtifactRef]:
        return {k: v for k, v in ((n, getattr(self, n)) for n in type(self).model_fields) if v is not None}


class LooksView(BaseModel):
    """Posts and items with features (arrays kept out of validation)."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    items: dict  # item id -> feature
    photo_of: dict  # item id -> path
    snaps: dict  # snap id -> feature
    snap_photo: dict  # snap id -> path
    style_of: dict  # snap id -> style
    links: dict  # snap id -> linked items (with features), page order
    category_of: dict
    group_of: dict


def load_looks_view(store: ArtifactStore, refs: LooksRefs) -> LooksView:
    items, photo_of = item_features(store, refs.images, refs.item_features)
    table = store.read_table(refs.snap_features)
    snap_vec_by_image = dict(zip(table.column("image_id").to_pylist(), vectors_matrix(table)))
    snaps_table = images_with_paths(store, refs.snaps).to_pylist()
    snaps = {r["snap_id"]: snap_vec_by_image[r["image_id"]] for r in snaps_table if r["image_id"] in snap_vec_by_image}
    links: dict[str, list[str]] = defaultdict(list)
    for r in sorted(store.read_table(refs.snap_items).to_pylist(), key=lambda r: (r["snap_id"], r["position"])):
        if r["snap_id"] in snaps and r["item_id"] in items:
            links[r["snap_id"]].append(r["item_id"])
    item_table = store.read_table(refs.items)
    # an item no dedup group names is in its product's group: no product in two splits
    group_of = dict(zip(item_table.column("item_id").to_pylist(), item_table.column("product_id").to_pylist()))
    if refs.groups is not None:
        g = store.read_table(refs.groups)
        group_of.update(zip(g.column("item_id").to_pylist(), g.column("group_id").to_pylist()))
    return LooksView(items=items, photo_of=photo_of, snaps={s: v for s, v in snaps.items() if s in links},
                     snap_photo={r["snap_id"]: r["path"] for r in snaps_table}, style_of={r["snap_id"]: r["style"] or "" for r in snaps_table},
                     links=dict(links), category_of=dict(zip(item_table.column("item_id").to_pylist(), item_table.column("category").to_pylist())),
                     group_of=group_of)


def refs_of_model(store: ArtifactStore, model: ArtifactRef) -> LooksRefs:
    """The inputs a ``looks_model`` was trained on (its manifest's inputs; the two features
    artifacts told apart by what they are features of)."""
    inputs = store.manifest(model).inputs
    named = {r.name: r for r in inputs if r.name != N.PHOTO_FEATURES}
    features = {store.manifest(r).inputs[0].name: r for r in inputs if r.name == N.PHOTO_FEATURES}
    return LooksRefs(items=named[N.ITEMS], images=named[N.IMAGES], snaps=named[N.SNAPS], snap_items=named[N.SNAP_ITEMS],
                     item_features=features[N.IMAGES], snap_features=features[N.SNAPS], groups=named.get(N.GROUPS))


def _posts_table(view: LooksView) -> pa.Table:
    rows = [{"outfit_id": s, "item_id": i, "type": "", "position": k} for s, items in sorted(view.links.items())
            for k, i in enumerate(items)]
    return pa.Table.from_pylist(rows, schema=OUTFITS)


def _layout_of(store: ArtifactStore, refs: LooksRefs) -> tuple[list[tuple[str, int]], dict]:
    manifest = store.manifest(refs.item_features)
    params = FeatureParams(**manifest.params)
    dim = int(manifest.metrics["dim"])
    extras = sum(w for n, w in layout(params, 0) if n in params.extras)
    return layout(params, dim - extras), params.model_dump(mode="json")


# -- looks_train -------------------------------------------------------------------------------
def run_looks_train(store: ArtifactStore, refs: LooksRefs, split: OutfitSplitParams, params: LooksTrainParams) -> StageResult:
    if params.serve not in params.losses:
        raise ValueError(f"serve={params.serve!r} is not among the losses trained: {params.losses}")

    def compute(writers) -> None:
        view = load_looks_view(store, refs)
        posts = _posts_table(view)
        splits = split_outfits(posts, split.kind, view.group_of, split.fractions, split.seed, view.snap_photo, view.style_of)
        split_of = dict(zip(splits.column("outfit_id").to_pylist(), splits.column("split").to_pylist()))
        train_posts = sorted(s for s, sp in split_of.items() if sp == "train")
        label = {s: k for k, s in enumerate(train_posts)}
        rows, labels = [], []
        for s in train_posts:
            rows.append(view.snaps[s])
            labels.append(label[s])
            for item in view.links[s]:
                rows.append(view.items[item])
                labels.append(label[s])
        if not rows:
            raise ValueError("no training posts: the lookbook is empty or every post is held out")
        lay, feature_params = _layout_of(store, refs)
        trained = [train_looks(np.stack(rows), np.asarray(labels), lay, loss, params) for loss in params.losses]
        w = writers[N.LOOKS_MODEL]
        save_looks(w.path(N.LOOKS_MODEL_FILE), trained, params, lay, feature_params)
        writers[N.LOOKS_SPLITS].write_table(pa.Table.from_pylist([{"snap_id": s, "split": sp} for s, sp in sorted(split_of.items())],
                                                                 schema=LOOKS_SPLITS))
        counts = Counter(split_of.values())
        product_leaks = look_leaks(posts, splits, view.snap_photo) if split.kind == "look" else leaks(posts, splits, view.group_of)
        if split.kind != "outfit" and product_leaks:
            raise AssertionError(f"posts split leaks products across splits: {list(product_leaks)[:5]}")
        figures = {f"posts_{s}": counts.get(s, 0) for s in ("train", "val", "test")}
        figures.update({"samples": len(rows), "leaking_keys": len(product_leaks), "branches": trained[0].head.branches})
        for t in trained:
            figures[f"cgd_{t.loss}_train_s"] = round(t.seconds, 2)
            figures[f"cgd_{t.loss}_final_loss"] = round(t.log[-1]["loss"], 4)
        for name in (N.LOOKS_MODEL, N.LOOKS_SPLITS):
            writers[name].metrics.update(figures)

    return run_stage(store, N.LOOKS_TRAIN, TRAIN_CODE_VERSION, (N.LOOKS_MODEL, N.LOOKS_SPLITS), compute,
                     inputs=refs.as_inputs(), params={"split": split, "train": params})


# -- looks_evaluate ----------------------------------------------------------------------------
def _unit(m: np.ndarray) -> np.ndarray:
    return (m / np.maximum(np.linalg.norm(m, axis=1, keepdims=True), 1e-12)).astype(np.float32)


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
        spaces: dict[str, tuple[np.ndarray, np.ndarray]] = {
            BACKBONE: (_unit(np.stack([view.items[i] for i in item_ids])), _unit(np.stack([view.snaps[s] for s in snap_ids])))}
        if checkpoint is not None:
            embedder = load_embedder(store.file(checkpoint, N.CHECKPOINT_FILE))
            spaces[STREET2SHOP] = (embed_images(embedder, [view.photo_of[i] for i in item_ids], num_workers=0, device="cpu"),
                                   embed_images(embedder, [view.snap_photo[s] for s in snap_ids], num_workers=0, device="cpu"))
        loaded = load_looks(store.file(model, N.LOOKS_MODEL_FILE))
        for loss, head in loaded.heads.items():
            spaces[f"cgd_{loss}"] = (embed(head, np.stack([view.items[i] for i in item_ids])),
                                     embed(head, np.stack([view.snaps[s] for s in snap_ids])))
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
                if split == "train" and not name.startswith("cgd_"):
                    continue
                for expansion in (None, *EXPANSIONS):
                    exp = expansion or "none"
                    if split == "train" and expansion is not None:
                        continue
                    directions = {
                        "snap_to_items": rank_metrics(snaps_m[s_index], items_m, item_ids, [set(view.links[s]) for s in posts],
                                                      params.k, expansion, [view.style_of[s] for s in posts]),
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
                                if exp == "none":
                                    figures[f"{name}_{direction}_hit{params.k}{tag}"] = round(values["hit"], 4)
                                    figures[f"{name}_{direction}_recall{params.k}{tag}"] = round(values["recall"], 4)
        metrics = pa.Table.from_pylist(rows, schema=LOOKS_METRICS)
        w = writers[N.LOOKS_METRICS]
        w.write_table(metrics)
        figures["test_posts"] = sum(1 for s in snap_ids if split_of.get(s) == "test")
        figures["served"] = f"cgd_{loaded.params.serve}"
        w.metrics.update(figures)
        test_posts = [s for s in snap_ids if split_of.get(s) == "test"][: params.examples]
        w.path(N.LOOKS_REPORT_FILE).write_text(looks_report(metrics, view, spaces, item_ids, snap_ids, test_posts,
                                                            figures["served"], params.k), encoding="utf-8")

    return run_stage(store, N.LOOKS_EVALUATE, EVALUATE_CODE_VERSION, (N.LOOKS_METRICS,), compute, inputs=inputs, params=params)


def _thumb(path: str | None, side: int = 96, mark: str = "") -> str:
    if not path:
        return ""
    try:
        image = open_image(path)
    except Exception:  # noqa: BLE001 - a report shows what it can
        return ""
    image.thumbnail((side, side))
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=80)
    return (f"<img class=\"{mark}\" src=\"data:image/jpeg;base64,{base64.b64encode(buf.getvalue()).decode()}\" "
            f"width=\"{image.width}\">")


def looks_report(metrics: pa.Table, view: LooksView, spaces: dict, item_ids: list[str], snap_ids: list[str],
                 examples: list[str], served: str, k: int) -> str:
    """Figures per model, direction and expansion (test split, and train for the heads), per
    style, and grids: a held-out post, what its stylists linked, and the top k of two models."""
    rows = metrics.to_pylist()
    key = {(r["model"], r["direction"], r["split"], r["expansion"], r["group"], r["metric"]): r for r in rows}
    models = list(dict.fromkeys(r["model"] for r in rows))
    lines = []
    for split in ("test", "train"):
        for model in models:
            for exp in ("none", *EXPANSIONS):
                cells = []
                for direction in ("snap_to_items", "item_to_snaps"):
                    for metric in ("map", "recall", "hit"):
                        r = key.get((model, direction, split, exp, "all", metric))
                        cells.append(f"<td>{r['value']:.3f}</td>" if r else "<td></td>")
                if any(c != "<td></td>" for c in cells):
                    lines.append(f"<tr><td>{split}</td><td>{escape(model)}</td><td>{exp}</td>{''.join(cells)}</tr>")
    head = "".join(f"<th>{d} {m}@{k}</th>" for d in ("snap→items", "item→snaps") for m in ("mAP", "recall", "hit"))
    table = f"<table><tr><th>split</th><th>model</th><th>expansion</th>{head}</tr>{''.join(lines)}</table>"
    styles = sorted({r["group"] for r in rows if r["group"] != "all"})
    style_rows = []
    for model in models:
        cells = []
        for style in styles:
            r = key.get((model, "snap_to_items", "test", "none", style, "map"))
            cells.append(f"<td>{r['value']:.3f} <small>({r['n']})</small></td>" if r else "<td></td>")
        style_rows.append(f"<tr><td>{escape(model)}</td>{''.join(cells)}</tr>")
    by_style = (f"<table><tr><th>snap→items mAP@{k} (test)</th>{''.join(f'<th>{s}</th>' for s in styles)}</tr>"
                f"{''.join(style_rows)}</table>")
    grids = []
    for snap in examples:
        linked = set(view.links[snap])
        q = snap_ids.index(snap)
        parts = [f"<div class=\"grid\"><div>{escape(snap)} ({escape(view.style_of.get(snap, ''))}): the post</div>"
                 f"{_thumb(view.snap_photo.get(snap), 160)}<div>linked by the stylists</div>"
                 + "".join(_thumb(view.photo_of.get(i)) for i in view.links[snap])]
        for model in (served, BACKBONE):
            if model not in spaces:
                continue
            items_m, snaps_m = spaces[model]
            top = top_k(snaps_m[q : q + 1], items_m, item_ids, k)[0]
            parts.append(f"<div>{escape(model)}: top {k} (green: linked)</div>"
                         + "".join(_thumb(view.photo_of.get(i), mark="hit" if i in linked else "") for i, _ in top))
        grids.append("".join(parts) + "</div>")
    style = ("body{font-family:sans-serif;margin:1em}table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;"
             "padding:3px 6px}.grid{margin:1em 0;padding:.5em;background:#f6f6f6}img{margin:2px}.hit{outline:3px solid #2a2}")
    return (f"<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>Shop the look</title><style>{style}</style></head><body>"
            f"<h1>Shop the look</h1><p>Held-out posts (no post and no product in two splits). snap→items: a post's photo "
            f"against every item of the shop, relevant = the items its stylists linked; item→snaps: a linked item against "
            f"every post.</p>{table}<h2>Per style</h2>{by_style}<h2>Examples</h2>{''.join(grids)}</body></html>")


@task(name="looks-train", cache_policy=NO_CACHE)
def looks_train_task(home: str, refs: LooksRefs, split: OutfitSplitParams, params: LooksTrainParams) -> StageResult:
    result = run_looks_train(ArtifactStore(home), refs, split, params)
    report_to_prefect(result, "looks_train")
    return result


@task(name="looks-evaluate", cache_policy=NO_CACHE)
def looks_evaluate_task(home: str, refs: LooksRefs, model: ArtifactRef, params: LooksEvaluateParams,
                        checkpoint: ArtifactRef | None = None) -> StageResult:
    result = run_looks_evaluate(ArtifactStore(home), refs, model, params, checkpoint)
    report_to_prefect(result, "looks_evaluate")
    return result
