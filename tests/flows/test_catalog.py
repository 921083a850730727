"""A catalogue CSV to a served index without crawling (street2shop.flows.catalog)."""

from __future__ import annotations

from street2shop.flows.catalog import index_catalog
from street2shop.retrieval.index import load_index
from street2shop.storage.names import CHECKPOINT_FILE, INDEX_FILE
from street2shop.storage.store import ArtifactStore


def test_index_catalog_publishes_what_the_index_stage_publishes(photo_set, tiny_checkpoint, tmp_path):
    store = ArtifactStore(tmp_path / "home")
    result = index_catalog(store, photo_set["gallery"], model=tiny_checkpoint)
    ref = result["index_ids"]
    manifest = store.manifest(ref)
    assert ref.stage == "index" and INDEX_FILE in manifest.files
    inputs = {r.name: r for r in manifest.inputs}
    assert set(inputs) == {"embeddings", "images", "checkpoint"}
    assert store.file(inputs["checkpoint"], CHECKPOINT_FILE).read_bytes() == tiny_checkpoint.read_bytes()
    ids = store.read_table(ref)
    index = load_index(store.file(ref, INDEX_FILE))
    assert index.ntotal == ids.num_rows == 8
    assert manifest.metrics["factory"] and manifest.metrics["vectors"] == 8
    # Items come from the catalogue, photos live in the store's blobs (the CSV folder may go).
    images = store.read_table(inputs["images"])
    assert sorted(set(images.column("item_id").to_pylist())) == ["p1:blue", "p1:red", "p2:blue", "p2:red"]
    assert all((store.home / p).is_file() for p in images.column("path").to_pylist())
    items = store.read_table(inputs["images"].model_copy(update={"name": "items"}))
    assert dict(zip(items.column("item_id").to_pylist(), items.column("category").to_pylist()))["p2:red"] == "shoes"
    # Same catalogue and model again: every step is found published.
    again = index_catalog(store, photo_set["gallery"], model=tiny_checkpoint)
    assert again.skipped and again.version == result.version
