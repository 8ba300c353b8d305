"""The Dynamic Reflections scaling law: exact recovery, intervals that cover the truth, R², predict, bad input."""

import numpy as np
import pytest
from scipy.optimize import curve_fit

from alignkit.stats.scaling import fit_scaling_law

# Zhu et al. (Dynamic Reflections, ICLR 2026) report these fits: VideoMAEv2 and DINOv2 (METHODS §7)
VIDEOMAE = {"S_inf": 0.41, "C_f": 0.15, "alpha": 0.75, "C_c": 0.13, "beta": 1.30}
DINOV2 = {"S_inf": 0.37, "C_f": 0.05, "alpha": 1.76, "C_c": 0.13, "beta": 1.40}


def grid(frames=(1, 2, 4, 8, 16, 32), captions=(1, 2, 3, 5, 10)):
    nf, nc = np.meshgrid(frames, captions, indexing="ij")
    return nf.ravel().astype(float), nc.ravel().astype(float)


def law2(p, nf, nc):
    return p["S_inf"] - (p["C_f"] * nf ** -p["alpha"] + p["C_c"] * nc ** -p["beta"])


@pytest.mark.parametrize("truth", [VIDEOMAE, DINOV2])
def test_noiseless_two_variable_grid_recovered_to_1e6(truth):
    nf, nc = grid()
    res = fit_scaling_law(law2(truth, nf, nc), nf, nc, n_boot=0)
    for name, value in truth.items():
        assert res.params[name] == pytest.approx(value, abs=1e-6), name
    assert res.r2 == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize(
    ("direction", "s_inf", "c", "alpha"),
    [("increasing", 0.5, 0.3, 0.5), ("decreasing", 0.02, 2.5, 0.45), ("increasing", -1.0, 40.0, 1.8)],
)
def test_noiseless_one_variable_recovered(direction, s_inf, c, alpha):
    n = np.array([1000, 2000, 4000, 8000, 16000, 31000], dtype=float)
    sign = 1 if direction == "increasing" else -1
    y = s_inf - sign * c * n**-alpha
    res = fit_scaling_law(y, n, direction=direction, n_boot=0)
    assert res.params == pytest.approx({"S_inf": s_inf, "C": c, "alpha": alpha}, abs=1e-6)
    np.testing.assert_allclose(res.predict(n), y, atol=1e-12)


def test_s_inf_range_keeps_the_asymptote_inside_and_recovers_interior_values():
    n = np.array([1000, 2000, 4000, 8000, 16000, 31000], dtype=float)
    y = 0.02 + 2.5 * n**-0.45
    res = fit_scaling_law(y, n, direction="decreasing", n_boot=0, s_inf_range=(0.0, 1.0))
    assert res.params == pytest.approx({"S_inf": 0.02, "C": 2.5, "alpha": 0.45}, abs=1e-6)
    # a fall that is linear in log n: unbounded, the law runs off to α → 0, S_∞ → −∞; bounded, S_∞ stays in [0, 1]
    loglin = 0.7 - 0.03 * np.log(n)
    free = fit_scaling_law(loglin, n, direction="decreasing", n_boot=0)
    kept = fit_scaling_law(loglin, n, direction="decreasing", n_boot=20, s_inf_range=(0.0, 1.0), resample="cells")
    assert free.params["S_inf"] < -1 and free.params["alpha"] < 0.05
    assert 0.0 <= kept.params["S_inf"] <= min(loglin) and 0.0 <= kept.ci["S_inf"][0] <= kept.ci["S_inf"][1] <= 1.0
    assert kept.as_dict()["s_inf_range"] == [0.0, 1.0]
    with pytest.raises(ValueError, match="s_inf_range"):
        fit_scaling_law(y, n, s_inf_range=(1.0, 0.0))
    with pytest.raises(ValueError, match="s_inf_range"):
        fit_scaling_law(y, n, s_inf_range="0,1")


def test_noisy_grid_intervals_cover_the_truth():
    nf, nc = grid()
    rng = np.random.default_rng(3)
    y = law2(VIDEOMAE, nf, nc) + rng.normal(0, 0.004, size=nf.size)
    for resample in ("residuals", "cells"):
        res = fit_scaling_law(y, nf, nc, n_boot=200, resample=resample, seed=1)
        for name, value in VIDEOMAE.items():
            lo, hi = res.ci[name]
            assert lo <= res.params[name] <= hi and lo <= value <= hi, (resample, name, lo, value, hi)
        assert res.samples.shape == (200 - res.n_failed, 5) and res.n_failed < 10


