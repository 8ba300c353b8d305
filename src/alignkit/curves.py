"""Pool-size curves: a measure's score (and its permutation null) as the pool of items grows.

kNN scores depend on the pool size n: mutual kNN's null is k/(n−1), and a fixed-k neighbourhood covers a
shrinking share of a growing pool, so the measured agreement falls (the "Back into Plato's Cave" follow-up of
PRH reports 13.5 % on 1,024 items against 0.8 % on 15M). A score without its pool size is not comparable;
:func:`curve` measures the whole curve.

Pools are nested random subsamples: repeat r draws one permutation σ_r of the n items and pool m is its first
m items, so pool 1k ⊂ 2k ⊂ 4k within a repeat. The score at size m is exactly ``measure(X[pool], Y[pool])``
(and with ``n_perm`` its :func:`~alignkit.stats.permutation_test` on the pool); intervals are over the repeats.

Exact kNN work shared across pools (kNN overlap measures, exact search): every row of a *base* set (all items
when the largest pool is n; else the union of the repeats' largest pools, or each repeat's largest pool when
that is cheaper) gets its K most similar base rows once, sorted (K = ``candidates``, default max(64, 4k)).
Within any pool P ⊂ base, row i's k nearest neighbours are the first k members of P in that list whenever the
list holds at least k of them: every member of P outside the list is at most as similar as the list's last
entry. Rows whose list holds fewer than k members of P (mostly in the smallest pools, where a search is cheap)
are searched against P directly. Both steps are exact, up to the order of similarities tied to within float
rounding (blocks of different shapes can round a near-tie differently: one neighbour slot of the whole benchmark
curve at 31k items differed). A curve over 1k … 31k with 5 repeats then costs about one kNN search of the 31k items
(with K-long lists) instead of a search per pool and repeat (bench/pool_curve.py).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from alignkit._lazy import lazy_module
from alignkit._progress import progress as progress_bar
from alignkit._validation import ArrayLike, as_pair, check_choice
from alignkit.metrics import _registry
from alignkit.metrics.knn import KnnMeasure
from alignkit.metrics.prepared import prepared_measure
from alignkit.metrics.preprocess import preprocess
from alignkit.neighbors import KNNGraph, _prepare, exact_topk, self_topk
from alignkit.registry import Spec
from alignkit.stats.permutation import PermutationResult, permutation_test, permutations

if TYPE_CHECKING:
    import torch
else:
    torch = lazy_module("torch")

INTERVALS = ("t", "percentile")
# the fields of a plain KnnMeasure; a measure with any other field takes the per-pool path (it may change scores)
_FAST_FIELDS = {"name", "rows", "k", "metric", "backend", "ties", "tied_rows"}
_CHUNK = 65536  # rows filtered at once (bounds the (rows × K) temporaries)


# ------------------------------------------------------------------------------------------ validation


def check_pool_sizes(pool_sizes: Sequence[int], n: int) -> list[int]:
    """At least two strictly increasing integer pool sizes, each between 2 and n."""
    if isinstance(pool_sizes, (str, bytes)) or not isinstance(pool_sizes, (Sequence, np.ndarray)):
        raise TypeError(f"pool_sizes must be a list of integers; got {type(pool_sizes).__name__}")
    sizes = list(pool_sizes)
    for m in sizes:
        if isinstance(m, bool) or not isinstance(m, (int, np.integer)):
            raise TypeError(f"pool_sizes must hold integers; got {m!r}")
    sizes = [int(m) for m in sizes]
    if len(sizes) < 2:
        raise ValueError(f"pool_sizes must list at least 2 sizes to make a curve; got {sizes}")
    if len(set(sizes)) != len(sizes):
        raise ValueError(f"pool_sizes must not repeat a size; got {sizes}")
    if sizes != sorted(sizes):
        raise ValueError(f"pool_sizes must be sorted in increasing order; got {sizes}")
    if sizes[0] < 2:
        raise ValueError(f"pool_sizes must be >= 2 items each; got {sizes[0]}")
    if sizes[-1] > n:
        raise ValueError(f"pool_sizes must be at most n = {n} (the rows of X and Y); got {sizes[-1]}")
    return sizes


def _check_count(value: int, name: str, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}; got {value!r}")
    return int(value)


# ------------------------------------------------------------------------------------------ shared kNN


def candidate_lists(work: torch.Tensor, K: int, metric: str, block_size: int | None = None) -> torch.Tensor:
    """Every row's K most similar other rows of ``work`` (prepared for ``metric``), most similar first."""
    _, idx = self_topk(work, K, metric, block_size=block_size)
    return idx.cpu()


