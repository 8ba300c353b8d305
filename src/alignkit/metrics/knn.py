"""Neighbourhood-agreement measures between two row-paired spaces.

Every function accepts raw arrays (the kNN graph is computed here) or precomputed
:class:`~alignkit.neighbors.KNNGraph` objects, so one graph per space serves every measure and
every layer pair. After the kNN step each measure costs O(n·k) or O(n·k²).

``mutual_knn`` and ``jaccard_knn`` take ``ties``: ``"arbitrary"`` (the default: rows tied at the k-th
distance are admitted in the search's order, so repeated rows make the score depend on row order) or
``"fractional"`` (they share the remaining slots equally, see :class:`~alignkit.neighbors.TiedNeighbours`).
The other kNN measures read ordered lists or single paths, for which a shared slot has no meaning.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from alignkit._common import pow2_rescale, unit_rows
from alignkit._lazy import lazy_module
from alignkit._validation import ArrayLike, as_pair, check_k, check_min_rows
from alignkit.metrics._registry import register
from alignkit.metrics.prepared import PreparedMeasure
from alignkit.neighbors import (
    METRICS,
    KNNGraph,
    TiedNeighbours,
    knn_graph,
    overlap_counts,
    tied_overlap,
    with_recall,
)

if TYPE_CHECKING:
    import torch
else:
    torch = lazy_module("torch")

GraphOrArray = KNNGraph | ArrayLike

_KNN_INVARIANCES = ("orthogonal", "isotropic_scale", "permutation")
_KNN_CONSTRAINTS: dict[str, dict[str, Any]] = {
    "k": {"low": 1},
    "metric": {"choices": METRICS},
    "backend": {"choices": ("exact", "faiss")},
}
TIES = ("arbitrary", "fractional")


def as_graph(
    X: GraphOrArray, k: int, metric: str = "cosine", backend: str = "exact", name: str = "X", ties: bool = False
) -> KNNGraph:
    """Use a precomputed graph (truncated to k) or compute one from an array; ``ties``: with its tied
    neighbourhoods (:func:`~alignkit.neighbors.knn_graph` ``ties=True``)."""
    if isinstance(X, KNNGraph):
        if k > X.k:
            raise ValueError(f"{name} is a KNNGraph with k={X.k}; cannot read k={k} neighbours from it")
        if ties and X.ties is None:
            raise ValueError(
                f"ties='fractional' needs {name} built with knn_graph(..., ties=True); this KNNGraph kept no ties"
            )
        return X if k == X.k else X.truncate(k)
    if ties and backend != "exact":
        raise ValueError(
            f"ties='fractional' needs backend='exact' (the tied rows are found by exact search); got {backend!r}"
        )
    return knn_graph(X, k, metric=metric, backend=backend, ties=ties)  # type: ignore[arg-type]


def graph_pair(
    X: GraphOrArray, Y: GraphOrArray, k: int, metric: str, backend: str, ties: bool = False
) -> tuple[KNNGraph, KNNGraph]:
    """Both graphs, checked to describe the same number of paired items."""
    if not isinstance(X, KNNGraph) and not isinstance(Y, KNNGraph):
        X, Y = as_pair(X, Y)
    gx = as_graph(X, k, metric, backend, "X", ties)
    gy = as_graph(Y, k, metric, backend, "Y", ties)
    if gx.n != gy.n:
        raise ValueError(f"X and Y must be paired by row: X has {gx.n} items, Y has {gy.n}")
    return gx, gy


def mutual_knn_rows(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-row overlap fraction |S_A(i) ∩ S_B(i)| / k."""
    return overlap_counts(a, b).double() / a.shape[1]


