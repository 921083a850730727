"""Several garments in /search: the served learned localiser's garments in the answer, the best
one searched as the evaluation searches it, ``garment=`` and ``box=`` searching one region, and
every bad region refused with a 422 in the service's error shape while the service stays up."""

from __future__ import annotations

import math
import threading

import numpy as np
import pyarrow.compute as pc
import pytest
import torch
from fastapi.testclient import TestClient

from service_testing import publish_box_head, publish_boxhead_store, publish_checkpoint, publish_crawl, publish_serving
from street2shop.models.embed import embed_images
from street2shop.models.localise import WHOLE, crop, expand_box, load_localiser
from street2shop.models.preprocess import read_image
from street2shop.retrieval.metrics import evaluate_retrieval
from street2shop.service.app import create_app
from street2shop.retrieval.evaluation import LocaliseParams
from street2shop.retrieval.served import served_search
from street2shop.service.engine import SearchEngine
from street2shop.service.regions import BadRegion
from street2shop.storage import names as N
from street2shop.storage.images import open_image
from street2shop.storage.store import ArtifactStore


@pytest.fixture(scope="module")
def boxhead_store(tmp_path_factory):
    return publish_boxhead_store(tmp_path_factory.mktemp("boxhead-home"))


@pytest.fixture(scope="module")
def engine(boxhead_store):
    store, index, _, _ = boxhead_store
    engine = SearchEngine(store, index, street_in_background=False, inference_mode="eager", batch_max=1)
    yield engine
    engine.close()


@pytest.fixture(scope="module")
def client(boxhead_store):
    store, *_ = boxhead_store
    with TestClient(create_app(store.home, street_in_background=False, inference_mode="eager")) as c:
        yield c


def photos(store: ArtifactStore, role: str) -> list[dict]:
    table = store.read_table(store.latest("crawl", "images"))
    return table.filter(pc.equal(table.column("role"), role)).to_pylist()


def expected_ranking(store, model, path, boxes, k=3, crops=None):
    """The evaluation path's ranking of the street photo at ``path`` searched by ``boxes``
    (best crop decides), or by the given ``crops`` vectors ``(1, n, dim)``."""
    shop = photos(store, "shop")
    gallery = embed_images(model, [str(store.home / r["path"]) for r in shop], num_workers=0)
    if crops is None:
        crops = embed_images(model, [str(path)], num_workers=0, crops=lambda image: boxes(image))
    item = next(r["item_id"] for r in photos(store, "street") if store.home / r["path"] == path)
    result = evaluate_retrieval(crops, [item], gallery, [r["item_id"] for r in shop], ks=(k,), crop_scoring="max")
    return result.ranked_items[0].tolist(), result.ranked_scores[0]


def reference_search(store, model, localiser_ref):
    """The learned localiser's one-pass search as the evaluation builds it (eager fp32)."""
    localise = LocaliseParams(name="boxhead", options={}, localiser=str(localiser_ref))
    return served_search(store, localise, model, "eager", model)


def test_the_answer_names_the_garments_and_searches_the_best_as_evaluated(boxhead_store, engine) -> None:
    store, _, model, localiser_ref = boxhead_store
    learned = reference_search(store, model, localiser_ref)
    assert engine.detects_garments
    for row in photos(store, "street")[:4]:
        path = store.home / row["path"]
        found = engine.search_photo(path.read_bytes(), k=3)
        vectors, (expected,) = learned.search([read_image(path, min_size=learned.decode_size)])  # decoded as evaluated
        assert _close(found.query, expected) and len(found.query.garments) >= 2
        assert found.query.localised == "garment" and found.query.garment == 0
        assert found.query.box == found.query.garments[0].box and found.query.boxes == expected.boxes
        np.testing.assert_allclose(found.query.vectors, vectors[0], atol=1e-5)
        items, scores = expected_ranking(store, model, path, None, crops=vectors)
        assert [h["item_id"] for h in found.hits] == items
        np.testing.assert_allclose([h["score"] for h in found.hits], scores, atol=1e-5)


def test_a_named_garment_is_searched_by_its_own_crop(boxhead_store, engine) -> None:
    store, _, model, _ = boxhead_store
    path = store.home / photos(store, "street")[0]["path"]
    best = engine.search_photo(path.read_bytes(), k=3)
    second = best.query.garments[1]
    found = engine.search_photo(path.read_bytes(), k=3, garment=1)
    assert (found.query.localised, found.query.garment) == ("garment", 1)
    assert found.query.box == found.query.garments[1].box == pytest.approx(second.box, abs=1e-5)
    assert _close(found.query, best.query)
    crop_box = expand_box(found.query.box, 1.1, 2 / 3, 1.0)  # the localiser's enlargement; the photos are square
    assert found.query.boxes == (crop_box,)  # one crop: the garment, not the whole photo again
    image = open_image(path, min_size=128)  # decoded as the crop pass's search decodes it (4 x the input's 32)
    assert_ranked_as(found, store, model, path, crop_vector(model, image, crop_box))


