"""The dataset protocol: items with stable ids, optional labels and pairing keys, and a content fingerprint.

Item types (the contract with :mod:`alignkit.encoders`): text → ``str``; image → ``PIL.Image.Image``
(RGB or L) or a uint8 array H×W / H×W×C; audio → ``(waveform float32 1-D in [-1, 1], sample_rate)``.
"""

from __future__ import annotations

import hashlib
import json
import struct
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

MODALITIES = ("text", "image", "audio")
#: bumped when the way items are produced from the same bytes changes (so old cache entries stop matching)
FORMAT_VERSION = "alignkit-data/1"


class Dataset(ABC):
    """A finite, ordered collection of items of one modality.

    Subclasses set ``name`` and ``modality``, fill ``_ids`` (and optionally ``_labels``,
    ``_class_names``, ``_keys``) and implement :meth:`items` and :meth:`_content_hash`.
    """

    name: str = ""
    modality: str = ""

    def __init__(self) -> None:
        self._ids: list[str] = []
        self._labels: np.ndarray | None = None
        self._class_names: list[str] | None = None
        self._keys: list[str] | None = None
        self._fingerprint: str | None = None

    # ------------------------------------------------------------------ identity
    def __len__(self) -> int:
        return len(self._ids)

    @property
    def ids(self) -> list[str]:
        """Stable unique string id of every item, in dataset order."""
        return self._ids

    @property
    def labels(self) -> np.ndarray | None:
        """Integer class label of every item (index into :attr:`class_names` when that is set), or None."""
        return self._labels

    @property
    def class_names(self) -> list[str] | None:
        return self._class_names

    @property
    def keys(self) -> list[str]:
        """Pairing keys: items of two datasets with the same key are two views of one thing (default: the ids)."""
        return self._keys if self._keys is not None else self._ids

    @abstractmethod
    def items(self, start: int = 0, stop: int | None = None) -> list[Any]:
        """The items of rows ``start:stop`` (dataset order), in the item type of :attr:`modality`."""

    @abstractmethod
    def _content_hash(self, h: Any) -> None:
        """Feed everything that determines the items (content, ids, order) into the hash ``h``."""

    def fingerprint(self) -> str:
        """Content hash (16 hex chars of sha256) that changes when any item's content, id or order changes.

        Computed once and cached. Labels and pairing keys are not part of it: they never change embeddings.
        """
        if self._fingerprint is None:
            h = hashlib.sha256()
            update_str(h, FORMAT_VERSION)
            update_str(h, self.modality)
            self._content_hash(h)
            update_str(h, "ids")
            for item_id in self._ids:
                update_str(h, item_id)
            self._fingerprint = h.hexdigest()[:16]
        return self._fingerprint

    # ------------------------------------------------------------------ conveniences
    def _range(self, start: int, stop: int | None) -> tuple[int, int]:
        n = len(self)
        stop = n if stop is None else stop
        if not (0 <= start <= stop <= n):
            raise IndexError(f"{self.name}: row range {start}:{stop} outside 0:{n}")
        return start, stop

    def __getitem__(self, i: int) -> Any:
        if not -len(self) <= i < len(self):
            raise IndexError(f"{self.name}: item {i} out of range for {len(self)} items")
        i %= len(self)
        return self.items(i, i + 1)[0]

    def __iter__(self) -> Iterator[Any]:
        chunk = 256
        for start in range(0, len(self), chunk):
            yield from self.items(start, min(start + chunk, len(self)))

    def subset(self, rows: Sequence[int] | np.ndarray, name: str | None = None) -> Subset:
        """The items at ``rows`` (in that order) as a dataset of their own."""
        return Subset(self, rows, name)

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": type(self).__name__,
            "modality": self.modality,
            "n": len(self),
            "fingerprint": self.fingerprint(),
            "n_classes": None if self._class_names is None else len(self._class_names),
        }

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, modality={self.modality!r}, n={len(self)})"

    # ------------------------------------------------------------------ helpers for subclasses
    def _set_ids(self, ids: Sequence[Any], where: str) -> None:
        ids = [str(i) for i in ids]
        if len(set(ids)) != len(ids):
            dups = duplicates(ids)
            raise ValueError(f"{where}: item ids must be unique; {len(dups)} repeated, e.g. {dups[:5]}")
        self._ids = ids

    def _set_labels(self, values: Sequence[Any], class_names: Sequence[str] | None = None) -> None:
        """Integer labels as given, or strings mapped to indices of their sorted unique values."""
        vals = list(values)
        if class_names is not None:
            self._class_names = [str(c) for c in class_names]
        if all(_is_int(v) for v in vals):
            self._labels = np.asarray([int(v) for v in vals], dtype=np.int64)
            return
        names = sorted({str(v) for v in vals})
        index = {c: i for i, c in enumerate(names)}
        self._labels = np.asarray([index[str(v)] for v in vals], dtype=np.int64)
        self._class_names = names


