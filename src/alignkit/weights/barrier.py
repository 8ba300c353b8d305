"""Loss and accuracy along the linear path between two networks, its barrier, and the BatchNorm reset.

**Path.** ``θ(λ) = θ_A + λ(θ_B − θ_A)`` for every floating state-dict tensor (running statistics included;
integer buffers such as ``num_batches_tracked`` are taken from A), λ on ``steps`` evenly spaced points of [0, 1].

**Barrier** (Frankle et al. 2020; Ainsworth et al. 2023, Sec. 2): ``max_λ [L(θ(λ)) − ((1 − λ)L(θ_A) + λL(θ_B))]``,
on the evaluated λ grid, for the mean cross-entropy and for the error rate (1 − accuracy); 0 at the endpoints,
so never negative. A barrier near 0 means the two networks are linearly mode-connected.

**BatchNorm reset.** Interpolating two networks' weights shrinks the variance of the hidden activations, and the
interpolated running statistics no longer match them ("variance collapse"; Jordan et al., "REPAIR: REnormalizing
Permuted Activations for Interpolation Repair", ICLR 2023, whose simplest fix for BatchNorm networks is to
re-estimate the statistics at each point). With ``reset_bn=True`` every point of the path, endpoints included,
gets statistics re-estimated on ``bn_data`` by :func:`reset_bn_stats`: each BatchNorm's running mean and variance
become the mean and (unbiased) variance of its eval-mode input over ``bn_data``, layer by layer with the layers
before it already reset — exactly the statistics the eval-mode network sees, independent of batching (REPAIR's
code runs the network in train mode with ``momentum=None``, which averages per-batch statistics instead and
normalises upstream layers with batch statistics: the same up to batch effects). Networks without BatchNorm are
evaluated as they are; ``BarrierResult.bn_reset`` says which was done.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from alignkit.weights._checks import (
    as_inputs,
    as_labeled,
    check_forward,
    check_pair,
    check_positive_int,
    device_of,
)
from alignkit.weights.spec import BATCHNORMS


def has_batchnorm(model: nn.Module) -> bool:
    return any(isinstance(m, BATCHNORMS) for m in model.modules())


def interpolate(model_a: nn.Module, model_b: nn.Module, lam: float) -> nn.Module:
    """A copy of ``model_a`` with ``θ_A + λ(θ_B − θ_A)`` in every floating tensor (λ = 0 gives θ_A bit for bit)."""
    sd_a, sd_b = model_a.state_dict(), model_b.state_dict()
    out = copy.deepcopy(model_a)
    out.load_state_dict(
        {k: (v + lam * (sd_b[k] - v) if lam else v.clone()) if v.is_floating_point() else v for k, v in sd_a.items()}
    )
    return out


def average(models: list[nn.Module]) -> nn.Module:
    """A copy of ``models[0]`` holding the mean of every floating state-dict tensor (integer buffers from models[0])."""
    states = [m.state_dict() for m in models]
    out = copy.deepcopy(models[0])
    out.load_state_dict(
        {k: torch.stack([s[k] for s in states]).mean(0) if v.is_floating_point() else v for k, v in states[0].items()}
    )
    return out


def reset_bn_stats(model: nn.Module, data: Any, *, batch_size: int = 500) -> nn.Module:
    """A copy of ``model`` whose BatchNorm running statistics are re-estimated on ``data`` (inputs, or an
    (inputs, labels) pair), layer by layer (see the module docstring); returned in eval mode. Without BatchNorm
    layers the copy is unchanged."""
    batch_size = check_positive_int(batch_size, "batch_size")
    x = as_inputs(data, "bn_data")
    out = copy.deepcopy(model).eval()
    bns = [m for m in out.modules() if isinstance(m, _BatchNorm)]
    for bn in bns:
        if not bn.track_running_stats or bn.running_mean is None or bn.running_var is None:
            continue  # normalises with batch statistics even in eval mode: nothing to estimate
        mean, var = _input_moments(out, bn, x, batch_size)
        bn.running_mean.copy_(mean.to(bn.running_mean.dtype))
        bn.running_var.copy_(var.to(bn.running_var.dtype))
    return out


class _Stop(Exception):
    pass


def _input_moments(
    model: nn.Module, bn: nn.Module, x: torch.Tensor, batch_size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and unbiased variance of ``bn``'s input over ``x`` (float64, shifted sums)."""
    acc: dict[str, Any] = {}

    def hook(_m: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        h = inputs[0].detach().double().cpu()
        rows = h.movedim(1, -1).reshape(-1, h.shape[1])
        if "shift" not in acc:
            acc.update(shift=rows.mean(0), n=0, s=0.0, ss=0.0)
        d = rows - acc["shift"]
        acc["n"] += rows.shape[0]
        acc["s"] = acc["s"] + d.sum(0)
        acc["ss"] = acc["ss"] + (d * d).sum(0)
        raise _Stop  # nothing after this layer is needed

    handle = bn.register_forward_pre_hook(hook)
    device = device_of(model)
    try:
        with torch.no_grad():
            for s in range(0, x.shape[0], batch_size):
                try:
                    model(x[s : s + batch_size].to(device))
                except _Stop:
                    pass
    finally:
        handle.remove()
    n = acc["n"]
    dm = acc["s"] / n
    var = (acc["ss"] - n * dm * dm) / max(n - 1, 1)
    return acc["shift"] + dm, var.clamp_min(0)


def evaluate(model: nn.Module, x: Any, y: Any, *, batch_size: int = 500) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of ``model`` (as it is: call ``.eval()`` first) on inputs x, labels y."""
    x, y = as_labeled((x, y))
    batch_size = check_positive_int(batch_size, "batch_size")
    total, correct = 0.0, 0
    device = device_of(model)
    with torch.no_grad():
        for s in range(0, x.shape[0], batch_size):
            logits = model(x[s : s + batch_size].to(device)).double().cpu()
            yb = y[s : s + batch_size]
            total += float(torch.nn.functional.cross_entropy(logits, yb, reduction="sum"))
            correct += int((logits.argmax(1) == yb).sum())
    return total / x.shape[0], correct / x.shape[0]


@dataclass
class BarrierResult:
    """Loss and accuracy along the path (``lambdas``, ``loss``, ``accuracy``), the barrier heights and what was
    done to BatchNorm statistics (``bn_reset``: "reset" / "interpolated" / "none (no BatchNorm)")."""

    lambdas: np.ndarray
    loss: np.ndarray
    accuracy: np.ndarray
    loss_barrier: float
    accuracy_barrier: float  # in error rate: max_λ [err(λ) − linear interpolation of the endpoint errors]
    bn_reset: str
    bn_detail: str = ""
    n: int = 0  # evaluation items

    def to_rows(self) -> list[dict[str, Any]]:
        """One row per λ: loss, accuracy, and their gaps to the straight line between the endpoints."""
        lin_loss = (1 - self.lambdas) * self.loss[0] + self.lambdas * self.loss[-1]
        lin_acc = (1 - self.lambdas) * self.accuracy[0] + self.lambdas * self.accuracy[-1]
        return [
            {
                "lambda": float(lam),
                "loss": float(self.loss[i]),
                "accuracy": float(self.accuracy[i]),
                "loss_gap": float(self.loss[i] - lin_loss[i]),
                "error_gap": float(lin_acc[i] - self.accuracy[i]),
                "bn_reset": self.bn_reset,
            }
            for i, lam in enumerate(self.lambdas)
        ]

    def to_pandas(self) -> Any:
        import pandas as pd

        return pd.DataFrame(self.to_rows())

    def plot(self, ax: Any = None, label: str | None = None, what: str = "loss") -> Any:
        """Loss (or ``what="accuracy"``) against λ, the straight line between the endpoints dashed. Returns the
        Figure (a new one unless ``ax`` is given)."""
        if what not in ("loss", "accuracy"):
            raise ValueError(f"what must be 'loss' or 'accuracy'; got {what!r}")
        if ax is None:
            from matplotlib.figure import Figure

            fig = Figure(figsize=(5, 3.4), layout="constrained")
            ax = fig.add_subplot()
        else:
            fig = ax.figure
        y = self.loss if what == "loss" else self.accuracy
        (line,) = ax.plot(self.lambdas, y, marker="o", ms=3, label=label or f"BN {self.bn_reset}")
        ax.plot([0, 1], [y[0], y[-1]], ls="--", color=line.get_color(), lw=0.8)
        ax.set_xlabel("λ (0 = model a, 1 = model b)")
        ax.set_ylabel("cross-entropy" if what == "loss" else "accuracy")
        ax.legend(frameon=False)
        return fig


def interpolation_barrier(
    model_a: nn.Module,
    model_b: nn.Module,
    data: Any,
    steps: int = 11,
    reset_bn: bool = True,
    bn_data: Any = None,
    *,
    batch_size: int = 500,
) -> BarrierResult:
    """Loss (mean cross-entropy) and accuracy on ``data`` = (inputs, labels) at ``steps`` points of the linear path
    from ``model_a`` to ``model_b`` (align b first with :func:`alignkit.weights.match`), and the barrier heights.

    For networks with BatchNorm, ``reset_bn=True`` re-estimates the running statistics at every point on
    ``bn_data`` (default: the inputs of ``data``; pass training inputs to keep evaluation data out of it);
    ``reset_bn=False`` interpolates them like every other tensor. Both models must be in eval mode and share
    one architecture.
    """
    steps = check_positive_int(steps, "steps", minimum=2)
    if not isinstance(reset_bn, bool):
        raise TypeError(f"reset_bn must be True or False; got {reset_bn!r}")
    check_pair(model_a, model_b)
    x, y = as_labeled(data)
    out = check_forward(model_a, x, "model_a")
    if out.dim() != 2 or int(y.max()) >= out.shape[1]:
        raise ValueError(
            f"data labels go up to {int(y.max())} but model_a gives {list(out.shape[1:])} outputs per input; "
            "the barrier needs class logits (N, classes)"
        )
    bn = has_batchnorm(model_a)
    if bn and reset_bn:
        xb = as_inputs(bn_data, "bn_data") if bn_data is not None else x
        check_forward(model_a, xb, "model_a", "bn_data")
        status = "reset"
        detail = f"running statistics re-estimated at each λ on {xb.shape[0]} " + (
            "inputs of data (the evaluation data)" if bn_data is None else "inputs of bn_data"
        )
    else:
        xb = None
        status = "interpolated" if bn else "none (no BatchNorm)"
        detail = (
            "running statistics interpolated with the weights (no reset)"
            if bn
            else "the networks have no BatchNorm layers: nothing to reset"
        )
    lambdas = np.linspace(0.0, 1.0, steps)
    loss = np.empty(steps)
    acc = np.empty(steps)
    for i, lam in enumerate(lambdas):
        m = interpolate(model_a, model_b, float(lam))
        if xb is not None:
            m = reset_bn_stats(m, xb, batch_size=batch_size)
        loss[i], acc[i] = evaluate(m, x, y, batch_size=batch_size)
    lin_loss = (1 - lambdas) * loss[0] + lambdas * loss[-1]
    err = 1 - acc
    lin_err = (1 - lambdas) * err[0] + lambdas * err[-1]
    return BarrierResult(
        lambdas=lambdas,
        loss=loss,
        accuracy=acc,
        loss_barrier=float(np.max(loss - lin_loss)),
        accuracy_barrier=float(np.max(err - lin_err)),
        bn_reset=status,
        bn_detail=detail,
        n=int(x.shape[0]),
    )
