"""H0 persistence of a point cloud via its minimum spanning tree (METHODS §3.7).

The 0-dimensional Vietoris–Rips persistence of a finite metric space has every bar born at 0 and dying at the
length of an edge of a Euclidean minimum spanning tree (the single-linkage merge heights): n − 1 finite deaths.
Ghalyan et al. (arXiv 2305.15016) divide them by their maximum and read the shape of that distribution as an
unsupervised estimate of class separability. Two ways to the MST:

- ``prim`` (default up to n = 20,000 distinct rows): exact dense Prim, O(n²·d) time, O(n·d) memory (one row of
  distances at a time, to the points not yet in the tree; never an n×n matrix).
- ``knn`` (above): the MST of the symmetrised k-nearest-neighbour graph (exact blocked search,
  :func:`alignkit.neighbors.knn_graph`), then its components joined Borůvka-style by exact between-component
  closest pairs (blocked search from every point outside the largest component against all points of other
  components), then the longest edges checked by the cut property (the closest pair across the cut an edge
  defines is in every MST and replaces the edge when shorter): always the longest, so the normaliser is exact,
  and up to ``CERTIFY`` = 32 while that stays cheap. The other edges are exact whenever the kNN graph contains
  an MST; where it does not (it can link two groups through a pair that is not their closest) they are true
  distances but the total exceeds the MST's. Measured on the benchmark's clustered data (d = 64, k = 10): MST
  total +1e-4 (n = 20k) and ≤ +4e-5 (n = 100k) relative, mean normalised death within 1e-4 of exact Prim.

Duplicates: ``scipy.sparse.csgraph.minimum_spanning_tree`` reads a zero-weight edge as a missing edge, so a
duplicate row would be attached by a positive edge (or, in a kNN graph of many copies, cut off) instead of dying
at 0. Rows are deduplicated first (exact equality, after the cosine normalisation when metric="cosine"); each
removed duplicate contributes one death at 0, added back.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from alignkit._lazy import lazy_module
from alignkit._validation import ArrayLike
from alignkit.degenerate import distinct_rows
from alignkit.diagnostics._inputs import as_array
from alignkit.diagnostics._registry import register
from alignkit.diagnostics._result import DiagnosticResult

if TYPE_CHECKING:
    import torch
else:
    torch = lazy_module("torch")

#: Largest number of distinct rows for which method="auto" uses dense Prim.
DENSE_MAX = 20_000
#: kNN path: how many of the longest tree edges to certify by the cut property (the longest always is).
CERTIFY = 32
SUMMARIES = ("mean", "median", "std", "above")
METHODS = ("auto", "prim", "knn")
_BLOCK_BYTES = 64 * 2**20


def _check_quantiles(q: Any) -> tuple[float, ...]:
    """Quantile levels in [0, 1]: a sequence of numbers or a comma-separated string ("0.1,0.9")."""
    items = [v for v in q.split(",") if v.strip()] if isinstance(q, str) else list(q)
    try:
        out = tuple(float(v) for v in items)
    except (TypeError, ValueError):
        raise ValueError(f"quantiles must be numbers in [0, 1]; got {q!r}") from None
    if not all(0.0 <= v <= 1.0 for v in out):
        raise ValueError(f"quantiles must be numbers in [0, 1]; got {q!r}")
    return out


@dataclass(frozen=True)
class H0Result(DiagnosticResult):
    """Normalised H0 death times and their summaries; ``value`` is the summary named by ``summary``.

    ``deaths``: the n − 1 MST edge lengths divided by the largest (ascending; zeros for duplicates);
    ``scale``: that largest edge, in X's units (chord units for metric="cosine"). ``total`` is the total
    persistence Σ deaths (∈ [1, n − 1]); ``above`` the fraction of deaths > ``threshold``. None of these is
    the score S(p) of Ghalyan et al., whose form is not published in what we could read.
    """

    deaths: np.ndarray
    summary: str
    mean: float
    median: float
    std: float
    total: float
    above: float
    threshold: float
    quantiles: tuple[float, ...]
    quantile_values: tuple[float, ...]
    scale: float
    n_items: int
    n_distinct: int
    metric: str
    method: str  # "prim" or "knn"
    k: int | None  # kNN path: neighbours per point
    knn_components: int | None  # kNN path: components of the kNN graph's spanning forest before joining
    certified: int | None  # kNN path: longest edges checked exactly by the cut property (the longest always)

    @property
    def value(self) -> float:
        return float(getattr(self, self.summary))


@register(
    "h0_persistence",
    family="space",
    range=(0.0, 1.0),
    higher_is_better=None,
    cost="O(n²·d) dense Prim (n ≤ 20,000 distinct rows), memory O(n·d); above, an exact kNN graph "
    "(O(n²·d) blocked search) + MST + closest-pair joins",
    description="H0 Vietoris–Rips persistence: the n − 1 MST edge lengths (single-linkage heights) divided by "
    "the largest, summarised (mean, median, std, quantiles, total, fraction above a threshold); the "
    "normalisation follows Ghalyan et al., arXiv 2305.15016, whose own score S(p) is not reproduced. Depends "
    "on n: compare at equal n. METHODS §3.7.",
    constraints={
        "metric": {"choices": ("euclidean", "cosine")},
        "summary": {"choices": SUMMARIES},
        "quantiles": {"validator": _check_quantiles, "doc": "quantile levels in [0, 1]: a list, or '0.1,0.9' in an id"},
        "threshold": {"low": 0.0, "high": 1.0},
        "method": {"choices": METHODS},
        "k": {"low": 1},
    },
)
def h0_persistence(
    X: ArrayLike,
    *,
    metric: str = "euclidean",
    summary: str = "mean",
    quantiles: Any = (0.1, 0.25, 0.75, 0.9),
    threshold: float = 0.5,
    method: str = "auto",
    k: int = 10,
) -> H0Result:
    """H0 persistence of the rows of ``X``: deaths ``p = sort(w_e / max_e w_e)`` over the edges e of a Euclidean
    minimum spanning tree (Ghalyan et al., "An Unsupervised Method for Estimating Class Separability of Datasets
    with Application to LLMs Fine-Tuning", arXiv 2305.15016, normalisation by the maximum; the identity
    H0 deaths = MST edge lengths is standard, e.g. Edelsbrunner & Harer, *Computational Topology*, 2010).

    ``metric``: "euclidean", or "cosine" = Euclidean distance between L2-normalised rows (the chord
    ``sqrt(2 − 2cos)``, monotone in cosine distance, so the same tree). ``summary`` picks the headline:
    mean, median, std of the normalised deaths, or ``above`` = the fraction of them above ``threshold``.
    ``quantiles`` are reported as ``quantile_values``. ``method``: "prim" (exact), "knn" (kNN-graph MST with
    exact closest-pair joins of its components and the longest edges certified by the cut property, ``k``
    neighbours; see the module docstring for its accuracy) or "auto" (prim up to ``DENSE_MAX`` distinct rows).
    Duplicate rows are removed before the tree is built and each adds a death at 0.

    Scale- and rotation-invariant (the normalisation removes the scale). Errors: fewer than 2 distinct rows
    (every death is 0: nothing to normalise); a zero row with metric="cosine".
    """
    q = _check_quantiles(quantiles)
    x = as_array(X, "X", dtype=np.float64)
    n = x.shape[0]
    if n < 2:
        raise ValueError(f"h0_persistence needs at least 2 rows; got n={n}")
    if metric == "cosine":
        norms = np.linalg.norm(x, axis=1)
        if not (norms > 0).all():
            raise ValueError(
                f"h0_persistence(metric='cosine'): X has {int((norms == 0).sum())} all-zero row(s), which have "
                "no direction; drop them or use metric='euclidean'"
            )
        x = x / norms[:, None]
    xu = distinct_rows(x)
    m = xu.shape[0]
    if m < 2:
        raise ValueError("h0_persistence: all rows of X are identical, so every H0 death is 0 and cannot be normalised")
    xu = xu - xu.mean(axis=0)
    e = math.frexp(float(np.abs(xu).max()))[1]  # exact power-of-two rescale: no square overflows
    xu = xu * math.ldexp(1.0, -e)
    use = method if method != "auto" else ("prim" if m <= DENSE_MAX else "knn")
    n_comp = certified = k_used = None
    if use == "prim":
        lengths = prim_mst(xu)[2]
    else:
        k_used = min(int(k), m - 1)
        _, _, lengths, n_comp, certified = knn_mst(xu, k_used)
    top = float(lengths.max())
    deaths = np.sort(np.concatenate([np.zeros(n - m), lengths / top]))
    return H0Result(
        deaths=deaths,
        summary=summary,
        mean=float(deaths.mean()),
        median=float(np.median(deaths)),
        std=float(deaths.std()),
        total=float(deaths.sum()),
        above=float(np.mean(deaths > threshold)),
        threshold=float(threshold),
        quantiles=q,
        quantile_values=tuple(float(v) for v in np.quantile(deaths, q)) if q else (),
        scale=math.ldexp(top, e),
        n_items=int(n),
        n_distinct=int(m),
        metric=metric,
        method=use,
        k=k_used,
        knn_components=n_comp,
        certified=certified,
    )


# --------------------------------------------------------------------------------------------- Prim


def prim_mst(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Edges ``(i, j, length)`` of an exact Euclidean minimum spanning tree of the rows of ``x`` (Prim, 1957).

    Dense Prim over the implicit complete graph: O(n²·d) time, O(n·d) memory. The points not yet in the tree
    are kept in one compact array (the one entering swaps with the last), and each step computes the squared
    distances from the newest tree vertex to them, ``‖a‖² − 2⟨a, b⟩ + ‖b‖²`` (one matrix-vector product), and
    lowers their best distance to the tree (single-threaded BLAS). The n − 1 lengths returned are recomputed
    exactly as ‖x_i − x_j‖.
    ``x`` should be float64, centred and near unit scale (as :func:`h0_persistence` prepares it).
    """
    with _one_blas_thread():
        return _prim(x)