def _is_int(v: Any) -> bool:
    if isinstance(v, bool):
        return False
    if isinstance(v, (int, np.integer)):
        return True
    if isinstance(v, str):
        s = v.strip()
        return s.lstrip("-").isdigit() if s else False
    return False


def duplicates(values: Sequence[str]) -> list[str]:
    """Values that occur more than once, in order of their second occurrence."""
    seen: set[str] = set()
    reported: set[str] = set()
    out: list[str] = []
    for v in values:
        if v in seen and v not in reported:
            out.append(v)
            reported.add(v)
        seen.add(v)
    return out


def update_str(h: Any, s: str) -> None:
    """Length-prefixed string into a hash (so concatenations cannot collide)."""
    b = s.encode("utf-8")
    h.update(struct.pack("<Q", len(b)))
    h.update(b)


def update_bytes(h: Any, b: bytes | memoryview) -> None:
    h.update(struct.pack("<Q", len(b)))
    h.update(b)


def update_array(h: Any, a: np.ndarray) -> None:
    a = np.ascontiguousarray(a)
    update_str(h, json.dumps([a.dtype.str, list(a.shape)]))
    update_bytes(h, a.data.cast("B"))


class Subset(Dataset):
    """Rows of another dataset, in the given order (ids, labels and keys follow)."""

    def __init__(self, parent: Dataset, rows: Sequence[int] | np.ndarray, name: str | None = None) -> None:
        super().__init__()
        rows_arr = np.asarray(rows, dtype=np.int64).reshape(-1)
        if rows_arr.size and (rows_arr.min() < 0 or rows_arr.max() >= len(parent)):
            raise IndexError(f"subset of {parent.name!r}: rows must lie in 0..{len(parent) - 1}")
        if rows_arr.size == 0:
            raise ValueError(f"subset of {parent.name!r}: no items found in the given rows (empty selection)")
        self.parent = parent
        self.rows = rows_arr
        self.name = name or f"{parent.name}[subset]"
        self.modality = parent.modality
        self._set_ids([parent.ids[i] for i in rows_arr], self.name)
        if parent.labels is not None:
            self._labels = np.asarray(parent.labels)[rows_arr]
        self._class_names = parent.class_names
        if parent._keys is not None:
            self._keys = [parent.keys[i] for i in rows_arr]

    def items(self, start: int = 0, stop: int | None = None) -> list[Any]:
        start, stop = self._range(start, stop)
        rows = self.rows[start:stop]
        if rows.size == 0:
            return []
        lo, hi = int(rows.min()), int(rows.max()) + 1
        if hi - lo <= 4 * rows.size:  # dense selection: read the span once
            block = self.parent.items(lo, hi)
            return [block[r - lo] for r in rows]
        return [self.parent[int(r)] for r in rows]

    def _content_hash(self, h: Any) -> None:
        update_str(h, self.parent.fingerprint())
        update_array(h, self.rows)


