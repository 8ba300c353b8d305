"""The CCA family: mean canonical correlation, SVCCA and PWCCA, by exact SVD in float64.

Every measure starts from an orthonormal basis of each centred column space, keeping the directions with
``s_i > max(n, d)·eps·s_1``, eps = float32's for every input dtype (:func:`kept_rank`), so float32 and float64
copies of the same data give the same value. With n ≥ max(d1, d2) the bases come from float64 d × d cross-products
of centred row blocks (:func:`centred_products`: ``eigh(X̃ᵀX̃)``, ``U_xᵀU_y = S_x⁻¹V_xᵀX̃ᵀỸV_yS_y⁻¹``; accuracy
~eps64·cond(X̃ᵀX̃) ≤ 1e-16/kept-ratio²), otherwise from thin SVDs. Rank-deficient inputs (d ≥ n, duplicate or
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
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from alignkit._common import pow2_rescale, times_pow2
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
    ``2^e`` (e puts its largest |entry| in [0.5, 1), so s² neither overflows nor underflows), rank-truncated
    by :func:`kept_rank`. Raises if nothing is left (every row identical, or all zeros when ``center=False``).
    """
    # A thin SVD, not eigh of the Gram (as basis_pair's n < d route): whitened factors weigh every kept direction
    # alike, and the Gram's squared spectrum left 3e-8–2e-7 where the shape distance of two n < d spaces is 0.
    U, s, _, e = _centred_svd(x, name, center=center)
    return U, s, e


