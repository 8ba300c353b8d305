"""Permutation nulls (fast paths equal brute force; calibrated p-values), subsampling CIs, streaming CKA."""

import numpy as np
import pytest
import torch
from scipy import stats as sps

import alignkit
from alignkit.stats import StreamingCKA, bootstrap_ci, permutation_test, permutations
from dense_reference import shared_latent

FAST_PATHS = [
    "mutual_knn?k=5",
    "cycle_knn?k=5",
    "jaccard_knn?k=5",
    "lcs_knn?k=5",
    "cknna?k=5",
    "cka",
    "cka?debiased=false",
    "cka?form=gram",
    "cka?kernel=rbf_median",
    "hsic",
    "cca",
    "rsa",
]


@pytest.mark.parametrize("measure", FAST_PATHS)
def test_null_draws_equal_recomputation_on_permuted_rows(rng, measure):
    X, Y = shared_latent(rng, n=60)
    res = permutation_test(measure, X, Y, n_perm=4, seed=11)
    assert res.score == pytest.approx(alignkit.measure(measure, X, Y), abs=1e-10)
    brute = [alignkit.measure(measure, X, Y[p.numpy()]) for p in permutations(60, 4, 11)]
    np.testing.assert_allclose(res.null, brute, atol=1e-10)


def test_preprocessing_options_apply(rng):
    X, Y = shared_latent(rng, n=80)
    X[0] *= 100  # an outlier row
    res = permutation_test("cka", X, Y, n_perm=3, clip_quantile=0.95, normalize=True)
    assert res.score == pytest.approx(alignkit.measure("cka", X, Y, clip_quantile=0.95, normalize=True))
    assert res.score != pytest.approx(alignkit.measure("cka", X, Y))


def test_summaries_by_hand():
    res = alignkit.stats.PermutationResult("m", 0.5, np.array([0.1, 0.2, 0.5, 0.3]), True, 1.0)
    assert res.p_value == pytest.approx((1 + 1) / 5)  # ties count as extreme
    assert res.null_mean == pytest.approx(0.275)
    assert res.z == pytest.approx((0.5 - 0.275) / np.std([0.1, 0.2, 0.5, 0.3], ddof=1))
    assert res.adjusted == pytest.approx((0.5 - 0.275) / (1 - 0.275))
    dist = alignkit.stats.PermutationResult("d", 0.1, np.array([0.3, 0.4, 0.1]), False, 0.0)
    assert dist.p_value == pytest.approx(2 / 4) and dist.z > 0


def test_strong_signal_reaches_minimum_p(rng):
    X, Y = shared_latent(rng, n=200, noise=0.1)
    res = permutation_test("mutual_knn", X, Y, n_perm=99)
    assert res.p_value == pytest.approx(1 / 100)
    assert res.adjusted > 0.2 and res.z > 10


@pytest.mark.parametrize("measure", ["cka", "mutual_knn?k=5"])
def test_p_values_uniform_under_independence(measure):
    g = np.random.default_rng(2024)
    ps = []
    for _ in range(60):
        X, Y = g.standard_normal((40, 4)), g.standard_normal((40, 4))
        ps.append(permutation_test(measure, X, Y, n_perm=49, seed=int(g.integers(1 << 30))).p_value)
    ps = np.asarray(ps)
    # discrete p on {1/50, ..., 1}: compare with the uniform by KS and by the rejection rate at 0.1
    assert sps.kstest(ps, "uniform").pvalue > 0.01
    assert 0.0 <= (ps <= 0.1).mean() <= 0.25


def test_callable_measure_uses_generic_path(rng):
    X, Y = shared_latent(rng, n=50)

    def first_column_corr(a, b):
        return float(np.corrcoef(a[:, 0].numpy(), b[:, 0].numpy())[0, 1])

    res = permutation_test(first_column_corr, X, Y, n_perm=5, seed=3)
    assert res.measure == "first_column_corr"
    brute = [first_column_corr(torch.tensor(X), torch.tensor(Y)[p]) for p in permutations(50, 5, 3)]
    np.testing.assert_allclose(res.null, brute)


