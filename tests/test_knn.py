"""kNN engine and kNN-family measures against dense references, properties and nulls."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import alignkit
from alignkit.metrics import cknna, cycle_knn, edit_distance_knn, jaccard_knn, lcs_knn, mutual_knn
from alignkit.neighbors import knn_graph, overlap_counts
from dense_reference import (
    cknna_dense,
    cycle_knn_dense,
    edit_knn_dense,
    jaccard_knn_dense,
    knn_dense,
    lcs_knn_dense,
    mutual_knn_dense,
    shared_latent,
)


@pytest.mark.parametrize("metric", ["cosine", "ip", "euclidean"])
@pytest.mark.parametrize("block_size", [None, 7])
def test_exact_knn_matches_dense_argsort(rng, metric, block_size):
    X = rng.standard_normal((120, 9))
    g = knn_graph(X, 6, metric=metric, block_size=block_size)
    np.testing.assert_array_equal(g.indices.numpy(), knn_dense(X, 6, metric))
    assert g.backend == "exact" and g.recall is None


@pytest.mark.parametrize("metric", ["cosine", "ip", "euclidean"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(("n", "block_size"), [(40, 1), (300, 299), (103, 7), (500, None), (1500, None), (2500, 1100)])
@pytest.mark.parametrize("one_thread", [True, False])
def test_self_search_by_symmetric_tiles_matches_the_row_blocked_search(metric, dtype, n, block_size, one_thread,
                                                                       monkeypatch):  # fmt: skip
    """self_topk (tiles (i, j ≥ i) of the symmetric similarity matrix, running top-k per row; one-row tiles, a single
    tile; single-threaded: diagonal tiles by numpy's symmetric product and rows under 600 columns ranked by numpy)
    returns exact_topk's scores and neighbours."""
    import alignkit._gemm
    import alignkit.neighbors
    from alignkit.neighbors import exact_topk, self_topk

    for module in (alignkit._gemm, alignkit.neighbors):
        monkeypatch.setattr(module, "single_threaded", lambda: one_thread)

    x = torch.from_numpy(np.random.default_rng(n).standard_normal((n, 6))).to(dtype)
    w = x / x.norm(dim=1, keepdim=True) if metric == "cosine" else x
    want_s, want_i = exact_topk(w, w, 5, metric, query_ids=torch.arange(n))
    got_s, got_i = self_topk(w, 5, metric, block_size=block_size)
    assert got_i.dtype == torch.long and got_s.dtype == dtype
    torch.testing.assert_close(got_s, want_s, rtol=0, atol=1e-5 if dtype == torch.float32 else 1e-12)
    assert torch.equal(got_i, want_i)


def test_self_search_ranks_bfloat16_with_torch():
    from alignkit.neighbors import exact_topk, self_topk

    x = torch.nn.functional.normalize(torch.randn(30, 4, generator=torch.Generator().manual_seed(1)), dim=1)
    got = self_topk(x.bfloat16(), 3)
    assert got[0].dtype == torch.bfloat16 and got[1].shape == (30, 3)
    assert not (got[1] == torch.arange(30)[:, None]).any()
    assert torch.equal(self_topk(x, 3)[1], exact_topk(x, x, 3, query_ids=torch.arange(30))[1])


def test_a_kNN_measure_checks_and_normalises_each_space_once(rng, monkeypatch):
    """Inside a kNN measure the search reuses the registry's check and unit rows of the same array: each space's
    rows are hashed for duplicates once, not twice."""
    import alignkit.degenerate as degenerate

    X, Y = shared_latent(rng, n=200)
    calls = []
    original = degenerate._row_keys
    monkeypatch.setattr(degenerate, "_row_keys", lambda a: calls.append(a.shape) or original(a))
    value = alignkit.measure("mutual_knn", X, Y, k=5)
    assert len(calls) == 2
    calls.clear()
    assert mutual_knn(knn_graph(X, 5), knn_graph(Y, 5), k=5) == pytest.approx(
        value
    )  # a graph outside a call checks itself
    assert len(calls) == 2


def test_self_excluded_by_index_with_duplicate_rows(rng):
    X = rng.standard_normal((50, 5))
    X[10] = X[3]  # exact duplicate: distance 0, must still be a neighbour, self never
    g = knn_graph(X, 3)
    idx = g.indices.numpy()
    assert 10 in idx[3] and 3 in idx[10]
    assert not (idx == np.arange(50)[:, None]).any()


def test_float32_and_torch_inputs_agree(rng):
    X = rng.standard_normal((100, 16))
    a = knn_graph(X, 5).indices
    b = knn_graph(torch.tensor(X, dtype=torch.float32), 5).indices
    assert (a == b).float().mean() > 0.99  # float32 may reorder exact near-ties only


def test_permuted_graph_equals_graph_of_permuted_rows(rng):
    X = rng.standard_normal((80, 6))
    perm = torch.randperm(80, generator=torch.Generator().manual_seed(1))
    np.testing.assert_array_equal(
        knn_graph(X, 5).permuted(perm).indices.numpy(), knn_graph(X[perm.numpy()], 5).indices.numpy()
    )


def test_truncate_keeps_nearest():
    X = np.random.default_rng(0).standard_normal((60, 4))
    np.testing.assert_array_equal(knn_graph(X, 8).truncate(3).indices.numpy(), knn_graph(X, 3).indices.numpy())


def test_faiss_backend_reports_measured_recall(rng):
    pytest.importorskip("faiss")
    centers = rng.standard_normal((20, 32)) * 4
    X = centers[rng.integers(0, 20, 4000)] + rng.standard_normal((4000, 32))
    g = knn_graph(X, 10, backend="faiss", nprobe=64, recall_sample=300)
    assert g.backend == "faiss" and g.indices.shape == (4000, 10)
    assert not (g.indices.numpy() == np.arange(4000)[:, None]).any()
    exact = knn_graph(X, 10)
    rows = np.arange(4000)
    true_recall = float(overlap_counts(g.indices[rows], exact.indices[rows]).sum()) / (4000 * 10)
    assert g.recall is not None and abs(g.recall - true_recall) < 0.05
    assert g.recall > 0.9


REFERENCES = {
    "mutual_knn": (mutual_knn, mutual_knn_dense),
    "jaccard_knn": (jaccard_knn, jaccard_knn_dense),
    "cycle_knn": (cycle_knn, cycle_knn_dense),
    "lcs_knn": (lcs_knn, lcs_knn_dense),
    "edit_distance_knn": (edit_distance_knn, edit_knn_dense),
    "cknna": (cknna, cknna_dense),
}


@pytest.mark.parametrize("name", list(REFERENCES))
@pytest.mark.parametrize("structured", [False, True])
def test_measures_match_dense_reference(rng, name, structured):
    if structured:
        X, Y = shared_latent(rng, n=90)
    else:
        X, Y = rng.standard_normal((90, 7)), rng.standard_normal((90, 11))
    ours, ref = REFERENCES[name]
    for k in (2, 5):
        assert ours(X, Y, k) == pytest.approx(ref(X, Y, k), abs=1e-8)
        assert alignkit.measure(f"{name}?k={k}", X, Y) == pytest.approx(ref(X, Y, k), abs=1e-8)


def test_graphs_are_reused_across_measures(rng):
    X, Y = shared_latent(rng, n=100)
    gx, gy = knn_graph(X, 10), knn_graph(Y, 10)
    for name in ("mutual_knn", "jaccard_knn", "cycle_knn", "lcs_knn"):
        f = REFERENCES[name][0]
        assert f(gx, gy, 10) == f(X, Y, 10)
        assert f(gx, gy, 4) == f(X, Y, 4)  # truncated from the k=10 graph
    with pytest.raises(ValueError, match="k=10"):
        mutual_knn(gx, gy, 12)


def test_knn_null_values():
    """Independent spaces: mutual kNN ≈ k/(n−1) = 0.0098, cycle ≈ 1−(1−k/(n−1))^k ≈ 0.094 (n=1024, k=10)."""
    g = np.random.default_rng(7)
    mk, cy = [], []
    for _ in range(12):  # replicate sd: 0.0017 (mknn), 0.015 (cycle)
        X, Y = g.standard_normal((1024, 16)), g.standard_normal((1024, 16))
        mk.append(mutual_knn(X, Y, 10))
        cy.append(cycle_knn(X, Y, 10))
    assert np.mean(mk) == pytest.approx(10 / 1023, abs=0.0016)
    assert np.mean(cy) == pytest.approx(1 - (1 - 10 / 1023) ** 10, abs=0.014)


def test_identity_and_rotation_give_one(rng):
    X = rng.standard_normal((150, 12))
    Q, _ = np.linalg.qr(rng.standard_normal((12, 12)))
    for name in ("mutual_knn", "jaccard_knn", "cycle_knn", "lcs_knn", "edit_distance_knn"):
        assert REFERENCES[name][0](X, X @ Q * 3.0, 10) == pytest.approx(1.0)
    assert cknna(X, X @ Q, 10) == pytest.approx(1.0, abs=1e-4)


def test_symmetry_and_asymmetry(rng):
    X, Y = shared_latent(rng, n=200)
    for f in (mutual_knn, jaccard_knn, lcs_knn, edit_distance_knn):
        assert f(X, Y, 10) == pytest.approx(f(Y, X, 10), abs=1e-12)
    assert cycle_knn(X, Y, 10) != cycle_knn(Y, X, 10)
    # PRH's CKNNA masks make K̃, L̃ asymmetric, so 1ᵀK̃L̃1 ≠ 1ᵀL̃K̃1: nearly, not exactly, symmetric.
    assert cknna(X, Y, 10) == pytest.approx(cknna(Y, X, 10), abs=2e-3)
    assert not alignkit.metrics.get("cknna").symmetric


def test_triangle_like_bound_per_row(rng):
    """|S_A∩S_C| ≥ |S_A∩S_B| + |S_B∩S_C| − k for every row (METHODS §1.2)."""
    A, B = shared_latent(rng, n=150)
    C = B + 0.5 * rng.standard_normal(B.shape)
    ga, gb, gc = (knn_graph(M, 10).indices for M in (A, B, C))
    assert bool((overlap_counts(ga, gc) >= overlap_counts(ga, gb) + overlap_counts(gb, gc) - 10).all())


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), scale=st.floats(0.01, 100.0))
def test_knn_invariances(seed, scale):
    g = np.random.default_rng(seed)
    X, Y = g.standard_normal((60, 6)), g.standard_normal((60, 5))
    Q, _ = np.linalg.qr(g.standard_normal((6, 6)))
    row_scale = g.uniform(0.1, 10.0, size=(60, 1))
    perm = g.permutation(60)
    base = mutual_knn(X, Y, 5)
    assert mutual_knn(X @ Q * scale, Y, 5) == pytest.approx(base)  # orthogonal + isotropic scale
    assert mutual_knn(X * row_scale, Y, 5) == pytest.approx(base)  # per-row positive scale (cosine)
    assert mutual_knn(X[perm], Y[perm], 5) == pytest.approx(base)  # joint row permutation


