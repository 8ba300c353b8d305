"""Representational similarity analysis (RSA): compare the item×item dissimilarity structure of two spaces.

RDMs are built by row blocks from one matrix product per block (never a Python loop over pairs) and
returned as the upper triangle (i < j, row-major, length m = n(n−1)/2), like ``scipy.spatial.distance.pdist``.
Comparisons: Spearman (average ranks for ties, computed on torch), Pearson, cosine and Kendall τ_b
(scipy's O(m log m) algorithm).

Scale: each space is divided by a power of two before any product (exact), and rows are unit-normalised after
dividing by their largest |entry|, so no square overflows or underflows: RSA gives the same value at any finite
scale of either space (every comparison is invariant to a positive factor on an RDM). :func:`rdm` multiplies
Euclidean distances back to the input's units.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from alignkit._common import pow2_rescale, times_pow2, unit_rows
from alignkit._lazy import lazy_module
from alignkit._validation import ArrayLike, as_matrix, as_pair, check_choice, check_min_rows
from alignkit.metrics._registry import register
from alignkit.metrics.prepared import PreparedMeasure

if TYPE_CHECKING:
    import torch
else:
    torch = lazy_module("torch")

RDM_METRICS: tuple[str, ...] = ("correlation", "cosine", "euclidean", "sqeuclidean")
COMPARISONS: tuple[str, ...] = ("spearman", "pearson", "kendall", "cosine")

_BLOCK_BYTES = 64 * 2**20
# Gram-form squared distances lose relative precision when ‖x−y‖² ≪ ‖x‖² + ‖y‖²; such pairs are recomputed
# from explicit differences.
_REFINE_RTOL = 1e-6
# A row counts as constant when its centred values are all within this fraction of its largest |entry|.
_CONSTANT_RTOL = 1e-12


def _row_block(n: int, block_size: int | None) -> int:
    if block_size is not None:
        if isinstance(block_size, bool) or not isinstance(block_size, (int, np.integer)) or block_size < 1:
            raise ValueError(f"block_size must be a positive integer; got {block_size!r}")
        return int(block_size)
    return max(1, _BLOCK_BYTES // (8 * n))


def _unit_rows(x: torch.Tensor, centre: bool, name: str, metric: str) -> torch.Tensor:
    """Unit rows (centred over features first for the correlation RDM); a row that is constant — all zero, or
    after centring within ``_CONSTANT_RTOL`` of its largest |entry| (a relative test: any scale) — raises."""
    raw = x.abs().amax(dim=1)
    if centre:
        x = x - x.mean(dim=1, keepdim=True)
    peak = x.abs().amax(dim=1)
    bad = peak <= (_CONSTANT_RTOL * raw if centre else 0.0)
    if bool(bad.any()):
        what = "constant" if centre else "all-zero"
        rows = torch.nonzero(bad).flatten()[:5].tolist()
        raise ValueError(
            f"{name} has {int(bad.sum())} {what} row(s) (e.g. rows {rows}): the {metric} dissimilarity is "
            "undefined for them; drop them or use the 'euclidean' RDM "
            "(rsa(..., rdm_metric='euclidean'), rdm(..., metric='euclidean'))"
        )
    return unit_rows(x)


def _refine_sq(x: torch.Tensor, D2: torch.Tensor, need: torch.Tensor, s: int) -> None:
    """Recompute flagged entries of a block of squared distances from explicit differences, in place."""
    r, c = torch.nonzero(need, as_tuple=True)
    chunk = max(1, 2**22 // x.shape[1])
    for a in range(0, r.numel(), chunk):
        rr, cc = r[a : a + chunk], c[a : a + chunk]
        D2[rr, cc] = (x[s + rr] - x[s + cc]).pow(2).sum(dim=1)


def _rdm(x: torch.Tensor, metric: str, name: str, block_size: int | None = None) -> tuple[torch.Tensor, int]:
    """(RDM of x·2^−e, log2 of its unit): the true RDM is the first times 2^log2 (0 for correlation/cosine,
    e for euclidean, 2e for sqeuclidean)."""
    n = x.shape[0]
    x, e = pow2_rescale(x.double())
    log2 = {"euclidean": e, "sqeuclidean": 2 * e}.get(metric, 0)
    if metric in ("correlation", "cosine"):
        x = _unit_rows(x, metric == "correlation", name, metric)
        sq = None
    else:
        x = x - x.mean(dim=0, keepdim=True)  # translation-invariant; shrinks the norms that cancel below
        sq = (x * x).sum(dim=1)
    out = torch.empty(n * (n - 1) // 2, dtype=torch.float64, device=x.device)
    step = _row_block(n, block_size)
    pos = 0
    for s in range(0, n - 1, step):
        e = min(n - 1, s + step)
        G = x[s:e] @ x[s:].T  # rows s..e-1 against columns s..n-1
        upper = torch.arange(n - s, device=x.device)[None, :] > torch.arange(e - s, device=x.device)[:, None]
        if sq is None:
            vals = 1.0 - G[upper]
        else:
            bsq = sq[s:e, None] + sq[None, s:]
            D2 = G.mul_(-2.0).add_(bsq)
            need = upper & (D2 <= _REFINE_RTOL * bsq)
            if bool(need.any()):
                _refine_sq(x, D2, need, s)
            vals = D2[upper].clamp_min_(0.0)
            if metric == "euclidean":
                vals = vals.sqrt_()
        out[pos : pos + vals.numel()] = vals
        pos += vals.numel()
    return out, log2


def rdm(X: ArrayLike, metric: str = "correlation", *, block_size: int | None = None) -> torch.Tensor:
    """Upper triangle (i < j, row-major; the ``pdist`` layout) of the representational dissimilarity matrix.

    correlation: ``1 − corr(x_i, x_j)`` (rows centred over features); cosine: ``1 − x̂_i·x̂_j``;
    euclidean: ``‖x_i − x_j‖``; sqeuclidean: ``‖x_i − x_j‖²``. Float64, on X's device, computed by row
    blocks (``block_size`` rows at a time; default about 64 MiB per block), so memory beyond the
    m = n(n−1)/2 outputs is O(block·n). Computed on X divided by a power of two; Euclidean distances are
    multiplied back (±inf only where a true distance exceeds float64).
    """
    check_choice(metric, RDM_METRICS, "metric")
    x = as_matrix(X, "X")
    check_min_rows(x.shape[0], 2, "rdm")
    values, log2 = _rdm(x, metric, "X", block_size)
    return times_pow2(values, log2)


def average_ranks(v: torch.Tensor) -> torch.Tensor:
    """1-based ranks of a vector, ties getting the mean of their positions (``scipy.stats.rankdata``)."""
    sv, order = torch.sort(v)
    _, inverse, counts = torch.unique_consecutive(sv, return_inverse=True, return_counts=True)
    end = counts.cumsum(0).to(torch.float64)
    mean_pos = end - (counts.to(torch.float64) - 1.0) / 2.0
    ranks = torch.empty(v.shape[0], dtype=torch.float64, device=v.device)
    ranks[order] = mean_pos[inverse]
    return ranks


def _pearson(a: torch.Tensor, b: torch.Tensor) -> float:
    a = a - a.mean()
    b = b - b.mean()
    return float((a @ b) / (a.norm() * b.norm()))


def compare_rdms(a: torch.Tensor, b: torch.Tensor, compare: str = "spearman") -> float:
    """Similarity of two RDM vectors: Spearman ρ, Pearson r, cosine, or Kendall τ_b (with ties)."""
    check_choice(compare, COMPARISONS, "compare")
    if compare == "spearman":
        return _pearson(average_ranks(a), average_ranks(b))
    if compare == "pearson":
        return _pearson(a, b)
    if compare == "cosine":
        return float((a @ b) / (a.norm() * b.norm()))
    from scipy import stats  # imported here: scipy.stats costs ~0.5 s at startup

    tau = stats.kendalltau(a.cpu().numpy(), b.cpu().numpy(), variant="b")[0]
    return float(tau)


def _check_rdm_varies(v: torch.Tensor, name: str, compare: str) -> None:
    lo, hi = float(v.min()), float(v.max())
    if hi - lo <= 1e-12 * max(abs(lo), abs(hi), 1e-300):
        raise ValueError(
            f"the RDM of {name} is constant (all items equally dissimilar): RSA is undefined for compare={compare!r}"
        )


# Above this many item pairs an atlas keeps the spaces, not their RDMs (a float64 RDM per layer would be large).
_PREPARED_MAX_PAIRS = 1 << 24


def _standardised(v: torch.Tensor, compare: str) -> torch.Tensor:
    """The RDM vector whose dot products give the comparison: centred unit (Pearson; of average ranks for
    Spearman) or unit (cosine)."""
    if compare == "spearman":
        v = average_ranks(v)
    if compare in ("spearman", "pearson"):
        v = v - v.mean()
    return v / v.norm()


def _condensed_permutation(perm: torch.Tensor, n: int) -> torch.Tensor:
    """Index into a condensed RDM giving the condensed RDM of the items reordered by ``perm``."""
    i, j = torch.triu_indices(n, n, 1, device=perm.device)
    a, b = perm[i], perm[j]
    lo, hi = torch.minimum(a, b), torch.maximum(a, b)
    return lo * n - lo * (lo + 1) // 2 + hi - lo - 1


@dataclass
class _Rdm:
    n: int
    v: torch.Tensor  # standardised RDM (kendall: the RDM itself), or the space when too many pairs


@dataclass
class RsaMeasure(PreparedMeasure):
    """RSA with each space's RDM (and its ranks) computed once: an atlas pair costs one dot product.

    Spaces with more than 2^24 item pairs are kept as they are and scored per pair (memory).
    """

    name: str = "rsa"
    rdm_metric: str = "correlation"
    compare: str = "spearman"
    block_size: int | None = None

    def min_rows(self) -> int:
        return 3

    def _held(self, n: int) -> bool:
        return n * (n - 1) // 2 <= _PREPARED_MAX_PAIRS

    def prepare(self, x: torch.Tensor) -> _Rdm:
        n = x.shape[0]
        check_min_rows(n, 3, "rsa")
        if not self._held(n):
            return _Rdm(n, x)
        v, _ = _rdm(x, self.rdm_metric, "X", self.block_size)
        _check_rdm_varies(v, "X", self.compare)
        return _Rdm(n, v if self.compare == "kendall" else _standardised(v, self.compare))

    def permute(self, p: _Rdm, perm: torch.Tensor) -> _Rdm:
        perm = perm.to(p.v.device)
        return _Rdm(p.n, p.v[_condensed_permutation(perm, p.n)] if self._held(p.n) else p.v[perm])

    def score(self, pa: _Rdm, pb: _Rdm) -> float:
        if not self._held(pa.n):
            return rsa(pa.v, pb.v, rdm_metric=self.rdm_metric, compare=self.compare, block_size=self.block_size)
        if self.compare == "kendall":
            return compare_rdms(pa.v, pb.v, "kendall")
        return float(pa.v @ pb.v)

    def score_matrix(self, pa: list[_Rdm], pb: list[_Rdm]) -> np.ndarray:
        if not pa or not pb or self.compare == "kendall" or not self._held(pa[0].n):
            return super().score_matrix(pa, pb)
        return (torch.stack([p.v for p in pa]) @ torch.stack([p.v for p in pb]).T).cpu().numpy()


def _prepare_rsa(info: Any, params: dict[str, Any], **_: Any) -> RsaMeasure:
    return RsaMeasure(info.name, params["rdm_metric"], params["compare"], params.get("block_size"))


@register(
    "rsa",
    family="rsa",
    range=(-1.0, 1.0),
    invariances=("isotropic_scale", "permutation"),
    cost="O(n²(d1+d2)) RDMs + O(m log m) ranks, m = n(n−1)/2",
    description="Representational similarity analysis: correlation of the two RDMs (default correlation RDM + "
    "Spearman). Euclidean/cosine RDMs add orthogonal invariance (euclidean also translation).",
    defaults={"rdm_metric": "correlation", "compare": "spearman"},
    constraints={
        "rdm_metric": {"choices": RDM_METRICS},
        "compare": {"choices": COMPARISONS},
        "block_size": {"low": 1},
    },
    prepare=_prepare_rsa,
)
def rsa(
    X: ArrayLike,
    Y: ArrayLike,
    *,
    rdm_metric: str = "correlation",
    compare: str = "spearman",
    block_size: int | None = None,
) -> float:
    """Representational similarity analysis: ``compare(RDM(X), RDM(Y))`` over the m = n(n−1)/2 item pairs.

    Kriegeskorte, Mur, Bandettini, "Representational similarity analysis – connecting the branches of
    systems neuroscience", Frontiers in Systems Neuroscience 2008.

    rdm_metric : "correlation" (default), "cosine", "euclidean" or "sqeuclidean" (see :func:`rdm`).
    compare : "spearman" (default; Pearson of average ranks), "pearson", "cosine" (uncentred) or
        "kendall" (τ_b, ties corrected, O(m log m)). Spearman and Kendall are invariant to monotone
        transforms of either RDM. Needs n ≥ 3; a constant RDM raises.
    """
    check_choice(rdm_metric, RDM_METRICS, "rdm_metric")
    check_choice(compare, COMPARISONS, "compare")
    x, y = as_pair(X, Y)
    check_min_rows(x.shape[0], 3, "rsa")
    a, _ = _rdm(x, rdm_metric, "X", block_size)  # every comparison ignores a positive factor on an RDM
    b, _ = _rdm(y, rdm_metric, "Y", block_size)
    _check_rdm_varies(a, "X", compare)
    _check_rdm_varies(b, "Y", compare)
    return compare_rdms(a, b, compare)
