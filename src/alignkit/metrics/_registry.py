"""The measure registry: name → function + ReSi-style metadata + typed parameters + fast path.

Built on :mod:`alignkit.registry`. A measure is registered once, with :func:`register` on its
function; that declares its metadata, its parameter schema (typed from the signature, with
``constraints`` for ranges and choices) and, optionally, its fast path for permutation nulls and
atlases (``prepare``: a factory of a :class:`~alignkit.metrics.prepared.PreparedMeasure`). The
registered public function validates its keyword parameters with the schema, so
``cka(X, Y, debiased="maybe")`` fails as clearly as ``measure("cka?debiased=maybe", X, Y)``.

Every entry point resolves an id through :func:`measure_spec` (parsed, validated, canonical, once).
Keyword arguments override the id's parameters (see :mod:`alignkit.registry`).
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from alignkit.registry import Entry, Param, ParamSchema, Registry, Spec, parse_id

#: Preprocessing options every measure accepts (PRH: clip outliers, centre, L2-normalise rows),
#: applied to each space before the measure. A measure with a parameter of the same name keeps it.
PREPROCESS_PARAMS: tuple[Param, ...] = (
    Param(
        "clip_quantile",
        ("float",),
        None,
        nullable=True,
        low=0.0,
        low_open=True,
        high=1.0,
        doc="clip entries at ± this quantile of |x| (PRH: 0.95)",
    ),
    Param("center", ("bool",), False, doc="subtract column means"),
    Param("normalize", ("bool",), False, doc="L2-normalise rows"),
)
PREPROCESS_KEYS = tuple(p.name for p in PREPROCESS_PARAMS)


@dataclass(frozen=True)
class MeasureInfo(Entry[Callable[..., float]]):
    """What a user needs to know to read a measure's number, and how to compute it fast."""

    family: str = ""  # knn | kernel | cca | shape | rsa | predictive | retrieval
    range: tuple[float, float] = (float("-inf"), float("inf"))
    higher_is_better: bool = True  # True for similarities, False for distances
    symmetric: bool = True
    invariances: tuple[str, ...] = ()  # orthogonal, isotropic_scale, translation, invertible_linear, permutation
    cost: str = ""  # big-O of one evaluation
    knn_based: bool = False  # takes precomputed KNNGraph objects
    max_score: float | None = None  # the true maximum, for chance-adjusted scores
    own: frozenset[str] = frozenset()  # the measure's own parameters (the rest are preprocessing)
    degenerate: str = "nan"  # on a degenerate space (alignkit.degenerate): "nan" + warning, or "raise"
    view: Callable[[Any, dict[str, Any]], Any] | None = field(default=None, repr=False)  # the space as it sees it
    duplicate_sensitive: bool = False  # neighbourhood measures: exact duplicate rows are counted and reported
    prepare: Callable[..., Any] | str | None = field(default=None, repr=False)

    @property
    def func(self) -> Callable[..., float]:
        """The unvalidated function (parameters already checked by the caller)."""
        return self.obj

    @property
    def defaults(self) -> dict[str, Any]:
        return {k: v for k, v in self.schema.defaults().items() if k in self.own}

    @property
    def best_possible(self) -> float | None:
        """The best value the measure can take (max for similarities, min for distances)."""
        return self.max_score if self.higher_is_better else self.range[0]

    def prepared_factory(self) -> Callable[..., Any] | None:
        """The declared fast path (a lazy ``'module:attr'`` reference is imported on first use)."""
        if isinstance(self.prepare, str):
            module, _, attr = self.prepare.partition(":")
            return getattr(importlib.import_module(module), attr)  # type: ignore[no-any-return]
        return self.prepare

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "family": self.family,
            "range": list(self.range),
            "higher_is_better": self.higher_is_better,
            "symmetric": self.symmetric,
            "invariances": list(self.invariances),
            "cost": self.cost,
            "description": self.description,
            "defaults": self.defaults,
            "knn_based": self.knn_based,
            "max_score": self.max_score,
            "fast_path": self.prepare is not None,
            "degenerate": self.degenerate,
            "duplicate_sensitive": self.duplicate_sensitive,
            "params": self.schema.describe(),
        }


