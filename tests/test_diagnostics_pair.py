"""Diagnostics of a pair of spaces (alignkit.diagnostics.pair) against dense n×n references written here."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.special import logsumexp
from scipy.stats import ortho_group, skew

from alignkit.diagnostics import diagnose, diagnostic_ci, diagnostic_null, get, pair
from alignkit.diagnostics.geometry import uniformity
from alignkit.diagnostics.pair import (
    HubnessResult,
    alignment,
    calibrated_uniformity,
    hubness,
    modality_gap,
    paired_cosine,
    relative_alignment,
)

# ------------------------------------------------------------------------------------------ dense references


def unit(X):
    X = np.asarray(X, dtype=np.float64)
    return X / np.linalg.norm(X, axis=1, keepdims=True)


def sqdist(A, B):
    return ((A[:, None, :] - B[None, :, :]) ** 2).sum(-1)


def relative_alignment_dense(X, Y):
    D = sqdist(unit(X), unit(Y))
    pos = np.diag(D).copy()
    np.fill_diagonal(D, np.inf)
    return float((pos - D.min(axis=1)).mean())


def calibrated_uniformity_dense(X, M, t=2.0, lo=-1.0, hi=1.0):
    U, V = unit(X), unit(M)
    S = np.clip(V @ V.T, lo, hi)
    E = -t * (sqdist(U, U) - 2 + 2 * S)  # the CM³ form, literally
    iu = np.triu_indices(len(U), 1)
    return float(logsumexp(E[iu]) - np.log(len(iu[0])))


def hubness_dense(X, Y, k, exclude_self=False):
    C = unit(X) @ unit(Y).T
    if exclude_self:
        np.fill_diagonal(C, -np.inf)
    nn = np.argsort(-C, axis=1, kind="stable")[:, :k]
    return np.bincount(nn.ravel(), minlength=len(Y))


@pytest.fixture
def XY(rng):
    X = rng.standard_normal((50, 6)) + 0.3
    return X, X + 0.6 * rng.standard_normal((50, 6))


# ------------------------------------------------------------------------------------------ alignment, paired cosine


def test_alignment_matches_dense(XY):
    X, Y = XY
    d = np.linalg.norm(unit(X) - unit(Y), axis=1)
    assert alignment(X, Y) == pytest.approx((d**2).mean(), abs=1e-12)
    assert alignment(X, Y, alpha=1.0) == pytest.approx(d.mean(), abs=1e-12)
    assert diagnose("alignment?alpha=3", X, Y) == pytest.approx((d**3).mean(), abs=1e-12)
    assert alignment(X, Y) == pytest.approx(2 - 2 * paired_cosine(X, Y), abs=1e-12)


def test_alignment_identical_and_scale(XY, rng):
    X, _ = XY
    assert alignment(X, X) == 0.0
    assert alignment(X, X * rng.uniform(0.1, 9, (50, 1))) == pytest.approx(0.0, abs=1e-28)
    assert alignment(X, -X) == pytest.approx(4.0)
    with pytest.raises(ValueError, match="alpha"):
        alignment(X, X, alpha=0)


def test_paired_cosine_matches_dense(XY):
    X, Y = XY
    ref = float((unit(X) * unit(Y)).sum(1).mean())
    assert paired_cosine(X, Y) == pytest.approx(ref, abs=1e-12)
    assert paired_cosine(torch.from_numpy(X).float(), Y) == pytest.approx(ref, abs=1e-6)
    assert paired_cosine(X, X) == pytest.approx(1.0) and paired_cosine(X, -2 * X) == pytest.approx(-1.0)


@pytest.mark.parametrize("name", ["paired_cosine", "alignment", "relative_alignment"])
def test_pair_null_calibration(XY, rng, name):
    X, Y = XY
    paired = diagnostic_null(name, X, Y, n_perm=49, seed=0)
    assert paired.p_value <= 0.05
    indep = diagnostic_null(name, X, rng.standard_normal((50, 6)), n_perm=49, seed=0)
    assert indep.p_value > 0.05


def test_paired_cosine_ci(XY):
    X, Y = XY
    ci = diagnostic_ci("paired_cosine", X, Y, n_boot=20, seed=0)
    assert -1.0 <= ci.low <= ci.score <= ci.high <= 1.0


# ------------------------------------------------------------------------------------------ relative alignment


def test_relative_alignment_matches_dense(XY):
    X, Y = XY
    assert relative_alignment(X, Y) == pytest.approx(relative_alignment_dense(X, Y), abs=1e-12)


@pytest.mark.parametrize("block", [1, 4, 49, 500])
def test_relative_alignment_blocked(XY, block):
    X, Y = XY
    assert relative_alignment(X, Y, block_size=block) == pytest.approx(relative_alignment_dense(X, Y), abs=1e-12)


def test_relative_alignment_sign(XY, rng):
    X, _ = XY
    near = X + 1e-3 * rng.standard_normal(X.shape)  # every partner is the nearest Y row
    assert relative_alignment(X, near) < 0
    assert relative_alignment(X, X) == pytest.approx(relative_alignment_dense(X, X), abs=1e-12)
    far = np.roll(X, 1, axis=0)  # the partner is someone else's nearest
    assert relative_alignment(X, far) > 0
    with pytest.raises(ValueError, match="at least 2"):
        relative_alignment(X[:1], X[:1])


# ------------------------------------------------------------------------------------------ calibrated uniformity


def test_calibrated_uniformity_matches_dense(XY, rng):
    X, _ = XY
    M = rng.standard_normal((50, 11)) + X[:, :1]  # another dimension is fine
    assert calibrated_uniformity(X, M) == pytest.approx(calibrated_uniformity_dense(X, M), abs=1e-12)
    v = calibrated_uniformity(X, M, t=1.5, min_sim=-0.2, max_sim=0.6)
    assert v == pytest.approx(calibrated_uniformity_dense(X, M, 1.5, -0.2, 0.6), abs=1e-12)
    assert diagnose("calibrated_uniformity?t=1.5&min_sim=-0.2&max_sim=0.6", X, M) == pytest.approx(v, abs=1e-12)


@pytest.mark.parametrize("block", [1, 5, 49, 1000])
def test_calibrated_uniformity_blocked(XY, rng, block):
    X, _ = XY
    M = rng.standard_normal((50, 4))
    ref = calibrated_uniformity_dense(X, M)
    assert calibrated_uniformity(X, M, block_size=block) == pytest.approx(ref, abs=1e-12)


def test_calibrated_uniformity_identities(XY, rng):
    X, _ = XY
    # METHODS 3.3: s_ij = x̂_i·x̂_j for every pair ⇒ L_cu = 0 (M = X, or any row rescaling of it)
    assert calibrated_uniformity(X, X) == pytest.approx(0.0, abs=1e-12)
    assert calibrated_uniformity(X, X * rng.uniform(0.2, 5, (50, 1))) == pytest.approx(0.0, abs=1e-12)
    # s ≡ 1 (all M rows point one way) gives plain uniformity
    one_way = np.outer(rng.uniform(1, 2, 50), rng.standard_normal(3))
    assert calibrated_uniformity(X, one_way) == pytest.approx(uniformity(X), abs=1e-12)
    assert calibrated_uniformity(X, X, t=1000.0) == pytest.approx(0.0, abs=1e-9)  # stable at large t
    v = calibrated_uniformity(X, rng.standard_normal((50, 4)), t=1.0)
    assert -4.0 <= v <= 4.0


def test_calibrated_uniformity_bad_inputs(XY):
    X, _ = XY
    with pytest.raises(ValueError, match="min_sim must be <= max_sim"):
        calibrated_uniformity(X, X, min_sim=0.5, max_sim=0.0)
    with pytest.raises(ValueError, match="max_sim"):
        calibrated_uniformity(X, X, max_sim=1.5)
    with pytest.raises(ValueError, match="row-paired"):
        calibrated_uniformity(X, X[:-1])
    with pytest.raises(ValueError, match="row-paired"):
        diagnose("calibrated_uniformity", X, X[:-1])


def test_calibrated_uniformity_null(XY, rng):
    X, Y = XY
    assert diagnostic_null("calibrated_uniformity", X, Y, n_perm=49, seed=0).p_value <= 0.05
    assert diagnostic_null("calibrated_uniformity", X, rng.standard_normal((50, 6)), n_perm=49).p_value > 0.05


# ------------------------------------------------------------------------------------------ modality gap


def test_modality_gap(XY, rng):
    X, Y = XY
    ref = float(np.linalg.norm(unit(X).mean(0) - unit(Y).mean(0)))
    gap = modality_gap(X, Y)
    assert gap == pytest.approx(ref, abs=1e-12) and 0.0 <= gap <= 2.0
    assert modality_gap(X, X) == 0.0
    Q = ortho_group.rvs(6, random_state=5)
    assert modality_gap(X @ Q, Y @ Q) == pytest.approx(gap, abs=1e-12)
    e1 = np.zeros((5, 3))
    e1[:, 0] = rng.uniform(1, 3, 5)
    assert modality_gap(e1, -e1) == pytest.approx(2.0)
    # two cones around different directions: a large gap
    shifted = modality_gap(X + 5.0, Y - 5.0)
    assert shifted > 1.5
    assert get("modality_gap").null is None  # row order does not change the centroids


# ------------------------------------------------------------------------------------------ hubness


@pytest.mark.parametrize("k", [1, 5])
def test_hubness_matches_dense(rng, k):
    X, Y = rng.standard_normal((70, 8)), rng.standard_normal((40, 8))  # different sizes are fine
    res = hubness(X, Y, k=k)
    counts = hubness_dense(X, Y, k)
    assert isinstance(res, HubnessResult)
    assert res.value == pytest.approx(skew(counts), abs=1e-10)
    assert res.antihub_fraction == pytest.approx((counts == 0).mean())
    assert res.max_occurrence == counts.max() and res.n_queries == 70 and res.n_gallery == 40


@pytest.mark.parametrize("block", [1, 3, 1000])
def test_hubness_blocked_and_exclude_self(rng, block):
    X = rng.standard_normal((60, 10))
    counts = hubness_dense(X, X, 4, exclude_self=True)
    res = hubness(X, X, k=4, exclude_self=True, block_size=block)
    assert res.value == pytest.approx(skew(counts), abs=1e-10)
    assert res.as_dict()["k"] == 4


def test_hubness_hub_and_even_cases(rng):
    Y = rng.standard_normal((30, 5))
    hub = np.vstack([Y, Y.mean(0, keepdims=True) * 50])  # one central point
    X = rng.standard_normal((200, 5))
    assert hubness(X, hub, k=1).value > 0
    # each query retrieves exactly its own partner: N_1 ≡ 1, no hubs
    even = hubness(Y, Y, k=1)
    assert even.value == 0.0 and even.antihub_fraction == 0.0 and even.max_occurrence == 1


def test_hubness_bad_inputs(rng):
    X = rng.standard_normal((20, 5))
    with pytest.raises(ValueError, match="same dimension"):
        hubness(X, rng.standard_normal((20, 4)))
    with pytest.raises(ValueError, match="same dimension"):
        diagnose("hubness", X, rng.standard_normal((20, 4)))
    with pytest.raises(ValueError, match="at most the number of gallery rows"):
        hubness(X, X[:5], k=6)
    with pytest.raises(ValueError, match="k must be < n"):
        hubness(X, X, k=20, exclude_self=True)
    with pytest.raises(ValueError, match="row-paired"):
        hubness(X, X[:10], k=2, exclude_self=True)
    with pytest.raises(ValueError, match="k"):
        diagnose("hubness?k=0", X, X)
    with pytest.raises(ValueError, match="subsampling interval does not apply"):
        diagnostic_ci("hubness", X, X, n_boot=5)


# ------------------------------------------------------------------------------------------ shared input errors


@pytest.mark.parametrize(
    "name", ["alignment", "relative_alignment", "calibrated_uniformity", "modality_gap", "paired_cosine"]
)
def test_pair_bad_inputs(XY, name):
    X, Y = XY
    func = getattr(pair, name)  # the public, parameter-validating function
    with pytest.raises(ValueError, match="row-paired"):
        func(X, Y[:-2])
    with pytest.raises(ValueError, match="row-paired"):
        diagnose(name, X, Y[:-2])
    bad = Y.copy()
    bad[0, 0] = np.inf
    with pytest.raises(ValueError, match="NaN or Inf"):
        func(X, bad)
    with pytest.raises(ValueError, match="NaN or Inf"):
        diagnose(name, X, bad)
    zero = Y.copy()
    zero[2] = 0
    with pytest.raises(ValueError, match="all-zero row"):
        func(X, zero)
    with pytest.raises(TypeError, match="2 array"):
        diagnose(name, X)
    if name != "calibrated_uniformity":
        with pytest.raises(ValueError, match="same dimension"):
            func(X, Y[:, :3])


def test_registered_metadata():
    for name in ("alignment", "relative_alignment", "calibrated_uniformity", "modality_gap", "paired_cosine"):
        info = get(name)
        assert info.family == "pair" and info.paired_rows and info.resample
    assert get("calibrated_uniformity").inputs == ("X", "M")
    assert get("paired_cosine").higher_is_better is True and get("alignment").higher_is_better is False
    assert get("hubness").paired_rows is False
    assert not math.isfinite(get("hubness").range[1])


def test_row_blocked_pair_passes(XY, rng, monkeypatch):
    import alignkit.diagnostics.geometry as G

    X, Y = XY
    expected = (alignment(X, Y), paired_cosine(X, Y), modality_gap(X, Y), relative_alignment(X, Y))
    monkeypatch.setattr(G, "_ROW_BLOCK_ELEMENTS", 20)
    got = (alignment(X, Y), paired_cosine(X, Y), modality_gap(X, Y), relative_alignment(X, Y))
    assert got == pytest.approx(expected, rel=1e-10, abs=1e-12)


def test_hubness_whole_gallery(rng):
    X, Y = rng.standard_normal((9, 3)), rng.standard_normal((4, 3))
    res = hubness(X, Y, k=4)  # every query retrieves the whole gallery: N_k ≡ 9
    assert res.value == 0.0 and res.max_occurrence == 9 and res.antihub_fraction == 0.0
