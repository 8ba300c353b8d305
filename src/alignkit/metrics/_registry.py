"""One registry of cross-space measures: name -> function + metadata (ReSi-style)."""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from alignkit.metrics.preprocess import preprocess as _preprocess


@dataclass(frozen=True)
class MeasureInfo:
    """What a user needs to know to read a measure's number."""

    name: str
    func: Callable[..., float]
    family: str  # knn | kernel | cca | shape | rsa | predictive | retrieval
    range: tuple[float, float]
    higher_is_better: bool  # True for similarities, False for distances
    symmetric: bool
    invariances: tuple[str, ...]  # orthogonal, isotropic_scale, translation, invertible_linear, permutation
    cost: str  # big-O of one evaluation
    description: str
    defaults: dict[str, Any] = field(default_factory=dict)
    knn_based: bool = False  # takes precomputed KNNGraph objects (fast permutation path)
    max_score: float | None = None  # the true maximum, for chance-adjusted scores

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("func")
        d["range"] = list(self.range)
        d["invariances"] = list(self.invariances)
        return d


_REGISTRY: dict[str, MeasureInfo] = {}


def register(
    name: str,
    *,
    family: str,
    range: tuple[float, float],
    higher_is_better: bool = True,
    symmetric: bool = True,
    invariances: tuple[str, ...] = (),
    cost: str,
    description: str,
    defaults: dict[str, Any] | None = None,
    knn_based: bool = False,
    max_score: float | None = None,
) -> Callable[[Callable[..., float]], Callable[..., float]]:
    """Decorator adding a measure function to the registry under ``name``."""

    def deco(func: Callable[..., float]) -> Callable[..., float]:
        if name in _REGISTRY:
            raise RuntimeError(f"measure {name!r} registered twice")
        _REGISTRY[name] = MeasureInfo(
            name=name,
            func=func,
            family=family,
            range=range,
            higher_is_better=higher_is_better,
            symmetric=symmetric,
            invariances=invariances,
            cost=cost,
            description=description,
            defaults=dict(defaults or {}),
            knn_based=knn_based,
            max_score=max_score if max_score is not None else range[1],
        )
        return func

    return deco


def _coerce(value: str) -> Any:
    low = value.lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("none", "null"):
        return None
    for cast in (int, float):
        try:
            return cast(value)
        except ValueError:
            pass
    return value


def parse_measure_id(measure_id: str) -> tuple[str, dict[str, Any]]:
    """Split ``'mutual_knn?k=10&metric=cosine'`` into the name and typed parameters."""
    name, _, query = measure_id.partition("?")
    params = {key: _coerce(val) for key, val in parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query))}
    return name.strip(), params


def get(name: str) -> MeasureInfo:
    """Look a measure up by name (parameters after '?' are ignored here)."""
    base, _ = parse_measure_id(name)
    try:
        return _REGISTRY[base]
    except KeyError:
        close = difflib.get_close_matches(base, list(_REGISTRY), n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
        raise ValueError(f"unknown measure {base!r}.{hint} Known measures: {', '.join(sorted(_REGISTRY))}") from None


def names() -> list[str]:
    """All registered measure names, sorted."""
    return sorted(_REGISTRY)


def describe(name: str | None = None) -> list[dict[str, Any]] | dict[str, Any]:
    """Metadata of every measure (a list of dicts), or of one when ``name`` is given."""
    if name is not None:
        return get(name).as_dict()
    return [_REGISTRY[n].as_dict() for n in names()]


PREPROCESS_KEYS = ("clip_quantile", "center", "normalize")


def split_preprocess(info: MeasureInfo, params: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(preprocessing options, the measure's own parameters). A measure that takes a parameter of
    the same name itself (``procrustes(center=...)``) gets it; it is not treated as preprocessing."""
    own_names = set(inspect.signature(info.func).parameters)
    prep = {k: v for k, v in params.items() if k in PREPROCESS_KEYS and k not in own_names}
    return prep, {k: v for k, v in params.items() if k not in prep}


def measure(name: str, X: Any, Y: Any, **params: Any) -> float:
    """Compute measure ``name`` (optionally ``'name?k=10'``) between row-paired X and Y.

    Besides the measure's own parameters, three preprocessing options (applied to each space
    before the measure, PRH style): ``clip_quantile`` (clip entries at ± the q-quantile of |x|),
    ``center`` (subtract column means), ``normalize`` (L2-normalise rows).
    """
    info = get(name)
    _, id_params = parse_measure_id(name)
    prep, merged = split_preprocess(info, {**id_params, **params})
    if prep:
        X = _preprocess(X, name="X", **prep)
        Y = _preprocess(Y, name="Y", **prep)
    return info.func(X, Y, **merged)
