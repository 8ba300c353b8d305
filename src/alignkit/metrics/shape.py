"""Generalised shape metrics (partial whitening + optimal rotation) and the Procrustes similarity.

Williams, Kunz, Kornblith, Linderman, "Generalized Shape Metrics on Neural Representations", NeurIPS 2021
(ahwillia/netrep ``LinearMetric``).

Normalisation (ours; docs/methods.md §1.10 leaves it open). Centre the columns, take the thin SVD
``X_c = U S Vᵀ`` (directions with ``s_i ≤ max(n, d)·eps·s_1`` dropped), and rescale so the top singular
value is 1: ``σ = s/s_1``, i.e. the eigenvalues of ``X̄ᵀX̄`` with ``X̄ = X_c/s_1`` are ``λ = σ²`` ∈ (0, 1].
Partial whitening ``X_α = X̄ V diag(α + (1−α)λ^{−1/2}) Vᵀ = U diag(ασ + 1 − α) Vᵀ`` maps the spectrum
linearly onto (1 − α, 1]: α = 1 keeps it, α = 0 flattens it (full whitening, ``X_0 = U Vᵀ``). Each X_α is then
scaled to unit Frobenius norm. netrep instead uses the raw ``XᵀX`` and preserves the total variance, so for
0 < α < 1 its interpolation depends on the data's scale; both agree at α ∈ {0, 1} for the angular score.

Distances, after zero-padding to equal width and the optimal rotation (``svd(X_αᵀY_α)``):
angular ``θ = arccos‖X̂_αᵀŶ_α‖_*`` ∈ [0, π/2] and Euclidean ``‖X̂_αR − Ŷ_α‖_F = sqrt(2 − 2cos θ)`` ∈ [0, √2]
(the chord; both scale-free, both metrics). Only ``U diag(g)`` matters up to a rotation on the right: with
n ≥ max(d1, d2) the score comes from float64 cross-products (O(n·d1·d2), no n × d float64 copy), else from the
n × r factors; at α = 1 (Procrustes) from whichever of the cross-product and the QR factors of X̃ᵀ, Ỹᵀ
(O(n²·d), for n ≲ 0.8·d) takes fewer flops.

Identities (tested): at α = 0 with ranks r_x, r_y, ``cos θ = Σρ_i/sqrt(r_x·r_y)`` (= mean canonical
correlation when r_x = r_y); at α = 1, ``cos θ = procrustes(X, Y)``.

Small n (docs/methods.md §1.10): with n items in ≥ n − 1 directions, two independent centred spaces span the same
(n − 1)-dimensional space, so a rotation maps one almost onto the other (Procrustes ≈ 1, θ ≈ 0). Both measures
warn (:class:`~alignkit.metrics.cca.SmallSampleWarning`) when ``n < 10·max(m_x, m_y)``, with
``m = (Σg²)²/Σg⁴`` the effective dimension (participation ratio) of the partially whitened factor ``U diag(g)``:
m is the rank r at α = 0 (exactly the CCA family's rule) and the participation ratio of the spectrum at α = 1.

Scale: the SVD runs on the space divided by a power of two (:func:`~alignkit.metrics.cca.centred_basis`), and only
ratios s/s_1 enter, so every value is the same at any finite scale of the input.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from alignkit._lazy import lazy_module
from alignkit._validation import ArrayLike, as_pair, check_choice, check_min_rows
from alignkit.metrics._registry import register
from alignkit.metrics.cca import (
    MIN_ROWS,
    SMALL_N_RATIO,
    _no_variance,
    _np,
    basis_pair,
    centred_basis,
    centred_copy,
    centred_products,
    warn_small_n,
)

if TYPE_CHECKING:
    import torch
else:
    torch = lazy_module("torch")

SCORES: tuple[str, ...] = ("angular", "euclidean")
_SHAPE_INVARIANCES = ("orthogonal", "isotropic_scale", "translation", "permutation")


def _check_alpha(alpha: float) -> float:
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float, np.integer, np.floating)):
        raise TypeError(f"alpha must be a number in [0, 1]; got {alpha!r}")
    alpha = float(alpha)
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1] (1 = Procrustes, 0 = CCA / full whitening); got {alpha}")
    return alpha


def whitened_factor(x: torch.Tensor, alpha: float, *, center: bool = True, name: str = "X") -> torch.Tensor:
    """``U diag(g)/‖g‖`` with ``g = α·s/s_1 + 1 − α``: the unit-norm partially whitened X_α up to a rotation."""
    U, s, _ = centred_basis(x, name, center=center)
    g = alpha * (s / s[0]) + (1.0 - alpha)
    return U * (g / g.norm())


def effective_dim(F: torch.Tensor) -> float:
    """``m = 1/Σ_j ĝ_j⁴`` for a unit-Frobenius factor ``U diag(ĝ)`` with orthonormal U (= (Σg²)²/Σg⁴ for any
    scaling of g): the participation ratio of its squared column norms."""
    col = (F * F).sum(dim=0)
    return float(col.sum() ** 2 / (col * col).sum())


def _warn_small_n(n: int, m: float, what: str) -> None:
    """The shape family's small-n rule: ``n < 10·max(m_x, m_y)`` (see the module docstring); m = that max."""
    warn_small_n(
        n,
        m,
        what,
        f"effective dimension up to {m:.1f} per side",
        "it is inflated towards a perfect match (with n ≤ the dimension, independent spaces can be rotated onto "
        "each other: Procrustes ≈ 1). Use more items or reduce the dimension (e.g. PCA) first.",
    )


