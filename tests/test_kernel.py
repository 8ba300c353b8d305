"""HSIC / CKA against dense references, identities between forms, properties and nulls."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import alignkit
from alignkit.degenerate import DegenerateSpaceWarning
from alignkit.metrics import cka, hsic
from dense_reference import cka_dense, gram_dense, hsic_biased_dense, hsic_unbiased_dense, shared_latent


@pytest.mark.parametrize("debiased", [False, True])
@pytest.mark.parametrize("form", ["gram", "feature", "auto"])
@pytest.mark.parametrize("structured", [False, True])
def test_linear_cka_matches_dense(rng, debiased, form, structured):
    X, Y = shared_latent(rng, n=70) if structured else (rng.standard_normal((70, 9)), rng.standard_normal((70, 13)))
    assert cka(X, Y, debiased=debiased, form=form) == pytest.approx(cka_dense(X, Y, "linear", debiased), abs=1e-10)


@pytest.mark.parametrize("kernel", ["rbf_median", "rbf_abs"])
@pytest.mark.parametrize("debiased", [False, True])
def test_rbf_cka_matches_dense(rng, kernel, debiased):
    X, Y = shared_latent(rng, n=60, dx=5, dy=6, noise=0.3)
    X, Y = X / 3, Y / 3  # rbf_abs has σ = 1: keep distances in a range where it is informative
    assert cka(X, Y, kernel=kernel, debiased=debiased) == pytest.approx(cka_dense(X, Y, kernel, debiased), abs=1e-10)


def test_rbf_conventions_differ(rng):
    X, Y = shared_latent(rng, n=60, dx=5, dy=6)
    assert abs(cka(X, Y, kernel="rbf_median") - cka(X, Y, kernel="rbf_abs")) > 1e-3


@pytest.mark.parametrize("debiased", [False, True])
def test_hsic_matches_dense(rng, debiased):
    X, Y = shared_latent(rng, n=50)
    K, L = gram_dense(X), gram_dense(Y)
    ref = hsic_unbiased_dense(K, L) if debiased else hsic_biased_dense(K, L)
    for form in ("gram", "feature"):
        assert hsic(X, Y, debiased=debiased, form=form) == pytest.approx(ref, rel=1e-10)


def test_gram_equals_feature_equals_streaming(rng):
    X, Y = shared_latent(rng, n=400, dx=30, dy=50)
    for debiased in (False, True):
        g = cka(X, Y, debiased=debiased, form="gram")
        f = cka(X, Y, debiased=debiased, form="feature")
        s = alignkit.StreamingCKA(debiased=debiased)
        for start in range(0, 400, 37):
            s.update(X[start : start + 37], Y[start : start + 37])
        assert f == pytest.approx(g, abs=1e-12) and s.compute() == pytest.approx(g, abs=1e-12)


def test_auto_form_switches_on_dimension(rng):
    # n < d: Gram form; n ≥ d: feature form (both exact).
    X, Y = rng.standard_normal((20, 50)), rng.standard_normal((20, 40))
    assert cka(X, Y) == pytest.approx(cka_dense(X, Y, debiased=True), abs=1e-10)


def test_self_similarity_is_one(rng):
    X = rng.standard_normal((50, 8))
    for debiased in (False, True):
        for kernel in ("linear", "rbf_median"):
            assert cka(X, X, kernel=kernel, debiased=debiased) == pytest.approx(1.0, abs=1e-12)


def test_debiased_null_is_zero_biased_is_not():
    """Independent Gaussians with d ≫ n: debiased CKA ≈ 0, biased CKA inflated (Murphy et al. 2024)."""
    g = np.random.default_rng(3)
    deb, bia = [], []
    for _ in range(20):
        X, Y = g.standard_normal((32, 200)), g.standard_normal((32, 200))
        deb.append(cka(X, Y, debiased=True))
        bia.append(cka(X, Y, debiased=False))
    assert abs(np.mean(deb)) < 0.02
    assert np.mean(bia) > 0.5


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), scale=st.floats(1e-2, 1e2), shift=st.floats(-100, 100))
def test_cka_invariances(seed, scale, shift):
    g = np.random.default_rng(seed)
    X, Y = shared_latent(g, n=40, dx=6, dy=7)
    Q, _ = np.linalg.qr(g.standard_normal((6, 6)))
    perm = g.permutation(40)
    for debiased in (False, True):
        base = cka(X, Y, debiased=debiased)
        assert cka(X @ Q * scale + shift, Y, debiased=debiased) == pytest.approx(base, abs=1e-9)
        assert cka(X[perm], Y[perm], debiased=debiased) == pytest.approx(base, abs=1e-9)


def test_cka_not_invariant_to_invertible_linear(rng):
    X, Y = shared_latent(rng, n=100)
    A = np.diag(np.geomspace(0.05, 20, X.shape[1]))
    assert abs(cka(X @ A, Y) - cka(X, Y)) > 1e-2


def test_symmetry_and_range(rng):
    X, Y = shared_latent(rng, n=80)
    assert cka(X, Y) == pytest.approx(cka(Y, X), abs=1e-12)
    assert 0 <= cka(X, Y, debiased=False) <= 1


def test_large_mean_no_cancellation(rng):
    X, Y = shared_latent(rng, n=200)
    assert cka(X + 1e6, Y - 1e6) == pytest.approx(cka(X, Y), abs=1e-9)


def test_float32_torch_input(rng):
    X, Y = shared_latent(rng, n=200)
    t = cka(torch.tensor(X, dtype=torch.float32), torch.tensor(Y, dtype=torch.float16))
    assert t == pytest.approx(cka(X, Y), abs=2e-3)


def test_bad_input(rng):
    X = rng.standard_normal((10, 3))
    with pytest.raises(ValueError, match="at least 4 items"):
        cka(X[:3], X[:3], debiased=True)
    with pytest.raises(ValueError, match="kernel must be one of"):
        cka(X, X, kernel="poly")
    with pytest.raises(ValueError, match="only for kernel='linear'"):
        cka(X, X, kernel="rbf_abs", form="feature")
    with pytest.warns(DegenerateSpaceWarning, match="X is degenerate .constant"):  # NaN, never a score
        assert np.isnan(cka(np.ones((10, 3)), X))
    with pytest.raises(ValueError, match="NaN or Inf"):
        cka(np.where(X > 1, np.nan, X), X)
