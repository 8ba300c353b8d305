"""The diagnostic registry: name → function + metadata + typed parameters, on the one registry contract.

A diagnostic describes the geometry of one space, of a pair of row-paired spaces, of labelled classes,
of subspaces or of the quality of individual pairs. It is registered once, with :func:`register` on its
function, which declares

- ``inputs``: the positional arrays it takes, in order (``("X",)``, ``("X", "Y")``,
  ``("prompt", "chosen", "rejected")``, ...), and whether it needs ``labels`` or accepts ``groups``;
- how it reads (``range``, ``higher_is_better``, ``cost``, ``family``);
- how it is calibrated: ``resample`` (True when its rows are items, so a subsampling confidence interval
  applies: :func:`alignkit.diagnostics.diagnostic_ci`, the same half-sampling interval as the measures')
  and ``null`` (``"shuffle_pairs"``: permute Y's rows against X; ``"shuffle_labels"``: permute the labels;
  or None; :func:`alignkit.diagnostics.diagnostic_null`);
- what it does with a degenerate space (``degenerate``: ``"nan"`` + warning, or ``"raise"``).

Its parameters are typed from the signature (everything after the positional inputs) and tightened by
``constraints``, exactly as for measures (:mod:`alignkit.metrics._registry`). A diagnostic returns a float
or a :class:`DiagnosticResult` (headline ``value`` + ``as_dict()``).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from alignkit.registry import Entry, ParamSchema, Registry, Spec

FAMILIES = ("space", "pair", "classes", "subspace", "pairs", "concepts")
NULLS = ("shuffle_pairs", "shuffle_labels")
KEYWORD_INPUTS = ("labels", "groups")


@dataclass(frozen=True)
class DiagnosticInfo(Entry[Callable[..., Any]]):
    """What a user needs to know to read a diagnostic's number and calibrate it."""

    family: str = "space"
    inputs: tuple[str, ...] = ("X",)  # positional arrays, in order
    needs_labels: bool = False  # labels is a required input
    accepts_labels: bool = False  # labels is an input (required or optional)
    accepts_groups: bool = False
    paired_rows: bool = True  # the positional arrays are row-paired (same items, same order)
    range: tuple[float, float] = (float("-inf"), float("inf"))
    higher_is_better: bool | None = None  # None: neither direction is "better" (a description, not a score)
    cost: str = ""
    resample: bool = True
    null: str | None = None
    degenerate: str = "nan"

    @property
    def func(self) -> Callable[..., Any]:
        """The unvalidated function (parameters already checked by the caller)."""
        return self.obj

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "family": self.family,
            "inputs": list(self.inputs) + (["labels"] if self.needs_labels else []),
            "accepts_groups": self.accepts_groups,
            "range": list(self.range),
            "higher_is_better": self.higher_is_better,
            "cost": self.cost,
            "resample": self.resample,
            "null": self.null,
            "degenerate": self.degenerate,
            "description": self.description,
            "defaults": self.schema.defaults(),
            "params": self.schema.describe(),
        }


DIAGNOSTICS: Registry[DiagnosticInfo] = Registry("diagnostic")


