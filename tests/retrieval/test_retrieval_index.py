"""FAISS index building by factory string, recall against exact search, save/load."""

from __future__ import annotations

import numpy as np
import pytest

from street2shop.retrieval.index import (
    AUTO_FLAT_MAX,
    DEFAULT_TARGET_RECALL,
    build_index,
    calibrate_nprobe,
    load_index,
    recall_at_k,
    recall_at_k_vs_exact,
    resolve_factory,
    save_index,
    search,
    set_search_params,
)


def clustered(n: int, dim: int, seed: int, n_clusters: int = 200) -> np.ndarray:
    """Gaussian blobs around fixed centres: embeddings of many items are clustered like this."""
    centres = np.random.default_rng(0).standard_normal((n_clusters, dim))
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, n_clusters, n)
    return (centres[labels] + 0.5 * rng.standard_normal((n, dim))).astype(np.float32)


@pytest.fixture(scope="module")
def gallery() -> np.ndarray:
    return clustered(20_000, 64, seed=1)


@pytest.fixture(scope="module")
def queries() -> np.ndarray:
    return clustered(300, 64, seed=2)


@pytest.fixture(scope="module")
def ivf(gallery):
    return build_index(gallery, "IVF566,Flat", seed=0)  # 566 = 4 sqrt(20k), as auto would


def test_auto_is_exact_for_small_galleries_and_ivf_for_large():
    assert resolve_factory(1_000, 64) == "Flat"
    assert resolve_factory(AUTO_FLAT_MAX - 1, 64) == "Flat"
    assert resolve_factory(AUTO_FLAT_MAX, 64) == "IVF256,Flat"  # sqrt(50k) = 224 -> 2^8
    assert resolve_factory(100_000, 256) == "IVF256,Flat"  # sqrt = 316 -> 2^8
    assert resolve_factory(1_000_000, 64) == "IVF1024,Flat"  # sqrt = 1000 -> 2^10
    assert resolve_factory(10, 64, "HNSW32") == "HNSW32"
    with pytest.raises(ValueError, match="faiss cannot build factory 'Nonsense7'"):
        resolve_factory(10, 64, "Nonsense7")


def test_flat_index_is_exact(gallery, queries):
    index = build_index(gallery[:3_000])
    assert type(index).__name__ == "IndexFlat"
    assert recall_at_k_vs_exact(index, gallery[:3_000], queries, k=20) == 1.0


def test_ivf_recall_against_exact_search(ivf, gallery, queries):
    calibrated = ivf.nprobe
    assert 1 < calibrated < ivf.nlist and calibrated & (calibrated - 1) == 0  # a power of two from the ladder
    assert recall_at_k_vs_exact(ivf, gallery, queries, k=20) >= 0.9
    # Fewer probes must cost recall, otherwise the check above measures nothing.
    set_search_params(ivf, nprobe=1)
    try:
        assert recall_at_k_vs_exact(ivf, gallery, queries, k=20) < 0.8
    finally:
        set_search_params(ivf, nprobe=calibrated)


def test_calibrated_nprobe_reaches_the_target_and_is_needed(ivf, gallery):
    nprobe, recall = calibrate_nprobe(ivf, gallery, seed=0)
    assert nprobe == ivf.nprobe and recall >= DEFAULT_TARGET_RECALL
    one_list, one_list_recall = calibrate_nprobe(ivf, gallery, seed=0, target_recall=1e-6)
    assert one_list == 1 and one_list_recall < DEFAULT_TARGET_RECALL  # the ladder had to climb
    stricter, _ = calibrate_nprobe(ivf, gallery, seed=0, target_recall=1.0)
    assert stricter >= nprobe
    set_search_params(ivf, nprobe=nprobe)


