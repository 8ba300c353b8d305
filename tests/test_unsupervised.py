"""Unsupervised (unpaired) aligners: vecmap unsupervised, MUSE, mini-vec2vec and their shared contract.

Blocked helpers against dense formulas; the base class's restart bookkeeping on a scripted toy; each method on a
planted rotation with Y's rows shuffled, some rows of Y replaced by unrelated ones and extra rows added; nulls
(independent sets must warn); seed pairs; persistence; unequal widths; bad input.
"""

from __future__ import annotations

import itertools
import warnings
from typing import Any, ClassVar

import numpy as np
import pytest
import scipy.linalg
import scipy.stats
import torch

from alignkit.align.base import ALIGNERS, Aligner, register_aligner
from alignkit.align.mini_vec2vec import MiniVec2Vec, kmeans, qap_2opt
from alignkit.align.muse import MUSE
from alignkit.align.unsupervised import (
    MIN_CSLS_LIFT,
    Restart,
    UnsupervisedAligner,
    UnsupervisedFitWarning,
    criterion_gain,
    csls_induction,
    csls_lift,
    csls_nearest,
    csls_scores,
    distinct_sets,
    mean_csls_criterion,
    random_map,
    restart_agreement,
    split_holdout,
)
from alignkit.align.vecmap_unsupervised import VecMapUnsupervised, similarity_init


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# ------------------------------------------------------------------------------------------ data


def _rotation(d: int, rng: np.random.Generator, angle: float | None = None) -> np.ndarray:
    """A Haar-random rotation, or exp(K) with K skew-symmetric of largest rotation angle ``angle`` (radians)."""
    if angle is None:
        q, r = np.linalg.qr(rng.standard_normal((d, d)))
        return q * np.sign(np.diag(r))
    K = rng.standard_normal((d, d))
    K = K - K.T
    return scipy.linalg.expm(K * angle / np.abs(np.linalg.eigvals(K)).max())


