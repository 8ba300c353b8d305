"""Structured nulls (permutations within groups / of whole groups, a user permutation hook), grouped
subsampling intervals, and the Aristotelian calibrated score checked against its published formula."""

import itertools
import warnings

import numpy as np
import pytest
import torch
from scipy import stats as sps

import alignkit
from alignkit.stats import bootstrap_ci, permutation_test, permutations
from alignkit.stats.groups import row_subsets

LAYOUTS = [
    np.repeat(np.arange(10), 4),  # equal groups, sorted
    np.random.default_rng(0).integers(0, 7, 60),  # unequal groups, interleaved
    np.array(["cat", "dog", "cat", "emu", "dog", "cat", "emu", "solo"]),  # strings and a singleton
]


def is_permutation(p, n):
    return p.dtype == torch.int64 and np.array_equal(np.sort(p.numpy()), np.arange(n))


# ------------------------------------------------------------------------------------ the draws


@pytest.mark.parametrize("groups", LAYOUTS)
def test_within_never_moves_an_item_out_of_its_group(groups):
    n = len(groups)
    draws = permutations(n, 30, 3, groups=groups, group_mode="within")
    for p in draws:
        assert is_permutation(p, n)
        assert np.array_equal(groups[p.numpy()], groups)
    assert any(not np.array_equal(p.numpy(), np.arange(n)) for p in draws)


def test_within_draws_are_uniform_inside_each_group():
    """Two groups of 3: each group's 3! arrangements are equally likely, and the two groups independent."""
    groups = np.array([0, 1, 0, 1, 0, 1])
    draws = permutations(6, 3600, 0, groups=groups, group_mode="within")
    keys = [tuple(p.numpy()) for p in draws]
    counts = np.array(list({k: keys.count(k) for k in set(keys)}.values()))
    assert len(counts) == 36  # all 3!·3! joint arrangements occur
    assert sps.chisquare(counts).pvalue > 0.001


def test_blocks_keep_groups_together_and_swap_equal_sizes():
    groups = np.repeat([7, 3, 5, 1, 9], 4)  # labels need not be 0..G-1
    for p in permutations(20, 40, 1, groups=groups, group_mode="blocks"):
        p = p.numpy()
        assert is_permutation(torch.as_tensor(p), 20)
        for g in np.unique(groups):
            rows = np.flatnonzero(groups == g)
            target = groups[p[rows]]
            assert len(set(target)) == 1  # a whole group lands on one group
            assert np.array_equal(p[rows], np.flatnonzero(groups == target[0]))  # in order, all of it
    sigmas = {tuple(groups[p.numpy()][::4]) for p in permutations(20, 40, 1, groups=groups, group_mode="blocks")}
    assert len(sigmas) > 20  # the group-level permutation varies (5! = 120 possible)


def test_blocks_with_unequal_sizes_swap_only_within_a_size_and_warn_about_fixed_groups():
    groups = np.array([0, 0, 1, 1, 2, 2, 2, 3, 3, 3, 4])  # sizes 2, 2, 3, 3, 1
    with pytest.warns(UserWarning, match="1 of 5 groups have a size no other group shares"):
        draws = permutations(11, 50, 0, groups=groups, group_mode="blocks")
    sizes = np.bincount(groups)
    for p in draws:
        moved = groups[p.numpy()]
        assert np.array_equal(sizes[moved], sizes[groups])  # a block only takes the rows of a same-size block
        assert p[10] == 10  # the singleton has no partner
    assert len({tuple(p.numpy()) for p in draws}) == 4  # 2!·2! size-preserving group permutations


@pytest.mark.filterwarnings("ignore:groups.*stay in place")  # unequal groups in blocks mode
def test_draws_are_deterministic_and_the_plain_call_is_unchanged():
    groups = LAYOUTS[1]
    for mode in ("within", "blocks"):
        a = permutations(60, 5, 4, groups=groups, group_mode=mode)
        b = permutations(60, 5, 4, groups=groups, group_mode=mode)
        c = permutations(60, 5, 5, groups=groups, group_mode=mode)
        assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
        assert not all(torch.equal(x, y) for x, y in zip(a, c, strict=True))
    g = torch.Generator().manual_seed(4)
    old = [torch.randperm(60, generator=g) for _ in range(5)]  # the contract atlas and every fast path rely on
    assert all(torch.equal(x, y) for x, y in zip(permutations(60, 5, 4), old, strict=True))


