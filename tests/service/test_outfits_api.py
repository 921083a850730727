"""POST /outfits/complete, POST /outfits/score and GET /outfits/types on a small crawled shop of
real garments (tiny backbone, tiny outfit model): answers, and a clear 4xx for bad input."""

from __future__ import annotations

import io

import pytest
from crawled_testing import crawled_shop
from fastapi.testclient import TestClient
from PIL import Image
from service_testing import publish_index
from street2shop.models.features import FeatureParams
from street2shop.models.outfit_view import OutfitRefs
from street2shop.models.outfits import OutfitTrainParams
from street2shop.service.app import create_app
from street2shop.storage import names as N
from street2shop.tasks.features import run_features
from street2shop.tasks.outfits import OutfitConfig, run_outfit_train

CFG = OutfitConfig(features=FeatureParams(backbone="tiny", image_size=32), train=OutfitTrainParams(epochs=2, pca=8, hidden=16, dim=8))


@pytest.fixture(scope="module")
def outfit_home(tmp_path_factory):
    root = tmp_path_factory.mktemp("outfit-api")
    store, crawl, dedup = crawled_shop(root, 30)
    features = run_features(store, crawl["images"], CFG.features)
    run_outfit_train(store, OutfitRefs.of_photos(crawl["images"], dedup["groups"], features[N.PHOTO_FEATURES]), CFG.split, CFG.train)
    publish_index(store, crawl["images"])
    outfits = store.read_table(crawl["outfits"]).to_pylist()
    return store.home, outfits


@pytest.fixture(scope="module")
def client(outfit_home):
    return TestClient(create_app(outfit_home[0], street_in_background=False))


def _outfit(outfit_home, n=2):
    rows = outfit_home[1]
    first = rows[0]["outfit_id"]
    return [r for r in rows if r["outfit_id"] == first][:n]


def test_complete_from_items_ranks_items_of_the_type(client, outfit_home):
    top, bottom = _outfit(outfit_home)
    types = client.get("/outfits/types").json()
    assert bottom["type"] in types["types"] and types["type_of_category"]["trousers"] == "bottom"
    r = client.post("/outfits/complete?k=3", data={"items": [top["item_id"]], "type": bottom["type"]})
    assert r.status_code == 200, r.text
    body = r.json()
    assert 1 <= len(body["results"]) <= 3 and all(h["type"] == bottom["type"] for h in body["results"])
    scores = [h["score"] for h in body["results"]]
    assert scores == sorted(scores, reverse=True)
    assert all(h["item_id"].split(":")[0] != top["item_id"].split(":")[0] for h in body["results"])
    assert body["results"][0]["image_url"].startswith("http://testserver/images/")


def test_score_of_a_set_of_items(client, outfit_home):
    items = [r["item_id"] for r in _outfit(outfit_home, 3)]
    r = client.post("/outfits/score", json={"items": items})
    assert r.status_code == 200 and r.json()["score"] <= 0  # minus a mean distance
    assert client.post("/outfits/score", json={"items": items[::-1]}).json()["score"] == pytest.approx(r.json()["score"])


def test_complete_from_a_photo(client, outfit_home):
    _, bottom = _outfit(outfit_home)
    buf = io.BytesIO()
    Image.new("RGB", (64, 64), (200, 40, 40)).save(buf, "JPEG")
    files = {"image": ("p.jpg", buf.getvalue(), "image/jpeg")}
    r = client.post("/outfits/complete", data={"type": bottom["type"]}, files=files)
    assert r.status_code == 200, r.text
    assert r.json()["photo_type"] in client.get("/outfits/types").json()["types"]
    r = client.post("/outfits/complete", data={"type": bottom["type"], "photo_type": "top"}, files=files)
    assert r.status_code == 200 and r.json()["photo_type"] == "top"
    bad = client.post("/outfits/complete", data={"type": bottom["type"]}, files={"image": ("p.jpg", b"not a photo", "image/jpeg")})
    assert bad.status_code in (400, 415) and "p.jpg" in bad.json()["detail"]


