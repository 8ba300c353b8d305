"""Sufficient statistics for exact linear CKA / HSIC, biased and unbiased.

Biased linear HSIC needs the centred cross-covariance; the unbiased estimator of Song et al.
(2012) is exactly invariant to a column shift of X or Y (U-centering cancels the extra
``a_i + a_j + c`` terms), so raw moments of shifted data suffice (docs/methods.md §1.7):

``T1 = ‖S_xy‖² − p_xy``, ``T2 = (‖a‖² − q_x)(‖b‖² − q_y)``,
``T3 = aᵀS_xy b − aᵀu − vᵀb + p_xy``,
``HSIC_u = [T1 + T2/((n−1)(n−2)) − 2·T3/(n−2)] / (n(n−3))``.

All sums are float64. State is O(d1² + d2² + d1·d2) and adds across batches or workers. Every field is a
homogeneous polynomial in (x, y), so :meth:`LinearMoments.scaled` rescales a state by powers of two exactly
(:class:`~alignkit.stats.streaming.StreamingCKA` keeps its data near unit scale this way).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING

from alignkit._common import times_pow2
from alignkit._lazy import lazy_module
from alignkit.metrics.cca import SMALL_N_RATIO, SmallSampleWarning

if TYPE_CHECKING:
    import torch
else:
    torch = lazy_module("torch")


_ORDER = ("n", "a", "b", "Sxx", "Syy", "Sxy", "qx", "qy", "pxy", "pxx", "pyy", "u", "v", "wx", "wy")
# (degree in x, degree in y) of each field after n: how it scales when x → x·2^kx, y → y·2^ky.
_DEGREES = (
    (1, 0),
    (0, 1),
    (2, 0),
    (0, 2),
    (1, 1),
    (2, 0),
    (0, 2),
    (2, 2),
    (4, 0),
    (0, 4),
    (1, 2),
    (2, 1),
    (3, 0),
    (0, 3),
)


@dataclass
class LinearMoments:
    """Raw moments of (X − shift_x, Y − shift_y) over the rows seen so far."""

    n: int
    a: torch.Tensor  # Σ x_i
    b: torch.Tensor  # Σ y_i
    Sxx: torch.Tensor  # Σ x_i x_iᵀ
    Syy: torch.Tensor
    Sxy: torch.Tensor  # Σ x_i y_iᵀ
    qx: torch.Tensor  # Σ ‖x_i‖²
    qy: torch.Tensor
    pxy: torch.Tensor  # Σ ‖x_i‖²‖y_i‖²
    pxx: torch.Tensor  # Σ ‖x_i‖⁴
    pyy: torch.Tensor
    u: torch.Tensor  # Σ ‖y_i‖² x_i
    v: torch.Tensor  # Σ ‖x_i‖² y_i
    wx: torch.Tensor  # Σ ‖x_i‖² x_i
    wy: torch.Tensor  # Σ ‖y_i‖² y_i

    @classmethod
    def zeros(cls, d1: int, d2: int, device: torch.device | str = "cpu") -> LinearMoments:
        z = dict(dtype=torch.float64, device=device)
        return cls(
            0,
            torch.zeros(d1, **z),
            torch.zeros(d2, **z),
            torch.zeros(d1, d1, **z),
            torch.zeros(d2, d2, **z),
            torch.zeros(d1, d2, **z),
            *(torch.zeros((), **z) for _ in range(5)),
            torch.zeros(d1, **z),
            torch.zeros(d2, **z),
            torch.zeros(d1, **z),
            torch.zeros(d2, **z),
        )

    @classmethod
    def of(cls, x: torch.Tensor, y: torch.Tensor) -> LinearMoments:
        """Moments of one batch (x, y already shifted), computed in the batch's dtype and returned
        as float64 sums. No n×d temporaries beyond the inputs."""
        rx = torch.einsum("ij,ij->i", x, x)
        ry = torch.einsum("ij,ij->i", y, y)
        return cls(
            int(x.shape[0]),
            *(
                t.double()
                for t in (
                    x.sum(dim=0),
                    y.sum(dim=0),
                    x.T @ x,
                    y.T @ y,
                    x.T @ y,
                    rx.sum(),
                    ry.sum(),
                    rx @ ry,
                    rx @ rx,
                    ry @ ry,
                    ry @ x,
                    rx @ y,
                    rx @ x,
                    ry @ y,
                )
            ),
        )

    def __add__(self, other: LinearMoments) -> LinearMoments:
        return LinearMoments(*(getattr(self, f) + getattr(other, f) for f in _ORDER))

    def shifted(self, dx: torch.Tensor, dy: torch.Tensor) -> LinearMoments:
        """Exact moments of (x + dx, y + dy) from those of (x, y); lets workers with different
        reference shifts merge their states."""
        dx, dy = dx.double(), dy.double()
        n = self.n
        ex, ey = dx @ dx, dy @ dy  # ‖δ‖², ‖ε‖²
        da, eb = dx @ self.a, dy @ self.b
        Sxy_dy, SxyT_dx = self.Sxy @ dy, self.Sxy.T @ dx
        Sxx_dx, Syy_dy = self.Sxx @ dx, self.Syy @ dy
        return LinearMoments(
            n,
            self.a + n * dx,
            self.b + n * dy,
            self.Sxx + torch.outer(self.a, dx) + torch.outer(dx, self.a) + n * torch.outer(dx, dx),
            self.Syy + torch.outer(self.b, dy) + torch.outer(dy, self.b) + n * torch.outer(dy, dy),
            self.Sxy + torch.outer(self.a, dy) + torch.outer(dx, self.b) + n * torch.outer(dx, dy),
            self.qx + 2 * da + n * ex,
            self.qy + 2 * eb + n * ey,
            self.pxy
            + 2 * (dy @ self.v)
            + ey * self.qx
            + 2 * (dx @ self.u)
            + 4 * (dx @ Sxy_dy)
            + 2 * ey * da
            + ex * self.qy
            + 2 * ex * eb
            + n * ex * ey,
            self.pxx + 4 * (dx @ self.wx) + 4 * (dx @ Sxx_dx) + 2 * ex * self.qx + 4 * ex * da + n * ex * ex,
            self.pyy + 4 * (dy @ self.wy) + 4 * (dy @ Syy_dy) + 2 * ey * self.qy + 4 * ey * eb + n * ey * ey,
            self.u + 2 * Sxy_dy + ey * self.a + (self.qy + 2 * eb + n * ey) * dx,
            self.v + 2 * SxyT_dx + ex * self.b + (self.qx + 2 * da + n * ex) * dy,
            self.wx + 2 * Sxx_dx + ex * self.a + (self.qx + 2 * da + n * ex) * dx,
            self.wy + 2 * Syy_dy + ey * self.b + (self.qy + 2 * eb + n * ey) * dy,
        )

    def scaled(self, kx: int, ky: int) -> LinearMoments:
        """Exact moments of (x·2^kx, y·2^ky): each field times 2^(i·kx + j·ky), (i, j) its degrees."""
        if kx == 0 and ky == 0:
            return self
        parts = (times_pow2(getattr(self, f), i * kx + j * ky) for f, (i, j) in zip(_ORDER[1:], _DEGREES, strict=True))
        return LinearMoments(self.n, *parts)

    def to(self, device: torch.device | str) -> LinearMoments:
        return LinearMoments(self.n, *(getattr(self, f).to(device) for f in _ORDER[1:]))

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Tensors only (safetensors-friendly); ``n`` as a 0-d int64 tensor."""
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "n"}
        out["n"] = torch.tensor(self.n, dtype=torch.int64)
        return out

    @classmethod
    def from_state_dict(cls, state: dict[str, torch.Tensor]) -> LinearMoments:
        return cls(int(state["n"]), *(state[f].double() for f in _ORDER[1:]))

    # ---- HSIC from moments ------------------------------------------------------------------

    def hsic_biased_xy(self) -> float:
        """``‖C_xy‖_F²`` with ``C_xy = S_xy − abᵀ/n`` (= tr(KHLH), unnormalised)."""
        return float((_centred(self.Sxy, self.a, self.b, self.n) ** 2).sum())

    def hsic_biased_xx(self) -> float:
        return float((_centred(self.Sxx, self.a, self.a, self.n) ** 2).sum())

    def hsic_biased_yy(self) -> float:
        return float((_centred(self.Syy, self.b, self.b, self.n) ** 2).sum())

    def hsic_unbiased_xy(self) -> float:
        t1 = (self.Sxy**2).sum() - self.pxy
        t2 = (self.a @ self.a - self.qx) * (self.b @ self.b - self.qy)
        t3 = self.a @ self.Sxy @ self.b - self.a @ self.u - self.v @ self.b + self.pxy
        return _combine(t1, t2, t3, self.n)

    def hsic_unbiased_xx(self) -> float:
        t1 = (self.Sxx**2).sum() - self.pxx
        t2 = (self.a @ self.a - self.qx) ** 2
        t3 = self.a @ self.Sxx @ self.a - 2 * (self.a @ self.wx) + self.pxx
        return _combine(t1, t2, t3, self.n)

    def hsic_unbiased_yy(self) -> float:
        t1 = (self.Syy**2).sum() - self.pyy
        t2 = (self.b @ self.b - self.qy) ** 2
        t3 = self.b @ self.Syy @ self.b - 2 * (self.b @ self.wy) + self.pyy
        return _combine(t1, t2, t3, self.n)

    def cka(self, debiased: bool) -> float:
        """Linear CKA from the moments (biased or debiased; both need n ≥ 4). Biased CKA warns
        (:func:`warn_biased_cka`) when n is too small for the spaces' effective ranks."""
        if self.n < 4:
            raise ValueError(f"{'debiased ' if debiased else ''}CKA needs at least 4 items; got n={self.n}")
        if debiased:
            return cka_ratio(self.hsic_unbiased_xy(), self.hsic_unbiased_xx(), self.hsic_unbiased_yy())
        xx, yy = self.hsic_biased_xx(), self.hsic_biased_yy()
        tx = float(self.qx - self.a @ self.a / self.n)  # tr K_c = Σ‖x_i − x̄‖²
        ty = float(self.qy - self.b @ self.b / self.n)
        warn_biased_cka(self.n, effective_rank(tx, xx), effective_rank(ty, yy))
        return cka_ratio(self.hsic_biased_xy(), xx, yy)


