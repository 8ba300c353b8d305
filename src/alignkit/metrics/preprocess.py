"""Per-space preprocessing used before measuring (PRH: clip outliers, then L2-normalise)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from alignkit._common import unit_rows
from alignkit._lazy import lazy_module
from alignkit._validation import ArrayLike, as_matrix

if TYPE_CHECKING:
    import torch
else:
    torch = lazy_module("torch")


def clip_outliers(X: torch.Tensor, quantile: float = 0.95) -> torch.Tensor:
    """Clamp every entry to ±(the ``quantile`` of |X| over all entries) (Huh et al., PRH 2024)."""
    if not 0.0 < quantile <= 1.0:
        raise ValueError(f"clip_quantile must be in (0, 1]; got {quantile}")
    flat = X.abs().flatten()
    # kthvalue has no size limit (torch.quantile does); 'lower' interpolation.
    kth = max(1, min(flat.numel(), round(quantile * (flat.numel() - 1)) + 1))
    bound = flat.kthvalue(kth).values
    return X.clamp(-bound, bound)


def l2_normalize(X: torch.Tensor) -> torch.Tensor:
    """Divide each row by its L2 norm (zero rows stay zero): :func:`alignkit._common.unit_rows`."""
    return unit_rows(X)


def center_columns(X: torch.Tensor) -> torch.Tensor:
    """Subtract the column means."""
    return X - X.mean(dim=0, keepdim=True)


def preprocess(
    X: ArrayLike,
    *,
    clip_quantile: float | None = None,
    center: bool = False,
    normalize: bool = False,
    name: str = "X",
) -> torch.Tensor:
    """Apply, in this order: outlier clipping, centering, L2 row normalisation."""
    t = as_matrix(X, name)
    if clip_quantile is not None:
        t = clip_outliers(t, clip_quantile)
    if center:
        t = center_columns(t)
    if normalize:
        t = l2_normalize(t)
    return t
