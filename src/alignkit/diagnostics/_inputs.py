"""Input checks shared by every diagnostic: one helper per kind of input, errors naming the argument."""

from __future__ import annotations

from typing import Any

import numpy as np

from alignkit._validation import ArrayLike, as_matrix


def as_array(X: ArrayLike, name: str = "X", *, dtype: Any = None, check_finite: bool = True) -> np.ndarray:
    """``X`` as a checked 2-D float numpy array (float32 stays float32 unless ``dtype`` says otherwise).

    Same checks and messages as every analysis (:func:`alignkit._validation.as_matrix`): 2-D, non-empty,
    real numbers, finite. CUDA tensors are copied to the host (diagnostics that keep the device use
    :func:`as_matrix` directly).
    """
    t = as_matrix(X, name, check_finite=check_finite)
    a = t.cpu().numpy() if t.device.type != "cpu" else t.numpy()
    return a if dtype is None else a.astype(dtype, copy=False)


def check_paired(arrays: dict[str, np.ndarray]) -> int:
    """The common row count of row-paired arrays (an error naming both when they differ)."""
    items = list(arrays.items())
    n = items[0][1].shape[0]
    for name, a in items[1:]:
        if a.shape[0] != n:
            raise ValueError(
                f"{items[0][0]} and {name} must be row-paired (the same items in the same order); "
                f"got {n} and {a.shape[0]} rows"
            )
    return int(n)


def check_labels(
    labels: Any, n: int, *, name: str = "labels", min_classes: int = 2, min_per_class: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """``labels`` (any hashable values, one per row) as (integer codes 0..C−1, the classes in order).

    Errors name the argument: wrong length, fewer than ``min_classes`` classes, a class with fewer than
    ``min_per_class`` items (listing the smallest ones), missing values.
    """
    if labels is None:
        raise ValueError(f"{name} are required: one class label per row")
    lab = np.asarray(labels.detach().cpu() if hasattr(labels, "detach") else labels)
    if lab.ndim != 1:
        raise ValueError(f"{name} must be 1-D (one label per row); got shape {lab.shape}")
    if lab.shape[0] != n:
        raise ValueError(f"{name} must have one label per row: got {lab.shape[0]} labels for {n} rows")
    if lab.dtype.kind == "f" and not np.isfinite(lab).all():
        raise ValueError(f"{name} contain NaN or Inf; give every row a class")
    if lab.dtype == object and any(v is None for v in lab):
        raise ValueError(f"{name} contain None; give every row a class")
    classes, codes = np.unique(lab, return_inverse=True)
    if classes.size < min_classes:
        raise ValueError(
            f"{name} must hold at least {min_classes} classes; got {classes.size} ({classes[:5].tolist()})"
        )
    counts = np.bincount(codes, minlength=classes.size)
    small = np.flatnonzero(counts < min_per_class)
    if small.size:
        shown = ", ".join(f"{classes[i].item()!r} ({counts[i]})" for i in small[:5])
        raise ValueError(f"{name}: every class needs at least {min_per_class} items; too few in {shown}")
    return codes.astype(np.int64), classes


def check_groups(groups: Any, n: int, *, name: str = "groups") -> np.ndarray | None:
    """``groups`` (one hashable value per row: items sharing one are not independent) as integer codes."""
    from alignkit.stats.groups import check_groups as _check

    return None if groups is None else _check(groups, n, name=name)


__all__ = ["as_array", "check_groups", "check_labels", "check_paired"]
