"""Zero-shot classification with text prototypes (docs/methods.md §5.2)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import torch

from alignkit._common import unit_rows
from alignkit._validation import ArrayLike, as_matrix, check_same_dim
from alignkit.degenerate import warn_degenerate
from alignkit.evaluate.retrieval import gold_ranks
from alignkit.evaluate.rows import Row, make_row


def _labels(labels: ArrayLike, n: int, n_classes: int, name: str = "labels") -> np.ndarray:
    arr = np.asarray(labels.cpu() if isinstance(labels, torch.Tensor) else labels)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D (one class index per item); got shape {arr.shape}")
    if arr.shape[0] != n:
        raise ValueError(f"{name} has {arr.shape[0]} entries but there are {n} items")
    if arr.dtype.kind not in "iu":
        raise TypeError(f"{name} must hold integer class indices; got dtype {arr.dtype}")
    if n and (arr.min() < 0 or arr.max() >= n_classes):
        raise ValueError(f"{name} must lie in [0, {n_classes}); got range [{arr.min()}, {arr.max()}]")
    return arr.astype(np.int64)


def class_prototypes(class_text_emb: ArrayLike, templates_per_class: int | None = None) -> torch.Tensor:
    """``c = normalise(mean_t normalise(e_{c,t}))`` per class, float64.

    With ``templates_per_class = T`` the rows are class-major: rows ``[c·T, (c+1)·T)`` are class c's
    templates. Without it each row is already one class.
    """
    t = as_matrix(class_text_emb, "class_text_emb")
    e = unit_rows(t.double())
    if templates_per_class is None:
        return e
    T = templates_per_class
    if isinstance(T, bool) or not isinstance(T, (int, np.integer)) or T < 1:
        raise ValueError(f"templates_per_class must be a positive integer; got {T!r}")
    if e.shape[0] % T:
        raise ValueError(
            f"class_text_emb has {e.shape[0]} rows, not a multiple of templates_per_class={T} "
            "(rows must be class-major blocks of T templates)"
        )
    return unit_rows(e.view(e.shape[0] // T, T, e.shape[1]).mean(dim=1))


def zero_shot(
    image_emb: ArrayLike,
    class_text_emb: ArrayLike,
    labels: ArrayLike,
    *,
    templates_per_class: int | None = None,
    heldout_classes: Iterable[int] | None = None,
    **tags: Any,
) -> list[Row]:
    """Zero-shot accuracy: predict ``argmax_c cos(f(x), c)`` over class prototypes (see
    :func:`class_prototypes`; Radford et al., "Learning transferable visual models from natural language
    supervision", ICML 2021).

    Ties are not hits: an image whose true class ties with t other classes (and trails g) counts
    ``clip((k − g)/(t + 1), 0, 1)`` at top-k, its expectation under random tie-breaking (:mod:`alignkit.ranking`),
    so an all-zero image embedding scores 1/n_classes.
    Rows: ``top1``, ``top5`` (only with ≥ 5 classes), ``mean_class_top1`` (mean over classes that have
    images) and one ``class_top1`` row per such class (with ``class`` and ``n_images``). With
    ``heldout_classes``, on the images of those classes: ``heldout_top1_among_all`` (classified among all
    classes) and ``heldout_top1_among_heldout`` (among the held-out classes only).
    """
    x = as_matrix(image_emb, "image_emb")
    warn_degenerate("zero_shot", image_emb=x)
    protos = class_prototypes(class_text_emb, templates_per_class).to(x.device)
    check_same_dim(x, protos, ("image_emb", "class_text_emb"))
    n, C = x.shape[0], protos.shape[0]
    y = _labels(labels, n, C)
    X = unit_rows(x.double())
    ranks = gold_ranks(X, protos, torch.as_tensor(y, device=X.device)).cpu()
    base = {"n_images": n, "n_classes": C}
    rows = [make_row("top1", ranks.recall(1), tags, **base)]
    if C >= 5:
        rows.append(make_row("top5", ranks.recall(5), tags, **base))
    present = np.unique(y)
    per_class = {int(c): ranks[torch.from_numpy(y == c)].recall(1) for c in present}
    rows.append(make_row("mean_class_top1", np.mean(list(per_class.values())), tags, **base))
    for c, acc in per_class.items():
        rows.append(make_row("class_top1", acc, tags, **{"class": c, "n_images": int(np.sum(y == c))}))
    if heldout_classes is not None:
        held = sorted({int(c) for c in heldout_classes})
        if not held:
            raise ValueError("heldout_classes is empty")
        if held[0] < 0 or held[-1] >= C:
            raise ValueError(f"heldout_classes must lie in [0, {C}); got {held}")
        mask = np.isin(y, held)
        if not mask.any():
            raise ValueError(f"no image has a held-out class label ({held})")
        remap = np.full(C, -1, dtype=np.int64)
        remap[held] = np.arange(len(held))
        idx = torch.as_tensor(np.flatnonzero(mask), device=X.device)
        sub = gold_ranks(
            X[idx], protos[torch.as_tensor(held, device=X.device)], torch.as_tensor(remap[y[mask]], device=X.device)
        )
        hb = {"n_images": int(mask.sum()), "n_heldout_classes": len(held)}
        rows.append(
            make_row("heldout_top1_among_all", ranks[torch.from_numpy(mask)].recall(1), tags, n_classes=C, **hb)
        )
        rows.append(make_row("heldout_top1_among_heldout", sub.recall(1), tags, n_classes=len(held), **hb))
    return rows