MEASURES: Registry[MeasureInfo] = Registry("measure")


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
    constraints: dict[str, dict[str, Any]] | None = None,
    defaults: dict[str, Any] | None = None,
    knn_based: bool = False,
    max_score: float | None = None,
    prepare: Callable[..., Any] | str | None = None,
    degenerate: str = "nan",
    view: Callable[[Any, dict[str, Any]], Any] | None = None,
    duplicate_sensitive: bool = False,
    replace: bool = False,
) -> Callable[[Callable[..., float]], Callable[..., float]]:
    """Decorator: register ``func(X, Y, **params) -> float`` as measure ``name``.

    The schema comes from the signature (everything after X and Y), typed by annotations and
    defaults, tightened by ``constraints`` (``{"k": {"low": 1}}``). ``defaults``, when given, must
    agree with the signature (it documents the headline settings). ``prepare(info, params, *,
    max_dim, linear_form)`` returns the measure's :class:`PreparedMeasure` (its fast null/atlas
    path); without one, nulls and atlases call the function per pair. ``degenerate`` is what the
    measure does with a degenerate (constant) space, see :mod:`alignkit.degenerate`: ``"nan"`` (NaN and
    a warning; the default) or ``"raise"``; ``view(x, params)`` is the space as the measure sees it,
    checked instead of the raw input (kNN with cosine similarity: the unit rows). Returns the function
    wrapped so that direct calls validate their parameters and apply the policy too.
    """
    from alignkit.degenerate import POLICIES

    if degenerate not in POLICIES:
        raise ValueError(f"measure {name!r}: degenerate must be one of {POLICIES}; got {degenerate!r}")

    def deco(func: Callable[..., float]) -> Callable[..., float]:
        own_schema = ParamSchema.from_callable(func, skip=2, **(constraints or {}))
        own = frozenset(own_schema.names())
        for key, value in (defaults or {}).items():
            if key not in own or own_schema.get(key).default != value:
                raise ValueError(f"measure {name!r}: defaults[{key!r}]={value!r} disagrees with the signature")
        schema = ParamSchema((*own_schema.params, *(p for p in PREPROCESS_PARAMS if p.name not in own)))
        MEASURES.add(
            MeasureInfo(
                name=name,
                obj=func,
                description=description,
                schema=schema,
                family=family,
                range=range,
                higher_is_better=higher_is_better,
                symmetric=symmetric,
                invariances=invariances,
                cost=cost,
                knn_based=knn_based,
                max_score=max_score if max_score is not None else range[1],
                own=own,
                prepare=prepare,
                degenerate=degenerate,
                view=view,
                duplicate_sensitive=duplicate_sensitive,
            ),
            replace=replace,
        )
        return _validating(func, own_schema, name)

    return deco


def _validating(func: Callable[..., float], schema: ParamSchema, name: str) -> Callable[..., float]:
    """``func`` with its parameters (after X, Y) checked and coerced by ``schema``, and the degenerate-space
    policy applied to X and Y, on every call."""
    sig = inspect.signature(func)

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> float:
        try:
            bound = sig.bind(*args, **kwargs)
        except TypeError as exc:
            accepted = ", ".join(schema.names())
            raise TypeError(f"measure {name!r}: {exc}; it takes X, Y and {accepted}") from None
        items = list(bound.arguments.items())
        params = schema.validate(dict(items[2:]), f"measure {name!r}")
        bound.arguments.update(params)
        X, Y, info = items[0][1], items[1][1], MEASURES.get(name)
        seen: list[Any] = []
        checks = space_checks(X, Y, info, params, seen)
        if degenerate_inputs(X, Y, info, params, checks):
            return float("nan")
        with _known_inputs(X, Y, checks, seen):
            return func(*bound.args, **bound.kwargs)

    return wrapper


def check_space(info: MeasureInfo, X: Any, label: str, params: dict[str, Any], seen: list[Any] | None = None) -> Any:
    """One space as ``info`` sees it (its ``view``), inspected once; None for a precomputed kNN graph.

    ``seen`` (optional) collects ``(array, tag, check, view)`` for a measure with a view and a duplicate count
    (the kNN measures; tag = its metric), so that the search inside the measure reuses both (:mod:`alignkit._known`).
    """
    from alignkit.degenerate import inspect_space
    from alignkit.neighbors import KNNGraph

    full = {**info.defaults, **params}
    k, ties = full.get("k"), full.get("ties")
    if isinstance(X, KNNGraph):  # a precomputed graph carries the check knn_graph made of its space
        check = X.meta.get("check")
        return None if check is None else _with_ties(dataclasses.replace(check, name=label), k, info, ties)
    if getattr(X, "ndim", None) is None:  # lists, tuples: checked like the arrays they become
        try:
            X = np.asarray(X)
        except Exception:
            return None
    if getattr(X, "ndim", None) != 2:
        return None
    raw = X
    if info.view is not None:
        from alignkit._validation import as_matrix

        X = info.view(as_matrix(X, label), {**info.defaults, **params})
    check = inspect_space(X, label, duplicates=False)
    if info.view is not None:  # the statistics describe the view, not the array the measure will read
        check = dataclasses.replace(check, moments=None)
    if info.duplicate_sensitive and not check.n_nonfinite:
        from alignkit.degenerate import duplicate_groups

        groups = duplicate_groups(raw)
        check = dataclasses.replace(check, n_distinct=len(groups), group_sizes=groups)
        if seen is not None and info.view is not None:
            seen.append((raw, str(full.get("metric", "cosine")), check, X))
        check = _with_ties(check, k, info, ties)
    return check


