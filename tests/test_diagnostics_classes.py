"""Class diagnostics (METHODS §3.5–3.6): values against independent references, properties, bad inputs."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from alignkit.degenerate import DegenerateSpaceWarning
from alignkit.diagnostics import describe, diagnose, diagnostic_null, get
from alignkit.diagnostics.classes import (
    AUTO_REG,
    calinski_harabasz,
    fisher_ratio,
    separability_probe,
    thornton,
)

pytest.importorskip("sklearn")


def blobs(rng, n=300, d=6, c=3, sep=2.0):
    y = rng.integers(c, size=n)
    y[:c] = np.arange(c)  # every class present
    centres = rng.normal(size=(c, d)) * sep
    return centres[y] + rng.normal(size=(n, d)), y


def dense_scatter(X, y):
    """Textbook S_W and S_B: one centred product per class."""
    mu = X.mean(axis=0)
    d = X.shape[1]
    sw, sb = np.zeros((d, d)), np.zeros((d, d))
    for c in np.unique(y):
        xc = X[y == c]
        mc = xc.mean(axis=0)
        sw += (xc - mc).T @ (xc - mc)
        sb += len(xc) * np.outer(mc - mu, mc - mu)
    return sw, sb


# ------------------------------------------------------------------------------------- registry


def test_registered_with_honest_metadata():
    for name in ("separability_probe", "fisher_ratio", "thornton", "calinski_harabasz"):
        info = get(name)
        assert info.family == "classes" and info.needs_labels and info.null == "shuffle_labels"
        assert info.higher_is_better is True and info.description and info.cost
    assert get("separability_probe").accepts_groups and not get("fisher_ratio").accepts_groups
    assert describe("fisher_ratio")["defaults"] == {"reg": None}
    assert get("thornton").range == (0.0, 1.0)


def test_parameter_constraints(rng):
    X, y = blobs(rng, n=40)
    with pytest.raises(ValueError, match="folds"):
        separability_probe(X, y, folds=1)
    with pytest.raises(ValueError, match="C"):
        diagnose("separability_probe", X, labels=y, C=0)
    with pytest.raises(ValueError, match="reg"):
        fisher_ratio(X, y, reg=-0.1)
    with pytest.raises(ValueError, match="metric"):
        thornton(X, y, metric="manhattan")


# ------------------------------------------------------------------------------------- Calinski–Harabasz


def test_calinski_harabasz_equals_sklearn(rng):
    from sklearn.metrics import calinski_harabasz_score

    X, y = blobs(rng, n=500, d=7, c=4)
    assert calinski_harabasz(X, y) == pytest.approx(calinski_harabasz_score(X, y), rel=1e-10)
    names = np.array(["cat", "dog", "eel", "fox"])[y]  # any hashable labels
    assert diagnose("calinski_harabasz", X.astype(np.float32), labels=names) == pytest.approx(
        calinski_harabasz_score(X.astype(np.float32), names), rel=1e-5
    )
    far = X + 1e6  # a large common offset does not cancel the variance away
    assert calinski_harabasz(far, y) == pytest.approx(calinski_harabasz_score(X, y), rel=1e-8)


# ------------------------------------------------------------------------------------- Fisher


def test_fisher_j_equals_dense_formula_and_is_affine_invariant(rng):
    X, y = blobs(rng, n=400, d=8, c=4)
    sw, sb = dense_scatter(X, y)
    r = fisher_ratio(X, y)
    assert not r.regularised and r.reg == 0.0 and r.ridge == 0.0 and r.reason == ""
    assert r.value == r.j == pytest.approx(np.trace(np.linalg.solve(sw, sb)), rel=1e-10)
    A = rng.normal(size=(8, 8))  # invertible (almost surely)
    assert fisher_ratio(X @ A + 3.0, y).j == pytest.approx(r.j, rel=1e-8)
    assert fisher_ratio(X * 1e-150, y).j == pytest.approx(r.j, rel=1e-10)  # no underflow


def test_fisher_f1_definition_and_scale_invariance(rng):
    X, y = blobs(rng, n=300, d=5, c=3)
    sw, sb = dense_scatter(X, y)
    ratios = np.diag(sb) / np.diag(sw)
    r = fisher_ratio(X, y)
    np.testing.assert_allclose(r.ratios, ratios, rtol=1e-10)
    assert r.f1 == pytest.approx(ratios.max()) and r.f1_dim == int(ratios.argmax())
    assert r.f1_ho_basu is None
    scaled = fisher_ratio(X * np.array([1e-3, 2.0, 50.0, 1.0, 7.0]), y)
    assert scaled.f1 == pytest.approx(r.f1, rel=1e-10) and scaled.f1_dim == r.f1_dim


def test_fisher_two_classes_ho_basu(rng):
    X, y = blobs(rng, n=200, d=4, c=2)
    a, b = X[y == 0], X[y == 1]
    expected = np.max((a.mean(0) - b.mean(0)) ** 2 / (a.var(0) + b.var(0)))
    assert fisher_ratio(X, y).f1_ho_basu == pytest.approx(expected, rel=1e-10)


def test_fisher_singular_within_scatter_is_regularised_and_recorded(rng):
    X, y = blobs(rng, n=30, d=40, c=3)  # d > n − C: S_W is singular
    r = fisher_ratio(X, y)
    assert r.regularised and r.reg == AUTO_REG and "n − C" in r.reason
    sw, sb = dense_scatter(X, y)
    eps = AUTO_REG * np.trace(sw) / 40
    assert r.ridge == pytest.approx(eps)
    assert r.j == pytest.approx(np.trace(np.linalg.solve(sw + eps * np.eye(40), sb)), rel=1e-8)
    with pytest.raises(ValueError, match=r"singular.*reg=None"):
        fisher_ratio(X, y, reg=0)
    forced = fisher_ratio(X, y, reg=0.1)
    assert forced.regularised and forced.reg == 0.1 and "requested" in forced.reason
    # d < n, but a repeated column: not positive definite or ill-conditioned, regularised and recorded
    Z, z = blobs(rng, n=200, d=5, c=3)
    Z[:, 4] = Z[:, 0]
    r2 = fisher_ratio(Z, z)
    assert r2.regularised and ("conditioned" in r2.reason or "positive definite" in r2.reason)
    assert np.isfinite(r2.j)


def test_fisher_bad_inputs(rng):
    X, y = blobs(rng, n=30)
    single = y.copy()
    single[0] = 7  # a class with one item
    for call in (
        lambda lab: fisher_ratio(X, lab),
        lambda lab: diagnose("fisher_ratio", X, labels=lab),
    ):
        with pytest.raises(ValueError, match="at least 2 items"):
            call(single)
        with pytest.raises(ValueError, match="one label per row"):
            call(y[:-1])
        with pytest.raises(ValueError, match="at least 2 classes"):
            call(np.zeros(30, dtype=int))
    flat = np.repeat(np.eye(3), 4, axis=0)  # every class a single point, repeated
    with pytest.raises(ValueError, match="no within-class variance"):
        fisher_ratio(flat, np.repeat([0, 1, 2], 4))
    bad = X.copy()
    bad[2, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        fisher_ratio(bad, y)
    with pytest.raises(ValueError, match="NaN"):
        diagnose("fisher_ratio", bad, labels=y)
    with pytest.raises(ValueError, match="needs labels"):
        diagnose("fisher_ratio", X)


def test_constant_space_is_nan_with_warning_through_diagnose():
    X = np.ones((20, 3))
    y = np.arange(20) % 2
    with pytest.warns(DegenerateSpaceWarning):
        assert np.isnan(diagnose("fisher_ratio", X, labels=y))
    with pytest.raises(ValueError, match="no within-class variance"):
        calinski_harabasz(X, y)


def test_fisher_null_with_random_labels_is_not_significant(rng):
    X = rng.normal(size=(120, 5))
    y = rng.integers(3, size=120)
    res = diagnostic_null("fisher_ratio", X, labels=y, n_perm=49, seed=1)
    assert res.p_value > 0.05
    X2, y2 = blobs(rng, n=120, d=5, c=3)
    assert diagnostic_null("fisher_ratio", X2, labels=y2, n_perm=49, seed=1).p_value <= 0.02


def test_fisher_by_id_and_torch_input(rng):
    torch = pytest.importorskip("torch")
    X, y = blobs(rng, n=100, d=4)
    r = diagnose("fisher_ratio?reg=0.01", torch.from_numpy(X), labels=torch.from_numpy(y))
    assert r.regularised and r.reg == 0.01
    row = r.as_dict()
    assert row["value"] == r.j and row["ratios"] == pytest.approx(r.ratios.tolist())  # short arrays as lists


# ------------------------------------------------------------------------------------- Thornton


def brute_thornton(X, y, metric="euclidean"):
    from scipy.spatial.distance import cdist

    D = cdist(X, X, "euclidean" if metric == "euclidean" else "cosine")
    np.fill_diagonal(D, np.inf)
    return float(np.mean(y[D.argmin(axis=1)] == y))


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_thornton_equals_brute_force(rng, metric):
    X, y = blobs(rng, n=250, d=5, c=3, sep=1.0)
    r = thornton(X, y, metric=metric)
    assert r.value == pytest.approx(brute_thornton(X, y, metric))
    counts = np.bincount(y)
    assert r.chance == pytest.approx(np.sum(counts * (counts - 1)) / (250 * 249))
    assert diagnose("thornton", X, labels=y, metric=metric).value == r.value


def test_thornton_duplicate_is_nearest_neighbour(rng):
    X = rng.normal(size=(20, 3))
    X = np.vstack([X, X])  # every row has an exact duplicate: its 1-NN
    y = np.tile(np.arange(20) % 2, 2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert thornton(X, y).value == 1.0
        flipped = np.concatenate([y[:20], 1 - y[:20]])
        assert thornton(X, flipped).value == 0.0


# ------------------------------------------------------------------------------------- probe


def test_probe_separable_and_chance(rng):
    X, y = blobs(rng, n=240, d=6, c=3, sep=4.0)
    r = separability_probe(X, y, folds=4)
    assert r.value == r.accuracy > 0.9 and r.auroc > 0.95
    assert r.fold_accuracy.shape == r.fold_auroc.shape == (4,) and r.auroc_folds == 4
    assert r.accuracy == pytest.approx(r.fold_accuracy.mean())
    assert r.chance == pytest.approx(np.bincount(y).max() / 240)
    # one implementation with the evaluation protocol
    from alignkit.evaluate import linear_probe

    rows = linear_probe(X, y, n_folds=4, seed=0)
    assert next(row["value"] for row in rows if row["metric"] == "accuracy") == pytest.approx(r.accuracy)
    noise = separability_probe(rng.normal(size=(200, 4)), rng.integers(2, size=200), folds=4)
    assert 0.25 < noise.auroc < 0.75 and 0.3 < noise.accuracy < 0.7


def test_probe_binary_auroc_matches_sklearn(rng):
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X, y = blobs(rng, n=150, d=4, c=2, sep=0.7)
    r = separability_probe(X, y, folds=3, seed=5)
    expected = []
    for tr, te in StratifiedKFold(3, shuffle=True, random_state=5).split(X, y):
        m = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=1000)).fit(X[tr], y[tr])
        expected.append(roc_auc_score(y[te], m.predict_proba(X[te])[:, 1]))
    np.testing.assert_allclose(r.fold_auroc, expected)


def test_probe_groups_prevent_leakage(rng):
    # 60 groups of 5 identical items with a random label per group: without groups, copies of each test item
    # sit in the training folds and a flexible probe memorises them; with groups, accuracy falls to chance
    n_groups, d = 60, 80
    base = rng.normal(size=(n_groups, d))
    X = np.repeat(base, 5, axis=0)
    y = np.repeat(rng.permutation(np.arange(n_groups) % 2), 5)
    g = np.repeat(np.arange(n_groups), 5)
    leaky = separability_probe(X, y, C=100.0)
    grouped = diagnose("separability_probe", X, labels=y, groups=g, C=100.0)
    assert leaky.accuracy > 0.9 and not leaky.grouped
    assert grouped.grouped and grouped.accuracy < 0.75


def test_probe_bad_inputs(rng):
    X, y = blobs(rng, n=30)
    few = y.copy()
    few[:3] = [5, 5, 5]  # a class of 3 items < 5 folds
    for call in (
        lambda lab, **kw: separability_probe(X, lab, **kw),
        lambda lab, **kw: diagnose("separability_probe", X, labels=lab, **kw),
    ):
        with pytest.raises(ValueError, match=r"5 \(3 items\).*folds=3 or fewer"):
            call(few)
        one = y.copy()
        one[0] = 9
        with pytest.raises(ValueError, match="drop or merge"):
            call(one, folds=2)
        with pytest.raises(ValueError, match="at least 2 classes"):
            call(np.zeros(30))
        with pytest.raises(ValueError, match="one label per row"):
            call(y[:10])
    with pytest.raises(ValueError, match="groups"):
        separability_probe(X, y, groups=np.arange(30) % 3)  # 3 groups < 5 folds
    with pytest.raises(TypeError, match="takes no groups"):
        diagnose("fisher_ratio", X, labels=y, groups=np.arange(30))