def _centred_svd(
    x: torch.Tensor, name: str, *, center: bool = True
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
    """The thin SVD ``U_r, s_r, V_rᵀ`` of the centred ``x·2^−e`` in float64, rank-truncated, and e."""
    x64 = x.double()
    if center:
        x64 = x64 - x64.mean(dim=0, keepdim=True)
    x64, e = pow2_rescale(x64)
    U, s, Vh = torch.linalg.svd(x64, full_matrices=False)
    r = kept_rank(s.cpu().numpy(), *x.shape)
    if r == 0:
        raise ValueError(_no_variance(name, center))
    return U[:, :r], s[:r], Vh[:r], e


def _no_variance(name: str, center: bool) -> str:
    what = "constant across items (every row identical)" if center else "all zeros"
    return f"{name} is {what}: it has no variance, so the measure is undefined"


def kept_rank(s: np.ndarray, n: int, d: int) -> int:
    """How many singular values (descending) to keep: ``s_i > max(n, d)·eps·s_1`` with eps = float32's for every
    input dtype (numpy's ``matrix_rank`` rule for float32), so float32 and float64 copies of the same data keep the
    same directions (the rule is resolvable from float64 cross-products: its ratio λ_i/λ_1 ≥ 1e-13)."""
    if s.size == 0 or not s[0] > 0:
        return 0
    return int((s > max(n, d) * RANK_EPS * s[0]).sum())


# ---- float64 cross-products of the centred spaces, in row blocks ------------------------------------------------

#: float32's machine epsilon: the rank rule's unit for every input dtype (see :func:`kept_rank`).
RANK_EPS = float(np.finfo(np.float32).eps)
# Rows per block ≈ elements/(d1 + d2): blocks of a few thousand rows keep the products at full GEMM speed (smaller
# blocks cost ~20 % at d = 384: per-block float64 accumulation of d × d results) while the block temporaries stay
# ≈ 16 MB, below the plain formula's two centred n × d copies from n·(d1 + d2) ≈ 4M entries on.
_BLOCK_ELEMENTS = {True: 1 << 22, False: 1 << 21}  # float32 blocks (fast path), float64 blocks (exact)


@dataclass
class CentredProducts:
    """Cross-products of the centred spaces ``X̃ = (X − x̄)·2^−ex``, ``Ỹ = (Y − ȳ)·2^−ey`` (float64 numpy):
    ``xy = X̃ᵀỸ``, ``xx = X̃ᵀX̃``, ``yy = ỸᵀỸ`` (None when not asked for), the traces ``tx = ‖X̃‖²``, ``ty`` and,
    when asked, the row squared norms ``rx_i = ‖x̃_i‖²``, ``ry``."""

    n: int
    xy: np.ndarray
    xx: np.ndarray | None
    yy: np.ndarray | None
    tx: float
    ty: float
    rx: np.ndarray | None
    ry: np.ndarray | None
    ex: int
    ey: int


def _as_numpy(t: torch.Tensor) -> Any:
    """A CPU tensor as a numpy view (no copy); other devices stay torch tensors."""
    return t.numpy() if t.device.type == "cpu" else t


def _mean_exponent(a: Any, center: bool, exact: bool = False) -> tuple[Any, int]:
    """Column means in float64 (zeros when ``center=False``) and the e that puts max|a| in [0.5, 1).

    ``exact``: for centring that leaves no residual behind (float64 blocks, no rank-one correction), the means of a
    float32 array are summed in float64 (:func:`_float64_column_mean`); the degenerate check's column sums are float32
    BLAS sums, ~2e-6 of |x̄| off at n = 10,000, and at a mean 300× the spread that residual was kept as a direction
    of its own (CCA 0.212 for float32, 0.275 for the same numbers in float64)."""
    mean: Any
    if isinstance(a, np.ndarray):
        from alignkit._known import lookup
        from alignkit.degenerate import column_moments

        m = lookup(a) or column_moments(a)  # this call's degenerate check read them already, when it ran
        peak = m.peak
        if not center:
            mean = np.zeros(a.shape[1])
        else:
            mean = _float64_column_mean(a) if exact and a.dtype != np.float64 else m.mean
    else:
        lo, hi = torch.aminmax(a)
        peak = max(float(hi), -float(lo))
        mean = a.double().mean(dim=0) if center else torch.zeros(a.shape[1], dtype=torch.float64, device=a.device)
    return mean, (math.frexp(peak)[1] if peak > 0 else 0)


def centred_copy(t: torch.Tensor, center: bool) -> tuple[Any, int]:
    """``(X̃, e)``: the whole space centred exactly (float64 means) and divided by 2^e (max |x| into [0.5, 1)), as one
    float64 copy — numpy for host tensors, torch elsewhere (the n < d routes, which factor X̃ itself)."""
    a = _as_numpy(t)
    mean, e = _mean_exponent(a, center, exact=True)
    return _centred_block(a, mean, e, exact=True), e


_MEAN_BLOCK_ELEMENTS = 1 << 20  # entries per block of the float64 column sums (8 MiB of float64 temporaries)


def _float64_column_mean(a: np.ndarray) -> np.ndarray:
    """Column means accumulated in float64, in row blocks: O(n·d), ~1/d of the products that follow (1 ms at
    10,000 × 384)."""
    n = a.shape[0]
    step = max(1, _MEAN_BLOCK_ELEMENTS // max(1, a.shape[1]))
    total = np.zeros(a.shape[1])
    for s in range(0, n, step):
        total += a[s : s + step].sum(axis=0, dtype=np.float64)
    return total / max(n, 1)


def _centred_block(block: Any, mean: Any, e: int, exact: bool) -> Any:
    """``(block − mean)·2^−e`` in float64 (exact=True) or in the block's dtype, centred in float64 first."""
    if isinstance(block, np.ndarray):
        out = np.subtract(block, mean)  # float32 − float64 → float64: one pass, no separate cast
        out = np.ldexp(out, -e, out=out) if e else out
        return out if exact or block.dtype == np.float64 else out.astype(block.dtype)
    out = times_pow2(block.double() - mean, -e)
    return out if exact else out.to(block.dtype)


def centred_products(
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    center: bool = True,
    self_terms: bool = True,
    row_norms: bool = False,
    exact: bool = True,
    fold: bool = True,
) -> CentredProducts:
    """The centred cross-products of two row-paired spaces, in row blocks: no n × d float64 copy of either input.

    ``exact=True``: each block is centred in float64 (the means first, so a large mean costs no precision), divided
    by a power of two when its squares could leave float64's range (exact; e from the input's max |entry|,
    |e| > 200; else ``ex = 0``) and multiplied in float64 — products of float32
    entries are exact in float64, so float32 and float64 inputs holding the same numbers give the same result (the
    CCA family's rank decisions need this).

    ``exact=False`` (CKA, Procrustes): a float32 block is centred in float32 by the float32-rounded mean ``m̃`` (a
    subtraction is correctly rounded relative to its result, so the centred entries carry float32's relative
    error, not |mean|'s), multiplied in float32 and accumulated in float64; the residual mean ``δ = x̄ − m̃`` is
    removed exactly afterwards by rank-one corrections (``X_cᵀY_c = X'ᵀY' − δ_x s_yᵀ − s_x δ_yᵀ + n δ_xδ_yᵀ``, s the
    column sums of X'), ~1e-7 relative for float32 inputs and as fast as the plain float32 formula. The
    power-of-two scaling is applied only when the entries are far from 1 (|e| > 30), where float32 products could
    overflow or underflow; otherwise ``ex = 0``.

    ``fold`` (fast path; for CKA and Procrustes, whose Frobenius and nuclear norms are global — not for the CCA
    family, whose eigen-directions each need their own variance): where the column mean is small — at most
    :data:`_FOLD_SHARE` of ``Σ‖x_i‖²`` in a strided sample of 256 rows — the centring is folded into the products
    instead (``m̃ = 0``: the blocks are the input itself, no centred copy, ``X̃ᵀỸ = XᵀY − n·x̄ȳᵀ`` by the same
    corrections). float32 rounding of the uncentred products, relative to ``Σ‖x_i‖²``, then grows by at most
    ``1/(1 − share)`` relative to the centred energy (in total: a direction whose mean dwarfs its spread loses more,
    which a global norm does not notice). The share is verified on the whole space after the pass; above
    :data:`_FOLD_ACCEPT` (a sample that misjudged it) the products are recomputed with centred blocks.
    """
    a, b = _as_numpy(x), _as_numpy(y)
    n, d1, d2 = x.shape[0], x.shape[1], y.shape[1]
    fast = not exact and isinstance(a, np.ndarray) and isinstance(b, np.ndarray)
    sx, sy = _Side(a, center, fast, fold), _Side(b, center, fast, fold)
    xy: Any = 0.0
    xx: Any = 0.0
    yy: Any = 0.0
    tx, ty = 0.0, 0.0
    rx: list[Any] | None = [] if row_norms else None
    ry: list[Any] | None = [] if row_norms else None
    step = max(1, _BLOCK_ELEMENTS[sx.fast and sy.fast] // (d1 + d2))
    for s in range(0, n, step):
        bx, by = sx.block(a[s : s + step]), sy.block(b[s : s + step])
        xy = _accumulate(xy, bx.T @ by)
        if self_terms:
            xx, yy = _accumulate(xx, bx.T @ bx), _accumulate(yy, by.T @ by)
        if rx is not None and ry is not None:
            nx, ny = sx.row_sq(bx), sy.row_sq(by)
            tx, ty = tx + float(nx.sum()), ty + float(ny.sum())
            rx.append(nx)
            ry.append(ny)
        elif not self_terms:  # else the traces are the self-products' diagonals
            tx, ty = tx + sx.square_sum(bx), ty + sy.square_sum(by)
    if rx is None and not self_terms:  # Σ‖x'_i − δ‖² = Σ‖x'_i‖² − 2δ·Σx'_i + n‖δ‖² = Σ‖x'_i‖² − n‖δ‖²
        tx, ty = tx - sx.offset_energy(n), ty - sy.offset_energy(n)
    xy = _corrected(xy, sx, sy, n)
    if self_terms:
        xx, yy = _corrected(xx, sx, sx, n), _corrected(yy, sy, sy, n)
        if not row_norms:
            tx, ty = float(np.trace(xx)), float(np.trace(yy))
    if center and not (sx.accept_fold(tx, n) and sy.accept_fold(ty, n)):
        return centred_products(
            x, y, center=center, self_terms=self_terms, row_norms=row_norms, exact=exact, fold=False
        )
    return CentredProducts(
        n,
        xy,
        xx if self_terms else None,
        yy if self_terms else None,
        tx,
        ty,
        np.concatenate([_np(r) for r in rx]) if rx is not None else None,
        np.concatenate([_np(r) for r in ry]) if ry is not None else None,
        sx.e,
        sy.e,
    )


class _Side:
    """How one space's row blocks are centred and scaled (see :func:`centred_products`): ``block(b)`` gives
    ``X' = (b − m̃)·2^−e``; the centred, scaled rows are ``X' − δ`` with ``δ = (x̄ − m̃)·2^−e`` (zero on the exact
    path); X''s column sums are n·δ, which :func:`_corrected` removes. A *folded* side
    (fast path, ``m̃ = 0``) hands out the input's blocks themselves."""

    def __init__(self, a: Any, center: bool, fast: bool, fold: bool = True) -> None:
        self.fast = fast and a.dtype != np.float64
        mean, e = _mean_exponent(a, center, exact=not self.fast)
        self.folded = False
        if not self.fast:  # float64 arithmetic: scaled only where squares could leave float64's range
            self.mean, self.e, self.delta = mean, (e if abs(e) > 200 else 0), None
            return
        self.e = e if abs(e) > 30 else 0
        # Entries far from 1 (scaled by 2^−e) keep centred blocks: the sample's float32 squares could leave the range.
        self.folded = not center or (fold and not self.e and _sampled_mean_share(a, mean) <= _FOLD_SHARE)
        self.mean = None if self.folded else mean.astype(a.dtype)
        self.delta = np.ldexp(mean if self.folded else mean - self.mean.astype(np.float64), -self.e)

    def block(self, b: Any) -> Any:
        if not self.fast:
            return _centred_block(b, self.mean, self.e, exact=True)
        if self.mean is None:
            return np.ldexp(b, -self.e).astype(b.dtype, copy=False) if self.e else b
        out = np.subtract(b, self.mean, dtype=b.dtype)
        if self.e:
            np.ldexp(out, -self.e, out=out)
        return out

    def accept_fold(self, trace: float, n: int) -> bool:
        """A folded side's whole-space mean share ``n‖δ‖²/(tr + n‖δ‖²)`` is at most :data:`_FOLD_ACCEPT`."""
        if not self.folded or self.delta is None:
            return True
        offset = self.offset_energy(n)
        return offset <= _FOLD_ACCEPT * (trace + offset)

    def row_sq(self, b: Any) -> Any:
        """Row squared norms of the centred rows, float64: ``‖x'_i‖² − 2x'_i·δ + ‖δ‖²`` (their sum is the trace)."""
        r = _row_sq(b) if not self.fast else np.einsum("ij,ij->i", b, b).astype(np.float64)
        if self.delta is None or not self.delta.any():
            return r
        return r - 2.0 * (b @ self.delta.astype(b.dtype)).astype(np.float64) + float(self.delta @ self.delta)

    def square_sum(self, b: Any) -> float:
        """``Σ_i ‖x'_i‖²`` of one block in float64 (float32 row sums on the fast path, then float64)."""
        r = _row_sq(b) if not self.fast else np.einsum("ij,ij->i", b, b)
        return float(r.sum(dtype=np.float64)) if isinstance(r, np.ndarray) else float(r.double().sum())

    def offset_energy(self, n: int) -> float:
        """``n‖δ‖²``: what the residual mean adds to Σ‖x'_i‖² (0 on the exact path)."""
        return 0.0 if self.delta is None else n * float(self.delta @ self.delta)


#: Fold the centring into the float32 products when the column mean holds at most this share of ``Σ‖x_i‖²`` in a
#: strided sample of rows (:func:`_sampled_mean_share`), and keep the folded products when the whole space's share
#: is at most :data:`_FOLD_ACCEPT` (rounding relative to the centred energy grows ≤ 1/(1 − share): 2.5×).
_FOLD_SHARE = 0.5
_FOLD_ACCEPT = 0.6
_SAMPLE_ROWS = 256


def _sampled_mean_share(a: np.ndarray, mean: np.ndarray) -> float:
    """``‖x̄‖² / mean_i ‖x_i‖²`` over a strided sample of :data:`_SAMPLE_ROWS` rows (x̄ the exact column mean)."""
    sample = a[:: max(1, a.shape[0] // _SAMPLE_ROWS)][:_SAMPLE_ROWS]
    energy = float(np.einsum("ij,ij->i", sample, sample).astype(np.float64).mean())
    m2 = float(mean @ mean)
    return m2 / energy if energy > 0 and np.isfinite(energy) else (0.0 if m2 == 0 else math.inf)


def _corrected(acc: Any, p: _Side, q: _Side, n: int) -> np.ndarray:
    """``Σ (x'−δ_p)(y'−δ_q)ᵀ = X'ᵀY' − n·δ_pδ_qᵀ`` (the column sums of X' are n·δ_p), from the accumulated X'ᵀY'.

    The rank-one update runs in place on the float64 result, a few rows at a time (temporaries of 128 KiB): a d × d
    temporary costs more than the update (allocation and page faults: ~0.9 against 0.08 ms at d = 384). Neither
    scipy's BLAS ``dger`` nor torch's ``addr_``: each wakes another thread pool, and on two threads the numpy
    products that follow then ran 2–3× slower while the pools fought for the cores."""
    acc = _np(acc)
    if p.delta is None or q.delta is None or not (p.delta.any() and q.delta.any()):
        return acc
    if not (acc.dtype == np.float64 and acc.flags.writeable):
        return acc - n * np.outer(p.delta, q.delta)
    u, v = n * p.delta, q.delta
    step = max(1, _UPDATE_ELEMENTS // max(1, v.size))
    for i in range(0, u.size, step):
        acc[i : i + step] -= np.multiply.outer(u[i : i + step], v)
    return acc


_UPDATE_ELEMENTS = 1 << 14  # entries per temporary of the in-place rank-one update (128 KiB of float64)


def _accumulate(acc: Any, m: Any) -> Any:
    """``acc + m`` in float64, in place after the first block (no second d × d temporary per product)."""
    if isinstance(acc, float):
        return _f64(m)
    if isinstance(acc, np.ndarray):
        acc += m
    else:
        acc += m.double()
    return acc


def _f64(m: Any) -> Any:
    return m.astype(np.float64, copy=False) if isinstance(m, np.ndarray) else m.double()


def _np(m: Any) -> np.ndarray:
    return m if isinstance(m, np.ndarray) else m.cpu().numpy()


def _row_sq(b: Any) -> Any:
    """Row squared norms in float64."""
    if isinstance(b, np.ndarray):
        return np.einsum("ij,ij->i", b, b, dtype=np.float64)
    return torch.einsum("ij,ij->i", b, b).double()


def _check_reg(reg: float) -> float:
    if isinstance(reg, bool) or not isinstance(reg, (int, float, np.integer, np.floating)):
        raise TypeError(f"reg must be a non-negative number; got {reg!r}")
    reg = float(reg)
    if not (math.isfinite(reg) and reg >= 0.0):
        raise ValueError(f"reg must be a finite number >= 0; got {reg}")
    return reg


def _weights(s: np.ndarray, n: int, reg: float, e: int = 0) -> np.ndarray:
    """``w = s/sqrt(s² + n·reg·4^−e)`` (w = 1 when reg = 0): ``X_c (C_xx + reg·I)^{-1/2} / sqrt(n) = U·diag(w)``
    in the left singular basis, for s the singular values of ``X_c·2^−e``."""
    if reg == 0.0:
        return np.ones_like(s)
    try:
        scaled = math.ldexp(reg, -2 * e)
    except OverflowError:
        scaled = math.inf
    return s / np.sqrt(s * s + n * scaled)


def _warn_small_n(n: int, r: int, what: str) -> None:
    warn_small_n(
        n,
        r,
        what,
        f"up to {r} directions per side",
        "the canonical correlations are inflated (with n ≤ the number of directions every ρ ≈ 1). Use more items, "
        "fewer dimensions (svcca with a small integer keep) or reg > 0.",
    )


@dataclass
class BasisPair:
    """Both centred spaces (divided by 2^ex, 2^ey) in their singular bases, float64 numpy: the kept singular
    values ``s`` (descending), right singular vectors ``v`` (d × r; None where not asked for) and either
    ``k = U_xᵀU_y`` (r_x × r_y; n < d) or the cross-product ``xy = X̃ᵀỸ`` it comes from (see :meth:`cross`)."""

    n: int
    sx: np.ndarray
    sy: np.ndarray
    vx: np.ndarray | None
    vy: np.ndarray | None
    k: np.ndarray | None
    xy: np.ndarray | None
    ex: int
    ey: int

    @property
    def rank(self) -> int:
        return max(self.sx.size, self.sy.size)

    def cross(self, kx: int | None = None, ky: int | None = None) -> np.ndarray:
        """``U_xᵀU_y`` over the top kx, ky directions (all by default); from the cross-product only that block is
        formed, ``diag(1/s_x) V_xᵀ X̃ᵀỸ V_y diag(1/s_y)``: O(kx·d1·d2), not O(d³), for SVCCA's few directions."""
        kx, ky = kx or self.sx.size, ky or self.sy.size
        if self.k is not None:
            return self.k[:kx, :ky]
        assert self.xy is not None and self.vx is not None and self.vy is not None
        return (self.vx[:, :kx].T @ self.xy @ self.vy[:, :ky]) / np.outer(self.sx[:kx], self.sy[:ky])


def _spectrum(
    C: np.ndarray, n: int, name: str, center: bool, exact: bool = True, width: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Kept singular values (descending) and right singular vectors of a space from its Gram ``C = X̃ᵀX̃`` — or
    the left ones from ``C = X̃X̃ᵀ`` (then ``width`` = d, for the rank rule) — (``exact=False``: C from float32
    products, so directions below ``FAST_RANK_RTOL·s_1`` are dropped too)."""
    lam, V = np.linalg.eigh(C)
    s = np.sqrt(np.clip(lam[::-1], 0.0, None))
    r = kept_rank(s, n, width or C.shape[0])
    if not exact:
        r = min(r, int((s[:r] > FAST_RANK_RTOL * s[0]).sum()))
    if r == 0:
        raise ValueError(_no_variance(name, center))
    return s[:r], np.ascontiguousarray(V[:, ::-1][:, :r])


#: ``exact=False`` keeps a direction only when ``s_i > 16·sqrt(eps)·s_1`` (≈ 0.55 % of s_1): float32 products put the
#: null directions of exactly rank-deficient data at s ≈ 2e-4·s_1 (measured at n = 2k–20k, d = 64–1024), right at
#: :func:`kept_rank`'s threshold, so the fast path needs a margin above that noise.
FAST_RANK_RTOL = 16 * math.sqrt(RANK_EPS)


def basis_pair(
    x: torch.Tensor, y: torch.Tensor, *, center: bool = True, exact: bool = True, need_vx: bool = False
) -> BasisPair:
    """:class:`BasisPair` of two row-paired spaces.

    n ≥ max(d1, d2): from the float64 cross-products (:func:`centred_products`): ``eigh(X̃ᵀX̃) = V diag(s²) Vᵀ`` and
    ``U_xᵀU_y = diag(1/s_x) V_xᵀ X̃ᵀỸ V_y diag(1/s_y)``, O(n·(d1 + d2)²) and no n × d float64 copy.
    n < max(d1, d2): each side's left singular vectors, from ``eigh`` of the n × n Gram ``X̃X̃ᵀ`` when n ≤ d
    (O(n²·d + n³), 2–3× faster than a thin SVD of X̃ at 300 × 384 to 1,000 × 1,024), else of X̃ᵀX̃ with
    ``U = X̃V diag(1/s)``; ``k = U_xᵀU_y``. Both routes square the spectrum like the cross-products, so their rank
    decisions and accuracy are the same. Both keep :func:`kept_rank` directions. On the Gram route V is formed
    only for X and only with ``need_vx`` (PWCCA's weights); elsewhere ``vx``/``vy`` may be None.

    ``exact=False`` (float32 inputs, n ≥ max(d1, d2)): the products in float32, accumulated in float64 (the
    plain formula's speed; CKA's path), and each side keeps only the directions with ``s_i > FAST_RANK_RTOL·s_1``
    — the answer then depends on the input dtype (~1e-6 on well-conditioned data).
    """
    n = x.shape[0]
    if n >= max(x.shape[1], y.shape[1]):
        # No folded centring here: the bases need every direction's variance, and a column whose mean dwarfs its
        # spread would lose it to the uncentred float32 product (the fold's test is the mean's share of all energy).
        P = centred_products(x, y, center=center, exact=exact, fold=False)
        assert P.xx is not None and P.yy is not None
        fast = not exact and torch.float64 not in (x.dtype, y.dtype)
        sx, vx = _spectrum(P.xx, n, "X", center, exact=not fast)
        sy, vy = _spectrum(P.yy, n, "Y", center, exact=not fast)
        return BasisPair(n, sx, sy, vx, vy, None, P.xy, P.ex, P.ey)
    if x.device.type != "cpu" or y.device.type != "cpu":
        Ux, sx_t, Vx, ex = _centred_svd(x, "X", center=center)
        Uy, sy_t, Vy, ey = _centred_svd(y, "Y", center=center)
        return BasisPair(n, _np(sx_t), _np(sy_t), _np(Vx.T), _np(Vy.T), _np(Ux.T @ Uy), None, ex, ey)
    bx, by = _side_basis(x, "X", center, need_vx), _side_basis(y, "Y", center, False)
    return BasisPair(n, bx[0], by[0], bx[2], by[2], bx[1].T @ by[1], None, bx[3], by[3])


def _side_basis(
    t: torch.Tensor, name: str, center: bool, need_v: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, int]:
    """``(s, U, V, e)`` of one host space X̃ = centred X·2^−e in float64 (e putting max |x| in [0.5, 1)): from
    ``eigh(X̃X̃ᵀ)`` when n ≤ d, with ``V = X̃ᵀU diag(1/s)`` only when ``need_v`` (else None), otherwise from
    ``eigh(X̃ᵀX̃)`` with ``U = X̃V diag(1/s)``. X̃ is freed before the eigendecomposition when it is not needed after."""
    c, e = centred_copy(t, center)
    n, d = c.shape
    if n > d:
        s, v = _spectrum(c.T @ c, n, name, center)
        return s, (c @ v) / s, v, e
    K = c @ c.T
    if not need_v:
        del c
    s, u = _spectrum(K, n, name, center, width=d)
    del K
    return s, u, ((c.T @ u) / s if need_v else None), e


def _whitened_cross(B: BasisPair, reg: float, kx: int | None = None, ky: int | None = None) -> np.ndarray:
    """``diag(w_x) U_xᵀU_y diag(w_y)`` over the top kx, ky directions: its singular values are the ρ."""
    kx, ky = kx or B.sx.size, ky or B.sy.size
    wx, wy = _weights(B.sx[:kx], B.n, reg, B.ex), _weights(B.sy[:ky], B.n, reg, B.ey)
    return B.cross(kx, ky) * wx[:, None] * wy[None, :]


def _svdvals(M: np.ndarray) -> np.ndarray:
    return np.clip(np.linalg.svd(M, compute_uv=False), 0.0, 1.0)


_CCA_COST = (
    "O(n·(d1 + d2)²) float64 cross-products + eigh of each d × d when n ≥ max(d1, d2), else O(n²·d) Grams + eigh "
    "of each n × n"
)


def _validated(X: ArrayLike, Y: ArrayLike, reg: float, estimator: str) -> tuple[torch.Tensor, torch.Tensor, float]:
    reg = _check_reg(reg)
    x, y = as_pair(X, Y)
    check_min_rows(x.shape[0], MIN_ROWS, estimator)
    return x, y, reg


def canonical_correlations(X: ArrayLike, Y: ArrayLike, reg: float = 0.0, exact: bool = True) -> torch.Tensor:
    """The canonical correlations ρ_1 ≥ … ≥ ρ_k ∈ [0, 1], k = min(r_x, r_y), as a float64 tensor on X's device.

    ρ = singular values of ``Q_xᵀQ_y`` (orthonormal bases of the centred column spaces), i.e. the cosines
    of the principal angles between them; with ``reg > 0`` those of
    ``(C_xx + reg·I)^{-1/2} C_xy (C_yy + reg·I)^{-1/2}``, ``C = X_cᵀX_c/n``. Hotelling, "Relations between
    two sets of variates", Biometrika 1936. ``exact``: see :func:`cca`.
    """
    x, y, reg = _validated(X, Y, reg, "CCA")
    B = basis_pair(x, y, exact=exact)
    _warn_small_n(B.n, B.rank, "CCA")
    return torch.from_numpy(_svdvals(_whitened_cross(B, reg))).to(x.device)


@register(
    "cca",
    family="cca",
    range=(0.0, 1.0),
    invariances=_CCA_INVARIANCES,
    cost=_CCA_COST,
    description="Mean canonical correlation (or mean ρ² with summary='mean_sq'), exact SVD. Invariant to "
    "invertible linear maps (reg=0 only); inflated towards 1 when n < 10·d (warns).",
    defaults={"reg": 0.0, "summary": "mean", "exact": True},
    constraints={"reg": {"low": 0.0}, "summary": {"choices": SUMMARIES}},
)
def cca(X: ArrayLike, Y: ArrayLike, *, reg: float = 0.0, summary: str = "mean", exact: bool = True) -> float:
    """Mean canonical correlation ``(1/k) Σ ρ_i`` (``summary="mean"``) or ``(1/k) Σ ρ_i²`` (``"mean_sq"``).

    ρ from :func:`canonical_correlations`, k = min(rank X_c, rank Y_c). Hotelling, Biometrika 1936; as a
    representation similarity, Raghu et al., "SVCCA: Singular Vector Canonical Correlation Analysis for Deep
    Learning Dynamics and Interpretability", NeurIPS 2017. Warns when n < 10·max(r_x, r_y).

    ``exact=True`` (default): float64 cross-products, so float32 and float64 copies of the same data give the same
    value (≤ 1e-6). ``exact=False``: float32 products for float32 inputs, as fast as the plain float32 formula;
    directions below 0.55 % of the top singular value are dropped (:func:`basis_pair`: float32 products cannot
    resolve them) and the value may move by ~1e-6.
    """
    check_choice(summary, SUMMARIES, "summary")
    x, y, reg = _validated(X, Y, reg, "CCA")
    B = basis_pair(x, y, exact=exact)
    _warn_small_n(B.n, B.rank, "CCA")
    rho = _svdvals(_whitened_cross(B, reg))
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


def _n_kept(s: np.ndarray, keep: float | int, width: int, name: str) -> int:
    if isinstance(keep, int):
        if keep > width:
            raise ValueError(f"keep={keep} directions exceeds {name}'s width ({width} columns)")
        return min(keep, s.size)
    var = s * s
    frac = np.cumsum(var) / var.sum()
    # smallest k with frac[k-1] >= keep; the slack stops round-off in the cumsum from adding a direction
    return min(int((frac < keep - 1e-12).sum()) + 1, s.size)


@register(
    "svcca",
    family="cca",
    range=(0.0, 1.0),
    invariances=("orthogonal", "isotropic_scale", "translation", "permutation"),
    cost=_CCA_COST + "; O(k1·d1·d2) for the kept block",
    description="SVCCA: keep each side's top singular directions (a variance fraction, default 0.99, or an "
    "integer count; PRH uses 10), then mean canonical correlation. Warns when n < 10·kept dims.",
    defaults={"keep": 0.99, "reg": 0.0, "exact": True},
    constraints={"keep": {"validator": lambda v: _check_keep(v)}, "reg": {"low": 0.0}},
)
def svcca(X: ArrayLike, Y: ArrayLike, *, keep: float | int = 0.99, reg: float = 0.0, exact: bool = True) -> float:
    """Singular-vector CCA: mean ρ between the top-SVD reductions ``U_k S_k`` of the centred X and Y.

    ``keep`` float in (0, 1]: per side, the fewest directions whose squared singular values reach that
    fraction of the total (anatome ``accept_rate=0.99``); ``keep`` int: that many top directions (PRH
    ``cca_dim=10``; at most the width, truncated to the rank). Note ``keep=1`` is one direction and
    ``keep=1.0`` all the variance. No z-scoring (PRH z-scores first; do it beforehand if wanted).
    Raghu, Gilmer, Yosinski, Sohl-Dickstein, "SVCCA: Singular Vector Canonical Correlation Analysis for Deep
    Learning Dynamics and Interpretability", NeurIPS 2017.

    Only invariant to orthogonal maps and isotropic scaling: the SVD truncation depends on the spectrum.
    ``exact``: see :func:`cca`.
    """
    keep = _check_keep(keep)
    x, y, reg = _validated(X, Y, reg, "SVCCA")
    B = basis_pair(x, y, exact=exact)
    kx = _n_kept(B.sx, keep, x.shape[1], "X")
    ky = _n_kept(B.sy, keep, y.shape[1], "Y")
    rho = _svdvals(_whitened_cross(B, reg, kx, ky))
    _warn_small_n(B.n, max(kx, ky), "SVCCA")
    return float(rho.mean())


@register(
    "pwcca",
    family="cca",
    range=(0.0, 1.0),
    symmetric=False,
    invariances=("isotropic_scale", "translation", "permutation"),
    cost=_CCA_COST + "; O(d1·r²) for the weights",
    description="Projection-weighted CCA (Morcos 2018) [unverified formula]: Σα_iρ_i/Σα_i, weights from X's "
    "neurons, so asymmetric. The L1 weights break rotation invariance. Warns when n < 10·d.",
    defaults={"reg": 0.0, "exact": True},
    constraints={"reg": {"low": 0.0}},
)
def pwcca(X: ArrayLike, Y: ArrayLike, *, reg: float = 0.0, exact: bool = True) -> float:
    """Projection-weighted CCA ``Σ_i α_i ρ_i / Σ_i α_i`` with ``α_i = Σ_j |⟨h_i, x_j⟩|``.

    h_i: the i-th canonical variate of X (an n-vector, unit norm), x_j: the j-th column of the centred X;
    i runs over the k = min(r_x, r_y) correlations. Morcos, Raghu, Bengio, "Insights on representational
    similarity in neural networks with canonical correlation", NeurIPS 2018.

    [unverified] docs/methods.md §1.9 records this formula from memory, not from the paper or google/svcca code;
    treat exact agreement with other implementations as unchecked. Asymmetric (weights come from X), and,
    because the weights are L1 norms over X's neurons, invariant to permuting/sign-flipping and scaling X's
    columns jointly but not to rotations of X or invertible linear maps. ``exact``: see :func:`cca`.
    """
    x, y, reg = _validated(X, Y, reg, "PWCCA")
    B = basis_pair(x, y, exact=exact, need_vx=True)
    _warn_small_n(B.n, B.rank, "PWCCA")
    A, rho, _ = np.linalg.svd(_whitened_cross(B, reg), full_matrices=False)
    rho = np.clip(rho, 0.0, 1.0)
    # canonical variates h_i = U_x diag(w) a_i/‖diag(w) a_i‖, and X_cᵀU_x = V_x diag(s_x): α's scale cancels
    wx = _weights(B.sx, B.n, reg, B.ex)
    assert B.vx is not None
    alpha = np.abs(B.vx @ ((B.sx * wx)[:, None] * A)).sum(axis=0) / np.linalg.norm(wx[:, None] * A, axis=0)
    return float((alpha * rho).sum() / alpha.sum())
