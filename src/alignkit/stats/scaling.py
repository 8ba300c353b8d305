"""The test-time scaling law of Dynamic Reflections, fitted by nonlinear least squares with bootstrap intervals.

Two variables (frames n_f and captions n_c per item)::

    score(n_f, n_c) = S_∞ − (C_f·n_f^−α + C_c·n_c^−β),    C_f, C_c ≥ 0,  α, β > 0

and the one-variable form ``score(n) = S_∞ − C·n^−α``. Zhu et al., "Dynamic Reflections: Probing Video
Representations with Text Alignment" (ICLR 2026, arXiv 2511.02767) report e.g. VideoMAEv2
``0.41 − (0.15·n_f^−0.75 + 0.13·n_c^−1.30)`` with R² > 0.97; their fitting procedure is not published, so this is
ours (docs/methods.md §7): C and the exponents are optimised through softplus (``C = log(1 + e^c)``), so the
least-squares problem is unconstrained and its solutions keep the signs; the start comes from log-linear fits
(for a trial S_∞ above the data, ``log(S_∞ − score) = log C − α·log n`` is a line; the trial with the best line
wins, per axis on the axis means); ``scipy.optimize.least_squares`` with the analytic Jacobian finishes. R² is
``1 − SS_res/SS_tot`` on the points fitted.

``s_inf_range=(low, high)`` keeps S_∞ inside a range the same way (``low + (high − low)·sigmoid(s)``, or one
softplus for a one-sided range), e.g. a measure's [0, 1]. ``direction="decreasing"`` fits the mirror image
``S_∞ + C·n^−α`` (a score that *falls* towards S_∞, such as mutual kNN against the pool size,
:func:`alignkit.curve`).

Intervals: percentile intervals over ``n_boot`` refits of resampled data, for every parameter including S_∞.
``resample="residuals"`` (default) adds resampled residuals of the fit to its fitted values (a fixed design:
the grid stays, the noise is redrawn); ``resample="cells"`` draws the points (grid cells) with replacement and
refits (draws leaving fewer than 3 distinct values on an axis are redrawn). When the points are themselves
per-repeat scores on random item subsets (several rows per n), ``"cells"`` carries that item-level variation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from alignkit._validation import check_choice

DIRECTIONS = ("increasing", "decreasing")
RESAMPLE = ("residuals", "cells")
MIN_DISTINCT = 3
_MAX_REDRAWS = 100  # per bootstrap draw, for "cells" draws with too few distinct values on an axis


def _softplus(x: np.ndarray | float) -> Any:
    return np.logaddexp(0.0, x)


def _inv_softplus(y: float) -> float:
    """The x with softplus(x) = y > 0 (stable for large and tiny y)."""
    y = max(float(y), 1e-300)
    return y + math.log(-math.expm1(-y)) if y < 30 else y + math.log1p(-math.exp(-y))


def _sigmoid(x: np.ndarray | float) -> Any:
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(x)))


@dataclass(frozen=True)
class ScalingLawResult:
    """A fitted scaling law: parameters, bootstrap intervals, R², and :meth:`predict`."""

    params: dict[str, float]  # S_inf, C, alpha (one variable) or S_inf, C_f, alpha, C_c, beta
    ci: dict[str, tuple[float, float]]
    r2: float
    n_points: int
    direction: str = "increasing"
    level: float = 0.95
    n_boot: int = 0
    resample: str = "residuals"
    seed: int = 0
    n_failed: int = 0  # bootstrap refits that did not converge (left out of the intervals)
    residuals: np.ndarray = field(default_factory=lambda: np.zeros(0), repr=False)
    samples: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)), repr=False)  # (n_boot, n_params)
    s_inf_range: tuple[float, float] | None = None

    @property
    def two_variable(self) -> bool:
        return "C_c" in self.params

    def predict(self, n_f: Any, n_c: Any = None) -> np.ndarray:
        """The law at ``n_f`` (the one variable n) and, for the two-variable law, ``n_c``."""
        p = self.params
        sign = 1.0 if self.direction == "increasing" else -1.0
        nf = np.asarray(n_f, dtype=np.float64)
        if self.two_variable:
            if n_c is None:
                raise ValueError("n_c is required to predict with a two-variable law")
            nc = np.asarray(n_c, dtype=np.float64)
            return p["S_inf"] - sign * (p["C_f"] * nf ** -p["alpha"] + p["C_c"] * nc ** -p["beta"])
        if n_c is not None:
            raise ValueError("n_c was given but the law has one variable")
        return p["S_inf"] - sign * p["C"] * nf ** -p["alpha"]

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"r2": self.r2, "n_points": self.n_points, "direction": self.direction}
        for name, value in self.params.items():
            lo, hi = self.ci.get(name, (float("nan"), float("nan")))
            out.update({name: value, f"{name}_low": lo, f"{name}_high": hi})
        out.update(level=self.level, n_boot=self.n_boot, resample=self.resample, n_failed=self.n_failed, seed=self.seed)
        out["s_inf_range"] = None if self.s_inf_range is None else list(self.s_inf_range)
        return out

    def __str__(self) -> str:
        p = self.params
        op = "−" if self.direction == "increasing" else "+"
        if self.two_variable:
            law = f"{p['S_inf']:.4g} {op} ({p['C_f']:.4g}·n_f^−{p['alpha']:.3g} + {p['C_c']:.4g}·n_c^−{p['beta']:.3g})"
        else:
            law = f"{p['S_inf']:.4g} {op} {p['C']:.4g}·n^−{p['alpha']:.3g}"
        return f"score = {law}  (R² = {self.r2:.4f}, {self.n_points} points)"


# ------------------------------------------------------------------------------------------ the model


@dataclass(frozen=True)
class _Law:
    """The law's sign (``S_∞ − sign·Σ C·n^−α``) and the range S_∞ is kept in, by reparameterisation: the raw
    parameter s maps to S_∞ = s (no bounds), lo + softplus(s), hi − softplus(s), or lo + (hi − lo)·sigmoid(s)."""

    sign: float
    lo: float = -math.inf
    hi: float = math.inf

    def s_inf(self, s: float) -> tuple[float, float]:
        """S_∞ and dS_∞/ds."""
        if math.isfinite(self.lo) and math.isfinite(self.hi):
            g = float(_sigmoid(s))
            return self.lo + (self.hi - self.lo) * g, (self.hi - self.lo) * g * (1 - g)
        if math.isfinite(self.lo):
            return self.lo + float(_softplus(s)), float(_sigmoid(s))
        if math.isfinite(self.hi):
            return self.hi - float(_softplus(s)), -float(_sigmoid(s))
        return float(s), 1.0

    def raw(self, value: float) -> float:
        """The s with S_∞ = value (a value outside the range is first moved just inside it)."""
        if math.isfinite(self.lo) and math.isfinite(self.hi):
            u = min(max((value - self.lo) / (self.hi - self.lo), 1e-9), 1 - 1e-9)
            return math.log(u / (1 - u))
        if math.isfinite(self.lo):
            return _inv_softplus(max(value - self.lo, 1e-12))
        if math.isfinite(self.hi):
            return _inv_softplus(max(self.hi - value, 1e-12))
        return float(value)


def _unpack(theta: np.ndarray, law: _Law) -> dict[str, float]:
    out = {"S_inf": law.s_inf(theta[0])[0]}
    names = ("C_f", "alpha", "C_c", "beta") if theta.size == 5 else ("C", "alpha")
    out.update({name: float(_softplus(v)) for name, v in zip(names, theta[1:], strict=True)})
    return out


def _pack(p: dict[str, float], law: _Law) -> np.ndarray:
    names = ("C_f", "alpha", "C_c", "beta") if "C_c" in p else ("C", "alpha")
    return np.array([law.raw(p["S_inf"]), *(_inv_softplus(p[k]) for k in names)])


def _terms(c: float, a: float, logn: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """C·n^−α and its derivatives in the raw parameters (c, a) with C = softplus(c), α = softplus(a)."""
    C, alpha = _softplus(c), _softplus(a)
    pw = np.exp(-alpha * logn)
    return C * pw, _sigmoid(c) * pw, -C * pw * logn * _sigmoid(a)


def _model(theta: np.ndarray, logs: list[np.ndarray], law: _Law) -> tuple[np.ndarray, np.ndarray]:
    """Predictions and the Jacobian (points × raw parameters) of ``S_∞ − sign·Σ C·n^−α``."""
    s_inf, ds = law.s_inf(theta[0])
    cols = [np.full_like(logs[0], ds)]
    total = np.zeros_like(logs[0])
    for axis, logn in enumerate(logs):
        t, dc, da = _terms(theta[1 + 2 * axis], theta[2 + 2 * axis], logn)
        total += t
        cols += [-law.sign * dc, -law.sign * da]
    return s_inf - law.sign * total, np.stack(cols, axis=1)


def _least_squares(theta0: np.ndarray, logs: list[np.ndarray], y: np.ndarray, law: _Law) -> tuple[np.ndarray, float]:
    from scipy.optimize import least_squares

    def fun(t: np.ndarray) -> np.ndarray:
        return _model(t, logs, law)[0] - y

    def jac(t: np.ndarray) -> np.ndarray:
        return _model(t, logs, law)[1]

    sol = least_squares(fun, theta0, jac=jac, method="trf", xtol=1e-15, ftol=1e-15, gtol=1e-15, max_nfev=2000)
    return sol.x, float(np.sum(sol.fun**2))


def _loglinear_start(logn: np.ndarray, y: np.ndarray, law: _Law) -> tuple[float, float, float, float]:
    """(S_∞, C, α, residual) of the best line ``log(sign·(S_∞ − y)) = log C − α·log n`` over trial S_∞ placed
    beyond the data (above it for an increasing law, below for a decreasing one) and inside S_∞'s range."""
    sign = law.sign
    span = float(np.ptp(y)) or max(abs(float(np.mean(y))), 1.0) * 1e-3
    edge = float(np.max(y)) if sign > 0 else float(np.min(y))
    room = (law.hi - edge) if sign > 0 else (edge - law.lo)  # how far beyond the data S_∞ may go
    gaps = span * np.logspace(-4, 2, 61)
    if room > 0 and math.isfinite(room):
        gaps = np.append(gaps[gaps < room], room * (1 - 1e-6))
    design = np.stack([np.ones_like(logn), -logn], axis=1)
    best = (edge + sign * float(gaps[0]), span, 0.5, np.inf)
    for gap in gaps:
        s_inf = edge + sign * gap
        target = np.log(sign * (s_inf - y))
        coef, *_ = np.linalg.lstsq(design, target, rcond=None)
        resid = float(np.sum((np.exp(design @ coef) - sign * (s_inf - y)) ** 2))
        if coef[1] > 0 and resid < best[3]:
            best = (s_inf, float(np.exp(coef[0])), float(coef[1]), resid)
    return best


