"""Measures split into a once-per-space step and a cheap per-pair step.

A :class:`PreparedMeasure` turns each space into whatever the measure needs from it (a kNN
graph, centred features and their self-HSIC, a centred Gram matrix, or the raw array), can
permute a prepared space's rows cheaply, and scores two prepared spaces. Permutation nulls
(``stats``) and layer atlases (``atlas``) are built on it, so a kNN graph or CKA moment is
computed once per space however many pairs or permutations use it.
"""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from alignkit._validation import ArrayLike, as_matrix, check_choice, check_k, check_min_rows
from alignkit.metrics import _registry
from alignkit.metrics._moments import cka_ratio
from alignkit.metrics.kernel import FORMS, KERNELS, centred_features, centred_gram, feature_hsic, gram
from alignkit.metrics.knn import ROWWISE, as_graph, cknna_cross, cknna_ratio, cknna_self
from alignkit.metrics.preprocess import preprocess
from alignkit.neighbors import KNNGraph, knn_graph


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
class KnnMeasure(PreparedMeasure):
    """Any kNN-overlap measure: a graph per space, permutation = relabel the index lists."""

    name: str
    k: int = 10
    metric: str = "cosine"
    backend: str = "exact"

    def prepare(self, x: torch.Tensor | KNNGraph) -> KNNGraph:
        if isinstance(x, KNNGraph):
            return as_graph(x, self.k)
        check_k(self.k, x.shape[0])
        return knn_graph(x, self.k, metric=self.metric, backend=self.backend)  # type: ignore[arg-type]

    def permute(self, p: KNNGraph, perm: torch.Tensor) -> KNNGraph:
        return p.permuted(perm)

    def score(self, pa: KNNGraph, pb: KNNGraph) -> float:
        return float(ROWWISE[self.name](pa.indices, pb.indices).mean())


@dataclass
class CknnaMeasure(PreparedMeasure):
    name: str = "cknna"
    k: int = 10
    metric: str = "cosine"
    backend: str = "exact"
    eps: float = 1e-6

    def min_rows(self) -> int:
        return 4

    def prepare(self, x: torch.Tensor) -> _Cknna:
        check_choice(self.metric, ("cosine", "ip"), "metric")
        if self.k < 2:
            raise ValueError(f"k must be >= 2 for cknna; got k={self.k}")
        check_k(self.k, x.shape[0])
        f = x / x.norm(dim=1, keepdim=True).clamp_min(1e-12) if self.metric == "cosine" else x
        g = knn_graph(f, self.k, metric=self.metric, backend=self.backend)  # type: ignore[arg-type]
        f = f.cpu()
        return _Cknna(f, g, cknna_self(f, g))

    def permute(self, p: _Cknna, perm: torch.Tensor) -> _Cknna:
        return _Cknna(p.f[perm], p.graph.permuted(perm), p.self_hsic)

    def score(self, pa: _Cknna, pb: _Cknna) -> float:
        return cknna_ratio(cknna_cross(pa.f, pb.f, pa.graph, pb.graph), pa.self_hsic, pb.self_hsic, self.eps)


@dataclass
class _Cknna:
    f: torch.Tensor  # features as the kernel sees them, on CPU
    graph: KNNGraph
    self_hsic: float


@dataclass
class _Feat:
    xc: torch.Tensor  # centred features, float64
    r: torch.Tensor  # row squared norms
    self_hsic: float


@dataclass
class LinearFeatureMeasure(PreparedMeasure):
    """Linear CKA/HSIC in feature form: per pair only ``X_cᵀY_c`` (O(n·d1·d2)) and ``⟨r_x, r_y⟩``."""

    name: str = "cka"
    debiased: bool = True

    def min_rows(self) -> int:
        return 4 if self.debiased else 2

    def prepare(self, x: torch.Tensor) -> _Feat:
        xc, r = centred_features(x)
        return _Feat(xc, r, feature_hsic(xc, r, xc, r, self.debiased))

    def permute(self, p: _Feat, perm: torch.Tensor) -> _Feat:
        perm = perm.to(p.xc.device)
        return _Feat(p.xc[perm], p.r[perm], p.self_hsic)

    def score(self, pa: _Feat, pb: _Feat) -> float:
        xy = feature_hsic(pa.xc, pa.r, pb.xc.to(pa.xc.device), pb.r.to(pa.xc.device), self.debiased)
        return xy if self.name == "hsic" else cka_ratio(xy, pa.self_hsic, pb.self_hsic)