def _centred(S: torch.Tensor, a: torch.Tensor, b: torch.Tensor, n: int) -> torch.Tensor:
    return S - torch.outer(a, b) / n


def _combine(t1: torch.Tensor, t2: torch.Tensor, t3: torch.Tensor, n: int) -> float:
    return float((t1 + t2 / ((n - 1) * (n - 2)) - 2.0 * t3 / (n - 2)) / (n * (n - 3)))


def cka_ratio(xy: float, xx: float, yy: float) -> float:
    """``HSIC(K,L)/sqrt(HSIC(K,K)·HSIC(L,L))``; NaN, with a RuntimeWarning, when a self-term is not positive.

    The square roots are taken separately, so the product of two tiny or huge self-terms never under- or
    overflows.
    """
    if not (xx > 0.0 and yy > 0.0):
        warnings.warn(
            f"CKA is undefined: a self-HSIC is not positive (HSIC(K,K)={xx:.3g}, HSIC(L,L)={yy:.3g}), i.e. a kernel "
            "has no variance across items (e.g. rbf_abs with sigma far from the distances); the score is NaN",
            RuntimeWarning,
            stacklevel=2,
        )
        return float("nan")
    return xy / (math.sqrt(xx) * math.sqrt(yy))


def effective_rank(trace: float, frob2: float) -> float:
    """``m = (tr K_c)²/‖K_c‖_F²``, the participation ratio of a centred kernel's eigenvalues (for a linear kernel,
    of the squared singular values of X_c): m = r for r equal non-zero eigenvalues, fewer for a decaying
    spectrum. ``frob2`` may be ‖K_c‖_F² or any multiple c² of it, with ``trace`` the same multiple c of tr K_c.
    0 for a zero kernel."""
    return trace * trace / frob2 if frob2 > 0 else 0.0


