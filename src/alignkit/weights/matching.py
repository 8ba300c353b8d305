"""Git Re-Basin: align the hidden units of two networks by permutation (weight, activation and STE matching).

Ainsworth, Hayase & Srinivasa, "Git Re-Basin: Merging Models modulo Permutation Symmetries", ICLR 2023 (Sec. 3.1
activation matching, Sec. 3.2 weight matching, Sec. 3.3 straight-through estimator); samuela/git-re-basin
``src/weight_matching.py`` for the coordinate descent. docs/methods.md §4.7 ("Git Re-Basin weight matching").

**Convention.** ``perms[g][i] = j``: unit i of model a is matched with unit j of model b, and the permuted b
takes b's unit j at position i on every axis that group g permutes (``W_b.index_select(axis, perm)``).

**Weight matching** maximises ``Σ_ℓ ⟨W_ℓ^A, P_ℓ W_ℓ^B P_{ℓ−1}ᵀ⟩_F`` over the parameters (running statistics are
permuted along, not matched) by coordinate descent: each sweep visits the groups in a random order; for group p
it forms ``C_p = Σ_{(w, axis)} W_a(axis → 0, n_p × −1) · W_b(other axes permuted, same reshape)ᵀ`` and sets
``P_p = argmax_P ⟨C_p, P⟩`` (``scipy.optimize.linear_sum_assignment(maximize=True)``), keeping the old P_p
unless the gain exceeds 1e-12 (so the objective never decreases and the loop stops when no permutation changes).
Stops after a sweep with no change or after ``max_iter`` sweeps. The reshaped float64 copies of every weight are
made once, and each (weight, axis) term of a C_p is kept until a permutation it depends on changes: a group whose
neighbours did not change since its last visit is skipped (its assignment could not change), so late sweeps and
the final confirming sweep cost little. The result is that of the plain loop, term for term.

**Activation matching** runs both networks (eval mode) on ``data`` and, for each group, correlates a's units
with b's at the last module where the group's units are still on axis 1 (after the activation and pooling;
conv maps contribute every spatial position as a row): ``C_p[i, j] = corr(a_i, b_j)`` (or the mean inner
product), one assignment per group. Units of zero variance correlate 0 with everything.

**STE matching** (Sec. 3.3): a proxy θ̃ initialised at θ_A is trained so that the midpoint ``½(θ_A + π(θ_B))``
has low loss on ``data`` (cross-entropy), where π = weight_matching(θ̃, θ_B) is recomputed at every step
(warm-started from the previous π) and the straight-through estimator passes the midpoint gradient to θ̃:
the forward uses π(θ_B), the backward treats it as θ̃. BatchNorm layers use batch statistics in these forwards
(the midpoint's running statistics are meaningless). Returns the last projection.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import nn

from alignkit._progress import progress as progress_bar
from alignkit._validation import check_choice
from alignkit.weights._checks import (
    as_inputs,
    as_labeled,
    check_forward,
    check_pair,
    check_positive_int,
    device_of,
)
from alignkit.weights.spec import BATCHNORMS, PermutationSpec, expand, permutation_spec

METHODS = ("weight", "activation", "ste")
SIMILARITIES = ("correlation", "inner")
IMPROVEMENT = 1e-12  # a group's new assignment is kept only if it gains more than this


@dataclass
class MatchResult:
    """The permuted copy of ``model_b`` (``model``), the permutations (group → LongTensor, see the module
    docstring for the convention) and the trace of the search.

    ``trace`` rows: weight matching ``{"sweep", "objective"}`` (sweep 0 = before matching; non-decreasing);
    activation matching ``{"group", "before", "after"}`` (summed similarity of matched units with the identity
    and with the assignment); STE ``{"step", "epoch", "loss"}`` (midpoint loss of each step).
    """

    model: nn.Module
    perms: dict[str, torch.Tensor]
    method: str
    trace: list[dict[str, Any]]
    iterations: int
    converged: bool
    spec: PermutationSpec = field(repr=False)

    @property
    def objective(self) -> list[float]:
        """The weight-matching objective per sweep (sweep 0 first); for the other methods their main trace value."""
        key = {"weight": "objective", "activation": "after", "ste": "loss"}[self.method]
        return [float(r[key]) for r in self.trace]

    def to_rows(self) -> list[dict[str, Any]]:
        return [{"method": self.method, **r} for r in self.trace]

    def to_pandas(self) -> Any:
        import pandas as pd

        return pd.DataFrame(self.to_rows())


# ------------------------------------------------------------------------------------------ permutations


def identity_perms(spec: PermutationSpec) -> dict[str, torch.Tensor]:
    return {g: torch.arange(n) for g, n in spec.groups.items()}


def check_perms(spec: PermutationSpec, perms: Mapping[str, Any], name: str = "perms") -> dict[str, torch.Tensor]:
    """``perms`` as LongTensors, one valid permutation of the right size per group of ``spec`` (no more, no less)."""
    if not isinstance(perms, Mapping):
        raise TypeError(f"{name} must map group names to permutations; got {type(perms).__name__}")
    missing = sorted(set(spec.groups) - set(perms))
    unknown = sorted(set(perms) - set(spec.groups))
    if missing or unknown:
        raise ValueError(
            f"{name} must give one permutation per group {sorted(spec.groups)}; missing {missing}, unknown {unknown}"
        )
    out = {}
    for g, n in spec.groups.items():
        p = torch.as_tensor(np.asarray(perms[g]) if not isinstance(perms[g], torch.Tensor) else perms[g])
        if p.dim() != 1 or p.shape[0] != n or p.is_floating_point():
            raise ValueError(f"{name}[{g!r}] must be {n} integer indices; got {p.dtype} shape {list(p.shape)}")
        p = p.long().cpu()
        if not torch.equal(torch.sort(p).values, torch.arange(n)):
            raise ValueError(f"{name}[{g!r}] is not a permutation of 0..{n - 1}")
        out[g] = p
    return out


def permute_state(
    spec: PermutationSpec, state: Mapping[str, torch.Tensor], perms: Mapping[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """Every tensor of ``state`` with each axis re-indexed by its group's permutation (others untouched)."""
    out = {}
    for key, t in state.items():
        axes = spec.axes.get(key)
        if axes:
            for axis, entry in enumerate(axes):
                if entry is not None:
                    t = t.index_select(axis, expand(perms[entry[0]].to(t.device), entry[1]))
        out[key] = t
    return out


