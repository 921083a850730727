"""Cached descriptors of many views of the training photos: what a head on a frozen backbone trains on.

Full fine-tuning for a few dozen steps on two cores moves the backbone away from what it
knew (the demo's published model once scored below the untrained backbone on real photos);
a head on frozen features trains for thousands of steps in a minute, because every photo is
run through the backbone once, here, and the head then sees only descriptors. The views:

* ``whole``: every shop photo of the catalogue as it is (the gallery);
* ``mirror``: every training shop photo mirrored (a second view of the same garment);
* ``crop:<j>``: every crop ``j`` of the query-side localisation grid of every street photo
  of the train and validation splits. Training keeps, per street photo, the crops whose
  descriptors are closest to its item's shop photos (the crops that show the garment: no
  garment boxes are needed), and validation scores every crop as ``/search`` does.

All descriptors are the pretrained ones (:func:`~street2shop.models.embedder.pretrained_features`,
unit norm), so the untrained baseline's figures come from the same table.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict, Field

from street2shop.cleaning.selection import gallery_images, query_images, training_images
from street2shop.models.backbones import BackboneNameStr
from street2shop.models.embed import embed_images
from street2shop.models.embedder import Embedder, pretrained_features
from street2shop.models.localise import grid_boxes
from street2shop.retrieval.metrics import evaluate_retrieval
from street2shop.storage.schemas import vectors_matrix

WHOLE, MIRROR, CROP = "whole", "mirror", "crop"


class ViewParams(BaseModel):
    """Which views are cached, through which backbone, at which size."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    backbone: BackboneNameStr = "efficientnet_lite0"
    #: False: the backbone's initial weights under torch.manual_seed(seed) (a test backbone
    #: without pretrained ones; a head trained with the same seed starts from the same)
    pretrained: bool = True
    seed: int = 0
    image_size: int = Field(default=224, gt=0)
    #: photo-to-square policy (None: the backbone's, "pad"; see ``Preprocess.resize``)
    resize: Literal["pad", "squash", "centre"] | None = None
    #: the query-side localisation grid the street photos are cut into (a ``multicrop``
    #: localiser's options of :mod:`street2shop.models.localise`)
    crop_scales: list[float] = [0.75, 0.55]
    crop_positions: str = "corners+centre"
    mirror_shop: bool = True
    batch_size: int = Field(default=32, ge=1)


def views_schema(dim: int) -> pa.Schema:
    return pa.schema(
        [
            pa.field("view_id", pa.string(), nullable=False),  # "<image_id>#<view>"
            pa.field("image_id", pa.string(), nullable=False),
            pa.field("item_id", pa.string(), nullable=False),
            pa.field("role", pa.string(), nullable=False),
            pa.field("split", pa.string(), nullable=False),
            pa.field("view", pa.string(), nullable=False),  # whole | mirror | crop:<j>
            pa.field("vector", pa.list_(pa.float32(), dim), nullable=False),
        ]
    )


def view_model(params: ViewParams) -> Embedder:
    """The pretrained descriptor the views are made with."""
    import torch

    if not params.pretrained:
        torch.manual_seed(params.seed)
    return pretrained_features(params.backbone, image_size=params.image_size, pretrained=params.pretrained, resize=params.resize)


def crop_boxes(params: ViewParams) -> tuple:
    return grid_boxes(tuple(params.crop_scales), params.crop_positions, include_whole=True)


def view_features(annotated: pa.Table, model: Embedder, params: ViewParams) -> pa.Table:
    """The views of :mod:`this module <street2shop.models.views>` embedded by ``model``
    (the pretrained descriptor, or a faster runtime of it), one row each."""
    boxes = crop_boxes(params)
    gallery = gallery_images(annotated)
    train = training_images(annotated)
    train_shop = train.filter(pc.equal(train.column("role"), "shop"))
    street = pa.concat_tables([train.filter(pc.equal(train.column("role"), "street")), query_images(annotated, "val")])
    embed: Callable = lambda table, **kw: embed_images(  # noqa: E731
        model, table.column("path").to_pylist(), batch_size=params.batch_size, num_workers=0, **kw
    )
    parts = [(gallery, WHOLE, embed(gallery))]
    if params.mirror_shop and train_shop.num_rows:
        parts.append((train_shop, MIRROR, embed(train_shop, flip=True)))
    if street.num_rows:
        min_side = min(min(b[2] - b[0], b[3] - b[1]) for b in boxes)
        crops = embed(street, crops=lambda image: boxes, min_crop_side=min_side)  # (n, K, d)
        for j in range(len(boxes)):
            parts.append((street, f"{CROP}:{j}", crops[:, j]))
    rows: dict[str, list] = {k: [] for k in ("view_id", "image_id", "item_id", "role", "split", "view")}
    vectors = []
    for table, view, matrix in parts:
        ids = table.column("image_id").to_pylist()
        rows["view_id"] += [f"{i}#{view}" for i in ids]
        rows["image_id"] += ids
        rows["item_id"] += table.column("item_id").to_pylist()
        rows["role"] += table.column("role").to_pylist()
        rows["split"] += table.column("split").to_pylist()
        rows["view"] += [view] * table.num_rows
        vectors.append(matrix)
    matrix = np.concatenate(vectors).astype(np.float32)
    # a photo listed under two items (a re-listing) is one view per item: keep (view_id, item) rows
    out = pa.table({**rows, "vector": pa.FixedSizeListArray.from_arrays(pa.array(matrix.reshape(-1)), matrix.shape[1])})
    return out.cast(views_schema(matrix.shape[1]))


