"""Permutations and subsamples that respect groups of items that are not independent.

A plain permutation null treats every row as exchangeable. When rows come in groups (several captions
of one image class, a verse repeated word for word, crops of one image) that is the wrong null: the
score keeps whatever the grouping alone produces, and the plain null does not. Two structured nulls:

- ``group_mode="within"``: rows are permuted only inside their group, so group membership is fixed
  (restricted randomisation; Anderson & ter Braak, J. Stat. Comput. Simul. 2003; Winkler et al.,
  "Permutation inference for the general linear model", NeuroImage 2014, exchangeability blocks).
  Null: "given the groups, the pairing of items inside a group carries nothing".
- ``group_mode="blocks"``: whole groups are permuted as blocks (whole-block permutation, Winkler et al.
  2014): the rows of group g take, in order, the rows of group σ(g). Groups of the same size swap with
  each other; a group whose size no other group shares stays in place (with a warning). Null: "the
  pairing of groups carries nothing", keeping each group's internal structure (its duplicates).

``permute=f`` replaces both with a user function ``f(rng, n) -> indices`` (``rng`` a
:class:`numpy.random.Generator` made from the seed and shared by the draws in order), as the
calibrated-similarity package accepts precomputed permutations. Every draw is a torch int64 tensor,
the contract of :func:`alignkit.stats.permutation.permutations`, so the fast paths (kNN index
relabelling, CKA cross-moments) are unchanged. Subsamples with groups draw whole groups without
replacement (a grouped half-sample; Politis & Romano, Ann. Statist. 1994 with groups as the units).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch

GROUP_MODES = ("within", "blocks")
Permute = Callable[[np.random.Generator, int], Any]


def check_groups(groups: Any, n: int, *, name: str = "groups") -> np.ndarray:
    """``groups`` (one int or string label per row) as integer codes 0..G−1; errors name the argument."""
    g = np.asarray(groups.detach().cpu() if hasattr(groups, "detach") else groups)
    if g.ndim != 1:
        raise ValueError(f"{name} must be 1-D (one group label per row); got shape {g.shape}")
    if g.shape[0] != n:
        raise ValueError(f"{name} must give one group per row: got {g.shape[0]} labels for {n} rows")
    if g.dtype.kind == "f" and not np.isfinite(g).all():
        raise ValueError(f"{name} contain NaN or Inf; give every row a group")
    if g.dtype == object and any(v is None or (isinstance(v, float) and v != v) for v in g):
        raise ValueError(f"{name} contain None or NaN; give every row a group")
    if g.dtype.kind not in "biufUS" and g.dtype != object:
        raise ValueError(f"{name} must hold int or string labels; got dtype {g.dtype}")
    try:
        codes = np.unique(g, return_inverse=True)[1]
    except TypeError as exc:  # mixed types that do not compare (ints and strings)
        raise ValueError(f"{name} must hold labels of one type (all ints or all strings): {exc}") from exc
    return codes.astype(np.int64).reshape(-1)


def check_group_mode(group_mode: str) -> str:
    if group_mode not in GROUP_MODES:
        raise ValueError(f"group_mode must be one of {', '.join(map(repr, GROUP_MODES))}; got {group_mode!r}")
    return group_mode


def permutation_kind(groups: Any, group_mode: str, permute: Permute | None) -> str:
    """How the null permutes rows: ``'full'``, ``'within'``, ``'blocks'`` or ``'custom'``."""
    return "custom" if permute is not None else ("full" if groups is None else group_mode)


class GroupPermuter:
    """Draws row permutations that respect ``codes`` (validated group codes) in one of the two modes.

    Everything that does not change between draws (the rows sorted by group, each row's rank in its
    group, the groups sorted by size) is computed once, so a draw costs one ``randperm`` and one stable
    sort (of n rows, or of G groups for blocks) plus O(n) gathers.
    """

    def __init__(self, codes: np.ndarray, group_mode: str = "within", *, name: str = "groups") -> None:
        self.mode = check_group_mode(group_mode)
        codes_t = torch.as_tensor(codes, dtype=torch.int64)
        self.n = int(codes_t.numel())
        sizes = torch.bincount(codes_t)
        n_groups = int(sizes.numel())
        if n_groups < 2:
            detail = (
                "permuting within it is the plain null: pass groups=None"
                if self.mode == "within"
                else "permuting blocks leaves it in place (every draw would be the identity)"
            )
            raise ValueError(f"{name} hold a single group for {self.n} rows; {detail}")
        self.codes = codes_t
        self.base = torch.argsort(codes_t, stable=True)  # rows grouped by group, original order inside
        if self.mode == "within":
            if int(sizes.max()) < 2:
                raise ValueError(
                    f"{name} are all singletons: within-group permutation leaves every row in place "
                    "(every draw would be the identity); use group_mode='blocks' or groups=None"
                )
            return
        take = torch.index_select  # not t[idx]: see draw()
        movable = take(torch.bincount(sizes), 0, sizes) > 1  # groups whose size another group shares
        if not bool(movable.any()):
            raise ValueError(
                f"{name}: no two groups have the same size, so no block can swap with another "
                "(every draw would be the identity); use group_mode='within' or equal-size groups"
            )
        if not bool(movable.all()):
            fixed = int((~movable).sum())
            warnings.warn(
                f"{name}: {fixed} of {n_groups} groups have a size no other group shares and stay in place "
                "in every block permutation (blocks swap only with groups of the same size)",
                UserWarning,
                stacklevel=3,
            )
        self.sizes = sizes
        self.start = torch.cumsum(sizes, 0) - sizes
        pos = torch.empty_like(codes_t).index_copy_(0, self.base, torch.arange(self.n))
        self.rank = pos - take(self.start, 0, codes_t)  # each row's place inside its group
        self.by_size = torch.argsort(sizes, stable=True)  # groups ordered by size, then by code

    def draw(self, generator: torch.Generator) -> torch.Tensor:
        """One permutation π (``Y[π]`` is the permuted space), int64 on the CPU."""
        # index_select / index_copy_ rather than t[idx]: advanced indexing parallelises even at n = 5,000 and
        # waits on busy threads (milliseconds per draw on a loaded machine instead of microseconds)
        take = torch.index_select
        if self.mode == "within":
            r = torch.randperm(self.n, generator=generator)
            shuffled = take(r, 0, torch.argsort(take(self.codes, 0, r), stable=True))  # grouped, random inside
            return torch.empty(self.n, dtype=torch.int64).index_copy_(0, self.base, shuffled)
        u = torch.randperm(self.sizes.numel(), generator=generator)
        shuffled_groups = take(u, 0, torch.argsort(take(self.sizes, 0, u), stable=True))  # by size, random inside
        sigma = torch.empty_like(shuffled_groups).index_copy_(0, self.by_size, shuffled_groups)  # keeps sizes
        return take(self.base, 0, take(self.start, 0, take(sigma, 0, self.codes)) + self.rank)


def check_permutation(idx: Any, n: int, *, name: str = "permute", draw: int = 0) -> torch.Tensor:
    """A user function's output as an int64 permutation of range(n); otherwise a ValueError naming ``name``."""
    t = idx.detach().cpu() if isinstance(idx, torch.Tensor) else torch.as_tensor(np.asarray(idx))
    what = f"{name} must return a permutation of range({n}) (1-D integer indices, each once)"
    if t.ndim != 1 or t.numel() != n:
        raise ValueError(f"{what}; draw {draw} returned shape {tuple(t.shape)}")
    if t.dtype.is_floating_point or t.dtype.is_complex or t.dtype == torch.bool:
        raise ValueError(f"{what}; draw {draw} returned dtype {t.dtype}")
    t = t.to(torch.int64)
    if n and (int(t.min()) < 0 or int(t.max()) >= n or not bool((torch.bincount(t, minlength=n) == 1).all())):
        raise ValueError(f"{what}; draw {draw} repeats or leaves out indices")
    return t