def _one_blas_thread() -> Any:
    """Prim makes n small matrix-vector products: BLAS threads only add synchronisation (10× slower on a busy
    machine), so they are limited to one for its duration (threadpoolctl, a scikit-learn dependency)."""
    try:
        from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]
    except ImportError:  # pragma: no cover
        import contextlib

        return contextlib.nullcontext()
    return threadpool_limits(1, user_api="blas")


def _prim(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n = x.shape[0]
    work = np.array(x, dtype=np.float64, order="C", copy=True)
    sq = np.einsum("ij,ij->i", work, work)
    ids = np.arange(n)
    best = np.full(n, np.inf)
    parent = np.full(n, -1, dtype=np.int64)
    buf = np.empty(n)
    mask = np.empty(n, dtype=bool)
    out_i = np.empty(n - 1, dtype=np.int64)
    out_j = np.empty(n - 1, dtype=np.int64)

    def take(j: int, m: int) -> tuple[np.ndarray, float, int]:
        """Vertex at position j enters the tree: returns its row, ‖row‖², id; position m − 1 moves to j."""
        row, s, v = work[j].copy(), float(sq[j]), int(ids[j])
        last = m - 1
        if j != last:
            work[j] = work[last]
            sq[j], ids[j], best[j], parent[j] = sq[last], ids[last], best[last], parent[last]
        return row, s, v

    row, s, v = take(0, n)
    for step, m in enumerate(range(n - 1, 0, -1)):
        d2 = buf[:m]
        np.dot(work[:m], row, out=d2)
        d2 *= -2.0
        d2 += sq[:m]
        d2 += s
        np.less(d2, best[:m], out=mask[:m])
        np.copyto(best[:m], d2, where=mask[:m])
        np.copyto(parent[:m], v, where=mask[:m])
        j = int(np.argmin(best[:m]))
        out_i[step], out_j[step] = ids[j], parent[j]
        row, s, v = take(j, m)
    diff = x[out_i] - x[out_j]
    return out_i, out_j, np.sqrt(np.einsum("ij,ij->i", diff, diff))


# --------------------------------------------------------------------------------------------- kNN graph


def knn_mst(x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, int, int]:
    """A Euclidean spanning tree from the k-nearest-neighbour graph: ``(i, j, length, components, certified)``.

    1. Exact kNN graph (float32 blocked search on x, which should be centred and near unit scale); edge lengths
       recomputed in float64 as ‖x_i − x_j‖. Distinct rows are required (a zero length would be read as a
       missing edge by scipy).
    2. Its minimum spanning forest (``scipy.sparse.csgraph.minimum_spanning_tree``; the graph is read as
       undirected, i.e. symmetrised). ``components`` = its number of trees.
    3. While more than one tree: every point outside the largest tree finds its k nearest points in other trees
       (exact blocked search); these edges include the shortest edge leaving every tree (the largest tree's
       too: it is the shortest of those ending in it), so the minimum spanning forest of the forest's edges and
       the new ones has at most half as many trees (Borůvka, 1926). Repeat.
    4. The longest edges are certified by the cut property (:func:`_certify`): at least the longest (the
       normaliser, then exact), up to ``CERTIFY`` while the searches stay within n/2 query rows. ``certified``
       = how many; each is an edge of every MST.

    Exact when the forest of step 2 is part of a minimum spanning tree (e.g. when the kNN graph contains one);
    otherwise the uncertified edges are true distances but not necessarily MST edges (the kNN graph can link two
    groups through a pair that is not their closest), and the total can only exceed the MST's.
    """
    import scipy.sparse as sp
    from scipy.sparse.csgraph import connected_components

    from alignkit.neighbors import knn_graph

    n = x.shape[0]
    x32 = torch.from_numpy(x.astype(np.float32))
    nbrs = knn_graph(x32, k, metric="euclidean").indices.numpy()
    rows = np.repeat(np.arange(n), k)
    cols = nbrs.ravel()
    ei, ej, ew = _forest(rows, cols, _lengths(x, rows, cols), n)
    n_comp, comp = connected_components(sp.coo_matrix((ew, (ei, ej)), shape=(n, n)), directed=False)
    first = int(n_comp)
    search = _Search(x32)
    while n_comp > 1:
        largest = int(np.bincount(comp).argmax())
        queries = np.flatnonzero(comp != largest)
        qi, qj = search.nearest_other(comp, queries, k)
        ai = np.concatenate([ei, qi])
        aj = np.concatenate([ej, qj])
        ei, ej, ew = _forest(ai, aj, np.concatenate([ew, _lengths(x, qi, qj)]), n)
        before = n_comp
        n_comp, comp = connected_components(sp.coo_matrix((ew, (ei, ej)), shape=(n, n)), directed=False)
        if n_comp >= before:  # cannot happen (each tree gained an edge leaving it); guard against a loop
            raise RuntimeError("h0_persistence: joining the kNN forest made no progress")
    ei, ej, ew, certified = _certify(x, search, ei, ej, ew, CERTIFY, budget=n // 2)
    return ei, ej, ew, first, certified


def _certify(
    x: np.ndarray, search: _Search, ei: np.ndarray, ej: np.ndarray, ew: np.ndarray, count: int, budget: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Check the longest tree edges by the cut property, longest first: removing edge e splits the tree into two
    sides; the closest pair between them (blocked search from the smaller side, the 4 nearest float32 candidates
    per point re-measured in float64) is an edge of every MST, and replaces e when shorter. Each check certifies
    one edge. Runs until ``count`` edges are certified or the smaller sides searched exceed ``budget`` rows, and
    always until the longest edge of the tree is certified (so the normaliser is exact: a tree whose longest edge
    is the lightest across its cut has the MST's bottleneck). Returns the tree and the number certified."""
    import scipy.sparse as sp
    from scipy.sparse.csgraph import connected_components

    n = x.shape[0]
    ei, ej, ew = ei.copy(), ej.copy(), ew.copy()
    certified = np.zeros(ew.size, dtype=bool)
    done = spent = 0
    ones = np.ones(ew.size - 1)
    while not certified.all():
        open_ = np.flatnonzero(~certified)
        e = int(open_[np.argmax(ew[open_])])
        longest = ew[e] >= ew.max()
        if not longest and (done >= count or spent >= budget):
            break
        keep = np.arange(ew.size) != e
        _, side = connected_components(sp.coo_matrix((ones, (ei[keep], ej[keep])), shape=(n, n)), directed=False)
        small = 0 if 2 * int(np.count_nonzero(side == 0)) <= n else 1
        rows = np.flatnonzero(side == small)
        if not longest and spent + rows.size > budget:
            break
        qi, qj = search.nearest_other(side, rows, 4)
        w = _lengths(x, qi, qj)
        b = int(np.argmin(w))
        if w[b] < ew[e]:
            ei[e], ej[e], ew[e] = qi[b], qj[b], w[b]
        certified[e] = True
        done += 1
        spent += rows.size
    return ei, ej, ew, done


def _lengths(x: np.ndarray, i: np.ndarray, j: np.ndarray, chunk: int = 1 << 16) -> np.ndarray:
    out = np.empty(i.shape[0])
    for s in range(0, i.shape[0], chunk):
        diff = x[i[s : s + chunk]] - x[j[s : s + chunk]]
        out[s : s + chunk] = np.sqrt(np.einsum("ij,ij->i", diff, diff))
    return out


def _forest(i: np.ndarray, j: np.ndarray, w: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The minimum spanning forest of the undirected graph with edges (i, j, w), all w > 0."""
    import scipy.sparse as sp
    from scipy.sparse.csgraph import minimum_spanning_tree

    lo, hi = np.minimum(i, j), np.maximum(i, j)
    key = lo * n + hi
    _, first = np.unique(key, return_index=True)  # one entry per undirected edge (csr would sum repeats)
    g = sp.csr_matrix((w[first], (lo[first], hi[first])), shape=(n, n))
    t = minimum_spanning_tree(g).tocoo()
    return t.row.astype(np.int64), t.col.astype(np.int64), np.asarray(t.data, dtype=np.float64)


class _Search:
    """Blocked exact float32 search over the rows of x32 (centred, near unit scale), with ‖b‖² and xᵀ kept."""

    def __init__(self, x32: torch.Tensor) -> None:
        self.x = x32
        self.sq = (x32 * x32).sum(dim=1)
        self.base_t = x32.T.contiguous()

    def nearest_other(self, comp: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Edges (query, j) from each query row to its ``k`` nearest rows in other components (fewer where
        fewer exist)."""
        n = self.x.shape[0]
        comp_t = torch.from_numpy(comp.astype(np.int64))
        step = max(1, min(len(queries), _BLOCK_BYTES // (4 * n)))
        kk = min(k, n - 1)
        src, dst = [], []
        for s in range(0, len(queries), step):
            q = torch.from_numpy(queries[s : s + step])
            sims = self.x[q] @ self.base_t
            sims.mul_(2.0).sub_(self.sq)  # orders like −‖q − b‖²
            sims.masked_fill_(comp_t[q][:, None] == comp_t[None, :], -torch.inf)
            vals, idx = torch.topk(sims, kk, dim=1)
            keep = torch.isfinite(vals)
            src.append(q[:, None].expand(-1, kk)[keep].numpy())
            dst.append(idx[keep].numpy())
        return np.concatenate(src), np.concatenate(dst)


__all__ = ["DENSE_MAX", "METHODS", "SUMMARIES", "H0Result", "h0_persistence", "knn_mst", "prim_mst"]