class InMemory(Dataset):
    """A dataset over items already in memory (strings, images as arrays/PIL, or (waveform, rate) tuples)."""

    def __init__(
        self,
        items: Sequence[Any],
        modality: str,
        *,
        ids: Sequence[Any] | None = None,
        labels: Sequence[Any] | None = None,
        class_names: Sequence[str] | None = None,
        keys: Sequence[Any] | None = None,
        name: str = "in-memory",
    ) -> None:
        super().__init__()
        if modality not in MODALITIES:
            raise ValueError(f"modality must be one of {MODALITIES}; got {modality!r}")
        self.name = name
        self.modality = modality
        self._items = list(items)
        if not self._items:
            raise ValueError(f"{name}: no items found (the sequence is empty)")
        n = len(self._items)
        self._set_ids(range(n) if ids is None else ids, name)
        if len(self._ids) != n:
            raise ValueError(f"{name}: {len(self._ids)} ids for {n} items")
        if labels is not None:
            if len(labels) != n:
                raise ValueError(f"{name}: {len(labels)} labels for {n} items")
            self._set_labels(labels, class_names)
        if keys is not None:
            if len(keys) != n:
                raise ValueError(f"{name}: {len(keys)} keys for {n} items")
            self._keys = [str(k) for k in keys]

    def items(self, start: int = 0, stop: int | None = None) -> list[Any]:
        start, stop = self._range(start, stop)
        return self._items[start:stop]

    def _content_hash(self, h: Any) -> None:
        for item in self._items:
            hash_item(h, item)


def hash_item(h: Any, item: Any) -> None:
    """Hash one in-memory item of any supported type."""
    if isinstance(item, str):
        update_str(h, "s")
        update_str(h, item)
    elif isinstance(item, np.ndarray):
        update_str(h, "a")
        update_array(h, item)
    elif isinstance(item, tuple) and len(item) == 2:
        update_str(h, f"w{int(item[1])}")
        update_array(h, np.asarray(item[0]))
    elif hasattr(item, "tobytes") and hasattr(item, "mode") and hasattr(item, "size"):  # PIL image
        update_str(h, f"i{item.mode}{tuple(item.size)}")
        update_bytes(h, item.tobytes())
    else:
        raise TypeError(f"cannot fingerprint an item of type {type(item).__name__}")


def align_keys(a: Dataset, b: Dataset, how: str = "strict") -> tuple[np.ndarray, np.ndarray]:
    """Match two datasets' pairing keys: rows ``(ra, rb)`` with ``a.keys[ra[i]] == b.keys[rb[i]]``.

    how : "strict" requires the same key sets (each key once) and raises, listing a few keys only
    in one of them, when they differ; "inner" keeps the keys present in both, in ``a``'s order.
    Use ``a.subset(ra)`` / ``b.subset(rb)`` for row-paired datasets.
    """
    if how not in ("strict", "inner"):
        raise ValueError(f"how must be 'strict' or 'inner'; got {how!r}")
    for d in (a, b):
        keys = d.keys
        if len(set(keys)) != len(keys):
            raise ValueError(
                f"dataset {d.name!r}: pairing keys must be unique to align; repeated: {duplicates(keys)[:5]}"
            )
    pos_b = {k: i for i, k in enumerate(b.keys)}
    set_a = set(a.keys)
    if how == "strict":
        only_a = [k for k in a.keys if k not in pos_b]
        only_b = [k for k in b.keys if k not in set_a]
        if only_a or only_b:
            raise ValueError(
                f"pairing keys of {a.name!r} ({len(a)} items) and {b.name!r} ({len(b)} items) differ: "
                f"{len(only_a)} only in the first, e.g. {only_a[:5]}; {len(only_b)} only in the second, "
                f"e.g. {only_b[:5]}. Use how='inner' to keep the keys they share"
            )
    ra = np.asarray([i for i, k in enumerate(a.keys) if k in pos_b], dtype=np.int64)
    if ra.size == 0:
        raise ValueError(
            f"datasets {a.name!r} and {b.name!r} share no pairing key (first keys: {a.keys[:3]} vs {b.keys[:3]})"
        )
    rb = np.asarray([pos_b[a.keys[i]] for i in ra], dtype=np.int64)
    return ra, rb
