"""What the looks stages and the "shop the look" engine read: a crawl's lookbook posts and
its items, each with its frozen features, photo, style, category and product group."""

from __future__ import annotations

from collections import defaultdict

import pyarrow as pa
from pydantic import BaseModel, ConfigDict

from street2shop.models.features import FeatureParams, layout
from street2shop.models.outfit_view import item_features
from street2shop.storage import names as N
from street2shop.storage.schemas import OUTFITS, vectors_matrix
from street2shop.storage.store import ArtifactRef, ArtifactRefs, ArtifactStore, images_with_paths


class LooksRefs(ArtifactRefs):
    """The inputs of the looks stages: a crawl's lookbook and items, their features, its groups."""

    items: ArtifactRef
    images: ArtifactRef
    snaps: ArtifactRef
    snap_items: ArtifactRef
    item_features: ArtifactRef
    snap_features: ArtifactRef
    groups: ArtifactRef | None = None

    @classmethod
    def of_crawl(cls, images: ArtifactRef, item_features: ArtifactRef, snap_features: ArtifactRef,
                 groups: ArtifactRef | None) -> LooksRefs:
        """The inputs for the crawl that published ``images`` (its posts and items beside them)."""
        return cls(items=images.sibling(N.ITEMS), images=images, snaps=images.sibling(N.SNAPS),
                   snap_items=images.sibling(N.SNAP_ITEMS), item_features=item_features, snap_features=snap_features, groups=groups)


class LooksView(BaseModel):
    """Posts and items with features (arrays kept out of validation)."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    items: dict  # item id -> feature
    photo_of: dict  # item id -> path
    snaps: dict  # snap id -> feature
    snap_photo: dict  # snap id -> path
    style_of: dict  # snap id -> style
    links: dict  # snap id -> linked items (with features), page order
    category_of: dict
    group_of: dict


def load_looks_view(store: ArtifactStore, refs: LooksRefs) -> LooksView:
    items, photo_of = item_features(store, refs.images, refs.item_features)
    table = store.read_table(refs.snap_features)
    snap_vec_by_image = dict(zip(table.column("image_id").to_pylist(), vectors_matrix(table)))
    snaps_table = images_with_paths(store, refs.snaps).to_pylist()
    snaps = {r["snap_id"]: snap_vec_by_image[r["image_id"]] for r in snaps_table if r["image_id"] in snap_vec_by_image}
    links: dict[str, list[str]] = defaultdict(list)
    for r in sorted(store.read_table(refs.snap_items).to_pylist(), key=lambda r: (r["snap_id"], r["position"])):
        if r["snap_id"] in snaps and r["item_id"] in items:
            links[r["snap_id"]].append(r["item_id"])
    item_table = store.read_table(refs.items)
    # an item no dedup group names is in its product's group: no product in two splits
    group_of = dict(zip(item_table.column("item_id").to_pylist(), item_table.column("product_id").to_pylist()))
    if refs.groups is not None:
        g = store.read_table(refs.groups)
        group_of.update(zip(g.column("item_id").to_pylist(), g.column("group_id").to_pylist()))
    return LooksView(items=items, photo_of=photo_of, snaps={s: v for s, v in snaps.items() if s in links},
                     snap_photo={r["snap_id"]: r["path"] for r in snaps_table}, style_of={r["snap_id"]: r["style"] or "" for r in snaps_table},
                     links=dict(links), category_of=dict(zip(item_table.column("item_id").to_pylist(), item_table.column("category").to_pylist())),
                     group_of=group_of)


def refs_of_model(store: ArtifactStore, model: ArtifactRef) -> LooksRefs:
    """The inputs a ``looks_model`` was trained on (its manifest's inputs; the two features
    artifacts told apart by what they are features of)."""
    inputs = store.manifest(model).inputs
    named = {r.name: r for r in inputs if r.name != N.PHOTO_FEATURES}
    features = {store.manifest(r).inputs[0].name: r for r in inputs if r.name == N.PHOTO_FEATURES}
    return LooksRefs(items=named[N.ITEMS], images=named[N.IMAGES], snaps=named[N.SNAPS], snap_items=named[N.SNAP_ITEMS],
                     item_features=features[N.IMAGES], snap_features=features[N.SNAPS], groups=named.get(N.GROUPS))


def posts_table(view: LooksView) -> pa.Table:
    rows = [{"outfit_id": s, "item_id": i, "type": "", "position": k} for s, items in sorted(view.links.items())
            for k, i in enumerate(items)]
    return pa.Table.from_pylist(rows, schema=OUTFITS)


def layout_of(store: ArtifactStore, refs: LooksRefs) -> tuple[list[tuple[str, int]], dict]:
    manifest = store.manifest(refs.item_features)
    params = FeatureParams(**manifest.params)
    dim = int(manifest.metrics["dim"])
    extras = sum(w for n, w in layout(params, 0) if n in params.extras)
    return layout(params, dim - extras), params.model_dump(mode="json")
