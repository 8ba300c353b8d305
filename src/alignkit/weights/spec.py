"""Permutation specs derived from the module graph of a sequential network (no hand-written spec).

A hidden unit of a feed-forward network can be renamed without changing the function: permute the output
units of a Linear / Conv layer, the BatchNorm (parameters and running statistics) and element-wise layers that
follow it, and the input axis of the next Linear / Conv the same way (Ainsworth et al., "Git Re-Basin: Merging
Models modulo Permutation Symmetries", ICLR 2023, Sec. 2). :func:`permutation_spec` walks a :class:`torch.nn.Sequential`
(nested Sequentials flattened) and records one **permutation group** per hidden unit axis — the output axis of
every Linear / Conv except the last — and, for every state-dict tensor, which group (if any) permutes each axis.
The network's input and output axes are never permuted.

Rules, in module order (the "live" group is the one that permutes the current activation's channel axis):

- ``Linear`` / ``Conv1d`` / ``Conv2d`` / ``Conv3d`` (``groups=1``): the input axis of ``weight`` takes the live
  group, the output axis of ``weight`` and ``bias`` a new group named after the module (its state-dict prefix);
  the last such layer's output axis takes none.
- ``BatchNorm1d/2d/3d``: ``weight``, ``bias``, ``running_mean``, ``running_var`` take the live group
  (``num_batches_tracked`` none). ``LayerNorm`` over the feature axis of a Linear output likewise.
- Element-wise activations, dropout, ``Identity``, ``Softmax`` / ``LogSoftmax``, pooling (max, average, adaptive):
  channel-wise, so the live group passes through. ``PReLU`` with one slope per channel permutes its slopes.
- ``Flatten`` (``start_dim=1, end_dim=-1``) of a (N, C, ...) map keeps C as the outer index: unit ``c·k + s``
  belongs to channel c, so the next Linear's input axis is permuted in blocks of ``k = in_features / C``
  (``k = 1`` after a global pool). A Linear whose ``in_features`` is not a multiple of C raises.

Anything else raises a ``ValueError`` naming the first module it cannot handle (its index and type).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
from torch import nn

# Element-wise (or channel-wise) modules: the live group passes through unchanged.
PASS_THROUGH: tuple[type[nn.Module], ...] = (
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.GELU,
    nn.SiLU,
    nn.Mish,
    nn.ELU,
    nn.CELU,
    nn.SELU,
    nn.Tanh,
    nn.Sigmoid,
    nn.Softplus,
    nn.Softsign,
    nn.Tanhshrink,
    nn.Hardtanh,
    nn.Hardswish,
    nn.Hardsigmoid,
    nn.Identity,
    nn.Dropout,
    nn.Dropout1d,
    nn.Dropout2d,
    nn.Dropout3d,
    nn.AlphaDropout,
    nn.Softmax,
    nn.LogSoftmax,
)
POOLS: tuple[type[nn.Module], ...] = (
    nn.MaxPool1d,
    nn.MaxPool2d,
    nn.MaxPool3d,
    nn.AvgPool1d,
    nn.AvgPool2d,
    nn.AvgPool3d,
    nn.AdaptiveAvgPool1d,
    nn.AdaptiveAvgPool2d,
    nn.AdaptiveAvgPool3d,
    nn.AdaptiveMaxPool1d,
    nn.AdaptiveMaxPool2d,
    nn.AdaptiveMaxPool3d,
)
CONVS: tuple[type[nn.Module], ...] = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
BATCHNORMS: tuple[type[nn.Module], ...] = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
SUPPORTED = "Linear, Conv1d/2d/3d, BatchNorm1d/2d/3d, LayerNorm, element-wise activations, Dropout, pooling, Flatten"

# An axis entry: (group name, block size) — the axis has group size × block entries, entry c·block + s moving
# with unit c of the group.
Axis = tuple[str, int]


@dataclass(frozen=True)
class PermutationSpec:
    """Which permutation group permutes which axis of which state-dict tensor.

    ``groups``: group name (the state-dict prefix of the layer whose output units it permutes) → number of units.
    ``axes``: state-dict key → one entry per axis, ``(group, block)`` or None (not permuted); every key of the
    model's state dict is listed. ``params``: the keys that are parameters (the weight-matching objective uses
    these; running statistics are permuted along but not matched). ``sites``: group → index, in
    ``modules``, of the last module whose output still holds the group's units on axis 1 (where activation
    matching reads them). ``modules``: the flattened module list as ``(qualified name, module)``.
    """

    groups: dict[str, int]
    axes: dict[str, tuple[Axis | None, ...]]
    params: frozenset[str]
    sites: dict[str, int]
    modules: tuple[tuple[str, nn.Module], ...] = field(repr=False)

    def perm_to_axes(self) -> dict[str, list[tuple[str, int, int]]]:
        """group → [(key, axis, block), ...]: every tensor axis the group permutes."""
        out: dict[str, list[tuple[str, int, int]]] = {g: [] for g in self.groups}
        for key, axes in self.axes.items():
            for axis, entry in enumerate(axes):
                if entry is not None:
                    out[entry[0]].append((key, axis, entry[1]))
        return out

    def describe(self) -> list[dict[str, object]]:
        """One row per group: its name, size, the producing module and the tensors it permutes."""
        by_group = self.perm_to_axes()
        kinds = dict(self.modules)
        return [
            {
                "group": g,
                "units": n,
                "module": type(kinds[g]).__name__ if g in kinds else "?",
                "tensors": [f"{k}[axis {a}]" + (f" (blocks of {b})" if b > 1 else "") for k, a, b in by_group[g]],
            }
            for g, n in self.groups.items()
        ]


def flatten_modules(model: nn.Module, name: str = "model") -> list[tuple[str, nn.Module]]:
    """The modules of a Sequential in execution order (nested Sequentials flattened), with qualified names."""
    if not isinstance(model, nn.Sequential):
        raise ValueError(
            f"{name} must be a torch.nn.Sequential (nested Sequentials are fine); got {type(model).__name__}. "
            "Permutation specs are derived only for sequential stacks"
        )
    return list(_walk(model, ""))


def _walk(seq: nn.Sequential, prefix: str) -> Iterator[tuple[str, nn.Module]]:
    for child_name, child in seq.named_children():
        qual = f"{prefix}{child_name}"
        if isinstance(child, nn.Sequential):
            yield from _walk(child, qual + ".")
        else:
            yield qual, child


def _unsupported(i: int, qual: str, module: nn.Module, why: str) -> ValueError:
    return ValueError(
        f"cannot derive a permutation spec: module {i} ({qual!r}, {type(module).__name__}) {why}. "
        f"Supported: {SUPPORTED}"
    )


def permutation_spec(model: nn.Module, *, name: str = "model") -> PermutationSpec:
    """Derive the permutation spec of a sequential network (see the module docstring for the rules)."""
    modules = flatten_modules(model, name)
    weight_layers = [i for i, (_, m) in enumerate(modules) if isinstance(m, (nn.Linear, *CONVS))]
    if not weight_layers:
        raise ValueError(f"{name} has no Linear or Conv layer: nothing to permute")
    last = weight_layers[-1]
    state = model.state_dict()
    axes: dict[str, tuple[Axis | None, ...]] = {k: (None,) * v.dim() for k, v in state.items()}
    groups: dict[str, int] = {}
    sites: dict[str, int] = {}
    live: str | None = None  # group on the channel axis of the current activation
    layout = "any"  # "features" (N, F), "spatial" (N, C, ...), "flat" (N, C·k) after Flatten of a spatial map

    def mark(i: int) -> None:  # module i's output holds the live group's units on axis 1
        if live is not None and layout != "flat":
            sites[live] = i

    def set_axes(qual: str, tensor: str, entries: tuple[Axis | None, ...]) -> None:
        key = f"{qual}.{tensor}" if qual else tensor
        if key in axes:
            axes[key] = entries + (None,) * (len(axes[key]) - len(entries))

    for i, (qual, m) in enumerate(modules):
        if isinstance(m, (nn.Linear, *CONVS)):
            conv = not isinstance(m, nn.Linear)
            n_in = int(getattr(m, "in_channels" if conv else "in_features"))
            n_out = int(getattr(m, "out_channels" if conv else "out_features"))
            in_entry: Axis | None = None
            if live is not None:
                size = groups[live]
                if conv and layout != "spatial":
                    raise _unsupported(i, qual, m, f"is a convolution applied to a {layout} activation")
                if not conv and layout == "spatial":
                    raise _unsupported(i, qual, m, "is a Linear applied to a spatial map (add a Flatten before it)")
                if layout == "flat":
                    if n_in % size:
                        raise _unsupported(
                            i,
                            qual,
                            m,
                            f"takes {n_in} inputs after Flatten of {size} channels (not a whole number of "
                            "positions per channel)",
                        )
                    in_entry = (live, n_in // size)
                elif n_in != size:
                    raise _unsupported(i, qual, m, f"expects {n_in} inputs but the previous layer gives {size}")
                else:
                    in_entry = (live, 1)
            if conv and m.groups != 1:
                raise _unsupported(i, qual, m, f"is a grouped convolution (groups={m.groups})")
            out_entry: Axis | None = None
            if i != last:
                groups[qual] = n_out
                out_entry = (qual, 1)
            set_axes(qual, "weight", (out_entry, in_entry))
            set_axes(qual, "bias", (out_entry,))
            live = out_entry[0] if out_entry else None
            layout = "spatial" if conv else "features"
            mark(i)
        elif isinstance(m, BATCHNORMS):
            if live is not None:
                if layout not in (("features", "spatial") if isinstance(m, nn.BatchNorm1d) else ("spatial",)):
                    raise _unsupported(i, qual, m, f"normalises a {layout} activation")
                if m.num_features != groups[live]:
                    raise _unsupported(
                        i, qual, m, f"has {m.num_features} features, the layer before gives {groups[live]}"
                    )
                for t in ("weight", "bias", "running_mean", "running_var"):
                    set_axes(qual, t, ((live, 1),))
                mark(i)
        elif isinstance(m, nn.LayerNorm):
            if live is not None:
                if layout != "features" or tuple(m.normalized_shape) != (groups[live],):
                    raise _unsupported(i, qual, m, "normalises something other than the feature axis of a Linear")
                for t in ("weight", "bias"):
                    set_axes(qual, t, ((live, 1),))
                mark(i)
        elif isinstance(m, nn.PReLU):
            if live is not None:
                if m.num_parameters not in (1, groups[live]):
                    raise _unsupported(i, qual, m, f"has {m.num_parameters} slopes for {groups[live]} units")
                if m.num_parameters > 1:
                    set_axes(qual, "weight", ((live, 1),))
                mark(i)
        elif isinstance(m, PASS_THROUGH):
            mark(i)
        elif isinstance(m, POOLS):
            if live is not None:
                if layout != "spatial":
                    raise _unsupported(i, qual, m, f"pools a {layout} activation")
                mark(i)
        elif isinstance(m, nn.Flatten):
            if (m.start_dim, m.end_dim) != (1, -1):
                raise _unsupported(i, qual, m, f"flattens dims {m.start_dim}..{m.end_dim} (only 1..-1 is supported)")
            if live is not None and layout == "spatial":
                layout = "flat"
        else:
            raise _unsupported(i, qual, m, "is not supported")
    params = frozenset(k for k, _ in model.named_parameters())
    return PermutationSpec(groups=groups, axes=axes, params=params, sites=sites, modules=tuple(modules))


def expand(perm: torch.Tensor, block: int) -> torch.Tensor:
    """A unit permutation as an index over an axis of ``len(perm)·block`` entries (entry c·block + s)."""
    if block == 1:
        return perm
    return (perm[:, None] * block + torch.arange(block, device=perm.device)).reshape(-1)
