"""The geometry of a pair of spaces: alignment, relative alignment, calibrated uniformity, modality gap,
paired cosine and cross-space hubness.

Inputs are two spaces X, Y (numpy arrays or torch tensors, validated by
:func:`alignkit.diagnostics._inputs.as_array`). All but :func:`hubness` are **row-paired**: row i of X and row i of Y
are the same item (an image and its caption). Except :func:`calibrated_uniformity` (whose second input only
supplies similarities), the two must live in one space (same dimension). Everything works on unit rows
``x̂ = x/‖x‖``; all-zero rows are refused.

Pairwise parts (relative alignment's nearest non-partner, calibrated uniformity, hubness's top-k) run in
row blocks (memory O(block·n)); per-row parts accumulate in float64. numpy kernels, as in
:mod:`alignkit.diagnostics.geometry`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from alignkit._validation import ArrayLike, check_k, check_min_rows, check_same_dim
from alignkit.diagnostics._inputs import as_array, check_paired
from alignkit.diagnostics._registry import register
from alignkit.diagnostics._result import DiagnosticResult
from alignkit.diagnostics.geometry import (
    block_rows,
    row_blocks,
    row_scratch,
    scratch_view,
    triangle_rows,
    triu_logmeanexp,
    unit_array,
    unit_block,
    unit_column_sum,
    zero_rows_error,
)

_BLOCK = {"block_size": {"low": 1}}


def _inputs(
    X: ArrayLike, Y: ArrayLike, names: tuple[str, str], *, paired: bool, same_dim: bool, check_finite: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Two validated spaces (:func:`as_array`) in one dtype (float64 if either is), checked for row pairing and
    dimension (``check_finite=False``: the caller's own pass detects NaN/Inf)."""
    a, b = as_array(X, names[0], check_finite=check_finite), as_array(Y, names[1], check_finite=check_finite)
    if paired:
        check_paired({names[0]: a, names[1]: b})
    if same_dim:
        check_same_dim(a, b, names)  # type: ignore[arg-type]  # reads .shape only
    dtype = np.result_type(a, b)
    return a.astype(dtype, copy=False), b.astype(dtype, copy=False)