def test_knn_not_invariant_to_anisotropic_scaling(rng):
    X = rng.standard_normal((200, 10))
    D = np.diag(np.geomspace(0.01, 10, 10))
    assert mutual_knn(X, X @ D, 10) < 0.9


def test_ranges(rng):
    X, Y = shared_latent(rng, n=120)
    for name in ("mutual_knn", "jaccard_knn", "cycle_knn", "lcs_knn", "edit_distance_knn"):
        assert 0.0 <= REFERENCES[name][0](X, Y, 7) <= 1.0


def test_bad_input_messages(rng):
    X = rng.standard_normal((20, 3))
    with pytest.raises(ValueError, match="k must be < n"):
        mutual_knn(X, X, 20)
    with pytest.raises(ValueError, match=r"cknna.*k must be an integer >= 2"):
        cknna(X, X, 1)
    with pytest.raises(ValueError, match="paired by row"):
        mutual_knn(X, X[:10], 3)
    with pytest.raises(ValueError, match="metric must be one of"):
        mutual_knn(X, X, 3, metric="manhattan")
    with pytest.raises(ValueError, match="backend must be one of"):
        knn_graph(X, 3, backend="annoy")
    with pytest.raises(TypeError, match="k must be an integer"):
        mutual_knn(X, X, 2.5)


