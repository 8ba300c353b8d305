"""The one retrieval ranking core: per-query rank counts by row blocks, and their summary.

Query i scores every gallery item j with ``s_ij = a·⟨q_i, g_j⟩ − u_i − v_j`` (cosine on unit rows, inner
product, ``2⟨q, g⟩ − ‖g‖²`` for Euclidean, ``2cos − r_q − r_g`` for CSLS). With ``b_i`` the score of its best
gold item, two counts describe where the gold item lands::

    g_i = #{j : s_ij > b_i}              items strictly above the gold item
    t_i = #{j ∉ gold_i : s_ij = b_i}     other items exactly tied with it (equal in the scores' dtype)

**Ties are not hits.** Ties are broken uniformly at random and every reported number is its expectation:
the rank is uniform on ``{g+1, …, g+t+1}``, so::

    E[rank]    = g + 1 + t/2                                   mean rank, median rank
    P(rank≤k)  = clip((k − g)/(t + 1), 0, 1)                   R@k, top-k, P@k
    E[1/rank]  = (H_{g+t+1} − H_g)/(t + 1),  H_n = Σ_{j≤n} 1/j   MRR

Without ties (t = 0) these are the plain rank ``g + 1``, ``1[g < k]`` and ``1/(g + 1)``, bit for bit. An output
that scores every candidate the same (all-zero embeddings, a constant gallery, a map that sends everything to
one point: g = 0, t = n − 1) gets chance exactly: R@k = k/n, MRR = H_n/n, mean rank (n + 1)/2, where counting
ties as hits gave 1.0. With several gold items the rank is the best-scored one's, and the other gold items are
left out of t (they neither help nor hurt): a query whose w gold items all tie with t others gets
R@1 = 1/(t + 1), never more than the w/(t + w) of a random order of all of them, so a degenerate output never
scores above chance. There is no ``ties=`` switch: one rule everywhere; :class:`Ranks` keeps g and t, from
which the optimistic (g + 1) and pessimistic (g + t + 1) ranks follow if a comparison needs them.

Scores come from one matrix product per block of query rows (memory O(block·n), no argsort); the gold score
is read from the same product, and identical gallery rows are scored once (a product may round one column
differently by its position), so exact ties stay ties. Used by ``metrics.retrieval_*``,
``evaluate.retrieval``/``zero_shot``/``bli``/``translation``, ``Aligner.score`` and the trainer's validation
R@1, so all of them count the same way.

Directions have one vocabulary: ``"x_to_y"`` (rows of the first argument query the second), ``"y_to_x"``
and ``"both"``; a protocol whose arguments are named otherwise spells it with its own names through
:func:`direction_names` (``evaluate.retrieval(q, g)`` reports ``"q_to_g"`` / ``"g_to_q"``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from alignkit._common import median, unit_rows
from alignkit._lazy import lazy_module
from alignkit._validation import ArrayLike, as_pair, check_choice, check_same_dim
from alignkit.degenerate import repeated_rows

if TYPE_CHECKING:
    import torch
else:
    torch = lazy_module("torch")

METRICS: tuple[str, ...] = ("cosine", "ip", "euclidean")
X_TO_Y, Y_TO_X = "x_to_y", "y_to_x"
DIRECTIONS: tuple[str, ...] = (X_TO_Y, Y_TO_X, "both")

#: Default block: about this many bytes of scores per matrix product.
BLOCK_BYTES = 64 * 2**20


def direction_names(x: str = "x", y: str = "y") -> dict[str, str]:
    """The direction vocabulary spelt with a protocol's own argument names: ``{"x_to_y": f"{x}_to_{y}", …}``."""
    return {X_TO_Y: f"{x}_to_{y}", Y_TO_X: f"{y}_to_{x}"}


