"""The diagnostics registry and its entry points: registration rules, one validation, CIs, nulls, profiles.

The diagnostics registered here are test-local (removed afterwards), so these tests pin the contract,
not any one diagnostic's maths.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import alignkit
from alignkit.degenerate import DegenerateSpaceError
from alignkit.diagnostics import (
    DIAGNOSTICS,
    DiagnosticResult,
    describe,
    diagnose,
    diagnostic_ci,
    diagnostic_null,
    diagnostic_spec,
    profile,
    register,
)
from alignkit.diagnostics._inputs import check_groups, check_labels


def _unit(a):
    a = np.asarray(a, dtype=float)
    return a / np.linalg.norm(a, axis=1, keepdims=True)


@pytest.fixture
def registered():
    """Three test diagnostics: a pair one with a pairs null, a label one with a labels null, a raising one."""
    added = []

    @register(
        "t_paired_cos",
        family="pair",
        inputs=("X", "Y"),
        range=(-1.0, 1.0),
        higher_is_better=True,
        cost="O(nd)",
        description="mean cosine of partners (test)",
        null="shuffle_pairs",
        constraints={"power": {"low": 1}},
    )
    def paired_cos(X, Y, *, power: int = 1) -> float:
        return float(((_unit(X) * _unit(Y)).sum(1) ** power).mean())

    from dataclasses import dataclass

    @dataclass(frozen=True)
    class Spread(DiagnosticResult):
        between: float
        within: float
        counts: np.ndarray

        @property
        def value(self) -> float:
            return self.between / (self.between + self.within)

    @register(
        "t_class_spread",
        family="classes",
        inputs=("X",),
        range=(0.0, 1.0),
        higher_is_better=True,
        cost="O(nd)",
        description="share of variance between class means (test)",
        null="shuffle_labels",
    )
    def class_spread(X, labels, *, groups=None) -> Spread:
        X = np.asarray(X, dtype=float)
        codes, _ = check_labels(labels, X.shape[0])
        mu = X.mean(0)
        means = np.stack([X[codes == c].mean(0) for c in range(codes.max() + 1)])
        counts = np.bincount(codes)
        between = float((counts[:, None] * (means - mu) ** 2).sum())
        within = float(((X - means[codes]) ** 2).sum())
        return Spread(between, within, counts)

    @register(
        "t_strict",
        family="space",
        inputs=("X",),
        cost="O(nd)",
        description="raises on a degenerate space (test)",
        degenerate="raise",
        resample=False,
    )
    def strict(X) -> float:
        return float(np.asarray(X).std())

    added += ["t_paired_cos", "t_class_spread", "t_strict"]
    yield {"t_paired_cos": paired_cos, "t_class_spread": class_spread, "t_strict": strict}
    for name in added:
        DIAGNOSTICS.remove(name)


def test_diagnose_is_reachable_from_the_package(registered, rng):
    X = rng.standard_normal((50, 4))
    assert alignkit.diagnose("t_paired_cos", X, X) == pytest.approx(1.0)
    assert alignkit.diagnostics.diagnose is diagnose


def test_ids_keywords_and_precedence(registered, rng):
    X, Y = rng.standard_normal((60, 5)), rng.standard_normal((60, 5))
    two = diagnose("t_paired_cos", X, Y, power=2)
    assert diagnose("t_paired_cos?power=2", X, Y) == two
    assert diagnose("t_paired_cos?power=3", X, Y, power=2) == two  # keyword overrides the id
    assert diagnostic_spec("t_paired_cos?power=3", power=2).id == "t_paired_cos?power=2"


def test_bad_parameters_and_inputs_name_the_problem(registered, rng):
    X = rng.standard_normal((40, 3))
    with pytest.raises(ValueError, match="power must be"):
        diagnose("t_paired_cos", X, X, power=0)
    with pytest.raises(ValueError, match=r"unknown parameter.*'pwer' \(did you mean 'power'\?\)"):
        diagnose("t_paired_cos", X, X, pwer=2)
    with pytest.raises(ValueError, match=r"(?i)did you mean 't_paired_cos'"):
        diagnose("t_paired_co", X, X)
    with pytest.raises(TypeError, match="takes 2 array"):
        diagnose("t_paired_cos", X)
    with pytest.raises(ValueError, match="row-paired"):
        diagnose("t_paired_cos", X, X[:30])
    with pytest.raises(ValueError, match="NaN or Inf"):
        diagnose("t_paired_cos", np.where(X > 2, np.nan, X), X)
    with pytest.raises(ValueError, match="needs labels="):
        diagnose("t_class_spread", X)
    with pytest.raises(TypeError, match="takes no labels"):
        diagnose("t_paired_cos", X, X, labels=np.zeros(40))
    with pytest.raises(ValueError, match="one label per row: got 39 labels for 40 rows"):
        diagnose("t_class_spread", X, labels=np.zeros(39))
    with pytest.raises(ValueError, match="at least 2 classes"):
        diagnose("t_class_spread", X, labels=np.zeros(40))
    # the registered function validates its parameters when called directly, too
    with pytest.raises(ValueError, match="power must be"):
        registered["t_paired_cos"](X, X, power=0)


def test_registration_rules():
    def f(X, *, t: float = 1.0) -> float:
        return 0.0

    with pytest.raises(ValueError, match="family must be one of"):
        register("t_bad", family="nope", cost="", description="")(f)
    with pytest.raises(ValueError, match="null must be one of"):
        register("t_bad", family="space", cost="", description="", null="shuffle")(f)
    with pytest.raises(ValueError, match="labels null needs a 'labels' parameter"):
        register("t_bad", family="space", cost="", description="", null="shuffle_labels")(f)
    with pytest.raises(ValueError, match="pairs null needs two"):
        register("t_bad", family="space", cost="", description="", null="shuffle_pairs")(f)
    with pytest.raises(ValueError, match="no parameter"):
        register("t_bad", family="space", cost="", description="", constraints={"s": {"low": 0}})(f)
    assert "t_bad" not in DIAGNOSTICS


def test_duplicate_registration_is_an_error_unless_replace(registered):
    def other(X, Y) -> float:
        return 1.0

    with pytest.raises(ValueError, match="already registered"):
        register("t_paired_cos", family="pair", inputs=("X", "Y"), cost="", description="")(other)


def test_describe_metadata(registered):
    d = describe("t_class_spread")
    assert d["inputs"] == ["X", "labels"] and d["null"] == "shuffle_labels" and d["family"] == "classes"
    assert d["params"] == []  # labels and groups are inputs, not parameters
    assert describe("t_paired_cos")["params"][0]["name"] == "power"
    assert any(e["name"] == "t_strict" for e in describe())


def test_result_objects_are_tidy_rows(registered, rng):
    X = rng.standard_normal((90, 4))
    labels = np.repeat([0, 1, 2], 30)
    res = diagnose("t_class_spread", X + 3 * labels[:, None], labels=labels)
    row = res.as_dict()
    assert row["value"] == pytest.approx(res.value) and row["counts"] == [30, 30, 30]  # short arrays as lists
    assert set(row) == {"value", "between", "within", "counts"}
    assert res.value > 0.8


def test_degenerate_policy(registered, rng):
    X = rng.standard_normal((30, 3))
    const = np.ones((30, 3))
    with pytest.warns(alignkit.degenerate.DegenerateSpaceWarning, match="degenerate"):
        assert np.isnan(diagnose("t_paired_cos", const, X))
    with pytest.raises(DegenerateSpaceError, match="t_strict"):
        diagnose("t_strict", const)


def test_ci_covers_and_shrinks_with_n(registered, rng):
    def sample(n):
        X = rng.standard_normal((n, 8))
        return X, X + 1.0 * rng.standard_normal((n, 8))

    small = diagnostic_ci("t_paired_cos", *sample(200), n_boot=60, seed=1)
    large = diagnostic_ci("t_paired_cos", *sample(3200), n_boot=60, seed=1)
    assert small.low < small.score < small.high
    assert (large.high - large.low) < 0.5 * (small.high - small.low)  # ~ 1/sqrt(n): 4x fewer width at 16x n
    assert small.measure == "t_paired_cos"
    again = diagnostic_ci("t_paired_cos", *sample(200), n_boot=10, seed=1)
    assert again.n_boot == 10
    with pytest.raises(ValueError, match="rows are not items"):
        diagnostic_ci("t_strict", rng.standard_normal((20, 2)), n_boot=5)
    with pytest.raises(ValueError, match="n_boot must be an integer >= 2"):
        diagnostic_ci("t_paired_cos", *sample(50), n_boot=1)


def test_ci_with_groups_draws_whole_groups(registered, rng):
    X = rng.standard_normal((120, 4))
    labels = np.tile([0, 1, 2], 40)
    groups = np.repeat(np.arange(30), 4)
    res = diagnostic_ci("t_class_spread", X, labels=labels, groups=groups, n_boot=20, seed=0)
    assert res.m == 60  # half of the 30 groups, 4 items each
    assert np.isfinite(res.low) and res.low <= res.score <= res.high


def test_null_pairs_and_labels(registered, rng):
    X = rng.standard_normal((150, 6))
    paired = diagnostic_null("t_paired_cos", X, X + 0.5 * rng.standard_normal(X.shape), n_perm=99, seed=0)
    indep = diagnostic_null("t_paired_cos", X, rng.standard_normal(X.shape), n_perm=99, seed=0)
    assert paired.p_value == pytest.approx(0.01) and indep.p_value > 0.05
    assert abs(paired.null_mean) < 0.05  # shuffled partners: mean cosine ≈ 0
    labels = np.repeat([0, 1, 2], 50)
    sep = diagnostic_null("t_class_spread", X + 2 * labels[:, None], labels=labels, n_perm=49)
    rand = diagnostic_null("t_class_spread", X, labels=labels, n_perm=49)
    assert sep.p_value == pytest.approx(0.02) and rand.p_value > 0.05
    with pytest.raises(ValueError, match="declares no permutation null"):
        diagnostic_null("t_strict", X, n_perm=5)


def test_null_within_groups_keeps_groups_fixed(registered, rng):
    """Permuting within groups: a label that is constant within each group never moves."""
    X = rng.standard_normal((60, 3))
    groups = np.repeat(np.arange(6), 10)
    labels = groups % 2  # constant within a group
    res = diagnostic_null("t_class_spread", X, labels=labels, groups=groups, n_perm=10)
    assert np.allclose(res.null, res.score)


def test_profile_over_layers(registered, rng):
    Y = rng.standard_normal((80, 5))
    layers = {"l0": rng.standard_normal((80, 5)), "l1": Y + 0.1 * rng.standard_normal((80, 5)), "l2": np.zeros((80, 5))}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prof = profile("t_paired_cos", layers, Y)
    vals = prof.values()
    assert list(vals) == ["l0", "l1", "l2"] and vals["l1"] > 0.9 > abs(vals["l0"]) and np.isnan(vals["l2"])
    assert [r["degenerate"] for r in prof.rows] == [False, False, True]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ci = profile("t_paired_cos", [layers["l0"], layers["l1"]], Y, n_boot=20)
    assert [r["layer"] for r in ci.rows] == ["0", "1"] and all(
        r["ci_low"] <= r["value"] <= r["ci_high"] for r in ci.rows
    )
    assert list(prof.to_pandas().columns[:3]) == ["diagnostic", "layer", "value"]


def test_check_helpers():
    codes, classes = check_labels(np.array(["b", "a", "b"]), 3)
    assert codes.tolist() == [1, 0, 1] and classes.tolist() == ["a", "b"]
    with pytest.raises(ValueError, match="at least 2 items; too few in 'a' \\(1\\)"):
        check_labels(["a", "b", "b"], 3, min_per_class=2)
    with pytest.raises(ValueError, match="contain NaN"):
        check_labels(np.array([0.0, np.nan, 1.0]), 3)
    with pytest.raises(ValueError, match="one group per row"):
        check_groups([1, 2], 3)
    assert check_groups(None, 3) is None