def apply_permutation(model: nn.Module, perms: Mapping[str, Any], spec: PermutationSpec | None = None) -> nn.Module:
    """A copy of ``model`` with its hidden units permuted by ``perms`` (group → indices); it computes the same
    function (in eval mode and in train mode)."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module; got {type(model).__name__}")
    spec = spec or permutation_spec(model)
    checked = check_perms(spec, perms)
    out = copy.deepcopy(model)
    out.load_state_dict(permute_state(spec, model.state_dict(), checked))
    return out


# ------------------------------------------------------------------------------------------ weight matching


@dataclass
class _Term:
    """One (parameter, axis) of a group: W_a reshaped to (n_p, −1) and W_b with that axis first, whose other
    permuted axes are re-indexed when their groups change; ``cache`` = (versions of those groups, C term)."""

    a: torch.Tensor
    b: torch.Tensor
    others: list[tuple[int, str, int]]  # (dim of b, group, block)
    cache: tuple[tuple[int, ...], torch.Tensor] | None = None


def _terms(
    spec: PermutationSpec, sd_a: Mapping[str, torch.Tensor], sd_b: Mapping[str, torch.Tensor]
) -> tuple[dict[str, list[_Term]], list[tuple[str, _Term]], float]:
    """The terms of every group; for the objective, one term per parameter that a group touches (its first
    grouped axis) and the constant ``Σ⟨W_a, W_b⟩`` of the parameters no group touches."""
    out: dict[str, list[_Term]] = {g: [] for g in spec.groups}
    designated: dict[str, tuple[str, _Term]] = {}
    for g, entries in spec.perm_to_axes().items():
        n = spec.groups[g]
        for key, axis, _block in entries:
            if key not in spec.params:
                continue
            wa = sd_a[key].detach().to("cpu", torch.float64).movedim(axis, 0).reshape(n, -1)
            wb = sd_b[key].detach().to("cpu", torch.float64).movedim(axis, 0).contiguous()
            others = []
            for ax, entry in enumerate(spec.axes[key]):
                if entry is not None and ax != axis:
                    dim = ax + 1 if ax < axis else ax  # position after movedim(axis, 0)
                    others.append((dim, entry[0], entry[1]))
            out[g].append(_Term(wa, wb, others))
            if axis == next(ax for ax, e in enumerate(spec.axes[key]) if e is not None):
                designated[key] = (g, out[g][-1])
    const = sum(
        float((sd_a[k].detach().double() * sd_b[k].detach().double().to(sd_a[k].device)).sum())
        for k in spec.params
        if k not in designated
    )
    return out, list(designated.values()), const


def _objective(
    designated: list[tuple[str, _Term]],
    const: float,
    spec: PermutationSpec,
    perms: Mapping[str, torch.Tensor],
    versions: Mapping[str, int],
) -> float:
    """``Σ_params ⟨W_a, π(W_b)⟩`` from the terms: a term's ``Σ_i T[i, π_p(i)]`` is its parameter's inner product."""
    total = const
    for g, t in designated:
        n = spec.groups[g]
        total += float(_contribution(t, perms, versions, n)[torch.arange(n), perms[g]].sum())
    return total


def _contribution(t: _Term, perms: Mapping[str, torch.Tensor], versions: Mapping[str, int], n: int) -> torch.Tensor:
    """The term's ``A·B(other axes permuted)ᵀ``, recomputed only when a group it depends on changed."""
    key = tuple(versions[q] for _, q, _ in t.others)
    if t.cache is None or t.cache[0] != key:
        b = t.b
        for dim, q, block in t.others:
            b = b.index_select(dim, expand(perms[q], block))
        t.cache = (key, t.a @ b.reshape(n, -1).T)
    return t.cache[1]


