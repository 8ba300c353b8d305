"""Embedding translation metrics in the style of vec2vec (docs/methods.md §5.4)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from alignkit._common import unit_rows
from alignkit._validation import ArrayLike, as_pair, check_ks, check_same_dim
from alignkit.degenerate import warn_degenerate
from alignkit.evaluate.rows import Row, make_row
from alignkit.ranking import Ranks, rank_counts, rank_summary


def candidate_batches(n: int, n_candidates: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """The batching scheme: ``(queries, candidates)`` index pairs, seeded.

    Rows are shuffled with ``numpy.random.default_rng(seed)`` and cut into consecutive batches of
    ``n_candidates``; within a batch every row is a query and the batch's targets are its candidates
    (as vec2vec ranks within batches of 1024). If n is not a multiple, the last r rows form a batch whose
    candidate set is topped up with ``n_candidates − r`` other rows drawn without replacement, so every
    query ranks among exactly ``n_candidates`` targets (its own included).
    """
    if n < n_candidates:
        raise ValueError(f"translation needs at least n_candidates={n_candidates} rows; got n={n}")
    rng = np.random.default_rng(seed)
    perm = rng.permutation(n)
    out = []
    full = n - n % n_candidates
    for s in range(0, full, n_candidates):
        b = perm[s : s + n_candidates]
        out.append((b, b))
    if full < n:
        rest = perm[full:]
        fill = rng.choice(perm[:full], size=n_candidates - rest.size, replace=False)
        out.append((rest, np.concatenate([rest, fill])))
    return out


def translation(
    pred: ArrayLike,
    target: ArrayLike,
    *,
    n_candidates: int = 1024,
    ks: Sequence[int] = (1, 16),
    seed: int = 0,
    **tags: Any,
) -> list[Row]:
    """vec2vec translation metrics for predictions ``pred[i] ≈ target[i]``.

    - ``mean_cosine``: ``(1/n) Σ_i cos(pred_i, target_i)``;
    - ``top{k}``: fraction whose true target is among the k most cosine-similar of ``n_candidates``
      candidates (itself + others, see :func:`candidate_batches`);
    - ``mean_rank``: mean rank ``1 + g_i + t_i/2`` (1 = best), ``g_i = #{c : cos(pred_i, t_c) > cos(pred_i, t_i)}``
      and ``t_i`` the other candidates tied with the target; ties count by expectation under random
      tie-breaking (:mod:`alignkit.ranking`), also in ``top{k}``.

    Random baseline: top-1 = 1/n_candidates, mean rank (n_candidates + 1)/2 (512.5 for 1024). Jha, Zhang,
    Shmatikov & Morris, "Harnessing the universal geometry of embeddings", arXiv 2025
    (vec2vec).
    Rows carry ``n_candidates``, ``n_queries`` and the candidate ``seed``.
    """
    p, t = as_pair(pred, target, ("pred", "target"))
    warn_degenerate("translation", pred=p, target=t)
    check_same_dim(p, t, ("pred", "target"))
    if isinstance(n_candidates, bool) or not isinstance(n_candidates, (int, np.integer)) or n_candidates < 1:
        raise ValueError(f"n_candidates must be a positive integer; got {n_candidates!r}")
    ks = check_ks(ks, int(n_candidates), "candidate set")
    P, T = unit_rows(p.double()), unit_rows(t.double())
    n = P.shape[0]
    cos = (P * T).sum(dim=1)
    parts = []
    for qi, ci in candidate_batches(n, int(n_candidates), seed):
        q, c = torch.as_tensor(qi, device=P.device), torch.as_tensor(ci, device=P.device)
        parts.append(rank_counts(P[q], T[c]))  # query i's target is candidate i
    summary = rank_summary(Ranks.cat(parts), ks, prefix="top")
    base = {"n_candidates": int(n_candidates), "n_queries": n, "seed": seed}
    rows = [make_row("mean_cosine", float(cos.mean()), tags, **base)]
    rows += [make_row(f"top{k}", summary[f"top{k}"], tags, **base) for k in ks]
    rows.append(make_row("mean_rank", summary["mean_rank"], tags, **base))
    return rows