def test_approximate_scores_carry_recall_never_silently(rng):
    pytest.importorskip("faiss")
    centers = rng.standard_normal((10, 16)) * 4
    X = centers[rng.integers(0, 10, 2000)] + rng.standard_normal((2000, 16))
    Y = X + 0.5 * rng.standard_normal(X.shape)
    exact = mutual_knn(X, Y, 10)
    approx = mutual_knn(X, Y, 10, backend="faiss")
    assert type(exact) is float
    assert set(approx.recall) == {"X", "Y"} and all(0.8 < r <= 1 for r in approx.recall.values())
    assert "recall@k" in repr(approx) and approx == pytest.approx(exact, abs=0.05)
    res = alignkit.permutation_test("mutual_knn", X, Y, n_perm=3, backend="faiss")
    assert set(res.knn_recall) == {"X", "Y"} and "knn_recall_X" in res.as_dict()
    at = alignkit.atlas([X], {"y": Y}, "mutual_knn", backend="faiss")
    assert set(at.knn_recall) == {"spaces_a['0']", "spaces_b['y']"} and "min_knn_recall" in at.summary()


# ------------------------------------------------------------------------------------------- scale safety

KNN_SCALES = {
    np.float32: (1e-30, 1e-10, 1e10, 1e30),
    np.float64: (1e-300, 1e-160, 1e-30, 1e-10, 1e10, 1e30, 1e160, 1e300),
}


