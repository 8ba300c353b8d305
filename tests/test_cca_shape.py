"""CCA / SVCCA / PWCCA and generalised shape metrics / Procrustes against dense numpy/scipy references."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.linalg as sla
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import alignkit
from alignkit.degenerate import DegenerateSpaceWarning
from alignkit.metrics import canonical_correlations, cca, procrustes, pwcca, shape_distance, svcca
from alignkit.metrics._registry import get
from alignkit.metrics.cca import SmallSampleWarning
from alignkit.metrics.shape import effective_dim, whitened_factor

# small-n inflation warnings are tested explicitly below; elsewhere they are noise
pytestmark = pytest.mark.filterwarnings("ignore:.*inflated:UserWarning")

TOL = 1e-8


# ---- independent dense references ------------------------------------------------------------------------------


def _centre(X):
    return X - X.mean(axis=0)


def _inv_sqrt(C, reg=0.0):
    lam, V = np.linalg.eigh(C + reg * np.eye(len(C)))
    return (V / np.sqrt(lam)) @ V.T


def ref_cca(X, Y, reg=0.0):
    """ρ and the X-side canonical weight vectors from svd(C_xx^{-1/2} C_xy C_yy^{-1/2}), C = XcᵀXc/n."""
    Xc, Yc = _centre(X), _centre(Y)
    n = len(X)
    Wx = _inv_sqrt(Xc.T @ Xc / n, reg)
    Wy = _inv_sqrt(Yc.T @ Yc / n, reg)
    U, rho, _ = np.linalg.svd(Wx @ (Xc.T @ Yc / n) @ Wy)
    k = min(X.shape[1], Y.shape[1])
    return rho[:k], Wx @ U[:, :k]


def ref_pwcca(X, Y, reg=0.0):
    rho, Ax = ref_cca(X, Y, reg)
    Xc = _centre(X)
    H = Xc @ Ax
    H /= np.linalg.norm(H, axis=0)
    alpha = np.abs(Xc.T @ H).sum(axis=0)
    return (alpha * rho).sum() / alpha.sum()


def ref_svcca(X, Y, keep):
    def reduce(Z):
        U, s, _ = np.linalg.svd(_centre(Z), full_matrices=False)
        if isinstance(keep, int):
            k = keep
        else:
            frac = np.cumsum(s**2) / np.sum(s**2)
            k = int(np.argmax(frac >= keep - 1e-12)) + 1
        return U[:, :k] * s[:k]

    return ref_cca(reduce(X), reduce(Y))[0].mean()


def _pad(A, width):
    return np.hstack([A, np.zeros((A.shape[0], width - A.shape[1]))])


def ref_shape(X, Y, alpha, score="angular"):
    """netrep-style: centre, zero-pad, eig of X̄ᵀX̄ (X̄ = X_c / top singular value), partial whitening
    V diag(α + (1−α)λ^{-1/2}) Vᵀ on λ > 0, unit Frobenius, rotate by svd(X_αᵀY_α)."""
    d = max(X.shape[1], Y.shape[1])

    def whiten(Z):
        Zc = _pad(_centre(Z), d)
        lam, V = np.linalg.eigh(Zc.T @ Zc)
        Zb = Zc / np.sqrt(lam.max())
        lam = lam / lam.max()
        keep = lam > 1e-12
        D = np.zeros_like(lam)
        D[keep] = alpha + (1 - alpha) / np.sqrt(lam[keep])
        Zw = Zb @ (V * D) @ V.T
        return Zw / np.linalg.norm(Zw)

    Xw, Yw = whiten(X), whiten(Y)
    U, _, Vt = np.linalg.svd(Xw.T @ Yw)
    A, B = Xw @ U, Yw @ Vt.T
    if score == "euclidean":
        return np.linalg.norm(A - B)
    return np.arccos(np.clip(np.sum(A * B), -1.0, 1.0))


def _data(seed, n=200, d1=6, d2=4, noise=1.0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d1)) @ rng.normal(size=(d1, d1)) + rng.normal(size=d1)
    Y = X[:, :d2] @ rng.normal(size=(d2, d2)) + noise * rng.normal(size=(n, d2)) + 3.0
    return X, Y


def _invertible(rng, d, spread=2.0):
    Q1, _ = np.linalg.qr(rng.normal(size=(d, d)))
    Q2, _ = np.linalg.qr(rng.normal(size=(d, d)))
    return (Q1 * np.exp(rng.uniform(-spread, spread, size=d))) @ Q2


def _orthogonal(rng, d):
    return np.linalg.qr(rng.normal(size=(d, d)))[0]


# ---- CCA ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_correlations_match_dense_whitened_svd_and_principal_angles(seed):
    X, Y = _data(seed, d1=6, d2=4)
    rho = canonical_correlations(X, Y)
    assert rho.dtype == torch.float64 and rho.shape == (4,)
    ref, _ = ref_cca(X, Y)
    np.testing.assert_allclose(rho.numpy(), ref, atol=TOL)
    angles = sla.subspace_angles(_centre(X), _centre(Y))  # descending angles = ascending cosines
    np.testing.assert_allclose(np.sort(rho.numpy()), np.sort(np.cos(angles)), atol=TOL)
    assert cca(X, Y) == pytest.approx(ref.mean(), abs=TOL)
    assert cca(X, Y, summary="mean_sq") == pytest.approx((ref**2).mean(), abs=TOL)


@pytest.mark.parametrize("reg", [1e-3, 0.1, 5.0])
def test_regularised_cca_matches_dense(reg):
    Y, X = _data(3, d1=7, d2=5)  # X narrower than Y
    ref, _ = ref_cca(X, Y, reg)
    np.testing.assert_allclose(canonical_correlations(X, Y, reg=reg).numpy(), ref, atol=TOL)
    assert cca(X, Y, reg=reg) < cca(X, Y)


@pytest.mark.parametrize(("d1", "d2"), [(120, 90), (12, 90), (120, 12)])
def test_cca_family_with_fewer_items_than_dimensions_matches_dense(d1, d2):
    """n < d: each side's basis comes from eigh of the n × n Gram (or, for a side narrower than n, of X̃ᵀX̃), not
    a thin SVD; SVCCA, regularised CCA and PWCCA (whose V_x is formed on demand) equal the dense formulas, and
    float32 and float64 copies of the same numbers agree."""
    rng = np.random.default_rng(d1 + d2)
    Z = rng.normal(size=(40, 6))
    X = Z @ rng.normal(size=(6, d1)) + 0.3 * rng.normal(size=(40, d1)) + 2.0
    Y = Z @ rng.normal(size=(6, d2)) + 0.3 * rng.normal(size=(40, d2))
    for keep in (8, 0.9):
        assert svcca(X, Y, keep=keep) == pytest.approx(ref_svcca(X, Y, keep), abs=1e-10)
    rho, _ = ref_cca(X, Y, reg=0.1)
    assert canonical_correlations(X, Y, reg=0.1).numpy() == pytest.approx(rho[: min(39, d1, d2)], abs=1e-10)
    if min(d1, d2) < 40:  # the reference weighs min(d1, d2) directions, beyond the rank n − 1 when both are wider
        assert pwcca(X, Y, reg=0.1) == pytest.approx(ref_pwcca(X, Y, reg=0.1), abs=1e-10)
    X32, Y32 = X.astype(np.float32), Y.astype(np.float32)
    for f in (lambda a, b: svcca(a, b, keep=8), lambda a, b: pwcca(a, b, reg=0.1)):
        assert f(X32, Y32) == pytest.approx(f(X32.astype(np.float64), Y32.astype(np.float64)), abs=1e-9)


@pytest.mark.parametrize(("n", "d1", "d2"), [(40, 100, 200), (150, 100, 60)])
@pytest.mark.parametrize("mean", [300.0, 1e4])
def test_float32_and_float64_copies_agree_under_a_large_mean(n, d1, d2, mean):
    """Exact centring needs float64 column means: the degenerate check's float32 BLAS sums are ~2e-6 of |x̄| off, and
    that residual, left in float64 blocks, was kept as a direction of its own (CCA 0.212 for float32 against 0.275
    for the same numbers in float64, with one correlation too many). Procrustes' QR route (n < d) likewise."""
    rng = np.random.default_rng(7)
    X = rng.standard_normal((n, 3)) @ rng.standard_normal((3, d1)) + mean
    Y = rng.standard_normal((n, 5)) @ rng.standard_normal((5, d2)) - mean
    X32, Y32 = X.astype(np.float32), Y.astype(np.float32)
    X64, Y64 = X32.astype(np.float64), Y32.astype(np.float64)  # the same numbers
    assert len(canonical_correlations(X32, Y32)) == len(canonical_correlations(X64, Y64))
    for f in (cca, pwcca, lambda a, b: svcca(a, b, keep=3), procrustes):
        assert f(X32, Y32) == pytest.approx(f(X64, Y64), abs=1e-6)