def pool_knn(
    work: torch.Tensor,
    cand: torch.Tensor,
    pool: torch.Tensor,
    k: int,
    metric: str,
    stats: dict[str, int] | None = None,
) -> torch.Tensor:
    """Exact (m, k) neighbour lists within ``pool`` (base row positions, in the pool's row order), read from the
    base rows' sorted candidate lists; rows whose list holds fewer than k pool members are searched directly.
    Neighbours are positions in ``pool`` (local indices), most similar first."""
    nb, m = work.shape[0], pool.numel()
    local = torch.full((nb,), -1, dtype=torch.long)
    local[pool] = torch.arange(m)
    out = torch.empty((m, k), dtype=torch.long)
    short = []
    for s in range(0, m, _CHUNK):
        # index_select, not fancy indexing: the latter is 10-100× slower on small blocks (threaded gather)
        block = cand.index_select(0, pool[s : s + _CHUNK])
        loc = local.index_select(0, block.flatten()).view(block.shape)  # local index of each candidate, −1 outside
        keep = loc >= 0
        first = torch.sort((~keep).to(torch.int8), dim=1, stable=True).indices[:, :k]  # kept ones, in list order
        out[s : s + _CHUNK] = loc.gather(1, first)
        short.append(torch.nonzero(keep.sum(dim=1) < k).flatten() + s)
    rows = torch.cat(short)
    if rows.numel():
        base = work.index_select(0, pool.to(work.device))
        queries = base.index_select(0, rows.to(work.device))
        _, found = exact_topk(queries, base, k, metric, query_ids=rows.to(work.device))
        out[rows] = found.cpu()
    if stats is not None:
        stats["searched_rows"] = stats.get("searched_rows", 0) + int(rows.numel())
        stats["searched_pairs"] = stats.get("searched_pairs", 0) + int(rows.numel()) * m
    return out


@dataclass
class _SharedKnn:
    """Candidate lists of one base set, in both spaces; serves every pool drawn from the base."""

    items: torch.Tensor  # base row → item index
    work_x: torch.Tensor
    work_y: torch.Tensor
    cand_x: torch.Tensor
    cand_y: torch.Tensor
    position: torch.Tensor  # item index → base row (−1 outside)

    def graphs(self, pool_items: torch.Tensor, k: int, metric: str, stats: dict[str, int]) -> tuple[KNNGraph, ...]:
        pool = self.position.index_select(0, pool_items)
        return tuple(
            KNNGraph(pool_knn(w, c, pool, k, metric, stats), metric, "exact", None, {"n": pool.numel()})
            for w, c in ((self.work_x, self.cand_x), (self.work_y, self.cand_y))
        )


def _shared_base(
    x: torch.Tensor, y: torch.Tensor, items: torch.Tensor, k: int, metric: str, candidates: int | None, n: int
) -> tuple[_SharedKnn, int]:
    K = min(items.numel() - 1, max(64, 4 * k) if candidates is None else max(k, int(candidates)))
    wx, wy = (_prepare(t.index_select(0, items.to(t.device)), metric) for t in (x, y))
    position = torch.full((n,), -1, dtype=torch.long)
    position[items] = torch.arange(items.numel())
    base = _SharedKnn(items, wx, wy, candidate_lists(wx, K, metric), candidate_lists(wy, K, metric), position)
    return base, K


def _fast_knn(pm: Any, prep: dict[str, Any]) -> bool:
    """Whether the shared exact kNN path reproduces ``measure(X[pool], Y[pool])``: a plain kNN-overlap measure
    with exact search and ordinary top-k lists (not ``ties="fractional"``), and no preprocessing that depends on
    the pool (clipping quantiles, column means)."""
    plain = type(pm) is KnnMeasure and set(vars(pm)) <= _FAST_FIELDS and pm.backend == "exact"
    plain = plain and getattr(pm, "ties", "arbitrary") == "arbitrary"
    return plain and not prep.get("clip_quantile") and not prep.get("center")


