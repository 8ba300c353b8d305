"""Retrieval-based alignment between two spaces that already share a geometry (same dimension).

Query row i of one space retrieves among all n rows of the other; its partner is row i. The rank is
``1 + #{j : s_ij > s_ii}`` (strict, so ties go to the partner and the result is deterministic), counted
by row blocks from one matrix product per block: memory O(block·n), no argsort.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from alignkit._validation import ArrayLike, as_pair, check_choice, check_min_rows
from alignkit.metrics._registry import register

METRICS: tuple[str, ...] = ("cosine", "ip", "euclidean")
DIRECTIONS: tuple[str, ...] = ("x_to_y", "y_to_x", "both")
SUMMARIES: tuple[str, ...] = ("recall", "mrr")

_BLOCK_BYTES = 64 * 2**20


def _shared_space(X: ArrayLike, Y: ArrayLike, metric: str) -> tuple[torch.Tensor, torch.Tensor]:
    check_choice(metric, METRICS, "metric")
    x, y = as_pair(X, Y)
    if x.shape[1] != y.shape[1]:
        raise ValueError(
            f"retrieval needs X and Y in one shared space (same dimension): X has d={x.shape[1]}, "
            f"Y has d={y.shape[1]}; map one onto the other first (e.g. with a fitted aligner)"
        )
    check_min_rows(x.shape[0], 2, "retrieval")
    x, y = x.double(), y.double()
    if metric == "cosine":
        x = x / x.norm(dim=1, keepdim=True).clamp_min(1e-12)
        y = y / y.norm(dim=1, keepdim=True).clamp_min(1e-12)
    return x, y


def _ranks(q: torch.Tensor, base: torch.Tensor, metric: str, block_size: int | None) -> torch.Tensor:
    n = q.shape[0]
    if block_size is None:
        step = max(1, _BLOCK_BYTES // (8 * n))
    elif isinstance(block_size, bool) or not isinstance(block_size, (int, np.integer)) or block_size < 1:
        raise ValueError(f"block_size must be a positive integer; got {block_size!r}")
    else:
        step = int(block_size)
    base_t = base.T.contiguous()
    sq = (base * base).sum(dim=1) if metric == "euclidean" else None
    out = torch.empty(n, dtype=torch.long, device=q.device)
    for s in range(0, n, step):
        e = min(n, s + step)
        S = q[s:e] @ base_t
        if sq is not None:  # 2⟨q,b⟩ − ‖b‖² orders like −‖q − b‖² within a row
            S.mul_(2.0).sub_(sq)
        rows = torch.arange(e - s, device=q.device)
        gold = S[rows, rows + s]  # read from the same product, so exact ties stay ties
        out[s:e] = 1 + (S > gold[:, None]).sum(dim=1)
    return out


def retrieval_ranks(
    X: ArrayLike, Y: ArrayLike, *, metric: str = "cosine", block_size: int | None = None
) -> torch.Tensor:
    """Rank (1 = best) of the partner ``Y[i]`` among all rows of Y for each query ``X[i]``.

    ``rank_i = 1 + #{j : s(x_i, y_j) > s(x_i, y_i)}`` with s the cosine similarity, inner product ("ip")
    or negative Euclidean distance. Float64, int64 result on X's device; ``block_size`` query rows per
    block (default about 64 MiB of scores).
    """
    x, y = _shared_space(X, Y, metric)
    return _ranks(x, y, metric, block_size)


def _direction_ranks(X: ArrayLike, Y: ArrayLike, metric: str, direction: str) -> list[torch.Tensor]:
    check_choice(direction, DIRECTIONS, "direction")
    x, y = _shared_space(X, Y, metric)
    out = []
    if direction in ("x_to_y", "both"):
        out.append(_ranks(x, y, metric, None))
    if direction in ("y_to_x", "both"):
        out.append(_ranks(y, x, metric, None))
    return out


def _median(v: torch.Tensor) -> float:
    """numpy-style median (mean of the two middle values); kthvalue has no size limit, unlike quantile."""
    n = v.numel()
    lo = v.kthvalue((n + 1) // 2).values
    hi = v.kthvalue(n // 2 + 1).values
    return float((lo + hi) / 2.0)


def _check_ks(ks: Sequence[int], n: int) -> list[int]:
    out = []
    for k in ks:
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
            raise TypeError(f"k must be an integer; got {k!r}")
        if not 1 <= k <= n:
            raise ValueError(f"k must be between 1 and n = {n}; got k={k}")
        out.append(int(k))
    return out


@register(
    "retrieval_alignment",
    family="retrieval",
    range=(0.0, 1.0),
    symmetric=False,
    invariances=("isotropic_scale",),
    cost="O(n²d)",
    description="Recall@k of retrieving each item's partner across a shared space (random baseline k/n). "
    "Asymmetric unless direction='both'; not invariant to transforming one space alone.",
    defaults={"k": 1, "metric": "cosine", "direction": "x_to_y", "summary": "recall"},
)
def retrieval_alignment(
    X: ArrayLike,
    Y: ArrayLike,
    *,
    k: int = 1,
    metric: str = "cosine",
    direction: str = "x_to_y",
    summary: str = "recall",
) -> float:
    """Cross-space retrieval score: Recall@k ``(1/n) Σ_i 1[rank_i ≤ k]`` (random baseline k/n) or, with
    ``summary="mrr"``, the mean reciprocal rank ``(1/n) Σ_i 1/rank_i``.

    Ranks are strict (see :func:`retrieval_ranks`). ``direction="both"`` averages X→Y and Y→X.
    Standard cross-modal retrieval protocol, e.g. Radford et al., "Learning transferable visual models
    from natural language supervision", ICML 2021.
    """
    check_choice(summary, SUMMARIES, "summary")
    ranks = _direction_ranks(X, Y, metric, direction)
    if summary == "mrr":
        vals = [float((1.0 / r.double()).mean()) for r in ranks]
    else:
        (k,) = _check_ks([k], ranks[0].numel())
        vals = [float((r <= k).double().mean()) for r in ranks]
    return sum(vals) / len(vals)


@register(
    "retrieval_mrr",
    family="retrieval",
    range=(0.0, 1.0),
    symmetric=False,
    invariances=("isotropic_scale",),
    cost="O(n²d)",
    description="Mean reciprocal rank of each item's partner across a shared space (random baseline H_n/n).",
    defaults={"metric": "cosine", "direction": "x_to_y"},
)
def retrieval_mrr(X: ArrayLike, Y: ArrayLike, *, metric: str = "cosine", direction: str = "x_to_y") -> float:
    """Mean reciprocal rank ``(1/n) Σ_i 1/rank_i`` of the partners (strict ranks, :func:`retrieval_ranks`)."""
    return retrieval_alignment(X, Y, metric=metric, direction=direction, summary="mrr")


def retrieval_scores(
    X: ArrayLike, Y: ArrayLike, ks: Sequence[int] = (1, 5, 10), *, metric: str = "cosine"
) -> dict[str, dict[str, float]]:
    """R@k for every k, MRR, mean and median rank, in both directions.

    Returns ``{"x_to_y": {"R@1": …, "mrr": …, "mean_rank": …, "median_rank": …}, "y_to_x": {…}}``.
    A k larger than n raises.
    """
    ranks = _direction_ranks(X, Y, metric, "both")
    ks = _check_ks(ks, ranks[0].numel())
    out: dict[str, Any] = {}
    for name, r in zip(("x_to_y", "y_to_x"), ranks, strict=True):
        rd = r.double()
        row = {f"R@{k}": float((r <= k).double().mean()) for k in ks}
        row["mrr"] = float((1.0 / rd).mean())
        row["mean_rank"] = float(rd.mean())
        row["median_rank"] = _median(rd)
        out[name] = row
    return out
