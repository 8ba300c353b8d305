"""Cross-space retrieval: R@k, MRR and median rank in both directions, with NN or CSLS scoring.

The ranking core (:func:`gold_ranks`) is shared by zero-shot classification and BLI. Ranks are strict,
``rank = 1 + #{j : s_j > s_gold}`` (METHODS §5.1): ties go to the gold item and the result is
deterministic. With several gold items the rank is that of the best-scored one. Scores are computed by
query blocks from one matrix product per block (memory O(block·n)); the gold score is read from the same
product, so exact ties stay ties.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import torch

from alignkit._validation import ArrayLike, as_matrix, check_choice
from alignkit.evaluate.rows import Row, make_row
from alignkit.neighbors import exact_topk

SCORINGS: tuple[str, ...] = ("nn", "csls")
_BLOCK_BYTES = 64 * 2**20


def normalize_rows(x: torch.Tensor) -> torch.Tensor:
    """Rows scaled to unit L2 norm, in float64 (all-zero rows stay zero)."""
    x = x.double()
    return x / x.norm(dim=1, keepdim=True).clamp_min(1e-12)


def check_ks(ks: Sequence[int] | int, n: int, what: str = "gallery") -> list[int]:
    """Integers with 1 <= k <= n (n = number of candidates a query ranks)."""
    if isinstance(ks, (int, np.integer)) and not isinstance(ks, bool):
        ks = [int(ks)]
    ks = list(ks)
    if not ks:
        raise ValueError("ks must list at least one k")
    out = []
    for k in ks:
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
            raise TypeError(f"k must be an integer; got {k!r}")
        if not 1 <= k <= n:
            raise ValueError(f"k must be between 1 and the {what} size {n}; got k={k}")
        out.append(int(k))
    return out


def check_same_dim(a: torch.Tensor, b: torch.Tensor, names: tuple[str, str]) -> None:
    if a.shape[1] != b.shape[1]:
        raise ValueError(
            f"{names[0]} and {names[1]} must live in one shared space (same dimension): {names[0]} has "
            f"d={a.shape[1]}, {names[1]} has d={b.shape[1]}; align them first"
        )


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


def pad_gold(gold: Sequence[Sequence[int]], device: torch.device) -> torch.Tensor:
    """Lists of gold indices as an (m, max_len) int64 tensor padded with -1."""
    width = max(len(g) for g in gold)
    out = torch.full((len(gold), width), -1, dtype=torch.long)
    for i, g in enumerate(gold):
        out[i, : len(g)] = torch.as_tensor(list(g), dtype=torch.long)
    return out.to(device)


def gold_ranks(
    queries: torch.Tensor,
    gallery: torch.Tensor,
    gold: torch.Tensor,
    *,
    r_queries: torch.Tensor | None = None,
    r_gallery: torch.Tensor | None = None,
    block_size: int | None = None,
) -> torch.Tensor:
    """Strict rank of the best gold item for each query: ``1 + #{j : s_ij > max_{g ∈ gold_i} s_ig}``.

    ``queries`` (m, d) and ``gallery`` (n, d) are unit rows; ``gold`` is (m, w) padded with -1, at least
    one valid entry per row. s is the cosine, or with both radii given the CSLS score
    ``2cos(x, y) − r_queries(x) − r_gallery(y)``.
    """
    m, n = queries.shape[0], gallery.shape[0]
    step = int(block_size) if block_size else max(1, _BLOCK_BYTES // (8 * n))
    gal_t = gallery.T.contiguous()
    out = torch.empty(m, dtype=torch.long, device=queries.device)
    for s in range(0, m, step):
        e = min(m, s + step)
        S = queries[s:e] @ gal_t
        if r_queries is not None and r_gallery is not None:
            S.mul_(2.0).sub_(r_queries[s:e, None]).sub_(r_gallery[None, :])
        g = gold[s:e]
        gs = S.gather(1, g.clamp_min(0)).masked_fill(g < 0, -torch.inf)
        best = gs.max(dim=1).values
        out[s:e] = 1 + (best[:, None] < S).sum(dim=1)
    return out


def rank_summary(ranks: torch.Tensor, ks: Sequence[int], prefix: str = "R@") -> dict[str, float]:
    """R@k (fraction with rank <= k), MRR, median (numpy convention) and mean rank."""
    r = ranks.double().cpu().numpy()
    out = {f"{prefix}{k}": float(np.mean(r <= k)) for k in ks}
    out["mrr"] = float(np.mean(1.0 / r))
    out["median_rank"] = float(np.median(r))
    out["mean_rank"] = float(np.mean(r))
    return out


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
    item's strict rank ``1 + #{j : s_ij > s_gold}``. The reverse direction (g→q) uses the inverted gold
    (gallery item j's gold queries are ``{i : j ∈ gold[i]}``); gallery items that no query claims are left
    out of it (``n_queries`` says how many were ranked).

    ``scoring="nn"`` ranks by cosine; ``"csls"`` by ``CSLS(x, y) = 2cos(x, y) − r_g(x) − r_q(y)``, r the mean
    cosine to the ``csls_k`` nearest neighbours in the other space (Conneau et al., "Word translation
    without parallel data", ICLR 2018). The CSLS matrix is one matrix seen from both sides.

    Returns rows ``{metric: "R@k" | "mrr" | "median_rank" | "mean_rank", value, direction: "q_to_g" |
    "g_to_q", scoring, n_queries, n_gallery, [csls_k], **tags}``. Random baseline R@k ≈ k/n.
    """
    check_choice(scoring, SCORINGS, "scoring")
    qt = as_matrix(q, "q")
    gt = as_matrix(g, "g")
    check_same_dim(qt, gt, ("q", "g"))
    gt = gt.to(qt.device)
    m, n = qt.shape[0], gt.shape[0]
    if gold is None:
        if m != n:
            raise ValueError(
                f"q and g must be paired by row when gold is not given: q has {m} rows, g has {n}; "
                "pass gold=[set of gallery indices per query] otherwise"
            )
        fwd = [[i] for i in range(m)]
    else:
        fwd = _check_gold(gold, m, n)
    inv: list[list[int]] = [[] for _ in range(n)]
    for i, gi in enumerate(fwd):
        for j in gi:
            inv[j].append(i)
    rev_rows = [j for j in range(n) if inv[j]]
    ks_fwd = check_ks(ks, n, "gallery (g)")
    ks_rev = check_ks(ks, m, "reverse gallery (q)")
    Q, G = normalize_rows(qt), normalize_rows(gt)
    rq = rg = None
    extra: dict[str, Any] = {}
    if scoring == "csls":
        rq, rg = csls_radius(Q, G, csls_k), csls_radius(G, Q, csls_k)
        extra["csls_k"] = int(csls_k)
    ranks_fwd = gold_ranks(Q, G, pad_gold(fwd, Q.device), r_queries=rq, r_gallery=rg, block_size=block_size)
    sel = torch.as_tensor(rev_rows, dtype=torch.long, device=Q.device)
    ranks_rev = gold_ranks(
        G[sel],
        Q,
        pad_gold([inv[j] for j in rev_rows], Q.device),
        r_queries=None if rg is None else rg[sel],
        r_gallery=rq,
        block_size=block_size,
    )
    rows: list[Row] = []
    for direction, ranks, kk, n_gal in (("q_to_g", ranks_fwd, ks_fwd, n), ("g_to_q", ranks_rev, ks_rev, m)):
        for metric, value in rank_summary(ranks, kk).items():
            rows.append(
                make_row(
                    metric,
                    value,
                    tags,
                    direction=direction,
                    scoring=scoring,
                    n_queries=int(ranks.numel()),
                    n_gallery=n_gal,
                    **extra,
                )
            )
    return rows