def _paired_rows(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row pair: (``‖x̂_i − ŷ_i‖²``, ``x̂_i·ŷ_i``), both float64, streamed through two scratch blocks (the unit
    rows are never stored). The distance comes from the difference of the unit rows, not ``2 − 2cos``, so an
    identical pair gives exactly 0."""
    n, d = a.shape
    sq, cos = np.empty(n, dtype=np.float64), np.empty(n, dtype=np.float64)
    buf_x, buf_y = row_scratch(n, d, a.dtype), row_scratch(n, d, a.dtype)
    for s, e in row_blocks(n, d):
        ux, uy = scratch_view(buf_x, e - s, d), scratch_view(buf_y, e - s, d)
        if unit_block(a[s:e], ux):
            raise zero_rows_error(a, "X")
        if unit_block(b[s:e], uy):
            raise zero_rows_error(b, "Y")
        cos[s:e] = np.einsum("ij,ij->i", ux, uy, dtype=np.float64)
        np.subtract(ux, uy, out=ux)
        sq[s:e] = np.einsum("ij,ij->i", ux, ux, dtype=np.float64)
    return sq, cos


# ------------------------------------------------------------------------------------------------ alignment


@register(
    "alignment",
    family="pair",
    inputs=("X", "Y"),
    range=(0.0, float("inf")),
    higher_is_better=False,
    cost="O(n·d)",
    description="Wang & Isola (ICML 2020) alignment mean‖x̂_i−ŷ_i‖^α on unit rows (α=2: in [0, 4]); 0 for identical "
    "pairs, lower = paired items closer. Null: shuffled pairs.",
    constraints={"alpha": {"low": 0.0, "low_open": True}},
    null="shuffle_pairs",
    degenerate="warn",
)
def alignment(X: ArrayLike, Y: ArrayLike, *, alpha: float = 2.0) -> float:
    """Alignment ``L_align = mean_i ‖x̂_i − ŷ_i‖₂^α`` over the row pairs, on unit rows (α = 2).

    Wang & Isola, "Understanding Contrastive Representation Learning through Alignment and Uniformity on
    the Hypersphere" (ICML 2020). In [0, 2^α]; 0 iff every pair points the same way; lower is better. At α = 2
    it equals ``2 − 2·paired_cosine``. Distances come from the float64 differences, so identical pairs give 0.
    """
    sq, _ = _paired_rows(*_inputs(X, Y, ("X", "Y"), paired=True, same_dim=True))
    values = sq if alpha == 2.0 else sq ** (alpha / 2.0)
    return float(values.mean())


# ------------------------------------------------------------------------------------------------ relative alignment


@register(
    "relative_alignment",
    family="pair",
    inputs=("X", "Y"),
    range=(-4.0, 4.0),
    higher_is_better=False,
    cost="O(n²d) blocked nearest non-partner search, memory O(block·n)",
    description="Relative alignment (m²-mix, Oh et al., NeurIPS 2023): mean_i(‖x̂_i−ŷ_i‖² − min_{j≠i}‖x̂_i−ŷ_j‖²) "
    "on unit rows; < 0 when each partner is closer than every other Y row. Null: shuffled pairs.",
    constraints=_BLOCK,
    null="shuffle_pairs",
    degenerate="warn",
)
def relative_alignment(X: ArrayLike, Y: ArrayLike, *, block_size: int | None = None) -> float:
    """Relative alignment ``mean_i (‖x̂_i − ŷ_i‖² − min_{j≠i} ‖x̂_i − ŷ_j‖²)`` on unit rows.

    From m²-mix (Oh et al., "Geodesic Multi-Modal Mixup for Robust Fine-Tuning", NeurIPS 2023; ``rel_lalign`` in
    changdaeoh/multimodal-mixup): how much closer each X row is to its partner than to its nearest
    *non-partner* in Y. In [−4, 4]; negative when partners are nearest; lower is better. The nearest
    non-partner is found by a blocked top-1 search over ``x̂_i·ŷ_j`` (j ≠ i excluded by index; memory
    O(block·n)), using ``‖x̂_i − ŷ_j‖² = 2 − 2x̂_i·ŷ_j``; the partner distance comes from the float64
    difference. Needs n ≥ 2.
    """
    a, b = _inputs(X, Y, ("X", "Y"), paired=True, same_dim=True)
    n = a.shape[0]
    check_min_rows(n, 2, "relative_alignment")
    ux, uy = unit_array(a, "X"), unit_array(b, "Y")
    step = block_rows(n, ux.itemsize, block_size)
    best = np.empty(n, dtype=np.float64)
    for s in range(0, n, step):
        e = min(n, s + step)
        sims = ux[s:e] @ uy.T
        sims[np.arange(e - s), np.arange(s, e)] = -np.inf  # j ≠ i, by index
        best[s:e] = sims.max(axis=1)
    nearest = np.clip(2.0 - 2.0 * best, 0.0, None)
    return float((_paired_rows(a, b)[0] - nearest).mean())


# ------------------------------------------------------------------------------------------------ calibrated uniformity


@register(
    "calibrated_uniformity",
    family="pair",
    inputs=("X", "M"),
    range=(float("-inf"), float("inf")),
    higher_is_better=False,
    cost="O(n²(d_x + d_m)) two blocked Grams (half of each), memory O(block·n)",
    description="CM³ calibrated uniformity (Zhou, Wang & Shen, arXiv 2508.01226): log mean_{i<j} exp(−2t(s_ij − "
    "x̂_i·x̂_j)) with s_ij = clamp(cos(m_i, m_j)); 0 when X's cosines equal s; in [−4t, 4t]. Null: shuffled pairs.",
    constraints={
        "t": {"low": 0.0, "low_open": True},
        "min_sim": {"low": -1.0, "high": 1.0},
        "max_sim": {"low": -1.0, "high": 1.0},
        **_BLOCK,
    },
    null="shuffle_pairs",
    degenerate="warn",
)
def calibrated_uniformity(
    X: ArrayLike,
    M: ArrayLike,
    *,
    t: float = 2.0,
    min_sim: float = -1.0,
    max_sim: float = 1.0,
    block_size: int | None = None,
) -> float:
    """CM³ calibrated uniformity of the space X against item similarities from the features M (row-paired).

    ``L_cu = log mean_{i<j} exp(−t(‖x̂_i − x̂_j‖² − 2 + 2s_ij)) = log mean_{i<j} exp(−2t(s_ij − x̂_i·x̂_j))`` with
    ``s_ij = clamp(cos(m_i, m_j), min_sim, max_sim)``. Zhou, Wang, Shen, "CM³: Calibrating Multimodal
    Recommendation" (arXiv 2508.01226; enoche/CM3): uniformity whose repulsion is relaxed for pairs that the
    calibration features call similar. In CM³, ``m_i`` fuses an item's text and image features
    (``m = slerp(t̂, v̂)`` with λ ~ Beta(α, α)); pass those fused features (or any item features whose cosines
    should calibrate X) as M; its dimension may differ from X's. Plain uniformity is the case s ≡ 1.

    0 when ``s_ij = x̂_i·x̂_j`` for every pair (e.g. M = X); in [−4t, 4t]. Lower means X's pairs are less similar
    than their calibrated similarities (more uniform): CM³ minimises it, so ``higher_is_better=False``, and the
    ``shuffle_pairs`` null (M's rows permuted) asks whether X's geometry follows M's item by item.
    Computed over row blocks of both Grams' upper triangles with a float64 running logsumexp
    (:func:`~alignkit.diagnostics.geometry.triu_logmeanexp`).
    """
    if min_sim > max_sim:
        raise ValueError(f"min_sim must be <= max_sim; got min_sim={min_sim} > max_sim={max_sim}")
    a, b = _inputs(X, M, ("X", "M"), paired=True, same_dim=False)
    ux, um = unit_array(a, "X"), unit_array(b, "M")
    n = ux.shape[0]
    check_min_rows(n, 2, "calibrated_uniformity")
    step = triangle_rows(n, ux.itemsize, block_size, copies=2)
    scale = 2.0 * t

    def exponent(s: int, e: int, out: np.ndarray) -> np.ndarray:
        sim = np.matmul(um[s:e], um[s:].T, out=scratch_view(sim_buffer, e - s, n - s))
        np.clip(sim, min_sim, max_sim, out=sim)
        np.matmul(ux[s:e], ux[s:].T, out=out)
        out -= sim
        out *= scale
        return out

    sim_buffer = np.empty(min(step, n) * n, dtype=ux.dtype)
    value = triu_logmeanexp(exponent, n, step, 4.0 * t, ux.dtype)
    return float(min(4.0 * t, max(-4.0 * t, value)))


# ------------------------------------------------------------------------------------------------ modality gap


@register(
    "modality_gap",
    family="pair",
    inputs=("X", "Y"),
    range=(0.0, 2.0),
    higher_is_better=None,
    cost="O(n·d)",
    description="Modality gap (Liang et al., NeurIPS 2022, 'Mind the Gap'): ‖mean x̂_i − mean ŷ_i‖₂ on unit rows, "
    "in [0, 2]; 0 when both spaces share a centroid.",
    degenerate="warn",
)
def modality_gap(X: ArrayLike, Y: ArrayLike) -> float:
    """Modality gap ``‖(1/n)Σ_i x̂_i − (1/n)Σ_i ŷ_i‖₂``: the distance between the centroids of the unit rows.

    Liang, Zhang, Kwon, Yeung, Zou, "Mind the Gap: Understanding the Modality Gap in Multi-modal Contrastive
    Representation Learning" (NeurIPS 2022). In [0, 2]: 0 when both spaces share a centroid (e.g. identical
    spaces), 2 only when every x̂ is the negative of one fixed direction that every ŷ takes. Invariant to one
    rotation applied to both spaces; insensitive to the pairing (the centroids ignore row order), so it has
    no permutation null. Neither direction is "better": closing the gap need not help a model
    (``higher_is_better=None``). Column means are accumulated in float64.
    """
    a, b = _inputs(X, Y, ("X", "Y"), paired=True, same_dim=True, check_finite=False)  # NaN/Inf: found by the norms
    n = a.shape[0]
    sx, _ = unit_column_sum(a, "X")
    sy, _ = unit_column_sum(b, "Y")
    gap = float(np.linalg.norm((sx - sy) / n))
    return float(min(2.0, gap))


# ------------------------------------------------------------------------------------------------ paired cosine


@register(
    "paired_cosine",
    family="pair",
    inputs=("X", "Y"),
    range=(-1.0, 1.0),
    higher_is_better=True,
    cost="O(n·d)",
    description="Mean cosine between paired rows, mean_i cos(x_i, y_i), in [−1, 1]; higher = pairs closer. "
    "Null: shuffled pairs.",
    null="shuffle_pairs",
    degenerate="warn",
)
def paired_cosine(X: ArrayLike, Y: ArrayLike) -> float:
    """Mean paired cosine ``mean_i x̂_i·ŷ_i`` (float64 accumulation), in [−1, 1]; higher is better.

    The standard score of image–text agreement (e.g. CLIPScore without its rescaling; tracked alongside the
    modality gap in Liang et al., NeurIPS 2022). At α = 2, ``alignment = 2 − 2·paired_cosine``.
    """
    _, cos = _paired_rows(*_inputs(X, Y, ("X", "Y"), paired=True, same_dim=True))
    return float(min(1.0, max(-1.0, float(cos.mean()))))


# ------------------------------------------------------------------------------------------------ hubness


@dataclass(frozen=True)
class HubnessResult(DiagnosticResult):
    """Cross-space hubness: the skewness of the k-occurrences N_k (the value) and how they spread."""

    skewness: float
    k: int
    antihub_fraction: float  # gallery items that are no query's k-NN (N_k = 0)
    max_occurrence: int  # largest N_k (the biggest hub)
    n_queries: int
    n_gallery: int

    @property
    def value(self) -> float:
        return self.skewness


def skewness(v: np.ndarray) -> float:
    """Population skewness ``E[(v − μ)³]/σ³`` (scipy's ``skew`` with ``bias=True``); 0 when v is constant."""
    v = np.asarray(v, dtype=np.float64)
    c = v - v.mean()
    m2 = float((c * c).mean())
    if m2 <= 0:
        return 0.0
    return float((c * c * c).mean()) / m2**1.5


@register(
    "hubness",
    family="pair",
    inputs=("X", "Y"),
    range=(float("-inf"), float("inf")),
    higher_is_better=False,
    cost="O(n_x·n_y·d) blocked top-k, memory O(block·n_y + n_x·k)",
    description="Cross-space hubness (Radovanović et al., JMLR 2010): skewness of the k-occurrence N_k of gallery "
    "rows Y among the k cosine nearest neighbours of the queries X; also the anti-hub fraction and max N_k.",
    constraints={"k": {"low": 1}, **_BLOCK},
    paired_rows=False,
    resample=False,
    degenerate="nan",
)
def hubness(
    X: ArrayLike, Y: ArrayLike, *, k: int = 10, exclude_self: bool = False, block_size: int | None = None
) -> HubnessResult:
    """Hubness of the gallery Y for the queries X: the skewness of ``N_k(j)``, the number of queries that have
    gallery item j among their k nearest neighbours by cosine.

    Radovanović, Nanopoulos, Ivanović, "Hubs in Space: Popular Nearest Neighbors in High-Dimensional Data"
    (JMLR 2010): ``S_{N_k} = E[(N_k − μ)³]/σ³`` (population skewness; μ = k·n_x/n_y). Large positive skew
    means a few hubs are everyone's neighbour (bad for retrieval; lower is better); 0 when every gallery item
    is retrieved equally often. Also reported: the fraction of anti-hubs (N_k = 0) and the largest N_k.

    X and Y must have the same dimension (queries and gallery in one shared space, e.g. after an aligner);
    they need not have the same number of rows. ``exclude_self=True`` (X and Y row-paired; pass the same
    array twice for within-space hubness) drops gallery row i from query i's candidates.
    Top-k runs in query blocks (``argpartition`` of each block of similarities, memory O(block·n_y)); ties at
    the k-th place are broken arbitrarily. Not resampled (``resample=False``): X and Y may differ in length.
    """
    a, b = _inputs(X, Y, ("X", "Y"), paired=exclude_self, same_dim=True)
    ux, uy = unit_array(a, "X"), unit_array(b, "Y")
    n_x, n_y = int(ux.shape[0]), int(uy.shape[0])
    if exclude_self:
        k = check_k(k, n_y)
    elif k > n_y:
        raise ValueError(f"k must be at most the number of gallery rows (Y has {n_y}); got k={k}")
    step = block_rows(n_y, uy.itemsize, block_size)
    counts = np.zeros(n_y, dtype=np.int64)
    for s in range(0, n_x, step):
        e = min(n_x, s + step)
        sims = ux[s:e] @ uy.T
        if exclude_self:
            sims[np.arange(e - s), np.arange(s, e)] = -np.inf
        top = np.argpartition(sims, n_y - k, axis=1)[:, n_y - k :] if k < n_y else np.arange(n_y)[None, :]
        counts += np.bincount(top.ravel(), minlength=n_y) if k < n_y else (e - s)
    return HubnessResult(
        skewness=skewness(counts),
        k=k,
        antihub_fraction=float((counts == 0).mean()),
        max_occurrence=int(counts.max()),
        n_queries=n_x,
        n_gallery=n_y,
    )


__all__ = [
    "HubnessResult",
    "alignment",
    "calibrated_uniformity",
    "hubness",
    "modality_gap",
    "paired_cosine",
    "relative_alignment",
    "skewness",
]
