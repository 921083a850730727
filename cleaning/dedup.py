"""Merge near-duplicate listings into product groups, and split groups into train/val/test.

Marketplaces re-list the same product under other sellers with lightly edited seller photos
(a crop of a few percent a side, a resize, a watermark, a colour tweak of the same photo). If
one copy lands in train and another in test, retrieval metrics measure memorisation.

**What a copy is, and the evidence of one.** A copy is an edit of the *same photo*. Two passes
find candidate photo pairs between products:

1. ``"embedding"``: every shop photo is embedded by a frozen pretrained CNN (GeM-pooled
   EfficientNet-Lite0), then **PCA-whitened on the shop's own photos** (``whiten_dim``
   leading components, eigenvalue power -1/2; fitted without labels). Raw CNN
   features say "two dark jeans on a white backdrop" as loudly as "the same photo": on the
   tuning shops unrelated garments reach a raw cosine of 0.91 while a fifth of the copies
   stay below 0.88. Whitening divides out the directions every catalogue photo shares
   (backdrop, pose, garment class), and what is left is the photo's own detail: there the
   copies stand clear of unrelated pairs (``bench/dedup.py``). A pair is a copy when its
   whitened cosine is at least ``min_similarity`` (a FAISS inner-product range search).
   With fewer than ``2 * whiten_dim`` photos there is too little to fit a whitening, and the
   raw cosine is used (``stats["whitened"]`` says which).
2. ``"hash"``: perceptual hashes (``imagehash``) within a Hamming radius, found through a
   FAISS binary index (multi-index hashing, exact by the pigeonhole principle). A crop of a
   few percent moves a 64-bit pHash by 10-26 bits, as far as two unrelated cut-outs on the
   same studio backdrop; so with both passes a hash pair is evidence only when the
   embedding agrees (whitened cosine at least ``hash_min_similarity``). The hash pass alone
   (no CNN: the tests' and the tiny demo's setting) takes hash pairs as they are.

**Grouping that cannot chain.** Products are merged by *complete linkage* over the product
graph: a group is a set of products every two of which are joined by an accepted photo pair
(``scipy.cluster.hierarchy``, per connected component of the graph). Union-find over the
same edges (connected components, the previous rule) lets one false edge join two groups,
and the groups grow with the catalogue; under complete linkage a false edge can at worst
pair two products, never join their groups. Re-listings of one photo by several sellers are
all copies of each other, so they still form one group. Strongest pairs merge first.

Each product's ``evidence`` in ``groups`` names the strongest accepted pair that joins it to
its group (methods, hash distances, cosine, the two photos) and how many of the group's
product pairs are linked; unmerged products have none.

Merging is done at the *product* level, not the item (product x colour) level: the colours of
one product share a group unconditionally, and a product pair is linked when any colour of
one copies any colour of the other. Leakage happens at the product level (a model that saw A
in navy has seen B in red too, the garment is the same), so a finer grouping would still
leak. Pairs between two photos of the same product are ignored: two colours of one product
are not duplicates, they are already together.

Finally whole groups are assigned to splits, stratified by category (:func:`make_splits`):
no group is in two splits.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import faiss
import imagehash
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, Field, model_validator
from scipy.sparse import coo_matrix
from scipy.cluster.hierarchy import fcluster
from scipy.cluster.hierarchy import linkage as hierarchy_linkage
from scipy.spatial.distance import squareform
from scipy.sparse.csgraph import connected_components

from street2shop.cleaning.images import open_rgb
from street2shop.models.backbones import BackboneNameStr
from street2shop.models.embed import embed_images
from street2shop.models.embedder import pretrained_features
from street2shop.storage.schemas import GROUPS, SPLITS

HashName = Literal["phash", "dhash", "whash"]
MethodName = Literal["hash", "embedding"]

#: Perceptual hash functions by name (imagehash's signature: ``f(image, hash_size)``).
HASHERS: dict[str, Callable[..., imagehash.ImageHash]] = {
    "phash": imagehash.phash,
    "dhash": imagehash.dhash,
    "whash": imagehash.whash,
}

SPLIT_NAMES: tuple[str, ...] = ("train", "val", "test")


class DedupParams(BaseModel):
    """Parameters of the dedup/merge and split stage (they go into the version id)."""

    #: how photo pairs are found; which count, and how products are grouped: module docstring
    methods: list[MethodName] = Field(default_factory=lambda: ["hash", "embedding"], min_length=1)
    hashes: list[HashName] = Field(default_factory=lambda: ["phash"], min_length=1)
    hash_size: int = Field(8, ge=2, le=32)
    max_distance: int = Field(8, ge=0)
    #: With several hashes: a pair matches if it is within ``max_distance`` under every hash
    #: ("all": fewer false merges) or under any of them ("any": fewer missed duplicates).
    combine: Literal["all", "any"] = "all"
    #: Hamming search: "auto" picks by a cost model; "multihash" and "flat" are both exact.
    search: Literal["auto", "multihash", "flat"] = "auto"
    #: "embedding": photos at least this (whitened) cosine-similar are copies. Chosen on demo
    #: shops generated with seeds 7 and 8, never on the shops it is reported on (seeds 0, 1,
    #: 2): ``python bench/dedup.py --tune`` (docs/clean-data.md)
    min_similarity: float = Field(0.74, gt=-1.0, le=1.0)
    #: "embedding": PCA-whitening components fitted on the shop's photos (0: raw cosine)
    whiten_dim: int = Field(128, ge=0)
    #: with both methods, a hash pair counts when its (whitened) cosine is at least this
    #: (None: a hash pair counts alone, as it does when hashing is the only method). Tuned
    #: with ``min_similarity``: on the tuning shops a lower value added no true pair, so the
    #: hash pass only confirms (its distances are kept as evidence)
    hash_min_similarity: float | None = Field(0.74, gt=-1.0, le=1.0)
    #: "complete": a group's products are pairwise linked (cannot chain); "single": connected
    #: components of the linked pairs (chains; kept to measure against)
    linkage: Literal["complete", "single"] = "complete"
    #: "embedding": the frozen backbone (it must have pretrained weights) and its input size
    embed_backbone: BackboneNameStr = "efficientnet_lite0"
    embed_image_size: int = Field(160, ge=32)
    seed: int = 0
    train_fraction: float = Field(0.7, ge=0.0, le=1.0)
    val_fraction: float = Field(0.1, ge=0.0, le=1.0)
    test_fraction: float = Field(0.2, ge=0.0, le=1.0)

    @model_validator(mode="after")
    def _check(self) -> DedupParams:
        bits = self.hash_size * self.hash_size
        if bits % 8:
            # FAISS binary indexes work on whole bytes.
            raise ValueError(f"hash_size={self.hash_size} gives {bits} bits, not a multiple of 8")
        if "whash" in self.hashes and self.hash_size & (self.hash_size - 1):
            raise ValueError(f"whash needs a power-of-two hash_size, got {self.hash_size}")
        if self.max_distance >= bits:
            raise ValueError(f"max_distance={self.max_distance} must be below the {bits} hash bits")
        if len(set(self.hashes)) != len(self.hashes):
            raise ValueError(f"hashes listed twice: {self.hashes}")
        if len(set(self.methods)) != len(self.methods):
            raise ValueError(f"methods listed twice: {self.methods}")
        total = self.train_fraction + self.val_fraction + self.test_fraction
        if not math.isclose(total, 1.0, abs_tol=1e-9):
            raise ValueError(f"split fractions must sum to 1, got {total}")
        return self

    @property
    def fractions(self) -> dict[str, float]:
        return dict(zip(SPLIT_NAMES, (self.train_fraction, self.val_fraction, self.test_fraction)))


@dataclass(frozen=True)
class DedupResult:
    """Output of :func:`merge_near_duplicates`."""

    groups: pa.Table  #: GROUPS: item_id, group_id, evidence -- merged by every method
    #: :func:`pairs_schema`: every photo pair between two products accepted as a copy (kept
    #: by the grouping or not)
    pairs: pa.Table
    #: GROUPS merged by one method's pairs alone (to measure each method on its own)
    groups_by_method: dict[str, pa.Table] = field(default_factory=dict)
    stats: dict[str, float | int] = field(default_factory=dict)


def pairs_schema(hashes: Sequence[str], methods: Sequence[str] = ("hash",)) -> pa.Schema:
    """Schema of the matched-pairs table: the two photos, their products, which methods matched
    them (comma-separated), and every measure computed: one Hamming distance per hash when
    hashing, the cosine similarity when embedding (whichever method found the pair)."""
    fields = [
        pa.field("image_id_a", pa.string(), nullable=False),
        pa.field("image_id_b", pa.string(), nullable=False),
        pa.field("product_id_a", pa.string(), nullable=False),
        pa.field("product_id_b", pa.string(), nullable=False),
        pa.field("matched_by", pa.string(), nullable=False),
    ]
    if "hash" in methods:
        fields += [pa.field(h, pa.int32(), nullable=False) for h in hashes]
    if "embedding" in methods:
        fields.append(pa.field("cosine", pa.float32(), nullable=False))
    return pa.schema(fields)


@dataclass(frozen=True)
class _Pair:
    """One accepted photo pair between two products (``product_a < product_b``)."""

    image_a: str
    image_b: str
    product_a: str
    product_b: str
    matched_by: tuple[str, ...]
    distances: tuple[int, ...]  #: one per hash; empty when not hashing
    cosine: float | None  #: None when not embedding


# --------------------------------------------------------------------------- hashing


def hash_image(image, hashes: Sequence[str], hash_size: int) -> list[np.ndarray]:
    """Perceptual hashes of one PIL image, each packed into ``hash_size**2 / 8`` bytes."""
    return [np.packbits(HASHERS[h](image, hash_size=hash_size).hash.ravel()) for h in hashes]


# ------------------------------------------------------------------ Hamming range search


def _multihash_plan(n: int, bits: int, radius: int) -> tuple[int, int, int, float]:
    """Choose (substrings m, bits per substring b, flips, cost) for exact multi-index hashing.

    Split the code into ``m`` substrings of ``b`` bits: two codes within ``radius`` differ
    in at most ``radius // m`` bits on at least one substring (pigeonhole), so probing every
    bucket within ``radius // m`` flips of each substring finds all of them. The cost per
    query is ``m * probes * (1 + c * n / 2**b)`` (bucket probes plus candidates to verify,
    which cost about ``c`` probes each, measured); pick the cheapest ``m``.
    """
    best: tuple[float, int, int, int] | None = None
    for m in range(1, min(bits, radius + 1) + 1):
        b = bits // m
        if b > 32:  # probing 2**b-wide tables with many flips is never the cheapest
            continue
        flips = radius // m
        probes = sum(math.comb(b, k) for k in range(flips + 1))
        cost = m * probes * (1.0 + 4.0 * n / 2.0**b)
        if best is None or cost < best[0]:
            best = (cost, m, b, flips)
    if best is None:  # codes too long for b <= 32 with m <= radius + 1: fall back to flat cost
        return 1, 32, radius, math.inf
    return best[1], best[2], best[3], best[0]


def _search_method(n: int, bits: int, radius: int) -> str:
    """"flat" (FAISS brute force: popcounts on both cores, about 200x cheaper per comparison
    than a single-threaded bucket probe, measured) until sub-quadratic probing wins, which
    for 64-bit codes at radius 8 happens at a few hundred thousand codes."""
    return "flat" if n / 200.0 < _multihash_plan(n, bits, radius)[3] else "multihash"


def hamming_pairs(
    codes: np.ndarray, max_distance: int, method: str = "auto"
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every pair ``i < j`` of rows of ``codes`` within Hamming distance ``max_distance``.

    ``codes`` is ``(n, nbytes)`` uint8 (packed bits). Returns ``(i, j, distance)`` int64
    arrays sorted by ``(i, j)``. Both methods are exact; "multihash" scales sub-quadratically
    (see :func:`_multihash_plan`), "flat" is FAISS brute force.
    """
    codes = np.ascontiguousarray(codes, dtype=np.uint8)
    if codes.ndim != 2:
        raise ValueError(f"codes must be 2-D (n, nbytes), got shape {codes.shape}")
    n, nbytes = codes.shape
    bits = nbytes * 8
    empty = np.empty(0, dtype=np.int64)
    if n < 2:
        return empty, empty.copy(), empty.copy()
    if method == "auto":
        method = _search_method(n, bits, max_distance)
    if method == "flat":
        index = faiss.IndexBinaryFlat(bits)
    elif method == "multihash":
        m, b, flips, _ = _multihash_plan(n, bits, max_distance)
        index = faiss.IndexBinaryMultiHash(bits, m, b)
        index.nflip = flips
    else:
        raise ValueError(f"unknown search method {method!r}; use 'auto', 'multihash' or 'flat'")
    index.add(codes)
    # FAISS binary range search keeps distances strictly below the radius.
    lims, dist, idx = index.range_search(codes, max_distance + 1)
    query = np.repeat(np.arange(n, dtype=np.int64), np.diff(lims).astype(np.int64))
    idx = idx.astype(np.int64)
    upper = query < idx  # each pair once, and no self-matches
    i, j, d = query[upper], idx[upper], dist[upper].astype(np.int64)
    order = np.lexsort((j, i))
    return i[order], j[order], d[order]


