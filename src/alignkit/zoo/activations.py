"""Activations, logits and accuracy of zoo networks (inference only: the model must be in eval mode).

A representation layer is the output of a hidden ReLU (``fc<k>`` / ``conv<k>``) or the logits (see
:func:`alignkit.zoo.layer_names`). Conv maps are averaged over space by default (``pooling="mean"``: ``(n, C)``),
or kept whole (``pooling="flatten"``: ``(n, C·H·W)``, channel-major as ``torch.flatten``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from alignkit.zoo.architectures import representation_points

POOLINGS = ("mean", "flatten")


def check_eval(model: nn.Module) -> None:
    """ValueError unless ``model`` (and every submodule) is in eval mode."""
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be a torch nn.Module; got {type(model).__name__}")
    if any(m.training for m in model.modules()):
        raise ValueError(
            "model is in train mode; call model.eval() first (in train mode BatchNorm normalises by the batch's "
            "statistics and updates its running averages, so activations would depend on the batch)"
        )


def check_images(model: nn.Sequential, images: Any) -> torch.Tensor:
    """``images`` as a float32 tensor ``(n, C, H, W)`` that fits the model's first layer; ValueError otherwise."""
    if isinstance(images, np.ndarray):
        images = torch.from_numpy(images)
    if not isinstance(images, torch.Tensor):
        raise ValueError(f"images must be a tensor or array (n, C, H, W); got {type(images).__name__}")
    if not images.is_floating_point():
        raise ValueError(
            f"images must be float (normalised) pixels; got {images.dtype} (uint8 images: alignkit.zoo.normalise)"
        )
    if images.ndim != 4:
        raise ValueError(f"images must be 4-D (n, C, H, W); got shape {tuple(images.shape)}")
    first = next((m for m in model if isinstance(m, (nn.Linear, nn.Conv2d))), None)
    if isinstance(first, nn.Conv2d) and images.shape[1] != first.in_channels:
        raise ValueError(
            f"images have {images.shape[1]} channel(s) (shape {tuple(images.shape)}); the network's first conv "
            f"expects {first.in_channels}"
        )
    if isinstance(first, nn.Linear) and int(np.prod(images.shape[1:])) != first.in_features:
        raise ValueError(
            f"images of shape {tuple(images.shape[1:])} hold {int(np.prod(images.shape[1:]))} values each; the "
            f"network's first Linear expects {first.in_features}"
        )
    return images.to(torch.float32)


def _check_batch_size(batch_size: Any) -> int:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer; got {batch_size!r}")
    return batch_size


def pool(t: torch.Tensor, pooling: str) -> torch.Tensor:
    """A layer output as ``(n, d)``: conv maps ``(n, C, H, W)`` averaged over space or flattened."""
    if t.ndim == 2:
        return t
    return t.mean(dim=(2, 3)) if pooling == "mean" else t.flatten(1)


def forward_layers(
    model: nn.Sequential, x: torch.Tensor, wanted: Sequence[str], pooling: str
) -> dict[str, torch.Tensor]:
    """One forward pass of a batch, stopping after the last wanted layer: ``{layer: (B, d)}``."""
    points = representation_points(model)
    at = {points[name]: name for name in wanted}
    out: dict[str, torch.Tensor] = {}
    last = max(at, default=-1)
    for i, module in enumerate(model):
        if i > last:
            break
        x = module(x)
        if i in at:
            out[at[i]] = pool(x, pooling)
    return out


def _batched(
    model: nn.Sequential, images: Any, batch_size: int, run: Callable[[torch.Tensor], dict[str, torch.Tensor]]
) -> dict[str, torch.Tensor]:
    check_eval(model)
    x = check_images(model, images)
    bs = _check_batch_size(batch_size)
    chunks: dict[str, list[torch.Tensor]] = {}
    with torch.inference_mode():
        for start in range(0, len(x), bs):
            for name, t in run(x[start : start + bs]).items():
                chunks.setdefault(name, []).append(t.float())
    return {name: torch.cat(c) for name, c in chunks.items()}


def activations(
    model: nn.Sequential,
    images: Any,
    layers: Sequence[str] | None = None,
    batch_size: int = 512,
    pooling: str = "mean",
) -> dict[str, np.ndarray]:
    """``{layer: float32 (n, d)}`` for the representation ``layers`` (None = all) of ``images`` (float
    ``(n, C, H, W)``, normalised as in training). The model must be in eval mode."""
    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {list(POOLINGS)}; got {pooling!r}")
    names = list(representation_points(model))
    if layers is None:
        wanted = names
    else:
        if isinstance(layers, str):
            layers = [layers]
        bad = [name for name in layers if name not in names]
        if bad:
            raise ValueError(f"layers {bad} are not layers of this network; its layers are {names}")
        wanted = [name for name in names if name in set(layers)]
    if len(images) == 0:
        raise ValueError("images is empty")
    out = _batched(model, images, batch_size, lambda b: forward_layers(model, b, wanted, pooling))
    return {name: out[name].numpy() for name in wanted}


def predict(model: nn.Sequential, images: Any, batch_size: int = 512) -> torch.Tensor:
    """Logits ``(n, classes)`` (float32 tensor) of ``images``; the model must be in eval mode."""
    if len(images) == 0:
        raise ValueError("images is empty")
    return _batched(model, images, batch_size, lambda b: {"logits": model(b)})["logits"]


def evaluate(model: nn.Sequential, images: Any, labels: Any, batch_size: int = 512) -> dict[str, float]:
    """``{"loss": mean cross-entropy, "accuracy": fraction correct}`` of ``model`` (eval mode) on a labelled set."""
    y = torch.as_tensor(np.asarray(labels) if not isinstance(labels, torch.Tensor) else labels)
    if y.ndim != 1 or y.dtype.is_floating_point or len(y) != len(images):
        raise ValueError(f"labels must be {len(images)} integer class indices; got {y.dtype} shape {tuple(y.shape)}")
    logits = predict(model, images, batch_size)
    y = y.long()
    if int(y.min()) < 0 or int(y.max()) >= logits.shape[1]:
        raise ValueError(f"labels must lie in [0, {logits.shape[1]}); got [{int(y.min())}, {int(y.max())}]")
    return {
        "loss": float(F.cross_entropy(logits, y)),
        "accuracy": float((logits.argmax(dim=1) == y).double().mean()),
    }


def layer_dims(model: nn.Sequential, input_shape: Sequence[int], pooling: str = "mean") -> dict[str, int]:
    """Width of each representation layer for inputs of ``input_shape`` ([C, H, W]) under ``pooling``."""
    was = [m.training for m in model.modules()]
    model.eval()
    try:
        with torch.inference_mode():
            probe = torch.zeros(1, *input_shape)
            out = forward_layers(model, probe, list(representation_points(model)), pooling)
    finally:
        for m, t in zip(model.modules(), was, strict=True):
            m.training = t
    return {name: int(t.shape[1]) for name, t in out.items()}