def aligned_fit(A: torch.Tensor, B: torch.Tensor) -> tuple[float, float]:
    """For unit-Frobenius A (n×a), B (n×b): the Procrustes score ``‖AᵀB‖_*`` and the residual
    ``min_R ‖[A, 0]R − [B, 0]‖_F`` over orthogonal R, computed from the aligned matrices themselves
    (not as sqrt(2 − 2·score)) so that near-identical inputs give ~1e-16, not ~1e-8."""
    P, S, Qh = torch.linalg.svd(A.T @ B)
    Ar, Br = A @ P, B @ Qh.T
    width = max(Ar.shape[1], Br.shape[1])
    Ar = torch.nn.functional.pad(Ar, (0, width - Ar.shape[1]))
    Br = torch.nn.functional.pad(Br, (0, width - Br.shape[1]))
    score = min(max(float(S.sum()), 0.0), 1.0)
    return score, float(torch.linalg.matrix_norm(Ar - Br))


def _validated(X: ArrayLike, Y: ArrayLike, estimator: str) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = as_pair(X, Y)
    check_min_rows(x.shape[0], MIN_ROWS, estimator)
    return x, y


#: Below this ``2 − 2·cos θ`` (θ < ~1e-4) the chord is recomputed from the aligned n × r factors (:func:`aligned_fit`),
#: since ``sqrt(2 − 2·cos θ)`` from a cross-product cannot resolve distances below ~1e-8.
_NEAR_IDENTICAL = 1e-8


def _procrustes_products(x: torch.Tensor, y: torch.Tensor, center: bool) -> tuple[float, float]:
    """``(‖X̃ᵀỸ‖_*/(‖X̃‖‖Ỹ‖), max(m_x, m_y))`` from the float64 cross-product X̃ᵀỸ, O(n·d1·d2); m (for the
    small-n warning) only where the rule could fire, i.e. n < 10·max(d1, d2), estimated by
    :func:`_participation` in O(n·d·16) (else m = 0)."""
    n = x.shape[0]
    need_m = n < SMALL_N_RATIO * max(x.shape[1], y.shape[1])
    # No rank decision here: float32 inputs are multiplied in float32 (blocks accumulated in float64, ~1e-7)
    # Narrow spaces get the exact ratio from their self-products, formed in the same pass (cheaper than probes).
    narrow = need_m and max(x.shape[1], y.shape[1]) <= _EXACT_PARTICIPATION_D
    P = centred_products(x, y, center=center, self_terms=narrow, exact=torch.float64 in (x.dtype, y.dtype))
    for t, name in ((P.tx, "X"), (P.ty, "Y")):
        if not t > 0:
            raise ValueError(_no_variance(name, center))
    score = float(np.linalg.svd(P.xy, compute_uv=False).sum()) / (math.sqrt(P.tx) * math.sqrt(P.ty))
    if narrow:
        assert P.xx is not None and P.yy is not None
        m = max(_ratio(P.tx, P.xx), _ratio(P.ty, P.yy))
    else:
        m = max(_participation(x, center, P.tx, P.ex), _participation(y, center, P.ty, P.ey)) if need_m else 0.0
    return min(max(score, 0.0), 1.0), m


_PROBES = 16


