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

import math
import warnings
from dataclasses import dataclass, field, fields
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


class DuplicateRowsWarning(DegenerateSpaceWarning):
    """A space has exact duplicate rows: a neighbourhood measure's neighbours (and its null) hinge on ties."""


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
    also: tuple[str, ...] = ()  # further reasons a particular measure found (e.g. neighbourhoods decided by ties)
    group_sizes: np.ndarray | None = field(default=None, repr=False, compare=False)  # of identical rows, if counted
    moments: Any = field(default=None, repr=False, compare=False)  # ColumnMoments of the array checked (host arrays)

    def tied_fraction(self, k: int) -> float:
        """Fraction of rows with at least ``k`` identical copies: their k nearest neighbours are all ties
        (at distance 0), so any k-neighbourhood measure is decided by tie-breaking for them."""
        if self.group_sizes is None:
            return float("nan")
        sizes = self.group_sizes
        return float(sizes[sizes > k].sum()) / self.n if self.n else 0.0

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
        return out + list(self.also)

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
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("group_sizes", "moments")}
        out["also"] = list(self.also)
        return {**out, "duplicate_fraction": self.duplicate_fraction, "degenerate": self.degenerate}


_BLOCK_ELEMENTS = 1 << 16  # rows per block ≈ 64K / d: a check holds O(block·d) beyond its input (≈ 1 MB)
_PROBE_ROWS = 256  # rows that usually settle the rank-≤1 test without a pass (see _rank_le_1)


