"""Evaluation protocols: hand-computed cases (with ties, ranked by expectation), dense references, chance on
degenerate inputs, baselines and bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.stats import t as student_t

from alignkit.evaluate import (
    bli,
    class_prototypes,
    linear_probe,
    retrieval,
    summarize,
    to_pandas,
    translation,
    zero_shot,
)
from alignkit.evaluate.translation import candidate_batches
from alignkit.space import Space


def pick(rows, metric, **where):
    """The value of the one row with this metric and these fields."""
    hits = [r for r in rows if r["metric"] == metric and all(r.get(k) == v for k, v in where.items())]
    assert len(hits) == 1, (metric, where, hits)
    return hits[0]["value"]


# ---------------------------------------------------------------- dense references written for the tests


def unit(a):
    a = np.asarray(a, dtype=np.float64)
    return a / np.linalg.norm(a, axis=1, keepdims=True)


def dense_scores(q, g, csls_k=None, g_radius_base=None):
    """Cosine, or CSLS 2cos − r_q − r_g with r = mean of the K largest cosines to the other space."""
    Q, G = unit(q), unit(g)
    C = Q @ G.T
    if csls_k is None:
        return C
    r_q = np.sort(C, axis=1)[:, ::-1][:, :csls_k].mean(axis=1)
    base = Q if g_radius_base is None else unit(g_radius_base)
    r_g = np.sort(G @ base.T, axis=1)[:, ::-1][:, :csls_k].mean(axis=1)
    return 2 * C - r_q[:, None] - r_g[None, :]


def dense_ranks(S, gold):
    """1 + #{j : S_ij > max_{g in gold_i} S_ig}: the rank when there are no ties (continuous data)."""
    return np.array([1 + np.sum(S[i] > max(S[i, list(gs)])) for i, gs in enumerate(gold)])


# ---------------------------------------------------------------- retrieval


def test_retrieval_hand_case_with_ties():
    # Cosines are exact 0/1, so the ties below are exact.
    q = np.array([[5.0, 0.0], [1.0, 0.0], [0.0, 2.0]])
    g = np.array([[0.0, 1.0], [3.0, 0.0], [1.0, 0.0]])
    rows = retrieval(q, g, ks=(1, 2), method="toy", seed=3)
    # Ties are broken at random and counted by expectation: a gold item below g others and tied with t has
    # rank uniform on {g+1, …, g+t+1}.
    # q→g: q0 scores [0,1,1], gold g0 → rank 3; q1 [1,1,0], gold g1 tied with g0 → 1 or 2; q2 [1,0,0], gold
    # g2 = 0 below g0, tied with g1 → 2 or 3.  g→q: g0 [0,0,1], gold q0 below q2, tied with q1 → 2 or 3;
    # g1 [1,1,0], gold q1 tied with q0 → 1 or 2; g2 [1,1,0], gold q2 = 0 → 3.
    for d in ("q_to_g", "g_to_q"):
        assert pick(rows, "R@1", direction=d) == pytest.approx(1 / 6)  # (0 + 1/2 + 0)/3
        assert pick(rows, "R@2", direction=d) == pytest.approx(1 / 2)  # (0 + 1 + 1/2)/3
        assert pick(rows, "mrr", direction=d) == pytest.approx(1 / 2)  # (1/3 + (1 + 1/2)/2 + (1/2 + 1/3)/2)/3
        assert pick(rows, "median_rank", direction=d) == 2.5  # of 3, 1.5, 2.5
        assert pick(rows, "mean_rank", direction=d) == pytest.approx(7 / 3)
    assert all(r["method"] == "toy" and r["seed"] == 3 and r["scoring"] == "nn" for r in rows)
    assert {r["n_queries"] for r in rows} == {3}