def _participation(x: torch.Tensor, center: bool, trace: float, e: int) -> float:
    """The participation ratio ``tr(C)²/‖C‖_F²`` of ``C = X̃ᵀX̃`` (X̃ = centred X·2^−e, ``trace`` = tr C exact),
    with ‖C‖_F² estimated from 16 seeded Gaussian probes: ``‖CG‖_F²/16`` (Hutchinson, "A stochastic estimator of
    the trace of the influence matrix", 1989, applied to C²). Relative sd sqrt(2/(16·m₂)), m₂ = ‖C‖_F⁴/‖C²‖_F²
    (~sqrt(2/(16·m)) for a flat spectrum, ~10 % for a steeply decaying one), ample for
    the small-n warning's threshold, at 2·16/d of the cost of forming C (two extra d × d products)."""
    a = x.numpy() if x.device.type == "cpu" else x
    if isinstance(a, np.ndarray):
        G = np.ldexp(np.random.default_rng(0).standard_normal((a.shape[1], _PROBES)), -e).astype(a.dtype)
        Z = (a @ G).astype(np.float64)
        if center:
            Z -= Z.mean(axis=0)
        Z = np.ldexp(Z, -e)
        W = (a.T @ Z.astype(a.dtype)).astype(np.float64)
        if center:  # X_cᵀZ = XᵀZ − x̄·(1ᵀZ); 1ᵀZ is 0 up to rounding, which a large mean would amplify
            from alignkit._known import lookup

            m = lookup(a)
            mean = m.mean if m is not None else a.mean(axis=0, dtype=np.float64)
            W -= np.outer(mean, Z.sum(axis=0))
        return trace**2 / float(np.square(W).sum() / _PROBES) if W.any() else 1.0
    Gt = torch.from_numpy(np.random.default_rng(0).standard_normal((x.shape[1], _PROBES)))
    Gt = (Gt * 2.0**-e).to(device=x.device, dtype=x.dtype)
    Zt = (x @ Gt).double()
    if center:
        Zt -= Zt.mean(dim=0)
    Zt = Zt * 2.0**-e
    Wt = (x.T @ Zt.to(x.dtype)).double()
    if center:
        Wt -= torch.outer(x.mean(dim=0, dtype=torch.float64), Zt.sum(dim=0))
    fro2 = float((Wt * Wt).sum()) / _PROBES
    return trace**2 / fro2 if fro2 > 0 else 1.0


#: Up to this width Procrustes' participation ratio is exact: ``C`` by a symmetric product in the score's own pass
#: (n·d²/2 multiply-adds, fewer than the probes' 2·16·n·d plus their fixed costs: 0.03 against 0.08 ms at n = 500,
#: d = 64).
_EXACT_PARTICIPATION_D = 64


def _ratio(trace: float, C: np.ndarray) -> float:
    """The participation ratio ``tr(C)²/‖C‖_F²`` of a self-product (1 for an all-zero C)."""
    fro2 = float(np.square(C).sum())
    return trace**2 / fro2 if fro2 > 0 else 1.0


def _unit_g(s: np.ndarray, alpha: float) -> np.ndarray:
    g = alpha * (s / s[0]) + (1.0 - alpha)
    return g / np.linalg.norm(g)


def _shape_products(x: torch.Tensor, y: torch.Tensor, alpha: float, center: bool) -> tuple[float, float]:
    """``(cos θ = ‖diag(ĝ_x) U_xᵀU_y diag(ĝ_y)‖_*, max(m_x, m_y))`` from :func:`~alignkit.metrics.cca.basis_pair`."""
    if alpha == 1.0:
        return _procrustes_products(x, y, center)
    B = basis_pair(x, y, center=center)
    gx, gy = _unit_g(B.sx, alpha), _unit_g(B.sy, alpha)
    score = float(np.linalg.svd(B.cross() * gx[:, None] * gy[None, :], compute_uv=False).sum())
    m = max(1.0 / float((gx**4).sum()), 1.0 / float((gy**4).sum()))
    return min(max(score, 0.0), 1.0), m


