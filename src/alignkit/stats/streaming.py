"""Exact linear CKA over data that never fits in memory: accumulate moments batch by batch.

State is O(d1² + d2² + d1·d2) float64 sums (docs/methods.md §1.7) that add across batches and workers
(``merge``), so the result equals the one-shot value for any split or order of the rows.
Each state keeps a fixed reference shift (its first batch's column means) to avoid
cancellation when the data have large means; states with different shifts merge exactly.

Scale: each side's shifted rows are divided by a power of two 2^e before their products, e the running maximum
over chunks of the exponent of max|x − shift| (so every stored row lies in [−1, 1] and no fourth power can
overflow or underflow). When a later chunk, or a merged state, needs a larger e, the accumulated moments are
rescaled exactly (:meth:`~alignkit.metrics._moments.LinearMoments.scaled`: each field is homogeneous in x and y).
CKA is scale-invariant, so the result equals the one-shot value at any finite input scale (float64 inputs up to
about 1e±300) and for batches of very different scales, with no overflow to detect after the fact.
"""

from __future__ import annotations

import torch

from alignkit._common import pow2_exponent, times_pow2
from alignkit._validation import ArrayLike, as_pair
from alignkit.metrics._moments import LinearMoments
from alignkit.registry import check_bool

_CHUNK_BYTES = 32 * 2**20
_UNSET = -(2**62)  # a side's scale exponent before any non-zero row, as stored in a state dict


def _exponent(t: torch.Tensor) -> int | None:
    """The power-of-two exponent of max|t| (:func:`~alignkit.neighbors.pow2_exponent`); None when t is all zero,
    which fits any scale."""
    return pow2_exponent(t) if bool(t.any()) else None


def _raise_to(current: int | None, needed: int | None) -> tuple[int | None, int]:
    """(new exponent, k): the larger of the two, and the factor 2^k that takes moments at ``current`` to it."""
    if needed is None or (current is not None and needed <= current):
        return current, 0
    return needed, (0 if current is None else current - needed)