def cycle_knn_rows(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """1 where i is among the X-neighbours of one of its Y-neighbours."""
    n = a.shape[0]
    rows = torch.arange(n)
    out = torch.empty(n, dtype=torch.float64)
    chunk = max(1, 2**22 // (a.shape[1] * b.shape[1]))
    for s in range(0, n, chunk):
        e = min(n, s + chunk)
        paths = a[b[s:e]]  # (m, kb, ka): X-neighbours of each Y-neighbour
        out[s:e] = (paths == rows[s:e, None, None]).flatten(1).any(dim=1).double()
    return out


def jaccard_knn_rows(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    m = overlap_counts(a, b).double()
    return m / (2 * a.shape[1] - m)


def mutual_knn_tied_rows(a: TiedNeighbours, b: TiedNeighbours) -> torch.Tensor:
    """Per-row ``Σ_j min(w_A(i, j), w_B(i, j)) / k``: the fractional overlap (the count / k without ties)."""
    return tied_overlap(a, b) / a.k


def jaccard_knn_tied_rows(a: TiedNeighbours, b: TiedNeighbours) -> torch.Tensor:
    """``m / (2k − m)`` with m the fractional overlap: Σ min over Σ max, as both sets have mass k."""
    m = tied_overlap(a, b)
    return m / (2 * a.k - m)


def _sequence_dp(a: torch.Tensor, b: torch.Tensor, mode: str) -> torch.Tensor:
    """Row-wise LCS length or edit distance of two (n, k) sequences, DP vectorised over rows."""
    n, ka = a.shape
    kb = b.shape[1]
    eq = a[:, :, None] == b[:, None, :]  # (n, ka, kb)
    if mode == "lcs":
        prev = torch.zeros((n, kb + 1), dtype=torch.long)
        for i in range(ka):
            cur = torch.zeros_like(prev)
            for j in range(kb):
                match = prev[:, j] + 1
                best = torch.maximum(prev[:, j + 1], cur[:, j])
                cur[:, j + 1] = torch.where(eq[:, i, j], match, best)
            prev = cur
        return prev[:, kb]
    prev = torch.arange(kb + 1).repeat(n, 1)
    for i in range(ka):
        cur = torch.empty_like(prev)
        cur[:, 0] = i + 1
        for j in range(kb):
            sub = prev[:, j] + (~eq[:, i, j]).long()
            cur[:, j + 1] = torch.minimum(torch.minimum(prev[:, j + 1] + 1, cur[:, j] + 1), sub)
        prev = cur
    return prev[:, kb]


def lcs_knn_rows(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return _sequence_dp(a, b, "lcs").double() / a.shape[1]


def edit_distance_knn_rows(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return 1.0 - _sequence_dp(a, b, "edit").double() / a.shape[1]


RowFunction = Callable[["torch.Tensor", "torch.Tensor"], "torch.Tensor"]
TiedRowFunction = Callable[[TiedNeighbours, TiedNeighbours], "torch.Tensor"]


@dataclass
class KnnMeasure(PreparedMeasure):
    """Any kNN-overlap measure: a graph per space; a permutation relabels the index lists
    (``knn_{Yπ}[i] = π⁻¹[knn_Y[π(i)]]``, O(n·k) per draw, and the tied entries likewise, O(entries));
    a pair costs one row function."""

    name: str
    rows: RowFunction
    k: int = 10
    metric: str = "cosine"
    backend: str = "exact"
    ties: str = "arbitrary"
    tied_rows: TiedRowFunction | None = None

    @property
    def fractional(self) -> bool:
        return self.ties == "fractional"

    def prepare(self, x: torch.Tensor | KNNGraph) -> KNNGraph:
        if not isinstance(x, KNNGraph):
            check_k(self.k, x.shape[0])
        return as_graph(x, self.k, self.metric, self.backend, ties=self.fractional)

    def permute(self, p: KNNGraph, perm: torch.Tensor) -> KNNGraph:
        return p.permuted(perm)

    def score(self, pa: KNNGraph, pb: KNNGraph) -> float:
        if self.fractional:
            assert self.tied_rows is not None and pa.ties is not None and pb.ties is not None
            return float(self.tied_rows(pa.ties, pb.ties).mean())
        return float(self.rows(pa.indices, pb.indices).mean())


def _knn_view(x: torch.Tensor, params: dict[str, Any]) -> torch.Tensor:
    """The space as a kNN measure sees it: unit rows under cosine similarity (safe at any scale)."""
    return unit_rows(x) if params.get("metric", "cosine") == "cosine" else x


def _knn_measure(
    name: str,
    rows: RowFunction,
    *,
    summary: str,
    doc: str,
    symmetric: bool = True,
    tied_rows: TiedRowFunction | None = None,
) -> Callable[..., float]:
    """Define and register one kNN-overlap measure from its row function (one shared body); with ``tied_rows``
    it takes ``ties`` too."""
    constraints = dict(_KNN_CONSTRAINTS)
    if tied_rows is None:

        def func(
            X: GraphOrArray, Y: GraphOrArray, k: int = 10, *, metric: str = "cosine", backend: str = "exact"
        ) -> float:
            gx, gy = graph_pair(X, Y, k, metric, backend)
            return with_recall(float(rows(gx.indices, gy.indices).mean()), X=gx, Y=gy)

    else:
        constraints["ties"] = {"choices": TIES}

        def func(  # type: ignore[misc]
            X: GraphOrArray,
            Y: GraphOrArray,
            k: int = 10,
            *,
            metric: str = "cosine",
            backend: str = "exact",
            ties: str = "arbitrary",
        ) -> float:
            gx, gy = graph_pair(X, Y, k, metric, backend, ties=ties == "fractional")
            if ties == "fractional":
                assert gx.ties is not None and gy.ties is not None
                return float(tied_rows(gx.ties, gy.ties).mean())
            return with_recall(float(rows(gx.indices, gy.indices).mean()), X=gx, Y=gy)

    func.__name__ = func.__qualname__ = name
    func.__doc__ = doc
    func.__module__ = __name__

    def prepare(info: Any, params: dict[str, Any], **_: Any) -> KnnMeasure:
        ties = params.get("ties", "arbitrary")
        if ties == "fractional" and params["backend"] != "exact":
            raise ValueError(f"ties='fractional' needs backend='exact'; got backend={params['backend']!r}")
        return KnnMeasure(info.name, rows, params["k"], params["metric"], params["backend"], ties, tied_rows)

    return register(
        name,
        family="knn",
        range=(0.0, 1.0),
        symmetric=symmetric,
        invariances=_KNN_INVARIANCES,
        cost="O(n²d) kNN + O(nk²)",
        description=summary,
        constraints=constraints,
        defaults={"k": 10, "metric": "cosine"},
        knn_based=True,
        prepare=prepare,
        view=_knn_view,
        duplicate_sensitive=True,
    )(func)


mutual_knn = _knn_measure(
    "mutual_knn",
    mutual_knn_rows,
    summary="Mean fraction of shared k nearest neighbours (PRH headline metric). Null ≈ k/(n−1). "
    "ties='fractional': rows tied at the k-th distance share the last slots.",
    doc="""Mutual k-nearest-neighbour alignment.

    ``mknn = (1/n) Σ_i |S_X(i) ∩ S_Y(i)| / k``, with S the k nearest neighbours (self excluded).
    Huh, Cheung, Wang, Isola, "The Platonic Representation Hypothesis", ICML 2024.
    X, Y are row-paired arrays or precomputed :class:`KNNGraph` objects (truncated to k).

    ``ties="fractional"`` (exact backend; graphs from ``knn_graph(..., ties=True)``): with r_i the k-th
    smallest distance of row i, rows strictly closer have weight 1 and the t_i rows at exactly r_i share the
    k − c_i remaining slots, ``(k − c_i)/t_i`` each; ``mknn = (1/n) Σ_i Σ_j min(w_X(i,j), w_Y(i,j)) / k``.
    It equals the ordinary score without ties and does not depend on row order. ``min`` (not the product)
    so identical tied neighbourhoods overlap fully; where only one space ties the two agree, and both are
    the expected overlap under uniformly random tie-breaking.
    """,
    tied_rows=mutual_knn_tied_rows,
)
cycle_knn = _knn_measure(
    "cycle_knn",
    cycle_knn_rows,
    symmetric=False,
    summary="Fraction of items that return to themselves along i →Y-kNN→ j →X-kNN→ i. Asymmetric.",
    doc="""Cycle kNN: ``(1/n) Σ_i 1[i ∈ ∪_{j ∈ S_Y(i)} S_X(j)]`` (PRH, Huh et al. 2024).

    Null under independence ≈ ``1 − (1 − k/(n−1))^k``. Not symmetric in (X, Y).
    """,
)
jaccard_knn = _knn_measure(
    "jaccard_knn",
    jaccard_knn_rows,
    summary="Mean Jaccard index of the two k-neighbour sets (ReSi). ties='fractional' as mutual_knn.",
    doc="""kNN Jaccard similarity ``(1/n) Σ_i m_i / (2k − m_i)``, m_i = |S_X(i) ∩ S_Y(i)|.

    Klabunde et al., "ReSi: A Comprehensive Benchmark for Representational Similarity Measures",
    ICLR 2025. ``ties="fractional"``: m_i = Σ_j min(w_X(i,j), w_Y(i,j)) as in :func:`mutual_knn` (Σ min over
    Σ max of two weighted sets of mass k).
    """,
    tied_rows=jaccard_knn_tied_rows,
)
lcs_knn = _knn_measure(
    "lcs_knn",
    lcs_knn_rows,
    summary="Longest common subsequence of the two ranked k-neighbour lists, divided by k (PRH).",
    doc="""Mean LCS length of the ordered neighbour lists, normalised to [0, 1] by k.

    PRH (Huh et al. 2024) reports the raw length in [0, k]; we divide by k so the range is honest.
    """,
)
edit_distance_knn = _knn_measure(
    "edit_distance_knn",
    edit_distance_knn_rows,
    summary="1 − mean Levenshtein distance between the ranked k-neighbour lists / k (PRH).",
    doc="""``1 − mean_i edit(S_X(i), S_Y(i)) / k`` over the ranked neighbour lists (PRH, Huh et al. 2024).""",
)


# ---------------------------------------------------------------------------------------- CKNNA


def _mutual_pairs(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Ordered pairs (i, j) with j in both neighbour lists of i."""
    hit = (a[:, :, None] == b[:, None, :]).any(dim=2)  # (n, k): a[i, p] also in b[i]
    rows = torch.arange(a.shape[0])[:, None].expand_as(a)
    return rows[hit], a[hit]


# Up to this many items, kernel values come from row blocks of the Gram matrix (one matrix product per block,
# O(n²d) flops at BLAS speed); beyond it, from gathered row pairs (O(#pairs·d) flops, memory-bound). At n = 2000,
# k = 50 the products are ~10× faster than gathering 100k pairs of 512-d rows.
_GRAM_MAX_ITEMS = 8192


def _kernel_values(F: torch.Tensor, i: torch.Tensor, j: torch.Tensor) -> torch.Tensor:
    """``⟨F_i, F_j⟩`` in float64 for each pair; ``i`` must be non-decreasing (pairs grouped by row, as
    :func:`_mutual_pairs` returns them)."""
    out = torch.empty(i.numel(), dtype=torch.float64)
    n = F.shape[0]
    if n <= _GRAM_MAX_ITEMS and i.numel():
        Fd = F.double()
        rows = max(1, (1 << 22) // n)
        bounds = torch.searchsorted(i, torch.arange(0, n + rows, rows, dtype=i.dtype).clamp_max(n))
        for b in range(len(bounds) - 1):
            s, e = int(bounds[b]), int(bounds[b + 1])
            if s == e:
                continue
            lo = b * rows
            G = Fd[lo : min(n, lo + rows)] @ Fd.T
            out[s:e] = G[i[s:e] - lo, j[s:e]]
        return out
    step = 1 << 18
    for s in range(0, i.numel(), step):
        e = s + step
        out[s:e] = (F[i[s:e]].double() * F[j[s:e]].double()).sum(dim=1)
    return out


def sparse_hsic_u(n: int, i: torch.Tensor, j: torch.Tensor, kv: torch.Tensor, lv: torch.Tensor) -> float:
    """Unbiased HSIC (Song et al. 2012) of two kernels that are zero off the pairs (i, j).

    ``[tr(K̃L̃) + (1ᵀK̃1)(1ᵀL̃1)/((n−1)(n−2)) − 2/(n−2)·1ᵀK̃L̃1] / (n(n−3))``, in O(#pairs).
    The pairs must exclude the diagonal. tr(K̃L̃) = Σ K̃_ij L̃_ji needs the reverse pairs.
    """
    key = i * n + j
    order = torch.argsort(key)
    key_sorted = key[order]
    rev = j * n + i
    pos = torch.searchsorted(key_sorted, rev).clamp_max(max(key.numel() - 1, 0))
    found = key_sorted[pos] == rev if key.numel() else torch.zeros(0, dtype=torch.bool)
    trace = float((kv[found] * lv[order[pos[found]]]).sum())
    col_k = torch.zeros(n, dtype=torch.float64).index_add_(0, j, kv)
    row_l = torch.zeros(n, dtype=torch.float64).index_add_(0, i, lv)
    mid = float(col_k @ row_l)
    sk, sl = float(kv.sum()), float(lv.sum())
    return (trace + sk * sl / ((n - 1) * (n - 2)) - 2.0 * mid / (n - 2)) / (n * (n - 3))


def cknna_cross(Fx: torch.Tensor, Fy: torch.Tensor, gx: KNNGraph, gy: KNNGraph) -> float:
    """``HSIC_u(M∘K, M∘L)`` with M the mutual-neighbour mask of the two graphs."""
    i, j = _mutual_pairs(gx.indices, gy.indices)
    return sparse_hsic_u(Fx.shape[0], i, j, _kernel_values(Fx, i, j), _kernel_values(Fy, i, j))


def cknna_self(F: torch.Tensor, g: KNNGraph) -> float:
    """``HSIC_u(M_K∘K, M_K∘K)``, the normaliser of one space (its own kNN mask)."""
    i, j = _mutual_pairs(g.indices, g.indices)
    kv = _kernel_values(F, i, j)
    return sparse_hsic_u(F.shape[0], i, j, kv, kv)


def cknna_features(x: torch.Tensor, metric: str) -> torch.Tensor:
    """The features CKNNA's kernel sees: unit rows for ``"cosine"``; for ``"ip"`` the space divided by its
    root-mean-square row norm (one positive scalar: the same neighbours, a scale-free kernel, so ``eps`` is
    relative and the score is the same at any finite scale of X)."""
    if metric == "cosine":
        return unit_rows(x)
    f, _ = pow2_rescale(x)
    rms = float(f.double().pow(2).sum(dim=1).mean().sqrt())
    return f / rms if rms > 0 else f


def cknna_ratio(cross: float, self_x: float, self_y: float, eps: float = 1e-6) -> float:
    return cross / (max(self_x * self_y, 0.0) ** 0.5 + eps)


@dataclass
class _Cknna:
    f: torch.Tensor  # features as the kernel sees them, on CPU
    graph: KNNGraph
    self_hsic: float


@dataclass
class CknnaMeasure(PreparedMeasure):
    """CKNNA with each space's features, kNN graph and self-HSIC computed once."""

    name: str = "cknna"
    k: int = 10
    metric: str = "cosine"
    backend: str = "exact"
    eps: float = 1e-6

    def min_rows(self) -> int:
        return 4

    def prepare(self, x: torch.Tensor) -> _Cknna:
        _check_cknna(self.metric, self.k, x.shape[0])
        f = cknna_features(x, self.metric)
        g = knn_graph(f, self.k, metric=self.metric, backend=self.backend)  # type: ignore[arg-type]
        f = f.cpu()
        return _Cknna(f, g, cknna_self(f, g))

    def permute(self, p: _Cknna, perm: torch.Tensor) -> _Cknna:
        return _Cknna(p.f[perm], p.graph.permuted(perm), p.self_hsic)

    def score(self, pa: _Cknna, pb: _Cknna) -> float:
        return cknna_ratio(cknna_cross(pa.f, pb.f, pa.graph, pb.graph), pa.self_hsic, pb.self_hsic, self.eps)


def _check_cknna(metric: str, k: int, n: int) -> int:
    if metric not in ("cosine", "ip"):
        raise ValueError(f"metric must be 'cosine' or 'ip' for cknna (its kernel is an inner product); got {metric!r}")
    check_min_rows(n, 4, "cknna (unbiased HSIC)")
    k = check_k(k, n)
    if k < 2:
        raise ValueError(f"k must be >= 2 for cknna; got k={k}")
    return k


def _graph_argument(value: Any) -> KNNGraph:
    """``knn_x``/``knn_y`` are Python-only arguments: a precomputed KNNGraph (never a value from an id)."""
    if not isinstance(value, KNNGraph):
        # A string (from an id, --param or a config) is a ValueError; another Python object is a TypeError.
        raise (ValueError if isinstance(value, str) else TypeError)(
            f"must be a precomputed alignkit.neighbors.KNNGraph (a Python-only argument that an id or "
            f"--param cannot set); got {type(value).__name__} {value!r}"
        )
    return value


def _prepare_cknna(info: Any, params: dict[str, Any], **_: Any) -> CknnaMeasure:
    return CknnaMeasure(info.name, params["k"], params["metric"], params["backend"], params["eps"])


@register(
    "cknna",
    family="knn",
    range=(-1.0, 1.0),
    symmetric=False,
    invariances=("orthogonal", "isotropic_scale", "permutation"),
    cost="O(n²d) kNN + O(nk(d + log nk))",
    description="Centred kernel alignment restricted to mutual-neighbour pairs (PRH). Needs k >= 2. "
    "Nearly symmetric (the masked kernels are not).",
    defaults={"k": 10, "metric": "cosine"},
    constraints={
        "k": {"low": 2},
        "metric": {"choices": ("cosine", "ip")},
        "backend": {"choices": ("exact", "faiss")},
        "eps": {"low": 0.0, "low_open": True},
        "knn_x": {"validator": _graph_argument},
        "knn_y": {"validator": _graph_argument},
    },
    prepare=_prepare_cknna,
    view=_knn_view,
    duplicate_sensitive=True,
)
def cknna(
    X: ArrayLike,
    Y: ArrayLike,
    k: int = 10,
    *,
    metric: str = "cosine",
    backend: str = "exact",
    eps: float = 1e-6,
    knn_x: KNNGraph | None = None,
    knn_y: KNNGraph | None = None,
) -> float:
    """Centred kernel nearest-neighbour alignment (unbiased form).

    ``CKNNA = HSIC_u(M∘K, M∘L) / (sqrt(HSIC_u(M_K∘K, M_K∘K)·HSIC_u(M_L∘L, M_L∘L)) + eps)`` with
    K = XXᵀ (rows L2-normalised for ``metric='cosine'``; for ``'ip'`` X divided by its root-mean-square row
    norm, see :func:`cknna_features`), M = kNN(K)∘kNN(L) (self excluded).
    Computed on the ≤ n·k non-zeros only. Huh et al., "The Platonic Representation Hypothesis",
    ICML 2024 (PRH ``cknna`` with ``unbiased=True``).
    """
    x, y = as_pair(X, Y)
    k = _check_cknna(metric, k, x.shape[0])
    x, y = cknna_features(x, metric), cknna_features(y, metric)
    gx = as_graph(knn_x, k, name="knn_x") if knn_x is not None else knn_graph(x, k, metric=metric, backend=backend)
    gy = as_graph(knn_y, k, name="knn_y") if knn_y is not None else knn_graph(y, k, metric=metric, backend=backend)
    x, y = x.cpu(), y.cpu()
    value = cknna_ratio(cknna_cross(x, y, gx, gy), cknna_self(x, gx), cknna_self(y, gy), eps)
    return with_recall(value, X=gx, Y=gy)
