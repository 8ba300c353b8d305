"""Input validation shared by every analysis: one helper, clear errors naming the argument."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from alignkit._lazy import lazy_module

if TYPE_CHECKING:
    import torch
else:
    torch = lazy_module("torch")

ArrayLike = Any  # numpy array, torch tensor, or anything np.asarray accepts


def as_matrix(
    X: ArrayLike, name: str = "X", *, dtype: torch.dtype | None = None, check_finite: bool = True
) -> torch.Tensor:
    """Return ``X`` as a 2-D real floating torch tensor, checked for shape and finiteness.

    numpy arrays and nested sequences become CPU tensors (no copy when possible); torch tensors
    keep their device. Integer inputs are promoted to float32; float16/bfloat16 to float32.
    float64 stays float64 unless ``dtype`` says otherwise. ``check_finite=False`` leaves the NaN/Inf check to a
    caller whose own single pass detects them (it must raise the same error).
    """
    if isinstance(X, torch.Tensor):
        t = X.detach()
    else:
        try:
            arr = np.asarray(X)
        except Exception as exc:  # pragma: no cover - numpy's own message is appended
            raise TypeError(f"{name} must be an array of numbers; got {type(X).__name__}: {exc}") from exc
        if arr.dtype == object or arr.dtype.kind not in "biuf":
            raise TypeError(f"{name} must hold real numbers (int or float); got dtype {arr.dtype}")
        if arr.dtype.kind == "b":
            raise TypeError(f"{name} must hold real numbers, not booleans")
        arr = np.ascontiguousarray(arr)
        if arr.flags.writeable:
            t = torch.from_numpy(arr)
        else:
            with warnings.catch_warnings():
                # Read-only inputs (memory-mapped stores) are fine: analyses never write to their inputs.
                warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
                t = torch.from_numpy(arr)
    if t.is_complex() or t.dtype == torch.bool:
        raise TypeError(f"{name} must hold real numbers; got dtype {t.dtype}")
    if t.ndim != 2:
        hint = " (use X.reshape(-1, 1) for a single feature)" if t.ndim == 1 else ""
        raise ValueError(f"{name} must be 2-D (items x features); got shape {tuple(t.shape)}{hint}")
    if t.shape[0] == 0 or t.shape[1] == 0:
        raise ValueError(f"{name} is empty: shape {tuple(t.shape)}")
    if dtype is not None:
        t = t.to(dtype)
    elif not t.is_floating_point() or t.dtype in (torch.float16, torch.bfloat16):
        t = t.to(torch.float32)
    if check_finite and not _all_finite(t, X):
        bad = int((~torch.isfinite(t)).sum())
        raise ValueError(f"{name} contains {bad} NaN or Inf value(s); clean or impute them first")
    return t


def _all_finite(t: torch.Tensor, source: Any = None) -> bool:
    """No NaN or ±Inf: known when this call's degenerate-space check already read ``source``
    (:mod:`alignkit._known`); else on CPU from numpy's min and max (NaN propagates; no n × d mask, ~20× faster
    than ``torch.isfinite(t).all()``), elsewhere with torch."""
    from alignkit._known import lookup

    seen = lookup(source) if source is not None else None
    if seen is not None and tuple(t.shape) == (seen.n, len(seen.total)):
        return seen.finite
    if t.device.type == "cpu" and t.dtype in (torch.float32, torch.float64):
        a = t.numpy()
        return bool(np.isfinite(a.min()) and np.isfinite(a.max()))
    return bool(torch.isfinite(t).all())


def as_pair(
    X: ArrayLike, Y: ArrayLike, names: tuple[str, str] = ("X", "Y"), *, dtype: torch.dtype | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate two row-paired matrices; Y is moved to X's device."""
    x = as_matrix(X, names[0], dtype=dtype)
    y = as_matrix(Y, names[1], dtype=dtype)
    if x.shape[0] != y.shape[0]:
        raise ValueError(
            f"{names[0]} and {names[1]} must be paired by row: {names[0]} has {x.shape[0]} rows, "
            f"{names[1]} has {y.shape[0]}"
        )
    if y.device != x.device:
        y = y.to(x.device)
    return x, y


def check_min_rows(n: int, minimum: int, estimator: str) -> None:
    """Raise if an estimator gets fewer items than it is defined for."""
    if n < minimum:
        raise ValueError(f"{estimator} needs at least {minimum} items (rows); got n={n}")


def check_k(k: int, n: int, name: str = "k") -> int:
    """Neighbourhood size: an integer with 1 <= k <= n - 1 (self is excluded)."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise TypeError(f"{name} must be an integer; got {k!r}")
    k = int(k)
    if k < 1:
        raise ValueError(f"{name} must be >= 1; got {k}")
    if k >= n:
        raise ValueError(f"{name} must be < n (self is excluded, so at most n - 1 = {n - 1}); got {name}={k}, n={n}")
    return k


def check_ks(ks: Sequence[int] | int, n: int, what: str = "gallery") -> list[int]:
    """Cut-offs for R@k/P@k: one integer or a non-empty list, each with 1 <= k <= n (n candidates per query)."""
    if isinstance(ks, (int, np.integer)) and not isinstance(ks, bool):
        ks = [int(ks)]
    ks = list(ks)
    if not ks:
        raise ValueError("ks must list at least one k")
    out = []
    for k in ks:
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
            raise TypeError(f"k must be an integer; got {k!r}")
        if not 1 <= k <= n:
            raise ValueError(f"k must be between 1 and n = {n}, the size of the {what}; got k={k}")
        out.append(int(k))
    return out


def check_same_dim(a: torch.Tensor, b: torch.Tensor, names: tuple[str, str] = ("X", "Y")) -> None:
    """Raise unless two matrices live in one shared space (same number of columns)."""
    if a.shape[1] != b.shape[1]:
        raise ValueError(
            f"{names[0]} and {names[1]} must live in one shared space (same dimension): {names[0]} has "
            f"d={a.shape[1]}, {names[1]} has d={b.shape[1]}; map one onto the other first (e.g. with a fitted "
            "aligner)"
        )


def check_choice(value: str, allowed: tuple[str, ...] | list[str], name: str) -> str:
    """A string option among ``allowed``; the error lists them."""
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, allowed))}; got {value!r}")
    return value


def compute_dtype(*tensors: torch.Tensor) -> torch.dtype:
    """float64 if any input is float64, else float32 (the default working precision)."""
    return torch.float64 if any(t.dtype == torch.float64 for t in tensors) else torch.float32
