"""The ranking core against definitional and brute-force references (ties by expectation over random tie-breaks),
chance on degenerate inputs, and the retrieval callers agreeing on one dataset."""

from __future__ import annotations

import importlib
import itertools
import math
import warnings
from fractions import Fraction

import numpy as np
import pytest
import torch
from torch import nn

from alignkit._common import median, optional_import, unit_rows
from alignkit._validation import check_ks
from alignkit.align import Procrustes, VecMap
from alignkit.align.trainer import _val_r1
from alignkit.degenerate import DegenerateSpaceError, DegenerateSpaceWarning
from alignkit.evaluate import retrieval
from alignkit.metrics.retrieval import retrieval_alignment, retrieval_mrr, retrieval_ranks, retrieval_scores
from alignkit.ranking import (
    DIRECTIONS,
    Ranks,
    block_rows,
    direction_names,
    paired_ranks,
    rank_counts,
    rank_summary,
)

# ------------------------------------------------------------------------------------------- references


def ref_counts(S: np.ndarray, gold: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
    """By definition: g = #{j : S_ij > b_i}, t = #{j not gold : S_ij == b_i}, b_i the best gold score."""
    g, t = [], []
    for i, gs in enumerate(gold):
        b = S[i, gs].max()
        others = np.setdiff1d(np.arange(S.shape[1]), gs)
        g.append(int(np.sum(S[i] > b)))
        t.append(int(np.sum(S[i, others] == b)))
    return np.array(g), np.array(t)


def brute_rank_law(scores: list[int], gold: list[int]) -> dict[int, Fraction]:
    """The law of the rank of the best gold item under uniform random tie-breaking, by enumeration: every
    permutation of the candidates breaks ties (sort by score, then by permutation position); the other gold
    items are left out of the candidates (the documented multi-gold rule)."""
    best = max(gold, key=lambda j: scores[j])
    cands = [j for j in range(len(scores)) if j == best or j not in gold]
    law: dict[int, Fraction] = {}
    perms = list(itertools.permutations(range(len(cands))))
    for perm in perms:
        order = sorted(range(len(cands)), key=lambda c: (-scores[cands[c]], perm[c]))
        r = 1 + [cands[c] for c in order].index(best)
        law[r] = law.get(r, Fraction(0)) + Fraction(1, len(perms))
    return law


def int_data(rng: np.random.Generator, m: int, n: int, d: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Small-integer rows: products are exact, so many exact ties."""
    return rng.integers(-2, 3, size=(m, d)).astype(np.float64), rng.integers(-2, 3, size=(n, d)).astype(np.float64)


def exact_unit_data(rng: np.random.Generator, m: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows whose unit vectors and cosines are exact in floating point (many exact ties, whatever the summation
    order of the product): a single ±1 (norm 1) or four ±1 entries (norm 2), times 1, 2 or 4. Parallel rows
    whose norms are not powers of two (e.g. (1, 1, 0) and (3, 3, 0)) would become unit vectors that differ in
    the last bit, and a BLAS kernel may round their cosines differently by the row's position in a tile."""

    def rows(k: int) -> np.ndarray:
        out = rng.choice([-1.0, 1.0], size=(k, 4))
        single = rng.random(k) < 0.5
        out[single] = 0.0
        out[single, rng.integers(0, 4, size=int(single.sum()))] = rng.choice([-1.0, 1.0], size=int(single.sum()))
        return out * rng.choice([1.0, 2.0, 4.0], size=(k, 1))

    return rows(m), rows(n)


def padded(gold: list[list[int]]) -> torch.Tensor:
    out = torch.full((len(gold), max(map(len, gold))), -1, dtype=torch.long)
    for i, g in enumerate(gold):
        out[i, : len(g)] = torch.tensor(g)
    return out


def assert_counts(got: Ranks, want: tuple[np.ndarray, np.ndarray]) -> None:
    np.testing.assert_array_equal(got.above.cpu().numpy(), want[0])
    np.testing.assert_array_equal(got.tied.cpu().numpy(), want[1])


def untied_ranks(S: np.ndarray) -> np.ndarray:
    """Plain ranks of the diagonal partners by a stable argsort (continuous data: no ties)."""
    order = np.argsort(-S, axis=1, kind="stable")
    return np.argmax(order == np.arange(S.shape[0])[:, None], axis=1) + 1


# ------------------------------------------------------------------------------------------- rank_counts


@pytest.mark.parametrize("block", [None, 1, 2, 3, 7, 64])
def test_rank_counts_diagonal_gold_match_definition(rng, block):
    Q, G = int_data(rng, 23, 23)
    got = rank_counts(torch.from_numpy(Q), torch.from_numpy(G), block_size=block)
    want = ref_counts(Q @ G.T, [[i] for i in range(23)])
    assert want[1].sum() > 0  # the data has ties
    assert_counts(got, want)


@pytest.mark.parametrize("block", [None, 1, 4, 9, 100])
def test_rank_counts_multiple_gold_match_definition(rng, block):
    m, n = 17, 29
    Q, G = int_data(rng, m, n)
    gold = [sorted(rng.choice(n, size=rng.integers(1, 5), replace=False).tolist()) for _ in range(m)]
    got = rank_counts(torch.from_numpy(Q), torch.from_numpy(G), padded(gold), block_size=block)
    assert_counts(got, ref_counts(Q @ G.T, gold))
    # a 1-D gold tensor is one gold item per query
    single = [g[:1] for g in gold]
    got1 = rank_counts(torch.from_numpy(Q), torch.from_numpy(G), torch.tensor([g[0] for g in gold]), block_size=block)
    assert_counts(got1, ref_counts(Q @ G.T, single))
    # a repeated gold index is one gold item
    twice = rank_counts(torch.from_numpy(Q), torch.from_numpy(G), padded([[g[0], g[0]] for g in gold]))
    assert torch.equal(twice.above, got1.above) and torch.equal(twice.tied, got1.tied)


@pytest.mark.parametrize("block", [None, 2, 5])
def test_rank_counts_offsets_match_definition(rng, block):
    m, n = 13, 19
    Q, G = int_data(rng, m, n)
    u, v = rng.integers(-3, 4, size=m).astype(float), rng.integers(-3, 4, size=n).astype(float)
    gold = [sorted(rng.choice(n, size=2, replace=False).tolist()) for _ in range(m)]
    got = rank_counts(
        torch.from_numpy(Q),
        torch.from_numpy(G),
        padded(gold),
        scale=2.0,
        query_offset=torch.from_numpy(u),
        gallery_offset=torch.from_numpy(v),
        block_size=block,
    )
    assert_counts(got, ref_counts(2 * Q @ G.T - u[:, None] - v[None, :], gold))


def test_expectations_match_brute_force_over_all_tie_breaks(rng):
    """Every per-query number equals its average over all tie-breaking permutations, as exact rationals."""
    for _ in range(60):
        n = int(rng.integers(2, 7))
        S = rng.integers(0, 3, size=(1, n))  # integer scores in {0, 1, 2}: ties are frequent
        gold = sorted(rng.choice(n, size=int(rng.integers(1, 3)), replace=False).tolist())
        law = brute_rank_law(S[0].tolist(), gold)
        r = rank_counts(torch.from_numpy(S.astype(np.float64)), torch.eye(n, dtype=torch.float64), padded([gold]))
        assert float(r.expected()) == float(sum(p * k for k, p in law.items()))
        for k in range(1, n + 1):
            assert float(r.hit_probability(k)) == float(sum(p for j, p in law.items() if j <= k))
        assert float(r.reciprocal()) == pytest.approx(float(sum(p / j for j, p in law.items())), rel=1e-15)


def test_summary_matches_brute_force_on_tied_integer_data(rng):
    m, n, ks = 6, 6, (1, 2, 4)
    Q, G = int_data(rng, m, n, d=2)
    S = (Q @ G.T).astype(int)
    laws = [brute_rank_law(S[i].tolist(), [i]) for i in range(m)]
    got = rank_summary(rank_counts(torch.from_numpy(Q), torch.from_numpy(G)), ks)
    for k in ks:
        assert got[f"R@{k}"] == pytest.approx(float(sum(p for law in laws for j, p in law.items() if j <= k) / m))
    assert got["mrr"] == pytest.approx(float(sum(p / j for law in laws for j, p in law.items()) / m), rel=1e-14)
    means = [float(sum(p * j for j, p in law.items())) for law in laws]
    assert got["mean_rank"] == pytest.approx(np.mean(means)) and got["median_rank"] == np.median(means)


@pytest.mark.parametrize("n", [1, 2, 3, 6, 10, 97, 1000])
def test_all_tied_scores_chance_exactly(n):
    """Every candidate scores the same (g = 0, t = n − 1): R@k = k/n, MRR = H_n/n, mean rank (n + 1)/2."""
    x = torch.ones(n, 4, dtype=torch.float64)
    r = rank_counts(x, x)
    assert r.above.tolist() == [0] * n and r.tied.tolist() == [n - 1] * n
    ks = sorted({1, min(5, n), n})
    s = rank_summary(r, ks)
    for k in ks:
        assert s[f"R@{k}"] == k / n
    assert s["mrr"] == pytest.approx(float(sum(Fraction(1, j) for j in range(1, n + 1)) / n), rel=1e-14)
    assert s["mean_rank"] == (n + 1) / 2 and s["median_rank"] == (n + 1) / 2
    # several gold items: the other gold items are not ties, so a query with w tied gold items scores 1/(n − w + 1)
    if n >= 3:
        two = rank_counts(x[:2], x, torch.tensor([[n - 1, -1], [0, 2]]))
        assert two.tied.tolist() == [n - 1, n - 2]
        assert two.hit_probability(1).tolist() == [1 / n, 1 / (n - 1)]


def test_zero_embeddings_score_chance_everywhere():
    n = 40
    Z = np.random.default_rng(0).normal(size=(n, 8))
    zeros = np.zeros((n, 8))
    h = sum(1 / j for j in range(1, n + 1)) / n
    for X, Y in ((zeros, Z), (Z, zeros), (zeros, zeros)):  # a zero row has cosine 0 with everything
        for sc in retrieval_scores(X, Y, ks=(1, 5)).values():
            assert sc["R@1"] == 1 / n and sc["R@5"] == 5 / n and sc["mean_rank"] == sc["median_rank"] == (n + 1) / 2
            assert sc["mrr"] == pytest.approx(h, rel=1e-14)
    assert torch.equal(retrieval_ranks(zeros, Z), torch.full((n,), (n + 1) / 2, dtype=torch.float64))
    # the registered measures: chance, or NaN where a degenerate-space policy refuses the constant space
    raw = getattr(retrieval_alignment, "__wrapped__", retrieval_alignment)
    assert raw(zeros, Z) == 1 / n and raw(Z, zeros, k=5, direction="both") == 5 / n
    assert raw(zeros, Z, summary="mrr") == pytest.approx(h, rel=1e-14)
    for f, want in ((retrieval_alignment, 1 / n), (retrieval_mrr, h)):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            v = f(zeros, Z)
        assert math.isnan(v) or v == pytest.approx(want, rel=1e-14)
    rows = retrieval(Z, zeros, ks=(1, 10))
    assert {r["metric"]: r["value"] for r in rows if r["direction"] == "q_to_g"} == pytest.approx(
        {"R@1": 1 / n, "R@10": 10 / n, "mrr": sum(1 / j for j in range(1, n + 1)) / n, "median_rank": 20.5,
         "mean_rank": 20.5}, rel=1e-14)  # fmt: skip


def test_aligner_score_of_a_degenerate_fit_is_chance():
    """The issue's case: VecMap fitted on a constant X maps everything to one point; that is not alignment."""
    g = np.random.default_rng(3)
    n = 500
    with pytest.raises(DegenerateSpaceError, match=r"VecMap\.fit: X is degenerate"):
        VecMap().fit(np.ones((n, 16)), g.normal(size=(n, 16)))
    model = VecMap().fit(g.normal(size=(n, 16)), g.normal(size=(n, 16)))
    with pytest.warns(DegenerateSpaceWarning):
        score = model.score(np.ones((n, 16)), g.normal(size=(n, 16)))  # every query maps to one point
    assert score == pytest.approx(1 / n)  # was 1.0 when ties counted as hits; chance is 1/n
    val = _val_r1([nn.Identity(), nn.Identity()], [torch.zeros(n, 16), torch.from_numpy(g.normal(size=(n, 16)))],
                  None, torch.device("cpu"), torch.float64)  # fmt: skip
    assert val == 1 / n


def test_paired_ranks_untied_equal_plain_ranks(rng):
    """Without ties every number is the plain (strict) one, bit for bit."""
    X = rng.normal(size=(70, 6))
    Y = X + 0.8 * rng.normal(size=(70, 6))
    r = paired_ranks(X, Y, metric="ip", block_size=9)["x_to_y"]
    plain = untied_ranks(X @ Y.T)
    assert int(r.tied.sum()) == 0
    np.testing.assert_array_equal(r.expected().numpy(), plain)
    assert rank_summary(r, (1, 5, 10)) == rank_summary(torch.from_numpy(plain), (1, 5, 10))
    a = plain.astype(float)
    want = {"R@1": np.mean(a <= 1), "R@5": np.mean(a <= 5), "R@10": np.mean(a <= 10), "mrr": np.mean(1.0 / a),
            "median_rank": np.median(a), "mean_rank": np.mean(a)}  # fmt: skip
    assert rank_summary(r, (1, 5, 10)) == want


@pytest.mark.parametrize("metric", ["cosine", "ip", "euclidean"])
@pytest.mark.parametrize("direction", DIRECTIONS)
def test_paired_ranks_both_directions_match_definition(rng, metric, direction):
    n = 21
    X, Y = exact_unit_data(rng, n, n) if metric == "cosine" else int_data(rng, n, n)
    X[3] = X[4] = 0.0  # zero rows stay zero under cosine (all scores 0: tied)

    def scores(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        if metric == "cosine":
            a, b = (unit_rows(torch.from_numpy(t)).numpy() for t in (a, b))
        if metric == "euclidean":
            return -((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)  # integer data: exact, same ties
        return a @ b.T

    diag = [[i] for i in range(n)]
    ref = {"x_to_y": ref_counts(scores(X, Y), diag), "y_to_x": ref_counts(scores(Y, X), diag)}
    got = paired_ranks(X, Y, metric=metric, direction=direction, block_size=4)
    want = ["x_to_y", "y_to_x"] if direction == "both" else [direction]
    assert list(got) == want
    for name in want:
        assert_counts(got[name], ref[name])


def test_ranks_do_not_depend_on_block_size(rng):
    Q, G = int_data(rng, 40, 55)
    gold = padded([[i, (i * 7) % 55] for i in range(40)])
    ref = rank_counts(torch.from_numpy(Q), torch.from_numpy(G), gold)
    assert int(ref.tied.sum()) > 0
    for b in (1, 3, 16, 39, 40, 1000):
        got = rank_counts(torch.from_numpy(Q), torch.from_numpy(G), gold, block_size=b)
        assert torch.equal(got.above, ref.above) and torch.equal(got.tied, ref.tied)
    for b in (1, 7, 21):
        X, Y = exact_unit_data(rng, 21, 21)  # paired_ranks ranks cosines by default
        assert rank_summary(paired_ranks(X, Y, block_size=b)["x_to_y"], (1, 3)) == rank_summary(
            paired_ranks(X, Y)["x_to_y"], (1, 3)
        )


def test_identical_gallery_rows_tie_exactly_wherever_they_sit():
    """Copies of one gallery row score exactly alike (each distinct row is multiplied once), so a query whose gold
    item has copies ties with all of them, whichever tile of the product they fall in."""
    rng = np.random.default_rng(7)
    base = rng.standard_normal((5, 37))
    G = base[rng.integers(0, 5, size=203)]  # 203 rows, 5 distinct, copies scattered across the product's tiles
    Q = rng.standard_normal((19, 37))
    gold = rng.integers(0, 203, size=19)
    copies = np.array([int((G == G[g]).all(axis=1).sum()) for g in gold])
    for block in (None, 3, 19):
        r = rank_counts(torch.from_numpy(Q), torch.from_numpy(G), torch.from_numpy(gold), block_size=block)
        np.testing.assert_array_equal(r.tied.numpy(), copies - 1)


def test_bad_arguments():
    x = torch.zeros(4, 2, dtype=torch.float64)
    for bad in (0, -1, True, 2.5, "3"):
        with pytest.raises(ValueError, match="block_size must be a positive integer"):
            rank_counts(x, x, block_size=bad)
    with pytest.raises(ValueError, match="4 queries and 3 items"):
        rank_counts(x, x[:3])
    with pytest.raises(ValueError, match="one row per query"):
        rank_counts(x, x, torch.zeros(3, 1, dtype=torch.long))
    with pytest.raises(ValueError, match="at least one gold index"):
        rank_counts(x[:2], x, torch.tensor([[0, 1], [-1, -1]]))
    with pytest.raises(ValueError, match="direction must be one of 'x_to_y', 'y_to_x', 'both'"):
        paired_ranks(x, x, direction="a->b")
    with pytest.raises(ValueError, match="metric must be one of"):
        paired_ranks(x, x, metric="l1")
    with pytest.raises(ValueError, match="same dimension"):
        paired_ranks(x, x[:, :1])
    with pytest.raises(ValueError, match="NaN"):
        paired_ranks(x, torch.full((4, 2), float("nan")))
    with pytest.raises(ValueError, match="whole numbers"):
        rank_summary(torch.tensor([1.0, 2.5]), (1,))
    with pytest.raises(ValueError, match="ranks start at 1"):
        rank_summary(torch.tensor([0, 2]), (1,))
    assert block_rows(1000, None) == 64 * 2**20 // 8000 and block_rows(10, 3) == 3


# ---------------------------------------------------------------------------------------------- summary


@pytest.mark.parametrize("m", [1, 2, 7, 10])
def test_rank_summary_matches_numpy(rng, m):
    r = torch.from_numpy(rng.integers(1, 9, size=m))
    s = rank_summary(r, (1, 3), prefix="top")
    a = r.numpy().astype(float)
    assert list(s) == ["top1", "top3", "mrr", "median_rank", "mean_rank"]
    assert s["top1"] == np.mean(a <= 1) and s["top3"] == np.mean(a <= 3)
    assert s["mrr"] == np.mean(1.0 / a) and s["mean_rank"] == np.mean(a) and s["median_rank"] == np.median(a)


def test_shared_primitives():
    v = torch.tensor([4.0, 1.0, 3.0, 2.0])
    assert float(median(v)) == 2.5 and float(median(v[:3])) == 3.0 and float(median(v.view(2, 2))) == 2.5
    with pytest.raises(ValueError, match="empty"):
        median(torch.empty(0))
    u = unit_rows(torch.tensor([[3.0, 4.0], [0.0, 0.0]], dtype=torch.float32))
    assert u.dtype == torch.float32 and torch.equal(u, torch.tensor([[0.6, 0.8], [0.0, 0.0]]))
    assert check_ks(5, 5) == [5] and check_ks((1, np.int64(2)), 5) == [1, 2]
    with pytest.raises(ValueError, match="k must be between 1 and n = 5, the size of the gallery"):
        check_ks((1, 6), 5)
    with pytest.raises(TypeError, match="k must be an integer"):
        check_ks((True,), 5)
    with pytest.raises(ValueError, match="at least one k"):
        check_ks((), 5)
    assert optional_import("json").dumps([1]) == "[1]"
    with pytest.raises(ImportError, match=r"pip install no-such-pkg  \(or: pip install 'alignkit\[extra1\]'\)"):
        optional_import("no_such_module_xyz", "extra1", what="a feature", package="no-such-pkg")
    assert direction_names("q", "g") == {"x_to_y": "q_to_g", "y_to_x": "g_to_q"}


# --------------------------------------------------------------------------------- the four callers agree


def _tied_pairs(rng: np.random.Generator, n: int = 60, d: int = 5) -> tuple[np.ndarray, np.ndarray]:
    X = rng.normal(size=(n, d))
    Y = X @ np.linalg.qr(rng.normal(size=(d, d)))[0] + 0.8 * rng.normal(size=(n, d))
    X[:10], Y[:10] = X[10:20], Y[10:20]  # duplicated pairs: exact ties with the duplicate's partner
    return X, Y


def test_all_callers_give_identical_numbers(rng):
    X, Y = _tied_pairs(rng)
    model = Procrustes().fit(X[20:], Y[20:])
    zx, zy = model.transform_x(X), model.transform_y(Y)
    ks = (1, 5, 10)

    scores = retrieval_scores(zx, zy, ks=ks)
    rows = retrieval(zx, zy, ks=ks)
    names = direction_names("q", "g")
    for direction, label in names.items():
        from_rows = {r["metric"]: r["value"] for r in rows if r["direction"] == label}
        assert from_rows == scores[direction]  # exact: one rank function, one summary
    r1 = scores["x_to_y"]["R@1"]
    assert 0.0 < r1 < 1.0
    assert model.score(X, Y) == r1
    val = _val_r1([nn.Identity(), nn.Identity()], [torch.from_numpy(zx), torch.from_numpy(zy)], None,
                  torch.device("cpu"), torch.float64)  # fmt: skip
    assert val == r1
    assert retrieval_alignment(zx, zy, k=5) == scores["x_to_y"]["R@5"]
    assert retrieval_mrr(zx, zy, direction="y_to_x") == scores["y_to_x"]["mrr"]
    # the duplicated pairs tie with each other's partner: each such query has a tie, counted by expectation
    ranks = paired_ranks(zx, zy)["x_to_y"]
    assert bool((ranks.tied[:20] >= 1).all())
    assert torch.equal(ranks.expected()[:10], ranks.expected()[10:20])
    assert float(ranks.hit_probability(1)[:20].max()) <= 0.5 < float(ranks.hit_probability(1)[20:].max())


def test_csls_and_multi_gold_go_through_the_core(rng):
    er = importlib.import_module("alignkit.evaluate.retrieval")
    q, g = rng.normal(size=(12, 4)), rng.normal(size=(15, 4))
    gold = [[i, (i + 3) % 15] for i in range(12)]
    rows = retrieval(q, g, ks=(1, 3), scoring="csls", csls_k=3, gold=gold, block_size=5)
    Q, G = unit_rows(torch.from_numpy(q)), unit_rows(torch.from_numpy(g))
    rq, rg = er.csls_radius(Q, G, 3), er.csls_radius(G, Q, 3)
    S = (2 * Q @ G.T - rq[:, None] - rg[None, :]).numpy()
    g, t = ref_counts(S, gold)
    assert t.sum() == 0  # continuous data: the expected numbers are the plain ones
    want = rank_summary(torch.from_numpy(g + 1), (1, 3))
    assert {r["metric"]: r["value"] for r in rows if r["direction"] == "q_to_g"} == pytest.approx(want)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_core_on_cuda_matches_cpu(rng):
    Q, G = int_data(rng, 300, 400, d=8)
    gold = padded([[i, (i * 5) % 400] for i in range(300)])
    u, v = torch.from_numpy(rng.integers(-3, 4, size=300).astype(float)), torch.from_numpy(rng.normal(size=400))
    kw = {"scale": 2.0, "block_size": 37}
    cpu = rank_counts(torch.from_numpy(Q), torch.from_numpy(G), gold, query_offset=u, gallery_offset=v, **kw)
    gpu = rank_counts(torch.from_numpy(Q).cuda(), torch.from_numpy(G).cuda(), gold.cuda(), query_offset=u.cuda(),
                      gallery_offset=v.cuda(), **kw)  # fmt: skip
    assert gpu.above.device.type == "cuda" and gpu.tied.device.type == "cuda"
    assert torch.equal(gpu.above.cpu(), cpu.above) and torch.equal(gpu.tied.cpu(), cpu.tied)  # integer data: exact
    assert int(cpu.tied.sum()) > 0
    for b in (1, 64, None):  # blocked on the device = unblocked on the CPU
        again = rank_counts(torch.from_numpy(Q).cuda(), torch.from_numpy(G).cuda(), gold.cuda(), block_size=b)
        plain = rank_counts(torch.from_numpy(Q), torch.from_numpy(G), gold)
        assert torch.equal(again.above.cpu(), plain.above) and torch.equal(again.tied.cpu(), plain.tied)
    assert rank_summary(gpu, (1, 5)) == rank_summary(cpu, (1, 5))
    z = torch.zeros(300, 8, dtype=torch.float64, device="cuda")  # all tied on the device: chance
    assert rank_summary(paired_ranks(z, torch.from_numpy(G[:300]).cuda())["x_to_y"], (1,))["R@1"] == 1 / 300
    X, Y = _tied_pairs(rng, n=500)
    for metric in ("cosine", "ip", "euclidean"):
        c = paired_ranks(X, Y, metric=metric, direction="both")
        d = paired_ranks(torch.from_numpy(X).cuda(), torch.from_numpy(Y).cuda(), metric=metric, direction="both")
        for name in c:
            assert d[name].above.device.type == "cuda"
            # float64 round-off may break a near-tie (or a duplicate's tie) differently on the device
            assert (d[name].expected().cpu() - c[name].expected()).abs().max() <= 1
            assert rank_summary(d[name], (1, 5)) == pytest.approx(rank_summary(c[name], (1, 5)), abs=2 / 500)
