"""Merging two or more networks of one architecture by averaging their aligned weights.

- ``mode="reference"``: match every model to ``models[0]`` (with :func:`alignkit.weights.match`) and average.
- ``mode="cyclic"``: MergeMany (Ainsworth et al., "Git Re-Basin", ICLR 2023, Algorithm 3 in the appendix):
  starting from the identity, repeatedly visit the models in a random order and re-match model i to the
  average of the other models as currently aligned, until a full round changes no permutation (or
  ``max_rounds``). No model is privileged; the merged network's unit order is arbitrary.

Ito et al. ("Analysis of Linear Mode Connectivity via Permutation-Based Weight Matching", arXiv 2402.04051,
Sec. 6) compare weight matching and STE exactly here: merging three or more models.

BatchNorm: averaged running statistics do not describe the merged network's activations; ``reset_bn=True``
re-estimates them on ``bn_data`` (default: the inputs of ``data``) with :func:`alignkit.weights.reset_bn_stats`.
In cyclic activation matching the average that a model is matched to gets the same reset before its activations
are read (when ``data`` has BatchNorm layers to reset).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from alignkit._validation import check_choice
from alignkit.weights._checks import as_inputs, check_model, check_positive_int, check_same_architecture
from alignkit.weights.barrier import average, has_batchnorm, reset_bn_stats
from alignkit.weights.matching import METHODS, identity_perms, match
from alignkit.weights.spec import PermutationSpec, permutation_spec

MODES = ("reference", "cyclic")


@dataclass
class MergeResult:
    """The merged network, each input model's permutation (``perms[i]``: group → indices, into the merged
    network's unit order), and what happened: rounds (cyclic mode), convergence, the BatchNorm handling."""

    model: nn.Module
    perms: list[dict[str, torch.Tensor]]
    aligned: list[nn.Module] = field(repr=False)
    method: str
    mode: str
    rounds: int
    converged: bool
    bn_reset: str
    trace: list[dict[str, Any]] = field(default_factory=list)


def merge(
    models: Sequence[nn.Module],
    method: str = "weight",
    mode: str = "reference",
    data: Any = None,
    *,
    seed: int = 0,
    max_iter: int = 100,
    max_rounds: int = 50,
    reset_bn: bool = False,
    bn_data: Any = None,
    **match_kwargs: Any,
) -> MergeResult:
    """Align ``models`` (two or more, one architecture, eval mode) by permutation and average them.

    ``method`` and ``data`` are those of :func:`alignkit.weights.match` (``match_kwargs`` go to it too);
    ``mode`` "reference" or "cyclic" (see the module docstring). ``trace`` rows (cyclic): one per round with
    the number of models whose permutation changed.
    """
    check_choice(method, METHODS, "method")
    check_choice(mode, MODES, "mode")
    max_rounds = check_positive_int(max_rounds, "max_rounds")
    if not isinstance(reset_bn, bool):
        raise TypeError(f"reset_bn must be True or False; got {reset_bn!r}")
    if isinstance(models, nn.Module) or not isinstance(models, Sequence):
        raise TypeError("models must be a list of torch.nn.Module (two or more)")
    models = list(models)
    if len(models) < 2:
        raise ValueError(f"merge needs at least two models; got {len(models)}")
    for i, m in enumerate(models):
        check_model(m, f"models[{i}]")
    spec = permutation_spec(models[0], name="models[0]")
    for i, m in enumerate(models[1:], start=1):
        check_same_architecture(spec, m, ("models[0]", f"models[{i}]"))
    bn = has_batchnorm(models[0])
    if reset_bn and bn and bn_data is None and data is None:
        raise ValueError("reset_bn=True needs bn_data (or data) to re-estimate the BatchNorm statistics on")
    bn_inputs = as_inputs(bn_data if bn_data is not None else data, "bn_data") if (reset_bn and bn) else None
    kw = {"seed": seed, "max_iter": max_iter, **match_kwargs}
    if mode == "reference":
        perms = [identity_perms(spec)]
        aligned = [models[0]]
        for i, m in enumerate(models[1:], start=1):
            r = match(models[0], m, method, data, **{**kw, "seed": seed + i})
            perms.append(r.perms)
            aligned.append(r.model)
        rounds, converged = 1, True
        trace: list[dict[str, Any]] = []
    else:
        perms, aligned, rounds, converged, trace = _merge_many(spec, models, method, data, bn, kw, max_rounds, seed)
    merged = average(aligned)
    if bn_inputs is not None:
        merged = reset_bn_stats(merged, bn_inputs)
        status = f"reset on {bn_inputs.shape[0]} inputs of " + ("bn_data" if bn_data is not None else "data")
    elif bn:
        status = "not reset (averaged running statistics)"
    else:
        status = "none (no BatchNorm)"
    return MergeResult(
        model=merged,
        perms=perms,
        aligned=aligned,
        method=method,
        mode=mode,
        rounds=rounds,
        converged=converged,
        bn_reset=status,
        trace=trace,
    )


def _merge_many(
    spec: PermutationSpec,
    models: list[nn.Module],
    method: str,
    data: Any,
    bn: bool,
    kw: dict[str, Any],
    max_rounds: int,
    seed: int,
) -> tuple[list[dict[str, torch.Tensor]], list[nn.Module], int, bool, list[dict[str, Any]]]:
    k = len(models)
    rng = np.random.default_rng(seed)
    perms = [identity_perms(spec) for _ in models]
    aligned = list(models)
    trace: list[dict[str, Any]] = []
    converged = False
    rounds = 0
    for rnd in range(1, max_rounds + 1):
        rounds = rnd
        changed = 0
        for i in rng.permutation(k):
            target = average([aligned[j] for j in range(k) if j != i])
            if method == "activation" and bn:
                target = reset_bn_stats(target, as_inputs(data))
            init = perms[i] if method != "activation" else None
            r = match(target, models[i], method, data, **{**kw, "seed": seed + rnd * k + int(i), "init_perms": init})
            if any(not torch.equal(r.perms[g], perms[i][g]) for g in spec.groups):
                changed += 1
            perms[i] = r.perms
            aligned[i] = r.model
        trace.append({"round": rnd, "changed": changed})
        if changed == 0:
            converged = True
            break
    return perms, aligned, rounds, converged, trace
