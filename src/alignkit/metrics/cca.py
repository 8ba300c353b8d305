"""The CCA family: mean canonical correlation, SVCCA and PWCCA, by exact SVD in float64.

Every measure starts from an orthonormal basis of each centred column space: a thin SVD
``X_c = U S Vᵀ`` that keeps the directions with ``s_i > max(n, d)·eps·s_1`` (eps of the *input* dtype,
so float32 data loses its float32 round-off directions). Rank-deficient inputs (d ≥ n, duplicate or
collinear columns) therefore drop their null directions instead of producing NaNs, and
``ρ = svd(U_xᵀU_y)`` (the ``Q_xᵀQ_y`` of docs/methods.md §1.9 with an SVD basis in place of QR). There are
``min(r_x, r_y)`` correlations, r the kept rank. No iterative solver and no random noise (PRH's
``svcca`` adds 1e-10 Gaussian noise and runs sklearn's iterative CCA).

Regularised CCA (``reg > 0``) uses ``C = X_cᵀX_c/n`` and the singular values of
``(C_xx + reg·I)^{-1/2} C_xy (C_yy + reg·I)^{-1/2}``; with ``X_c = U S Vᵀ`` these are the singular values
of ``diag(w_x) U_xᵀU_y diag(w_y)``, ``w = s/sqrt(s² + n·reg)``, which needs no inverse square root.
``reg`` is absolute (in the units of the covariance), so ``reg > 0`` is scale-dependent and no longer
invariant to invertible linear maps.

Pitfall (docs/methods.md §1.9, anatome #18): with n ≤ the number of directions every ρ ≈ 1. The measures warn
(:class:`SmallSampleWarning`, a UserWarning) when ``n < 10·max(r_x, r_y)``; r is the rank actually used, i.e.
``min(n − 1, d)`` for generic data. Biased CKA and the shape metrics share the warning class and the factor 10.

Scale: each centred space is divided by a power of two (its largest |entry| moved into [0.5, 1)) before the SVD,
which is exact, so s² cannot overflow or underflow and every value is the same at any finite input scale;
an absolute ``reg`` is converted to those units.
"""

from __future__ import annotations

import math
import warnings
from typing import TYPE_CHECKING

import numpy as np

from alignkit._common import pow2_rescale
from alignkit._lazy import lazy_module
from alignkit._validation import ArrayLike, as_pair, check_choice, check_min_rows
from alignkit.metrics._registry import register

if TYPE_CHECKING:
    import torch
else:
    torch = lazy_module("torch")

SUMMARIES: tuple[str, ...] = ("mean", "mean_sq")
MIN_ROWS = 3
SMALL_N_RATIO = 10
_CCA_INVARIANCES = ("orthogonal", "isotropic_scale", "translation", "invertible_linear", "permutation")


class SmallSampleWarning(UserWarning):
    """Too few items for the spaces' dimension: the score is inflated towards its maximum even for independent
    spaces (the CCA family, biased CKA, the shape metrics and Procrustes; the rule is stated by each measure)."""


def warn_small_n(n: int, dims: float, what: str, detail: str, consequence: str) -> None:
    """Warn (:class:`SmallSampleWarning`) when ``n < 10·dims``, dims the (effective) number of directions per side.

    The message reads "<what> with n=<n> items and <detail>: n < 10·<dims>, so <consequence>".
    """
    if n < SMALL_N_RATIO * dims:
        warnings.warn(
            f"{what} with n={n} items and {detail}: n < {SMALL_N_RATIO}·{dims:.4g}, so {consequence}",
            SmallSampleWarning,
            stacklevel=4,
        )


def centred_basis(x: torch.Tensor, name: str = "X", *, center: bool = True) -> tuple[torch.Tensor, torch.Tensor, int]:
    """``(U_r, s_r, e)``: float64 left singular vectors and singular values of the (centred) matrix divided by
    ``2^e`` (e puts its largest |entry| in [0.5, 1), so s² neither overflows nor underflows), rank-truncated.

    Keeps ``s_i > max(n, d)·eps·s_1`` with eps of ``x``'s dtype (numpy's ``matrix_rank`` rule).
    Raises if nothing is left (every row identical, or all zeros when ``center=False``).
    """
    x64 = x.double()
    if center:
        x64 = x64 - x64.mean(dim=0, keepdim=True)
    x64, e = pow2_rescale(x64)
    U, s, _ = torch.linalg.svd(x64, full_matrices=False)
    tol = max(x.shape) * torch.finfo(x.dtype).eps * s[0]
    r = int((s > tol).sum())
    if r == 0:
        what = "constant across items (every row identical)" if center else "all zeros"
        raise ValueError(f"{name} is {what}: it has no variance, so the measure is undefined")
    return U[:, :r], s[:r], e


def _check_reg(reg: float) -> float:
    if isinstance(reg, bool) or not isinstance(reg, (int, float, np.integer, np.floating)):
        raise TypeError(f"reg must be a non-negative number; got {reg!r}")
    reg = float(reg)
    if not (math.isfinite(reg) and reg >= 0.0):
        raise ValueError(f"reg must be a finite number >= 0; got {reg}")
    return reg


