"""RSA, linear predictivity and retrieval alignment, each against a dense numpy/scipy reference written here."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy import stats
from scipy.spatial.distance import pdist
from scipy.stats import ortho_group

import alignkit
from alignkit.degenerate import DegenerateSpaceWarning
from alignkit.metrics import get, linear_predictivity, linear_predictivity_scores, rdm, rsa
from alignkit.metrics.predictive import GCV_RELATIVE_GRID, kfold_splits, ridge_gcv_alpha
from alignkit.metrics.retrieval import retrieval_alignment, retrieval_mrr, retrieval_ranks, retrieval_scores
from alignkit.metrics.rsa import average_ranks

RDM_METRICS = ("correlation", "cosine", "euclidean", "sqeuclidean")


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def clustered(n: int = 60, d: int = 12, seed: int = 0) -> np.ndarray:
    """Structured data: a few clusters, an offset, and some exact duplicate rows."""
    g = rng(seed)
    centres = 3.0 * g.normal(size=(4, d))
    X = centres[g.integers(0, 4, size=n)] + 0.3 * g.normal(size=(n, d)) + 5.0
    X[1] = X[0]
    X[7] = X[3]
    return X


# ------------------------------------------------------------------------------------------------ dense references


def ref_predictivity(X: np.ndarray, Y: np.ndarray, alpha: float, n_folds: int, seed: int) -> tuple[float, float]:
    """Ridge by normal equations (primal when n_train ≥ d, dual otherwise) on the documented folds."""
    n, d = X.shape
    folds = np.array_split(np.random.default_rng(seed).permutation(n), n_folds)
    sse = np.zeros(Y.shape[1])
    sst = np.zeros(Y.shape[1])
    for te in folds:
        tr = np.setdiff1d(np.arange(n), te)
        xm, ym = X[tr].mean(0), Y[tr].mean(0)
        Xc, Yc = X[tr] - xm, Y[tr] - ym
        if len(tr) >= d:
            W = np.linalg.solve(Xc.T @ Xc + alpha * np.eye(d), Xc.T @ Yc)
        else:
            W = Xc.T @ np.linalg.solve(Xc @ Xc.T + alpha * np.eye(len(tr)), Yc)
        pred = (X[te] - xm) @ W + ym
        sse += ((Y[te] - pred) ** 2).sum(0)
        sst += ((Y[te] - ym) ** 2).sum(0)
    return 1.0 - sse.sum() / sst.sum(), float(np.mean(1.0 - sse / sst))


def ref_gcv_alpha(X: np.ndarray, Y: np.ndarray, grid: np.ndarray) -> float:
    """Brute-force GCV with the full n×n hat matrix (intercept included)."""
    n, d = X.shape
    Xc = X - X.mean(0)
    best, best_val = None, np.inf
    for lam in grid:
        A = np.ones((n, n)) / n + Xc @ np.linalg.solve(Xc.T @ Xc + lam * np.eye(d), Xc.T)
        R = (np.eye(n) - A) @ Y
        val = n * (R**2).sum() / np.trace(np.eye(n) - A) ** 2
        if val < best_val:
            best, best_val = lam, val
    return float(best)


def ref_ranks(X: np.ndarray, Y: np.ndarray, metric: str) -> np.ndarray:
    if metric == "cosine":
        X = X / np.linalg.norm(X, axis=1, keepdims=True)
        Y = Y / np.linalg.norm(Y, axis=1, keepdims=True)
    if metric == "euclidean":
        S = -(((X[:, None, :] - Y[None, :, :]) ** 2).sum(-1))
    else:
        S = X @ Y.T
    gold = np.diag(S)[:, None]
    above, tied = (S > gold).sum(1), (S == gold).sum(1) - 1
    return 1 + above + tied / 2  # the expected rank under random tie-breaking


# ---------------------------------------------------------------------------------------------------------- RDMs


@pytest.mark.parametrize("metric", RDM_METRICS)
@pytest.mark.parametrize("data", ["random", "clustered"])
def test_rdm_equals_pdist(metric: str, data: str) -> None:
    X = rng(1).normal(size=(40, 9)) if data == "random" else clustered()
    got = rdm(X, metric)
    assert got.dtype == torch.float64 and got.shape == (X.shape[0] * (X.shape[0] - 1) // 2,)
    np.testing.assert_allclose(got.numpy(), pdist(X, metric), rtol=0, atol=1e-10)
    # blocking does not change anything, including blocks that do not divide n
    np.testing.assert_allclose(rdm(X, metric, block_size=7).numpy(), got.numpy(), rtol=0, atol=1e-13)


def test_rdm_near_duplicates_are_refined() -> None:
    X = rng(2).normal(size=(10, 5)) + 1e3
    X[4] = X[2] + 1e-7
    np.testing.assert_allclose(rdm(X, "euclidean").numpy(), pdist(X, "euclidean"), rtol=1e-7, atol=1e-12)


def test_rdm_torch_float32_input() -> None:
    X = torch.randn(20, 4, generator=torch.Generator().manual_seed(0))
    np.testing.assert_allclose(rdm(X, "cosine").numpy(), pdist(X.double().numpy(), "cosine"), atol=1e-10)


def test_average_ranks_equals_rankdata_with_ties() -> None:
    v = rng(3).integers(0, 5, size=200).astype(float)
    np.testing.assert_array_equal(average_ranks(torch.from_numpy(v)).numpy(), stats.rankdata(v))


# ----------------------------------------------------------------------------------------------------------- RSA


@pytest.mark.parametrize("rdm_metric", RDM_METRICS)
@pytest.mark.parametrize("data", ["random", "clustered"])
def test_rsa_equals_scipy_reference(rdm_metric: str, data: str) -> None:
    if data == "random":
        X, Y = rng(4).normal(size=(30, 6)), rng(5).normal(size=(30, 4))
        Y[:, 0] += X[:, 0]
    else:
        X = clustered(30, 8, seed=6)
        Y = np.tanh(X[:, :5] / 4.0) + 0.1 * rng(7).normal(size=(30, 5))
    a, b = pdist(X, rdm_metric), pdist(Y, rdm_metric)
    expected = {
        "spearman": stats.spearmanr(a, b)[0],
        "pearson": stats.pearsonr(a, b)[0],
        "kendall": stats.kendalltau(a, b)[0],
        "cosine": a @ b / (np.linalg.norm(a) * np.linalg.norm(b)),
    }
    for compare, ref in expected.items():
        assert rsa(X, Y, rdm_metric=rdm_metric, compare=compare) == pytest.approx(ref, abs=1e-10)


def test_rsa_default_and_registry() -> None:
    X, Y = rng(8).normal(size=(25, 5)), rng(9).normal(size=(25, 3))
    ref = stats.spearmanr(pdist(X, "correlation"), pdist(Y, "correlation"))[0]
    assert rsa(X, Y) == pytest.approx(ref, abs=1e-12)
    assert alignkit.measure("rsa", X, Y) == pytest.approx(ref, abs=1e-12)
    assert alignkit.measure("rsa?compare=kendall&rdm_metric=euclidean", X, Y) == pytest.approx(
        stats.kendalltau(pdist(X), pdist(Y))[0], abs=1e-12
    )
    info = get("rsa")
    assert info.family == "rsa" and info.symmetric and info.range == (-1.0, 1.0)


def test_rsa_self_is_one_and_symmetric() -> None:
    X, Y = clustered(40, 6), rng(10).normal(size=(40, 3))
    for m in RDM_METRICS:
        assert rsa(X, X, rdm_metric=m) == pytest.approx(1.0, abs=1e-12)
    assert rsa(X, Y, compare="kendall") == pytest.approx(rsa(Y, X, compare="kendall"), abs=1e-14)


def test_spearman_and_kendall_invariant_to_monotone_rdm_transform() -> None:
    X, Y = rng(11).normal(size=(35, 5)), rng(12).normal(size=(35, 5))
    Y[:, :2] += X[:, :2]
    for compare in ("spearman", "kendall"):
        a = rsa(X, Y, rdm_metric="euclidean", compare=compare)
        assert a == pytest.approx(rsa(X, Y, rdm_metric="sqeuclidean", compare=compare), abs=1e-12)
    # Pearson is not rank-based, so squaring the distances must change it
    p1 = rsa(X, Y, rdm_metric="euclidean", compare="pearson")
    assert abs(p1 - rsa(X, Y, rdm_metric="sqeuclidean", compare="pearson")) > 1e-3


def test_rsa_invariances() -> None:
    X, Y = rng(13).normal(size=(30, 6)), rng(14).normal(size=(30, 4))
    Y[:, 0] += 2 * X[:, 1]
    Q = ortho_group.rvs(6, random_state=0)
    for m in ("euclidean", "sqeuclidean", "cosine"):
        base = rsa(X, Y, rdm_metric=m)
        assert rsa(3.7 * X @ Q, Y, rdm_metric=m) == pytest.approx(base, abs=1e-10)
    assert rsa(X + 4.0, Y, rdm_metric="euclidean") == pytest.approx(rsa(X, Y, rdm_metric="euclidean"), abs=1e-10)
    # correlation RDMs centre rows over features: scale-invariant but NOT rotation-invariant
    base = rsa(X, Y)
    assert rsa(0.01 * X, Y) == pytest.approx(base, abs=1e-10)
    assert abs(rsa(X @ Q, Y) - base) > 1e-3
    # cosine RDMs are not translation-invariant
    assert abs(rsa(X + 4.0, Y, rdm_metric="cosine") - rsa(X, Y, rdm_metric="cosine")) > 1e-3


def test_rsa_null_is_near_zero() -> None:
    X, Y = rng(15).normal(size=(120, 10)), rng(16).normal(size=(120, 10))
    assert abs(rsa(X, Y)) < 0.05


@settings(max_examples=30, deadline=None)
@given(
    arrays(np.float64, (8, 3), elements=st.integers(-3, 3).map(float)),
    arrays(np.float64, (8, 2), elements=st.integers(-3, 3).map(float)),
    st.sampled_from(["euclidean", "sqeuclidean"]),
    st.sampled_from(["spearman", "kendall", "pearson"]),
)
def test_rsa_property_tie_heavy_integer_data(X: np.ndarray, Y: np.ndarray, metric: str, compare: str) -> None:
    a, b = pdist(X, metric), pdist(Y, metric)
    if np.ptp(X, axis=0).max() == 0 or np.ptp(Y, axis=0).max() == 0:  # a constant space: NaN, never a score
        with pytest.warns(DegenerateSpaceWarning, match="is degenerate"):
            assert np.isnan(rsa(X, Y, rdm_metric=metric, compare=compare))
        return
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        with pytest.raises(ValueError, match=r"RDM of [XY] is constant"):
            rsa(X, Y, rdm_metric=metric, compare=compare)
        return
    ref = {"spearman": stats.spearmanr, "kendall": stats.kendalltau, "pearson": stats.pearsonr}[compare](a, b)[0]
    got = rsa(X, Y, rdm_metric=metric, compare=compare)
    assert got == pytest.approx(ref, abs=1e-9)
    assert -1.0 - 1e-12 <= got <= 1.0 + 1e-12


# -------------------------------------------------------------------------------------------------- predictivity


@pytest.mark.parametrize(("n", "d1", "d2"), [(60, 5, 3), (30, 40, 4)])  # primal and dual regimes
@pytest.mark.parametrize("alpha", [0.5, 10.0])
def test_predictivity_equals_normal_equations(n: int, d1: int, d2: int, alpha: float) -> None:
    g = rng(17)
    X = g.normal(size=(n, d1)) + 2.0
    Y = X[:, :d2] @ g.normal(size=(d2, d2)) + 0.5 * g.normal(size=(n, d2))
    pooled, mean_col = ref_predictivity(X, Y, alpha, 5, seed=3)
    assert linear_predictivity(X, Y, alpha=alpha, seed=3) == pytest.approx(pooled, abs=1e-8)
    assert linear_predictivity(X, Y, alpha=alpha, seed=3, summary="mean_column") == pytest.approx(mean_col, abs=1e-8)
    rev_pooled, _ = ref_predictivity(Y, X, alpha, 4, seed=1)
    assert linear_predictivity(X, Y, alpha=alpha, n_folds=4, seed=1, direction="y_to_x") == pytest.approx(
        rev_pooled, abs=1e-8
    )
    assert linear_predictivity(X, Y, alpha=alpha, n_folds=4, seed=1, direction="both") == pytest.approx(
        (ref_predictivity(X, Y, alpha, 4, seed=1)[0] + rev_pooled) / 2, abs=1e-8
    )


def test_predictivity_structured_low_rank_and_least_squares() -> None:
    g = rng(18)
    Z = g.normal(size=(80, 3))
    X = Z @ g.normal(size=(3, 10)) + 0.01 * g.normal(size=(80, 10))  # nearly rank 3
    Y = np.sin(Z) + 0.1 * g.normal(size=(80, 3))
    pooled, _ = ref_predictivity(X, Y, 1e-3, 5, seed=0)
    assert linear_predictivity(X, Y, alpha=1e-3) == pytest.approx(pooled, abs=1e-8)
    # alpha = 0 is ordinary least squares (here X_c has full column rank)
    pooled0, _ = ref_predictivity(X, Y, 0.0, 5, seed=0)
    assert linear_predictivity(X, Y, alpha=0.0) == pytest.approx(pooled0, abs=1e-8)


def test_kfold_splits_are_a_partition() -> None:
    folds = kfold_splits(23, 5, seed=2)
    assert [len(f) for f in folds] == [5, 5, 5, 4, 4]
    np.testing.assert_array_equal(np.sort(np.concatenate(folds)), np.arange(23))


def test_gcv_alpha_equals_brute_force() -> None:
    g = rng(19)
    X = g.normal(size=(50, 8)) * np.linspace(0.2, 3, 8)
    Y = X @ g.normal(size=(8, 3)) + 2.0 * g.normal(size=(50, 3))
    s = np.linalg.svd(X - X.mean(0), compute_uv=False)
    grid = GCV_RELATIVE_GRID * np.mean(s**2)
    assert ridge_gcv_alpha(X, Y) == pytest.approx(ref_gcv_alpha(X, Y, grid), rel=1e-10)
    custom = [0.01, 0.1, 1.0, 10.0, 100.0, 1000.0]
    assert ridge_gcv_alpha(X, Y, alphas=custom) == ref_gcv_alpha(X, Y, np.array(custom))
    # the per-fold λ reported by the scores is the GCV choice on that fold's training items
    scores = linear_predictivity_scores(X, Y, seed=4)
    te = kfold_splits(50, 5, seed=4)[2]
    tr = np.setdiff1d(np.arange(50), te)
    assert scores["x_to_y"]["alpha"][2] == pytest.approx(ridge_gcv_alpha(X[tr], Y[tr]), rel=1e-12)


def test_predictivity_of_invertible_map_is_one() -> None:
    g = rng(20)
    X = g.normal(size=(400, 8))
    A = g.normal(size=(8, 8)) + 3 * np.eye(8)
    assert linear_predictivity(X, X @ A) > 0.999
    assert linear_predictivity(X, X @ A, direction="both") > 0.999


def test_predictivity_null_is_near_zero() -> None:
    X, Y = rng(21).normal(size=(300, 10)), rng(22).normal(size=(300, 6))
    for summary in ("pooled", "mean_column"):
        assert -0.1 < linear_predictivity(X, Y, summary=summary) <= 0.05


def test_predictivity_scores_and_asymmetry() -> None:
    g = rng(23)
    X = g.normal(size=(120, 6))
    Y = X[:, :2] + 0.05 * g.normal(size=(120, 2))
    s = linear_predictivity_scores(X, Y)
    assert set(s) == {"x_to_y", "y_to_x", "both"}
    assert s["x_to_y"]["pooled"] > 0.99 and s["y_to_x"]["pooled"] < 0.5  # Y is decodable from X, not vice versa
    assert s["both"]["pooled"] == pytest.approx((s["x_to_y"]["pooled"] + s["y_to_x"]["pooled"]) / 2)
    assert len(s["x_to_y"]["alpha"]) == 5 and all(a > 0 for a in s["y_to_x"]["alpha"])
    assert s["x_to_y"]["pooled"] == pytest.approx(linear_predictivity(X, Y), abs=1e-14)
    assert s["y_to_x"]["mean_column"] == pytest.approx(
        linear_predictivity(X, Y, direction="y_to_x", summary="mean_column"), abs=1e-14
    )
    assert alignkit.measure("linear_predictivity?n_folds=4", X, Y) == pytest.approx(
        linear_predictivity(X, Y, n_folds=4), abs=1e-14
    )
    assert not get("linear_predictivity").symmetric


def test_predictivity_invariances() -> None:
    g = rng(24)
    X = g.normal(size=(90, 5))
    Y = np.tanh(X[:, :3]) + 0.3 * g.normal(size=(90, 3))
    Q = ortho_group.rvs(5, random_state=1)
    base = linear_predictivity(X, Y)
    assert linear_predictivity(5.0 * X @ Q + 3.0, Y) == pytest.approx(base, abs=1e-9)  # GCV grid scales with X
    assert linear_predictivity(X, 0.2 * Y @ ortho_group.rvs(3, random_state=2)) == pytest.approx(base, abs=1e-9)
    # a fixed absolute alpha is NOT scale-invariant
    assert abs(linear_predictivity(X, Y, alpha=50.0) - linear_predictivity(0.1 * X, Y, alpha=50.0)) > 1e-3


# ----------------------------------------------------------------------------------------------------- retrieval


def test_retrieval_hand_case_with_ties() -> None:
    """Ties are not hits: a partner tied with t others above g rivals has rank uniform on {g+1, …, g+t+1}."""
    X = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    Y = np.array([[1.0, 0.0], [2.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
    # cosine rows of S (query i vs all j): row 0 = [1, 1, .707, 0] -> partner tied at the top -> rank 1 or 2
    # (1.5); row 1 same -> 1.5; row 2 = [0, 0, .707, 1] -> 2; row 3 = [.707, .707, 1, .707] -> below y_2, tied
    # with y_0 and y_1 -> 2, 3 or 4 (3)
    np.testing.assert_array_equal(retrieval_ranks(X, Y).numpy(), [1.5, 1.5, 2, 3])
    # inner product: row 0 = [1, 2, 1, 0] -> below y_1, tied with y_2 -> 2.5; row 1 same -> 1; row 2 =
    # [0, 0, 1, 1] -> tied at the top with y_3 -> 1.5; row 3 = [1, 2, 2, 1] -> below y_1, y_2, tied with y_0 -> 3.5
    np.testing.assert_array_equal(retrieval_ranks(X, Y, metric="ip").numpy(), [2.5, 1, 1.5, 3.5])
    assert retrieval_alignment(X, Y) == 0.25  # (1/2 + 1/2 + 0 + 0)/4; ties counted as hits gave 0.5
    assert retrieval_alignment(X, Y, k=2) == pytest.approx(5 / 6)  # (1 + 1 + 1 + 1/3)/4
    assert retrieval_mrr(X, Y) == pytest.approx(85 / 144)  # (3/4 + 3/4 + 1/2 + (1/2 + 1/3 + 1/4)/3)/4


@pytest.mark.parametrize("metric", ["cosine", "ip", "euclidean"])
def test_retrieval_matches_dense_argsort(metric: str) -> None:
    g = rng(25)
    X = g.normal(size=(70, 6))
    Y = X + 0.8 * g.normal(size=(70, 6))
    ranks = retrieval_ranks(X, Y, metric=metric, block_size=9).numpy()
    np.testing.assert_array_equal(ranks, ref_ranks(X, Y, metric))
    if metric == "cosine":
        Xn = X / np.linalg.norm(X, axis=1, keepdims=True)
        Yn = Y / np.linalg.norm(Y, axis=1, keepdims=True)
        S = Xn @ Yn.T
    elif metric == "ip":
        S = X @ Y.T
    else:
        S = -(((X[:, None] - Y[None]) ** 2).sum(-1))
    order = np.argsort(-S, axis=1, kind="stable")  # continuous data: no ties
    pos = np.argmax(order == np.arange(70)[:, None], axis=1) + 1
    np.testing.assert_array_equal(ranks, pos)
    for k in (1, 3, 10):  # no ties: exactly the plain numbers
        assert retrieval_alignment(X, Y, k=k, metric=metric) == (pos <= k).mean()
    rev = np.argmax(np.argsort(-S.T, axis=1, kind="stable") == np.arange(70)[:, None], axis=1) + 1
    assert retrieval_alignment(X, Y, k=3, metric=metric, direction="y_to_x") == pytest.approx((rev <= 3).mean())
    assert retrieval_alignment(X, Y, k=3, metric=metric, direction="both") == pytest.approx(
        ((pos <= 3).mean() + (rev <= 3).mean()) / 2
    )
    assert retrieval_mrr(X, Y, metric=metric) == (1.0 / pos).mean()
    sc = retrieval_scores(X, Y, ks=(1, 5), metric=metric)
    assert sc["x_to_y"]["R@5"] == pytest.approx((pos <= 5).mean())
    assert sc["y_to_x"]["median_rank"] == np.median(rev)
    assert sc["x_to_y"]["mean_rank"] == pos.mean()
    assert sc["y_to_x"]["mrr"] == pytest.approx((1.0 / rev).mean())


def test_retrieval_identical_and_random() -> None:
    X = clustered(80, 6)[2:]  # drop the duplicated rows, which would tie
    X = np.delete(X, 5, axis=0)
    assert retrieval_alignment(X, X) == 1.0 and retrieval_mrr(X, X) == 1.0
    assert alignkit.measure("retrieval_alignment?direction=both", X, 2.0 * X) == 1.0
    g = rng(26)
    n, k = 1000, 10
    A, B = g.normal(size=(n, 16)), g.normal(size=(n, 16))
    r10 = retrieval_alignment(A, B, k=k, direction="both")
    assert abs(r10 - k / n) < 4 * np.sqrt(k / n / (2 * n))
    assert retrieval_mrr(A, B) == pytest.approx(np.sum(1.0 / np.arange(1, n + 1)) / n, abs=0.01)


def test_retrieval_invariances() -> None:
    g = rng(27)
    X = g.normal(size=(60, 5))
    Y = X + 0.7 * g.normal(size=(60, 5))
    ranks = retrieval_ranks(X, Y)
    assert torch.equal(retrieval_ranks(3.0 * X, 0.5 * Y), ranks)
    # rotating ONE space breaks retrieval (it is not invariant to maps of one space alone)
    Q = ortho_group.rvs(5, random_state=3)
    assert retrieval_alignment(X @ Q, Y) < retrieval_alignment(X, Y) - 0.2


@settings(max_examples=40, deadline=None)
@given(
    arrays(np.float64, (9, 3), elements=st.integers(-2, 2).map(float)),
    arrays(np.float64, (9, 3), elements=st.integers(-2, 2).map(float)),
    st.integers(1, 10),
)
def test_retrieval_ranks_property_integer_ties(X: np.ndarray, Y: np.ndarray, block: int) -> None:
    got = retrieval_ranks(X, Y, metric="ip", block_size=block).numpy()  # integer products: exact ties
    np.testing.assert_array_equal(got, ref_ranks(X, Y, "ip"))
    assert got.min() >= 1 and got.max() <= 9
    assert got.dtype == np.float64 and np.all(got * 2 == np.round(got * 2))  # whole or x.5


# ---------------------------------------------------------------------------------------------------- bad inputs


def test_bad_inputs() -> None:
    X, Y = rng(28).normal(size=(20, 4)), rng(29).normal(size=(19, 4))
    for f in (rsa, linear_predictivity, retrieval_alignment, retrieval_mrr):
        with pytest.raises(ValueError, match="paired by row"):
            f(X, Y)
    bad = X.copy()
    bad[3, 1] = np.nan
    for f in (rsa, linear_predictivity, retrieval_alignment):
        with pytest.raises(ValueError, match="Y contains 1 NaN"):
            f(X, bad)
    with pytest.raises(ValueError, match="X contains 1 NaN"):
        rdm(bad)
    with pytest.raises(ValueError, match="rsa needs at least 3"):
        rsa(X[:2], X[:2])
    with pytest.raises(ValueError, match="n_folds must be between 2 and n = 4"):
        linear_predictivity(X[:4], X[:4])
    with pytest.raises(ValueError, match="retrieval needs at least 2"):
        retrieval_alignment(X[:1], X[:1])
    with pytest.raises(ValueError, match="rdm_metric must be one of correlation, cosine"):
        rsa(X, X, rdm_metric="manhattan")
    with pytest.raises(ValueError, match="compare must be one of spearman, pearson, kendall"):
        rsa(X, X, compare="tau")
    with pytest.raises(ValueError, match="metric must be one of"):
        rdm(X, "cityblock")
    with pytest.raises(ValueError, match="direction must be one of x_to_y, y_to_x, both"):
        linear_predictivity(X, X, direction="forward")
    with pytest.raises(ValueError, match="summary must be one of pooled, mean_column"):
        linear_predictivity(X, X, summary="median")
    with pytest.raises(ValueError, match="summary must be one of recall, mrr"):
        retrieval_alignment(X, X, summary="map")
    with pytest.raises(ValueError, match="metric must be one of 'cosine', 'ip', 'euclidean'"):
        retrieval_ranks(X, X, metric="l1")
    with pytest.raises(ValueError, match="alpha must be a number >= 0"):
        linear_predictivity(X, X, alpha=-1.0)
    with pytest.raises(ValueError, match="alphas: "):
        linear_predictivity(X, X, alphas=[1.0, 0.0])
    with pytest.raises(TypeError, match="n_folds must be an integer"):
        linear_predictivity(X, X, n_folds=2.5)
    with pytest.raises(ValueError, match="k must be between 1 and n = 20"):
        retrieval_alignment(X, X, k=21)
    with pytest.raises(ValueError, match="k must be between 1 and n = 20"):
        retrieval_scores(X, X, ks=(1, 50))
    with pytest.raises(ValueError, match=r"same dimension.*X has d=4, Y has d=3"):
        retrieval_alignment(X, X[:, :3])
    with pytest.raises(ValueError, match="RDM of X is constant"):
        rsa(np.eye(5), rng(30).normal(size=(5, 3)))
    const_row = X.copy()
    const_row[2] = 1.5
    with pytest.raises(ValueError, match="X has 1 constant row"):
        rsa(const_row, X)
    with pytest.warns(DegenerateSpaceWarning, match="Y is degenerate .constant"):  # NaN, never a score
        assert np.isnan(linear_predictivity(X, np.ones((20, 2))))
    with pytest.raises(ValueError, match="block_size must be a positive integer"):
        rdm(X, block_size=0)
