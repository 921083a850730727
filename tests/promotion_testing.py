"""Hand-made evaluated models and their indexes, for the promotion rule's tests."""

from __future__ import annotations

from street2shop.storage.store import ArtifactRef, ArtifactStore, version_id


def publish_model(store: ArtifactStore, top20: float, tag: str, figures: dict | None = None) -> ArtifactRef:
    """An evaluate version with headline ``top20`` and an index built from its embeddings."""
    ev = version_id("evaluate", "1", params={"tag": tag})
    with store.publish("evaluate", ["metrics", "embeddings"], ev) as writers:
        writers["metrics"].metrics.update({"trained_top20": top20, "trained_top1": top20 / 2, **(figures or {})})
    embeddings = ArtifactRef(stage="evaluate", name="embeddings", version=ev)
    idx = version_id("index", "1", inputs={"embeddings": embeddings})
    with store.publish("index", ["index_ids"], idx, inputs={"embeddings": embeddings}) as writers:
        writers["index_ids"].metrics.update({"factory": "Flat", "vectors": 10})
    return ArtifactRef(stage="index", name="index_ids", version=idx)