def test_seed_determinism(rng):
    X, Y = shared_latent(rng, n=50)
    a = permutation_test("cka", X, Y, n_perm=10, seed=5).null
    b = permutation_test("cka", X, Y, n_perm=10, seed=5).null
    c = permutation_test("cka", X, Y, n_perm=10, seed=6).null
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_permutation_bad_input(rng):
    X = rng.standard_normal((30, 3))
    with pytest.raises(ValueError, match="n_perm must be a positive integer"):
        permutation_test("cka", X, X, n_perm=0)
    with pytest.raises(ValueError, match="unknown parameter"):
        permutation_test("cka", X, X, n_perm=2, kk=3)
    with pytest.raises(ValueError, match="Did you mean 'mutual_knn'"):
        permutation_test("mutual_kn", X, X, n_perm=2)


# ------------------------------------------------------------------------------------ bootstrap


def test_bootstrap_interval_contains_score_and_shrinks_with_n():
    g = np.random.default_rng(0)
    widths = []
    for n in (200, 800):
        X, Y = shared_latent(g, n=n)
        res = bootstrap_ci("cka", X, Y, n_boot=60, seed=1)
        assert res.low <= res.score <= res.high
        assert res.m == n // 2
        widths.append(res.high - res.low)
    assert widths[1] < widths[0]


def test_bootstrap_subsamples_never_duplicate_items(rng):
    seen = []

    def record(a, b):
        seen.append(len(np.unique(a.numpy(), axis=0)) == a.shape[0])
        return 0.0

    X = rng.standard_normal((40, 3))
    bootstrap_ci(record, X, X, n_boot=10, fraction=0.7)
    assert all(seen)


def test_bootstrap_se_matches_sampling_spread():
    """The rescaled half-sample spread estimates the true sampling s.e. of CKA at n (within 35%)."""
    g = np.random.default_rng(9)
    W = g.standard_normal((8, 10))
    draws = []
    for _ in range(60):
        Z = g.standard_normal((300, 8))
        draws.append(alignkit.measure("cka", Z, Z @ W + 2 * g.standard_normal((300, 10))))
    Z = g.standard_normal((300, 8))
    est = bootstrap_ci("cka", Z, Z @ W + 2 * g.standard_normal((300, 10)), n_boot=200).std_error
    assert est == pytest.approx(np.std(draws, ddof=1), rel=0.35)


def test_bootstrap_bad_input(rng):
    X = rng.standard_normal((30, 3))
    with pytest.raises(ValueError, match="level must be in"):
        bootstrap_ci("cka", X, X, level=1.5)
    with pytest.raises(ValueError, match="fraction must be in"):
        bootstrap_ci("cka", X, X, fraction=1.0)
    with pytest.raises(ValueError, match="n_boot must be an integer"):
        bootstrap_ci("cka", X, X, n_boot=1)


# ------------------------------------------------------------------------------------ streaming


@pytest.mark.parametrize("debiased", [False, True])
def test_streaming_equals_one_shot_for_any_split_order_and_merge(rng, debiased):
    X, Y = shared_latent(rng, n=500, dx=12, dy=9)
    X = X + 50.0  # large mean: the reference shift must keep it exact
    target = alignkit.measure("cka", X, Y, debiased=debiased)
    for trial in range(3):
        cuts = np.sort(rng.choice(np.arange(1, 500), size=6, replace=False))
        order = rng.permutation(500)
        parts = np.split(order, cuts)
        workers = [StreamingCKA(debiased=debiased) for _ in range(2)]
        for i, rows in enumerate(parts):
            workers[i % 2].update(X[rows], Y[rows])  # different first batches: different shifts
        merged = workers[0].merge(workers[1])
        assert merged.n == 500
        assert merged.compute() == pytest.approx(target, abs=1e-11), trial


def test_streaming_float32_products_close(rng):
    X, Y = shared_latent(rng, n=600)
    s = StreamingCKA(precision="float32")
    for start in range(0, 600, 128):
        s.update(X[start : start + 128], Y[start : start + 128])
    assert s.compute() == pytest.approx(alignkit.measure("cka", X, Y), abs=1e-5)


def test_streaming_state_round_trip_via_safetensors(rng, tmp_path):
    from safetensors.torch import load_file, save_file

    X, Y = shared_latent(rng, n=100)
    s = StreamingCKA().update(X[:60], Y[:60])
    save_file(s.state_dict(), tmp_path / "state.safetensors")
    restored = StreamingCKA().load_state_dict(load_file(tmp_path / "state.safetensors"))
    restored.update(X[60:], Y[60:])
    assert restored.compute() == pytest.approx(alignkit.measure("cka", X, Y), abs=1e-12)