def permutations(
    n: int,
    n_perm: int,
    seed: int,
    *,
    groups: Any = None,
    group_mode: str = "within",
    permute: Permute | None = None,
) -> list[torch.Tensor]:
    """The seeded sequence of ``n_perm`` row permutations (torch int64 tensors of length n).

    Plain (no ``groups``, no ``permute``): ``torch.randperm`` from ``torch.Generator().manual_seed(seed)``,
    the sequence every measure and layer pair shares. ``groups``: permuted within groups or as blocks
    (``group_mode``); ``permute(rng, n)``: the user's function, called once per draw with one
    ``numpy.random.default_rng(seed)``, its output checked and used verbatim.
    """
    check_group_mode(group_mode)
    if permute is not None:
        if groups is not None:
            raise ValueError("give groups= or permute=, not both (a custom permute function can use the groups itself)")
        if not callable(permute):
            raise ValueError(f"permute must be a function (rng, n) -> indices; got {type(permute).__name__}")
        rng = np.random.default_rng(seed)
        return [check_permutation(permute(rng, n), n, draw=i) for i in range(n_perm)]
    g = torch.Generator().manual_seed(int(seed))
    if groups is None:
        return [torch.randperm(n, generator=g) for _ in range(n_perm)]
    permuter = GroupPermuter(check_groups(groups, n), group_mode)
    return [permuter.draw(g) for _ in range(n_perm)]


