"""Helpers shared by the commands: consoles, user errors, notes, JSON and number formatting, key=value."""

from __future__ import annotations

import json
import math
import sys
from typing import Any

import typer
from rich.console import Console
from rich.text import Text

USER_ERRORS = (ValueError, TypeError, KeyError, OSError)


def out_console() -> Console:
    """Console on stdout, for results."""
    return Console(soft_wrap=False)


def err_console() -> Console:
    """Console on stderr, for progress, notes and errors."""
    return Console(stderr=True, soft_wrap=True)


def fail(exc: BaseException | str) -> typer.Exit:
    """Print a user error as one red line on stderr; return the exit (status 2) to raise."""
    msg = exc if isinstance(exc, str) else (str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc))
    err_console().print(Text("error: " + " ".join(msg.split()), style="bold red"))
    return typer.Exit(code=2)


def note(msg: str) -> None:
    """A dim line on stderr."""
    err_console().print(Text(msg, style="dim"))


def finite(value: Any) -> Any:
    """JSON has no NaN/Infinity: non-finite floats become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value


def print_json(obj: Any) -> None:
    """Indented JSON on stdout, non-finite floats as null."""
    sys.stdout.write(json.dumps(finite(obj), indent=2, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def fmt(x: float | None, spec: str = ".4f") -> str:
    """A number for a table: None/NaN as '—', infinities as '∞' / '−∞'."""
    if x is None or not math.isfinite(x):
        return "—" if x is None or math.isnan(x) else ("∞" if x > 0 else "−∞")
    return format(x, spec)


def fmt_p(p: float) -> str:
    """A p-value: scientific below 1e-3."""
    return f"{p:.2e}" if p < 1e-3 else f"{p:.3f}"


def parse_param(text: str) -> tuple[str, str]:
    """``key=value``; the value stays a string, typed by the schema of whatever takes it (a measure,
    an aligner, an encoder), exactly as the same value in an id or a run config."""
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ValueError(f"--param expects key=value; got {text!r}")
    return key, value.strip()
