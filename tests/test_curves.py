"""Pool-size curves: every pool's score is the measure on that pool; shared kNN work is exact; intervals; errors."""

import numpy as np
import pytest
import torch
from scipy import stats as sps

import alignkit
from alignkit.curves import curve, plot_curve, pool_knn
from alignkit.neighbors import _prepare, exact_topk
from alignkit.stats import permutation_test, permutations
from dense_reference import knn_dense, shared_latent

SIZES = [30, 60, 120, 200]


def _data(rng, n=200):
    X, Y = shared_latent(rng, n=n)
    return X, Y


def _null_seed(seed, r, j):
    return int(np.random.SeedSequence([seed, r, j]).generate_state(1)[0])


@pytest.mark.parametrize("measure", ["mutual_knn?k=5", "cycle_knn?k=5", "lcs_knn?k=4"])
def test_every_pool_is_the_measure_and_its_null_on_that_pool(rng, measure):
    X, Y = _data(rng)
    res = curve(measure, X, Y, SIZES, repeats=3, n_perm=7, seed=4)
    assert res.cost["strategy"] == "shared"
    orders = permutations(200, 3, 4)
    for r in range(3):
        for j, m in enumerate(SIZES):
            rows = np.arange(200) if m == 200 else orders[r][:m].numpy()
            ref = permutation_test(measure, X[rows], Y[rows], n_perm=7, seed=_null_seed(4, 0 if m == 200 else r, j))
            assert res.scores[r, j] == pytest.approx(alignkit.measure(measure, X[rows], Y[rows]), abs=1e-12)
            assert res.scores[r, j] == pytest.approx(ref.score, abs=1e-12)
            assert res.null_mean[r, j] == pytest.approx(ref.null_mean, abs=1e-12)
            assert res.p_value[r, j] == pytest.approx(ref.p_value)
            assert res.adjusted[r, j] == pytest.approx(ref.adjusted, abs=1e-12)


def test_shared_knn_equals_independent_graphs(rng):
    X, Y = _data(rng, n=400)
    sizes = [20, 50, 100, 250, 400]
    shared = curve("mutual_knn?k=10", X, Y, sizes, repeats=4, n_perm=3, seed=1)
    alone = curve("mutual_knn?k=10", X, Y, sizes, repeats=4, n_perm=3, seed=1, share_knn=False)
    assert shared.cost["strategy"] == "shared" and alone.cost["strategy"] == "independent"
    np.testing.assert_array_equal(shared.scores, alone.scores)
    np.testing.assert_array_equal(shared.null_mean, alone.null_mean)
    # the sharing saved work: one base search instead of a search per pool and repeat
    assert shared.cost["base_pairs"] + shared.cost["searched_pairs"] < shared.cost["independent_pairs"]


@pytest.mark.parametrize("metric", ["cosine", "ip", "euclidean"])
@pytest.mark.parametrize("K", [5, 12, 60])
def test_pool_knn_is_exact_for_any_pool_and_candidate_length(rng, metric, K):
    """Pools that are not nested, candidate lists too short for most rows (K = k forces the direct search) or
    long enough for all: always the dense kNN of the pool."""
    X = rng.standard_normal((150, 6))
    k = 5
    work = _prepare(torch.from_numpy(X), metric)
    _, cand = exact_topk(work, work, K, metric, query_ids=torch.arange(150))
    for size in (8, 40, 149):
        pool = torch.from_numpy(rng.permutation(150)[:size])
        got = pool_knn(work, cand, pool, k, metric).numpy()
        want = knn_dense(X[pool.numpy()], k, metric)
        np.testing.assert_array_equal(got, want)  # same neighbours in the same order (no ties in Gaussian data)


def test_pools_below_n_use_a_union_base_or_one_base_per_repeat(rng):
    X, Y = _data(rng, n=300)
    few = curve("mutual_knn?k=5", X, Y, [20, 40, 80], repeats=2, seed=3)
    many = curve("mutual_knn?k=5", X, Y, [20, 40, 80], repeats=40, seed=3)
    assert few.cost["bases"] == 2 and few.cost["base_size"] == 80  # 2·80² < |union|²
    assert many.cost["bases"] == 1 and many.cost["base_size"] > 80  # the union of 40 pools of 80
    orders = permutations(300, 40, 3)
    for res in (few, many):
        for r in (0, res.repeats - 1):
            for j, m in enumerate(res.pool_sizes):
                rows = orders[r][:m].numpy()
                assert res.scores[r, j] == pytest.approx(alignkit.measure("mutual_knn?k=5", X[rows], Y[rows]))


