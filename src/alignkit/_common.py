"""Small numeric primitives shared across alignkit: row normalisation, median, optional imports.

A leaf module (torch and the standard library only), so every layer may import it.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import TYPE_CHECKING

from alignkit._lazy import lazy_module

if TYPE_CHECKING:
    import torch
else:
    torch = lazy_module("torch")


#: The one floor on row norms in :func:`unit_rows` (torch's ``F.normalize`` default): rows with norm below it
#: are divided by it instead, so all-zero rows stay zero rather than becoming NaN.
UNIT_EPS = 1e-12


def unit_rows(t: torch.Tensor, eps: float = UNIT_EPS) -> torch.Tensor:
    """Rows scaled to unit L2 norm, ``x / max(‖x‖₂, eps)`` (dtype and device kept; zero rows stay zero)."""
    return t / t.norm(dim=1, keepdim=True).clamp_min(eps)


def median(v: torch.Tensor) -> torch.Tensor:
    """numpy's median of all entries (mean of the two middle values for an even count), as a 0-d tensor.

    Uses ``kthvalue``, which has no size limit (``torch.quantile`` has) and runs on any device;
    ``torch.median`` would return the lower middle value.
    """
    flat = v.reshape(-1)
    m = flat.numel()
    if m == 0:
        raise ValueError("median of an empty tensor is undefined")
    lo = flat.kthvalue((m + 1) // 2).values
    return lo if m % 2 else (lo + flat.kthvalue(m // 2 + 1).values) / 2


def optional_import(
    module: str, extra: str | None = None, *, what: str | None = None, package: str | None = None
) -> ModuleType:
    """``importlib.import_module(module)``, or an ImportError that names the fix.

    The hint is ``pip install 'alignkit[extra]'`` when an extra provides the package, else
    ``pip install <package>`` (``package`` defaults to the top-level module name). ``what`` names the feature
    that needs it (default: the module).
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        pkg = package or module.split(".")[0]
        fix = f"pip install {pkg}" + (f"  (or: pip install 'alignkit[{extra}]')" if extra else "")
        raise ImportError(
            f"{what or module} needs the package {pkg!r}, which could not be imported ({exc}): {fix}"
        ) from exc
