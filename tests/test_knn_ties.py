"""Tie-aware kNN measures (``ties="fractional"``): a hand-computed case, a dense reference, exact agreement with the
ordinary score without ties, invariance to row order with duplicates, the permutation fast path, warnings, errors."""

import warnings

import numpy as np
import pytest
import torch

import alignkit
from alignkit.degenerate import DegenerateSpaceWarning, DuplicateRowsWarning
from alignkit.metrics import jaccard_knn, mutual_knn
from alignkit.metrics.prepared import prepared_measure
from alignkit.neighbors import knn_graph, tied_overlap

pytestmark = pytest.mark.filterwarnings("ignore::alignkit.degenerate.DuplicateRowsWarning")

# 1-D points, euclidean, k = 2 (column means are integers, so every distance is exact):
# X = [0, 1, -1, 1, 4]: row 0 has rows 1, 2, 3 all at distance 1 sharing 2 slots (2/3 each); row 1: row 3 (distance
# 0) then row 0; row 2: row 0 (1) then rows 1 and 3 tied at 2 sharing 1 slot (1/2 each); row 3: rows 1, 0; row 4:
# rows 1, 3 (both at 3). Y = [0, 2, -1, 1, 3]: {2, 3}, {3, 4}, {0, 3}, {0, 1}, {1, 3}.
# Overlaps Σ min: 4/3, 1, 3/2, 2, 2 → mutual = mean(m/2) = 47/60; Jaccard = mean(m/(4 − m)) = 103/150.
HAND_X = np.array([0.0, 1.0, -1.0, 1.0, 4.0])[:, None]
HAND_Y = np.array([0.0, 2.0, -1.0, 1.0, 3.0])[:, None]


def weights_of(ties) -> dict[tuple[int, int], float]:
    rows, cols, _, weights = ties.entries()
    return {(int(r), int(c)): float(w) for r, c, w in zip(rows, cols, weights, strict=True)}


def fractional_weights_dense(Z: np.ndarray, k: int) -> np.ndarray:
    """W[i, j] straight from the definition on the dense float64 cosine similarities."""
    Z = Z / np.linalg.norm(Z, axis=1, keepdims=True)
    S = Z @ Z.T
    np.fill_diagonal(S, -np.inf)
    W = np.zeros_like(S)
    for i, s in enumerate(S):
        r = np.sort(s)[::-1][k - 1]
        tied = np.abs(s - r) <= 1e-9
        closer = (s > r) & ~tied
        W[i, closer] = 1.0
        W[i, tied] = (k - closer.sum()) / tied.sum()
    return W


def duplicated(rng, groups: int, copies: int, d: int = 6) -> np.ndarray:
    return np.repeat(rng.standard_normal((groups, d)), copies, axis=0)


def test_hand_computed_case():
    gx = knn_graph(HAND_X, 2, metric="euclidean", ties=True)
    want = {(0, 1): 2 / 3, (0, 2): 2 / 3, (0, 3): 2 / 3, (1, 0): 1, (1, 3): 1, (2, 0): 1, (2, 1): 0.5, (2, 3): 0.5}
    want |= {(3, 0): 1, (3, 1): 1, (4, 1): 1, (4, 3): 1}
    assert weights_of(gx.ties) == pytest.approx(want)
    assert mutual_knn(HAND_X, HAND_Y, 2, metric="euclidean", ties="fractional") == pytest.approx(47 / 60, abs=1e-15)
    assert jaccard_knn(HAND_X, HAND_Y, 2, metric="euclidean", ties="fractional") == pytest.approx(103 / 150, abs=1e-15)
    # k = 1 from the k = 2 graph: row 0's three rows at distance 1 share one slot; row 4's two share one
    one = gx.ties.truncate(1)
    want = {(0, 1): 1 / 3, (0, 2): 1 / 3, (0, 3): 1 / 3, (1, 3): 1, (2, 0): 1, (3, 1): 1, (4, 1): 0.5, (4, 3): 0.5}
    assert weights_of(one) == pytest.approx(want)
    assert weights_of(one) == pytest.approx(weights_of(knn_graph(HAND_X, 1, metric="euclidean", ties=True).ties))


