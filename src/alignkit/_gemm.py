"""A space's products with itself by a symmetric BLAS product.

``a @ aᵀ`` is symmetric, and BLAS has a routine for it (syrk) that does half the multiply-adds of a general product.
torch does not expose it; numpy's ``a @ a.T`` calls it when both operands are one buffer. On the CPU
:func:`gram` therefore goes through numpy (2000 × 384: 15 ms against torch's 28 ms on one thread of an AMD EPYC).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from alignkit._lazy import lazy_module

if TYPE_CHECKING:
    import torch
else:
    torch = lazy_module("torch")


def gram(a: torch.Tensor) -> torch.Tensor:
    """``a @ aᵀ``; on the CPU by numpy's symmetric product (BLAS syrk), elsewhere (or with autograd) by torch.
    ``a`` is made contiguous first (syrk needs one buffer)."""
    if a.device.type != "cpu" or a.dtype not in (torch.float32, torch.float64) or a.requires_grad:
        return a @ a.T
    an = a.contiguous().numpy()
    return torch.from_numpy(an @ an.T)


__all__ = ["gram"]