def hamming_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise Hamming distance of two equally shaped packed uint8 arrays."""
    return np.bitwise_count(np.bitwise_xor(a, b)).sum(axis=-1).astype(np.int64)


# ------------------------------------------------------------------------------ merge


def _product_of_items(items: pa.Table) -> dict[str, str]:
    return dict(zip(items.column("item_id").to_pylist(), items.column("product_id").to_pylist()))


def merge_near_duplicates(
    items: pa.Table,
    shop_images: pa.Table,
    params: DedupParams,
    embed: Callable[[Sequence[str]], np.ndarray] | None = None,
) -> DedupResult:
    """Group items into products merged through near-duplicate shop photos.

    ``items`` is shaped like ITEMS, ``shop_images`` like IMAGES with absolute ``path``s (rows
    whose role is not "shop" are ignored). Photo pairs are found by each method in
    ``params.methods`` and accepted by the rule of the module docstring; products are then
    grouped by ``params.linkage`` over the accepted pairs. An unreadable
    photo is skipped and counted in ``stats["n_unreadable"]``. ``group_id`` is ``"g" + the
    smallest product_id of the group``, so it is deterministic and stable when unrelated
    products are added. ``embed`` maps readable photo paths to unit-norm rows (default:
    :func:`embed_shop_photos` with ``params``); a benchmark sweeping thresholds passes a
    cached one.
    """
    started = time.perf_counter()
    product_of = _product_of_items(items)
    shop = shop_images.filter(pc.equal(shop_images.column("role"), "shop"))
    unknown = sorted(set(shop.column("item_id").to_pylist()) - product_of.keys())
    if unknown:
        raise ValueError(f"{len(unknown)} shop photos belong to items not in `items`: {unknown[:5]}")

    # The same bytes may be listed under several items (even of different products): look at
    # each image once, remember every product it shows.
    products_of_image: dict[str, set[str]] = {}
    path_of_image: dict[str, str] = {}
    for image_id, item_id, path in zip(
        shop.column("image_id").to_pylist(),
        shop.column("item_id").to_pylist(),
        shop.column("path").to_pylist(),
    ):
        products_of_image.setdefault(image_id, set()).add(product_of[item_id])
        path_of_image.setdefault(image_id, path)

    hashing = "hash" in params.methods
    image_ids: list[str] = []
    codes: list[list[np.ndarray]] = []
    n_unreadable = 0
    for image_id, path in path_of_image.items():
        image = open_rgb(path)
        if image is None:
            n_unreadable += 1
            continue
        image_ids.append(image_id)
        if hashing:
            codes.append(hash_image(image, params.hashes, params.hash_size))
    hashed_at = time.perf_counter()

    per_hash: list[np.ndarray] = []
    if hashing:
        nbytes = params.hash_size * params.hash_size // 8
        per_hash = [
            np.array([c[k] for c in codes], dtype=np.uint8).reshape(len(codes), nbytes)
            for k in range(len(params.hashes))
        ]
    searched_at = time.perf_counter()
    vectors: np.ndarray | None = None
    whitened = False
    if "embedding" in params.methods:
        paths = [path_of_image[k] for k in image_ids]
        embeddings = embed(paths) if embed is not None else embed_shop_photos(paths, params)
        vectors, whitened = whiten(embeddings, params.whiten_dim, params.seed)
    embedded_at = time.perf_counter()
    found = find_copy_pairs(per_hash, vectors, params)

    # Photo pairs between different products, named in product order.
    methods = tuple(m for m in ("hash", "embedding") if m in params.methods)
    rows: list[_Pair] = []
    for k in np.flatnonzero(found.accepted).tolist():
        a, b = int(found.i[k]), int(found.j[k])
        matched_by = tuple(m for m, ok in (("hash", found.hash_ok[k]), ("embedding", found.embedding_ok[k])) if m in methods and ok)
        dist = tuple(found.distances[k].tolist())
        cos = float(found.cosine[k]) if found.cosine is not None else None
        ia_, ib_ = image_ids[a], image_ids[b]
        for pa_ in sorted(products_of_image[ia_]):
            for pb in sorted(products_of_image[ib_]):
                if pa_ < pb:
                    rows.append(_Pair(ia_, ib_, pa_, pb, matched_by, dist, cos))
                elif pb < pa_:
                    rows.append(_Pair(ib_, ia_, pb, pa_, matched_by, dist, cos))
    # One photo listed under two products is a pair of itself, matched by every method.
    zero = (0,) * (len(params.hashes) if hashing else 0)
    one = 1.0 if vectors is not None else None
    for image_id in image_ids:
        shared = sorted(products_of_image[image_id])
        for x in range(len(shared)):
            for y in range(x + 1, len(shared)):
                rows.append(_Pair(image_id, image_id, shared[x], shared[y], methods, zero, one))
    rows.sort(key=lambda r: (r.product_a, r.product_b, sum(r.distances), -(r.cosine or 0.0), r.image_a, r.image_b))

    schema = pairs_schema(params.hashes, methods)
    columns: dict[str, list] = {
        "image_id_a": [r.image_a for r in rows],
        "image_id_b": [r.image_b for r in rows],
        "product_id_a": [r.product_a for r in rows],
        "product_id_b": [r.product_b for r in rows],
        "matched_by": [",".join(r.matched_by) for r in rows],
    }
    if hashing:
        columns.update({h: [r.distances[k] for r in rows] for k, h in enumerate(params.hashes)})
    if vectors is not None:
        columns["cosine"] = [r.cosine for r in rows]
    pairs = pa.Table.from_pydict(columns, schema=schema)

    bits = params.hash_size * params.hash_size * len(params.hashes)
    group_of = _group_of_products(items, rows, params.linkage, bits)
    groups = _groups_table(items, group_of, rows, params.hashes, bits)
    groups_by_method = {
        m: _groups_table(items, _group_of_products(items, mrows, params.linkage, bits), mrows, params.hashes, bits)
        for m in methods
        for mrows in [[r for r in rows if m in r.matched_by]]
    }
    grouped_at = time.perf_counter()
    group_sizes = Counter(group_of.values())
    stats: dict[str, float | int] = {
        "n_items": items.num_rows,
        "n_products": len(set(product_of.values())),
        "n_shop_images": len(path_of_image),
        "n_readable": len(image_ids),
        "n_unreadable": n_unreadable,
        "n_candidate_pairs": int(len(found.i)),
        "n_pairs": pairs.num_rows,
        **{f"n_pairs_{m}": sum(1 for r in rows if m in r.matched_by) for m in methods},
        "whitened": int(whitened),
        "n_groups": len(group_sizes),
        "n_merged_groups": sum(1 for size in group_sizes.values() if size > 1),
        "largest_group_products": max(group_sizes.values(), default=0),
        "hash_seconds": round(hashed_at - started, 4),
        "search_seconds": round(searched_at - hashed_at + grouped_at - embedded_at, 4),
        "embed_seconds": round(embedded_at - searched_at, 4),
    }
    return DedupResult(groups=groups, pairs=pairs, groups_by_method=groups_by_method, stats=stats)


def embed_shop_photos(paths: Sequence[str], params: DedupParams) -> np.ndarray:
    """Unit-norm GeM features of the frozen pretrained ``params.embed_backbone`` (no training:
    the pass must work before, and independently of, the embedder this pipeline trains)."""
    model = pretrained_features(params.embed_backbone, image_size=params.embed_image_size)
    # Worker processes die under Prefect (tasks/stage.py): decode in this process.
    return embed_images(model, list(paths), num_workers=0)


#: at most this many photos fit the whitening (a seeded sample beyond): the covariance of a
#: 1,280-d descriptor is settled long before, and fitting costs O(n d^2)
WHITEN_FIT_MAX = 10_000


def whiten(embeddings: np.ndarray, dim: int, seed: int = 0) -> tuple[np.ndarray, bool]:
    """Unit-norm PCA-whitened rows (the ``dim`` leading components of the rows' covariance,
    each divided by its standard deviation: eigenvalue power -1/2) and True; the rows as
    given and False when ``dim`` is 0 or there are fewer than ``2 * dim`` rows or no more
    than ``dim`` columns. Fitted by numpy's symmetric eigensolver on the covariance (on the
    2-core machine three times faster than ``faiss.PCAMatrix``, measured)."""
    x = np.ascontiguousarray(embeddings, dtype=np.float32)
    if x.ndim != 2:
        raise ValueError(f"embeddings must be 2-D (n, dim), got shape {x.shape}")
    n, d = x.shape
    if dim == 0 or n < 2 * dim or d <= dim:
        return x, False
    fit = x
    if n > WHITEN_FIT_MAX:
        fit = x[np.sort(np.random.default_rng(seed).choice(n, WHITEN_FIT_MAX, replace=False))]
    mean = fit.mean(axis=0)
    centred = fit - mean
    eigenvalues, eigenvectors = np.linalg.eigh((centred.T @ centred).astype(np.float64) / len(fit))
    top = np.argsort(eigenvalues)[::-1][:dim]
    projection = (eigenvectors[:, top] / np.sqrt(np.maximum(eigenvalues[top], 1e-12))).astype(np.float32)
    y = (x - mean) @ projection
    y /= np.maximum(np.linalg.norm(y, axis=1, keepdims=True), 1e-12)
    return y, True


@dataclass(frozen=True)
class PhotoPairs:
    """Candidate photo pairs ``i < j`` found by either pass, with every measure of each, and
    which of them are accepted as evidence of a copy (see the module docstring)."""

    i: np.ndarray
    j: np.ndarray
    distances: np.ndarray  #: (pairs, hashes) Hamming distances; (pairs, 0) when not hashing
    cosine: np.ndarray | None  #: (whitened) cosine; None when not embedding
    hash_ok: np.ndarray  #: within ``max_distance`` under ``combine``
    embedding_ok: np.ndarray  #: cosine at least ``min_similarity``
    accepted: np.ndarray


def find_copy_pairs(per_hash: Sequence[np.ndarray], vectors: np.ndarray | None, params: DedupParams) -> PhotoPairs:
    """Photo pairs found by the hash pass (``per_hash``: one packed code array per hash; empty
    when not hashing) and the embedding pass (``vectors``: unit-norm rows; None when not
    embedding), the rule of the module docstring deciding which are evidence."""
    n = len(vectors) if vectors is not None else (len(per_hash[0]) if per_hash else 0)
    keys = [np.empty(0, dtype=np.int64)]
    if per_hash:
        i, j = _matching_pairs(list(per_hash), params)
        keys.append(i * n + j)
    if vectors is not None:
        i, j, _ = cosine_pairs(vectors, params.min_similarity)
        keys.append(i * n + j)
    key = np.unique(np.concatenate(keys))
    i, j = key // max(n, 1), key % max(n, 1)
    distances = (
        np.stack([hamming_distance(h[i], h[j]) for h in per_hash], axis=1)
        if per_hash
        else np.zeros((len(i), 0), dtype=np.int64)
    )
    within = distances <= params.max_distance
    hash_ok = (within.all(axis=1) if params.combine == "all" else within.any(axis=1)) if per_hash else np.zeros(len(i), bool)
    cosine = np.einsum("nd,nd->n", vectors[i], vectors[j]) if vectors is not None else None
    embedding_ok = cosine >= np.float32(params.min_similarity) if cosine is not None else np.zeros(len(i), bool)
    confirmed = hash_ok
    if cosine is not None and params.hash_min_similarity is not None:
        confirmed = hash_ok & (cosine >= np.float32(params.hash_min_similarity))
    return PhotoPairs(i, j, distances, cosine, hash_ok, embedding_ok, embedding_ok | confirmed)


#: complete linkage works on each connected component's dense distance matrix: a component
#: this large means the thresholds link nearly everything, and is refused rather than run
MAX_COMPONENT = 10_000


def group_products(n: int, a: np.ndarray, b: np.ndarray, distance: np.ndarray, linkage: str = "complete") -> np.ndarray:
    """A group label per product ``0..n-1`` from linked product pairs ``(a, b)`` with a
    ``distance`` in [0, 1] each (smaller: stronger; repeated pairs keep their smallest).

    "single": the connected components. "complete": within each component, complete-linkage
    clustering where unlinked pairs are 2 apart, cut at 1: every two products of a group
    are linked, the strongest pairs merging first. Labels are dense ints, not ordered.
    """
    if linkage not in ("complete", "single"):
        raise ValueError(f"unknown linkage {linkage!r}; use 'complete' or 'single'")
    a = np.asarray(a, dtype=np.int64)
    b = np.asarray(b, dtype=np.int64)
    distance = np.asarray(distance, dtype=np.float64)
    if len(distance) and (distance.min() < 0 or distance.max() > 1):
        raise ValueError("pair distances must lie in [0, 1]")
    graph = coo_matrix((np.ones(len(a)), (a, b)), shape=(n, n))
    n_components, component = connected_components(graph, directed=False)
    if linkage == "single":
        return component
    sizes = np.bincount(component, minlength=n_components)
    big = np.flatnonzero(sizes > 2)
    if not len(big):
        return component
    if sizes.max() > MAX_COMPONENT:
        raise ValueError(f"{sizes.max()} products are linked into one component (more than {MAX_COMPONENT}): "
                         "the pair thresholds link almost everything; raise min_similarity or lower max_distance")
    labels = component.copy()
    order = np.argsort(component, kind="stable")
    starts = np.concatenate([[0], np.cumsum(sizes)])
    local = np.full(n, -1, dtype=np.int64)
    # Each edge once, its smallest distance, tagged with its component.
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    edge_order = np.lexsort((distance, hi, lo))
    lo, hi, distance = lo[edge_order], hi[edge_order], distance[edge_order]
    first = np.ones(len(lo), bool)
    first[1:] = (lo[1:] != lo[:-1]) | (hi[1:] != hi[:-1])
    lo, hi, distance = lo[first], hi[first], distance[first]
    edge_component = component[lo]
    next_label = n_components
    for c in big.tolist():
        members = order[starts[c] : starts[c + 1]]
        local[members] = np.arange(len(members))
        m = len(members)
        d = np.full((m, m), 2.0)
        np.fill_diagonal(d, 0.0)
        mine = edge_component == c
        d[local[lo[mine]], local[hi[mine]]] = distance[mine]
        d[local[hi[mine]], local[lo[mine]]] = distance[mine]
        flat = fcluster(hierarchy_linkage(squareform(d, checks=False), method="complete"), t=1.0, criterion="distance")
        labels[members] = next_label + flat - 1
        next_label += int(flat.max())
    return labels


#: below this many rows the cosine search is exact (flat); from it on, an inverted file
IVF_FROM = 20_000
#: inverted lists probed per query (of about 4 sqrt(n) lists)
IVF_NPROBE = 16


def cosine_pairs(embeddings: np.ndarray, min_similarity: float, k: int = 16) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairs ``i < j`` of unit-norm rows with cosine similarity >= ``min_similarity``.

    Below ``IVF_FROM`` rows: every such pair, exact (a FAISS flat inner-product range search).
    From it on: each row's ``k`` nearest neighbours through a FAISS inverted file (about
    ``4 sqrt(n)`` lists, ``IVF_NPROBE`` probed; approximate, its recall against exact search
    is measured by ``bench/dedup.py --scale``), kept when above the threshold: a copy has
    few copies, so ``k`` bounds the work without losing them. Returns ``(i, j, similarity)``
    sorted by ``(i, j)``.
    """
    x = np.ascontiguousarray(embeddings, dtype=np.float32)
    if x.ndim != 2:
        raise ValueError(f"embeddings must be 2-D (n, dim), got shape {x.shape}")
    empty = np.empty(0, dtype=np.int64)
    if len(x) < 2:
        return empty, empty.copy(), np.empty(0, dtype=np.float32)
    n, d = x.shape
    if n < IVF_FROM:
        index = faiss.IndexFlatIP(d)
        index.add(x)
        # FAISS keeps inner products strictly above the radius: step just below the threshold,
        # then apply ">=" exactly here.
        lims, sim, idx = index.range_search(x, float(np.nextafter(np.float32(min_similarity), np.float32(-2))))
        query = np.repeat(np.arange(n, dtype=np.int64), np.diff(lims).astype(np.int64))
        idx = idx.astype(np.int64)
    else:
        nlist = int(4 * math.sqrt(n))
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, nlist, faiss.METRIC_INNER_PRODUCT)
        rng = np.random.default_rng(0)
        index.train(x[np.sort(rng.choice(n, min(n, 40 * nlist), replace=False))])
        index.add(x)
        index.nprobe = IVF_NPROBE
        sim, idx = index.search(x, min(k, n))
        query = np.repeat(np.arange(n, dtype=np.int64), idx.shape[1])
        sim, idx = sim.ravel(), idx.ravel().astype(np.int64)
    keep = (query < idx) & (sim >= np.float32(min_similarity))
    # A pair found from both ends appears twice (inverted file): keep it once.
    key, first = np.unique(query[keep] * n + idx[keep], return_index=True)
    s = sim[keep][first]
    return key // n, key % n, s


