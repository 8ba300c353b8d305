"""The layer × layer atlas: one measure for every pair of layers of two models, with a calibrated max.

Each layer is prepared once (its kNN graph, or its centred features for CKA), so an L1×L2 atlas
costs L1 + L2 kNN searches plus L1·L2 cheap overlaps (Huh et al., PRH 2024 compute L1·L2 searches).
Reporting the best pair is the STRUCTURE recipe (Gröger, Wen, Le, Brbić, "With Limited Data for
Multimodal Alignment, Let the STRUCTURE Guide You", NeurIPS 2025), but the max over L1·L2 pairs
is inflated even under the null (docs/methods.md §2.3). The max-statistic permutation test permutes all of
B's layers with the same π, keeps the max over pairs per draw, and tests the observed max against
those maxima: that p-value and the chance-adjusted max are honest about the selection.

Over all cells, the per-cell permutation p-values get Benjamini–Hochberg and Benjamini–Yekutieli q-values
(false-discovery control for reading the whole heatmap; :mod:`alignkit.stats.fdr`). With ``n_boot`` the
best pair and the last layer of each side (final × final) get subsampling confidence intervals
(:func:`alignkit.stats.bootstrap.bootstrap_ci`). Every layer's number of distinct rows is recorded; for
kNN measures, cells where most rows of a layer have at least k identical copies are flagged ill-defined.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from alignkit._progress import progress as progress_bar
from alignkit._validation import ArrayLike, as_matrix
from alignkit.degenerate import DuplicateRowsWarning, count_distinct_rows
from alignkit.metrics import _registry
from alignkit.metrics.cka_prepared import GramMeasure
from alignkit.metrics.prepared import check_rows, knn_recall, prepared_measure
from alignkit.metrics.preprocess import preprocess
from alignkit.registry import Spec
from alignkit.stats.bootstrap import BootstrapResult, bootstrap_ci
from alignkit.stats.fdr import qvalues
from alignkit.stats.groups import check_group_mode, check_groups, permutation_kind
from alignkit.stats.permutation import check_n_perm, permutations

Spaces = Mapping[str, ArrayLike] | Sequence[ArrayLike]

K_RULES = ("rice", "sqrt", "sturges")
FDR_ALPHA = 0.05  # the q-value threshold the summary counts cells at
# A kNN layer is ill-defined when more than this fraction of its rows have ≥ k identical copies (the threshold
# at which the measure's degenerate check gives up on the layer, alignkit.metrics._registry._with_ties).
TIED_ILL_DEFINED = 0.5


def k_from_rule(rule: str | int, n: int) -> int:
    """Neighbourhood size by a histogram-bin rule: rice ``⌈2n^{1/3}⌉`` (STRUCTURE's choice, 35 at
    n = 5000), sqrt ``⌈√n⌉``, sturges ``⌈log₂n⌉ + 1``; an int is returned unchanged."""
    if not isinstance(rule, str):
        return int(rule)
    if rule == "rice":
        return math.ceil(2 * n ** (1 / 3))
    if rule == "sqrt":
        return math.ceil(math.sqrt(n))
    if rule == "sturges":
        return math.ceil(math.log2(n)) + 1
    raise ValueError(f"k must be an integer or one of {', '.join(map(repr, K_RULES))}; got {rule!r}")


def _named(spaces: Spaces, which: str) -> dict[str, ArrayLike]:
    if isinstance(spaces, Mapping):
        named = {str(k): v for k, v in spaces.items()}
    elif isinstance(spaces, (list, tuple)):
        named = {str(i): v for i, v in enumerate(spaces)}
    else:
        raise TypeError(f"{which} must be a dict of name -> array or a list of arrays; got {type(spaces).__name__}")
    if not named:
        raise ValueError(f"{which} holds no layers")
    return named


@dataclass(frozen=True)
class AtlasResult:
    """Scores of every (layer of A, layer of B) pair, with optional permutation nulls."""

    measure: str
    names_a: list[str]
    names_b: list[str]
    scores: np.ndarray  # (L1, L2)
    higher_is_better: bool
    best_possible: float | None
    params: dict[str, Any]
    null: np.ndarray | None = field(default=None, repr=False)  # (n_perm, L1, L2)
    seed: int | None = None
    knn_recall: dict[str, float] = field(default_factory=dict)  # per layer, approximate backends only
    degenerate: dict[str, str] = field(default_factory=dict)  # "a:<layer>" / "b:<layer>" -> why (NaN scores)
    n_distinct: dict[str, int] = field(default_factory=dict)  # "a:<layer>" / "b:<layer>" -> distinct rows
    tied_fraction: dict[str, float] = field(default_factory=dict)  # kNN measures: rows with ≥ k identical copies
    intervals: dict[tuple[str, str], BootstrapResult] = field(default_factory=dict, repr=False)  # (a, b) -> CI
    n_boot: int = 0
    ci_level: float = 0.95
    n_items: int | None = None  # rows scored (after ``sample``)
    permutation: str = "full"  # how the null permuted rows: full, within, blocks (groups) or custom

    def _sign(self) -> float:
        return 1.0 if self.higher_is_better else -1.0

    @property
    def best(self) -> tuple[str, str, float]:
        """The best pair (argmax, or argmin for distances) and its raw score; NaN cells (degenerate
        layers) are never best."""
        signed = self._sign() * self.scores
        if not np.isfinite(signed).any():
            raise ValueError(f"no layer pair has a finite {self.measure} score (degenerate: {self.degenerate})")
        i, j = np.unravel_index(int(np.nanargmax(np.where(np.isfinite(signed), signed, np.nan))), signed.shape)
        return self.names_a[i], self.names_b[j], float(self.scores[i, j])

    @property
    def max_null(self) -> np.ndarray | None:
        """Per draw, the best score over all pairs with a finite score (the null of the selected max);
        degenerate layers are left out, so they cannot spoil the calibration of the others."""
        if self.null is None:
            return None
        keep = np.isfinite(self.scores).reshape(-1)
        if not keep.any():
            return np.full(self.null.shape[0], np.nan)
        flat = (self._sign() * self.null).reshape(self.null.shape[0], -1)[:, keep]
        flat = np.where(np.isfinite(flat), flat, np.inf)  # a NaN draw counts as extreme (conservative)
        return self._sign() * flat.max(axis=1)

    @property
    def p_values(self) -> np.ndarray | None:
        """Per-pair permutation p-values, uncorrected: ``(1 + #{null ≥ score})/(1 + B)``; NaN where the
        score is NaN (a NaN is never significant)."""
        if self.null is None:
            return None
        s = self._sign()
        extreme = (s * self.null >= s * self.scores) | ~np.isfinite(self.null)
        p = (1 + extreme.sum(axis=0)) / (1 + self.null.shape[0])
        return np.where(np.isfinite(self.scores), p, np.nan)

    @property
    def p_values_fwer(self) -> np.ndarray | None:
        """Per-pair p-values against the max-over-pairs null (single-step max-T; family-wise)."""
        mx = self.max_null
        if mx is None:
            return None
        s = self._sign()
        p = (1 + (s * mx[:, None, None] >= s * self.scores).sum(axis=0)) / (1 + mx.size)
        return np.where(np.isfinite(self.scores), p, np.nan)

    def q_values(self, method: str = "bh") -> np.ndarray | None:
        """Per-pair q-values (false-discovery-adjusted :attr:`p_values`) over every cell with a finite score:
        ``"bh"`` Benjamini–Hochberg 1995, ``"by"`` Benjamini–Yekutieli 2001; NaN where the score is NaN."""
        p = self.p_values
        return None if p is None else qvalues(p, method)

    @property
    def knn_ill_defined(self) -> np.ndarray:
        """(L1, L2) booleans: a kNN measure's cell where more than half the rows of either layer have ≥ k
        identical copies, so their neighbourhoods are decided by tie-breaking (all False for other measures)."""

        def side(prefix: str, names: list[str]) -> np.ndarray:
            return np.array([self.tied_fraction.get(f"{prefix}:{x}", 0.0) > TIED_ILL_DEFINED for x in names])

        return side("a", self.names_a)[:, None] | side("b", self.names_b)[None, :]

    @property
    def final(self) -> tuple[str, str, float]:
        """The last layer of each side (final × final) and its raw score (NaN if degenerate)."""
        return self.names_a[-1], self.names_b[-1], float(self.scores[-1, -1])

    def interval(self, layer_a: str, layer_b: str) -> BootstrapResult | None:
        """The subsampling confidence interval of one pair, if it was computed (``n_boot`` > 0: the best pair
        and final × final)."""
        return self.intervals.get((layer_a, layer_b))

    @property
    def best_p_value(self) -> float | None:
        """p-value of the selected best pair, calibrated for the selection over all pairs."""
        pf = self.p_values_fwer
        return None if pf is None or not np.isfinite(pf).any() else float(np.nanmin(pf))

    @property
    def best_adjusted(self) -> float | None:
        """Chance-adjusted best score against the max-null: ``(best − E[max null])/(ideal − E[max null])``."""
        mx = self.max_null
        if mx is None or self.best_possible is None:
            return None
        span = self.best_possible - mx.mean()
        return float((self.best[2] - mx.mean()) / span) if span != 0 else float("nan")

    def summary(self) -> dict[str, Any]:
        """The best pair with its calibrated p (with a null), the FDR counts over all cells (q ≤ ``FDR_ALPHA``),
        the final × final score, confidence intervals (with ``n_boot``) and the fewest distinct rows per side."""
        nan = float("nan")
        if not np.isfinite(self.scores).any():
            out: dict[str, Any] = {"measure": self.measure, "best_a": None, "best_b": None, "best_score": nan,
                                   "degenerate_layers": sorted(self.degenerate)}  # fmt: skip
            if self.null is not None:
                out.update(best_p_uncorrected=nan, best_p_calibrated=nan, max_null_mean=nan, best_adjusted=nan,
                           n_perm=int(self.null.shape[0]))  # fmt: skip
        else:
            a, b, s = self.best
            out = {"measure": self.measure, "best_a": a, "best_b": b, "best_score": s}
            if self.degenerate:
                out["degenerate_layers"] = sorted(self.degenerate)
            if self.knn_recall:
                out["min_knn_recall"] = min(self.knn_recall.values())
            if self.null is not None:
                cell, mx = self.p_values, self.max_null
                assert cell is not None and mx is not None
                i, j = self.names_a.index(a), self.names_b.index(b)
                out.update(
                    best_p_uncorrected=float(cell[i, j]),
                    best_p_calibrated=self.best_p_value,
                    max_null_mean=float(mx.mean()),
                    best_adjusted=self.best_adjusted,
                    n_perm=int(self.null.shape[0]),
                    permutation=self.permutation,
                )
        out.update(self._fdr_summary())
        fa, fb, fs = self.final
        out.update(final_a=fa, final_b=fb, final_score=fs)
        if self.n_boot:
            best = self.interval(out["best_a"], out["best_b"]) if out["best_a"] is not None else None
            final = self.interval(fa, fb)
            out.update(
                ci_level=self.ci_level,
                n_boot=self.n_boot,
                best_ci_low=best.low if best else nan,
                best_ci_high=best.high if best else nan,
                final_ci_low=final.low if final else nan,
                final_ci_high=final.high if final else nan,
            )
        if self.n_items is not None:
            out["n_items"] = self.n_items
        for side in ("a", "b"):
            counts = [v for key, v in self.n_distinct.items() if key.startswith(f"{side}:")]
            if counts:
                out[f"min_n_distinct_{side}"] = min(counts)
        if self.tied_fraction:
            out["n_knn_ill_defined"] = int(self.knn_ill_defined.sum())
        return out

    def _fdr_summary(self) -> dict[str, Any]:
        """With a null: the BH and BY q of the best pair and how many cells have q ≤ FDR_ALPHA."""
        if self.null is None:
            return {}
        finite = np.isfinite(self.scores)
        out: dict[str, Any] = {"n_cells_tested": int(finite.sum())}
        for method in ("bh", "by"):
            q = self.q_values(method)
            assert q is not None
            out[f"n_significant_{method}"] = int((q <= FDR_ALPHA).sum())
            if finite.any():
                a, b, _ = self.best
                out[f"best_q_{method}"] = float(q[self.names_a.index(a), self.names_b.index(b)])
            else:
                out[f"best_q_{method}"] = float("nan")
        return out

    def to_rows(self) -> list[dict[str, Any]]:
        """Tidy rows: one per layer pair. Always: the score, why a layer is degenerate, each layer's distinct
        rows, its tied fraction (kNN measures) and ``knn_ill_defined``; with a null: the null's mean and sd,
        ``p_value``, ``p_value_fwer``, ``q_value_bh``, ``q_value_by``; with ``n_boot``: ``ci_low``/``ci_high``
        (NaN for the pairs without an interval)."""
        rows = []
        p, pf = self.p_values, self.p_values_fwer
        q_bh, q_by = self.q_values("bh"), self.q_values("by")
        ill = self.knn_ill_defined
        nan = float("nan")
        for i, a in enumerate(self.names_a):
            for j, b in enumerate(self.names_b):
                row: dict[str, Any] = {
                    "measure": self.measure,
                    "layer_a": a,
                    "layer_b": b,
                    "score": float(self.scores[i, j]),
                    "degenerate_a": self.degenerate.get(f"a:{a}", ""),  # why the score is NaN ("" if it is not)
                    "degenerate_b": self.degenerate.get(f"b:{b}", ""),
                    "n_distinct_a": self.n_distinct.get(f"a:{a}", nan),
                    "n_distinct_b": self.n_distinct.get(f"b:{b}", nan),
                    "tied_fraction_a": self.tied_fraction.get(f"a:{a}", nan),  # kNN measures only
                    "tied_fraction_b": self.tied_fraction.get(f"b:{b}", nan),
                    "knn_ill_defined": bool(ill[i, j]),
                }
                if self.null is not None:
                    assert p is not None and pf is not None and q_bh is not None and q_by is not None
                    cell = self.null[:, i, j]
                    finite = cell[np.isfinite(cell)]
                    row.update(
                        null_mean=float(finite.mean()) if finite.size else float("nan"),
                        null_std=float(finite.std(ddof=1)) if finite.size > 1 else float("nan"),
                        p_value=float(p[i, j]),
                        p_value_fwer=float(pf[i, j]),
                        q_value_bh=float(q_bh[i, j]),
                        q_value_by=float(q_by[i, j]),
                    )
                if self.n_boot:
                    ci = self.interval(a, b)
                    row.update(ci_low=ci.low if ci else nan, ci_high=ci.high if ci else nan)
                rows.append(row)
        return rows

    def to_pandas(self) -> Any:
        import pandas as pd

        return pd.DataFrame(self.to_rows())


def atlas(
    spaces_a: Spaces,
    spaces_b: Spaces,
    measure: str | Spec = "mutual_knn",
    *,
    k: int | str | None = None,
    n_perm: int = 0,
    seed: int = 0,
    sample: int | None = None,
    progress: bool = False,
    n_boot: int = 0,
    ci_level: float = 0.95,
    groups: Any = None,
    group_mode: str = "within",
    permute: Any = None,
    **params: Any,
) -> AtlasResult:
    """Score ``measure`` (a registered name or id, e.g. ``'mutual_knn?k=10'``) for every pair
    (layer of A, layer of B).

    spaces_a, spaces_b : dict name -> array (n, d_l) or a list of arrays; widths may differ, the
        n rows must be the same items in every layer.
    k : for kNN measures, an int or a rule ("rice", "sqrt", "sturges") evaluated at the number of items.
    n_perm : if > 0, a max-statistic permutation null (all of B's layers permuted together per draw).
    sample : score on this many items drawn with ``seed`` (STRUCTURE selects layers on 5,000
        random training pairs; never select on test items).
    n_boot, ci_level : if ``n_boot`` > 0, subsampling confidence intervals at ``ci_level`` (half-samples
        without replacement, seeded by ``seed``; :func:`~alignkit.stats.bootstrap.bootstrap_ci`) for the best
        pair and final × final; each costs ``n_boot`` evaluations of the measure on half the items.
    groups, group_mode, permute : a structured null for items that are not exchangeable (one group label per
        row: ``"within"`` permutes rows only inside their group, ``"blocks"`` moves whole groups; ``permute`` a
        user function ``f(rng, n) -> indices``); see :mod:`alignkit.stats.groups`. With ``n_boot``, groups are
        also subsampled whole. Labels are given for all n rows; ``sample`` keeps those of the sampled rows.
    params : the measure's parameters and the preprocessing options (clip_quantile, center, normalize);
        they override the id's own parameters. ``metric`` here is the measure's distance (kNN measures).
    """
    named_a, named_b = _named(spaces_a, "spaces_a"), _named(spaces_b, "spaces_b")
    n_boot = _check_n_boot(n_boot)
    if isinstance(ci_level, bool) or not isinstance(ci_level, (int, float)) or not 0.0 < ci_level < 1.0:
        raise ValueError(f"ci_level must be in (0, 1); got {ci_level!r}")
    if k is not None and not isinstance(k, str):
        params["k"] = k
    spec = _registry.measure_spec(measure, **params)
    info = _registry.get(spec)
    prep, own = _registry.split(spec)
    tensors_a = {name: as_matrix(x, f"spaces_a[{name!r}]") for name, x in named_a.items()}
    tensors_b = {name: as_matrix(x, f"spaces_b[{name!r}]") for name, x in named_b.items()}
    sizes = {t.shape[0] for t in [*tensors_a.values(), *tensors_b.values()]}
    if len(sizes) != 1:
        detail = {f"a:{k_}": t.shape[0] for k_, t in tensors_a.items()} | {
            f"b:{k_}": t.shape[0] for k_, t in tensors_b.items()
        }
        raise ValueError(f"every layer must hold the same items (rows); got row counts {detail}")
    n = sizes.pop()
    if groups is not None and permute is not None:
        raise ValueError("give groups= or permute=, not both")
    codes = None if groups is None else check_groups(groups, n)
    check_group_mode(group_mode)
    if sample is not None and sample < n:
        rows = torch.randperm(n, generator=torch.Generator().manual_seed(int(seed)))[: int(sample)].sort().values
        tensors_a = {key: t[rows.to(t.device)] for key, t in tensors_a.items()}
        tensors_b = {key: t[rows.to(t.device)] for key, t in tensors_b.items()}
        codes = None if codes is None else codes[rows.numpy()]
        n = int(sample)
    if isinstance(k, str):
        if "k" not in info.own:
            raise ValueError(f"k={k!r} given, but measure {info.name!r} takes no k")
        spec = _registry.measure_spec(spec, k=k_from_rule(k, n))
        own = _registry.split(spec)[1]
    widths = [t.shape[1] for t in [*tensors_a.values(), *tensors_b.values()]]
    form = _linear_form(info.name, own, n, widths, n_perm)
    pm = prepared_measure(spec, max_dim=max(widths), linear_form=form)
    check_rows(pm, n)

    layers = [(f"a:{k_}", f"spaces_a[{k_!r}]", t) for k_, t in tensors_a.items()] + [
        (f"b:{k_}", f"spaces_b[{k_!r}]", t) for k_, t in tensors_b.items()
    ]
    prepared: list[Any] = []
    degenerate: dict[str, str] = {}
    n_distinct: dict[str, int] = {}
    tied: dict[str, float] = {}
    k_used = {**info.defaults, **own}.get("k")
    for key, name, t in _bar(layers, progress, "preparing layers"):
        t = preprocess(t, name=name, **prep) if prep else t
        check = _registry.check_space(info, t, name, own)  # once per layer, as the measure sees it
        counted = check is not None and check.n_distinct is not None  # kNN measures count them in the check
        n_distinct[key] = int(check.n_distinct) if counted else count_distinct_rows(t)
        if counted and info.duplicate_sensitive and isinstance(k_used, int):
            tied[key] = check.tied_fraction(k_used)
        if check is not None and check.degenerate:
            degenerate[key] = check.reason
            prepared.append(None)
        else:
            prepared.append(pm.prepare(t))
    _warn_degenerate(info.name, degenerate)
    ia = [i for i, p in enumerate(prepared[: len(tensors_a)]) if p is not None]
    ib = [j for j, p in enumerate(prepared[len(tensors_a) :]) if p is not None]
    pa, pb = [prepared[i] for i in ia], [prepared[len(tensors_a) + j] for j in ib]
    shape = (len(tensors_a), len(tensors_b))
    scores = _embed(_score_all(pm, pa, pb) if pa and pb else None, shape, ia, ib)
    null = None
    if n_perm:
        n_perm = check_n_perm(n_perm)
        perms = permutations(n, n_perm, seed, groups=codes, group_mode=group_mode, permute=permute)
        draws = _bar(perms, progress, "permutations")
        if not (pa and pb):
            null = np.full((n_perm, *shape), np.nan)
        elif isinstance(pm, GramMeasure):
            null = np.stack([_embed(m, shape, ia, ib) for m in pm.null_matrices(pa, pb, draws)])
        else:
            null = np.stack(
                [_embed(_score_all(pm, pa, [pm.permute(p, perm) for p in pb]), shape, ia, ib) for perm in draws]
            )
    best_possible = info.best_possible
    used = {**own, **prep}
    recall = {
        name: r for (_, name, _), p in zip(layers, prepared, strict=True) if p is not None and (r := knn_recall(p))
    }
    res = AtlasResult(
        spec.id,  # canonical: what was computed (keywords and a k rule resolved)
        list(tensors_a),
        list(tensors_b),
        scores,
        info.higher_is_better,
        best_possible,
        used,
        null,
        seed if n_perm else None,
        recall,
        degenerate,
        n_distinct,
        tied,
        {},
        n_boot,
        float(ci_level),
        n,
        permutation_kind(codes, group_mode, permute),
    )
    if not n_boot:
        return res
    return dataclasses.replace(
        res, intervals=_intervals(res, spec, tensors_a, tensors_b, n_boot, ci_level, seed, codes)
    )


def _check_n_boot(n_boot: int) -> int:
    if isinstance(n_boot, bool) or not isinstance(n_boot, (int, np.integer)) or n_boot < 0 or n_boot == 1:
        raise ValueError(f"n_boot must be 0 (no intervals) or an integer >= 2; got {n_boot!r}")
    return int(n_boot)


def _intervals(
    res: AtlasResult,
    spec: Spec,
    tensors_a: dict[str, torch.Tensor],
    tensors_b: dict[str, torch.Tensor],
    n_boot: int,
    level: float,
    seed: int,
    groups: np.ndarray | None = None,
) -> dict[tuple[str, str], BootstrapResult]:
    """Subsampling CIs of the best pair and final × final (the same subsets for both, from ``seed``); a pair
    with a NaN score (a degenerate layer) gets none."""
    pairs = [res.best[:2]] if np.isfinite(res.scores).any() else []
    pairs.append(res.final[:2])
    out: dict[tuple[str, str], BootstrapResult] = {}
    for a, b in dict.fromkeys(pairs):
        if not np.isfinite(res.scores[res.names_a.index(a), res.names_b.index(b)]):
            continue
        with warnings.catch_warnings():
            # the layer's distinct rows are recorded once in the result; not one warning per subsample
            warnings.simplefilter("ignore", DuplicateRowsWarning)
            out[(a, b)] = bootstrap_ci(spec, tensors_a[a], tensors_b[b], n_boot, level=level, seed=seed, groups=groups)
    return out


def _embed(sub: np.ndarray | None, shape: tuple[int, int], ia: list[int], ib: list[int]) -> np.ndarray:
    """The scores of the non-degenerate layers placed in the full matrix; NaN elsewhere."""
    out = np.full(shape, np.nan)
    if sub is not None:
        out[np.ix_(ia, ib)] = sub
    return out


def _warn_degenerate(measure: str, degenerate: dict[str, str]) -> None:
    if degenerate:
        from alignkit.degenerate import DegenerateSpaceWarning

        detail = "; ".join(f"{k} ({why})" for k, why in degenerate.items())
        warnings.warn(
            f"atlas of {measure!r}: degenerate layer(s) {detail}: their scores are NaN, left out of the best "
            "pair and of the max-statistic null",
            DegenerateSpaceWarning,
            stacklevel=3,
        )


def _score_all(pm: Any, pa: list[Any], pb: list[Any]) -> np.ndarray:
    return pm.score_matrix(pa, pb)


_GRAM_STACK_BYTES = 1.5 * 2**30


def _linear_form(name: str, own: dict[str, Any], n: int, widths: list[int], n_perm: int) -> str:
    """Linear CKA/HSIC under a permutation null: per draw and pair the feature form costs n·d1·d2,
    the stacked Gram form n² (one matmul for all pairs). Use the Gram form when it is cheaper and
    every layer's n×n float64 Gram fits in the budget."""
    if name not in ("cka", "hsic") or own.get("kernel", "linear") != "linear" or own.get("form", "auto") != "auto":
        return "auto"
    small = sorted(widths)[:2]
    if n_perm and n < small[0] * small[-1] and len(widths) * n * n * 8 <= _GRAM_STACK_BYTES:
        return "gram"
    return "auto"


def _bar(items: list[Any], show: bool, desc: str) -> Any:
    return progress_bar(items, show=show, desc=desc)


def select_layers(
    spaces_a: Spaces,
    spaces_b: Spaces,
    *,
    measure: str | Spec = "mutual_knn",
    k: int | str | None = None,
    sample: int | None = 5000,
    mode: str = "best",
    seed: int = 0,
    n_perm: int = 0,
    **params: Any,
) -> tuple[str, str, AtlasResult]:
    """Pick the layer pair to align, as STRUCTURE does: score every pair on a sample of *training*
    pairs (mutual kNN, k by the rice rule, 5,000 pairs by default) and take the best, or the last
    layers (``mode="last"``) for comparison. Returns ``(layer_a, layer_b, atlas)``; with ``n_perm`` the
    atlas carries the max-statistic null so the selection's significance is visible.

    Gröger, Wen, Le, Brbić, "With Limited Data for Multimodal Alignment, Let the STRUCTURE Guide You",
    NeurIPS 2025. Never select on test items: that leaks.
    """
    if mode not in ("best", "last"):
        raise ValueError(f"mode must be 'best' or 'last'; got {mode!r}")
    spec = _registry.measure_spec(measure, **params)
    if k is None and "k" in _registry.get(spec).own and "k" not in spec.kwargs:
        k = "rice"  # STRUCTURE's default, unless the id or a keyword sets k (keyword > id > default)
    res = atlas(spaces_a, spaces_b, spec, k=k, n_perm=n_perm, seed=seed, sample=sample)
    if mode == "last":
        return res.names_a[-1], res.names_b[-1], res
    a, b, _ = res.best
    return a, b, res
