"""The prepared (atlas / permutation) forms of RSA and linear predictivity give the function's values."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import alignkit
from alignkit.atlas import atlas
from alignkit.metrics.predictive import PredictivityMeasure
from alignkit.metrics.prepared import GenericMeasure, prepared_measure
from alignkit.metrics.rsa import RsaMeasure, _condensed_permutation, rdm


@pytest.fixture(scope="module")
def layers():
    rng = np.random.default_rng(3)
    n = 120
    a = {str(i): rng.standard_normal((n, 12 + 4 * i)) for i in range(3)}
    b = {str(i): a[str(i)][:, :8] @ rng.standard_normal((8, 10)) + 0.7 * rng.standard_normal((n, 10)) for i in range(3)}
    return a, b


IDS = [
    "rsa",
    "rsa?compare=pearson",
    "rsa?compare=kendall",
    "rsa?rdm_metric=euclidean&compare=cosine",
    "linear_predictivity",
    "linear_predictivity?direction=both",
    "linear_predictivity?direction=y_to_x&alpha=0.5&summary=mean_column",
]


@pytest.mark.parametrize("mid", IDS)
def test_atlas_equals_the_function_pair_by_pair(layers, mid):
    a, b = layers
    got = atlas(a, b, mid, progress=False).scores
    want = np.array([[alignkit.measure(mid, a[i], b[j]) for j in b] for i in a])
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)
    assert not isinstance(prepared_measure(mid), GenericMeasure)


@pytest.mark.parametrize("mid", ["rsa", "rsa?compare=kendall", "linear_predictivity?direction=both"])
def test_permuted_prepared_space_scores_like_the_permuted_rows(layers, mid):
    a, b = layers
    pm = prepared_measure(mid)
    x, y = torch.as_tensor(a["1"]), torch.as_tensor(b["2"])
    perm = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(0))
    fast = pm.score(pm.prepare(x), pm.permute(pm.prepare(y), perm))
    assert fast == pytest.approx(alignkit.measure(mid, x, y[perm]), abs=1e-12)


def test_condensed_permutation_matches_a_dense_reorder():
    rng = np.random.default_rng(0)
    x = torch.as_tensor(rng.standard_normal((9, 4)))
    perm = torch.as_tensor(rng.permutation(9))
    v = rdm(x)
    np.testing.assert_allclose(v[_condensed_permutation(perm, 9)].numpy(), rdm(x[perm]).numpy(), atol=1e-14)


def test_prepared_forms_keep_the_functions_errors():
    const = torch.ones(10, 3)
    with pytest.raises(ValueError, match="constant"):
        PredictivityMeasure().prepare(const)
    with pytest.raises(ValueError, match="RDM of X is constant"):
        RsaMeasure().prepare(const + torch.arange(3.0))  # every row the same: a constant RDM
    with pytest.raises(ValueError, match="n_folds"):
        PredictivityMeasure(n_folds=20).prepare(torch.randn(10, 3, generator=torch.Generator().manual_seed(1)))


def test_large_spaces_fall_back_to_per_pair_rsa(layers, monkeypatch):
    import importlib

    rsa_mod = importlib.import_module("alignkit.metrics.rsa")

    a, b = layers
    monkeypatch.setattr(rsa_mod, "_PREPARED_MAX_PAIRS", 10)
    got = atlas(a, b, "rsa", progress=False).scores
    want = np.array([[alignkit.measure("rsa", a[i], b[j]) for j in b] for i in a])
    np.testing.assert_allclose(got, want, atol=1e-12)
