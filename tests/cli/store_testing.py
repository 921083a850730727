"""A small published store for the command-line tests, built in well under a second: a crawl
(items and images, the real schemas) and one index version of two artifacts reading it. No model, no torch."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from street2shop.storage.store import ArtifactRef, ArtifactStore, content_version

ITEMS = [
    {"item_id": f"p{i}:red", "product_id": f"p{i}", "seller_id": "s1", "category": "tops" if i % 2 else "skirts",
     "colour": "red", "title": f"item {i}", "url": f"http://shop/p{i}"}
    for i in range(4)
]


def publish_small_store(home: Path) -> ArtifactStore:
    store = ArtifactStore(home)
    items = pa.Table.from_pylist(ITEMS)
    version = content_version({"items": items})
    with store.publish("crawl", ["items"], version) as w:
        w["items"].write_table(items)
    crawl = ArtifactRef(stage="crawl", name="items", version=version)
    # a second version with two artifacts: "versions" counts it once, "artifacts" twice
    with store.publish("index", ["index_ids", "notes"], "a" * 16, inputs=[crawl]) as w:
        w["index_ids"].path("ids.txt").write_text("p0:red\n")
        w["notes"].path("notes.txt").write_text("two artifacts, one version\n")
        w["index_ids"].metrics["vectors"] = 1
    return store