def _whitened_factor(U: torch.Tensor, s: torch.Tensor, n: int, reg: float, e: int = 0) -> torch.Tensor:
    """``U·diag(w)`` with ``w = s/sqrt(s² + n·reg·4^−e)`` (w = 1 when reg = 0): ``X_c (C_xx + reg·I)^{-1/2} / sqrt(n)``
    expressed in the left singular basis, for s the singular values of ``X_c·2^−e``."""
    if reg == 0.0:
        return U
    try:
        scaled = math.ldexp(reg, -2 * e)
    except OverflowError:
        scaled = math.inf
    return U * (s / torch.sqrt(s * s + n * scaled))


def _warn_small_n(n: int, r: int, what: str) -> None:
    warn_small_n(
        n,
        r,
        what,
        f"up to {r} directions per side",
        "the canonical correlations are inflated (with n ≤ the number of directions every ρ ≈ 1). Use more items, "
        "fewer dimensions (svcca with a small integer keep) or reg > 0.",
    )


def _cca_svd(x: torch.Tensor, y: torch.Tensor, reg: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
    """Correlations ρ (descending, length k = min(r_x, r_y)), the X-side factor, its left singular
    vectors in that factor's coordinates, and max(r_x, r_y)."""
    n = x.shape[0]
    Ux, sx, ex = centred_basis(x, "X")
    Uy, sy, ey = centred_basis(y, "Y")
    Fx = _whitened_factor(Ux, sx, n, reg, ex)
    Fy = _whitened_factor(Uy, sy, n, reg, ey)
    A, rho, _ = torch.linalg.svd(Fx.T @ Fy, full_matrices=False)
    return rho.clamp(0.0, 1.0), Fx, A, max(Ux.shape[1], Uy.shape[1])


def _validated(X: ArrayLike, Y: ArrayLike, reg: float, estimator: str) -> tuple[torch.Tensor, torch.Tensor, float]:
    reg = _check_reg(reg)
    x, y = as_pair(X, Y)
    check_min_rows(x.shape[0], MIN_ROWS, estimator)
    return x, y, reg


def canonical_correlations(X: ArrayLike, Y: ArrayLike, reg: float = 0.0) -> torch.Tensor:
    """The canonical correlations ρ_1 ≥ … ≥ ρ_k ∈ [0, 1], k = min(r_x, r_y), as a float64 tensor on X's device.

    ρ = singular values of ``Q_xᵀQ_y`` (orthonormal bases of the centred column spaces), i.e. the cosines
    of the principal angles between them; with ``reg > 0`` those of
    ``(C_xx + reg·I)^{-1/2} C_xy (C_yy + reg·I)^{-1/2}``, ``C = X_cᵀX_c/n``. Hotelling, "Relations between
    two sets of variates", Biometrika 1936.
    """
    x, y, reg = _validated(X, Y, reg, "CCA")
    rho, _, _, r = _cca_svd(x, y, reg)
    _warn_small_n(x.shape[0], r, "CCA")
    return rho


@register(
    "cca",
    family="cca",
    range=(0.0, 1.0),
    invariances=_CCA_INVARIANCES,
    cost="O(n·d·min(n, d)) for the two thin SVDs + O(n·d1·d2)",
    description="Mean canonical correlation (or mean ρ² with summary='mean_sq'), exact SVD. Invariant to "
    "invertible linear maps (reg=0 only); inflated towards 1 when n < 10·d (warns).",
    defaults={"reg": 0.0, "summary": "mean"},
)
def cca(X: ArrayLike, Y: ArrayLike, *, reg: float = 0.0, summary: str = "mean") -> float:
    """Mean canonical correlation ``(1/k) Σ ρ_i`` (``summary="mean"``) or ``(1/k) Σ ρ_i²`` (``"mean_sq"``).

    ρ from :func:`canonical_correlations`, k = min(rank X_c, rank Y_c). Hotelling, Biometrika 1936; as a
    representation similarity, Raghu et al., "SVCCA: Singular Vector Canonical Correlation Analysis for Deep
    Learning Dynamics and Interpretability", NeurIPS 2017. Warns when n < 10·max(r_x, r_y).
    """
    check_choice(summary, SUMMARIES, "summary")
    x, y, reg = _validated(X, Y, reg, "CCA")
    rho, _, _, r = _cca_svd(x, y, reg)
    _warn_small_n(x.shape[0], r, "CCA")
    return float((rho * rho).mean() if summary == "mean_sq" else rho.mean())


def _check_keep(keep: float | int) -> float | int:
    if isinstance(keep, bool) or not isinstance(keep, (int, float, np.integer, np.floating)):
        raise TypeError(f"keep must be a variance fraction in (0, 1] or a positive integer; got {keep!r}")
    if isinstance(keep, (int, np.integer)):
        if keep < 1:
            raise ValueError(f"keep as an integer is a number of directions and must be >= 1; got {keep}")
        return int(keep)
    if not 0.0 < keep <= 1.0:
        raise ValueError(f"keep as a float is a fraction of variance and must be in (0, 1]; got {keep}")
    return float(keep)


def _n_kept(s: torch.Tensor, keep: float | int, width: int, name: str) -> int:
    if isinstance(keep, int):
        if keep > width:
            raise ValueError(f"keep={keep} directions exceeds {name}'s width ({width} columns)")
        return min(keep, s.numel())
    var = s * s
    frac = torch.cumsum(var, 0) / var.sum()
    # smallest k with frac[k-1] >= keep; the slack stops round-off in the cumsum from adding a direction
    return min(int((frac < keep - 1e-12).sum()) + 1, s.numel())


@register(
    "svcca",
    family="cca",
    range=(0.0, 1.0),
    invariances=("orthogonal", "isotropic_scale", "translation", "permutation"),
    cost="O(n·d·min(n, d)) for the two thin SVDs + O(n·k1·k2)",
    description="SVCCA: keep each side's top singular directions (a variance fraction, default 0.99, or an "
    "integer count; PRH uses 10), then mean canonical correlation. Warns when n < 10·kept dims.",
    defaults={"keep": 0.99, "reg": 0.0},
)
def svcca(X: ArrayLike, Y: ArrayLike, *, keep: float | int = 0.99, reg: float = 0.0) -> float:
    """Singular-vector CCA: mean ρ between the top-SVD reductions ``U_k S_k`` of the centred X and Y.

    ``keep`` float in (0, 1]: per side, the fewest directions whose squared singular values reach that
    fraction of the total (anatome ``accept_rate=0.99``); ``keep`` int: that many top directions (PRH
    ``cca_dim=10``; at most the width, truncated to the rank). Note ``keep=1`` is one direction and
    ``keep=1.0`` all the variance. No z-scoring (PRH z-scores first; do it beforehand if wanted).
    Raghu, Gilmer, Yosinski, Sohl-Dickstein, "SVCCA: Singular Vector Canonical Correlation Analysis for Deep
    Learning Dynamics and Interpretability", NeurIPS 2017.

    Only invariant to orthogonal maps and isotropic scaling: the SVD truncation depends on the spectrum.
    """
    keep = _check_keep(keep)
    x, y, reg = _validated(X, Y, reg, "SVCCA")
    n = x.shape[0]
    Ux, sx, ex = centred_basis(x, "X")
    Uy, sy, ey = centred_basis(y, "Y")
    kx = _n_kept(sx, keep, x.shape[1], "X")
    ky = _n_kept(sy, keep, y.shape[1], "Y")
    Fx = _whitened_factor(Ux[:, :kx], sx[:kx], n, reg, ex)
    Fy = _whitened_factor(Uy[:, :ky], sy[:ky], n, reg, ey)
    rho = torch.linalg.svdvals(Fx.T @ Fy).clamp(0.0, 1.0)
    _warn_small_n(n, max(kx, ky), "SVCCA")
    return float(rho.mean())


@register(
    "pwcca",
    family="cca",
    range=(0.0, 1.0),
    symmetric=False,
    invariances=("isotropic_scale", "translation", "permutation"),
    cost="O(n·d·min(n, d)) for the two thin SVDs + O(n·d1·k)",
    description="Projection-weighted CCA (Morcos 2018) [unverified formula]: Σα_iρ_i/Σα_i, weights from X's "
    "neurons, so asymmetric. The L1 weights break rotation invariance. Warns when n < 10·d.",
    defaults={"reg": 0.0},
)
def pwcca(X: ArrayLike, Y: ArrayLike, *, reg: float = 0.0) -> float:
    """Projection-weighted CCA ``Σ_i α_i ρ_i / Σ_i α_i`` with ``α_i = Σ_j |⟨h_i, x_j⟩|``.

    h_i: the i-th canonical variate of X (an n-vector, unit norm), x_j: the j-th column of the centred X;
    i runs over the k = min(r_x, r_y) correlations. Morcos, Raghu, Bengio, "Insights on representational
    similarity in neural networks with canonical correlation", NeurIPS 2018.

    [unverified] docs/methods.md §1.9 records this formula from memory, not from the paper or google/svcca code;
    treat exact agreement with other implementations as unchecked. Asymmetric (weights come from X), and,
    because the weights are L1 norms over X's neurons, invariant to permuting/sign-flipping and scaling X's
    columns jointly but not to rotations of X or invertible linear maps.
    """
    x, y, reg = _validated(X, Y, reg, "PWCCA")
    rho, Fx, A, r = _cca_svd(x, y, reg)
    _warn_small_n(x.shape[0], r, "PWCCA")
    H = Fx @ A  # canonical variates of X as columns (unit norm when reg = 0)
    H = H / H.norm(dim=0, keepdim=True)
    xc, _ = pow2_rescale(x.double() - x.double().mean(dim=0, keepdim=True))  # α's scale cancels in the ratio
    alpha = (xc.T @ H).abs().sum(dim=0)
    return float((alpha * rho).sum() / alpha.sum())
