"""Column statistics of the inputs already read in this call, so a measure validates its inputs in one pass.

The degenerate-space check (:func:`alignkit.degenerate.inspect_space`) reads every entry of a space once for its
per-column min, max and float64 sums. A measure called through the registry then needs the same numbers again:
the finiteness check (min and max are finite iff every entry is) and the column means and the largest |entry| of
the centred cross-products. :func:`known` makes the check's statistics visible to those steps **for the duration
of one call**, keyed by the array's memory (data pointer, shape, strides, dtype), so a later call — after the
caller may have changed the array in place — never sees stale numbers.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import numpy as np

_Key = tuple[int, tuple[int, ...], tuple[int, ...], str]


@dataclass(frozen=True)
class ColumnMoments:
    """The smallest and largest entry (0-d arrays in the array's dtype) and the float64 column sums of n rows."""

    n: int
    lo: np.ndarray
    hi: np.ndarray
    total: np.ndarray

    @property
    def finite(self) -> bool:
        return bool(np.isfinite(self.lo).all() and np.isfinite(self.hi).all())

    @property
    def mean(self) -> np.ndarray:
        return self.total / self.n

    @property
    def peak(self) -> float:
        """max |entry|."""
        return max(-float(self.lo.min()), float(self.hi.max()))


_KNOWN: ContextVar[dict[_Key, ColumnMoments] | None] = ContextVar("alignkit_known_moments", default=None)
#: (array key, tag) → (the degenerate-space check, the view it inspected), e.g. a kNN measure's unit rows.
_SPACES: ContextVar[dict[tuple[_Key, str], tuple[Any, Any]] | None] = ContextVar("alignkit_known_spaces", default=None)


def key_of(a: Any) -> _Key | None:
    """The identity of a host array's memory (a CPU torch tensor and its numpy view share it); None otherwise."""
    if not isinstance(a, np.ndarray):
        if not type(a).__module__.startswith("torch") or getattr(a, "device", None) is None or a.device.type != "cpu":
            return None
        if str(a.dtype) not in ("torch.float32", "torch.float64"):
            return None  # no numpy view (bfloat16) or not what a check records
        a = a.detach().numpy()
    if a.dtype.kind != "f":
        return None
    return (int(a.__array_interface__["data"][0]), tuple(a.shape), tuple(a.strides), a.dtype.str)


@contextmanager
def known(
    pairs: list[tuple[Any, ColumnMoments | None]], spaces: list[tuple[Any, str, Any, Any]] | None = None
) -> Iterator[None]:
    """Within this block, :func:`lookup` returns the given statistics for the given arrays, and
    :func:`lookup_space` the given ``(array, tag, check, view)`` entries: a space's degenerate-space check and the
    view of it that was inspected (a kNN search then neither re-checks nor re-normalises the space)."""
    table = dict(_KNOWN.get() or {})
    for a, m in pairs:
        k = key_of(a)
        if k is not None and m is not None:
            table[k] = m
    seen = dict(_SPACES.get() or {})
    for a, tag, check, view in spaces or []:
        k = key_of(a)
        if k is not None:
            seen[(k, tag)] = (check, view)
    token, token_spaces = _KNOWN.set(table), _SPACES.set(seen)
    try:
        yield
    finally:
        _SPACES.reset(token_spaces)
        _KNOWN.reset(token)


def lookup(a: Any) -> ColumnMoments | None:
    """The statistics of ``a`` computed earlier in this call, or None."""
    table = _KNOWN.get()
    if not table:
        return None
    k = key_of(a)
    return None if k is None else table.get(k)


def lookup_space(a: Any, tag: str) -> tuple[Any, Any] | None:
    """``(check, view)`` of ``a`` recorded under ``tag`` earlier in this call, or None."""
    table = _SPACES.get()
    if not table:
        return None
    k = key_of(a)
    return None if k is None else table.get((k, tag))


__all__ = ["ColumnMoments", "key_of", "known", "lookup", "lookup_space"]
