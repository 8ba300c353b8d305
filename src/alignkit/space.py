"""A representation space: embeddings of identified items, the unit every analysis takes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(eq=False)
class Space:
    """Embeddings of ``n`` items in one space (one encoder, one layer, one pooling).

    ``array`` may be a read-only memory map from the store. ``ids`` are the items' stable ids
    (row i is item ``ids[i]``); ``labels`` optional class labels; ``meta`` free provenance
    (encoder, layer, pooling, dataset fingerprint, library versions, ...).
    Every measure accepts a Space wherever it accepts an array (``np.asarray(space)`` works).
    """

    array: np.ndarray
    ids: list[str]
    labels: np.ndarray | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    name: str = ""

    def __post_init__(self) -> None:
        if self.array.ndim != 2:
            raise ValueError(f"Space {self.name!r}: array must be 2-D (items x features); got {self.array.shape}")
        if len(self.ids) != self.array.shape[0]:
            raise ValueError(f"Space {self.name!r}: {len(self.ids)} ids for {self.array.shape[0]} rows")
        if self.labels is not None and len(self.labels) != self.array.shape[0]:
            raise ValueError(f"Space {self.name!r}: {len(self.labels)} labels for {self.array.shape[0]} rows")

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        arr = np.asarray(self.array)
        return arr.astype(dtype) if dtype is not None else (arr.copy() if copy else arr)

    def __len__(self) -> int:
        return int(self.array.shape[0])

    @property
    def shape(self) -> tuple[int, int]:
        return (int(self.array.shape[0]), int(self.array.shape[1]))

    @property
    def dim(self) -> int:
        return int(self.array.shape[1])

    def take(self, rows: np.ndarray | list[int]) -> Space:
        """The sub-space of the given rows (in that order)."""
        rows = np.asarray(rows, dtype=np.int64)
        labels = None if self.labels is None else np.asarray(self.labels)[rows]
        return Space(np.asarray(self.array)[rows], [self.ids[i] for i in rows], labels, dict(self.meta), self.name)

    def __repr__(self) -> str:
        return f"Space(name={self.name!r}, n={len(self)}, dim={self.dim})"


def paired(a: Space, b: Space, *, how: str = "inner") -> tuple[Space, Space]:
    """Reorder two spaces so row i is the same item id in both.

    how : "inner" keeps the ids present in both (in ``a``'s order); "strict" requires the same id
    sets and raises, naming a few missing ids, when they differ.
    """
    if how not in ("inner", "strict"):
        raise ValueError(f"how must be 'inner' or 'strict'; got {how!r}")
    pos_b = {item: i for i, item in enumerate(b.ids)}
    if len(pos_b) != len(b.ids) or len(set(a.ids)) != len(a.ids):
        raise ValueError("item ids must be unique within each space to pair them")
    if how == "strict":
        only_a = [i for i in a.ids if i not in pos_b][:5]
        only_b = sorted(set(b.ids) - set(a.ids))[:5]
        if only_a or only_b:
            raise ValueError(
                f"spaces {a.name!r} and {b.name!r} hold different items: only in the first {only_a}, "
                f"only in the second {only_b} (pairing keys must match)"
            )
    rows_a = [i for i, item in enumerate(a.ids) if item in pos_b]
    if not rows_a:
        raise ValueError(f"spaces {a.name!r} and {b.name!r} share no item ids: check the pairing keys")
    rows_b = [pos_b[a.ids[i]] for i in rows_a]
    return a.take(rows_a), b.take(rows_b)
