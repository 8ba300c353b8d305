"""Retrieval across n ≥ 3 aligned views: every ordered pair, and one view against all the others (GRAM).

GRAM's protocol (Cicchetti et al., "Gramian Multimodal Representation Learning and Alignment", ICLR 2025)
queries with one view and retrieves the item whose *other* views fit the query best. Two scores:

- ``"gram"``: ``−Vol(q, o_1, …, o_m)``, the volume of the parallelotope spanned by the unit query and the item's
  m other unit views, ``Vol = sqrt(det G)`` with G their Gram matrix. By the Schur complement,
  ``det G = det(G_oo) · (1 − q_oᵀ G_oo⁻¹ q_o)``, ``q_o = [⟨q, o_l⟩]_l``, so the volume of every (query, item)
  pair costs m matrix products plus an m × m solve per item.
- ``"nn"``: the mean cosine of the query to the item's other views.

Rows follow :func:`alignkit.evaluate.retrieval` (ties count by expectation, :mod:`alignkit.ranking`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from alignkit._common import unit_rows
from alignkit._validation import ArrayLike, as_matrix, check_choice, check_ks
from alignkit.degenerate import warn_degenerate
from alignkit.evaluate.retrieval import retrieval
from alignkit.evaluate.rows import Row, make_row
from alignkit.ranking import rank_summary, score_ranks

ANY_SCORINGS: tuple[str, ...] = ("gram", "nn")
_BLOCK = 1 << 22  # (query, item, view) scores per block


def _views(views: Sequence[ArrayLike], names: Sequence[str] | None) -> tuple[list[torch.Tensor], list[str]]:
    if isinstance(views, (str, bytes)) or not isinstance(views, Sequence) or len(views) < 2:
        raise ValueError("views must be a list of at least 2 row-paired arrays (one per view)")
    ts = [as_matrix(v, f"views[{i}]").double() for i, v in enumerate(views)]
    names = [str(i) for i in range(len(ts))] if names is None else [str(n) for n in names]
    if len(names) != len(ts):
        raise ValueError(f"names must name each of the {len(ts)} views; got {len(names)}")
    for i, t in enumerate(ts[1:], 1):
        if t.shape != ts[0].shape:
            raise ValueError(f"views[{i}] has shape {tuple(t.shape)} but views[0] has {tuple(ts[0].shape)}")
    return [unit_rows(t.to(ts[0].device)) for t in ts], names


def gram_volume_scores(query: torch.Tensor, others: Sequence[torch.Tensor], eps: float = 1e-12) -> torch.Tensor:
    """``S[i, j] = −Vol(query_i, others[0]_j, …, others[m−1]_j)`` for unit rows (m ≥ 1 other views)."""
    m = len(others)
    O = torch.stack(list(others), dim=1)  # (n, m, d)
    G = O @ O.transpose(1, 2)  # (n, m, m) per item
    det_oo = torch.linalg.det(G).clamp_min(0.0)
    Ginv = torch.linalg.pinv(G, hermitian=True)
    out = torch.empty(query.shape[0], O.shape[0], dtype=query.dtype, device=query.device)
    step = max(1, _BLOCK // max(O.shape[0] * m, 1))
    for s in range(0, query.shape[0], step):
        qo = torch.einsum("qd,nmd->qnm", query[s : s + step], O)  # ⟨q, o_l⟩
        quad = torch.einsum("qnm,nmk,qnk->qn", qo, Ginv, qo)
        det = det_oo[None, :] * (1.0 - quad)
        out[s : s + step] = -det.clamp_min(0.0).add_(eps).sqrt_()
    return out


def _mean_cosine_scores(query: torch.Tensor, others: Sequence[torch.Tensor]) -> torch.Tensor:
    return sum((query @ o.T for o in others), torch.zeros(())) / len(others)


def multiview_retrieval(
    views: Sequence[ArrayLike],
    *,
    ks: Sequence[int] = (1, 5, 10),
    pair_scoring: Sequence[str] = ("nn",),
    any_scoring: Sequence[str] = ("gram", "nn"),
    csls_k: int = 10,
    names: Sequence[str] | None = None,
    **tags: Any,
) -> list[Row]:
    """Retrieval of row-paired views ``views[v][i]`` (one item per row, all in one shared space).

    - every ordered pair ``a->b`` with each of ``pair_scoring`` (``nn``, ``csls``, as :func:`retrieval`);
    - ``a->rest``: view a queries, each item represented by its other views, scored by each of
      ``any_scoring`` (``gram``: −volume, ``nn``: mean cosine; see the module).

    Rows: ``{metric, value, direction, scoring, n_queries, n_gallery, **tags}``; chance R@k ≈ k/n.
    """
    ts, names = _views(views, names)
    for sc in any_scoring:
        check_choice(sc, ANY_SCORINGS, "any_scoring")
    warn_degenerate("multiview_retrieval", **{f"views[{i}]": t for i, t in enumerate(ts)})
    n = ts[0].shape[0]
    ks = check_ks(ks, n, "items")
    rows: list[Row] = []
    for a in range(len(ts)):
        for b in range(a + 1, len(ts)):
            dirs = {"q_to_g": f"{names[a]}->{names[b]}", "g_to_q": f"{names[b]}->{names[a]}"}
            for sc in pair_scoring:
                for r in retrieval(ts[a], ts[b], ks=ks, scoring=sc, csls_k=csls_k, **tags):
                    rows.append({**r, "direction": dirs[r["direction"]]})
    if len(ts) < 3:
        return rows
    for a in range(len(ts)):
        others = [t for v, t in enumerate(ts) if v != a]
        for sc in any_scoring:
            S = gram_volume_scores(ts[a], others) if sc == "gram" else _mean_cosine_scores(ts[a], others)
            summary = rank_summary(score_ranks(S), ks)
            base = {"direction": f"{names[a]}->rest", "scoring": sc, "n_queries": n, "n_gallery": n}
            rows += [make_row(metric, value, tags, **base) for metric, value in summary.items()]
    return rows


__all__ = ["ANY_SCORINGS", "gram_volume_scores", "multiview_retrieval"]
