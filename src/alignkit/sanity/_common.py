"""Shared pieces of the sanity tests: the measure list, input checks, row sampling, symmetrised scores."""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from alignkit._validation import ArrayLike, as_matrix
from alignkit.atlas import atlas
from alignkit.metrics import _registry
from alignkit.registry import Spec

# Parameter variants worth comparing, per registered measure (the rest run with their defaults). RBF bandwidths
# are Kornblith et al.'s (ICML 2019, Table 2: 0.2, 0.4, 0.8 × the median distance); SVCCA keeps 99 % of the
# variance (anatome) or the top 10 directions (PRH); kNN measures at k = 5, 10, 50.
KNN_KS = (5, 10, 50)
VARIANTS: dict[str, tuple[str, ...]] = {
    "cka": (
        "cka",
        "cka?debiased=false",
        "cka?kernel=rbf_median&threshold=0.2",
        "cka?kernel=rbf_median&threshold=0.4",
        "cka?kernel=rbf_median&threshold=0.8",
    ),
    "cca": ("cca", "cca?summary=mean_sq"),
    "svcca": ("svcca", "svcca?keep=10"),
}
# Errors that mean "this measure cannot run on these spaces" (widths differ, too few rows, a failed
# decomposition); anything else is a bug and propagates.
MEASURE_ERRORS = (ValueError, RuntimeError)
# Score one model against all others in one atlas only while its prepared layers fit in this many bytes.
STACK_BYTES = 2**30


def default_measures() -> list[str]:
    """Every registered measure, with the parameter variants of :data:`VARIANTS` and k ∈ :data:`KNN_KS` for the
    kNN measures (canonical ids, in registry order)."""
    out: list[str] = []
    for name in _registry.names():
        info = _registry.get(name)
        if name in VARIANTS:
            ids: tuple[str, ...] = VARIANTS[name]
        elif info.family == "knn" and "k" in info.own:
            ids = tuple(f"{name}?k={k}" for k in KNN_KS)
        else:
            ids = (name,)
        out.extend(_registry.measure_spec(i).id for i in ids)
    return out


def resolve_measures(measures: Sequence[str | Spec] | str | Spec | None) -> tuple[list[Spec], bool]:
    """Validated, canonical specs (and whether they are the default list). Repeats are an error."""
    if measures is None:
        return [_registry.measure_spec(m) for m in default_measures()], True
    if isinstance(measures, (str, Spec)):
        measures = [measures]
    if isinstance(measures, Mapping) or not isinstance(measures, Sequence):
        raise TypeError(f"measures must be a list of measure ids (e.g. ['cka', 'mutual_knn?k=10']) or None; got "
                        f"{type(measures).__name__}")  # fmt: skip
    specs = [_registry.measure_spec(m) for m in measures]
    if not specs:
        raise ValueError("measures is empty; pass None for the default list or at least one measure id")
    seen: dict[str, str] = {}
    for s in specs:
        key = repr((s.name, sorted(s.resolved.items())))  # "cka" and "cka?debiased=true" are one measure
        if key in seen:
            raise ValueError(f"measures lists one measure twice: {seen[key]!r} and {s.id!r}")
        seen[key] = s.id
    return specs, False


@dataclass(frozen=True)
class MeasureMeta:
    """What the sanity tables record about a measure."""

    id: str
    name: str
    family: str
    symmetric: bool
    higher_is_better: bool

    @property
    def sign(self) -> float:
        """+1 for similarities, −1 for distances: ``sign · score`` grows with similarity."""
        return 1.0 if self.higher_is_better else -1.0

    def row(self) -> dict[str, Any]:
        return {"measure": self.id, "name": self.name, "family": self.family,
                "symmetrised": not self.symmetric, "higher_is_better": self.higher_is_better}  # fmt: skip


def meta(spec: Spec) -> MeasureMeta:
    info = _registry.get(spec)
    return MeasureMeta(spec.id, info.name, info.family, info.symmetric, info.higher_is_better)


def check_name_sequence(models: Any, what: str) -> tuple[list[str], list[Any]]:
    """(names, values) of a list (names "0", "1", …) or a dict name → value."""
    if isinstance(models, Mapping):
        return [str(k) for k in models], list(models.values())
    if isinstance(models, (str, bytes)) or not isinstance(models, Sequence):
        raise TypeError(f"{what} must be a list or a dict name -> value; got {type(models).__name__}")
    return [str(i) for i in range(len(models))], list(models)


