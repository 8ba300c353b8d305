"""alignkit: measure, learn and evaluate alignment between representation spaces.

The public names below are imported on first use (PEP 562), so ``import alignkit`` (and the CLI's
``--help``) does not pay for torch and scipy.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import TYPE_CHECKING, Any

from alignkit._version import __version__

if TYPE_CHECKING:
    from alignkit import degenerate, diagnostics, metrics, registry, stats
    from alignkit.atlas import AtlasResult, atlas, k_from_rule, select_layers
    from alignkit.curves import CurveResult, curve, plot_curve
    from alignkit.degenerate import inspect_space
    from alignkit.diagnostics import diagnose
    from alignkit.metrics import describe, measure
    from alignkit.neighbors import KNNGraph, knn_graph
    from alignkit.stats import StreamingCKA, bootstrap_ci, permutation_test

_SUBMODULES = ("degenerate", "diagnostics", "metrics", "registry", "stats")
# public name -> module that defines it
_LAZY: dict[str, str] = {
    **{name: f"alignkit.{name}" for name in _SUBMODULES},
    "AtlasResult": "alignkit.atlas",
    "atlas": "alignkit.atlas",
    "k_from_rule": "alignkit.atlas",
    "select_layers": "alignkit.atlas",
    "CurveResult": "alignkit.curves",
    "curve": "alignkit.curves",
    "plot_curve": "alignkit.curves",
    "describe": "alignkit.metrics",
    "diagnose": "alignkit.diagnostics",
    "inspect_space": "alignkit.degenerate",
    "measure": "alignkit.metrics",
    "KNNGraph": "alignkit.neighbors",
    "knn_graph": "alignkit.neighbors",
    "StreamingCKA": "alignkit.stats",
    "bootstrap_ci": "alignkit.stats",
    "permutation_test": "alignkit.stats",
}

__all__ = [
    "AtlasResult",
    "CurveResult",
    "KNNGraph",
    "StreamingCKA",
    "__version__",
    "atlas",
    "bootstrap_ci",
    "curve",
    "degenerate",
    "describe",
    "diagnose",
    "diagnostics",
    "inspect_space",
    "k_from_rule",
    "knn_graph",
    "measure",
    "metrics",
    "permutation_test",
    "plot_curve",
    "registry",
    "select_layers",
    "stats",
]


def __getattr__(name: str) -> Any:
    source = _LAZY.get(name)
    if source is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module = importlib.import_module(source)
    value = module if name in _SUBMODULES else getattr(module, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


class _Package(types.ModuleType):
    """Keeps ``alignkit.atlas`` the function: importing the submodule ``alignkit.atlas`` makes the
    import system bind the module object to the package attribute of the same name."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "atlas" and isinstance(value, types.ModuleType) and value.__name__ == f"{__name__}.atlas":
            value = value.atlas
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
