"""Subspace diagnostics: energy bases, mode subspace overlap (MSO), principal angles, update projections.

Ponkshe et al., "Safety Subspaces are Not (Linearly) Distinct: A Fine-Tuning Case Study", ICLR 2026
(CERT-Lab/safety-subspaces; docs/methods.md §3.8).

**Orientation.** A matrix ``M`` (m × n) spans a subspace through its left singular vectors: with the default
``span="columns"`` the subspace is the column space of M in R^m (d = m rows), the paper's convention for a
weight matrix or a weight update ΔW (out × in). For activations stacked as items × features (n × d, the
toolkit's convention everywhere else) pass ``span="rows"``: the subspace is then spanned by the rows, in feature
space R^d (the paper's ``_left_basis(A.T)``). Nothing is centred (the paper does not centre).

**Energy basis.** ``M = UΣVᵀ``; ``Q = U[:, :k]`` with the smallest k such that ``Σ_{i≤k} s_i² ≥ f·‖M‖_F²``.
A full SVD when ``max(m, n) ≤ 10,000``, else ``torch.svd_lowrank(q=⌊0.25·min(m,n)⌋, niter=2)``; the energy is
always measured against the full ``‖M‖_F²`` (the reference measured it against the truncated spectrum, so its
low-rank k captured f of the q computed directions only). When the q computed directions hold less than f of
``‖M‖_F²``, q is doubled (at q = min(m, n) the full SVD is used).

**MSO.** ``‖Q_Aᵀ Q_B‖_F² / min(k_A, k_B)`` = the mean of cos² over the min(k_A, k_B) principal angles, in [0, 1]:
1 when the smaller subspace lies inside the larger, 0 when they are orthogonal. For a Haar-random k_B-subspace
and any fixed k_A-subspace of R^d, ``E‖Q_AᵀQ_B‖_F² = k_A·k_B/d``, so ``E[MSO] = max(k_A, k_B)/d``: the
``baseline`` reported (the paper's ``mso_random``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from alignkit._lazy import lazy_module
from alignkit._validation import ArrayLike, as_matrix
from alignkit.diagnostics._registry import register
from alignkit.diagnostics._result import DiagnosticResult

if TYPE_CHECKING:
    import torch
else:
    torch = lazy_module("torch")

FULL_SVD_MAX = 10_000  # full SVD when max(m, n) <= this, else a randomized low-rank SVD
SPANS = ("columns", "rows")
SVD_METHODS = ("auto", "full", "lowrank")
GROUP_BY = ("layer", "tensor", "none")
BASES = ("top", "random_k")
LOWRANK_OVERSAMPLE = 10  # extra directions for the randomized top-k of a projection basis
# The transformer block a parameter belongs to: "model.layers.12.mlp.up_proj.weight" → "model.layers.12",
# "transformer.h.3.attn.c_attn.weight" → "transformer.h.3", "encoder.layer.5..." → "encoder.layer.5",
# "blocks.7.attn.qkv.weight" → "blocks.7". (One backslash per escape: the reference doubled them in a raw
# string, so its pattern never matched and every group collapsed to the first name component.)
LAYER_PATTERN = r"^((?:.*\.)?(?:layers|layer|h|blocks|block)\.\d+)(?:\.|$)"


def _check_fraction(fraction: float, name: str = "fraction") -> float:
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a number in (0, 1]; got {fraction!r}")
    f = float(fraction)
    if not 0.0 < f <= 1.0:
        raise ValueError(f"{name} must be in (0, 1] (a fraction of the energy ‖M‖_F²); got {fraction!r}")
    return f


def _check_choice(value: Any, allowed: tuple[str, ...], name: str) -> str:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, allowed))}; got {value!r}")
    return str(value)


def _oriented(M: ArrayLike, span: str, name: str) -> torch.Tensor:
    """M as a checked floating tensor whose columns span the subspace (transposed for ``span="rows"``)."""
    _check_choice(span, SPANS, "span")
    t = as_matrix(M, name)
    return t.T if span == "rows" else t


# ------------------------------------------------------------------------------------------ energy basis


@dataclass(frozen=True)
class EnergyBasis:
    """An orthonormal basis ``Q`` (d × k, on M's device) of the top-k left singular directions of M.

    ``captured`` = ``Σ_{i≤k}s_i²/‖M‖_F²`` (≥ the requested fraction up to the randomized SVD's error), ``rank``
    the numerical rank seen (of the computed directions), ``method`` "full" or "lowrank(q=...)".
    """

    Q: torch.Tensor
    k: int
    captured: float
    total_energy: float
    rank: int
    method: str

    @property
    def d(self) -> int:
        return int(self.Q.shape[0])


def _lowrank(M: torch.Tensor, q: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``torch.svd_lowrank(M, q, niter=2)`` under a fixed seed (the global RNG state is restored after)."""
    devices = [M.device.index or 0] if M.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        U, S, _ = torch.svd_lowrank(M, q=q, niter=2)
    return U, S


def _spectrum(M: torch.Tensor, method: str, seed: int, enough: Callable[[np.ndarray], bool]) -> tuple[Any, Any, str]:
    """Left singular vectors and values of M: full SVD, or randomized with q doubled until ``enough(s)``."""
    m, n = M.shape
    r = min(m, n)
    if method == "full" or (method == "auto" and max(m, n) <= FULL_SVD_MAX):
        U, S, _ = torch.linalg.svd(M, full_matrices=False)
        return U, S, "full"
    q = max(1, int(0.25 * r))
    while q < r:
        U, S = _lowrank(M, q, seed)
        if enough(S.double().cpu().numpy()):
            return U, S, f"lowrank(q={q})"
        q = min(2 * q, r)
    U, S, _ = torch.linalg.svd(M, full_matrices=False)
    return U, S, "full"


def _numerical_rank(s: np.ndarray, shape: tuple[int, int], dtype: torch.dtype) -> int:
    if s.size == 0 or s[0] <= 0:
        return 0
    tol = s[0] * max(shape) * float(torch.finfo(dtype).eps)
    return int(np.count_nonzero(s > tol))


def _energy_k(s: np.ndarray, target: float, fraction: float, rank: int) -> int:
    """The smallest k with ``Σ_{i≤k} s_i² ≥ target`` (= f·‖M‖_F²; capped at the numerical rank, ≥ 1)."""
    if fraction >= 1.0:
        return max(1, rank)
    cum = np.cumsum(s.astype(np.float64) ** 2)
    k = int(np.searchsorted(cum, target, side="left")) + 1
    return max(1, min(k, rank))


def energy_basis(
    M: ArrayLike,
    fraction: float = 0.9,
    *,
    span: str = "columns",
    method: str = "auto",
    seed: int = 0,
) -> EnergyBasis:
    """``Q = U[:, :k]``, the smallest k with ``Σ_{i≤k} s_i² ≥ f·‖M‖_F²`` (Ponkshe et al., ICLR 2026).

    ``method``: "auto" (full SVD when ``max(m, n) ≤ 10,000``, else ``torch.svd_lowrank(q=⌊0.25·min(m, n)⌋,
    niter=2)``, q doubled while the computed directions hold less than f of ‖M‖_F²), "full" or "lowrank".
    ``fraction = 1`` keeps every direction above the numerical rank tolerance. ``span="rows"`` uses Mᵀ (the
    feature space of an items × features matrix). ``seed`` fixes the randomized SVD.
    """
    f = _check_fraction(fraction)
    _check_choice(method, SVD_METHODS, "method")
    t = _oriented(M, span, "M")
    total = float(torch.linalg.vector_norm(t).double() ** 2)
    if total == 0.0:
        raise ValueError("M is zero (‖M‖_F = 0): it spans no subspace")
    # Up to round-off (the spectrum and ‖M‖_F² are computed separately): f = 1 keeps the whole spectrum.
    slack = 1e-6 if f >= 1.0 else 8 * float(torch.finfo(t.dtype).eps)
    target = f * total * (1.0 - slack)

    def enough(s: np.ndarray) -> bool:
        return bool(np.sum(s**2) >= target)

    U, S, how = _spectrum(t, method, seed, enough)
    s = S.double().cpu().numpy()
    rank = _numerical_rank(s, (int(t.shape[0]), int(t.shape[1])), t.dtype)
    k = _energy_k(s, target, f, rank)
    captured = float(np.sum(s[:k] ** 2) / total)
    return EnergyBasis(Q=U[:, :k], k=k, captured=captured, total_energy=total, rank=rank, method=how)


# ------------------------------------------------------------------------------------------ overlap


@dataclass(frozen=True)
class SubspaceOverlap(DiagnosticResult):
    """Mode subspace overlap of two energy subspaces (``value`` = ``mso``).

    ``baseline`` = ``max(k_a, k_b)/d``, the expected MSO of a Haar-random subspace (``E‖Q_AᵀQ_B‖_F² =
    k_a·k_b/d``); ``adjusted`` = ``(mso − baseline)/(1 − baseline)`` (0 at chance, 1 at containment; NaN when
    baseline = 1); ``angles``: the min(k_a, k_b) principal angles in radians, ascending; ``captured_a/b`` the
    fractions of ‖A‖_F², ‖B‖_F² the bases hold.
    """

    mso: float
    k_a: int
    k_b: int
    d: int
    baseline: float
    adjusted: float
    fraction: float
    captured_a: float
    captured_b: float
    span: str
    method_a: str
    method_b: str
    angles: np.ndarray

    @property
    def value(self) -> float:
        return self.mso


def _cosines(Qa: torch.Tensor, Qb: torch.Tensor) -> np.ndarray:
    """Singular values of ``Q_AᵀQ_B`` (float64, clipped to [0, 1], descending): the principal cosines."""
    S = Qa.double().T @ Qb.double()
    sv = torch.linalg.svdvals(S).cpu().numpy()
    return np.clip(sv, 0.0, 1.0)


def _check_ambient(a: torch.Tensor, b: torch.Tensor, span: str) -> None:
    if a.shape[0] != b.shape[0]:
        where = "rows" if span == "columns" else "columns"
        raise ValueError(
            f"A and B must live in the same space: with span={span!r} their {where} are the ambient dimension; "
            f"got {a.shape[0]} and {b.shape[0]} (span='rows' for items × features activations, 'columns' for weights)"
        )


@register(
    "subspace_overlap",
    family="subspace",
    inputs=("A", "B"),
    range=(0.0, 1.0),
    higher_is_better=None,
    cost="one SVD per matrix (full when max(m, n) ≤ 10,000, else randomized) + O(d·k_A·k_B)",
    description="Mode subspace overlap (Ponkshe et al., 'Safety Subspaces are Not (Linearly) Distinct', ICLR "
    "2026): MSO = ‖Q_AᵀQ_B‖_F²/min(k_A,k_B) of the energy bases holding `fraction` of each ‖M‖_F², in [0, 1] "
    "(mean cos² of the principal angles). Random baseline max(k_A,k_B)/d. span='columns' (weights, d = rows) "
    "or 'rows' (items × features activations, d = features).",
    constraints={
        "fraction": {"low": 0.0, "low_open": True, "high": 1.0},
        "span": {"choices": SPANS},
        "method": {"choices": SVD_METHODS},
    },
    paired_rows=False,
    resample=False,
)
def subspace_overlap(
    A: ArrayLike,
    B: ArrayLike,
    *,
    fraction: float = 0.9,
    span: str = "columns",
    method: str = "auto",
    seed: int = 0,
) -> SubspaceOverlap:
    """``MSO = ‖Q_AᵀQ_B‖_F² / min(k_A, k_B)`` ∈ [0, 1] of the energy bases of A and B (see the module doc).

    Invariant to any invertible right factor (``A`` vs ``A·R`` span the same columns: only the energy split,
    hence k, may change with R). Principal angles ``θ_i = arccos σ_i(Q_AᵀQ_B)`` (σ clipped to [0, 1]).
    """
    f = _check_fraction(fraction)
    a = _oriented(A, span, "A")
    b = _oriented(B, span, "B")
    _check_ambient(a, b, span)
    ba = energy_basis(a, f, method=method, seed=seed)
    bb = energy_basis(b, f, method=method, seed=seed)
    cos = _cosines(ba.Q, bb.Q)
    kmin = min(ba.k, bb.k)
    mso = float(min(1.0, np.sum(cos**2) / kmin))
    d = int(a.shape[0])
    baseline = max(ba.k, bb.k) / d
    adjusted = (mso - baseline) / (1.0 - baseline) if baseline < 1.0 else float("nan")
    return SubspaceOverlap(
        mso=mso,
        k_a=ba.k,
        k_b=bb.k,
        d=d,
        baseline=baseline,
        adjusted=adjusted,
        fraction=f,
        captured_a=ba.captured,
        captured_b=bb.captured,
        span=span,
        method_a=ba.method,
        method_b=bb.method,
        angles=np.arccos(cos),
    )


def principal_angles(A: ArrayLike, B: ArrayLike, *, span: str = "columns") -> np.ndarray:
    """Principal angles (radians, ascending) between the full column spaces of A and B (rows with
    ``span="rows"``): ``arccos σ_i(Q_AᵀQ_B)`` with Q orthonormal bases of the numerical ranges (full SVD),
    σ clipped to [0, 1]; min(rank A, rank B) angles. scipy.linalg.subspace_angles returns the same, descending.
    """
    a = _oriented(A, span, "A")
    b = _oriented(B, span, "B")
    _check_ambient(a, b, span)
    qa = energy_basis(a, 1.0, method="full").Q
    qb = energy_basis(b, 1.0, method="full").Q
    return np.arccos(_cosines(qa, qb))


def random_subspace(d: int, k: int, *, seed: int = 0) -> np.ndarray:
    """A Haar-random orthonormal basis (d × k, float64): QR of a Gaussian matrix with the signs fixed by
    diag(R) > 0. The MSO of any fixed k_A-subspace with it has expectation ``max(k_A, k)/d``."""
    if isinstance(d, bool) or isinstance(k, bool) or not 1 <= int(k) <= int(d):
        raise ValueError(f"need integers 1 <= k <= d; got d={d!r}, k={k!r}")
    rng = np.random.default_rng(seed)
    Q, R = np.linalg.qr(rng.standard_normal((int(d), int(k))))
    return Q * np.sign(np.diag(R))


# ------------------------------------------------------------------------------------------ projections

Tensors = Mapping[str, Any]


def layer_key(name: str, pattern: str = LAYER_PATTERN) -> str:
    """The group of a parameter name: the first capture group of ``pattern`` (the whole match when it has
    none), e.g. "model.layers.12.mlp.up_proj.weight" → "model.layers.12"; names it does not match (embeddings,
    final norms, heads) group by their module path, the name without its last component
    ("model.embed_tokens.weight" → "model.embed_tokens", "lm_head.weight" → "lm_head")."""
    m = re.match(pattern, name)
    if m:
        return m.group(1) if m.re.groups else m.group(0)
    return name.rsplit(".", 1)[0] if "." in name else name


def _as_tensor(v: Any, name: str) -> torch.Tensor | None:
    """A floating tensor (None for integer/bool buffers, which carry no update)."""
    t = v.detach() if isinstance(v, torch.Tensor) else torch.as_tensor(np.asarray(v))
    if t.is_complex():
        raise TypeError(f"{name} must hold real numbers; got {t.dtype}")
    if not t.is_floating_point():
        return None
    if t.dtype in (torch.float16, torch.bfloat16):
        t = t.float()
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name} contains NaN or Inf value(s)")
    return t


def _as_named(x: Any, what: str) -> dict[str, Any]:
    if isinstance(x, Mapping):
        if not x:
            raise ValueError(f"{what} is empty: give name → tensor, or one matrix")
        return {str(k): v for k, v in x.items()}
    return {"weight": x}


def _pairs(U: Any, V: Any) -> list[tuple[str, torch.Tensor, torch.Tensor]]:
    if isinstance(U, Mapping) != isinstance(V, Mapping):
        raise TypeError("U and V must both be mappings (name → tensor) or both single arrays")
    u_named, v_named = _as_named(U, "U"), _as_named(V, "V")
    missing = [k for k in u_named if k not in v_named]
    if missing:
        shown = ", ".join(map(repr, missing[:5])) + (" ..." if len(missing) > 5 else "")
        raise ValueError(f"V has no tensor for {len(missing)} name(s) of U: {shown}")
    out = []
    for name, u in u_named.items():
        tu = _as_tensor(u, f"U[{name!r}]")
        tv = _as_tensor(v_named[name], f"V[{name!r}]")
        if tu is None or tv is None:
            if (tu is None) != (tv is None):
                raise TypeError(f"U[{name!r}] and V[{name!r}]: one is floating point and the other is not")
            continue
        if tu.shape != tv.shape:
            raise ValueError(f"U[{name!r}] and V[{name!r}] differ in shape: {tuple(tu.shape)} vs {tuple(tv.shape)}")
        dtype = torch.promote_types(tu.dtype, tv.dtype)
        out.append((name, tu.to(dtype), tv.to(device=tu.device, dtype=dtype)))
    if not out:
        raise ValueError("U and V hold no floating-point tensors")
    return out


def _projection_basis(V2: torch.Tensor, frac: float, basis: str, seed: int) -> torch.Tensor:
    """L: k = max(1, round(frac·min(m, n))) left singular vectors of the 2-D V (at most its numerical rank)."""
    m, n = V2.shape
    r = min(m, n)
    k = max(1, round(frac * r))
    if basis == "top" and max(m, n) > FULL_SVD_MAX and k + LOWRANK_OVERSAMPLE < r:
        U, S = _lowrank(V2, k + LOWRANK_OVERSAMPLE, seed)
    else:
        U, S, _ = torch.linalg.svd(V2, full_matrices=False)
    s = S.double().cpu().numpy()
    rank = _numerical_rank(s, (m, n), V2.dtype)
    k = min(k, rank)
    if basis == "top":
        return U[:, :k]
    gen = torch.Generator().manual_seed(seed)
    idx = torch.randperm(rank, generator=gen)[:k].to(U.device)
    return U[:, idx]


def projection_basis(V: ArrayLike, *, frac: float = 0.1, basis: str = "top", seed: int = 0) -> torch.Tensor:
    """The basis L (m × k) that :func:`update_projection` projects a 2-D update onto: the top
    ``k = max(1, round(frac·min(m, n)))`` left singular vectors of V (``basis="top"``), or k of V's singular
    directions drawn at random (``"random_k"``, the paper's RandomK control); at most V's numerical rank."""
    f = _check_fraction(frac, "frac")
    _check_choice(basis, BASES, "basis")
    return _projection_basis(as_matrix(V, "V"), f, basis, seed)


def _parallel(u: torch.Tensor, v: torch.Tensor, frac: float, basis: str, seed: int) -> torch.Tensor:
    """U_∥: ``LLᵀU`` for a 2-D (or reshaped ≥ 3-D) tensor, ``(⟨U,V⟩/⟨V,V⟩)V`` for 0-D/1-D ones."""
    if v.ndim <= 1:
        vv = float((v * v).sum(dtype=torch.float64))
        coeff = float((u * v).sum(dtype=torch.float64)) / vv if vv > 0 else 0.0
        return v * coeff
    u2, v2 = u.reshape(u.shape[0], -1), v.reshape(v.shape[0], -1)
    L = _projection_basis(v2, frac, basis, seed)
    return (L @ (L.T @ u2)).reshape(u.shape)


def project_update(U: Any, V: Any, *, frac: float = 0.1, basis: str = "top", seed: int = 0) -> Any:
    """The component of the update U inside V's subspace, ``U_∥ = LLᵀU`` per tensor (see
    :func:`update_projection`); same structure as U (a dict for a dict, else one tensor). Integer buffers
    are left out. ``U − U_∥`` is the orthogonal part (the paper's "orth" merge)."""
    f = _check_fraction(frac, "frac")
    _check_choice(basis, BASES, "basis")
    out = {name: _parallel(u, v, f, basis, seed + i) for i, (name, u, v) in enumerate(_pairs(U, V))}
    return out if isinstance(U, Mapping) else out["weight"]


def gaussian_like(V: Any, *, seed: int = 0) -> Any:
    """The paper's "Random" control: standard Gaussian tensors with V's names and shapes (float32, V's device),
    to pass as V to :func:`update_projection` in place of the alignment update."""
    gen_seed = int(seed)

    def one(v: Any, i: int) -> torch.Tensor:
        t = v if isinstance(v, torch.Tensor) else torch.as_tensor(np.asarray(v))
        gen = torch.Generator(device=t.device).manual_seed(gen_seed + i)
        return torch.randn(t.shape, generator=gen, device=t.device, dtype=torch.float32)

    if isinstance(V, Mapping):
        return {k: one(v, i) for i, (k, v) in enumerate(V.items())}
    return one(V, 0)


@dataclass(frozen=True)
class UpdateProjection(DiagnosticResult):
    """How much of a task update U lies in the subspace of an alignment update V (``value`` = ``energy_kept``).

    Totals over every tensor: ``energy_kept = Σ‖U_∥‖²/Σ‖U‖²``, ``cos_uv = Σ⟨U,V⟩/(sqrt(Σ‖U‖²)·sqrt(Σ‖V‖²))``
    (∈ [−1, 1], negative when U undoes V), ``cos_u_parallel = Σ⟨U,U_∥⟩/(sqrt(Σ‖U‖²)·sqrt(Σ‖U_∥‖²))``
    (= sqrt(energy_kept) for an orthogonal projection). ``groups``: one tidy dict per group (see :meth:`rows`).
    """

    energy_kept: float
    cos_uv: float
    cos_u_parallel: float
    energy_u: float
    energy_removed: float
    frac: float
    basis: str
    group_by: str
    n_tensors: int
    groups: tuple[dict[str, Any], ...]

    @property
    def value(self) -> float:
        return self.energy_kept

    def as_dict(self) -> dict[str, Any]:
        out = super().as_dict()
        out.pop("groups", None)
        return out

    def rows(self) -> list[dict[str, Any]]:
        """One row per group and a last row ``group="total"``: group, n_tensors, energy_u (Σ‖U‖²),
        energy_kept (Σ‖U_∥‖²/Σ‖U‖²), energy_removed (Σ‖U − U_∥‖²), cos_uv."""
        total = {
            "group": "total",
            "n_tensors": self.n_tensors,
            "energy_u": self.energy_u,
            "energy_kept": self.energy_kept,
            "energy_removed": self.energy_removed,
            "cos_uv": self.cos_uv,
        }
        return [dict(g) for g in self.groups] + [total]

    def to_pandas(self) -> Any:
        import pandas as pd

        return pd.DataFrame(self.rows())


def _ratio(num: float, den: float) -> float:
    return num / den if den > 0 else float("nan")


def _cos(uv: float, uu: float, vv: float) -> float:
    # sqrt(Σ‖U‖²)·sqrt(Σ‖V‖²): the reference's sqrt(Σ⟨U,V⟩) was complex when U and V point apart.
    den = math.sqrt(uu) * math.sqrt(vv)
    return max(-1.0, min(1.0, uv / den)) if den > 0 else float("nan")


@register(
    "update_projection",
    family="subspace",
    inputs=("U", "V"),
    range=(0.0, 1.0),
    higher_is_better=None,
    cost="an SVD of each 2-D tensor of V (randomized top-k when max(m, n) > 10,000) + O(m·n·k) per tensor",
    description="Projection of a task update U onto the top-k left singular subspace of an alignment update V "
    "(Ponkshe et al., 'Safety Subspaces are Not (Linearly) Distinct', ICLR 2026): energy kept Σ‖LLᵀU‖²/Σ‖U‖² "
    "with k = max(1, round(frac·min(m,n))) per matrix ((⟨U,V⟩/⟨V,V⟩)V for 1-D tensors), cos(U,V), per-layer "
    "rows. U, V: name → tensor (state-dict deltas) or one matrix.",
    constraints={
        "frac": {"low": 0.0, "low_open": True, "high": 1.0},
        "basis": {"choices": BASES},
        "group_by": {"choices": GROUP_BY},
    },
    paired_rows=False,
    resample=False,
)
def update_projection(
    U: Any,
    V: Any,
    *,
    frac: float = 0.1,
    basis: str = "top",
    group_by: str = "layer",
    layer_pattern: str = LAYER_PATTERN,
    seed: int = 0,
) -> UpdateProjection:
    """Projection diagnostics of a task update U (fine-tuned − aligned weights) on an alignment update V
    (aligned − base), tensor by tensor (Ponkshe et al., ICLR 2026).

    Per 2-D tensor (≥ 3-D ones reshaped to (shape[0], −1)): ``U_∥ = LLᵀU`` with L the top
    ``k = max(1, round(frac·min(m, n)))`` left singular vectors of V (at most V's numerical rank; Python's
    ``round``, as the paper's code); 0-D/1-D tensors: ``U_∥ = (⟨U,V⟩/⟨V,V⟩)V``. ``frac = 1`` keeps V's whole
    column space (the paper's code switched to the 1-D rule there). ``basis="random_k"``: k of V's singular
    directions drawn at random (the paper's RandomK control); :func:`gaussian_like` gives its Random control.
    Integer buffers are skipped; U's names must all be in V (V's extra names are ignored).

    ``group_by``: "layer" (by :func:`layer_key` with ``layer_pattern``; the paper's code meant this but its
    regex never matched), "tensor" (every name its own group) or "none" (one group).
    """
    f = _check_fraction(frac, "frac")
    _check_choice(basis, BASES, "basis")
    _check_choice(group_by, GROUP_BY, "group_by")
    try:
        re.compile(layer_pattern)
    except re.error as exc:
        raise ValueError(f"layer_pattern is not a regular expression: {exc}") from None
    # per group: Σ‖U‖², Σ‖U_∥‖², Σ⟨U,V⟩, Σ‖V‖², Σ‖U − U_∥‖², Σ⟨U,U_∥⟩ (float64) and the tensor count
    acc: dict[str, np.ndarray] = {}
    counts: dict[str, int] = {}
    for i, (name, u, v) in enumerate(_pairs(U, V)):
        p = _parallel(u, v, f, basis, seed + i)
        key = layer_key(name, layer_pattern) if group_by == "layer" else name if group_by == "tensor" else "all"
        r = u - p
        sums = [(a * b).sum(dtype=torch.float64).item() for a, b in ((u, u), (p, p), (u, v), (v, v), (r, r), (u, p))]
        acc[key] = acc.get(key, np.zeros(6)) + np.asarray(sums)
        counts[key] = counts.get(key, 0) + 1
    groups = []
    for key, (uu, pp, uv, vv, rr, _) in acc.items():
        groups.append(
            {
                "group": key,
                "n_tensors": counts[key],
                "energy_u": float(uu),
                "energy_kept": _ratio(pp, uu),
                "energy_removed": float(rr),
                "cos_uv": _cos(uv, uu, vv),
            }
        )
    uu, pp, uv, vv, rr, up = (float(x) for x in np.sum(list(acc.values()), axis=0))
    n_tensors = sum(counts.values())
    return UpdateProjection(
        energy_kept=_ratio(pp, uu),
        cos_uv=_cos(uv, uu, vv),
        cos_u_parallel=_cos(up, uu, pp),
        energy_u=uu,
        energy_removed=rr,
        frac=f,
        basis=basis,
        group_by=group_by,
        n_tensors=n_tensors,
        groups=tuple(groups),
    )


projection_diagnostics = update_projection  # the name the design notes use


__all__ = [
    "FULL_SVD_MAX",
    "LAYER_PATTERN",
    "EnergyBasis",
    "SubspaceOverlap",
    "UpdateProjection",
    "energy_basis",
    "gaussian_like",
    "layer_key",
    "principal_angles",
    "project_update",
    "projection_basis",
    "projection_diagnostics",
    "random_subspace",
    "subspace_overlap",
    "update_projection",
]
