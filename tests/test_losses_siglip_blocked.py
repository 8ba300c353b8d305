"""Memory-efficient (blocked, recomputing) SigLIP: values and first-order gradients equal the dense autograd loss
for several block sizes, both reductions, extra negatives, kept and recomputed σ(ℓ); bad arguments."""

from __future__ import annotations

import math

import pytest
import torch

from alignkit.align import losses
from alignkit.align.losses import SigLIP, siglip

D = torch.float64


def _inputs(n: int, e: int, d: int = 5, seed: int = 0, dtype=D):
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(n, d, generator=g, dtype=dtype).requires_grad_()
    b = torch.randn(n, d, generator=g, dtype=dtype).requires_grad_()
    x = torch.randn(e, d, generator=g, dtype=dtype).requires_grad_() if e else None
    s = torch.tensor(math.log(10.0), dtype=dtype, requires_grad=True)
    bias = torch.tensor(-3.0, dtype=dtype, requires_grad=True)
    return a, b, x, s, bias


def _value_and_grads(impl: str, n: int, e: int, reduction: str, block_size=None, seed: int = 0, dtype=D):
    a, b, x, s, bias = _inputs(n, e, seed=seed, dtype=dtype)
    loss = siglip(a, b, s, bias, reduction=reduction, extra_negatives=x, impl=impl, block_size=block_size)
    loss.backward()
    grads = [t.grad for t in (a, b, x, s, bias) if t is not None]
    return loss.detach(), grads


@pytest.mark.parametrize("reduction", ["mean", "sum_rows"])
@pytest.mark.parametrize("impl", ["blocked", "auto"])
@pytest.mark.parametrize(("n", "e", "block_size"), [(9, 0, 1), (9, 0, 4), (9, 3, 9), (12, 2, 5), (7, 0, None)])
def test_blocked_equals_dense(reduction, impl, n, e, block_size):
    ref, ref_grads = _value_and_grads("dense", n, e, reduction)
    got, got_grads = _value_and_grads(impl, n, e, reduction, block_size)
    assert torch.allclose(got, ref, rtol=1e-12, atol=1e-14)
    for u, v in zip(got_grads, ref_grads, strict=True):
        assert torch.allclose(u, v, rtol=1e-10, atol=1e-14)


def test_blocked_recompute_path_above_keep_threshold(monkeypatch):
    """With the keep threshold at 0, ``auto`` recomputes every block in backward; still equal to dense."""
    monkeypatch.setattr(losses, "SIGLIP_KEEP_MAX_ENTRIES", 0)
    ref, ref_grads = _value_and_grads("dense", 10, 2, "mean", seed=3)
    got, got_grads = _value_and_grads("auto", 10, 2, "mean", block_size=3, seed=3)
    assert torch.allclose(got, ref, rtol=1e-12)
    for u, v in zip(got_grads, ref_grads, strict=True):
        assert torch.allclose(u, v, rtol=1e-10, atol=1e-14)


def test_blocked_float32_and_extreme_logits():
    """float32 agrees with dense to float32 rounding, also where the logits saturate (|ℓ| ≈ 110)."""
    for s_val, b_val in ((math.log(10.0), -10.0), (math.log(100.0), 10.0), (math.log(100.0), -10.0)):
        out = []
        for impl in ("dense", "blocked"):
            a, b, _, s, bias = _inputs(64, 0, d=8, seed=1, dtype=torch.float32)
            with torch.no_grad():
                s.fill_(s_val)
                bias.fill_(b_val)
            loss = siglip(a, b, s, bias, impl=impl, block_size=16)
            loss.backward()
            out.append((loss.detach(), a.grad, b.grad, s.grad, bias.grad))
        for u, v in zip(*out, strict=True):
            assert torch.allclose(u, v, rtol=1e-4, atol=1e-7)


def test_blocked_gradcheck():
    a, b, x, s, bias = _inputs(6, 2, d=3, seed=2)
    fn = lambda u, v, w, p, q: siglip(u, v, p, q, extra_negatives=w, impl="blocked", block_size=4)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (a, b, x, s, bias))


def test_blocked_python_scalar_scale_and_bias():
    a, b, *_ = _inputs(5, 0, seed=4)
    dense = siglip(a, b, 0.5, -1.0, impl="dense")
    assert torch.allclose(siglip(a, b, 0.5, -1.0, impl="blocked", block_size=2), dense, rtol=1e-12)


def test_blocked_module_and_errors():
    m = SigLIP(impl="blocked", block_size=3)
    a, b, *_ = _inputs(8, 0, seed=5, dtype=torch.float32)
    assert torch.allclose(m(a, b), SigLIP(impl="dense")(a, b), rtol=1e-5)
    with pytest.raises(ValueError, match="impl must be one of"):
        SigLIP(impl="fast")
    with pytest.raises(ValueError, match="block_size"):
        SigLIP(block_size=0)
    with pytest.raises(ValueError, match="block_size"):
        siglip(a, b, 1.0, 0.0, block_size=-2)
    with pytest.raises(ValueError, match="share a space"):
        siglip(a, b[:, :3], 1.0, 0.0)
    with pytest.raises(ValueError, match="scalars"):
        siglip(a, b, torch.ones(2), 0.0)
