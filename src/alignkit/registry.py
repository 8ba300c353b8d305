"""One registry contract for every kind of thing users add: measures, diagnostics, aligners, heads,
losses, encoders, dataset kinds, job kinds.

Every registration is a name, a description, family-specific metadata and a typed parameter schema.
Duplicates are an error unless ``replace=True``; an unknown name fails with a did-you-mean; every
registry can ``names()``, ``get()`` and ``describe()``. Ids carry parameters (``mutual_knn?k=10``);
:meth:`Registry.spec` parses, validates and canonicalises one **once** into a :class:`Spec` that every
entry point (library, statistics, atlas, run config, CLI) then uses.

Precedence, everywhere: **keyword arguments override the id's parameters, which override the
defaults** — an id behaves like ``functools.partial``: ``measure("mutual_knn?k=5", X, Y, k=7)``
uses k = 7, and so does ``alignkit measure -m 'mutual_knn?k=5' --param k=7``.

This module imports nothing heavy (no torch, numpy or scipy), so the CLI's help can read it.
"""

from __future__ import annotations

import difflib
import inspect
import math
import numbers
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Generic, TypeVar

__all__ = [
    "REQUIRED",
    "Entry",
    "Param",
    "ParamSchema",
    "Registry",
    "Spec",
    "check_bool",
    "format_value",
    "parse_id",
]

_KINDS = ("bool", "int", "float", "str", "any")
_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_TRUE = ("true", "1")
_FALSE = ("false", "0")
_NONE = ("none", "null")


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Any = _Required()


def _is_int(v: Any) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _is_float(v: Any) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, (bool, numbers.Integral))


@dataclass(frozen=True)
class Param:
    """One typed parameter.

    ``validator`` (optional) checks or normalises the coerced value further (raise ValueError/TypeError).
    ``kinds`` are tried in order (``("int", "float")`` keeps ``5`` an int and ``0.9`` a float). A bool
    accepts ``True/False``, ``1/0`` and the strings ``true/false/1/0`` (any case) and nothing else; an
    int never accepts a bool; numbers must be finite unless ``allow_inf``. ``low``/``high`` bound
    numbers (inclusive; ``low_open``/``high_open`` make them strict); ``choices`` lists allowed values.
    """

    name: str
    kinds: tuple[str, ...] = ("any",)
    default: Any = REQUIRED
    nullable: bool = False
    choices: tuple[Any, ...] | None = None
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    allow_inf: bool = False
    doc: str = ""
    validator: Callable[[Any], Any] | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        bad = [k for k in self.kinds if k not in _KINDS]
        if bad or not self.kinds:
            raise ValueError(f"parameter {self.name!r}: kinds must be among {_KINDS}; got {self.kinds}")

    @property
    def required(self) -> bool:
        return self.default is REQUIRED

    def expected(self) -> str:
        """What the parameter accepts, in words, for error messages."""
        if self.choices is not None:
            text = "one of " + ", ".join(format_value(c) for c in self.choices)
        else:
            names = {"bool": "a boolean (true/false/1/0)", "int": "an integer", "float": "a number", "str": "a string"}
            text = " or ".join(names.get(k, "any value") for k in self.kinds)
            text += _bounds_text(self)
        return text + (" or none" if self.nullable else "")

    def check(self, value: Any, owner: str = "") -> Any:
        """The value, coerced to the parameter's type and checked; a ``ValueError`` names owner and key."""
        where = f"{owner}: " if owner else ""
        if value is None or (isinstance(value, str) and value.strip().lower() in _NONE and "str" not in self.kinds):
            if self.nullable or self.default is None:
                return None
            raise ValueError(f"{where}{self.name} must be {self.expected()}; got {value!r}")
        for kind in self.kinds:
            ok, out = _coerce(kind, value)
            if ok:
                break
        else:
            # A value of the wrong Python type is a TypeError; a string that does not parse is a ValueError.
            error = ValueError if isinstance(value, str) else TypeError
            raise error(f"{where}{self.name} must be {self.expected()}; got {value!r}")
        if isinstance(out, float) and not self.allow_inf and not math.isfinite(out):
            raise ValueError(f"{where}{self.name} must be finite; got {value!r}")
        if self.choices is not None and out not in self.choices:
            raise ValueError(f"{where}{self.name} must be {self.expected()}; got {value!r}")
        if isinstance(out, (int, float)) and not isinstance(out, bool) and not _in_bounds(self, out):
            raise ValueError(f"{where}{self.name} must be {self.expected()}; got {value!r}")
        if self.validator is not None:
            try:
                out = self.validator(out)
            except (TypeError, ValueError) as exc:
                raise type(exc)(f"{where}{self.name}: {exc}") from None
        return out

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "type": " | ".join(self.kinds), "expected": self.expected()}
        out["default"] = None if self.required else self.default
        out["required"] = self.required
        if self.doc:
            out["doc"] = self.doc
        return out


