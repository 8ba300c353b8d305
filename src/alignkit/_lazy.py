"""Lazy module references, so listing registries (``alignkit metrics``) does not import torch or scipy.

``torch = lazy_module("torch")`` returns torch itself when it is already imported, else a stand-in module
that imports it on first attribute use and then holds its namespace (later lookups are plain attribute
hits, no indirection on hot paths). Annotations are strings (``from __future__ import annotations``), so
only code that runs touches the module.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any


class _LazyModule(types.ModuleType):
    def __getattr__(self, attr: str) -> Any:
        module = importlib.import_module(self.__name__)
        self.__dict__.update(module.__dict__)
        return getattr(module, attr)


def lazy_module(name: str) -> types.ModuleType:
    """``name`` imported on first use (or now, if some other code imported it already)."""
    return sys.modules.get(name) or _LazyModule(name)
