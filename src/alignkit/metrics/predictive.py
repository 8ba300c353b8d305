"""Linear predictivity: cross-validated ridge regression from one space to the other, scored by held-out R².

Each fold centres its training items, takes one thin SVD ``X_c = U S Vᵀ`` and uses it both to pick λ by
generalised cross-validation over a log grid and to fit ``W = V diag(s/(s²+λ)) Uᵀ Y_c``, which equals the
primal ``(X_cᵀX_c + λI)^{-1}X_cᵀY_c`` and the dual ``X_cᵀ(X_cX_cᵀ + λI)^{-1}Y_c`` forms for any n, d.

Scale: X and Y are each divided by a power of two first (exact), so s² and ‖Y‖² never overflow or underflow.
R² ignores Y's scale, and ridge on X/c with λ/c² gives the same predictions as on X with λ, so an absolute
``alpha``/``alphas`` is converted to those units and the chosen λ reported back in the input's units.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from alignkit._common import pow2_rescale
from alignkit._lazy import lazy_module
from alignkit._validation import ArrayLike, as_pair, check_choice, check_min_rows
from alignkit.metrics._registry import register
from alignkit.metrics.prepared import PreparedMeasure

if TYPE_CHECKING:
    import torch
else:
    torch = lazy_module("torch")

DIRECTIONS: tuple[str, ...] = ("x_to_y", "y_to_x", "both")
SUMMARIES: tuple[str, ...] = ("pooled", "mean_column")
# Default GCV grid, relative to the mean non-zero squared singular value of the centred training X, so the
# chosen λ (and the score) does not depend on the scale of X.
GCV_RELATIVE_GRID: np.ndarray = 10.0 ** np.linspace(-6.0, 4.0, 41)


def _ldexp(value: float, k: int) -> float:
    """``value·2^k`` as a float (±inf past float64's range, never an OverflowError)."""
    try:
        return math.ldexp(value, k)
    except OverflowError:
        return math.copysign(math.inf, value)


def _penalties_in(alphas: Sequence[float] | None, k: int) -> Sequence[float] | None:
    """An absolute λ grid converted by 2^k (λ is in X's squared units); an invalid grid is left for
    :func:`_alpha_grid` to reject as the user gave it."""
    if alphas is None or k == 0:
        return alphas
    grid = np.asarray(alphas, dtype=np.float64).ravel()
    if grid.size == 0 or not np.all(np.isfinite(grid)) or np.any(grid <= 0):
        return alphas
    return [_ldexp(float(a), k) for a in grid]


def kfold_splits(n: int, n_folds: int, seed: int = 0) -> list[np.ndarray]:
    """Test indices of each fold: a permutation from ``numpy.random.default_rng(seed)`` cut into
    ``n_folds`` contiguous chunks (sizes differ by at most one, larger chunks first)."""
    perm = np.random.default_rng(seed).permutation(n)
    return np.array_split(perm, n_folds)


def _alpha_grid(s2: torch.Tensor, alphas: Sequence[float] | None) -> torch.Tensor:
    if alphas is not None:
        grid = torch.as_tensor(np.asarray(alphas, dtype=np.float64).ravel(), device=s2.device)
        if grid.numel() == 0 or not bool(torch.isfinite(grid).all()) or bool((grid <= 0).any()):
            raise ValueError(f"alphas must be a non-empty list of positive finite numbers; got {alphas!r}")
        return grid
    pos = s2[s2 > s2.max() * 1e-24] if s2.numel() else s2
    scale = float(pos.mean()) if pos.numel() else 1.0
    return torch.as_tensor(GCV_RELATIVE_GRID * scale, dtype=torch.float64, device=s2.device)


def _gcv_curve(s2: torch.Tensor, UtY: torch.Tensor, yy: float, n: int, grid: torch.Tensor) -> torch.Tensor:
    """GCV(λ) = n·RSS(λ)/tr(I − A_λ)² (Golub, Heath, Wahba 1979) with A_λ = 11ᵀ/n + X_c(X_cᵀX_c+λI)^{-1}X_cᵀ.

    The intercept counts as one fitted parameter: ``tr(I − A_λ) = n − 1 − Σ s²/(s²+λ)``.
    RSS is pooled over output columns (one λ for all outputs).
    """
    proj = (UtY * UtY).sum(dim=1)  # energy of Y_c along each left singular vector
    outside = max(yy - float(proj.sum()), 0.0)
    shrink = grid[:, None] / (s2[None, :] + grid[:, None])
    rss = outside + (shrink * shrink * proj[None, :]).sum(dim=1)
    dof = n - 1.0 - (s2[None, :] / (s2[None, :] + grid[:, None])).sum(dim=1)
    return n * rss / dof**2


class _FoldX:
    """One fold's centred training X and its thin SVD: the part of a fit that does not depend on Y."""

    def __init__(self, x: torch.Tensor) -> None:
        self.xm = x.mean(dim=0, keepdim=True)
        self.n = x.shape[0]
        self.U, self.s, self.Vh = torch.linalg.svd(x - self.xm, full_matrices=False)


class _Fold:
    """One centred training set and its thin SVD (``fx``: X's part, reused across targets when given)."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, fx: _FoldX | None = None) -> None:
        fx = _FoldX(x) if fx is None else fx
        self.xm, self.n, self.U, self.s, self.Vh = fx.xm, fx.n, fx.U, fx.s, fx.Vh
        self.ym = y.mean(dim=0, keepdim=True)
        self.yc = y - self.ym
        self.UtY = self.U.T @ self.yc

    def gcv_alpha(self, alphas: Sequence[float] | None) -> float:
        s2 = self.s * self.s
        grid = _alpha_grid(s2, alphas)
        curve = _gcv_curve(s2, self.UtY, float((self.yc * self.yc).sum()), self.n, grid)
        return float(grid[int(torch.argmin(curve))])

    def predict(self, x_test: torch.Tensor, alpha: float) -> torch.Tensor:
        s = self.s
        if alpha > 0:
            f = s / (s * s + alpha)
        else:  # least squares (minimum-norm when X_c is rank deficient)
            tol = (s.max() if s.numel() else 0.0) * max(self.n, self.Vh.shape[1]) * torch.finfo(s.dtype).eps
            f = torch.where(s > tol, 1.0 / s.clamp_min(1e-300), torch.zeros_like(s))
        return ((x_test - self.xm) @ self.Vh.T * f) @ self.UtY + self.ym


def ridge_gcv_alpha(X: ArrayLike, Y: ArrayLike, *, alphas: Sequence[float] | None = None) -> float:
    """The ridge penalty λ minimising GCV for predicting centred Y from centred X (one SVD of X_c).

    ``alphas`` : the grid of absolute λ values; default ``GCV_RELATIVE_GRID × mean(s²)`` over the
    non-zero singular values s of X_c. Golub, Heath, Wahba, "Generalized cross-validation as a method
    for choosing a good ridge parameter", Technometrics 1979.
    """
    x, y = as_pair(X, Y)
    check_min_rows(x.shape[0], 3, "ridge_gcv_alpha")
    (x, ex), (y, _) = pow2_rescale(x.double()), pow2_rescale(y.double())
    return _ldexp(_Fold(x, y).gcv_alpha(_penalties_in(alphas, -2 * ex)), 2 * ex)


def _check_alpha(alpha: float | None) -> None:
    if alpha is None:
        return
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float, np.integer, np.floating)):
        raise TypeError(f"alpha must be a non-negative number or None (choose by GCV); got {alpha!r}")
    if not np.isfinite(alpha) or alpha < 0:
        raise ValueError(f"alpha must be a non-negative finite number or None (choose by GCV); got {alpha!r}")


def _check_folds(n_folds: int, n: int) -> int:
    if isinstance(n_folds, bool) or not isinstance(n_folds, (int, np.integer)):
        raise TypeError(f"n_folds must be an integer; got {n_folds!r}")
    if not 2 <= n_folds <= n:
        raise ValueError(f"n_folds must be between 2 and n = {n}; got {n_folds}")
    return int(n_folds)


def _cv_r2(
    x: torch.Tensor,
    y: torch.Tensor,
    alpha: float | None,
    folds: list[np.ndarray],
    alphas: Sequence[float] | None,
    log2_x: int = 0,
    fits: list[_FoldX] | None = None,
) -> dict[str, Any]:
    """Held-out R² of ridge x → y accumulated over folds (pooled and per-column).

    ``x`` is the input divided by ``2^log2_x``: ``alpha``/``alphas`` (input units) are converted by 4^−log2_x and
    the chosen λ reported back in input units. ``fits``: x's per-fold SVDs, computed here when None.
    """
    n = x.shape[0]
    alpha = None if alpha is None else _ldexp(float(alpha), -2 * log2_x)
    alphas = _penalties_in(alphas, -2 * log2_x)
    sse = torch.zeros(y.shape[1], dtype=torch.float64, device=x.device)
    sst = torch.zeros_like(sse)
    chosen: list[float] = []
    for f, test_np in enumerate(folds):
        train, test = _train_test(n, test_np, x.device)
        fold = _Fold(x[train], y[train], None if fits is None else fits[f])
        lam = fold.gcv_alpha(alphas) if alpha is None else float(alpha)
        chosen.append(lam)
        pred = fold.predict(x[test], lam)
        sse += (y[test] - pred).pow(2).sum(dim=0)
        sst += (y[test] - fold.ym).pow(2).sum(dim=0)
    pooled = 1.0 - float(sse.sum() / sst.sum())
    keep = sst > 0  # a constant output column has no variance to explain
    mean_column = float((1.0 - sse[keep] / sst[keep]).mean())
    return {"pooled": pooled, "mean_column": mean_column, "alpha": [_ldexp(lam, 2 * log2_x) for lam in chosen]}


def _train_test(n: int, test_np: np.ndarray, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    mask = torch.ones(n, dtype=torch.bool)
    mask[torch.from_numpy(test_np)] = False
    return torch.nonzero(mask).flatten().to(device), torch.from_numpy(test_np).to(device)


def _check_varies(t: torch.Tensor, name: str) -> None:
    if bool((t == t[:1]).all()):
        raise ValueError(f"{name} is constant across items (every row identical): R² is undefined")


def _prepared(
    X: ArrayLike, Y: ArrayLike, alpha: float | None, n_folds: int
) -> tuple[torch.Tensor, torch.Tensor, int, int]:
    """(X·2^−ex, Y·2^−ey, ex, ey) in float64, checked."""
    _check_alpha(alpha)
    x, y = as_pair(X, Y)
    n = x.shape[0]
    check_min_rows(n, 3, "linear_predictivity")
    _check_folds(n_folds, n)
    for t, name in ((x, "X"), (y, "Y")):
        _check_varies(t, name)
    (x, ex), (y, ey) = pow2_rescale(x.double()), pow2_rescale(y.double())
    return x, y, ex, ey


def linear_predictivity_scores(
    X: ArrayLike,
    Y: ArrayLike,
    *,
    alpha: float | None = None,
    n_folds: int = 5,
    seed: int = 0,
    alphas: Sequence[float] | None = None,
) -> dict[str, Any]:
    """Both directions and both summaries of :func:`linear_predictivity`.

    Returns ``{"x_to_y": {"pooled", "mean_column", "alpha": [λ per fold]}, "y_to_x": {...},
    "both": {"pooled", "mean_column"}}`` (the "both" entries are means of the two directions).
    """
    x, y, ex, ey = _prepared(X, Y, alpha, n_folds)
    folds = kfold_splits(x.shape[0], n_folds, seed)
    fwd = _cv_r2(x, y, alpha, folds, alphas, ex)
    bwd = _cv_r2(y, x, alpha, folds, alphas, ey)
    both = {key: (fwd[key] + bwd[key]) / 2.0 for key in SUMMARIES}
    return {"x_to_y": fwd, "y_to_x": bwd, "both": both}


def _check_alphas(alphas: Any) -> Any:
    """A grid of ridge penalties: None, or a non-empty sequence of finite numbers > 0 (not a string)."""
    if alphas is None:
        return None
    if isinstance(alphas, (str, bytes)) or not hasattr(alphas, "__len__") or len(alphas) == 0:
        raise ValueError(f"must be None or a non-empty sequence of penalties > 0; got {alphas!r}")
    vals = [float(a) for a in alphas]
    if not all(math.isfinite(a) and a > 0 for a in vals):
        raise ValueError(f"every penalty must be a finite number > 0; got {alphas!r}")
    return alphas


@dataclass
class _Predictor:
    """A space divided by 2^e, and its per-fold SVDs once it has been used as the predictor."""

    x: torch.Tensor
    e: int
    fits: list[_FoldX] | None = None


@dataclass
class PredictivityMeasure(PreparedMeasure):
    """Linear predictivity with each space's per-fold SVDs taken once, however many targets it predicts.

    The folds depend only on n and the seed, so a layer's SVDs serve every layer it is compared with in an
    atlas: the per-pair cost drops to the projections ``UᵀY`` and the predictions. Same arithmetic as
    :func:`linear_predictivity`, so the same values.
    """

    name: str = "linear_predictivity"
    alpha: float | None = None
    n_folds: int = 5
    direction: str = "x_to_y"
    seed: int = 0
    summary: str = "pooled"
    alphas: Sequence[float] | None = None

    def min_rows(self) -> int:
        return max(3, self.n_folds)

    def prepare(self, x: torch.Tensor) -> _Predictor:
        _check_alpha(self.alpha)
        check_min_rows(x.shape[0], 3, "linear_predictivity")
        _check_folds(self.n_folds, x.shape[0])
        _check_varies(x, "X")
        t, e = pow2_rescale(x.double())
        return _Predictor(t, e)

    def permute(self, p: _Predictor, perm: torch.Tensor) -> _Predictor:
        return _Predictor(p.x[perm.to(p.x.device)], p.e)  # new rows per fold: SVDs redone if it predicts

    def _folds(self, n: int) -> list[np.ndarray]:
        return kfold_splits(n, self.n_folds, self.seed)

    def _fits(self, p: _Predictor) -> list[_FoldX]:
        if p.fits is None:
            n = p.x.shape[0]
            p.fits = [_FoldX(p.x[_train_test(n, test, p.x.device)[0]]) for test in self._folds(n)]
        return p.fits

    def _r2(self, src: _Predictor, dst: _Predictor) -> float:
        folds = self._folds(src.x.shape[0])
        return float(_cv_r2(src.x, dst.x, self.alpha, folds, self.alphas, src.e, self._fits(src))[self.summary])

    def score(self, pa: _Predictor, pb: _Predictor) -> float:
        scores = []
        if self.direction in ("x_to_y", "both"):
            scores.append(self._r2(pa, pb))
        if self.direction in ("y_to_x", "both"):
            scores.append(self._r2(pb, pa))
        return float(sum(scores) / len(scores))


def _prepare_predictivity(info: Any, params: dict[str, Any], **_: Any) -> PredictivityMeasure:
    keys = ("alpha", "n_folds", "direction", "seed", "summary", "alphas")
    return PredictivityMeasure(info.name, **{k: params[k] for k in keys if k in params})


@register(
    "linear_predictivity",
    family="predictive",
    range=(float("-inf"), 1.0),
    symmetric=False,
    invariances=("orthogonal", "isotropic_scale", "translation", "permutation"),
    cost="O(folds·n·d1·min(n, d1)) SVDs + O(n·d1·d2)",
    description="Cross-validated ridge R² of predicting Y from X (λ by GCV; 5 folds). Asymmetric unless "
    "direction='both'. Scale invariance holds for the default GCV grid, not for a fixed alpha.",
    defaults={"alpha": None, "n_folds": 5, "direction": "x_to_y", "summary": "pooled"},
    constraints={
        "alpha": {"low": 0.0},
        "n_folds": {"low": 2},
        "seed": {"low": 0},
        "direction": {"choices": DIRECTIONS},
        "summary": {"choices": SUMMARIES},
        "alphas": {"validator": lambda v: _check_alphas(v)},
    },
    prepare=_prepare_predictivity,
)
def linear_predictivity(
    X: ArrayLike,
    Y: ArrayLike,
    *,
    alpha: float | None = None,
    n_folds: int = 5,
    direction: str = "x_to_y",
    seed: int = 0,
    summary: str = "pooled",
    alphas: Sequence[float] | None = None,
) -> float:
    """Held-out R² of ridge regression from X to Y (linear predictivity / encoding-model score).

    For each of ``n_folds`` folds (a seeded permutation cut into contiguous chunks) fit
    ``W = (X_cᵀX_c + λI)^{-1}X_cᵀY_c`` on the centred training items and predict
    ``Ŷ = (X_te − x̄_tr)W + ȳ_tr``. ``summary="pooled"``:
    ``R² = 1 − Σ_folds‖Y_te − Ŷ‖²_F / Σ_folds‖Y_te − ȳ_tr‖²_F``; ``"mean_column"``: the same ratio per
    output column, averaged (constant columns skipped).

    alpha : a fixed absolute λ ≥ 0 (0 = minimum-norm least squares), or None to choose λ per fold by GCV
        (Golub, Heath, Wahba, Technometrics 1979) over ``alphas`` (default: a log grid relative to the
        training X's spectrum, see :data:`GCV_RELATIVE_GRID`).
    direction : "x_to_y", "y_to_x" or "both" (mean of the two).

    Predictivity as used in Brain-Score (Schrimpf et al., "Brain-Score: Which artificial neural network
    for object recognition is most brain-like?", bioRxiv 2018) and ReSi (Klabunde et al., "ReSi: a
    comprehensive benchmark for representational similarity measures", ICLR 2025).
    """
    check_choice(direction, DIRECTIONS, "direction")
    check_choice(summary, SUMMARIES, "summary")
    x, y, ex, ey = _prepared(X, Y, alpha, n_folds)
    folds = kfold_splits(x.shape[0], n_folds, seed)
    scores = []
    if direction in ("x_to_y", "both"):
        scores.append(_cv_r2(x, y, alpha, folds, alphas, ex)[summary])
    if direction in ("y_to_x", "both"):
        scores.append(_cv_r2(y, x, alpha, folds, alphas, ey)[summary])
    return float(sum(scores) / len(scores))
