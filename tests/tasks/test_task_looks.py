"""The shop-the-look stages on a small crawled shop of real garments (tiny backbone): a split
with no post and no product group in two splits, the heads and the baselines scored both ways,
published, versioned, re-runnable."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import pytest
from crawled_testing import crawled_looks
from street2shop.models.features import FeatureParams
from street2shop.models.looks import LooksTrainParams, load_looks
from street2shop.models.looks_view import load_looks_view, refs_of_model
from street2shop.storage import names as N
from street2shop.tasks.catalog import resolve_checkpoint
from street2shop.tasks.looks import LooksConfig, run_looks_evaluate, run_looks_train

CFG = LooksConfig(features=FeatureParams(backbone="tiny", image_size=32), train=LooksTrainParams(epochs=3, dim=16))


@pytest.fixture(scope="module")
def crawled(tmp_path_factory):
    root = tmp_path_factory.mktemp("looks-stages")
    store, _, refs = crawled_looks(root, 40, CFG.features)
    return store, refs


def _split_of(store, trained):
    rows = store.read_table(trained[N.LOOKS_SPLITS]).to_pylist()
    split_of = {r["snap_id"]: r["split"] for r in rows}
    assert len(split_of) == len(rows)  # no post in two splits
    return split_of


def _splits_per_key(store, refs, split_of, key_of):
    found = defaultdict(set)
    for r in store.read_table(refs.snap_items).to_pylist():
        if r["snap_id"] in split_of:
            found[key_of(r["item_id"])].add(split_of[r["snap_id"]])
    return found


BY_GROUP = CFG.split.model_copy(update={"kind": "group"})


def test_the_default_look_split_has_no_post_photo_or_outfit_in_two_splits(crawled):
    store, refs = crawled
    trained = run_looks_train(store, refs, CFG.split, CFG.train)
    split_of = _split_of(store, trained)
    assert CFG.split.kind == "look" and trained.metrics["leaking_keys"] == 0
    snaps = store.read_table(refs.snaps).to_pylist()
    by_photo = defaultdict(set)
    for r in snaps:
        if r["snap_id"] in split_of:
            by_photo[r["image_id"]].add(split_of[r["snap_id"]])
    assert all(len(s) == 1 for s in by_photo.values())
    links = defaultdict(set)
    for r in store.read_table(refs.snap_items).to_pylist():
        links[r["snap_id"]].add(r["item_id"])
    by_outfit = defaultdict(set)
    for snap, split in split_of.items():
        by_outfit[frozenset(links[snap])].add(split)
    assert all(len(s) == 1 for s in by_outfit.values())
    # more posts are tested than under the product-group split, which chains lookbooks
    grouped = _split_of(store, run_looks_train(store, refs, BY_GROUP, CFG.train))
    assert list(split_of.values()).count("test") >= list(grouped.values()).count("test")


def test_no_post_and_no_product_group_in_two_splits(crawled):
    store, refs = crawled
    trained = run_looks_train(store, refs, BY_GROUP, CFG.train)
    split_of = _split_of(store, trained)
    assert {"train", "test"} <= set(split_of.values()) and trained.metrics["leaking_keys"] == 0
    groups = store.read_table(refs.groups)
    group_of = dict(zip(groups.column("item_id").to_pylist(), groups.column("group_id").to_pylist()))
    assert all(len(s) == 1 for s in _splits_per_key(store, refs, split_of, group_of.get).values())
    assert all(len(s) == 1 for s in _splits_per_key(store, refs, split_of, lambda i: i.split(":")[0]).values())
    # the items of a post are shared: a split by post alone ("outfit") puts products in two splits
    by_post = run_looks_train(store, refs, CFG.split.model_copy(update={"kind": "outfit"}), CFG.train)
    mixed = _splits_per_key(store, refs, _split_of(store, by_post), group_of.get)
    assert any(len(s) > 1 for s in mixed.values()) and by_post.metrics["leaking_keys"] > 0


def test_without_dedup_groups_a_product_is_still_in_one_split(crawled):
    store, refs = crawled
    trained = run_looks_train(store, refs.model_copy(update={"groups": None}), BY_GROUP, CFG.train)
    split_of = _split_of(store, trained)
    assert all(len(s) == 1 for s in _splits_per_key(store, refs, split_of, lambda i: i.split(":")[0]).values())


def test_train_and_evaluate_publish_every_model_both_ways_and_rerun_skips(crawled, tiny_checkpoint):
    store, refs = crawled
    trained = run_looks_train(store, refs, CFG.split, CFG.train)
    loaded = load_looks(store.file(trained[N.LOOKS_MODEL], N.LOOKS_MODEL_FILE))
    assert set(loaded.heads) == {"cgd_softmax", "cgd_arcface"} and loaded.features["backbone"] == "tiny"
    # served by measurement: the best on validation posts, a baseline winning a tie
    figures = trained.metrics
    scores = {n: c["val_map6"] for n, c in figures["candidates"].items()}
    assert set(scores) == {"backbone", "cgd_softmax", "cgd_arcface"} and loaded.served_name == figures["served"]
    best = max(v for v in scores.values() if v is not None)
    assert scores[figures["served"]] == best and (scores["backbone"] < best or figures["served"] == "backbone")
    assert refs_of_model(store, trained[N.LOOKS_MODEL]) == refs
    checkpoint = resolve_checkpoint(store, tiny_checkpoint)
    evaluated = run_looks_evaluate(store, refs, trained[N.LOOKS_MODEL], CFG.evaluate, checkpoint)
    rows = store.read_table(evaluated[N.LOOKS_METRICS]).to_pylist()
    assert {r["model"] for r in rows} == {"backbone", "street2shop", "cgd_softmax", "cgd_arcface"}
    assert {r["direction"] for r in rows} == {"snap_to_items", "item_to_snaps"}
    test = [r for r in rows if r["split"] == "test"]
    assert {r["expansion"] for r in test} == {"none", "qe", "dba", "dba+qe"}
    # the heads and the served space are also scored on their training posts (overfitting), the other baselines not
    assert {r["model"] for r in rows if r["split"] == "train"} == {"cgd_softmax", "cgd_arcface", figures["served"]}
    assert all(0.0 <= r["value"] <= 1.0 and r["k"] == 6 for r in rows)
    view = load_looks_view(store, refs)
    split_of = _split_of(store, trained)
    styles = {view.style_of[s] for s in view.snaps if split_of[s] == "test"}
    assert {r["group"] for r in test if r["direction"] == "snap_to_items"} == {"all", *styles}
    assert evaluated.metrics["test_posts"] == sum(1 for s in view.snaps if split_of[s] == "test")
    assert evaluated.metrics["served"] == figures["served"]
    ci = evaluated.metrics["backbone_snap_to_items_map6_ci95"]
    assert ci[0] <= evaluated.metrics["backbone_snap_to_items_map6"] <= ci[1]
    assert evaluated.metrics["served_test"]["map6"] == evaluated.metrics[f"{figures['served']}_snap_to_items_map6"]
    html = store.file(evaluated[N.LOOKS_METRICS], N.LOOKS_REPORT_FILE).read_text()
    assert "<table>" in html and "linked by the stylists" in html and "data:image/jpeg;base64," in html
    # nothing changed: both skip; a changed parameter re-runs training
    assert run_looks_train(store, refs, CFG.split, CFG.train).skipped
    assert run_looks_evaluate(store, refs, trained[N.LOOKS_MODEL], CFG.evaluate, checkpoint).skipped
    other = run_looks_train(store, refs, CFG.split, CFG.train.model_copy(update={"seed": 1}))
    assert not other.skipped and other.version != trained.version


def test_the_backbone_figures_are_those_of_its_own_ranking(crawled):
    """hit@6 of the untrained features, snapshot -> items, recomputed from the features."""
    store, refs = crawled
    trained = run_looks_train(store, refs, CFG.split, CFG.train)
    evaluated = run_looks_evaluate(store, refs, trained[N.LOOKS_MODEL], CFG.evaluate)
    view = load_looks_view(store, refs)
    split_of = _split_of(store, trained)
    item_ids = sorted(view.items)
    gallery = np.stack([view.items[i] for i in item_ids])
    gallery /= np.linalg.norm(gallery, axis=1, keepdims=True)
    hits = []
    for snap in sorted(s for s in view.snaps if split_of[s] == "test"):
        q = view.snaps[snap] / np.linalg.norm(view.snaps[snap])
        top = {item_ids[j] for j in np.argsort(-(gallery @ q), kind="stable")[:6]}
        hits.append(bool(top & set(view.links[snap])))
    assert evaluated.metrics["backbone_snap_to_items_hit6"] == pytest.approx(np.mean(hits), abs=1e-4)


def test_serving_a_head_that_is_not_trained_fails_before_any_work(crawled):
    store, refs = crawled
    with pytest.raises(ValueError, match="not 'best', a baseline or a head trained"):
        run_looks_train(store, refs, CFG.split, CFG.train.model_copy(update={"losses": ["softmax"], "serve": "cgd_arcface"}))
    with pytest.raises(ValueError, match="not 'best', a baseline or a head trained"):  # no embedder given
        run_looks_train(store, refs, CFG.split, CFG.train.model_copy(update={"serve": "street2shop"}))


def test_a_forced_space_is_served_whatever_the_figures(crawled):
    store, refs = crawled
    trained = run_looks_train(store, refs, CFG.split, CFG.train.model_copy(update={"serve": "backbone"}))
    assert trained.metrics["served"] == "backbone" and "forced" in trained.metrics["serve_rule"]
    assert load_looks(store.file(trained[N.LOOKS_MODEL], N.LOOKS_MODEL_FILE)).served is None