def row_subsets(n: int, m: int, n_sub: int, seed: int, *, groups: Any = None) -> tuple[int, Iterator[torch.Tensor]]:
    """``(m, subsets)``: ``n_sub`` row subsets drawn without replacement from
    ``torch.Generator().manual_seed(seed)``, lazily (one in memory at a time), and their size.

    Plain: m rows each (``randperm(n)[:m]``). With ``groups``: whole groups, k = round(G·m/n) of the G
    groups per subset (at least 1, at most G − 1), so a group is never split; rows in increasing order,
    and the size returned is the expected one, round(k·n/G) (exact for equal-size groups). Arguments are
    checked now, not at the first draw.
    """
    if groups is None:
        return m, _plain_subsets(n, m, n_sub, seed)
    codes = torch.as_tensor(check_groups(groups, n))
    n_groups = int(codes.max()) + 1 if n else 0
    if n_groups < 2:
        raise ValueError(f"groups hold a single group for {n} rows; a subsample of whole groups needs at least 2")
    k = min(max(1, round(n_groups * m / n)), n_groups - 1)
    m_groups = round(k * n / n_groups)
    if not 2 <= m_groups < n:
        raise ValueError(f"groups leave subsets of {m_groups} of {n} items; need more groups for an interval")
    return m_groups, _group_subsets(codes, n_groups, k, n_sub, seed)


def _plain_subsets(n: int, m: int, n_sub: int, seed: int) -> Iterator[torch.Tensor]:
    gen = torch.Generator().manual_seed(int(seed))
    for _ in range(n_sub):
        yield torch.randperm(n, generator=gen)[:m]


def _group_subsets(codes: torch.Tensor, n_groups: int, k: int, n_sub: int, seed: int) -> Iterator[torch.Tensor]:
    gen = torch.Generator().manual_seed(int(seed))
    for _ in range(n_sub):
        keep = torch.zeros(n_groups, dtype=torch.bool).index_fill_(0, torch.randperm(n_groups, generator=gen)[:k], True)
        yield torch.nonzero(torch.index_select(keep, 0, codes)).reshape(-1)


__all__ = [
    "GROUP_MODES",
    "GroupPermuter",
    "check_group_mode",
    "check_groups",
    "check_permutation",
    "permutation_kind",
    "permutations",
    "row_subsets",
]