# ------------------------------------------------------------------------------------------ result


def _interval(values: np.ndarray, level: float, kind: str) -> tuple[float, float, float, float]:
    """(mean, sd, low, high) over repeats (NaN repeats left out); a t or percentile interval."""
    v = values[np.isfinite(values)]
    if v.size == 0:
        return (float("nan"),) * 4
    mean = float(v.mean())
    sd = float(v.std(ddof=1)) if v.size > 1 else float("nan")
    if v.size < 2:
        return mean, sd, float("nan"), float("nan")
    if kind == "percentile":
        lo, hi = np.quantile(v, [(1 - level) / 2, (1 + level) / 2])
        return mean, sd, float(lo), float(hi)
    from scipy import stats as sps

    half = float(sps.t.ppf((1 + level) / 2, v.size - 1)) * sd / math.sqrt(v.size)
    return mean, sd, mean - half, mean + half


@dataclass(frozen=True)
class CurveResult:
    """Scores at every pool size and repeat, with their nulls; tidy rows and a plot.

    Arrays are (repeats, len(pool_sizes)); the null summaries are NaN without a null (``n_perm=0``).
    """

    measure: str
    pool_sizes: tuple[int, ...]
    n: int
    scores: np.ndarray
    null_mean: np.ndarray
    null_std: np.ndarray
    p_value: np.ndarray
    adjusted: np.ndarray
    calibrated: np.ndarray
    n_perm: int = 0
    level: float = 0.95
    interval: str = "t"
    seed: int = 0
    higher_is_better: bool = True
    knn_recall: dict[str, np.ndarray] = field(default_factory=dict, repr=False)  # approximate kNN, per space
    duplicate_fraction: dict[str, np.ndarray] = field(default_factory=dict, repr=False)  # kNN measures, per space
    cost: dict[str, Any] = field(default_factory=dict)  # how the kNN work was shared (see the module docstring)

    @property
    def repeats(self) -> int:
        return int(self.scores.shape[0])

    def to_rows(self, per_repeat: bool = False) -> list[dict[str, Any]]:
        """One row per pool size (mean and interval over repeats; ``p_value_max`` = the largest p over repeats),
        or with ``per_repeat`` one row per (pool size, repeat)."""
        extras = {**{f"knn_recall_{k}": v for k, v in self.knn_recall.items()}}
        extras.update({f"duplicate_fraction_{k}": v for k, v in self.duplicate_fraction.items()})
        rows = []
        for j, m in enumerate(self.pool_sizes):
            base = {"measure": self.measure, "pool_size": m, "n": self.n}
            if per_repeat:
                for r in range(self.repeats):
                    row = {**base, "repeat": r, "score": float(self.scores[r, j])}
                    if self.n_perm:
                        row.update(
                            null_mean=float(self.null_mean[r, j]),
                            null_std=float(self.null_std[r, j]),
                            p_value=float(self.p_value[r, j]),
                            adjusted=float(self.adjusted[r, j]),
                            calibrated=float(self.calibrated[r, j]),
                        )
                    rows.append({**row, **{k: float(v[r, j]) for k, v in extras.items()}, "seed": self.seed})
                continue
            mean, sd, lo, hi = _interval(self.scores[:, j], self.level, self.interval)
            row = {**base, "repeats": self.repeats, "score": mean, "score_sd": sd, "score_low": lo, "score_high": hi}
            row.update(level=self.level, interval=self.interval, n_perm=self.n_perm)
            if self.n_perm:
                a_mean, _, a_lo, a_hi = _interval(self.adjusted[:, j], self.level, self.interval)
                p = self.p_value[:, j]
                row.update(
                    null_mean=float(np.nanmean(self.null_mean[:, j]))
                    if np.isfinite(self.null_mean[:, j]).any()
                    else float("nan"),
                    p_value_max=float(np.max(p)) if np.isfinite(p).all() else float("nan"),
                    adjusted=a_mean,
                    adjusted_low=a_lo,
                    adjusted_high=a_hi,
                    calibrated=float(np.mean(self.calibrated[:, j])),
                )
            row.update({k: float(np.mean(v[:, j])) for k, v in extras.items()})
            rows.append({**row, "seed": self.seed})
        return rows

    def to_pandas(self, per_repeat: bool = False) -> Any:
        import pandas as pd

        return pd.DataFrame(self.to_rows(per_repeat))

    def plot(self, **kwargs: Any) -> Any:
        """:func:`plot_curve` of this result."""
        return plot_curve(self, **kwargs)


