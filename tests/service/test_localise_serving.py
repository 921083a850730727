"""/search runs the localisation the evaluate stage scored: the served model's serving.json
names it, and the service's ranking of a street photo equals the evaluation path's."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.compute as pc
import pytest

from service_testing import publish_checkpoint, publish_crawl, publish_serving
from street2shop.models.embed import embed_images
from street2shop.models.localise import create_localiser
from street2shop.retrieval.metrics import evaluate_retrieval
from street2shop.service.engine import SearchEngine
from street2shop.storage.store import ArtifactStore

LOCALISE = {"name": "multicrop", "options": {"scales": [0.6], "positions": "corners+centre"}}


def served_store(home, scoring: str):
    """A crawl, an evaluate/checkpoint whose serving.json asks for multicrop, its shop
    vectors and the index built from them."""
    store = ArtifactStore(home)
    images = publish_crawl(store)
    trained, model = publish_checkpoint(store)
    localise = {**LOCALISE, "options": {**LOCALISE["options"], "scoring": scoring}}
    index = publish_serving(store, images, trained, model, f"served-{scoring}", {"localise": localise})
    table = store.read_table(images)
    return store, index, model, localise, table


@pytest.mark.parametrize("scoring", ["max", "mean"])
def test_search_ranks_a_street_photo_as_the_evaluation_does(tmp_path, scoring) -> None:
    store, index, model, localise, table = served_store(tmp_path, scoring)
    engine = SearchEngine(store, index, street_in_background=False, inference_mode="eager", batch_max=4)
    try:
        assert engine.localise.name == "multicrop" and engine.crop_scoring == scoring
        shop = table.filter(pc.equal(table.column("role"), "shop"))
        street = table.filter(pc.equal(table.column("role"), "street"))
        gallery = embed_images(model, [str(store.home / p) for p in shop.column("path").to_pylist()], num_workers=0)
        localiser = create_localiser(localise["name"], **localise["options"])
        for row in street.to_pylist()[:4]:
            path = store.home / row["path"]
            crops = embed_images(model, [str(path)], num_workers=0, crops=lambda im: localiser(im).boxes)
            assert crops.shape[:2] == (1, 6)  # the whole photo + 5 crops
            expected = evaluate_retrieval(crops, [row["item_id"]], gallery, shop.column("item_id").to_pylist(), ks=(3,), crop_scoring=scoring)
            hits = engine.search_image(path.read_bytes(), k=3)
            assert [h["item_id"] for h in hits] == expected.ranked_items[0].tolist()
            np.testing.assert_allclose([h["score"] for h in hits], expected.ranked_scores[0], atol=1e-5)
    finally:
        engine.close()
