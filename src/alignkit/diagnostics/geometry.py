"""The geometry of one space: uniformity, tolerance, anisotropy, effective rank, intrinsic dimension, norms.

Every diagnostic here reads one space X (n items × d features; a numpy array or torch tensor, validated by
:func:`alignkit.diagnostics._inputs.as_array`: 2-D, real, finite; a CUDA tensor is copied to the host). The
angular ones (uniformity, tolerance, anisotropy) work on unit rows ``x̂ = x/‖x‖`` and refuse all-zero rows
(they have no direction).

Scale: nothing here forms an n × n matrix. Pairwise sums run over row blocks of the Gram matrix (memory
O(block·n), ~64 MiB of similarities per block by default, ``block_size`` to choose) with a running
logsumexp in float64, or use closed forms from column sums (``‖Σx̂‖²``). Products run in the input's
float dtype (float32 stays float32); sums and cancellations are accumulated in float64. The kernels are
numpy (BLAS products, single-threaded element-wise passes over blocks): on a busy machine torch's
OpenMP element-wise ops on small blocks are slower by orders of magnitude, and the product dominates at scale.

The blocked pairwise kernels (:func:`triu_logmeanexp`, :func:`unit_space`, ...) are shared with
:mod:`alignkit.diagnostics.pair`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from alignkit._validation import ArrayLike, check_min_rows
from alignkit.degenerate import distinct_rows
from alignkit.diagnostics._inputs import as_array, check_labels
from alignkit.diagnostics._registry import register
from alignkit.diagnostics._result import DiagnosticResult

#: Bytes of one block of pairwise similarities (rows per block = this / (columns · itemsize)).
BLOCK_BYTES = 64 * 2**20
#: Elements of one block of rows in O(n·d) passes (float64 copies of a block stay ~8 MiB).
_ROW_BLOCK_ELEMENTS = 1 << 20

#: Sums of squares above this (float64) are far from the subnormal range: no precision lost to underflow.
_SAFE_SQ = float(np.finfo(np.float64).tiny / np.finfo(np.float64).eps)

_BLOCK = {"block_size": {"low": 1}}
_T = {"t": {"low": 0.0, "low_open": True}}


# ------------------------------------------------------------------------------------------------ helpers


def block_rows(n_cols: int, itemsize: int, block_size: int | None, copies: int = 1) -> int:
    """Rows per block of an (rows × n_cols) similarity block: ``block_size`` if given, else about
    :data:`BLOCK_BYTES` for ``copies`` such blocks alive at once."""
    if block_size is not None:
        return max(1, int(block_size))
    return max(1, BLOCK_BYTES // max(1, copies * n_cols * itemsize))


def row_blocks(n: int, d: int) -> Iterator[tuple[int, int]]:
    """(start, stop) of row blocks of about :data:`_ROW_BLOCK_ELEMENTS` entries, for O(n·d) passes."""
    step = max(1, _ROW_BLOCK_ELEMENTS // max(1, d))
    for s in range(0, n, step):
        yield s, min(n, s + step)


def row_scratch(n: int, d: int, dtype: np.dtype) -> np.ndarray:
    """A flat scratch buffer that holds one block of :func:`row_blocks` (reused across blocks)."""
    return np.empty(max(1, min(n, _ROW_BLOCK_ELEMENTS // max(1, d))) * d, dtype=dtype)


def block_norms(b: np.ndarray, fast: bool = False) -> np.ndarray:
    """``‖b_i‖₂`` of every row of a block, in float64 (squares summed in float64: no float32 overflow).

    Rows whose float64 sum of squares overflows or nears the subnormal range (only possible for float64 input
    beyond ~1e154 or below ~1e-146) are recomputed after dividing by their largest |entry|.
    """
    with np.errstate(over="ignore", under="ignore"):
        # fast: float32 rows' squares summed in float32 (~1e-7 relative, 6× faster than a float64 einsum); a row
        # whose sum overflows or nears the subnormal range takes the scaled float64 path below either way
        if fast and b.dtype == np.float32:
            sq = np.einsum("ij,ij->i", b, b).astype(np.float64)
        else:
            sq = np.einsum("ij,ij->i", b, b, dtype=np.float64)
    r = np.sqrt(sq)
    slow = ~(np.isfinite(sq) & (sq > _SAFE_SQ))  # includes all-zero rows and rows whose squares underflowed
    if slow.any():
        bb = b[slow].astype(np.float64)
        peak = np.abs(bb).max(axis=1)
        nonzero = peak > 0
        bb[nonzero] /= peak[nonzero, None]
        r[slow] = np.sqrt(np.einsum("ij,ij->i", bb, bb)) * peak
    return r


def unit_block(b: np.ndarray, out: np.ndarray) -> int:
    """Write the unit rows ``b_i/‖b_i‖`` of a block into ``out`` (same shape and dtype); return the number of
    all-zero rows (left as zeros). Scale-safe at any finite magnitude (:func:`block_norms`)."""
    r = block_norms(b)
    zero = r == 0
    rr = r.astype(b.dtype)
    ok = np.isfinite(rr) & (rr >= np.finfo(b.dtype).tiny)
    np.divide(b, np.where(ok, rr, 1)[:, None], out=out)
    if not ok.all():
        for i in np.flatnonzero(~ok & ~zero):  # norms outside the dtype's normal range: divide in float64, scaled
            row = b[i].astype(np.float64)
            row /= np.abs(row).max()
            out[i] = row / np.linalg.norm(row)
    return int(zero.sum())


def zero_rows_error(a: np.ndarray, name: str) -> ValueError:
    zero = sum(int((block_norms(a[s:e]) == 0).sum()) for s, e in row_blocks(*a.shape))
    return ValueError(
        f"{name} has {zero} all-zero row(s): they have no direction, so cosines to them are undefined; drop them first"
    )


def unit_array(a: np.ndarray, name: str = "X") -> np.ndarray:
    """The unit rows ``x/‖x‖₂`` of a validated array, in its dtype (:func:`unit_block`, block by block).
    All-zero rows have no direction, so cosine-based diagnostics refuse them (a ``ValueError`` with the count)."""
    out = np.empty_like(a)
    for s, e in row_blocks(*a.shape):
        if unit_block(a[s:e], out[s:e]):
            raise zero_rows_error(a, name)
    return out


def unit_space(X: ArrayLike, name: str = "X") -> np.ndarray:
    """``X`` validated (:func:`as_array`: 2-D, real, finite) with unit rows (:func:`unit_array`)."""
    return unit_array(as_array(X, name), name)


def unit_column_sum(a: np.ndarray, name: str = "X") -> tuple[np.ndarray, float]:
    """(Σ_i x̂_i as a float64 vector, Σ_i ‖x̂_i‖²) of the unit rows of a validated array, float64 accumulation:
    per cache-sized chunk, the row norms, then one matrix-vector product on the same rows (the unit rows are
    never formed; memory O(d)). A NaN or Inf entry makes its row's norm non-finite: that is the finiteness check."""
    n, d = a.shape
    total = np.zeros(d, dtype=np.float64)
    sq = 0.0
    # chunks of ~1.5 MB: the norms and the matrix-vector product read the same rows while they are still in cache
    step = max(16, (3 << 19) // max(1, d * a.dtype.itemsize))
    info = np.finfo(a.dtype)
    lo_ok, hi_ok = float(info.tiny) / float(info.eps), float(info.max) / 4
    with np.errstate(over="ignore", under="ignore", invalid="ignore", divide="ignore"):
        for s in range(0, n, step):
            b = a[s : s + step]
            r2 = np.einsum("ij,ij->i", b, b)  # in the input's dtype: float32 sums of d squares, ~1e-7 relative
            if r2.min() > lo_ok and r2.max() < hi_ok:  # False for NaN too: those rows take the careful path
                total += ((1 / np.sqrt(r2)) @ b).astype(np.float64)
                sq += float(b.shape[0])  # ‖x̂‖² = 1 to the dtype's rounding
                continue
            r = block_norms(b)  # zero rows, NaN/Inf, or squares beyond the dtype's range
            if not np.isfinite(r).all():
                bad = sum(int((~np.isfinite(a[t : t + 4096])).sum()) for t in range(0, n, 4096))
                raise ValueError(f"{name} contains {bad} NaN or Inf value(s); clean or impute them first")
            if (r == 0).any():
                raise zero_rows_error(a, name)
            u = np.empty_like(b)
            unit_block(b, u)
            total += u.sum(axis=0, dtype=np.float64)
            sq += float(np.einsum("ij,ij->", u, u, dtype=np.float64))
    return total, sq


def scratch_view(buffer: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """A C-contiguous (rows × cols) view on the front of a flat scratch buffer (no page faults per block)."""
    return buffer[: rows * cols].reshape(rows, cols)


#: |exponent| bound below which exp never over- or underflows (float32: e^±80 ∈ (1e-35, 6e34)); beyond it,
#: each block's maximum is subtracted first (one more pass).
_EXP_SAFE = {np.dtype(np.float32): 80.0, np.dtype(np.float64): 700.0}


def triu_logmeanexp(
    block_exponent: Callable[[int, int, np.ndarray], np.ndarray], n: int, step: int, bound: float, dtype: np.dtype
) -> float:
    """``log mean_{i<j} exp(E_ij)`` for an n × n exponent matrix E given block by block, ``|E| ≤ bound``.

    ``block_exponent(s, e, out)`` writes ``E[s:e, s:]`` (rows s..e−1, columns s..n−1) into ``out`` (a
    contiguous scratch view of that shape, of ``dtype``) and returns it; the part left of the diagonal block is
    never computed (half the products). In the diagonal (b × b) square the entries j ≤ i are masked (−inf, by
    index: O(b²), small next to the b × n block), then the block is exponentiated in place and summed in
    float64. When ``bound`` is small enough for the dtype no shift is needed; otherwise each block's maximum
    is subtracted first and the blocks are merged as a running (max, sum) logsumexp. Memory O(step·n): the
    whole matrix is never formed.
    """
    shift = bound >= _EXP_SAFE[np.dtype(dtype)]
    buffer = np.empty(min(step, n) * n, dtype=dtype)
    lower: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    m_run, s_run = (-math.inf, 0.0) if shift else (0.0, 0.0)
    for s in range(0, n - 1, step):
        e = min(n, s + step)
        b = e - s
        E = block_exponent(s, e, scratch_view(buffer, b, n - s))
        if b not in lower:
            lower[b] = np.tril_indices(b)
        E[lower[b]] = -np.inf  # (row, column) < b: inside the diagonal square
        mb = float(E.max()) if shift else 0.0
        if mb == -math.inf:
            continue
        if mb:
            np.subtract(E, E.dtype.type(mb), out=E)
        np.exp(E, out=E)
        sb = float(E.sum(dtype=np.float64))
        if mb > m_run:
            s_run = s_run * math.exp(m_run - mb) + sb
            m_run = mb
        else:
            s_run += sb * math.exp(mb - m_run)
    return m_run + math.log(s_run) - math.log(n * (n - 1) / 2)


def triangle_rows(n: int, itemsize: int, block_size: int | None, copies: int = 1) -> int:
    """Rows per block of a triangular pairwise sum: :func:`block_rows`, but at most ⌈n/8⌉ (≥ 64) so that small
    spaces also skip most of the lower triangle (the first block computes its whole b × n rectangle)."""
    if block_size is not None:
        return block_rows(n, itemsize, block_size)
    return min(block_rows(n, itemsize, None, copies), max(64, -(-n // 8)))


# ------------------------------------------------------------------------------------------------ uniformity


@register(
    "uniformity",
    family="space",
    range=(float("-inf"), 0.0),
    higher_is_better=False,
    cost="O(n²d) blocked Gram (half of it), memory O(block·n)",
    description="Wang & Isola (ICML 2020) uniformity log mean_{i<j} exp(−t‖x̂_i−x̂_j‖²) on unit rows; in [−4t, 0], "
    "0 iff collapsed, lower = more uniform on the hypersphere.",
    constraints={**_T, **_BLOCK},
    degenerate="warn",
)
def uniformity(X: ArrayLike, *, t: float = 2.0, block_size: int | None = None) -> float:
    """Uniformity ``L_unif = log mean_{i<j} exp(−t‖x̂_i − x̂_j‖²)`` on unit rows (t = 2).

    Wang & Isola, "Understanding Contrastive Representation Learning through Alignment and Uniformity on
    the Hypersphere" (ICML 2020). With ``‖x̂_i − x̂_j‖² = 2 − 2x̂_i·x̂_j`` the exponent is ``2t(x̂_i·x̂_j − 1)``;
    the sum is a chunked logsumexp over row blocks of the upper triangle of the Gram (:func:`triu_logmeanexp`),
    so n = 100k, d = 768 needs ~64 MiB beyond the unit rows. Range [−4t, 0]: 0 iff every row points the same
    way (collapse), −4t only in the limit of antipodal pairs; lower is more uniform. Rotation invariant.
    A constant space gives 0 (with a warning from :func:`~alignkit.diagnostics.diagnose`): that is the
    collapse this diagnostic reports, not a failure.
    """
    u = unit_space(X)
    n = u.shape[0]
    check_min_rows(n, 2, "uniformity")
    step = triangle_rows(n, u.itemsize, block_size)
    scale = 2.0 * t

    def exponent(s: int, e: int, out: np.ndarray) -> np.ndarray:
        # 2t·x̂_i·x̂_j: the scale rides on the small row block; the constant −2t is added back at the end
        return np.matmul(u[s:e] * u.dtype.type(scale), u[s:].T, out=out)

    value = triu_logmeanexp(exponent, n, step, scale, u.dtype) - scale
    return float(min(0.0, max(-4.0 * t, value)))


# ------------------------------------------------------------------------------------------------ tolerance


@register(
    "tolerance",
    family="space",
    range=(-1.0, 1.0),
    higher_is_better=True,
    cost="O(n·d) from per-class sums",
    description="Wang & Liu (CVPR 2021) tolerance: mean cosine over same-label pairs i≠j; higher = items of a class "
    "closer. Null: shuffled labels (≈ the space's anisotropy).",
    null="shuffle_labels",
    degenerate="warn",
)
def tolerance(X: ArrayLike, *, labels: ArrayLike) -> float:
    """Tolerance ``T = mean_{i≠j, l_i = l_j} x̂_i·x̂_j``: the mean cosine over all same-label pairs.

    Wang & Liu, "Understanding the Behaviour of Contrastive Loss" (CVPR 2021): a contrastive model that
    pushes every instance apart is not *tolerant* to semantically similar samples. Computed from per-class
    sums without any n × n matrix: ``Σ_c (‖Σ_{i∈c} x̂_i‖² − Σ_{i∈c}‖x̂_i‖²) / Σ_c n_c(n_c − 1)``. Every pair
    weighs the same (a pooled mean, so large classes weigh more than in a mean of per-class means); classes
    with one item contribute no pair. In [−1, 1]. Needs ≥ 2 classes and one class with ≥ 2 items.
    """
    a = as_array(X)
    n, d = a.shape
    codes, classes = check_labels(labels, n)
    counts = np.bincount(codes, minlength=classes.size).astype(np.float64)
    pairs = float((counts * (counts - 1)).sum())
    if pairs == 0:
        raise ValueError("labels: every class has a single item, so there is no same-label pair to average")
    order = np.argsort(codes, kind="stable")
    sums = np.zeros((classes.size, d), dtype=np.float64)
    sq = 0.0
    for s, e in row_blocks(n, d):  # rows in class order: each block's classes are contiguous runs
        rows, c = order[s:e], codes[order[s:e]]
        b = a[rows]
        if unit_block(b, b):
            raise zero_rows_error(a, "X")
        starts = np.flatnonzero(np.r_[True, c[1:] != c[:-1]])
        sums[c[starts]] += np.add.reduceat(b, starts, axis=0, dtype=np.float64)
        sq += float(np.einsum("ij,ij->", b, b, dtype=np.float64))
    total = float((sums * sums).sum()) - sq
    return float(min(1.0, max(-1.0, total / pairs)))


# ------------------------------------------------------------------------------------------------ anisotropy


@register(
    "anisotropy",
    family="space",
    range=(-1.0, 1.0),
    higher_is_better=None,
    cost="O(n·d) closed form",
    description="Anisotropy (Ethayarajh, EMNLP 2019): mean cosine over pairs i≠j, (‖Σx̂‖² − n)/(n(n−1)); "
    "≈ 0 for an isotropic space, 1 when collapsed. A description, not a score.",
    degenerate="warn",
)
def anisotropy(X: ArrayLike) -> float:
    """Anisotropy: the mean pairwise cosine ``mean_{i≠j} x̂_i·x̂_j = (‖Σ_i x̂_i‖² − Σ_i‖x̂_i‖²)/(n(n − 1))``.

    Ethayarajh, "How Contextual are Contextualized Word Representations?" (EMNLP 2019) measures it as the
    expected cosine between random items. Closed form from the float64 column sum: O(n·d), no n × n matrix.
    In [−1/(n−1), 1]: ≈ 0 when directions are spread evenly, 1 when every row points the same way.
    No direction is declared "better" (``higher_is_better=None``): strongly anisotropic spaces (e.g.
    contrastive text encoders) can still retrieve well, so it describes a space rather than scoring it.
    """
    a = as_array(X, check_finite=False)  # unit_column_sum's norms detect NaN/Inf in the same pass
    n = a.shape[0]
    check_min_rows(n, 2, "anisotropy")
    total, sq = unit_column_sum(a)
    value = (float(total @ total) - sq) / (n * (n - 1))
    return float(min(1.0, max(-1.0, value)))


# ------------------------------------------------------------------------------------------------ effective rank


def _spectrum(a: np.ndarray, center: bool) -> np.ndarray:
    """Singular values (float64) of X (centred columns when ``center``); values below the rounding floor of
    the computation (``max(n, d)·eps`` of the largest) are set to 0."""
    n, d = a.shape
    eps = float(np.finfo(np.float64).eps)
    mean = np.zeros(d, dtype=np.float64)
    if center:
        for s, e in row_blocks(n, d):
            mean += a[s:e].sum(axis=0, dtype=np.float64)
        mean /= n
    if n < d:  # the n × d matrix is small: its singular values directly
        sv = np.linalg.svd(a.astype(np.float64) - mean, compute_uv=False)
        return np.where(sv > sv.max() * max(n, d) * eps, sv, 0.0)
    gram = np.zeros((d, d), dtype=np.float64)
    for s, e in row_blocks(n, d):
        b = a[s:e].astype(np.float64) - mean
        gram += b.T @ b
    lam = np.clip(np.linalg.eigvalsh(gram), 0.0, None)
    lam = np.where(lam > lam.max() * max(n, d) * eps, lam, 0.0)
    return np.sqrt(lam)


@register(
    "effective_rank",
    family="space",
    range=(1.0, float("inf")),
    higher_is_better=None,
    cost="O(n·d²) float64 (d×d Gram, eigvalsh); O(n²d) when n < d",
    description="Effective rank (Roy & Vetterli 2007): exp of the Shannon entropy of the normalised singular "
    "values of the centred X; between 1 and rank(X).",
    degenerate="nan",
)
def effective_rank(X: ArrayLike, *, center: bool = True) -> float:
    """Effective rank ``exp(−Σ_k p_k log p_k)`` with ``p_k = σ_k/Σ_j σ_j``, σ the singular values of X.

    Roy & Vetterli, "The effective rank: a measure of effective dimensionality" (EUSIPCO 2007). By default the
    columns are **centred** first (``center=True``: the spread around the mean, so a common offset does not
    count as a direction); ``center=False`` uses X as given. In [1, rank]: = r for r equal singular values,
    ≈ d for an isotropic Gaussian with n ≫ d. Singular values come from a blocked float64 d × d Gram
    (``eigvalsh``; O(n·d²), memory O(d²)) or, when n < d, an SVD of X; values below the rounding floor
    ``max(n, d)·eps·σ_max`` count as 0. Raises on a space with no variance (constant rows, when centred).
    """
    a = as_array(X)
    if center:
        check_min_rows(a.shape[0], 2, "effective_rank (centred)")
    sv = _spectrum(a, center)
    total = float(sv.sum())
    if not total > 0:
        raise ValueError("effective_rank: X has no variance" + (" after centring (constant rows)" if center else ""))
    p = sv[sv > 0] / total
    return float(math.exp(float(-(p * np.log(p)).sum())))


# ------------------------------------------------------------------------------------------------ TwoNN


@dataclass(frozen=True)
class TwoNNResult(DiagnosticResult):
    """TwoNN intrinsic dimension: the estimate, the estimator, and the rows used and dropped."""

    dimension: float
    estimator: str
    n_used: int  # distinct rows whose neighbour ratio entered the estimate
    n_duplicates: int  # rows dropped because they repeat another row exactly
    discard: float  # fraction of the largest ratios left out ("fit" only; 0 for "mle")

    @property
    def value(self) -> float:
        return self.dimension


MIN_TWO_NN_ROWS = 3


def _neighbour_ratios(x: np.ndarray, block_size: int | None) -> np.ndarray:
    """μ_i = r2/r1 for each row (distinct rows): neighbours from the blocked exact kNN graph
    (:func:`alignkit.neighbors.knn_graph`, euclidean), distances recomputed from the differences in float64
    (no cancellation in ``‖a‖² + ‖b‖² − 2a·b``)."""
    from alignkit.neighbors import knn_graph

    idx = knn_graph(x, 2, metric="euclidean", block_size=block_size).indices.numpy()
    n, d = x.shape
    r = np.empty((n, 2), dtype=np.float64)
    for s, e in row_blocks(n, 2 * d):
        b = x[s:e].astype(np.float64)
        for j in range(2):
            diff = b - x[idx[s:e, j]]
            r[s:e, j] = np.sqrt(np.einsum("ij,ij->i", diff, diff))
    return r.max(axis=1) / r.min(axis=1)


@register(
    "intrinsic_dimension",
    family="space",
    range=(0.0, float("inf")),
    higher_is_better=None,
    cost="O(n²d) blocked exact 2-NN search, memory O(block·n)",
    description="TwoNN intrinsic dimension (Facco et al., Sci. Rep. 2017) from the ratio of 2nd to 1st "
    "neighbour distances; MLE (n−1)/Σlog μ by default, or the paper's linear fit; exact duplicates dropped.",
    constraints={
        "estimator": {"choices": ("mle", "fit")},
        "discard": {"low": 0.0, "high": 1.0, "high_open": True},
        **_BLOCK,
    },
    degenerate="nan",
)
def intrinsic_dimension(
    X: ArrayLike, *, estimator: str = "mle", discard: float = 0.1, block_size: int | None = None
) -> TwoNNResult:
    """TwoNN intrinsic dimension from ``μ_i = r2_i/r1_i``, the ratio of each point's 2nd to 1st nearest
    neighbour distance (Euclidean).

    Facco, d'Errico, Rodriguez, Laio, "Estimating the intrinsic dimension of datasets by a minimal neighborhood
    information" (Scientific Reports 2017): for locally uniform data of dimension d, μ is Pareto with
    ``P(μ ≤ x) = 1 − x^(−d)``.

    - ``estimator="mle"`` (default): the unbiased maximum-likelihood estimate ``d = (N − 1)/Σ_i log μ_i``
      (no tuning parameter; uses every point).
    - ``estimator="fit"``: the paper's estimator: sort μ, ``F_i = i/N``, drop the ``discard`` fraction of
      largest μ (default 0.1; the point with F = 1 is always dropped), and fit ``−log(1 − F) = d·log μ``
      through the origin by least squares.

    **Duplicates.** An exact duplicate row has r1 = 0 (μ undefined), and a point next to a duplicated pair gets
    μ = 1, so exact duplicate rows are collapsed to one *before* the neighbour search: N counts distinct rows,
    and ``n_duplicates`` records how many rows were dropped. Fewer than 3 distinct rows is an error.
    Neighbours come from the blocked exact kNN graph; their distances are recomputed in float64.
    """
    a = as_array(X)
    n = a.shape[0]
    uniq = distinct_rows(a)
    n_dup = n - uniq.shape[0]
    if uniq.shape[0] < MIN_TWO_NN_ROWS:
        raise ValueError(
            f"intrinsic_dimension needs at least {MIN_TWO_NN_ROWS} distinct rows; X has {uniq.shape[0]} "
            f"({n_dup} exact duplicate row(s) of {n} dropped)"
        )
    log_mu = np.log(_neighbour_ratios(np.ascontiguousarray(uniq), block_size))
    m = int(log_mu.size)
    if estimator == "mle":
        denom = float(log_mu.sum())
        if not denom > 0:
            raise ValueError(
                "intrinsic_dimension: every point's two nearest neighbours are equidistant (μ = 1 throughout, "
                "e.g. a regular lattice), so TwoNN is undefined"
            )
        return TwoNNResult((m - 1) / denom, "mle", m, n_dup, 0.0)
    xs = np.sort(log_mu)
    F = np.arange(1, m + 1, dtype=np.float64) / m
    keep = min(m - 1, math.floor((1.0 - discard) * m))
    if keep < 2:
        raise ValueError(f"intrinsic_dimension: discard={discard} leaves {keep} of {m} ratios; need at least 2")
    xk, yk = xs[:keep], -np.log1p(-F[:keep])
    denom = float(xk @ xk)
    if not denom > 0:
        raise ValueError("intrinsic_dimension: the kept neighbour ratios are all 1 (log μ = 0); TwoNN is undefined")
    return TwoNNResult(float(xk @ yk) / denom, "fit", m, n_dup, float(discard))


# ------------------------------------------------------------------------------------------------ norms


@dataclass(frozen=True)
class NormStats(DiagnosticResult):
    """Summary of the row L2 norms ``‖x_i‖₂``: mean (the value), std (ddof = 0), min, max, median."""

    mean: float
    std: float
    min: float
    max: float
    median: float
    n: int

    @property
    def value(self) -> float:
        return self.mean


def row_norms(a: np.ndarray) -> np.ndarray:
    """``‖x_i‖₂`` of every row in float64, scale-safe (:func:`block_norms`)."""
    out = np.empty(a.shape[0], dtype=np.float64)
    for s, e in row_blocks(*a.shape):
        out[s:e] = block_norms(a[s:e])
    return out


@register(
    "norms",
    family="space",
    range=(0.0, float("inf")),
    higher_is_better=None,
    cost="O(n·d)",
    description="Row L2 norms: mean (value), std, min, max, median. Length carries what cosine diagnostics ignore "
    "(e.g. frequency or confidence).",
    degenerate="warn",
)
def norms(X: ArrayLike) -> NormStats:
    """Summary of the row L2 norms ``‖x_i‖₂`` (float64, scale-safe): mean (the headline value), population
    std (ddof = 0), min, max and median (numpy's: the mean of the two middle values for even n)."""
    r = row_norms(as_array(X))
    top = float(r.max())
    scale = top if top > 0 else 1.0  # moments of r/scale: no overflow of squares at huge norms
    return NormStats(
        mean=float((r / scale).mean() * scale),
        std=float((r / scale).std() * scale),
        min=float(r.min()),
        max=float(r.max()),
        median=float(np.median(r)),
        n=int(r.size),
    )


__all__ = [
    "NormStats",
    "TwoNNResult",
    "anisotropy",
    "effective_rank",
    "intrinsic_dimension",
    "norms",
    "tolerance",
    "uniformity",
]
