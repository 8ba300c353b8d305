"""Linear-probe accuracy with stratified cross-validation.

One implementation, :func:`cross_validate_probe`, serves the evaluation protocol :func:`linear_probe` (tidy rows)
and the class diagnostic :func:`alignkit.diagnostics.classes.separability_probe` (accuracy and AUROC, optionally
with grouped folds).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from alignkit._validation import ArrayLike, as_matrix
from alignkit.evaluate.rows import Row, make_row


@dataclass(frozen=True)
class ProbeFolds:
    """Held-out scores of one cross-validated probe: one entry per fold.

    ``auroc`` is None when not asked for; an entry is NaN when its test fold holds a single class
    (only possible with grouped folds).
    """

    accuracy: np.ndarray
    auroc: np.ndarray | None


def cross_validate_probe(
    x: np.ndarray,
    y: np.ndarray,
    *,
    n_folds: int,
    C: float,
    seed: int,
    max_iter: int = 1000,
    groups: np.ndarray | None = None,
    auroc: bool = False,
) -> ProbeFolds:
    """Fit ``StandardScaler → LogisticRegression(C)`` (L2, lbfgs) on each training fold, score the held-out fold.

    Folds: ``StratifiedKFold(n_folds, shuffle=True, random_state=seed)``, or ``StratifiedGroupKFold`` when
    ``groups`` is given (rows sharing a group are never split between train and test). The scaler is fitted
    inside the fold, so no test statistics leak. ``auroc``: also the held-out AUROC, binary (the second class is
    positive) or macro one-vs-rest over the classes present in the test fold (a class missing from a training
    fold scores 0). Inputs are not checked here (callers do).
    """
    from sklearn.linear_model import LogisticRegression  # a dependency, imported here to keep start-up light
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    classes = np.unique(y)
    if groups is None:
        splits = StratifiedKFold(n_splits=int(n_folds), shuffle=True, random_state=seed).split(x, y)
    else:
        splits = StratifiedGroupKFold(n_splits=int(n_folds), shuffle=True, random_state=seed).split(x, y, groups)
    accs, aucs = [], []
    for train, test in splits:
        if np.unique(y[train]).size < 2:
            raise ValueError(
                "a training fold holds a single class (the groups follow the classes too closely); "
                "use fewer folds or finer groups"
            )
        model = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=max_iter))
        model.fit(x[train], y[train])
        accs.append(float(np.mean(model.predict(x[test]) == y[test])))
        if auroc:
            aucs.append(_auroc(y[test], model.predict_proba(x[test]), model.classes_, classes))
    return ProbeFolds(np.asarray(accs), np.asarray(aucs) if auroc else None)


def _auroc(y: np.ndarray, proba: np.ndarray, fitted: np.ndarray, classes: np.ndarray) -> float:
    """Binary AUROC, or the macro one-vs-rest mean over the classes present in ``y`` (NaN if it has one class)."""
    from sklearn.metrics import roc_auc_score

    full = np.zeros((y.shape[0], classes.size))
    full[:, np.searchsorted(classes, fitted)] = proba
    present = np.unique(y)
    if present.size < 2:
        return float("nan")
    if classes.size == 2:
        return float(roc_auc_score(y == classes[1], full[:, 1]))
    cols = np.searchsorted(classes, present)
    return float(np.mean([roc_auc_score(y == c, full[:, j]) for c, j in zip(present, cols, strict=True)]))


def linear_probe(
    X: ArrayLike,
    labels: ArrayLike,
    *,
    n_folds: int = 5,
    C: float = 1.0,
    seed: int = 0,
    max_iter: int = 1000,
    **tags: Any,
) -> list[Row]:
    """Accuracy of an L2-regularised logistic regression (scikit-learn, lbfgs, inverse strength ``C``)
    under stratified ``n_folds``-fold cross-validation (shuffled with ``seed``).

    The standardising scaler is fitted inside each training fold only (no test-fold statistics leak).
    Rows: ``fold_accuracy`` per fold (``fold`` = 0…n_folds−1), ``accuracy`` = their mean, and
    ``majority_baseline`` = the largest class's share. Labels may be any hashable values.
    Alain & Bengio, "Understanding intermediate layers using linear classifier probes", ICLR workshop 2017.
    """
    x = as_matrix(X, "X").double().cpu().numpy()
    y = np.asarray(labels.cpu() if isinstance(labels, torch.Tensor) else labels)
    if y.ndim != 1 or y.shape[0] != x.shape[0]:
        raise ValueError(f"labels must be 1-D with one entry per row of X ({x.shape[0]}); got shape {y.shape}")
    if isinstance(n_folds, bool) or not isinstance(n_folds, (int, np.integer)) or n_folds < 2:
        raise ValueError(f"n_folds must be an integer >= 2; got {n_folds!r}")
    if not C > 0:
        raise ValueError(f"C must be > 0; got {C}")
    classes, counts = np.unique(y, return_counts=True)
    if classes.size < 2:
        raise ValueError("linear_probe needs at least 2 classes")
    if counts.min() < n_folds:
        raise ValueError(
            f"every class needs at least n_folds={n_folds} items for stratified folds; "
            f"class {classes[counts.argmin()]!r} has {counts.min()}"
        )
    accs = cross_validate_probe(x, y, n_folds=int(n_folds), C=C, seed=seed, max_iter=max_iter).accuracy.tolist()
    base = {"n_folds": int(n_folds), "n_items": int(x.shape[0]), "n_classes": int(classes.size), "seed": seed}
    rows = [make_row("fold_accuracy", a, tags, fold=i, **base) for i, a in enumerate(accs)]
    rows.append(make_row("accuracy", float(np.mean(accs)), tags, **base))
    rows.append(make_row("majority_baseline", counts.max() / counts.sum(), tags, **base))
    return rows
