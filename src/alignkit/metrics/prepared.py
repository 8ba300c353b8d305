"""Measures split into a once-per-space step and a cheap per-pair step.

A :class:`PreparedMeasure` turns each space into whatever the measure needs from it (a kNN
graph, centred features and their self-HSIC, a centred Gram matrix, or the raw array), can
permute a prepared space's rows cheaply, and scores two prepared spaces. Permutation nulls
(``stats``) and layer atlases (``atlas``) are built on it, so a kNN graph or CKA moment is
computed once per space however many pairs or permutations use it.

A measure declares its prepared form when it is registered (``register(..., prepare=factory)``):
kNN measures in :mod:`~alignkit.metrics.knn`, CKA/HSIC in :mod:`~alignkit.metrics.cka_prepared`.
Measures without one get :class:`GenericMeasure`, which calls the function per pair.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from alignkit._lazy import lazy_module
from alignkit._validation import ArrayLike, as_matrix, check_min_rows
from alignkit.metrics import _registry
from alignkit.metrics.preprocess import preprocess
from alignkit.neighbors import KNNGraph
from alignkit.registry import Spec

if TYPE_CHECKING:
    import torch
else:
    torch = lazy_module("torch")


class PreparedMeasure(ABC):
    """Interface: ``prepare(x)`` once per space, ``permute(p, perm)``, ``score(pa, pb)``."""

    name: str

    @abstractmethod
    def prepare(self, x: torch.Tensor) -> Any:
        """What the measure needs from one space, computed once."""

    @abstractmethod
    def permute(self, p: Any, perm: torch.Tensor) -> Any:
        """The prepared form of the space with rows reordered by ``perm`` (cheaply)."""

    @abstractmethod
    def score(self, pa: Any, pb: Any) -> float:
        """The measure between two prepared spaces."""

    def min_rows(self) -> int:
        return 2

    def score_matrix(self, pa: list[Any], pb: list[Any]) -> np.ndarray:
        """Scores of every (a, b) pair, shape (len(pa), len(pb))."""
        return np.array([[self.score(a, b) for b in pb] for a in pa], dtype=np.float64)


@dataclass
class GenericMeasure(PreparedMeasure):
    """Any registered measure: the space itself is the prepared form; each pair calls the function."""

    name: str
    params: dict[str, Any]
    func: Any = None  # the measure's (unvalidated) function; looked up by name when None

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def permute(self, p: torch.Tensor, perm: torch.Tensor) -> torch.Tensor:
        return p[perm.to(p.device)]

    def score(self, pa: torch.Tensor, pb: torch.Tensor) -> float:
        func = self.func or _registry.get(self.name).func
        return float(func(pa, pb, **self.params))


def prepared_measure(
    measure: str | Spec, *, linear_form: str = "auto", max_dim: int | None = None, **params: Any
) -> PreparedMeasure:
    """The prepared form of a registered measure (an id, ``'name?k=10'``, or a spec) with its parameters.

    Parameters are validated by the measure's schema (keywords override the id's); preprocessing
    options are ignored here (apply them to the spaces first). ``linear_form`` and ``max_dim`` are
    passed to the declared factory (CKA uses them to pick its Gram or feature form).
    """
    spec = _registry.measure_spec(measure, **params)
    info = _registry.get(spec)
    _, own = _registry.split(spec)
    full = {**info.defaults, **own}
    factory = info.prepared_factory()
    if factory is None:
        return GenericMeasure(info.name, own, info.func)
    return factory(info, full, max_dim=max_dim, linear_form=linear_form)  # type: ignore[no-any-return]


def knn_recall(prepared: Any) -> float | None:
    """The measured recall@k of a prepared space's approximate kNN graph (None when exact or not kNN)."""
    graph = prepared if isinstance(prepared, KNNGraph) else getattr(prepared, "graph", None)
    return graph.recall if isinstance(graph, KNNGraph) else None


def prepare_space(X: ArrayLike, name: str, prep: dict[str, Any]) -> torch.Tensor:
    """Validate one space and apply the registry's preprocessing options."""
    return preprocess(X, name=name, **prep) if prep else as_matrix(X, name)


def split_params(measure: str | Spec, params: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Separate preprocessing options from the measure's own parameters (validated; keywords win)."""
    return _registry.split(_registry.measure_spec(measure, **params))


def check_rows(pm: PreparedMeasure, n: int) -> None:
    check_min_rows(n, pm.min_rows(), pm.name)
