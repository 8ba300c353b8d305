"""Diagnostics of one space (alignkit.diagnostics.geometry) against dense n×n references written here."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.spatial.distance import cdist
from scipy.special import logsumexp
from scipy.stats import ortho_group

from alignkit.degenerate import DegenerateSpaceWarning
from alignkit.diagnostics import describe, diagnose, diagnostic_ci, diagnostic_null, get
from alignkit.diagnostics.geometry import (
    NormStats,
    TwoNNResult,
    anisotropy,
    effective_rank,
    intrinsic_dimension,
    norms,
    tolerance,
    uniformity,
)

# ------------------------------------------------------------------------------------------ dense references


def unit(X):
    X = np.asarray(X, dtype=np.float64)
    return X / np.linalg.norm(X, axis=1, keepdims=True)


def uniformity_dense(X, t=2.0):
    U = unit(X)
    D2 = ((U[:, None, :] - U[None, :, :]) ** 2).sum(-1)
    iu = np.triu_indices(len(U), 1)
    return float(logsumexp(-t * D2[iu]) - np.log(len(iu[0])))


def tolerance_dense(X, labels):
    U = unit(X)
    C = U @ U.T
    lab = np.asarray(labels)
    same = (lab[:, None] == lab[None, :]) & ~np.eye(len(lab), dtype=bool)
    return float(C[same].mean())


def anisotropy_dense(X):
    U = unit(X)
    C = U @ U.T
    return float(C[~np.eye(len(U), dtype=bool)].mean())


def erank_dense(X, center=True):
    X = np.asarray(X, dtype=np.float64)
    if center:
        X = X - X.mean(0)
    s = np.linalg.svd(X, compute_uv=False)
    s = s[s > s.max() * 1e-12]
    p = s / s.sum()
    return float(np.exp(-(p * np.log(p)).sum()))


def twonn_dense(X, estimator="mle", discard=0.1):
    D = cdist(np.asarray(X, dtype=np.float64), np.asarray(X, dtype=np.float64))
    np.fill_diagonal(D, np.inf)
    D.sort(axis=1)
    mu = D[:, 1] / D[:, 0]
    n = len(mu)
    if estimator == "mle":
        return (n - 1) / np.log(mu).sum()
    x = np.log(np.sort(mu))
    F = np.arange(1, n + 1) / n
    keep = min(n - 1, int(np.floor((1 - discard) * n)))
    x, y = x[:keep], -np.log(1 - F[:keep])
    return float((x * y).sum() / (x * x).sum())


@pytest.fixture
def X(rng):
    return rng.standard_normal((60, 7)) + 0.4


# ------------------------------------------------------------------------------------------ uniformity


@pytest.mark.parametrize("t", [0.5, 2.0, 5.0])
def test_uniformity_matches_dense(X, t):
    assert uniformity(X, t=t) == pytest.approx(uniformity_dense(X, t), abs=1e-12)


@pytest.mark.parametrize("block", [1, 3, 7, 59, 60, 1000])
def test_uniformity_blocked_equals_dense(X, block):
    assert uniformity(X, block_size=block) == pytest.approx(uniformity_dense(X), abs=1e-12)


def test_uniformity_range_collapse_antipodal_rotation(X, rng):
    v = uniformity(X)
    assert -8.0 <= v <= 0.0
    collapsed = np.outer(rng.uniform(0.5, 3, 20), rng.standard_normal(5))  # one direction, several lengths
    assert uniformity(collapsed) == pytest.approx(0.0, abs=1e-12)
    assert uniformity(np.array([[1.0, 0.0], [-2.0, 0.0]]), t=2.0) == pytest.approx(-8.0)
    Q = ortho_group.rvs(7, random_state=1)
    assert uniformity(X @ Q) == pytest.approx(v, abs=1e-12)
    # scale of each row does not matter (unit rows)
    assert uniformity(X * rng.uniform(0.1, 10, (60, 1))) == pytest.approx(v, abs=1e-12)


def test_uniformity_large_t_is_stable(X):
    v = uniformity(X, t=500.0)  # every exp underflows without the running max
    assert math.isfinite(v)
    assert v == pytest.approx(uniformity_dense(X, 500.0), rel=1e-9)


def test_uniformity_float32_and_torch(X):
    ref = uniformity_dense(X)
    assert uniformity(X.astype(np.float32), block_size=8) == pytest.approx(ref, abs=1e-5)
    assert uniformity(torch.from_numpy(X)) == pytest.approx(ref, abs=1e-12)
    for t in (30.0, 60.0):  # float32: exp without a shift (|E| < 80), then with the running max
        assert uniformity(X.astype(np.float32), t=t, block_size=9) == pytest.approx(uniformity_dense(X, t), rel=1e-5)


def test_uniformity_bad_inputs(X):
    bad = X.copy()
    bad[3, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        uniformity(bad)
    with pytest.raises(ValueError, match="NaN"):
        diagnose("uniformity", bad)
    zero = X.copy()
    zero[5] = 0.0
    with pytest.raises(ValueError, match="all-zero row"):
        uniformity(zero)
    with pytest.raises(ValueError, match="at least 2"):
        uniformity(X[:1])
    with pytest.raises(ValueError, match="t"):
        uniformity(X, t=0.0)
    with pytest.raises(ValueError, match="t"):
        diagnose("uniformity?t=-1", X)
    with pytest.raises(ValueError, match="2-D"):
        uniformity(X[0])


def test_uniformity_via_diagnose_and_constant_space(X):
    assert diagnose("uniformity?t=1", X) == pytest.approx(uniformity_dense(X, 1.0), abs=1e-12)
    const = np.ones((10, 3))
    with pytest.warns(DegenerateSpaceWarning):
        assert diagnose("uniformity", const) == pytest.approx(0.0, abs=1e-12)  # collapse is the value


# ------------------------------------------------------------------------------------------ tolerance


def test_tolerance_matches_dense(X, rng):
    labels = rng.integers(0, 4, len(X))
    v = tolerance(X, labels=labels)
    assert v == pytest.approx(tolerance_dense(X, labels), abs=1e-12)
    assert -1.0 <= v <= 1.0
    names = np.array(["a", "b", "c", "d"])[labels]  # any hashable labels
    assert diagnose("tolerance", X, labels=names) == pytest.approx(v, abs=1e-12)


def test_tolerance_hand_case_and_singletons():
    X = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [-1.0, 0.0], [5.0, 5.0]])
    # class a: rows 0, 1 (cos 0); class b: rows 2, 4 (cos 1); class c: row 3 alone (no pair)
    labels = ["a", "a", "b", "c", "b"]
    assert tolerance(X, labels=labels) == pytest.approx((0 + 0 + 1 + 1) / 4)
    with pytest.raises(ValueError, match="single item"):
        tolerance(X[:3], labels=["a", "b", "c"])


def test_tolerance_bad_labels(X):
    with pytest.raises(ValueError, match="one label per row"):
        tolerance(X, labels=np.zeros(len(X) - 1))
    with pytest.raises(ValueError, match="at least 2 classes"):
        tolerance(X, labels=np.zeros(len(X)))
    with pytest.raises(ValueError, match="at least 2 classes"):
        diagnose("tolerance", X, labels=np.zeros(len(X)))
    with pytest.raises(ValueError, match="needs labels"):
        diagnose("tolerance", X)
    with pytest.raises(ValueError, match="NaN"):
        tolerance(X, labels=np.r_[np.nan, np.arange(len(X) - 1) % 2])


def test_tolerance_labels_null_calibration(rng):
    centres = 3.0 * rng.standard_normal((3, 8))
    labels = np.repeat(np.arange(3), 20)
    X = centres[labels] + rng.standard_normal((60, 8))
    res = diagnostic_null("tolerance", X, labels=labels, n_perm=49, seed=0)
    assert res.p_value <= 0.05
    noise = rng.standard_normal((60, 8))
    res0 = diagnostic_null("tolerance", noise, labels=labels, n_perm=49, seed=0)
    assert res0.p_value > 0.05


# ------------------------------------------------------------------------------------------ anisotropy


def test_anisotropy_matches_dense_and_extremes(X, rng):
    assert anisotropy(X) == pytest.approx(anisotropy_dense(X), abs=1e-12)
    assert anisotropy(np.outer(rng.uniform(1, 2, 10), [1.0, 2.0, 3.0])) == pytest.approx(1.0, abs=1e-12)
    # the four axis directions ±e1, ±e2: cosines sum to −n, the minimum −1/(n−1)
    axes = np.array([[1.0, 0], [-1, 0], [0, 1], [0, -1]])
    assert anisotropy(axes) == pytest.approx(-1 / 3)
    assert anisotropy(X @ ortho_group.rvs(7, random_state=2)) == pytest.approx(anisotropy(X), abs=1e-12)
    assert anisotropy(X.astype(np.float32)) == pytest.approx(anisotropy_dense(X), abs=1e-6)


# ------------------------------------------------------------------------------------------ effective rank


def test_effective_rank_matches_dense(X):
    assert effective_rank(X) == pytest.approx(erank_dense(X), rel=1e-9)
    assert effective_rank(X, center=False) == pytest.approx(erank_dense(X, center=False), rel=1e-9)
    wide = X[:5]  # n < d: the SVD branch
    assert effective_rank(wide) == pytest.approx(erank_dense(wide), rel=1e-9)


def test_effective_rank_properties(rng):
    G = rng.standard_normal((4000, 20))
    assert 19.0 <= effective_rank(G) <= 20.0
    low = rng.standard_normal((500, 4)) @ rng.standard_normal((4, 30))
    assert effective_rank(low) <= 4.0 + 1e-6
    Q = ortho_group.rvs(12, random_state=3)[:, :3]  # three equal singular values
    eq = np.vstack([Q.T, -Q.T]) * 5.0  # centred already
    assert effective_rank(eq) == pytest.approx(3.0, abs=1e-9)
    shifted = G + 100.0
    assert effective_rank(shifted) == pytest.approx(effective_rank(G), rel=1e-9)  # centring removes the offset
    assert effective_rank(shifted, center=False) < 2.0  # the offset dominates


def test_effective_rank_degenerate():
    const = np.ones((10, 4))
    with pytest.raises(ValueError, match="no variance"):
        effective_rank(const)
    with pytest.warns(DegenerateSpaceWarning):
        assert math.isnan(diagnose("effective_rank", const))
    assert effective_rank(const, center=False) == pytest.approx(1.0)


# ------------------------------------------------------------------------------------------ TwoNN


def test_twonn_matches_dense(X):
    res = intrinsic_dimension(X)
    assert isinstance(res, TwoNNResult)
    assert res.value == pytest.approx(twonn_dense(X), rel=1e-9)
    assert res.n_used == len(X) and res.n_duplicates == 0
    fit = intrinsic_dimension(X, estimator="fit", discard=0.2)
    assert fit.value == pytest.approx(twonn_dense(X, "fit", 0.2), rel=1e-9)
    assert fit.as_dict()["estimator"] == "fit"


@pytest.mark.parametrize("block", [1, 17, None])
def test_twonn_blocked(X, block):
    assert intrinsic_dimension(X, block_size=block).value == pytest.approx(twonn_dense(X), rel=1e-9)


def test_twonn_recovers_dimension(rng):
    cube = rng.uniform(size=(2000, 3))
    assert intrinsic_dimension(cube).value == pytest.approx(3.0, rel=0.15)
    assert intrinsic_dimension(cube, estimator="fit").value == pytest.approx(3.0, rel=0.15)
    basis = ortho_group.rvs(40, random_state=4)[:5]
    sub = rng.uniform(size=(2000, 5)) @ basis + 7.0  # a 5-d cube inside R^40, shifted
    assert intrinsic_dimension(sub.astype(np.float32)).value == pytest.approx(5.0, rel=0.2)


def test_twonn_duplicates(X):
    dup = np.vstack([X, X[:10], X[:3]])
    res = diagnose("intrinsic_dimension", dup)
    assert res.n_duplicates == 13 and res.n_used == len(X)
    assert res.value == pytest.approx(twonn_dense(X), rel=1e-9)
    with pytest.raises(ValueError, match="at least 3 distinct rows"):
        intrinsic_dimension(np.vstack([X[:2]] * 5))
    with pytest.raises(ValueError, match="equidistant"):
        intrinsic_dimension(np.array([[0.0, 0], [1, 0], [0, 1], [1, 1]]))  # a square: r1 = r2 everywhere
    with pytest.raises(ValueError, match="estimator"):
        intrinsic_dimension(X, estimator="mean")
    with pytest.raises(ValueError, match="discard"):
        intrinsic_dimension(X, estimator="fit", discard=1.0)


# ------------------------------------------------------------------------------------------ norms


def test_norms(X):
    r = np.linalg.norm(X, axis=1)
    res = norms(X)
    assert isinstance(res, NormStats)
    assert res.value == res.mean == pytest.approx(r.mean(), rel=1e-12)
    assert (res.std, res.min, res.max, res.median) == pytest.approx((r.std(), r.min(), r.max(), np.median(r)))
    row = diagnose("norms", torch.from_numpy(X).float()).as_dict()
    assert row["value"] == pytest.approx(r.mean(), rel=1e-6) and row["n"] == len(X)
    big = np.array([[1e200, 1e200], [3e-200, 4e-200]])
    assert norms(big).max == pytest.approx(math.sqrt(2) * 1e200) and norms(big).min == pytest.approx(5e-200)


# ------------------------------------------------------------------------------------------ registry, CI


def test_registered_metadata():
    for name in ("uniformity", "tolerance", "anisotropy", "effective_rank", "intrinsic_dimension", "norms"):
        info = get(name)
        assert info.family == "space" and info.inputs == ("X",) and info.resample
        assert info.description and info.cost
    assert get("tolerance").needs_labels and get("tolerance").null == "shuffle_labels"
    assert get("uniformity").higher_is_better is False and get("effective_rank").higher_is_better is None
    assert describe("uniformity")["defaults"] == {"t": 2.0, "block_size": None}


def test_uniformity_ci(X):
    ci = diagnostic_ci("uniformity", X, n_boot=20, seed=0)
    assert ci.low <= ci.score <= ci.high <= 0.0
    assert ci.score == pytest.approx(uniformity_dense(X), abs=1e-12)


def test_row_blocked_passes_equal_dense(X, rng, monkeypatch):
    """The O(n·d) passes (unit rows, column sums, per-class sums, Gram, norms) in many tiny row blocks."""
    import alignkit.diagnostics.geometry as G

    labels = rng.integers(0, 5, len(X))
    expected = (
        tolerance(X, labels=labels),
        anisotropy(X),
        effective_rank(X),
        norms(X).std,
        intrinsic_dimension(X).value,
        uniformity(X),
    )
    monkeypatch.setattr(G, "_ROW_BLOCK_ELEMENTS", 20)  # 2–3 rows per block at d = 7
    got = (
        tolerance(X, labels=labels),
        anisotropy(X),
        effective_rank(X),
        norms(X).std,
        intrinsic_dimension(X).value,
        uniformity(X),
    )
    assert got == pytest.approx(expected, rel=1e-10, abs=1e-12)
    assert got[0] == pytest.approx(tolerance_dense(X, labels), abs=1e-12)


def test_unit_rows_at_extreme_scales():
    """Rows far outside float32/float64 comfort (squares overflow or underflow) keep their direction."""
    from alignkit.diagnostics.geometry import row_norms, unit_space

    direction = np.array([3.0, 4.0, 0.0]) / 5.0
    for dtype, scales in ((np.float32, [1e30, 1e-30, 1e-41, 1.0]), (np.float64, [1e300, 1e-300, 1e-310, 1.0])):
        X = np.array([direction * s for s in scales], dtype=dtype)
        U = unit_space(X)
        assert U.dtype == dtype
        exact = X.astype(np.float64)  # subnormal inputs have already lost some bits of the direction
        exact_norms = np.hypot(exact[:, 0], exact[:, 1])
        np.testing.assert_allclose(U, exact / exact_norms[:, None], rtol=1e-6 if dtype == np.float32 else 1e-12)
        np.testing.assert_allclose(row_norms(X), exact_norms, rtol=1e-12)
        assert uniformity(X) == pytest.approx(0.0, abs=1e-5)
        assert anisotropy(X) == pytest.approx(1.0, abs=1e-5)
