"""CPU matrix products through the faster BLAS (alignkit._gemm): same values as torch's product, either library."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from alignkit import _gemm


@pytest.mark.parametrize("backend", ["torch", "numpy"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_products_agree_with_torch_whichever_library_runs_them(monkeypatch, backend, dtype):
    monkeypatch.setenv("ALIGNKIT_CPU_GEMM", backend)
    assert _gemm.cpu_backend(dtype) == backend
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(37, 19, generator=g, dtype=dtype), torch.randn(19, 23, generator=g, dtype=dtype)
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    out = _gemm.matmul(a, b)
    assert out.dtype == dtype and out.shape == (37, 23)
    torch.testing.assert_close(out, a @ b, rtol=tol, atol=tol)
    out.mul_(2)  # the result is a writable tensor of its own
    sym = _gemm.gram(a[:, :7].T)  # a non-contiguous input
    torch.testing.assert_close(sym, a[:, :7].T @ a[:, :7], rtol=tol, atol=tol)
    assert torch.equal(sym, sym.T)  # a symmetric product is exactly symmetric


def test_other_inputs_stay_with_torch():
    """Integer tensors and tensors that need gradients are multiplied by torch as given."""
    a = torch.ones(3, 2, requires_grad=True)
    out = _gemm.matmul(a, torch.ones(2, 4))
    assert out.requires_grad and _gemm.gram(a).requires_grad
    assert _gemm.matmul(torch.ones(2, 2, dtype=torch.int64), torch.ones(2, 2, dtype=torch.int64)).dtype == torch.int64


def test_the_choice_is_timed_once_per_dtype(monkeypatch):
    monkeypatch.delenv("ALIGNKIT_CPU_GEMM", raising=False)
    monkeypatch.setattr(_gemm, "_CHOICE", {})
    calibrate = _gemm._calibrate
    assert calibrate(torch.float32, repeats=1) in ("torch", "numpy")
    timed = []
    monkeypatch.setattr(_gemm, "_calibrate", lambda dtype: timed.append(dtype) or "numpy")
    assert [_gemm.cpu_backend(torch.float32) for _ in range(3)] == ["numpy"] * 3
    assert _gemm.cpu_backend(torch.float64) == "numpy"
    assert timed == [torch.float32, torch.float64]
    np.testing.assert_array_equal(_gemm.matmul(torch.eye(3), torch.eye(3)).numpy(), np.eye(3))
