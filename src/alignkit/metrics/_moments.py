"""Sufficient statistics for exact linear CKA / HSIC, biased and unbiased.

Biased linear HSIC needs the centred cross-covariance; the unbiased estimator of Song et al.
(2012) is exactly invariant to a column shift of X or Y (U-centering cancels the extra
``a_i + a_j + c`` terms), so raw moments of shifted data suffice (docs/methods.md §1.7):

``T1 = ‖S_xy‖² − p_xy``, ``T2 = (‖a‖² − q_x)(‖b‖² − q_y)``,
``T3 = aᵀS_xy b − aᵀu − vᵀb + p_xy``,
``HSIC_u = [T1 + T2/((n−1)(n−2)) − 2·T3/(n−2)] / (n(n−3))``.

All sums are float64. State is O(d1² + d2² + d1·d2) and adds across batches or workers.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import TYPE_CHECKING

from alignkit._lazy import lazy_module

if TYPE_CHECKING:
    import torch
else:
    torch = lazy_module("torch")


_ORDER = ("n", "a", "b", "Sxx", "Syy", "Sxy", "qx", "qy", "pxy", "pxx", "pyy", "u", "v", "wx", "wy")


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
        """Linear CKA from the moments (biased or debiased)."""
        if debiased:
            if self.n < 4:
                raise ValueError(f"debiased CKA needs at least 4 items; got n={self.n}")
            xy, xx, yy = self.hsic_unbiased_xy(), self.hsic_unbiased_xx(), self.hsic_unbiased_yy()
        else:
            if self.n < 2:
                raise ValueError(f"CKA needs at least 2 items; got n={self.n}")
            xy, xx, yy = self.hsic_biased_xy(), self.hsic_biased_xx(), self.hsic_biased_yy()
        return cka_ratio(xy, xx, yy)


def _centred(S: torch.Tensor, a: torch.Tensor, b: torch.Tensor, n: int) -> torch.Tensor:
    return S - torch.outer(a, b) / n


def _combine(t1: torch.Tensor, t2: torch.Tensor, t3: torch.Tensor, n: int) -> float:
    return float((t1 + t2 / ((n - 1) * (n - 2)) - 2.0 * t3 / (n - 2)) / (n * (n - 3)))


def cka_ratio(xy: float, xx: float, yy: float) -> float:
    """``HSIC(K,L)/sqrt(HSIC(K,K)·HSIC(L,L))``; NaN when a self-term is not positive."""
    denom = xx * yy
    if not denom > 0.0:
        return float("nan")
    return xy / denom**0.5
