"""Layer × layer atlas: every cell equals the direct measure; the max-statistic null is honest."""

import numpy as np
import pytest

import alignkit
from alignkit.atlas import k_from_rule
from alignkit.stats import permutations
from dense_reference import shared_latent


def _embed(rng, Z, d, noise):
    """An isometric embedding of the latent plus noise: neighbourhoods degrade with the noise only."""
    Q, _ = np.linalg.qr(rng.standard_normal((d, Z.shape[1])))
    return Z @ Q.T + noise * rng.standard_normal((Z.shape[0], d))


def _layers(rng, n=120):
    Z = rng.standard_normal((n, 6))
    A = {f"a{i}": _embed(rng, Z, 10 + i, s) for i, s in enumerate((0.1, 0.6, 1.5))}
    B = [_embed(rng, Z, 8, s) for s in (1.5, 0.1)]
    return A, B


@pytest.mark.parametrize("metric", ["mutual_knn", "cycle_knn", "cknna", "cka", "cka?debiased=false", "procrustes"])
def test_cells_equal_direct_measure(rng, metric):
    A, B = _layers(rng)
    res = alignkit.atlas(A, B, metric, k=None)
    assert res.scores.shape == (3, 2) and res.names_a == ["a0", "a1", "a2"] and res.names_b == ["0", "1"]
    for i, a in enumerate(A.values()):
        for j, b in enumerate(B):
            assert res.scores[i, j] == pytest.approx(alignkit.measure(metric, a, b), abs=1e-10)


def test_best_pair_and_rows(rng):
    A, B = _layers(rng)
    res = alignkit.atlas(A, B, "mutual_knn", k=8)
    assert res.best[:2] == ("a0", "1")  # least noisy layers
    assert res.best[2] == res.scores.max()
    rows = res.to_rows()
    assert len(rows) == 6 and {"layer_a", "layer_b", "score", "measure"} <= set(rows[0])
    assert res.to_pandas().shape[0] == 6


def test_max_statistic_null_matches_brute_force(rng):
    A, B = _layers(rng, n=80)
    res = alignkit.atlas(A, B, "mutual_knn", k=5, n_perm=5, seed=3)
    for d, perm in enumerate(permutations(80, 5, 3)):
        for i, a in enumerate(A.values()):
            for j, b in enumerate(B):
                assert res.null[d, i, j] == pytest.approx(alignkit.measure("mutual_knn?k=5", a, b[perm.numpy()]))
    assert np.all(res.max_null >= res.null.reshape(5, -1).max(axis=1) - 1e-15)
    assert np.all(res.p_values_fwer >= res.p_values)


def test_selection_inflation_is_visible():
    """Independent layers: the best of 16 pairs looks better than one pair's null, but is not significant
    against the max-null; its uncorrected p-value is the smallest of all cells."""
    g = np.random.default_rng(5)
    A = [g.standard_normal((100, 5)) for _ in range(4)]
    B = [g.standard_normal((100, 5)) for _ in range(4)]
    res = alignkit.atlas(A, B, "cka", n_perm=99, seed=1)
    assert res.best[2] > np.mean(res.null)  # the max is inflated over the typical null value
    assert res.best_p_value > 0.05
    assert res.best_p_value >= res.p_values.min()
    assert abs(res.best_adjusted) < 0.1


def test_k_rules():
    assert k_from_rule("rice", 5000) == 35  # STRUCTURE's value at n = 5000
    assert k_from_rule("sqrt", 100) == 10 and k_from_rule("sturges", 1024) == 11 and k_from_rule(7, 10) == 7
    with pytest.raises(ValueError, match="'rice'"):
        k_from_rule("scott", 100)


def test_sample_and_preprocess(rng):
    A, B = _layers(rng, n=200)
    res = alignkit.atlas(A, B, "mutual_knn", k="rice", sample=100, seed=2, clip_quantile=0.95)
    assert res.params["k"] == k_from_rule("rice", 100) and res.params["clip_quantile"] == 0.95


def test_distance_measures_pick_minimum(rng):
    A, B = _layers(rng)
    res = alignkit.atlas(A, B, "shape_distance")
    assert not res.higher_is_better
    assert res.best[2] == pytest.approx(res.scores.min())


def test_atlas_bad_input(rng):
    X, Y = shared_latent(rng, n=50)
    with pytest.raises(ValueError, match="same items"):
        alignkit.atlas([X], [Y[:40]])
    with pytest.raises(ValueError, match="holds no layers"):
        alignkit.atlas([], [Y])
    with pytest.raises(TypeError, match="dict of name"):
        alignkit.atlas(X, [Y])
    with pytest.raises(ValueError, match="NaN"):
        alignkit.atlas({"bad": np.full((50, 3), np.nan)}, [Y])


@pytest.mark.parametrize("flip", [False, True])
@pytest.mark.parametrize("metric", ["cka", "cka?debiased=false", "hsic"])
def test_stacked_gram_null_matches_brute_force(rng, flip, metric):
    """Linear CKA/HSIC nulls use stacked Grams (permuting the side with fewer layers): same numbers."""
    A, B = _layers(rng, n=60)
    if flip:
        A, B = dict(enumerate(B)), list(A.values())
    res = alignkit.atlas(A, B, metric, n_perm=3, seed=4)
    for d, perm in enumerate(permutations(60, 3, 4)):
        for i, a in enumerate(A.values()):
            for j, b in enumerate(B):
                assert res.null[d, i, j] == pytest.approx(alignkit.measure(metric, a, b[perm.numpy()]), abs=1e-10)


def test_select_layers_best_and_last(rng):
    A, B = _layers(rng, n=150)
    a, b, res = alignkit.select_layers(A, B, sample=100, seed=1)
    assert (a, b) == res.best[:2] and res.params["k"] == k_from_rule("rice", 100)
    assert alignkit.select_layers(A, B, mode="last", sample=None)[:2] == ("a2", "1")
    a2, b2, res2 = alignkit.select_layers(A, B, measure="cka", sample=None, n_perm=9)
    assert (a2, b2) == res2.best[:2] and res2.best_p_value is not None
    with pytest.raises(ValueError, match="mode must be"):
        alignkit.select_layers(A, B, mode="first")
