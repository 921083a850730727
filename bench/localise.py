"""Query-side localisation: accuracy against forward passes per query and ms per query.

    python bench/localise.py [--benchmark ../shared/data/hm-dev] [--queries 300] [--home H]

Each row is a ``multicrop`` grid of :mod:`street2shop.models.localise` (the whole photo plus
crops of the given sides at the given positions) and a resize policy (``pad``: letterboxed
into the square, the package's default; ``centre``: short side scaled, centre cropped): the benchmark's queries are searched as
``/search`` searches them (every crop embedded, the best crop's score per shop photo) against
every shop photo of the benchmark. ``ms/query`` is the wall time of embedding one query's
crops (decode, cropping, preprocessing and the network, OpenVINO fp32, batch 32 photos) on
this machine, measured over the queries scored. With ``--home`` (a store the demo ran on),
the trained head published there is scored on the same descriptors beside the untrained
backbone (the head refines the backbone's descriptors, so it costs no further passes).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path


from street2shop.cleaning.selection import gallery_images, query_images
from street2shop.models.embed import embed_images
from street2shop.models.embedder import load_embedder, pretrained_features
from street2shop.models.fast import optimize_for_inference
from street2shop.models.localise import grid_boxes
from street2shop.retrieval.metrics import evaluate_retrieval
from street2shop.sources.labelled import annotated_from_csvs, read_labelled_csv

#: name -> (scales, positions, resize: how every photo and crop becomes the square input)
GRIDS: dict[str, tuple[tuple[float, ...], str, str]] = {
    "whole photo, pad": ((), "corners+centre", "pad"),
    "whole photo, centre": ((), "corners+centre", "centre"),
    "0.75 / 0.55 corners+centre, pad": ((0.75, 0.55), "corners+centre", "pad"),
    "0.75 / 0.55 corners+centre, centre": ((0.75, 0.55), "corners+centre", "centre"),
    "0.65 / 0.45 3x3, centre": ((0.65, 0.45), "grid3", "centre"),
    "0.85 / 0.7 / 0.55 / 0.45 3x3, centre": ((0.85, 0.7, 0.55, 0.45), "grid3", "centre"),
}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--benchmark", default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "hm-dev"))
    ap.add_argument("--queries", type=int, default=300, help="benchmark queries scored (the first N; 0: all)")
    ap.add_argument("--image-size", type=int, default=224)
    ap.add_argument("--backbone", default="efficientnet_lite0")
    ap.add_argument("--grids", default="all", help="comma-separated grid names (prefixes), or all")
    ap.add_argument("--home", default=None, help="a demo store: also score its trained head (recipe head)")
    args = ap.parse_args(argv)

    bench = Path(args.benchmark)
    real = annotated_from_csvs(read_labelled_csv(bench / "gallery.csv"), read_labelled_csv(bench / "queries.csv"))
    queries, gallery = query_images(real, "test"), gallery_images(real)
    if args.queries:
        queries = queries.slice(0, args.queries)
    models, shops = {}, {}
    head = None
    if args.home:
        from street2shop.storage import names as N
        from street2shop.storage.store import ArtifactStore

        store = ArtifactStore(args.home)
        head = load_embedder(store.file(store.latest(N.TRAIN, N.CHECKPOINT), N.CHECKPOINT_FILE))
        if not head.refines_pretrained:
            sys.exit(f"{args.home}'s latest checkpoint is not a head on the frozen backbone")
    gallery_ms = {}
    shop_items = gallery.column("item_id").to_pylist()
    query_items = queries.column("item_id").to_pylist()
    paths = queries.column("path").to_pylist()

    rows = []
    wanted = [g for g in GRIDS if args.grids == "all" or any(g.startswith(p) for p in args.grids.split(","))]
    for name in wanted:
        scales, positions, resize = GRIDS[name]
        if resize not in models:  # the gallery is embedded once per resize policy
            models[resize] = optimize_for_inference(
                pretrained_features(args.backbone, image_size=args.image_size, resize=resize), "openvino", fallback="eager")
            t0 = time.perf_counter()
            shops[resize] = embed_images(models[resize], gallery.column("path").to_pylist(), num_workers=0)
            gallery_ms[resize] = 1000 * (time.perf_counter() - t0) / gallery.num_rows
        model, shop = models[resize], shops[resize]
        if head is not None and head.preprocess.resize != resize:
            print(f"note: the trained head was trained on {head.preprocess.resize!r} views; row {name!r} uses {resize!r}", file=sys.stderr)
        boxes = grid_boxes(scales, positions, include_whole=True)
        min_side = min(min(b[2] - b[0], b[3] - b[1]) for b in boxes)
        t0 = time.perf_counter()
        crops = embed_images(model, paths, num_workers=0, crops=lambda image, b=boxes: b, min_crop_side=min_side)
        ms = 1000 * (time.perf_counter() - t0) / len(paths)
        report = evaluate_retrieval(crops, query_items, shop, shop_items, ks=(1, 20))
        row = {"grid": name, "passes": len(boxes), "ms": ms, "top1": report.overall["top1"], "top20": report.overall["top20"]}
        if head is not None:
            trained = evaluate_retrieval(head.refine_descriptors(crops), query_items, head.refine_descriptors(shop), shop_items, ks=(1, 20))
            row |= {"trained_top1": trained.overall["top1"], "trained_top20": trained.overall["top20"]}
        rows.append(row)
        print(row, file=sys.stderr)

    print(f"\n{bench.name}: {len(paths)} queries against {len(shop_items)} shop photos; {args.backbone} ImageNet weights + GeM at "
          f"{args.image_size} px, OpenVINO fp32; gallery embedded at "
          + ", ".join(f"{v:.1f} ms/photo ({k})" for k, v in gallery_ms.items()) + "; "
          f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}")
    trained = head is not None
    print("| grid | passes / query | ms / query | untrained top-1 | untrained top-20 |" + (" trained top-1 | trained top-20 |" if trained else ""))
    print("| --- | --- | --- | --- | --- |" + (" --- | --- |" if trained else ""))
    for r in rows:
        cells = [r["grid"], str(r["passes"]), f"{r['ms']:.0f}", f"{r['top1']:.3f}", f"{r['top20']:.3f}"]
        if trained:
            cells += [f"{r['trained_top1']:.3f}", f"{r['trained_top20']:.3f}"]
        print("| " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