def register(
    name: str,
    *,
    family: str,
    inputs: tuple[str, ...] = ("X",),
    range: tuple[float, float] = (float("-inf"), float("inf")),
    higher_is_better: bool | None = None,
    cost: str,
    description: str,
    constraints: dict[str, dict[str, Any]] | None = None,
    resample: bool = True,
    null: str | None = None,
    paired_rows: bool = True,
    degenerate: str = "nan",
    replace: bool = False,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator: register ``func(*inputs, [labels], [groups], **params)`` as diagnostic ``name``.

    ``labels`` and ``groups``, when the function has them, are keyword parameters it receives from
    :func:`diagnose`; they are not part of the parameter schema. Returns the function wrapped so that
    direct calls validate their parameters like :func:`diagnose` does.
    """
    from alignkit.degenerate import POLICIES

    owner = f"diagnostic {name!r}"
    if family not in FAMILIES:
        raise ValueError(f"{owner}: family must be one of {FAMILIES}; got {family!r}")
    if null is not None and null not in NULLS:
        raise ValueError(f"{owner}: null must be one of {NULLS} or None; got {null!r}")
    if degenerate not in POLICIES:
        raise ValueError(f"{owner}: degenerate must be one of {POLICIES}; got {degenerate!r}")
    if not inputs or any(k in KEYWORD_INPUTS for k in inputs):
        raise ValueError(f"{owner}: inputs names the positional arrays (labels/groups are keywords); got {inputs!r}")

    def deco(func: Callable[..., Any]) -> Callable[..., Any]:
        sig = inspect.signature(func)
        keyword_inputs = [k for k in KEYWORD_INPUTS if k in sig.parameters]
        if null == "shuffle_labels" and "labels" not in keyword_inputs:
            raise ValueError(f"{owner}: a labels null needs a 'labels' parameter")
        if null == "shuffle_pairs" and len(inputs) < 2:
            raise ValueError(f"{owner}: a pairs null needs two row-paired inputs")
        skip: tuple[str, ...] = (*list(sig.parameters)[: len(inputs)], *keyword_inputs)
        limits: dict[str, dict[str, Any]] = constraints or {}
        schema = ParamSchema.from_callable(func, skip=skip, **limits)  # type: ignore[arg-type]  # not `extra`
        needs_labels = "labels" in sig.parameters and sig.parameters["labels"].default is inspect.Parameter.empty
        DIAGNOSTICS.add(
            DiagnosticInfo(
                name=name,
                obj=func,
                description=description,
                schema=schema,
                family=family,
                inputs=inputs,
                needs_labels=needs_labels,
                accepts_labels="labels" in sig.parameters,
                accepts_groups="groups" in sig.parameters,
                paired_rows=paired_rows,
                range=range,
                higher_is_better=higher_is_better,
                cost=cost,
                resample=resample,
                null=null,
                degenerate=degenerate,
            ),
            replace=replace,
        )
        return _validating(func, schema, name, len(inputs), tuple(keyword_inputs))

    return deco


def _validating(
    func: Callable[..., Any], schema: ParamSchema, name: str, n_inputs: int, keyword_inputs: tuple[str, ...]
) -> Callable[..., Any]:
    sig = inspect.signature(func)

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            bound = sig.bind(*args, **kwargs)
        except TypeError as exc:
            accepted = ", ".join([*keyword_inputs, *schema.names()])
            raise TypeError(f"diagnostic {name!r}: {exc}; it takes {n_inputs} array(s) and {accepted}") from None
        items = list(bound.arguments.items())
        params = {k: v for k, v in items[n_inputs:] if k not in keyword_inputs}
        bound.arguments.update(schema.validate(params, f"diagnostic {name!r}"))
        return func(*bound.args, **bound.kwargs)

    return wrapper


def get(name: str | Spec) -> DiagnosticInfo:
    """Look a diagnostic up by name or id (parameters after '?' are ignored here)."""
    return DIAGNOSTICS.get(name.name if isinstance(name, Spec) else name)


def names() -> list[str]:
    """All registered diagnostic names, sorted."""
    return DIAGNOSTICS.names()


def describe(name: str | None = None) -> list[dict[str, Any]] | dict[str, Any]:
    """Metadata of every diagnostic (a list of dicts), or of one when ``name`` is given."""
    return DIAGNOSTICS.describe(name)


def diagnostic_spec(ref: str | Spec, /, **overrides: Any) -> Spec:
    """Parse, validate and canonicalise a diagnostic id once (``'uniformity?t=2'``); overrides win."""
    return DIAGNOSTICS.spec(ref, **overrides)


__all__ = ["DIAGNOSTICS", "FAMILIES", "DiagnosticInfo", "describe", "diagnostic_spec", "get", "names", "register"]