def test_full_pool_scored_once_and_interval_has_zero_width(rng):
    X, Y = _data(rng)
    res = curve("mutual_knn?k=5", X, Y, [50, 200], repeats=4, n_perm=5)
    assert np.all(res.scores[:, 1] == res.scores[0, 1])
    assert res.scores[0, 1] == pytest.approx(alignkit.measure("mutual_knn?k=5", X, Y))
    row = res.to_rows()[1]
    assert row["score_low"] == row["score_high"] == row["score"]


def test_null_mean_near_chance_and_the_score_falls_with_the_pool():
    rng = np.random.default_rng(7)
    X, Y = rng.standard_normal((600, 8)), rng.standard_normal((600, 8))  # independent: chance k/(m − 1)
    res = curve("mutual_knn?k=5", X, Y, [50, 150, 600], repeats=3, n_perm=30, seed=2)
    for j, m in enumerate(res.pool_sizes):
        assert np.nanmean(res.null_mean[:, j]) == pytest.approx(5 / (m - 1), rel=0.15)
        assert np.mean(res.scores[:, j]) == pytest.approx(5 / (m - 1), rel=0.35)
    X, Y = shared_latent(np.random.default_rng(8), n=600, noise=0.8)
    means = [r["score"] for r in curve("mutual_knn?k=5", X, Y, [50, 150, 600], repeats=3).to_rows()]
    assert means[0] > means[1] > means[2]


def test_rows_intervals_against_scipy(rng):
    X, Y = _data(rng)
    res = curve("mutual_knn?k=5", X, Y, SIZES, repeats=5, n_perm=4, seed=9, level=0.9)
    rows = res.to_rows()
    assert [r["pool_size"] for r in rows] == SIZES
    v = res.scores[:, 0]
    half = sps.t.ppf(0.95, 4) * v.std(ddof=1) / np.sqrt(5)
    assert rows[0]["score"] == pytest.approx(v.mean())
    assert (rows[0]["score_low"], rows[0]["score_high"]) == pytest.approx((v.mean() - half, v.mean() + half))
    assert rows[0]["p_value_max"] == pytest.approx(res.p_value[:, 0].max())
    pct = curve("mutual_knn?k=5", X, Y, SIZES, repeats=5, seed=9, level=0.9, interval="percentile").to_rows()
    assert (pct[0]["score_low"], pct[0]["score_high"]) == pytest.approx(tuple(np.quantile(v, [0.05, 0.95])))
    per = res.to_pandas(per_repeat=True)
    assert len(per) == 5 * len(SIZES) and {"repeat", "p_value", "adjusted"} <= set(per.columns)
    assert per.query("pool_size == 30")["score"].to_numpy() == pytest.approx(v)


def test_seeded_and_deterministic(rng):
    X, Y = _data(rng)
    a = curve("mutual_knn?k=5", X, Y, SIZES, repeats=3, n_perm=5, seed=1)
    b = curve("mutual_knn?k=5", X, Y, SIZES, repeats=3, n_perm=5, seed=1)
    c = curve("mutual_knn?k=5", X, Y, SIZES, repeats=3, n_perm=5, seed=2)
    np.testing.assert_array_equal(a.scores, b.scores)
    np.testing.assert_array_equal(a.null_mean, b.null_mean)
    assert not np.array_equal(a.scores[:, :-1], c.scores[:, :-1])


