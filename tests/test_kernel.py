"""HSIC / CKA against dense references, identities between forms, properties and nulls."""

import warnings

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import alignkit
from alignkit.degenerate import DegenerateSpaceWarning
from alignkit.metrics import cka, hsic
from alignkit.metrics._moments import biased_cka_chance
from alignkit.metrics.cca import SmallSampleWarning
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
    # n < 0.9·(d1 + d2): Gram form; else feature form (both exact).
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


# ------------------------------------------------------------------------------------- small n, high d


def test_biased_needs_four_items_like_debiased():
    """Biased CKA is exactly 1 at n = 2 for any data: too few items raise for both estimators (and HSIC)."""
    g = np.random.default_rng(0)
    for n in (2, 3):
        X, Y = g.standard_normal((n, 5)), g.standard_normal((n, 7))
        for f in (cka, hsic):
            with pytest.raises(ValueError, match="at least 4 items"):
                f(X, Y, debiased=False)
    s = alignkit.StreamingCKA(debiased=False).update(X, Y)
    with pytest.raises(ValueError, match="at least 4 items"):
        s.compute()


@pytest.mark.parametrize("form", ["feature", "gram"])
def test_biased_cka_warns_when_n_small_for_dimension(form):
    """Rule: warn when n − 1 < 10·sqrt(m_x·m_y), m the effective rank (Murphy et al., ICLR 2024)."""
    g = np.random.default_rng(1)
    X, Y = g.standard_normal((50, 5000)), g.standard_normal((50, 5000))
    with pytest.warns(SmallSampleWarning, match=r"biased CKA with n=50 .*inflated .*score ≈ 0\.9"):
        assert cka(X, Y, debiased=False, form=form) > 0.95  # independent, yet ≈ 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert abs(cka(X, Y)) < 0.05  # the debiased estimator: no warning, ≈ 0
        X, Y = g.standard_normal((2000, 64)), g.standard_normal((2000, 64))
        assert cka(X, Y, debiased=False, form=form) < 0.1


def test_biased_cka_warns_in_fast_paths_and_streaming():
    g = np.random.default_rng(2)
    X, Y = g.standard_normal((40, 800)), g.standard_normal((40, 800))
    with pytest.warns(SmallSampleWarning, match="biased CKA"):
        alignkit.permutation_test("cka?debiased=false", X, Y, n_perm=3)
    with pytest.warns(SmallSampleWarning, match="biased CKA"):
        alignkit.StreamingCKA(debiased=False).update(X, Y).compute()
    with pytest.warns(SmallSampleWarning, match="biased CKA"):
        cka(X, Y, kernel="rbf_median", debiased=False)


@pytest.mark.parametrize(("n", "d"), [(100, 10), (100, 100), (60, 600), (400, 40)])
def test_biased_chance_level_matches_independent_data(n, d):
    """sqrt(m_x·m_y)/(n − 1) predicts biased CKA between independent spaces (the warning's number)."""
    g = np.random.default_rng(n + d)
    vals, chances = [], []
    for _ in range(5):
        X, Y = g.standard_normal((n, d)), g.standard_normal((n, d))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            vals.append(cka(X, Y, debiased=False))
        Xc = X - X.mean(0)
        s2 = np.linalg.svd(Xc, compute_uv=False) ** 2
        m = s2.sum() ** 2 / (s2**2).sum()
        chances.append(biased_cka_chance(n, m, m))
        assert any(issubclass(w.category, SmallSampleWarning) for w in caught) == (chances[-1] > 0.1)
    assert np.mean(vals) == pytest.approx(np.mean(chances), abs=0.03)


# ------------------------------------------------------------------------------------------- scale safety

SCALES64 = (1e-160, 1e-60, 1e60, 1e160)


