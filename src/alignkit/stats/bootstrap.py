"""Confidence intervals by subsampling items without replacement (half-sampling by default).

Resampling with replacement puts exact duplicates in the sample; duplicates are distance-0
neighbours and bias kNN measures and U-statistics (docs/methods.md §2.2). Instead draw m-out-of-n
subsets without replacement. For an estimator with variance ∝ 1/n, the spread of subset
estimates around their mean is ``σ²(1/m − 1/n)`` (finite-population correction), so deviations are
rescaled by ``sqrt(m/(n − m))`` (= 1 at m = n/2, the classic half-sample) to the spread at n.
Deviations are taken from the subsample mean, not the full-sample score, because kNN scores drift
with n (their null is k/(n−1)); the interval is centred on the full-sample score. With ``groups``
the units are groups: each subset is round(fraction·G) whole groups (a grouped half-sample), so
duplicates or repeated items of one group never straddle the subset boundary.
Politis & Romano, "Large sample confidence regions based on subsamples under minimal
assumptions", Ann. Statist. 1994; Shao & Wu, "A general theory for jackknife variance
estimation" (delete-d jackknife), Ann. Statist. 1989.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from alignkit._progress import progress as bar
from alignkit._validation import ArrayLike, as_pair
from alignkit.metrics import _registry
from alignkit.registry import Spec
from alignkit.stats.groups import row_subsets


@dataclass(frozen=True)
class BootstrapResult:
    """A score with a subsampling confidence interval."""

    measure: str
    score: float
    low: float
    high: float
    level: float
    m: int
    n: int
    samples: np.ndarray = field(repr=False)
    seed: int = 0
    clipped: bool = False  # the interval was clipped to the measure's range (a basic interval can leave it)

    @property
    def n_boot(self) -> int:
        return int(self.samples.size)

    @property
    def std_error(self) -> float:
        """Standard error at n, from the rescaled subsample spread."""
        return float(self.samples.std(ddof=1) * np.sqrt(self.m / (self.n - self.m)))

    def as_dict(self) -> dict[str, Any]:
        return {
            "measure": self.measure,
            "score": self.score,
            "low": self.low,
            "high": self.high,
            "level": self.level,
            "clipped": self.clipped,
            "std_error": self.std_error,
            "m": self.m,
            "n": self.n,
            "n_boot": self.n_boot,
            "seed": self.seed,
        }


def bootstrap_ci(
    measure: str | Spec | Callable[..., float],
    X: ArrayLike,
    Y: ArrayLike,
    n_boot: int = 200,
    *,
    level: float = 0.95,
    fraction: float = 0.5,
    seed: int = 0,
    groups: Any = None,
    progress: bool = False,
    **params: Any,
) -> BootstrapResult:
    """Percentile-type subsampling interval for ``measure`` on paired (X, Y).

    fraction : subset size m = round(fraction·n), 0 < m < n (default: half-sampling).
    The interval is ``score − c·(quantiles of θ*_m − mean θ*_m)``, c = sqrt(m/(n−m)) (basic
    bootstrap form, so a skewed subsample distribution flips the right way). A basic interval can leave
    the measure's range (e.g. above 1 for CKA near 1); it is clipped to the registered range and
    ``clipped`` says so. A NaN score (a degenerate space) or NaN subsamples give a NaN interval.
    groups : one label per row; subsets are then whole groups, round(fraction·G) of the G groups, and
        m is their expected size (rows of one group are never split between in and out).
    """
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1); got {level}")
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"fraction must be in (0, 1); got {fraction}")
    if isinstance(n_boot, bool) or not isinstance(n_boot, (int, np.integer)) or n_boot < 2:
        raise ValueError(f"n_boot must be an integer >= 2; got {n_boot!r}")
    x, y = as_pair(X, Y)
    n = x.shape[0]
    m = round(fraction * n)
    if not 2 <= m < n:
        raise ValueError(f"fraction={fraction} gives a subset of m={m} items out of n={n}; need 2 <= m < n")
    m, subsets = row_subsets(n, m, int(n_boot), seed, groups=groups)  # bad groups fail before any compute
    bounds: tuple[float, float] = (-np.inf, np.inf)
    if callable(measure) and not isinstance(measure, Spec):
        name, func = getattr(measure, "__name__", "callable"), measure
    else:
        spec = _registry.measure_spec(measure, **params)  # validated once, before any subsample
        name = spec.id  # canonical: the parameters actually used
        func, params = functools.partial(_registry.measure, spec), {}
        bounds = _registry.get(spec).range
    score = float(func(x, y, **params))
    if not np.isfinite(score):  # a degenerate space (or a NaN measure): no interval around nothing
        nan = float("nan")
        return BootstrapResult(name, score, nan, nan, level, m, n, np.full(int(n_boot), np.nan), seed)
    samples = []
    for rows in bar(subsets, show=progress, desc="subsamples", total=int(n_boot)):
        rows = rows.to(x.device)
        samples.append(float(func(x[rows], y[rows], **params)))
    return subsample_interval(name, score, np.asarray(samples), m, n, level, bounds, seed)


def subsample_interval(
    name: str,
    score: float,
    samples: np.ndarray,
    m: int,
    n: int,
    level: float,
    bounds: tuple[float, float] = (-np.inf, np.inf),
    seed: int = 0,
) -> BootstrapResult:
    """The basic subsampling interval around ``score`` from estimates on m-of-n subsets (see the module
    docstring): ``score − c·(quantiles of θ*_m − mean θ*_m)``, c = sqrt(m/(n−m)), clipped to ``bounds``.
    NaN samples give a NaN interval."""
    c = np.sqrt(m / (n - m))
    dev = c * (samples - samples.mean())
    alpha = 1.0 - level
    if not np.isfinite(samples).all() or not np.isfinite(score):
        nan = float("nan")
        return BootstrapResult(name, score, nan, nan, level, m, n, samples, seed)
    low = score - float(np.quantile(dev, 1 - alpha / 2))
    high = score - float(np.quantile(dev, alpha / 2))
    clipped_low, clipped_high = float(np.clip(low, *bounds)), float(np.clip(high, *bounds))
    clipped = (clipped_low, clipped_high) != (low, high)
    return BootstrapResult(name, score, clipped_low, clipped_high, level, m, n, samples, seed, clipped)
