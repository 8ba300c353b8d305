"""Prepared forms of CKA and HSIC: the fast path behind their permutation nulls and atlases.

Linear kernels in feature form keep each space's centred features and self-HSIC, so a pair (or a
permutation) costs one ``X_cᵀY_c`` product (O(n·d1·d2)); other kernels keep the centred Gram and
cost one O(n²) inner product per pair, or one matmul of stacked Grams for all layer pairs.

Each space is divided by a power of two first (exact; see :mod:`alignkit.metrics.kernel`): CKA is unchanged,
linear HSIC is multiplied back by ``2^(log2_a + log2_b)``. Both estimators need n ≥ 4; biased CKA warns when n is
too small for the spaces' effective ranks (:func:`~alignkit.metrics._moments.warn_biased_cka`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from alignkit._common import pow2_rescale
from alignkit._validation import check_choice
from alignkit.metrics._moments import cka_ratio, effective_rank, warn_biased_cka
from alignkit.metrics.kernel import (
    FORMS,
    KERNELS,
    MIN_ROWS,
    centred_features,
    centred_gram,
    feature_hsic,
    gram_effective_rank,
    hsic_in_input_units,
    scaled_gram,
)
from alignkit.metrics.prepared import PreparedMeasure


@dataclass
class _Feat:
    xc: torch.Tensor  # centred features of the rescaled space, float64
    r: torch.Tensor  # row squared norms
    self_hsic: float
    log2: int = 0  # HSIC factor of this side: the space was divided by 2^(log2/2)
    rank: float = float("nan")  # effective rank (biased estimator only)


def _warn_pairs(n: int, ranks_a: list[float], ranks_b: list[float]) -> None:
    """One small-n warning for biased CKA, for the pair with the highest chance level."""
    if ranks_a and ranks_b:  # the chance level grows with both ranks
        warn_biased_cka(n, max(ranks_a), max(ranks_b))


@dataclass
class LinearFeatureMeasure(PreparedMeasure):
    """Linear CKA/HSIC in feature form: per pair only ``X_cᵀY_c`` (O(n·d1·d2)) and ``⟨r_x, r_y⟩``."""

    name: str = "cka"
    debiased: bool = True

    def min_rows(self) -> int:
        return MIN_ROWS

    def prepare(self, x: torch.Tensor) -> _Feat:
        x, e = pow2_rescale(x.double())
        xc, r = centred_features(x)
        self_hsic = feature_hsic(xc, r, xc, r, self.debiased)
        n = xc.shape[0]
        rank = float("nan") if self.debiased else effective_rank(float(r.sum()), self_hsic * (n - 1) ** 2)
        return _Feat(xc, r, self_hsic, 2 * e, rank)

    def permute(self, p: _Feat, perm: torch.Tensor) -> _Feat:
        perm = perm.to(p.xc.device)
        return _Feat(p.xc[perm], p.r[perm], p.self_hsic, p.log2, p.rank)

    def score(self, pa: _Feat, pb: _Feat) -> float:
        xy = feature_hsic(pa.xc, pa.r, pb.xc.to(pa.xc.device), pb.r.to(pa.xc.device), self.debiased)
        if self.name == "hsic":
            return hsic_in_input_units(xy, pa.log2 + pb.log2)
        if not self.debiased:
            warn_biased_cka(pa.xc.shape[0], pa.rank, pb.rank)
        return cka_ratio(xy, pa.self_hsic, pb.self_hsic)


@dataclass
class _Gram:
    kc: torch.Tensor  # centred (HKH) or U-centred kernel of the rescaled space, float64
    self_hsic: float
    log2: int = 0  # HSIC factor of this side (linear kernel: the space was divided by 2^(log2/2))
    rank: float = float("nan")  # effective rank (biased estimator only)


@dataclass
class GramMeasure(PreparedMeasure):
    """CKA/HSIC with any kernel in Gram form: per pair one O(n²) inner product."""

    name: str = "cka"
    kernel: str = "linear"
    debiased: bool = True
    threshold: float = 1.0
    sigma: float = 1.0

    def min_rows(self) -> int:
        return MIN_ROWS

    def _hsic(self, ka: torch.Tensor, kb: torch.Tensor) -> float:
        n = ka.shape[0]
        inner = float((ka * kb).sum())
        return inner / (n * (n - 3)) if self.debiased else inner / (n - 1) ** 2

    def prepare(self, x: torch.Tensor) -> _Gram:
        x, e = pow2_rescale(x.double())
        K = scaled_gram(x, e, self.kernel, threshold=self.threshold, sigma=self.sigma)
        kc = centred_gram(K, self.debiased)
        rank = float("nan") if self.debiased else gram_effective_rank(kc)
        return _Gram(kc, self._hsic(kc, kc), 2 * e if self.kernel == "linear" else 0, rank)

    def permute(self, p: _Gram, perm: torch.Tensor) -> _Gram:
        perm = perm.to(p.kc.device)
        return _Gram(p.kc[perm][:, perm], p.self_hsic, p.log2, p.rank)

    def score(self, pa: _Gram, pb: _Gram) -> float:
        xy = self._hsic(pa.kc, pb.kc.to(pa.kc.device))
        if self.name == "hsic":
            return hsic_in_input_units(xy, pa.log2 + pb.log2)
        if not self.debiased:
            warn_biased_cka(pa.kc.shape[0], pa.rank, pb.rank)
        return cka_ratio(xy, pa.self_hsic, pb.self_hsic)

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
            return np.array([[hsic_in_input_units(float(hsic[i, j]), a.log2 + b.log2) for j, b in enumerate(pb)]
                             for i, a in enumerate(pa)])  # fmt: skip
        if not self.debiased:
            _warn_pairs(n, [a.rank for a in pa], [b.rank for b in pb])
        out = np.full(hsic.shape, np.nan)
        for i, a in enumerate(pa):
            for j, b in enumerate(pb):
                out[i, j] = cka_ratio(float(hsic[i, j]), a.self_hsic, b.self_hsic)
        return out


def _stack(grams: list[_Gram]) -> torch.Tensor:
    return torch.stack([g.kc.reshape(-1) for g in grams])


@dataclass
class _AutoLinear(PreparedMeasure):
    """Linear CKA that decides Gram vs feature form from the data (Gram when n < max dim)."""

    name: str
    debiased: bool
    max_dim: int | None

    def __post_init__(self) -> None:
        self._impl: PreparedMeasure | None = None

    def min_rows(self) -> int:
        return MIN_ROWS

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


def prepare_cka(
    info: Any, params: dict[str, Any], *, max_dim: int | None = None, linear_form: str = "auto"
) -> PreparedMeasure:
    """The factory ``cka`` and ``hsic`` declare at registration."""
    name = info.name
    kernel = check_choice(params["kernel"], KERNELS, "kernel")
    form = check_choice(params.get("form", "auto"), FORMS, "form")
    if kernel != "linear":
        if form == "feature":
            raise ValueError(f"form='feature' exists only for kernel='linear'; got kernel={kernel!r}")
        return GramMeasure(name, kernel, params["debiased"], params["threshold"], params["sigma"])
    form = linear_form if form == "auto" else form
    if form == "feature":
        return LinearFeatureMeasure(name, params["debiased"])
    if form == "gram":
        return GramMeasure(name, "linear", params["debiased"])
    return _AutoLinear(name, params["debiased"], max_dim)