def _bounds_text(p: Param) -> str:
    parts = []
    if p.low is not None:
        parts.append(f"{'>' if p.low_open else '>='} {format_value(p.low)}")
    if p.high is not None:
        parts.append(f"{'<' if p.high_open else '<='} {format_value(p.high)}")
    return (" " + " and ".join(parts)) if parts else ""


def _in_bounds(p: Param, v: float) -> bool:
    if p.low is not None and (v <= p.low if p.low_open else v < p.low):
        return False
    return not (p.high is not None and (v >= p.high if p.high_open else v > p.high))


def _coerce(kind: str, v: Any) -> tuple[bool, Any]:
    if kind == "any":
        return True, v
    if kind == "bool":
        if isinstance(v, bool) or type(v).__name__ == "bool_":
            return True, bool(v)
        if _is_int(v) and int(v) in (0, 1):
            return True, bool(int(v))
        if isinstance(v, str) and v.strip().lower() in (*_TRUE, *_FALSE):
            return True, v.strip().lower() in _TRUE
        return False, None
    if kind == "int":
        if isinstance(v, bool) or type(v).__name__ == "bool_":
            return False, None
        if _is_int(v):
            return True, int(v)
        if isinstance(v, str) and re.fullmatch(r"\s*[+-]?[0-9]+\s*", v):
            return True, int(v)
        return False, None
    if kind == "float":
        if isinstance(v, bool) or type(v).__name__ == "bool_":
            return False, None
        if _is_int(v) or _is_float(v):
            return True, float(v)
        if isinstance(v, str) and "_" not in v and v.isascii():  # float() accepts '1_0' and other digits
            try:
                return True, float(v)
            except ValueError:
                return False, None
        return False, None
    if kind == "str":
        return (True, v) if isinstance(v, str) else (False, None)
    return False, None  # pragma: no cover - kinds are checked in Param