def test_user_permute_hook_is_used_verbatim(rng):
    X, Y = rng.standard_normal((40, 3)), rng.standard_normal((40, 5))
    calls = []

    def reverse_then_shuffle_halves(r, n):  # any structure the user wants: here, within halves
        p = np.concatenate([r.permutation(n // 2), n // 2 + r.permutation(n - n // 2)])
        calls.append(p)
        return p

    res = permutation_test("cka", X, Y, n_perm=6, seed=9, permute=reverse_then_shuffle_halves)
    assert res.permutation == "custom" and len(calls) == 6
    r = np.random.default_rng(9)  # the hook gets one numpy Generator made from the seed, shared by the draws
    for p in calls:
        assert np.array_equal(p, np.concatenate([r.permutation(20), 20 + r.permutation(20)]))
    brute = [alignkit.measure("cka", X, Y[p]) for p in calls]
    np.testing.assert_allclose(res.null, brute, atol=1e-10)


@pytest.mark.parametrize("measure", ["mutual_knn?k=5", "cka", "cka?form=gram"])
@pytest.mark.parametrize("mode", ["within", "blocks"])
def test_grouped_null_draws_equal_recomputation(rng, measure, mode):
    X, Y = rng.standard_normal((48, 6)), rng.standard_normal((48, 7))
    groups = np.repeat(np.arange(12), 4)
    res = permutation_test(measure, X, Y, n_perm=4, seed=2, groups=groups, group_mode=mode)
    brute = [alignkit.measure(measure, X, Y[p.numpy()]) for p in permutations(48, 4, 2, groups=groups, group_mode=mode)]
    np.testing.assert_allclose(res.null, brute, atol=1e-10)
    assert res.permutation == mode and res.as_dict()["permutation"] == mode


# ------------------------------------------------------------------------------------ the nulls


def repeated_rows(g, items=50, copies=4, d=8):
    """Independent X0, Y0 (no alignment at all), each row repeated ``copies`` times, as paired data."""
    X0, Y0 = g.standard_normal((items, d)), g.standard_normal((items, d))
    return np.repeat(X0, copies, axis=0), np.repeat(Y0, copies, axis=0), np.repeat(np.arange(items), copies)


@pytest.mark.filterwarnings("ignore:.*duplicated row")  # the point of the test
def test_repeated_rows_need_the_block_null(rng):
    """With 4 copies of each item, every row's 10 neighbours include its 3 copies in both spaces, so mutual kNN
    is ≥ 3/10 whatever X0 and Y0 are. A full permutation scatters Y's copies, so its null sits near k/(n−1)
    and calls unrelated data significant. Permuting whole items (blocks) keeps the copies together: that
    null carries the same 3/10 and the unrelated data are not significant."""
    X, Y, items = repeated_rows(rng)
    k = 10
    full = permutation_test("mutual_knn", X, Y, n_perm=99, seed=0, k=k)
    blocks = permutation_test("mutual_knn", X, Y, n_perm=99, seed=0, k=k, groups=items, group_mode="blocks")
    assert full.score == blocks.score >= 3 / k
    assert full.null_mean < 0.1  # ≈ k/(n−1) plus the rare kept copy
    assert full.p_value == pytest.approx(1 / 100)  # a false discovery
    assert blocks.null_mean > 0.3 > full.null_mean + 0.2  # centred far above the full null
    assert blocks.p_value > 0.05 and abs(blocks.adjusted) < 0.1
    # within items, Y's rows are identical copies: every draw is the observed data up to which tied copy of
    # the k-th neighbour is kept (exact kNN breaks ties by row order), so the null sits on the score
    within = permutation_test("mutual_knn", X, Y, n_perm=19, seed=0, k=k, groups=items, group_mode="within")
    assert np.abs(within.null - within.score).max() < 0.01 and within.p_value > 0.05


def class_structured(g, n_groups=8, per=5, d=4):
    """X and Y share only the class of each row (a class mean in each space); within a class they are
    independent. The pairing inside a class carries nothing: the within-class null is the true null."""
    groups = np.repeat(np.arange(n_groups), per)
    X = 2 * g.standard_normal((n_groups, d))[groups] + g.standard_normal((len(groups), d))
    Y = 2 * g.standard_normal((n_groups, d))[groups] + g.standard_normal((len(groups), d))
    return X, Y, groups


def test_within_group_p_values_are_uniform_when_only_the_class_is_shared():
    g = np.random.default_rng(2025)
    within, full = [], []
    for _ in range(50):
        X, Y, groups = class_structured(g)
        seed = int(g.integers(1 << 30))
        within.append(permutation_test("cka", X, Y, n_perm=39, seed=seed, groups=groups).p_value)
        full.append(permutation_test("cka", X, Y, n_perm=39, seed=seed).p_value)
    within, full = np.asarray(within), np.asarray(full)
    assert sps.kstest(within, "uniform").pvalue > 0.01
    assert (within <= 0.1).mean() <= 0.25
    assert (full <= 0.05).mean() > 0.8  # the full null mistakes the shared classes for item-level alignment


# ------------------------------------------------------------------------------------ grouped intervals


def test_grouped_bootstrap_never_splits_a_group(rng):
    groups = rng.integers(0, 12, 90)
    groups[:12] = np.arange(12)  # every group present
    ids = np.arange(90, dtype=float)[:, None]
    X = np.hstack([ids, rng.standard_normal((90, 3))])
    seen = []

    def record(a, b):
        seen.append(a[:, 0].numpy().astype(int))
        return float(a[:, 1:].mean() - b[:, 1:].mean())

    res = bootstrap_ci(record, X, X, n_boot=25, seed=3, groups=groups)
    for rows in seen[1:]:  # seen[0] is the full-sample score
        kept = np.unique(groups[rows])
        assert len(kept) == 6  # half of the 12 groups
        assert np.array_equal(np.sort(rows), np.flatnonzero(np.isin(groups, kept)))  # all of each kept group
    assert res.m == round(6 * 90 / 12) and res.n == 90 and res.n_boot == 25
    again = bootstrap_ci(record, X, X, n_boot=25, seed=3, groups=groups)
    np.testing.assert_array_equal(res.samples, again.samples)


def test_grouped_bootstrap_matches_shared_subsets_and_plain_call_is_unchanged(rng):
    X = rng.standard_normal((40, 3))
    Y = X + rng.standard_normal((40, 3))
    groups = np.repeat(np.arange(10), 4)
    res = bootstrap_ci("cka", X, Y, n_boot=8, seed=5, groups=groups)
    m, subsets = row_subsets(40, 20, 8, 5, groups=groups)
    assert m == res.m == 20
    np.testing.assert_allclose(res.samples, [alignkit.measure("cka", X[r], Y[r]) for r in subsets])
    plain = bootstrap_ci("cka", X, Y, n_boot=8, seed=5)
    gen = torch.Generator().manual_seed(5)
    old = [alignkit.measure("cka", X[r], Y[r]) for r in (torch.randperm(40, generator=gen)[:20] for _ in range(8))]
    np.testing.assert_allclose(plain.samples, old)


# ------------------------------------------------------------------------------------ calibrated score


def published_cal(score, null, q, s_max):
    """Aristotelian (Gröger, Wen, Brbić, ICML 2026; calibrated-similarity): τ = the q-quantile of
    null ∪ {score} with linear interpolation between order statistics (numpy's default, Hyndman–Fan
    type 7: position h = (N−1)·q), and the gated score 0 if score ≤ τ, 1 if s_max ≤ τ, else
    (score − τ)/(s_max − τ). Written out without np.quantile."""
    pool = sorted([*null, score])
    h = (len(pool) - 1) * q
    lo = int(np.floor(h))
    hi = min(lo + 1, len(pool) - 1)
    tau = pool[lo] + (h - lo) * (pool[hi] - pool[lo])
    if score <= tau:
        return tau, 0.0
    if s_max <= tau:
        return tau, 1.0
    return tau, (score - tau) / (s_max - tau)


def test_calibrated_by_hand():
    res = alignkit.stats.PermutationResult("m", 0.5, np.array([0.1, 0.2, 0.3, 0.4]), True, 1.0)
    # pool .1 .2 .3 .4 .5, h = 4·0.95 = 3.8: τ = 0.4 + 0.8·0.1 = 0.48
    assert res.threshold == pytest.approx(0.48)
    assert res.calibrated == pytest.approx(0.02 / 0.52)
    assert res.as_dict()["calibrated"] == res.calibrated and res.as_dict()["threshold"] == res.threshold
    below = alignkit.stats.PermutationResult("m", 0.3, np.array([0.1, 0.2, 0.3, 0.4]), True, 1.0)
    assert below.calibrated == 0.0
    unknown = alignkit.stats.PermutationResult("m", 0.5, np.array([0.1, 0.2]), True, None)
    assert np.isnan(unknown.calibrated)
    nan_null = alignkit.stats.PermutationResult("m", 0.5, np.array([0.1, np.nan]), True, 1.0)
    assert np.isnan(nan_null.calibrated)


@pytest.mark.parametrize("noise", [0.3, 1.0, 5.0])
@pytest.mark.parametrize("q", [0.95, 0.9])
def test_calibrated_equals_the_published_formula_on_the_same_null(rng, noise, q):
    Z = rng.standard_normal((120, 5))
    X = Z @ rng.standard_normal((5, 12)) + noise * rng.standard_normal((120, 12))
    Y = Z @ rng.standard_normal((5, 9)) + noise * rng.standard_normal((120, 9))
    for measure in ("cka", "mutual_knn?k=10"):
        res = permutation_test(measure, X, Y, n_perm=57, seed=1, q=q)
        tau, cal = published_cal(res.score, list(res.null), q, 1.0)
        assert res.threshold == pytest.approx(tau, abs=1e-12)
        assert res.calibrated == pytest.approx(cal, abs=1e-12)
        assert 0.0 <= res.calibrated <= 1.0


def test_calibrated_mirrors_for_lower_is_better():
    null = np.array([0.9, 0.7, 0.8, 0.6, 0.75])
    low = alignkit.stats.PermutationResult("dist", 0.2, null, False, 0.0, q=0.9)
    high = alignkit.stats.PermutationResult("neg", -0.2, -null, True, -0.0, q=0.9)
    assert low.threshold == pytest.approx(-high.threshold)
    assert low.calibrated == pytest.approx(high.calibrated) and 0 < low.calibrated < 1
    tau, cal = published_cal(-0.2, list(-null), 0.9, 0.0)
    assert low.calibrated == pytest.approx(cal) and low.threshold == pytest.approx(-tau)


# ------------------------------------------------------------------------------------ bad input


def test_bad_groups_raise_errors_naming_the_argument(rng):
    X, Y = rng.standard_normal((12, 3)), rng.standard_normal((12, 3))
    ok = np.repeat(np.arange(3), 4)
    cases = [
        (dict(groups=ok[:10]), "groups must give one group per row: got 10 labels for 12 rows"),
        (dict(groups=ok.reshape(3, 4)), "groups must be 1-D"),
        (dict(groups=np.where(ok == 1, np.nan, ok)), "groups contain NaN"),
        (dict(groups=[*["a"] * 11, None]), "groups contain None"),
        (dict(groups=np.array([*[1] * 6, *["b"] * 6], dtype=object)), "groups must hold labels of one type"),
        (dict(groups=np.zeros(12)), "groups hold a single group .* pass groups=None"),
        (dict(groups=np.zeros(12), group_mode="blocks"), "groups hold a single group .* identity"),
        (dict(groups=np.arange(12)), "groups are all singletons"),
        (dict(groups=np.repeat([0, 1, 2], [2, 3, 7]), group_mode="blocks"), "no two groups have the same size"),
        (dict(groups=ok, group_mode="rows"), "group_mode must be one of 'within', 'blocks'"),
        (dict(permute="reverse"), "permute must be a function"),
        (dict(permute=lambda r, n: np.arange(n)[::-1], groups=ok), "give groups= or permute=, not both"),
        (dict(permute=lambda r, n: np.zeros(n, dtype=int)), "permute must return a permutation .* repeats"),
        (dict(permute=lambda r, n: np.arange(n - 1)), r"permute must return a permutation .* shape \(11,\)"),
        (dict(permute=lambda r, n: np.arange(n) + 0.0), "permute must return a permutation .* dtype"),
        (dict(permute=lambda r, n: np.arange(n) + 1), "permute must return a permutation .* repeats"),
    ]
    for kw, msg in cases:
        with pytest.raises(ValueError, match=msg):
            permutation_test("cka", X, Y, n_perm=3, **kw)
    with pytest.raises(ValueError, match="groups must give one group per row"):
        permutation_test(lambda a, b: 0.0, X, Y, n_perm=2, groups=ok[:5])  # the generic path checks too
    with pytest.raises(ValueError, match="groups hold a single group"):
        bootstrap_ci("cka", X, Y, n_boot=5, groups=np.ones(12))
    with pytest.raises(ValueError, match="groups must give one group per row"):
        bootstrap_ci("cka", X, Y, n_boot=5, groups=ok[:4])


def test_grouped_null_is_deterministic_through_permutation_test(rng):
    X, Y = rng.standard_normal((30, 4)), rng.standard_normal((30, 4))
    groups = np.tile(["a", "b", "c"], 10)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # equal-size blocks: no warning
        a = permutation_test("mutual_knn?k=3", X, Y, n_perm=7, seed=5, groups=groups, group_mode="blocks")
    b = permutation_test("mutual_knn?k=3", X, Y, n_perm=7, seed=5, groups=groups, group_mode="blocks")
    np.testing.assert_array_equal(a.null, b.null)
    assert list(itertools.islice(a.as_dict(), 3)) == ["measure", "score", "null_mean"]


def test_atlas_grouped_null_is_the_permutation_tests_null_cell_by_cell() -> None:
    rng = np.random.default_rng(5)
    n = 120
    groups = np.repeat(np.arange(30), 4)
    Z = rng.standard_normal((n, 6))
    A = {"l0": Z + 0.3 * rng.standard_normal((n, 6)), "l1": rng.standard_normal((n, 5))}
    B = {"m0": Z @ rng.standard_normal((6, 7)) + 0.3 * rng.standard_normal((n, 7))}
    for mode in ("within", "blocks"):
        res = alignkit.atlas(A, B, "mutual_knn?k=5", n_perm=15, seed=2, groups=groups, group_mode=mode)
        assert res.summary()["permutation"] == mode
        for i, la in enumerate(A):
            direct = alignkit.permutation_test(
                "mutual_knn?k=5", A[la], B["m0"], n_perm=15, seed=2, groups=groups, group_mode=mode
            )
            np.testing.assert_allclose(res.null[:, i, 0], direct.null)
    with pytest.raises(ValueError, match="groups must give one group per row"):
        alignkit.atlas(A, B, "cka", n_perm=5, groups=groups[:-1])
    with pytest.raises(ValueError, match="not both"):
        alignkit.atlas(A, B, "cka", n_perm=5, groups=groups, permute=lambda r, m: r.permutation(m))


def test_atlas_sample_keeps_the_groups_of_the_sampled_rows() -> None:
    rng = np.random.default_rng(6)
    n, m = 200, 120
    groups = np.repeat(np.arange(50), 4)
    X, Y = rng.standard_normal((n, 8)), rng.standard_normal((n, 8))
    res = alignkit.atlas({"x": X}, {"y": Y}, "cka", n_perm=9, seed=4, sample=m, groups=groups, n_boot=4)
    rows = torch.randperm(n, generator=torch.Generator().manual_seed(4))[:m].sort().values.numpy()
    direct = alignkit.permutation_test("cka", X[rows], Y[rows], n_perm=9, seed=4, groups=groups[rows])
    np.testing.assert_allclose(res.null[:, 0, 0], direct.null)