@pytest.mark.parametrize("kernel", ["linear", "rbf_median"])
@pytest.mark.parametrize("debiased", [False, True])
@pytest.mark.parametrize("form", ["auto", "gram", "feature"])
def test_cka_same_value_at_extreme_scales(rng, kernel, debiased, form):
    """Each space is divided by a power of two first: float64 ×1e±160 (and float32 ×1e±30) give scale 1's CKA."""
    if kernel != "linear" and form == "feature":
        return
    X, Y = shared_latent(rng, n=60, dx=6, dy=8)
    base = cka(X, Y, kernel=kernel, debiased=debiased, form=form)
    for s in SCALES64:
        assert cka(X * s, Y * s, kernel=kernel, debiased=debiased, form=form) == pytest.approx(base, abs=1e-12)
        assert cka(X * s, Y / s, kernel=kernel, debiased=debiased, form=form) == pytest.approx(base, abs=1e-12)
    X32, Y32 = X.astype(np.float32), Y.astype(np.float32)
    base32 = cka(X32, Y32, kernel=kernel, debiased=debiased, form=form)
    for s in (1e-30, 1e30):
        got = cka((X * s).astype(np.float32), (Y * s).astype(np.float32), kernel=kernel, debiased=debiased, form=form)
        assert got == pytest.approx(base32, abs=1e-5)


def test_rbf_abs_follows_sigma_in_input_units(rng):
    """rbf_abs is scale-dependent: scaling the data and σ together leaves CKA unchanged, at any scale."""
    X, Y = shared_latent(rng, n=50)
    base = cka(X, Y, kernel="rbf_abs", sigma=3.0)
    for s in (1e-150, 1e150):
        assert cka(X * s, Y * s, kernel="rbf_abs", sigma=3.0 * s) == pytest.approx(base, abs=1e-12)


@pytest.mark.parametrize("debiased", [False, True])
def test_hsic_scales_as_s4_and_warns_out_of_range(rng, debiased):
    """HSIC is scale-dependent (the documented exemption): computed rescaled, exact where representable,
    a RuntimeWarning and ±inf / 0 (never a silent NaN) where s⁴·HSIC leaves float64."""
    X, Y = shared_latent(rng, n=60)
    base = hsic(X, Y, debiased=debiased)
    for s in (1e-60, 1e-20, 1e20, 1e60):
        assert hsic(X * s, Y * s, debiased=debiased) == pytest.approx(base * s**4, rel=1e-10)
        assert hsic(X * s, Y / s, debiased=debiased) == pytest.approx(base, rel=1e-10)
    assert hsic((X * 1e30).astype(np.float32), Y.astype(np.float32)) == pytest.approx(hsic(X, Y) * 1e60, rel=1e-5)
    with pytest.warns(RuntimeWarning, match="outside float64's range"):
        assert hsic(X * 1e160, Y * 1e160, debiased=debiased) == np.copysign(np.inf, base)
    with pytest.warns(RuntimeWarning, match="outside float64's range"):
        assert hsic(X * 1e-160, Y * 1e-160, debiased=debiased) == 0.0
    for form in ("feature", "gram"):  # the fast paths return the same units
        res = alignkit.permutation_test("hsic", X * 1e20, Y * 1e-10, n_perm=3, debiased=debiased, form=form)
        assert res.score == pytest.approx(base * 1e20, rel=1e-10)  # (1e20)²·(1e-10)²


def test_cka_fast_paths_scale_safe(rng):
    X, Y = shared_latent(rng, n=60)
    for measure in ("cka", "cka?debiased=false", "cka?form=gram", "cka?kernel=rbf_median"):
        base = alignkit.permutation_test(measure, X, Y, n_perm=4, seed=3)
        big = alignkit.permutation_test(measure, X * 1e160, Y * 1e-160, n_perm=4, seed=3)
        assert big.score == pytest.approx(base.score, abs=1e-12)
        np.testing.assert_allclose(big.null, base.null, atol=1e-12)


def test_undefined_cka_warns_instead_of_silent_nan(rng):
    """A kernel with no variance (rbf_abs with σ far below the distances: K = I, U-centred to 0) gives NaN with
    a warning."""
    X, Y = shared_latent(rng, n=40)
    with pytest.warns(RuntimeWarning, match="CKA is undefined"):
        assert np.isnan(cka(X, Y, kernel="rbf_abs", sigma=1e-3))