def _blocks(a: Any, n: int, d: int) -> Any:
    """Row blocks of ``a`` (a numpy array, memory map or torch tensor) as float numpy arrays on the host,
    without copying the whole array. numpy's single-threaded reductions on blocks are an order of magnitude
    faster here than torch's (whose OpenMP workers contend with BLAS on small inputs); a CUDA tensor is read
    block by block (a host copy of one block at a time)."""
    step = max(1, _BLOCK_ELEMENTS // max(1, d))
    for s in range(0, n, step):
        block = a[s : s + step]
        if isinstance(block, torch.Tensor):
            t = block.detach()
            if t.dtype in (torch.float16, torch.bfloat16) or not t.is_floating_point():
                t = t.float() if t.is_floating_point() else t.double()  # exact; numpy has no bfloat16
            block = t.cpu().numpy()
        b = np.asarray(block)
        if b.dtype.kind != "f" or b.dtype == np.float16:
            b = b.astype(np.float32 if b.dtype == np.float16 else np.float64)
        yield s, b


def _row_hashes(block: np.ndarray, mult: np.ndarray) -> np.ndarray:
    """Two independent 64-bit hashes of each row's values, as an (m, 2) array: the row's bits, as 64-bit words (one
    float64, two float32 values, or one narrower value widened), are mixed by a bijection (MurmurHash3's finaliser),
    then summed with random odd multipliers (wrapping arithmetic). 128 bits, so distinct rows collide with
    probability ~n²/2¹²⁸. The mixing matters: a float with few mantissa bits (1.0 = 0x3FF0…0) times a multiplier
    keeps only the multiplier's low bits, so without it small-integer rows such as (1, 0) and (0, 1) could collide."""
    words = np.ascontiguousarray(block)
    if words.dtype.kind == "f":
        words = words + words.dtype.type(0)  # −0.0 + 0.0 = +0.0: equal values hash equally (and a copy of our own)
    if words.dtype.itemsize not in (2, 4, 8):
        words = words.astype(np.float64)
    size = words.dtype.itemsize
    if words.dtype.kind == "f" and (size == 8 or (size == 4 and words.shape[1] % 2 == 0)):
        x = words.view(np.uint64)  # mixed in place; float32 values in pairs: half the words, no widening copy
    else:
        x = words.view({2: np.uint16, 4: np.uint32, 8: np.uint64}[size]).astype(np.uint64)
    with np.errstate(over="ignore"):
        for c in _FMIX:
            x ^= x >> np.uint64(33)
            x *= c
        x ^= x >> np.uint64(33)
        return np.stack([(x * m[: x.shape[1]]).sum(axis=1, dtype=np.uint64) for m in mult], axis=1)


_FMIX = (np.uint64(0xFF51AFD7ED558CCD), np.uint64(0xC4CEB9FE1A85EC53))


def _row_keys(a: Any) -> np.ndarray:
    """128-bit hashes of the rows (see :func:`_row_hashes`) as one void key per row, block by block."""
    n, d = int(a.shape[0]), int(a.shape[1])
    rng = np.random.default_rng(0x5EED)
    mult = [rng.integers(1, 2**63, size=d, dtype=np.uint64) | np.uint64(1) for _ in range(2)]
    h = np.empty((n, 2), dtype=np.uint64)
    for s, b in _blocks(a, n, d):
        h[s : s + b.shape[0]] = _row_hashes(b, mult)
    return h.view(np.dtype((np.void, 16))).ravel()


def duplicate_groups(a: Any) -> np.ndarray:
    """The sizes of the groups of identical rows (one entry per distinct row), from 128-bit row hashes
    computed block by block: O(n·d) time, O(n) memory, vectorised."""
    if int(a.shape[0]) == 0:
        return np.zeros(0, dtype=np.int64)
    _, counts = np.unique(_row_keys(a), return_counts=True)
    return counts.astype(np.int64)


def repeated_rows(a: Any) -> tuple[np.ndarray, np.ndarray] | None:
    """``(first, inverse)`` when ``a`` has identical rows: ``a[first]`` are its distinct rows (each at its first
    occurrence, in order) and ``a[first][inverse]`` is ``a``; None when every row is distinct. By the 128-bit row
    hashes of :func:`duplicate_groups` (O(n·d))."""
    n = int(a.shape[0])
    if n < 2:
        return None
    _, first, inverse = np.unique(_row_keys(a), return_index=True, return_inverse=True)
    if len(first) == n:
        return None
    order = np.argsort(first)  # distinct rows in order of first occurrence
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    return first[order], rank[inverse.ravel()]


def distinct_rows(a: np.ndarray) -> np.ndarray:
    """The distinct rows of a host array in order of first occurrence (−0.0 equals 0.0), by :func:`repeated_rows`;
    ``a`` itself when every row is distinct."""
    repeats = repeated_rows(a)
    return a if repeats is None else a[repeats[0]]


def count_distinct_rows(a: Any) -> int:
    """The number of distinct rows (by 128-bit row hashes; see :func:`duplicate_groups`)."""
    return len(duplicate_groups(a))


def _moments(a: Any, n: int, d: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One pass: the smallest and largest entry (0-d arrays in the block dtype) and the column sums in float64,
    block by block (they serve the measures' centring too, see :mod:`alignkit._known`). Whole-block min/max
    run ~8× faster than per-column ones (numpy's axis-0 reductions walk 64-entry rows at d = 64); the
    per-column ranges are needed only when the probe in :func:`_constant` cannot decide."""
    lo = hi = None
    total = np.zeros(d, dtype=np.float64)
    ones: np.ndarray | None = None
    for _, b in _blocks(a, n, d):
        blo, bhi = b.min(), b.max()
        lo = blo if lo is None else np.minimum(lo, blo)
        hi = bhi if hi is None else np.maximum(hi, bhi)
        if ones is None or ones.dtype != b.dtype or ones.size < b.shape[0]:
            ones = np.ones(b.shape[0], dtype=b.dtype)
        # BLAS gemv: ~10x faster than a float64-accumulating numpy sum of a float32 block; its blocked
        # accumulation keeps the relative error ~1e-7 (float32) — means to a few ulps, ample for centring.
        total += ones[: b.shape[0]] @ b
    assert lo is not None and hi is not None
    return np.asarray(lo), np.asarray(hi), total


def _constant(a: Any, n: int, d: int, max_abs: float, dtype: np.dtype) -> bool:
    """Every column equal at working precision: ``max_j − min_j ≤ 16·eps·max(|min_j|, |max_j|)`` column by
    column (a derived view — unit rows of collinear data — differs only by round-off, while one large column
    must not hide the variance of the others).

    The first :data:`_PROBE_ROWS` rows usually decide it: an entry that differs from the first row's entry in its
    column by more than ``16·eps·max|x|`` puts that column's range above its own tolerance, so the space is not
    constant (a row-wise difference: ~3× faster than per-column ranges, which walk short rows; the margin covers
    the difference's own rounding). Otherwise a per-column min/max pass decides.
    """
    if n < 2:
        return False
    eps = float(np.finfo(dtype).eps)
    probe = next(_blocks(a[:_PROBE_ROWS], min(n, _PROBE_ROWS), d))[1]
    if np.abs(probe - probe[0]).max() > probe.dtype.type(17 * eps * max_abs):  # in the block's dtype, as the pass
        return False
    lo = hi = None
    for _, b in _blocks(a, n, d):
        blo, bhi = b.min(axis=0), b.max(axis=0)
        lo = blo if lo is None else np.minimum(lo, blo)
        hi = bhi if hi is None else np.maximum(hi, bhi)
    assert lo is not None and hi is not None
    return bool(((hi - lo) <= 16 * eps * np.maximum(np.abs(lo), np.abs(hi))).all())


def column_moments(a: np.ndarray) -> Any:
    """:class:`~alignkit._known.ColumnMoments` of a host array, by the check's own blocked pass (so a measure
    called without the check centres with the very same float64 means)."""
    from alignkit._known import ColumnMoments

    n, d = int(a.shape[0]), int(a.shape[1])
    return ColumnMoments(n, *_moments(a, n, d))


def _rank_le_1(
    a: Any, n: int, d: int, mean: np.ndarray, max_abs: float, dtype: np.dtype, extremes: tuple[float, float]
) -> bool:
    """Centred rows all on one line: the centred energy off the line through the mean towards the farthest
    of the first :data:`_PROBE_ROWS` rows is ≤ rtol² of the total. Each block is centred (and divided by
    ``max_abs`` when squares could overflow or underflow) before squaring, so a large column mean cannot
    cancel away the variance.

    Short cut (no pass over the data): the off-line energy of the probe rows alone is a lower bound of the
    total's, and the total is at most ``n·Σ_j max(hi − m_j, m_j − lo)²`` (``lo``, ``hi`` the smallest and
    largest entry, ``m`` the column means), so a probe whose off-line energy exceeds rtol² of that bound
    decides "rank ≥ 2" exactly as the full pass would. Data of rank ≥ 2 almost always stops there (a pass is
    left for (nearly) collinear data, and for n ≳ 10⁷ where the bound grows past what the probe can show).
    """
    rtol = _RANK1_RTOL if dtype == np.float64 else 1e-3  # float32 products resolve ~1e-7 of the energy
    limit = 1e15 if dtype != np.float64 else 1e100
    scale = 1.0 if 1 / limit < max_abs < limit else max_abs

    def centred(b: np.ndarray) -> np.ndarray:
        b = b if scale == 1.0 else b.astype(np.float64) / scale
        return b - (mean / scale).astype(b.dtype)

    probe = centred(next(_blocks(a[:_PROBE_ROWS], min(n, _PROBE_ROWS), d))[1]).astype(np.float64)
    r = np.einsum("ij,ij->i", probe, probe)
    j = int(r.argmax())
    u = probe[j] / math.sqrt(float(r[j])) if float(r[j]) > 0 else None
    if u is not None:
        off = float(r.sum() - np.square(probe @ u).sum())
        lo, hi = extremes
        dev = np.maximum(hi - mean, mean - lo) / scale
        bound = n * float(np.square(dev).sum())
        if off > 2 * rtol**2 * bound:  # 2×: room for the full pass's float32 rounding
            return False
    # The full pass. The line's direction is the probe's farthest row or, when every probe row sits on the mean,
    # the farthest centred row of the first block holding a row off it (on a line, any such row spans it; off a
    # line, the projected energy falls short of the total).
    total, proj = 0.0, 0.0
    for _, b in _blocks(a, n, d):
        c = centred(b)
        r = np.einsum("ij,ij->i", c, c).astype(np.float64)
        total += float(r.sum())
        if u is None:
            j = int(r.argmax())
            if not float(r[j]) > 0:
                continue  # every row of this block sits on the mean: no energy, no direction yet
            u = c[j].astype(np.float64) / math.sqrt(float(r[j]))
        p = (c @ u.astype(c.dtype)).astype(np.float64)
        proj += float(p @ p)
    if total <= 0.0 or u is None:
        return True
    return total - proj <= rtol**2 * total


def _is_float64(a: Any) -> bool:
    return bool(a.dtype == torch.float64) if isinstance(a, torch.Tensor) else np.dtype(a.dtype) == np.float64


def inspect_space(X: Any, name: str = "X", *, duplicates: bool = True) -> SpaceCheck:
    """Check one space (a numpy array, memory map or torch tensor, n × d) for degeneracy, in row blocks
    (a few O(n·d) passes; memory O(block·d + n)).

    ``duplicates=False`` skips counting distinct rows (the only part that hashes every row).
    """
    a = X.detach() if isinstance(X, torch.Tensor) else X if isinstance(X, np.ndarray) else np.asarray(X)
    if a.ndim != 2:
        raise ValueError(f"{name} must be 2-D (items x features); got shape {tuple(a.shape)}")
    n, d = int(a.shape[0]), int(a.shape[1])
    dtype = np.dtype(np.float64) if _is_float64(a) else np.dtype(np.float32)
    lo, hi, total = _moments(a, n, d)
    max_abs = float(max(-float(lo.min()), float(hi.max()))) if d else 0.0
    n_nonfinite = 0
    if not np.isfinite(max_abs):
        n_nonfinite = sum(int((~np.isfinite(b)).sum()) for _, b in _blocks(a, n, d))
        finite = [np.abs(b[np.isfinite(b)]).max() for _, b in _blocks(a, n, d) if np.isfinite(b).any()]
        max_abs = float(max(finite)) if finite else float("nan")
        constant = False
    else:
        constant = _constant(a, n, d, max_abs, dtype)
    groups = duplicate_groups(a) if duplicates and not n_nonfinite else None
    n_distinct = None if groups is None else len(groups)
    rank1 = constant or (
        n_nonfinite == 0
        and n >= 3
        and d >= 2
        and max_abs > 0
        and _rank_le_1(a, n, d, total / n, max_abs, dtype, (float(lo), float(hi)))
    )
    moments = None
    if isinstance(a, np.ndarray) and n_nonfinite == 0:
        from alignkit._known import ColumnMoments

        moments = ColumnMoments(n, lo, hi, total)
    return SpaceCheck(name, n, d, n_distinct, constant, bool(rank1), n_nonfinite, max_abs, (), groups, moments)


def handle(checks: list[SpaceCheck], policy: str, what: str) -> bool:
    """Apply a registered policy to the checks of the spaces a method received.

    Returns True when the method should not compute (the caller returns NaN); ``"raise"`` raises a
    :class:`DegenerateSpaceError`, ``"warn"`` only warns and returns False, ``"nan"`` warns and returns True.
    """
    for c in checks:
        if c.n_nonfinite:  # bad input, not a degenerate geometry: always the same clear error
            raise ValueError(f"{c.name} contains {c.n_nonfinite} NaN or Inf value(s); clean or impute them first")
    for c in checks:
        if c.n_distinct is not None and c.n_distinct < c.n:
            dup = c.n - c.n_distinct
            warnings.warn(
                f"{what}: {c.name} has {dup} duplicated row(s) ({dup / c.n:.1%} of {c.n}; {c.n_distinct} distinct): a "
                "duplicate is another row's nearest neighbour at distance 0, so neighbourhoods and a row-permutation "
                "null are decided by ties (permute duplicates together with groups=, deduplicate, or use "
                "ties='fractional' with mutual_knn/jaccard_knn)",
                DuplicateRowsWarning,
                stacklevel=4,
            )
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
    if policy == "nan":
        tail = "the score is NaN"
    elif what.startswith("diagnostic"):
        tail = "the value describes that degenerate space"
    else:
        tail = "its scores are chance level at best"
    warnings.warn(f"{what}: {detail}; {tail}", DegenerateSpaceWarning, stacklevel=4)
    return policy == "nan"


def warn_degenerate(what: str, **spaces: Any) -> None:
    """For evaluations: warn (never stop) when a space is constant; their ties are ranked by expectation,
    so such a space scores chance. ``spaces`` maps argument names to arrays."""
    handle([inspect_space(a, name, duplicates=False) for name, a in spaces.items()], "warn", what)


__all__ = [
    "POLICIES",
    "DegenerateSpaceError",
    "DegenerateSpaceWarning",
    "DuplicateRowsWarning",
    "SpaceCheck",
    "count_distinct_rows",
    "distinct_rows",
    "duplicate_groups",
    "handle",
    "inspect_space",
    "repeated_rows",
    "warn_degenerate",
]