@pytest.mark.parametrize("big", [0, 25])
def test_matches_a_dense_reference_on_data_with_duplicates(rng, big):
    X = duplicated(rng, 30, 3)
    X[:big] = X[0]  # a group wider than 4k: its rows are stored flat, the others padded
    Y = X + 0.3 * rng.standard_normal(X.shape)
    Y[::4] = Y[1::4]  # other duplicates in Y
    Y[60 : 60 + big] = Y[60]
    k = 4
    WX, WY = fractional_weights_dense(X, k), fractional_weights_dense(Y, k)
    want = float(np.minimum(WX, WY).sum(axis=1).mean() / k)
    m = np.minimum(WX, WY).sum(axis=1)
    assert mutual_knn(X, Y, k, ties="fractional") == pytest.approx(want, abs=1e-12)
    assert jaccard_knn(X, Y, k, ties="fractional") == pytest.approx(float(np.mean(m / (2 * k - m))), abs=1e-12)
    assert weights_of(knn_graph(X, k, ties=True).ties) == pytest.approx(
        {(i, j): WX[i, j] for i, j in zip(*np.nonzero(WX), strict=True)}
    )


@pytest.mark.parametrize("metric", ["cosine", "ip", "euclidean"])
@pytest.mark.parametrize("k", [1, 5, 12])
def test_equals_the_ordinary_score_without_ties(rng, metric, k):
    X = rng.standard_normal((150, 7)).astype(np.float32)
    Y = X + rng.standard_normal(X.shape).astype(np.float32)
    for f in (mutual_knn, jaccard_knn):
        assert f(X, Y, k, metric=metric, ties="fractional") == f(X, Y, k, metric=metric)  # exactly
    gx, gy = knn_graph(X, 12, metric=metric, ties=True), knn_graph(Y, 12, metric=metric, ties=True)
    assert mutual_knn(gx, gy, k, ties="fractional") == mutual_knn(X, Y, k, metric=metric)
    np.testing.assert_array_equal(gx.indices.numpy(), knn_graph(X, 12, metric=metric).indices.numpy())


def test_invariant_to_row_order_with_duplicates_where_the_ordinary_score_is_not(rng):
    X = duplicated(rng, 40, 3)  # 2 copies at distance 0, then a group of 3 tied for the last 2 slots (k = 4)
    Y = X + 0.5 * rng.standard_normal(X.shape)  # no duplicates: its neighbours are decided by the noise
    n, k = X.shape[0], 4
    base = {f: f(X, Y, k, ties="fractional") for f in (mutual_knn, jaccard_knn)}
    ordinary = {mutual_knn(X, Y, k)}
    for seed in range(5):
        p = np.random.default_rng(seed).permutation(n)
        for f, value in base.items():
            assert f(X[p], Y[p], k, ties="fractional") == pytest.approx(value, abs=1e-12)
        ordinary.add(mutual_knn(X[p], Y[p], k))
    assert len(ordinary) > 1  # the ordinary score moves with the row order


def test_graph_permutation_and_truncation_commute_with_recomputation(rng):
    X = duplicated(rng, 25, 4)
    X[::7] += 0.1
    perm = torch.from_numpy(np.random.default_rng(3).permutation(X.shape[0]))
    g = knn_graph(X, 6, ties=True)
    assert weights_of(g.permuted(perm).ties) == pytest.approx(weights_of(knn_graph(X[perm.numpy()], 6, ties=True).ties))
    for k in (1, 3, 5):
        assert weights_of(g.truncate(k).ties) == pytest.approx(weights_of(knn_graph(X, k, ties=True).ties))
    a, b = g.ties, g.permuted(perm).ties
    np.testing.assert_allclose(tied_overlap(a, a), 6.0, rtol=1e-14)  # identical tied neighbourhoods overlap fully
    np.testing.assert_allclose(tied_overlap(a, b), tied_overlap(b, a), rtol=0, atol=1e-12)  # either side sorted


