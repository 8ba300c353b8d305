"""Running a registered diagnostic: by name, with a subsampling CI, against a null, over layers.

``diagnose(name, *arrays, labels=None, groups=None, **params)`` resolves the id once (typed, validated,
keyword arguments override the id's parameters), checks the arrays the diagnostic declares (count,
row pairing, degenerate spaces by its policy) and calls it. :func:`diagnostic_ci` and
:func:`diagnostic_null` wrap the same call with the measures' half-sampling interval and a permutation
null (of Y's rows against X, or of the labels), returning the measures' result types
(:class:`~alignkit.stats.BootstrapResult`, :class:`~alignkit.stats.PermutationResult`).
:func:`profile` runs one diagnostic over every layer of a model (one pass per layer).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from alignkit._progress import progress as progress_bar
from alignkit.diagnostics._registry import DiagnosticInfo, diagnostic_spec, get
from alignkit.diagnostics._result import as_row, value_of
from alignkit.registry import Spec


@dataclass(frozen=True)
class _Call:
    """A resolved diagnostic call: the spec, its entry, the arrays and keyword inputs, ready to run on rows."""

    spec: Spec
    info: DiagnosticInfo
    arrays: tuple[Any, ...]
    labels: Any
    groups: Any

    def run(self, rows: np.ndarray | None = None, labels: Any = None) -> Any:
        arrays = self.arrays if rows is None else tuple(_take(a, rows) for a in self.arrays)
        kw: dict[str, Any] = dict(self.spec.kwargs)
        lab = self.labels if labels is None else labels
        if lab is not None:
            kw["labels"] = lab if rows is None else np.asarray(lab)[rows]
        if self.groups is not None and self.info.accepts_groups:
            kw["groups"] = self.groups if rows is None else np.asarray(self.groups)[rows]
        return self.info.func(*arrays, **kw)

    @property
    def n(self) -> int:
        return int(self.arrays[0].shape[0])


def _take(a: Any, rows: np.ndarray) -> Any:
    if hasattr(a, "detach"):  # torch: index on its device
        import torch

        return a[torch.as_tensor(rows, device=a.device)]
    return np.asarray(a)[rows]


def _resolve(
    name: str | Spec, arrays: tuple[Any, ...], labels: Any, groups: Any, params: dict[str, Any]
) -> _Call | None:
    """Validate once; None when a degenerate space makes the diagnostic NaN (a warning was given)."""
    from alignkit.degenerate import handle, inspect_space

    spec = diagnostic_spec(name, **params)
    info = get(spec)
    what = f"diagnostic {info.name!r}"
    if len(arrays) != len(info.inputs):
        raise TypeError(f"{what} takes {len(info.inputs)} array(s) ({', '.join(info.inputs)}); got {len(arrays)}")
    if info.needs_labels and labels is None:
        raise ValueError(f"{what} needs labels= (one class label per row)")
    if labels is not None and not info.accepts_labels:
        raise TypeError(f"{what} takes no labels")
    if groups is not None and not info.accepts_groups:
        raise TypeError(f"{what} takes no groups")
    checks = []
    for label, a in zip(info.inputs, arrays, strict=True):
        # only item spaces are checked: weight matrices and updates (paired_rows=False) may be low-rank by design
        if info.paired_rows and getattr(a, "ndim", np.ndim(a)) == 2:
            checks.append(inspect_space(a if hasattr(a, "shape") else np.asarray(a), label, duplicates=False))
    if info.paired_rows and len(checks) > 1:
        rows = {c.name: c.n for c in checks}
        if len(set(rows.values())) > 1:
            got = ", ".join(f"{k}: {v}" for k, v in rows.items())
            raise ValueError(f"{what}: the inputs must be row-paired (the same items in the same order); rows {got}")
    if handle(checks, info.degenerate, what):
        return None
    return _Call(spec, info, arrays, labels, groups)


def diagnose(name: str | Spec, *arrays: Any, labels: Any = None, groups: Any = None, **params: Any) -> Any:
    """Compute diagnostic ``name`` (or an id ``'uniformity?t=2'``) on the arrays it declares.

    Returns what the diagnostic returns: a float, or a result object with ``value`` and ``as_dict()``.
    A degenerate space gives NaN with a warning (or an error, by the diagnostic's declared policy).
    """
    call = _resolve(name, arrays, labels, groups, params)
    return float("nan") if call is None else call.run()


def diagnostic_ci(
    name: str | Spec,
    *arrays: Any,
    labels: Any = None,
    groups: Any = None,
    n_boot: int = 200,
    level: float = 0.95,
    fraction: float = 0.5,
    seed: int = 0,
    progress: bool = False,
    **params: Any,
) -> Any:
    """A subsampling confidence interval for a diagnostic's headline value (same interval as
    :func:`alignkit.bootstrap_ci`: m-of-n subsets without replacement, so no duplicated rows enter a
    neighbour or MST statistic). With ``groups``, whole groups are drawn. Returns a
    :class:`~alignkit.stats.BootstrapResult` whose ``measure`` is the diagnostic's canonical id.
    """
    from alignkit.stats.bootstrap import BootstrapResult, subsample_interval
    from alignkit.stats.groups import row_subsets

    _check_level_fraction(level, fraction)
    n_boot = _check_count(n_boot, "n_boot", 2)
    call = _resolve(name, arrays, labels, groups, params)
    spec = diagnostic_spec(name, **params)
    info = get(spec)
    if not info.resample:
        raise ValueError(f"diagnostic {info.name!r}: its rows are not items, so a subsampling interval does not apply")
    nan = float("nan")
    if call is None:
        return BootstrapResult(spec.id, nan, nan, nan, level, 0, 0, np.full(n_boot, nan), seed)
    n = call.n
    m = round(fraction * n)
    if not 2 <= m < n:
        raise ValueError(f"fraction={fraction} gives a subset of m={m} items out of n={n}; need 2 <= m < n")
    m, subsets = row_subsets(n, m, n_boot, seed, groups=groups)  # as bootstrap_ci: whole groups with groups
    score = value_of(call.run())
    samples = []
    for rows in progress_bar(subsets, show=progress, desc=f"{info.name} subsamples", total=n_boot):
        try:
            samples.append(value_of(call.run(np.sort(rows.numpy()))))  # rows keep their order
        except ValueError:  # a subset that lost a class, say: counts as undefined, and says so via NaN
            samples.append(nan)
    return subsample_interval(spec.id, score, np.asarray(samples, dtype=float), m, n, level, info.range, seed)


def diagnostic_null(
    name: str | Spec,
    *arrays: Any,
    labels: Any = None,
    groups: Any = None,
    n_perm: int = 200,
    seed: int = 0,
    progress: bool = False,
    **params: Any,
) -> Any:
    """A permutation null for a diagnostic that declares one: ``shuffle_pairs`` permutes the rows of the
    second array against the first (breaking the pairing), ``shuffle_labels`` permutes the labels. With
    ``groups``, permutations stay within groups (items of a group are exchangeable only with each other).
    Returns a :class:`~alignkit.stats.PermutationResult` (add-one p-value, z, chance-adjusted value).
    """
    from alignkit.stats.permutation import PermutationResult, permutations

    n_perm = _check_count(n_perm, "n_perm", 1)
    spec = diagnostic_spec(name, **params)
    info = get(spec)
    if info.null is None:
        raise ValueError(f"diagnostic {info.name!r} declares no permutation null (it compares nothing to chance)")
    if info.higher_is_better is None:
        raise ValueError(f"diagnostic {info.name!r} has no direction, so a one-sided null test does not apply")
    call = _resolve(name, arrays, labels, groups, params)
    best = info.range[1] if info.higher_is_better else info.range[0]
    best_score = best if math.isfinite(best) else None
    if call is None:
        return PermutationResult(
            spec.id, float("nan"), np.full(n_perm, np.nan), info.higher_is_better, best_score, seed
        )
    perms = permutations(call.n, n_perm, seed, groups=groups, group_mode="within")  # as permutation_test
    score = value_of(call.run())
    null = []
    for p in progress_bar(perms, show=progress, desc=f"{info.name} null"):
        perm = p.numpy()
        if info.null == "shuffle_labels":
            null.append(value_of(call.run(labels=np.asarray(labels)[perm])))
        else:
            arrays_p = (call.arrays[0], _take(call.arrays[1], perm), *call.arrays[2:])
            null.append(value_of(_Call(call.spec, info, arrays_p, call.labels, call.groups).run()))
    return PermutationResult(spec.id, score, np.asarray(null, dtype=float), info.higher_is_better, best_score, seed)


def _check_count(v: Any, name: str, low: int) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < low:
        raise ValueError(f"{name} must be an integer >= {low}; got {v!r}")
    return int(v)


def _check_level_fraction(level: float, fraction: float) -> None:
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1); got {level}")
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"fraction must be in (0, 1); got {fraction}")


@dataclass(frozen=True)
class Profile:
    """One diagnostic over the layers of one model: a tidy row per layer (value, details, CI)."""

    diagnostic: str
    rows: list[dict[str, Any]] = field(default_factory=list)

    def values(self) -> dict[str, float]:
        return {r["layer"]: r["value"] for r in self.rows}

    def to_rows(self) -> list[dict[str, Any]]:
        return [dict(r) for r in self.rows]

    def to_pandas(self) -> Any:
        import pandas as pd

        return pd.DataFrame(self.to_rows())


def profile(
    name: str | Spec,
    layers: Mapping[str, Any] | Sequence[Any],
    *others: Any,
    labels: Any = None,
    groups: Any = None,
    n_boot: int = 0,
    level: float = 0.95,
    seed: int = 0,
    progress: bool = False,
    **params: Any,
) -> Profile:
    """Diagnostic ``name`` on every layer of one model (``layers``: name → array, or a list), one pass
    per layer, with a subsampling CI per layer when ``n_boot`` > 0. ``others`` are the diagnostic's
    further inputs, shared by every layer (e.g. the other space of a pair diagnostic). A degenerate
    layer gives a NaN row with ``degenerate=True`` (and one warning), never a number that reads as
    structure.
    """
    import warnings

    from alignkit.atlas import _named
    from alignkit.degenerate import DegenerateSpaceWarning

    spec = diagnostic_spec(name, **params)
    named = _named(layers, "layers")
    rows = []
    for layer, X in progress_bar(list(named.items()), show=progress, desc=f"{spec.name} per layer"):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", DegenerateSpaceWarning)
            row = as_row(diagnose(spec, X, *others, labels=labels, groups=groups))  # the details too
            if n_boot:
                ci = diagnostic_ci(
                    spec, X, *others, labels=labels, groups=groups, n_boot=n_boot, level=level, seed=seed
                )
                row.update(ci_low=ci.low, ci_high=ci.high, level=level)
        degenerate = not math.isfinite(row["value"]) and any(
            issubclass(w.category, DegenerateSpaceWarning) for w in caught
        )
        for w in caught:
            if not issubclass(w.category, DegenerateSpaceWarning):
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        rows.append({"diagnostic": spec.id, "layer": layer, **row, "degenerate": degenerate})
    bad = [r["layer"] for r in rows if r["degenerate"]]
    if bad:
        warnings.warn(
            f"diagnostic {spec.id!r}: layer(s) {', '.join(bad)} are degenerate (constant or collapsed); see the rows",
            DegenerateSpaceWarning,
            stacklevel=2,
        )
    return Profile(spec.id, rows)


__all__ = ["Profile", "diagnose", "diagnostic_ci", "diagnostic_null", "profile"]
