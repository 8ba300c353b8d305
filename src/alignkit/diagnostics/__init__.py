"""Diagnostics: the geometry of one space, of a pair, of classes, of subspaces and of pairs' quality.

``alignkit.diagnose(name, *arrays, labels=None, **params)`` looks a diagnostic up by name (ids such as
``'uniformity?t=2'`` work, as for measures); the plain functions live here too
(``alignkit.diagnostics.uniformity(X)``). ``describe()`` lists their metadata; ``diagnostic_ci`` and
``diagnostic_null`` calibrate one; ``profile`` runs one over every layer of a model. A plugin registers
a diagnostic with :func:`register`, the same contract as every other registry (see
``docs/architecture.md``).
"""

from alignkit.diagnostics import classes, geometry, pair, persistence, quality, subspace, vlsae  # noqa: F401  (registers)
from alignkit.diagnostics._registry import (
    DIAGNOSTICS,
    DiagnosticInfo,
    describe,
    diagnostic_spec,
    get,
    names,
    register,
)
from alignkit.diagnostics._result import DiagnosticResult, as_row, value_of
from alignkit.diagnostics.api import Profile, diagnose, diagnostic_ci, diagnostic_null, profile

__all__ = [
    "DIAGNOSTICS",
    "DiagnosticInfo",
    "DiagnosticResult",
    "Profile",
    "as_row",
    "describe",
    "diagnose",
    "diagnostic_ci",
    "diagnostic_null",
    "diagnostic_spec",
    "get",
    "names",
    "profile",
    "register",
    "value_of",
]
