"""Near-duplicate merge, merge quality and group splits (street2shop.cleaning.dedup)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from street2shop.cleaning import dedup as D
from street2shop.cleaning.dedup import (
    DedupParams,
    cosine_pairs,
    group_products,
    hamming_pairs,
    make_splits,
    merge_near_duplicates,
    merge_quality,
    whiten,
)
from street2shop.storage.schemas import GROUPS, SPLITS

EDITS = ("crop", "resize", "watermark", "colour")
#: the hash pass alone: most tests here are about hashing, merging and splitting, and need
#: no CNN (the embedding pass has tests of its own below)
HASH = DedupParams(methods=["hash"])


def _tables(rows: list[tuple[str, str, str, str]]) -> tuple[pa.Table, pa.Table]:
    """ITEMS and IMAGES tables from (item_id, category, image_id, path) rows."""
    items = {}
    for item_id, category, _, _ in rows:
        product, colour = item_id.split(":")
        items[item_id] = (product, "s0001", category, colour)
    items_table = pa.table(
        {
            "item_id": list(items),
            "product_id": [v[0] for v in items.values()],
            "seller_id": [v[1] for v in items.values()],
            "category": [v[2] for v in items.values()],
            "colour": [v[3] for v in items.values()],
            "title": [None] * len(items),
            "url": [None] * len(items),
        }
    )
    images = pa.table(
        {
            "image_id": [r[2] for r in rows],
            "item_id": [r[0] for r in rows],
            "role": ["shop"] * len(rows),
            "path": [r[3] for r in rows],
            "width": pa.array([160] * len(rows), pa.int32()),
            "height": pa.array([200] * len(rows), pa.int32()),
            "source_url": [f"http://shop/img/{r[2]}.jpg" for r in rows],
            "review_id": pa.array([None] * len(rows), pa.string()),
        }
    )
    return items_table, images


@pytest.fixture
def catalogue(tmp_path: Path, draw):
    """8 products (2 colours each, designs 0-7), 4 re-listings of designs 0-3 with one edit
    each (p000100-p000103), p000104 listing p000005's navy photo byte for byte, and
    p000105 whose only photo is corrupt."""
    rows: list[tuple[str, str, str, str]] = []
    for design in range(8):
        category = "dresses" if design % 2 == 0 else "sweaters"
        for colour in ("navy", "red"):
            image_id = f"{design:02d}{colour}".ljust(16, "0")
            path = draw.save(draw.garment(design, colour), tmp_path / f"{image_id}.jpg")
            rows.append((f"p{design:06d}:{colour}", category, image_id, path))
    for k, edit in enumerate(EDITS):
        image_id = f"dup{k}{edit}".ljust(16, "0")
        path = draw.save(draw.near_duplicate(draw.garment(k, "red"), edit), tmp_path / f"{image_id}.jpg")
        category = "dresses" if k % 2 == 0 else "sweaters"
        rows.append((f"p{100 + k:06d}:red", category, image_id, path))
    copied = next(r for r in rows if r[0] == "p000005:navy")
    rows.append(("p000104:navy", "sweaters", copied[2], copied[3]))
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    rows.append(("p000105:black", "dresses", "corrupt".ljust(16, "0"), str(corrupt)))
    return _tables(rows)


def _group_of(groups: pa.Table) -> dict[str, str]:
    return dict(zip(groups.column("item_id").to_pylist(), groups.column("group_id").to_pylist()))


# --------------------------------------------------------------------- Hamming search


def _brute_force(codes: np.ndarray, radius: int) -> set[tuple[int, int, int]]:
    bits = np.unpackbits(codes, axis=1).astype(np.int16)
    dist = (bits[:, None, :] != bits[None, :, :]).sum(axis=2)
    i, j = np.nonzero(np.triu(dist <= radius, k=1))
    return {(a, b, dist[a, b]) for a, b in zip(i.tolist(), j.tolist())}


@pytest.mark.parametrize("method", ["multihash", "flat", "auto"])
@pytest.mark.parametrize("radius", [0, 3, 8])
def test_hamming_search_equals_brute_force(method: str, radius: int) -> None:
    rng = np.random.default_rng(radius)
    codes = rng.integers(0, 256, (400, 8), dtype=np.uint8)
    # Plant neighbours at every distance around the radius, including exactly on it.
    for k, flips in enumerate(range(0, 11)):
        src, dst = 2 * k, 300 + k
        bits = np.unpackbits(codes[src])
        bits[rng.choice(64, flips, replace=False)] ^= 1
        codes[dst] = np.packbits(bits)
    i, j, d = hamming_pairs(codes, radius, method=method)
    found = set(zip(i.tolist(), j.tolist(), d.tolist()))
    expected = _brute_force(codes, radius)
    assert found == expected
    assert {(2 * k, 300 + k) for k in range(min(radius, 10) + 1)} <= {(a, b) for a, b, _ in found}
    assert np.all(i < j)


def test_hamming_search_refuses_an_unknown_method() -> None:
    with pytest.raises(ValueError, match="unknown search method"):
        hamming_pairs(np.zeros((3, 8), np.uint8), 2, method="lsh")


# ----------------------------------------------------------------------------- merge


def test_planted_duplicates_are_merged_and_unrelated_items_are_not(catalogue) -> None:
    items, images = catalogue
    result = merge_near_duplicates(items, images, HASH)
    assert result.groups.schema == GROUPS
    group_of = _group_of(result.groups)

    for k in range(4):  # each edited re-listing joins the product it copied
        assert group_of[f"p{100 + k:06d}:red"] == f"gp{k:06d}"
    assert group_of["p000104:navy"] == group_of["p000005:red"] == "gp000005"  # same bytes
    # Nothing else is merged: the other products are groups of their own.
    groups = {}
    for item, group in group_of.items():
        groups.setdefault(group, set()).add(item.split(":")[0])
    assert {g: len(p) for g, p in groups.items() if len(p) > 1} == {
        "gp000000": 2, "gp000001": 2, "gp000002": 2, "gp000003": 2, "gp000005": 2,
    }
    assert len(groups) == 14 - 5  # 14 products, 5 merges

    evidence = dict(zip(result.groups.column("item_id").to_pylist(), result.groups.column("evidence").to_pylist()))
    assert evidence["p000104:navy"].startswith("hash: phash=0 ")
    assert evidence["p000101:red"].startswith("hash: phash=")
    assert evidence["p000006:navy"] == ""
    assert result.stats["n_unreadable"] == 1
    assert result.stats["n_merged_groups"] == 5
    # Every pair is between two different products, named in order.
    pairs = result.pairs.to_pylist()
    assert pairs and all(p["product_id_a"] < p["product_id_b"] for p in pairs)
    assert all(p["phash"] <= 8 and p["matched_by"] == "hash" for p in pairs)
    assert "cosine" not in result.pairs.column_names  # no embedding pass was asked for
    assert set(result.groups_by_method) == {"hash"} and result.groups_by_method["hash"].equals(result.groups)


def test_colours_of_a_product_share_a_group_without_being_pairs(catalogue) -> None:
    items, images = catalogue
    result = merge_near_duplicates(items, images, HASH)
    group_of = _group_of(result.groups)
    for design in range(8):
        assert group_of[f"p{design:06d}:navy"] == group_of[f"p{design:06d}:red"]
    # A product with no photo that could be read is still grouped (alone).
    assert group_of["p000105:black"] == "gp000105"
    assert not any(p["product_id_a"] == p["product_id_b"] for p in result.pairs.to_pylist())


def test_a_stricter_radius_merges_less(catalogue) -> None:
    items, images = catalogue
    loose = merge_near_duplicates(items, images, HASH.model_copy(update={"max_distance": 8}))
    exact = merge_near_duplicates(items, images, HASH.model_copy(update={"max_distance": 0}))
    # At radius 0 only photos with identical hashes match: the byte-for-byte copy, and
    # edits that do not move the hash at all (e.g. a resize).
    exact_pairs = {(p["product_id_a"], p["product_id_b"]) for p in exact.pairs.to_pylist()}
    loose_pairs = {(p["product_id_a"], p["product_id_b"]) for p in loose.pairs.to_pylist()}
    assert ("p000005", "p000104") in exact_pairs
    assert exact_pairs < loose_pairs
    assert all(p["phash"] == 0 for p in exact.pairs.to_pylist())


def test_several_hashes_report_each_distance(catalogue) -> None:
    items, images = catalogue
    params = DedupParams(methods=["hash"], hashes=["phash", "dhash", "whash"], combine="all")
    result = merge_near_duplicates(items, images, params)
    assert result.pairs.column_names[-3:] == ["phash", "dhash", "whash"]
    rows = result.pairs.to_pylist()
    assert all(max(r["phash"], r["dhash"], r["whash"]) <= 8 for r in rows)
    group_of = _group_of(result.groups)
    # The resize and colour edits keep every hash close.
    assert group_of["p000101:red"] == "gp000001" and group_of["p000103:red"] == "gp000003"
    any_ = merge_near_duplicates(items, images, params.model_copy(update={"combine": "any"}))
    assert any_.pairs.num_rows >= result.pairs.num_rows


def test_shop_photos_of_unknown_items_are_refused(catalogue) -> None:
    items, images = catalogue
    with pytest.raises(ValueError, match="not in `items`"):
        merge_near_duplicates(items.slice(0, 3), images, HASH)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"hash_size": 6}, "not a multiple of 8"),
        ({"train_fraction": 0.8}, "sum to 1"),
        ({"hashes": ["phash", "phash"]}, "listed twice"),
        ({"methods": ["embedding", "embedding"]}, "methods listed twice"),
        ({"methods": ["ocr"]}, "Input should be 'hash' or 'embedding'"),
        ({"min_similarity": 1.5}, "less than or equal to 1"),
        ({"max_distance": 64}, "below the 64 hash bits"),
    ],
)
def test_bad_dedup_params_are_refused(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        DedupParams(**kwargs)


# ---------------------------------------------------------------------- merge quality


def _groups(mapping: dict[str, str]) -> pa.Table:
    return pa.table({"item_id": list(mapping), "group_id": list(mapping.values()), "evidence": [""] * len(mapping)})


def _products(truth: dict[str, str]) -> dict[str, str]:
    """Item -> product for these hand-made items, named ``<product>:<colour>``."""
    return {item: item.split(":", 1)[0] for item in truth}


def test_merge_quality_counts_product_pairs_by_hand() -> None:
    # Predicted: {A, B} {C} {D}; truth: A, B, C one design, D another.
    groups = _groups({"A:red": "g1", "A:navy": "g1", "B:red": "g1", "C:red": "g2", "D:red": "g3"})
    truth = {"A:red": "d1", "A:navy": "d1", "B:red": "d1", "C:red": "d1", "D:red": "d2"}
    q = merge_quality(groups, truth, _products(truth))
    # Predicted pairs: AB (1). True pairs: AB, AC, BC (3). Correct: AB (1).
    assert (q["n_pairs_predicted"], q["n_pairs_true"], q["n_pairs_correct"]) == (1, 3, 1)
    assert q["precision"] == 1.0 and q["recall"] == pytest.approx(1 / 3)
    assert q["f1"] == pytest.approx(2 * (1 / 3) / (1 + 1 / 3))
    assert q["n_products"] == 4  # colours of A counted once

    # A re-listing that copied only the second colour of a product is the same garment.
    truth = {"A:navy": "d1:navy", "A:red": "d1:red", "B:red": "d1:red"}
    relist = merge_quality(_groups({"A:navy": "g1", "A:red": "g1", "B:red": "g2"}), truth, _products(truth))
    assert (relist["n_pairs_true"], relist["n_pairs_predicted"], relist["recall"]) == (1, 0, 0.0)

    truth = {"A:x": "d1", "B:x": "d1", "C:x": "d2", "D:x": "d2"}
    over = merge_quality(_groups({"A:x": "g", "B:x": "g", "C:x": "g", "D:x": "g"}), truth, _products(truth))
    assert (over["n_pairs_predicted"], over["n_pairs_correct"]) == (6, 2)
    assert over["precision"] == pytest.approx(1 / 3) and over["recall"] == 1.0


# ----------------------------------------------------------------------------- splits


def test_no_group_or_design_is_in_two_splits_and_splits_are_seeded(catalogue) -> None:
    items, images = catalogue
    groups = merge_near_duplicates(items, images, HASH).groups
    params = DedupParams(seed=3)
    splits = make_splits(groups, items, params)
    assert splits.schema == SPLITS
    split_of = dict(zip(splits.column("group_id").to_pylist(), splits.column("split").to_pylist()))
    assert len(split_of) == splits.num_rows == len(set(groups.column("group_id").to_pylist()))
    # The planted re-listings land where the products they copy are.
    group_of = _group_of(groups)
    for k in range(4):
        assert split_of[group_of[f"p{100 + k:06d}:red"]] == split_of[group_of[f"p{k:06d}:red"]]
    assert set(split_of.values()) == {"train", "val", "test"}
    assert make_splits(groups, items, params).equals(splits)
    others = [make_splits(groups, items, DedupParams(seed=s)) for s in range(4, 10)]
    assert any(not o.equals(splits) for o in others)


def _synthetic_groups(sizes: dict[str, int]) -> tuple[pa.Table, pa.Table]:
    item_ids, categories, group_ids = [], [], []
    for category, n in sizes.items():
        for g in range(n):
            for colour in ("a", "b"):
                item_ids.append(f"{category[:3]}{g:04d}:{colour}")
                categories.append(category)
                group_ids.append(f"g{category[:3]}{g:04d}")
    items = pa.table({"item_id": item_ids, "category": categories})
    groups = pa.table({"item_id": item_ids, "group_id": group_ids, "evidence": [""] * len(item_ids)})
    return groups, items


def test_splits_are_stratified_by_category() -> None:
    groups, items = _synthetic_groups({"dresses": 60, "sweaters": 40})
    splits = make_splits(groups, items, DedupParams()).to_pylist()
    counts = Counter((row["group_id"][1:4], row["split"]) for row in splits)
    # 0.7/0.1/0.2 of 60 and of 40 groups, exactly.
    assert counts == {
        ("dre", "train"): 42, ("dre", "val"): 6, ("dre", "test"): 12,
        ("swe", "train"): 28, ("swe", "val"): 4, ("swe", "test"): 8,
    }


def test_a_groups_category_is_its_majority() -> None:
    items = pa.table({"item_id": ["x:1", "x:2", "x:3"], "category": ["tops", "dresses", "dresses"]})
    groups = pa.table({"item_id": ["x:1", "x:2", "x:3"], "group_id": ["g"] * 3, "evidence": [""] * 3})
    one = make_splits(groups, items, DedupParams(train_fraction=1.0, val_fraction=0.0, test_fraction=0.0))
    assert one.to_pylist() == [{"group_id": "g", "split": "train"}]


@pytest.mark.parametrize(
    ("sizes", "expected"),
    [
        ({"dresses": 3}, {"train": 1, "val": 1, "test": 1}),
        # 5 groups: 3.5/0.5/1.0 rounds to 4/0/1; val must not stay empty -> 3/1/1.
        ({"a": 1, "b": 1, "c": 1, "d": 1, "e": 1}, {"train": 3, "val": 1, "test": 1}),
        ({"dresses": 2}, {"train": 1, "test": 1}),
    ],
)
def test_tiny_data_fills_every_split_it_can(sizes: dict[str, int], expected: dict[str, int]) -> None:
    groups, items = _synthetic_groups(sizes)
    splits = make_splits(groups, items, DedupParams())
    assert Counter(splits.column("split").to_pylist()) == expected


# -------------------------------------------------------------------- embedding pass


def test_cosine_search_equals_brute_force() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 16)).astype(np.float32)
    x[200:220] = x[:20] + rng.normal(scale=0.3, size=(20, 16))  # planted near-copies
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    i, j, s = cosine_pairs(x, 0.9)
    sim = x @ x.T
    # Skip pairs within rounding of the threshold: BLAS and FAISS may sum in other orders.
    close = np.abs(sim - 0.9) < 1e-5
    expected = {(a, b) for a, b in zip(*np.nonzero(np.triu(sim >= 0.9, k=1))) if not close[a, b]}
    found = {(a, b) for a, b in zip(i.tolist(), j.tolist()) if not close[a, b]}
    assert found == expected and len(expected) >= 15
    assert np.all(i < j) and np.allclose(s, sim[i, j], atol=1e-5) and np.all(s >= 0.9)
    assert [len(v) for v in cosine_pairs(x[:1], 0.5)] == [0, 0, 0]


def test_pairs_of_both_methods_are_merged_with_their_evidence(catalogue) -> None:
    """A fake embedding (no CNN) where the photos of designs 6 and 7 point the same way,
    and every other photo its own way: the embedding pass alone merges 6 with 7."""
    items, images = catalogue

    item_of_path = {r["path"]: r["item_id"] for r in images.to_pylist()}

    def embed(paths):
        vectors = np.eye(len(paths), 32, dtype=np.float32)
        for k, path in enumerate(paths):
            if item_of_path[path].startswith(("p000006:", "p000007:")):
                vectors[k] = np.eye(1, 32, 31, dtype=np.float32)
        return vectors

    # hash_min_similarity=None: a hash pair counts alone, whatever its cosine
    params = DedupParams(methods=["hash", "embedding"], min_similarity=0.95, hash_min_similarity=None)
    result = merge_near_duplicates(items, images, params, embed=embed)
    group_of = _group_of(result.groups)
    assert group_of["p000007:red"] == group_of["p000006:navy"] == "gp000006"  # embedding only
    assert group_of["p000101:red"] == "gp000001"  # hash only
    by_method = {m: _group_of(g) for m, g in result.groups_by_method.items()}
    assert by_method["hash"]["p000007:red"] == "gp000007" and by_method["hash"]["p000101:red"] == "gp000001"
    assert by_method["embedding"]["p000007:red"] == "gp000006" and by_method["embedding"]["p000101:red"] == "gp000101"
    # The byte-for-byte copy is one photo: both methods match it (distance 0, cosine 1).
    assert by_method["embedding"]["p000104:navy"] == by_method["hash"]["p000104:navy"] == "gp000005"

    rows = {(r["product_id_a"], r["product_id_b"]): r for r in result.pairs.to_pylist() if r["image_id_a"] != r["image_id_b"]}
    same_bytes = [r for r in result.pairs.to_pylist() if r["image_id_a"] == r["image_id_b"]]
    assert rows[("p000006", "p000007")]["matched_by"] == "embedding"
    assert rows[("p000006", "p000007")]["cosine"] == pytest.approx(1.0)
    assert rows[("p000001", "p000101")]["matched_by"] == "hash"
    assert rows[("p000001", "p000101")]["cosine"] == pytest.approx(0.0)  # hash pairs get a cosine too
    assert [(r["product_id_a"], r["product_id_b"], r["matched_by"]) for r in same_bytes] == [("p000005", "p000104", "hash,embedding")]
    evidence = dict(zip(result.groups.column("item_id").to_pylist(), result.groups.column("evidence").to_pylist()))
    assert evidence["p000007:red"].startswith("embedding: phash=") and "cos=1.000" in evidence["p000007:red"]
    assert evidence["p000104:navy"].startswith("hash+embedding: phash=0 cos=1.000 ")
    assert evidence["p000104:navy"].endswith("with p000005; 1/1 product pairs linked")
    assert result.stats["n_pairs_embedding"] == 4 + 1  # 2x2 photos of designs 6 and 7, and the copy

    # By default a hash pair needs the embedding to agree: these fake embeddings call every
    # edited copy unrelated (cosine 0), so only the byte-for-byte copy and 6~7 are merged.
    confirmed = merge_near_duplicates(items, images, params.model_copy(update={"hash_min_similarity": 0.5}), embed=embed)
    merged = {g for g, n in Counter(_group_of(confirmed.groups).values()).items() if n > 2}
    assert merged == {"gp000005", "gp000006"}
    assert _group_of(confirmed.groups)["p000101:red"] == "gp000101"


def test_only_the_embedding_pass_can_run_alone(catalogue) -> None:
    items, images = catalogue
    params = DedupParams(methods=["embedding"], min_similarity=0.99)
    result = merge_near_duplicates(items, images, params, embed=lambda paths: np.eye(len(paths), dtype=np.float32))
    assert result.pairs.column_names == ["image_id_a", "image_id_b", "product_id_a", "product_id_b", "matched_by", "cosine"]
    assert result.stats["n_merged_groups"] == 1  # only the byte-for-byte copy
    assert result.stats["n_unreadable"] == 1 and result.stats["n_readable"] == images.num_rows - 2


@pytest.mark.slow
def test_the_pretrained_cnn_finds_edited_copies(catalogue) -> None:
    """The real frozen EfficientNet-Lite0: every planted re-listing is more similar to the
    photo it copies than any two unrelated designs are to each other."""
    items, images = catalogue
    params = DedupParams(methods=["embedding"], embed_image_size=96, min_similarity=0.5)
    result = merge_near_duplicates(items, images, params)
    cos = {(r["product_id_a"], r["product_id_b"], r["image_id_a"], r["image_id_b"]): r["cosine"] for r in result.pairs.to_pylist()}
    colour_of = {r["image_id"]: r["item_id"].split(":")[1] for r in images.to_pylist()}
    copies = [max(v for (a, b, ia, ib), v in cos.items() if (a, b) == (f"p{k:06d}", f"p{100 + k:06d}") and colour_of[ia] == "red")
              for k in range(4)]
    unrelated = [v for (a, b, _, _), v in cos.items() if a < "p000100" and b < "p000100"]
    assert min(copies) > max(unrelated, default=0.5)


# --------------------------------------------------------------- grouping, whitening


def test_complete_linkage_cannot_chain_through_one_edge() -> None:
    # 0~1 and 1~2 are linked, 0~2 is not: one weak edge must not join 0 with 2.
    a, b, d = np.array([0, 1]), np.array([1, 2]), np.array([0.1, 0.3])
    complete = group_products(4, a, b, d)
    assert complete[0] == complete[1] != complete[2] != complete[3]  # the stronger pair merges first
    single = group_products(4, a, b, d, linkage="single")
    assert single[0] == single[1] == single[2] != single[3]  # union-find chains
    # Three copies of one photo are all linked: one group.
    clique = group_products(3, np.array([0, 0, 1, 1]), np.array([1, 2, 2, 2]), np.array([0.2, 0.2, 0.9, 0.1]))
    assert len(set(clique.tolist())) == 1
    # A chain of 50 products, each linked to the next only, never grows past 2.
    chain = group_products(50, np.arange(49), np.arange(1, 50), np.full(49, 0.2))
    assert np.bincount(chain).max() == 2
    with pytest.raises(ValueError, match="unknown linkage"):
        group_products(2, a[:1], b[:1], d[:1], linkage="average")
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        group_products(3, a, b, np.array([0.1, 1.5]))


def test_whitening_separates_a_copy_from_lookalikes() -> None:
    """Photos that share strong common directions (a backdrop, a garment class) look alike
    under the raw cosine; after whitening the copy of a photo stands out from them."""
    rng = np.random.default_rng(0)
    common = rng.normal(size=(4, 64)) * 4
    x = rng.normal(size=(400, 4)) @ common + rng.normal(size=(400, 64))
    x[399] = x[0] + 0.3 * rng.normal(size=64)  # a copy of photo 0
    x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    y, whitened = whiten(x, 16)
    assert whitened and y.shape == (400, 16) and np.allclose(np.linalg.norm(y, axis=1), 1, atol=1e-5)

    def margin(v):  # the copy's similarity over the best lookalike's
        sim = v[1:399] @ v[0]
        return float(v[399] @ v[0] - sim.max())

    assert margin(y) > margin(x)
    same, done = whiten(x[:20], 16)  # too few photos to fit: the rows as given
    assert not done and same is not None and np.array_equal(same, x[:20])
    assert whiten(x, 0)[1] is False


def test_large_cosine_search_uses_an_inverted_file_and_finds_the_copies(monkeypatch) -> None:
    monkeypatch.setattr(D, "IVF_FROM", 1000)
    rng = np.random.default_rng(1)
    x = rng.normal(size=(3000, 16)).astype(np.float32)
    x[2000:2100] = x[:100] + rng.normal(scale=0.05, size=(100, 16))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    i, j, s = cosine_pairs(x, 0.95)
    found = set(zip(i.tolist(), j.tolist()))
    assert {(k, 2000 + k) for k in range(100)} <= found
    assert np.all(i < j) and np.all(s >= 0.95) and len(found) == len(i)  # each pair once


def test_a_chain_of_lookalikes_is_not_merged_into_one_group(catalogue) -> None:
    """p000104 lists p000005's navy photo byte for byte; 5's red photo looks like 6's photos,
    and 6's like 7's, while 5 and 7 do not look alike: union-find makes one group of the chain
    104~5~6~7; complete linkage keeps {104, 5} (the same bytes) and {6, 7}."""
    items, images = catalogue
    angle = {"p000005:red": 0.0, "p000006:navy": 30.0, "p000006:red": 30.0, "p000007:navy": 65.0, "p000007:red": 65.0}
    item_of_path = {r["path"]: r["item_id"] for r in images.to_pylist()}

    def embed(paths):  # cos 5~6 0.866, 6~7 0.819, 5~7 0.423; every other photo its own way
        vectors = np.eye(len(paths), 64, 3, dtype=np.float32)
        for k, path in enumerate(paths):
            if item_of_path[path] in angle:
                a = np.deg2rad(angle[item_of_path[path]])
                vectors[k] = 0
                vectors[k, :2] = np.cos(a), np.sin(a)
        return vectors

    params = DedupParams(methods=["embedding"], min_similarity=0.8)
    chained = _group_of(merge_near_duplicates(items, images, params.model_copy(update={"linkage": "single"}), embed=embed).groups)
    assert chained["p000104:navy"] == chained["p000005:red"] == chained["p000006:red"] == chained["p000007:red"]
    result = merge_near_duplicates(items, images, params, embed=embed)
    group_of = _group_of(result.groups)
    assert group_of["p000104:navy"] == group_of["p000005:red"] == "gp000005"
    assert group_of["p000006:red"] == group_of["p000007:navy"] == "gp000006"
    evidence = dict(zip(result.groups.column("item_id").to_pylist(), result.groups.column("evidence").to_pylist()))
    assert evidence["p000007:red"].startswith("embedding: cos=0.819 ") and "with p000006; 1/1 product pairs linked" in evidence["p000007:red"]
    assert "with p000005" not in evidence["p000006:red"]  # its pair with 5 was found, but not kept
    assert result.stats["largest_group_products"] == 2