def _matching_pairs(per_hash: list[np.ndarray], params: DedupParams) -> tuple[np.ndarray, np.ndarray]:
    """Photo index pairs ``i < j`` that match under ``params.combine`` of the hashes."""
    if params.combine == "all":
        # Search with the first hash; the others only filter its (few) candidates.
        i, j, _ = hamming_pairs(per_hash[0], params.max_distance, params.search)
        for codes in per_hash[1:]:
            ok = hamming_distance(codes[i], codes[j]) <= params.max_distance
            i, j = i[ok], j[ok]
        return i, j
    found = [hamming_pairs(codes, params.max_distance, params.search)[:2] for codes in per_hash]
    both = np.unique(np.stack([np.concatenate([f[0] for f in found]), np.concatenate([f[1] for f in found])]), axis=1)
    return both[0], both[1]


def _pair_distance(row: _Pair, bits: int) -> float:
    """A linked pair's distance in [0, 1] for :func:`group_products`: from the cosine when
    there is one, else from the summed hash distances."""
    if row.cosine is not None:
        return min(1.0, max(0.0, (1.0 - row.cosine) / 2.0))
    return min(1.0, sum(row.distances) / max(bits, 1))


def _group_of_products(items: pa.Table, rows: Sequence[_Pair], linkage: str, bits: int) -> dict[str, str]:
    """product_id -> group_id: :func:`group_products` over the linked product pairs."""
    products = sorted(set(items.column("product_id").to_pylist()))
    position = {p: k for k, p in enumerate(products)}
    src = np.array([position[r.product_a] for r in rows], dtype=np.int64)
    dst = np.array([position[r.product_b] for r in rows], dtype=np.int64)
    dist = np.array([_pair_distance(r, bits) for r in rows], dtype=np.float64)
    label = group_products(len(products), src, dst, dist, linkage)
    # Products are sorted, so the first product seen for a group is its smallest.
    name: dict[int, str] = {}
    for p, lab in zip(products, label.tolist()):
        name.setdefault(lab, "g" + p)
    return {p: name[lab] for p, lab in zip(products, label.tolist())}