def test_a_box_is_searched_alone(boxhead_store, engine) -> None:
    store, _, model, _ = boxhead_store
    path = store.home / photos(store, "street")[2]["path"]
    box = (0.1, 0.2, 0.7, 0.9)
    found = engine.search_photo(path.read_bytes(), k=3, box=box)
    assert (found.query.localised, found.query.box, found.query.boxes, found.query.garment) == ("box", box, (box,), None)
    assert found.query.garments  # the page still gets the garments to draw
    # a region is decoded with more pixels than the whole photo (here: all 64 of its side, not
    # the 32 a whole-photo search decodes), so that it fills the model's input
    image = open_image(path, min_size=math.ceil(32 / 0.6))
    assert image.size == (64, 64)
    assert_ranked_as(found, store, model, path, crop_vector(model, image, box))


def crop_vector(model, image, box) -> np.ndarray:
    """``(1, 1, dim)``: the model's vector of ``box`` cut from ``image``."""
    with torch.no_grad():
        return model(model.preprocess(crop(image, box))[None]).numpy()[None]


def assert_ranked_as(found, store, model, path, vector) -> None:
    """The search's hits are the evaluation's ranking of ``vector``."""
    items, scores = expected_ranking(store, model, path, None, crops=vector)
    assert [h["item_id"] for h in found.hits] == items
    np.testing.assert_allclose([h["score"] for h in found.hits], scores, atol=1e-5)