@pytest.mark.parametrize(("call", "status", "says"), [
    (lambda c, i: c.post("/outfits/complete", data={"items": ["p999999:red"], "type": "shoes"}), 404, "unknown items"),
    (lambda c, i: c.post("/outfits/complete", data={"type": "shoes"}), 400, "empty outfit"),
    (lambda c, i: c.post("/outfits/complete", data={"items": [i], "type": "handbag"}), 400, "no items of type 'handbag'"),
    (lambda c, i: c.post("/outfits/complete", data={"items": [i, i], "type": "shoes"}), 400, "more than once"),
    (lambda c, i: c.post("/outfits/score", json={"items": [i]}), 400, "at least two"),
    (lambda c, i: c.post("/outfits/score", json={"items": []}), 400, "at least two"),
    (lambda c, i: c.post("/outfits/score", json={"items": [i, "nope"]}), 404, "unknown items"),
])
def test_bad_input_is_a_clear_4xx_and_the_service_stays_up(client, outfit_home, call, status, says):
    item = _outfit(outfit_home)[0]["item_id"]
    r = call(client, item)
    assert r.status_code == status and says in r.json()["detail"]
    assert client.get("/health").status_code == 200


def test_no_outfit_model_for_the_served_crawl_is_a_404(tiny_home):
    r = TestClient(create_app(tiny_home, street_in_background=False)).get("/outfits/types")
    assert r.status_code == 404 and "no outfit model" in r.json()["detail"]


def test_health_says_which_outfit_model_is_served_and_why(client):
    side = client.get("/health").json()["side_models"]
    outfits = side["outfits"]
    assert outfits["served"] in outfits["validation"] and "validation" in outfits["rule"]
    assert {"val_auc", "val_fitb", "val_score"} <= set(outfits["validation"]["backbone"])
    assert "looks" not in side  # no looks model is published for this crawl


def test_health_reads_the_side_manifests_once_per_served_crawl(client, outfit_home, monkeypatch):
    from street2shop.service import side_engine
    from street2shop.storage.store import ArtifactStore

    config = client.app.state.config
    reads = []
    original = ArtifactStore.manifest
    monkeypatch.setattr(ArtifactStore, "manifest", lambda self, ref: reads.append(ref) or original(self, ref))
    monkeypatch.setattr(config.side_models, "_crawl", None)  # as if a reload served another crawl
    first = client.get("/health").json()["side_models"]
    after_first = len(reads)
    assert after_first > 0 and first["outfits"]["served"]
    for _ in range(3):
        assert client.get("/health").json()["side_models"] == first
    assert len(reads) == after_first  # not re-read
    # another crawl is read afresh (it has no side model here)
    assert config.side_models("another-crawl") == {} and config.side_models(client.get("/health").json()["crawl"]) == first
    assert side_engine.side_models(config.store, client.get("/health").json()["crawl"]) == first


@pytest.mark.slow
def test_the_engine_serves_the_untrained_features_when_they_are_chosen(tmp_path):
    """A baseline served: candidates scored by minus their mean cosine distance to the outfit."""
    import numpy as np
    from street2shop.service.outfit_engine import OutfitEngine

    store, crawl, dedup = crawled_shop(tmp_path, 30)
    features = run_features(store, crawl["images"], CFG.features)
    refs = OutfitRefs.of_photos(crawl["images"], dedup["groups"], features[N.PHOTO_FEATURES])
    trained = run_outfit_train(store, refs, CFG.split, CFG.train.model_copy(update={"serve": "backbone"}))
    engine = OutfitEngine(store, trained[N.OUTFIT_MODEL])
    assert engine.served == "backbone" == engine.selection["served"] and "forced" in engine.selection["rule"]
    rows = store.read_table(crawl["outfits"]).to_pylist()
    top, bottom = [r for r in rows if r["outfit_id"] == rows[0]["outfit_id"]][:2]
    hits, _ = engine.complete([top["item_id"]], bottom["type"], k=3)

    def unit(i):
        v = engine.view.features[i]
        return v / np.linalg.norm(v)

    taken = top["item_id"].split(":")[0]
    expected = sorted((float(-np.linalg.norm(unit(i) - unit(top["item_id"]))), i) for i in engine.by_type[bottom["type"]]
                      if i.split(":")[0] != taken)[::-1][:3]
    assert [h.item_id for h in hits] == [i for _, i in expected]
    assert [h.score for h in hits] == pytest.approx([s for s, _ in expected], abs=1e-5)
