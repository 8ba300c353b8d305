"""Generalised Procrustes and multi-set CCA (MAXVAR) against their definitions and dense references."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

from alignkit.align.closed_form import CCAAligner, Procrustes
from alignkit.align.nway import GeneralizedProcrustes, MultiSetCCA, NWayAligner


def _rot(rng: np.random.Generator, d: int) -> np.ndarray:
    q, r = np.linalg.qr(rng.standard_normal((d, d)))
    return q * np.sign(np.diag(r))


def _views(seed: int = 0, n: int = 200, d: int = 5, m: int = 3, noise: float = 0.05) -> tuple[np.ndarray, list]:
    """m rotated, shifted, noisy copies of one latent Z (n × d) with unequal variances."""
    rng = np.random.default_rng(seed)
    Z = rng.standard_normal((n, d)) * np.linspace(2.0, 0.5, d)
    views = [Z @ _rot(rng, d) + rng.standard_normal(d) + noise * rng.standard_normal((n, d)) for _ in range(m)]
    return Z, views


def _unit_scaled(X: np.ndarray) -> np.ndarray:
    c = X - X.mean(axis=0)
    return c / np.sqrt((c * c).sum() / len(c))


def _dense_gpa_objective(views: list, weights: list) -> float:
    """Σ_i ‖X̃_iW_i − M‖² with the n × d mapped views formed explicitly."""
    mapped = [(X - X.mean(axis=0)) @ W for X, W in zip(views, weights, strict=True)]  # weights_ hold 1/scale
    M = np.mean(mapped, axis=0)
    return float(sum(((Y - M) ** 2).sum() for Y in mapped))


# --------------------------------------------------------------------------------------------------- GPA


def test_gpa_objective_is_non_increasing_and_matches_its_dense_value():
    _, views = _views(1, noise=0.5, m=4)
    gpa = GeneralizedProcrustes(tol=0.0, max_iter=30).fit(views)
    hist = np.array(gpa.objective_history_)
    assert 3 <= len(hist) <= 31
    assert np.all(np.diff(hist) <= 1e-9 * hist[0])
    assert hist[-1] < hist[0]
    assert np.isclose(hist[-1], _dense_gpa_objective(views, gpa.weights_), rtol=1e-9)


def test_gpa_with_two_views_is_orthogonal_procrustes():
    _, (A, B) = _views(2, m=2, noise=0.3)
    gpa = GeneralizedProcrustes().fit([A, B])
    W1, W2 = gpa.weights_
    s1, s2 = gpa.scales_
    R = Procrustes(center=True).fit(_unit_scaled(A), _unit_scaled(B)).rotation_
    np.testing.assert_allclose((W1 * s1) @ (W2 * s2).T, R, atol=1e-8)
    assert gpa.converged_ and gpa.n_iter_ <= 5


def test_gpa_recovers_planted_rotations_and_aligns_views():
    _, views = _views(3, m=3, noise=0.01)
    gpa = GeneralizedProcrustes().fit(views)
    mapped = [gpa.transform(i, X) for i, X in enumerate(views)]
    spread = np.linalg.norm(mapped[0] - mapped[0].mean(0))
    for a in mapped[1:]:
        assert np.linalg.norm(a - mapped[0]) < 0.02 * spread
    # rotating one input view changes nothing but the common space's own orientation
    Q = _rot(np.random.default_rng(9), 5)
    again = GeneralizedProcrustes().fit([views[0] @ Q, views[1], views[2]])
    A, B = again.transform(0, views[0] @ Q), mapped[0]
    U, _, Vt = np.linalg.svd(A.T @ B)
    np.testing.assert_allclose(A @ (U @ Vt), B, atol=1e-6 * spread)


def test_gpa_pads_unequal_widths_and_pca_option():
    rng = np.random.default_rng(4)
    Z = rng.standard_normal((150, 4)) * np.array([3.0, 2.0, 1.0, 0.5])
    E = np.linalg.qr(rng.standard_normal((7, 7)))[0][:4]  # 4 × 7 with orthonormal rows
    views = [Z, Z @ E + 0.01 * rng.standard_normal((150, 7))]
    gpa = GeneralizedProcrustes().fit(views)
    assert gpa.weights_[0].shape == (4, 7) and gpa.weights_[1].shape == (7, 7)
    a, b = gpa.transform(0, views[0]), gpa.transform(1, views[1])
    assert np.linalg.norm(a - b) < 0.05 * np.linalg.norm(a)
    pca = GeneralizedProcrustes(n_components=3).fit(views)
    assert pca.transform(1, views[1]).shape == (150, 3)
    with pytest.raises(ValueError, match="n_components=5 exceeds"):
        GeneralizedProcrustes(n_components=5).fit(views)


# ------------------------------------------------------------------------------------------------ MAXVAR


def test_maxvar_two_views_reduces_to_cca():
    rng = np.random.default_rng(5)
    n = 300
    S = rng.standard_normal((n, 3))
    X = np.c_[S, rng.standard_normal((n, 3))] @ rng.standard_normal((6, 6))
    Y = np.c_[S @ np.diag([1.0, 0.7, 0.3]) + 0.5 * rng.standard_normal((n, 3)), rng.standard_normal((n, 2))]
    Y = Y @ rng.standard_normal((5, 5))
    mcca = MultiSetCCA(reg=0.0).fit([X, Y])
    rho = CCAAligner(reg=0.0).fit(X, Y).correlations_
    np.testing.assert_allclose(mcca.eigenvalues_ - 1.0, rho, atol=1e-9)
    # each view's variates are its canonical variates: pairwise correlations ρ_j, uncorrelated across j
    a, b = mcca.transform(0, X), mcca.transform(1, Y)
    a = (a - a.mean(0)) / a.std(0)
    b = (b - b.mean(0)) / b.std(0)
    np.testing.assert_allclose(a.T @ b / n, np.diag(rho), atol=1e-8)


def test_maxvar_eigenvalues_match_dense_sum_of_projections():
    rng = np.random.default_rng(6)
    views = [rng.standard_normal((40, d)) for d in (3, 5, 4)]
    reg = 0.05
    mcca = MultiSetCCA(reg=reg, n_components=6).fit(views)
    n = 40
    P = 0
    for X in views:
        c = X - X.mean(0)
        P = P + c @ np.linalg.solve(c.T @ c + n * reg * np.eye(c.shape[1]), c.T)
    dense = np.sort(np.linalg.eigvalsh(P))[::-1][:6]
    np.testing.assert_allclose(mcca.eigenvalues_, dense, atol=1e-10)


def test_maxvar_recovers_a_planted_shared_latent():
    rng = np.random.default_rng(7)
    n, k = 400, 2
    Z = rng.standard_normal((n, k))
    views = [np.c_[Z, rng.standard_normal((n, 3))] @ rng.standard_normal((k + 3, d)) for d in (5, 6, 8)]
    views = [v + 0.05 * rng.standard_normal(v.shape) for v in views]
    mcca = MultiSetCCA(n_components=k).fit(views)
    assert np.all(mcca.eigenvalues_ > 2.9) and mcca.eigenvalues_.max() <= 3.0 + 1e-9
    for i, X in enumerate(views):
        G = mcca.transform(i, X)
        # the variates span the planted latent: canonical correlations with Z all ≈ 1
        rho = CCAAligner(reg=0.0).fit(G, Z).correlations_
        assert rho.min() > 0.99


# ----------------------------------------------------------------------------------------- conventions


@pytest.mark.parametrize("est", [GeneralizedProcrustes(), MultiSetCCA(n_components=3)])
def test_save_load_round_trip(est, tmp_path):
    _, views = _views(8)
    est.fit(views)
    back = NWayAligner.load(est.save(tmp_path / "m"))
    assert type(back) is type(est) and back.get_params() == est.get_params()
    for i, X in enumerate(views):
        np.testing.assert_array_equal(back.transform(i, X), est.transform(i, X))
    assert not list(tmp_path.rglob("*.pkl"))
    state = tmp_path / "m" / "state.safetensors"
    state.write_bytes(state.read_bytes()[:-1] + b"\x00")
    with pytest.raises(ValueError, match="corrupt or mismatched state file"):
        NWayAligner.load(tmp_path / "m")


def test_load_checks_the_class(tmp_path):
    _, views = _views(8)
    folder = MultiSetCCA().fit(views).save(tmp_path / "m")
    with pytest.raises(TypeError, match="holds a saved MultiSetCCA"):
        GeneralizedProcrustes.load(folder)


@pytest.mark.parametrize("cls", [GeneralizedProcrustes, MultiSetCCA])
def test_sklearn_conventions(cls):
    est = cls()
    assert clone(est).get_params() == est.get_params()
    with pytest.raises(NotFittedError):
        est.transform(0, np.zeros((3, 5)))
    _, views = _views(9)
    assert est.fit(views) is est
    with pytest.raises(ValueError, match=r"i must be a view index in 0\.\.2"):
        est.transform(3, views[0])
    with pytest.raises(ValueError, match="X has 4 features but view 1"):
        est.transform(1, views[1][:, :4])
    assert est.transform(1, views[1]).dtype == np.float64


@pytest.mark.parametrize("cls", [GeneralizedProcrustes, MultiSetCCA])
def test_bad_input(cls):
    _, views = _views(10)
    with pytest.raises(ValueError, match="at least 2 views"):
        cls().fit(views[:1])
    with pytest.raises(ValueError, match=r"paired by row: Xs\[2\] has 199 rows but Xs\[0\] has 200"):
        cls().fit([views[0], views[1], views[2][:-1]])
    bad = views[1].copy()
    bad[4, 2] = np.inf
    with pytest.raises(ValueError, match=r"Xs\[1\] contains 1 NaN or Inf"):
        cls().fit([views[0], bad])
    bad[4, 2] = np.nan
    with pytest.raises(ValueError, match=r"Xs\[1\] contains 1 NaN or Inf"):
        cls().fit([views[0], bad])
    with pytest.raises(TypeError, match="list of views"):
        cls().fit(views[0])
    with pytest.raises(ValueError, match=r"Xs\[1\] is constant"):
        cls().fit([views[0], np.ones_like(views[1])])
    with pytest.raises(ValueError, match=f"{cls.__name__}: n_components"):
        cls(n_components=0).fit(views)