def biased_cka_chance(n: int, m_x: float, m_y: float) -> float:
    """≈ E[biased CKA] between independent spaces with i.i.d. rows: ``sqrt(m_x·m_y)/(n − 1)``.

    For i.i.d. rows ``E[HKH] = a·H`` for any kernel, so ``E⟨K_c, L_c⟩ = a_x a_y (n − 1)`` with
    ``a = E tr K_c/(n − 1)``; dividing by ``‖K_c‖_F‖L_c‖_F = tr K_c tr L_c/sqrt(m_x m_y)`` gives the ratio (first
    order). With ``d ≫ n`` both effective ranks approach n − 1 and the chance level approaches 1: the inflation of
    biased CKA shown by Murphy, Zylberberg, Fyshe, "Correcting Biased Centered Kernel Alignment Measures in
    Biological and Artificial Neural Networks", ICLR 2024 (arXiv:2405.01012).
    """
    return math.sqrt(max(m_x, 0.0) * max(m_y, 0.0)) / (n - 1)


def warn_biased_cka(n: int, m_x: float, m_y: float, what: str = "biased CKA") -> None:
    """Warn (:class:`~alignkit.metrics.cca.SmallSampleWarning`) when ``n − 1 < 10·sqrt(m_x·m_y)``, i.e. when
    independent spaces would already score above 0.1 (:func:`biased_cka_chance`); the CCA family's rule with
    the effective ranks in place of the ranks."""
    chance = biased_cka_chance(n, m_x, m_y)
    if chance * SMALL_N_RATIO > 1.0:
        warnings.warn(
            f"{what} with n={n} items and effective ranks {m_x:.1f}, {m_y:.1f}: n − 1 < {SMALL_N_RATIO}·"
            f"sqrt(m_x·m_y), so it is inflated (independent spaces score ≈ {min(chance, 1.0):.2f}; Murphy et al., "
            "ICLR 2024). Use the debiased estimator (debiased=True), more items or fewer dimensions.",
            SmallSampleWarning,
            stacklevel=3,
        )
