"""Hostile inputs against every registered measure, aligner and evaluation: never a number that reads as alignment.

The policy (alignkit.degenerate): a constant (or all-zero) space gives NaN and a DegenerateSpaceWarning from a
measure, a DegenerateSpaceError from an aligner, chance and a warning from an evaluation; NaN/Inf is a clear
ValueError; duplicated rows are reported to neighbourhood measures; a collapsed (rank ≤ 1) space is reported;
too few items is a clear error or NaN; d ≫ n independent spaces never look significant without a warning.
New registrations are covered automatically. Scale invariance (×1e±30 …) is tests/test_scale_safety.py.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import alignkit
from alignkit import metrics
from alignkit.align import ALIGNERS
from alignkit.degenerate import DegenerateSpaceError, DegenerateSpaceWarning, DuplicateRowsWarning
from alignkit.evaluate import bli, retrieval, translation, zero_shot

MEASURES = metrics.names()
ALIGNER_NAMES = [e.name for e in ALIGNERS if e.views == 2 and e.paired]  # n-way, unpaired: their own tests
FAST = {"head": {"head": "linear", "d_out": 4, "epochs": 2, "batch_size": 16, "progress": False}}


def _pair(n: int = 120, d: int = 6, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    g = np.random.default_rng(seed)
    X = g.standard_normal((n, d))
    return X, X[:, ::-1] @ g.standard_normal((d, d)) + 0.5 * g.standard_normal((n, d))


def _small(name: str) -> dict:
    """Settings that make a measure defined on small inputs (k below n, folds within n)."""
    return {"k": 5} if "k" in metrics.get(name).own else {}


# --------------------------------------------------------------------------------------------- measures


@pytest.mark.parametrize("name", MEASURES)
@pytest.mark.parametrize("kind", ["constant", "zeros"])
@pytest.mark.parametrize("side", ["X", "Y"])
def test_constant_space_is_nan_with_a_warning(name, kind, side):
    X, Y = _pair()
    bad = np.ones_like(X) * 3.0 if kind == "constant" else np.zeros_like(X)
    args = (bad, Y) if side == "X" else (X, bad[:, : Y.shape[1]])
    with pytest.warns(DegenerateSpaceWarning, match=f"{side} is degenerate"):
        assert np.isnan(alignkit.measure(name, *args, **_small(name)))
    with pytest.warns(DegenerateSpaceWarning):
        res = alignkit.permutation_test(name, *args, n_perm=9, **_small(name))
    assert np.isnan(res.score) and np.isnan(res.p_value)  # a NaN is never significant


@pytest.mark.parametrize("name", MEASURES)
def test_nan_input_is_a_clear_error(name):
    X, Y = _pair()
    X[5, 2] = np.nan
    with pytest.raises(ValueError, match="X contains 1 NaN or Inf"):
        alignkit.measure(name, X, Y, **_small(name))


@pytest.mark.parametrize("name", MEASURES)
def test_duplicated_rows_are_reported_to_neighbourhood_measures(name):
    X, Y = _pair(n=60)
    X2, Y2 = np.vstack([X, X]), np.vstack([Y, Y])
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        value = alignkit.measure(name, X2, Y2, **_small(name))
    duplicate_warned = any(issubclass(w.category, DuplicateRowsWarning) for w in seen)
    assert duplicate_warned == metrics.get(name).duplicate_sensitive
    assert np.isfinite(value)
    if metrics.get(name).duplicate_sensitive:  # the fraction travels with the score and its null
        with pytest.warns(DuplicateRowsWarning):
            d = alignkit.permutation_test(name, X2, Y2, n_perm=5, **_small(name)).as_dict()
        assert d["duplicate_fraction_X"] == d["duplicate_fraction_Y"] == 0.5


@pytest.mark.parametrize("name", MEASURES)
def test_collapsed_space_is_reported(name):
    X, Y = _pair()
    t = np.linspace(-1, 2, len(X))
    t[np.abs(t) < 1e-9] = 0.5
    # a line; through the origin for measures that see unit rows (then it collapses to two antipodal points)
    offset = 0.0 if metrics.get(name).view is not None else 0.5
    line = np.outer(t, np.arange(1.0, X.shape[1] + 1)) + offset
    with pytest.warns(DegenerateSpaceWarning, match="rank ≤ 1"):
        alignkit.measure(name, line, Y, **_small(name))


@pytest.mark.parametrize("name", MEASURES)
def test_two_items_never_read_as_aligned(name):
    """At n = 2 a measure raises, returns NaN or warns, or at least is not at its best for independent data
    (biased CKA was exactly 1.0 for any data)."""
    values = []
    for seed in range(6):
        g = np.random.default_rng(seed)
        X, Y = g.standard_normal((2, 5)), g.standard_normal((2, 4))
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            try:
                value = alignkit.measure(name, X, Y)
            except ValueError:
                return  # a clear error (too few items, k ≥ n, ...)
        if np.isnan(value) or any(issubclass(w.category, UserWarning) for w in seen):
            return
        values.append(value)
    assert any(v != pytest.approx(metrics.get(name).best_possible) for v in values), (name, values)


@pytest.mark.parametrize("name", MEASURES)
def test_d_much_larger_than_n_never_looks_significant_silently(name):
    g = np.random.default_rng(7)
    X, Y = g.standard_normal((40, 1500)), g.standard_normal((40, 1500))  # independent
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        try:
            res = alignkit.permutation_test(name, X, Y, n_perm=99, seed=1, **_small(name))
        except ValueError:
            return
    warned = any(issubclass(w.category, UserWarning) for w in seen)
    assert warned or not res.p_value < 0.01, (name, res.score, res.p_value)


def test_atlas_and_selection_leave_degenerate_layers_out():
    X, Y = _pair(n=200)
    A = {"const": np.ones((200, 8)), "real": X}
    B = {"y": Y, "zeros": np.zeros((200, 5))}
    for name in ("mutual_knn", "cka"):
        with pytest.warns(DegenerateSpaceWarning, match="degenerate layer"):
            at = alignkit.atlas(A, B, name, n_perm=19, **_small(name))
        assert at.best[:2] == ("real", "y")
        assert np.isnan(at.scores[0]).all() and np.isnan(at.scores[:, 1]).all()
        assert np.isnan(at.p_values_fwer[0]).all() and np.isfinite(at.p_values_fwer[1, 0])
        assert set(at.degenerate) == {"a:const", "b:zeros"}
        clean = alignkit.atlas({"real": X}, {"y": Y}, name, n_perm=19, **_small(name))
        assert at.p_values_fwer[1, 0] == clean.p_values_fwer[0, 0]  # the constant layer did not spoil the null
        rows = at.to_rows()
        assert [bool(r["degenerate_a"] or r["degenerate_b"]) for r in rows] == [True, True, False, True]
        assert rows[0]["degenerate_a"].startswith("constant") and rows[1]["degenerate_b"].startswith("constant")
    with pytest.warns(DegenerateSpaceWarning):
        assert alignkit.select_layers(A, B, measure="cka", sample=None)[:2] == ("real", "y")


def test_bootstrap_interval_stays_in_range_and_nan_is_nan():
    X, _ = _pair(n=80)
    res = alignkit.bootstrap_ci("cka", X, X + 1e-3 * np.random.default_rng(0).standard_normal(X.shape), n_boot=50)
    assert -1.0 <= res.low <= res.high <= 1.0
    with pytest.warns(DegenerateSpaceWarning):
        res = alignkit.bootstrap_ci("cka", np.ones((80, 3)), X, n_boot=5)
    assert np.isnan(res.score) and np.isnan(res.low) and np.isnan(res.high)


def test_nan_measure_is_never_significant():
    X, Y = _pair()
    res = alignkit.permutation_test(lambda a, b: float("nan"), X, Y, n_perm=99)
    assert np.isnan(res.p_value) and np.isnan(res.z)


# --------------------------------------------------------------------------------------------- aligners


@pytest.mark.parametrize("name", ALIGNER_NAMES)
@pytest.mark.parametrize("kind", ["constant", "zeros"])
def test_aligners_refuse_a_constant_training_space(name, kind):
    X, Y = _pair()
    bad = np.full_like(X, 2.0) if kind == "constant" else np.zeros_like(X)
    est = ALIGNERS.get(name).obj(**FAST.get(name, {}))
    with pytest.raises(DegenerateSpaceError, match=r"\.fit: X is degenerate"):
        est.fit(bad, Y)


@pytest.mark.parametrize("name", ALIGNER_NAMES)
def test_aligners_on_duplicated_and_nan_inputs(name):
    X, Y = _pair()
    est = ALIGNERS.get(name).obj(**FAST.get(name, {}))
    est.fit(np.vstack([X, X]), np.vstack([Y, Y]))  # duplicates are legal training data
    Xn = X.copy()
    Xn[0, 0] = np.inf
    with pytest.raises(ValueError, match="NaN or Inf"):
        ALIGNERS.get(name).obj(**FAST.get(name, {})).fit(Xn, Y)


@pytest.mark.parametrize("name", ALIGNER_NAMES)
def test_a_map_to_one_point_scores_chance(name):
    X, Y = _pair()
    est = ALIGNERS.get(name).obj(**FAST.get(name, {})).fit(X, Y)
    with pytest.warns(DegenerateSpaceWarning):
        score = est.score(np.ones_like(X), np.ones_like(Y))
    assert score == pytest.approx(1 / len(X))


# ------------------------------------------------------------------------------------------ evaluations


def test_evaluations_of_constant_outputs_score_chance():
    g = np.random.default_rng(0)
    n = 100
    Z = g.standard_normal((n, 8))
    with pytest.warns(DegenerateSpaceWarning):
        rows = retrieval(np.zeros((n, 8)), Z)
    r1 = [r["value"] for r in rows if r["metric"] == "R@1"]
    assert r1 and all(v == pytest.approx(1 / n) for v in r1)
    with pytest.warns(DegenerateSpaceWarning):
        rows = zero_shot(np.zeros((n, 8)), g.standard_normal((10, 8)), g.integers(0, 10, n))
    assert [r["value"] for r in rows if r["metric"] == "top1"] == [pytest.approx(0.1)]
    with pytest.warns(DegenerateSpaceWarning):
        rows = translation(np.ones((n, 8)), Z, n_candidates=50)
    assert next(r["value"] for r in rows if r["metric"] == "top1") == pytest.approx(1 / 50)
    with pytest.warns(DegenerateSpaceWarning):
        rows = bli(np.zeros((n, 8)), Z, {i: [i] for i in range(30)}, scoring="nn")
    p1 = [r["value"] for r in rows if r["metric"] == "P@1"]
    assert p1 and all(v == pytest.approx(1 / n) for v in p1)


def test_one_repeated_row_plus_an_outlier_is_not_aligned():
    """Neighbourhoods decided by ties (most rows have ≥ k identical copies) are degenerate for kNN measures:
    before, mutual kNN read 0.90 with p = 0.01 on two unrelated spaces, and precomputed graphs and lists of
    lists slipped past the check."""
    g = np.random.default_rng(0)
    X = np.ones((200, 16))
    X[0] = g.standard_normal(16)
    Y = np.full((200, 16), 5.0)
    Y[7] = g.standard_normal(16)
    for name in [m for m in MEASURES if metrics.get(m).duplicate_sensitive]:
        with pytest.warns(DegenerateSpaceWarning, match="decided by ties"):
            res = alignkit.permutation_test(name, X, Y, n_perm=19, **_small(name))
        assert np.isnan(res.score) and np.isnan(res.p_value)
    with pytest.warns(DegenerateSpaceWarning):
        assert np.isnan(alignkit.measure("mutual_knn", np.ones((200, 16)).tolist(), np.ones((200, 16)).tolist()))
    with pytest.warns(DegenerateSpaceWarning):
        gx, gy = alignkit.knn_graph(np.ones((200, 16)), 10), alignkit.knn_graph(np.zeros((200, 16)), 10)
        assert np.isnan(alignkit.measure("mutual_knn", gx, gy)) and np.isnan(metrics.jaccard_knn(gx, gy))


def test_one_large_column_does_not_hide_the_others():
    g = np.random.default_rng(1)
    X = g.standard_normal((300, 8)).astype(np.float32)
    X[:, 0] = 1e6  # a "massive activation"
    check = alignkit.inspect_space(X)
    assert not check.constant and not check.rank_le_1
    Y = X[:, 1:] @ g.standard_normal((7, 7)).astype(np.float32)
    assert np.isfinite(alignkit.measure("cka", X, Y))


def test_euclidean_neighbours_do_not_depend_on_a_common_offset():
    g = np.random.default_rng(2)
    X = g.standard_normal((300, 8))
    Y = X @ g.standard_normal((8, 8))
    base = alignkit.measure("mutual_knn?metric=euclidean", X, Y)
    assert alignkit.measure("mutual_knn?metric=euclidean", (X + 1e4).astype(np.float32), Y) == pytest.approx(
        base, abs=0.01
    )


def test_bfloat16_inputs_to_neighbourhood_measures():
    torch = pytest.importorskip("torch")
    g = torch.Generator().manual_seed(0)
    X = torch.randn(200, 16, generator=g).to(torch.bfloat16)
    assert np.isfinite(alignkit.measure("mutual_knn", X, X))


def test_rank_one_check_probe_short_cut_agrees_with_the_full_pass():
    """inspect_space decides rank ≥ 2 from the first rows when it can (a bound on the total energy); the decision
    must equal the full pass's for data of rank ≥ 2, exactly collinear data, and collinear data with one row off the
    line far down (beyond the probe rows)."""
    from alignkit import degenerate as D

    rng = np.random.default_rng(5)
    line = np.outer(rng.normal(size=5000), rng.normal(size=16)) + 3.0
    off_late = line.copy()
    off_late[4000] += 50 * rng.normal(size=16)  # one row far off the line, after the probe rows
    cases = {"full rank": rng.normal(size=(5000, 16)), "line": line, "off late": off_late}
    expected = {"full rank": False, "line": True, "off late": False}
    for name, X in cases.items():
        for dtype in (np.float32, np.float64):
            A = X.astype(dtype)
            assert D.inspect_space(A).collapsed is expected[name], (name, dtype)
            with pytest.MonkeyPatch.context() as mp:  # the full pass alone (no probe short-cut)
                mp.setattr(D, "_PROBE_ROWS", 1)
                assert D.inspect_space(A).collapsed is expected[name], (name, dtype)


@pytest.mark.parametrize("width", [3, 4])  # float32 rows of even width are hashed two values per 64-bit word
@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64, np.int64])
def test_row_hashes_tell_small_integer_rows_apart(dtype, width):
    """Rows of small integers (floats with few mantissa bits: 1.0 = 0x3FF0…0) are counted exactly: unmixed
    multiplicative hashes kept only a few bits of such values, so (1, 0) and (0, 1) could collide. −0.0 equals 0.0."""
    from alignkit.degenerate import duplicate_groups, repeated_rows

    a = np.random.default_rng(1).integers(-3, 4, size=(5000, width)).astype(dtype)
    if dtype != np.int64:
        a[::7] *= -1  # −0.0 where a row holds 0: the same row as +0.0
        assert np.signbit(a[a == 0]).any()
    distinct, counts = np.unique(a, axis=0, return_counts=True)
    assert sorted(duplicate_groups(a)) == sorted(counts)
    first, inverse = repeated_rows(a)
    assert len(first) == len(distinct) and np.array_equal(a[first][inverse], a)
    assert np.array_equal(np.sort(first), first)  # in order of first occurrence
    assert repeated_rows(np.eye(4, dtype=dtype)) is None
