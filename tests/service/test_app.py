"""The search API over a tiny published store: search, items, reverse search, bad input, reload."""

from __future__ import annotations

import io

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from street2shop.crawler.validate import ImageLimits
from street2shop.service.app import create_app
from street2shop.service.schemas import SearchResponse
from street2shop.storage.store import ArtifactStore

from service_testing import ITEMS, publish_crawl, publish_index, shop_photo


@pytest.fixture(scope="module")
def client(tiny_home):
    app = create_app(tiny_home, street_in_background=False, limits=ImageLimits(max_bytes=200_000, max_pixels=1_000_000))
    with TestClient(app) as c:
        yield c


def upload(client, data: bytes, k: int | None = None, category: str | None = None, field: str = "image", name="q.jpg"):
    params = {key: v for key, v in {"k": k, "category": category}.items() if v is not None}
    return client.post("/search", params=params, files={field: (name, data, "image/jpeg")})


@pytest.mark.parametrize("item_id", sorted(ITEMS))
def test_a_shop_photo_finds_its_own_item_first(client, tiny_home, item_id) -> None:
    _, data = shop_photo(ArtifactStore(tiny_home), item_id)
    response = upload(client, data, k=3)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert SearchResponse.model_validate(body).k == 3  # the documented schema, field for field
    top = body["results"][0]
    assert top["item_id"] == item_id and top["rank"] == 1
    assert top["score"] == pytest.approx(1.0, abs=1e-4)  # the very photo is in the index
    category, colour, _, _ = ITEMS[item_id]
    assert (top["category"], top["colour"]) == (category, colour)
    # absolute, built from the address the request came to
    assert top["image_url"].startswith("http://testserver/images/") and top["item_url"] == f"http://testserver/items/{item_id}"
    assert [r["rank"] for r in body["results"]] == [1, 2, 3]
    scores = [r["score"] for r in body["results"]]
    assert scores == sorted(scores, reverse=True)
    assert len({r["item_id"] for r in body["results"]}) == 3  # photo hits de-duplicated to items


def test_k_larger_than_the_catalogue_returns_every_item_once(client, tiny_home) -> None:
    _, data = shop_photo(ArtifactStore(tiny_home), "p1:red")
    results = upload(client, data, k=100).json()["results"]
    assert sorted(r["item_id"] for r in results) == sorted(ITEMS)


def test_category_filter_returns_only_that_category(client, tiny_home) -> None:
    _, data = shop_photo(ArtifactStore(tiny_home), "p1:red")  # a top, searched among skirts
    results = upload(client, data, k=10, category="skirts").json()["results"]
    assert sorted(r["item_id"] for r in results) == ["p4:yellow", "p5:black", "p6:pink"]
    assert {r["category"] for r in results} == {"skirts"}


def test_item_details_and_photo_bytes(client, tiny_home) -> None:
    image_id, data = shop_photo(ArtifactStore(tiny_home), "p2:blue")
    item = client.get("/items/p2:blue").json()
    assert item["category"] == "tops" and item["title"] == "blue top p2"
    assert len(item["shop_photos"]) == 2 and len(item["street_photos"]) == 2
    assert image_id in [p["image_id"] for p in item["shop_photos"]]
    photo = client.get(f"/images/{image_id}")
    assert photo.status_code == 200 and photo.content == data
    assert photo.headers["content-type"] == "image/jpeg"


def test_reverse_search_ranks_every_street_photo_by_similarity(client) -> None:
    body = client.get("/items/p4:yellow/street", params={"k": 100}).json()
    assert body["item_id"] == "p4:yellow"
    assert len(body["results"]) == 2 * len(ITEMS)  # every street photo, none filtered
    scores = [r["score"] for r in body["results"]]
    assert scores == sorted(scores, reverse=True) and all(-1.0 <= s <= 1.0 + 1e-5 for s in scores)
    own = [r for r in body["results"] if r["same_item"]]
    assert len(own) == 2 and all(r["item_id"] == "p4:yellow" for r in own)
    assert len(client.get("/items/p4:yellow/street", params={"k": 3}).json()["results"]) == 3


def jpeg_bytes(width: int, height: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), (200, 10, 10)).save(buf, "JPEG")
    return buf.getvalue()


def png_bomb() -> bytes:
    """A 1-bit PNG of 4000 x 4000 pixels: a few KB on disk, 16 MP once decoded."""
    buf = io.BytesIO()
    Image.new("1", (4000, 4000)).save(buf, "PNG", optimize=True)
    return buf.getvalue()


@pytest.mark.parametrize(
    "data, status, message",
    [
        (b"", 400, "empty file"),
        (b"this is not an image at all", 415, "not an image"),
        (jpeg_bytes(64, 64)[:300], 400, "truncated"),
        (jpeg_bytes(8, 8), 400, "too small"),
        (png_bomb(), 413, "too many pixels"),
        (b"\xff" * 200_001, 413, "too large"),
    ],
    ids=["empty", "text", "truncated", "tiny", "bomb", "huge-bytes"],
)
def test_bad_uploads_get_a_clear_4xx_and_the_service_stays_up(client, tiny_home, data, status, message) -> None:
    response = upload(client, data)
    assert response.status_code == status, response.text
    assert message in response.json()["detail"] and "q.jpg" in response.json()["detail"]
    _, good = shop_photo(ArtifactStore(tiny_home), "p1:red")
    assert upload(client, good).status_code == 200


