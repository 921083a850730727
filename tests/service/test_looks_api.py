"""POST /looks/related, GET /items/{item_id}/looks, GET /looks/styles and a post's photo on a
small crawled shop of real garments with a lookbook (tiny backbone, small looks heads):
answers are the served head's nearest neighbours under the filters, and bad input is a clear
4xx that leaves the service up."""

from __future__ import annotations

import io
import time

import numpy as np
import pytest
from crawled_testing import crawled_looks
from fastapi.testclient import TestClient
from PIL import Image
from service_testing import publish_index
from street2shop.models.features import FeatureParams
from street2shop.models.looks import LooksTrainParams
from street2shop.service.app import create_app
from street2shop.service.look_engine import LookEngine, find_looks_model
from street2shop.storage.store import ArtifactStore
from street2shop.tasks.looks import LooksConfig, run_looks_train

CFG = LooksConfig(features=FeatureParams(backbone="tiny", image_size=32), train=LooksTrainParams(epochs=3, dim=16))


@pytest.fixture(scope="module")
def looks_home(tmp_path_factory):
    root = tmp_path_factory.mktemp("looks-api")
    store, crawl, refs = crawled_looks(root, 30, CFG.features)
    run_looks_train(store, refs, CFG.split, CFG.train)
    publish_index(store, crawl["images"])
    engine = LookEngine(store, find_looks_model(store, crawl["images"].version))
    return store.home, engine


@pytest.fixture(scope="module")
def client(looks_home):
    return TestClient(create_app(looks_home[0], street_in_background=False))


def _snap_photo(engine: LookEngine, snap_id: str | None = None) -> bytes:
    snap_id = snap_id or engine.snap_ids[0]
    with open(engine.image_of_snap[snap_id], "rb") as f:
        return f.read()


def _expected(engine: LookEngine, query: np.ndarray, gallery: np.ndarray, ids: list[str], keep, k: int) -> list[str]:
    rows = [j for j, i in enumerate(ids) if keep(i)]
    scores = gallery[rows] @ query
    return [ids[rows[j]] for j in np.argsort(-scores, kind="stable")[:k]]


def test_related_items_of_a_snapshot_photo(client, looks_home):
    _, engine = looks_home
    photo = _snap_photo(engine)
    r = client.post("/looks/related?k=4", files={"image": ("look.jpg", photo, "image/jpeg")})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["k"] == 4 and len(body["results"]) == 4 and body["looks_model"] == engine.version
    scores = [h["score"] for h in body["results"]]
    assert scores == sorted(scores, reverse=True)
    query = engine.photo_features(Image.open(io.BytesIO(photo)))
    q = engine._project(query)[0]  # into the space served (a head, or a baseline's own)
    assert [h["item_id"] for h in body["results"]] == _expected(engine, q, engine.items, engine.item_ids, lambda i: True, 4)
    assert body["results"][0]["image_url"].startswith("http://testserver/images/") and body["results"][0]["item_url"].startswith("http://testserver/items/")


def test_uploads_run_on_the_fp32_fast_path_with_the_posts_features(looks_home):
    """What is served is what the stage measured: OpenVINO fp32 (the side engines' default)
    gives an upload the features eager fp32 gives it (the precision the posts' were made in)."""
    from street2shop.service.side_engine import SIDE_INFERENCE

    home, engine = looks_home
    store = ArtifactStore(home)
    assert engine.inference_mode == SIDE_INFERENCE == "openvino"
    eager = LookEngine(store, find_looks_model(store, engine.crawl), "eager")
    for snap_id in engine.snap_ids[:3]:
        photo = Image.open(io.BytesIO(_snap_photo(engine, snap_id)))
        fast, ref = engine.photo_features(photo), eager.photo_features(photo)
        assert float(fast @ ref / np.linalg.norm(fast) / np.linalg.norm(ref)) > 0.9999
    assert type(engine._extractor).__name__ == "InferenceEmbedder" and engine._extractor.mode == "openvino"
    with pytest.raises(ValueError, match="not fp32"):
        LookEngine(store, find_looks_model(store, engine.crawl), "openvino_int8")