def test_fit_is_least_squares_r2_and_predict_by_hand():
    """The fitted parameters reach at least the least-squares optimum scipy's bounded curve_fit finds, R² and
    predict follow their formulas, and the law increases in both arguments (METHODS §7)."""
    nf, nc = grid()
    rng = np.random.default_rng(5)
    y = law2(DINOV2, nf, nc) + rng.normal(0, 0.01, size=nf.size)
    res = fit_scaling_law(y, nf, nc, n_boot=0)

    def f(x, s, cf, a, cc, b):
        return s - (cf * x[0] ** -a + cc * x[1] ** -b)

    ref, _ = curve_fit(f, np.stack([nf, nc]), y, p0=[0.4, 0.1, 1, 0.1, 1], bounds=([-np.inf, 0, 0, 0, 0], np.inf))
    sse_ref = float(np.sum((f(np.stack([nf, nc]), *ref) - y) ** 2))
    fitted = law2(res.params, nf, nc)
    sse = float(np.sum((fitted - y) ** 2))
    assert sse <= sse_ref * (1 + 1e-9)
    assert res.r2 == pytest.approx(1 - sse / np.sum((y - y.mean()) ** 2), abs=1e-12)
    np.testing.assert_allclose(res.predict(nf, nc), fitted, atol=1e-12)
    np.testing.assert_allclose(res.residuals, y - fitted, atol=1e-12)
    assert np.all(np.diff(res.predict(np.arange(1, 50), 3)) > 0)
    assert np.all(np.diff(res.predict(4, np.arange(1, 50))) > 0)
    row = res.as_dict()
    assert {"S_inf", "S_inf_low", "beta_high", "r2"} <= set(row) and "score = " in str(res)


def test_repeated_points_and_seed_determinism():
    n = np.repeat([1000.0, 2000, 4000, 8000, 16000], 4)
    rng = np.random.default_rng(0)
    y = 0.1 + 0.8 * n**-0.3 + rng.normal(0, 0.002, size=n.size)
    a = fit_scaling_law(y, n, direction="decreasing", n_boot=50, resample="cells", seed=2)
    b = fit_scaling_law(y, n, direction="decreasing", n_boot=50, resample="cells", seed=2)
    assert a.ci == b.ci and a.params == b.params


def test_bad_input_names_the_argument():
    nf, nc = grid()
    y = law2(VIDEOMAE, nf, nc)
    with pytest.raises(ValueError, match="n_c must take at least 3 distinct"):
        fit_scaling_law(y, nf, np.where(nc > 2, 3.0, 1.0))
    with pytest.raises(ValueError, match="n_f must take at least 3 distinct"):
        fit_scaling_law(y, np.where(nf > 4, 8.0, 1.0), nc)
    with pytest.raises(ValueError, match="n must take at least 3 distinct"):
        fit_scaling_law([0.1, 0.2, 0.3, 0.35], [1, 2, 2, 1])
    with pytest.raises(ValueError, match="n_f must be positive"):
        fit_scaling_law(y, np.where(nf == 1, 0.0, nf), nc)
    with pytest.raises(ValueError, match="n must be positive"):
        fit_scaling_law([0.1, 0.2, 0.3], [-1, 2, 3])
    with pytest.raises(ValueError, match="score contains 5 NaN"):
        fit_scaling_law(np.where(nf == 1, np.nan, y), nf, nc)
    with pytest.raises(ValueError, match="n_c must have one value per score"):
        fit_scaling_law(y, nf, nc[:-1])
    with pytest.raises(ValueError, match="n must have one value per score"):
        fit_scaling_law([0.1, 0.2, 0.3], [1, 2, 3, 4])
    with pytest.raises(ValueError, match="direction"):
        fit_scaling_law(y, nf, nc, direction="up")
    with pytest.raises(ValueError, match="resample"):
        fit_scaling_law(y, nf, nc, resample="items")
    with pytest.raises(ValueError, match="n_boot"):
        fit_scaling_law(y, nf, nc, n_boot=-1)
    res = fit_scaling_law(y, nf, nc, n_boot=0)
    with pytest.raises(ValueError, match="n_c is required"):
        res.predict(4)
    one = fit_scaling_law([0.1, 0.2, 0.25, 0.27], [1, 2, 4, 8], n_boot=0)
    with pytest.raises(ValueError, match="one variable"):
        one.predict(4, 2)


@pytest.mark.slow
def test_interval_coverage_near_nominal():
    """Over 40 noisy grids the 90 % residual-bootstrap intervals cover each true parameter about 90 % of the
    time (accepting 75 %: percentile intervals of a nonlinear fit on 30 points are approximate)."""
    nf, nc = grid()
    hits = dict.fromkeys(VIDEOMAE, 0)
    for rep in range(40):
        y = law2(VIDEOMAE, nf, nc) + np.random.default_rng(100 + rep).normal(0, 0.004, size=nf.size)
        res = fit_scaling_law(y, nf, nc, n_boot=200, level=0.9, seed=rep)
        for name, value in VIDEOMAE.items():
            lo, hi = res.ci[name]
            hits[name] += lo <= value <= hi
    assert all(h / 40 >= 0.75 for h in hits.values()), hits
