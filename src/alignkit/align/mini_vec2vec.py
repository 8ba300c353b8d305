"""mini-vec2vec: unsupervised linear alignment of embedding spaces by anchor matching and refinement (Dar, 2025).

Guy Dar, "mini-vec2vec: Scaling Universal Geometry Alignment with Linear Transformations", arXiv 2510.02348
(Algorithm 1: centre and normalise; pseudo-pairs by anchor alignment, Alg. 2; Procrustes; refinement by
matching, Alg. 3, then by clustering, Alg. 4). Written from the paper's algorithm boxes and abstract; the
details they leave open were taken from the author's public notebook (guy-dar/mini-vec2vec
``linear_vec2vec.ipynb``) and are listed in the class docstring.
"""

from __future__ import annotations

import time
from typing import Any, ClassVar

import numpy as np
import torch

from alignkit._common import unit_rows
from alignkit.align.base import register_aligner
from alignkit.align.unsupervised import (
    BLOCK_ELEMENTS,
    MIN_AGREEMENT,
    SHARED_CONSTRAINTS,
    Restart,
    UnsupervisedAligner,
    chance_scores,
    csls_scores,
    procrustes_map,
    split_holdout,
    verdict_info,
)


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy()


def _sq_dists(t: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    return (t * t).sum(1, keepdim=True) - 2.0 * t @ c.T + (c * c).sum(1)[None, :]


def kmeans(
    t: torch.Tensor, k: int, generator: torch.Generator, init: torch.Tensor | None = None, n_iter: int = 50
) -> torch.Tensor:
    """k-means centroids of the rows of ``t``: k-means++ seeding (Arthur & Vassilvitskii, SODA 2007) from
    ``generator`` unless ``init`` is given, then Lloyd iterations until the assignment is stable (at most
    ``n_iter``); an emptied cluster keeps its centroid. Deterministic for a given generator state."""
    n = t.shape[0]
    if init is None:
        idx = [int(torch.randint(n, (1,), generator=generator))]
        d2 = _sq_dists(t, t[idx]).squeeze(1).clamp_min(0.0)
        for _ in range(1, k):
            total = float(d2.sum())
            j = int(torch.multinomial(d2 / total, 1, generator=generator)) if total > 0 else len(idx) % n
            idx.append(j)
            d2 = torch.minimum(d2, _sq_dists(t, t[j : j + 1]).squeeze(1).clamp_min(0.0))
        c = t[idx].clone()
    else:
        c = init.to(t).clone()
    assign = torch.full((n,), -1, dtype=torch.long, device=t.device)
    for _ in range(n_iter):
        rows = max(1, BLOCK_ELEMENTS // max(k, 1))
        new = torch.cat([_sq_dists(t[s : s + rows], c).argmin(1) for s in range(0, n, rows)])
        if torch.equal(new, assign):
            break
        assign = new
        counts = torch.bincount(assign, minlength=k).to(t.dtype)
        sums = torch.zeros_like(c).index_add_(0, assign, t)
        filled = counts > 0
        c[filled] = sums[filled] / counts[filled, None]
    return c


def _double_centred_gram(c: torch.Tensor) -> np.ndarray:
    """``H C Cᵀ H`` with ``H = I − 11ᵀ/m``: the centred similarity of m centroids (the QAP's input)."""
    g = c @ c.T
    g = g - g.mean(dim=0, keepdim=True) - g.mean(dim=1, keepdim=True) + g.mean()
    out: np.ndarray = g.cpu().numpy()
    return out


def qap_2opt(A: np.ndarray, B: np.ndarray, start: np.ndarray) -> tuple[np.ndarray, float]:
    """Local search for the permutation π maximising ``f(π) = Σ_ij A[i, j]·B[π(i), π(j)]`` (symmetric A, B): from
    ``start``, apply the best improving swap of two assignments until none improves (2-opt).

    With ``P = B[π][:, π]`` and ``M = A P``, swapping the assignments of a and b changes f by
    ``2(M[a,b] + M[b,a] − M[a,a] − M[b,b] − c_a − c_b) + (A[a,a] − A[b,b])(P[b,b] − P[a,a])``, where c_a, c_b are the
    k = a, b terms of the sum ``Σ_k (A[a,k] − A[b,k])(P[b,k] − P[a,k])``; all swaps are scored at once. Returns
    (π, f(π)).
    """
    perm = start.copy()
    da = np.diag(A)
    while True:
        P = B[np.ix_(perm, perm)]
        M = A @ P
        dm, dp = np.diag(M), np.diag(P)
        c_a = (da[:, None] - A.T) * (P.T - dp[:, None])  # k = a term for the pair (a, b)
        c_b = (A - da[None, :]) * (dp[None, :] - P)  # k = b term
        delta = 2.0 * (M + M.T - dm[:, None] - dm[None, :] - c_a - c_b) + (da[:, None] - da[None, :]) * (
            dp[None, :] - dp[:, None]
        )
        np.fill_diagonal(delta, 0.0)
        a, b = np.unravel_index(int(np.argmax(delta)), delta.shape)
        if delta[a, b] <= 1e-12 * max(1.0, abs(float((A * P).sum()))):
            return perm, float((A * P).sum())
        perm[[a, b]] = perm[[b, a]]


def match_centroids(ca: torch.Tensor, cb: torch.Tensor, n_inits: int, rng: np.random.Generator) -> np.ndarray:
    """The permutation π maximising ``Σ_ij K_A[i, j]·K_B[π(i), π(j)]`` (a quadratic assignment problem) between
    the centred centroid similarities of both spaces: :func:`qap_2opt` from ``n_inits`` random starts, best kept."""
    ka, kb = _double_centred_gram(ca), _double_centred_gram(cb)
    best, best_f = None, -np.inf
    for _ in range(n_inits):
        perm, f = qap_2opt(ka, kb, rng.permutation(ka.shape[0]))
        if f > best_f:
            best, best_f = perm, f
    assert best is not None
    return best


def _topk_mean_targets(qa: torch.Tensor, gb: torch.Tensor, y: torch.Tensor, k: int) -> torch.Tensor:
    """For each row of ``qa``: the mean of the rows of ``y`` whose ``gb`` rows are its k most cosine-similar
    (blocked)."""
    a, b = unit_rows(qa), unit_rows(gb)
    out = torch.empty((a.shape[0], y.shape[1]), dtype=y.dtype, device=y.device)
    rows = max(1, BLOCK_ELEMENTS // max(b.shape[0], k * y.shape[1]))  # the block and its gathered neighbours
    for s in range(0, a.shape[0], rows):
        idx = (a[s : s + rows] @ b.T).topk(k, dim=1).indices
        out[s : s + rows] = y[idx].mean(dim=1)
    return out


@register_aligner(
    "mini_vec2vec",
    paired=False,
    constraints={
        **SHARED_CONSTRAINTS,
        "n_runs": {"low": 1},
        "n_clusters": {"low": 2},
        "subsample": {"low": 2},
        "qap_inits": {"low": 1},
        "n_neighbors": {"low": 1},
        "refine_iters": {"low": 0},
        "refine_sample": {"low": 1},
        "refine_neighbors": {"low": 1},
        "smoothing": {"low": 0.0, "high": 1.0, "high_open": True},
        "refine_clusters": {"low": 0},
        "csls_k": {"low": 1},
    },
)
class MiniVec2Vec(UnsupervisedAligner):
    """mini-vec2vec (Dar, arXiv 2510.02348): a linear map found without pairs, fit(X, Y) on unpaired sets.

    Rows of X and Y carry no correspondence and their counts may differ. With x̂, ŷ the rows centred on their
    side's mean and unit-normalised (Alg. 1, line 4):

    1. Anchor alignment (Alg. 2), ``n_runs`` times (s): draw up to ``subsample`` rows of each side, k-means
       them into ``n_clusters`` (c) centroids, and match the two centroid sets by the quadratic assignment that
       best agrees their double-centred similarity matrices ``H C Cᵀ H`` (2-opt local search,
       :func:`qap_2opt`, the best of ``qap_inits`` random starts). The matched centroids of all runs are the
       anchors (s·c pairs).
    2. Pseudo-pairs: each side's relative representation, the cosines of a row to its side's anchors; each x̂ is
       paired with the mean of the ``n_neighbors`` (k) ŷ whose relative representations are most cosine-similar
       to its own (blocked: never an n_x × n_y matrix beyond one block).
    3. ``W`` = orthogonal Procrustes of x̂ onto its pseudo-partners.
    4. Refine-1, matching (Alg. 3), ``refine_iters`` (T) times: draw ``refine_sample`` (n_s) rows of x̂, pair
       each with the mean of its ``refine_neighbors`` (k') cosine-nearest ŷ under the current W, fit Procrustes
       W' on them and smooth, ``W ← α W + (1 − α) W'`` (α = ``smoothing``).
    5. Refine-2, clustering (Alg. 4): k-means x̂ into ``refine_clusters`` (c') centroids, k-means ŷ starting
       from the mapped X centroids, Procrustes W' between the two centroid sets and the same smoothing
       (skipped when ``refine_clusters`` is 0 or exceeds half the rows of a side).

    Details chosen here (the paper's boxes name the parameters, not all of the steps): the QAP's input is the
    double-centred centroid Gram matrix, solved by 2-opt with random restarts (the notebook calls scipy's
    ``quadratic_assignment(method="2opt")``, which rescores every swap from scratch; :func:`qap_2opt` scores all
    swaps at once and takes the best); pseudo-partners and refinement
    targets are unweighted means of the k neighbours; T = 100 refinement draws of n_s = 1,000 rows, k = k' = 50,
    α = 0.5, s = 30 runs of c = 20 clusters on 10,000-row samples, 30 QAP starts and c' = 500, all as in the
    author's notebook; one clustering refinement. W is therefore linear but not exactly orthogonal (a
    smoothed average of rotations), as in the paper. k-means is :func:`kmeans` (k-means++ seeding, Lloyd
    iterations; the notebook uses scikit-learn's, whose multi-threaded runs are not bit-for-bit repeatable).

    Seed pairs (semi-supervised): their rows join the anchors of step 2 (exact anchors beside the matched
    centroids) and every Procrustes fit of steps 3-5 as extra pairs.

    Criterion and verdict: a seeded ``holdout`` share (10 %) of the rows of X is left out of the fit; the
    criterion is :func:`~alignkit.align.unsupervised.mean_csls_criterion` of ``x̂W`` against ŷ on (up to
    ``n_queries`` of) these held-out rows, and :func:`~alignkit.align.unsupervised.verdict_info` judges it
    against the chance level of random rotations. The record of each restart holds the QAP agreements (the
    correlation of the matched centroid similarity matrices), the criterion after each stage and the verdict's
    reasons. d_x ≠ d_y: the anchor matching and relative representations do not depend on the
    widths, and W is d_x × d_y (semi-orthogonal Procrustes factors).

    Learned: ``mean_x_`` (d_x), ``mean_y_`` (d_y), ``map_`` (d_x × d_y), ``scale_`` (mean norm of the centred
    training Y over that of X). ``transform_x(X) = x̂·W``, ``transform_y(Y) = ŷ`` and
    ``translate(X) = scale·(X − x̄)W + ȳ`` (Y's coordinates: W applied to the centred rows, not normalised).
    """

    _arrays: ClassVar[tuple[str, ...]] = ("mean_x_", "mean_y_", "map_")
    _scalars: ClassVar[tuple[str, ...]] = ("scale_",)
    _shapes: ClassVar[dict[str, tuple[str | int, ...]]] = {
        "mean_x_": ("d_x",), "mean_y_": ("d_y",), "map_": ("d_x", "d_y"), "scale_": (), "criterion_": (),
    }  # fmt: skip

    def __init__(
        self,
        n_restarts: int = 3,
        seed: int = 0,
        n_runs: int = 30,
        n_clusters: int = 20,
        subsample: int = 10_000,
        qap_inits: int = 30,
        n_neighbors: int = 50,
        refine_iters: int = 100,
        refine_sample: int = 1000,
        refine_neighbors: int = 50,
        smoothing: float = 0.5,
        refine_clusters: int = 500,
        csls_k: int = 10,
        n_queries: int = 10_000,
        min_gain: float = 0.2,
        holdout: float = 0.1,
        min_agreement: float = MIN_AGREEMENT,
    ) -> None:
        self.n_restarts = n_restarts
        self.seed = seed
        self.n_runs = n_runs
        self.n_clusters = n_clusters
        self.subsample = subsample
        self.qap_inits = qap_inits
        self.n_neighbors = n_neighbors
        self.refine_iters = refine_iters
        self.refine_sample = refine_sample
        self.refine_neighbors = refine_neighbors
        self.smoothing = smoothing
        self.refine_clusters = refine_clusters
        self.csls_k = csls_k
        self.n_queries = n_queries
        self.min_gain = min_gain
        self.holdout = holdout
        self.min_agreement = min_agreement

    # ------------------------------------------------------------------------------------------- fit

    def _fit_once(self, x: torch.Tensor, y: torch.Tensor, *, seed: int, pairs: np.ndarray) -> Restart:
        hp = self._hp
        t0 = time.perf_counter()
        rng = np.random.default_rng(seed)
        g = torch.Generator().manual_seed(int(seed))
        mx, my = x.mean(dim=0), y.mean(dim=0)
        scale = float((y - my).norm(dim=1).mean() / (x - mx).norm(dim=1).mean().clamp_min(1e-300))
        xa, yh = unit_rows(x - mx), unit_rows(y - my)
        split = split_holdout(x.shape[0], hp["holdout"], seed, pairs, x.device)
        xh, sx, sy = xa[split.train], split.seeds_x, split.seeds_y
        if min(xh.shape[0], yh.shape[0]) < hp["n_clusters"]:
            raise ValueError(
                f"MiniVec2Vec needs at least n_clusters={hp['n_clusters']} rows on each side to fit on; got "
                f"{xh.shape[0]} rows of X (after holding out {split.held.numel()}) and {yh.shape[0]} of Y"
            )
        nq, k = hp["n_queries"], hp["csls_k"]
        stages: dict[str, Any] = {}

        # 1-2: anchors, relative representations, pseudo-pairs
        anchors_x, anchors_y, qap = self._anchors(xh, yh, rng, g)
        anchors_x, anchors_y = torch.cat([anchors_x, xh[sx]]), torch.cat([anchors_y, yh[sy]])
        rel_x, rel_y = unit_rows(xh) @ unit_rows(anchors_x).T, unit_rows(yh) @ unit_rows(anchors_y).T
        targets = _topk_mean_targets(rel_x, rel_y, yh, min(hp["n_neighbors"], yh.shape[0]))
        # 3: Procrustes on the pseudo-pairs (+ seed pairs)
        W = procrustes_map(torch.cat([xh, xh[sx]]), torch.cat([targets, yh[sy]]))
        stages["procrustes"] = round(csls_scores(xh @ W, yh, n_queries=nq, k=k)[0], 6)
        # 4: Refine-1, matching
        alpha, kk = hp["smoothing"], min(hp["refine_neighbors"], yh.shape[0])
        for _ in range(hp["refine_iters"]):
            rows = torch.randperm(xh.shape[0], generator=g)[: hp["refine_sample"]].to(x.device)
            tgt = _topk_mean_targets(xh[rows] @ W, yh, yh, kk)
            W_new = procrustes_map(torch.cat([xh[rows], xh[sx]]), torch.cat([tgt, yh[sy]]))
            W = alpha * W + (1 - alpha) * W_new
        stages["refine_matching"] = round(csls_scores(xh @ W, yh, n_queries=nq, k=k)[0], 6)
        # 5: Refine-2, clustering
        c2 = hp["refine_clusters"]
        if 0 < c2 <= min(xh.shape[0], yh.shape[0]) // 2:
            cx = kmeans(xh, c2, g)
            cy = kmeans(yh, c2, g, init=cx @ W)
            W_new = procrustes_map(torch.cat([cx, xh[sx]]), torch.cat([cy, yh[sy]]))
            W = alpha * W + (1 - alpha) * W_new
            stages["refine_clustering"] = round(csls_scores(xh @ W, yh, n_queries=nq, k=k)[0], 6)
        scores = csls_scores(xa @ W, yh, n_queries=nq, k=k, queries=split.held)
        chance = chance_scores(xa, yh, seed=seed, n_queries=nq, k=k, queries=split.held)
        converged, verdict = verdict_info(scores, chance, hp["min_gain"], [])
        state = {"mean_x_": _np(mx), "mean_y_": _np(my), "map_": _np(W), "scale_": scale}
        info = {
            "qap_agreement": qap,
            "n_anchors": int(anchors_x.shape[0]),
            "stage_criteria": stages,
            "n_held_out": int(split.held.numel()),
            "seconds": round(time.perf_counter() - t0, 3),
            **verdict,
        }
        return Restart(state, float(scores[0]), converged, info)

    def _anchors(
        self, xh: torch.Tensor, yh: torch.Tensor, rng: np.random.Generator, g: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor, list[float]]:
        """Alg. 2: matched centroid pairs from ``n_runs`` k-means + QAP runs; returns them and the QAP objectives."""
        hp = self._hp
        c, m = hp["n_clusters"], hp["subsample"]
        ax, ay, objectives = [], [], []
        for _ in range(hp["n_runs"]):
            rx = rng.permutation(xh.shape[0])[:m]
            ry = rng.permutation(yh.shape[0])[:m]
            ca = kmeans(xh[torch.as_tensor(rx)], c, g)
            cb = kmeans(yh[torch.as_tensor(ry)], c, g)
            perm = match_centroids(ca, cb, hp["qap_inits"], rng)
            cb = cb[torch.as_tensor(perm)]
            ka, kb = _double_centred_gram(ca), _double_centred_gram(cb)
            objectives.append(round(float((ka * kb).sum() / np.sqrt((ka * ka).sum() * (kb * kb).sum())), 6))
            ax.append(ca)
            ay.append(cb)
        return torch.cat(ax), torch.cat(ay), objectives

    # ------------------------------------------------------------------------------------ transform

    def _transform_x(self, x: torch.Tensor) -> torch.Tensor:
        return unit_rows(x - self._state("mean_x_", x.device)) @ self._state("map_", x.device)

    def _transform_y(self, y: torch.Tensor) -> torch.Tensor:
        return unit_rows(y - self._state("mean_y_", y.device))

    def _translate(self, x: torch.Tensor) -> torch.Tensor:
        z = (x - self._state("mean_x_", x.device)) @ self._state("map_", x.device)
        return self.scale_ * z + self._state("mean_y_", x.device)
