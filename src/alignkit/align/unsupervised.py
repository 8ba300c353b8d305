"""The contract every unsupervised (unpaired) aligner follows: restarts, a criterion, a verdict, seed pairs.

``fit(X, Y)`` takes two **unpaired** sets: row i of X has nothing to do with row i of Y, and the row
counts may differ. They are sets: exact duplicate rows are dropped first (:func:`distinct_sets`; a word list
built from dictionary pairs repeats a word once per pair, and a repeated row would leak held-out rows into
training). Optional ``seed_pairs`` (an (m, 2) array of ``(row of X, row of Y)`` indices) make a
method semi-supervised (0, 10, 50 anchors...). Unsupervised methods are known to be seed-unstable
(Søgaard, Ruder & Vulić, ACL 2018; Artetxe et al., ACL 2018), so every subclass runs ``n_restarts``
independent restarts, scores each with an unsupervised model-selection criterion (higher is better; MUSE's
mean cosine of CSLS translations, :func:`mean_csls_criterion`, for MUSE, vecmap and mini-vec2vec), keeps the
best converged one (the best of all when none converged) and records all of them in ``restarts_``. When no
restart converges the fit warns with the criterion values (:class:`UnsupervisedFitWarning`) instead of
silently returning a random map.

The verdict. A criterion value means little on its own: under a random map, the CSLS translation of a row is
still its best-looking partner, so the criterion is well above zero; and a map fitted to two unrelated sets
also fits its own training rows better than a random one (Procrustes self-learning in d = 32 on 400 random
rows reaches a "gain" of 0.2). So the linear methods hold out a seeded share of the rows of X
(:func:`split_holdout`) and judge the map on them. :func:`chance_scores` measures the scores under random
(semi-)orthogonal maps of the same preprocessed sets; :func:`verdict_info` calls a restart converged
when the criterion closes at least ``min_gain`` of the distance from that chance level to a perfect 1
(:func:`criterion_gain`), the mean CSLS score of the same translations rises at least 25 % over its own
chance level (:func:`csls_lift`: laying the clusters of X onto those of Y without matching items raises the
criterion, not the CSLS score), and the method's own checks pass (e.g. no collapsed discriminator). This is
a heuristic calibrated on planted rotations, independent random sets and Bible verse embeddings (a correct
map on unpaired but overlapping sets scores gain ≈ 0.35 and lift ≈ 5; on disjoint halves gain ≈ 0.2 and
lift ≈ 0.8; a cluster-level-only map on synthetic data lift < 0; unrelated random sets, held out, gain and
lift ≈ 0 ± 0.05); every restart's record holds both numbers.

Restart agreement. Those checks say a map found structure beyond chance, not that it found *the*
correspondence: a map that lands every query on a similar but wrong row passes them. So, with two or more
restarts, a restart that passed its own checks stays converged only when another restart that passed them
translates at least ``min_agreement`` (0.5) of a seeded sample of rows of X (up to ``n_queries``) to the same
CSLS-nearest rows of Y (:func:`restart_agreement`; each record holds its row of the agreement matrix;
``min_agreement=0`` turns the step off). Restarts differ in seed and held-out rows (and in what the method draws
at random: vecmap's dictionary dropout and, above ``n_init`` rows, its initial sample; MUSE's and vec2vec's
initial weights), and the correspondence is one map they can all find, while a wrong map is usually one of many.
A wrong map that every restart reaches (a deterministic failure) is not caught by this step. On Bible verses
(MiniLM ↔ e5, 4,000 a side) the two vecmap restarts that found the map agree on 94 % of the rows, and each
agrees with a third, wrong one on 0.1 %; random maps agree on 0.1–0.3 %. With one restart nothing can confirm
it, and its own checks decide.

A subclass implements ``_fit_once(x, y, *, seed, pairs) -> Restart`` on validated float64 tensors and the
usual ``_transform_x`` / ``_transform_y`` (and ``_translate``) reading its learned arrays.

Shared building blocks: :func:`normalize_rows` (the "unit"/"center" preprocessing steps), :func:`procrustes_map`,
:func:`random_map`, :func:`csls_induction` (vecmap's blocked CSLS dictionary step, forward and backward, with
stochastic keep probability), :func:`csls_nearest`, :func:`csls_scores`, :func:`mean_csls_criterion` and
:func:`chance_scores`.
Every n_x × n_y similarity is computed in row blocks of about 16M entries (never the whole matrix).
"""

from __future__ import annotations

import copy
import json
import math
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch

from alignkit._common import unit_rows
from alignkit._validation import ArrayLike, as_matrix
from alignkit.align.base import Aligner