def test_structured_planted_correlations():
    rng = np.random.default_rng(4)
    X = rng.normal(size=(300, 5))
    Y = np.hstack([X[:, :2] @ rng.normal(size=(2, 2)), rng.normal(size=(300, 3))])
    rho = canonical_correlations(X, Y).numpy()
    np.testing.assert_allclose(rho[:2], 1.0, atol=TOL)
    assert rho[2] < 0.3
    np.testing.assert_allclose(rho, ref_cca(X, Y)[0], atol=TOL)


def test_rank_deficient_inputs_drop_null_directions():
    X, Y = _data(5, d1=4, d2=3)
    Xdup = np.hstack([X, X[:, :1], X[:, 1:2] - 2 * X[:, 2:3]])  # duplicate and collinear columns
    rho = canonical_correlations(Xdup, Y)
    assert torch.isfinite(rho).all() and rho.shape == (3,)
    np.testing.assert_allclose(rho.numpy(), canonical_correlations(X, Y).numpy(), atol=TOL)
    # the same in float32: the tolerance follows the input dtype
    rho32 = canonical_correlations(Xdup.astype(np.float32), Y.astype(np.float32))
    assert rho32.shape == (3,) and torch.isfinite(rho32).all()
    # d > n: finite, every correlation ≈ 1, and a warning
    rng = np.random.default_rng(6)
    A, B = rng.normal(size=(20, 50)), rng.normal(size=(20, 30))
    with pytest.warns(UserWarning, match="inflated"):
        value = cca(A, B)
    assert value == pytest.approx(1.0, abs=1e-8)
    assert np.isfinite(pwcca(A, B)) and np.isfinite(svcca(A, B))