def test_prepared_permutation_fast_path(rng):
    X = duplicated(rng, 30, 3)
    Y = X + 0.4 * rng.standard_normal(X.shape)
    pm = prepared_measure("mutual_knn?k=4&ties=fractional")
    px, py = pm.prepare(torch.from_numpy(X)), pm.prepare(torch.from_numpy(Y))
    assert pm.score(px, py) == pytest.approx(mutual_knn(X, Y, 4, ties="fractional"), abs=1e-12)
    for seed in range(4):
        p = torch.from_numpy(np.random.default_rng(seed).permutation(X.shape[0]))
        want = mutual_knn(X, Y[p.numpy()], 4, ties="fractional")
        assert pm.score(px, pm.permute(py, p)) == pytest.approx(want, abs=1e-12)
        assert pm.score(pm.permute(px, p), py) == pytest.approx(mutual_knn(X[p.numpy()], Y, 4, ties="fractional"))
    res = alignkit.permutation_test("jaccard_knn", X, Y, n_perm=20, seed=1, k=4, ties="fractional")
    slow = alignkit.permutation_test(lambda a, b: jaccard_knn(a, b, 4, ties="fractional"), X, Y, n_perm=20, seed=1)
    assert res.score == pytest.approx(slow.score, abs=1e-12)
    np.testing.assert_allclose(res.null, slow.null, rtol=0, atol=1e-12)


def test_duplicate_rows_warn_with_their_count(rng):
    X = duplicated(rng, 50, 2)  # 100 rows, 50 distinct
    Y = rng.standard_normal(X.shape)
    for ties in ("arbitrary", "fractional"):
        with pytest.warns(DuplicateRowsWarning, match=r"X has 50 duplicated row\(s\) \(50\.0% of 100; 50 distinct\)"):
            mutual_knn(X, Y, 3, ties=ties)
    with pytest.warns(DuplicateRowsWarning, match="Y has 50 duplicated"):
        alignkit.measure("jaccard_knn?ties=fractional", Y, X, k=3)


def test_bad_input_names_the_argument(rng):
    X, Y = rng.standard_normal((60, 5)), rng.standard_normal((60, 5))
    with pytest.raises(ValueError, match="ties must be one of arbitrary, fractional"):
        mutual_knn(X, Y, ties="average")
    with pytest.raises(ValueError, match="ties='fractional' needs backend='exact'"):
        mutual_knn(X, Y, ties="fractional", backend="faiss")
    with pytest.raises(ValueError, match="ties=True needs backend='exact'"):
        knn_graph(X, 3, backend="faiss", ties=True)
    with pytest.raises(ValueError, match=r"knn_graph\(\.\.\., ties=True\)"):
        mutual_knn(knn_graph(X, 5), knn_graph(Y, 5), 5, ties="fractional")
    with pytest.raises(TypeError, match="cycle_knn"):
        alignkit.metrics.cycle_knn(X, Y, ties="fractional")


def test_atlas_scores_and_nulls_with_fractional_ties(rng):
    X = duplicated(rng, 30, 3)
    layers_a = {"a0": X, "a1": X + 0.2 * rng.standard_normal(X.shape)}
    layers_b = {"b0": X + 0.5 * rng.standard_normal(X.shape), "b1": rng.standard_normal(X.shape)}
    at = alignkit.atlas(layers_a, layers_b, "mutual_knn", k=4, n_perm=5, seed=0, ties="fractional")
    want = [[mutual_knn(a, b, 4, ties="fractional") for b in layers_b.values()] for a in layers_a.values()]
    np.testing.assert_allclose(at.scores, want, rtol=0, atol=1e-12)
    assert at.best[:2] == ("a0", "b0")


def test_fractional_ties_keep_a_space_of_repeated_rows_scorable():
    # 20 distinct rows, each 12 times: every row has >= k = 10 identical copies. Arbitrary tie-breaking would
    # decide every neighbourhood, so the ordinary score is NaN; shared slots make it well-defined.
    rng = np.random.default_rng(3)
    base = rng.standard_normal((20, 6))
    X = np.repeat(base, 12, axis=0)
    Y = np.repeat(base @ rng.standard_normal((6, 6)), 12, axis=0)
    with pytest.warns(DegenerateSpaceWarning):
        assert np.isnan(alignkit.measure("mutual_knn", X, Y, k=10))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DuplicateRowsWarning)
        score = alignkit.measure("mutual_knn", X, Y, k=10, ties="fractional")
    assert score == pytest.approx(1.0)  # each row's 11 copies tie at 0 in both spaces: the same shared slots
