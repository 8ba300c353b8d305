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


def warnings_as_notes() -> None:
    """Show library warnings (degenerate spaces, duplicated rows, small samples, ...) as one yellow line each on
    stderr, each text once per command, without Python's source-line echo."""
    import warnings

    seen: set[str] = set()

    def show(message: Any, category: type[Warning], *args: Any, **kwargs: Any) -> None:
        text = f"warning ({category.__name__}): {message}"
        if text not in seen:
            seen.add(text)
            err_console().print(Text(text, style="yellow"))

    warnings.showwarning = show


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


def parse_param(text: str) -> tuple[str, Any]:
    """``key=value``; the value stays a string, typed by the schema of whatever takes it (a measure,
    an aligner, an encoder), exactly as the same value in an id or a run config. A value that starts with
    ``{`` or ``[`` is JSON, a mapping or a list as a run config holds (``loss_kwargs={"init_temperature": 0.1}``)."""
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ValueError(f"--param expects key=value; got {text!r}")
    value = value.strip()
    if value.startswith(("{", "[")):
        try:
            return key, json.loads(value)
        except json.JSONDecodeError as exc:
            raise ValueError(
                f"--param {key}: a value starting with {value[0]!r} is read as JSON, and {value!r} is not valid "
                f"JSON ({exc.msg} at character {exc.pos}); e.g. {key}='{{\"name\": 0.1}}'"
            ) from None
    return key, value


def _shown(key: str, value: Any) -> str:
    return f"--param {key}={value if isinstance(value, str) else json.dumps(value)}"


def parse_params(texts: list[str] | None, dedicated: dict[str, str] | None = None) -> dict[str, Any]:
    """Every ``--param key=value`` as a dict. One rule for the command line: a key given twice on it — a
    repeated ``--param``, or a ``--param`` and the dedicated option for the same key (``dedicated`` maps the
    key to that option as typed, e.g. ``{"k": "--k 9"}``) — is an error naming both. (An id's own
    ``?key=value`` is not the command line: options override it, the library's rule.)"""
    out: dict[str, Any] = {}
    for text in texts or []:
        key, value = parse_param(text)
        if key in out:
            raise ValueError(
                f"{key} is given twice on the command line: {_shown(key, out[key])} and {_shown(key, value)}; "
                "give it once"
            )
        out[key] = value
    for key, option in (dedicated or {}).items():
        if key in out:
            raise ValueError(
                f"{key} is given twice on the command line: {_shown(key, out[key])} and {option}; give it once"
            )
    return out
