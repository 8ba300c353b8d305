"""A space's products with itself (alignkit._gemm.gram): torch's values, exactly symmetric."""

from __future__ import annotations

import pytest
import torch

from alignkit import _gemm


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_gram_agrees_with_torch_and_is_exactly_symmetric(dtype, monkeypatch):
    """Single-threaded torch: numpy's symmetric product (exactly symmetric); several threads: torch's product."""
    monkeypatch.setattr(_gemm, "single_threaded", lambda: True)
    g = torch.Generator().manual_seed(0)
    a = torch.randn(37, 19, generator=g, dtype=dtype)
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    for x in (a, a[:, :7].T):  # contiguous and strided
        out = _gemm.gram(x)
        assert out.dtype == dtype and out.shape == (x.shape[0], x.shape[0])
        torch.testing.assert_close(out, x @ x.T, rtol=tol, atol=tol)
        assert torch.equal(out, out.T)
    _gemm.gram(a).mul_(2)  # a writable tensor of its own


def test_other_inputs_stay_with_torch():
    """Integer tensors and tensors that need gradients are multiplied by torch as given."""
    a = torch.ones(3, 2, requires_grad=True)
    assert _gemm.gram(a).requires_grad
    assert _gemm.gram(torch.ones(2, 2, dtype=torch.int64)).dtype == torch.int64


def test_several_threads_stay_with_torch(monkeypatch):
    monkeypatch.setattr(_gemm, "single_threaded", lambda: False)
    a = torch.randn(5, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    assert torch.equal(_gemm.gram(a), a @ a.T)


def test_single_threaded_reads_torchs_thread_count(monkeypatch):
    monkeypatch.setattr(torch, "get_num_threads", lambda: 1)
    assert _gemm.single_threaded()
    monkeypatch.setattr(torch, "get_num_threads", lambda: 4)
    assert not _gemm.single_threaded()