@pytest.mark.parametrize("scoring", ["nn", "csls"])
def test_retrieval_all_tied_is_chance(scoring):
    """A constant output ties every candidate: exactly chance, never 1.0 (ties are not hits)."""
    n = 4
    x = np.ones((n, 3))
    for q, g in ((x, x), (np.random.default_rng(0).normal(size=(n, 3)), np.zeros((n, 3)))):
        rows = retrieval(q, g, ks=(1, 2), scoring=scoring, csls_k=2)
        for d in ("q_to_g", "g_to_q"):
            assert pick(rows, "R@1", direction=d) == 1 / n
            assert pick(rows, "R@2", direction=d) == 2 / n
            assert pick(rows, "mrr", direction=d) == pytest.approx((1 + 1 / 2 + 1 / 3 + 1 / 4) / n, rel=1e-14)
            assert pick(rows, "mean_rank", direction=d) == pick(rows, "median_rank", direction=d) == (n + 1) / 2
    # several gold items: the best one counts, the others are not ties (here 2 gold of 4 → rank 1, 2 or 3)
    rows = retrieval(x[:1], x, ks=(1,), gold=[{0, 1}])
    assert pick(rows, "R@1", direction="q_to_g") == pytest.approx(1 / 3)
    assert pick(rows, "mean_rank", direction="q_to_g") == 2.0


def test_retrieval_multiple_gold():
    q = np.array([[1.0, 0.0], [0.0, 1.0]])
    g = np.array([[-1.0, 0.0], [0.6, 0.8], [1.0, 0.0], [0.0, 1.0], [0.0, -1.0]])
    rows = retrieval(q, g, ks=(1, 2), gold=[{0, 1}, [2, 3]])
    # q0: scores [-1, .6, 1, 0, 0], best gold g1 = .6 → rank 2.  q1: [0, .8, 0, 1, -1], gold g3 = 1 → rank 1.
    assert pick(rows, "R@1", direction="q_to_g") == 0.5
    assert pick(rows, "mean_rank", direction="q_to_g") == 1.5
    # g→q (g4 is nobody's gold and is left out): g0 [-1, 0] gold q0 → 2; g1 [.6, .8] gold q0 → 2;
    # g2 [1, 0] gold q1 → 2; g3 [0, 1] gold q1 → 1.
    assert pick(rows, "R@1", direction="g_to_q") == 0.25
    assert pick(rows, "mean_rank", direction="g_to_q") == 1.75
    assert pick(rows, "median_rank", direction="g_to_q") == 2.0
    assert {r["n_queries"] for r in rows if r["direction"] == "g_to_q"} == {4}
    assert {r["n_gallery"] for r in rows if r["direction"] == "q_to_g"} == {5}


@pytest.mark.parametrize("scoring", ["nn", "csls"])
def test_retrieval_matches_dense_formula(rng, scoring):
    m, n, d, K = 30, 40, 6, 4
    q, g = rng.normal(size=(m, d)), rng.normal(size=(n, d))
    gold = [set(rng.choice(n, size=rng.integers(1, 4), replace=False).tolist()) for _ in range(m)]
    rows = retrieval(q, g, ks=(1, 5, 10), scoring=scoring, csls_k=K, gold=gold, block_size=7)
    S = dense_scores(q, g, K if scoring == "csls" else None)
    fwd = dense_ranks(S, gold)
    inv = [{i for i in range(m) if j in gold[i]} for j in range(n)]
    keep = [j for j in range(n) if inv[j]]
    rev = dense_ranks(S.T[keep], [inv[j] for j in keep])
    for d_, r in (("q_to_g", fwd), ("g_to_q", rev)):
        for k in (1, 5, 10):
            assert pick(rows, f"R@{k}", direction=d_) == pytest.approx(np.mean(r <= k))
        assert pick(rows, "mrr", direction=d_) == pytest.approx(np.mean(1 / r))
        assert pick(rows, "mean_rank", direction=d_) == pytest.approx(np.mean(r))
        assert pick(rows, "median_rank", direction=d_) == pytest.approx(np.median(r))