NORMALIZE_STEPS: tuple[str, ...] = ("unit", "center")
#: entries of one similarity block (rows × columns); 16M float32 entries = 64 MB
BLOCK_ELEMENTS = 1 << 24
#: most candidates one stochastic dictionary step ranks per row before falling back to the exact rank
_MAX_RANKED = 64


class UnsupervisedFitWarning(UserWarning):
    """No restart of an unsupervised fit converged: the kept map may not have found the correspondence."""


@dataclass
class Restart:
    """One restart's outcome: the learned state (attribute name → array or scalar), its criterion and details."""

    state: dict[str, Any]
    criterion: float
    converged: bool
    info: dict[str, Any] = field(default_factory=dict)  # JSON data: iterations, timings, per-step criteria


def check_seed_pairs(seed_pairs: Any, n_x: int, n_y: int) -> np.ndarray:
    """``seed_pairs`` as an (m, 2) int64 array of in-range ``(row of X, row of Y)`` indices (m may be 0)."""
    if seed_pairs is None:
        return np.zeros((0, 2), dtype=np.int64)
    arr = np.asarray(seed_pairs)
    if arr.size == 0:
        return np.zeros((0, 2), dtype=np.int64)
    if arr.ndim != 2 or arr.shape[1] != 2 or arr.dtype.kind not in "iu":
        raise ValueError(
            f"seed_pairs must be an (m, 2) integer array of (row of X, row of Y) indices; got shape "
            f"{arr.shape}, dtype {arr.dtype}"
        )
    for col, n, name in ((0, n_x, "X"), (1, n_y, "Y")):
        bad = (arr[:, col] < 0) | (arr[:, col] >= n)
        if bad.any():
            raise ValueError(f"seed_pairs column {col} must index rows of {name} (0..{n - 1}); got {arr[bad][0]}")
    return arr.astype(np.int64)


# ------------------------------------------------------------------------------------ preprocessing


def check_normalize_steps(value: Any) -> tuple[str, ...]:
    """A ``normalize`` hyper-parameter as a tuple of steps, each "unit" or "center" (a clear error otherwise)."""
    steps = (value,) if isinstance(value, str) else tuple(value)
    for step in steps:
        if step not in NORMALIZE_STEPS:
            raise ValueError(f"normalize steps must be among {NORMALIZE_STEPS}; got {step!r}")
    return steps


