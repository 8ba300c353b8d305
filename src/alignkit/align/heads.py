"""Trainable heads that map a frozen embedding space into a shared space (the loss L2-normalises outputs).

Heads follow SAIL (Zhang et al., "Assessing and Learning Alignment of Unimodal Vision and Language
Models", CVPR 2025; lezhang7/SAIL ``model/linear.py``) and STRUCTURE's heads (docs/methods.md §4.6):

- ``LinearHead``     ``z = W·LN?(x) + b``, Xavier-uniform W, zero b.
- ``MLPHead``        ``Linear → (act, Linear) × (n_layers − 1)``; hidden 4·d_in by default (SAIL SiglipMLP).
- ``StarMLP``        ``z = g(ReLU6(f1(x̃)) ⊙ f2(x̃))``, x̃ = LayerNorm(x), f1, f2: d_in → e·d_in clamped to [−1e3, 1e3].
- ``ResLowRankHead`` ``z = Px + σ(α)·W2·Dropout(GELU(W1 x))``; P, W1 orthogonal, W2 zero.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from alignkit._validation import check_choice
from alignkit.registry import Entry, ParamSchema, Registry

ACTIVATIONS: tuple[str, ...] = ("gelu", "relu", "silu")


def _check_dim(value: int, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer; got {value!r}")
    return value


def _xavier_linear(d_in: int, d_out: int, bias: bool = True) -> nn.Linear:
    layer = nn.Linear(d_in, d_out, bias=bias)
    nn.init.xavier_uniform_(layer.weight)
    if bias:
        nn.init.zeros_(layer.bias)
    return layer


def _activation(name: str) -> nn.Module:
    check_choice(name, ACTIVATIONS, "act")
    return {"gelu": nn.GELU, "relu": nn.ReLU, "silu": nn.SiLU}[name]()


class LinearHead(nn.Module):
    """``z = W·x + b`` (optionally on LayerNorm(x)); Xavier-uniform W and zero b as in SAIL."""

    def __init__(self, d_in: int, d_out: int, layernorm: bool = False) -> None:
        super().__init__()
        self.d_in, self.d_out = _check_dim(d_in, "d_in"), _check_dim(d_out, "d_out")
        self.norm = nn.LayerNorm(d_in) if layernorm else nn.Identity()
        self.proj = _xavier_linear(d_in, d_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.norm(x))


class MLPHead(nn.Module):
    """``Linear → (act, Linear) × (n_layers − 1)`` (STRUCTURE; SAIL SiglipMLP is n_layers=2, GELU, hidden 4·d_in)."""

    def __init__(self, d_in: int, d_out: int, hidden: int | None = None, n_layers: int = 2, act: str = "gelu") -> None:
        super().__init__()
        self.d_in, self.d_out = _check_dim(d_in, "d_in"), _check_dim(d_out, "d_out")
        _check_dim(n_layers, "n_layers")
        hidden = 4 * d_in if hidden is None else _check_dim(hidden, "hidden")
        dims = [d_in] + [hidden] * (n_layers - 1) + [d_out]
        layers: list[nn.Module] = [_xavier_linear(dims[0], dims[1])]
        for a, b in itertools.pairwise(dims[1:]):
            layers += [_activation(act), _xavier_linear(a, b)]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class _StarGate(torch.autograd.Function):
    """``h = ReLU6(clamp(a, ±c)) ⊙ clamp(b, ±c) = clamp(a, 0, 6) ⊙ clamp(b, −c, c)`` with a fused backward.

    ``∂h/∂a = clamp(b, ±c)`` where 0 < a < 6 (ReLU6's open interval, inside ±c), else 0; ``∂h/∂b = clamp(a, 0, 6)``
    where |b| ≤ c (clamp's closed interval), else 0: the same gradient as autograd through the composite, but it
    saves only a and b (autograd keeps five B×h tensors), which halves the head's activation memory at large
    batches and skips three element-wise passes.
    """

    @staticmethod
    def forward(ctx, a: torch.Tensor, b: torch.Tensor, c: float) -> torch.Tensor:
        ctx.save_for_backward(a, b)
        ctx.c = c
        return a.clamp(0.0, 6.0).mul_(b.clamp(-c, c))

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: torch.Tensor):
        a, b = ctx.saved_tensors
        c = ctx.c
        ga = gb = None
        if ctx.needs_input_grad[0]:
            ga = b.clamp(-c, c).mul_(grad).mul_((a > 0) & (a < 6))
        if ctx.needs_input_grad[1]:
            gb = a.clamp(0.0, 6.0).mul_(grad).mul_(b.abs() <= c)
        return ga, gb, None


class StarMLP(nn.Module):
    """Star (gated) MLP, the SAIL paper's "GLU": ``z = g(ReLU6(f1(x̃)) ⊙ f2(x̃))`` with ``x̃ = LayerNorm(x)``.

    f1, f2: d_in → expansion·d_in; g: expansion·d_in → d_out. Both branches are clamped to [−1e3, 1e3]
    before the product so one large activation cannot overflow the product in low precision.

    Training note (measured on 1,500 Bible verse pairs, MiniLM EN ↔ e5 ES, SigLIP with the SAIL init): the
    init is not what fails (a 10× smaller g or no g bias changed nothing); Adam without lr
    warm-up is. Its first steps move all ~4 M weights by ≈ lr at once, mostly along a direction shared by all
    outputs, and SigLIP (unlike InfoNCE, which is blind to a shared offset) rewards exactly that until the
    outputs collapse. ``HeadAligner`` therefore warms the lr up over 10 % of the steps and scales its default
    lr by ``min(1, 1024 / (expansion·d_in))`` for this head.
    """

    CLAMP = 1e3

    def __init__(self, d_in: int, d_out: int, expansion: int = 8) -> None:
        super().__init__()
        self.d_in, self.d_out = _check_dim(d_in, "d_in"), _check_dim(d_out, "d_out")
        hidden = _check_dim(expansion, "expansion") * d_in
        self.norm = nn.LayerNorm(d_in)
        self.f1 = _xavier_linear(d_in, hidden)
        self.f2 = _xavier_linear(d_in, hidden)
        self.g = _xavier_linear(hidden, d_out)
        self.act = nn.ReLU6()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm(x)
        return self.g(_StarGate.apply(self.f1(x), self.f2(x), self.CLAMP))


class ResLowRankHead(nn.Module):
    """``z = Px + σ(α)·W2·Dropout(GELU(W1 x))``: a linear map plus a gated low-rank residual branch.

    P (d_out × d_in) and W1 (rank × d_in) start orthogonal, W2 starts at zero, so the head starts as
    the linear map P. SAIL records ``logit_α = −∞``; that never learns: with W2 = 0 and σ(−∞) = 0 the
    gradient reaching W2 is σ(α)·… = 0 and the one reaching α is σ'(α)·W2… = 0, so both stay frozen
    for ever. A finite −6 (σ ≈ 0.0025) starts almost as P yet lets W2, then α and W1, move.
    """

    def __init__(
        self, d_in: int, d_out: int, rank: int = 64, dropout: float = 0.1, alpha_logit_init: float = -6.0
    ) -> None:
        super().__init__()
        self.d_in, self.d_out = _check_dim(d_in, "d_in"), _check_dim(d_out, "d_out")
        _check_dim(rank, "rank")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1); got {dropout!r}")
        if math.isnan(alpha_logit_init):
            raise ValueError("alpha_logit_init must not be NaN")
        self.P = nn.Linear(d_in, d_out, bias=False)
        self.W1 = nn.Linear(d_in, rank, bias=False)
        self.W2 = nn.Linear(rank, d_out, bias=False)
        nn.init.orthogonal_(self.P.weight)
        nn.init.orthogonal_(self.W1.weight)
        nn.init.zeros_(self.W2.weight)
        self.branch = nn.Sequential(nn.GELU(), nn.Dropout(dropout))
        self.alpha_logit = nn.Parameter(torch.tensor(float(alpha_logit_init)))

    @property
    def alpha(self) -> torch.Tensor:
        return torch.sigmoid(self.alpha_logit)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.P(x) + self.alpha * self.W2(self.branch(self.W1(x)))


@dataclass(frozen=True)
class HeadInfo(Entry[type]):
    """A registered head: an ``nn.Module`` class built as ``cls(d_in, d_out, **params)``."""


#: Heads by the name ``HeadAligner(head=...)`` and a run config use.
HEADS: Registry[HeadInfo] = Registry("head")


def register_head(
    name: str, cls: type[nn.Module], *, constraints: dict[str, dict[str, Any]] | None = None, replace: bool = False
) -> HeadInfo:
    """Register a head class ``cls(d_in, d_out, **params)``; its other parameters form the schema."""
    schema = ParamSchema.from_callable(cls.__init__, skip=2, **(constraints or {}))
    doc = (cls.__doc__ or "").strip().splitlines()
    return HEADS.add(HeadInfo(name, cls, doc[0] if doc else "", schema), replace=replace)


register_head("linear", LinearHead)
register_head(
    "mlp", MLPHead, constraints={"hidden": {"low": 1}, "n_layers": {"low": 1}, "act": {"choices": ACTIVATIONS}}
)
register_head("star", StarMLP, constraints={"expansion": {"low": 1}})
register_head(
    "reslowrank",
    ResLowRankHead,
    constraints={"rank": {"low": 1}, "dropout": {"low": 0.0, "high": 1.0, "high_open": True}},
)


def build_head(kind: str, d_in: int, d_out: int, **kw: Any) -> nn.Module:
    """A registered head by name (``linear``, ``mlp``, ``star``, ``reslowrank``, or yours); ``kw`` are
    checked against its schema and go to its constructor."""
    info = HEADS.get(kind)
    return info.obj(d_in, d_out, **info.schema.validate(kw, f"head {kind!r}"))  # type: ignore[no-any-return]