def as_matrices(values: Sequence[ArrayLike], labels: Sequence[str]) -> list[torch.Tensor]:
    """2-D finite tensors, all with the same number of rows (the same items); the error lists the counts."""
    out = [as_matrix(v, label) for v, label in zip(values, labels, strict=True)]
    counts = {label: int(t.shape[0]) for label, t in zip(labels, out, strict=True)}
    if len(set(counts.values())) > 1:
        raise ValueError(f"every representation must hold the same items (rows); got row counts {counts}")
    return out


def sample_rows(n: int, sample: int | None, seed: int) -> torch.Tensor | None:
    """The rows ``atlas(..., sample=, seed=)`` would keep (sorted), or None for all of them."""
    if sample is None:
        return None
    if isinstance(sample, bool) or not isinstance(sample, (int, np.integer)) or sample < 2:
        raise ValueError(f"sample must be an integer >= 2 (or None for all rows); got {sample!r}")
    if sample >= n:
        return None
    return torch.randperm(n, generator=torch.Generator().manual_seed(int(seed)))[: int(sample)].sort().values


def take(t: torch.Tensor, rows: torch.Tensor | None) -> torch.Tensor:
    return t if rows is None else t[rows.to(t.device)]


def check_seed(seed: Any) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer; got {seed!r}")
    return int(seed)


def cross_scores(spec: Spec, a: Mapping[str, Any], b: Mapping[str, Any], symmetric: bool) -> np.ndarray:
    """``S[i, j]`` = the measure between ``a[i]`` and ``b[j]``, symmetrised ``(s(a, b) + s(b, a))/2`` when the
    measure is asymmetric (one more atlas with the sides swapped)."""
    S = atlas(a, b, spec).scores
    if not symmetric:
        S = (S + atlas(b, a, spec).scores.T) / 2.0
    return S


def fits_rows(spec: Spec, n: int, widths: Sequence[int], n_spaces: int) -> bool:
    """Whether ``n_spaces`` prepared spaces of a measure fit in :data:`STACK_BYTES` at once (estimated: centred
    Grams for Gram-form CKA/HSIC, with their copy in the stacked matmul; kNN lists; else the features)."""
    info = _registry.get(spec)
    if info.prepare is None:  # the space itself: already in memory
        return True
    own = {**info.defaults, **_registry.split(spec)[1]}
    if info.name in ("cka", "hsic") and (own.get("kernel") != "linear" or own.get("form") == "gram" or n < max(widths)):
        per = 2 * 8 * n * n
    elif info.family == "knn":
        per = 16 * n * max(int(own.get("k", 10)), 1)
    else:
        per = 8 * n * max(widths)
    return n_spaces * per <= STACK_BYTES


def timed(func: Any, *args: Any, **kwargs: Any) -> tuple[Any, float]:
    start = time.perf_counter()
    out = func(*args, **kwargs)
    return out, time.perf_counter() - start


def run_or_reason(func: Any, *args: Any) -> tuple[Any, str, float]:
    """``(result, "", seconds)``, or ``(None, reason, seconds)`` when the measure cannot run on this data."""
    start = time.perf_counter()
    try:
        out = func(*args)
    except MEASURE_ERRORS as exc:
        return None, f"{type(exc).__name__}: {exc}", time.perf_counter() - start
    return out, "", time.perf_counter() - start


def warn_skipped(skipped: dict[str, str], explicit: bool, where: str) -> None:
    """Measures the caller named that could not run: a warning (the default list only records them)."""
    if skipped and explicit:
        detail = "; ".join(f"{m} ({why})" for m, why in skipped.items())
        warnings.warn(f"{where}: skipped measure(s) {detail}", UserWarning, stacklevel=3)


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman's ρ (average ranks for ties); NaN when fewer than 3 finite pairs or either side is constant."""
    from scipy.stats import rankdata

    keep = np.isfinite(x) & np.isfinite(y)
    if keep.sum() < 3:
        return float("nan")
    rx, ry = rankdata(x[keep]), rankdata(y[keep])
    return pearson(rx, ry)


def pearson(x: np.ndarray, y: np.ndarray) -> float:
    xc, yc = x - x.mean(), y - y.mean()
    den = math.sqrt(float(xc @ xc) * float(yc @ yc))
    return float(xc @ yc) / den if den > 0 else float("nan")


def frame(rows: list[dict[str, Any]], columns: Mapping[str, Any]) -> Any:
    """A DataFrame with exactly ``columns`` (name → ``str`` or a numpy dtype name) in that order and plain dtypes,
    also when ``rows`` is empty, so it round-trips to Parquet."""
    import pandas as pd

    df = pd.DataFrame(rows, columns=list(columns))
    return df.astype(dict(columns)).reset_index(drop=True)  # str: pandas' own string dtype (object before 3.0)
