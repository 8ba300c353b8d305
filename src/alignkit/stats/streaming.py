"""Exact linear CKA over data that never fits in memory: accumulate moments batch by batch.

State is O(d1² + d2² + d1·d2) float64 sums (docs/methods.md §1.7) that add across batches and workers
(``merge``), so the result equals the one-shot value for any split or order of the rows.
Each state keeps a fixed reference shift (its first batch's column means) to avoid
cancellation when the data have large means; states with different shifts merge exactly.
"""

from __future__ import annotations

import torch

from alignkit._validation import ArrayLike, as_pair
from alignkit.metrics._moments import LinearMoments
from alignkit.registry import check_bool

_CHUNK_BYTES = 32 * 2**20


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
    """

    def __init__(self, debiased: bool = True, precision: str = "float64") -> None:
        if precision not in ("float64", "float32"):
            raise ValueError(f"precision must be 'float64' or 'float32'; got {precision!r}")
        self.debiased = check_bool(debiased, "debiased", "StreamingCKA")
        self.precision = precision
        self.moments: LinearMoments | None = None
        self.shift_x: torch.Tensor | None = None
        self.shift_y: torch.Tensor | None = None

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
            self.moments = self.moments + LinearMoments.of(xs, ys)
        return self

    def merge(self, other: StreamingCKA) -> StreamingCKA:
        """Fold another state (e.g. from another worker) into this one, exactly."""
        if other.moments is None:
            return self
        if self.moments is None:
            self.moments, self.shift_x, self.shift_y = other.moments, other.shift_x, other.shift_y
            return self
        if other.moments.a.shape != self.moments.a.shape or other.moments.b.shape != self.moments.b.shape:
            raise ValueError("cannot merge StreamingCKA states of different widths")
        moved = other.moments.shifted(other.shift_x - self.shift_x, other.shift_y - self.shift_y)
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
        return {**self.moments.state_dict(), "shift_x": self.shift_x, "shift_y": self.shift_y}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> StreamingCKA:
        if not state:
            self.moments = self.shift_x = self.shift_y = None
            return self
        self.moments = LinearMoments.from_state_dict(state)
        self.shift_x, self.shift_y = state["shift_x"].double(), state["shift_y"].double()
        return self
