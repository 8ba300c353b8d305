"""Closed-form and training-free aligners: Procrustes, VecMap, CCA, ridge and ASIF (docs/methods.md §4.1–4.5).

Every aligner is fitted on paired rows only (``fit(X, Y)``) and follows :class:`alignkit.align.base.Aligner`.
All linear algebra is float64.

Two numerically different routes compute the same closed forms (the linear-algebra background is in
Golub & Van Loan, "Matrix Computations", 4th ed., §5.3 normal equations vs SVD, §8.1 symmetric eigenproblem):

- **SVD path**: thin SVDs ``X = U S Vᵀ`` of the n × d training matrices. Cost O(n·d·min(n, d)) and an n × d
  copy per side; accurate for any conditioning. Used when n < 2·d.
- **Gram path**: the d × d products ``G = XᵀX``, ``H = YᵀY``, ``C = XᵀY`` accumulated in float64 over row
  blocks of about 4M entries (so the preprocessed n × d matrices are never materialised), then eigh / SVD of
  d × d matrices (numpy LAPACK on CPU, torch on other devices). ``eigh(G) = V diag(λ) Vᵀ`` gives
  ``λ = s²`` and the same V, and ``UᵀY = S⁻¹VᵀC``, so every formula below is rewritten without U.
  Used when n ≥ 2·d. At n = 2·d even isotropic data have cond(X) ≈ (1 + √½)/(1 − √½) ≈ 5.8
  (Marchenko–Pastur), so squaring the condition number costs little, while the flop count falls from
  ≈ 4n·d² (SVD) to ≈ n·d² per product.

Rank rule. The SVD path keeps singular values ``s > max(n, d)·eps·s₁`` (numpy's ``matrix_rank``; eps of
the input dtype where the method says so). The Gram path keeps ``λ > rtol·λ₁`` with
``rtol = max((max(n, d)·eps)², ε_G)``: the same cutoff squared, floored at the Gram resolution
``ε_G = max(n, d)·eps₆₄`` below which an eigenvalue of a float64 Gram matrix cannot be told from round-off.
For float32 inputs (n ≥ 155) the squared cutoff is ≥ 10⁴·ε_G, so both paths take the same rank decision.
For float64 inputs it is not, so the automatic choice checks the spectrum: the Gram result is used only when
every eigenvalue that matters is ≥ 10⁴·ε_G·λ₁ (cond(X) ≲ 2·10³ at n = 10⁵); otherwise the fit is redone on
the SVD path. Forcing a path (``solver="gram"`` or ``"svd"``; the default ``"auto"`` chooses as above)
skips that check.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch

from alignkit._validation import check_choice
from alignkit.align.base import Aligner, register_aligner, unit_rows
from alignkit.metrics.predictive import _alpha_grid, _gcv_curve, ridge_gcv_alpha

NORMALIZE_STEPS: tuple[str, ...] = ("unit", "center")


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy()


def _rank_tol(s: torch.Tensor, shape: tuple[int, ...], dtype: torch.dtype) -> float:
    """numpy's matrix_rank rule ``max(n, d)·eps·s_1`` with eps of the input dtype."""
    return float(max(shape) * torch.finfo(dtype).eps * (s[0] if s.numel() else 0.0))