def test_concurrent_searches_batch_their_passes_and_answer_as_one_at_a_time(boxhead_store, engine) -> None:
    store, index, _, _ = boxhead_store
    batched = SearchEngine(store, index, street_in_background=False, inference_mode="eager", batch_max=8, batch_wait_ms=200)
    try:
        data = [(store.home / r["path"]).read_bytes() for r in photos(store, "street")[:6]]
        answers: dict[int, object] = {}
        threads = [threading.Thread(target=lambda i=i: answers.__setitem__(i, batched.search_photo(data[i], k=3))) for i in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for i, photo in enumerate(data):
            alone = engine.search_photo(photo, k=3)
            assert _close(answers[i].query, alone.query)
            np.testing.assert_allclose(answers[i].query.vectors, alone.query.vectors, atol=1e-5)
            assert [h["item_id"] for h in answers[i].hits] == [h["item_id"] for h in alone.hits]
    finally:
        batched.close()


def _close(a, b) -> bool:
    """Garments equal up to float rounding (passes on other threads, or batched, may round
    differently in the last bits)."""
    return len(a.garments) == len(b.garments) and all(
        ga.category == gb.category and np.allclose(ga.box, gb.box, atol=1e-5) and abs(ga.score - gb.score) < 1e-5
        for ga, gb in zip(a.garments, b.garments)
    )


# ------------------------------------------------------------------------------ the API


def upload(client, data: bytes, **params):
    return client.post("/search", params={"k": 3, **params}, files={"image": ("q.jpg", data, "image/jpeg")})


def test_the_api_answers_with_garments_and_the_region_searched(boxhead_store, client, engine) -> None:
    store, *_ = boxhead_store
    data = (store.home / photos(store, "street")[0]["path"]).read_bytes()
    body = upload(client, data).json()
    direct = engine.search_photo(data, k=3)
    np.testing.assert_allclose([g["box"] for g in body["garments"]], [g.box for g in direct.query.garments], atol=1e-5)
    assert [g["category"] for g in body["garments"]] == [g.category for g in direct.query.garments]
    assert {g["category"] for g in body["garments"]} <= {"tops", "skirts"}
    assert body["localised"] == "garment" and body["garment"] == 0 and body["box"] == body["garments"][0]["box"]
    assert [r["item_id"] for r in body["results"]] == [h["item_id"] for h in direct.hits]

    # a garment's box sent back as box= searches exactly that region
    box = body["garments"][1]["box"]
    again = upload(client, data, box=",".join(repr(v) for v in box)).json()
    assert again["localised"] == "box" and again["box"] == box and again["garment"] is None
    other = upload(client, data, garment=1).json()
    assert other["localised"] == "garment" and other["garment"] == 1 and other["box"] == pytest.approx(box, abs=1e-5)
    assert client.get("/health").json()["detects_garments"] is True


@pytest.mark.parametrize(
    "params, words",
    [
        ({"box": "0.2,0.2,1.3,0.9"}, "outside the photo"),
        ({"box": "-0.1,0,0.5,0.5"}, "outside the photo"),
        ({"box": "0.5,0.2,0.5,0.9"}, "no area"),
        ({"box": "0.6,0.2,0.2,0.9"}, "no area"),
        ({"box": "nan,0,1,1"}, "NaN or infinite"),
        ({"box": "0,0,inf,1"}, "NaN or infinite"),
        ({"box": "0,0,1"}, "has 3 value(s)"),
        ({"box": "0,0,1,1,1"}, "has 5 value(s)"),
        ({"box": "a,b,c,d"}, "not four numbers"),
        ({"box": ""}, "has 1 value(s)"),
        ({"box": "0.5,0.5,0.501,0.9"}, "thinner than"),
        ({"garment": 9}, "garment=9 is out of range"),
        ({"garment": -1}, "garment"),
        ({"garment": "first"}, "garment"),
        ({"garment": 0, "box": "0,0,1,1"}, "not both"),
    ],
)
def test_a_bad_region_is_a_422_in_the_error_shape_and_the_service_stays_up(boxhead_store, client, params, words) -> None:
    store, *_ = boxhead_store
    data = (store.home / photos(store, "street")[0]["path"]).read_bytes()
    response = upload(client, data, **params)
    assert response.status_code == 422, response.text
    body = response.json()
    assert set(body) == {"detail", "code"} and body["code"] == "invalid_request"
    assert words in body["detail"] and "\n" not in body["detail"]
    assert upload(client, data).status_code == 200  # still serving


def test_a_photo_with_no_garment_found_is_searched_whole_and_flagged(tmp_path) -> None:
    store, index, model, _ = publish_boxhead_store(tmp_path, edge_bias=-30.0)  # every box shrinks to nothing
    with TestClient(create_app(store.home, street_in_background=False, inference_mode="eager")) as client:
        data = (store.home / photos(store, "street")[1]["path"]).read_bytes()
        body = upload(client, data).json()
        assert body["garments"] == [] and body["localised"] == "whole_photo" and body["garment"] is None
        assert len(body["results"]) == 3
        response = upload(client, data, garment=0)
        assert response.status_code == 422 and "has 0 (no garment" in response.json()["detail"]


def test_a_non_detecting_localiser_answers_as_before_and_searches_boxes(tiny_home) -> None:
    """The default store serves no localiser: no garments, the whole photo, and box= works."""
    with TestClient(create_app(tiny_home, street_in_background=False, inference_mode="eager")) as client:
        store = ArtifactStore(tiny_home)
        data = (store.home / photos(store, "street")[0]["path"]).read_bytes()
        body = upload(client, data).json()
        assert (body["garments"], body["localised"], body["garment"], body["box"]) == ([], "whole_photo", None, None)
        assert upload(client, data, box="0,0,0.5,0.5").json()["localised"] == "box"
        assert upload(client, data, garment=0).status_code == 422
        assert client.get("/health").json()["detects_garments"] is False


def test_the_multicrop_grid_is_flagged_as_fixed_crops(tmp_path) -> None:
    store = ArtifactStore(tmp_path)
    images = publish_crawl(store)
    trained, model = publish_checkpoint(store)
    index = publish_serving(store, images, trained, model, "served-grid", {"localise": {"name": "multicrop"}})
    engine = SearchEngine(store, index, street_in_background=False, inference_mode="eager", batch_max=1)
    try:
        found = engine.search_photo((store.home / photos(store, "street")[0]["path"]).read_bytes(), k=2)
        assert found.query.localised == "fixed_crops" and found.query.garments == () and len(found.query.boxes) == 11
    finally:
        engine.close()


def test_openapi_documents_the_region_parameters_and_the_garments(client) -> None:
    spec = client.get("/openapi.json").json()
    operation = spec["paths"]["/search"]["post"]
    params = {p["name"]: p for p in operation["parameters"]}
    assert {"garment", "box"} <= set(params) and "x0,y0,x1,y1" in params["box"]["description"]
    assert "index" in params["garment"]["description"] and params["garment"]["schema"]["anyOf"][0]["minimum"] == 0
    fields = spec["components"]["schemas"]["SearchResponse"]["properties"]
    assert {"garments", "localised", "garment", "box"} <= set(fields)
    assert "detects_garments" in spec["components"]["schemas"]["Health"]["properties"]


def test_a_head_for_another_backbone_is_refused_at_load(tmp_path) -> None:
    store = ArtifactStore(tmp_path)
    images = publish_crawl(store)
    trained, model = publish_checkpoint(store)
    ref = publish_box_head(store)
    path = store.file(ref, N.LOCALISER_FILE)
    head, _ = load_localiser(path)
    from street2shop.models.localise import save_localiser

    other = tmp_path / "other.pt"
    save_localiser(other, head, backbone="efficientnet_lite0", input_size=[32, 32])
    with store.publish("localise", [N.LOCALISER], "other-backbone") as w:
        w[N.LOCALISER].path(N.LOCALISER_FILE).write_bytes(other.read_bytes())
    serving = {"localise": {"name": "boxhead", "localiser": f"localise/{N.LOCALISER}@other-backbone"}}
    index = publish_serving(store, images, trained, model, "served-other", serving)
    with pytest.raises(ValueError, match="reads backbone 'efficientnet_lite0'"):
        SearchEngine(store, index, street_in_background=False, inference_mode="eager", batch_max=1)


def test_bad_regions_are_refused_by_the_engine_too(engine, boxhead_store) -> None:
    store, *_ = boxhead_store
    data = (store.home / photos(store, "street")[0]["path"]).read_bytes()
    with pytest.raises(BadRegion, match="outside the photo"):
        engine.search_photo(data, k=1, box=(0.0, 0.0, 1.5, 1.0))
    assert engine.search_photo(data, k=1, box=WHOLE).query.boxes == (WHOLE,)
