"""Does the service embed exactly what the evaluate stage published?

    python bench/serving_check.py --home H [--photos 20]

Loads the served index the way ``street2shop serve`` does (its precision, calibration and
localisation from ``serving.json``) and compares the service's embedding of each of the first
N shop photos (the whole-photo crop) with the vector the evaluate stage published for it.
Prints the served precision and the min / mean cosine (1.0: the same model).
"""

from __future__ import annotations

import argparse

import numpy as np

from street2shop.service.engine import SearchEngine
from street2shop.storage.images import open_image
from street2shop.storage.promotions import index_to_serve
from street2shop.storage.store import ArtifactStore


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--home", required=True)
    ap.add_argument("--photos", type=int, default=20)
    args = ap.parse_args()
    store = ArtifactStore(args.home)
    engine = SearchEngine(store, index_to_serve(store), street_in_background=False, batch_max=1)
    try:
        ids = list(engine.shop_vectors)[: args.photos]
        cosines = [float(engine.embed(open_image(engine.image_path[i]))[0] @ engine.shop_vectors[i]) for i in ids]
    finally:
        engine.close()
    print(f"served precision {engine.inference_mode}, localisation {engine.localise.name}: cosine of the service's "
          f"embedding to the published one over {len(ids)} shop photos: min {min(cosines):.6f}, mean {np.mean(cosines):.6f}")


if __name__ == "__main__":
    main()