def _evidence(row: _Pair, hashes: Sequence[str]) -> str:
    values = [f"{h}={d}" for h, d in zip(hashes, row.distances)]
    if row.cosine is not None:
        values.append(f"cos={row.cosine:.3f}")
    return f"{'+'.join(row.matched_by)}: {' '.join(values)} {row.image_a[:8]}~{row.image_b[:8]}"


def _groups_table(
    items: pa.Table, group_of: Mapping[str, str], rows: Sequence[_Pair], hashes: Sequence[str], bits: int
) -> pa.Table:
    """GROUPS with, as each merged product's evidence, the strongest linked pair joining it to
    another product of its own group (by the grouping's distance), the other product, and
    how many of the group's product pairs are linked."""
    best: dict[str, tuple[float, str]] = {}
    linked: dict[str, set[tuple[str, str]]] = {}
    for row in rows:
        group = group_of[row.product_a]
        if group != group_of[row.product_b]:
            continue  # a linked pair the grouping did not keep
        linked.setdefault(group, set()).add((row.product_a, row.product_b))
        rank = _pair_distance(row, bits)
        for p, other in ((row.product_a, row.product_b), (row.product_b, row.product_a)):
            if p not in best or rank < best[p][0]:
                best[p] = (rank, f"{_evidence(row, hashes)} with {other}")
    members = Counter(group_of.values())
    item_ids = items.column("item_id").to_pylist()
    products = items.column("product_id").to_pylist()
    order = sorted(range(len(item_ids)), key=lambda k: item_ids[k])

    def evidence(product: str) -> str:
        if product not in best:
            return ""
        group = group_of[product]
        size = members[group]
        return f"{best[product][1]}; {len(linked[group])}/{size * (size - 1) // 2} product pairs linked"

    return pa.Table.from_pydict(
        {
            "item_id": [item_ids[k] for k in order],
            "group_id": [group_of[products[k]] for k in order],
            "evidence": [evidence(products[k]) for k in order],
        },
        schema=GROUPS,
    )


