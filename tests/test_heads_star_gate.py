"""StarMLP's fused gate ``clamp(a, 0, 6) ⊙ clamp(b, ±c)``: values and gradients equal autograd through the
composite ReLU6(clamp(a)) ⊙ clamp(b), boundary points included, and it passes gradcheck."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from alignkit.align.heads import StarMLP, _StarGate


def _composite(a, b, c):
    return F.relu6(a.clamp(-c, c)) * b.clamp(-c, c)


def test_gate_matches_composite_including_boundaries():
    c = 1e3
    a = torch.tensor([-2e3, -1.0, 0.0, 0.5, 6.0, 7.0, 1e3, 2e3, 3.0], dtype=torch.float64)
    b = torch.tensor([5.0, -1e3, 2.0, 1e3, -3.0, 4.0, 2e3, -2e3, -1e3 - 1e-9], dtype=torch.float64)
    g = torch.linspace(-1.0, 2.0, a.numel(), dtype=torch.float64)
    outs = []
    for fn in (_StarGate.apply, _composite):
        ua, ub = a.clone().requires_grad_(), b.clone().requires_grad_()
        y = fn(ua, ub, c)
        y.backward(g)
        outs.append((y.detach(), ua.grad, ub.grad))
    for u, v in zip(*outs, strict=True):
        assert torch.equal(u, v)


def test_gate_gradcheck_and_star_forward_unchanged():
    g = torch.Generator().manual_seed(0)
    a = (4 * torch.randn(6, 7, generator=g, dtype=torch.float64) + 3).requires_grad_()
    b = torch.randn(6, 7, generator=g, dtype=torch.float64).requires_grad_()
    assert torch.autograd.gradcheck(lambda u, v: _StarGate.apply(u, v, 1.5), (a, b))
    torch.manual_seed(0)
    h = StarMLP(5, 4, expansion=3).double()
    x = torch.randn(9, 5, dtype=torch.float64)
    xn = h.norm(x)
    ref = h.g(_composite(h.f1(xn), h.f2(xn), h.CLAMP))
    assert torch.equal(h(x), ref)
    grads = torch.autograd.grad(h(x).square().sum(), list(h.parameters()))
    refs = torch.autograd.grad(h.g(_composite(h.f1(h.norm(x)), h.f2(h.norm(x)), h.CLAMP)).square().sum(),
                               list(h.parameters()))  # fmt: skip
    for u, v in zip(grads, refs, strict=True):
        assert torch.allclose(u, v, rtol=1e-12, atol=1e-15)
