"""Which version ids the pipeline derives, and whether a run published anything new.

Runs the whole pipeline on a demo shop generated once into ``--home`` (seeded, served on a
fixed loopback port, because the crawl's version includes the photos' URLs) and prints one
JSON line: each stage's version and whether it was reused. Run it at one commit, then at
another with the same ``--home``: a change that keeps every version id (a refactor) prints
``"new": []`` the second time, i.e. nothing re-ran and nothing new was published::

    git checkout A && python bench/version_ids.py --home /tmp/ids      # publishes every stage
    git checkout B && python bench/version_ids.py --home /tmp/ids      # "new": [] if ids held

``--backbone efficientnet_lite0`` also covers the stages that only run with a pretrained
backbone (the embedding dedup pass, the ``pretrained`` baseline), at a tiny budget;
``--garments real`` a shop of real garments (40 products), whose curated outfits and lookbook
add the outfit and looks stages (features, outfit_train/evaluate, looks_train/evaluate).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--home", type=Path, required=True, help="artifact store; the demo shop is generated inside it once")
    ap.add_argument("--backbone", default="tiny", choices=["tiny", "efficientnet_lite0"])
    ap.add_argument("--garments", default="procedural", choices=["procedural", "real"],
                    help="real: a shop with outfits and a lookbook, so the outfit and looks stages run too")
    ap.add_argument("--port", type=int, default=18731, help="loopback port of the demo shop (keep it fixed between runs)")
    args = ap.parse_args(argv)

    os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="s2s-ids-prefect-"))
    os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    from prefect.testing.utilities import prefect_test_harness

    from street2shop.flows.demo import TINY, demo_config, ensure_shop
    from street2shop.flows.pipeline import pipeline
    from street2shop.shop.server import ShopServer
    from street2shop.storage.store import ArtifactStore

    size = TINY
    if args.backbone != "tiny":
        size = TINY.model_copy(update=dict(backbone=args.backbone, train_image_size=96, dedup_methods=["hash", "embedding"], steps_per_epoch=2, epochs=1))
    if args.garments == "real":  # the tests' real-garment demo (tests/flows/conftest.py)
        size = size.model_copy(update=dict(products=40, garments="real", image_size=48))
    shop = ensure_shop(args.home / "demo-shop" / f"{args.backbone}-{size.products}-s{size.seed}{'-real' if args.garments == 'real' else ''}", size)
    before = {(m.stage, m.name, m.version) for m in ArtifactStore(args.home).manifests()}
    with prefect_test_harness(server_startup_timeout=180), ShopServer(shop, port=args.port) as server:
        result = pipeline(str(args.home), demo_config(shop, server.url, size, progress=False))
    after = {(m.stage, m.name, m.version) for m in ArtifactStore(args.home).manifests()}
    out = {
        "stages": {s["label"]: s["version"] for s in result.stages},  # a label that repeats (features) shows its last
        "new": result.ran,
        "published_versions_added": len(after - before),
        "promotion": result.promotion and result.promotion.get("reason"),
    }
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
