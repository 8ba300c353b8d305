"""Contrastive and structure-preserving losses for training alignment heads (torch).

Every function takes embeddings (rows = items), returns a scalar tensor that carries gradients, and validates
its inputs without detaching them. Modules hold learnable parameters (temperatures, logit scale, bias) where the
method has them. Formulas and defaults follow docs/methods.md §4.7, §3.1 and §3.3.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from alignkit._validation import check_choice

__all__ = [
    "CombinedLoss",
    "GramVolumeLoss",
    "InfoNCE",
    "SigLIP",
    "StructureRegularizer",
    "alignment_loss",
    "calibrated_uniformity",
    "geodesic_mix",
    "gram_volume",
    "gram_volume_loss",
    "info_nce",
    "intra_modal_loss",
    "mixup_negatives_loss",
    "mv_dhel",
    "mv_info_nce",
    "siglip",
    "structure_lambda",
    "structure_reg",
    "triple_contrastive",
    "uniformity_loss",
]


# ----------------------------------------------------------------------------------------------- validation
def _emb(t: Tensor, name: str, ndim: int = 2, min_rows: int = 1) -> Tensor:
    """Check an embedding tensor (kept attached to the graph): floating, ``ndim``-D, non-empty, finite."""
    if not isinstance(t, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor; got {type(t).__name__}")
    if t.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D; got shape {tuple(t.shape)}")
    if t.numel() == 0:
        raise ValueError(f"{name} is empty: shape {tuple(t.shape)}")
    if not t.is_floating_point():
        t = t.to(torch.float32)
    if not bool(torch.isfinite(t.detach()).all()):
        bad = int((~torch.isfinite(t.detach())).sum())
        raise ValueError(f"{name} contains {bad} NaN or Inf value(s)")
    if t.shape[0] < min_rows:
        raise ValueError(f"{name} needs at least {min_rows} rows (items); got {t.shape[0]}")
    return t


def _pair(a: Tensor, b: Tensor, names: tuple[str, str], min_rows: int = 1) -> tuple[Tensor, Tensor]:
    a = _emb(a, names[0], min_rows=min_rows)
    b = _emb(b, names[1], min_rows=min_rows)
    if a.shape[0] != b.shape[0]:
        raise ValueError(
            f"{names[0]} and {names[1]} must be paired by row: {names[0]} has {a.shape[0]} rows, "
            f"{names[1]} has {b.shape[0]}"
        )
    dtype = torch.promote_types(a.dtype, b.dtype)
    return a.to(dtype), b.to(device=a.device, dtype=dtype)


def _positive(value: float, name: str) -> float:
    value = float(value)
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a positive finite number; got {value}")
    return value


def _unit(x: Tensor) -> Tensor:
    return F.normalize(x, dim=-1, eps=1e-12)


def _symmetric_ce(logits: Tensor, label_smoothing: float = 0.0) -> Tensor:
    target = torch.arange(logits.shape[0], device=logits.device)
    row = F.cross_entropy(logits, target, label_smoothing=label_smoothing)
    col = F.cross_entropy(logits.T, target, label_smoothing=label_smoothing)
    return 0.5 * (row + col)


# ------------------------------------------------------------------------------------------------- InfoNCE
def info_nce(a: Tensor, b: Tensor, temperature: float | Tensor = 0.05) -> Tensor:
    """Symmetric InfoNCE (CLIP loss) on row-paired embeddings.

    ``S_ij = â_i·b̂_j / τ``; ``L = ½[CE(S, I) + CE(Sᵀ, I)]`` (rows normalised inside; mean over rows).
    STRUCTURE uses a fixed τ = 0.05. Oord et al., "Representation Learning with Contrastive Predictive Coding"
    (arXiv 2018); Radford et al., "Learning Transferable Visual Models From Natural Language Supervision" (ICML 2021).
    ``temperature`` may be a tensor (learnable). Equals log N when all logits are equal.
    """
    a, b = _pair(a, b, ("a", "b"))
    if not isinstance(temperature, Tensor):
        temperature = _positive(temperature, "temperature")
    logits = _unit(a) @ _unit(b).T / temperature
    return _symmetric_ce(logits)


class InfoNCE(nn.Module):
    """Symmetric InfoNCE with a CLIP-style log-parameterised logit scale ``s``: logits = min(e^s, 100)·â·b̂ᵀ.

    ``init_temperature`` = 0.07 gives e^s = 1/0.07 (SAIL's CLIP branch). ``learnable=False`` keeps it fixed
    (a buffer). The scale is clamped at 100 in the forward pass; ``clamp_()`` also clamps the stored value.
    """

    max_scale = 100.0

    def __init__(self, learnable: bool = True, init_temperature: float = 0.07) -> None:
        super().__init__()
        init = torch.tensor(math.log(1.0 / _positive(init_temperature, "init_temperature")))
        if learnable:
            self.logit_scale = nn.Parameter(init)
        else:
            self.register_buffer("logit_scale", init)

    @property
    def temperature(self) -> Tensor:
        return 1.0 / self.logit_scale.exp().clamp(max=self.max_scale)

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        return info_nce(a, b, temperature=self.temperature)

    @torch.no_grad()
    def clamp_(self) -> InfoNCE:
        self.logit_scale.clamp_(max=math.log(self.max_scale))
        return self


# -------------------------------------------------------------------------------------------------- SigLIP
SIGLIP_IMPLS: tuple[str, ...] = ("auto", "dense", "blocked")
#: ``impl="auto"`` keeps σ(ℓ) from the forward pass (no recomputation) while N·M is at most this many entries
#: (2²⁵ = 128 MiB in float32) and recomputes row blocks in backward above it.
SIGLIP_KEEP_MAX_ENTRIES = 2**25
#: Target entries per row block of the blocked SigLIP (2²⁵ = 128 MiB in float32: 1,024 rows at M = 32,768).
#: Smaller blocks cost time: backward accumulates ∂/∂c (M×d) once per block, and 128-row blocks were 1.7×
#: slower than 1,024-row ones at N = 8,192, M = 32,768 on CPU.
SIGLIP_BLOCK_ENTRIES = 2**25


def _siglip_block_rows(m: int, block_size: int | None) -> int:
    if block_size is None:
        return max(1, SIGLIP_BLOCK_ENTRIES // max(1, m))
    if isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 1:
        raise ValueError(f"block_size must be a positive integer or None; got {block_size!r}")
    return block_size


class _BlockedSigLIP(torch.autograd.Function):
    """Sum of the SigLIP terms over an N×M logit matrix, one block of rows at a time.

    With ``ℓ_ij = t·a_i·c_j + b`` (t = e^s) and positives on the first n diagonal entries, each term is
    ``softplus(−z_ijℓ_ij)``; since ``softplus(−ℓ) = softplus(ℓ) − ℓ``, the sum is
    ``Σ_ij softplus(ℓ_ij) − Σ_{i<n} ℓ_ii`` and its gradient wrt ℓ is ``G = σ(ℓ) − I_n``. Backward uses
    ``∂/∂a = t·G·c``, ``∂/∂c = t·Gᵀ·a``, ``∂/∂b = ΣG`` and ``∂/∂s = Σ_ij G_ij·t·a_i·c_j = Σ_i a_i·(∂/∂a)_i``, so
    only ``σ(ℓ)`` is needed per block. ``keep=True`` stores σ(ℓ) (N×M) in forward; ``keep=False`` stores nothing
    of size N×M and recomputes each block's ℓ in backward (memory O(block·M + (N+M)·d), one extra matrix
    product). First-order gradients only.
    """

    @staticmethod
    def forward(ctx, a: Tensor, c: Tensor, s: Tensor, bias: Tensor, n_pos: int, block: int, keep: bool) -> Tensor:
        t = s.exp()
        tf, bf = float(t), float(bias)
        diag = t * (a[:n_pos] * c[:n_pos]).sum(dim=1) + bias
        total = -diag.sum()
        cols_t = c.T
        probs = a.new_empty(a.shape[0], c.shape[0]) if keep else None
        for i0 in range(0, a.shape[0], block):
            logits = torch.mm(a[i0 : i0 + block], cols_t).mul_(tf).add_(bf)
            total = total + F.softplus(logits).sum()
            if probs is not None:
                torch.sigmoid(logits, out=probs[i0 : i0 + block])
        ctx.save_for_backward(a, c, s, bias, probs if probs is not None else a.new_empty(0))
        ctx.n_pos, ctx.block, ctx.keep = n_pos, block, keep
        return total

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: Tensor):
        a, c, s, bias, probs = ctx.saved_tensors
        n_pos, block = ctx.n_pos, ctx.block
        t = s.exp()
        gt = float(t * grad)
        bf = float(bias)
        ga = torch.empty_like(a)
        gc = torch.zeros_like(c)
        sum_p = a.new_zeros(())
        cols_t = c.T
        for i0 in range(0, a.shape[0], block):
            ab = a[i0 : i0 + block]
            if ctx.keep:
                p = probs[i0 : i0 + block]
            else:
                p = torch.mm(ab, cols_t).mul_(float(t)).add_(bf).sigmoid_()
            sum_p = sum_p + p.sum()
            torch.mm(p, c, out=ga[i0 : i0 + block])
            gc.addmm_(p.T, ab, alpha=gt)
        ga.mul_(gt)
        ga[:n_pos].sub_(c[:n_pos], alpha=gt)
        gc[:n_pos].sub_(a[:n_pos], alpha=gt)
        grad_s = (a * ga).sum() if ctx.needs_input_grad[2] else None
        grad_b = grad * (sum_p - n_pos) if ctx.needs_input_grad[3] else None
        return ga, gc, grad_s, grad_b, None, None, None


def siglip(
    a: Tensor,
    b: Tensor,
    logit_scale: float | Tensor,
    bias: float | Tensor,
    reduction: str = "mean",
    extra_negatives: Tensor | None = None,
    impl: str = "auto",
    block_size: int | None = None,
) -> Tensor:
    """Pairwise sigmoid loss: ``ℓ_ij = e^s·â_i·b̂_j + bias``, ``z_ij = +1`` if i = j else −1, ``−log σ(z_ij ℓ_ij)``.

    ``reduction="mean"`` averages over all N·(N+E) entries (SAIL); ``"sum_rows"`` is official SigLIP,
    ``−(1/N)Σ_iΣ_j``, exactly (N+E)× larger: rescale the learning rate when switching. ``logit_scale`` is s
    (log-parameterised). ``extra_negatives`` (E×d, e.g. SAIL's extra captions) are appended as columns with
    label −1. Zhai et al., "Sigmoid Loss for Language Image Pre-Training" (ICCV 2023); Zhang et al. (SAIL),
    "Assessing and Learning Alignment of Unimodal Vision and Language Models" (CVPR 2025).

    ``impl="dense"`` builds the N×M logits under autograd (several N×M copies: 32,768² fp32 is 4.3 GB each).
    ``"blocked"`` evaluates ``Σ softplus(ℓ) − Σ_i ℓ_ii`` in blocks of ``block_size`` rows (default: about 2²⁵
    entries per block) with a hand-written backward that recomputes each block (memory O(block·M)); it is the
    same loss and gradient up to float rounding, first-order only (no double backward). ``"auto"`` (default)
    uses the blocked kernel, keeping σ(ℓ) from the forward pass for backward while N·M ≤ 2²⁵ entries (no
    recomputation) and recomputing above. It is not slower than dense where dense fits: a StarMLP + SigLIP training
    step at N = 4,096 took 2.0 s vs 2.1 s on 2 CPU threads (bench/trainer_throughput.py).
    """
    a, b = _pair(a, b, ("a", "b"))
    check_choice(reduction, ("mean", "sum_rows"), "reduction")
    check_choice(impl, SIGLIP_IMPLS, "impl")
    n = a.shape[0]
    cols = _unit(b)
    if extra_negatives is not None:
        extra = _emb(extra_negatives, "extra_negatives")
        if extra.shape[1] != b.shape[1]:
            raise ValueError(f"extra_negatives must have {b.shape[1]} columns like b; got {extra.shape[1]}")
        cols = torch.cat([cols, _unit(extra.to(device=b.device, dtype=b.dtype))], dim=0)
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"a and b must share a space; got widths {a.shape[1]} and {b.shape[1]}")
    for value, name in ((logit_scale, "logit_scale"), (bias, "bias")):
        if not bool(torch.isfinite(torch.as_tensor(value).detach()).all()):
            raise ValueError(f"{name} must be finite; got {value}")
    m = cols.shape[0]
    denom = float(n * m) if reduction == "mean" else float(n)
    if impl == "dense":
        logits = torch.exp(torch.as_tensor(logit_scale, dtype=a.dtype)) * (_unit(a) @ cols.T) + bias
        z = -torch.ones_like(logits)
        z[:, :n] += 2.0 * torch.eye(n, dtype=a.dtype, device=a.device)
        nll = F.softplus(-z * logits)  # −log σ(zℓ)
        return nll.sum() / denom
    block = _siglip_block_rows(m, block_size)
    keep = impl == "auto" and n * m <= SIGLIP_KEEP_MAX_ENTRIES
    s_t = torch.as_tensor(logit_scale, dtype=a.dtype, device=a.device)
    b_t = torch.as_tensor(bias, dtype=a.dtype, device=a.device)
    if s_t.ndim != 0 or b_t.ndim != 0:
        raise ValueError(f"logit_scale and bias must be scalars; got shapes {tuple(s_t.shape)}, {tuple(b_t.shape)}")
    return _BlockedSigLIP.apply(_unit(a), cols, s_t, b_t, n, block, keep) / denom


class SigLIP(nn.Module):
    """SigLIP loss with learnable s (init log 10) and bias (init −10). Call ``clamp_()`` after each optimiser
    step to keep s in [0, log 100]. Exclude both parameters from weight decay (SAIL's Lion decays them)."""

    def __init__(
        self,
        init_logit_scale: float = math.log(10.0),
        init_bias: float = -10.0,
        reduction: str = "mean",
        impl: str = "auto",
        block_size: int | None = None,
    ) -> None:
        super().__init__()
        self.reduction = check_choice(reduction, ("mean", "sum_rows"), "reduction")
        self.impl = check_choice(impl, SIGLIP_IMPLS, "impl")
        self.block_size = None if block_size is None else _siglip_block_rows(1, block_size)
        self.logit_scale = nn.Parameter(torch.tensor(float(init_logit_scale)))
        self.bias = nn.Parameter(torch.tensor(float(init_bias)))

    def forward(self, a: Tensor, b: Tensor, extra_negatives: Tensor | None = None) -> Tensor:
        return siglip(
            a, b, self.logit_scale, self.bias, reduction=self.reduction, extra_negatives=extra_negatives,
            impl=self.impl, block_size=self.block_size,
        )  # fmt: skip

    @torch.no_grad()
    def clamp_(self) -> SigLIP:
        self.logit_scale.clamp_(0.0, math.log(100.0))
        return self


# --------------------------------------------------------------------------------------------- STRUCTURE R_S
def _kl_rows(p: Tensor, q: Tensor, eps: float = 1e-12) -> Tensor:
    """KL(p‖q) per row, summed over columns and divided by N (``batchmean``); eps inside both logs."""
    return (p * (torch.log(p + eps) - torch.log(q + eps))).sum() / p.shape[0]


def _structure_p(x: Tensor, tau: float) -> Tensor:
    xt = _unit(x)
    xt = xt - xt.mean(dim=0, keepdim=True)
    return torch.softmax(xt @ xt.T / tau, dim=1)


def structure_reg(
    x: Tensor,
    z: Tensor,
    levels: int = 1,
    tau: float = 0.05,
    margin: float = 0.0,
    weighting: str = "none",
    divergence: str = "code",
) -> Tensor:
    """STRUCTURE regulariser R_S between a frozen space ``x`` and its mapped version ``z`` (rows paired).

    ``X̃ = centre(normalise(X))``; ``P_X = rowsoftmax(X̃X̃ᵀ/τ)`` (likewise P_Z). For ℓ = 1..L: A = P_X^ℓ,
    B = P_Z^ℓ, M = (A+B)/2, ``D_ℓ = relu(div − margin)``; ``R_S = (1/L)Σ_ℓ w_ℓD_ℓ`` with w_ℓ = 1 ("none") or
    1/ℓ ("inverse"). ``divergence="code"`` (default, parity with the authors' code) is ½[KL(M‖A) + KL(M‖B)],
    not bounded by log 2; ``"js"`` is the textbook Jensen–Shannon ½[KL(A‖M) + KL(B‖M)] ≤ log 2. KL is summed
    over columns and averaged over rows, eps 1e-12. O(L·N³). Gröger, Wen, Le, Brbić, "With Limited Data for
    Multimodal Alignment, Let the STRUCTURE Guide You" (NeurIPS 2025).
    """
    x, z = _pair(x, z, ("x", "z"), min_rows=2)
    if isinstance(levels, bool) or not isinstance(levels, int) or levels < 1:
        raise ValueError(f"levels must be an integer >= 1; got {levels!r}")
    tau = _positive(tau, "tau")
    margin = float(margin)
    check_choice(weighting, ("none", "inverse"), "weighting")
    check_choice(divergence, ("code", "js"), "divergence")
    px, pz = _structure_p(x, tau), _structure_p(z, tau)
    a, b = px, pz
    total = x.new_zeros(())
    for level in range(1, levels + 1):
        if level > 1:
            a, b = a @ px, b @ pz
        m = 0.5 * (a + b)
        if divergence == "code":
            div = 0.5 * (_kl_rows(m, a) + _kl_rows(m, b))
        else:
            div = 0.5 * (_kl_rows(a, m) + _kl_rows(b, m))
        weight = 1.0 if weighting == "none" else 1.0 / level
        total = total + weight * F.relu(div - margin)
    return total / levels


def structure_lambda(step: int, lam: float = 10.0, warmup: int = 1000) -> float:
    """STRUCTURE's linear warm-up of the regulariser weight: ``λ_t = λ·min(1, t/warmup)`` (λ at once if warmup=0).

    Full loss: ``InfoNCE + λ_t(R_S(img) + R_S(txt))/2``.
    """
    if step < 0:
        raise ValueError(f"step must be >= 0; got {step}")
    if warmup < 0:
        raise ValueError(f"warmup must be >= 0; got {warmup}")
    return float(lam) if warmup == 0 else float(lam) * min(1.0, step / warmup)


class StructureRegularizer:
    """STRUCTURE's weighted regulariser on both sides: ``λ_t·(R_S(X, Z_X) + R_S(Y, Z_Y))/2`` (docs/methods.md §4.7).

    ``X``, ``Y`` are the frozen input batches and ``Z_X``, ``Z_Y`` the head outputs on them; R_S is
    :func:`structure_reg` (``levels``, ``tau``, ``margin``, ``weighting``, ``divergence``) and
    ``λ_t = lam·min(1, t/warmup)`` is :func:`structure_lambda` of the global optimiser step t (0-based), so a
    resumed run recomputes the same weight. The warm-up is ``warmup_steps`` (STRUCTURE: 1,000) unless
    ``warmup_fraction`` is given, in which case it is ``round(warmup_fraction·total_steps)`` once the trainer
    knows the total (:meth:`resolve`). Defaults are STRUCTURE's: λ = 10, τ = 0.05, L = 1, margin 0,
    ``divergence="code"``. Gröger, Wen, Le, Brbić, "With Limited Data for Multimodal Alignment, Let the
    STRUCTURE Guide You" (NeurIPS 2025).

    It has no parameters; the trainer adds ``λ_t·value`` to the contrastive loss.
    """

    KEYS: tuple[str, ...] = ("levels", "tau", "margin", "weighting", "divergence", "warmup_steps", "warmup_fraction")

    def __init__(
        self,
        lam: float = 10.0,
        *,
        levels: int = 1,
        tau: float = 0.05,
        margin: float = 0.0,
        weighting: str = "none",
        divergence: str = "code",
        warmup_steps: int = 1000,
        warmup_fraction: float | None = None,
    ) -> None:
        lam_f = float(lam) if isinstance(lam, (int, float)) and not isinstance(lam, bool) else math.nan
        if not (math.isfinite(lam_f) and lam_f >= 0):
            raise ValueError(f"structure (λ) must be a finite number >= 0; got {lam!r}")
        if isinstance(levels, bool) or not isinstance(levels, int) or levels < 1:
            raise ValueError(f"structure_kwargs['levels'] must be an integer >= 1; got {levels!r}")
        if isinstance(warmup_steps, bool) or not isinstance(warmup_steps, int) or warmup_steps < 0:
            raise ValueError(f"structure_kwargs['warmup_steps'] must be an integer >= 0; got {warmup_steps!r}")
        if warmup_fraction is not None:
            wf = float(warmup_fraction)
            if not (math.isfinite(wf) and 0.0 <= wf <= 1.0):
                raise ValueError(f"structure_kwargs['warmup_fraction'] must lie in [0, 1]; got {warmup_fraction!r}")
            warmup_fraction = wf
        margin_f = float(margin)
        if not math.isfinite(margin_f):
            raise ValueError(f"structure_kwargs['margin'] must be finite; got {margin!r}")
        self.lam = lam_f
        self.levels = levels
        self.tau = _positive(tau, "structure_kwargs['tau']")
        self.margin = margin_f
        self.weighting = check_choice(weighting, ("none", "inverse"), "structure_kwargs['weighting']")
        self.divergence = check_choice(divergence, ("code", "js"), "structure_kwargs['divergence']")
        self.warmup_steps = warmup_steps
        self.warmup_fraction = warmup_fraction
        self.warmup = warmup_steps

    @classmethod
    def from_kwargs(cls, lam: float, kwargs: Mapping[str, object] | None) -> StructureRegularizer:
        """Build from an estimator's ``structure`` (λ) and ``structure_kwargs``; unknown keys are an error."""
        kw = dict(kwargs or {})
        unknown = sorted(set(kw) - set(cls.KEYS))
        if unknown:
            raise ValueError(f"structure_kwargs has unknown key(s) {unknown}; allowed: {list(cls.KEYS)}")
        return cls(lam, **kw)  # type: ignore[arg-type]

    def resolve(self, total_steps: int) -> StructureRegularizer:
        """Fix the warm-up length in steps for a run of ``total_steps`` optimiser steps."""
        if self.warmup_fraction is not None:
            self.warmup = round(self.warmup_fraction * total_steps)
        return self

    def weight(self, step: int) -> float:
        """``λ_t`` at global optimiser step ``step``."""
        return structure_lambda(step, self.lam, self.warmup)

    def config(self) -> dict[str, object]:
        """JSON-able settings (checkpoint fingerprint)."""
        return {
            "lam": self.lam, "levels": self.levels, "tau": self.tau, "margin": self.margin,
            "weighting": self.weighting, "divergence": self.divergence, "warmup": self.warmup,
        }  # fmt: skip

    def __call__(self, x: Tensor, zx: Tensor, y: Tensor, zy: Tensor) -> Tensor:
        """Unweighted ``(R_S(x, zx) + R_S(y, zy))/2``."""
        return self.views([x, y], [zx, zy])

    def views(self, xs: Sequence[Tensor], zs: Sequence[Tensor], mask: Tensor | None = None) -> Tensor:
        """Unweighted mean over views of ``R_S(x_v, z_v)``: ``(1/n)Σ_v R_S(x_v, z_v)``.

        ``mask`` (items × views, bool) marks the present rows: view v's R_S then uses only its present rows, and
        views with fewer than 2 of them are left out of the mean (0 when none is left).
        """
        kw = {
            "levels": self.levels, "tau": self.tau, "margin": self.margin,
            "weighting": self.weighting, "divergence": self.divergence,
        }  # fmt: skip
        vals = []
        for v, (x, z) in enumerate(zip(xs, zs, strict=True)):
            if mask is not None:
                rows = mask[:, v]
                if int(rows.sum()) < 2:
                    continue
                x, z = x[rows], z[rows]
            vals.append(structure_reg(x, z, **kw))
        if not vals:
            return zs[0].new_zeros(())
        total = vals[0]
        for val in vals[1:]:
            total = total + val
        return (1.0 / len(vals)) * total


# ---------------------------------------------------------------------------------------------------- GRAM
def _det_volume(gram: Tensor, eps: float) -> Tensor:
    return torch.sqrt(torch.linalg.det(gram).abs() + eps)


def gram_volume(vectors: Tensor, eps: float = 0.0) -> Tensor:
    """Volume of the parallelotope spanned by k unit vectors: ``Vol = sqrt(|det G| + eps)``, ``G = [⟨m_p, m_q⟩]``.

    ``vectors``: (..., k, d), normalised inside; returns shape (...). k = 2 gives |sin θ|; Vol ∈ [0, 1]; 0 iff the
    vectors are linearly dependent. Cicchetti et al., "Gramian Multimodal Representation Learning and Alignment"
    (ICLR 2025). ``eps`` > 0 keeps the sqrt gradient finite at 0.
    """
    if not isinstance(vectors, Tensor):
        raise TypeError(f"vectors must be a torch.Tensor; got {type(vectors).__name__}")
    if vectors.ndim < 2 or vectors.shape[-2] < 2:
        raise ValueError(f"vectors must have shape (..., k, d) with k >= 2; got {tuple(vectors.shape)}")
    vectors = _emb(vectors, "vectors", ndim=vectors.ndim)
    u = _unit(vectors)
    return _det_volume(u @ u.transpose(-1, -2), eps)


def gram_volume_loss(
    anchor: Tensor,
    others: Sequence[Tensor],
    temperature: float | Tensor = 0.07,
    label_smoothing: float = 0.1,
    eps: float = 1e-8,
) -> Tensor:
    """GRAM contrastive loss: ``V_ij = Vol(anchor_i, others[0]_j, …, others[k-2]_j)`` (the non-anchor modalities of
    item j share j), logits ``−V/τ``, label-smoothed CE averaged over both directions.

    The volume is ``sqrt(|det G| + eps)`` (eps inside the sqrt keeps its gradient finite when the positive
    collapses). Cicchetti et al., "Gramian Multimodal Representation Learning and Alignment" (ICLR 2025).

    Pitfall (ours): the volume cannot see the sign of a vector (flipping a row of the Gram matrix's vectors leaves
    |det G| unchanged), so heads trained from scratch by this loss alone may send a view to the antipode of its
    partners. On planted 3-view data (linear heads, 400 items) every positive ended at cosine ≈ −0.6: cosine
    retrieval fell below chance, 31 % top-1 once each view's sign was flipped back. GRAM itself starts from
    aligned pretrained encoders. Score GRAM-trained heads with the volume, or add a small pairwise term:
    ``{"gram": 1.0, "infonce": 0.1}`` fixed the sign (44 % cosine top-1 on the same data).
    """
    if isinstance(others, Tensor) or not isinstance(others, Sequence) or len(others) < 1:
        raise ValueError("others must be a non-empty list of tensors: GRAM needs at least 2 modalities (anchor + 1)")
    anchor = _emb(anchor, "anchor", min_rows=2)
    mods = []
    for p, o in enumerate(others):
        _, o = _pair(anchor, o, ("anchor", f"others[{p}]"))
        if o.shape[1] != anchor.shape[1]:
            raise ValueError(f"others[{p}] must have {anchor.shape[1]} columns like anchor; got {o.shape[1]}")
        mods.append(_unit(o.to(anchor.dtype)))
    if not isinstance(temperature, Tensor):
        temperature = _positive(temperature, "temperature")
    a = _unit(anchor)
    n, k = a.shape[0], len(mods) + 1
    stack = torch.stack(mods, dim=1)  # (N, k-1, d): item j's tuple
    cross = torch.einsum("id,jpd->ijp", a, stack)  # anchor_i · others[p]_j
    within = stack @ stack.transpose(1, 2)  # (N, k-1, k-1)
    gram = a.new_empty(n, n, k, k)
    gram[:, :, 0, 0] = 1.0
    gram[:, :, 0, 1:] = cross
    gram[:, :, 1:, 0] = cross
    gram[:, :, 1:, 1:] = within.unsqueeze(0).expand(n, -1, -1, -1)
    vol = _det_volume(gram, eps)
    return _symmetric_ce(-vol / temperature, label_smoothing=label_smoothing)


class GramVolumeLoss(nn.Module):
    """GRAM loss with a learnable log-parameterised temperature τ (init 0.07), label smoothing 0.1."""

    def __init__(self, learnable: bool = True, init_temperature: float = 0.07, label_smoothing: float = 0.1) -> None:
        super().__init__()
        init = torch.tensor(math.log(_positive(init_temperature, "init_temperature")))
        if learnable:
            self.log_temperature = nn.Parameter(init)
        else:
            self.register_buffer("log_temperature", init)
        self.label_smoothing = float(label_smoothing)

    def forward(self, anchor: Tensor, others: Sequence[Tensor]) -> Tensor:
        return gram_volume_loss(anchor, others, self.log_temperature.exp(), self.label_smoothing)


# ------------------------------------------------------------------------------------------ multi-view losses
def _views(views: Tensor) -> Tensor:
    views = _emb(views, "views", ndim=3)
    if views.shape[0] < 2:
        raise ValueError(f"views needs at least 2 items (axis 0); got shape {tuple(views.shape)}")
    if views.shape[1] < 2:
        raise ValueError(f"views needs at least 2 views (axis 1); got shape {tuple(views.shape)}")
    return _unit(views)


def mv_info_nce(views: Tensor, temperature: float = 0.1) -> Tensor:
    """Multi-view InfoNCE over ``views`` of shape (M items, N views, d), rows normalised inside.

    ``L = −(1/M)Σ_i log[Σ_{l≠m} e^{u_il·u_im/τ} / Σ_l Σ_{(j,m)≠(i,l)} e^{u_il·u_jm/τ}]`` (denominator includes the
    positives). Koromilas et al., "A Principled Framework for Multi-View Contrastive Learning" (arXiv 2507.06979).
    """
    u = _views(views)
    tau = _positive(temperature, "temperature")
    m, n, d = u.shape
    s = (u.reshape(m * n, d) @ u.reshape(m * n, d).T / tau).reshape(m, n, m, n)
    self_mask = torch.eye(m * n, dtype=torch.bool, device=u.device).reshape(m, n, m, n)
    s_all = s.masked_fill(self_mask, float("-inf"))
    denom = torch.logsumexp(s_all.reshape(m, -1), dim=1)
    own = torch.diagonal(s_all, dim1=0, dim2=2).permute(2, 0, 1)  # (M, N, N): u_il·u_im, self at -inf
    numer = torch.logsumexp(own.reshape(m, -1), dim=1)
    return (denom - numer).mean()


def mv_dhel(views: Tensor, temperature: float = 0.2) -> Tensor:
    """Multi-view DHEL over ``views`` of shape (M items, N views, d), rows normalised inside.

    ``L = (1/M)Σ_i[−log Σ_{l<m} e^{u_il·u_im/τ} + Σ_l log Σ_{j≠i} e^{u_il·u_jl/τ}]`` (uniformity within each
    view). N = 2 is DHEL. Koromilas et al., "A Principled Framework for Multi-View Contrastive Learning"
    (arXiv 2507.06979).
    """
    u = _views(views)
    tau = _positive(temperature, "temperature")
    m, n, _ = u.shape
    own = u @ u.transpose(1, 2) / tau  # (M, N, N)
    upper = torch.triu(torch.ones(n, n, dtype=torch.bool, device=u.device), diagonal=1)
    align = torch.logsumexp(own[:, upper], dim=1)  # (M,)
    per_view = torch.einsum("ild,jld->lij", u, u) / tau  # (N, M, M)
    eye = torch.eye(m, dtype=torch.bool, device=u.device)
    unif = torch.logsumexp(per_view.masked_fill(eye, float("-inf")), dim=2).sum(dim=0)  # (M,)
    return (unif - align).mean()


def triple_contrastive(views: Tensor, temperature: float = 0.03, intra_weight: float = 0.8) -> Tensor:
    """Triple contrastive loss for frozen embeddings: cross-view InfoNCE whose denominators also hold intra-view
    negatives, summed over view pairs. ``views``: (M items, N views, d), rows normalised inside.

    With ``s(il, jm) = u_il·u_jm/τ``, for each ordered pair of views l ≠ m and item i (anchor u_il, positive u_im)
    ``ℓ_{l→m}(i) = −s(il, im) + log[Σ_j e^{s(il, jm)} + Σ_{j≠i} e^{w·s(il, jl)}]`` and
    ``L = Σ_{l<m} ½[mean_i ℓ_{l→m}(i) + mean_i ℓ_{m→l}(i)]``.

    Why this form. Triple contrastive learning (TCL: Yang et al., "Vision-Language Pre-Training with Triple
    Contrastive Learning", CVPR 2022) adds to cross-modal alignment (CMA) an intra-modal contrast (IMC) between
    two augmentations of one input, and local mutual information (LMI) on patch/token features. On frozen,
    pooled embeddings LMI has no local features, and IMC has no augmentation: with the identity as the only
    one, its positive is the item itself and what is left is within-view instance discrimination, i.e. the
    other items of the same view as negatives. CrossCLR (Zolfaghari, Zhu, Gehler, Brox, "CrossCLR: Cross-modal
    Contrastive Learning For Multi-modal Video Representations", ICCV 2021), designed for frozen pre-extracted
    features, adds exactly those intra-modality negatives to the cross-modal denominator, with their logits
    scaled by ``w`` (its code: τ = 0.03, w = 0.8, our defaults; ``CrossCLR_onlyIntraModality``). Differences
    from that code: self-similarity is excluded (its zeroed diagonal adds a constant e⁰ to each denominator),
    and its pruning of "influential" samples by input similarity is left out (the loss sees only head
    outputs). For N views the two-view loss is summed over view pairs, like the pairwise InfoNCE baseline.
    Invariant to permuting the views; ``w`` = 0 still counts M − 1 intra terms of e⁰ = 1 each.
    """
    u = _views(views)
    tau = _positive(temperature, "temperature")
    w = float(intra_weight)
    if not (math.isfinite(w) and w >= 0):
        raise ValueError(f"intra_weight must be a finite number >= 0; got {intra_weight}")
    m, n, _ = u.shape
    eye = torch.eye(m, dtype=torch.bool, device=u.device)
    target = torch.arange(m, device=u.device)
    intra = [(u[:, v] @ u[:, v].T / tau * w).masked_fill(eye, float("-inf")) for v in range(n)]
    total = u.new_zeros(())
    for a in range(n):
        for b in range(a + 1, n):
            cross = u[:, a] @ u[:, b].T / tau  # anchors of view a (rows) against view b (columns)
            fwd = F.cross_entropy(torch.cat([cross, intra[a]], dim=1), target)
            bwd = F.cross_entropy(torch.cat([cross.T, intra[b]], dim=1), target)
            total = total + 0.5 * (fwd + bwd)
    return total


def intra_modal_loss(x: Tensor, x_pos: Tensor, temperature: float = 0.07) -> Tensor:
    """Intra-modal contrastive term (NT-Xent) between two views of the same items in one modality.

    Stack ``z = [x̂; x̂_pos]`` (2N rows); for each row r with positive p(r) (its other view)
    ``ℓ_r = −log e^{z_r·z_p(r)/τ} / Σ_{q≠r} e^{z_r·z_q/τ}``, averaged over the 2N rows: negatives are every other
    item in either view. ``x_pos`` is an augmentation of ``x`` or another sample of the same item in the same
    modality. Chen et al., "A Simple Framework for Contrastive Learning of Visual Representations" (ICML 2020), used
    as the intra-modal term in Yang et al., "Vision-Language Pre-Training with Triple Contrastive Learning" (CVPR
    2022; TCL adds momentum queues, omitted here).
    """
    x, x_pos = _pair(x, x_pos, ("x", "x_pos"), min_rows=2)
    if x.shape[1] != x_pos.shape[1]:
        raise ValueError(f"x and x_pos must have the same width; got {x.shape[1]} and {x_pos.shape[1]}")
    tau = _positive(temperature, "temperature")
    n = x.shape[0]
    z = _unit(torch.cat([x, x_pos], dim=0))
    s = (z @ z.T / tau).masked_fill(torch.eye(2 * n, dtype=torch.bool, device=z.device), float("-inf"))
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)
    return F.cross_entropy(s, target)


# ------------------------------------------------------------------------------------------ geodesic mixup
def geodesic_mix(a: Tensor, b: Tensor, lam: float | Tensor, eps: float = 1e-6) -> Tensor:
    """Spherical interpolation ``m_λ(a,b) = sin(λθ)/sinθ·a + sin((1−λ)θ)/sinθ·b``, θ = arccos(â·b̂), rowwise.

    λ = 1 gives â, λ = 0 gives b̂. Where sinθ < eps (a ≈ ±b) it falls back to the renormalised lerp
    ``normalise(λa + (1−λ)b)``. Oh et al., "Geodesic Multi-Modal Mixup for Robust Fine-Tuning" (NeurIPS 2023).
    """
    a, b = _pair(a, b, ("a", "b"))
    a, b = _unit(a), _unit(b)
    lam = torch.as_tensor(lam, dtype=a.dtype, device=a.device)
    if lam.ndim == 1:
        lam = lam[:, None]
    cos = (a * b).sum(dim=1, keepdim=True).clamp(-1.0, 1.0)
    # Decide the branch without gradients, and keep arccos away from ±1 there: its derivative is infinite and
    # would turn into NaN through torch.where even on the unused branch.
    safe = (1.0 - cos.detach() ** 2) > eps**2
    theta = torch.arccos(torch.where(safe, cos, torch.zeros_like(cos)))
    sin = torch.sin(theta)
    slerp = (torch.sin(lam * theta) * a + torch.sin((1 - lam) * theta) * b) / sin
    lerp = _unit(lam * a + (1 - lam) * b)
    return torch.where(safe, slerp, lerp)


def mixup_negatives_loss(
    img: Tensor,
    txt: Tensor,
    beta: float = 0.5,
    temperature: float = 0.01,
    generator: torch.Generator | None = None,
    lam: float | None = None,
) -> Tensor:
    """m²-mix hard-negative term: ``h_i = m_λ(img_i, txt_i)`` with one λ ~ Beta(β, β) per batch.

    Logits ``img·hᵀ/τ`` and ``txt·hᵀ/τ`` with the diagonal replaced by the positive ``img_i·txt_i/τ``; CE per row
    with target i, averaged over the two sides. ``generator`` makes λ reproducible; ``lam`` fixes it. Oh et al.,
    "Geodesic Multi-Modal Mixup for Robust Fine-Tuning" (NeurIPS 2023).
    """
    img, txt = _pair(img, txt, ("img", "txt"), min_rows=2)
    if img.shape[1] != txt.shape[1]:
        raise ValueError(f"img and txt must share a space; got widths {img.shape[1]} and {txt.shape[1]}")
    tau = _positive(temperature, "temperature")
    if lam is None:
        beta = _positive(beta, "beta")
        seed = int(torch.randint(0, 2**62, (1,), generator=generator).item())
        lam = float(np.random.default_rng(seed).beta(beta, beta))
    elif not 0.0 <= float(lam) <= 1.0:
        raise ValueError(f"lam must lie in [0, 1]; got {lam}")
    i, t = _unit(img), _unit(txt)
    h = geodesic_mix(i, t, lam)
    pos = (i * t).sum(dim=1)
    eye = torch.eye(i.shape[0], dtype=torch.bool, device=i.device)
    target = torch.arange(i.shape[0], device=i.device)
    losses = []
    for side in (i, t):
        logits = torch.where(eye, torch.diag_embed(pos), side @ h.T) / tau
        losses.append(F.cross_entropy(logits, target))
    return 0.5 * (losses[0] + losses[1])


# ---------------------------------------------------------------------------------- alignment and uniformity
def alignment_loss(x: Tensor, y: Tensor, alpha: float = 2.0, normalize: bool = True) -> Tensor:
    """``L_align = mean_i ‖x_i − y_i‖₂^α`` over positive pairs (α = 2), on unit vectors when ``normalize``.

    Wang & Isola, "Understanding Contrastive Representation Learning through Alignment and Uniformity on the
    Hypersphere" (ICML 2020).
    """
    x, y = _pair(x, y, ("x", "y"))
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"x and y must share a space; got widths {x.shape[1]} and {y.shape[1]}")
    alpha = _positive(alpha, "alpha")
    if normalize:
        x, y = _unit(x), _unit(y)
    sq = ((x - y) ** 2).sum(dim=1)
    # ‖·‖^α through the squared norm avoids the infinite sqrt gradient at identical pairs when α = 2.
    return (sq if alpha == 2.0 else sq.clamp_min(1e-30) ** (alpha / 2)).mean()


