"""Closed-form aligners: the d × d Gram path (n ≫ d) equals the thin-SVD path and dense references."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import torch

import alignkit.align.closed_form as cf
from alignkit.align import CCAAligner, Procrustes, Ridge, VecMap
from alignkit.metrics import canonical_correlations
from alignkit.metrics.predictive import ridge_gcv_alpha


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def small_blocks(monkeypatch):
    """Many row blocks even for small n, so the streaming accumulation is exercised."""
    monkeypatch.setattr(cf, "_MIN_BLOCK_ROWS", 1)
    monkeypatch.setattr(cf, "_BLOCK_ELEMENTS", 37 * 7)


def _fit(cls, solver: str, X, Y, **params):
    est = cls(**params, solver=solver)
    est.fit(X, Y)
    if cls is not Procrustes and solver != "auto":
        assert est._path == solver
    return est


def _data(kind: str, rng: np.random.Generator, n: int = 150, dx: int = 7, dy: int = 6):
    """Paired data with a mean offset: "full" rank, or "deficient" (X of rank 3, Y of rank 4)."""
    if kind == "full":
        X = rng.standard_normal((n, dx)) @ np.diag(np.linspace(1.0, 3.0, dx))
        Y = X[:, :dy] @ rng.standard_normal((dy, dy)) + 0.5 * rng.standard_normal((n, dy))
    else:
        Z = rng.standard_normal((n, 4))
        X = Z[:, :3] @ rng.standard_normal((3, dx))
        Y = (Z + 0.8 * rng.standard_normal((n, 4))) @ rng.standard_normal((4, dy))
    return X + 2.0, Y - 1.0


KINDS = ["full", "deficient"]


# ------------------------------------------------------------------------------------------ Procrustes


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    ("center", "scale", "normalize"), [(False, False, False), (True, True, False), (True, True, True)]
)
def test_procrustes_paths_agree(rng, small_blocks, kind, center, scale, normalize):
    X, Y = _data(kind, rng)
    kw = {"center": center, "scale": scale, "normalize": normalize}
    a, b = _fit(Procrustes, "gram", X, Y, **kw), _fit(Procrustes, "svd", X, Y, **kw)
    if kind == "full":
        np.testing.assert_allclose(a.rotation_, b.rotation_, atol=1e-10)
    # rank-deficient X: R is unique only on X's row space, so compare mapped training rows
    np.testing.assert_allclose(a.translate(X[:9]), b.translate(X[:9]), atol=1e-9)
    np.testing.assert_allclose(a.mean_x_, b.mean_x_, atol=1e-12)
    np.testing.assert_allclose(a.mean_y_, b.mean_y_, atol=1e-12)
    assert a.scale_ == pytest.approx(b.scale_, rel=1e-12)


# ----------------------------------------------------------------------------------------------- Ridge


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("intercept", [True, False])
@pytest.mark.parametrize("alpha", [0.0, 0.7, None])
def test_ridge_paths_agree_and_gcv_identical(rng, small_blocks, kind, intercept, alpha):
    X, Y = _data(kind, rng)
    a = _fit(Ridge, "gram", X, Y, alpha=alpha, fit_intercept=intercept)
    b = _fit(Ridge, "svd", X, Y, alpha=alpha, fit_intercept=intercept)
    assert a.alpha_ == pytest.approx(b.alpha_, rel=1e-12)  # GCV picks the same grid point
    Xq = rng.standard_normal((6, X.shape[1])) + 2.0
    np.testing.assert_allclose(a.translate(Xq), b.translate(Xq), atol=1e-8, rtol=1e-8)
    np.testing.assert_allclose(a.coef_, b.coef_, atol=1e-8 if kind == "full" else 1e-6)
    if alpha is None:
        assert a.alpha_ == pytest.approx(ridge_gcv_alpha(X, Y), rel=1e-12)


@pytest.mark.parametrize("intercept", [True, False])
def test_ridge_gram_equals_normal_equations(rng, intercept):
    X, Y = _data("full", rng, n=300, dx=9, dy=4)
    for lam in (0.0, 2.5):
        est = _fit(Ridge, "auto", X, Y, alpha=lam, fit_intercept=intercept)
        assert est._path == "gram"
        Xc, Yc = (X - X.mean(0), Y - Y.mean(0)) if intercept else (X, Y)
        W = np.linalg.solve(Xc.T @ Xc + lam * np.eye(9), Xc.T @ Yc)
        np.testing.assert_allclose(est.coef_, W, atol=1e-10)
        b = Y.mean(0) - X.mean(0) @ W if intercept else np.zeros(4)
        np.testing.assert_allclose(est.intercept_, b, atol=1e-10)


def test_ridge_gram_rank_deficient_is_minimum_norm_least_squares(rng):
    X, Y = _data("deficient", rng)
    est = _fit(Ridge, "gram", X, Y, alpha=0.0)
    Xc, Yc = X - X.mean(0), Y - Y.mean(0)
    ref = np.linalg.lstsq(Xc, Yc, rcond=None)[0]
    np.testing.assert_allclose(est.coef_, ref, atol=1e-8)


def test_ridge_gcv_formula_in_eigenbasis(rng):
    # GCV(λ) = n·‖(I − A_λ)Y_c‖² / (n − 1 − Σ s²/(s²+λ))², A_λ = X_c(X_cᵀX_c + λI)⁻¹X_cᵀ, written densely
    X, Y = _data("full", rng, n=200)
    est = _fit(Ridge, "gram", X, Y)
    Xc, Yc = X - X.mean(0), Y - Y.mean(0)
    s2 = np.linalg.eigvalsh(Xc.T @ Xc)
    grid = cf._alpha_grid(torch.from_numpy(s2), None).numpy()
    n = X.shape[0]

    def gcv(lam):
        A = Xc @ np.linalg.solve(Xc.T @ Xc + lam * np.eye(X.shape[1]), Xc.T)
        return n * np.sum((Yc - A @ Yc) ** 2) / (n - 1 - np.sum(s2 / (s2 + lam))) ** 2

    assert est.alpha_ == pytest.approx(grid[int(np.argmin([gcv(g) for g in grid]))], rel=1e-12)


# ------------------------------------------------------------------------------------------------- CCA


def _dense_cca(X, Y, reg):
    n = X.shape[0]
    Xc, Yc = X - X.mean(0), Y - Y.mean(0)
    isq = [scipy.linalg.fractional_matrix_power(M.T @ M / n + reg * np.eye(M.shape[1]), -0.5) for M in (Xc, Yc)]
    return np.linalg.svd(isq[0] @ (Xc.T @ Yc / n) @ isq[1], compute_uv=False)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("reg", [0.0, 1e-2])
def test_cca_paths_agree_and_match_dense(rng, small_blocks, kind, reg):
    X, Y = _data(kind, rng)
    a, b = _fit(CCAAligner, "gram", X, Y, reg=reg), _fit(CCAAligner, "svd", X, Y, reg=reg)
    k = 6 if kind == "full" else 3
    assert a.correlations_.shape == b.correlations_.shape == (k,)
    np.testing.assert_allclose(a.correlations_, b.correlations_, atol=1e-10)
    np.testing.assert_allclose(a.correlations_, canonical_correlations(X, Y, reg=reg).numpy(), atol=1e-10)
    if kind == "full":
        np.testing.assert_allclose(a.correlations_, _dense_cca(X, Y, reg)[:k], atol=1e-10)
    signs = np.sign(np.sum(a.weights_x_ * b.weights_x_, axis=0))
    np.testing.assert_allclose(a.weights_x_ * signs, b.weights_x_, atol=1e-8)
    np.testing.assert_allclose(a.weights_y_ * signs, b.weights_y_, atol=1e-8)
    n = X.shape[0]
    u, v = a.transform_x(X), a.transform_y(Y)
    np.testing.assert_allclose(u.T @ v / n, np.diag(a.correlations_), atol=1e-9)
    if reg == 0.0:
        np.testing.assert_allclose(u.T @ u / n, np.eye(k), atol=1e-9)


# ---------------------------------------------------------------------------------------------- VecMap


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    "params",
    [
        {},
        {"normalize": (), "reweight": 0.0},
        {"whiten": False, "dewhiten": False, "reweight": 1.0},
        {"normalize": ("center",), "reweight": 0.25, "dewhiten": False, "dim": 3},
    ],
)
def test_vecmap_paths_agree(rng, small_blocks, kind, params):
    X, Y = _data(kind, rng)
    a, b = _fit(VecMap, "gram", X, Y, **params), _fit(VecMap, "svd", X, Y, **params)
    np.testing.assert_allclose(a.singular_values_, b.singular_values_, atol=1e-10)
    np.testing.assert_allclose(a.centers_x_, b.centers_x_, atol=1e-12)
    np.testing.assert_allclose(a.centers_y_, b.centers_y_, atol=1e-12)
    Xq, Yq = rng.standard_normal((8, X.shape[1])), rng.standard_normal((8, Y.shape[1]))
    sims_a = a.transform_x(Xq) @ a.transform_y(Yq).T
    np.testing.assert_allclose(sims_a, b.transform_x(Xq) @ b.transform_y(Yq).T, atol=1e-8)


# --------------------------------------------------------------------------------------- path selection


def test_auto_picks_gram_for_tall_data_and_svd_otherwise(rng):
    X, Y = _data("full", rng, n=40, dx=7, dy=6)
    for cls in (Ridge, CCAAligner, VecMap):
        assert _fit(cls, "auto", X, Y)._path == "gram"  # 40 ≥ 2·7
        assert _fit(cls, "auto", X[:13], Y[:13])._path == "svd"  # 13 < 2·7
    # float32 input: the squared cutoff is well above the Gram resolution, so rank deficiency stays on Gram
    Xd, Yd = _data("deficient", rng, n=400)
    X32, Y32 = Xd.astype(np.float32), Yd.astype(np.float32)
    est = _fit(CCAAligner, "auto", X32, Y32)
    assert est._path == "gram"
    np.testing.assert_allclose(est.correlations_, _fit(CCAAligner, "svd", X32, Y32).correlations_, atol=1e-8)


def test_auto_falls_back_to_svd_when_the_gram_spectrum_is_unresolved(rng):
    X, Y = _data("full", rng, n=200)
    X[:, 0] = X[:, 1] + 1e-7 * rng.standard_normal(200)  # float64, cond(X) ~ 1e7: s² ratio ~ 1e-14
    for cls, params in ((Ridge, {"alpha": 0.0}), (CCAAligner, {}), (VecMap, {})):
        auto = _fit(cls, "auto", X, Y, **params)
        assert auto._path == "svd"
    # the SVD path keeps the tiny direction, so the least-squares fit is exact there
    ls = _fit(Ridge, "auto", X, Y, alpha=0.0)
    Xc, Yc = X - X.mean(0), Y - Y.mean(0)
    np.testing.assert_allclose(Xc @ ls.coef_, Xc @ np.linalg.lstsq(Xc, Yc, rcond=None)[0], atol=1e-8)
    # a ridge penalty makes the tiny direction irrelevant: the Gram path is accepted
    assert _fit(Ridge, "auto", X, Y, alpha=1.0)._path == "gram"


def test_solver_is_a_validated_public_parameter(rng):
    X, Y = _data("full", rng, n=30)
    est = Ridge(solver="qr")
    with pytest.raises(ValueError, match="solver must be one of auto, gram, svd"):
        est.fit(X, Y)
    assert Ridge(solver="svd").get_params()["solver"] == "svd"


def test_gram_path_keeps_input_untouched_and_handles_torch(rng):
    X, Y = _data("full", rng, n=100)
    X0, Y0 = X.copy(), Y.copy()
    tx, ty = torch.from_numpy(X), torch.from_numpy(Y)
    for cls in (Procrustes, Ridge, CCAAligner, VecMap):
        kw = {"center": True, "normalize": True} if cls is Procrustes else {}
        _fit(cls, "gram", tx, ty, **kw)
    np.testing.assert_array_equal(X, X0)
    np.testing.assert_array_equal(Y, Y0)
