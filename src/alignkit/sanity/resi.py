"""Two tests after ReSi (Klabunde, Wald, Schumacher, Maier-Hein, Strohmaier, Lemmerich, "ReSi: A Comprehensive
Benchmark for Representational Similarity Measures", ICLR 2025).

**Output correlation** (ReSi's "correlation to output difference", grounding by prediction): over all pairs of
models, the similarity of their final representations should rank the pairs as their outputs do. Per measure,
Spearman's ρ between the (symmetrised, distance-negated) representational similarity and the output similarity:
prediction agreement ``mean_i 1[argmax p_a(i) = argmax p_b(i)]`` (1 − ReSi's disagreement), −JSD (the mean
Jensen–Shannon divergence of the softmax outputs, in bits) and, with labels, −|acc_a − acc_b| (ReSi's accuracy
test). Ideal ρ = +1. ReSi permutes the pairs for a p-value; pairs that share a model are not exchangeable, so the
p-value here is Mantel's (1967): the model labels of the output matrix are permuted (all N! permutations when
``n_perm ≥ N! − 1``, else ``n_perm`` seeded ones), one-sided for ρ > 0.

**Augmentation** (ReSi's augmentation and layer-monotonicity tests, simplified to what a trained zoo allows):
the similarity between a model's representations of clean inputs and of the same inputs with noise of growing
strength should fall as the noise grows. Per (measure, model, layer): Spearman's ρ between noise level and
similarity (ideal −1) and the fraction of adjacent levels in the right order (a tie counts ½), as ReSi's
monotonicity test reports a correlation and a violation rate.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from alignkit._progress import progress as progress_bar
from alignkit._validation import ArrayLike
from alignkit.registry import Spec
from alignkit.sanity._common import (
    as_matrices,
    check_name_sequence,
    check_seed,
    cross_scores,
    frame,
    meta,
    pearson,
    resolve_measures,
    run_or_reason,
    sample_rows,
    spearman,
    take,
    warn_skipped,
)

OUTPUT_MEASURES = ("agreement", "jsd", "accuracy")


# ------------------------------------------------------------------------------------- output correlation


@dataclass(frozen=True)
class OutputCorrelationResult:
    """``pairs``: measure, model_a, model_b, score (symmetrised raw), similarity (oriented: higher = more
    similar), agreement, jsd, accuracy_gap (|Δ accuracy|, NaN without labels).

    ``correlations``: measure, name, family, symmetrised, higher_is_better, output_measure (agreement, jsd;
    accuracy with labels), rho (Spearman between similarity and the output similarity; +1 ideal), p_value
    (Mantel, one-sided), n_perm (permutations drawn; N! − 1 when exact), n_pairs, status, reason, time_s.
    """

    pairs: Any
    correlations: Any
    models: list[str]
    n_items: int

    def tables(self) -> dict[str, Any]:
        return {"pairs": self.pairs, "correlations": self.correlations}


def _softmax(t: torch.Tensor) -> np.ndarray:
    return torch.softmax(t.double(), dim=1).cpu().numpy()


def _check_probabilities(p: np.ndarray, name: str) -> np.ndarray:
    if (p < 0).any() or not np.allclose(p.sum(axis=1), 1.0, atol=1e-4):
        raise ValueError(f"{name} must hold probabilities (non-negative rows summing to 1) when probabilities=True")
    return p / p.sum(axis=1, keepdims=True)


def jensen_shannon(p: np.ndarray, q: np.ndarray) -> float:
    """Mean over rows of ``JSD(p, q) = ½KL(p‖m) + ½KL(q‖m)``, ``m = (p + q)/2``, in bits (∈ [0, 1])."""
    from scipy.special import rel_entr

    m = (p + q) / 2.0
    return float(np.mean(0.5 * (rel_entr(p, m).sum(axis=1) + rel_entr(q, m).sum(axis=1))) / math.log(2.0))


def _output_matrices(probs: list[np.ndarray], labels: np.ndarray | None) -> dict[str, np.ndarray]:
    """Per output measure, the (N, N) matrix of output *similarity* between models (higher = more alike)."""
    N = len(probs)
    pred = [p.argmax(axis=1) for p in probs]
    out = {k: np.full((N, N), np.nan) for k in OUTPUT_MEASURES}
    acc = [float(np.mean(p == labels)) for p in pred] if labels is not None else None
    for i, j in itertools.combinations(range(N), 2):
        agree = float(np.mean(pred[i] == pred[j]))
        jsd = jensen_shannon(probs[i], probs[j])
        gap = abs(acc[i] - acc[j]) if acc is not None else float("nan")
        for key, value in (("agreement", agree), ("jsd", -jsd), ("accuracy", -gap)):
            out[key][i, j] = out[key][j, i] = value
    return out


def _upper(M: np.ndarray) -> np.ndarray:
    return M[np.triu_indices(M.shape[0], k=1)]


def mantel_spearman(sim: np.ndarray, target: np.ndarray, n_perm: int, seed: int) -> tuple[float, float, int]:
    """Spearman's ρ between the upper triangles of two symmetric (N, N) matrices and its Mantel p-value
    (permuting the model labels of ``target``; one-sided, ρ > 0): ``(rho, p, permutations used)``.

    All N! permutations when ``n_perm ≥ N! − 1`` (p = #{ρ_π ≥ ρ}/N!, the identity included), else ``n_perm``
    seeded draws (p = (1 + #{ρ_π ≥ ρ})/(1 + n_perm)). Mantel, "The detection of disease clustering and a
    generalized regression approach", Cancer Research 1967.
    """
    from scipy.stats import rankdata

    x, y = _upper(sim), _upper(target)
    rho = spearman(x, y)
    if not np.isfinite(rho) or n_perm == 0 or not np.isfinite(x).all() or not np.isfinite(y).all():
        return rho, float("nan"), 0
    N = sim.shape[0]
    rx = rankdata(x)
    ranks = np.zeros_like(target)  # ranks of the pairs, placed back in the matrix (permutations keep them)
    iu = np.triu_indices(N, k=1)
    ranks[iu] = rankdata(y)
    ranks = ranks + ranks.T
    tol = 1e-12
    if math.factorial(N) - 1 <= n_perm:
        perms = itertools.permutations(range(N))
        hits = sum(pearson(rx, ranks[np.ix_(p, p)][iu]) >= rho - tol for p in perms)
        return rho, hits / math.factorial(N), math.factorial(N) - 1
    g = np.random.default_rng(seed)
    hits = sum(pearson(rx, ranks[np.ix_(p, p)][iu]) >= rho - tol for p in (g.permutation(N) for _ in range(n_perm)))
    return rho, (1 + hits) / (1 + n_perm), n_perm


def _check_n_perm(n_perm: Any) -> int:
    if isinstance(n_perm, bool) or not isinstance(n_perm, (int, np.integer)) or n_perm < 0:
        raise ValueError(f"n_perm must be a non-negative integer (0: no p-value); got {n_perm!r}")
    return int(n_perm)


def output_correlation_test(
    reps: Sequence[ArrayLike] | Mapping[str, ArrayLike],
    outputs: Sequence[ArrayLike] | Mapping[str, ArrayLike],
    measures: Sequence[str | Spec] | None = None,
    *,
    labels: ArrayLike | None = None,
    probabilities: bool = False,
    n_perm: int = 999,
    sample: int | None = None,
    seed: int = 0,
    progress: bool = False,
) -> OutputCorrelationResult:
    """Does representational similarity rank pairs of models like their outputs do? (ReSi, see the module.)

    reps : one representation (n, d_m) per model (its final hidden layer), a list or a dict name → array.
    outputs : the models' outputs on the same n items, (n, C): logits (softmax is applied), or probabilities with
        ``probabilities=True``; in the same order (or with the same names) as ``reps``.
    measures : measure ids; None: :func:`~alignkit.sanity.default_measures`. Asymmetric measures are symmetrised.
    labels : optional (n,) true classes: adds the accuracy test (similarity vs −|acc_a − acc_b|).
    n_perm : Mantel permutations for the p-value (0: none). sample : score on this many items (seeded rows; the
        outputs use the same rows).
    """
    names, rep_values = check_name_sequence(reps, "reps")
    out_names, out_values = check_name_sequence(outputs, "outputs")
    if len(rep_values) < 3:
        raise ValueError(f"reps must hold at least 3 models (3 pairs) to correlate over pairs; got {len(rep_values)}")
    if len(out_values) != len(rep_values) or (isinstance(reps, Mapping) and out_names != names):
        raise ValueError(f"outputs must hold one array per model of reps, in the same order; reps has {names}, "
                         f"outputs has {out_names}")  # fmt: skip
    seed, n_perm = check_seed(seed), _check_n_perm(n_perm)
    specs, default = resolve_measures(measures)
    tensors = as_matrices(
        [*rep_values, *out_values], [f"reps[{m!r}]" for m in names] + [f"outputs[{m!r}]" for m in names]
    )
    N = len(names)
    widths = {int(t.shape[1]) for t in tensors[N:]}
    if len(widths) != 1:
        raise ValueError(f"outputs must all have the same number of classes (columns); got widths {sorted(widths)}")
    if widths == {1}:
        raise ValueError("outputs must have at least 2 columns (classes)")
    n = int(tensors[0].shape[0])
    y = None
    if labels is not None:
        y = np.asarray(labels)
        if y.ndim != 1 or y.shape[0] != n:
            raise ValueError(f"labels must be a 1-D array of one class per item (n = {n}); got shape {y.shape}")
    rows = sample_rows(n, sample, seed)
    tensors = [take(t, rows) for t in tensors]
    y = y if y is None or rows is None else y[rows.numpy()]
    n = int(tensors[0].shape[0])
    probs = [
        _check_probabilities(t.double().cpu().numpy(), f"outputs[{m!r}]") if probabilities else _softmax(t)
        for m, t in zip(names, tensors[N:], strict=True)
    ]
    targets = _output_matrices(probs, y)
    output_measures = OUTPUT_MEASURES if y is not None else OUTPUT_MEASURES[:2]
    spaces = dict(zip(names, tensors[:N], strict=True))

    pair_rows: list[dict[str, Any]] = []
    corr_rows: list[dict[str, Any]] = []
    skipped: dict[str, str] = {}
    for spec in progress_bar(specs, show=progress, desc="output correlation"):
        info = meta(spec)
        S, reason, seconds = run_or_reason(cross_scores, spec, spaces, spaces, True)
        if S is not None and not info.symmetric:  # one atlas holds both orders: average S and its transpose
            S = (S + S.T) / 2.0
        base = {**info.row(), "n_pairs": N * (N - 1) // 2, "time_s": seconds}
        if S is None:
            skipped[spec.id] = reason
            for key in output_measures:
                corr_rows.append({**base, "output_measure": key, "rho": float("nan"), "p_value": float("nan"),
                                  "n_perm": 0, "status": "skipped", "reason": reason})  # fmt: skip
            continue
        sim = info.sign * S
        for i, j in itertools.combinations(range(N), 2):
            pair_rows.append({"measure": spec.id, "model_a": names[i], "model_b": names[j], "score": float(S[i, j]),
                              "similarity": float(sim[i, j]), "agreement": float(targets["agreement"][i, j]),
                              "jsd": float(-targets["jsd"][i, j]),
                              "accuracy_gap": float(-targets["accuracy"][i, j])})  # fmt: skip
        for key in output_measures:
            rho, p, used = mantel_spearman(sim, targets[key], n_perm, seed)
            corr_rows.append({**base, "output_measure": key, "rho": rho, "p_value": p, "n_perm": used, "status": "ok",
                              "reason": ""})  # fmt: skip
    warn_skipped(skipped, not default, "output_correlation_test")
    return OutputCorrelationResult(frame(pair_rows, _PAIR_COLUMNS), frame(corr_rows, _CORR_COLUMNS), names, n)


_PAIR_COLUMNS = {
    "measure": str, "model_a": str, "model_b": str, "score": "float64", "similarity": "float64",
    "agreement": "float64", "jsd": "float64", "accuracy_gap": "float64",
}  # fmt: skip
_CORR_COLUMNS = {
    "measure": str, "name": str, "family": str, "symmetrised": bool, "higher_is_better": bool, "output_measure": str,
    "rho": "float64", "p_value": "float64", "n_perm": "int64", "n_pairs": "int64", "status": str, "reason": str,
    "time_s": "float64",
}  # fmt: skip


# ------------------------------------------------------------------------------------------- augmentation


@dataclass(frozen=True)
class AugmentationResult:
    """``scores``: measure, model, layer, level, score (symmetrised raw: clean vs noisy at that level),
    similarity (oriented: higher = more similar).

    ``summary`` (one row per measure, model and layer): measure, name, family, symmetrised, higher_is_better,
    model, layer, rho (Spearman between level and similarity; −1 ideal), adjacent_ordered (fraction of adjacent
    levels whose similarity falls; a tie counts ½), n_levels, status, reason, time_s.

    ``by_measure``: the summary averaged over models and layers: measure, mean_rho, mean_adjacent_ordered,
    n_cases, status, reason.
    """

    scores: Any
    summary: Any
    by_measure: Any
    levels: list[float]

    def tables(self) -> dict[str, Any]:
        return {"scores": self.scores, "summary": self.summary, "by_measure": self.by_measure}


def _nested(x: Any, what: str) -> dict[str, dict[str, Any]]:
    """model → layer → array from an array, a dict layer → array (one model) or a dict model → layer → array."""
    if not isinstance(x, Mapping):
        return {"model": {"layer": x}}
    if not x:
        raise ValueError(f"{what} is empty")
    inner = [isinstance(v, Mapping) for v in x.values()]
    if all(inner):
        out = {str(m): {str(k): v for k, v in layers.items()} for m, layers in x.items()}
        for m, layers in out.items():
            if not layers:
                raise ValueError(f"{what}[{m!r}] holds no layers")
        return out
    if any(inner):
        raise TypeError(f"{what} must map layer names to arrays, or model names to such dicts, not a mix of both")
    return {"model": {str(k): v for k, v in x.items()}}


def _check_levels(levels: Any, n_noisy: int) -> list[float]:
    if isinstance(levels, (str, bytes)) or not isinstance(levels, (Sequence, np.ndarray)):
        raise TypeError(f"levels must be a list of numbers; got {type(levels).__name__}")
    out = []
    for v in levels:
        if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)) or not math.isfinite(v):
            raise ValueError(f"levels must hold finite numbers; got {v!r}")
        out.append(float(v))
    if len(out) < 2:
        raise ValueError(f"levels must list at least 2 noise levels; got {out}")
    if len(set(out)) != len(out):
        raise ValueError(f"levels must not repeat a level; got {out}")
    if len(out) != n_noisy:
        raise ValueError(f"noisy must hold one entry per level: {len(out)} levels, {n_noisy} noisy entries")
    return out


def adjacent_ordered(similarity: np.ndarray) -> float:
    """Fraction of adjacent entries (in level order) where similarity falls; a tie counts ½, NaN counts 0."""
    d = np.diff(similarity)
    return float(np.mean(np.where(d < 0, 1.0, np.where(d == 0, 0.5, 0.0))))


def augmentation_test(
    clean: ArrayLike | Mapping[str, ArrayLike] | Mapping[str, Mapping[str, ArrayLike]],
    noisy: Sequence[Any],
    levels: Sequence[float],
    measures: Sequence[str | Spec] | None = None,
    *,
    sample: int | None = None,
    seed: int = 0,
    progress: bool = False,
) -> AugmentationResult:
    """Does similarity to the clean representation fall as input noise grows? (ReSi-style, see the module.)

    clean : representations of the clean inputs: an array (n, d), a dict layer → array (one model) or a dict
        model → layer → array.
    noisy : one entry per level, each shaped like ``clean`` (the same models and layers; the same n items, in
        the same order, with noise of that level added to the *inputs*).
    levels : the noise strengths (any order; results are reported in increasing order).
    measures : measure ids; None: :func:`~alignkit.sanity.default_measures`. Asymmetric measures are symmetrised.
    """
    if isinstance(noisy, (str, bytes, Mapping)) or not isinstance(noisy, Sequence):
        raise TypeError(f"noisy must be a list with one entry per level; got {type(noisy).__name__}")
    lv = _check_levels(levels, len(noisy))
    seed = check_seed(seed)
    specs, default = resolve_measures(measures)
    base = _nested(clean, "clean")
    per_level = [_nested(x, f"noisy[{k}]") for k, x in enumerate(noisy)]
    for k, other in enumerate(per_level):
        if {m: list(v) for m, v in other.items()} != {m: list(v) for m, v in base.items()}:
            raise ValueError(
                f"noisy[{k}] must have the models and layers of clean; clean has "
                f"{ {m: list(v) for m, v in base.items()} }, noisy[{k}] has { {m: list(v) for m, v in other.items()} }"
            )
    order = np.argsort(lv, kind="stable")
    lv_sorted = [lv[i] for i in order]
    cases = [(m, layer) for m, layers in base.items() for layer in layers]
    arrays = [base[m][layer] for m, layer in cases] + [per_level[k][m][layer] for k in order for m, layer in cases]
    labels = [f"clean[{m!r}][{layer!r}]" for m, layer in cases] + [
        f"noisy[{k}][{m!r}][{layer!r}]" for k in order for m, layer in cases
    ]
    tensors = as_matrices(arrays, labels)
    rows = sample_rows(int(tensors[0].shape[0]), sample, seed)
    tensors = [take(t, rows) for t in tensors]
    C, K = len(cases), len(lv)
    clean_t = tensors[:C]
    noisy_t = [[tensors[C + k * C + c] for k in range(K)] for c in range(C)]
    for c, (m, layer) in enumerate(cases):
        widths = {int(t.shape[1]) for t in noisy_t[c]}
        if widths != {int(clean_t[c].shape[1])}:
            raise ValueError(f"every level of model {m!r}, layer {layer!r} must have the clean width "
                             f"{int(clean_t[c].shape[1])}; got widths {sorted(widths)}")  # fmt: skip

    score_rows: list[dict[str, Any]] = []
    summary_rows: list[dict[str, Any]] = []
    skipped: dict[str, str] = {}
    steps = [(spec, c) for spec in specs for c in range(C)]
    for spec, c in progress_bar(steps, show=progress, desc="augmentation"):
        info = meta(spec)
        m, layer = cases[c]
        a = {"clean": clean_t[c]}
        b = {f"{k}": t for k, t in enumerate(noisy_t[c])}
        S, reason, seconds = run_or_reason(cross_scores, spec, a, b, info.symmetric)
        row = {**info.row(), "model": m, "layer": layer, "n_levels": K, "time_s": seconds}
        if S is None:
            skipped[spec.id] = reason
            summary_rows.append({**row, "rho": float("nan"), "adjacent_ordered": float("nan"), "status": "skipped",
                                 "reason": reason})  # fmt: skip
            continue
        raw = S[0]
        sim = info.sign * raw
        for k in range(K):
            score_rows.append({"measure": spec.id, "model": m, "layer": layer, "level": lv_sorted[k],
                               "score": float(raw[k]), "similarity": float(sim[k])})  # fmt: skip
        summary_rows.append({**row, "rho": spearman(np.array(lv_sorted), sim), "adjacent_ordered":
                             adjacent_ordered(sim), "status": "ok", "reason": ""})  # fmt: skip
    warn_skipped(skipped, not default, "augmentation_test")
    summary = frame(summary_rows, _SUMMARY_COLUMNS)
    return AugmentationResult(frame(score_rows, _SCORE_COLUMNS), summary, _by_measure(summary), lv_sorted)


def _by_measure(summary: Any) -> Any:
    rows = []
    for measure, part in summary.groupby("measure", sort=False):
        ok = part[part["status"] == "ok"]
        rows.append({"measure": measure, "mean_rho": float(ok["rho"].mean()) if len(ok) else float("nan"),
                     "mean_adjacent_ordered": float(ok["adjacent_ordered"].mean()) if len(ok) else float("nan"),
                     "n_cases": len(ok), "status": "ok" if len(ok) == len(part) else "skipped",
                     "reason": "; ".join(sorted(set(part["reason"]) - {""}))})  # fmt: skip
    return frame(rows, _BY_MEASURE_COLUMNS)


_SCORE_COLUMNS = {
    "measure": str, "model": str, "layer": str, "level": "float64", "score": "float64", "similarity": "float64",
}  # fmt: skip
_SUMMARY_COLUMNS = {
    "measure": str, "name": str, "family": str, "symmetrised": bool, "higher_is_better": bool, "model": str,
    "layer": str, "rho": "float64", "adjacent_ordered": "float64", "n_levels": "int64", "status": str, "reason": str,
    "time_s": "float64",
}  # fmt: skip
_BY_MEASURE_COLUMNS = {
    "measure": str, "mean_rho": "float64", "mean_adjacent_ordered": "float64", "n_cases": "int64", "status": str,
    "reason": str,
}  # fmt: skip