def block_rows(n: int, block_size: int | None, itemsize: int = 8) -> int:
    """Query rows per block: ``block_size`` checked, or about :data:`BLOCK_BYTES` of scores over n candidates."""
    if block_size is None:
        return max(1, BLOCK_BYTES // (itemsize * n))
    if isinstance(block_size, bool) or not isinstance(block_size, (int, np.integer)) or block_size < 1:
        raise ValueError(f"block_size must be a positive integer; got {block_size!r}")
    return int(block_size)


@dataclass(frozen=True, eq=False)
class Ranks:
    """Per query: ``above`` = g (items scored strictly above its best gold item) and ``tied`` = t (other items
    scored exactly as it), int64 tensors on one device. The rank is uniform on ``{g+1, …, g+t+1}``."""

    above: torch.Tensor
    tied: torch.Tensor

    @classmethod
    def untied(cls, ranks: torch.Tensor) -> Ranks:
        """Plain ranks without ties (whole numbers >= 1): ``g = rank − 1``, ``t = 0``."""
        r = torch.as_tensor(ranks)
        if r.is_floating_point() and not bool((r == r.round()).all()):
            raise ValueError("plain ranks must be whole numbers; expected ranks of ties cannot be summarised again")
        r = r.long()
        if r.numel() and int(r.min()) < 1:
            raise ValueError(f"ranks start at 1; got {int(r.min())}")
        return cls(r - 1, torch.zeros_like(r))

    @classmethod
    def cat(cls, parts: Sequence[Ranks]) -> Ranks:
        """The queries of several :class:`Ranks`, one after the other."""
        return cls(torch.cat([p.above for p in parts]), torch.cat([p.tied for p in parts]))

    def __len__(self) -> int:
        return self.above.numel()

    def __getitem__(self, index: torch.Tensor | slice) -> Ranks:
        return Ranks(self.above[index], self.tied[index])

    def cpu(self) -> Ranks:
        """The counts on the CPU."""
        return Ranks(self.above.cpu(), self.tied.cpu())

    def expected(self) -> torch.Tensor:
        """``E[rank] = g + 1 + t/2`` per query (float64)."""
        return self.above.double() + 1.0 + self.tied.double() / 2.0

    def hit_probability(self, k: int) -> torch.Tensor:
        """``P(rank ≤ k) = clip((k − g)/(t + 1), 0, 1)`` per query (float64)."""
        den = self.tied + 1
        return torch.minimum((k - self.above).clamp_min(0), den).double() / den.double()

    def reciprocal(self) -> torch.Tensor:
        """``E[1/rank] = (H_{g+t+1} − H_g)/(t + 1)`` per query (float64); exactly ``1/(g + 1)`` where t = 0.

        H from one float64 cumulative sum up to the largest ``g + t + 1`` (exact to rounding for small values;
        absolute error about 1e-12 at 10⁷ candidates, far below what an MRR can resolve).
        """
        out = 1.0 / (self.above + 1).double()
        tied = self.tied > 0
        if bool(tied.any()):
            g, t = self.above[tied], self.tied[tied]
            top = g + t + 1
            H = _harmonic(int(top.max()), self.above.device)
            out[tied] = (H[top] - H[g]) / (t + 1).double()
        return out

    def expected_hits(self, k: int) -> float:
        """``Σ_i P(rank_i ≤ k)``: the integer numerators ``clip(k − g, 0, t + 1)`` summed exactly per denominator
        ``t + 1``, one division each, so untied queries give the hit count and all-tied ones exactly ``m·k/n``."""
        den = (self.tied + 1).cpu().numpy()
        num = torch.minimum((k - self.above).clamp_min(0), self.tied + 1).cpu().numpy()
        dens, group = np.unique(den, return_inverse=True)
        sums = np.bincount(group.reshape(-1), weights=num, minlength=dens.size)  # whole numbers, exact below 2**53
        return math.fsum((sums / dens).tolist())

    def recall(self, k: int) -> float:
        """R@k = ``(1/m) Σ_i P(rank_i ≤ k)`` (see :meth:`expected_hits`); NaN without queries."""
        return self.expected_hits(k) / len(self) if len(self) else math.nan


def _harmonic(n: int, device: torch.device) -> torch.Tensor:
    """``[H_0, H_1, …, H_n]`` with ``H_j = Σ_{i≤j} 1/i`` (float64)."""
    steps = 1.0 / torch.arange(1, n + 1, dtype=torch.float64, device=device)
    return torch.cat([torch.zeros(1, dtype=torch.float64, device=device), steps.cumsum(0)])


def _distinct_gold(gold: torch.Tensor) -> torch.Tensor:
    """Gold rows (m, w) with repeated indices replaced by the -1 padding, each row keeping at least one index."""
    g = gold.sort(dim=1).values
    repeat = torch.zeros_like(g, dtype=torch.bool)
    repeat[:, 1:] = g[:, 1:] == g[:, :-1]
    g = g.masked_fill(repeat | (g < 0), -1)
    if not bool((g >= 0).any(dim=1).all()):
        raise ValueError("every query needs at least one gold index (rows padded with -1 only)")
    return g


def _count_above(S: torch.Tensor, gold: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``g_i = #{j : S_ij > b_i}`` and ``t_i = #{j ∉ gold_i : S_ij = b_i}`` per row, ``b_i = max_{j ∈ gold_i} S_ij``.

    The tie policy lives here alone: exact equality in S's dtype is a tie, other gold items are not counted.
    ``gold`` (b, w) holds distinct indices padded with -1.
    """
    valid = gold >= 0
    gold_scores = S.gather(1, gold.clamp_min(0)).masked_fill(~valid, -torch.inf)
    best = gold_scores.max(dim=1, keepdim=True).values
    above = (S > best).sum(dim=1)
    tied = (S == best).sum(dim=1) - ((gold_scores == best) & valid).sum(dim=1)
    return above, tied


def score_ranks(S: torch.Tensor, gold: torch.Tensor | None = None) -> Ranks:
    """Rank counts from a precomputed score matrix ``S`` (queries × gallery; higher is better), for scores that
    are not one matrix product (GRAM volumes, several views). ``gold`` as in :func:`rank_counts`."""
    m, n = S.shape
    if gold is None:
        if m > n:
            raise ValueError(f"gold=None pairs query i with gallery item i, but there are {m} queries and {n} items")
        gold = torch.arange(m, device=S.device)[:, None]
    else:
        gold = _distinct_gold(gold.to(device=S.device, dtype=torch.long).reshape(m, -1))
    above, tied = _count_above(S, gold)
    return Ranks(above, tied)


def rank_counts(
    queries: torch.Tensor,
    gallery: torch.Tensor,
    gold: torch.Tensor | None = None,
    *,
    scale: float = 1.0,
    query_offset: torch.Tensor | None = None,
    gallery_offset: torch.Tensor | None = None,
    block_size: int | None = None,
) -> Ranks:
    """Rank counts of each query's best gold item: ``g = #{j : s_ij > b_i}``, ``t = #{j ∉ gold_i : s_ij = b_i}``.

    ``s_ij = scale·⟨q_i, g_j⟩ − query_offset_i − gallery_offset_j`` (offsets optional), from ``queries``
    (m, d) and ``gallery`` (n, d) as given (normalise first for cosine); ``b_i = max_{j ∈ gold_i} s_ij``.
    ``gold``: None for ``gold_i = {i}`` (needs m <= n), an (m,) index tensor, or (m, w) padded with -1 (at
    least one valid index per row; repeats are ignored). ``block_size`` query rows per product (default about
    64 MiB of scores). :class:`Ranks` on the queries' device (CPU or CUDA).
    """
    m, n = queries.shape[0], gallery.shape[0]
    dev = queries.device
    if gold is None:
        if m > n:
            raise ValueError(f"gold=None pairs query i with gallery item i, but there are {m} queries and {n} items")
        gold = torch.arange(m, device=dev)[:, None]
    else:
        gold = gold.to(device=dev, dtype=torch.long)
        if gold.ndim == 1:
            gold = gold[:, None]
        if gold.ndim != 2 or gold.shape[0] != m:
            raise ValueError(f"gold must have one row per query ({m}); got shape {tuple(gold.shape)}")
        gold = _distinct_gold(gold)
    step = block_rows(n, block_size, queries.element_size())
    gallery = gallery.to(dev)
    g_off = None if gallery_offset is None else gallery_offset.to(dev)[None, :]
    # Identical gallery rows must score exactly alike, but a matrix product may round the same column differently by
    # its position (GEMM edge tiles): multiply each distinct row once and copy its column (offsets apply per item).
    repeats = repeated_rows(gallery)
    expand = None
    if repeats is not None:
        first, inverse = (torch.as_tensor(v, device=dev) for v in repeats)
        gallery, expand = gallery[first], inverse
    gal_t = gallery.T.contiguous()
    q_off = None if query_offset is None else query_offset.to(dev)
    above = torch.empty(m, dtype=torch.long, device=dev)
    tied = torch.empty(m, dtype=torch.long, device=dev)
    for s in range(0, m, step):
        e = min(m, s + step)
        S = queries[s:e] @ gal_t
        if expand is not None:
            S = S[:, expand]
        if scale != 1.0:
            S.mul_(scale)
        if q_off is not None:
            S.sub_(q_off[s:e, None])
        if g_off is not None:
            S.sub_(g_off)
        above[s:e], tied[s:e] = _count_above(S, gold[s:e])
    return Ranks(above, tied)


def paired_ranks(
    x: ArrayLike,
    y: ArrayLike,
    *,
    metric: str = "cosine",
    direction: str = X_TO_Y,
    block_size: int | None = None,
) -> dict[str, Ranks]:
    """Rank counts of the partners of row-paired ``x[i] ↔ y[i]`` in one shared space, per direction.

    Inputs are checked (2-D, finite, paired, same width) and ranked in float64. s is the cosine, the inner
    product (``"ip"``) or the negative Euclidean distance (ranked by ``2⟨q, g⟩ − ‖g‖²``, which orders a row
    like ``−‖q − g‖²``). Returns ``{"x_to_y": Ranks}``, ``{"y_to_x": …}`` or both.
    """
    check_choice(metric, METRICS, "metric")
    check_choice(direction, DIRECTIONS, "direction")
    x, y = as_pair(x, y)  # finite, 2-D, paired; y on x's device
    check_same_dim(x, y)
    x, y = x.double(), y.double()
    if metric == "cosine":
        x, y = unit_rows(x), unit_rows(y)
    out: dict[str, Ranks] = {}
    for name, q, g in ((X_TO_Y, x, y), (Y_TO_X, y, x)):
        if direction in (name, "both"):
            if metric == "euclidean":
                out[name] = rank_counts(q, g, scale=2.0, gallery_offset=(g * g).sum(dim=1), block_size=block_size)
            else:
                out[name] = rank_counts(q, g, block_size=block_size)
    return out


def rank_summary(ranks: Ranks | torch.Tensor, ks: Sequence[int], prefix: str = "R@") -> dict[str, float]:
    """``{f"{prefix}{k}": R@k, "mrr", "median_rank", "mean_rank"}``, each the expectation over random tie-breaks.

    R@k = ``(1/m) Σ_i P(rank_i ≤ k)``, MRR = ``(1/m) Σ_i E[1/rank_i]``, mean and median (numpy's convention)
    of ``E[rank_i]`` (see :class:`Ranks`). ``ranks`` is a :class:`Ranks` or a tensor of plain ranks without
    ties. Computed on the CPU in float64 (numpy's pairwise sums, exact integer sums for R@k), so the numbers
    do not depend on the device or thread count. ``ks`` are taken as given (check them with ``check_ks``
    against the gallery size).
    """
    r = (ranks if isinstance(ranks, Ranks) else Ranks.untied(ranks)).cpu()
    expected = r.expected()
    out = {f"{prefix}{k}": r.recall(k) for k in ks}
    out["mrr"] = float(np.mean(r.reciprocal().numpy()))
    out["median_rank"] = float(median(expected))
    out["mean_rank"] = float(np.mean(expected.numpy()))
    return out
