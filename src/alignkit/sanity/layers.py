"""Layer identification: does a measure find the corresponding layer of another network?

Kornblith, Norouzi, Lee, Hinton, "Similarity of Neural Network Representations Revisited", ICML 2019 (Sec. 6.1,
Table 2): networks of one architecture trained from different seeds should agree layer by layer, so for every
ordered pair of distinct models (i, j) and every layer l of model i, the test passes when the layer of model j
most similar to ``A_i[l]`` is l. Accuracy = passes / trials, chance = 1/L. Their result on 10 CIFAR-10 networks:
linear CKA 99.3 %, RBF CKA 80.6–99.3 %, CCA (mean ρ) 1.4 %, SVCCA ≈ 10–15 %, PWCCA 11.1 %, linear regression
45.4 %.

Asymmetric measures are symmetrised, ``(s(x, y) + s(y, x))/2``, and distances are negated (registry metadata:
``symmetric``, ``higher_is_better``). A best score tied between t layers counts ``1/t`` when the true layer is
among them (the expectation under random tie-breaking, as :mod:`alignkit.ranking` counts ties); a row with no
finite score counts 0.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from alignkit._progress import progress as progress_bar
from alignkit._validation import ArrayLike
from alignkit.atlas import atlas
from alignkit.registry import Spec
from alignkit.sanity._common import (
    MeasureMeta,
    as_matrices,
    check_name_sequence,
    check_seed,
    fits_rows,
    frame,
    meta,
    resolve_measures,
    run_or_reason,
    sample_rows,
    take,
    warn_skipped,
)

# Two oriented scores within this relative distance of the best are tied.
TIE_RTOL = 1e-12


@dataclass(frozen=True)
class SanityResult:
    """Layer identification: one row per trial and one per measure (pandas DataFrames with plain columns, so
    they round-trip to Parquet), and the symmetrised score blocks.

    ``trials``: measure, model_a, model_b, layer, layer_index, predicted, predicted_index (−1 when the row has no
    finite score), correct (1, 0 or 1/t for a t-way tie at the top), n_tied, score (the true pair's symmetrised
    raw score), best_score, margin (oriented true score minus the best oriented score of the other layers: > 0
    exactly when the layer is identified without a tie).

    ``accuracy``: measure, name, family, symmetrised, higher_is_better, accuracy, n_trials, n_correct,
    n_undefined (trials whose true pair has no finite score), chance (1/L), n_models, n_layers, n_items, status
    ("ok" or "skipped"), reason (why it was skipped), route ("rows": one atlas per model against the others;
    "pairs": one per model pair), time_s.

    ``scores``: measure id → (N, N, L, L) array, ``[i, j, l, m]`` the symmetrised raw score of layer l of model i
    and layer m of model j (NaN on the diagonal blocks i = j).
    """

    trials: Any
    accuracy: Any
    models: list[str]
    layers: list[str]
    n_items: int
    scores: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    @property
    def chance(self) -> float:
        return 1.0 / len(self.layers)

    @property
    def skipped(self) -> dict[str, str]:
        """Measure id → why it could not run on this data."""
        acc = self.accuracy
        bad = acc[acc["status"] != "ok"]
        return dict(zip(bad["measure"], bad["reason"], strict=True))

    def ranking(self) -> Any:
        """The measures that ran, best accuracy first (ties keep the input order)."""
        acc = self.accuracy
        return acc[acc["status"] == "ok"].sort_values("accuracy", ascending=False, kind="stable")

    def tables(self) -> dict[str, Any]:
        """The tables by name (``trials``, ``accuracy``), e.g. to write each as Parquet."""
        return {"trials": self.trials, "accuracy": self.accuracy}


def _check_models(models: Any) -> tuple[list[str], list[str], list[list[torch.Tensor]]]:
    names, values = check_name_sequence(models, "models")
    if len(values) < 2:
        raise ValueError(f"models must hold at least 2 models to identify layers across them; got {len(values)}")
    layer_lists = []
    for name, model in zip(names, values, strict=True):
        if not isinstance(model, Mapping):
            raise TypeError(f"models[{name!r}] must be a dict layer name -> array (n, d); got {type(model).__name__}")
        layer_lists.append([str(k) for k in model])
    layers = layer_lists[0]
    if len(layers) < 2:
        raise ValueError(
            f"each model needs at least 2 layers (with one, identification is trivially right); models[{names[0]!r}] "
            f"has {layers}"
        )
    for name, own in zip(names[1:], layer_lists[1:], strict=True):
        if own != layers:
            missing, extra = sorted(set(layers) - set(own)), sorted(set(own) - set(layers))
            detail = f"missing {missing}, extra {extra}" if missing or extra else "the same names in another order"
            raise ValueError(
                f"every model must have the same layers in the same order; models[{names[0]!r}] has {layers}, "
                f"models[{name!r}] has {own} ({detail})"
            )
    labels = [f"models[{m!r}][{layer!r}]" for m in names for layer in layers]
    flat = as_matrices([v for model in values for v in model.values()], labels)
    L = len(layers)
    return names, layers, [flat[i * L : (i + 1) * L] for i in range(len(values))]


def _blocks(spec: Spec, info: MeasureMeta, tensors: list[list[torch.Tensor]], by_rows: bool) -> np.ndarray:
    """(N, N, L, L) symmetrised raw scores of every (model, layer) × (model, layer); NaN where i = j.

    ``by_rows``: one atlas per model i against the layers of all the models it still needs (j > i for a symmetric
    measure, every j ≠ i for an asymmetric one), so each pair is scored once per direction needed and each layer
    is prepared at most N times; else one atlas per model pair (less memory at once)."""
    N, L = len(tensors), len(tensors[0])
    raw = np.full((N, N, L, L), np.nan)  # raw[i, j, l, m] = s(A_i[l], A_j[m]) where computed
    for i in range(N):
        js = [j for j in range(N) if (j > i if info.symmetric else j != i)]
        if not js:
            continue
        a = {str(l): t for l, t in enumerate(tensors[i])}
        if by_rows:
            b = {f"{j}/{m}": t for j in js for m, t in enumerate(tensors[j])}
            S = atlas(a, b, spec).scores
            for k, j in enumerate(js):
                raw[i, j] = S[:, k * L : (k + 1) * L]
        else:
            for j in js:
                raw[i, j] = atlas(a, {str(m): t for m, t in enumerate(tensors[j])}, spec).scores
    out = np.full_like(raw, np.nan)
    for i in range(N):
        for j in range(N):
            if i < j and info.symmetric:
                out[i, j], out[j, i] = raw[i, j], raw[i, j].T
            elif i != j and not info.symmetric:
                out[i, j] = (raw[i, j] + raw[j, i].T) / 2.0
    return out


def _trials(info: MeasureMeta, blocks: np.ndarray, models: list[str], layers: list[str]) -> list[dict[str, Any]]:
    rows = []
    N, L = len(models), len(layers)
    for i in range(N):
        for j in range(N):
            if i == j:
                continue
            for l in range(L):
                raw = blocks[i, j, l]
                head = {"measure": info.id, "model_a": models[i], "model_b": models[j], "layer": layers[l]}
                rows.append({**head, "layer_index": l, **_identify(raw, info.sign, l, layers), "score": float(raw[l])})
    return rows


def _identify(raw: np.ndarray, sign: float, true: int, layers: list[str]) -> dict[str, Any]:
    """The best layer of one row of raw scores (oriented by ``sign``), the credit of the true layer, its margin."""
    nan = float("nan")
    oriented = sign * raw
    finite = np.isfinite(oriented)
    if not finite.any():
        return {"predicted": "", "predicted_index": -1, "correct": 0.0, "n_tied": 0, "margin": nan, "best_score": nan}
    best = float(np.max(oriented[finite]))
    tied = finite & (oriented >= best - TIE_RTOL * max(1.0, abs(best)))
    n_tied = int(tied.sum())
    pred = true if tied[true] else int(np.flatnonzero(tied)[0])
    others = np.delete(oriented, true)
    others = others[np.isfinite(others)]
    margin = float(oriented[true] - others.max()) if finite[true] and others.size else nan
    return {"predicted": layers[pred], "predicted_index": pred, "correct": (1.0 / n_tied) if tied[true] else 0.0,
            "n_tied": n_tied, "margin": margin, "best_score": sign * best}  # fmt: skip


def layer_identification(
    models: Sequence[Mapping[str, ArrayLike]] | Mapping[str, Mapping[str, ArrayLike]],
    measures: Sequence[str | Spec] | None = None,
    *,
    sample: int | None = None,
    seed: int = 0,
    progress: bool = False,
) -> SanityResult:
    """Kornblith et al.'s layer-identification accuracy of each measure over every ordered pair of models.

    models : a list (or dict name → model) of models, each a dict layer name → activations (n, d_l); every model
        has the same layer names in the same (network) order and every array the same n items (rows).
    measures : measure ids (``'cka?debiased=false'``, ``'mutual_knn?k=50'``); None runs
        :func:`~alignkit.sanity.default_measures` (every registered measure with the parameter variants worth
        comparing). A measure that cannot run on these spaces (``ValueError``/``RuntimeError``, e.g. retrieval
        between layers of different widths) is recorded as skipped with the reason; a warning names those the
        caller listed explicitly.
    sample : score on this many items drawn with ``seed`` (the rows ``atlas(..., sample=, seed=)`` keeps).

    Each measure is scored with :func:`alignkit.atlas`, one atlas per model against the layers of every model it
    is compared with (route "rows": each needed pair scored once, each layer prepared at most N times), or one per
    model pair where those prepared layers would not fit in memory at once (route "pairs").
    """
    names, layers, tensors = _check_models(models)
    seed = check_seed(seed)
    specs, default = resolve_measures(measures)
    n = int(tensors[0][0].shape[0])
    rows_kept = sample_rows(n, sample, seed)
    tensors = [[take(t, rows_kept) for t in model] for model in tensors]
    n = int(tensors[0][0].shape[0])
    widths = [int(t.shape[1]) for model in tensors for t in model]
    N, L = len(tensors), len(layers)

    trial_rows: list[dict[str, Any]] = []
    acc_rows: list[dict[str, Any]] = []
    scores: dict[str, np.ndarray] = {}
    skipped: dict[str, str] = {}
    for spec in progress_bar(specs, show=progress, desc="layer identification"):
        info = meta(spec)
        by_rows = fits_rows(spec, n, widths, N * L)
        blocks, reason, seconds = run_or_reason(_blocks, spec, info, tensors, by_rows)
        row = {**info.row(), "n_models": N, "n_layers": L, "n_items": n, "chance": 1.0 / L,
               "route": "rows" if by_rows else "pairs", "time_s": seconds}  # fmt: skip
        if blocks is None:
            skipped[spec.id] = reason
            nan = float("nan")
            acc_rows.append({**row, "accuracy": nan, "n_trials": 0, "n_correct": nan, "n_undefined": 0,
                             "status": "skipped", "reason": reason})  # fmt: skip
            continue
        scores[spec.id] = blocks
        rows = _trials(info, blocks, names, layers)
        trial_rows.extend(rows)
        correct = float(sum(r["correct"] for r in rows))
        acc_rows.append({**row, "accuracy": correct / len(rows), "n_trials": len(rows), "n_correct": correct,
                         "n_undefined": sum(not np.isfinite(r["score"]) for r in rows), "status": "ok",
                         "reason": ""})  # fmt: skip
    warn_skipped(skipped, not default, "layer_identification")
    return SanityResult(_trials_frame(trial_rows), _accuracy_frame(acc_rows), names, layers, n, scores)


_TRIAL_COLUMNS = {
    "measure": str, "model_a": str, "model_b": str, "layer": str, "layer_index": "int64", "predicted": str,
    "predicted_index": "int64", "correct": "float64", "n_tied": "int64", "margin": "float64", "score": "float64",
    "best_score": "float64",
}  # fmt: skip
_ACCURACY_COLUMNS = {
    "measure": str, "name": str, "family": str, "symmetrised": bool, "higher_is_better": bool, "accuracy": "float64",
    "n_trials": "int64", "n_correct": "float64", "n_undefined": "int64", "chance": "float64", "n_models": "int64",
    "n_layers": "int64", "n_items": "int64", "status": str, "reason": str, "route": str, "time_s": "float64",
}  # fmt: skip


def _trials_frame(rows: list[dict[str, Any]]) -> Any:
    return frame(rows, _TRIAL_COLUMNS)


def _accuracy_frame(rows: list[dict[str, Any]]) -> Any:
    return frame(rows, _ACCURACY_COLUMNS)