def test_small_n_warning_and_none_when_n_large():
    X, Y = _data(7, n=40, d1=6, d2=4)
    for f in (cca, pwcca, canonical_correlations):
        with pytest.warns(UserWarning, match=r"n=40 .*inflated"):
            f(X, Y)
    X, Y = _data(7, n=60, d1=6, d2=4)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cca(X, Y)
        pwcca(X, Y)
        svcca(X, Y, keep=3)


def test_null_independent_is_low_and_inflates_at_small_n():
    rng = np.random.default_rng(8)
    X, Y = rng.normal(size=(4000, 4)), rng.normal(size=(4000, 4))
    assert cca(X, Y) < 0.05
    assert procrustes(X, Y) < 0.1
    assert shape_distance(X, Y, alpha=0.0) > 1.5
    small_x, small_y = X[:25, :], Y[:25, :]
    big = np.hstack([small_x, rng.normal(size=(25, 16))]), np.hstack([small_y, rng.normal(size=(25, 16))])
    assert cca(*big) > 0.5  # pitfall: spurious correlations at n ≈ d


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), spread=st.floats(0.0, 2.5))
def test_cca_family_invariant_to_invertible_linear_maps(seed, spread):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(80, 4))
    Y = X[:, :3] + rng.normal(size=(80, 3))
    Xt = X @ _invertible(rng, 4, spread) + rng.normal(size=4) * 10
    Yt = Y @ _invertible(rng, 3, spread) - 5.0
    np.testing.assert_allclose(canonical_correlations(Xt, Yt).numpy(), canonical_correlations(X, Y).numpy(), atol=1e-9)
    assert shape_distance(Xt, Yt, alpha=0.0) == pytest.approx(shape_distance(X, Y, alpha=0.0), abs=1e-8)
    # Procrustes / shape α=1: invariant to rotation + isotropic scale + translation
    c = float(np.exp(rng.uniform(-3, 3)))
    Xo, Yo = c * X @ _orthogonal(rng, 4) + 1.0, Y @ _orthogonal(rng, 3) / c
    assert procrustes(Xo, Yo) == pytest.approx(procrustes(X, Y), abs=1e-10)
    assert shape_distance(Xo, Yo, alpha=0.5) == pytest.approx(shape_distance(X, Y, alpha=0.5), abs=1e-8)


def test_procrustes_and_svcca_not_invariant_to_invertible_linear_maps():
    rng = np.random.default_rng(9)
    X = rng.normal(size=(200, 4))
    Y = X[:, :3] + rng.normal(size=(200, 3))
    A = np.diag([20.0, 1.0, 1.0, 0.05])
    assert abs(procrustes(X @ A, Y) - procrustes(X, Y)) > 1e-2
    assert abs(shape_distance(X @ A, Y, alpha=1.0) - shape_distance(X, Y, alpha=1.0)) > 1e-2
    assert abs(svcca(X @ A, Y, keep=2) - svcca(X, Y, keep=2)) > 1e-2
    assert cca(X @ A, Y) == pytest.approx(cca(X, Y), abs=1e-10)


# ---- SVCCA / PWCCA -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("keep", [0.5, 0.9, 0.99, 2, 3])
def test_svcca_matches_dense(keep):
    X, Y = _data(10, d1=8, d2=6, noise=0.5)
    assert svcca(X, Y, keep=keep) == pytest.approx(ref_svcca(X, Y, keep), abs=TOL)


def test_svcca_keep_all_is_cca():
    X, Y = _data(11)
    assert svcca(X, Y, keep=1.0) == pytest.approx(cca(X, Y), abs=TOL)
    assert alignkit.measure("svcca?keep=3", X, Y) == pytest.approx(ref_svcca(X, Y, 3), abs=TOL)


