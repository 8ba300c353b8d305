"""Pairs' quality: alignment-level bucketing (NoC) and a preference-pair separability audit.

- :class:`AlignmentLevels`: equal-width bins of pair scores fitted on training data and then frozen
  (Kang et al., "Noise-aware Learning from Web-crawled Image-Text Data for Image Captioning", ICCV 2023,
  kakaobrain/noc; docs/methods.md §3.9), and the diagnostic :func:`alignment_levels`.
- :func:`preference_separability`: a paired linear probe on ``e_chosen − e_rejected`` with a random half of
  the pairs flipped (docs/methods.md §3.5), plus per-pair margins.
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from alignkit._validation import ArrayLike
from alignkit.diagnostics._inputs import as_array, check_groups, check_paired
from alignkit.diagnostics._registry import register
from alignkit.diagnostics._result import DiagnosticResult

# The edges NoC released for CC3M (cosine of CLIP ViT-L/14 image and caption embeddings; 8 bins, width ≈ 0.0649).
NOC_CC3M_EDGES: tuple[float, ...] = (
    -0.03691,
    0.02803,
    0.09297,
    0.15791,
    0.22285,
    0.28779,
    0.35273,
    0.41767,
    0.48261,
)
PRESETS: dict[str, tuple[float, ...]] = {"noc_cc3m": NOC_CC3M_EDGES}
STRATEGIES = ("uniform", "quantile")
_FORMAT = "alignkit.alignment_levels"


def _scores(scores: Any, name: str = "scores") -> np.ndarray:
    s = np.asarray(scores.detach().cpu() if hasattr(scores, "detach") else scores)
    if s.dtype == object or s.dtype.kind not in "iuf":
        raise TypeError(f"{name} must be real numbers; got dtype {s.dtype}")
    if s.ndim <= 1 or (s.ndim == 2 and 1 in s.shape):
        s = s.reshape(-1).astype(np.float32 if s.dtype == np.float32 else np.float64)  # as sklearn: float32 stays
    if s.ndim != 1:
        raise ValueError(f"{name} must be 1-D (one score per pair); got shape {s.shape}")
    if s.size == 0:
        raise ValueError(f"{name} is empty")
    if not np.isfinite(s).all():
        raise ValueError(f"{name} contain {int((~np.isfinite(s)).sum())} NaN or Inf value(s)")
    return s


def _check_edges(edges: Any) -> np.ndarray:
    e = np.asarray(edges, dtype=np.float64)
    if e.ndim != 1 or e.size < 3:
        raise ValueError(f"edges must be 1-D with at least 3 values (2 bins); got shape {e.shape}")
    if not np.isfinite(e).all() or not (np.diff(e) > 0).all():
        raise ValueError("edges must be finite and strictly increasing")
    return e


class AlignmentLevels:
    """Alignment levels of pair scores: ``fit`` freezes bin edges, ``transform`` maps scores to 0..n_bins−1.

    ``strategy="uniform"`` (NoC's): ``edges = linspace(min s, max s, n_bins + 1)`` on the training scores
    (in float32 for float32 scores, else float64), exactly ``sklearn.preprocessing.KBinsDiscretizer(n_bins,
    encode="ordinal", strategy="uniform", subsample=None)`` (sklearn's default subsamples 200,000 rows).
    ``"quantile"`` (our extension, not NoC's): edges at the quantiles ``linspace(0, 1, n_bins + 1)`` (numpy's
    linear interpolation); repeated edges are merged, with a warning, so fewer bins may remain.
    ``transform``: ``level = searchsorted(edges[1:−1], s, side="right")`` (= ``torch.bucketize(s,
    edges[1:−1], right=True)``, NoC's), so a score on an inner edge goes to the upper bin and scores outside
    the fitted range clamp to levels 0 and n_bins − 1. Edges round-trip through JSON (:meth:`to_json`,
    :meth:`save`, :meth:`load`); :meth:`from_edges` freezes given ones, e.g. :data:`NOC_CC3M_EDGES`.
    """

    def __init__(self, n_bins: int = 8, strategy: str = "uniform") -> None:
        self.n_bins = n_bins
        self.strategy = strategy

    def _check_params(self) -> int:
        n = self.n_bins
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 2:
            raise ValueError(f"n_bins must be an integer >= 2; got {n!r}")
        if self.strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {STRATEGIES}; got {self.strategy!r}")
        return int(n)

    def fit(self, scores: ArrayLike, y: Any = None) -> AlignmentLevels:
        """Freeze the edges on training ``scores`` (1-D). Constant scores cannot be binned (an error)."""
        n = self._check_params()
        s = _scores(scores)
        lo, hi = s.min(), s.max()  # numpy scalars of the scores' dtype: linspace then runs in it, as sklearn's
        if lo == hi:
            raise ValueError(f"scores are constant ({lo}): equal-width bins need a range")
        if self.strategy == "uniform":
            edges = np.linspace(lo, hi, n + 1)
        else:
            edges = np.quantile(s, np.linspace(0.0, 1.0, n + 1))
            keep = np.concatenate([[True], np.diff(edges) > 0])
            if not keep.all():
                warnings.warn(
                    f"quantile edges repeat (tied scores): {int((~keep).sum())} bin(s) merged, "
                    f"{int(keep.sum()) - 1} remain",
                    UserWarning,
                    stacklevel=2,
                )
                edges = edges[keep]
        self.edges_ = edges
        self.n_bins_ = len(edges) - 1
        return self

    def _fitted(self) -> np.ndarray:
        edges = getattr(self, "edges_", None)
        if edges is None:
            raise RuntimeError("AlignmentLevels is not fitted: call fit(scores) or use from_edges(edges)")
        return np.asarray(edges)

    def transform(self, scores: ArrayLike) -> np.ndarray:
        """Levels (int64) ``searchsorted(edges[1:−1], s, side="right")`` ∈ 0..n_bins_−1 (out-of-range clamps)."""
        edges = self._fitted()
        return np.searchsorted(edges[1:-1], _scores(scores), side="right").astype(np.int64)

    def fit_transform(self, scores: ArrayLike, y: Any = None) -> np.ndarray:
        return self.fit(scores).transform(scores)

    @classmethod
    def from_edges(cls, edges: Any, *, strategy: str = "uniform") -> AlignmentLevels:
        """Levels with frozen ``edges`` (strictly increasing, ≥ 3 values), e.g. ``NOC_CC3M_EDGES``."""
        e = _check_edges(edges)
        out = cls(n_bins=len(e) - 1, strategy=strategy)
        out.edges_ = e
        out.n_bins_ = len(e) - 1
        return out

    def to_json(self) -> str:
        """The frozen edges as JSON (floats written exactly; no pickle)."""
        edges = self._fitted()
        payload = {"format": _FORMAT, "version": 1, "strategy": self.strategy, "edges": [float(x) for x in edges]}
        return json.dumps(payload)

    @classmethod
    def from_json(cls, text: str) -> AlignmentLevels:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"not alignment-level JSON: {exc}") from None
        if not isinstance(data, dict) or data.get("format") != _FORMAT or "edges" not in data:
            raise ValueError(f"not alignment-level JSON (expected format {_FORMAT!r} with 'edges')")
        strategy = data.get("strategy", "uniform")
        if strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {STRATEGIES}; got {strategy!r}")
        return cls.from_edges(data["edges"], strategy=strategy)

    def save(self, path: str | os.PathLike[str]) -> None:
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(self.to_json())

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> AlignmentLevels:
        with open(path, encoding="utf-8") as fh:
            return cls.from_json(fh.read())

    def __repr__(self) -> str:
        return f"AlignmentLevels(n_bins={self.n_bins!r}, strategy={self.strategy!r})"


def _row_cosines(X: np.ndarray, Y: np.ndarray, names: tuple[str, str] = ("X", "Y")) -> np.ndarray:
    """cos(x_i, y_i) per row, float64; a zero row is an error naming it."""
    if X.shape[1] != Y.shape[1]:
        raise ValueError(f"{names[0]} and {names[1]} must have the same width; got {X.shape[1]} and {Y.shape[1]}")
    x, y = X.astype(np.float64, copy=False), Y.astype(np.float64, copy=False)
    nx, ny = np.linalg.norm(x, axis=1), np.linalg.norm(y, axis=1)
    for nm, norms in zip(names, (nx, ny), strict=True):
        zero = np.flatnonzero(norms == 0)
        if zero.size:
            raise ValueError(f"{nm} has {zero.size} zero row(s) (e.g. row {zero[0]}): their cosine is undefined")
    return np.einsum("ij,ij->i", x, y) / (nx * ny)


@dataclass(frozen=True)
class AlignmentLevelsResult(DiagnosticResult):
    """Levels of the pairs' cosines (``value`` = ``top_fraction``, the share of pairs in the top level, which
    NoC conditions on at inference as the best-aligned captions). ``counts``: pairs per level (0..n_bins−1);
    ``levels``/``scores``: per pair; ``edges``: the bin edges (fitted on these scores, or a preset)."""

    top_fraction: float
    mean_level: float
    mean_score: float
    n_bins: int
    n_pairs: int
    strategy: str
    preset: str | None
    counts: np.ndarray
    edges: np.ndarray
    levels: np.ndarray
    scores: np.ndarray

    @property
    def value(self) -> float:
        return self.top_fraction


@register(
    "alignment_levels",
    family="pairs",
    inputs=("X", "Y"),
    range=(0.0, 1.0),
    higher_is_better=None,
    cost="O(n·d) cosines + O(n log n_bins)",
    description="Alignment levels (Kang et al., NoC, ICCV 2023): cos(x_i, y_i) of each pair bucketed into n_bins "
    "equal-width levels fitted on these scores (or preset='noc_cc3m', NoC's released CC3M edges for CLIP ViT-L/14). "
    "Value: share of pairs in the top level; counts per level and per-pair levels in the result.",
    constraints={
        "n_bins": {"low": 2},
        "strategy": {"choices": STRATEGIES},
        "preset": {"choices": tuple(PRESETS)},
    },
)
def alignment_levels(
    X: ArrayLike, Y: ArrayLike, *, n_bins: int = 8, strategy: str = "uniform", preset: str | None = None
) -> AlignmentLevelsResult:
    """Score pairs by ``s_i = cos(x_i, y_i)``, bin them with :class:`AlignmentLevels` (fitted on ``s``; or the
    frozen ``preset`` edges, ``n_bins`` then ignored) and summarise: counts per level, the top-level share
    (headline), the mean level and score. Row-paired X, Y of equal width; a zero row is an error.
    """
    x, y = as_array(X, "X"), as_array(Y, "Y")
    check_paired({"X": x, "Y": y})
    s = _row_cosines(x, y)
    if preset is not None:
        if preset not in PRESETS:
            raise ValueError(f"preset must be one of {tuple(PRESETS)} or None; got {preset!r}")
        levels_model = AlignmentLevels.from_edges(PRESETS[preset])
    else:
        levels_model = AlignmentLevels(n_bins=n_bins, strategy=strategy).fit(s)
    lv = levels_model.transform(s)
    nb = levels_model.n_bins_
    counts = np.bincount(lv, minlength=nb)
    return AlignmentLevelsResult(
        top_fraction=float(counts[-1] / lv.size),
        mean_level=float(lv.mean()),
        mean_score=float(s.mean()),
        n_bins=int(nb),
        n_pairs=int(lv.size),
        strategy=levels_model.strategy,
        preset=preset,
        counts=counts,
        edges=np.asarray(levels_model.edges_, dtype=np.float64),
        levels=lv,
        scores=s,
    )


# ------------------------------------------------------------------------------------------ preference pairs


def prompt_groups(prompt: ArrayLike) -> np.ndarray:
    """Integer group codes of identical prompt rows (byte-equal rows share a code): pairs that share a
    prompt are not independent, so cross-validation keeps them in one fold."""
    p = np.ascontiguousarray(as_array(prompt, "prompt"))
    rows = p.view(np.dtype((np.void, p.dtype.itemsize * p.shape[1]))).ravel()
    return np.unique(rows, return_inverse=True)[1].reshape(-1).astype(np.int64)


def grouped_folds(labels: ArrayLike, groups: ArrayLike | None, folds: int = 5, seed: int = 0) -> np.ndarray:
    """The test fold (0..folds−1) of every row: stratified by ``labels``; grouped when ``groups`` puts two
    or more rows together (``StratifiedGroupKFold``: a group is never split across folds), else
    ``StratifiedKFold``; both shuffled with ``seed``."""
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

    y = np.asarray(labels)
    n = y.shape[0]
    if isinstance(folds, bool) or not isinstance(folds, (int, np.integer)) or folds < 2:
        raise ValueError(f"folds must be an integer >= 2; got {folds!r}")
    _, counts = np.unique(y, return_counts=True)
    if counts.size < 2 or counts.min() < folds:
        raise ValueError(f"every class needs at least folds={folds} rows for stratified folds; class sizes {counts}")
    g = check_groups(groups, n)
    fold = np.full(n, -1, dtype=np.int64)
    x = np.zeros((n, 1))
    if g is not None and np.unique(g).size < n:
        n_groups = int(np.unique(g).size)
        if n_groups < folds:
            raise ValueError(f"{n_groups} group(s) cannot fill folds={folds}: need at least one group per fold")
        splits = StratifiedGroupKFold(n_splits=int(folds), shuffle=True, random_state=seed).split(x, y, g)
    else:
        splits = StratifiedKFold(n_splits=int(folds), shuffle=True, random_state=seed).split(x, y)
    for i, (_, test) in enumerate(splits):
        fold[test] = i
    return fold


@dataclass(frozen=True)
class PreferenceSeparability(DiagnosticResult):
    """Paired-probe audit of preference pairs (``value`` = ``accuracy``, mean held-out accuracy; chance 0.5).

    ``auroc``: mean held-out AUROC over folds; ``fold_accuracy``/``fold_auroc`` per fold; ``fold``: each pair's
    test fold; ``flipped``: the pairs presented as rejected − chosen. Margins ``cos(p, chosen) − cos(p,
    rejected)`` per pair (``margins``) and their mean, median, standard deviation and positive share.
    ``groups_from``: "groups" (given), "prompt" (identical prompt rows) or "none" (every pair its own group).
    """

    accuracy: float
    auroc: float
    folds: int
    n_pairs: int
    n_groups: int
    groups_from: str
    with_prompt: bool
    margin_mean: float
    margin_median: float
    margin_std: float
    margin_positive: float
    fold_accuracy: np.ndarray
    fold_auroc: np.ndarray
    fold: np.ndarray
    flipped: np.ndarray
    margins: np.ndarray

    @property
    def value(self) -> float:
        return self.accuracy


@register(
    "preference_separability",
    family="pairs",
    inputs=("prompt", "chosen", "rejected"),
    range=(0.0, 1.0),
    higher_is_better=None,
    cost="folds × an L2 logistic regression on n × d (lbfgs) + O(n·d) margins",
    description="Paired linear probe of preference pairs (toolkit recipe motivated by 'More is Less', arXiv "
    "2504.02193, whose exact probe was not found): logistic regression on e_chosen − e_rejected with a random "
    "half of the pairs flipped, stratified k-fold (grouped by prompt), scaler fitted inside folds; held-out "
    "accuracy (0.5 = indistinguishable; high = chosen and rejected differ along a linear direction) and AUROC, "
    "plus margins cos(p, chosen) − cos(p, rejected).",
    constraints={"folds": {"low": 2}, "C": {"low": 0.0, "low_open": True}, "max_iter": {"low": 1}},
)
def preference_separability(
    prompt: ArrayLike,
    chosen: ArrayLike,
    rejected: ArrayLike,
    *,
    folds: int = 5,
    seed: int = 0,
    C: float = 1.0,
    with_prompt: bool = False,
    max_iter: int = 1000,
    groups: Any = None,
) -> PreferenceSeparability:
    """How linearly distinguishable chosen and rejected responses are (docs/methods.md §3.5, paired variant).

    Features ``z_i = ±(e_chosen,i − e_rejected,i)``: a random half of the pairs (``seed``) is flipped to
    ``e_rejected − e_chosen`` with label 0, the rest keeps label 1, so classes are balanced and a constant
    offset alone cannot score. ``with_prompt=True`` appends the prompt embedding ``[z_i, p_i]`` (it carries
    no label, but lets the probe condition on the prompt). L2 logistic regression (lbfgs, inverse strength
    ``C``) after a StandardScaler fitted on the training folds only; stratified ``folds``-fold cross-validation,
    **grouped** so that pairs sharing a prompt stay in one fold: by ``groups`` when given, else by identical
    prompt rows (byte-equal; :func:`prompt_groups`). Reports mean held-out accuracy and AUROC.

    Margins (prompt, chosen, rejected of equal width): ``m_i = cos(p_i, c_i) − cos(p_i, r_i)``.
    Motivation: "More is Less: The Pitfalls of Multi-Model Synthetic Preference Data in DPO Safety Alignment"
    (arXiv 2504.02193) relates how easily chosen and rejected responses are told apart to alignment outcomes;
    its own probe was not found, so this is the toolkit's recipe.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if isinstance(folds, bool) or not isinstance(folds, (int, np.integer)) or folds < 2:
        raise ValueError(f"folds must be an integer >= 2; got {folds!r}")
    if not C > 0:
        raise ValueError(f"C must be > 0; got {C!r}")
    p = as_array(prompt, "prompt", dtype=np.float64)
    c = as_array(chosen, "chosen", dtype=np.float64)
    r = as_array(rejected, "rejected", dtype=np.float64)
    n = check_paired({"prompt": p, "chosen": c, "rejected": r})
    if c.shape[1] != r.shape[1]:
        raise ValueError(f"chosen and rejected must have the same width; got {c.shape[1]} and {r.shape[1]}")
    if n < 2 * folds:
        raise ValueError(f"{n} pairs are too few for folds={folds}: need at least {2 * folds}")
    margins = _row_cosines(p, c, ("prompt", "chosen")) - _row_cosines(p, r, ("prompt", "rejected"))

    if groups is not None:
        g, groups_from = check_groups(groups, n), "groups"
    else:
        g, groups_from = prompt_groups(p), "prompt"
    assert g is not None
    n_groups = int(np.unique(g).size)
    if n_groups == n:
        groups_from = "none" if groups is None else groups_from

    rng = np.random.default_rng(seed)
    flipped = np.zeros(n, dtype=bool)
    flipped[rng.permutation(n)[: n // 2]] = True
    y = (~flipped).astype(np.int64)
    z = np.where(flipped[:, None], r - c, c - r)
    feats = np.hstack([z, p]) if with_prompt else z
    fold = grouped_folds(y, g, int(folds), seed)

    accs, aucs = [], []
    for i in range(int(folds)):
        test = fold == i
        train = ~test
        model = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=max_iter))
        model.fit(feats[train], y[train])
        accs.append(float(np.mean(model.predict(feats[test]) == y[test])))
        both = np.unique(y[test]).size == 2
        aucs.append(float(roc_auc_score(y[test], model.decision_function(feats[test]))) if both else float("nan"))
    fold_auroc = np.asarray(aucs)
    return PreferenceSeparability(
        accuracy=float(np.mean(accs)),
        auroc=float(np.nanmean(fold_auroc)) if np.isfinite(fold_auroc).any() else float("nan"),
        folds=int(folds),
        n_pairs=int(n),
        n_groups=n_groups,
        groups_from=groups_from,
        with_prompt=bool(with_prompt),
        margin_mean=float(margins.mean()),
        margin_median=float(np.median(margins)),
        margin_std=float(margins.std()),
        margin_positive=float(np.mean(margins > 0)),
        fold_accuracy=np.asarray(accs),
        fold_auroc=fold_auroc,
        fold=fold,
        flipped=flipped,
        margins=margins,
    )


__all__ = [
    "NOC_CC3M_EDGES",
    "AlignmentLevels",
    "AlignmentLevelsResult",
    "PreferenceSeparability",
    "alignment_levels",
    "grouped_folds",
    "preference_separability",
    "prompt_groups",
]