def _cost(terms: list[_Term], perms: Mapping[str, torch.Tensor], versions: Mapping[str, int], n: int) -> torch.Tensor:
    """``C_p = Σ_terms A·B(other axes permuted)ᵀ``."""
    c = torch.zeros(n, n, dtype=torch.float64)
    for t in terms:
        c += _contribution(t, perms, versions, n)
    return c


def objective(
    spec: PermutationSpec,
    sd_a: Mapping[str, torch.Tensor],
    sd_b: Mapping[str, torch.Tensor],
    perms: Mapping[str, torch.Tensor],
) -> float:
    """``Σ_params ⟨W_a, π(W_b)⟩`` (float64), the quantity weight matching maximises."""
    permuted = permute_state(spec, {k: sd_b[k] for k in spec.params}, perms)
    return float(sum(float(torch.sum(sd_a[k].double().cpu() * permuted[k].double().cpu())) for k in spec.params))


def _lap(c: torch.Tensor) -> torch.Tensor:
    _, cols = linear_sum_assignment(c.detach().cpu().numpy(), maximize=True)
    return torch.as_tensor(cols, dtype=torch.long)


def weight_matching(
    spec: PermutationSpec,
    sd_a: Mapping[str, torch.Tensor],
    sd_b: Mapping[str, torch.Tensor],
    *,
    max_iter: int = 100,
    seed: int = 0,
    init: Mapping[str, torch.Tensor] | None = None,
) -> tuple[dict[str, torch.Tensor], list[dict[str, Any]], int, bool]:
    """Coordinate descent on state dicts (see the module docstring): ``(perms, trace, sweeps, converged)``."""
    perms = dict(init) if init is not None else identity_perms(spec)
    terms, designated, const = _terms(spec, sd_a, sd_b)
    rng = np.random.default_rng(seed)
    names = list(spec.groups)
    versions = dict.fromkeys(names, 0)  # bumped when a group's permutation changes
    visited: dict[str, tuple[int, ...]] = {}  # versions of a group's neighbours at its last visit
    trace = [{"sweep": 0, "objective": _objective(designated, const, spec, perms, versions)}]
    converged = False
    sweeps = 0
    for sweep in range(1, max_iter + 1):
        sweeps = sweep
        changed = False
        for gi in rng.permutation(len(names)):
            g = names[gi]
            seen = tuple(versions[q] for t in terms[g] for _, q, _ in t.others)
            if visited.get(g) == seen:
                continue  # same cost matrix, same assignment as at the last visit: nothing can change
            visited[g] = seen
            n = spec.groups[g]
            c = _cost(terms[g], perms, versions, n)
            new = _lap(c)
            rows = torch.arange(n)
            gain = float(c[rows, new].sum() - c[rows, perms[g]].sum())
            if gain > IMPROVEMENT:
                perms[g] = new
                versions[g] += 1
                changed = True
        trace.append({"sweep": sweep, "objective": _objective(designated, const, spec, perms, versions)})
        if not changed:
            converged = True
            break
    return perms, trace, sweeps, converged


# ------------------------------------------------------------------------------------------ activation matching