def test_related_with_style_and_category_filters(client, looks_home):
    _, engine = looks_home
    photo = _snap_photo(engine)
    style = engine.styles[0]
    linked = {i for s, items in engine.view.links.items() if engine.style_of[s] == style for i in items}
    category = engine.view.category_of[min(linked)]
    r = client.post(f"/looks/related?k=50&style={style}&category={category}", files={"image": ("look.jpg", photo, "image/jpeg")})
    assert r.status_code == 200, r.text
    body = r.json()
    got = [h["item_id"] for h in body["results"]]
    wanted = {i for i in linked if engine.view.category_of[i] == category}
    assert body["style"] == style and body["category"] == category
    assert set(got) == wanted and all(h["category"] == category for h in body["results"])
    only_category = client.post(f"/looks/related?k=50&category={category}", files={"image": ("look.jpg", photo, "image/jpeg")}).json()
    assert {h["category"] for h in only_category["results"]} == {category} and len(only_category["results"]) >= len(got)


def test_looks_of_an_item(client, looks_home):
    _, engine = looks_home
    item = min(engine.view.links[engine.snap_ids[0]])
    r = client.get(f"/items/{item}/looks?k=3")
    assert r.status_code == 200, r.text
    body = r.json()
    q = engine.items[engine.item_row[item]]
    assert [h["snap_id"] for h in body["results"]] == _expected(engine, q, engine.snaps, engine.snap_ids, lambda s: True, 3)
    hit = body["results"][0]
    assert hit["items"] == engine.view.links[hit["snap_id"]] and hit["image_url"] == f"http://testserver/looks/{hit['snap_id']}/photo"
    photo = client.get(hit["image_url"])
    assert photo.status_code == 200 and photo.headers["content-type"] == "image/jpeg"
    assert photo.content == _snap_photo(engine, hit["snap_id"])
    style = engine.styles[-1]
    styled = client.get(f"/items/{item}/looks?k=50&style={style}").json()["results"]
    assert [h["snap_id"] for h in styled] == [s for s in _expected(engine, q, engine.snaps, engine.snap_ids,
                                                                    lambda s: engine.style_of[s] == style, 50)]
    assert styled and {h["style"] for h in styled} == {style}


def test_styles_and_categories(client, looks_home):
    _, engine = looks_home
    body = client.get("/looks/styles").json()
    assert sum(body["styles"].values()) == len(engine.snap_ids) and list(body["styles"]) == engine.styles
    assert body["categories"] == sorted({engine.view.category_of[i] for i in engine.item_ids})


def _image(bytes_: bytes):
    return {"image": ("p.jpg", bytes_, "image/jpeg")}


def _png():
    buf = io.BytesIO()
    Image.new("RGB", (64, 64), (200, 40, 40)).save(buf, "PNG")
    return buf.getvalue()


@pytest.mark.parametrize(("call", "status", "says"), [
    (lambda c, i: c.post("/looks/related?style=goth", files=_image(_png())), 400, "no post has the style 'goth'"),
    (lambda c, i: c.post("/looks/related?category=handbags", files=_image(_png())), 400, "no item of category 'handbags'"),
    (lambda c, i: c.post("/looks/related", files=_image(b"not a photo")), 415, "p.jpg"),
    (lambda c, i: c.post("/looks/related", files=_image(b"")), 400, "p.jpg"),
    (lambda c, i: c.post("/looks/related", files=_image(_png()[:60])), 400, "p.jpg"),
    (lambda c, i: c.post("/looks/related"), 422, "image"),
    (lambda c, i: c.post("/looks/related?k=0", files=_image(_png())), 422, "k"),
    (lambda c, i: c.get("/items/p999999:red/looks"), 404, "unknown item"),
    (lambda c, i: c.get(f"/items/{i}/looks?style=goth"), 400, "no post has the style"),
    (lambda c, i: c.get(f"/items/{i}/looks?k=51"), 422, "k"),
    (lambda c, i: c.get("/looks/k99999/photo"), 404, "unknown post"),
])
def test_bad_input_is_a_clear_4xx_and_the_service_stays_up(client, looks_home, call, status, says):
    _, engine = looks_home
    r = call(client, engine.item_ids[0])
    assert r.status_code == status, r.text
    assert says in str(r.json()["detail"])
    assert client.get("/health").status_code == 200
    assert client.get(f"/items/{engine.item_ids[0]}/looks").status_code == 200


