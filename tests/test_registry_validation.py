"""The measure registry and the one validation helper used everywhere."""

import numpy as np
import pytest
import torch

import alignkit
from alignkit._validation import as_matrix
from alignkit.metrics import describe, names, parse_measure_id

EXPECTED = {
    "mutual_knn", "cycle_knn", "jaccard_knn", "lcs_knn", "edit_distance_knn", "cknna", "cka", "hsic",
    "cca", "svcca", "pwcca", "shape_distance", "procrustes", "rsa", "linear_predictivity",
    "retrieval_alignment", "retrieval_mrr",
}  # fmt: skip


def test_registry_lists_every_measure_with_metadata():
    assert EXPECTED <= set(names())
    for row in describe():
        assert {"name", "family", "range", "higher_is_better", "symmetric", "invariances", "cost"} <= set(row)
        lo, hi = row["range"]
        assert lo < hi
    assert describe("cka")["family"] == "kernel"


def test_measure_ids_carry_parameters():
    assert parse_measure_id("mutual_knn?k=10&metric=cosine") == ("mutual_knn", {"k": 10, "metric": "cosine"})
    assert parse_measure_id("cka?debiased=false") == ("cka", {"debiased": False})


def test_unknown_measure_did_you_mean():
    with pytest.raises(ValueError, match="Did you mean 'mutual_knn'"):
        alignkit.measure("mutal_knn", np.eye(5), np.eye(5))


def test_every_measure_runs_and_respects_its_range(rng):
    Z = rng.standard_normal((120, 6))
    X = Z @ rng.standard_normal((6, 8)) + 0.3 * rng.standard_normal((120, 8))
    Y = Z @ rng.standard_normal((6, 8)) + 0.3 * rng.standard_normal((120, 8))
    for name in names():
        with np.errstate(all="ignore"):
            value = alignkit.measure(name, X, Y)
        lo, hi = alignkit.metrics.get(name).range
        assert isinstance(value, float) and lo - 1e-9 <= value <= hi + 1e-9, name


@pytest.mark.parametrize(
    ("value", "error", "match"),
    [
        (np.array([1.0, 2.0, 3.0]), ValueError, "must be 2-D.*reshape"),
        (np.zeros((0, 3)), ValueError, "empty"),
        (np.array([[1.0, np.inf]]), ValueError, "1 NaN or Inf"),
        (np.array([["a", "b"]]), TypeError, "real numbers"),
        (np.array([[1 + 2j]]), TypeError, "real numbers"),
        (np.array([[True, False]]), TypeError, "booleans"),
        (np.array([[1, None]], dtype=object), TypeError, "real numbers"),
    ],
)
def test_validation_errors_name_the_argument(value, error, match):
    with pytest.raises(error, match=match):
        as_matrix(value, "X_train")
    with pytest.raises(error, match="X_train"):
        as_matrix(value, "X_train")


def test_validation_dtypes():
    assert as_matrix(np.ones((2, 2), dtype=np.int64)).dtype == torch.float32
    assert as_matrix(np.ones((2, 2), dtype=np.float64)).dtype == torch.float64
    assert as_matrix(torch.ones((2, 2), dtype=torch.bfloat16)).dtype == torch.float32


def test_preprocess_options_through_measure(rng):
    X = rng.standard_normal((60, 4))
    Y = X + 0.1 * rng.standard_normal((60, 4))
    Y[0] = 1e3
    clipped = alignkit.measure("cka", X, Y, clip_quantile=0.9)
    assert clipped > alignkit.measure("cka", X, Y)
    with pytest.raises(ValueError, match="clip_quantile must be a number > 0"):
        alignkit.measure("cka", X, Y, clip_quantile=1.5)


def test_measure_own_parameter_wins_over_preprocessing_name(rng):
    """procrustes takes its own ``center``: it must reach the measure, not the preprocessing step."""
    X = rng.standard_normal((40, 4)) + 5.0
    Y = X @ np.linalg.qr(rng.standard_normal((4, 4)))[0] - 7.0  # a translation: only centring undoes it
    assert alignkit.measure("procrustes", X, Y, center=False) == pytest.approx(
        alignkit.metrics.procrustes(X, Y, center=False)
    )
    assert alignkit.measure("procrustes", X, Y, center=False) != pytest.approx(alignkit.metrics.procrustes(X, Y))
