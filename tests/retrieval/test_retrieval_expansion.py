"""αQE and DBA: hand-computed 2-D cases, identities, unit norm."""

from __future__ import annotations

import numpy as np
import pytest

from street2shop.retrieval.expansion import alpha_qe, dba


def normalised(v) -> np.ndarray:
    v = np.asarray(v, dtype=np.float64)
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


GALLERY = np.array([[0.6, 0.8], [-1.0, 0.0], [0.0, 1.0]], dtype=np.float32)


def test_alpha_qe_adds_neighbours_weighted_by_similarity_power():
    # q = (1, 0): neighbours by similarity are (0.6, 0.8) [0.6], (0, 1) [0], (-1, 0) [-1].
    out = alpha_qe(np.array([[2.0, 0.0]]), GALLERY, k=1, alpha=2.0)
    np.testing.assert_allclose(out[0], normalised([1 + 0.36 * 0.6, 0.36 * 0.8]), atol=1e-6)
    # Non-positive similarities carry no weight, so k=3 gives the same answer.
    wider = alpha_qe(np.array([[1.0, 0.0]]), GALLERY, k=3, alpha=2.0)
    np.testing.assert_allclose(wider, out, atol=1e-6)


def test_alpha_zero_is_plain_average_query_expansion():
    out = alpha_qe(np.array([[1.0, 0.0]]), GALLERY[:1], k=1, alpha=0.0)
    np.testing.assert_allclose(out[0], normalised([1.6, 0.8]), atol=1e-6)


def test_dba_pulls_each_vector_towards_its_neighbours():
    out = dba(GALLERY[[0, 2]], k=2, alpha=1.0)
    # (0.6, 0.8) . (0, 1) = 0.8: each becomes itself + 0.8 x the other.
    np.testing.assert_allclose(out[0], normalised([0.6, 0.8 + 0.8]), atol=1e-6)
    np.testing.assert_allclose(out[1], normalised([0.8 * 0.6, 1 + 0.8 * 0.8]), atol=1e-6)
    assert out[0] @ out[1] > 0.8  # two photos of one item end up closer


def test_identities_k0_for_queries_and_k1_for_gallery():
    rng = np.random.default_rng(0)
    q, g = rng.standard_normal((5, 8)), rng.standard_normal((30, 8))
    np.testing.assert_allclose(alpha_qe(q, g, k=0), normalised(q), atol=1e-6)
    np.testing.assert_allclose(dba(g, k=1), normalised(g), atol=1e-6)


def test_outputs_are_unit_norm_float32():
    rng = np.random.default_rng(1)
    q, g = rng.standard_normal((20, 16)), rng.standard_normal((100, 16))
    for out in (alpha_qe(q, g, k=5, alpha=3.0), dba(g, k=5, alpha=3.0)):
        assert out.dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)


@pytest.mark.parametrize("k, alpha", [(-1, 1.0), (2, -0.5), (2, float("nan"))])
def test_bad_parameters_are_clear_errors(k, alpha):
    with pytest.raises(ValueError, match="k must be|alpha must be"):
        alpha_qe(np.ones((1, 2)), GALLERY, k=k, alpha=alpha)