def normalize_rows(
    t: torch.Tensor, steps: tuple[str, ...], centers: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Apply the steps in order ("unit": rows to unit L2 norm; "center": subtract a mean row); returns the
    result and the means used, one row per "center" step (computed from ``t`` when ``centers`` is None)."""
    used: list[torch.Tensor] = []
    for step in steps:
        if step == "unit":
            t = unit_rows(t)
        else:
            m = t.mean(dim=0) if centers is None else centers[len(used)].to(t)
            used.append(m)
            t = t - m
    return t, (torch.stack(used) if used else t.new_zeros((0, t.shape[1])))


def procrustes_map(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``W = argmin_{WᵀW=I} ‖aW − b‖_F = UVᵀ`` from the thin SVD ``aᵀb = UΣVᵀ`` (d_a × d_b; semi-orthogonal when
    the widths differ). Schönemann, Psychometrika 1966."""
    U, _, Vh = torch.linalg.svd(a.double().T @ b.double(), full_matrices=False)
    return U @ Vh


def random_map(d_x: int, d_y: int, generator: torch.Generator) -> torch.Tensor:
    """A random d_x × d_y (semi-)orthogonal matrix (Haar-distributed for d_x = d_y)."""
    g = torch.randn(max(d_x, d_y), min(d_x, d_y), generator=generator, dtype=torch.float64)
    q, r = torch.linalg.qr(g)
    q = q * torch.sign(torch.diagonal(r))
    return q if d_x >= d_y else q.T


def principal_axes(t: torch.Tensor, k: int) -> torch.Tensor:
    """The top-``k`` principal axes (d × k, orthonormal columns) of the rows of ``t`` (centred here)."""
    c = t - t.mean(dim=0)
    w, V = torch.linalg.eigh(c.T @ c)
    return V[:, torch.argsort(w, descending=True)[:k]]


# ---------------------------------------------------------------------------------- blocked CSLS


def _row_blocks(n_rows: int, n_cols: int, block_rows: int | None) -> Iterator[slice]:
    rows = block_rows or max(1, BLOCK_ELEMENTS // max(n_cols, 1))
    for s in range(0, n_rows, rows):
        yield slice(s, min(n_rows, s + rows))


def _topk_mean(a: torch.Tensor, b: torch.Tensor, k: int, block_rows: int | None = None) -> torch.Tensor:
    """``(1/k) Σ`` of the k largest inner products of each row of ``a`` with the rows of ``b`` (float64)."""
    out = torch.empty(a.shape[0], dtype=torch.float64, device=a.device)
    for sl in _row_blocks(a.shape[0], b.shape[0], block_rows):
        out[sl] = (a[sl] @ b.T).topk(k, dim=1).values.double().mean(dim=1)
    return out


@dataclass
class Induction:
    """One CSLS dictionary step: each row's chosen partner in the other set and its best raw similarity."""

    forward: torch.Tensor  # (n_x,) a row of zy for every row of zx
    backward: torch.Tensor  # (n_y,) a row of zx for every row of zy
    best_forward: torch.Tensor  # (n_x,) max_j ⟨x_i, y_j⟩ (before CSLS and dropout; vecmap's objective)
    best_backward: torch.Tensor  # (n_y,)

    @property
    def objective(self) -> float:
        """vecmap's objective: the mean best similarity, averaged over both directions."""
        return 0.5 * (float(self.best_forward.double().mean()) + float(self.best_backward.double().mean()))

    def union(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The forward ∪ backward dictionary as (rows of X, rows of Y) (duplicates kept, as vecmap does)."""
        n_x, n_y = self.forward.shape[0], self.backward.shape[0]
        src = torch.cat([torch.arange(n_x, device=self.forward.device), self.backward])
        trg = torch.cat([self.forward, torch.arange(n_y, device=self.forward.device)])
        return src, trg

    def mutual(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Mutual pairs: x_i → y_j and y_j → x_i (MUSE's ``S2T&T2S`` dictionary)."""
        i = torch.arange(self.forward.shape[0], device=self.forward.device)
        keep = self.backward[self.forward] == i
        return i[keep], self.forward[keep]


def _geometric_ranks(n: int, keep_prob: float, limit: int, generator: torch.Generator | None) -> torch.Tensor:
    """Rank (1-based) of the first kept candidate when each is kept independently with ``keep_prob``.

    Keeping each entry of a row with probability p and taking the argmax of the kept ones picks the G-th best
    entry with G ~ Geometric(p): ``P(G = g) = (1 − p)^{g−1} p``. Drawn by inversion, capped at ``limit`` (the
    row length; a row with no kept entry, probability (1 − p)^limit, takes its worst one).
    """
    if keep_prob >= 1.0:
        return torch.ones(n, dtype=torch.long)
    u = torch.rand(n, generator=generator, dtype=torch.float64).clamp_min(1e-300)
    g = 1.0 + torch.floor(torch.log(u) / math.log1p(-keep_prob))
    return g.clamp(max=float(limit)).long()


def _ranked_depth(ranks: torch.Tensor, n: int) -> int:
    """How many top candidates a pass keeps per row: enough for 90 % of the rows (at most 64); the deeper rows
    are re-scored alone (a top-k of depth K costs about K/10 times a top-10 over the same block)."""
    return max(1, min(int(torch.quantile(ranks.double(), 0.9).ceil()), _MAX_RANKED, n))


def _pick_ranked(
    a: torch.Tensor,
    b: torch.Tensor,
    off_a: torch.Tensor,
    off_b: torch.Tensor,
    ranks: torch.Tensor,
    block_rows: int | None,
) -> torch.Tensor:
    """For each row i of ``a``: the index of the ``ranks[i]``-th largest ``⟨a_i, b_j⟩ − off_a[i] − off_b[j]``."""
    out = torch.empty(a.shape[0], dtype=torch.long, device=a.device)
    for sl in _row_blocks(a.shape[0], b.shape[0], block_rows):
        c = a[sl] @ b.T - off_a[sl, None] - off_b[None, :]
        r = ranks[sl].to(a.device)
        idx = c.topk(int(r.max()), dim=1).indices
        out[sl] = idx.gather(1, (r - 1)[:, None]).squeeze(1)
    return out


def csls_induction(
    zx: torch.Tensor,
    zy: torch.Tensor,
    *,
    k: int = 10,
    keep_prob: float = 1.0,
    generator: torch.Generator | None = None,
    block_rows: int | None = None,
    dtype: torch.dtype = torch.float32,
) -> Induction:
    """vecmap's dictionary-induction step with CSLS retrieval, forward and backward, in two blocked passes.

    Scores are inner products ``s_ij = ⟨x_i, y_j⟩`` (pass unit rows for cosines) and
    ``CSLS_ij = 2 s_ij − r_Y(x_i) − r_X(y_j)``, r the mean of the k largest similarities in the other set
    (Conneau et al., ICLR 2018). Forward, row i picks ``argmax_j`` CSLS over the candidates kept in a random
    draw that keeps each entry with probability ``keep_prob`` (vecmap's stochastic dictionary induction;
    Artetxe, Labaka & Agirre, ACL 2018, §3.3); backward, column j picks ``argmax_i`` with an independent draw.
    The draw is exact but never materialised: the first kept entry in CSLS order is the G-th best with
    G ~ Geometric(keep_prob) (:func:`_geometric_ranks`), so each row needs only its top ``G`` candidates (vecmap
    multiplies dropped entries by 0 instead of removing them, which differs only when every kept score is < 0).

    Pass 1 (``S`` in row blocks of about 16M entries): the row radii and row maxima, and the column top-k
    merged block by block (radii and maxima of the columns). Pass 2: the CSLS blocks, the rows' top candidates
    and a running column top list, deep enough for 90 % of the draws (at most 64); the rows and columns whose
    rank G is deeper are re-scored alone.
    Memory O(block + n·64); ``dtype`` is the precision of the similarity passes (vecmap's default fp32).
    """
    a, b = zx.to(dtype), zy.to(dtype)
    n_x, n_y = a.shape[0], b.shape[0]
    kx, ky = min(k, n_y), min(k, n_x)
    r_x = torch.empty(n_x, dtype=torch.float64, device=a.device)
    best_f = torch.empty(n_x, dtype=torch.float64, device=a.device)
    col_top: torch.Tensor | None = None
    for sl in _row_blocks(n_x, n_y, block_rows):
        s = a[sl] @ b.T
        top = s.topk(kx, dim=1).values
        r_x[sl], best_f[sl] = top.double().mean(dim=1), top[:, 0].double()
        ct = s.topk(min(ky, s.shape[0]), dim=0).values
        col_top = (
            ct
            if col_top is None
            else torch.cat([col_top, ct]).topk(min(ky, col_top.shape[0] + ct.shape[0]), dim=0).values
        )
    assert col_top is not None
    r_y, best_b = col_top.double().mean(dim=0), col_top[0].double()
    # CSLS/2 = s − r_x/2 − r_y/2 orders every row and every column as CSLS does
    hx, hy = (r_x / 2).to(dtype), (r_y / 2).to(dtype)
    g_f = _geometric_ranks(n_x, keep_prob, n_y, generator).to(a.device)
    g_b = _geometric_ranks(n_y, keep_prob, n_x, generator).to(a.device)
    kf, kb = _ranked_depth(g_f, n_y), _ranked_depth(g_b, n_x)
    fwd = torch.empty(n_x, dtype=torch.long, device=a.device)
    col_v: torch.Tensor | None = None
    col_i = torch.empty(0, dtype=torch.long)
    for sl in _row_blocks(n_x, n_y, block_rows):
        c = a[sl] @ b.T
        c -= hx[sl, None]
        c -= hy[None, :]
        idx = c.topk(kf, dim=1).indices
        fwd[sl] = idx.gather(1, (g_f[sl].clamp(max=kf) - 1)[:, None]).squeeze(1)
        v, i = c.topk(min(kb, c.shape[0]), dim=0)
        i += sl.start
        if col_v is None:
            col_v, col_i = v, i
        else:
            v, i = torch.cat([col_v, v]), torch.cat([col_i, i])
            col_v, order = v.topk(min(kb, v.shape[0]), dim=0)
            col_i = i.gather(0, order)
    assert col_v is not None
    bwd = col_i.gather(0, (g_b.clamp(max=col_i.shape[0]) - 1)[None, :]).squeeze(0)
    deep = (g_f > kf).nonzero().flatten()
    if deep.numel():
        fwd[deep] = _pick_ranked(a[deep], b, hx[deep], hy, g_f[deep], block_rows)
    deep = (g_b > col_i.shape[0]).nonzero().flatten()
    if deep.numel():
        bwd[deep] = _pick_ranked(b[deep], a, hy[deep], hx, g_b[deep], block_rows)
    return Induction(fwd, bwd, best_f, best_b)


def csls_nearest(zx: torch.Tensor, zy: torch.Tensor, *, k: int = 10, block_rows: int | None = None) -> torch.Tensor:
    """For each row of ``zx`` the index of its CSLS-nearest row of ``zy`` (unit rows), computed in blocks (in the
    precision of ``zx``: float32 stays float32)."""
    a = zx if zx.dtype in (torch.float32, torch.float64) else zx.double()
    b = zy.to(a.dtype)
    r_x = _topk_mean(a, b, min(k, b.shape[0]), block_rows)
    r_y = _topk_mean(b, a, min(k, a.shape[0]), block_rows)
    out = torch.empty(a.shape[0], dtype=torch.long, device=a.device)
    for sl in _row_blocks(a.shape[0], b.shape[0], block_rows):
        out[sl] = (2.0 * a[sl] @ b.T - r_y[None, :] - r_x[sl, None]).argmax(dim=1)
    return out


def csls_scores(
    zx: torch.Tensor, zy: torch.Tensor, *, n_queries: int = 10_000, k: int = 10, queries: torch.Tensor | None = None
) -> tuple[float, float]:
    """``(mean cosine, mean CSLS)`` of the CSLS translations into ``zy`` of the first ``n_queries`` rows of ``zx``
    (or of the first ``n_queries`` of the rows ``queries`` names).

    Each query x goes to ``argmax_y CSLS(x, y)``, ``CSLS(x, y) = 2 cos(x, y) − r_Y(x) − r_X(y)``, r_Y(x) the
    mean cosine of x to its k nearest rows of zy, r_X(y) that of y to its k nearest rows of all of zx (rows are
    unit-normalised here). The first number is MUSE's criterion (:func:`mean_csls_criterion`); the second, the
    mean CSLS score of the same translations, rewards a translation that stands out from its neighbourhood
    rather than one that lands in a dense region. Blocked: never an n_x × n_y matrix beyond one block.
    """
    a = unit_rows(zx.double()).float()
    b = unit_rows(zy.double()).float()
    q = a[: min(n_queries, a.shape[0])] if queries is None else a[queries[:n_queries].to(a.device)]
    r_q = _topk_mean(q, b, min(k, b.shape[0])).float()
    r_y = _topk_mean(b, a, min(k, a.shape[0])).float()
    cos_sum = csls_sum = 0.0
    for sl in _row_blocks(q.shape[0], b.shape[0], None):
        s = q[sl] @ b.T
        c = 2.0 * s - r_y[None, :] - r_q[sl, None]
        best, j = c.max(dim=1)
        cos_sum += float(s.gather(1, j[:, None]).double().sum())
        csls_sum += float(best.double().sum())
    return cos_sum / q.shape[0], csls_sum / q.shape[0]


def mean_csls_criterion(zx: torch.Tensor, zy: torch.Tensor, *, n_queries: int = 10_000, k: int = 10) -> float:
    """MUSE's unsupervised model-selection criterion: the first ``n_queries`` rows of ``zx`` are translated to
    their CSLS-nearest row of ``zy`` and the criterion is the mean cosine of these translations (both sets in
    a common space; rows are unit-normalised here). Higher is better.

    Conneau, Lample, Ranzato, Denoyer & Jégou, "Word translation without parallel data", ICLR 2018, §3.5; MUSE
    ``dist_mean_cosine`` (``mean_cosine-csls_knn_10-S2T-10000``), which also caps the target rank at 10k: here
    every row of zy is a candidate. Computed by :func:`csls_scores` (blocked).
    """
    return csls_scores(zx, zy, n_queries=n_queries, k=k)[0]


def chance_scores(
    xp: torch.Tensor,
    yp: torch.Tensor,
    *,
    seed: int,
    n_draws: int = 3,
    n_queries: int = 10_000,
    k: int = 10,
    queries: torch.Tensor | None = None,
) -> tuple[float, float]:
    """:func:`csls_scores` of ``xp @ Q`` against ``yp`` averaged over ``n_draws`` random (semi-)orthogonal maps Q
    (seeded): what a map with no knowledge of the correspondence reaches on these preprocessed sets."""
    g = torch.Generator().manual_seed(int(seed))
    vals = []
    for _ in range(n_draws):
        Q = random_map(xp.shape[1], yp.shape[1], g).to(xp.device)
        vals.append(csls_scores(xp.double() @ Q, yp, n_queries=n_queries, k=k, queries=queries))
    return float(np.mean([v[0] for v in vals])), float(np.mean([v[1] for v in vals]))


def criterion_gain(criterion: float, chance: float) -> float:
    """``(criterion − chance) / (1 − chance)``: the share of the way from chance to a perfect 1 (0 when chance ≥ 1)."""
    if not (math.isfinite(criterion) and math.isfinite(chance)) or chance >= 1.0:
        return 0.0
    return (criterion - chance) / (1.0 - chance)


def csls_lift(score: float, chance: float) -> float:
    """``(score − chance) / |chance|``: the relative rise of the mean CSLS score over its chance level."""
    if not (math.isfinite(score) and math.isfinite(chance)) or chance == 0.0:
        return 0.0
    return (score - chance) / abs(chance)


@dataclass
class Holdout:
    """Rows of X a restart fits on (``train``) and rows it holds out to judge the map (``held``), with the seed
    pairs' X rows as positions in ``train`` (``seeds_x``) and their Y rows (``seeds_y``)."""

    train: torch.Tensor
    held: torch.Tensor
    seeds_x: torch.Tensor
    seeds_y: torch.Tensor


def split_holdout(n_x: int, frac: float, seed: int, pairs: np.ndarray, device: torch.device) -> Holdout:
    """Hold out a seeded random ``frac`` of the rows of X (at least one, at most n_x − 2, never a seed pair's
    row); ``frac = 0`` holds out nothing and judges the map on its training rows (optimistic: a map fitted on
    two unrelated sets also fits its own training rows better than chance)."""
    sx = torch.as_tensor(pairs[:, 0], dtype=torch.long)
    sy = torch.as_tensor(pairs[:, 1], dtype=torch.long, device=device)
    if frac <= 0.0:
        rows = torch.arange(n_x)
        return Holdout(rows.to(device), rows.to(device), sx.to(device), sy)
    g = torch.Generator().manual_seed(int(seed) + 7919)  # a stream of its own, not the restart's
    free = torch.ones(n_x, dtype=torch.bool)
    free[sx] = False
    candidates = free.nonzero().flatten()
    n_held = min(max(1, round(frac * n_x)), n_x - 2, candidates.numel())
    held = candidates[torch.randperm(candidates.numel(), generator=g)[:n_held]].sort().values
    keep = torch.ones(n_x, dtype=torch.bool)
    keep[held] = False
    train = keep.nonzero().flatten()
    position = torch.full((n_x,), -1, dtype=torch.long)
    position[train] = torch.arange(train.numel())
    return Holdout(train.to(device), held.to(device), position[sx].to(device), sy)


def distinct_sets(x: torch.Tensor, y: torch.Tensor, pairs: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    """X and Y with exact duplicate rows dropped (first occurrence kept, order kept) and the seed pairs re-indexed.

    Unpaired inputs are sets: a repeated row adds no item, and it would leak a held-out row into the training
    rows (a word list built from dictionary pairs repeats each word once per pair). The seed pairs come back
    sorted, a repeated pair once."""
    from alignkit.degenerate import repeated_rows

    out = []
    for t in (x, y):
        repeats = repeated_rows(t)  # the 128-bit row hashes every duplicate check uses
        if repeats is None:  # no duplicates: no copy
            out.append((t, np.arange(t.shape[0])))
            continue
        first, inverse = repeats
        out.append((t[torch.as_tensor(first, device=t.device)], inverse))
    (xd, px), (yd, py) = out
    if pairs.shape[0]:
        pairs = np.unique(np.stack([px[pairs[:, 0]], py[pairs[:, 1]]], axis=1), axis=0)
    return xd, yd, pairs


def restart_agreement(targets: list[torch.Tensor]) -> list[list[float]]:
    """``A[i][j]``: the share of query rows that restarts i and j translate to the same row of Y (1 on the
    diagonal). Independent restarts that found the correspondence agree (94 % on Bible verses); maps that
    each fit some structure without the correspondence land on different rows (random maps agree on ≈ 1/n_y)."""
    n = len(targets)
    return [[1.0 if i == j else float((targets[i] == targets[j]).double().mean()) for j in range(n)] for i in range(n)]


def count_converged(cells: Iterable[Any]) -> tuple[int, int]:
    """``(converged, restarts)`` over restart records: each cell a fit's ``restarts_`` list or its JSON text (as in a
    run's ``fits.parquet``); empty, None and NaN cells (paired fits) count nothing."""
    flags: list[bool] = []
    for cell in cells:
        records = json.loads(cell) if isinstance(cell, str) and cell else cell
        if isinstance(records, list):
            flags.extend(bool(r.get("converged")) for r in records)
    return sum(flags), len(flags)


# --------------------------------------------------------------------------------------- estimator

#: the mean CSLS score of a converged restart must exceed its chance level by this share of it
MIN_CSLS_LIFT = 0.25
#: the default share of query rows another restart must translate alike to confirm a restart
MIN_AGREEMENT = 0.5


#: Parameter bounds every unsupervised aligner shares (restarts and the verdict's criterion); each method's
#: ``register_aligner(constraints=...)`` adds its own to these.
SHARED_CONSTRAINTS: dict[str, dict[str, Any]] = {
    "n_restarts": {"low": 1},
    "n_queries": {"low": 1},
    "min_gain": {"low": 0.0, "high": 1.0},
    "holdout": {"low": 0.0, "high": 0.5},
    "min_agreement": {"low": 0.0, "high": 1.0},
}


class UnsupervisedAligner(Aligner):
    """Base class of aligners fitted on unpaired sets (see the module docstring).

    Subclasses take ``n_restarts`` (≥ 1), ``seed`` and ``min_agreement`` (default 0.5; the agreement a restart
    needs from another to stay converged, see the module docstring) hyper-parameters; restart r uses seed
    ``seed + r``. Learned scalars saved with the aligner: ``criterion_`` (the kept restart's), ``best_restart_``,
    ``restarts_`` (one record per restart: seed, criterion, converged, the method's details and, with two or
    more restarts, ``agreement`` with every restart), ``n_items_x_``, ``n_items_y_`` (rows given),
    ``n_distinct_x_``, ``n_distinct_y_`` (distinct rows fitted) and ``n_seed_pairs_`` (distinct seed pairs).
    """

    _min_items: ClassVar[int] = 2

    def fit(self, X: ArrayLike, Y: ArrayLike, seed_pairs: Any = None) -> UnsupervisedAligner:
        """Learn the alignment from unpaired X and Y (rows carry no correspondence; counts may differ);
        ``seed_pairs`` optionally names known ``(row of X, row of Y)`` pairs. Returns ``self``."""
        hp = self._validate_params()
        x, y = as_matrix(X, "X"), as_matrix(Y, "Y")
        for t, name in ((x, "X"), (y, "Y")):
            if t.shape[0] < self._min_items:
                raise ValueError(
                    f"{type(self).__name__}.fit needs at least {self._min_items} rows of {name}; got {t.shape[0]}"
                )
        self._check_training_spaces(x, y)
        pairs = check_seed_pairs(seed_pairs, x.shape[0], y.shape[0])
        n_rows_x, n_rows_y = int(x.shape[0]), int(y.shape[0])
        xd, yd, pairs = distinct_sets(x.double(), y.double(), pairs)
        for t, name in ((xd, "X"), (yd, "Y")):
            if t.shape[0] < self._min_items:
                raise ValueError(
                    f"{type(self).__name__}.fit needs at least {self._min_items} distinct rows of {name}; got "
                    f"{t.shape[0]}"
                )
        restarts: list[Restart] = []
        for r in range(int(hp["n_restarts"])):
            restarts.append(self._fit_once(xd, yd, seed=int(hp["seed"]) + r, pairs=pairs))
        agreement = self._confirm_by_agreement(restarts, xd, yd, hp)
        # the best converged restart; the best of all when none converged
        pool = [i for i, r in enumerate(restarts) if r.converged] or list(range(len(restarts)))
        best = max(pool, key=lambda i: restarts[i].criterion)
        for name, value in restarts[best].state.items():
            setattr(self, name, value)
        self.criterion_ = float(restarts[best].criterion)
        self.best_restart_ = int(best)
        self.restarts_ = [
            {
                "restart": i,
                "seed": int(hp["seed"]) + i,
                "criterion": float(r.criterion),
                "converged": bool(r.converged),
                **r.info,
                **({"agreement": [round(float(a), 6) for a in agreement[i]]} if agreement is not None else {}),
            }
            for i, r in enumerate(restarts)
        ]
        self.n_features_x_, self.n_features_y_ = int(x.shape[1]), int(y.shape[1])
        self.n_items_x_, self.n_items_y_ = n_rows_x, n_rows_y
        self.n_distinct_x_, self.n_distinct_y_ = int(xd.shape[0]), int(yd.shape[0])
        self.n_seed_pairs_ = int(pairs.shape[0])
        if not any(r.converged for r in restarts):
            values = ", ".join(f"{r.criterion:.4f}" for r in restarts)
            warnings.warn(
                UnsupervisedFitWarning(
                    f"{type(self).__name__}: none of {len(restarts)} restarts converged (criterion per restart: "
                    f"{values}); the kept map (restart {best}) may not have found the correspondence (it may be "
                    "partly right or no better than chance: score it on a few known pairs). Try more restarts, "
                    "a few seed_pairs, or check that the spaces hold comparable items."
                ),
                stacklevel=2,
            )
        return self

    def _fit_once(self, x: torch.Tensor, y: torch.Tensor, *, seed: int, pairs: np.ndarray) -> Restart:
        """One restart on float64 X and Y (distinct rows) with the given seed and seed pairs."""
        raise NotImplementedError(f"{type(self).__name__} must implement _fit_once")

    def _restart_targets(self, restart: Restart, xq: torch.Tensor, y: torch.Tensor, k: int) -> torch.Tensor:
        """The CSLS-nearest row of ``y`` of each row of ``xq`` in the shared space of one restart's state."""
        probe = copy.copy(self)
        probe.n_features_x_, probe.n_features_y_ = int(xq.shape[1]), int(y.shape[1])
        for name, value in restart.state.items():
            setattr(probe, name, value)
        return csls_nearest(unit_rows(probe._transform_x(xq)).float(), unit_rows(probe._transform_y(y)).float(), k=k)

    def _confirm_by_agreement(
        self, restarts: list[Restart], x: torch.Tensor, y: torch.Tensor, hp: dict[str, Any]
    ) -> list[list[float]] | None:
        """The agreement matrix of the restarts (:func:`restart_agreement`), and each restart that passed its own
        checks kept converged only when another restart that passed them agrees with it on at least
        ``min_agreement`` of the query rows (a reason is added otherwise). None with a single restart."""
        if len(restarts) < 2:
            return None
        g = torch.Generator().manual_seed(int(hp["seed"]) + 15_485_863)  # a stream of its own
        n_q, need = int(hp.get("n_queries", 10_000)), float(hp.get("min_agreement", MIN_AGREEMENT))
        rows = torch.randperm(x.shape[0], generator=g)[:n_q].sort().values.to(x.device)
        targets = [self._restart_targets(r, x[rows], y, int(hp.get("csls_k", 10))) for r in restarts]
        agree = restart_agreement(targets)
        passed = [r.converged for r in restarts]
        for i, r in enumerate(restarts):
            if not passed[i]:
                continue
            others = [agree[i][j] for j in range(len(restarts)) if j != i and passed[j]]
            best = max(others, default=0.0)
            if best < need:
                r.converged = False
                r.info.setdefault("reasons", []).append(
                    f"no other restart that passed its checks agrees with it: its translations of {rows.numel()} "
                    f"rows of X match at most {best:.3f} of theirs (min_agreement={need})"
                    if others
                    else f"no other restart passed its checks to confirm it (min_agreement={need})"
                )
        return agree

    def _upgrade_fitted(self, fitted: dict[str, Any]) -> dict[str, Any]:
        # saved before duplicate rows were dropped: the fit saw every row
        for side in ("x", "y"):
            if f"n_items_{side}_" in fitted:
                fitted.setdefault(f"n_distinct_{side}_", fitted[f"n_items_{side}_"])
        return fitted

    def _learned_scalars(self) -> list[str]:
        return [
            "n_features_x_", "n_features_y_", "n_items_x_", "n_items_y_", "n_distinct_x_", "n_distinct_y_",
            "n_seed_pairs_",
            "criterion_", "best_restart_", "restarts_", *self._scalars,
        ]  # fmt: skip


def verdict_info(
    scores: tuple[float, float], chance: tuple[float, float], min_gain: float, reasons: list[str]
) -> tuple[bool, dict[str, Any]]:
    """The converged flag and the record fields of a restart, from its :func:`csls_scores` and their chance level.

    Converged when (1) the criterion's :func:`criterion_gain` over chance is at least ``min_gain``, (2) the mean
    CSLS score rises over its chance level by at least ``MIN_CSLS_LIFT`` (:func:`csls_lift`; a map that only
    lays the clusters of X onto those of Y raises the criterion but not the CSLS score, whose translations
    then do not stand out from their neighbours), and (3) no method-specific reason (``reasons``) speaks against it.
    """
    gain, lift = criterion_gain(scores[0], chance[0]), csls_lift(scores[1], chance[1])
    reasons = list(reasons)
    if gain < min_gain:
        reasons.append(
            f"criterion {scores[0]:.4f} is only {gain:.3f} of the way from chance ({chance[0]:.4f}) to 1 "
            f"(min_gain={min_gain})"
        )
    if lift < MIN_CSLS_LIFT:
        reasons.append(
            f"mean CSLS {scores[1]:.4f} rises only {lift:+.3f} over chance ({chance[1]:.4f}; needs {MIN_CSLS_LIFT})"
        )
    record = {
        "chance": round(float(chance[0]), 6),
        "gain": round(float(gain), 6),
        "mean_csls": round(float(scores[1]), 6),
        "chance_csls": round(float(chance[1]), 6),
        "csls_lift": round(float(lift), 6),
        "reasons": reasons,
    }
    return not reasons, record


__all__ = [
    "MIN_AGREEMENT",
    "MIN_CSLS_LIFT",
    "Holdout",
    "Induction",
    "Restart",
    "UnsupervisedAligner",
    "UnsupervisedFitWarning",
    "chance_scores",
    "check_normalize_steps",
    "check_seed_pairs",
    "count_converged",
    "criterion_gain",
    "csls_induction",
    "csls_lift",
    "csls_nearest",
    "csls_scores",
    "distinct_sets",
    "mean_csls_criterion",
    "normalize_rows",
    "principal_axes",
    "procrustes_map",
    "random_map",
    "restart_agreement",
    "split_holdout",
    "verdict_info",
]