@dataclass
class _Gram:
    kc: torch.Tensor  # centred (HKH) or U-centred kernel, float64
    self_hsic: float


@dataclass
class GramMeasure(PreparedMeasure):
    """CKA/HSIC with any kernel in Gram form: per pair one O(n²) inner product."""

    name: str = "cka"
    kernel: str = "linear"
    debiased: bool = True
    threshold: float = 1.0
    sigma: float = 1.0

    def min_rows(self) -> int:
        return 4 if self.debiased else 2

    def _hsic(self, ka: torch.Tensor, kb: torch.Tensor) -> float:
        n = ka.shape[0]
        inner = float((ka * kb).sum())
        return inner / (n * (n - 3)) if self.debiased else inner / (n - 1) ** 2

    def prepare(self, x: torch.Tensor) -> _Gram:
        kc = centred_gram(gram(x, self.kernel, threshold=self.threshold, sigma=self.sigma), self.debiased)
        return _Gram(kc, self._hsic(kc, kc))

    def permute(self, p: _Gram, perm: torch.Tensor) -> _Gram:
        perm = perm.to(p.kc.device)
        return _Gram(p.kc[perm][:, perm], p.self_hsic)

    def score(self, pa: _Gram, pb: _Gram) -> float:
        xy = self._hsic(pa.kc, pb.kc.to(pa.kc.device))
        return xy if self.name == "hsic" else cka_ratio(xy, pa.self_hsic, pb.self_hsic)

    def score_matrix(self, pa: list[_Gram], pb: list[_Gram]) -> np.ndarray:
        """All pairs with one matmul of the stacked centred Grams, (L1, n²) @ (n², L2), as Nguyen,
        Raghu, Kornblith (ICLR 2021) stack layer Grams."""
        return self._ratios(_stack(pa) @ _stack(pb).T, pa, pb)

    def null_matrices(self, pa: list[_Gram], pb: list[_Gram], perms: Iterable[torch.Tensor]) -> np.ndarray:
        """Score matrices with every B layer permuted by each π in turn, shape (B, L1, L2).

        U-centering and HKH commute with a joint row/column permutation, so the permuted centred
        Gram is ``Kc[π][:, π]``; the B stack is written into one preallocated buffer per draw.
        """
        # S(A, B[π]) = S(A[π⁻¹], B): permute whichever side has fewer layers.
        flip = len(pa) < len(pb)
        fixed, moved = (pb, pa) if flip else (pa, pb)
        left = _stack(fixed)
        n = fixed[0].kc.shape[0]
        buf = torch.empty((len(moved), n * n), dtype=left.dtype, device=left.device)
        tmp = torch.empty((n, n), dtype=left.dtype, device=left.device)
        out = []
        for perm in perms:
            perm = perm.to(left.device)
            if flip:
                perm = torch.argsort(perm)
            for j, p in enumerate(moved):
                torch.index_select(p.kc, 0, perm, out=tmp)
                torch.index_select(tmp, 1, perm, out=buf[j].view(n, n))
            inner = (buf @ left.T) if flip else (left @ buf.T)
            out.append(self._ratios(inner, pa, pb))
        return np.stack(out)

    def _ratios(self, inner: torch.Tensor, pa: list[_Gram], pb: list[_Gram]) -> np.ndarray:
        n = pa[0].kc.shape[0]
        hsic = inner.double().cpu().numpy() / (n * (n - 3) if self.debiased else (n - 1) ** 2)
        if self.name == "hsic":
            return hsic
        out = np.full(hsic.shape, np.nan)
        for i, a in enumerate(pa):
            for j, b in enumerate(pb):
                out[i, j] = cka_ratio(float(hsic[i, j]), a.self_hsic, b.self_hsic)
        return out


def _stack(grams: list[_Gram]) -> torch.Tensor:
    return torch.stack([g.kc.reshape(-1) for g in grams])


@dataclass
class GenericMeasure(PreparedMeasure):
    """Any registered measure: the space itself is the prepared form; each pair calls the function."""

    name: str
    params: dict[str, Any]

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def permute(self, p: torch.Tensor, perm: torch.Tensor) -> torch.Tensor:
        return p[perm.to(p.device)]

    def score(self, pa: torch.Tensor, pb: torch.Tensor) -> float:
        return float(_registry.get(self.name).func(pa, pb, **self.params))


