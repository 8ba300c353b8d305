"""k-nearest-neighbour graphs of one space, computed once and shared by every kNN measure.

Exact search runs in row blocks on torch: for a block B of rows, ``S = X_B Xᵀ`` then top-k, so
memory is O(n·k + block·n) and no n×n matrix, dense mask or full argsort is ever built. Self is
excluded by index (not by distance), so duplicate rows still get each other as neighbours.
Every space is rescaled before its similarity products (cosine: each row by its largest |entry|, then to unit
norm; inner product and Euclidean: the whole space by one power of two, which is exact and keeps every order),
so the neighbours are the same at any finite scale of the input: no product overflows or underflows.
The approximate backend goes through faiss and always measures its recall@k against exact search
on a sample of rows; the recall travels with the graph.
With ``ties=True`` the exact search also keeps every row tied at each row's k-th similarity
(:class:`TiedNeighbours`), so kNN measures can share the last slots among the ties instead of letting the
search's tie-breaking decide them (an arbitrary but deterministic pick, which depends on the search's blocks).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from alignkit._common import optional_import, pow2_rescale, unit_rows
from alignkit._gemm import gram, single_threaded
from alignkit._lazy import lazy_module
from alignkit._validation import ArrayLike, as_matrix, check_choice, check_k

if TYPE_CHECKING:
    import torch
else:
    torch = lazy_module("torch")

Metric = Literal["cosine", "ip", "euclidean"]
METRICS: tuple[str, ...] = ("cosine", "ip", "euclidean")
BACKENDS: tuple[str, ...] = ("exact", "faiss")

_BLOCK_BYTES = 64 * 2**20  # size of one block of similarities
_TILE_BYTES = 32 * 2**20  # size of one B × B tile of a space's similarities with itself (self_topk)
_MAX_TIED_ENTRIES = 2**24  # beyond 64·n·k: a tied neighbourhood that large means a (nearly) constant space
_PADDED_WIDTH = 4  # tied rows up to 4k entries wide are stored padded; wider ones flat


def _inverse(perm: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    perm = torch.as_tensor(perm, dtype=torch.long).cpu()
    return perm, torch.empty_like(perm).index_copy_(0, perm, torch.arange(perm.numel()))


# The tied neighbourhoods index with index_select / masked_select / gather: torch's generic advanced indexing
# (t[idx], t[mask]) is up to 1000× slower on a contended multi-threaded CPU, and a null calls these per draw.
def _take(t: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    return t.index_select(0, idx)


@dataclass(frozen=True, eq=False)
class TiedNeighbours:
    """Every row's k-neighbourhood with the ties at its k-th similarity kept, as weighted entries.

    With r_i the k-th largest similarity of row i (self excluded), c_i the number of rows strictly more similar
    and t_i the number at exactly r_i: weight 1 for the c_i, ``(k − c_i)/t_i`` for each of the t_i, so every
    row's weights sum to k and no row order decides which tied row gets a slot. Without ties the weights are the
    0/1 indicator of the ordinary k-neighbour set.

    Stored padded, ``(n, W)`` with W the widest row up to 4k (padding: column n, weight 0, similarity −inf), so
    an overlap costs what the ordinary one does; the entries of rows wider than that (a large group of
    identical rows) are kept flat in ``heavy``, so one such row does not widen every other.
    """

    k: int
    cols: torch.Tensor  # (n, W) int64
    sims: torch.Tensor  # (n, W) float64, the similarities the search computed (kept to truncate)
    weights: torch.Tensor  # (n, W) float64
    light: torch.Tensor  # (n,) bool: the row's entries are in the padded part
    heavy: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]  # rows, cols, sims, weights: (h,) each

    @property
    def n(self) -> int:
        return int(self.cols.shape[0])

    def entries(self, rows: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
        """(rows, cols, sims, weights) of every entry, flat (of the rows where the bool mask ``rows`` is set)."""
        keep = self.cols != self.n
        if rows is not None:
            keep &= rows[:, None]
        flat = keep.flatten().nonzero().flatten()
        hr, hc, hs, hw = self.heavy
        h = torch.arange(hr.numel()) if rows is None else _take(rows, hr).nonzero().flatten()
        width = self.cols.shape[1]
        return (
            torch.cat([torch.div(flat, width, rounding_mode="floor"), _take(hr, h)]),
            torch.cat([_take(self.cols.flatten(), flat), _take(hc, h)]),
            torch.cat([_take(self.sims.flatten(), flat), _take(hs, h)]),
            torch.cat([_take(self.weights.flatten(), flat), _take(hw, h)]),
        )

    def truncate(self, k: int) -> TiedNeighbours:
        """The neighbourhoods for a smaller ``k``: every row at or above the new k-th similarity is stored."""
        check_k(k, self.k + 1, "k")
        if k == self.k:
            return self
        rows, cols, sims, _ = self.entries()
        # each row's entries by similarity (descending), rows in order: its k-th value sits at start + k − 1
        by_sim = torch.argsort(sims, descending=True, stable=True)
        by_row = _take(by_sim, torch.argsort(_take(rows, by_sim), stable=True))
        counts = torch.bincount(rows, minlength=self.n)
        kth = _take(sims, _take(by_row, torch.cumsum(counts, 0) - counts + k - 1))
        r = _take(kth, rows)
        keep = (sims >= r).nonzero().flatten()
        return tied_neighbours(self.n, k, _take(rows, keep), _take(cols, keep), _take(sims, keep), _take(r, keep))

    def permuted(self, perm: torch.Tensor) -> TiedNeighbours:
        """The neighbourhoods of the space whose row i is this space's row ``perm[i]``: row i takes row π(i)'s
        entries with columns relabelled by π⁻¹, O(n·W + h)."""
        perm, inv = _inverse(perm)
        relabel = torch.cat([inv, torch.tensor([self.n])])  # padding stays padding
        cols = _take(relabel, _take(self.cols, perm).flatten()).view(self.cols.shape)
        hr, hc, hs, hw = self.heavy
        return TiedNeighbours(
            self.k,
            cols,
            _take(self.sims, perm),
            _take(self.weights, perm),
            _take(self.light, perm),
            (_take(inv, hr), _take(inv, hc), hs, hw),
        )


def tie_weights(rows: torch.Tensor, sims: torch.Tensor, r: torch.Tensor, n: int, k: int) -> torch.Tensor:
    """The weight of each entry (all at similarity ≥ their row's k-th similarity ``r``): 1 when strictly
    above r, else the row's remaining ``k − c`` slots shared equally by its ``t`` entries at r."""
    above = sims > r
    c = torch.bincount(rows.masked_select(above), minlength=n).double()
    t = torch.bincount(rows.masked_select(~above), minlength=n).double()
    share = (k - c) / t.clamp_min(1)
    return torch.where(above, torch.ones_like(sims, dtype=torch.float64), _take(share, rows))


def tied_neighbours(
    n: int, k: int, rows: torch.Tensor, cols: torch.Tensor, sims: torch.Tensor, r: torch.Tensor
) -> TiedNeighbours:
    """:class:`TiedNeighbours` from flat entries (each at similarity ≥ its row's k-th similarity ``r``)."""
    order = torch.argsort(rows * n + cols)
    rows, cols = _take(rows, order), _take(cols, order)
    sims, r = _take(sims, order).double(), _take(r, order).double()
    weights = tie_weights(rows, sims, r, n, k)
    counts = torch.bincount(rows, minlength=n)
    width = min(int(counts.max()), _PADDED_WIDTH * k)
    light = counts <= width
    lit = _take(light, rows)
    slot = torch.arange(rows.numel()) - _take(torch.cumsum(counts, 0) - counts, rows)
    at = (rows * width + slot).masked_select(lit)
    pc = torch.full((n * width,), n, dtype=torch.long).index_copy_(0, at, cols.masked_select(lit))
    ps = torch.full((n * width,), -torch.inf, dtype=torch.float64).index_copy_(0, at, sims.masked_select(lit))
    pw = torch.zeros(n * width, dtype=torch.float64).index_copy_(0, at, weights.masked_select(lit))
    heavy = (rows.masked_select(~lit), cols.masked_select(~lit), sims.masked_select(~lit), weights.masked_select(~lit))
    return TiedNeighbours(k, pc.view(n, width), ps.view(n, width), pw.view(n, width), light, heavy)


def _padded_overlap(ca: torch.Tensor, wa: torch.Tensor, cb: torch.Tensor, wb: torch.Tensor) -> torch.Tensor:
    """``Σ_p min(wa[i, p], w_B(i, ca[i, p]))`` per row. A column appears at most once per row, so one boolean
    comparison and its argmax find each A entry's B entry (a miss points anywhere and is masked; padding
    matches padding with weight 0): the same passes as the ordinary overlap count."""
    out = torch.empty(ca.shape[0], dtype=torch.float64)
    step = max(1, 2**22 // max(1, ca.shape[1] * cb.shape[1]))
    for s in range(0, ca.shape[0], step):
        e = s + step
        at = (ca[s:e, :, None] == cb[s:e, None, :]).view(torch.uint8).argmax(dim=2)
        hit = cb[s:e].gather(1, at) == ca[s:e]
        out[s:e] = torch.where(hit, torch.minimum(wa[s:e], wb[s:e].gather(1, at)), 0.0).sum(dim=1)
    return out


def _flat_overlap(n: int, a: tuple[torch.Tensor, ...], b: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """The same over flat entries (rows, cols, sims, weights): binary search of B's (row, col) in A's."""
    out = torch.zeros(n, dtype=torch.float64)
    ka, kb = a[0] * n + a[1], b[0] * n + b[1]
    if ka.numel() == 0 or kb.numel() == 0:
        return out
    order = torch.argsort(ka)
    ka, wa = _take(ka, order), _take(a[3], order)
    pos = torch.searchsorted(ka, kb).clamp_max(ka.numel() - 1)
    hit = (_take(ka, pos) == kb).nonzero().flatten()
    shared = torch.minimum(_take(wa, _take(pos, hit)), _take(b[3], hit))
    return out.index_add_(0, _take(b[0], hit), shared)


def tied_overlap(a: TiedNeighbours, b: TiedNeighbours) -> torch.Tensor:
    """``m_i = Σ_j min(w_A(i, j), w_B(i, j))`` per row: the overlap of two fractional neighbour sets of mass k
    each (the count |S_A(i) ∩ S_B(i)| when neither has ties)."""
    if a.n != b.n:
        raise ValueError(f"neighbourhoods of different spaces: {a.n} vs {b.n} rows")
    if a.cols.shape[1] > b.cols.shape[1]:
        a, b = b, a  # the sum is symmetric; the argmax runs faster along the wider rows
    both = a.light & b.light
    if bool(both.all()):
        return _padded_overlap(a.cols, a.weights, b.cols, b.weights)
    idx = both.nonzero().flatten()
    part = _padded_overlap(_take(a.cols, idx), _take(a.weights, idx), _take(b.cols, idx), _take(b.weights, idx))
    out = torch.zeros(a.n, dtype=torch.float64).index_copy_(0, idx, part)
    return out + _flat_overlap(a.n, a.entries(~both), b.entries(~both))


@dataclass(frozen=True, eq=False)
class KNNGraph:
    """The k nearest neighbours of every row of one space (self excluded).

    ``indices[i]`` lists row i's neighbours, most similar first.
    ``recall`` is None for exact search and the measured recall@k of an approximate backend.
    ``ties`` (exact search with ``ties=True`` only): the neighbourhoods with the ties at the k-th similarity kept.
    """

    indices: torch.Tensor  # (n, k) int64, on CPU
    metric: str = "cosine"
    backend: str = "exact"
    recall: float | None = None
    meta: dict = field(default_factory=dict)
    ties: TiedNeighbours | None = None

    @property
    def n(self) -> int:
        return int(self.indices.shape[0])

    @property
    def k(self) -> int:
        return int(self.indices.shape[1])

    def truncate(self, k: int) -> KNNGraph:
        """The graph of the first ``k`` neighbours (valid because rows are sorted)."""
        check_k(k, self.k + 1, "k")
        ties = None if self.ties is None else self.ties.truncate(k)
        return KNNGraph(self.indices[:, :k], self.metric, self.backend, self.recall, dict(self.meta), ties)

    def permuted(self, perm: torch.Tensor) -> KNNGraph:
        """The graph of the space whose row i is this space's row ``perm[i]``.

        ``knn_{Yπ}[i] = π⁻¹[knn_Y[π(i)]]``: O(n·k), no new similarity search.
        """
        perm, inv = _inverse(perm)
        relabelled = inv.index_select(0, self.indices.index_select(0, perm).flatten()).view(self.indices.shape)
        ties = None if self.ties is None else self.ties.permuted(perm)
        return KNNGraph(relabelled, self.metric, self.backend, self.recall, self.meta, ties)


class ApproximateScore(float):
    """A score computed on approximate kNN graphs: a float that carries the measured recall@k.

    ``score.recall`` maps "X"/"Y" to the recall of each graph against exact search on a sample.
    """

    recall: dict[str, float]

    def __new__(cls, value: float, recall: dict[str, float]) -> ApproximateScore:
        obj = super().__new__(cls, value)
        obj.recall = recall
        return obj

    def __repr__(self) -> str:
        rec = ", ".join(f"{k}={v:.3f}" for k, v in self.recall.items())
        return f"{float(self)!r} (approximate kNN, recall@k {rec})"


def with_recall(value: float, **graphs: KNNGraph) -> float:
    """``value`` as a plain float when every graph is exact, else an :class:`ApproximateScore`."""
    recall = {name: g.recall for name, g in graphs.items() if g.recall is not None}
    return ApproximateScore(value, recall) if recall else float(value)


def _prepare(X: torch.Tensor, metric: str) -> torch.Tensor:
    """The space as the search sees it: safe unit rows for cosine; for euclidean the columns centred first
    (distances do not change, but a large common offset would swamp float32 products); then rescaled by one
    power of two."""
    if metric == "cosine":
        return unit_rows(X)
    if metric == "euclidean":
        X = (X.double() - X.double().mean(dim=0, keepdim=True)).to(X.dtype)
    return pow2_rescale(X)[0]


def _checked_work(t: torch.Tensor, metric: str) -> tuple[torch.Tensor, Any]:
    """(the space as the search sees it, its check); a kNN measure's call has already checked the same view of
    this array (:func:`alignkit._known.lookup_space`), and under cosine that view is the search's unit rows."""
    import dataclasses

    from alignkit._known import lookup_space

    seen = lookup_space(t, metric)
    if seen is None or getattr(seen[0], "group_sizes", None) is None:
        work = _prepare(t, metric)
        return work, _space_check(t, work, metric)
    check, view = seen
    work = view if metric == "cosine" and view.dtype == t.dtype else _prepare(t, metric)
    return work, dataclasses.replace(check, name="X")


def _space_check(t: torch.Tensor, work: torch.Tensor, metric: str) -> Any:
    """The degenerate-space check a graph carries (alignkit.degenerate), so measures given precomputed graphs
    apply the same policy: the space as the search sees it, with exact duplicate rows counted on the input."""
    import dataclasses

    from alignkit.degenerate import duplicate_groups, inspect_space

    check = inspect_space(work if metric == "cosine" else t, "X", duplicates=False)
    groups = duplicate_groups(t)
    return dataclasses.replace(check, n_distinct=len(groups), group_sizes=groups)


def _block_rows(n: int, itemsize: int, block_size: int | None) -> int:
    if block_size is not None:
        if block_size < 1:
            raise ValueError(f"block_size must be >= 1; got {block_size}")
        return int(block_size)
    return max(1, min(n, _BLOCK_BYTES // max(1, n * itemsize)))


def _similarity_blocks(
    queries: torch.Tensor,
    base: torch.Tensor,
    metric: str,
    query_ids: torch.Tensor | None,
    block_size: int | None,
    columns: torch.Tensor | None = None,
) -> Iterator[tuple[int, int, torch.Tensor]]:
    """``(start, stop, S)`` per block of queries: S = similarities to every base row, ``query_ids[i]`` at −inf.

    ``columns`` (optional) maps each output column to a row of ``base``: the search then runs against the
    distinct rows only and copies their similarities, so duplicate rows tie exactly.
    """
    m = queries.shape[0]
    width = base.shape[0] if columns is None else columns.numel()
    step = _block_rows(width, base.element_size(), block_size)
    base_t = base.T.contiguous()
    sq = (base * base).sum(dim=1) if metric == "euclidean" else None
    for start in range(0, m, step):
        stop = min(m, start + step)
        sims = queries[start:stop] @ base_t
        if sq is not None:
            sims.mul_(2).sub_(sq)
        if columns is not None:
            sims = sims.index_select(1, columns)
        if query_ids is not None:
            rows = torch.arange(stop - start, device=base.device)
            sims[rows, query_ids[start:stop].to(base.device)] = -torch.inf
        yield start, stop, sims


def exact_topk(
    queries: torch.Tensor,
    base: torch.Tensor,
    k: int,
    metric: str = "cosine",
    *,
    query_ids: torch.Tensor | None = None,
    block_size: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-``k`` rows of ``base`` for each query, by blocks; ``query_ids[i]`` is excluded for query i.

    Inputs must already be prepared for the metric (rows normalised for cosine). Returns
    (scores, indices), each (m, k), most similar first. For euclidean the score is
    ``2⟨q,b⟩ − ‖b‖²``, which orders like −‖q − b‖².
    """
    m = queries.shape[0]
    out_s = torch.empty((m, k), dtype=base.dtype, device=base.device)
    out_i = torch.empty((m, k), dtype=torch.long, device=base.device)
    for start, stop, sims in _similarity_blocks(queries, base, metric, query_ids, block_size):
        vals, idx = torch.topk(sims, k, dim=1, largest=True, sorted=True)
        out_s[start:stop] = vals
        out_i[start:stop] = idx
    return out_s, out_i


#: Rows shorter than this are ranked by numpy's argpartition on the CPU when torch runs on one thread: torch.topk
#: costs ~3 µs per row there (500 × 500, k = 10: 1.8 ms against 0.8 ms) and is faster from ~650 columns on (1,000:
#: 2.1 against 2.5 ms). With several threads torch ranks every row (see alignkit._gemm on mixing thread pools).
_NUMPY_TOPK_WIDTH = 600


def _row_topk(sims: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The k largest entries of each row and their columns, largest first (``torch.topk(..., sorted=True)``)."""
    if (
        sims.device.type != "cpu"
        or not single_threaded()
        or sims.dtype not in (torch.float32, torch.float64)
        or sims.shape[1] > _NUMPY_TOPK_WIDTH
        or k >= sims.shape[1]
    ):
        return torch.topk(sims, k, dim=1, largest=True, sorted=True)
    a = sims.numpy()
    part = np.argpartition(-a, k - 1, axis=1)[:, :k]
    vals = np.take_along_axis(a, part, axis=1)
    order = np.argsort(-vals, axis=1, kind="stable")
    return (torch.from_numpy(np.take_along_axis(vals, order, axis=1)),
            torch.from_numpy(np.take_along_axis(part, order, axis=1).astype(np.int64)))  # fmt: skip


def self_topk(
    x: torch.Tensor, k: int, metric: str = "cosine", *, block_size: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`exact_topk` of every row of ``x`` against ``x`` itself, self excluded: the same (scores, indices) with
    fewer multiply-adds, since the similarity matrix is symmetric up to the euclidean offsets.

    The rows are cut into tiles of ``B`` rows (``block_size``, else about 32 MiB of similarities per B × B tile:
    2,896 rows in float32, measured 8 % faster than 4,096 at n = 10,000 since a tile's top-k stays in cache). Only
    tiles (i, j ≥ i) are multiplied, and each serves the rows of tile i and, transposed, those of tile j; every row
    keeps a running top-k, merged tile by tile. With T tiles that is (T + 1)/(2T) of the full product, and half
    when the diagonal tiles go through BLAS's symmetric product (:func:`~alignkit._gemm.gram`: torch on one thread).
    Every similarity is computed once, so ``s(a, b)`` and ``s(b, a)`` are the same number.
    """
    n = x.shape[0]
    if block_size is not None and block_size < 1:
        raise ValueError(f"block_size must be >= 1; got {block_size}")
    tile = int(block_size) if block_size is not None else max(1, math.isqrt(_TILE_BYTES // x.element_size()))
    sq = (x * x).sum(dim=1) if metric == "euclidean" else None
    vals = torch.full((n, k), -torch.inf, dtype=x.dtype, device=x.device)
    idx = torch.full((n, k), -1, dtype=torch.long, device=x.device)

    def merge(r0: int, r1: int, sims: torch.Tensor, c0: int) -> None:
        if sq is not None:  # out of place: a tile and its transpose may share memory (a one-row tile)
            sims = 2 * sims - sq[c0 : c0 + sims.shape[1]]
        v, i = _row_topk(sims, min(k, sims.shape[1]))
        if c0 == 0 and sims.shape[1] == n:  # one tile: nothing to merge
            vals[r0:r1], idx[r0:r1] = v, i
            return
        cv, ci = torch.cat([vals[r0:r1], v], dim=1), torch.cat([idx[r0:r1], i + c0], dim=1)
        tv, ti = torch.topk(cv, k, dim=1, largest=True, sorted=True)
        vals[r0:r1], idx[r0:r1] = tv, ci.gather(1, ti)

    for a0 in range(0, n, tile):
        a1 = min(n, a0 + tile)
        block = gram(x[a0:a1])
        block.fill_diagonal_(-torch.inf)
        merge(a0, a1, block, a0)
        for b0 in range(a1, n, tile):
            b1 = min(n, b0 + tile)
            g = x[a0:a1] @ x[b0:b1].T.contiguous()
            gt = g.T.contiguous()
            merge(a0, a1, g, b0)
            merge(b0, b1, gt, a0)
    return vals, idx


def _distinct_rows(work: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(first row of each distinct row, the distinct row of every row) by the row hashes of
    :func:`~alignkit.degenerate.repeated_rows` (−0.0 equals 0.0); None if all differ."""
    from alignkit.degenerate import repeated_rows

    repeats = repeated_rows(work)
    if repeats is None:
        return None
    first, inverse = repeats
    return torch.from_numpy(first).to(work.device), torch.from_numpy(inverse).to(work.device)


def tied_search(
    work: torch.Tensor, k: int, metric: str, block_size: int | None = None
) -> tuple[torch.Tensor, TiedNeighbours]:
    """Exact k-neighbour lists and :class:`TiedNeighbours` of a prepared space, in one blocked pass.

    Ties are exact equalities of the computed similarities. Duplicate rows are searched once (their
    similarities copied), so they tie exactly whatever the arithmetic; a relative tolerance would also merge
    distinct near neighbours and change the score of data without ties. Memory: the entries kept (≥ n·k).
    """
    n = work.shape[0]
    distinct = _distinct_rows(work)
    base, columns = (work, None) if distinct is None else (_take(work, distinct[0]), distinct[1])
    limit = max(64 * n * k, _MAX_TIED_ENTRIES)
    indices = torch.empty((n, k), dtype=torch.long)
    parts: list[tuple[torch.Tensor, ...]] = []
    kept = 0
    ids = torch.arange(n, device=work.device)
    for start, _, sims in _similarity_blocks(work, base, metric, ids, block_size, columns):
        vals, idx = torch.topk(sims, k + 1, dim=1, largest=True, sorted=True)  # k + 1 ≤ n: self is at −inf
        indices[start : start + idx.shape[0]] = idx[:, :k].cpu()
        r = vals[:, k - 1]
        # Only rows whose (k+1)-th similarity equals the k-th can have ties beyond their top k: scan those.
        wide = (vals[:, k] == r).nonzero().flatten()
        narrow = (vals[:, k] != r).nonzero().flatten()
        rows_w, cols_w = (_take(sims, wide) >= _take(r, wide)[:, None]).nonzero(as_tuple=True)
        rows = torch.cat([narrow.repeat_interleave(k), _take(wide, rows_w)])
        cols = torch.cat([_take(idx, narrow)[:, :k].flatten(), cols_w])
        kept += rows.numel()
        if kept > limit:
            raise ValueError(
                f"ties: more than {limit} rows tie at the k-th similarity (k={k}, n={n}): the space is (nearly) "
                "constant; deduplicate it or use ties='arbitrary'"
            )
        entry_sims = sims.flatten().index_select(0, rows * sims.shape[1] + cols)
        parts.append(((rows + start).cpu(), cols.cpu(), entry_sims.double().cpu(), _take(r, rows).double().cpu()))
    rows, cols, s, r = (torch.cat(t) for t in zip(*parts, strict=True))
    return indices, tied_neighbours(n, k, rows, cols, s, r)


def _faiss_search(
    X: np.ndarray,
    k: int,
    metric: str,
    nlist: int | None,
    nprobe: int,
    seed: int,
    niter: int = 10,
    stats: dict | None = None,
) -> np.ndarray:
    """All rows of ``X`` searched against ``X`` with an IVF-Flat index: (n, k) neighbours, self dropped.

    nlist defaults to ≈ 4√n (at most n/39); k-means is trained for ``niter`` iterations on at most
    39·nlist sampled rows (faiss's minimum for a stable clustering; more buys little). Each row's
    ``nprobe`` nearest lists are found once and serve both the add (first list) and the search, and
    rows are searched grouped by their first list so the lists they scan stay in cache. The chosen
    parameters and the stage times (train / assign / add / search, seconds) go into ``stats``.
    """
    faiss = optional_import("faiss", "faiss", what="backend='faiss'", package="faiss-cpu")
    from time import perf_counter

    n, d = X.shape
    X = np.ascontiguousarray(X, dtype=np.float32)
    if nlist is None:
        nlist = int(max(1, min(n // 39, round(4 * np.sqrt(n)))))
    nlist = max(1, min(int(nlist), n))
    nprobe = max(1, min(int(nprobe), nlist))
    if metric == "euclidean":
        quantizer = faiss.IndexFlatL2(d)
        index = faiss.IndexIVFFlat(quantizer, d, nlist, faiss.METRIC_L2)
    else:
        quantizer = faiss.IndexFlatIP(d)
        index = faiss.IndexIVFFlat(quantizer, d, nlist, faiss.METRIC_INNER_PRODUCT)
    index.cp.seed = seed
    index.cp.niter = niter
    train_n = min(n, 39 * nlist)
    t0 = perf_counter()
    rng = np.random.default_rng(seed)
    index.train(X[np.sort(rng.choice(n, size=train_n, replace=False))] if train_n < n else X)
    t1 = perf_counter()
    _, lists = quantizer.search(X, nprobe)
    first = np.ascontiguousarray(lists[:, 0])
    t2 = perf_counter()
    index.add_core(n, faiss.swig_ptr(X), None, faiss.swig_ptr(first))  # `first` must outlive the call
    t3 = perf_counter()
    index.nprobe = nprobe
    order = np.argsort(first, kind="stable")
    found = np.empty((n, k + 1), dtype=np.int64)
    for s in range(0, n, 65536):
        rows = order[s : s + 65536]
        _, found[rows] = index.search_preassigned(X[rows], k + 1, lists[rows], None)
    t4 = perf_counter()
    # Rows whose probed lists held fewer than k + 1 points get exact neighbours instead.
    short = np.flatnonzero((found < 0).any(axis=1))
    if short.size:
        base = torch.from_numpy(X)
        ids = torch.from_numpy(short)
        _, idx = exact_topk(base[ids], base, k + 1, metric, query_ids=None)
        found[short] = idx.numpy()
    if stats is not None:
        stats.update(
            nlist=nlist,
            nprobe=nprobe,
            train_size=train_n,
            niter=niter,
            short_rows=int(short.size),
            seconds={"train": t1 - t0, "assign": t2 - t1, "add": t3 - t2, "search": t4 - t3},
        )
    # Drop self by index; where self was not found, drop the last (k+1-th) hit instead.
    is_self = found == np.arange(n)[:, None]
    no_self = ~is_self.any(axis=1)
    is_self[no_self, k] = True
    return found[~is_self].reshape(n, k)


def knn_graph(
    X: ArrayLike,
    k: int = 10,
    *,
    metric: Metric = "cosine",
    backend: Literal["exact", "faiss"] = "exact",
    block_size: int | None = None,
    nlist: int | None = None,
    nprobe: int = 16,
    niter: int = 10,
    recall_sample: int = 1000,
    seed: int = 0,
    ties: bool = False,
) -> KNNGraph:
    """The k-nearest-neighbour graph of the rows of ``X`` (self excluded, by index).

    Parameters
    ----------
    metric : "cosine" (rows L2-normalised, inner product), "ip" (raw inner product) or "euclidean". The space is
        rescaled first (:func:`safe_unit_rows` for cosine, :func:`pow2_rescale` otherwise), so any finite scale
        of ``X`` gives the same neighbours as scale 1.
    backend : "exact" (blocked torch matmul + top-k, on X's device) or "faiss" (IVF-Flat,
        approximate; its recall@k against exact search on ``recall_sample`` rows is measured and
        stored in ``graph.recall``).
    block_size : rows per block for exact search (default: about 64 MiB of similarities).
    nlist, nprobe, niter : faiss IVF lists (default ≈ 4√n), lists scanned per query, and k-means
        iterations (trained on at most 39·nlist rows). The parameters used and the stage times are
        in ``graph.meta``.
    ties : also keep, for every row, all rows tied at its k-th similarity (``graph.ties``, a
        :class:`TiedNeighbours`; exact backend only), for the kNN measures' ``ties="fractional"``.
    """
    check_choice(metric, METRICS, "metric")
    check_choice(backend, BACKENDS, "backend")
    if ties and backend != "exact":
        raise ValueError(
            f"ties=True needs backend='exact'; got backend={backend!r} (an approximate index returns k candidates, "
            "not every row tied at the k-th similarity)"
        )
    t = as_matrix(X, "X")
    n = t.shape[0]
    k = check_k(k, n)
    work, check = _checked_work(t, metric)
    if ties:
        idx, tied = tied_search(work, k, metric, block_size)
        return KNNGraph(idx, metric, "exact", None, {"n": n, "d": int(t.shape[1]), "check": check}, tied)
    if backend == "exact":
        _, idx = self_topk(work, k, metric, block_size=block_size)
        return KNNGraph(idx.cpu(), metric, "exact", None, {"n": n, "d": int(t.shape[1]), "check": check})
    stats: dict = {}
    found = torch.from_numpy(
        _faiss_search(work.cpu().float().numpy(), k, metric, nlist, nprobe, seed, niter, stats)
    ).long()
    rng = np.random.default_rng(seed)
    rows = torch.from_numpy(np.sort(rng.choice(n, size=min(n, recall_sample), replace=False)))
    _, truth = exact_topk(work[rows.to(work.device)], work, k, metric, query_ids=rows, block_size=block_size)
    recall = float(overlap_counts(found[rows], truth.cpu()).sum()) / (rows.numel() * k)
    meta = {"n": n, "d": int(t.shape[1]), **stats, "recall_sample": int(rows.numel()), "check": check}
    return KNNGraph(found, metric, "faiss", recall, meta)


def overlap_counts(a: torch.Tensor, b: torch.Tensor, chunk: int = 65536) -> torch.Tensor:
    """|a[i] ∩ b[i]| for every row of two (n, k) index lists with distinct entries per row."""
    if a.shape[0] != b.shape[0]:
        raise ValueError(f"index lists have different row counts: {a.shape[0]} vs {b.shape[0]}")
    out = torch.empty(a.shape[0], dtype=torch.long)
    for s in range(0, a.shape[0], chunk):
        e = s + chunk
        out[s:e] = (a[s:e, :, None] == b[s:e, None, :]).sum(dim=(1, 2))
    return out