# ---------------------------------------------------------------------- merge quality


def merge_quality(
    groups: pa.Table, truth_design_ids: Mapping[str, str], item_product: Mapping[str, str]
) -> dict[str, float | int]:
    """Pairwise precision/recall of the merge at the product level.

    Two products are truly the same when any item of one shares a ``design_id`` (the
    generator's ground truth, given per item: design and colour) with any item of the other,
    transitively. Comparing one design per product instead would miss a re-listing that
    copied only some colours. Predicted same: they share a ``group_id``. Counted by pair
    counting over the group x true-group contingency table, so it is exact without
    enumerating pairs. Items missing from the truth are ignored. Precision (recall) is 1.0
    when nothing is predicted (truly) merged. ``item_product``: each item's product (the
    items table's ``product_id``).
    """
    group_of_product: dict[str, str] = {}
    designs_of_product: dict[str, set[str]] = {}
    for item_id, group_id in zip(groups.column("item_id").to_pylist(), groups.column("group_id").to_pylist()):
        if item_id not in truth_design_ids:
            continue
        product = item_product[item_id]
        group_of_product.setdefault(product, group_id)
        designs_of_product.setdefault(product, set()).add(truth_design_ids[item_id])

    products = sorted(group_of_product)
    designs = sorted(set().union(*designs_of_product.values())) if products else []
    design_pos = {d: len(products) + k for k, d in enumerate(designs)}
    # Bipartite product-design graph: its components are the true product groups.
    src = [k for k, p in enumerate(products) for _ in designs_of_product[p]]
    dst = [design_pos[d] for p in products for d in sorted(designs_of_product[p])]
    size = len(products) + len(designs)
    graph = coo_matrix((np.ones(len(src)), (src, dst)), shape=(size, size))
    true_group = connected_components(graph, directed=False)[1][: len(products)].tolist()

    def pairs(counts: Counter) -> int:
        return sum(c * (c - 1) // 2 for c in counts.values())

    n_pred = pairs(Counter(group_of_product.values()))
    n_true = pairs(Counter(true_group))
    n_correct = pairs(Counter(zip((group_of_product[p] for p in products), true_group)))
    precision = n_correct / n_pred if n_pred else 1.0
    recall = n_correct / n_true if n_true else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "n_products": len(products),
        "n_pairs_predicted": n_pred,
        "n_pairs_true": n_true,
        "n_pairs_correct": n_correct,
    }