def _planted(
    seed: int,
    *,
    n: int = 400,
    d: int = 8,
    c: int = 6,
    noise: float = 0.02,
    angle: float | None = None,
    d_y: int | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """X: a Gaussian mixture with anisotropic clusters. Y: X mapped by a planted rotation (or, with ``d_y > d``, an
    isometric embedding) + noise, 20 % of its rows replaced by fresh draws, 10 % extra rows, rows shuffled.
    Returns X, Y and the true pairs ``(row of X, row of Y)``."""
    rng = np.random.default_rng(seed)
    centres = 2.0 * rng.standard_normal((c, d))
    shapes = 0.5 * rng.standard_normal((c, d, d))

    def draw(m: int) -> np.ndarray:
        lab = rng.integers(c, size=m)
        return centres[lab] + np.einsum("nd,nde->ne", rng.standard_normal((m, d)), shapes[lab])

    X = draw(n)
    d_y = d_y or d
    R = _rotation(d_y, rng)[:d] if d_y > d else _rotation(d, rng, angle)
    Y = X @ R + noise * rng.standard_normal((n, d_y))
    replaced = rng.choice(n, n // 5, replace=False)
    fresh = draw(n // 5 + n // 10) @ R
    Y[replaced] = fresh[: n // 5]
    Y = np.vstack([Y, fresh[n // 5 :]])
    perm = rng.permutation(Y.shape[0])
    where = np.argsort(perm)
    kept = np.setdiff1d(np.arange(n), replaced)
    return X, Y[perm], np.stack([kept, where[kept]], axis=1)


def _isotropic(
    seed: int, *, n: int = 400, d: int = 32, noise: float = 0.6
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A planted rotation of isotropic Gaussian data with strong noise: no structure an unsupervised method can use."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    Y = X @ _rotation(d, rng) + noise * rng.standard_normal((n, d))
    perm = rng.permutation(n)
    return X, Y[perm], np.stack([np.arange(n), np.argsort(perm)], axis=1)


def _r_at_1(est: Aligner, X: np.ndarray, Y: np.ndarray, pairs: np.ndarray) -> float:
    """Top-1 retrieval among the true pairs only (cosine in the shared space)."""
    return float(est.score(X[pairs[:, 0]], Y[pairs[:, 1]]))


#: cheap settings (the defaults are sized for 10k-row sets); MUSE's map_beta 0.01 keeps W near orthogonal in d = 8
FAST: dict[str, dict[str, Any]] = {
    "vecmap": {"patience": 5},
    "muse": {"n_epochs": 2, "epoch_size": 150, "dis_steps": 3, "dis_hidden": 32, "map_beta": 0.01},
    "mini": {
        "n_runs": 20, "n_clusters": 10, "qap_inits": 20, "n_neighbors": 10, "refine_iters": 30, "refine_sample": 200,
        "refine_neighbors": 5, "refine_clusters": 30,
    },
}  # fmt: skip
CLASSES = {"vecmap": VecMapUnsupervised, "muse": MUSE, "mini": MiniVec2Vec}


def _make(name: str, **kw: Any) -> UnsupervisedAligner:
    return CLASSES[name](**{**FAST[name], **kw})  # type: ignore[no-any-return]


def _data(name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    # MUSE starts from the identity: its planted rotation turns by up to 1.6 rad, beyond what refinement alone
    # recovers (checked in test_muse_needs_its_adversarial_step); the others get a Haar-random rotation.
    return _planted(1, angle=1.6) if name == "muse" else _planted(0)


@pytest.fixture(scope="module")
def fitted() -> dict[str, UnsupervisedAligner]:
    out = {}
    for name in CLASSES:
        X, Y, _ = _data(name)
        with warnings.catch_warnings():
            warnings.simplefilter("error", UnsupervisedFitWarning)
            out[name] = _make(name, n_restarts=3, seed=0).fit(X, Y)
    return out


# ------------------------------------------------------------------------------ blocked helpers


def _unit(t: torch.Tensor) -> torch.Tensor:
    return t / t.norm(dim=1, keepdim=True)


def _dense_csls(a: torch.Tensor, b: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    S = a @ b.T
    r_a, r_b = S.topk(k, dim=1).values.mean(1), S.topk(k, dim=0).values.mean(0)
    return S, 2 * S - r_a[:, None] - r_b[None, :]


def test_csls_induction_matches_dense_formula():
    g = torch.Generator().manual_seed(0)
    a = _unit(torch.randn(130, 6, generator=g, dtype=torch.float64))
    b = _unit(torch.randn(110, 6, generator=g, dtype=torch.float64))
    S, C = _dense_csls(a, b, 10)
    ind = csls_induction(a, b, k=10, block_rows=17, dtype=torch.float64)
    assert torch.equal(ind.forward, C.argmax(1)) and torch.equal(ind.backward, C.argmax(0))
    torch.testing.assert_close(ind.best_forward, S.max(1).values)
    torch.testing.assert_close(ind.best_backward, S.max(0).values)
    assert ind.objective == pytest.approx(0.5 * (S.max(1).values.mean() + S.max(0).values.mean()).item())
    src, trg = ind.union()
    assert src.numel() == 240 and torch.equal(trg[:130], C.argmax(1)) and torch.equal(src[130:], C.argmax(0))
    mi, mj = ind.mutual()
    assert torch.equal(C.argmax(0)[mj], mi) and mi.numel() > 0
    assert torch.equal(csls_nearest(a, b, block_rows=17), C.argmax(1))


def test_stochastic_induction_keeps_each_candidate_with_probability_p():
    """The rank of the chosen candidate in CSLS order is Geometric(p), in both directions (also past the 64
    candidates ranked per block: p = 0.02 forces the exact fallback)."""
    g = torch.Generator().manual_seed(1)
    a = _unit(torch.randn(200, 5, generator=g, dtype=torch.float64))
    b = _unit(torch.randn(180, 5, generator=g, dtype=torch.float64))
    _, C = _dense_csls(a, b, 10)
    rank_f = C.argsort(1, descending=True).argsort(1) + 1
    rank_b = C.argsort(0, descending=True).argsort(0) + 1
    for p in (0.3, 0.02):
        fwd, bwd = [], []
        for _ in range(40):
            ind = csls_induction(a, b, k=10, keep_prob=p, generator=g, block_rows=50, dtype=torch.float64)
            fwd.append(rank_f[torch.arange(200), ind.forward])
            bwd.append(rank_b[ind.backward, torch.arange(180)])
        for r, n in ((torch.cat(fwd).double(), 180), (torch.cat(bwd).double(), 200)):
            expected_mean = (1 - (1 - p) ** n) / p  # E[min(G, n)] = Σ_{g ≤ n} P(G ≥ g), G ~ Geometric(p)
            assert (r == 1).double().mean().item() == pytest.approx(p, abs=0.02)
            assert r.mean().item() == pytest.approx(expected_mean, rel=0.06)


def test_csls_scores_and_criterion_match_dense_formula():
    g = torch.Generator().manual_seed(2)
    a = torch.randn(90, 4, generator=g, dtype=torch.float64)
    b = torch.randn(70, 4, generator=g, dtype=torch.float64)
    S, C = _dense_csls(_unit(a), _unit(b), 10)
    j = C[:40].argmax(1)
    cos, csls = csls_scores(a, b, n_queries=40)
    assert cos == pytest.approx(S[torch.arange(40), j].mean().item(), abs=1e-6)
    assert csls == pytest.approx(C[:40].max(1).values.mean().item(), abs=1e-5)
    assert mean_csls_criterion(a, b, n_queries=40) == pytest.approx(cos)
    rows = torch.tensor([5, 60, 88])
    cos_q, _ = csls_scores(a, b, queries=rows)
    assert cos_q == pytest.approx(S[rows, C[rows].argmax(1)].mean().item(), abs=1e-6)


def test_gain_lift_random_map_and_holdout():
    assert criterion_gain(0.6, 0.2) == pytest.approx(0.5)
    assert criterion_gain(0.9, 1.0) == 0.0 and csls_lift(0.3, 0.2) == pytest.approx(0.5)
    g = torch.Generator().manual_seed(0)
    for dx, dy in ((5, 5), (3, 7), (7, 3)):
        Q = random_map(dx, dy, g)
        gram = Q.T @ Q if dx >= dy else Q @ Q.T
        torch.testing.assert_close(gram, torch.eye(min(dx, dy), dtype=torch.float64))
    pairs = np.array([[3, 0], [7, 1], [9, 2]])
    h = split_holdout(50, 0.2, seed=4, pairs=pairs, device=torch.device("cpu"))
    assert h.held.numel() == 10 and set(h.train.tolist()) | set(h.held.tolist()) == set(range(50))
    assert not set(h.held.tolist()) & {3, 7, 9}
    assert torch.equal(h.train[h.seeds_x], torch.tensor([3, 7, 9]))
    assert torch.equal(split_holdout(50, 0.2, 4, pairs, torch.device("cpu")).held, h.held)
    assert split_holdout(50, 0.0, 4, pairs, torch.device("cpu")).held.numel() == 50


def test_similarity_init_pairs_the_same_items():
    """vecmap's initial dictionary: sorted sqrt-similarity profiles identify the same items in two rotated copies."""
    X, _, _ = _planted(3, n=300, noise=0.0)
    rng = np.random.default_rng(0)
    perm = rng.permutation(300)
    xs = _unit(torch.as_tensor(X))
    zs = _unit(torch.as_tensor(X @ _rotation(8, rng))[perm])
    i, j = similarity_init(xs, zs, ("unit", "center", "unit"), 10)
    assert (perm[j.numpy()] == i.numpy()).mean() > 0.9


def test_qap_2opt_reaches_a_swap_local_optimum_and_finds_planted_matchings():
    rng = np.random.default_rng(0)
    for _ in range(10):
        A, B = rng.standard_normal((2, 7, 7))
        A, B = A + A.T, B + B.T
        perm, f = qap_2opt(A, B, rng.permutation(7))
        assert f == pytest.approx((A * B[np.ix_(perm, perm)]).sum())
        for a, b in itertools.combinations(range(7), 2):
            q = perm.copy()
            q[[a, b]] = q[[b, a]]
            assert (A * B[np.ix_(q, q)]).sum() <= f + 1e-9
        best = max((A * B[np.ix_(p, p)]).sum() for p in map(np.array, itertools.permutations(range(7))))
        assert f <= best + 1e-9
    C = rng.standard_normal((8, 5))
    A = C @ C.T
    p = rng.permutation(8)
    found = [qap_2opt(A, A[np.ix_(p, p)], rng.permutation(8))[0] for _ in range(20)]
    assert any(np.array_equal(p[q], np.arange(8)) for q in found)


def test_kmeans_finds_separated_clusters():
    rng = np.random.default_rng(0)
    centres = 10 * rng.standard_normal((4, 3))
    t = torch.as_tensor(np.repeat(centres, 50, axis=0) + 0.1 * rng.standard_normal((200, 3)))
    got = kmeans(t, 4, torch.Generator().manual_seed(0)).numpy()
    assert np.abs(np.sort(got, axis=0) - np.sort(centres, axis=0)).max() < 0.1
    again = kmeans(t, 4, torch.Generator().manual_seed(0)).numpy()
    np.testing.assert_array_equal(got, again)
    assert np.allclose(kmeans(t, 4, torch.Generator(), init=torch.as_tensor(got)).numpy(), got)


# --------------------------------------------------------------------------------------- base class


class _Scripted(UnsupervisedAligner):
    """A toy: restart r returns the r-th scripted (criterion, converged, map): map m rotates X by a fixed random
    rotation R_m, so restarts with the same map agree on every row and restarts with different maps do not."""

    _arrays: ClassVar[tuple[str, ...]] = ("value_",)
    _shapes: ClassVar[dict[str, tuple[str | int, ...]]] = {"value_": (2,), "criterion_": ()}
    script: ClassVar[list[tuple[float, bool, int]]] = []
    maps: ClassVar[list[np.ndarray]] = [scipy.stats.special_ortho_group.rvs(3, random_state=m) for m in range(3)]

    def __init__(self, n_restarts: int = 3, seed: int = 0) -> None:
        self.n_restarts = n_restarts
        self.seed = seed

    def _fit_once(self, x: torch.Tensor, y: torch.Tensor, *, seed: int, pairs: np.ndarray) -> Restart:
        crit, ok, m = self.script[seed - self._hp["seed"]]
        info = {"n_pairs": int(pairs.shape[0]), "rows": [int(x.shape[0]), int(y.shape[0])], "reasons": []}
        return Restart({"value_": np.array([float(seed), float(m)])}, crit, ok, info)

    def _transform_x(self, x: torch.Tensor) -> torch.Tensor:
        return x @ torch.as_tensor(self.maps[int(self.value_[1])], dtype=x.dtype)

    def _transform_y(self, y: torch.Tensor) -> torch.Tensor:
        return y


class _Agreeing(_Scripted):
    """The toy with the ``min_agreement`` hyper-parameter every real unsupervised aligner has."""

    def __init__(self, n_restarts: int = 3, seed: int = 0, min_agreement: float = 0.5) -> None:
        super().__init__(n_restarts, seed)
        self.min_agreement = min_agreement


@pytest.fixture(scope="module", autouse=True)
def _scripted_registered():
    """Registered only while this module's tests run (collection-time registration leaked into other tests)."""
    from alignkit.align import ALIGNERS

    register_aligner("_scripted_unsupervised", paired=False, replace=True)(_Scripted)
    register_aligner(
        "_agreeing_unsupervised", paired=False, replace=True, constraints={"min_agreement": {"low": 0.0, "high": 1.0}}
    )(_Agreeing)
    yield
    ALIGNERS.remove("_scripted_unsupervised")
    ALIGNERS.remove("_agreeing_unsupervised")


def _rotated(rng: np.random.Generator, m: int) -> tuple[np.ndarray, np.ndarray]:
    """X and Y = X R_m (rows shuffled): the map m is right, the others are not."""
    X = rng.standard_normal((60, 3))
    return X, (X @ _Scripted.maps[m])[rng.permutation(60)]


def test_base_keeps_best_converged_restart_and_records_all(rng, tmp_path):
    X, Y = _rotated(rng, 0)
    _Scripted.script = [(0.5, True, 0), (0.9, False, 1), (0.7, True, 0)]
    with warnings.catch_warnings():
        warnings.simplefilter("error", UnsupervisedFitWarning)
        est = _Scripted(seed=10).fit(X, Y, seed_pairs=[[0, 1], [2, 3]])
    assert est.best_restart_ == 2 and est.value_[0] == 12.0 and est.criterion_ == 0.7  # not the unconverged 0.9
    assert [r["seed"] for r in est.restarts_] == [10, 11, 12]
    assert [r["converged"] for r in est.restarts_] == [True, False, True]
    rec = est.restarts_[1]
    assert {k: rec[k] for k in ("restart", "seed", "criterion", "converged", "n_pairs")} == {
        "restart": 1, "seed": 11, "criterion": 0.9, "converged": False, "n_pairs": 2
    }  # fmt: skip
    # restarts 0 and 2 use the same map: they agree on every query row; map 1 lands elsewhere
    agree = np.array([r["agreement"] for r in est.restarts_])
    np.testing.assert_array_equal(np.diag(agree), 1.0)
    np.testing.assert_array_equal(agree, agree.T)
    assert agree[0, 2] == 1.0 and agree[0, 1] < 0.2
    assert (est.n_items_x_, est.n_items_y_, est.n_seed_pairs_) == (60, 60, 2)
    loaded = Aligner.load(est.save(tmp_path / "toy"))
    assert loaded.restarts_ == est.restarts_ and loaded.best_restart_ == 2
    _Scripted.script = [(0.1, False, 0), (0.3, False, 0), (0.2, False, 0)]
    with pytest.warns(UnsupervisedFitWarning, match=r"none of 3 restarts converged.*0\.1000, 0\.3000, 0\.2000"):
        est = _Scripted().fit(X, Y)
    assert est.best_restart_ == 1


def test_a_restart_no_other_restart_confirms_is_not_converged(rng):
    """Restart-agreement: passing its own checks is not enough when no other passing restart lands on the same rows."""
    X, Y = _rotated(rng, 0)
    _Scripted.script = [(0.5, True, 0), (0.9, True, 1), (0.7, True, 0)]  # the best criterion is the odd one out
    with warnings.catch_warnings():
        warnings.simplefilter("error", UnsupervisedFitWarning)
        est = _Scripted().fit(X, Y)
    assert [r["converged"] for r in est.restarts_] == [True, False, True] and est.best_restart_ == 2
    assert "no other restart that passed its checks agrees with it" in est.restarts_[1]["reasons"][-1]
    # the only agreeing restart failed its own checks: no confirmation, so nothing converged
    _Scripted.script = [(0.5, True, 0), (0.4, False, 0), (0.7, True, 1)]
    with pytest.warns(UnsupervisedFitWarning, match="none of 3 restarts converged"):
        est = _Scripted().fit(X, Y)
    assert not any(r["converged"] for r in est.restarts_)
    # one restart cannot be confirmed and keeps its own verdict (no agreement record)
    _Scripted.script = [(0.5, True, 0)]
    est = _Scripted(n_restarts=1).fit(X, Y)
    assert est.restarts_[0]["converged"] and "agreement" not in est.restarts_[0]


def test_min_agreement_is_the_threshold(rng):
    """Agreement ≥ min_agreement confirms (1.0 ≥ 1.0), below does not; min_agreement = 0 turns the step off."""
    X, Y = _rotated(rng, 0)
    _Scripted.script = [(0.5, True, 0), (0.9, True, 1), (0.7, True, 0)]
    est = _Agreeing(min_agreement=1.0).fit(X, Y)
    assert [r["converged"] for r in est.restarts_] == [True, False, True]
    est = _Agreeing(min_agreement=0.0).fit(X, Y)
    assert all(r["converged"] for r in est.restarts_) and est.best_restart_ == 1
    with pytest.raises(ValueError, match="min_agreement"):
        _Agreeing(min_agreement=1.5).fit(X, Y)


def test_duplicate_rows_are_dropped_and_seed_pairs_follow(rng, monkeypatch):
    """Unpaired inputs are sets: exact duplicate rows are dropped before the restarts see them (a repeated row
    would leak held-out rows into training), and the seed pairs are re-indexed to the distinct rows."""
    X, Y = _rotated(rng, 0)
    Xd = np.concatenate([X, X[:10]])  # rows 60..69 repeat rows 0..9
    Yd = np.concatenate([Y[5:6], Y])  # row 0 repeats row 6 (= Y row 5)
    _Scripted.script = [(0.5, True, 0)] * 2
    given = [[60, 6], [0, 0], [3, 4], [65, 10]]  # the first two are one pair; Y row 10 comes after a dropped row
    est = _Scripted(n_restarts=2).fit(Xd, Yd, seed_pairs=given)
    assert (est.n_items_x_, est.n_items_y_, est.n_distinct_x_, est.n_distinct_y_) == (70, 61, 60, 60)
    assert est.restarts_[0]["rows"] == [60, 60] and est.n_seed_pairs_ == est.restarts_[0]["n_pairs"] == 3
    xd, yd, pairs = distinct_sets(torch.as_tensor(Xd), torch.as_tensor(Yd), np.array(given))
    np.testing.assert_array_equal(xd.numpy(), X)  # first occurrences, in order
    np.testing.assert_array_equal(yd.numpy(), Yd[[0, *range(1, 6), *range(7, 61)]])
    np.testing.assert_array_equal(pairs, [[0, 0], [3, 4], [5, 9]])
    np.testing.assert_array_equal(Xd[65], xd[5].numpy())
    np.testing.assert_array_equal(Yd[10], yd[9].numpy())
    same = distinct_sets(torch.as_tensor(X), torch.as_tensor(Y), np.array([[2, 1]]))  # nothing repeated
    assert same[0].data_ptr() == torch.as_tensor(X).data_ptr() or np.array_equal(same[0].numpy(), X)
    np.testing.assert_array_equal(same[2], [[2, 1]])
    monkeypatch.setattr(_Scripted, "_min_items", 5)
    with pytest.raises(ValueError, match="at least 5 distinct rows of Y; got 3"):
        _Scripted().fit(X, np.tile(Y[:3], (4, 1)))


def test_restart_agreement_matrix():
    t = [torch.tensor([0, 1, 2, 3]), torch.tensor([0, 1, 2, 0]), torch.tensor([3, 2, 1, 0])]
    assert restart_agreement(t) == [[1.0, 0.75, 0.0], [0.75, 1.0, 0.25], [0.0, 0.25, 1.0]]


@pytest.mark.parametrize(
    ("seed_pairs", "match"),
    [
        (np.array([1, 2]), "seed_pairs must be an \\(m, 2\\) integer array"),
        (np.zeros((3, 3), dtype=int), "seed_pairs must be an \\(m, 2\\) integer array"),
        (np.array([[0.0, 1.0]]), "seed_pairs must be an \\(m, 2\\) integer array"),
        (np.array([[0, 1], [20, 1]]), "seed_pairs column 0 must index rows of X \\(0..19\\)"),
        (np.array([[0, -1]]), "seed_pairs column 1 must index rows of Y \\(0..24\\)"),
    ],
)
def test_bad_seed_pairs(rng, seed_pairs, match):
    _Scripted.script = [(0.5, True, 0)] * 3
    with pytest.raises(ValueError, match=match):
        _Scripted().fit(rng.standard_normal((20, 3)), rng.standard_normal((25, 3)), seed_pairs=seed_pairs)


@pytest.mark.parametrize("name", list(CLASSES))
def test_bad_input_is_a_clear_error(rng, name):
    X, Y = rng.standard_normal((30, 4)), rng.standard_normal((30, 4))
    with pytest.raises(ValueError, match="at least 2 rows of Y"):
        _make(name).fit(X, Y[:1])
    bad = X.copy()
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match="X contains 1 NaN or Inf"):
        _make(name).fit(bad, Y)
    bad = Y.copy()
    bad[0, 0] = np.inf
    with pytest.raises(ValueError, match="Y contains 1 NaN or Inf"):
        _make(name).fit(X, bad)
    with pytest.raises(ValueError, match="n_restarts"):
        _make(name, n_restarts=0).fit(X, Y)
    with pytest.raises(ValueError, match="seed_pairs column 1"):
        _make(name).fit(X, Y, seed_pairs=[[0, 30]])


def test_method_specific_parameter_errors(rng):
    X = rng.standard_normal((30, 4))
    with pytest.raises(ValueError, match="dewhiten=True requires whiten=True"):
        VecMapUnsupervised(whiten=False).fit(X, X)
    with pytest.raises(ValueError, match="init_rows"):
        VecMapUnsupervised(init_rows="top").fit(X, X)
    with pytest.raises(ValueError, match="map_init"):
        MUSE(map_init="zeros").fit(X, X)
    with pytest.raises(ValueError, match="at least n_clusters=20 rows on each side"):
        MiniVec2Vec(n_clusters=20).fit(X[:15], X)


def test_registered_as_unpaired_aligners():
    for name, cls, translates in (("vecmap_unsupervised", VecMapUnsupervised, False), ("muse", MUSE, True),
                                  ("mini_vec2vec", MiniVec2Vec, True)):  # fmt: skip
        info = ALIGNERS.get(name)
        assert info.obj is cls and info.paired is False and info.translates is translates
        params = info.schema.describe()
        assert {"n_restarts", "seed"} <= {p["name"] for p in params}


# ------------------------------------------------------------------------------------------ methods


@pytest.mark.parametrize("name", list(CLASSES))
def test_recovers_a_planted_map_without_pairs(fitted, name):
    """Y's rows shuffled, 20 % replaced by unrelated rows, 10 % extra: the kept map finds the true partners, and
    most restarts converge."""
    X, Y, pairs = _data(name)
    est = fitted[name]
    assert _r_at_1(est, X, Y, pairs) >= 0.95
    assert sum(r["converged"] for r in est.restarts_) >= 2
    assert len(est.restarts_) == 3 and est.restarts_[est.best_restart_]["converged"]
    for r in est.restarts_:
        if r["converged"]:
            assert r["gain"] >= 0.2 and r["csls_lift"] >= MIN_CSLS_LIFT and not r["reasons"]


@pytest.mark.parametrize("name", list(CLASSES))
def test_restart_is_deterministic_and_matches_its_record(fitted, name):
    """Refitting the kept restart alone (seed + best_restart_) reproduces its map and its recorded criterion."""
    X, Y, _ = _data(name)
    est = fitted[name]
    again = _make(name, n_restarts=1, seed=est.best_restart_).fit(X, Y)
    for key in type(est)._arrays:
        np.testing.assert_array_equal(getattr(again, key), getattr(est, key))
    assert again.criterion_ == est.restarts_[est.best_restart_]["criterion"] == est.criterion_


def test_muse_needs_its_adversarial_step():
    """On MUSE's planted data, refinement from the identity alone (no adversarial epoch) does not recover the map."""
    X, Y, pairs = _data("muse")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnsupervisedFitWarning)
        est = _make("muse", n_restarts=1, n_epochs=0).fit(X, Y)
    assert _r_at_1(est, X, Y, pairs) < 0.5


@pytest.mark.parametrize("name", list(CLASSES))
def test_independent_sets_warn_instead_of_aligning(name):
    rng = np.random.default_rng(7)
    X, Y = rng.standard_normal((300, 8)), rng.standard_normal((330, 8))
    kw = {"n_epochs": 1, "epoch_size": 60} if name == "muse" else {"max_iter": 40} if name == "vecmap" else {}
    with pytest.warns(UnsupervisedFitWarning, match="none of 3 restarts converged"):
        est = _make(name, **kw).fit(X, Y)
    assert not any(r["converged"] for r in est.restarts_)
    assert all(r["reasons"] and abs(r["gain"]) < 0.15 for r in est.restarts_)


@pytest.mark.parametrize("name", list(CLASSES))
def test_seed_pairs_rescue_an_unidentifiable_problem(name):
    """Isotropic data with strong noise: no pairs → no map (and a warning); 50 seed pairs → the map."""
    X, Y, pairs = _isotropic(0)
    kw = {"n_epochs": 0} if name == "muse" else {"max_iter": 40} if name == "vecmap" else {}
    with pytest.warns(UnsupervisedFitWarning):
        blind = _make(name, n_restarts=1, **kw).fit(X, Y)
    assert _r_at_1(blind, X, Y, pairs) < 0.1
    with warnings.catch_warnings():
        warnings.simplefilter("error", UnsupervisedFitWarning)
        seeded = _make(name, n_restarts=1, **kw).fit(X, Y, seed_pairs=pairs[:50])
    assert _r_at_1(seeded, X, Y, pairs) >= 0.95 and seeded.n_seed_pairs_ == 50
    if name == "vecmap":  # both initial dictionaries were run, the better converged one kept
        rec = seeded.restarts_[0]
        assert set(rec["inits"]) == {"pairs", "unsupervised"} and rec["inits"]["pairs"]["converged"]
        assert rec["criterion"] == max(v["criterion"] for v in rec["inits"].values() if v["converged"])
        assert rec["inits"][rec["init"]]["criterion"] == rec["criterion"]


@pytest.mark.parametrize("name", list(CLASSES))
def test_save_load_round_trip(fitted, name, tmp_path):
    X, Y, _ = _data(name)
    est = fitted[name]
    loaded = Aligner.load(est.save(tmp_path / name))
    assert type(loaded) is type(est) and loaded.get_params() == est.get_params()
    np.testing.assert_array_equal(loaded.transform_x(X), est.transform_x(X))
    np.testing.assert_array_equal(loaded.transform_y(Y), est.transform_y(Y))
    assert loaded.restarts_ == est.restarts_ and loaded.criterion_ == est.criterion_
    if name != "vecmap":
        np.testing.assert_array_equal(loaded.translate(X), est.translate(X))


def test_a_file_saved_before_duplicates_were_dropped_still_loads(fitted, tmp_path):
    import json

    folder = fitted["vecmap"].save(tmp_path / "old")
    cfg = json.loads((folder / "config.json").read_text())
    del cfg["fitted"]["n_distinct_x_"], cfg["fitted"]["n_distinct_y_"]
    (folder / "config.json").write_text(json.dumps(cfg))
    loaded = Aligner.load(folder)
    assert (loaded.n_distinct_x_, loaded.n_distinct_y_) == (loaded.n_items_x_, loaded.n_items_y_)
    cfg["fitted"]["n_items_x_"] = "many"
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="n_items_x_"):
        Aligner.load(folder)


def test_translate_lands_on_the_partners_in_y_coordinates(fitted):
    for name in ("muse", "mini"):
        X, Y, pairs = _data(name)
        T = fitted[name].translate(X[pairs[:, 0]])
        assert T.shape == (pairs.shape[0], Y.shape[1])
        d = np.linalg.norm(T[:, None, :] - Y[None, pairs[:, 1], :], axis=2)
        assert (d.argmin(axis=1) == np.arange(pairs.shape[0])).mean() >= 0.95
    with pytest.raises(NotImplementedError, match="no X → Y translation"):
        fitted["vecmap"].translate(_data("vecmap")[0])


@pytest.mark.parametrize("name", ["vecmap", "mini"])
def test_unequal_widths_recover_a_planted_embedding(name):
    """X in 8 dimensions, Y its isometric embedding in 12 (+ noise): the semi-orthogonal maps recover the pairs."""
    X, Y, pairs = _planted(0, d_y=12)
    est = _make(name, n_restarts=2).fit(X, Y)
    assert _r_at_1(est, X, Y, pairs) >= 0.95


def test_muse_unequal_widths_project_the_wider_side(rng):
    X, Y, pairs = _planted(0, d_y=12)
    est = MUSE(n_restarts=1, n_epochs=0).fit(X, Y, seed_pairs=pairs[:50])
    assert est.proj_x_.shape == (8, 8) and est.proj_y_.shape == (12, 8) and est.rotation_.shape == (8, 8)
    np.testing.assert_allclose(est.proj_y_.T @ est.proj_y_, np.eye(8), atol=1e-10)
    assert _r_at_1(est, X, Y, pairs) >= 0.95 and est.translate(X).shape == (X.shape[0], 12)
    wide = MUSE(n_restarts=1, n_epochs=0).fit(Y, X, seed_pairs=pairs[:50, ::-1].copy())
    assert wide.proj_x_.shape == (12, 8) and wide.transform_x(Y).shape == (Y.shape[0], 8)
    assert _r_at_1(wide, Y, X, pairs[:, ::-1]) >= 0.95


def test_muse_flags_a_collapsed_discriminator():
    reasons = MUSE._collapse_reasons
    rec = [{"dis_accuracy": a, "dis_pred_std": 0.1} for a in (0.51, 0.49, 0.5)]
    assert "stuck at chance" in reasons(rec)[0]
    assert "never fooled" in reasons([{"dis_accuracy": a, "dis_pred_std": 0.1} for a in (1.0, 0.99)])[0]
    assert "constant output" in reasons([{"dis_accuracy": 0.7, "dis_pred_std": 0.0}])[0]
    assert reasons([{"dis_accuracy": a, "dis_pred_std": 0.1} for a in (0.95, 0.7, 0.55)]) == []


def test_vecmap_without_whitening_is_an_orthogonal_map(rng):
    """With whitening, re-weighting and de-whitening off, the two maps only rotate: map_x map_yᵀ is orthogonal."""
    X, Y, _ = _planted(0)
    est = VecMapUnsupervised(n_restarts=1, whiten=False, dewhiten=False, reweight=0.0, patience=3).fit(X, Y)
    M = est.map_x_ @ est.map_y_.T
    np.testing.assert_allclose(M @ M.T, np.eye(8), atol=1e-10)
    assert est.restarts_[0]["iterations"] >= 3 * 4 and est.restarts_[0]["keep_prob"] == 1.0