def test_streaming_errors(rng):
    with pytest.raises(ValueError, match="seen no data"):
        StreamingCKA().compute()
    s = StreamingCKA().update(rng.standard_normal((10, 3)), rng.standard_normal((10, 2)))
    with pytest.raises(ValueError, match="batch widths"):
        s.update(rng.standard_normal((10, 4)), rng.standard_normal((10, 2)))
    with pytest.raises(ValueError, match="at least 4 items"):
        StreamingCKA().update(rng.standard_normal((3, 2)), rng.standard_normal((3, 2))).compute()
    with pytest.raises(ValueError, match="precision"):
        StreamingCKA(precision="float16")


# ------------------------------------------------------------------------------------ streaming: scale


@pytest.mark.parametrize("debiased", [False, True])
@pytest.mark.parametrize(("dtype", "scales"), [(np.float64, (1e-160, 1e160)), (np.float32, (1e-30, 1e30))])
def test_streaming_same_value_at_extreme_scales(rng, debiased, dtype, scales):
    """Rows are divided by a power-of-two unit per side before their products (fourth powers included)."""
    X, Y = shared_latent(rng, n=300, dx=7, dy=5)
    X = X + 20.0
    tol = 1e-11 if dtype == np.float64 else 1e-5
    target = alignkit.measure("cka", X.astype(dtype), Y.astype(dtype), debiased=debiased)
    for s in scales:
        st = StreamingCKA(debiased=debiased)
        for rows in np.array_split(np.arange(300), 5):
            st.update((X[rows] * s).astype(dtype), (Y[rows] / s).astype(dtype))
        assert st.compute() == pytest.approx(target, abs=tol), s


def test_streaming_batches_of_very_different_scales_rescale_the_state(rng):
    """A later batch 1e200 times larger than the first raises the unit: the accumulated moments are rescaled
    exactly (no overflow), and the result equals the one-shot value."""
    X, Y = shared_latent(rng, n=240)
    X[120:] *= 1e200
    target = alignkit.measure("cka", X, Y)
    s = StreamingCKA()
    for rows in np.array_split(np.arange(240), 6):
        s.update(X[rows], Y[rows])
    assert s.log2_x > 600 and np.isfinite(s.compute())
    assert s.compute() == pytest.approx(target, abs=1e-10)


def test_streaming_merge_across_scales_and_state_round_trip(rng):
    X, Y = shared_latent(rng, n=200)
    target = alignkit.measure("cka", X, Y)
    Xs, Ys = X * 1e150 + 1e152, Y * 1e-150  # CKA ignores the translation and the scales
    a = StreamingCKA().update(Xs[:3], Ys[:3])  # a tiny first batch: a small unit, raised by the next one
    a.update(Xs[3:100], Ys[3:100])
    b = StreamingCKA().update(Xs[100:], Ys[100:])  # another shift and unit
    merged = a.merge(b)
    assert merged.n == 200 and merged.compute() == pytest.approx(target, abs=1e-9)
    restored = StreamingCKA().load_state_dict(merged.state_dict())
    assert (restored.log2_x, restored.log2_y) == (merged.log2_x, merged.log2_y)
    assert restored.compute() == merged.compute()


def test_streaming_loads_states_saved_without_units(rng):
    """A state from before the power-of-two units holds unscaled moments: it loads with unit 2^0 and goes on."""
    from alignkit.metrics._moments import LinearMoments

    X, Y = shared_latent(rng, n=200)
    x, y = torch.from_numpy(X[:120]), torch.from_numpy(Y[:120])
    sx, sy = x.mean(0), y.mean(0)
    legacy = {**LinearMoments.of(x - sx, y - sy).state_dict(), "shift_x": sx, "shift_y": sy}
    s = StreamingCKA().load_state_dict(legacy)
    assert (s.log2_x, s.log2_y) == (0, 0)
    s.update(X[120:] * 1e100, Y[120:] * 1e100)  # then a batch at another scale entirely
    ref = np.vstack([X[:120], X[120:] * 1e100]), np.vstack([Y[:120], Y[120:] * 1e100])
    assert s.compute() == pytest.approx(alignkit.measure("cka", *ref), abs=1e-10)
