"""Permutation nulls for any measure, with fast paths that never redo the expensive step.

Null: permute Y's rows with π and recompute, B times. kNN measures permute the index lists
(``knn_{Yπ}[i] = π⁻¹[knn_Y[π(i)]]``, O(n·k) per draw); linear CKA keeps the centred features and
their self-HSIC and recomputes only ``X_cᵀP_πY_c``. π may respect groups of rows (within groups or
as blocks) or come from the user's function (:mod:`alignkit.stats.groups`). Summaries follow
Aristotelian's calibration (Gröger, Wen, Brbić, ICML 2026): ``p = (1 + #{null ≥ raw})/(1 + B)``,
``z``, the chance-adjusted score ``(raw − E_null)/(best − E_null)``, the threshold τ = the q-quantile
of null ∪ {raw} and the calibrated (significance-gated) score ``clip((raw − τ)/(best − τ), 0, 1)``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from alignkit._progress import progress as bar
from alignkit._validation import ArrayLike, as_pair
from alignkit.metrics import _registry
from alignkit.metrics.prepared import check_rows, knn_recall, prepared_measure
from alignkit.metrics.preprocess import preprocess
from alignkit.registry import Spec
from alignkit.stats.groups import Permute, permutation_kind, permutations  # the one seeded draw sequence


def check_n_perm(n_perm: int) -> int:
    if isinstance(n_perm, bool) or not isinstance(n_perm, (int, np.integer)) or n_perm < 1:
        raise ValueError(f"n_perm must be a positive integer; got {n_perm!r}")
    return int(n_perm)


@dataclass(frozen=True)
class PermutationResult:
    """A raw score and its permutation null."""

    measure: str
    score: float
    null: np.ndarray = field(repr=False)
    higher_is_better: bool = True
    best_score: float | None = 1.0
    seed: int = 0
    q: float = 0.95
    knn_recall: dict[str, float] = field(default_factory=dict)  # approximate kNN backends only
    duplicate_fraction: dict[str, float] = field(default_factory=dict)  # neighbourhood measures: per space
    permutation: str = "full"  # the null's permutations: 'full', 'within' / 'blocks' (groups) or 'custom'

    @property
    def n_perm(self) -> int:
        return int(self.null.size)

    @property
    def _finite_null(self) -> np.ndarray:
        return self.null[np.isfinite(self.null)]

    @property
    def null_mean(self) -> float:
        fin = self._finite_null
        return float(fin.mean()) if fin.size else float("nan")

    @property
    def null_std(self) -> float:
        fin = self._finite_null
        return float(fin.std(ddof=1)) if fin.size > 1 else (0.0 if fin.size else float("nan"))

    @property
    def p_value(self) -> float:
        """One-sided, with the +1 correction: never 0. NaN when the score is NaN (a NaN is never
        significant); a NaN null draw counts as at least as extreme (conservative)."""
        if not np.isfinite(self.score):
            return float("nan")
        as_extreme = self.null >= self.score if self.higher_is_better else self.null <= self.score
        as_extreme = as_extreme | ~np.isfinite(self.null)
        return float((1 + int(as_extreme.sum())) / (1 + self.null.size))

    @property
    def z(self) -> float:
        sd = self.null_std
        sign = 1.0 if self.higher_is_better else -1.0
        return float(sign * (self.score - self.null_mean) / sd) if sd > 0 else float("nan")

    @property
    def adjusted(self) -> float:
        """Chance-adjusted score: 0 at the null mean, 1 at the measure's best possible value."""
        if self.best_score is None or not np.isfinite(self.best_score):
            return float("nan")
        span = self.best_score - self.null_mean
        return float((self.score - self.null_mean) / span) if span != 0 else float("nan")

    @property
    def threshold(self) -> float:
        """The q-quantile of null ∪ {raw}: scores above it are significant at level 1 − q (NaN if any is NaN)."""
        pool = np.append(self.null, self.score)
        if not np.isfinite(pool).all():
            return float("nan")
        return float(np.quantile(pool, self.q if self.higher_is_better else 1 - self.q))

    @property
    def calibrated(self) -> float:
        """Aristotelian's calibrated (significance-gated) score: 0 up to the threshold τ, then linear to 1
        at the measure's best value, ``clip((score − τ)/(best − τ), 0, 1)`` (mirrored when lower is better:
        ``(τ − score)/(τ − best)``). 1 when score passes τ and τ is already at the best. NaN when the best
        value is unknown, or the score or a null draw is NaN."""
        tau = self.threshold
        if self.best_score is None or not np.isfinite(self.best_score) or not np.isfinite(tau):
            return float("nan")
        sign = 1.0 if self.higher_is_better else -1.0
        gain, span = sign * (self.score - tau), sign * (self.best_score - tau)
        if gain <= 0:
            return 0.0
        return 1.0 if span <= 0 else float(min(gain / span, 1.0))

    def as_dict(self) -> dict[str, Any]:
        return {
            "measure": self.measure,
            "score": self.score,
            "null_mean": self.null_mean,
            "null_std": self.null_std,
            "p_value": self.p_value,
            "z": self.z,
            "adjusted": self.adjusted,
            "threshold": self.threshold,
            "calibrated": self.calibrated,
            "n_perm": self.n_perm,
            "seed": self.seed,
            "permutation": self.permutation,
            **{f"knn_recall_{k}": v for k, v in self.knn_recall.items()},
            **{f"duplicate_fraction_{k}": v for k, v in self.duplicate_fraction.items()},
        }


