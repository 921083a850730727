"""The service runs the precision the evaluate stage chose (serving.json), calibrated on the
same photos, and says so on /health; it reports ``warming`` until its first passes ran."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.compute as pc
import pytest

from service_testing import publish_checkpoint, publish_crawl, publish_serving
from street2shop.service.engine import SearchEngine
from street2shop.storage.store import ArtifactNotFound, ArtifactStore

pytest.importorskip("openvino")


def served_store(home, serving: dict):
    store = ArtifactStore(home)
    images = publish_crawl(store)
    trained, model = publish_checkpoint(store)
    version = "served-" + str(abs(hash(json.dumps(serving, sort_keys=True))))[:8]
    index = publish_serving(store, images, trained, model, version, serving)
    table = store.read_table(images)
    shop = table.filter(pc.equal(table.column("role"), "shop"))
    return store, index, shop.column("image_id").to_pylist()


def test_the_engine_serves_the_evaluated_int8_model_with_its_calibration(tmp_path) -> None:
    from isolated import in_child, run_in_child

    if not in_child():
        return run_in_child(f"{__file__}::test_the_engine_serves_the_evaluated_int8_model_with_its_calibration")
    store, index, shop_ids = served_store(tmp_path / "a", {"inference_mode": "openvino_int8", "calibration": [],
                                                           "precisions": {"openvino_int8": {"images_per_s": 9.0, "top20": 0.5}}})
    with pytest.raises(ArtifactNotFound, match="calibration"):
        SearchEngine(store, index, street_in_background=False, batch_max=1)  # int8 without its photos: a clear error
    calibration = shop_ids[:4]
    store, index, _ = served_store(tmp_path / "b", {"inference_mode": "openvino_int8", "calibration": calibration,
                                                    "precisions": {"openvino_int8": {"images_per_s": 9.0, "top20": 0.5}}})
    engine = SearchEngine(store, index, street_in_background=False, batch_max=1)
    other = SearchEngine(store, index, street_in_background=False, batch_max=1, inference_mode="openvino")
    try:
        assert engine.inference_mode == "openvino_int8" and engine.precision_figures == {"images_per_s": 9.0, "top20": 0.5}
        assert other.inference_mode == "openvino"  # an explicit mode wins over serving.json
        from PIL import Image

        photo = Image.new("RGB", (64, 64), (200, 30, 30))
        a, b = engine.embed(photo), other.embed(photo)
        assert a.shape == b.shape and float((a * b).sum()) > 0.8  # the same model, quantised
        assert not np.array_equal(a, b)
    finally:
        engine.close()
        other.close()


def test_health_says_warming_until_the_first_passes_ran(tmp_path, monkeypatch) -> None:
    import threading

    from fastapi.testclient import TestClient

    from street2shop.service.app import create_app

    store, _, _ = served_store(tmp_path, {"inference_mode": "openvino"})
    release = threading.Event()
    real_warm = SearchEngine.warm

    def slow_warm(self):
        release.wait(30)
        real_warm(self)

    monkeypatch.setattr(SearchEngine, "warm", slow_warm)
    client = TestClient(create_app(store.home, street_in_background=False, batch_max=1))
    health = client.get("/health").json()
    assert health["status"] == "warming" and health["inference_mode"] == "openvino"
    release.set()
    for _ in range(300):
        if client.get("/health").json()["status"] == "ok":
            break
        threading.Event().wait(0.1)
    assert client.get("/health").json()["status"] == "ok"
