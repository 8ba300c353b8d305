"""Cross-space retrieval: R@k, MRR and median rank in both directions, with NN or CSLS scoring.

Ranks come from the shared core :func:`alignkit.ranking.rank_counts` (also behind zero-shot, BLI,
translation and ``metrics.retrieval_*``), which states the rule: with ``g`` items scored above the gold item
and ``t`` others tied with it, ties are broken at random and each number is its expectation (rank uniform on
``{g+1, …, g+t+1}``), so ties are not hits; with several gold items the rank is that of the best-scored one
(the other gold items are not counted as ties); query blocks keep memory O(block·n).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import torch

from alignkit._common import unit_rows
from alignkit._validation import ArrayLike, as_matrix, check_choice, check_ks, check_same_dim
from alignkit.degenerate import warn_degenerate
from alignkit.evaluate.rows import Row, make_row
from alignkit.neighbors import exact_topk
from alignkit.ranking import X_TO_Y, Y_TO_X, Ranks, direction_names, rank_counts, rank_summary

SCORINGS: tuple[str, ...] = ("nn", "csls")


def csls_radius(queries: torch.Tensor, base: torch.Tensor, k: int) -> torch.Tensor:
    """``r(x) = (1/k) Σ_{y ∈ N_k(x)} cos(x, y)``: mean cosine of each query to its k nearest rows of ``base``.

    Inputs are unit rows. Conneau, Lample, Ranzato, Denoyer & Jégou, "Word translation without parallel
    data", ICLR 2018.
    """
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"csls_k must be a positive integer; got {k!r}")
    if k > base.shape[0]:
        raise ValueError(f"csls_k={k} exceeds the {base.shape[0]} items it averages over")
    vals, _ = exact_topk(queries, base, int(k), "ip")
    return vals.mean(dim=1)


def gold_ranks(
    queries: torch.Tensor,
    gallery: torch.Tensor,
    gold: torch.Tensor | None,
    *,
    r_queries: torch.Tensor | None = None,
    r_gallery: torch.Tensor | None = None,
    block_size: int | None = None,
) -> Ranks:
    """Rank counts of the best gold item ``b_i = max_{g ∈ gold_i} s_ig`` for each query: ``g_i = #{j : s_ij >
    b_i}`` and ``t_i = #{j ∉ gold_i : s_ij = b_i}`` (:class:`alignkit.ranking.Ranks`, expectation over ties).

    ``queries`` (m, d) and ``gallery`` (n, d) are unit rows; ``gold`` is (m,) or (m, w) padded with -1 (None:
    query i's gold is item i). s is the cosine, or with both radii given the CSLS score
    ``2cos(x, y) − r_queries(x) − r_gallery(y)``. Counted by :func:`alignkit.ranking.rank_counts`.
    """
    csls = r_queries is not None and r_gallery is not None
    return rank_counts(
        queries,
        gallery,
        gold,
        scale=2.0 if csls else 1.0,
        query_offset=r_queries if csls else None,
        gallery_offset=r_gallery if csls else None,
        block_size=block_size,
    )


def pad_gold(gold: Sequence[Sequence[int]], device: torch.device) -> torch.Tensor:
    """Lists of gold indices as an (m, max_len) int64 tensor padded with -1."""
    width = max(len(g) for g in gold)
    out = torch.full((len(gold), width), -1, dtype=torch.long)
    for i, g in enumerate(gold):
        out[i, : len(g)] = torch.as_tensor(list(g), dtype=torch.long)
    return out.to(device)


def _check_gold(gold: Sequence[Iterable[int]], m: int, n: int) -> list[list[int]]:
    if len(gold) != m:
        raise ValueError(f"gold must have one entry per query: {len(gold)} entries for {m} queries")
    out = []
    for i, g in enumerate(gold):
        idx = sorted({int(j) for j in g})
        if not idx:
            raise ValueError(f"gold[{i}] is empty: every query needs at least one gold gallery item")
        if idx[0] < 0 or idx[-1] >= n:
            raise ValueError(f"gold[{i}] has index outside the gallery [0, {n}): {idx}")
        out.append(idx)
    return out


def retrieval(
    q: ArrayLike,
    g: ArrayLike,
    *,
    ks: Sequence[int] = (1, 5, 10),
    scoring: str = "nn",
    csls_k: int = 10,
    gold: Sequence[Iterable[int]] | None = None,
    block_size: int | None = None,
    **tags: Any,
) -> list[Row]:
    """Retrieval between aligned spaces, both directions, as tidy rows.

    Rows are L2-normalised. Query ``q[i]``'s gold gallery items are ``gold[i]`` (default: ``{i}``, so q and
    g are paired by row); a query hits at k if any gold item is in its top k, and its rank is the best gold
    item's. Ties are broken at random and every number is its expectation (:mod:`alignkit.ranking`): with g
    items above the gold item and t others tied with it, R@k counts ``clip((k − g)/(t + 1), 0, 1)``, MRR
    ``(H_{g+t+1} − H_g)/(t + 1)`` and the ranks ``g + 1 + t/2``, so an all-constant output scores chance.
    The reverse direction (g→q) uses the inverted gold (gallery item j's gold queries are ``{i : j ∈
    gold[i]}``); gallery items that no query claims are left out of it (``n_queries`` says how many were
    ranked).

    ``scoring="nn"`` ranks by cosine; ``"csls"`` by ``CSLS(x, y) = 2cos(x, y) − r_g(x) − r_q(y)``, r the mean
    cosine to the ``csls_k`` nearest neighbours in the other space (Conneau et al., "Word translation
    without parallel data", ICLR 2018). The CSLS matrix is one matrix seen from both sides.

    Returns rows ``{metric: "R@k" | "mrr" | "median_rank" | "mean_rank", value, direction: "q_to_g" |
    "g_to_q", scoring, n_queries, n_gallery, [csls_k], **tags}``. Random baseline R@k ≈ k/n.
    """
    check_choice(scoring, SCORINGS, "scoring")
    qt = as_matrix(q, "q")
    gt = as_matrix(g, "g")
    warn_degenerate("retrieval", q=qt, g=gt)
    check_same_dim(qt, gt, ("q", "g"))
    gt = gt.to(qt.device)
    m, n = qt.shape[0], gt.shape[0]
    if gold is None:
        if m != n:
            raise ValueError(
                f"q and g must be paired by row when gold is not given: q has {m} rows, g has {n}; "
                "pass gold=[set of gallery indices per query] otherwise"
            )
        gold_fwd = gold_rev = sel = None
    else:
        fwd = _check_gold(gold, m, n)
        inv: list[list[int]] = [[] for _ in range(n)]
        for i, gi in enumerate(fwd):
            for j in gi:
                inv[j].append(i)
        rev_rows = [j for j in range(n) if inv[j]]
        gold_fwd = pad_gold(fwd, qt.device)
        gold_rev = pad_gold([inv[j] for j in rev_rows], qt.device)
        sel = torch.as_tensor(rev_rows, dtype=torch.long, device=qt.device)
    ks_by = {X_TO_Y: check_ks(ks, n, "gallery (g)"), Y_TO_X: check_ks(ks, m, "reverse gallery (q)")}
    Q, G = unit_rows(qt.double()), unit_rows(gt.double())
    rq = rg = None
    extra: dict[str, Any] = {}
    if scoring == "csls":
        rq, rg = csls_radius(Q, G, csls_k), csls_radius(G, Q, csls_k)
        extra["csls_k"] = int(csls_k)
    G_rev, rg_rev = (G, rg) if sel is None else (G[sel], None if rg is None else rg[sel])
    ranks = {
        X_TO_Y: gold_ranks(Q, G, gold_fwd, r_queries=rq, r_gallery=rg, block_size=block_size),
        Y_TO_X: gold_ranks(G_rev, Q, gold_rev, r_queries=rg_rev, r_gallery=rq, block_size=block_size),
    }
    n_gallery = {X_TO_Y: n, Y_TO_X: m}
    rows: list[Row] = []
    for direction, label in direction_names("q", "g").items():
        r = ranks[direction]
        for metric, value in rank_summary(r, ks_by[direction]).items():
            rows.append(
                make_row(
                    metric,
                    value,
                    tags,
                    direction=label,
                    scoring=scoring,
                    n_queries=len(r),
                    n_gallery=n_gallery[direction],
                    **extra,
                )
            )
    return rows