def test_csls_changes_ranks_against_a_hub():
    # g0 is a hub (close to every query): NN gives it query 0's top spot; CSLS penalises it.
    q = np.array([[1.0, 0.1, 0.0], [0.0, 0.1, 1.0], [0.7, 0.1, 0.7]])
    g = np.array([[0.5, 1.0, 0.5], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    gold = [{1}, {2}, {0}]
    nn = retrieval(q, g, ks=(1,), gold=gold, scoring="nn")
    csls = retrieval(q, g, ks=(1,), gold=gold, scoring="csls", csls_k=2)
    assert pick(nn, "R@1", direction="q_to_g") == pytest.approx(np.mean(dense_ranks(dense_scores(q, g), gold) == 1))
    assert pick(csls, "R@1", direction="q_to_g") == pytest.approx(
        np.mean(dense_ranks(dense_scores(q, g, 2), gold) == 1)
    )
    assert pick(nn, "R@1", direction="q_to_g") == pytest.approx(2 / 3)
    assert pick(csls, "R@1", direction="q_to_g") == 1.0
    assert {r["csls_k"] for r in csls} == {2}


@pytest.mark.parametrize("scoring", ["nn", "csls"])
def test_retrieval_invariant_to_rotation_scale_and_pair_order(rng, scoring):
    q, g = rng.normal(size=(25, 5)), rng.normal(size=(25, 5))
    Rot, _ = np.linalg.qr(rng.normal(size=(5, 5)))
    perm = rng.permutation(25)
    base = retrieval(q, g, ks=(1, 5), scoring=scoring, csls_k=3)
    moved = retrieval(
        (q @ Rot * rng.uniform(0.1, 9.0, size=(25, 1)))[perm], (g @ Rot)[perm], ks=(1, 5), scoring=scoring, csls_k=3
    )
    for a, b in zip(base, moved, strict=True):
        assert a["metric"] == b["metric"] and a["value"] == pytest.approx(b["value"])


def test_retrieval_accepts_space_and_torch():
    x = np.random.default_rng(0).normal(size=(6, 3))
    s = Space(x, [str(i) for i in range(6)])
    a = retrieval(s, torch.from_numpy(x.copy()), ks=(1,))
    assert pick(a, "R@1", direction="q_to_g") == 1.0


def test_retrieval_bad_input():
    x = np.random.default_rng(0).normal(size=(5, 3))
    with pytest.raises(ValueError, match="paired by row"):
        retrieval(x, x[:4])
    bad = x.copy()
    bad[1, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        retrieval(bad, x)
    with pytest.raises(ValueError, match=r"k must be between 1 and n = 5, the size of the gallery \(g\)"):
        retrieval(x, x, ks=(1, 6))
    with pytest.raises(ValueError, match="scoring must be one of"):
        retrieval(x, x, scoring="cosine")
    with pytest.raises(ValueError, match="same dimension"):
        retrieval(x, x[:, :2])
    with pytest.raises(ValueError, match="csls_k"):
        retrieval(x, x, ks=(1,), scoring="csls", csls_k=9)
    with pytest.raises(ValueError, match="gold\\[1\\] is empty"):
        retrieval(x[:2], x, ks=(1,), gold=[{0}, set()])
    with pytest.raises(ValueError, match="outside the gallery"):
        retrieval(x[:2], x, ks=(1,), gold=[{0}, {5}])
    with pytest.raises(ValueError, match="set by the evaluation"):
        retrieval(x, x, ks=(1,), direction="mine")


# ---------------------------------------------------------------- zero-shot


def test_class_prototypes_formula(rng):
    e = rng.normal(size=(6, 4)) * rng.uniform(0.5, 3.0, size=(6, 1))
    protos = class_prototypes(e, templates_per_class=3).numpy()
    want = unit(np.stack([unit(e[:3]).mean(0), unit(e[3:]).mean(0)]))
    np.testing.assert_allclose(protos, want, atol=1e-12)


def test_zero_shot_hand_case_with_heldout():
    P = np.eye(6)
    imgs = np.array([P[4] + 2 * P[0], P[5], P[0], P[1]])
    labels = np.array([4, 5, 0, 0])
    rows = zero_shot(imgs, P, labels, heldout_classes=[4, 5], method="m")
    assert pick(rows, "top1") == 0.5
    # the misses: image 0 ranks 2; image 3 scores class 1 above its class 0, which ties with classes 2-5, so
    # its rank is uniform on {2, …, 6} and it is in the top 5 with probability 4/5 (ties are not hits)
    assert pick(rows, "top5") == pytest.approx((3 + 4 / 5) / 4)
    assert pick(rows, "class_top1", **{"class": 0}) == 0.5
    assert pick(rows, "class_top1", **{"class": 4}) == 0.0
    assert pick(rows, "class_top1", **{"class": 5}) == 1.0
    assert pick(rows, "mean_class_top1") == 0.5
    assert pick(rows, "heldout_top1_among_all") == 0.5
    assert pick(rows, "heldout_top1_among_heldout") == 1.0
    assert all(r["method"] == "m" for r in rows)


def test_zero_shot_perfect_and_shuffled(rng):
    C, T, d, n = 8, 3, 16, 1600
    means = np.eye(d)[:C]
    text = np.repeat(means, T, axis=0) + 0.05 * rng.normal(size=(C * T, d))
    y = rng.integers(0, C, size=n)
    imgs = means[y] + 0.1 * rng.normal(size=(n, d))
    rows = zero_shot(imgs, text, y, templates_per_class=T)
    assert pick(rows, "top1") == 1.0
    assert pick(rows, "mean_class_top1") == 1.0
    shuffled = zero_shot(imgs, text, rng.permutation(y), templates_per_class=T)
    assert abs(pick(shuffled, "top1") - 1 / C) < 0.04
    assert abs(pick(shuffled, "top5") - 5 / C) < 0.06


def test_zero_shot_all_zero_images_score_chance(rng):
    C, n = 10, 1000
    text = rng.normal(size=(3 * C, 16))
    y = np.arange(n) % C
    rows = zero_shot(np.zeros((n, 16)), text, y, templates_per_class=3, heldout_classes=[0, 1, 2, 3])
    assert pick(rows, "top1") == 1 / C and pick(rows, "top5") == 5 / C and pick(rows, "mean_class_top1") == 1 / C
    assert pick(rows, "class_top1", **{"class": 7}) == 1 / C
    assert pick(rows, "heldout_top1_among_all") == 1 / C
    assert pick(rows, "heldout_top1_among_heldout") == 1 / 4
    # all prototypes equal: every image ties all classes
    same = zero_shot(rng.normal(size=(n, 16)), np.ones((C, 16)), y)
    assert pick(same, "top1") == 1 / C


def test_zero_shot_bad_input():
    P = np.eye(4)
    with pytest.raises(ValueError, match="must lie in"):
        zero_shot(P, P, [0, 1, 2, 4])
    with pytest.raises(ValueError, match="3 entries but there are 4"):
        zero_shot(P, P, [0, 1, 2])
    with pytest.raises(ValueError, match="multiple of templates_per_class"):
        zero_shot(P, P, [0, 0, 0, 0], templates_per_class=3)
    with pytest.raises(ValueError, match="heldout_classes"):
        zero_shot(P, P, [0, 1, 2, 3], heldout_classes=[7])
    with pytest.raises(TypeError, match="integer class indices"):
        zero_shot(P, P, [0.0, 1.0, 2.0, 3.0])


# ---------------------------------------------------------------- BLI


def test_bli_coverage_arithmetic():
    e = np.eye(4)
    tgt = np.array([e[0], e[1], e[2], e[3], e[1] + e[2]])
    src = np.array([e[0], e[2], e[0] + 0.1 * e[3], e[1], e[3], e[1]])
    # Test words: keys 0,1,2 covered; 3 has no translation in the target vocabulary; 5 is beyond
    # n_src_vocab; plus 2 words the caller could not map (n_oov). 3 covered of 7.
    gold = {0: {0}, 1: {1, 2}, 2: {3}, 3: set(), 5: {4}}
    rows = bli(src, tgt, gold, ks=(1, 2), scoring="nn", n_src_vocab=5, n_oov=2, method="procrustes")
    assert pick(rows, "coverage") == pytest.approx(3 / 7)
    # src0 → t0 hit; src1 → t2, a second gold translation: hit; src2 → t0 first, its gold t3 second.
    assert pick(rows, "P@1", subset="covered") == pytest.approx(2 / 3)
    assert pick(rows, "P@1", subset="strict") == pytest.approx(2 / 7)
    assert pick(rows, "P@2", subset="covered") == pytest.approx(1.0)
    assert pick(rows, "P@2", subset="strict") == pytest.approx(3 / 7)
    assert {r["n_retrieval_vocab"] for r in rows} == {5}
    assert {r["n_src_vocab"] for r in rows} == {5}
    assert {r["n_test_words"] for r in rows} == {7}
    assert all(r["method"] == "procrustes" for r in rows)


def test_bli_csls_matches_dense_formula(rng):
    n_s, n_t, d, V, K = 25, 18, 5, 15, 3
    src, tgt = rng.normal(size=(n_s, d)), rng.normal(size=(n_t, d))
    gold = {i: set(rng.choice(n_t, size=rng.integers(1, 3), replace=False).tolist()) for i in range(0, V, 2)}
    rows = bli(src, tgt, gold, ks=(1, 5), scoring=("nn", "csls"), csls_k=K, n_src_vocab=V)
    keys = sorted(gold)
    for scoring in ("nn", "csls"):
        S = dense_scores(src[keys], tgt, K if scoring == "csls" else None, g_radius_base=src[:V])
        r = dense_ranks(S, [gold[k] for k in keys])
        for k in (1, 5):
            assert pick(rows, f"P@{k}", scoring=scoring, subset="covered") == pytest.approx(np.mean(r <= k))
    assert pick(rows, "coverage") == 1.0


@pytest.mark.parametrize("scoring", ["nn", "csls"])
def test_bli_degenerate_embeddings_score_chance(rng, scoring):
    n_s, n_t, d = 30, 50, 8
    gold = {i: {i} for i in range(n_s)}
    tgt = rng.normal(size=(n_t, d))
    zero = bli(np.zeros((n_s, d)), tgt, gold, ks=(1, 5), scoring=scoring, csls_k=3)  # every score tied
    assert pick(zero, "P@1", subset="covered") == pytest.approx(1 / n_t, rel=1e-14)
    assert pick(zero, "P@5", subset="covered") == pytest.approx(5 / n_t, rel=1e-14)
    assert pick(zero, "P@1", subset="strict") == pytest.approx(1 / n_t, rel=1e-14)
    # a constant (nonzero) source ranks every word's candidates the same way: one word can be first
    const = bli(np.ones((n_s, d)), tgt, gold, ks=(1,), scoring=scoring, csls_k=3)
    assert pick(const, "P@1", subset="covered") <= 1 / n_s
    # a constant target vocabulary ties every candidate (nn: identical rows give identical cosines)
    if scoring == "nn":
        flat = bli(rng.normal(size=(n_s, d)), np.ones((n_t, d)), gold, ks=(1,), scoring="nn")
        assert pick(flat, "P@1", subset="covered") == pytest.approx(1 / n_t, rel=1e-14)


def test_bli_bad_input():
    x = np.eye(3)
    with pytest.raises(ValueError, match="not a row of src_emb"):
        bli(x, x, {3: {0}}, ks=(1,))
    with pytest.raises(ValueError, match="target index outside"):
        bli(x, x, {0: {3}}, ks=(1,))
    with pytest.raises(ValueError, match="all OOV"):
        bli(x, x, {0: set()}, ks=(1,))
    with pytest.raises(ValueError, match="n_src_vocab"):
        bli(x, x, {0: {0}}, ks=(1,), n_src_vocab=4)
    with pytest.raises(ValueError, match="k must be between"):
        bli(x, x, {0: {0}}, ks=(4,))
    with pytest.raises(ValueError, match="scoring must be one of"):
        bli(x, x, {0: {0}}, ks=(1,), scoring="isf")


# ---------------------------------------------------------------- translation


def test_translation_identical_and_random(rng):
    y = rng.normal(size=(2048, 32))
    rows = translation(y, y * 3.0, n_candidates=1024, method="id")
    assert pick(rows, "mean_cosine") == pytest.approx(1.0)
    assert pick(rows, "top1") == 1.0
    assert pick(rows, "mean_rank") == 1.0
    rand = translation(rng.normal(size=(2048, 32)), y, n_candidates=1024)
    assert pick(rand, "top1") < 0.01  # expected 1/1024
    assert abs(pick(rand, "mean_rank") - 512.5) < 30  # sd of the mean ≈ 295.6/√2048 ≈ 6.5
    assert abs(pick(rand, "top16") - 16 / 1024) < 0.012
    assert abs(pick(rand, "mean_cosine")) < 0.02


def test_translation_constant_predictions_score_chance(rng):
    y = rng.normal(size=(300, 8))
    rows = translation(np.ones((300, 8)) * 2.5, y, n_candidates=100, ks=(1, 16))
    # constant predictions rank every target the same way: without ties, chance on average only
    assert pick(rows, "top1") <= 3 / 300
    flat = translation(rng.normal(size=(300, 8)), np.zeros((300, 8)), n_candidates=100, ks=(1, 16))
    assert pick(flat, "top1") == 1 / 100 and pick(flat, "top16") == 16 / 100  # all-zero targets: all tied
    assert pick(flat, "mean_rank") == 50.5


def test_translation_single_batch_equals_retrieval(rng):
    p, t = rng.normal(size=(12, 4)), rng.normal(size=(12, 4))
    tr = translation(p, t, n_candidates=12, ks=(1, 3), seed=5)
    re = retrieval(p, t, ks=(1, 3))
    for mt in ("top1", "top3", "mean_rank"):
        ref = {"top1": "R@1", "top3": "R@3"}.get(mt, mt)
        assert pick(tr, mt) == pytest.approx(pick(re, ref, direction="q_to_g"))
    assert pick(tr, "mean_cosine") == pytest.approx(np.mean(np.sum(unit(p) * unit(t), axis=1)))


def test_candidate_batches_scheme():
    batches = candidate_batches(1500, 1024, seed=1)
    queries = np.concatenate([q for q, _ in batches])
    assert sorted(queries.tolist()) == list(range(1500))
    for q, c in batches:
        assert c.size == 1024 and np.unique(c).size == 1024
        assert set(q.tolist()) <= set(c.tolist())
    again = candidate_batches(1500, 1024, seed=1)
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(batches, again, strict=True))


def test_translation_bad_input():
    x = np.zeros((10, 3)) + 1.0
    with pytest.raises(ValueError, match="at least n_candidates"):
        translation(x, x)
    with pytest.raises(ValueError, match="paired by row"):
        translation(x, x[:9], n_candidates=4, ks=(1,))
    with pytest.raises(ValueError, match="k must be between"):
        translation(x, x, n_candidates=4)  # default ks includes 16


# ---------------------------------------------------------------- linear probe


def test_linear_probe_separable_and_random(rng):
    n, d = 240, 6
    y = np.repeat([0, 1, 2], n // 3)
    X = np.eye(d)[y] * 4.0 + rng.normal(size=(n, d))
    rows = linear_probe(X, y, n_folds=4, seed=0, method="m")
    assert pick(rows, "accuracy") > 0.95
    folds = [r["value"] for r in rows if r["metric"] == "fold_accuracy"]
    assert len(folds) == 4 and pick(rows, "accuracy") == pytest.approx(np.mean(folds))
    assert pick(rows, "majority_baseline") == pytest.approx(1 / 3)
    assert rows == linear_probe(X, y, n_folds=4, seed=0, method="m")  # deterministic
    noise = linear_probe(rng.normal(size=(n, d)), y, n_folds=4)
    assert pick(noise, "accuracy") < 0.5


def test_linear_probe_bad_input():
    X = np.random.default_rng(0).normal(size=(10, 2))
    with pytest.raises(ValueError, match="at least n_folds"):
        linear_probe(X, [0] * 8 + [1] * 2, n_folds=3)
    with pytest.raises(ValueError, match="one entry per row"):
        linear_probe(X, [0, 1] * 4)
    with pytest.raises(ValueError, match="at least 2 classes"):
        linear_probe(X, [0] * 10)


# ---------------------------------------------------------------- rows


def test_summarize_t_interval_by_hand():
    vals = [0.61, 0.64, 0.58, 0.66, 0.60]
    rows = [{"metric": "R@1", "value": v, "method": "a", "seed": s} for s, v in enumerate(vals)]
    rows.append({"metric": "R@1", "value": 0.5, "method": "b", "seed": 0})
    rows.append({"metric": "mrr", "value": 0.7, "method": "a", "seed": 0})
    out = summarize(rows, by=["method"])
    assert [(o["metric"], o["method"], o["n"]) for o in out] == [("R@1", "a", 5), ("R@1", "b", 1), ("mrr", "a", 1)]
    a = out[0]
    m, s = np.mean(vals), np.std(vals, ddof=1)
    half = student_t.ppf(0.975, df=4) * s / math.sqrt(5)
    assert a["mean"] == pytest.approx(m)
    assert a["std"] == pytest.approx(s)
    assert a["ci_low"] == pytest.approx(m - half)
    assert a["ci_high"] == pytest.approx(m + half)
    b = out[1]
    assert b["mean"] == 0.5 and math.isnan(b["std"]) and math.isnan(b["ci_halfwidth"])
    df = to_pandas(rows)
    assert list(df.columns[:2]) == ["metric", "value"] and len(df) == 7
    with pytest.raises(ValueError, match="confidence"):
        summarize(rows, confidence=95)
    with pytest.raises(ValueError, match="'metric' and 'value'"):
        summarize([{"value": 1.0}])


# ---------------------------------------------------------------- real data


def test_bible_procrustes_retrieval_nn_and_csls():
    from alignkit.demo_data import load_bible_demo

    X, Y, _ = load_bible_demo(np.float64)
    U, _, Vt = np.linalg.svd(X[:1000].T @ Y[:1000])
    mapped = X[1000:] @ (U @ Vt)
    nn = retrieval(mapped, Y[1000:], ks=(1,), scoring="nn")
    csls = retrieval(mapped, Y[1000:], ks=(1,), scoring="csls")
    # Measured: EN→ES R@1 0.775 (NN) / 0.740 (CSLS); ES→EN 0.058 (NN, one EN hub wins 249 queries) / 0.219.
    nn_f, cs_f = pick(nn, "R@1", direction="q_to_g"), pick(csls, "R@1", direction="q_to_g")
    nn_b, cs_b = pick(nn, "R@1", direction="g_to_q"), pick(csls, "R@1", direction="g_to_q")
    assert nn_f > 0.5 and cs_f > 0.5  # random is 0.001
    assert cs_f >= nn_f - 0.1
    assert cs_b > nn_b  # CSLS undoes the hub
    unaligned = retrieval(X[1000:], Y[1000:], ks=(1,))
    assert pick(unaligned, "R@1", direction="q_to_g") < 0.02