def plot_curve(
    *results: CurveResult,
    what: str = "score",
    labels: Sequence[str] | None = None,
    show_null: bool = True,
    ax: Any = None,
    title: str | None = None,
) -> Any:
    """Score (or ``what="adjusted"``: the chance-adjusted score) against pool size on a log x axis, one line per
    result with its interval band and, for scores, the permutation null mean dashed. Returns the Figure (a new
    one, no pyplot state, unless ``ax`` is given)."""
    check_choice(what, ("score", "adjusted"), "what")
    if not results:
        raise ValueError("plot_curve needs at least one CurveResult")
    if ax is None:
        from matplotlib.figure import Figure

        fig = Figure(figsize=(5.5, 3.6), layout="constrained")
        ax = fig.add_subplot()
    else:
        fig = ax.figure
    for i, res in enumerate(results):
        if what == "adjusted" and not res.n_perm:
            raise ValueError("what='adjusted' needs a curve computed with n_perm > 0")
        rows = res.to_rows()
        x = np.array([r["pool_size"] for r in rows], dtype=float)
        key = "score" if what == "score" else "adjusted"
        mid = np.array([r[key] for r in rows])
        lo = np.array([r[f"{key}_low"] for r in rows])
        hi = np.array([r[f"{key}_high"] for r in rows])
        label = labels[i] if labels is not None else res.measure
        (line,) = ax.plot(x, mid, marker="o", ms=3, label=label)
        ax.fill_between(
            x, np.where(np.isfinite(lo), lo, mid), np.where(np.isfinite(hi), hi, mid), alpha=0.2, color=line.get_color()
        )
        if show_null and what == "score" and res.n_perm:
            ax.plot(
                x, [r["null_mean"] for r in rows], ls="--", color=line.get_color(), lw=1, label=f"{label}: null mean"
            )
    ax.set_xscale("log")
    ax.set_xlabel("pool size (items)")
    ax.set_ylabel("chance-adjusted score" if what == "adjusted" else "score")
    level = results[0].level
    ax.set_title(title or f"{results[0].measure}: mean over repeats, {level:.0%} interval")
    ax.legend(fontsize="small")
    return fig


# ------------------------------------------------------------------------------------------ curve


def _null_seed(seed: int, r: int, j: int) -> int:
    """The permutation-null seed of (repeat r, pool j): independent streams, fixed by ``seed``."""
    return int(np.random.SeedSequence([int(seed), r, j]).generate_state(1)[0])