@pytest.mark.parametrize("form", ["feature", "gram"])
@pytest.mark.parametrize("debiased", [False, True])
def test_linear_forms_float32_close_to_float64_on_real_embeddings(debiased, form):
    """float32 inputs are multiplied in float32 (feature form: row blocks accumulated in float64; Gram form: K = X'X'ᵀ
    in float32, its sums in float64): within 1e-6 of float64."""
    from alignkit.demo_data import load_bible_demo

    X, Y, _ = load_bible_demo(np.float64)
    got = cka(X.astype(np.float32), Y.astype(np.float32), debiased=debiased, form=form)
    assert got == pytest.approx(cka(X, Y, debiased=debiased, form=form), abs=1e-6)


@pytest.mark.parametrize("debiased", [False, True])
@pytest.mark.parametrize("offset", [0.0, 1e3])
def test_linear_gram_form_float32_with_large_mean_matches_dense(rng, debiased, offset):
    """The host Gram form centres float32 rows by the float32-rounded mean and takes the rest from the Gram's row
    sums (HSIC from ⟨K, L⟩, diagonals, row sums): a mean 1,000× the spread costs no precision; HSIC (scale-dependent)
    matches the dense float64 formula too."""
    X, Y = shared_latent(rng, n=60, dx=150, dy=200)
    X32, Y32 = (X + offset).astype(np.float32), (Y - offset).astype(np.float32)
    X64, Y64 = X32.astype(np.float64), Y32.astype(np.float64)  # the same numbers
    Xc, Yc = X64 - X64.mean(0), Y64 - Y64.mean(0)  # the reference centred first: an uncentred dense Gram cancels
    assert cka(X32, Y32, debiased=debiased, form="gram") == pytest.approx(
        cka_dense(Xc, Yc, "linear", debiased), abs=1e-6
    )
    K, L = gram_dense(Xc), gram_dense(Yc)
    ref = hsic_unbiased_dense(K, L) if debiased else hsic_biased_dense(K, L)
    assert hsic(X32, Y32, debiased=debiased, form="gram") == pytest.approx(ref, rel=1e-5)
    assert hsic(X64, Y64, debiased=debiased, form="gram") == pytest.approx(ref, rel=1e-10)


@pytest.mark.parametrize("debiased", [False, True])
def test_linear_gram_device_route_matches_host_route(rng, monkeypatch, debiased):
    """Linear Grams on other devices stay float64 torch Grams centred in place; run on the CPU here (the host-route
    switch turned off), they equal the host route and the dense formula."""
    from alignkit.metrics import kernel as K

    X, Y = shared_latent(rng, n=50, dx=80, dy=70)
    host = cka(X, Y, debiased=debiased, form="gram")
    monkeypatch.setattr(K, "_host_linear", lambda *a: False)
    assert cka(X, Y, debiased=debiased, form="gram") == pytest.approx(host, abs=1e-12)
    assert host == pytest.approx(cka_dense(X, Y, "linear", debiased), abs=1e-10)


@pytest.mark.parametrize(("n", "d"), [(5, 300), (8, 200_000), (20, 100_000)])
def test_linear_gram_form_float32_at_few_items_or_many_columns(n, d):
    """float32 Grams: small ones (n²·d ≤ 2²⁴) are centred and multiplied in float64 (at n = 5 the debiased estimator
    cancels most of its terms: float32 entries left 2e-6); wide ones add float32 slabs of 4,096 columns in float64
    (one float32 product over 200,000 columns left 2e-5)."""
    rng = np.random.default_rng(n)
    X = rng.standard_normal((n, d)).astype(np.float32) + 3
    Y = rng.standard_normal((n, d)).astype(np.float32)
    Y[:, :100] += 3 * X[:, :100]
    X64, Y64 = X.astype(np.float64), Y.astype(np.float64)
    ref = cka_dense(X64 - X64.mean(0), Y64 - Y64.mean(0), "linear", True)
    assert cka(X, Y, form="gram") == pytest.approx(ref, abs=1e-6)


def test_unit_rows_keeps_autograd():
    """The one-buffer unit rows (scaled and divided in place) fall back to out-of-place steps when autograd records."""
    from alignkit._common import unit_rows

    g = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    u = unit_rows(g)
    u[:, 0].sum().backward()
    assert g.grad is not None and torch.equal(u.detach(), unit_rows(g.detach()))
    expected = torch.autograd.functional.jacobian(lambda t: (t / t.norm(dim=1, keepdim=True))[:, 0].sum(), g.detach())
    assert torch.allclose(g.grad, expected)