def test_bad_requests(client, tiny_home) -> None:
    _, data = shop_photo(ArtifactStore(tiny_home), "p1:red")
    wrong_field = upload(client, data, field="photo")
    assert wrong_field.status_code == 422 and wrong_field.json() == {"detail": "body image: Field required", "code": "invalid_request"}
    for k in (0, 101):
        response = upload(client, data, k=k)
        assert response.status_code == 422 and response.json()["detail"].startswith("query k: ")
    unknown = upload(client, data, category="hats")
    assert unknown.status_code == 400 and "unknown category 'hats'" in unknown.json()["detail"]
    assert client.get("/items/nope:red").status_code == 404
    assert client.get("/items/nope:red/street").json() == {"detail": "unknown item 'nope:red'", "code": "not_found"}
    assert client.get("/images/" + "0" * 64).status_code == 404


def test_health_reports_the_versions_served(client, tiny_home) -> None:
    store = ArtifactStore(tiny_home)
    index = store.latest("index", "index_ids")
    inputs = {r.name: r.version for r in store.manifest(index).inputs}
    health = client.get("/health").json()
    assert health["index"] == index.version
    assert health["checkpoint"] == inputs["checkpoint"] == "tiny-seed0"
    assert health["crawl"] == inputs["images"] == store.latest("crawl", "items").version
    assert health["factory"] == "Flat" and health["vectors"] == 12 and health["items"] == 6
    assert health["categories"] == ["skirts", "tops"]
    assert health["street_photos"] == {"ready": True, "embedded": 12, "total": 12, "error": None}


