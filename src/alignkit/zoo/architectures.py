"""The zoo's two architectures, built from a JSON-able spec as flat ``nn.Sequential`` stacks of standard modules.

- ``{"arch": "mlp", "widths": [512, 512, 512]}``: Flatten, then Linear → ReLU per hidden width, then Linear → logits.
- ``{"arch": "cnn", "channels": [16, 16, 32, 32, 64, 64]}``: per block Conv2d(3×3, padding 1, no bias) →
  BatchNorm2d → ReLU, a MaxPool2d(2) after every 2nd block, then AdaptiveAvgPool2d(1) → Flatten → Linear → logits.

Optional keys: ``input_shape`` ([C, H, W], default [1, 28, 28]: Fashion-MNIST) and ``num_classes`` (default 10).
The stacks are flat and use only Linear / Conv2d / BatchNorm2d / ReLU / MaxPool2d / AdaptiveAvgPool2d / Flatten, so
that the permutation symmetries of the hidden units can be read off the module list (Git Re-Basin, Ainsworth et al.,
ICLR 2023). Modules are named (``fc1``, ``relu1``, …, ``conv1``, ``bn1``, ``pool2``, …, ``logits``), so checkpoint
tensors read ``fc2.weight``, ``bn3.running_mean``.

The representation layers (:func:`layer_names`) are the output of each hidden ReLU, named after the Linear or Conv2d
that feeds it (``fc1``…``fc3``, ``conv1``…``conv6``), plus ``logits``.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import Any

import torch
from torch import nn

ARCHITECTURES = ("mlp", "cnn")
DEFAULT_INPUT_SHAPE = (1, 28, 28)
DEFAULT_NUM_CLASSES = 10
#: default hidden widths: the MLP of Git Re-Basin's MNIST experiments; a CNN that trains in ~2 min on 2 CPU cores
DEFAULT_WIDTHS = {"mlp": (512, 512, 512), "cnn": (16, 16, 32, 32, 64, 64)}
_WIDTH_KEY = {"mlp": "widths", "cnn": "channels"}
#: modules a zoo network (and anything built to look like one) may hold
SUPPORTED_MODULES = (nn.Linear, nn.Conv2d, nn.BatchNorm2d, nn.ReLU, nn.MaxPool2d, nn.AdaptiveAvgPool2d, nn.Flatten)


def _positive_int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{what} must be a positive integer; got {value!r}")
    return int(value)


def check_spec(spec: Any) -> dict[str, Any]:
    """``spec`` validated, with its defaults filled in (a new dict, JSON-able; what checkpoints record).

    Raises ValueError naming the offending key: unknown arch or keys, widths that are not positive integers, a CNN
    so deep that its max-pools shrink the image below one pixel.
    """
    if not isinstance(spec, dict):
        raise ValueError(f"spec must be a dict such as {{'arch': 'mlp', 'widths': [512, 512, 512]}}; got {spec!r}")
    arch = spec.get("arch")
    if arch not in ARCHITECTURES:
        raise ValueError(f"spec['arch'] must be one of {list(ARCHITECTURES)}; got {arch!r}")
    key = _WIDTH_KEY[arch]
    allowed = {"arch", key, "input_shape", "num_classes"}
    unknown = sorted(set(spec) - allowed)
    if unknown:
        raise ValueError(f"spec for arch {arch!r} has unknown key(s) {unknown}; allowed: {sorted(allowed)}")
    widths = spec.get(key, list(DEFAULT_WIDTHS[arch]))
    if isinstance(widths, (str, bytes)) or not isinstance(widths, (list, tuple)) or not widths:
        raise ValueError(f"spec[{key!r}] must be a non-empty list of positive integers; got {widths!r}")
    widths = [_positive_int(w, f"spec[{key!r}][{i}]") for i, w in enumerate(widths)]
    shape = spec.get("input_shape", list(DEFAULT_INPUT_SHAPE))
    if not isinstance(shape, (list, tuple)) or len(shape) != 3:
        raise ValueError(f"spec['input_shape'] must be [channels, height, width]; got {shape!r}")
    shape = [_positive_int(s, f"spec['input_shape'][{i}]") for i, s in enumerate(shape)]
    num_classes = _positive_int(spec.get("num_classes", DEFAULT_NUM_CLASSES), "spec['num_classes']")
    if num_classes < 2:
        raise ValueError(f"spec['num_classes'] must be at least 2; got {num_classes}")
    if arch == "cnn":
        pools = len(widths) // 2
        if min(shape[1:]) >> pools < 1:
            raise ValueError(
                f"spec['channels'] has {len(widths)} conv layers: their {pools} max-pools (one per 2 layers) shrink "
                f"a {shape[1]}×{shape[2]} input below one pixel; use at most {2 * int(math.log2(min(shape[1:]))) + 1}"
            )
    return {"arch": arch, key: widths, "input_shape": shape, "num_classes": num_classes}


def default_spec(arch: str, width_scale: float = 1.0) -> dict[str, Any]:
    """The default spec of ``arch`` ("mlp": 3 × 512; "cnn": 16, 16, 32, 32, 64, 64 channels), every width times
    ``width_scale`` (rounded, at least 1)."""
    if arch not in ARCHITECTURES:
        raise ValueError(f"arch must be one of {list(ARCHITECTURES)}; got {arch!r}")
    if isinstance(width_scale, bool) or not isinstance(width_scale, (int, float)) or not width_scale > 0:
        raise ValueError(f"width_scale must be a positive number; got {width_scale!r}")
    widths = [max(1, round(w * width_scale)) for w in DEFAULT_WIDTHS[arch]]
    return check_spec({"arch": arch, _WIDTH_KEY[arch]: widths})


def spec_name(spec: dict[str, Any]) -> str:
    """A short file-name-safe tag of a spec: ``mlp-512x512x512``, ``cnn-16x16x32x32x64x64`` (input shape and
    classes appended when not the defaults)."""
    s = check_spec(spec)
    tag = f"{s['arch']}-" + "x".join(str(w) for w in s[_WIDTH_KEY[s["arch"]]])
    if tuple(s["input_shape"]) != DEFAULT_INPUT_SHAPE:
        tag += "-in" + "x".join(str(v) for v in s["input_shape"])
    if s["num_classes"] != DEFAULT_NUM_CLASSES:
        tag += f"-c{s['num_classes']}"
    return tag


def build_model(spec: dict[str, Any]) -> nn.Sequential:
    """The network ``spec`` describes, freshly initialised by torch's defaults from the global RNG (use
    :func:`alignkit.zoo.init_model` for a seeded one). In train mode, as torch modules start."""
    s = check_spec(spec)
    c, h, w = s["input_shape"]
    mods: list[tuple[str, nn.Module]] = []
    if s["arch"] == "mlp":
        mods.append(("flatten", nn.Flatten()))
        fan_in = c * h * w
        for i, width in enumerate(s["widths"], start=1):
            mods += [(f"fc{i}", nn.Linear(fan_in, width)), (f"relu{i}", nn.ReLU())]
            fan_in = width
    else:
        fan_in = c
        for i, width in enumerate(s["channels"], start=1):
            mods += [
                (f"conv{i}", nn.Conv2d(fan_in, width, 3, padding=1, bias=False)),
                (f"bn{i}", nn.BatchNorm2d(width)),
                (f"relu{i}", nn.ReLU()),
            ]
            if i % 2 == 0:
                mods.append((f"pool{i}", nn.MaxPool2d(2)))
            fan_in = width
        mods += [("avgpool", nn.AdaptiveAvgPool2d(1)), ("flatten", nn.Flatten())]
    mods.append(("logits", nn.Linear(fan_in, s["num_classes"])))
    return nn.Sequential(OrderedDict(mods))


def representation_points(model: nn.Module) -> dict[str, int]:
    """``{layer name: index of the child whose output it is}``: each hidden ReLU, named ``fc<k>`` / ``conv<k>`` by
    the Linear / Conv2d that feeds it (k counts hidden layers from 1), and ``logits`` (the final Linear).

    Raises ValueError for a model that is not a flat ``nn.Sequential`` of supported modules ending in a Linear.
    """
    if not isinstance(model, nn.Sequential):
        raise ValueError(f"model must be an nn.Sequential (a zoo network); got {type(model).__name__}")
    children = list(model)
    points: dict[str, int] = {}
    feeder: str | None = None
    for i, m in enumerate(children):
        if not isinstance(m, SUPPORTED_MODULES):
            raise ValueError(
                f"model module {i} ({type(m).__name__}) is not supported; zoo networks hold only "
                + ", ".join(t.__name__ for t in SUPPORTED_MODULES)
            )
        if isinstance(m, nn.Linear):
            feeder = "fc"
        elif isinstance(m, nn.Conv2d):
            feeder = "conv"
        elif isinstance(m, nn.ReLU) and i < len(children) - 1:
            if feeder is None:
                raise ValueError(f"model module {i} is a ReLU with no Linear or Conv2d before it")
            points[f"{feeder}{len(points) + 1}"] = i
    if not children or not isinstance(children[-1], nn.Linear):
        raise ValueError("model must end in an nn.Linear (the logits)")
    points["logits"] = len(children) - 1
    return points


def layer_names(model: nn.Module) -> list[str]:
    """The representation layers of a zoo network, input side first: ``fc1``…/``conv1``… then ``logits``."""
    return list(representation_points(model))


def count_parameters(model: nn.Module) -> int:
    return sum(int(p.numel()) for p in model.parameters())


def state_shapes(spec: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    """``{tensor name: shape}`` of the state dict of the network ``spec`` describes (built on the meta device:
    no memory, no initialisation)."""
    with torch.device("meta"):
        model = build_model(spec)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}
