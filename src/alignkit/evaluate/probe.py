"""Linear-probe accuracy with stratified cross-validation."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from alignkit._validation import ArrayLike, as_matrix
from alignkit.evaluate.rows import Row, make_row


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
    from sklearn.linear_model import LogisticRegression  # a dependency, imported here to keep start-up light
    from sklearn.model_selection import StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

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
    folds = StratifiedKFold(n_splits=int(n_folds), shuffle=True, random_state=seed)
    accs = []
    for train, test in folds.split(x, y):
        model = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=max_iter))
        model.fit(x[train], y[train])
        accs.append(float(np.mean(model.predict(x[test]) == y[test])))
    base = {"n_folds": int(n_folds), "n_items": int(x.shape[0]), "n_classes": int(classes.size), "seed": seed}
    rows = [make_row("fold_accuracy", a, tags, fold=i, **base) for i, a in enumerate(accs)]
    rows.append(make_row("accuracy", float(np.mean(accs)), tags, **base))
    rows.append(make_row("majority_baseline", counts.max() / counts.sum(), tags, **base))
    return rows