@pytest.mark.parametrize(("seed", "d1", "d2", "reg"), [(12, 6, 4, 0.0), (13, 3, 5, 0.0), (14, 5, 5, 0.3)])
def test_pwcca_matches_dense(seed, d1, d2, reg):
    X, Y = _data(seed, d1=d1, d2=min(d1, d2))
    if d2 > d1:
        Y = np.hstack([Y, np.random.default_rng(seed).normal(size=(len(Y), d2 - d1))])
    assert pwcca(X, Y, reg=reg) == pytest.approx(ref_pwcca(X, Y, reg), abs=TOL)


def test_pwcca_properties():
    rng = np.random.default_rng(15)
    X = rng.normal(size=(300, 5)) * np.array([5.0, 3.0, 1.0, 0.5, 0.2])
    Y = X[:, :3] @ rng.normal(size=(3, 3)) + rng.normal(size=(300, 3))
    p = pwcca(X, Y)
    assert 0.0 <= p <= 1.0
    assert abs(p - pwcca(Y, X)) > 1e-3  # asymmetric: weights come from X
    assert abs(p - cca(X, Y)) > 1e-3
    perm = rng.permutation(5)
    assert pwcca(-3.0 * X[:, perm] + 7.0, Y @ _orthogonal(rng, 3)) == pytest.approx(p, abs=1e-10)
    assert abs(pwcca(X @ _orthogonal(rng, 5), Y) - p) > 1e-4  # L1 weights: not rotation invariant in X
    assert get("pwcca").symmetric is False


# ---- shape metrics / Procrustes -----------------------------------------------------------------------------------


@pytest.mark.parametrize("alpha", [0.0, 0.3, 0.5, 1.0])
@pytest.mark.parametrize("score", ["angular", "euclidean"])
def test_shape_matches_dense_netrep_style(alpha, score):
    X, Y = _data(16, n=150, d1=7, d2=4)
    assert shape_distance(X, Y, alpha=alpha, score=score) == pytest.approx(ref_shape(X, Y, alpha, score), abs=TOL)
    # structured: Y carries only part of X, plus rank deficiency
    rng = np.random.default_rng(17)
    Z = np.hstack([X[:, :2] @ rng.normal(size=(2, 2)), X[:, :1]])
    assert shape_distance(X, Z, alpha=alpha, score=score) == pytest.approx(ref_shape(X, Z, alpha, score), abs=TOL)


def test_alpha0_identity_with_canonical_correlations():
    X, Y = _data(18, d1=5, d2=5)
    rho = canonical_correlations(X, Y).numpy()
    assert shape_distance(X, Y, alpha=0.0) == pytest.approx(np.arccos(rho.mean()), abs=TOL)
    # unequal widths: cos θ = Σρ / sqrt(d1·d2), not the mean
    X, Y = _data(19, d1=6, d2=3)
    rho = canonical_correlations(X, Y).numpy()
    assert shape_distance(X, Y, alpha=0.0) == pytest.approx(np.arccos(rho.sum() / np.sqrt(18)), abs=TOL)


def test_alpha1_is_procrustes_and_matches_scipy():
    X, Y = _data(20, d1=6, d2=4)
    p = procrustes(X, Y)
    assert shape_distance(X, Y, alpha=1.0) == pytest.approx(np.arccos(p), abs=TOL)
    Xn = _pad(_centre(X) / np.linalg.norm(_centre(X)), 6)
    Yn = _pad(_centre(Y) / np.linalg.norm(_centre(Y)), 6)
    R, scale = sla.orthogonal_procrustes(Xn, Yn)
    assert p == pytest.approx(scale, abs=TOL)
    assert p == pytest.approx(np.linalg.svd(Xn.T @ Yn, compute_uv=False).sum(), abs=TOL)
    residual = np.linalg.norm(Xn @ R - Yn)
    assert shape_distance(X, Y, alpha=1.0, score="euclidean") == pytest.approx(residual, abs=TOL)
    assert residual**2 == pytest.approx(2 - 2 * p, abs=TOL)


