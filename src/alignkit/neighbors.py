"""k-nearest-neighbour graphs of one space, computed once and shared by every kNN measure.

Exact search runs in row blocks on torch: for a block B of rows, ``S = X_B Xᵀ`` then top-k, so
memory is O(n·k + block·n) and no n×n matrix, dense mask or full argsort is ever built. Self is
excluded by index (not by distance), so duplicate rows still get each other as neighbours.
Every space is rescaled before its similarity products (cosine: each row by its largest |entry|, then to unit
norm; inner product and Euclidean: the whole space by one power of two, which is exact and keeps every order),
so the neighbours are the same at any finite scale of the input: no product overflows or underflows.
The approximate backend goes through faiss and always measures its recall@k against exact search
on a sample of rows; the recall travels with the graph.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from alignkit._common import optional_import, pow2_rescale, unit_rows
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


@dataclass(frozen=True, eq=False)
class KNNGraph:
    """The k nearest neighbours of every row of one space (self excluded).

    ``indices[i]`` lists row i's neighbours, most similar first.
    ``recall`` is None for exact search and the measured recall@k of an approximate backend.
    """

    indices: torch.Tensor  # (n, k) int64, on CPU
    metric: str = "cosine"
    backend: str = "exact"
    recall: float | None = None
    meta: dict = field(default_factory=dict)

    @property
    def n(self) -> int:
        return int(self.indices.shape[0])

    @property
    def k(self) -> int:
        return int(self.indices.shape[1])

    def truncate(self, k: int) -> KNNGraph:
        """The graph of the first ``k`` neighbours (valid because rows are sorted)."""
        check_k(k, self.k + 1, "k")
        return KNNGraph(self.indices[:, :k], self.metric, self.backend, self.recall, dict(self.meta))

    def permuted(self, perm: torch.Tensor) -> KNNGraph:
        """The graph of the space whose row i is this space's row ``perm[i]``.

        ``knn_{Yπ}[i] = π⁻¹[knn_Y[π(i)]]``: O(n·k), no new similarity search.
        """
        perm = torch.as_tensor(perm, dtype=torch.long).cpu()
        inv = torch.empty_like(perm).index_put_((perm,), torch.arange(perm.numel()))
        relabelled = inv.index_select(0, self.indices.index_select(0, perm).flatten()).view(self.indices.shape)
        return KNNGraph(relabelled, self.metric, self.backend, self.recall, self.meta)


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
    step = _block_rows(base.shape[0], base.element_size(), block_size)
    base_t = base.T.contiguous()
    sq = (base * base).sum(dim=1) if metric == "euclidean" else None
    out_s = torch.empty((m, k), dtype=base.dtype, device=base.device)
    out_i = torch.empty((m, k), dtype=torch.long, device=base.device)
    for start in range(0, m, step):
        stop = min(m, start + step)
        sims = queries[start:stop] @ base_t
        if sq is not None:
            sims.mul_(2).sub_(sq)
        if query_ids is not None:
            rows = torch.arange(stop - start, device=base.device)
            sims[rows, query_ids[start:stop].to(base.device)] = -torch.inf
        vals, idx = torch.topk(sims, k, dim=1, largest=True, sorted=True)
        out_s[start:stop] = vals
        out_i[start:stop] = idx
    return out_s, out_i


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
    """
    check_choice(metric, METRICS, "metric")
    check_choice(backend, BACKENDS, "backend")
    t = as_matrix(X, "X")
    n = t.shape[0]
    k = check_k(k, n)
    work = _prepare(t, metric)
    check = _space_check(t, work, metric)
    if backend == "exact":
        _, idx = exact_topk(work, work, k, metric, query_ids=torch.arange(n, device=work.device), block_size=block_size)
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