def permutation_test(
    measure: str | Spec | Callable[..., float],
    X: ArrayLike,
    Y: ArrayLike,
    n_perm: int = 1000,
    seed: int = 0,
    *,
    q: float = 0.95,
    groups: Any = None,
    group_mode: str = "within",
    permute: Permute | None = None,
    progress: bool = False,
    **params: Any,
) -> PermutationResult:
    """Score ``measure`` on (X, Y) and on ``n_perm`` row permutations of Y.

    ``measure`` is a registered name (``'mutual_knn'``, ``'cka?debiased=false'``) or any callable
    ``f(X, Y) -> float`` (generic path, higher taken as better). ``params`` go to the measure,
    including the preprocessing options ``clip_quantile``, ``center``, ``normalize``.
    ``groups`` (one label per row): permute rows only within their group (``group_mode="within"``) or
    whole groups as blocks (``"blocks"``); ``permute(rng, n) -> indices``: a custom permutation per draw.
    """
    n_perm = check_n_perm(n_perm)
    kind = permutation_kind(groups, group_mode, permute)

    def draws(n: int) -> list[torch.Tensor]:
        return permutations(n, n_perm, seed, groups=groups, group_mode=group_mode, permute=permute)

    if callable(measure) and not isinstance(measure, Spec):
        x, y = as_pair(X, Y)
        name = getattr(measure, "__name__", "callable")
        func = measure
        perms = draws(x.shape[0])  # validates groups and the permute hook before any scoring
        raw = float(func(x, y, **params))
        null = np.array([float(func(x, y[p.to(y.device)], **params)) for p in _progress(perms, progress)])
        return PermutationResult(name, raw, null, True, None, seed, q, permutation=kind)
    spec = _registry.measure_spec(measure, **params)
    info = _registry.get(spec)
    prep, _ = _registry.split(spec)
    x, y = as_pair(X, Y)
    perms = draws(x.shape[0])  # bad groups or a bad permute hook fail before any compute
    if prep:
        x, y = preprocess(x, name="X", **prep), preprocess(y, name="Y", **prep)
    label = spec.id  # canonical: the parameters actually used
    checks = _registry.space_checks(x, y, info, _registry.split(spec)[1])
    dups = {c.name: c.duplicate_fraction for c in checks if c.n_distinct is not None}
    hib, best = info.higher_is_better, info.best_possible
    if _registry.degenerate_inputs(x, y, info, {}, checks):  # NaN score, NaN p: never significant
        nan = np.full(n_perm, np.nan)
        return PermutationResult(label, float("nan"), nan, hib, best, seed, q, {}, dups, kind)
    pm = prepared_measure(spec, max_dim=max(x.shape[1], y.shape[1]))
    check_rows(pm, x.shape[0])
    pa, pb = pm.prepare(x), pm.prepare(y)
    raw = pm.score(pa, pb)
    null = np.array([pm.score(pa, pm.permute(pb, p)) for p in _progress(perms, progress)])
    recall = {k: r for k, p in (("X", pa), ("Y", pb)) if (r := knn_recall(p)) is not None}
    return PermutationResult(label, raw, null, hib, best, seed, q, recall, dups, kind)


def _progress(items: list[torch.Tensor], show: bool) -> Any:
    return bar(items, show=show, desc="permutations")


__all__ = ["PermutationResult", "check_n_perm", "permutation_test", "permutations"]