def _axis_means(logn: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    values, inverse = np.unique(logn, return_inverse=True)
    return values, np.bincount(inverse, weights=y) / np.bincount(inverse)


def _start(logs: list[np.ndarray], y: np.ndarray, law: _Law) -> np.ndarray:
    """Log-linear start: per axis, the one-variable law fitted to the means over the other axis; S_∞ from the
    first axis's asymptote plus the other term's mean (which that asymptote absorbed)."""
    if len(logs) == 1:
        s, c, a, _ = _loglinear_start(logs[0], y, law)
        return _pack({"S_inf": s, "C": c, "alpha": a}, law)
    (s_f, c_f, a_f, _), (s_c, c_c, a_c, _) = (_loglinear_start(*_axis_means(logn, y), law) for logn in logs)
    sign = law.sign
    s_inf = 0.5 * (s_f + sign * float(np.mean(c_c * np.exp(-a_c * logs[1])))) + 0.5 * (
        s_c + sign * float(np.mean(c_f * np.exp(-a_f * logs[0])))
    )
    return _pack({"S_inf": s_inf, "C_f": c_f, "alpha": a_f, "C_c": c_c, "beta": a_c}, law)


def _fit(logs: list[np.ndarray], y: np.ndarray, law: _Law, start: np.ndarray | None = None) -> tuple[np.ndarray, float]:
    """Least squares from ``start`` (a bootstrap refit starts from the full-data fit) or else from the log-linear
    start."""
    theta, cost = _least_squares(_start(logs, y, law) if start is None else start, logs, y, law)
    if not np.isfinite(cost) or not np.isfinite(theta).all():
        raise RuntimeError("the scaling-law fit did not converge")
    return theta, cost


# ------------------------------------------------------------------------------------------ validation


def _axis(values: Any, name: str, n: int | None) -> np.ndarray:
    try:
        a = np.asarray(values, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} must be an array of numbers: {exc}") from None
    if n is not None and a.size != n:
        raise ValueError(f"{name} must have one value per score: {a.size} values for {n} scores")
    if not np.isfinite(a).all() or (a <= 0).any():
        raise ValueError(f"{name} must be positive and finite (counts such as pool sizes); got min {np.nanmin(a)}")
    distinct = np.unique(a).size
    if distinct < MIN_DISTINCT:
        raise ValueError(f"{name} must take at least {MIN_DISTINCT} distinct values to fit a power law; got {distinct}")
    return a


def _check_inputs(score: Any, n_f: Any, n_c: Any) -> tuple[np.ndarray, list[np.ndarray]]:
    try:
        y = np.asarray(score, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"score must be an array of numbers: {exc}") from None
    if y.size == 0:
        raise ValueError("score is empty")
    if not np.isfinite(y).all():
        raise ValueError(f"score contains {int((~np.isfinite(y)).sum())} NaN or Inf value(s); drop those points first")
    axes = [_axis(n_f, "n_f" if n_c is not None else "n", y.size)]
    if n_c is not None:
        axes.append(_axis(n_c, "n_c", y.size))
    n_params = 1 + 2 * len(axes)
    if y.size < n_params:
        raise ValueError(f"score: {y.size} points cannot fit {n_params} parameters")
    return y, axes


def _check_range(bounds: tuple[float, float] | None, sign: float) -> _Law:
    """S_∞'s range: a (low, high) pair with low < high."""
    if bounds is None:
        return _Law(sign)
    try:
        lo, hi = (float(b) for b in bounds)
    except (TypeError, ValueError):
        raise ValueError(f"s_inf_range must be a (low, high) pair of numbers; got {bounds!r}") from None
    if math.isnan(lo) or math.isnan(hi) or not lo < hi:
        raise ValueError(f"s_inf_range must have low < high; got {bounds!r}")
    return _Law(sign, lo, hi)


# ------------------------------------------------------------------------------------------ public


def fit_scaling_law(
    score: Any,
    n_f: Any,
    n_c: Any = None,
    *,
    direction: str = "increasing",
    n_boot: int = 1000,
    level: float = 0.95,
    resample: str = "residuals",
    seed: int = 0,
    s_inf_range: tuple[float, float] | None = None,
) -> ScalingLawResult:
    """Fit ``score = S_∞ − (C_f·n_f^−α + C_c·n_c^−β)`` (or ``S_∞ − C·n^−α`` when ``n_c`` is None).

    score, n_f, n_c : one value per point (a grid flattened, or any design); each axis needs at least 3 distinct
        positive values. Repeated points (e.g. per-repeat scores at the same n) are fine.
    direction : ``"increasing"`` (the law above) or ``"decreasing"`` (``S_∞ + …``: the score falls towards S_∞).
    n_boot, level, resample, seed : percentile bootstrap intervals for every parameter (module docstring);
        ``n_boot=0`` skips them.
    s_inf_range : (low, high) that S_∞ must lie in (±inf for an open side), kept by reparameterisation; e.g. the
        measure's range. Without it S_∞ is free, and a curve that is nearly linear in log n over the sizes
        measured drives α → 0 and S_∞ → ∓∞ (the law cannot tell a slow power law from a logarithm there).
    """
    check_choice(direction, DIRECTIONS, "direction")
    check_choice(resample, RESAMPLE, "resample")
    if isinstance(n_boot, bool) or not isinstance(n_boot, (int, np.integer)) or n_boot < 0:
        raise ValueError(f"n_boot must be an integer >= 0; got {n_boot!r}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1); got {level}")
    y, axes = _check_inputs(score, n_f, n_c)
    law = _check_range(s_inf_range, 1.0 if direction == "increasing" else -1.0)
    logs = [np.log(a) for a in axes]
    theta, cost = _fit(logs, y, law)
    fitted = _model(theta, logs, law)[0]
    resid = y - fitted
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    r2 = 1.0 - cost / ss_tot if ss_tot > 0 else float("nan")
    params = _unpack(theta, law)
    names = list(params)
    samples, failed = _bootstrap(theta, logs, y, fitted, resid, law, int(n_boot), resample, seed)
    ci: dict[str, tuple[float, float]] = {}
    for i, name in enumerate(names):
        col = samples[:, i] if samples.size else np.zeros(0)
        if col.size:
            lo, hi = np.quantile(col, [(1 - level) / 2, (1 + level) / 2])
            ci[name] = (float(lo), float(hi))
        else:
            ci[name] = (float("nan"), float("nan"))
    bounds = None if s_inf_range is None else (law.lo, law.hi)
    return ScalingLawResult(
        params, ci, r2, int(y.size), direction, level, int(n_boot), resample, int(seed), failed, resid, samples, bounds
    )


def _bootstrap(
    theta: np.ndarray,
    logs: list[np.ndarray],
    y: np.ndarray,
    fitted: np.ndarray,
    resid: np.ndarray,
    law: _Law,
    n_boot: int,
    resample: str,
    seed: int,
) -> tuple[np.ndarray, int]:
    """Refits on ``n_boot`` resampled data sets, started from the full fit; rows of natural parameters."""
    rng = np.random.default_rng(seed)
    centred = resid - resid.mean()
    out, failed = [], 0
    for _ in range(n_boot):
        if resample == "residuals":
            data_logs, data_y = logs, fitted + rng.choice(centred, size=y.size, replace=True)
        else:
            for _ in range(_MAX_REDRAWS):
                idx = rng.integers(0, y.size, size=y.size)
                if all(np.unique(lg[idx]).size >= MIN_DISTINCT for lg in logs):
                    break
            else:
                failed += 1
                continue
            data_logs, data_y = [lg[idx] for lg in logs], y[idx]
        try:
            t, _ = _fit(data_logs, data_y, law, start=theta)
        except (RuntimeError, ValueError, np.linalg.LinAlgError):
            failed += 1
            continue
        p = _unpack(t, law)
        if not np.isfinite(list(p.values())).all():  # a refit that ran off (S_∞ unidentified): a failed draw
            failed += 1
            continue
        out.append(list(p.values()))
    return np.asarray(out, dtype=np.float64).reshape(len(out), 1 + 2 * len(logs)), failed


__all__ = ["ScalingLawResult", "fit_scaling_law"]
