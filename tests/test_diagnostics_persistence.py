"""H0 persistence via the MST (METHODS §3.7): against scipy's MST on a dense matrix, properties, bad inputs."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.sparse.csgraph import minimum_spanning_tree
from scipy.spatial.distance import cdist

from alignkit.degenerate import DegenerateSpaceWarning
from alignkit.diagnostics import diagnose, get
from alignkit.diagnostics.persistence import h0_persistence, knn_mst, prim_mst


def scipy_deaths(X):
    """MST edge lengths of distinct rows from scipy on the dense distance matrix (no zero distances)."""
    w = minimum_spanning_tree(cdist(X, X)).data
    assert w.size == X.shape[0] - 1
    return np.sort(w)


def test_registered_as_a_label_free_space_diagnostic():
    info = get("h0_persistence")
    assert info.family == "space" and not info.needs_labels and info.null is None
    assert info.higher_is_better is None and info.range == (0.0, 1.0)
    assert "2305.15016" in info.description


@pytest.mark.parametrize("method", ["prim", "knn"])
def test_equals_scipy_mst_on_dense_matrix(rng, method):
    X = rng.normal(size=(300, 5))
    ref = scipy_deaths(X)
    r = h0_persistence(X, method=method, k=25)
    assert r.method == method and r.deaths.shape == (299,)
    np.testing.assert_allclose(r.deaths, ref / ref.max(), rtol=1e-10, atol=1e-12)
    assert r.scale == pytest.approx(ref.max(), rel=1e-12)
    assert r.total == pytest.approx(ref.sum() / ref.max())
    i, j, w = prim_mst(X)
    assert w.sum() == pytest.approx(ref.sum(), rel=1e-12)
    assert len({*i.tolist(), *j.tolist()}) == 300  # spans every point


def test_knn_path_joins_components_exactly(rng):
    # 8 far-apart clusters of 6 points and k = 5: the kNN graph is the union of the 8 complete cluster graphs
    # (8 components), so its MST is exact within clusters and the closest-pair joins must give the exact MST
    centres = rng.normal(size=(8, 4)) * 100.0
    X = np.repeat(centres, 6, axis=0) + rng.normal(size=(48, 4))
    _, _, w, comps, _ = knn_mst(X - X.mean(0), 5)
    assert comps == 8 and w.size == 47
    ref = scipy_deaths(X)
    np.testing.assert_allclose(np.sort(w), ref, rtol=1e-10)
    r = h0_persistence(X, method="knn", k=5)
    assert r.knn_components == 8 and r.k == 5
    np.testing.assert_allclose(r.deaths, h0_persistence(X, method="prim").deaths, rtol=1e-10)


def test_two_distant_clusters_give_one_long_bar(rng):
    X = np.vstack([rng.normal(size=(100, 3)), rng.normal(size=(100, 3)) + 50.0])
    r = h0_persistence(X)
    assert r.deaths[-1] == 1.0 and r.deaths[-2] < 0.1
    assert r.above == pytest.approx(1 / 199) and r.value == r.mean


def test_scale_and_rotation_invariant(rng):
    X = rng.normal(size=(200, 6))
    Q, _ = np.linalg.qr(rng.normal(size=(6, 6)))
    base = h0_persistence(X).deaths
    np.testing.assert_allclose(h0_persistence(X * 1e-7).deaths, base, rtol=1e-9)
    np.testing.assert_allclose(h0_persistence(X * 3e120).deaths, base, rtol=1e-9)  # squares would overflow
    np.testing.assert_allclose(h0_persistence(X @ Q + 5.0).deaths, base, rtol=1e-8, atol=1e-12)


def test_duplicates_add_zero_deaths(rng):
    X = rng.normal(size=(100, 4))
    Xd = np.vstack([X, X[:15], X[:5]])  # 20 duplicate rows
    # the pitfall: scipy reads the zero distances as missing edges, so each duplicate is attached by a positive
    # edge (its twin's) instead of at 0: no zero death, and a heavier tree than the true one
    naive = minimum_spanning_tree(cdist(Xd, Xd)).data
    assert not np.any(naive == 0.0) and naive.sum() > scipy_deaths(X).sum() + 1.0
    for method in ("prim", "knn"):
        r = h0_persistence(Xd, method=method, k=20)
        assert r.n_items == 120 and r.n_distinct == 100 and r.deaths.shape == (119,)
        assert np.all(r.deaths[:20] == 0.0) and np.all(r.deaths[20:] > 0.0)
        ref = scipy_deaths(X)
        np.testing.assert_allclose(r.deaths[20:], ref / ref.max(), rtol=1e-10)


def test_cosine_metric_is_chord_distance_of_unit_rows(rng):
    X = rng.normal(size=(150, 5))
    U = X / np.linalg.norm(X, axis=1, keepdims=True)
    ref = scipy_deaths(U)
    r = h0_persistence(X * rng.uniform(0.5, 3.0, size=(150, 1)), metric="cosine")
    np.testing.assert_allclose(r.deaths, ref / ref.max(), rtol=1e-9)
    with pytest.raises(ValueError, match="all-zero row"):
        h0_persistence(np.vstack([X, np.zeros(5)]), metric="cosine")


def test_summaries_and_id_parameters(rng):
    X = rng.normal(size=(80, 3))
    r = diagnose("h0_persistence?summary=median&quantiles=0.1,0.9&threshold=0.3", X)
    d = r.deaths
    assert r.value == r.median == pytest.approx(np.median(d))
    assert r.quantiles == (0.1, 0.9) and r.quantile_values == pytest.approx(tuple(np.quantile(d, [0.1, 0.9])))
    assert r.above == pytest.approx(np.mean(d > 0.3)) and r.std == pytest.approx(d.std())
    row = r.as_dict()
    assert row["value"] == r.median and "deaths" not in row and row["method"] == "prim"
    two = h0_persistence(np.array([[0.0, 0.0], [3.0, 4.0]]))
    np.testing.assert_array_equal(two.deaths, [1.0])
    assert two.scale == 5.0


def test_bad_inputs(rng):
    X = rng.normal(size=(20, 3))
    same = np.ones((10, 3))
    with pytest.raises(ValueError, match="all rows of X are identical"):
        h0_persistence(same)
    with pytest.warns(DegenerateSpaceWarning):
        assert np.isnan(diagnose("h0_persistence", same))
    bad = X.copy()
    bad[1, 1] = np.inf
    for call in (h0_persistence, lambda a: diagnose("h0_persistence", a)):
        with pytest.raises(ValueError, match="NaN or Inf"):
            call(bad)
    with pytest.raises(ValueError, match="at least 2 rows"):
        h0_persistence(X[:1])
    with pytest.raises(ValueError, match="quantiles"):
        h0_persistence(X, quantiles=(0.5, 2.0))
    with pytest.raises(ValueError, match="summary"):
        diagnose("h0_persistence", X, summary="S(p)")
    with pytest.raises(ValueError, match="method"):
        h0_persistence(X, method="kruskal")
    with pytest.raises(TypeError, match="takes no labels"):
        diagnose("h0_persistence", X, labels=np.arange(20) % 2)


def test_cut_property_certification_repairs_a_wrong_long_edge(rng):
    torch = pytest.importorskip("torch")
    from alignkit.diagnostics.persistence import _certify, _Search

    X = np.vstack([rng.normal(size=(30, 3)), rng.normal(size=(30, 3)) + np.array([20.0, 0.0, 0.0])])
    X -= X.mean(axis=0)
    i, j, w = prim_mst(X)
    e = int(np.argmax(w))  # the one edge between the clusters
    far = (int(np.argmin(X[:30, 0])), 30 + int(np.argmax(X[30:, 0])))  # a cross pair that is not the closest
    i[e], j[e], w[e] = far[0], far[1], np.linalg.norm(X[far[0]] - X[far[1]])
    assert w.sum() > prim_mst(X)[2].sum() + 1.0
    search = _Search(torch.from_numpy(X.astype(np.float32)))
    _, _, w2, done = _certify(X, search, i, j, w, 1, budget=60)
    assert done >= 1
    assert w2.sum() == pytest.approx(prim_mst(X)[2].sum(), rel=1e-12)


def test_knn_path_normaliser_is_exact(rng):
    # 40 small clusters: the kNN graph (k=4) links them through pairs that need not be closest; the longest edge
    # (the normaliser) is certified by the cut property, so it matches exact Prim
    centres = rng.normal(size=(40, 8)) * 6.0
    X = np.repeat(centres, 10, axis=0) + rng.normal(size=(400, 8))
    exact = h0_persistence(X, method="prim")
    r = h0_persistence(X, method="knn", k=4)
    assert r.certified >= 1 and r.scale == pytest.approx(exact.scale, rel=1e-12)
    assert r.total >= exact.total - 1e-9  # same normaliser: never lighter than the MST
    assert abs(r.mean - exact.mean) < 0.01