def run_to_sites(spec: PermutationSpec, model: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Each group's activations on ``x``, as (rows, units): the output of its site module, spatial positions as rows."""
    wanted = {i: g for g, i in spec.sites.items()}
    out: dict[str, torch.Tensor] = {}
    modules = _modules_of(model, spec)
    h = x
    for i, m in enumerate(modules):
        h = m(h)
        if i in wanted:
            out[wanted[i]] = h.movedim(1, -1).reshape(-1, h.shape[1])
        if len(out) == len(wanted):
            break
    return out


def _modules_of(model: nn.Module, spec: PermutationSpec) -> list[nn.Module]:
    return [model.get_submodule(qual) for qual, _ in spec.modules]


def activation_costs(
    spec: PermutationSpec,
    model_a: nn.Module,
    model_b: nn.Module,
    x: torch.Tensor,
    *,
    similarity: str = "correlation",
    batch_size: int = 256,
) -> dict[str, torch.Tensor]:
    """Per group, the (units_a × units_b) correlation (or mean inner product) of the two models' activations."""
    sums: dict[str, dict[str, torch.Tensor]] = {}
    count: dict[str, int] = dict.fromkeys(spec.groups, 0)
    dev_a, dev_b = device_of(model_a), device_of(model_b)
    with torch.no_grad():
        for s in range(0, x.shape[0], batch_size):
            xb = x[s : s + batch_size]
            acts_a, acts_b = run_to_sites(spec, model_a, xb.to(dev_a)), run_to_sites(spec, model_b, xb.to(dev_b))
            for g in spec.groups:
                a, b = acts_a[g].double().cpu(), acts_b[g].double().cpu()
                acc = sums.setdefault(g, {})
                for k, v in (("a", a.sum(0)), ("b", b.sum(0)), ("aa", (a * a).sum(0)), ("bb", (b * b).sum(0))):
                    acc[k] = acc[k] + v if k in acc else v
                acc["ab"] = acc["ab"].addmm_(a.T, b) if "ab" in acc else a.T @ b
                count[g] += a.shape[0]
    costs = {}
    for g, acc in sums.items():
        n = count[g]
        if similarity == "inner":
            costs[g] = acc["ab"] / n
            continue
        ma, mb = acc["a"] / n, acc["b"] / n
        cov = acc["ab"] / n - ma[:, None] * mb[None, :]
        sa = (acc["aa"] / n - ma**2).clamp_min(0).sqrt()
        sb = (acc["bb"] / n - mb**2).clamp_min(0).sqrt()
        denom = sa[:, None] * sb[None, :]
        costs[g] = torch.where(denom > 0, cov / denom.clamp_min(1e-300), torch.zeros_like(cov))
    return costs


# ------------------------------------------------------------------------------------------ STE matching


def _bn_batch_stats_copy(model: nn.Module) -> nn.Module:
    """A copy of ``model`` in eval mode except its BatchNorm layers, which use batch statistics."""
    net = copy.deepcopy(model).eval()
    for m in net.modules():
        if isinstance(m, BATCHNORMS):
            m.train()
    return net


def _ste(
    spec: PermutationSpec,
    model_a: nn.Module,
    model_b: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    epochs: int,
    lr: float,
    batch_size: int,
    seed: int,
    max_iter: int,
    init: Mapping[str, torch.Tensor] | None,
    show_progress: bool,
) -> tuple[dict[str, torch.Tensor], list[dict[str, Any]], int]:
    from torch.func import functional_call

    device = device_of(model_a)
    sd_a = {k: v.detach() for k, v in model_a.state_dict().items()}
    sd_b = {k: v.detach().to(device) for k, v in model_b.state_dict().items()}
    params = sorted(spec.params)
    proxy = {k: sd_a[k].clone().requires_grad_(True) for k in params}
    opt = torch.optim.Adam(list(proxy.values()), lr=lr)
    net = _bn_batch_stats_copy(model_a)
    buffers = [k for k in sd_a if k not in spec.params]
    gen = torch.Generator().manual_seed(seed)
    perms = dict(init) if init is not None else identity_perms(spec)
    trace: list[dict[str, Any]] = []
    n = x.shape[0]
    step = 0
    bar = progress_bar(total=epochs * ((n + batch_size - 1) // batch_size), desc="STE matching", show=show_progress)
    for epoch in range(epochs):
        order = torch.randperm(n, generator=gen)
        for s in range(0, n, batch_size):
            idx = order[s : s + batch_size]
            detached = {k: v.detach() for k, v in proxy.items()}
            perms, _, _, _ = weight_matching(spec, detached, sd_b, max_iter=max_iter, seed=seed + step, init=perms)
            projected = permute_state(spec, {k: sd_b[k] for k in params}, perms)
            mid = {k: 0.5 * (sd_a[k] + (projected[k] + proxy[k] - proxy[k].detach())) for k in params}
            state = {**mid, **{k: sd_a[k].clone() for k in buffers}}
            xb, yb = x[idx].to(device), y[idx].to(device)
            loss = torch.nn.functional.cross_entropy(functional_call(net, state, (xb,)), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            trace.append({"step": step, "epoch": epoch, "loss": float(loss.detach())})
            step += 1
            bar.update(1)
    bar.close()
    detached = {k: v.detach() for k, v in proxy.items()}
    perms, _, _, _ = weight_matching(spec, detached, sd_b, max_iter=max_iter, seed=seed + step, init=perms)
    return perms, trace, step


# ------------------------------------------------------------------------------------------ entry point


def match(
    model_a: nn.Module,
    model_b: nn.Module,
    method: str = "weight",
    data: Any = None,
    *,
    seed: int = 0,
    max_iter: int = 100,
    init_perms: Mapping[str, Any] | None = None,
    similarity: str = "correlation",
    batch_size: int = 256,
    epochs: int = 3,
    lr: float = 1e-3,
    progress: bool = False,
) -> MatchResult:
    """Permute ``model_b``'s hidden units to align with ``model_a``'s; returns the permuted copy and the perms.

    ``method``: ``"weight"`` (no data; coordinate descent, ``max_iter`` sweeps at most, random group order from
    ``seed``, warm start from ``init_perms``), ``"activation"`` (``data`` = inputs or (inputs, labels); one
    assignment per group on ``similarity`` = "correlation" or "inner" of the activations, batches of
    ``batch_size``) or ``"ste"`` (``data`` = (inputs, labels); ``epochs`` of Adam at ``lr`` over shuffled batches
    of ``batch_size``; each step's projection is a weight matching with ``max_iter``). Both models must be
    sequential stacks of supported layers (:mod:`alignkit.weights.spec`) with the same architecture, in eval mode.
    """
    check_choice(method, METHODS, "method")
    check_choice(similarity, SIMILARITIES, "similarity")
    max_iter = check_positive_int(max_iter, "max_iter")
    batch_size = check_positive_int(batch_size, "batch_size")
    spec = check_pair(model_a, model_b)
    init = check_perms(spec, init_perms, "init_perms") if init_perms is not None else None
    sd_a, sd_b = model_a.state_dict(), model_b.state_dict()
    if method == "weight":
        perms, trace, iterations, converged = weight_matching(spec, sd_a, sd_b, max_iter=max_iter, seed=seed, init=init)
    elif method == "activation":
        if data is None:
            raise ValueError("method='activation' needs data: the inputs (N, ...) to compare activations on")
        x = as_inputs(data)
        check_forward(model_a, x, "model_a")
        costs = activation_costs(spec, model_a, model_b, x, similarity=similarity, batch_size=batch_size)
        perms, trace = {}, []
        for g, c in costs.items():
            perms[g] = _lap(c)
            rows = torch.arange(c.shape[0])
            trace.append({"group": g, "before": float(c.diagonal().sum()), "after": float(c[rows, perms[g]].sum())})
        iterations, converged = 1, True
    else:
        if data is None:
            raise ValueError("method='ste' needs data: an (inputs, labels) pair to train the straight-through proxy on")
        x, y = as_labeled(data)
        out = check_forward(model_a, x, "model_a")
        if out.dim() != 2 or int(y.max()) >= out.shape[1]:
            raise ValueError(
                f"data labels go up to {int(y.max())} but model_a gives {list(out.shape[1:])} outputs per input; "
                "STE matching needs class logits (N, classes)"
            )
        epochs = check_positive_int(epochs, "epochs")
        if not lr > 0:
            raise ValueError(f"lr must be > 0; got {lr!r}")
        perms, trace, iterations = _ste(
            spec,
            model_a,
            model_b,
            x,
            y,
            epochs=epochs,
            lr=lr,
            batch_size=batch_size,
            seed=seed,
            max_iter=max_iter,
            init=init,
            show_progress=progress,
        )
        converged = True
    permuted = copy.deepcopy(model_b)
    permuted.load_state_dict(permute_state(spec, sd_b, perms))
    return MatchResult(
        model=permuted, perms=perms, method=method, trace=trace, iterations=iterations, converged=converged, spec=spec
    )
