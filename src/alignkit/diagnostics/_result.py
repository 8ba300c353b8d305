"""The small result objects diagnostics return: a headline ``value`` plus details, as tidy dicts."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np


@dataclasses.dataclass(frozen=True)
class DiagnosticResult:
    """Base class: subclasses are frozen dataclasses whose ``value`` is the headline number.

    ``as_dict()`` returns the scalar fields (numpy scalars as plain Python numbers) and short 1-D arrays
    (≤ 16 entries: a histogram's counts, bin edges) as lists; longer arrays are left out (read them as
    attributes), so a result is always one tidy table row.
    """

    @property
    def value(self) -> float:
        raise NotImplementedError

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"value": self.value}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if f.name.startswith("_"):
                continue
            if isinstance(v, np.ndarray):
                if v.ndim != 1 or v.size > 16:
                    continue
                v = v.tolist()
            if isinstance(v, np.generic):
                v = v.item()
            if isinstance(v, (list, tuple)) and len(v) > 16:
                continue
            out[f.name] = v
        return out


def value_of(result: Any) -> float:
    """The headline number of a diagnostic's return (a float, or a result's ``value``)."""
    if isinstance(result, DiagnosticResult):
        return float(result.value)
    return float(result)


def as_row(result: Any) -> dict[str, Any]:
    """One tidy row: ``{"value": ...}`` plus a result's details."""
    if isinstance(result, DiagnosticResult):
        return result.as_dict()
    return {"value": float(result)}


__all__ = ["DiagnosticResult", "as_row", "value_of"]