def _signature_defaults(func: Any) -> dict[str, Any]:
    return {
        name: p.default
        for name, p in inspect.signature(func).parameters.items()
        if p.default is not inspect.Parameter.empty
    }


def _check_params(name: str, func: Any, params: dict[str, Any]) -> None:
    allowed = set(inspect.signature(func).parameters) - {"X", "Y"}
    unknown = sorted(set(params) - allowed)
    if unknown:
        raise ValueError(f"unknown parameter(s) {unknown} for measure {name!r}; it takes {sorted(allowed)}")


def prepared_measure(
    measure: str, *, linear_form: str = "auto", max_dim: int | None = None, **params: Any
) -> PreparedMeasure:
    """The prepared form of a registered measure (``'name'`` or ``'name?k=10'``) with its parameters.

    ``linear_form`` picks CKA/HSIC's linear representation: "feature", "gram", or "auto" (Gram when
    the number of items is below ``max_dim``, the widest space's dimension).
    """
    name, id_params = _registry.parse_measure_id(measure)
    info = _registry.get(name)
    _, params = _registry.split_preprocess(info, {**id_params, **params})
    _check_params(name, info.func, params)
    full = {**_signature_defaults(info.func), **params}
    if name in ROWWISE:
        return KnnMeasure(name, full["k"], full["metric"], full["backend"])
    if name == "cknna":
        return CknnaMeasure(k=full["k"], metric=full["metric"], backend=full["backend"], eps=full["eps"])
    if name in ("cka", "hsic"):
        kernel = check_choice(full["kernel"], KERNELS, "kernel")
        form = check_choice(full.get("form", "auto"), FORMS, "form")
        if kernel != "linear":
            if form == "feature":
                raise ValueError(f"form='feature' exists only for kernel='linear'; got kernel={kernel!r}")
            return GramMeasure(name, kernel, full["debiased"], full["threshold"], full["sigma"])
        form = linear_form if form == "auto" else form
        if form == "feature":
            return LinearFeatureMeasure(name, full["debiased"])
        if form == "gram":
            return GramMeasure(name, "linear", full["debiased"])
        return _AutoLinear(name, full["debiased"], max_dim)
    return GenericMeasure(name, params)


@dataclass
class _AutoLinear(PreparedMeasure):
    """Linear CKA that decides Gram vs feature form from the data (Gram when n < max dim)."""

    name: str
    debiased: bool
    max_dim: int | None

    def __post_init__(self) -> None:
        self._impl: PreparedMeasure | None = None

    def min_rows(self) -> int:
        return 4 if self.debiased else 2

    def _choose(self, x: torch.Tensor) -> PreparedMeasure:
        if self._impl is None:
            widest = max(self.max_dim or 0, x.shape[1])
            self._impl = (
                GramMeasure(self.name, "linear", self.debiased)
                if x.shape[0] < widest
                else LinearFeatureMeasure(self.name, self.debiased)
            )
        return self._impl

    def prepare(self, x: torch.Tensor) -> Any:
        return self._choose(x).prepare(x)

    def permute(self, p: Any, perm: torch.Tensor) -> Any:
        assert self._impl is not None
        return self._impl.permute(p, perm)

    def score(self, pa: Any, pb: Any) -> float:
        assert self._impl is not None
        return self._impl.score(pa, pb)


def knn_recall(prepared: Any) -> float | None:
    """The measured recall@k of a prepared space's approximate kNN graph (None when exact or not kNN)."""
    graph = prepared if isinstance(prepared, KNNGraph) else getattr(prepared, "graph", None)
    return graph.recall if isinstance(graph, KNNGraph) else None


def prepare_space(X: ArrayLike, name: str, prep: dict[str, Any]) -> torch.Tensor:
    """Validate one space and apply the registry's preprocessing options."""
    return preprocess(X, name=name, **prep) if prep else as_matrix(X, name)


def split_params(measure: str, params: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Separate preprocessing options from the measure's own parameters."""
    name, id_params = _registry.parse_measure_id(measure)
    return _registry.split_preprocess(_registry.get(name), {**id_params, **params})


def check_rows(pm: PreparedMeasure, n: int) -> None:
    check_min_rows(n, pm.min_rows(), pm.name)
