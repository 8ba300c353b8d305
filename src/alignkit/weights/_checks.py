"""Input checks shared by matching, barriers, merging and the diagnostics: clear errors that name the argument."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from alignkit.weights.spec import PermutationSpec, permutation_spec


def check_model(model: Any, name: str, *, eval_mode: bool = True) -> nn.Module:
    """A torch module in eval mode (matching and barriers compare the eval-mode function: running statistics
    for BatchNorm, no dropout)."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"{name} must be a torch.nn.Module; got {type(model).__name__}")
    if eval_mode:
        training = [n or "(root)" for n, m in model.named_modules() if m.training]
        if training:
            raise ValueError(
                f"{name} is in training mode (module {training[0]!r}); call {name}.eval() first: weight-space "
                "alignment compares the eval-mode function (BatchNorm running statistics, no dropout)"
            )
    for key, t in model.state_dict().items():
        if t.is_floating_point() and not torch.isfinite(t).all():
            raise ValueError(f"{name} has non-finite values in {key!r}")
    return model


def check_pair(
    model_a: Any, model_b: Any, names: tuple[str, str] = ("model_a", "model_b"), *, eval_mode: bool = True
) -> PermutationSpec:
    """Both models checked, with the same architecture (module types and state-dict shapes); returns the spec."""
    check_model(model_a, names[0], eval_mode=eval_mode)
    check_model(model_b, names[1], eval_mode=eval_mode)
    spec = permutation_spec(model_a, name=names[0])
    check_same_architecture(spec, model_b, names)
    return spec


def check_same_architecture(
    spec: PermutationSpec, model: nn.Module, names: tuple[str, str] = ("model_a", "model_b")
) -> None:
    """``model`` has the architecture of the model ``spec`` was derived from: the same module types in order and
    the same state-dict keys, shapes and dtypes; the error names both arguments and the first difference."""
    spec_b = permutation_spec(model, name=names[1])
    types_a = [type(m).__name__ for _, m in spec.modules]
    types_b = [type(m).__name__ for _, m in spec_b.modules]
    if types_a != types_b:
        i = next(
            (j for j, (a, b) in enumerate(zip(types_a, types_b, strict=False)) if a != b),
            min(len(types_a), len(types_b)),
        )
        ta = types_a[i] if i < len(types_a) else "nothing"
        tb = types_b[i] if i < len(types_b) else "nothing"
        raise ValueError(
            f"{names[0]} and {names[1]} have different architectures: module {i} is {ta} in {names[0]} and {tb} "
            f"in {names[1]} ({len(types_a)} vs {len(types_b)} modules)"
        )
    sa, sb = _state(spec.modules), _state(spec_b.modules)  # the models' state dicts, rebuilt from their modules
    if list(sa) != list(sb):
        extra = sorted(set(sa) ^ set(sb))
        raise ValueError(f"{names[0]} and {names[1]} have different state-dict keys (e.g. {extra[:3]})")
    for key in sa:
        if sa[key].shape != sb[key].shape:
            raise ValueError(
                f"{names[0]} and {names[1]} differ in shape at {key!r}: {list(sa[key].shape)} vs {list(sb[key].shape)}"
            )
        if sa[key].dtype != sb[key].dtype:
            raise ValueError(
                f"{names[0]} and {names[1]} differ in dtype at {key!r}: {sa[key].dtype} vs {sb[key].dtype}"
            )


def _state(modules: Sequence[tuple[str, nn.Module]]) -> dict[str, torch.Tensor]:
    out = {}
    for qual, m in modules:
        for k, v in m.state_dict().items():
            out[f"{qual}.{k}"] = v
    return out


def as_inputs(data: Any, name: str = "data") -> torch.Tensor:
    """Model inputs: a floating tensor / array (N, ...) with N ≥ 1, or the first element of an (inputs, labels) pair."""
    if isinstance(data, (tuple, list)):
        if len(data) != 2:
            raise ValueError(f"{name} must be an inputs tensor or an (inputs, labels) pair; got {len(data)} items")
        data = data[0]
    x = _as_tensor(data, f"{name} inputs")
    if not x.is_floating_point():
        raise ValueError(
            f"{name} inputs must be floating point (the values the model takes, e.g. images.float() / 255); "
            f"got {x.dtype}"
        )
    if x.dim() < 2 or x.shape[0] == 0:
        raise ValueError(f"{name} inputs must be a batch (N, ...) with N ≥ 1; got shape {list(x.shape)}")
    if not torch.isfinite(x).all():
        raise ValueError(f"{name} inputs contain NaN or Inf")
    return x


def as_labeled(data: Any, name: str = "data") -> tuple[torch.Tensor, torch.Tensor]:
    """An (inputs, labels) pair: inputs as in :func:`as_inputs`, labels one integer class per row."""
    if not isinstance(data, (tuple, list)) or len(data) != 2:
        raise ValueError(f"{name} must be an (inputs, labels) pair of tensors; got {type(data).__name__}")
    x = as_inputs(data, name)
    y = _as_tensor(data[1], f"{name} labels")
    if y.dim() != 1 or y.shape[0] != x.shape[0]:
        raise ValueError(
            f"{name} labels must be 1-D with one label per input ({x.shape[0]}); got shape {list(y.shape)}"
        )
    if y.is_floating_point() or y.dtype == torch.bool:
        raise ValueError(f"{name} labels must be integer class indices; got {y.dtype}")
    if int(y.min()) < 0:
        raise ValueError(f"{name} labels must be class indices ≥ 0; got {int(y.min())}")
    return x, y.long()


def _as_tensor(value: Any, name: str) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value.detach()
    if isinstance(value, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(value))
    raise TypeError(f"{name} must be a torch tensor or numpy array; got {type(value).__name__}")


def device_of(model: nn.Module) -> torch.device:
    """Where the model's tensors live (inputs are moved there batch by batch)."""
    t = next(itertools.chain(model.parameters(), model.buffers()), None)
    return t.device if t is not None else torch.device("cpu")


def check_forward(model: nn.Module, x: torch.Tensor, name: str, data_name: str = "data") -> torch.Tensor:
    """Run ``model`` on the first two rows of ``x`` to check the shape; the error names the data argument."""
    try:
        with torch.no_grad():
            return model(x[:2].to(device_of(model))).cpu()
    except RuntimeError as exc:
        raise ValueError(
            f"{data_name} inputs of shape {list(x.shape)} do not fit {name}: {str(exc).splitlines()[0]}"
        ) from None


def check_positive_int(value: Any, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer ≥ {minimum}; got {value!r}")
    return int(value)