@pytest.mark.parametrize(("n", "d1", "d2"), [(40, 300, 300), (40, 12, 300), (150, 300, 200), (250, 300, 300)])
@pytest.mark.parametrize("center", [True, False])
def test_procrustes_r_factor_route_matches_dense_formula(n, d1, d2, center):
    """n < d: Procrustes goes through the QR factors of X̃ᵀ and Ỹᵀ (‖R_x R_yᵀ‖_* = ‖X̃ᵀỸ‖_*) where that takes fewer
    flops; both routes equal the float64 dense formula (also with one side narrower than n, and uncentred)."""
    import warnings as w

    from alignkit.metrics.shape import _procrustes_products, _procrustes_r_factors

    rng = np.random.default_rng(n + d1 + d2)
    Z = rng.normal(size=(n, 10))
    X = (Z @ rng.normal(size=(10, d1)) + rng.normal(size=(n, d1)) + 3.0) * np.geomspace(1, 0.1, d1)
    Y = Z @ rng.normal(size=(10, d2)) + 0.5 * rng.normal(size=(n, d2))
    A, B = (_centre(X), _centre(Y)) if center else (X, Y)
    dense = np.linalg.svd(A.T @ B, compute_uv=False).sum() / (np.linalg.norm(A) * np.linalg.norm(B))
    x, y = torch.from_numpy(X), torch.from_numpy(Y)
    assert _procrustes_r_factors(x, y, center)[0] == pytest.approx(dense, abs=1e-12)
    assert _procrustes_products(x, y, center)[0] == pytest.approx(dense, abs=1e-12)
    with w.catch_warnings():
        w.simplefilter("ignore", SmallSampleWarning)
        assert procrustes(X, Y, center=center) == pytest.approx(dense, abs=1e-12)
        assert procrustes(X.astype(np.float32), Y.astype(np.float32), center=center) == pytest.approx(dense, abs=1e-6)
        assert shape_distance(X, Y, score="euclidean", center=center) == pytest.approx(np.sqrt(2 - 2 * dense), abs=1e-9)


def test_procrustes_r_factor_route_on_torch_tensors(monkeypatch):
    """The R-factor route's device branch (torch QR, used for CUDA tensors) run on the CPU by keeping the inputs as
    tensors: the same value as the host route and the dense formula."""
    import importlib

    from alignkit.metrics import shape as S

    rng = np.random.default_rng(5)
    X, Y = rng.normal(size=(30, 200)) + 1.0, rng.normal(size=(30, 150))
    A, B = _centre(X), _centre(Y)
    dense = np.linalg.svd(A.T @ B, compute_uv=False).sum() / (np.linalg.norm(A) * np.linalg.norm(B))
    x, y = torch.from_numpy(X), torch.from_numpy(Y)
    host = S._procrustes_r_factors(x, y, True)[0]
    monkeypatch.setattr(importlib.import_module("alignkit.metrics.cca"), "_as_numpy", lambda t: t)
    assert S._procrustes_r_factors(x, y, True)[0] == pytest.approx(host, abs=1e-13)
    assert host == pytest.approx(dense, abs=1e-13)


