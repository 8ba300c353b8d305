"""Retrieval-based alignment between two spaces that already share a geometry (same dimension).

Query row i of one space retrieves among all n rows of the other; its partner is row i. With
``g_i = #{j : s_ij > s_ii}`` and ``t_i = #{j ≠ i : s_ij = s_ii}``, ties are broken at random and every number
is its expectation (the rank is uniform on ``{g+1, …, g+t+1}``): ties are not hits, so an all-constant
output scores chance (R@k = k/n, MRR = H_n/n). Counted by the shared ranking core :mod:`alignkit.ranking`
(which states the rule) in row blocks: memory O(block·n), no argsort.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from alignkit._lazy import lazy_module
from alignkit._validation import ArrayLike, as_pair, check_choice, check_ks, check_min_rows, check_same_dim
from alignkit.metrics._registry import register
from alignkit.ranking import DIRECTIONS, METRICS, X_TO_Y, Y_TO_X, Ranks, paired_ranks, rank_summary

if TYPE_CHECKING:
    import torch
else:
    torch = lazy_module("torch")

SUMMARIES: tuple[str, ...] = ("recall", "mrr")


def _direction_ranks(
    X: ArrayLike, Y: ArrayLike, metric: str, direction: str, block_size: int | None = None
) -> dict[str, Ranks]:
    check_choice(metric, METRICS, "metric")
    check_choice(direction, DIRECTIONS, "direction")
    x, y = as_pair(X, Y)
    check_same_dim(x, y)
    check_min_rows(x.shape[0], 2, "retrieval")
    return paired_ranks(x, y, metric=metric, direction=direction, block_size=block_size)


def retrieval_ranks(
    X: ArrayLike, Y: ArrayLike, *, metric: str = "cosine", block_size: int | None = None
) -> torch.Tensor:
    """Expected rank (1 = best) of the partner ``Y[i]`` among all rows of Y for each query ``X[i]``.

    ``rank_i = 1 + g_i + t_i/2`` with ``g_i = #{j : s(x_i, y_j) > s(x_i, y_i)}`` and ``t_i = #{j ≠ i :
    s(x_i, y_j) = s(x_i, y_i)}``: the mean rank under random tie-breaking, so a tie is x.5 rather than a hit
    (without ties: the plain integer rank). s is the cosine similarity, inner product ("ip") or negative
    Euclidean distance, computed in float64. Float64 ranks on X's device (int64 before ties were ranked by
    expectation); ``block_size`` query rows per block (default about 64 MiB of scores).
    """
    return _direction_ranks(X, Y, metric, X_TO_Y, block_size)[X_TO_Y].expected()


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
    constraints={
        "k": {"low": 1},
        "metric": {"choices": METRICS},
        "direction": {"choices": DIRECTIONS},
        "summary": {"choices": SUMMARIES},
    },
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
    """Cross-space retrieval score: Recall@k ``(1/n) Σ_i P(rank_i ≤ k)`` (random baseline k/n) or, with
    ``summary="mrr"``, the mean reciprocal rank ``(1/n) Σ_i E[1/rank_i]`` (random baseline H_n/n).

    Expectations over random tie-breaks (:mod:`alignkit.ranking`): ``P(rank_i ≤ k) = clip((k − g_i)/(t_i + 1),
    0, 1)``, so ties are not hits. ``direction="both"`` averages X→Y and Y→X.
    Standard cross-modal retrieval protocol, e.g. Radford et al., "Learning transferable visual models
    from natural language supervision", ICML 2021.
    """
    check_choice(summary, SUMMARIES, "summary")
    ranks = list(_direction_ranks(X, Y, metric, direction).values())
    if summary == "mrr":
        vals = [rank_summary(r, ())["mrr"] for r in ranks]
    else:
        (k,) = check_ks([k], len(ranks[0]))
        vals = [rank_summary(r, (k,))[f"R@{k}"] for r in ranks]
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
    constraints={"metric": {"choices": METRICS}, "direction": {"choices": DIRECTIONS}},
)
def retrieval_mrr(X: ArrayLike, Y: ArrayLike, *, metric: str = "cosine", direction: str = "x_to_y") -> float:
    """Mean reciprocal rank ``(1/n) Σ_i E[1/rank_i]``, ``E[1/rank] = (H_{g+t+1} − H_g)/(t + 1)`` over random
    tie-breaks (:mod:`alignkit.ranking`); without ties ``1/rank_i``."""
    return retrieval_alignment(X, Y, metric=metric, direction=direction, summary="mrr")


def retrieval_scores(
    X: ArrayLike, Y: ArrayLike, ks: Sequence[int] = (1, 5, 10), *, metric: str = "cosine"
) -> dict[str, dict[str, float]]:
    """R@k for every k, MRR, mean and median rank, in both directions (expectations over random tie-breaks).

    Returns ``{"x_to_y": {"R@1": …, "mrr": …, "median_rank": …, "mean_rank": …}, "y_to_x": {…}}``
    (:func:`alignkit.ranking.rank_summary`). A k larger than n raises.
    """
    ranks = _direction_ranks(X, Y, metric, "both")
    ks = check_ks(ks, len(ranks[X_TO_Y]))
    return {name: rank_summary(ranks[name], ks) for name in (X_TO_Y, Y_TO_X)}
