"""False-discovery control over many p-values (e.g. every cell of an atlas): adjusted p-values (q-values).

Benjamini–Hochberg step-up (Benjamini & Hochberg, "Controlling the false discovery rate", J. R. Stat.
Soc. B 1995): with the m finite p-values sorted, ``p_(1) ≤ … ≤ p_(m)``,

    q_(i) = min_{j ≥ i} min(1, m·p_(j)/j),

and rejecting every hypothesis with ``q ≤ α`` is the step-up rule (reject ``H_(1..k)``,
``k = max{i : p_(i) ≤ i·α/m}``), which controls the FDR at α for independent or positively dependent
(PRDS) p-values. Benjamini–Yekutieli (Ann. Statist. 2001) multiply by ``c(m) = Σ_{i=1}^m 1/i`` and
control the FDR under any dependence. Atlas cells share items and one permutation per draw, so they are
positively dependent in practice; BY is the conservative choice when that is in doubt.

NaN p-values (untested hypotheses, e.g. degenerate atlas layers) are left out of m and stay NaN.
"""

from __future__ import annotations

from typing import Any

import numpy as np

FDR_METHODS = ("bh", "by")


def _as_p(p: Any) -> np.ndarray:
    arr = np.asarray(p, dtype=np.float64)
    finite = arr[~np.isnan(arr)]
    if ((finite < 0) | (finite > 1)).any():
        bad = finite[(finite < 0) | (finite > 1)][0]
        raise ValueError(f"p must hold p-values in [0, 1] (or NaN for untested); got {bad!r}")
    return arr


def _step_up(p: Any, c: float | None) -> np.ndarray:
    """Adjusted p-values ``min_{j ≥ i} min(1, c·m·p_(j)/j)`` over the non-NaN entries; ``c`` None is c(m)."""
    arr = _as_p(p)
    out = np.full(arr.shape, np.nan)
    keep = ~np.isnan(arr)
    m = int(keep.sum())
    if m == 0:
        return out
    vals = arr[keep]
    order = np.argsort(vals, kind="stable")
    factor = float(np.sum(1.0 / np.arange(1, m + 1))) if c is None else c
    scaled = factor * m * vals[order] / np.arange(1, m + 1)
    adjusted = np.minimum(1.0, np.minimum.accumulate(scaled[::-1])[::-1])
    sub = np.empty(m)
    sub[order] = adjusted
    out[keep] = sub
    return out


def bh_qvalues(p: Any) -> np.ndarray:
    """Benjamini–Hochberg adjusted p-values (q-values), same shape as ``p``; NaN stays NaN and is not counted
    in m. Monotone in p and never above 1."""
    return _step_up(p, 1.0)


def by_qvalues(p: Any) -> np.ndarray:
    """Benjamini–Yekutieli adjusted p-values: BH's times ``c(m) = Σ_{i≤m} 1/i`` (capped at 1); valid under any
    dependence between the tests."""
    return _step_up(p, None)


def qvalues(p: Any, method: str = "bh") -> np.ndarray:
    """Adjusted p-values by ``method``: ``"bh"`` (Benjamini–Hochberg) or ``"by"`` (Benjamini–Yekutieli)."""
    if method == "bh":
        return bh_qvalues(p)
    if method == "by":
        return by_qvalues(p)
    raise ValueError(f"method must be one of {', '.join(map(repr, FDR_METHODS))}; got {method!r}")


def fdr_reject(p: Any, alpha: float = 0.05, method: str = "bh") -> np.ndarray:
    """Which hypotheses the step-up procedure rejects at FDR level ``alpha`` (``q ≤ alpha``); NaN is never
    rejected."""
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float, np.floating)) or not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1); got {alpha!r}")
    q = qvalues(p, method)
    return np.asarray(q <= alpha)  # NaN compares False


__all__ = ["FDR_METHODS", "bh_qvalues", "by_qvalues", "fdr_reject", "qvalues"]
