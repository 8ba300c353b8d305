"""One notion of a degenerate space, checked once where a space enters a measure, aligner or evaluation.

A space (n items × d features) is **degenerate** when its geometry cannot carry alignment:

- ``constant``: n ≥ 2 rows, all identical (zero variance): every neighbour is a tie, every kernel is flat.
  Measures check the space *as they see it* (a kNN measure with cosine similarity checks the unit rows, so
  rows that differ only in length are constant to it).
- ``non-finite``: NaN or ±Inf entries: always a clear ``ValueError`` (bad input, not a geometry).

Reported alongside, with a warning where it matters but not degenerate by itself: **rank ≤ 1** (n ≥ 3,
d ≥ 2, every centred row on one line: a collapsed layer whose one direction can still be compared), the
number of **distinct rows** (exact duplicates found by hashing the rows' bytes, confirmed byte for byte)
and the **scale** ``max |x|``.

What a measure, aligner or evaluation does with a degenerate space is declared where it is registered:
measures return NaN with a :class:`DegenerateSpaceWarning` (an atlas leaves such layers out of its best
pair and its max-statistic null), aligners raise :class:`DegenerateSpaceError`, evaluations warn (their
ties are ranked by expectation, so a constant output scores chance). Never a number that reads as alignment.
"""

from __future__ import annotations

import itertools
import warnings
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from alignkit._lazy import lazy_module

if TYPE_CHECKING:
    import torch
else:
    torch = lazy_module("torch")

POLICIES = ("nan", "raise", "warn")
_RANK1_RTOL = 1e-6  # residual off the best line, relative to the centred Frobenius norm


class DegenerateSpaceWarning(UserWarning):
    """A space is degenerate: the measure returned NaN (or the evaluation scored chance) instead of a score."""


class DegenerateSpaceError(ValueError):
    """A space is degenerate and the method cannot be fitted or computed on it."""


@dataclass(frozen=True)
class SpaceCheck:
    """What :func:`inspect_space` found in one space."""

    name: str
    n: int
    d: int
    n_distinct: int | None  # None when duplicates were not counted
    constant: bool
    rank_le_1: bool
    n_nonfinite: int
    max_abs: float

    @property
    def duplicate_fraction(self) -> float:
        """Fraction of rows that repeat an earlier row (0 when every row is distinct; NaN if not counted)."""
        if self.n_distinct is None:
            return float("nan")
        return 1.0 - self.n_distinct / self.n if self.n else 0.0

    @property
    def reasons(self) -> list[str]:
        out = []
        if self.n_nonfinite:
            out.append(f"{self.n_nonfinite} non-finite value(s)")
        if self.constant:
            out.append("constant: every row is identical")
        return out

    @property
    def collapsed(self) -> bool:
        """Rank ≤ 1 after centring without being constant: reported, not degenerate."""
        return self.rank_le_1 and not self.constant

    @property
    def degenerate(self) -> bool:
        return bool(self.reasons)

    @property
    def reason(self) -> str:
        return "; ".join(self.reasons)

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "duplicate_fraction": self.duplicate_fraction, "degenerate": self.degenerate}