def training_views(views: pa.Table, street_crops: int) -> pa.Table:
    """The rows a head trains on: train-split shop views (whole and mirror) and, per train
    street photo, the ``street_crops`` crops closest to its item's shop photos."""
    train = views.filter(pc.equal(views.column("split"), "train"))
    roles = np.asarray(train.column("role").to_pylist(), dtype=object)
    kinds = np.asarray([v.split(":")[0] for v in train.column("view").to_pylist()], dtype=object)
    items = np.asarray(train.column("item_id").to_pylist(), dtype=object)
    images = np.asarray(train.column("image_id").to_pylist(), dtype=object)
    vectors = vectors_matrix(train)
    keep = np.flatnonzero(roles == "shop")
    shop_of: dict[str, list[int]] = {}
    for row in np.flatnonzero((roles == "shop") & (kinds == WHOLE)):
        shop_of.setdefault(items[row], []).append(row)
    crops = np.flatnonzero((roles == "street") & (kinds == CROP))
    by_photo: dict[tuple[str, str], list[int]] = {}
    for row in crops:
        by_photo.setdefault((images[row], items[row]), []).append(row)
    chosen = []
    for (_, item), rows in by_photo.items():
        if item not in shop_of:
            continue  # an item without a shop photo in the train split has nothing to match
        similarity = (vectors[rows] @ vectors[shop_of[item]].T).max(axis=1)
        chosen += [rows[i] for i in np.argsort(-similarity, kind="stable")[:street_crops]]
    return train.take(pa.array(np.sort(np.concatenate([keep, np.asarray(chosen, dtype=np.int64)]))))


def validation_views(views: pa.Table) -> tuple[pa.Table, np.ndarray, pa.Table, np.ndarray]:
    """``(queries, query crop vectors (n, K, d), gallery, gallery vectors)`` of the validation
    split: every crop of every val street photo against every shop photo of the catalogue."""
    whole = views.filter(pc.equal(views.column("view"), WHOLE))
    val = views.filter(pc.and_(pc.equal(views.column("split"), "val"), pc.equal(views.column("role"), "street")))
    if val.num_rows == 0:
        return val, np.empty((0, 0, 0), np.float32), whole, vectors_matrix(whole)
    order = np.lexsort((np.asarray([int(v.split(":")[1]) for v in val.column("view").to_pylist()]),
                        np.asarray(val.column("item_id").to_pylist(), dtype=object),
                        np.asarray(val.column("image_id").to_pylist(), dtype=object)))  # fmt: skip
    val = val.take(pa.array(order))
    n_crops = len({v for v in val.column("view").to_pylist()})
    queries = val.filter(pc.equal(val.column("view"), f"{CROP}:0"))
    crops = vectors_matrix(val).reshape(queries.num_rows, n_crops, -1)
    return queries, crops, whole, vectors_matrix(whole)


def head_training_rows(views: pa.Table, street_crops: int) -> tuple[pa.Table, np.ndarray]:
    """What a head trains on: the :func:`training_views` as trainer rows (``image_id`` = the
    view id, which triplets and logs name; ``photo_id`` = the photo) and their descriptors."""
    train = training_views(views, street_crops)
    train = train.rename_columns(
        ["image_id" if c == "view_id" else ("photo_id" if c == "image_id" else c) for c in train.column_names]
    )
    return train, vectors_matrix(train)


def validation_fn(views: pa.Table, k: int) -> Callable[[Embedder], float]:
    """A head's validation top-``k`` on the cached validation views (every crop of every val
    street photo, scored as ``/search`` does, against every shop photo); NaN without any."""
    queries, query_crops, gallery, gallery_vectors = validation_views(views)
    query_items, gallery_items = queries.column("item_id").to_pylist(), gallery.column("item_id").to_pylist()

    def score(model: Embedder) -> float:
        if queries.num_rows == 0:  # no validation queries (tiny shop): no early stopping signal
            return float("nan")
        report = evaluate_retrieval(model.refine_descriptors(query_crops), query_items,
                                    model.refine_descriptors(gallery_vectors), gallery_items, ks=(k,))
        return float(report.overall[f"top{k}"])

    return score