def uniformity_loss(x: Tensor, t: float = 2.0, chunk_size: int = 1024) -> Tensor:
    """``L_unif = log mean_{i<j} exp(−t‖x̂_i − x̂_j‖²)`` with ‖x̂_i−x̂_j‖² = 2 − 2x̂_i·x̂_j; chunked logsumexp, O(n²d).

    Range [−4t, 0]; 0 iff all rows coincide; rotation invariant. Wang & Isola, "Understanding Contrastive
    Representation Learning through Alignment and Uniformity on the Hypersphere" (ICML 2020).
    """
    x = _unit(_emb(x, "x", min_rows=2))
    t = _positive(t, "t")
    n = x.shape[0]
    cols = torch.arange(n, device=x.device)
    parts = []
    for start in range(0, n - 1, chunk_size):
        block = x[start : start + chunk_size]
        rows = torch.arange(start, start + block.shape[0], device=x.device)
        val = -t * (2.0 - 2.0 * (block @ x.T))
        parts.append(torch.logsumexp(val.masked_fill(cols[None, :] <= rows[:, None], float("-inf")).flatten(), 0))
    return torch.logsumexp(torch.stack(parts), 0) - math.log(n * (n - 1) / 2)


def calibrated_uniformity(x: Tensor, s: Tensor, t: float = 2.0, min_sim: float = -1.0, max_sim: float = 1.0) -> Tensor:
    """CM³ calibrated uniformity: ``L_cu = log mean_{i<j} exp(−t(‖x̂_i − x̂_j‖² − 2 + 2s_ij))``.

    ``s`` is the (N×N) matrix of item similarities (e.g. cosines of fused item features), clamped to
    [min_sim, max_sim]; for unit x this is ``log mean exp(−2t(s_ij − x̂_i·x̂_j))``, so s = x̂x̂ᵀ gives 0. Similar
    pairs are repelled less. Zhou, Wang, Shen, "CM³: Calibrating Multimodal Recommendation" (arXiv 2508.01226).
    """
    x = _unit(_emb(x, "x", min_rows=2))
    n = x.shape[0]
    s = _emb(s, "s")
    if tuple(s.shape) != (n, n):
        raise ValueError(f"s must be the {n}x{n} similarity matrix of the rows of x; got shape {tuple(s.shape)}")
    t = _positive(t, "t")
    if min_sim > max_sim:
        raise ValueError(f"min_sim must be <= max_sim; got {min_sim} > {max_sim}")
    s = s.to(device=x.device, dtype=x.dtype).clamp(min_sim, max_sim)
    iu = torch.triu_indices(n, n, offset=1, device=x.device)
    val = -t * (2.0 - 2.0 * (x @ x.T) - 2.0 + 2.0 * s)[iu[0], iu[1]]
    return torch.logsumexp(val, 0) - math.log(val.numel())