def _scores(X: np.ndarray, metric: str) -> np.ndarray:
    if metric == "cosine":
        Z = X / np.linalg.norm(X, axis=1, keepdims=True)
        return Z @ Z.T
    if metric == "ip":
        return X @ X.T
    sq = (X * X).sum(axis=1)
    return -(sq[:, None] + sq[None, :] - 2 * X @ X.T)


def min_relative_gap(X: np.ndarray, k: int) -> float:
    """Smallest gap between consecutive top-(k+1) similarities of any row, any metric, relative to the row's
    largest |similarity|: above ~1e-5, rounding at any scale cannot reorder or swap neighbours."""
    out = np.inf
    for metric in ("cosine", "ip", "euclidean"):
        S = _scores(np.asarray(X, dtype=np.float64), metric)
        np.fill_diagonal(S, -np.inf)
        top = -np.sort(-S, axis=1)[:, : k + 1]
        scale = np.abs(np.where(np.isfinite(S), S, 0)).max(axis=1, keepdims=True)
        out = min(out, float((-np.diff(top, axis=1) / scale).min()))
    return out


def well_separated(n: int, d: int, k: int = 10, seed: int = 0, *, tol: float = 1e-5) -> np.ndarray:
    """Gaussian data whose neighbour lists have no near-ties (:func:`min_relative_gap` > tol), by seed search."""
    for s in range(seed, seed + 200):
        X = np.random.default_rng(s).standard_normal((n, d))
        if min_relative_gap(X, k) > tol:
            return X
    raise AssertionError("no well-separated draw found")  # pragma: no cover


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("metric", ["cosine", "ip", "euclidean"])
def test_knn_graph_same_neighbours_at_any_scale(dtype, metric):
    """Rescaled before the products (docs: neighbors module): scale 1e-300 … 1e300 gives scale 1's graph."""
    X = well_separated(120, 8)
    ref = knn_graph(X.astype(dtype), 10, metric=metric).indices
    for s in KNN_SCALES[dtype]:
        got = knn_graph((X * s).astype(dtype), 10, metric=metric, block_size=37).indices
        assert torch.equal(got, ref), (s, int((got != ref).any(dim=1).sum()))


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
def test_knn_measures_same_value_at_any_scale(dtype):
    X, Y = well_separated(100, 8, seed=0), well_separated(100, 6, seed=300)
    for name in ("mutual_knn", "jaccard_knn", "lcs_knn", "edit_distance_knn", "cycle_knn", "cknna"):
        for metric in ("cosine", "ip") if name == "cknna" else ("cosine", "ip", "euclidean"):
            ref = alignkit.measure(name, X.astype(dtype), Y.astype(dtype), metric=metric)
            for s in KNN_SCALES[dtype]:
                got = alignkit.measure(name, (X * s).astype(dtype), (Y * s).astype(dtype), metric=metric)
                tol = 0.0 if name != "cknna" else (2e-6 if dtype == np.float32 else 1e-12)
                assert got == pytest.approx(ref, abs=tol), (name, metric, s)


