"""What the outfit stages and the "complete the look" engine read: the usable outfits of a
crawl (or of Polyvore) with each item's features, type, category and photo.

An item's features are the mean of its shop photos' features; its type is the type the
outfits give it, and an item in no outfit takes the usual type of its category.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from street2shop.cleaning.outfits import usable_outfits
from street2shop.models.outfits import OutfitData
from street2shop.storage import names as N
from street2shop.storage.schemas import vectors_matrix
from street2shop.storage.store import ArtifactRef, ArtifactRefs, ArtifactStore, images_with_paths


def item_features(store: ArtifactStore, images: ArtifactRef, features: ArtifactRef) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """(item id -> the normalised mean feature of its shop photos, item id -> one shop photo's path)."""
    table = store.read_table(features)
    vectors = dict(zip(table.column("image_id").to_pylist(), vectors_matrix(table)))
    photos = images_with_paths(store, images)
    shop = photos.filter(pc.equal(photos.column("role"), "shop"))
    per_item: dict[str, list[np.ndarray]] = defaultdict(list)
    photo_of: dict[str, str] = {}
    for image_id, item, path in zip(shop.column("image_id").to_pylist(), shop.column("item_id").to_pylist(),
                                    shop.column("path").to_pylist()):
        if image_id in vectors:
            per_item[item].append(vectors[image_id])
            photo_of.setdefault(item, path)
    out = {}
    for item, vs in per_item.items():
        v = np.mean(vs, axis=0)
        out[item] = (v / max(float(np.linalg.norm(v)), 1e-12)).astype(np.float32)
    return out, photo_of


class OutfitRefs(ArtifactRefs):
    """The inputs of the outfit stages (part of their versions)."""

    #: the crawl's (or the data set's) items, photos and outfits, and the photos' features
    items: ArtifactRef
    images: ArtifactRef
    outfits: ArtifactRef
    features: ArtifactRef
    groups: ArtifactRef | None = None  # a crawl's product groups (None: each item is its own product)
    splits: ArtifactRef | None = None  # a data set's own split (Polyvore's; None: made here)
    questions: ArtifactRef | None = None  # ... and its own questions

    @classmethod
    def of_photos(cls, images: ArtifactRef, groups: ArtifactRef | None, features: ArtifactRef) -> OutfitRefs:
        """The inputs for photos ``images``: the items and outfits published beside them, and a
        data set's own split and questions (Polyvore's)."""
        given = images.stage == N.POLYVORE
        return cls(items=images.sibling(N.ITEMS), images=images, outfits=images.sibling(N.OUTFITS), features=features,
                   groups=groups, splits=images.sibling(N.OUTFIT_SPLITS) if given else None,
                   questions=images.sibling(N.OUTFIT_QUESTIONS) if given else None)

    @classmethod
    def of_model(cls, store: ArtifactStore, model: ArtifactRef) -> OutfitRefs:
        """The inputs an ``outfit_model`` was trained on (its manifest's)."""
        inputs = {r.name: r for r in store.manifest(model).inputs}
        return cls(items=inputs[N.ITEMS], images=inputs[N.IMAGES], outfits=inputs[N.OUTFITS], features=inputs[N.PHOTO_FEATURES],
                   groups=inputs.get(N.GROUPS), splits=inputs.get(N.OUTFIT_SPLITS), questions=inputs.get(N.OUTFIT_QUESTIONS))


@dataclass
class OutfitView:
    """What both stages read: usable outfits, item features and types."""

    outfits: pa.Table  # usable OUTFITS
    features: dict[str, np.ndarray]  # item id -> mean feature of its shop photos
    type_of: dict[str, str]  # every item with features -> type
    type_of_category: dict[str, str]
    category_of: dict[str, str]
    photo_of: dict[str, str]  # item id -> a shop photo's path (the report)
    group_of: dict[str, str]


def load_view(store: ArtifactStore, refs: OutfitRefs, min_items: int = 2) -> OutfitView:
    features, photo_of = item_features(store, refs.images, refs.features)
    items = store.read_table(refs.items)
    category_of = dict(zip(items.column("item_id").to_pylist(), items.column("category").to_pylist()))
    raw = store.read_table(refs.outfits)
    outfit_type = dict(zip(raw.column("item_id").to_pylist(), raw.column("type").to_pylist()))
    votes: dict[str, Counter] = defaultdict(Counter)
    for item, t in outfit_type.items():
        votes[category_of.get(item, "unknown")][t] += 1
    type_of_category = {c: v.most_common(1)[0][0] for c, v in sorted(votes.items())}
    type_of = {}
    for item in features:
        t = outfit_type.get(item) or type_of_category.get(category_of.get(item, ""))
        if t is not None:
            type_of[item] = t
    group_of = {}
    if refs.groups is not None:
        groups = store.read_table(refs.groups)
        group_of = dict(zip(groups.column("item_id").to_pylist(), groups.column("group_id").to_pylist()))
    usable = usable_outfits(raw, set(type_of), min_items)
    return OutfitView(usable, {i: features[i] for i in type_of}, type_of, type_of_category, category_of, photo_of, group_of)


def outfit_data(view: OutfitView, splits: pa.Table) -> OutfitData:
    ids = sorted(view.features)
    data = OutfitData(np.stack([view.features[i] for i in ids]), ids, [view.type_of[i] for i in ids], {})
    split_of = dict(zip(splits.column("outfit_id").to_pylist(), splits.column("split").to_pylist()))
    members: dict[str, list[int]] = defaultdict(list)
    for oid, item in zip(view.outfits.column("outfit_id").to_pylist(), view.outfits.column("item_id").to_pylist()):
        members[oid].append(data.index[item])
    for oid in sorted(members):
        if oid in split_of:
            data.outfits.setdefault(split_of[oid], []).append(members[oid])
    return data