def curve(
    measure: str | Spec,
    X: ArrayLike,
    Y: ArrayLike,
    pool_sizes: Sequence[int],
    repeats: int = 5,
    n_perm: int = 0,
    seed: int = 0,
    *,
    level: float = 0.95,
    interval: str = "t",
    q: float = 0.95,
    candidates: int | None = None,
    share_knn: bool = True,
    progress: bool = False,
    **params: Any,
) -> CurveResult:
    """The score of ``measure`` (a registered name or id) on nested random pools of each size in ``pool_sizes``.

    Repeat r uses σ_r, the r-th of ``alignkit.stats.permutations(n, repeats, seed)``; pool m is σ_r[:m], so the
    pools of one repeat are nested. The score at m is ``measure(X[pool], Y[pool], **params)``; with ``n_perm > 0``
    it is :func:`~alignkit.stats.permutation_test` on the pool (its null mean, add-one p-value, chance-adjusted and
    calibrated score) with the seed ``SeedSequence([seed, r, j]).generate_state(1)[0]`` for pool j. A pool of all n
    items is the same set in every repeat, so it is scored once (on the rows in their given order).

    Intervals (``interval``): ``"t"`` (default), mean ± t_{R−1}·sd/√R over the R repeats; ``"percentile"``, the
    empirical quantiles of the repeats (needs many repeats). They describe the spread of the score over random
    pools of size m drawn from these n items (zero width at m = n), not the sampling of the items themselves.

    kNN-overlap measures with exact search share their kNN work across pools and repeats (module docstring):
    ``candidates`` is the length K of the per-row candidate lists; ``share_knn=False`` computes every pool's graphs
    independently (the same scores; for benchmarks). Other measures, approximate backends (``backend="faiss"``),
    and the pool-dependent preprocessing ``clip_quantile``/``center`` score each pool on its own.
    The full data are checked once for degenerate spaces and duplicate rows (with their warnings); a pool that is
    degenerate on its own scores NaN.
    """
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1); got {level}")
    check_choice(interval, INTERVALS, "interval")
    repeats = _check_count(repeats, "repeats", 1)
    n_perm = _check_count(n_perm, "n_perm", 0)
    if callable(measure) and not isinstance(measure, Spec):
        raise TypeError("measure must be a registered measure name or id (e.g. 'mutual_knn?k=10'), not a callable")
    spec = _registry.measure_spec(measure, **params)
    info = _registry.get(spec)
    prep, own = _registry.split(spec)
    x, y = as_pair(X, Y)
    n = x.shape[0]
    sizes = check_pool_sizes(pool_sizes, n)
    pm = prepared_measure(spec, max_dim=max(x.shape[1], y.shape[1]))
    if sizes[0] < pm.min_rows():
        raise ValueError(
            f"pool_sizes: the smallest pool ({sizes[0]}) is below the {pm.min_rows()} items {spec.id} needs"
        )
    k = getattr(pm, "k", None)
    if isinstance(k, int) and sizes[0] <= k:
        raise ValueError(f"pool_sizes: the smallest pool ({sizes[0]}) must hold more than k = {k} items")
    fast = share_knn and _fast_knn(pm, prep)
    xc, yc = (preprocess(x, name="X", **prep), preprocess(y, name="Y", **prep)) if prep else (x, y)
    _registry.degenerate_inputs(xc, yc, info, own)  # warn once about the full data (duplicates, collapse)
    if fast:
        x, y = xc, yc  # row-wise preprocessing only (``normalize``): the same on every pool

    orders = permutations(n, repeats, seed)
    full = torch.arange(n)
    shape = (repeats, len(sizes))
    out = {key: np.full(shape, np.nan) for key in ("scores", "null_mean", "null_std", "p", "adjusted", "calibrated")}
    recall: dict[str, np.ndarray] = {}
    dups: dict[str, np.ndarray] = {}
    stats: dict[str, Any] = {"strategy": "shared" if fast else "independent"}
    bases = _bases(x, y, orders, sizes, n, pm, candidates, stats) if fast else {}

    jobs = [(r, j) for r in range(repeats) for j in range(len(sizes)) if not (sizes[j] == n and r > 0)]
    for r, j in progress_bar(jobs, show=progress, desc="pools"):
        m = sizes[j]
        items = full if m == n else orders[r][:m]
        s = _null_seed(seed, r, j)
        xp, yp = x.index_select(0, items.to(x.device)), y.index_select(0, items.to(y.device))
        if fast:
            res = _score_shared(pm, spec, info, own, xp, yp, bases, r, items, n_perm, s, q, stats)
        else:
            res = _score_pool(spec, xp, yp, n_perm, s, q)
        rows = range(repeats) if m == n else [r]
        for rr in rows:
            _store(out, recall, dups, res, rr, j, shape)
    stats["independent_pairs"] = int(sum(repeats * m * m for m in sizes if m < n) + (n * n if sizes[-1] == n else 0))
    return CurveResult(
        spec.id,
        tuple(sizes),
        n,
        out["scores"],
        out["null_mean"],
        out["null_std"],
        out["p"],
        out["adjusted"],
        out["calibrated"],
        n_perm,
        level,
        interval,
        int(seed),
        info.higher_is_better,
        recall,
        dups,
        stats,
    )