def test_independent_float32_at_huge_scale_is_not_aligned():
    """Regression: float32 ×1e20 overflowed the row norms, every score tied and mutual kNN read ≈ 1."""
    g = np.random.default_rng(5)
    X, Y = g.standard_normal((400, 16)), g.standard_normal((400, 16))
    base = mutual_knn(X.astype(np.float32), Y.astype(np.float32))
    for s in (1e18, 1e20, 1e30, 1e-30):
        assert mutual_knn((X * s).astype(np.float32), (Y * s).astype(np.float32)) == base < 0.1


def test_faiss_backend_scale_safe():
    """The faiss path searches the same rescaled space: a power-of-two scale gives the identical graph; any
    other finite scale keeps the recall."""
    pytest.importorskip("faiss")
    g = np.random.default_rng(2)
    centers = g.standard_normal((10, 16)) * 4
    X = centers[g.integers(0, 10, 1500)] + g.standard_normal((1500, 16))
    for dtype, big in ((np.float32, 100), (np.float64, 530)):
        for metric in ("cosine", "ip", "euclidean"):
            ref = knn_graph(X.astype(dtype), 10, metric=metric, backend="faiss", recall_sample=300)
            for s in (2.0**-big, 2.0**big):
                got = knn_graph((X * s).astype(dtype), 10, metric=metric, backend="faiss", recall_sample=300)
                assert torch.equal(got.indices, ref.indices) and got.recall == ref.recall, (dtype, metric, s)
            for s in (1e-30, 1e30):
                got = knn_graph((X * s).astype(dtype), 10, metric=metric, backend="faiss", recall_sample=300)
                assert got.recall > ref.recall - 0.05, (dtype, metric, s)


def test_cknna_gram_blocks_and_gathered_pairs_give_the_same_kernel_values(monkeypatch):
    """CKNNA reads kernel values from Gram row blocks up to _GRAM_MAX_ITEMS items, by gathering pairs beyond."""
    import importlib

    knn_mod = importlib.import_module("alignkit.metrics.knn")
    g = np.random.default_rng(5)
    x = g.standard_normal((300, 20))
    y = x @ g.standard_normal((20, 16)) + g.standard_normal((300, 16))
    dense = cknna(x, y, k=12)
    monkeypatch.setattr(knn_mod, "_GRAM_MAX_ITEMS", 0)
    gathered = cknna(x, y, k=12)
    monkeypatch.setattr(knn_mod, "_GRAM_MAX_ITEMS", 8192)
    assert dense == pytest.approx(gathered, abs=1e-12)
    F = torch.as_tensor(x)
    i, j = knn_mod._mutual_pairs(knn_graph(F, 12).indices, knn_graph(torch.as_tensor(y), 12).indices)
    want = (x[i.numpy()] * x[j.numpy()]).sum(1)
    np.testing.assert_allclose(knn_mod._kernel_values(F, i, j).numpy(), want, atol=1e-12)
