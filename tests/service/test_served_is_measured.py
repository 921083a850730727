"""What /search serves is what the evaluation measured: for a store whose serving.json names the
learned localiser (a crop pass, or the box pooled from the map), the service's query vectors
and garments for a photo are those ``street2shop eval``'s path computes for the same file, at
the served precision."""

from __future__ import annotations

import numpy as np
import pyarrow.compute as pc
import pytest
from fastapi.testclient import TestClient

from service_testing import publish_boxhead_store
from street2shop.cli.byo import _served
from street2shop.retrieval.evaluation import localised_features
from street2shop.service.app import create_app
from street2shop.service.engine import SearchEngine
from street2shop.storage.store import ArtifactStore


def street_paths(store: ArtifactStore, n: int = 4) -> list:
    table = store.read_table(store.latest("crawl", "images"))
    street = table.filter(pc.equal(table.column("role"), "street"))
    return [store.home / p for p in street.column("path").to_pylist()[:n]]


def measured(store: ArtifactStore, paths: list) -> np.ndarray:
    """The query vectors ``street2shop eval`` scores for ``paths`` (its served model and localisation)."""
    served = _served(None, str(store.home), None, None, store.home / "unused.csv")
    features = localised_features(served["runner"], served["localise"], learned=served["learned"])
    return features.queries([str(p) for p in paths])


@pytest.mark.parametrize(
    "options, serving",
    [
        ({}, {}),  # the box crop in a second pass, eager fp32
        ({"pooled": True}, {}),  # the box's window pooled from pass 1's map
        ({"factors": [1.0, 1.3], "include_whole": False}, {}),
        ({"pooled": True}, {"inference_mode": "openvino"}),  # a compiled precision
    ],
    ids=["crop", "pooled", "two-crops", "pooled-openvino"],
)
def test_the_service_searches_the_vectors_the_evaluation_scored(tmp_path, options, serving) -> None:
    store, index, _, _ = publish_boxhead_store(tmp_path, options, serving)
    paths = street_paths(store)
    expected = measured(store, paths)
    engine = SearchEngine(store, index, street_in_background=False, batch_max=1)  # the served mode, as eval runs it
    try:
        assert engine.inference_mode == serving.get("inference_mode", "eager")
        for path, want in zip(paths, expected, strict=True):
            query = engine.search_photo(path.read_bytes(), k=3).query
            assert query.vectors.shape == want.shape == (len(query.boxes), engine.model.dim)
            np.testing.assert_allclose(query.vectors, want, atol=1e-5)
    finally:
        engine.close()


def test_the_api_answers_with_the_evaluated_vectors_ranking(tmp_path) -> None:
    """Through HTTP, the served photo's results are the ranking of the evaluated vectors."""
    store, index, _, _ = publish_boxhead_store(tmp_path, {"pooled": True})
    (path,) = street_paths(store, 1)
    engine = SearchEngine(store, index, street_in_background=False, batch_max=1)
    try:
        expected = engine.search_vector(measured(store, [path])[0], 3)
    finally:
        engine.close()
    with TestClient(create_app(store.home, street_in_background=False)) as client:
        body = client.post("/search", params={"k": 3}, files={"image": ("q.jpg", path.read_bytes(), "image/jpeg")}).json()
    assert [r["item_id"] for r in body["results"]] == [h["item_id"] for h in expected]
    np.testing.assert_allclose([r["score"] for r in body["results"]], [h["score"] for h in expected], atol=1e-5)