def _bases(
    x: torch.Tensor,
    y: torch.Tensor,
    orders: list[torch.Tensor],
    sizes: list[int],
    n: int,
    pm: Any,
    candidates: int | None,
    stats: dict[str, Any],
) -> dict[int, _SharedKnn]:
    """Base sets of the shared kNN path, by repeat: one base serving all repeats (all items when the largest pool
    is n, else the union of the largest pools), or one per repeat when that needs fewer similarity pairs."""
    top = sizes[-1]
    union = torch.arange(n) if top == n else torch.unique(torch.cat([o[:top] for o in orders]))
    R = len(orders)
    if union.numel() ** 2 <= R * top * top:
        base, K = _shared_base(x, y, union, pm.k, pm.metric, candidates, n)
        stats.update(bases=1, base_size=int(union.numel()), candidates=K, base_pairs=int(union.numel()) ** 2)
        return dict.fromkeys(range(R), base)
    out = {}
    for r, o in enumerate(orders):
        out[r], K = _shared_base(x, y, o[:top], pm.k, pm.metric, candidates, n)
    stats.update(bases=R, base_size=top, candidates=K, base_pairs=R * top * top)
    return out


def _score_shared(
    pm: Any,
    spec: Spec,
    info: Any,
    own: dict[str, Any],
    xp: torch.Tensor,
    yp: torch.Tensor,
    bases: dict[int, _SharedKnn],
    r: int,
    items: torch.Tensor,
    n_perm: int,
    seed: int,
    q: float,
    stats: dict[str, Any],
) -> tuple[PermutationResult | None, float, dict[str, float], dict[str, float]]:
    """One pool on the shared kNN path: what ``permutation_test`` / ``measure`` return on (X[pool], Y[pool])."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the full data were checked (and warned about) once
        checks = _registry.space_checks(xp, yp, info, own)
        degenerate = _registry.degenerate_inputs(xp, yp, info, own, checks)
    dup = {c.name: c.duplicate_fraction for c in checks if c.n_distinct is not None}
    hib, best = info.higher_is_better, info.best_possible
    if degenerate:
        nan = np.full(n_perm, np.nan)
        res = PermutationResult(spec.id, float("nan"), nan, hib, best, seed, q, {}, dup) if n_perm else None
        return res, float("nan"), {}, dup
    gx, gy = bases[r].graphs(items, pm.k, pm.metric, stats)
    raw = pm.score(gx, gy)
    if not n_perm:
        return None, raw, {}, dup
    null = np.array([pm.score(gx, pm.permute(gy, p)) for p in permutations(items.numel(), n_perm, seed)])
    return PermutationResult(spec.id, raw, null, hib, best, seed, q, {}, dup), raw, {}, dup


def _score_pool(
    spec: Spec, xp: torch.Tensor, yp: torch.Tensor, n_perm: int, seed: int, q: float
) -> tuple[PermutationResult | None, float, dict[str, float], dict[str, float]]:
    """One pool scored on its own: ``permutation_test`` (with a null) or ``measure``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the full data were checked (and warned about) once
        if n_perm:
            res = permutation_test(spec, xp, yp, n_perm, seed, q=q)
            return res, res.score, dict(res.knn_recall), dict(res.duplicate_fraction)
        value = _registry.measure(spec, xp, yp)
    return None, float(value), dict(getattr(value, "recall", {}) or {}), {}


def _store(
    out: dict[str, np.ndarray],
    recall: dict[str, np.ndarray],
    dups: dict[str, np.ndarray],
    res: tuple[PermutationResult | None, float, dict[str, float], dict[str, float]],
    r: int,
    j: int,
    shape: tuple[int, int],
) -> None:
    perm, raw, rec, dup = res
    out["scores"][r, j] = raw
    if perm is not None:
        out["null_mean"][r, j] = perm.null_mean
        out["null_std"][r, j] = perm.null_std
        out["p"][r, j] = perm.p_value
        out["adjusted"][r, j] = perm.adjusted
        out["calibrated"][r, j] = getattr(perm, "calibrated", float("nan"))
    for key, value in rec.items():
        recall.setdefault(key, np.full(shape, np.nan))[r, j] = value
    for key, value in dup.items():
        dups.setdefault(key, np.full(shape, np.nan))[r, j] = value


__all__ = ["CurveResult", "candidate_lists", "check_pool_sizes", "curve", "plot_curve", "pool_knn"]