# ----------------------------------------------------------------------------- splits


def _split_targets(n: int, fractions: Sequence[float]) -> np.ndarray:
    """Group counts per split: largest-remainder rounding of ``n * fraction``; then, while a
    split with a positive fraction is empty and another has a group to spare, the largest
    split gives one to the empty split with the largest fraction (so 2 groups at 0.7/0.1/0.2
    give train 1, test 1)."""
    frac = np.asarray(fractions, dtype=float)
    ideal = frac * n
    counts = np.floor(ideal).astype(np.int64)
    for k in np.argsort(-(ideal - counts), kind="stable")[: n - counts.sum()]:
        counts[k] += 1
    while True:
        empty = np.flatnonzero((frac > 0) & (counts == 0))
        if not len(empty) or counts.max() < 2:
            return counts
        counts[int(np.argmax(counts))] -= 1
        counts[empty[np.argmax(frac[empty])]] += 1


def _stratified_allocation(per_category: np.ndarray, fractions: Sequence[float]) -> np.ndarray:
    """Integer (category x split) counts whose row sums are the categories' sizes, whose
    column sums are the global targets, and which stay close to ``size * fraction``."""
    frac = np.asarray(fractions, dtype=float)
    ideal = per_category[:, None] * frac[None, :]
    alloc = np.floor(ideal).astype(np.int64)
    target = _split_targets(int(per_category.sum()), fractions)
    # The "at least one per split" rule can leave a split's floors above its target: take
    # back from the cells furthest above their ideal share.
    for s in range(len(frac)):
        while alloc[:, s].sum() > target[s]:
            c = int(np.argmax(np.where(alloc[:, s] > 0, alloc[:, s] - ideal[:, s], -np.inf)))
            alloc[c, s] -= 1
    # Hand out the rest one group at a time to the cell with the largest deficit; a cell
    # is open while its category has groups left and its split is below target.
    while True:
        row_left = per_category - alloc.sum(axis=1)
        col_left = target - alloc.sum(axis=0)
        open_ = (row_left[:, None] > 0) & (col_left[None, :] > 0)
        if not open_.any():
            break
        c, s = np.unravel_index(np.argmax(np.where(open_, ideal - alloc, -np.inf)), alloc.shape)
        alloc[c, s] += 1
    return alloc


