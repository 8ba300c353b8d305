"""One way to show progress: tqdm bars on a terminal, silent when output is redirected or disabled.

Inside :func:`report_to` the bars go to a callback instead of the terminal: that is how ``alignkit run`` shows the
items of a long job (texts embedded, permutations drawn, epochs trained) under its job counter, with whatever
display the caller owns (a rich progress bar there).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Sized
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

#: receives ``(description, done, total)`` as a bar moves; total is None when unknown
ProgressSink = Callable[[str, int, int | None], None]

_SINK: ContextVar[ProgressSink | None] = ContextVar("alignkit_progress_sink", default=None)


@contextmanager
def report_to(sink: ProgressSink) -> Iterator[None]:
    """Send every bar opened in this context (this thread or task) to ``sink`` instead of the terminal.

    Bars asked for with ``show=False`` stay silent. Updates reach ``sink`` at most every 0.1 s, plus the first
    and the last state of each bar.
    """
    token = _SINK.set(sink)
    try:
        yield
    finally:
        _SINK.reset(token)


def progress(iterable: Iterable[Any] | None = None, *, show: bool = True, **kwargs: Any) -> Any:
    """A tqdm bar over ``iterable`` (or a manual one with ``total=``); none when ``show`` is False or
    stderr is not a terminal (so logs and CI output stay clean). Inside :func:`report_to`, a bar with the
    same interface (iteration, ``update``, ``set_postfix``, ``close``) that reports to the sink."""
    sink = _SINK.get()
    if sink is not None:
        return SinkBar(sink, iterable, show=show, **kwargs)
    from tqdm.auto import tqdm

    kwargs.setdefault("leave", False)
    return tqdm(iterable, disable=None if show else True, **kwargs)


class SinkBar:
    """The part of tqdm's interface alignkit uses, reporting ``(desc, n, total)`` to a sink."""

    MIN_INTERVAL = 0.1

    def __init__(
        self,
        sink: ProgressSink,
        iterable: Iterable[Any] | None = None,
        *,
        show: bool = True,
        desc: str | None = None,
        total: float | None = None,
        initial: float = 0,
        **_: Any,  # tqdm's display options (unit, leave, ...) have no meaning here
    ) -> None:
        self.iterable = iterable
        self.desc = desc or ""
        if total is None and isinstance(iterable, Sized):
            total = len(iterable)
        self.total = None if total is None else int(total)
        self.n = int(initial)
        self.disable = not show
        self._sink = sink
        self._last = -float("inf")
        self._closed = False
        self._send(force=True)

    def _send(self, force: bool = False) -> None:
        if self.disable:
            return
        now = time.monotonic()
        if force or now - self._last >= self.MIN_INTERVAL or (self.total is not None and self.n >= self.total):
            self._last = now
            self._sink(self.desc, self.n, self.total)

    def __iter__(self) -> Iterator[Any]:
        if self.iterable is None:
            raise TypeError("this progress bar has no iterable; call update() instead")
        try:
            for item in self.iterable:
                yield item
                self.update(1)
        finally:
            self.close()

    def __len__(self) -> int:
        if self.total is None:
            raise TypeError("this progress bar has no length")
        return self.total

    def update(self, n: float = 1) -> None:
        self.n += int(n)
        self._send()

    def set_description(self, desc: str | None = None, refresh: bool = True) -> None:
        self.desc = desc or ""
        self._send(force=refresh)

    def set_postfix(self, *args: Any, **kwargs: Any) -> None:
        """Accepted for tqdm compatibility; the sink gets counts only."""

    def refresh(self) -> None:
        self._send(force=True)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._send(force=True)

    def __enter__(self) -> SinkBar:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