def _procrustes_rotation(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(R, σ)``: ``R = UVᵀ`` from the thin SVD ``aᵀb = UΣVᵀ``, and σ = diag Σ."""
    U, s, Vh = torch.linalg.svd(a.T @ b, full_matrices=False)
    return U @ Vh, s


# ------------------------------------------------------------------------------ Gram-path machinery

SOLVERS: tuple[str, ...] = ("auto", "gram", "svd")
_GRAM_MIN_RATIO = 2  # auto: Gram path when n >= 2·d (see the module docstring)
_GRAM_MARGIN = 1e4  # auto: eigenvalues that matter must be >= this many Gram resolutions ε_G·λ₁
_BLOCK_ELEMENTS = 1 << 22  # rows per block ≈ 4M / d: 32 MB of float64 temporaries per side
_MIN_BLOCK_ROWS = 256
_EPS64 = float(torch.finfo(torch.float64).eps)


def _gram_eps(n: int, d: int) -> float:
    """ε_G = max(n, d)·eps₆₄: relative resolution of the eigenvalues of a float64 Gram matrix of n × d data."""
    return max(n, d) * _EPS64


def _gram_rtol(n: int, d: int, dtype: torch.dtype) -> float:
    """Relative eigenvalue cutoff of the Gram path: the SVD path's ``max(n, d)·eps`` squared, floored at ε_G."""
    return max((max(n, d) * float(torch.finfo(dtype).eps)) ** 2, _gram_eps(n, d))


def _gram_resolves(lam: torch.Tensor, rtol: float, n: int, d: int, shift: float = 0.0) -> bool:
    """Whether the Gram path answers as the SVD path would (auto mode only).

    True when the rank cutoff itself is well resolved (``rtol ≥ 10⁴·ε_G``) or when every eigenvalue, after
    adding ``shift`` (a ridge penalty that makes small directions irrelevant), is ≥ ``10⁴·ε_G·λ₁``.
    ``lam`` is sorted in descending order.
    """
    eps_g = _gram_eps(n, d)
    if rtol >= _GRAM_MARGIN * eps_g or lam.numel() == 0 or float(lam[0]) <= 0.0:
        return True
    return float(lam[-1]) + shift >= _GRAM_MARGIN * eps_g * float(lam[0])


def _eigh_desc(G: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Eigenpairs of the symmetric matrix G, eigenvalues descending (numpy LAPACK ``syevd`` on CPU: faster than
    torch's for d × d matrices and not slowed by torch's thread pool under contention)."""
    if G.device.type == "cpu":
        w, V = np.linalg.eigh(G.numpy())
        return torch.from_numpy(w[::-1].copy()), torch.from_numpy(V[:, ::-1].copy())
    w, V = torch.linalg.eigh(G)
    return w.flip(0), V.flip(1)


def _svd_small(M: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Thin SVD ``M = U diag(s) Vh`` of a small (d × d) matrix: numpy ``gesdd`` on CPU, with scipy's ``gesvd``
    as the fallback when ``gesdd`` does not converge; torch elsewhere."""
    if M.device.type != "cpu":
        return torch.linalg.svd(M, full_matrices=False)
    a = M.numpy()
    try:
        U, s, Vh = np.linalg.svd(a, full_matrices=False)
    except np.linalg.LinAlgError:
        import scipy.linalg

        U, s, Vh = scipy.linalg.svd(a, full_matrices=False, lapack_driver="gesvd")
    return torch.from_numpy(U), torch.from_numpy(s), torch.from_numpy(Vh)


def _blocks(n: int, d: int) -> list[slice]:
    rows = max(_MIN_BLOCK_ROWS, _BLOCK_ELEMENTS // max(d, 1))
    return [slice(s, min(n, s + rows)) for s in range(0, n, rows)]


def _normalize(t: torch.Tensor, steps: tuple[str, ...], means: list | None) -> tuple[torch.Tensor, list]:
    """Apply the normalisation steps in order ("unit": rows to unit L2 norm; "center": subtract a mean).
    ``means`` (one row per "center" step) are computed from ``t`` when None (fitting) and reused otherwise."""
    out_means = []
    i = 0
    for step in steps:
        if step == "unit":
            t = unit_rows(t)
        else:
            m = t.mean(dim=0) if means is None else means[i]
            out_means.append(m)
            t = t - m
            i += 1
    return t, out_means


def _stream_means(t: torch.Tensor, steps: tuple[str, ...]) -> list[torch.Tensor]:
    """The means ``_normalize(t, steps, None)`` would compute, one streaming pass per "center" step, without
    materialising the normalised n × d matrix."""
    means: list[torch.Tensor] = []
    n = t.shape[0]
    for i, step in enumerate(steps):
        if step == "center":
            acc = torch.zeros(t.shape[1], dtype=t.dtype, device=t.device)
            for b in _blocks(n, t.shape[1]):
                acc += _normalize(t[b], steps[:i], means)[0].sum(dim=0)
            means.append(acc / n)
    return means


class _Products:
    """Cross-products of the normalised training pairs, accumulated in float64 over row blocks.

    ``x̃ = normalize(x, steps_x)``, ``ỹ = normalize(y, steps_y)``: ``G = x̃ᵀx̃`` (if ``xx``), ``H = ỹᵀỹ``
    (if ``yy``), ``C = x̃ᵀỹ`` (always), ``ss_x = ‖x̃‖_F²``, ``ss_y = ‖ỹ‖_F²``, and the "center" means.
    """

    def __init__(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        steps_x: tuple[str, ...],
        steps_y: tuple[str, ...],
        *,
        xx: bool,
        yy: bool,
    ) -> None:
        self.means_x = _stream_means(x, steps_x)
        self.means_y = _stream_means(y, steps_y)
        dx, dy = x.shape[1], y.shape[1]
        kw = {"dtype": torch.float64, "device": x.device}
        self.G = torch.zeros(dx, dx, **kw) if xx else None
        self.H = torch.zeros(dy, dy, **kw) if yy else None
        self.C = torch.zeros(dx, dy, **kw)
        ss_x = torch.zeros((), **kw)
        ss_y = torch.zeros((), **kw)
        for b in _blocks(x.shape[0], max(dx, dy)):
            xb = _normalize(x[b], steps_x, self.means_x)[0]
            yb = _normalize(y[b], steps_y, self.means_y)[0]
            if self.G is not None:
                self.G.addmm_(xb.T, xb)
            if self.H is not None:
                self.H.addmm_(yb.T, yb)
            self.C.addmm_(xb.T, yb)
            ss_x += torch.linalg.vector_norm(xb).square()
            ss_y += torch.linalg.vector_norm(yb).square()
        # exact symmetry (addmm rounds the two triangles independently)
        for name in ("G", "H"):
            M = getattr(self, name)
            if M is not None:
                setattr(self, name, (M + M.T) / 2)
        self.ss_x, self.ss_y = float(ss_x), float(ss_y)


def _kept_eig(G: torch.Tensor, n: int, dtype: torch.dtype, *, check: bool) -> tuple[torch.Tensor, torch.Tensor, bool]:
    """``(λ, V, ok)``: eigenpairs of the Gram matrix G with ``λ > rtol·λ₁`` (:func:`_gram_rtol` for input
    dtype ``dtype``), and whether the auto check passed (always True when ``check`` is False)."""
    lam, V = _eigh_desc(G)
    rtol = _gram_rtol(n, G.shape[0], dtype)
    ok = not check or _gram_resolves(lam, rtol, n, G.shape[0])
    keep = lam > rtol * float(lam[0]) if float(lam[0]) > 0.0 else torch.zeros_like(lam, dtype=torch.bool)
    return lam[keep], V[:, keep], ok


# ----------------------------------------------------------------------------------------- Procrustes


@register_aligner("procrustes", constraints={"solver": {"choices": SOLVERS}})
class Procrustes(Aligner):
    """Orthogonal Procrustes: ``R = argmin_{RᵀR=I} ‖XR − Y‖_F = UVᵀ`` with ``UΣVᵀ = svd(XᵀY)``.

    Schönemann, "A generalized solution of the orthogonal Procrustes problem", Psychometrika 1966; as a
    word-translation map, Conneau, Lample, Ranzato, Denoyer, Jégou, "Word Translation Without Parallel
    Data", ICLR 2018 (MUSE).

    Preprocessing, applied in this order to training and new rows alike: ``normalize`` (rows to unit L2
    norm), then ``center`` (subtract the training mean of each side). ``scale=True`` adds the optimal
    isotropic factor ``s = tr Σ / ‖X‖_F²`` (Procrustes analysis with dilation; irrelevant for cosine).

    Unequal widths (d_x ≠ d_y): R is the d_x × d_y semi-orthogonal factor of the thin SVD. With d_x > d_y it
    has orthonormal columns (RᵀR = I, the exact constrained optimum); with d_x < d_y orthonormal rows
    (RRᵀ = I), so XR spans a d_x-dimensional subspace of Y's space. This equals zero-padding the narrower
    side and dropping the padded coordinates.

    Computed from ``C = x̃ᵀỹ`` accumulated over row blocks (the preprocessed n × d matrices are never formed)
    and a d_x × d_y LAPACK SVD; ``‖x̃‖_F²`` in the same pass.

    Learned: ``rotation_`` (d_x × d_y), ``mean_x_``, ``mean_y_`` (zeros unless ``center``), ``scale_``.
    Shared space = Y's (preprocessed) coordinates; ``translate(X) = s·prep(X)·R + mean_y_``.
    """

    _arrays: ClassVar[tuple[str, ...]] = ("rotation_", "mean_x_", "mean_y_")
    _scalars: ClassVar[tuple[str, ...]] = ("scale_",)
    _shapes: ClassVar[dict[str, tuple[str | int, ...]]] = {
        "rotation_": ("d_x", "d_y"), "mean_x_": ("d_x",), "mean_y_": ("d_y",), "scale_": ()
    }  # fmt: skip

    def __init__(
        self, center: bool = False, scale: bool = False, normalize: bool = False, solver: str = "auto"
    ) -> None:
        self.center = center
        self.scale = scale
        self.normalize = normalize
        self.solver = solver

    def _prep(self, t: torch.Tensor, mean: torch.Tensor | None) -> torch.Tensor:
        if self._hp["normalize"]:
            t = unit_rows(t)
        if mean is not None:
            t = t - mean
        return t

    def _fit(self, x: torch.Tensor, y: torch.Tensor, *, input_dtype: torch.dtype) -> None:
        center, scale, normalize = self._hp["center"], self._hp["scale"], self._hp["normalize"]
        if self._hp["solver"] == "svd":  # reference route: materialise the preprocessed matrices
            x = self._prep(x, None)
            y = self._prep(y, None)
            mx = x.mean(dim=0) if center else torch.zeros_like(x[0])
            my = y.mean(dim=0) if center else torch.zeros_like(y[0])
            x, y = x - mx, y - my
            R, s = _procrustes_rotation(x, y)
            xx = float((x * x).sum())
        else:  # the same closed form from C = x̃ᵀỹ accumulated over row blocks (any n)
            steps = ("unit",) * normalize + ("center",) * center
            P = _Products(x, y, steps, steps, xx=False, yy=False)
            mx = P.means_x[0] if center else torch.zeros_like(x[0])
            my = P.means_y[0] if center else torch.zeros_like(y[0])
            U, s, Vh = _svd_small(P.C)
            R, xx = U @ Vh, P.ss_x
        if xx == 0.0:
            raise ValueError("Procrustes: X has no variance after preprocessing (all rows zero or identical)")
        self.rotation_ = _np(R)
        self.mean_x_ = _np(mx)
        self.mean_y_ = _np(my)
        self.scale_ = float(s.sum()) / xx if scale else 1.0

    def _transform_x(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale_ * self._prep(x, self._state("mean_x_", x.device)) @ self._state("rotation_", x.device)

    def _transform_y(self, y: torch.Tensor) -> torch.Tensor:
        return self._prep(y, self._state("mean_y_", y.device))

    def _translate(self, x: torch.Tensor) -> torch.Tensor:
        return self._transform_x(x) + self._state("mean_y_", x.device)


# --------------------------------------------------------------------------------------------- VecMap


def _sqrt_gram(t: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """``((tᵀt)^{-1/2}, (tᵀt)^{1/2})`` from the thin SVD of t; directions with zero singular value are
    dropped (a pseudo-inverse when n < d)."""
    _, s, Vh = torch.linalg.svd(t, full_matrices=False)
    keep = s > _rank_tol(s, tuple(t.shape), dtype)
    V, s = Vh[keep].T, s[keep]
    return (V / s) @ V.T, (V * s) @ V.T


def _normalize_steps(value: Any) -> tuple[str, ...]:
    steps = (value,) if isinstance(value, str) else tuple(value)
    for step in steps:
        check_choice(step, NORMALIZE_STEPS, "normalize step")
    return steps


@register_aligner(
    "vecmap",
    constraints={
        "reweight": {"low": 0.0},
        "dim": {"low": 1},
        "normalize": {"validator": _normalize_steps},
        "solver": {"choices": SOLVERS},
    },
)
class VecMap(Aligner):
    """Artetxe, Labaka, Agirre's multi-step linear mapping (the supervised vecmap framework), docs/methods.md §4.2.

    "Generalizing and improving bilingual word embedding mappings with a multi-step framework of linear
    transformations", AAAI 2018; code artetxem/vecmap ``map_embeddings.py`` (also used by "A robust
    self-learning method for fully unsupervised cross-lingual mappings of word embeddings", ACL 2018).

    On the training pairs, after the ``normalize`` steps ("unit": rows to unit norm; "center": subtract
    the training mean; default unit, center, unit):

    1. whiten each side: ``W_x1 = (X_dᵀX_d)^{-1/2}`` (via SVD; pseudo-inverse when n < d), likewise W_y1;
    2. orthogonal map: ``svd(X_wᵀY_w) = U S Vᵀ``, ``W_x2 = U``, ``W_y2 = V``;
    3. re-weight both sides by ``S^reweight``;
    4. de-whiten each side with its own statistics: ``W_x2ᵀ W_x1^{-1} W_x2`` (W_x1^{-1} = (X_dᵀX_d)^{1/2});
    5. keep the first ``dim`` coordinates (all when None).

    Full maps ``map_x_ = W_x1 U diag(S^reweight) UᵀW_x1^{-1}U`` (then truncated), likewise ``map_y_``.
    With ``whiten=False, reweight=0, dewhiten=False, normalize=()`` the similarities ``XU(YV)ᵀ`` equal
    Procrustes' ``X·UVᵀ·Yᵀ``. Unequal widths use the thin SVD (k = min(d_x, d_y) shared coordinates).
    The means for "center" come from the training pairs (vecmap uses the whole vocabulary).

    Gram path (n ≥ 2·max(d_x, d_y), or ``whiten=False``): ``eigh(X_dᵀX_d) = V diag(λ) Vᵀ`` gives
    ``W_x1 = V diag(λ^{-1/2}) Vᵀ`` and ``W_x1^{-1} = V diag(λ^{1/2}) Vᵀ`` over ``λ > rtol·λ₁`` (module
    docstring), and step 2 is the SVD of ``W_x1 (X_dᵀY_d) W_y1``.
    """

    _arrays: ClassVar[tuple[str, ...]] = ("map_x_", "map_y_", "centers_x_", "centers_y_", "singular_values_")
    _shapes: ClassVar[dict[str, tuple[str | int, ...]]] = {
        "map_x_": ("d_x", "k"), "map_y_": ("d_y", "k"), "centers_x_": ("c", "d_x"), "centers_y_": ("c", "d_y"),
        "singular_values_": ("s",),
    }  # fmt: skip

    def __init__(
        self,
        whiten: bool = True,
        reweight: float = 0.5,
        dewhiten: bool = True,
        normalize: tuple[str, ...] = ("unit", "center", "unit"),
        dim: int | None = None,
        solver: str = "auto",
    ) -> None:
        self.whiten = whiten
        self.reweight = reweight
        self.dewhiten = dewhiten
        self.normalize = normalize
        self.dim = dim
        self.solver = solver

    def _steps(self) -> tuple[str, ...]:
        return self._hp["normalize"]  # type: ignore[no-any-return]

    def _fit(self, x: torch.Tensor, y: torch.Tensor, *, input_dtype: torch.dtype) -> None:
        hp = self._hp
        whiten, dewhiten, p, dim, steps, solver = (
            hp["whiten"], hp["dewhiten"], hp["reweight"], hp["dim"], hp["normalize"], hp["solver"]
        )  # fmt: skip
        n, dx, dy = x.shape[0], x.shape[1], y.shape[1]
        gram = solver == "gram" or (solver == "auto" and (n >= _GRAM_MIN_RATIO * max(dx, dy) or not whiten))
        if gram:
            P = _Products(x, y, steps, steps, xx=whiten, yy=whiten)
            mx, my = P.means_x, P.means_y
            if whiten:
                lx, Vx, okx = _kept_eig(P.G, n, input_dtype, check=solver == "auto")
                ly, Vy, oky = _kept_eig(P.H, n, input_dtype, check=solver == "auto")
                gram = okx and oky
                if gram:
                    sx, sy = lx.sqrt(), ly.sqrt()
                    wx1, dxm = (Vx / sx) @ Vx.T, (Vx * sx) @ Vx.T
                    wy1, dym = (Vy / sy) @ Vy.T, (Vy * sy) @ Vy.T
                    M = wx1 @ P.C @ wy1  # (x̃W_x1)ᵀ(ỹW_y1), W symmetric
            else:
                wx1 = dxm = torch.eye(dx, dtype=x.dtype, device=x.device)
                wy1 = dym = torch.eye(dy, dtype=y.dtype, device=y.device)
                M = P.C
        if not gram:
            x, mx = _normalize(x, steps, None)
            y, my = _normalize(y, steps, None)
            if whiten:
                wx1, dxm = _sqrt_gram(x, input_dtype)
                wy1, dym = _sqrt_gram(y, input_dtype)
            else:
                wx1 = dxm = torch.eye(dx, dtype=x.dtype, device=x.device)
                wy1 = dym = torch.eye(dy, dtype=y.dtype, device=y.device)
            M = (x @ wx1).T @ (y @ wy1)
        self._path = "gram" if gram else "svd"
        U, s, Vh = _svd_small(M) if gram else torch.linalg.svd(M, full_matrices=False)
        V = Vh.T
        k = s.numel()
        if dim is not None and dim > k:
            raise ValueError(f"dim={dim} exceeds the {k} shared coordinates (min(d_x, d_y))")
        w = s.clamp_min(0.0) ** p if p != 0.0 else torch.ones_like(s)
        map_x = wx1 @ U * w
        map_y = wy1 @ V * w
        if dewhiten:
            map_x = map_x @ (U.T @ dxm @ U)
            map_y = map_y @ (V.T @ dym @ V)
        if dim is not None:
            map_x, map_y = map_x[:, :dim], map_y[:, :dim]
        self.map_x_ = _np(map_x)
        self.map_y_ = _np(map_y)
        self.centers_x_ = _np(torch.stack(mx)) if mx else np.zeros((0, dx))
        self.centers_y_ = _np(torch.stack(my)) if my else np.zeros((0, dy))
        self.singular_values_ = _np(s)

    def _transform_x(self, x: torch.Tensor) -> torch.Tensor:
        t, _ = _normalize(x, self._steps(), self._state("centers_x_", x.device))
        return t @ self._state("map_x_", x.device)

    def _transform_y(self, y: torch.Tensor) -> torch.Tensor:
        t, _ = _normalize(y, self._steps(), self._state("centers_y_", y.device))
        return t @ self._state("map_y_", y.device)


# ------------------------------------------------------------------------------------------------ CCA


@register_aligner("cca", constraints={"n_components": {"low": 1}, "reg": {"low": 0.0}, "solver": {"choices": SOLVERS}})
class CCAAligner(Aligner):
    """Canonical correlation analysis as an aligner: both sides map to k canonical variates.

    ``W_x = (C_xx + reg·I)^{-1/2}U_k``, ``W_y = (C_yy + reg·I)^{-1/2}V_k`` from
    ``svd((C_xx + reg·I)^{-1/2} C_xy (C_yy + reg·I)^{-1/2}) = U diag(ρ) Vᵀ``, with ``C = X_cᵀX_c/n`` on the
    centred training pairs — the same convention (``reg`` absolute, divisor n) and rank rule as
    :func:`alignkit.metrics.canonical_correlations`, so ``correlations_`` equals its first k values.
    Computed from the thin SVDs ``X_c = U_x S_x V_xᵀ`` without forming inverse square roots.
    On the training pairs the mapped covariance is ``diag(s²/(s² + n·reg))`` (= I when reg = 0) and the
    cross-covariance is ``diag(ρ)``. Hotelling, "Relations between two sets of variates", Biometrika 1936.

    Gram path (n ≥ 2·max(d_x, d_y)): ``eigh(X_cᵀX_c) = V_x diag(λ_x) V_xᵀ`` (λ = s², kept by the module's
    rank rule), ``(C_xx + reg·I)^{-1/2} = V_x diag((λ_x/n + reg)^{-1/2})`` on the span, and ρ, A, B from the SVD
    of ``diag((λ_x + n·reg)^{-1/2}) V_xᵀ X_cᵀY_c V_y diag((λ_y + n·reg)^{-1/2})`` — the same matrix
    ``F_xᵀF_y`` as the SVD path (``U_xᵀU_y = S_x⁻¹V_xᵀX_cᵀY_cV_yS_y⁻¹``), so ``reg`` means the same on both.

    ``n_components`` : k, at most min(rank X_c, rank Y_c) (the default). Learned: ``weights_x_`` (d_x × k),
    ``weights_y_``, ``mean_x_``, ``mean_y_``, ``correlations_`` (k, descending).
    """

    _arrays: ClassVar[tuple[str, ...]] = ("weights_x_", "weights_y_", "mean_x_", "mean_y_", "correlations_")
    _shapes: ClassVar[dict[str, tuple[str | int, ...]]] = {
        "weights_x_": ("d_x", "k"), "weights_y_": ("d_y", "k"), "mean_x_": ("d_x",), "mean_y_": ("d_y",),
        "correlations_": ("k",),
    }  # fmt: skip
    _min_pairs: ClassVar[int] = 3

    def __init__(self, n_components: int | None = None, reg: float = 1e-6, solver: str = "auto") -> None:
        self.n_components = n_components
        self.reg = reg
        self.solver = solver

    def _fit(self, x: torch.Tensor, y: torch.Tensor, *, input_dtype: torch.dtype) -> None:
        k_req, reg, solver = self._hp["n_components"], self._hp["reg"], self._hp["solver"]
        n = x.shape[0]
        names = ("X", "Y")
        gram = solver == "gram" or (solver == "auto" and n >= _GRAM_MIN_RATIO * max(x.shape[1], y.shape[1]))
        if gram:
            P = _Products(x, y, ("center",), ("center",), xx=True, yy=True)
            mx, my = P.means_x[0], P.means_y[0]
            sides = [_kept_eig(G, n, input_dtype, check=solver == "auto") for G in (P.G, P.H)]
            gram = all(ok for _, _, ok in sides)
        if gram:
            scaled, whiteners = [], []
            for (lam, V, _), name in zip(sides, names, strict=True):
                if lam.numel() == 0:
                    raise ValueError(f"CCAAligner: {name} is constant across the training pairs (no variance)")
                scaled.append(V / torch.sqrt(lam + n * reg))  # V diag((λ + n·reg)^{-1/2})
                whiteners.append(V / torch.sqrt(lam / n + reg))
            A, rho, Bh = _svd_small(scaled[0].T @ P.C @ scaled[1])
            (Px, Py) = whiteners
        else:
            mx, my = x.mean(dim=0), y.mean(dim=0)
            factors, whiteners = [], []
            for t, name in ((x - mx, "X"), (y - my, "Y")):
                U, s, Vh = torch.linalg.svd(t, full_matrices=False)
                r = int((s > _rank_tol(s, tuple(t.shape), input_dtype)).sum())
                if r == 0:
                    raise ValueError(f"CCAAligner: {name} is constant across the training pairs (no variance)")
                U, s, V = U[:, :r], s[:r], Vh[:r].T
                factors.append(U * (s / torch.sqrt(s * s + n * reg)))
                # (C + reg·I)^{-1/2} restricted to the data span: V diag((s²/n + reg)^{-1/2})
                whiteners.append(V / torch.sqrt(s * s / n + reg))
            A, rho, Bh = torch.linalg.svd(factors[0].T @ factors[1], full_matrices=False)
            (Px, Py) = whiteners
        self._path = "gram" if gram else "svd"
        k_max = rho.numel()
        if k_req is not None and k_req > k_max:
            raise ValueError(
                f"n_components={k_req} exceeds min(rank X_c, rank Y_c) = {k_max} canonical directions "
                f"(ranks on {n} centred pairs)"
            )
        k = k_max if k_req is None else k_req
        self.weights_x_ = _np(Px @ A[:, :k])
        self.weights_y_ = _np(Py @ Bh[:k].T)
        self.mean_x_ = _np(mx)
        self.mean_y_ = _np(my)
        self.correlations_ = _np(rho[:k].clamp(0.0, 1.0))

    def _transform_x(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self._state("mean_x_", x.device)) @ self._state("weights_x_", x.device)

    def _transform_y(self, y: torch.Tensor) -> torch.Tensor:
        return (y - self._state("mean_y_", y.device)) @ self._state("weights_y_", y.device)


# ---------------------------------------------------------------------------------------------- Ridge


@register_aligner("ridge", constraints={"alpha": {"low": 0.0}, "solver": {"choices": SOLVERS}})
class Ridge(Aligner):
    """Ridge (affine) map X → Y: ``W = (X_cᵀX_c + λI)^{-1}X_cᵀY_c``, ``b = ȳ − x̄W``.

    Fitted from one thin SVD ``X_c = U S Vᵀ`` as ``W = V diag(s/(s² + λ)) UᵀY_c``, which equals the primal
    form and the dual ``X_cᵀ(X_cX_cᵀ + λI)^{-1}Y_c`` (used when n < d) for any n, d; ``alpha=0`` gives the
    minimum-norm least-squares map. ``alpha=None`` picks λ by generalised cross-validation
    (:func:`alignkit.metrics.predictive.ridge_gcv_alpha`: Golub, Heath, Wahba, Technometrics 1979; grid
    relative to the spectrum of X_c; with ``fit_intercept=False`` the GCV curve is still the centred one).
    Hoerl & Kennard, "Ridge regression: biased estimation for nonorthogonal problems", Technometrics 1970.

    Gram path (n ≥ 2·d_x): ``eigh(X_cᵀX_c) = V diag(s²) Vᵀ`` and ``C = X_cᵀY_c``, then
    ``W = V diag(1/(s² + λ)) VᵀC`` and, with ``p_i = ‖(VᵀC)_i‖²/s_i²`` (the energy of Y_c along u_i),
    ``GCV(λ) = n·[‖Y_c‖² − Σ p_i + Σ (λ/(s_i² + λ))² p_i] / (n − 1 − Σ s_i²/(s_i² + λ))²`` on the same grid.

    Learned: ``coef_`` (d_x × d_y), ``intercept_`` (d_y; zeros without intercept), ``alpha_``.
    Shared space = Y's coordinates: ``transform_x = translate = XW + b``, ``transform_y`` is the identity.
    """

    _arrays: ClassVar[tuple[str, ...]] = ("coef_", "intercept_")
    _scalars: ClassVar[tuple[str, ...]] = ("alpha_",)
    _shapes: ClassVar[dict[str, tuple[str | int, ...]]] = {
        "coef_": ("d_x", "d_y"),
        "intercept_": ("d_y",),
        "alpha_": (),
    }
    _min_pairs: ClassVar[int] = 3

    def __init__(self, alpha: float | None = None, fit_intercept: bool = True, solver: str = "auto") -> None:
        self.alpha = alpha
        self.fit_intercept = fit_intercept
        self.solver = solver

    def _fit(self, x: torch.Tensor, y: torch.Tensor, *, input_dtype: torch.dtype) -> None:
        intercept, lam, solver = self._hp["fit_intercept"], self._hp["alpha"], self._hp["solver"]
        n, d = x.shape
        if solver == "gram" or (solver == "auto" and n >= _GRAM_MIN_RATIO * d):
            fitted = self._fit_gram(x, y, lam, intercept, check=solver == "auto")
            if fitted is not None:
                W, mx, my, lam = fitted
                self._path = "gram"
                self._store(W, mx, my, lam)
                return
        self._path = "svd"
        mx = x.mean(dim=0) if intercept else torch.zeros_like(x[0])
        my = y.mean(dim=0) if intercept else torch.zeros_like(y[0])
        xc, yc = x - mx, y - my
        U, s, Vh = torch.linalg.svd(xc, full_matrices=False)
        if lam is None:
            if intercept:  # the same GCV as ridge_gcv_alpha, reusing this SVD
                s2 = s * s
                grid = _alpha_grid(s2, None)
                curve = _gcv_curve(s2, U.T @ yc, float((yc * yc).sum()), x.shape[0], grid)
                lam = float(grid[int(torch.argmin(curve))])
            else:
                lam = ridge_gcv_alpha(x, y)
        if lam > 0:
            f = s / (s * s + lam)
        else:
            tol = _rank_tol(s, tuple(xc.shape), torch.float64)
            f = torch.where(s > tol, 1.0 / s.clamp_min(1e-300), torch.zeros_like(s))
        self._store((Vh.T * f) @ (U.T @ yc), mx, my, lam)

    def _store(self, W: torch.Tensor, mx: torch.Tensor, my: torch.Tensor, lam: float) -> None:
        self.coef_ = _np(W)
        self.intercept_ = _np(my - mx @ W)
        self.alpha_ = float(lam)

    def _fit_gram(
        self, x: torch.Tensor, y: torch.Tensor, lam: float | None, intercept: bool, *, check: bool
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, float] | None:
        """``(W, x̄, ȳ, λ)`` from the centred products ``G_c = X_cᵀX_c``, ``C_c = X_cᵀY_c`` (row blocks), or
        None when ``check`` finds the spectrum of G unresolved (the caller then takes the SVD path).

        With ``eigh(G_c) = V diag(s²) Vᵀ``: ``UᵀY_c = diag(1/s) VᵀC_c``, so the GCV curve of
        :func:`alignkit.metrics.predictive._gcv_curve` (eigenvalues above ε_G·s₁²; the energy of Y_c in the
        dropped directions counts as unexplained) is evaluated without U. Without an intercept the fit uses
        ``G = G_c + n·x̄x̄ᵀ``, ``C = C_c + n·x̄ȳᵀ`` (a sum: no cancellation) while GCV stays the centred one.
        ``W = V diag(1/(max(s², 0) + λ)) VᵀC`` over all eigenpairs for λ > 0, and over ``s² > ε_G·s₁²`` for λ = 0.
        """
        n, d = x.shape
        P = _Products(x, y, ("center",), ("center",), xx=True, yy=False)
        mx, my = P.means_x[0], P.means_y[0]
        s2, V = _eigh_desc(P.G)
        eps_g = _gram_eps(n, d)
        if lam is None:
            keep = s2 > eps_g * float(s2[0]) if float(s2[0]) > 0 else torch.zeros_like(s2, dtype=torch.bool)
            s2k, Vk = s2[keep], V[:, keep]
            grid = _alpha_grid(s2k, None)
            if check and not _gram_resolves(s2, 0.0, n, d, shift=float(grid[0])):
                return None
            UtY = (Vk.T @ P.C) / s2k.sqrt()[:, None]
            curve = _gcv_curve(s2k, UtY, P.ss_y, n, grid)
            lam = float(grid[int(torch.argmin(curve))])
        elif check and not _gram_resolves(s2, 0.0, n, d, shift=lam):
            return None
        G, C = P.G, P.C
        if not intercept:
            G = G + n * torch.outer(mx, mx)
            C = C + n * torch.outer(mx, my)
            s2, V = _eigh_desc((G + G.T) / 2)
            if check and not _gram_resolves(s2, 0.0, n, d, shift=lam):
                return None
            mx, my = torch.zeros_like(mx), torch.zeros_like(my)
        if lam > 0:
            f = 1.0 / (s2.clamp_min(0.0) + lam)
        else:
            keep = s2 > eps_g * float(s2[0]) if float(s2[0]) > 0 else torch.zeros_like(s2, dtype=torch.bool)
            f = torch.where(keep, 1.0 / s2.clamp_min(1e-300), torch.zeros_like(s2))
        return (V * f) @ (V.T @ C), mx, my, lam

    def _translate(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self._state("coef_", x.device) + self._state("intercept_", x.device)

    def _transform_x(self, x: torch.Tensor) -> torch.Tensor:
        return self._translate(x)

    def _transform_y(self, y: torch.Tensor) -> torch.Tensor:
        return y


# ----------------------------------------------------------------------------------------------- ASIF


@register_aligner("asif", constraints={"n_anchors": {"low": 1}, "k": {"low": 1}, "p": {"low": 0.0, "low_open": True}})
class ASIF(Aligner):
    """Training-free alignment through relative representations over paired anchors.

    ``r(x) = [cos(x, a_i)]_{i ≤ N}`` over the anchors ``a_i`` of x's own space (Moschella, Maiorca, Fumero,
    Norelli, Locatello, Rodolà, "Relative representations enable zero-shot latent space communication",
    ICLR 2023); ASIF sparsifies it: keep the top ``k`` entries (others 0), clamp negatives to 0 (so the
    power is defined for fractional p), raise to ``p``, L2-renormalise, and scores pairs by ``r_X(x)·r_Y(y)``
    (Norelli, Fumero, Maiorca, Moschella, Rodolà, Locatello, "ASIF: Coupled Data Turns Unimodal Models to
    Multimodal without Training", NeurIPS 2023). The shared space has one coordinate per anchor pair.

    ``n_anchors`` : use the first n training pairs as anchors (None: all). ``k`` is capped at the number
    of anchors. Rows whose kept cosines are all ≤ 0 get the zero code. Invariant to rotating and rescaling
    either space. Learned: ``anchors_x_``, ``anchors_y_`` (unit rows).
    """

    _arrays: ClassVar[tuple[str, ...]] = ("anchors_x_", "anchors_y_")
    _shapes: ClassVar[dict[str, tuple[str | int, ...]]] = {"anchors_x_": ("m", "d_x"), "anchors_y_": ("m", "d_y")}

    def __init__(self, n_anchors: int | None = None, k: int = 800, p: float = 8.0) -> None:
        self.n_anchors = n_anchors
        self.k = k
        self.p = p

    def _fit(self, x: torch.Tensor, y: torch.Tensor, *, input_dtype: torch.dtype) -> None:
        n_anchors = self._hp["n_anchors"]
        if n_anchors is not None and n_anchors > x.shape[0]:
            raise ValueError(f"n_anchors={n_anchors} exceeds the {x.shape[0]} training pairs")
        m = x.shape[0] if n_anchors is None else n_anchors
        self.anchors_x_ = _np(unit_rows(x[:m]))
        self.anchors_y_ = _np(unit_rows(y[:m]))

    def _codes(self, t: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
        sims = unit_rows(t) @ anchors.T
        k = min(self._hp["k"], anchors.shape[0])
        if k < anchors.shape[0]:
            vals, idx = sims.topk(k, dim=1)
            sims = torch.zeros_like(sims).scatter_(1, idx, vals)
        codes = sims.clamp_min(0.0) ** self._hp["p"]
        return unit_rows(codes)

    def _transform_x(self, x: torch.Tensor) -> torch.Tensor:
        return self._codes(x, self._state("anchors_x_", x.device))

    def _transform_y(self, y: torch.Tensor) -> torch.Tensor:
        return self._codes(y, self._state("anchors_y_", y.device))