def test_procrustes_route_choice_and_near_identical_inputs_with_n_below_d():
    """The R-factor route wins for n well below d (measured crossover ≈ 0.8·d); n ≥ d keeps the cross-product.
    A rotated copy with n < d still gets its chord from the aligned factors (~1e-15, not sqrt(2 − 2·cos θ) ~1e-8)."""
    from alignkit.metrics.shape import _r_factors_cheaper

    assert _r_factors_cheaper(500, 1024, 1024) and _r_factors_cheaper(200, 384, 384)
    assert not _r_factors_cheaper(900, 1024, 1024) and not _r_factors_cheaper(2000, 384, 384)
    assert not _r_factors_cheaper(500, 64, 1024)  # one narrow side: its 64 × 1024 product is cheap
    rng = np.random.default_rng(3)
    X = rng.normal(size=(30, 200))
    Q, _ = np.linalg.qr(rng.normal(size=(200, 200)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SmallSampleWarning)
        assert procrustes(X, 2.5 * X @ Q + 1.0) == pytest.approx(1.0, abs=1e-12)
        assert shape_distance(X, 2.5 * X @ Q + 1.0, score="euclidean") < 1e-12


@pytest.mark.parametrize("alpha", [0.0, 0.5, 1.0])
@pytest.mark.parametrize("score", ["angular", "euclidean"])
def test_metric_axioms(alpha, score):
    rng = np.random.default_rng(21)
    base = rng.normal(size=(60, 5))
    for _ in range(6):
        reps = [base @ rng.normal(size=(5, d)) + rng.normal(size=(60, d)) * rng.uniform(0.1, 2) for d in (3, 5, 6)]
        d = {
            (i, j): shape_distance(reps[i], reps[j], alpha=alpha, score=score)
            for i in range(3)
            for j in range(3)
            if i != j
        }
        for i, j in d:
            assert d[i, j] == pytest.approx(d[j, i], abs=1e-10)
            assert d[i, j] >= 0
            k = 3 - i - j
            assert d[i, j] <= d[i, k] + d[k, j] + 1e-10
    X = reps[0]
    assert shape_distance(X, X, alpha=alpha, score=score) < 1e-7
    assert shape_distance(X, 2 * X @ _orthogonal(rng, 3) - 1, alpha=alpha, score=score) < 1e-7
    assert procrustes(X, X) == pytest.approx(1.0, abs=1e-12)
    assert cca(X, X) == pytest.approx(1.0, abs=1e-12)


def test_shape_padding_and_ranges():
    X, Y = _data(22, d1=5, d2=3)
    assert shape_distance(X, np.hstack([Y, np.zeros((len(Y), 4))]), alpha=0.5) == pytest.approx(
        shape_distance(X, Y, alpha=0.5), abs=TOL
    )
    assert 0 <= shape_distance(X, Y, score="euclidean") <= np.sqrt(2)
    assert 0 <= shape_distance(X, Y) <= np.pi / 2
    # center=False: translation is no longer removed
    assert abs(shape_distance(X + 10, Y, center=False) - shape_distance(X, Y, center=False)) > 1e-3


def test_torch_input_and_registry_metadata():
    X, Y = _data(23)
    tx, ty = torch.tensor(X, dtype=torch.float32), torch.tensor(Y, dtype=torch.float32)
    for name in ("cca", "svcca", "pwcca", "shape_distance", "procrustes"):
        value = alignkit.measure(name, tx, ty)
        assert isinstance(value, float)
        assert value == pytest.approx(alignkit.measure(name, X, Y), abs=1e-5)
    assert get("shape_distance").higher_is_better is False
    assert "invertible_linear" in get("cca").invariances
    assert "invertible_linear" not in get("procrustes").invariances
    assert get("cca").symmetric and get("procrustes").symmetric
    assert get("procrustes").range == (0.0, 1.0)


# ---- bad inputs ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("f", [cca, svcca, pwcca, shape_distance, procrustes, canonical_correlations])
def test_bad_inputs_raise(f):
    X, Y = _data(24, n=30)
    with pytest.raises(ValueError, match="paired by row"):
        f(X, Y[:-1])
    Xn = X.copy()
    Xn[3, 1] = np.nan
    with pytest.raises(ValueError, match="X contains 1 NaN"):
        f(Xn, Y)
    with pytest.raises(ValueError, match="at least 3 items"):
        f(X[:2], Y[:2])
    if f is canonical_correlations:  # a building block, not a registered measure: it raises
        with pytest.raises(ValueError, match="Y is constant"):
            f(X, np.ones_like(Y))
        return
    with pytest.warns(DegenerateSpaceWarning, match="Y is degenerate .constant"):  # NaN, never a score
        assert np.isnan(f(X, np.ones_like(Y)))


def test_bad_parameters_raise():
    X, Y = _data(25, n=60)
    for keep in (0, -2, 0.0, 1.5, -0.1):
        with pytest.raises(ValueError, match="keep"):
            svcca(X, Y, keep=keep)
    with pytest.raises(ValueError, match=r"keep=7 directions exceeds X's width"):
        svcca(X, Y, keep=7)
    with pytest.raises(TypeError, match="keep"):
        svcca(X, Y, keep=True)
    for alpha in (-0.1, 1.01):
        with pytest.raises(ValueError, match=r"alpha must be a number >= 0\.0 and <= 1\.0"):
            shape_distance(X, Y, alpha=alpha)
    with pytest.raises(ValueError, match="score must be one of"):
        shape_distance(X, Y, score="cosine")
    with pytest.raises(ValueError, match="summary must be one of"):
        cca(X, Y, summary="max")
    with pytest.raises(ValueError, match="reg must be"):
        cca(X, Y, reg=-1.0)
    with pytest.raises(ValueError, match="reg must be"):
        pwcca(X, Y, reg=float("nan"))


# ------------------------------------------------------------------------------------ small n, scale safety


def test_shape_and_procrustes_warn_when_n_small_for_dimension():
    """Rule: warn when n < 10·max(m_x, m_y), m = (Σg²)²/Σg⁴ the effective dimension of each (partially whitened)
    side; n = 50 items in d = 5000 dimensions are rotated onto each other (Procrustes ≈ 1)."""
    rng = np.random.default_rng(11)
    X, Y = rng.normal(size=(50, 5000)), rng.normal(size=(50, 5000))
    with pytest.warns(SmallSampleWarning, match=r"procrustes with n=50 .*inflated"):
        assert procrustes(X, Y) > 0.99
    for alpha in (0.0, 0.5, 1.0):
        with pytest.warns(SmallSampleWarning, match=r"shape_distance with n=50 .*inflated"):
            shape_distance(X, Y, alpha=alpha)
    X, Y = rng.normal(size=(2000, 64)), rng.normal(size=(2000, 64))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert procrustes(X, Y) < 0.25
        for alpha in (0.0, 0.5, 1.0):
            shape_distance(X, Y, alpha=alpha)


def test_effective_dimension_is_rank_at_alpha0_and_participation_ratio_at_alpha1():
    rng = np.random.default_rng(12)
    X = rng.normal(size=(300, 8)) * np.geomspace(1, 0.01, 8)  # a decaying spectrum: few effective directions
    s2 = np.linalg.svd(X - X.mean(0), compute_uv=False) ** 2
    assert effective_dim(whitened_factor(torch.from_numpy(X), 0.0)) == pytest.approx(8.0)
    assert effective_dim(whitened_factor(torch.from_numpy(X), 1.0)) == pytest.approx(s2.sum() ** 2 / (s2**2).sum())
    Y = rng.normal(size=(40, 8)) * np.geomspace(1, 0.01, 8)
    X40 = X[:40]
    with warnings.catch_warnings():  # at α = 1 only ~2 effective directions: 40 items are enough
        warnings.simplefilter("error")
        procrustes(X40, Y)
    with pytest.warns(SmallSampleWarning):  # at α = 0 all 8 directions count, like CCA
        shape_distance(X40, Y, alpha=0.0)


def test_cca_family_warning_class():
    X, Y = _data(7, n=40, d1=6, d2=4)
    for f in (cca, svcca, pwcca):
        with pytest.warns(SmallSampleWarning, match="inflated"):
            f(X, Y)
    assert issubclass(SmallSampleWarning, UserWarning)


SCALES = {np.float32: (1e-30, 1e-10, 1e10, 1e30), np.float64: (1e-160, 1e-30, 1e30, 1e160)}


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
def test_cca_and_shape_same_value_at_any_scale(dtype):
    """Each centred space is divided by a power of two before its SVD: the same value at any finite scale."""
    X, Y = _data(13, n=120, d1=6, d2=5)
    tol = 1e-5 if dtype == np.float32 else 1e-10
    calls = {
        "cca": lambda a, b: cca(a, b),
        "cca_mean_sq": lambda a, b: cca(a, b, summary="mean_sq"),
        "svcca": lambda a, b: svcca(a, b),
        "svcca_int": lambda a, b: svcca(a, b, keep=3),
        "pwcca": lambda a, b: pwcca(a, b),
        "procrustes": lambda a, b: procrustes(a, b),
        "shape_angular": lambda a, b: shape_distance(a, b, alpha=0.5),
        "shape_euclidean": lambda a, b: shape_distance(a, b, score="euclidean"),
    }
    for name, f in calls.items():
        base = f(X.astype(dtype), Y.astype(dtype))
        for s in SCALES[dtype]:
            assert f((X * s).astype(dtype), (Y * s).astype(dtype)) == pytest.approx(base, abs=tol), (name, s)
            assert f((X * s).astype(dtype), Y.astype(dtype)) == pytest.approx(base, abs=tol), (name, s)


def test_regularised_cca_reg_is_in_input_units():
    """reg is absolute (covariance units): scaling the data by s and reg by s² leaves every ρ unchanged."""
    X, Y = _data(14, n=100, d1=5, d2=4)
    base = canonical_correlations(X, Y, reg=0.3).numpy()
    for s in (1e-150, 1e-20, 1e20, 1e150):
        got = canonical_correlations(X * s, Y * s, reg=0.3 * s * s).numpy()
        np.testing.assert_allclose(got, base, atol=1e-10)
        assert svcca(X * s, Y * s, reg=0.3 * s * s) == pytest.approx(svcca(X, Y, reg=0.3), abs=1e-10)


@pytest.mark.parametrize(
    "call",
    [
        lambda a, b: cca(a, b),
        lambda a, b: cca(a, b, reg=1e-3),
        lambda a, b: svcca(a, b),
        lambda a, b: svcca(a, b, keep=10),
        lambda a, b: pwcca(a, b),
        lambda a, b: procrustes(a, b),
        lambda a, b: shape_distance(a, b, alpha=0.0),
        lambda a, b: shape_distance(a, b, alpha=0.5, score="euclidean"),
    ],
    ids=["cca", "cca_reg", "svcca", "svcca10", "pwcca", "procrustes", "shape0", "shape05"],
)
def test_float32_and_float64_inputs_agree_on_real_embeddings(call):
    """Float64 cross-products and one rank rule for every dtype: float32 and float64 copies of the same (float16-
    stored) embeddings give the same value to 1e-6 (they differed by ~1e-3 when the rank rule followed the dtype)."""
    from alignkit.demo_data import load_bible_demo

    X, Y, _ = load_bible_demo(np.float64)
    X, Y = X[:1500], Y[:1500, :200]
    assert call(X.astype(np.float32), Y.astype(np.float32)) == pytest.approx(call(X, Y), abs=1e-6)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("decay", [1.0, 0.1, 0.001])
def test_procrustes_participation_estimate_is_close_to_the_exact_ratio(dtype, decay):
    """The small-n warning's m = tr(C)²/‖C‖_F² comes from 16 Gaussian probes (no d × d self-product); it must land
    within 3 standard deviations of the exact ratio (relative sd of the probe estimate of ‖C‖_F²:
    sqrt(2/(16·m₂)), m₂ = ‖C‖_F⁴/‖C²‖_F²) for flat and decaying spectra, with a large mean too."""
    from alignkit.metrics.shape import _participation

    rng = np.random.default_rng(3)
    X = (rng.normal(size=(500, 120)) * np.geomspace(1, decay, 120) + 1e3).astype(dtype)
    Xc = X.astype(np.float64) - X.astype(np.float64).mean(0)
    C = Xc.T @ Xc
    exact = np.trace(C) ** 2 / (C**2).sum()
    m2 = (C**2).sum() ** 2 / ((C @ C) ** 2).sum()
    est = _participation(torch.from_numpy(X), True, float(np.trace(C)), 0)
    assert est == pytest.approx(exact, rel=3 * np.sqrt(2 / (16 * m2)))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("offset", [0.0, 1e3])
def test_procrustes_participation_is_exact_up_to_64_columns(dtype, offset):
    """Up to d = 64 the small-n warning's ratio comes from C itself, formed in the score's pass (centred before the
    product, so a mean 1000× the spread costs nothing): equal to the float64 formula to ~1e-6."""
    from alignkit.metrics.shape import _procrustes_products

    rng = np.random.default_rng(4)
    X = (rng.normal(size=(300, 64)) * np.geomspace(1, 0.01, 64) + offset).astype(dtype)
    Y = (rng.normal(size=(300, 20)) + offset).astype(dtype)

    def ratio(A):
        Ac = A.astype(np.float64) - A.astype(np.float64).mean(0)
        C = Ac.T @ Ac
        return np.trace(C) ** 2 / (C**2).sum()

    _, m = _procrustes_products(torch.from_numpy(X), torch.from_numpy(Y), True)
    assert m == pytest.approx(max(ratio(X), ratio(Y)), rel=1e-5)


@pytest.mark.parametrize("name", ["cca", "svcca", "pwcca"])
def test_fast_path_agrees_with_exact_and_keeps_the_true_rank(name):
    """exact=False (float32 products, like CKA) agrees with the float64 default to ~1e-6 on full-rank data, and on
    exactly rank-deficient float32 data keeps the true rank (the float32 null directions sit at ~2e-4·s_1; a kept
    noise direction would pull the mean correlation far below the exact value)."""
    import alignkit
    from alignkit.metrics.cca import basis_pair

    rng = np.random.default_rng(8)
    Z = rng.normal(size=(3000, 12))
    X = (Z @ rng.normal(size=(12, 48)) + 0.3 * rng.normal(size=(3000, 48))).astype(np.float32)
    Y = (Z @ rng.normal(size=(12, 40)) + 0.3 * rng.normal(size=(3000, 40))).astype(np.float32)
    exact, fast = alignkit.measure(name, X, Y), alignkit.measure(f"{name}?exact=false", X, Y)
    assert fast == pytest.approx(exact, abs=2e-5)
    Xl = (Z[:, :5] @ rng.normal(size=(5, 48)) + 4.0).astype(np.float32)  # rank 5 after centring, a large mean
    Yl = (Z[:, :7] @ rng.normal(size=(7, 40))).astype(np.float32)
    B = basis_pair(torch.from_numpy(Xl), torch.from_numpy(Yl), exact=False)
    assert (B.sx.size, B.sy.size) == (5, 7)
    assert alignkit.measure(f"{name}?exact=false", Xl, Yl) == pytest.approx(alignkit.measure(name, Xl, Yl), abs=1e-5)


def test_fast_path_keeps_a_low_variance_direction_under_a_large_mean():
    """A column whose mean dwarfs its spread (1.5 ± 0.006) holds little of the total energy, so a folded centring
    (XᵀX − n·x̄x̄ᵀ in float32) would pass the global test and lose that column's variance (its ρ off by 2e-4):
    the CCA family centres block by block, and the fast path stays within ~1e-6 of the exact one."""
    from alignkit.metrics import cca

    rng = np.random.default_rng(0)
    X = rng.normal(size=(4000, 4))
    X[:, 3] = 1.5 + 0.006 * rng.normal(size=4000)
    Y = X + rng.normal(size=(4000, 4)) * np.array([0.3, 0.3, 0.3, 0.003])
    X32, Y32 = X.astype(np.float32), Y.astype(np.float32)
    assert cca(X32, Y32, exact=False) == pytest.approx(cca(X32, Y32), abs=2e-6)