def _shape_fit(x: torch.Tensor, y: torch.Tensor, alpha: float, center: bool, what: str) -> tuple[float, float]:
    """``(cos θ, chord)`` with the small-n warning. α = 1: from the cross-product X̃ᵀỸ or the R factors
    (:func:`_procrustes_r_factors`), whichever takes fewer flops; other α: cross-products when n ≥ max(d1, d2), else
    the aligned n × r factors. The chord is ``sqrt(2 − 2 cos θ)`` unless near 0 (then from the aligned factors)."""
    n, d1, d2 = x.shape[0], x.shape[1], y.shape[1]
    if alpha == 1.0 or n >= max(d1, d2):
        use_r = alpha == 1.0 and _r_factors_cheaper(n, d1, d2)
        score, m = _procrustes_r_factors(x, y, center) if use_r else _shape_products(x, y, alpha, center)
        _warn_small_n(n, m, what)
        if 2.0 - 2.0 * score >= _NEAR_IDENTICAL:
            return score, math.sqrt(2.0 - 2.0 * score)
        A = whitened_factor(x, alpha, center=center, name="X")
        B = whitened_factor(y, alpha, center=center, name="Y")
        return aligned_fit(A, B)
    A = whitened_factor(x, alpha, center=center, name="X")
    B = whitened_factor(y, alpha, center=center, name="Y")
    _warn_small_n(n, max(effective_dim(A), effective_dim(B)), what)
    return aligned_fit(A, B)


def _qr_flops(rows: int, cols: int) -> float:
    """Householder QR of a rows × cols matrix, R only: ``2·c²(r − c/3)`` for r ≥ c (the transpose's otherwise)."""
    r, c = max(rows, cols), min(rows, cols)
    return 2.0 * c * c * (r - c / 3.0)


def _svdvals_flops(rows: int, cols: int) -> float:
    """Singular values of a rows × cols matrix (bidiagonalisation): ``4·r·c² − 4c³/3``, r ≥ c."""
    r, c = max(rows, cols), min(rows, cols)
    return 4.0 * r * c * c - 4.0 * c**3 / 3.0


def _r_factors_cheaper(n: int, d1: int, d2: int) -> bool:
    """Whether Procrustes' R-factor route takes fewer flops than the cross-product X̃ᵀỸ and its d1 × d2 SVD
    (roughly n < 0.8·d for equal widths; measured crossovers at d = 64, 384, 1024 match the model within 10 %)."""
    k1, k2 = min(n, d1), min(n, d2)
    cross = 2.0 * n * d1 * d2 + _svdvals_flops(d1, d2)
    factors = _qr_flops(d1, n) + _qr_flops(d2, n) + 2.0 * k1 * k2 * n + _svdvals_flops(k1, k2)
    return factors < cross


def _r_factor(t: torch.Tensor, center: bool, name: str) -> tuple[Any, float, int]:
    """``(R, ‖X̃‖², e)``: the triangular factor of ``X̃ᵀ = QR`` (X̃ = centred X·2^−e in float64; R is
    min(n, d) × n) and X̃'s squared norm. ``X̃ = RᵀQᵀ`` with orthonormal Q, so X̃ᵀỸ = Q_x R_x R_yᵀ Q_yᵀ."""
    c, e = centred_copy(t, center)  # the one n × d float64 copy
    R: Any = np.linalg.qr(c.T, mode="r") if isinstance(c, np.ndarray) else torch.linalg.qr(c.T, mode="r").R
    trace = float((R * R).sum())
    if not trace > 0:
        raise ValueError(_no_variance(name, center))
    return R, trace, e


def _procrustes_r_factors(x: torch.Tensor, y: torch.Tensor, center: bool) -> tuple[float, float]:
    """``(‖X̃ᵀỸ‖_*/(‖X̃‖‖Ỹ‖), max(m_x, m_y))`` as ``‖R_x R_yᵀ‖_*``: X̃ᵀỸ = Q_x R_x R_yᵀ Q_yᵀ has the singular
    values of the small R_x R_yᵀ (Golub & Van Loan, Matrix Computations, §5.2 and §8.6: QR before the SVD of a wide
    product). For n < d it replaces the d1 × d2 product and its SVD by two QRs (O(n²·d)) and an SVD of at most
    n × n; float64 throughout, with no rank decision (a null direction adds ~0 to the sum). m as in
    :func:`_procrustes_products` (:func:`_participation`'s probes), when the small-n rule could fire."""
    n = x.shape[0]
    Rx, tx, ex = _r_factor(x, center, "X")
    Ry, ty, ey = _r_factor(y, center, "Y")
    M = _np(Rx @ Ry.T)
    score = float(np.linalg.svd(M, compute_uv=False).sum()) / (math.sqrt(tx) * math.sqrt(ty))
    m = 0.0
    if n < SMALL_N_RATIO * max(x.shape[1], y.shape[1]):
        m = max(_participation(x, center, tx, ex), _participation(y, center, ty, ey))
    return min(max(score, 0.0), 1.0), m