def _column_mean(x: torch.Tensor) -> torch.Tensor:
    """float64 column means without a float64 copy of the whole batch."""
    step = max(1024, _CHUNK_BYTES // (8 * x.shape[1]))
    total = sum(x[s : s + step].double().sum(dim=0) for s in range(0, x.shape[0], step))
    return total / x.shape[0]


class StreamingCKA:
    """Streaming linear CKA, biased and debiased (Kornblith et al., ICML 2019; Song et al., JMLR 2012).

    >>> s = StreamingCKA()
    >>> for xb, yb in batches:  # doctest: +SKIP
    ...     s.update(xb, yb)
    >>> s.compute()  # doctest: +SKIP

    precision : dtype of the per-batch products ("float64", default, exact; "float32" is about twice
        as fast on large batches, rounds within a batch, and still sums batches in float64).

    Any finite scale works, in any mix of batches: the state tracks a power-of-two unit per side (``log2_x``,
    ``log2_y``) and rescales itself exactly when a batch needs a larger one (see the module docstring).
    """

    def __init__(self, debiased: bool = True, precision: str = "float64") -> None:
        if precision not in ("float64", "float32"):
            raise ValueError(f"precision must be 'float64' or 'float32'; got {precision!r}")
        self.debiased = check_bool(debiased, "debiased", "StreamingCKA")
        self.precision = precision
        self.moments: LinearMoments | None = None
        self.shift_x: torch.Tensor | None = None
        self.shift_y: torch.Tensor | None = None
        self.log2_x: int | None = None  # the moments are of ((x − shift_x)·2^−log2_x, ...)
        self.log2_y: int | None = None

    @property
    def n(self) -> int:
        return 0 if self.moments is None else self.moments.n

    def update(self, X: ArrayLike, Y: ArrayLike) -> StreamingCKA:
        """Add a batch of paired rows."""
        x, y = as_pair(X, Y)
        if self.moments is None:
            self.shift_x = _column_mean(x)
            self.shift_y = _column_mean(y)
            self.moments = LinearMoments.zeros(x.shape[1], y.shape[1], device=x.device)
        elif x.shape[1] != self.moments.a.shape[0] or y.shape[1] != self.moments.b.shape[0]:
            raise ValueError(
                f"batch widths ({x.shape[1]}, {y.shape[1]}) differ from the first batch's "
                f"({self.moments.a.shape[0]}, {self.moments.b.shape[0]})"
            )
        dtype = torch.float64 if self.precision == "float64" else torch.float32
        shift_x = self.shift_x.to(device=x.device, dtype=dtype)
        shift_y = self.shift_y.to(device=x.device, dtype=dtype)
        # Work in row chunks so the working copies stay small however large the batch is.
        step = max(1024, _CHUNK_BYTES // (8 * (x.shape[1] + y.shape[1])))
        for start in range(0, x.shape[0], step):
            xs = x[start : start + step].to(dtype=dtype, copy=True).sub_(shift_x)
            ys = y[start : start + step].to(dtype=dtype, copy=True).sub_(shift_y)
            self._fit_scale(_exponent(xs), _exponent(ys))
            xs, ys = times_pow2(xs, -(self.log2_x or 0)), times_pow2(ys, -(self.log2_y or 0))
            self.moments = self.moments + LinearMoments.of(xs, ys)
        return self

    def _fit_scale(self, ex: int | None, ey: int | None) -> None:
        """Raise the units to at least 2^ex, 2^ey, rescaling the accumulated moments exactly."""
        self.log2_x, kx = _raise_to(self.log2_x, ex)
        self.log2_y, ky = _raise_to(self.log2_y, ey)
        if self.moments is not None:
            self.moments = self.moments.scaled(kx, ky)

    def merge(self, other: StreamingCKA) -> StreamingCKA:
        """Fold another state (e.g. from another worker) into this one, exactly."""
        if other.moments is None:
            return self
        if self.moments is None:
            self.moments, self.shift_x, self.shift_y = other.moments, other.shift_x, other.shift_y
            self.log2_x, self.log2_y = other.log2_x, other.log2_y
            return self
        if other.moments.a.shape != self.moments.a.shape or other.moments.b.shape != self.moments.b.shape:
            raise ValueError("cannot merge StreamingCKA states of different widths")
        dx, dy = other.shift_x - self.shift_x, other.shift_y - self.shift_y
        # Common units: large enough for both states and for the shift between them.
        for e in ((other.log2_x, other.log2_y), (_exponent(dx), _exponent(dy))):
            self._fit_scale(*e)
        kx = 0 if other.log2_x is None else other.log2_x - (self.log2_x or 0)
        ky = 0 if other.log2_y is None else other.log2_y - (self.log2_y or 0)
        dx, dy = times_pow2(dx, -(self.log2_x or 0)), times_pow2(dy, -(self.log2_y or 0))
        moved = other.moments.scaled(kx, ky).shifted(dx, dy)
        self.moments = self.moments + moved.to(self.moments.a.device)
        return self

    def compute(self, debiased: bool | None = None) -> float:
        """CKA of all rows seen so far."""
        if self.moments is None:
            raise ValueError("StreamingCKA has seen no data; call update() first")
        return self.moments.cka(self.debiased if debiased is None else check_bool(debiased, "debiased", "compute"))

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Tensors only (safe to store with safetensors)."""
        if self.moments is None:
            return {}
        units = {k: torch.tensor(_UNSET if v is None else v, dtype=torch.int64)
                 for k, v in (("log2_x", self.log2_x), ("log2_y", self.log2_y))}  # fmt: skip
        return {**self.moments.state_dict(), "shift_x": self.shift_x, "shift_y": self.shift_y, **units}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> StreamingCKA:
        if not state:
            self.moments = self.shift_x = self.shift_y = None
            self.log2_x = self.log2_y = None
            return self
        self.moments = LinearMoments.from_state_dict(state)
        self.shift_x, self.shift_y = state["shift_x"].double(), state["shift_y"].double()
        # States saved before the units existed hold unscaled moments: unit 2^0.
        units = [int(state.get(k, torch.tensor(0))) for k in ("log2_x", "log2_y")]
        self.log2_x, self.log2_y = (None if u == _UNSET else u for u in units)
        return self