# ------------------------------------------------------------------------------------------------ combining
LossTerm = nn.Module | Callable[..., Tensor]


class CombinedLoss(nn.Module):
    """Weighted sum of loss terms: ``total = Σ_name w_name · term_name(*args, **kwargs)``.

    ``terms`` maps a name to ``(module_or_fn, weight)``; every term receives the same call arguments (wrap a term
    in a lambda or ``functools.partial`` to route inputs). Module terms are registered, so their parameters
    (temperatures, logit scales) appear in ``parameters()``. ``forward`` returns ``(total, parts)`` where
    ``parts`` holds each term's unweighted value and ``"total"`` as floats, for logging. ``set_weight`` changes a
    weight (e.g. ``structure_lambda(step)``).
    """

    def __init__(self, terms: dict[str, tuple[LossTerm, float]]) -> None:
        super().__init__()
        if not isinstance(terms, dict) or not terms:
            raise ValueError("terms must be a non-empty dict {name: (module_or_fn, weight)}")
        self.modules_ = nn.ModuleDict()
        self._fns: dict[str, Callable[..., Tensor]] = {}
        self.weights: dict[str, float] = {}
        for name, spec in terms.items():
            if name == "total":
                raise ValueError("terms may not use the reserved name 'total'")
            if not (isinstance(spec, tuple) and len(spec) == 2 and callable(spec[0])):
                raise ValueError(f"terms[{name!r}] must be a (module_or_fn, weight) pair; got {spec!r}")
            term, weight = spec
            if isinstance(term, nn.Module):
                self.modules_[name] = term
            else:
                self._fns[name] = term
            self.set_weight(name, weight)
        self._order = list(terms)

    def set_weight(self, name: str, weight: float) -> None:
        weight = float(weight)
        if not math.isfinite(weight):
            raise ValueError(f"weight for {name!r} must be finite; got {weight}")
        self.weights[name] = weight

    @property
    def accepts_mask(self) -> bool:
        """Every term takes a ``mask=`` of present views (the trainer's missing-views protocol)."""
        return all(getattr(self._term(name), "accepts_mask", False) for name in self._order)

    @torch.no_grad()
    def clamp_(self) -> CombinedLoss:
        """Call ``clamp_()`` on every term that has one (SigLIP's scale clamp after an optimiser step)."""
        for name in self._order:
            term = self._term(name)
            if hasattr(term, "clamp_"):
                term.clamp_()  # type: ignore[operator]
        return self

    def _term(self, name: str) -> LossTerm:
        return self.modules_[name] if name in self.modules_ else self._fns[name]

    def forward(self, *args, **kwargs) -> tuple[Tensor, dict[str, float]]:
        total: Tensor | None = None
        parts: dict[str, float] = {}
        for name in self._order:
            value = self._term(name)(*args, **kwargs)
            parts[name] = float(value.detach())
            weighted = self.weights[name] * value
            total = weighted if total is None else total + weighted
        assert total is not None
        parts["total"] = float(total.detach())
        return total, parts