def format_value(v: Any) -> str:
    """A parameter value as it appears in an id: ``true``, ``none``, ``10``, ``0.5``, ``cosine``."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if v is None:
        return "none"
    if isinstance(v, float) and v.is_integer() and abs(v) < 1e15:
        return repr(v)
    return str(v)


def check_bool(value: Any, name: str, owner: str = "") -> bool:
    """A boolean option: ``True/False``, ``1/0`` or ``'true'/'false'/'1'/'0'``; anything else is an error."""
    return bool(Param(name, ("bool",)).check(value, owner))


# ------------------------------------------------------------------------------------------ schemas


def _kinds_from_annotation(annotation: Any, default: Any) -> tuple[tuple[str, ...], bool]:
    """(kinds, nullable) from a signature annotation (string or type) and the default."""
    text = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", str(annotation))
    if annotation is inspect.Parameter.empty:
        text = ""
    parts = [p.strip() for p in str(text).split("|")] if text else []
    nullable = "None" in parts or default is None
    kinds = tuple(k for k in (_simple_kind(p) for p in parts if p != "None") if k)
    if not kinds and parts:
        kinds = ("any",)
    if not kinds:
        kinds = (_kind_of(default),) if default is not REQUIRED and default is not None else ("any",)
    if "any" in kinds:
        kinds = ("any",)
    order = ("bool", "int", "float", "str", "any")  # an int stays an int where a float is also allowed
    return tuple(sorted(set(kinds), key=order.index)), nullable


def _simple_kind(text: str) -> str | None:
    return {"bool": "bool", "int": "int", "float": "float", "str": "str"}.get(text, "any")


def _kind_of(v: Any) -> str:
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int):
        return "int"
    if isinstance(v, float):
        return "float"
    if isinstance(v, str):
        return "str"
    return "any"


@dataclass(frozen=True)
class ParamSchema:
    """The typed parameters a registered thing takes, in order."""

    params: tuple[Param, ...] = ()

    def __post_init__(self) -> None:
        names = [p.name for p in self.params]
        if len(set(names)) != len(names):
            raise ValueError(f"parameter names repeat: {names}")

    @classmethod
    def from_callable(
        cls,
        func: Callable[..., Any],
        *,
        skip: int | tuple[str, ...] = 0,
        extra: tuple[Param, ...] = (),
        **constraints: dict[str, Any],
    ) -> ParamSchema:
        """The schema of ``func``'s keyword parameters, typed from annotations and defaults.

        ``skip`` drops the first positional parameters (an int) or named ones; ``constraints`` maps a
        parameter name to extra :class:`Param` fields (``k={"low": 1}``, ``kernel={"choices": (...)}``).
        ``self``, ``*args`` and ``**kwargs`` are never parameters.
        """
        sig = inspect.signature(func)
        plist = [
            p
            for p in sig.parameters.values()
            if p.name != "self" and p.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
        ]
        plist = plist[skip:] if isinstance(skip, int) else [p for p in plist if p.name not in skip]
        unknown = sorted(set(constraints) - {p.name for p in plist})
        if unknown:
            raise ValueError(f"{getattr(func, '__name__', func)} has no parameter(s) {unknown} to constrain")
        out = []
        for p in plist:
            default = REQUIRED if p.default is inspect.Parameter.empty else p.default
            kinds, nullable = _kinds_from_annotation(p.annotation, default)
            fields_ = {"kinds": kinds, "default": default, "nullable": nullable, **constraints.get(p.name, {})}
            out.append(Param(p.name, **fields_))
        return cls((*out, *extra))

    def __contains__(self, name: object) -> bool:
        return any(p.name == name for p in self.params)

    def __iter__(self) -> Iterator[Param]:
        return iter(self.params)

    def names(self) -> list[str]:
        return [p.name for p in self.params]

    def get(self, name: str) -> Param:
        for p in self.params:
            if p.name == name:
                return p
        raise KeyError(name)

    def defaults(self) -> dict[str, Any]:
        return {p.name: p.default for p in self.params if not p.required}

    def validate(self, values: Mapping[str, Any], owner: str = "") -> dict[str, Any]:
        """``values`` checked and coerced (unknown keys are an error listing the accepted ones)."""
        where = f"{owner}: " if owner else ""
        unknown = [k for k in values if k not in self]
        if unknown:
            close = {k: difflib.get_close_matches(k, self.names(), n=1, cutoff=0.6) for k in unknown}
            hints = [f"{k!r} (did you mean {c[0]!r}?)" if c else repr(k) for k, c in close.items()]
            accepted = ", ".join(self.names()) or "no parameters"
            raise ValueError(f"{where}unknown parameter(s) {', '.join(hints)}; accepted: {accepted}")
        return {k: self.get(k).check(v, owner) for k, v in values.items()}

    def complete(self, values: Mapping[str, Any], owner: str = "") -> dict[str, Any]:
        """Defaults overlaid with validated ``values``; a missing required parameter is an error."""
        out = {**self.defaults(), **self.validate(values, owner)}
        missing = [p.name for p in self.params if p.required and p.name not in out]
        if missing:
            raise ValueError(f"{owner + ': ' if owner else ''}missing required parameter(s) {missing}")
        return out

    def describe(self) -> list[dict[str, Any]]:
        return [p.as_dict() for p in self.params]


# --------------------------------------------------------------------------------------------- ids


def parse_id(text: Any, what: str = "id") -> tuple[str, dict[str, str]]:
    """Split ``'name?key=value&key=value'`` into the name and the raw (string) parameters.

    Errors name the id and what was expected: an empty name, an empty or key-less segment, a repeated key.
    """
    if not isinstance(text, str):
        raise TypeError(f"{what} must be a string like 'name' or 'name?key=value'; got {type(text).__name__}")
    name, sep, query = text.strip().partition("?")
    name = name.strip()
    if not name:
        raise ValueError(f"{what} {text!r} has no name; expected 'name' or 'name?key=value&key=value'")
    params: dict[str, str] = {}
    if sep and query.strip():
        for part in query.split("&"):
            key, eq, value = part.partition("=")
            key = key.strip()
            if not eq or not _KEY_RE.match(key):
                raise ValueError(
                    f"{what} {text!r}: bad parameter {part!r}; expected 'name?key=value&key=value' "
                    "with keys made of letters, digits and '_'"
                )
            if key in params:
                raise ValueError(f"{what} {text!r}: parameter {key!r} is given twice")
            params[key] = value.strip()
    elif sep:
        raise ValueError(f"{what} {text!r} ends in '?' with no parameters; expected 'name?key=value'")
    return name, params


@dataclass(frozen=True)
class Spec:
    """A validated id: the registered ``name`` and the parameters given explicitly (typed).

    ``id`` is canonical (keys sorted, values formatted), so two spellings of the same thing compare
    and hash equal. ``kwargs`` are the explicit parameters; ``resolved`` adds the defaults.
    """

    kind: str
    name: str
    params: tuple[tuple[str, Any], ...] = ()
    defaults: tuple[tuple[str, Any], ...] = field(default=(), compare=False, repr=False)

    @property
    def id(self) -> str:
        if not self.params:
            return self.name
        return self.name + "?" + "&".join(f"{k}={format_value(v)}" for k, v in self.params)

    @property
    def kwargs(self) -> dict[str, Any]:
        return dict(self.params)

    @property
    def resolved(self) -> dict[str, Any]:
        return {**dict(self.defaults), **dict(self.params)}

    def __str__(self) -> str:
        return self.id


_T = TypeVar("_T")


@dataclass(frozen=True)
class Entry(Generic[_T]):
    """A registered thing: ``obj`` (function, class or factory) with its schema and metadata."""

    name: str
    obj: _T
    description: str = ""
    schema: ParamSchema = field(default_factory=ParamSchema)
    meta: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description, **self.meta, "params": self.schema.describe()}


_E = TypeVar("_E", bound=Entry[Any])


def _definition(obj: Any) -> tuple[Any, ...] | None:
    """What identifies a definition across imports: its source file, its source text, and the values its
    closure and defaults captured (None when the source is not available)."""
    try:
        source, text = inspect.getsourcefile(obj), inspect.getsource(obj)
    except (OSError, TypeError):
        return None
    cells = getattr(obj, "__closure__", None) or ()
    try:
        captured = tuple(c.cell_contents for c in cells)
    except ValueError:  # an empty cell
        return None
    defaults = (getattr(obj, "__defaults__", None) or (), tuple((getattr(obj, "__kwdefaults__", None) or {}).items()))
    return (source, text, (*captured, *defaults))


def _same_definition(old: Entry[Any], new: Entry[Any]) -> bool:
    """The same code registered again (a plugin file imported under two module names): not a clash. Two
    different definitions, even of the same name in one file, are."""
    a, b = _definition(old.obj), _definition(new.obj)
    if a is None or b is None or a[:2] != b[:2] or len(a[2]) != len(b[2]):
        return False
    try:
        return all(x is y or bool(x == y) for x, y in zip(a[2], b[2], strict=True))
    except Exception:  # values that cannot be compared are not the same
        return False


class Registry(Generic[_E]):
    """Name → entry, one per kind of thing. Entries are :class:`Entry` objects (or subclasses)."""

    def __init__(self, kind: str, plural: str | None = None) -> None:
        self.kind = kind
        self.plural = plural or f"{kind}s"
        self._entries: dict[str, _E] = {}

    def add(self, entry: _E, *, replace: bool = False) -> _E:
        """Register ``entry``; a second entry under the same name is an error unless ``replace`` (or it is the
        same definition from the same source file, as when a plugin file is imported twice)."""
        if not isinstance(entry.name, str) or not entry.name or "?" in entry.name or "&" in entry.name:
            raise ValueError(f"{self.kind} names must be non-empty strings without '?' or '&'; got {entry.name!r}")
        if entry.name in self._entries and not replace and not _same_definition(self._entries[entry.name], entry):
            raise ValueError(
                f"{self.kind} {entry.name!r} is already registered; pass replace=True to replace it on purpose"
            )
        self._entries[entry.name] = entry
        return entry

    def remove(self, name: str) -> None:
        """Unregister ``name`` (plugins and tests)."""
        self.get(name)
        del self._entries[name]

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[_E]:
        return iter(self._entries[n] for n in self.names())

    def __len__(self) -> int:
        return len(self._entries)

    def names(self) -> list[str]:
        return sorted(self._entries)

    def unknown(self, name: str) -> ValueError:
        """The did-you-mean error for an unknown name."""
        lower = {n.lower(): n for n in self._entries}
        close = [lower[c] for c in difflib.get_close_matches(name.lower(), list(lower), n=3, cutoff=0.5)]
        hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
        return ValueError(f"unknown {self.kind} {name!r}.{hint} Known {self.plural}: {', '.join(self.names())}")

    def get(self, name: str) -> _E:
        """The entry registered as ``name`` (an id's parameters after '?' are ignored here)."""
        base, _ = parse_id(name, self.kind)
        try:
            return self._entries[base]
        except KeyError:
            raise self.unknown(base) from None

    def describe(self, name: str | None = None) -> list[dict[str, Any]] | dict[str, Any]:
        """Metadata of every entry (a list of dicts), or of one when ``name`` is given."""
        if name is not None:
            return self.get(name).as_dict()
        return [e.as_dict() for e in self]

    def spec(self, ref: str | Spec, /, **overrides: Any) -> Spec:
        """Parse, validate and canonicalise an id (``'name?key=value'``) or a :class:`Spec`.

        ``overrides`` win over the id's own parameters (the one precedence rule).
        """
        if isinstance(ref, Spec):
            if ref.kind != self.kind:
                raise ValueError(f"expected a {self.kind} spec; got a {ref.kind} spec {ref.id!r}")
            name, given = ref.name, dict(ref.params)
        else:
            name, given = parse_id(ref, self.kind)
        entry = self.get(name)
        owner = f"{self.kind} {name!r}"
        merged = {**entry.schema.validate(given, owner), **entry.schema.validate(overrides, owner)}
        defaults = entry.schema.defaults()
        missing = [p.name for p in entry.schema if p.required and p.name not in merged]
        if missing:
            raise ValueError(f"{owner}: missing required parameter(s) {missing}")
        return Spec(self.kind, name, tuple(sorted(merged.items())), tuple(sorted(defaults.items())))

    def with_entry(self, name: str, **changes: Any) -> _E:
        """A copy of a registered entry with some fields changed (for ``add(..., replace=True)``)."""
        return replace(self.get(name), **changes)
