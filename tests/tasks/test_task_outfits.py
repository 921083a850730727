"""The outfit stages on a small crawled shop of real garments (tiny backbone) and on a
Polyvore-layout fixture: published, versioned, re-runnable, leak-free."""

from __future__ import annotations

import pyarrow.compute as pc
import pytest
from crawled_testing import crawled_shop
from polyvore_testing import write_polyvore
from street2shop.cleaning.outfits import leaks
from street2shop.models.features import FeatureParams
from street2shop.models.outfit_view import OutfitRefs
from street2shop.models.outfits import OutfitTrainParams, load_outfit_models
from street2shop.storage import names as N
from street2shop.storage.store import ArtifactStore
from street2shop.tasks.features import run_features
from street2shop.sources.polyvore import PolyvoreParams
from street2shop.tasks.outfits import OutfitConfig, run_outfit_evaluate, run_outfit_train, run_polyvore

CFG = OutfitConfig(features=FeatureParams(backbone="tiny", image_size=32),
                   train=OutfitTrainParams(epochs=3, pca=8, hidden=16, dim=8))


@pytest.fixture(scope="module")
def crawled(tmp_path_factory):
    root = tmp_path_factory.mktemp("outfit-stages")
    store, crawl, dedup = crawled_shop(root, 30)
    features = run_features(store, crawl["images"], CFG.features)
    return store, OutfitRefs.of_photos(crawl["images"], dedup["groups"], features[N.PHOTO_FEATURES])


def test_train_and_evaluate_publish_and_rerun_skips(crawled):
    store, refs = crawled
    trained = run_outfit_train(store, refs, CFG.split, CFG.train)
    assert not trained.skipped and trained.metrics["leaking_keys"] == 0
    splits = store.read_table(trained[N.OUTFIT_SPLITS])
    outfits = store.read_table(refs.outfits)
    groups = store.read_table(refs.groups)
    group_of = dict(zip(groups.column("item_id").to_pylist(), groups.column("group_id").to_pylist()))
    used = outfits.filter(pc.is_in(outfits.column("outfit_id"), splits.column("outfit_id")))
    assert leaks(used, splits, group_of) == {}  # no product group in two splits
    assert {"train", "test"} <= set(splits.column("split").to_pylist())
    loaded = load_outfit_models(store.file(trained[N.OUTFIT_MODEL], N.OUTFIT_MODEL_FILE))
    assert set(loaded.models) == {"siamese", "type_aware", "type_aware_sat"}
    assert loaded.type_of_category["trousers"] == "bottom" and loaded.features["backbone"] == "tiny"
    # served by measurement on validation outfits: the best score, the baseline winning a tie
    figures = trained.metrics
    scores = {n: c["val_score"] for n, c in figures["candidates"].items()}
    assert set(scores) == {"backbone", "siamese", "type_aware", "type_aware_sat"} and loaded.served_name == figures["served"]
    assert scores["backbone"] is not None, figures["candidates"]  # the validation outfits were asked
    best = max(v for v in scores.values() if v is not None)
    assert scores[figures["served"]] == best and (scores["backbone"] < best or figures["served"] == "backbone")
    assert all(figures[f"{v}_best_epoch"] <= CFG.train.epochs for v in loaded.models)
    evaluated = run_outfit_evaluate(store, refs, trained[N.OUTFIT_MODEL], CFG.evaluate)
    metrics = store.read_table(evaluated[N.OUTFIT_METRICS]).to_pylist()
    models = {r["model"] for r in metrics}
    assert models == {"random", "backbone", "siamese", "type_aware", "type_aware_sat"}
    assert all(0.0 <= r["value"] <= 1.0 and r["split"] == "test" for r in metrics)
    assert evaluated.metrics["random_fitb"] == 0.25
    for metric in ("auc", "fitb"):  # 95 % intervals around the test figure, and the training outfits' figure
        low, high = evaluated.metrics[f"backbone_{metric}_ci95"]
        assert low <= evaluated.metrics[f"backbone_{metric}"] <= high
        assert 0 <= evaluated.metrics[f"siamese_{metric}_train"] <= 1
    assert evaluated.metrics["served"] == figures["served"]
    assert evaluated.metrics["served_test"]["auc"] == evaluated.metrics[f"{figures['served']}_auc"]
    assert "<table>" in store.file(evaluated[N.OUTFIT_METRICS], N.OUTFIT_REPORT_FILE).read_text()
    # nothing changed: both skip; a changed parameter re-runs training
    assert run_outfit_train(store, refs, CFG.split, CFG.train).skipped
    assert run_outfit_evaluate(store, refs, trained[N.OUTFIT_MODEL], CFG.evaluate).skipped
    other = run_outfit_train(store, refs, CFG.split, CFG.train.model_copy(update={"seed": 1}))
    assert not other.skipped and other.version != trained.version


def test_a_forced_model_is_served_whatever_the_figures(crawled):
    store, refs = crawled
    trained = run_outfit_train(store, refs, CFG.split, CFG.train.model_copy(update={"serve": "backbone"}))
    assert trained.metrics["served"] == "backbone" and "forced" in trained.metrics["serve_rule"]
    assert load_outfit_models(store.file(trained[N.OUTFIT_MODEL], N.OUTFIT_MODEL_FILE)).served is None
    with pytest.raises(ValueError, match="not 'best'"):
        run_outfit_train(store, refs, CFG.split, CFG.train.model_copy(update={"serve": "nope"}))


def test_unknown_variant_fails_before_any_work(crawled):
    store, refs = crawled
    with pytest.raises(ValueError, match="unknown outfit model"):
        run_outfit_train(store, refs, CFG.split, CFG.train.model_copy(update={"variants": ["nope"]}))


def test_polyvore_trains_on_its_split_and_scores_its_questions(tmp_path):
    store = ArtifactStore(tmp_path / "home")
    source = run_polyvore(store, PolyvoreParams(path=str(write_polyvore(tmp_path / "pv"))))
    assert run_polyvore(store, PolyvoreParams(path=str(tmp_path / "pv"))).skipped  # same content, same version
    features = run_features(store, source[N.IMAGES], CFG.features)
    refs = OutfitRefs.of_photos(source[N.IMAGES], None, features[N.PHOTO_FEATURES])
    trained = run_outfit_train(store, refs, CFG.split, CFG.train)
    assert trained.metrics["split"] == "given" and trained.metrics["outfits_test"] == 4
    evaluated = run_outfit_evaluate(store, refs, trained[N.OUTFIT_MODEL], CFG.evaluate)
    asked = store.read_table(evaluated[N.OUTFIT_QUESTIONS])
    given = store.read_table(source[N.OUTFIT_QUESTIONS])
    assert asked.equals(given)  # the data set's own questions, not made-up ones
    assert evaluated.metrics["test_compatibility_questions"] == 5 and evaluated.metrics["test_fitb_questions"] == 4