def _with_ties(check: Any, k: Any, info: MeasureInfo, ties: Any = None) -> Any:
    """A neighbourhood measure's space is degenerate when most rows have at least k identical copies: their
    k nearest neighbours are all ties at distance 0, so the score would be decided by tie-breaking (identical
    in both spaces, hence a spurious, 'significant' agreement). With ``ties="fractional"`` the tied neighbours
    share the slots, so the score is defined there (whether it is significant is the null's question: permute
    duplicates together, ``groups=``)."""
    if ties == "fractional":
        return check
    if not info.duplicate_sensitive or not isinstance(k, int) or check.group_sizes is None:
        return check
    tied = check.tied_fraction(k)
    if tied <= 0.5:
        return check
    why = f"{tied:.1%} of rows have ≥ k = {k} identical copies, so their neighbourhoods are decided by ties"
    return dataclasses.replace(check, also=(*check.also, why))


def space_checks(X: Any, Y: Any, info: MeasureInfo, params: dict[str, Any], seen: list[Any] | None = None) -> list[Any]:
    """The checks of both spaces (precomputed kNN graphs are not re-checked); ``seen`` as in :func:`check_space`."""
    checks = (check_space(info, X, "X", params, seen), check_space(info, Y, "Y", params, seen))
    return [c for c in checks if c is not None]


def _known_inputs(X: Any, Y: Any, checks: list[Any], seen: list[Any] | None = None) -> Any:
    """The checks' column statistics (and the kNN measures' checked views, ``seen``), visible to the measure for
    this call (:mod:`alignkit._known`): its finiteness check, centring and search reuse them instead of reading the
    inputs again."""
    from alignkit._known import known

    by_name = {c.name: c.moments for c in checks}
    return known([(X, by_name.get("X")), (Y, by_name.get("Y"))], seen)


def degenerate_inputs(
    X: Any, Y: Any, info: MeasureInfo, params: dict[str, Any], checks: list[Any] | None = None
) -> bool:
    """Check both spaces once and apply the measure's policy: True means the caller returns NaN (a warning
    was given); ``"raise"`` raises :class:`~alignkit.degenerate.DegenerateSpaceError`."""
    from alignkit.degenerate import handle

    checks = space_checks(X, Y, info, params) if checks is None else checks
    return handle(checks, info.degenerate, f"measure {info.name!r}")


def get(name: str | Spec) -> MeasureInfo:
    """Look a measure up by name or id (parameters after '?' are ignored here)."""
    return MEASURES.get(name.name if isinstance(name, Spec) else name)


def names() -> list[str]:
    """All registered measure names, sorted."""
    return MEASURES.names()


def describe(name: str | None = None) -> list[dict[str, Any]] | dict[str, Any]:
    """Metadata of every measure (a list of dicts), or of one when ``name`` is given."""
    return MEASURES.describe(name)


def measure_spec(ref: str | Spec, /, **overrides: Any) -> Spec:
    """Parse, validate and canonicalise a measure id once; ``overrides`` win over the id's parameters.

    ``measure_spec("cka?debiased=no")`` raises (a bool takes true/false/1/0 only);
    ``measure_spec("mutual_knn?k=5", k=7).id == "mutual_knn?k=7"``.
    """
    return MEASURES.spec(ref, **overrides)


def parse_measure_id(measure_id: str) -> tuple[str, dict[str, Any]]:
    """``'mutual_knn?k=10&metric=cosine'`` → ``('mutual_knn', {'k': 10, 'metric': 'cosine'})``, typed."""
    spec = measure_spec(measure_id)
    return spec.name, spec.kwargs


def split(spec: Spec) -> tuple[dict[str, Any], dict[str, Any]]:
    """(preprocessing options, the measure's own parameters) of a measure spec."""
    own = get(spec).own
    prep = {k: v for k, v in spec.params if k not in own}
    return prep, {k: v for k, v in spec.params if k in own}


def measure(name: str | Spec, X: Any, Y: Any, **params: Any) -> float:
    """Compute measure ``name`` (or an id ``'name?k=10'``) between row-paired X and Y.

    Besides the measure's own parameters, three preprocessing options (applied to each space
    before the measure, PRH style): ``clip_quantile`` (clip entries at ± the q-quantile of |x|),
    ``center`` (subtract column means), ``normalize`` (L2-normalise rows). Keyword arguments
    override the id's parameters.
    """
    from alignkit.metrics.preprocess import preprocess

    spec = measure_spec(name, **params)
    prep, own = split(spec)
    if prep:
        X = preprocess(X, name="X", **prep)
        Y = preprocess(Y, name="Y", **prep)
    info = get(spec)
    seen: list[Any] = []
    checks = space_checks(X, Y, info, own, seen)
    if degenerate_inputs(X, Y, info, own, checks):
        return float("nan")
    with _known_inputs(X, Y, checks, seen):
        return info.func(X, Y, **own)


__all__ = [
    "MEASURES",
    "PREPROCESS_KEYS",
    "MeasureInfo",
    "describe",
    "get",
    "measure",
    "measure_spec",
    "names",
    "parse_id",
    "parse_measure_id",
    "register",
    "split",
]
