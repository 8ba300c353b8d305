"""Benjamini–Hochberg / Benjamini–Yekutieli q-values: a hand-computed case, scipy's implementation, the
step-up rule written out, NaN handling, properties and bad input."""

import numpy as np
import pytest
from scipy.stats import false_discovery_control

from alignkit.stats.fdr import bh_qvalues, by_qvalues, fdr_reject, qvalues


def _step_up_reject(p: np.ndarray, alpha: float, c: float = 1.0) -> np.ndarray:
    """The 1995 rule itself: reject H_(1..k), k = max{i : p_(i) ≤ i·α/(c·m)}."""
    m = p.size
    order = np.argsort(p)
    below = np.nonzero(p[order] <= np.arange(1, m + 1) * alpha / (c * m))[0]
    out = np.zeros(m, dtype=bool)
    if below.size:
        out[order[: below.max() + 1]] = True
    return out


def test_hand_computed_case():
    p = np.array([0.01, 0.04, 0.03, 0.005, 0.5])
    # sorted 0.005 0.01 0.03 0.04 0.5; m·p/i = 0.025 0.025 0.05 0.05 0.5; running min from the right
    np.testing.assert_allclose(bh_qvalues(p), [0.025, 0.05, 0.05, 0.025, 0.5])
    c = 1 + 1 / 2 + 1 / 3 + 1 / 4 + 1 / 5  # 137/60
    np.testing.assert_allclose(by_qvalues(p), np.minimum(1, c * np.array([0.025, 0.05, 0.05, 0.025, 0.5])))
    assert fdr_reject(p, 0.04).tolist() == [True, False, False, True, False]


@pytest.mark.parametrize("method", ["bh", "by"])
@pytest.mark.parametrize("seed", range(5))
def test_matches_scipy_and_the_step_up_rule(method, seed):
    rng = np.random.default_rng(seed)
    m = int(rng.integers(1, 200))
    # a mix of nulls (uniform) and signals (near 0), with ties
    p = np.where(rng.random(m) < 0.3, rng.random(m) * 1e-3, rng.random(m))
    p[: m // 10] = np.round(p[: m // 10], 2)
    q = qvalues(p, method)
    np.testing.assert_allclose(q, false_discovery_control(p, method=method), rtol=1e-12, atol=0)
    c = float(np.sum(1 / np.arange(1, m + 1))) if method == "by" else 1.0
    for alpha in (0.01, 0.05, 0.2):
        np.testing.assert_array_equal(fdr_reject(p, alpha, method), _step_up_reject(p, alpha, c))


def test_properties():
    rng = np.random.default_rng(1)
    p = rng.random(300) ** 3
    q, qy = bh_qvalues(p), by_qvalues(p)
    order = np.argsort(p)
    assert np.all(np.diff(q[order]) >= 0) and np.all(np.diff(qy[order]) >= 0)  # monotone in p
    assert np.all(q >= p) and np.all(q <= 1) and np.all(qy >= q) and np.all(qy <= 1)
    assert bh_qvalues([0.3]).tolist() == [0.3]  # one test: nothing to adjust
    assert bh_qvalues(np.full(4, 0.2)).tolist() == [0.2] * 4  # all tied: q = p
    # shape kept
    assert bh_qvalues(p.reshape(20, 15)).shape == (20, 15)
    np.testing.assert_allclose(bh_qvalues(p.reshape(20, 15)).ravel(), q)


def test_nan_is_left_out_of_m_and_stays_nan():
    p = np.array([[0.01, np.nan], [0.02, 0.04]])
    q = bh_qvalues(p)
    assert np.isnan(q[0, 1])
    np.testing.assert_allclose(q[~np.isnan(p)], false_discovery_control([0.01, 0.02, 0.04]))
    assert not fdr_reject(p, 0.5)[0, 1]
    assert np.isnan(by_qvalues([np.nan, np.nan])).all() and bh_qvalues([]).shape == (0,)


def test_uniform_nulls_rarely_rejected():
    """Under the global null BH at α rejects anything with probability ≤ α (FWER = FDR there)."""
    rng = np.random.default_rng(2)
    any_rejected = [fdr_reject(rng.random(50), 0.1).any() for _ in range(400)]
    assert np.mean(any_rejected) < 0.1 + 3 * np.sqrt(0.1 * 0.9 / 400)


def test_bad_input():
    with pytest.raises(ValueError, match="p must hold p-values"):
        bh_qvalues([0.1, 1.5])
    with pytest.raises(ValueError, match="p must hold p-values"):
        by_qvalues([-0.1])
    with pytest.raises(ValueError, match="method must be"):
        qvalues([0.1], "holm")
    with pytest.raises(ValueError, match="alpha must be"):
        fdr_reject([0.1], 0.0)
    with pytest.raises(ValueError, match="alpha must be"):
        fdr_reject([0.1], True)
