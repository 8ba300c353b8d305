"""Closed-form and training-free aligners: Procrustes, VecMap, CCA, ridge and ASIF (METHODS §4.1–4.5).

Every aligner is fitted on paired rows only (``fit(X, Y)``) and follows :class:`alignkit.align.base.Aligner`.
All linear algebra is float64.
"""

from __future__ import annotations

import math
from typing import ClassVar

import numpy as np
import torch

from alignkit._validation import check_choice
from alignkit.align.base import Aligner, unit_rows
from alignkit.metrics.predictive import _alpha_grid, _gcv_curve, ridge_gcv_alpha

NORMALIZE_STEPS: tuple[str, ...] = ("unit", "center")


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy()


def _check_bool(value: object, name: str) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False; got {value!r}")
    return bool(value)


def _check_number(value: object, name: str, *, minimum: float = 0.0, strict: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a number; got {value!r}")
    v = float(value)
    if not math.isfinite(v) or v < minimum or (strict and v == minimum):
        raise ValueError(f"{name} must be a finite number {'>' if strict else '>='} {minimum}; got {value!r}")
    return v


def _check_count(value: object, name: str, *, allow_none: bool = True) -> int | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer{' or None' if allow_none else ''}; got {value!r}")
    return int(value)


def _rank_tol(s: torch.Tensor, shape: tuple[int, ...], dtype: torch.dtype) -> float:
    """numpy's matrix_rank rule ``max(n, d)·eps·s_1`` with eps of the input dtype."""
    return float(max(shape) * torch.finfo(dtype).eps * (s[0] if s.numel() else 0.0))


def _procrustes_rotation(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(R, σ)``: ``R = UVᵀ`` from the thin SVD ``aᵀb = UΣVᵀ``, and σ = diag Σ."""
    U, s, Vh = torch.linalg.svd(a.T @ b, full_matrices=False)
    return U @ Vh, s


# ----------------------------------------------------------------------------------------- Procrustes


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

    Learned: ``rotation_`` (d_x × d_y), ``mean_x_``, ``mean_y_`` (zeros unless ``center``), ``scale_``.
    Shared space = Y's (preprocessed) coordinates; ``translate(X) = s·prep(X)·R + mean_y_``.
    """

    _arrays: ClassVar[tuple[str, ...]] = ("rotation_", "mean_x_", "mean_y_")
    _scalars: ClassVar[tuple[str, ...]] = ("scale_",)

    def __init__(self, center: bool = False, scale: bool = False, normalize: bool = False) -> None:
        self.center = center
        self.scale = scale
        self.normalize = normalize

    def _prep(self, t: torch.Tensor, mean: torch.Tensor | None) -> torch.Tensor:
        if self.normalize:
            t = unit_rows(t)
        if mean is not None:
            t = t - mean
        return t

    def _fit(self, x: torch.Tensor, y: torch.Tensor, *, input_dtype: torch.dtype) -> None:
        center = _check_bool(self.center, "center")
        scale = _check_bool(self.scale, "scale")
        _check_bool(self.normalize, "normalize")
        x = self._prep(x, None)
        y = self._prep(y, None)
        mx = x.mean(dim=0) if center else torch.zeros_like(x[0])
        my = y.mean(dim=0) if center else torch.zeros_like(y[0])
        x, y = x - mx, y - my
        R, s = _procrustes_rotation(x, y)
        xx = float((x * x).sum())
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


def _normalize(t: torch.Tensor, steps: tuple[str, ...], means: torch.Tensor | None) -> tuple[torch.Tensor, list]:
    """Apply vecmap's normalisation steps in order; ``means`` (one row per "center" step) are computed
    from ``t`` when None (fitting) and reused otherwise."""
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


def _sqrt_gram(t: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """``((tᵀt)^{-1/2}, (tᵀt)^{1/2})`` from the thin SVD of t; directions with zero singular value are
    dropped (a pseudo-inverse when n < d)."""
    _, s, Vh = torch.linalg.svd(t, full_matrices=False)
    keep = s > _rank_tol(s, tuple(t.shape), dtype)
    V, s = Vh[keep].T, s[keep]
    return (V / s) @ V.T, (V * s) @ V.T


class VecMap(Aligner):
    """Artetxe, Labaka, Agirre's multi-step linear mapping (the supervised vecmap framework), METHODS §4.2.

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
    """

    _arrays: ClassVar[tuple[str, ...]] = ("map_x_", "map_y_", "centers_x_", "centers_y_", "singular_values_")

    def __init__(
        self,
        whiten: bool = True,
        reweight: float = 0.5,
        dewhiten: bool = True,
        normalize: tuple[str, ...] = ("unit", "center", "unit"),
        dim: int | None = None,
    ) -> None:
        self.whiten = whiten
        self.reweight = reweight
        self.dewhiten = dewhiten
        self.normalize = normalize
        self.dim = dim

    def _steps(self) -> tuple[str, ...]:
        steps = (self.normalize,) if isinstance(self.normalize, str) else tuple(self.normalize)
        for s in steps:
            check_choice(s, NORMALIZE_STEPS, "normalize step")
        return steps

    def _fit(self, x: torch.Tensor, y: torch.Tensor, *, input_dtype: torch.dtype) -> None:
        whiten = _check_bool(self.whiten, "whiten")
        dewhiten = _check_bool(self.dewhiten, "dewhiten")
        p = _check_number(self.reweight, "reweight")
        dim = _check_count(self.dim, "dim")
        steps = self._steps()
        x, mx = _normalize(x, steps, None)
        y, my = _normalize(y, steps, None)
        if whiten:
            wx1, dx = _sqrt_gram(x, input_dtype)
            wy1, dy = _sqrt_gram(y, input_dtype)
        else:
            wx1 = dx = torch.eye(x.shape[1], dtype=x.dtype, device=x.device)
            wy1 = dy = torch.eye(y.shape[1], dtype=y.dtype, device=y.device)
        U, s, Vh = torch.linalg.svd((x @ wx1).T @ (y @ wy1), full_matrices=False)
        V = Vh.T
        k = s.numel()
        if dim is not None and dim > k:
            raise ValueError(f"dim={dim} exceeds the {k} shared coordinates (min(d_x, d_y))")
        w = s.clamp_min(0.0) ** p if p != 0.0 else torch.ones_like(s)
        map_x = wx1 @ U * w
        map_y = wy1 @ V * w
        if dewhiten:
            map_x = map_x @ (U.T @ dx @ U)
            map_y = map_y @ (V.T @ dy @ V)
        if dim is not None:
            map_x, map_y = map_x[:, :dim], map_y[:, :dim]
        self.map_x_ = _np(map_x)
        self.map_y_ = _np(map_y)
        self.centers_x_ = _np(torch.stack(mx)) if mx else np.zeros((0, x.shape[1]))
        self.centers_y_ = _np(torch.stack(my)) if my else np.zeros((0, y.shape[1]))
        self.singular_values_ = _np(s)

    def _transform_x(self, x: torch.Tensor) -> torch.Tensor:
        t, _ = _normalize(x, self._steps(), self._state("centers_x_", x.device))
        return t @ self._state("map_x_", x.device)

    def _transform_y(self, y: torch.Tensor) -> torch.Tensor:
        t, _ = _normalize(y, self._steps(), self._state("centers_y_", y.device))
        return t @ self._state("map_y_", y.device)


# ------------------------------------------------------------------------------------------------ CCA


class CCAAligner(Aligner):
    """Canonical correlation analysis as an aligner: both sides map to k canonical variates.

    ``W_x = (C_xx + reg·I)^{-1/2}U_k``, ``W_y = (C_yy + reg·I)^{-1/2}V_k`` from
    ``svd((C_xx + reg·I)^{-1/2} C_xy (C_yy + reg·I)^{-1/2}) = U diag(ρ) Vᵀ``, with ``C = X_cᵀX_c/n`` on the
    centred training pairs — the same convention (``reg`` absolute, divisor n) and rank rule as
    :func:`alignkit.metrics.canonical_correlations`, so ``correlations_`` equals its first k values.
    Computed from the thin SVDs ``X_c = U_x S_x V_xᵀ`` without forming inverse square roots.
    On the training pairs the mapped covariance is ``diag(s²/(s² + n·reg))`` (= I when reg = 0) and the
    cross-covariance is ``diag(ρ)``. Hotelling, "Relations between two sets of variates", Biometrika 1936.

    ``n_components`` : k, at most min(rank X_c, rank Y_c) (the default). Learned: ``weights_x_`` (d_x × k),
    ``weights_y_``, ``mean_x_``, ``mean_y_``, ``correlations_`` (k, descending).
    """

    _arrays: ClassVar[tuple[str, ...]] = ("weights_x_", "weights_y_", "mean_x_", "mean_y_", "correlations_")
    _min_pairs: ClassVar[int] = 3

    def __init__(self, n_components: int | None = None, reg: float = 1e-6) -> None:
        self.n_components = n_components
        self.reg = reg

    def _fit(self, x: torch.Tensor, y: torch.Tensor, *, input_dtype: torch.dtype) -> None:
        k_req = _check_count(self.n_components, "n_components")
        reg = _check_number(self.reg, "reg")
        n = x.shape[0]
        mx, my = x.mean(dim=0), y.mean(dim=0)
        sides = []
        for t, name in ((x - mx, "X"), (y - my, "Y")):
            U, s, Vh = torch.linalg.svd(t, full_matrices=False)
            r = int((s > _rank_tol(s, tuple(t.shape), input_dtype)).sum())
            if r == 0:
                raise ValueError(f"CCAAligner: {name} is constant across the training pairs (no variance)")
            U, s, V = U[:, :r], s[:r], Vh[:r].T
            w = s / torch.sqrt(s * s + n * reg)
            # (C + reg·I)^{-1/2} restricted to the data span: V diag((s²/n + reg)^{-1/2})
            sides.append((U * w, V / torch.sqrt(s * s / n + reg)))
        (Fx, Px), (Fy, Py) = sides
        A, rho, Bh = torch.linalg.svd(Fx.T @ Fy, full_matrices=False)
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


class Ridge(Aligner):
    """Ridge (affine) map X → Y: ``W = (X_cᵀX_c + λI)^{-1}X_cᵀY_c``, ``b = ȳ − x̄W``.

    Fitted from one thin SVD ``X_c = U S Vᵀ`` as ``W = V diag(s/(s² + λ)) UᵀY_c``, which equals the primal
    form and the dual ``X_cᵀ(X_cX_cᵀ + λI)^{-1}Y_c`` (used when n < d) for any n, d; ``alpha=0`` gives the
    minimum-norm least-squares map. ``alpha=None`` picks λ by generalised cross-validation
    (:func:`alignkit.metrics.predictive.ridge_gcv_alpha`: Golub, Heath, Wahba, Technometrics 1979; grid
    relative to the spectrum of X_c; with ``fit_intercept=False`` the GCV curve is still the centred one).
    Hoerl & Kennard, "Ridge regression: biased estimation for nonorthogonal problems", Technometrics 1970.

    Learned: ``coef_`` (d_x × d_y), ``intercept_`` (d_y; zeros without intercept), ``alpha_``.
    Shared space = Y's coordinates: ``transform_x = translate = XW + b``, ``transform_y`` is the identity.
    """

    _arrays: ClassVar[tuple[str, ...]] = ("coef_", "intercept_")
    _scalars: ClassVar[tuple[str, ...]] = ("alpha_",)
    _min_pairs: ClassVar[int] = 3

    def __init__(self, alpha: float | None = None, fit_intercept: bool = True) -> None:
        self.alpha = alpha
        self.fit_intercept = fit_intercept

    def _fit(self, x: torch.Tensor, y: torch.Tensor, *, input_dtype: torch.dtype) -> None:
        intercept = _check_bool(self.fit_intercept, "fit_intercept")
        lam = None if self.alpha is None else _check_number(self.alpha, "alpha")
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
        W = (Vh.T * f) @ (U.T @ yc)
        self.coef_ = _np(W)
        self.intercept_ = _np(my - mx @ W)
        self.alpha_ = float(lam)

    def _translate(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self._state("coef_", x.device) + self._state("intercept_", x.device)

    def _transform_x(self, x: torch.Tensor) -> torch.Tensor:
        return self._translate(x)

    def _transform_y(self, y: torch.Tensor) -> torch.Tensor:
        return y


# ----------------------------------------------------------------------------------------------- ASIF


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

    def __init__(self, n_anchors: int | None = None, k: int = 800, p: float = 8.0) -> None:
        self.n_anchors = n_anchors
        self.k = k
        self.p = p

    def _fit(self, x: torch.Tensor, y: torch.Tensor, *, input_dtype: torch.dtype) -> None:
        n_anchors = _check_count(self.n_anchors, "n_anchors")
        _check_count(self.k, "k", allow_none=False)
        _check_number(self.p, "p", strict=True)
        if n_anchors is not None and n_anchors > x.shape[0]:
            raise ValueError(f"n_anchors={n_anchors} exceeds the {x.shape[0]} training pairs")
        m = x.shape[0] if n_anchors is None else n_anchors
        self.anchors_x_ = _np(unit_rows(x[:m]))
        self.anchors_y_ = _np(unit_rows(y[:m]))

    def _codes(self, t: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
        sims = unit_rows(t) @ anchors.T
        k = min(int(self.k), anchors.shape[0])
        if k < anchors.shape[0]:
            vals, idx = sims.topk(k, dim=1)
            sims = torch.zeros_like(sims).scatter_(1, idx, vals)
        codes = sims.clamp_min(0.0) ** float(self.p)
        return unit_rows(codes)

    def _transform_x(self, x: torch.Tensor) -> torch.Tensor:
        return self._codes(x, self._state("anchors_x_", x.device))

    def _transform_y(self, y: torch.Tensor) -> torch.Tensor:
        return self._codes(y, self._state("anchors_y_", y.device))
