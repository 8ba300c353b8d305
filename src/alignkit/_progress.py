"""One way to show progress: tqdm bars on a terminal, silent when output is redirected or disabled."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


def progress(iterable: Iterable[Any] | None = None, *, show: bool = True, **kwargs: Any) -> Any:
    """A tqdm bar over ``iterable`` (or a manual one with ``total=``); none when ``show`` is False or
    stderr is not a terminal (so logs and CI output stay clean)."""
    from tqdm.auto import tqdm

    kwargs.setdefault("leave", False)
    return tqdm(iterable, disable=None if show else True, **kwargs)
