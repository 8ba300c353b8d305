"""CPU matrix products through the faster of the two BLAS libraries in the process.

torch's CPU build multiplies with MKL and numpy with OpenBLAS, and which is faster depends on the CPU: on an AMD
EPYC with AVX-512, MKL's float32 GEMM ran at half OpenBLAS's speed (2000×384 by 384×2000 on one thread: 28 ms vs
15 ms). The blocked products of the kNN search and of the ranking core go through :func:`matmul`, which times both
libraries once per process and dtype on a product of the shape those loops use and then calls the faster one
(numpy only when it is clearly faster, by :data:`_MARGIN`). A space's products with itself go through :func:`gram`,
numpy's symmetric product. ``ALIGNKIT_CPU_GEMM=torch`` or ``=numpy`` fixes the
choice (e.g. when torch's and numpy's thread counts are set differently, the timing compares the two settings).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from alignkit._lazy import lazy_module

if TYPE_CHECKING:
    import torch
else:
    torch = lazy_module("torch")

#: numpy is chosen when its product takes less than this fraction of torch's.
_MARGIN = 0.8
_CHOICE: dict[str, str] = {}


def matmul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a @ b``; for two CPU float32/float64 tensors of one dtype without autograd, by the faster BLAS."""
    if (
        a.device.type != "cpu"
        or b.device.type != "cpu"
        or a.dtype != b.dtype
        or a.dtype not in (torch.float32, torch.float64)
        or a.requires_grad
        or b.requires_grad
        or cpu_backend(a.dtype) == "torch"
    ):
        return a @ b
    return torch.from_numpy(a.numpy() @ b.numpy())


def cpu_backend(dtype: torch.dtype) -> str:
    """``"torch"`` or ``"numpy"``: the library :func:`matmul` uses for CPU tensors of ``dtype``."""
    forced = os.environ.get("ALIGNKIT_CPU_GEMM", "").strip().lower()
    if forced in ("torch", "numpy"):
        return forced
    key = str(dtype)
    if key not in _CHOICE:
        _CHOICE[key] = _calibrate(dtype)
    return _CHOICE[key]


def _calibrate(dtype: torch.dtype, repeats: int = 3) -> str:
    """Time a (512 × 384) by (384 × 1024) product in both libraries, best of ``repeats`` each after a warm-up."""
    g = torch.Generator().manual_seed(0)
    a = torch.randn(512, 384, generator=g, dtype=dtype)
    b = torch.randn(1024, 384, generator=g, dtype=dtype).T.contiguous()
    an, bn = a.numpy(), b.numpy()

    def best(call: Callable[[], object]) -> float:
        call()
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            call()
            times.append(time.perf_counter() - t0)
        return min(times)

    t_torch = best(lambda: a @ b)
    t_numpy = best(lambda: an @ bn)
    return "numpy" if t_numpy < _MARGIN * t_torch else "torch"


def gram(a: torch.Tensor) -> torch.Tensor:
    """``a @ aᵀ``; on the CPU by numpy's symmetric product (BLAS syrk: half the multiply-adds of a general product,
    which torch does not expose), elsewhere by torch. ``a`` is made contiguous first (syrk needs one buffer)."""
    if a.device.type != "cpu" or a.dtype not in (torch.float32, torch.float64) or a.requires_grad:
        return a @ a.T
    an = a.contiguous().numpy()
    return torch.from_numpy(an @ an.T)


__all__ = ["cpu_backend", "gram", "matmul"]