def _row_hashes(a: np.ndarray) -> np.ndarray:
    """A 64-bit hash of each row's bytes: O(n·d), vectorised over row blocks (random odd multipliers,
    wrapping arithmetic), so memory stays O(block·d)."""
    words = np.ascontiguousarray(a)
    if words.dtype.itemsize not in (2, 4, 8):
        words = words.astype(np.float64)
    ints = words.view({2: np.uint16, 4: np.uint32, 8: np.uint64}[words.dtype.itemsize])
    mult = np.random.default_rng(0x5EED).integers(1, 2**63, size=a.shape[1], dtype=np.uint64) | np.uint64(1)
    out = np.empty(a.shape[0], dtype=np.uint64)
    step = max(1, (1 << 20) // max(1, a.shape[1]))
    with np.errstate(over="ignore"):
        for s in range(0, a.shape[0], step):
            block = ints[s : s + step].astype(np.uint64)
            out[s : s + step] = (block * mult).sum(axis=1, dtype=np.uint64) ^ (block[:, 0] << np.uint64(17))
    return out


def count_distinct_rows(a: np.ndarray) -> int:
    """The number of distinct rows (exact byte equality), by hashing then confirming within hash groups."""
    if a.shape[0] <= 1:
        return int(a.shape[0])
    h = _row_hashes(a)
    order = np.argsort(h, kind="stable")
    hs = h[order]
    starts = np.flatnonzero(np.r_[True, hs[1:] != hs[:-1]])
    distinct = len(starts)
    bounds = np.r_[starts, len(hs)]
    for s, e in itertools.pairwise(bounds):
        if e - s > 1:  # a hash group: count its truly distinct rows (collisions are astronomically rare)
            group = np.ascontiguousarray(a[order[s:e]])
            distinct += len(np.unique(group.view(np.dtype((np.void, group.dtype.itemsize * a.shape[1]))))) - 1
    return int(distinct)


def _rank_le_1(x: torch.Tensor, max_abs: float) -> bool:
    """Centred rows all on one line (d ≥ 2): the centred energy off the line through the mean towards the
    longest row is ≤ rtol² of the total. Three O(n·d) passes in the input's dtype, no n × d copy (a
    rescaled copy only when squares would overflow or underflow)."""
    limit = 1e15 if x.dtype == torch.float32 else 1e100
    if not 1 / limit < max_abs < limit:
        x = x.double() / max_abs
    n = x.shape[0]
    rtol = _RANK1_RTOL if x.dtype == torch.float64 else 1e-3  # float32 sums resolve ~1e-7 of the energy
    mean = x.mean(dim=0)
    sq = torch.linalg.vector_norm(x, dim=1) ** 2
    total = float(sq.double().sum()) - n * float(mean.double() @ mean.double())  # ‖X − x̄‖_F²
    if total <= rtol**2 * float(sq.double().sum()):
        return True
    u = (x[int(sq.argmax())] - mean).double()
    if not bool(u.norm() > 0):
        return False
    u = u / u.norm()
    proj = (x @ u.to(x.dtype)).double() - float(mean.double() @ u)  # (x_i − x̄)·u
    return total - float(proj @ proj) <= rtol**2 * total


def inspect_space(X: Any, name: str = "X", *, duplicates: bool = True) -> SpaceCheck:
    """Check one space (numpy array or torch tensor, n × d) for degeneracy in a few O(n·d) passes.

    ``duplicates=False`` skips counting distinct rows (the only part that hashes every row).
    """
    t = X.detach() if isinstance(X, torch.Tensor) else torch.as_tensor(np.asarray(X))
    if t.ndim != 2:
        raise ValueError(f"{name} must be 2-D (items x features); got shape {tuple(t.shape)}")
    n, d = int(t.shape[0]), int(t.shape[1])
    if not t.is_floating_point():
        t = t.double()
    lo, hi = torch.aminmax(t, dim=0)
    max_abs = float(torch.maximum(-lo.min(), hi.max()))
    n_nonfinite = 0 if np.isfinite(max_abs) else int((~torch.isfinite(t)).sum())
    if n_nonfinite:
        finite = t[torch.isfinite(t)]
        max_abs = float(finite.abs().max()) if finite.numel() else float("nan")
        constant = False
    else:
        # Equal at working precision: a derived view (unit rows of collinear data) differs only by round-off.
        tol = 16 * torch.finfo(t.dtype).eps * max_abs
        constant = n >= 2 and bool(((hi - lo) <= tol).all())
    n_distinct = count_distinct_rows(t.cpu().numpy()) if duplicates else None
    rank1 = constant or (n_nonfinite == 0 and n >= 3 and d >= 2 and _rank_le_1(t, max_abs))
    return SpaceCheck(name, n, d, n_distinct, constant, bool(rank1), n_nonfinite, max_abs)


def handle(checks: list[SpaceCheck], policy: str, what: str) -> bool:
    """Apply a registered policy to the checks of the spaces a method received.

    Returns True when the method should not compute (the caller returns NaN); ``"raise"`` raises a
    :class:`DegenerateSpaceError`, ``"warn"`` only warns and returns False, ``"nan"`` warns and returns True.
    """
    for c in checks:
        if c.n_nonfinite:  # bad input, not a degenerate geometry: always the same clear error
            raise ValueError(f"{c.name} contains {c.n_nonfinite} NaN or Inf value(s); clean or impute them first")
    for c in checks:
        if c.collapsed:
            warnings.warn(
                f"{what}: {c.name} has rank ≤ 1 after centring (a collapsed space: every row on one line); "
                "its score compares a single direction",
                DegenerateSpaceWarning,
                stacklevel=4,
            )
    bad = [c for c in checks if c.degenerate]
    if not bad:
        return False
    detail = "; ".join(f"{c.name} is degenerate ({c.reason})" for c in bad)
    if policy == "raise":
        raise DegenerateSpaceError(f"{what}: {detail}")
    tail = "the score is NaN" if policy == "nan" else "its scores are chance level at best"
    warnings.warn(f"{what}: {detail}; {tail}", DegenerateSpaceWarning, stacklevel=4)
    return policy == "nan"


__all__ = [
    "POLICIES",
    "DegenerateSpaceError",
    "DegenerateSpaceWarning",
    "SpaceCheck",
    "count_distinct_rows",
    "handle",
    "inspect_space",
]