def test_calibration_leaves_out_the_query_itself():
    # Two tight blobs of 50 at opposite poles, IVF2 (one list each). At k=50 a row's exact
    # neighbours, itself excluded, are the 49 others of its blob plus the nearest row of the
    # other blob: one list finds 49 of 50 (0.98), both lists all 50. Counting the query
    # itself would turn 49/50 into a wrong 50/51.
    rng = np.random.default_rng(0)
    pole = np.array([1.0, 0.0, 0.0], dtype=np.float32)
    x = np.concatenate([pole + 0.01 * rng.standard_normal((50, 3)), -pole + 0.01 * rng.standard_normal((50, 3))])
    index = build_index(x, "IVF2,Flat", nprobe=1)
    assert calibrate_nprobe(index, x, k=50, target_recall=0.5) == (1, pytest.approx(0.98))
    assert calibrate_nprobe(index, x, k=50, target_recall=0.99) == (2, 1.0)


def test_recall_at_k_counts_exact_neighbours_found_in_any_order():
    truth = np.array([[1, 2, 3], [4, 5, 6]])
    found = np.array([[3, 1, 9], [-1, -1, -1]])
    assert recall_at_k(found, truth) == pytest.approx(2 / 6)
    assert recall_at_k(truth[:, ::-1], truth) == 1.0
    with pytest.raises(ValueError, match="same queries"):
        recall_at_k(found[:1], truth)


def test_hnsw_recall_against_exact_search(gallery, queries):
    index = build_index(gallery[:5_000], "HNSW32")
    assert recall_at_k_vs_exact(index, gallery[:5_000], queries, k=20) >= 0.9


def test_save_load_round_trip_gives_identical_results(ivf, queries, tmp_path):
    path = save_index(ivf, tmp_path / "v1" / "index.faiss")
    loaded = load_index(path)
    assert loaded.nprobe == ivf.nprobe  # the search setting travels with the file
    expected = search(ivf, queries, 20)
    got = search(loaded, queries, 20)
    np.testing.assert_array_equal(got[1], expected[1])
    np.testing.assert_array_equal(got[0], expected[0])


def test_compressed_index_round_trip(gallery, queries, tmp_path):
    # 4-bit PQ codes (16 centroids per sub-vector) keep training fast on a shared CPU.
    index = build_index(gallery[:2_000], "IVF16,PQ8x4", seed=0)
    assert 0.3 < recall_at_k_vs_exact(index, gallery[:2_000], queries, k=20) < 1.0
    loaded = load_index(save_index(index, tmp_path / "pq.faiss"))
    expected = search(index, queries, 20)
    got = search(loaded, queries, 20)
    np.testing.assert_array_equal(got[1], expected[1])
    np.testing.assert_array_equal(got[0], expected[0])


def test_same_seed_same_index(gallery, queries):
    a = build_index(gallery[:4_000], "IVF64,Flat", seed=3, train_sample=2_000)
    b = build_index(gallery[:4_000], "IVF64,Flat", seed=3, train_sample=2_000)
    np.testing.assert_array_equal(search(a, queries, 10)[1], search(b, queries, 10)[1])


def test_search_normalises_queries_and_pads_with_minus_one():
    vectors = np.array([[3.0, 0.0], [0.0, 2.0]], dtype=np.float32)
    scores, ids = search(build_index(vectors), np.array([[10.0, 0.0]]), k=3)
    assert ids.tolist() == [[0, 1, -1]]
    assert scores[0, :2].tolist() == pytest.approx([1.0, 0.0])


def test_bad_requests_are_clear_errors(gallery):
    with pytest.raises(ValueError, match="1024 lists but only 500 vectors"):
        build_index(gallery[:500], "IVF1024,Flat")
    with pytest.raises(ValueError, match="nprobe given but the index"):
        build_index(gallery[:100], "Flat", nprobe=4)
    with pytest.raises(ValueError, match="dimension 3, expected 64"):
        search(build_index(gallery[:100]), np.ones((1, 3)), k=5)
    with pytest.raises(FileNotFoundError):
        load_index("/nonexistent/index.faiss")