@register(
    "shape_distance",
    family="shape",
    range=(0.0, math.pi / 2),
    higher_is_better=False,
    invariances=_SHAPE_INVARIANCES,
    cost="O(n·d1·d2 + d³) from cross-products when n ≥ max(d1, d2), else O(n²·d) thin SVDs + O(n·r²)",
    description="Generalised shape metric (Williams 2021): a true metric. Angular in [0, π/2] (default) or "
    "Euclidean chord in [0, √2]. alpha=1: Procrustes (θ = arccos procrustes); alpha=0: CCA, then also invariant "
    "to invertible linear maps. Scale-free normalisation (see module doc).",
    defaults={"alpha": 1.0, "score": "angular"},
    constraints={"alpha": {"low": 0.0, "high": 1.0}, "score": {"choices": SCORES}},
)
def shape_distance(
    X: ArrayLike, Y: ArrayLike, *, alpha: float = 1.0, score: str = "angular", center: bool = True
) -> float:
    """Generalised shape distance between X and Y (a distance: 0 = same shape).

    Partially whiten each side (``X_α = U diag(α·s/s_1 + 1 − α) Vᵀ`` of the centred X, scaled to unit
    Frobenius norm), zero-pad, rotate optimally (``USVᵀ = svd(X_αᵀY_α)``), then
    ``score="angular"``: ``θ = arccos⟨X_αU, Y_αV⟩_F`` ∈ [0, π/2]; ``score="euclidean"``:
    ``‖X_αU − Y_αV‖_F = 2 sin(θ/2)`` ∈ [0, √2]. Both satisfy the triangle inequality.

    Williams, Kunz, Kornblith, Linderman, "Generalized Shape Metrics on Neural Representations", NeurIPS 2021.
    α = 1 is the Procrustes distance (``θ = arccos procrustes(X, Y)``); α = 0 is invariant to invertible linear
    maps and ``cos θ = Σρ_i/sqrt(r_x r_y)`` (mean canonical correlation for equal ranks), so it shares CCA's
    small-n inflation. For 0 < α < 1 the normalisation differs from netrep's (see the module docstring).
    Warns (SmallSampleWarning) when ``n < 10·max(m_x, m_y)``, m the effective dimension of each whitened side.
    """
    alpha = _check_alpha(alpha)
    check_choice(score, SCORES, "score")
    x, y = _validated(X, Y, "shape_distance")
    _, chord = _shape_fit(x, y, alpha, center, "shape_distance")
    if score == "euclidean":
        return chord
    return 2.0 * math.asin(min(chord / 2.0, math.sqrt(0.5)))


@register(
    "procrustes",
    family="shape",
    range=(0.0, 1.0),
    invariances=_SHAPE_INVARIANCES,
    cost="O(n·d1·d2 + d1·d2·min(d1, d2)) from X̃ᵀỸ; O(n²·(d1 + d2)) by QR when n ≲ 0.8·max(d1, d2)",
    description="Orthogonal Procrustes similarity ‖X̃ᵀỸ‖_* of centred unit-Frobenius inputs, in [0, 1]. "
    "Not invariant to invertible linear maps; arccos of it is shape_distance(alpha=1).",
)
def procrustes(X: ArrayLike, Y: ArrayLike, *, center: bool = True) -> float:
    """Procrustes similarity ``‖X̃ᵀỸ‖_* = max_R ⟨X̃R, Ỹ⟩_F`` ∈ [0, 1], X̃ = X_c/‖X_c‖_F (zero-padded widths).

    1 iff Y is a rotated, scaled, translated copy of X. ``1 − procrustes`` is anatome's Procrustes distance,
    ``arccos(procrustes)`` the angular shape metric at α = 1 (Williams et al., NeurIPS 2021); the optimal R is
    Schönemann's, "A generalized solution of the orthogonal Procrustes problem", Psychometrika 1966.

    Warns (SmallSampleWarning) when ``n < 10·max(m_x, m_y)``, ``m = (Σs²)²/Σs⁴`` the participation ratio of each
    centred space's singular values: with n ≤ the dimension, independent spaces score ≈ 1.
    """
    x, y = _validated(X, Y, "procrustes")
    return _shape_fit(x, y, 1.0, center, "procrustes")[0]