def test_page_and_openapi_are_served(client) -> None:
    page = client.get("/")
    assert page.status_code == 200 and "<title>street2shop</title>" in page.text
    assert "http" not in page.text.replace("http-equiv", "")  # nothing external loads
    assert client.get("/static/app.js").status_code == 200
    spec = client.get("/openapi.json").json()
    assert spec["paths"]["/search"]["post"]["summary"] == "Find shop items in a photo"
    # /search returns a ready-made JSON Response (fast path); its model is still documented
    ok = spec["paths"]["/search"]["post"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert ok == {"$ref": "#/components/schemas/SearchResponse"}
    assert {"/search", "/items/{item_id}", "/items/{item_id}/street", "/health", "/admin/reload"} <= set(spec["paths"])


def test_reload_switches_to_a_newly_published_index(tmp_path) -> None:
    store = ArtifactStore(tmp_path)
    images = publish_crawl(store)
    first = publish_index(store, images, seed=0)
    app = create_app(tmp_path, street_in_background=False, admin_token="secret")
    with TestClient(app) as client:
        assert client.get("/health").json()["index"] == first.version
        assert client.post("/admin/reload", headers={"X-Admin-Token": "secret"}).json() == {
            "changed": False, "previous": first.version, "current": first.version}
        second = publish_index(store, images, seed=1)  # another checkpoint -> another index
        assert second.version != first.version
        assert client.post("/admin/reload").status_code == 403
        old_engine = app.state.served.engine
        reloaded = client.post("/admin/reload", headers={"X-Admin-Token": "secret"}).json()
        assert not old_engine._batcher.running()  # the replaced engine's batcher stopped
        assert reloaded == {"changed": True, "previous": first.version, "current": second.version}
        health = client.get("/health").json()
        assert (health["index"], health["checkpoint"]) == (second.version, "tiny-seed1")
        _, data = shop_photo(store, "p3:green")
        assert upload(client, data).json()["results"][0]["item_id"] == "p3:green"


def test_inference_mode_and_batching_are_parameters(tiny_home) -> None:
    app = create_app(tiny_home, street_in_background=False, inference_mode="eager", batch_max=1)
    engine = app.state.served.engine
    assert engine.inference_mode == "eager" and engine._batcher is None
    with TestClient(app) as client:
        _, data = shop_photo(ArtifactStore(tiny_home), "p2:blue")
        assert upload(client, data, k=1).json()["results"][0]["item_id"] == "p2:blue"
    with pytest.raises(ValueError, match="unknown inference mode 'warp'"):
        create_app(tiny_home, street_in_background=False, inference_mode="warp")


def test_an_exif_rotated_upload_finds_what_the_upright_photo_finds(client, tiny_home) -> None:
    """A phone stores an upright portrait as turned pixels plus an EXIF tag; the service
    decodes it upright, so the same item comes back with the same score."""
    from photo_testing import as_phone_stores_it, png

    _, data = shop_photo(ArtifactStore(tiny_home), "p3:green")
    photo = Image.open(io.BytesIO(data)).convert("RGB")
    upright, phone = upload(client, png(photo), k=3, name="q.png"), upload(client, as_phone_stores_it(photo), k=3, name="q.png")
    assert upright.status_code == phone.status_code == 200, (upright.text, phone.text)
    a, b = upright.json()["results"], phone.json()["results"]
    assert [r["item_id"] for r in a] == [r["item_id"] for r in b] and a[0]["item_id"] == "p3:green"
    assert [r["score"] for r in a] == pytest.approx([r["score"] for r in b], abs=1e-5)


def test_a_heic_upload_is_searched_like_a_jpeg(tiny_home) -> None:
    """iPhones upload HEIC by default: accepted by the service (not by the crawler's limits)."""
    _, data = shop_photo(ArtifactStore(tiny_home), "p4:yellow")
    buf = io.BytesIO()
    Image.open(io.BytesIO(data)).convert("RGB").save(buf, "HEIF", quality=95)
    with TestClient(create_app(tiny_home, street_in_background=False)) as c:
        response = upload(c, buf.getvalue(), k=3, name="IMG_0001.HEIC")
    assert response.status_code == 200, response.text
    assert response.json()["results"][0]["item_id"] == "p4:yellow"


def test_pages_of_results_and_their_total(client, tiny_home) -> None:
    _, data = shop_photo(ArtifactStore(tiny_home), "p1:red")
    whole = upload(client, data, k=6).json()
    assert whole["total"] == 6 and whole["offset"] == 0
    first, second = upload(client, data, k=2).json(), client.post(
        "/search", params={"k": 2, "offset": 2}, files={"image": ("q.jpg", data, "image/jpeg")}).json()
    assert [r["item_id"] for r in first["results"] + second["results"]] == [r["item_id"] for r in whole["results"][:4]]
    assert [r["rank"] for r in second["results"]] == [3, 4] and second["total"] == 6
    tops = upload(client, data, k=6, category="tops").json()
    assert tops["total"] == 3 and len(tops["results"]) == 3


def test_categories_match_in_any_case(client, tiny_home) -> None:
    _, data = shop_photo(ArtifactStore(tiny_home), "p4:yellow")
    for spelling in ("skirts", "Skirts", " SKIRTS "):
        body = upload(client, data, k=6, category=spelling).json()
        assert body["category"] == "skirts" and {r["category"] for r in body["results"]} == {"skirts"}


def test_every_error_has_one_shape(client, tiny_home) -> None:
    _, data = shop_photo(ArtifactStore(tiny_home), "p1:red")
    answers = {
        "not_found": client.get("/items/nope:red"),
        "no route": client.get("/nowhere"),
        "method": client.delete("/health"),
        "invalid_request": upload(client, data, k=0),
        "bad_request": upload(client, data, category="hats"),
        "unsupported": upload(client, b"just text"),
    }
    for name, answer in answers.items():
        body = answer.json()
        assert 400 <= answer.status_code < 500, name
        assert set(body) == {"detail", "code"} and isinstance(body["detail"], str) and body["code"], (name, body)
    assert answers["no route"].json()["code"] == "not_found" and answers["method"].json()["code"] == "method_not_allowed"
    spec = client.get("/openapi.json").json()  # and the schema documents that shape
    assert spec["paths"]["/search"]["post"]["responses"]["422"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ErrorDetail"}
    assert "HTTPValidationError" not in spec["components"]["schemas"]


def test_urls_are_absolute_and_follow_the_public_url(tiny_home) -> None:
    from fastapi.testclient import TestClient

    with TestClient(create_app(tiny_home, street_in_background=False, public_url="https://shop.example/api/")) as c:
        item = c.get("/items/p2:blue").json()
        assert all(p["url"].startswith("https://shop.example/api/images/") for p in item["shop_photos"])
        # the crawl's items keep the shop's link; here it is already absolute
        assert item["shop_url"] == "http://shop/p2"


def test_the_docs_load_nothing_from_elsewhere(client) -> None:
    docs = client.get("/docs")
    assert docs.status_code == 200
    assert "cdn" not in docs.text and "https://" not in docs.text
    assert client.get("/static/swagger-ui/swagger-ui-bundle.js").status_code == 200
    assert client.get("/static/swagger-ui/swagger-ui.css").status_code == 200


def test_a_relative_shop_link_is_made_absolute_with_the_crawled_shop_address() -> None:
    from types import SimpleNamespace

    from street2shop.service.routers.common import item_fields

    def engine(url: str | None, base_url: str | None):
        return SimpleNamespace(
            items={"p1:red": {"product_id": "p1", "category": "tops", "colour": "red", "title": "t", "url": url}},
            shop_base_url=base_url,
        )

    assert item_fields(engine("/p/p1", "http://127.0.0.1:8000"), "p1:red")["shop_url"] == "http://127.0.0.1:8000/p/p1"
    assert item_fields(engine("https://shop.example/p1", None), "p1:red")["shop_url"] == "https://shop.example/p1"
    assert item_fields(engine("/p/p1", None), "p1:red")["shop_url"] is None  # nowhere to resolve it: none, not a 404