def test_no_looks_model_for_the_served_crawl_is_a_404(tiny_home):
    client = TestClient(create_app(tiny_home, street_in_background=False))
    r = client.get("/looks/styles")
    assert r.status_code == 404 and "no looks model" in r.json()["detail"]
    assert client.post("/looks/related", files=_image(_png())).status_code == 404


@pytest.fixture(scope="module")
def looks_url(looks_home):
    """The app over the lookbook store, served by uvicorn on a free loopback port."""
    import socket
    import threading

    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(looks_home[0], street_in_background=False), host="127.0.0.1",
                                           port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


@pytest.mark.slow
def test_the_page_switches_between_find_shop_the_look_and_wear_it_with(chromium, looks_url, looks_home, tmp_path):
    _, engine = looks_home
    query = tmp_path / "look.jpg"
    query.write_bytes(_snap_photo(engine))
    page = chromium.new_page(viewport={"width": 1100, "height": 900})
    page.goto(looks_url + "/")
    page.wait_for_selector(f"#style option[value='{engine.styles[0]}']", state="attached")
    assert page.locator("#style-label").is_hidden()  # "find this item" has no style filter
    page.check("input[name=mode][value=look]")
    assert page.locator("#style-label").is_visible()
    page.set_input_files("#file", str(query))
    page.locator("#status", has_text="for this look").wait_for()  # (the page's CSP forbids wait_for_function's eval)
    assert page.locator("#results .card").count() == min(20, len(engine.item_ids))
    page.check("input[name=mode][value=wear]")  # the same photo again, now for posts
    page.locator("#status", has_text="lookbook posts that wear").wait_for()
    deadline = time.monotonic() + 20
    while not all(w > 0 for w in page.eval_on_selector_all("#results .card.look img", "imgs => imgs.map(i => i.complete ? i.naturalWidth : 0)")):
        assert time.monotonic() < deadline, "the posts' photos did not load"
        time.sleep(0.1)
    posts = page.locator("#results .card.look")
    assert posts.count() == min(20, len(engine.snap_ids))
    assert posts.nth(0).get_attribute("data-snap-id") in engine.snap_ids
    posts.nth(0).click()  # the item found in the photo, with its own posts
    page.wait_for_selector("#item-wear .card.look img")
    assert page.locator("#item-wear .card.look").count() == min(6, len(engine.snap_ids))
    page.check("input[name=mode][value=find]")
    page.locator("#status", has_text="(index ").wait_for()
    assert page.locator("#results .card.look").count() == 0


def test_health_says_which_looks_space_is_served_and_why(client):
    looks = client.get("/health").json()["side_models"]["looks"]
    assert looks["served"] in looks["validation"] and set(looks["validation"]) >= {"backbone", "cgd_arcface", "cgd_softmax"}


@pytest.mark.slow
def test_the_engine_serves_a_baseline_or_a_head_on_the_embedder_as_chosen(tmp_path, tiny_checkpoint):
    """A space read from the street-to-shop embedder embeds an uploaded photo with the embedder:
    a post's own photo lands where the stage put the post."""
    from PIL import Image as PILImage
    from street2shop.models.looks import STREET2SHOP
    from street2shop.tasks.catalog import resolve_checkpoint

    store, crawl, refs = crawled_looks(tmp_path, 24, CFG.features)
    checkpoint = resolve_checkpoint(store, tiny_checkpoint)
    best = run_looks_train(store, refs, CFG.split, CFG.train, checkpoint)
    assert {"street2shop", "cgd_arcface_s2s", "cgd_softmax_s2s"} <= set(best.metrics["candidates"])
    for serve in (STREET2SHOP, "cgd_softmax_s2s", "backbone"):
        trained = run_looks_train(store, refs, CFG.split, CFG.train.model_copy(update={"serve": serve}), checkpoint)
        engine = LookEngine(store, trained["looks_model"])
        assert engine.served == serve == engine.selection["served"]
        snap = engine.snap_ids[0]
        with PILImage.open(engine.image_of_snap[snap]) as image:
            query = engine.photo_features(image)
        assert np.allclose(engine._project(query)[0], engine.snaps[0], atol=1e-3), serve
        assert [h.id for h in engine.related(query, 3)] == _expected(engine, engine.snaps[0], engine.items, engine.item_ids,
                                                                     lambda i: True, 3)