def make_splits(groups: pa.Table, items: pa.Table, params: DedupParams) -> pa.Table:
    """Assign every group to train/val/test (SPLITS), stratified by the group's category.

    A group's category is the majority category of its items (ties: alphabetical). Groups
    are counted, not items or photos. Deterministic for a seed: groups are sorted before a
    seeded shuffle. With tiny data every split with a positive fraction gets a group as
    long as there are at least as many groups as such splits.
    """
    category_of_item = dict(zip(items.column("item_id").to_pylist(), items.column("category").to_pylist()))
    votes: dict[str, Counter] = {}
    for item_id, group_id in zip(groups.column("item_id").to_pylist(), groups.column("group_id").to_pylist()):
        if item_id not in category_of_item:
            raise ValueError(f"item {item_id!r} of group {group_id!r} is not in `items`")
        votes.setdefault(group_id, Counter())[category_of_item[item_id]] += 1
    category_of_group = {g: min(v.items(), key=lambda kv: (-kv[1], kv[0]))[0] for g, v in votes.items()}

    categories = sorted(set(category_of_group.values()))
    members = {c: sorted(g for g, cat in category_of_group.items() if cat == c) for c in categories}
    sizes = np.array([len(members[c]) for c in categories], dtype=np.int64)
    fractions = list(params.fractions.values())
    alloc = _stratified_allocation(sizes, fractions) if len(categories) else np.zeros((0, 3), np.int64)

    rng = np.random.default_rng(params.seed)
    split_of: dict[str, str] = {}
    for c, category in enumerate(categories):
        shuffled = [members[category][k] for k in rng.permutation(len(members[category]))]
        bounds = np.concatenate([[0], np.cumsum(alloc[c])])
        for s, name in enumerate(SPLIT_NAMES):
            for g in shuffled[bounds[s] : bounds[s + 1]]:
                split_of[g] = name
    ordered = sorted(split_of)
    return pa.Table.from_pydict(
        {"group_id": ordered, "split": [split_of[g] for g in ordered]}, schema=SPLITS
    )
