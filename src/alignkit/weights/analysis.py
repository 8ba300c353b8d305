"""Diagnostics of weight matching after Ito, Yamada & Kumagai, "Analysis of Linear Mode Connectivity via
Permutation-Based Weight Matching: With Insights into Other Permutation Search Methods" (arXiv 2402.04051, v5).

The paper's three claims, and the function that measures each:

1. Matching barely reduces the L2 distance between the models → :func:`l2_distance` before and after.
2. A permutation changes the singular vectors of each weight matrix but not its singular values →
   :func:`singular_values` (identical for any permutation of the hidden units).
3. Weight matching aligns the singular vectors of large singular values across the models →
   :func:`singular_vector_alignment`.

Every weight tensor with two or more axes counts as a layer's matrix: a Linear weight (out × in) as it is, a
convolution kernel (out × in × kh × kw) reshaped to out × (in·kh·kw). A permutation acts on it as
``P_out W (P_in ⊗ I_{kh·kw})ᵀ``, an orthogonal change of basis on both sides, which is why its singular values
are unchanged and its singular vectors are permuted.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from alignkit.weights._checks import check_model, check_pair


def _matrices(model: nn.Module) -> list[tuple[str, str, torch.Tensor]]:
    """(layer name, module type, weight as a float64 matrix) for every parameter with ≥ 2 axes."""
    out = []
    for key, p in model.named_parameters():
        if p.dim() < 2:
            continue
        layer = key.rsplit(".", 1)[0] if "." in key else ""
        module = type(model.get_submodule(layer)).__name__ if layer else type(model).__name__
        out.append((layer or key, module, p.detach().double().reshape(p.shape[0], -1)))
    return out


def l2_distance(model_a: nn.Module, model_b: nn.Module, *, include_buffers: bool = False) -> list[dict[str, Any]]:
    """‖θ_A − θ_B‖₂ per layer (the parameters of one module) and for the whole parameter vector (row ``layer="all"``),
    with the norms of both and ``relative`` = distance / √(‖θ_A‖·‖θ_B‖). ``include_buffers`` adds the floating
    buffers (BatchNorm running statistics). Ito et al. claim 1: nearly the same before and after matching."""
    check_pair(model_a, model_b, eval_mode=False)
    sd_b = model_b.state_dict()
    keys = {k for k, _ in model_a.named_parameters()}
    if include_buffers:
        keys |= {k for k, b in model_a.named_buffers() if b.is_floating_point()}
    sd_a = model_a.state_dict()
    per: dict[str, list[float]] = {}
    for key in sd_a:
        if key not in keys:
            continue
        a, b = sd_a[key].double(), sd_b[key].double()
        layer = key.rsplit(".", 1)[0] if "." in key else key
        acc = per.setdefault(layer, [0.0, 0.0, 0.0])
        acc[0] += float(((a - b) ** 2).sum())
        acc[1] += float((a * a).sum())
        acc[2] += float((b * b).sum())
    rows = [_l2_row(model_a, layer, *acc) for layer, acc in per.items()]
    total = [sum(acc[i] for acc in per.values()) for i in range(3)]
    rows.append(_l2_row(None, "all", *total))
    return rows


def _l2_row(model: nn.Module | None, layer: str, d2: float, a2: float, b2: float) -> dict[str, Any]:
    module = type(model.get_submodule(layer)).__name__ if model is not None else "all"
    denom = math.sqrt(math.sqrt(a2) * math.sqrt(b2))
    return {
        "layer": layer,
        "module": module,
        "l2": math.sqrt(d2),
        "norm_a": math.sqrt(a2),
        "norm_b": math.sqrt(b2),
        "relative": math.sqrt(d2) / denom if denom > 0 else float("nan"),
    }


def singular_values(model: nn.Module) -> list[dict[str, Any]]:
    """Singular values σ_1 ≥ σ_2 ≥ … of every weight matrix (conv kernels reshaped out × (in·kh·kw)), one row per
    (layer, index). Invariant under any permutation of hidden units (Ito et al. claim 2)."""
    check_model(model, "model", eval_mode=False)
    rows: list[dict[str, Any]] = []
    for layer, module, w in _matrices(model):
        s = torch.linalg.svdvals(w)
        shape = "×".join(map(str, w.shape))
        rows.extend(
            {"layer": layer, "module": module, "shape": shape, "index": i, "sigma": float(v)} for i, v in enumerate(s)
        )
    return rows


def singular_vector_alignment(
    model_a: nn.Module, model_b: nn.Module, *, top: float = 0.1, per_direction: bool = False
) -> list[dict[str, Any]]:
    """How well the singular vectors of the two models' weight matrices line up, layer by layer, weighted by
    singular value. **Our definition** (Ito et al. argue the claim through the same decomposition; we did not
    find their exact metric, so this one is ours):

    With ``W_A = Σ_i σ_i^A u_i^A v_i^Aᵀ`` and ``W_B`` likewise (same shapes, r = min(out, in·k) directions, both
    sorted by decreasing σ), direction i's alignment is ``c_i = ⟨u_i^A, u_i^B⟩·⟨v_i^A, v_i^B⟩`` ∈ [−1, 1] (the
    joint sign flip of (u_i, v_i), the only freedom of the SVD, leaves it unchanged; 1 when the rank-one parts
    share their direction). Per layer:

    - ``weighted_alignment`` = ``Σ_i σ_i^A σ_i^B c_i / Σ_i σ_i^A σ_i^B``: the alignment of the directions that
      carry the weight (the diagonal terms of ``⟨W_A, W_B⟩_F = Σ_ij σ_i^A σ_j^B ⟨u_i^A, u_j^B⟩⟨v_i^A, v_j^B⟩``);
    - ``mean_alignment``: the unweighted mean of c_i;
    - ``top_alignment`` / ``rest_alignment``: the mean c_i over the first ⌈top·r⌉ directions / over the others
      (Ito et al. claim 3: matching raises the first far more than the second);
    - ``trace_ratio`` = ``⟨W_A, W_B⟩_F / Σ_i σ_i^A σ_i^B`` ∈ [−1, 1]: the layer's term of the weight-matching
      objective relative to its bound (von Neumann's trace inequality), reached only when the singular vectors
      align pairwise.

    ``per_direction=True`` returns one row per (layer, i) instead: σ_i^A, σ_i^B, ⟨u_i^A, u_i^B⟩, ⟨v_i^A, v_i^B⟩,
    c_i. Singular vectors of (nearly) equal singular values are defined only up to a rotation among themselves,
    so single c_i in a dense part of the spectrum are noisy; the σ weighting keeps the summary on the top ones.
    """
    if not 0 < top <= 1:
        raise ValueError(f"top must be a fraction in (0, 1]; got {top!r}")
    check_pair(model_a, model_b, eval_mode=False)
    rows: list[dict[str, Any]] = []
    for (layer, module, wa), (_, _, wb) in zip(_matrices(model_a), _matrices(model_b), strict=True):
        ua, sa, vha = torch.linalg.svd(wa, full_matrices=False)
        ub, sb, vhb = torch.linalg.svd(wb, full_matrices=False)
        cu = (ua * ub).sum(0)
        cv = (vha * vhb).sum(1)
        c = cu * cv
        if per_direction:
            rows.extend(
                {
                    "layer": layer,
                    "module": module,
                    "index": i,
                    "sigma_a": float(sa[i]),
                    "sigma_b": float(sb[i]),
                    "cos_left": float(cu[i]),
                    "cos_right": float(cv[i]),
                    "alignment": float(c[i]),
                }
                for i in range(c.shape[0])
            )
            continue
        w = sa * sb
        r = c.shape[0]
        k = max(1, math.ceil(top * r))
        bound = float(w.sum())
        rows.append(
            {
                "layer": layer,
                "module": module,
                "directions": r,
                "weighted_alignment": float((w * c).sum()) / bound if bound > 0 else float("nan"),
                "mean_alignment": float(c.mean()),
                "top_alignment": float(c[:k].mean()),
                "rest_alignment": float(c[k:].mean()) if k < r else float("nan"),
                "trace_ratio": float((wa * wb).sum()) / bound if bound > 0 else float("nan"),
            }
        )
    return rows