def test_other_measures_and_pool_dependent_preprocessing_score_each_pool(rng):
    X, Y = _data(rng)
    res = curve("cka", X, Y, [40, 100, 200], repeats=2, n_perm=3, seed=5)
    assert res.cost["strategy"] == "independent"
    rows = permutations(200, 2, 5)[1][:40].numpy()
    assert res.scores[1, 0] == pytest.approx(alignkit.measure("cka", X[rows], Y[rows]))
    clipped = curve("mutual_knn?k=5", X, Y, [40, 100, 200], repeats=2, seed=5, clip_quantile=0.9)
    assert clipped.cost["strategy"] == "independent"  # the clipping quantile depends on the pool
    assert clipped.scores[1, 0] == pytest.approx(
        alignkit.measure("mutual_knn?k=5", X[rows], Y[rows], clip_quantile=0.9)
    )
    normed = curve("mutual_knn?k=5&metric=ip", X, Y, [40, 100, 200], repeats=2, seed=5, normalize=True)
    assert normed.cost["strategy"] == "shared"  # row-wise: the same on every pool
    assert normed.scores[1, 0] == pytest.approx(
        alignkit.measure("mutual_knn?k=5&metric=ip", X[rows], Y[rows], normalize=True)
    )


def test_approximate_backend_reports_recall(rng):
    pytest.importorskip("faiss")
    X, Y = _data(rng, n=400)
    res = curve("mutual_knn?k=5&backend=faiss", X, Y, [100, 400], repeats=2)
    assert res.cost["strategy"] == "independent"
    rows = res.to_rows()
    assert {"knn_recall_X", "knn_recall_Y"} <= set(rows[0]) and 0.5 < rows[0]["knn_recall_X"] <= 1.0


def test_duplicates_warn_once_and_are_counted_per_pool(rng):
    X, Y = _data(rng)
    X[100:150], Y[100:150] = X[:50], Y[:50]  # 50 repeated items
    with pytest.warns(alignkit.degenerate.DuplicateRowsWarning) as record:
        res = curve("mutual_knn?k=5", X, Y, [60, 200], repeats=2, n_perm=2)
    assert sum(issubclass(w.category, alignkit.degenerate.DuplicateRowsWarning) for w in record) == 2  # X and Y
    assert res.to_rows()[1]["duplicate_fraction_X"] == pytest.approx(0.25)


def test_plot_is_a_log_x_figure(rng):
    from matplotlib.figure import Figure

    X, Y = _data(rng)
    res = curve("mutual_knn?k=5", X, Y, SIZES, repeats=2, n_perm=3)
    fig = res.plot()
    assert isinstance(fig, Figure) and fig.axes[0].get_xscale() == "log"
    fig2 = plot_curve(res, res, what="adjusted", labels=["a", "b"])
    assert len(fig2.axes[0].get_lines()) == 2
    with pytest.raises(ValueError, match="n_perm"):
        plot_curve(curve("mutual_knn?k=5", X, Y, SIZES, repeats=2), what="adjusted")


@pytest.mark.parametrize(
    ("sizes", "match"),
    [
        ([30, 300], "at most n = 200"),
        ([60, 30, 90], "sorted"),
        ([30, 30, 90], "repeat"),
        ([30], "at least 2"),
        ([5, 30], "more than k = 5"),
        ([1, 30], ">= 2"),
    ],
)
def test_bad_pool_sizes_name_the_argument(rng, sizes, match):
    X, Y = _data(rng)
    with pytest.raises(ValueError, match="pool_sizes") as err:
        curve("mutual_knn?k=5", X, Y, sizes)
    assert match in str(err.value)


def test_other_bad_input(rng):
    X, Y = _data(rng)
    with pytest.raises(TypeError, match="pool_sizes"):
        curve("mutual_knn", X, Y, [30.5, 60])
    with pytest.raises(TypeError, match="pool_sizes"):
        curve("mutual_knn", X, Y, 60)
    with pytest.raises(ValueError, match="repeats"):
        curve("mutual_knn", X, Y, SIZES, repeats=0)
    with pytest.raises(ValueError, match="n_perm"):
        curve("mutual_knn", X, Y, SIZES, n_perm=-1)
    with pytest.raises(ValueError, match="interval"):
        curve("mutual_knn", X, Y, SIZES, interval="bca")
    with pytest.raises(ValueError, match="level"):
        curve("mutual_knn", X, Y, SIZES, level=1.5)
    with pytest.raises(ValueError, match="paired by row"):
        curve("mutual_knn", X, Y[:-1], SIZES[:-1])
    with pytest.raises(TypeError, match="registered measure"):
        curve(lambda a, b: 0.0, X, Y, SIZES)
    with pytest.raises(ValueError, match="k"):
        curve("mutual_knn?k=0", X, Y, SIZES)
