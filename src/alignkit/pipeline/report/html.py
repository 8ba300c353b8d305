"""HTML building blocks of the report: escaping, number formats, tables, figures and the page itself.

Every helper that takes text from data escapes it; helpers that take ``*_html`` arguments expect HTML
that is already safe. The page template, CSS and script are package resources (``page.html``,
``report.css``, ``report.js``) filled in by :func:`page`.
"""

from __future__ import annotations

import base64
import html
import math
import re
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from importlib import resources
from typing import Any

from alignkit.pipeline.report.load import finite

_SLOTS = re.compile(r"@(TITLE|CSS|SCRIPT|BODY)@")


@dataclass(frozen=True)
class Section:
    """One section of the report: its anchor (``id``), its title (for the navigation) and its HTML."""

    anchor: str
    title: str
    html: str


def e(s: Any) -> str:
    """``s`` as text, escaped for HTML content and attribute values."""
    return html.escape(str(s), quote=True)


def section(anchor: str, title: str, *parts: str) -> Section:
    """A ``<section>`` with a heading and the given (already-safe) HTML parts."""
    return Section(anchor, title, f"<section id='{anchor}'><h2>{title}</h2>{''.join(parts)}</section>")


def howto(text_html: str) -> str:
    """The "How to read this." box that opens a section."""
    return f'<div class="howto"><strong>How to read this.</strong> {text_html}</div>'


def missing_note(table_errors: dict[str, str], *names: str) -> str:
    """ "Not in this run" for tables ``names``, after a warning for each that could not be read."""
    notes = [table_errors[n] for n in names if n in table_errors]
    files = " / ".join(f"{n}.parquet" for n in names)
    msg = f"Not in this run (no rows in {files})."
    return "".join(f'<p class="warn">{e(n)}</p>' for n in notes) + f'<p class="missing">{e(msg)}</p>'


def table(header_html: Iterable[str], rows_html: Iterable[Iterable[str]], cls: str = "") -> str:
    """An HTML table from already-escaped cell HTML."""
    head = "".join(f"<th>{h}</th>" for h in header_html)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows_html)
    return (
        f'<div class="tablewrap"><table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'
    )


def figure(fname: str, png: bytes, alt: str, caption_html: str) -> str:
    """A ``<figure>`` embedding ``png`` as a data URI; the caption names its file under ``plots/``."""
    w, h = png_size(png)
    uri = "data:image/png;base64," + base64.b64encode(png).decode("ascii")
    cap = f"<figcaption>{caption_html} <span class='file'>plots/{e(fname)}</span></figcaption>"
    return f'<figure><img src="{uri}" alt="{e(alt)}" width="{w}" height="{h}" data-file="{e(fname)}">{cap}</figure>'


def slug(s: str) -> str:
    """A file-name stem made of ``[A-Za-z0-9._-]`` (at most 120 characters)."""
    out = re.sub(r"[^A-Za-z0-9._-]+", "_", s).strip("._-")
    return out[:120] or "plot"


def png_size(data: bytes) -> tuple[int, int]:
    """Width and height of a PNG, from its IHDR chunk."""
    w, h = struct.unpack(">II", data[16:24])
    return int(w), int(h)


def num(v: Any) -> str:
    """A score with as many decimals as its size deserves; ``–`` when missing."""
    if not finite(v):
        return "–"
    v = float(v)
    if abs(v) >= 100:
        return f"{v:,.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    return f"{v:.3f}"


def seconds(s: Any) -> str:
    """A duration that reads naturally: ``5.0 s``, ``6 min 38 s``, ``2 h 00 min``."""
    if not finite(s):
        return "–"
    s = float(s)
    if s < 59.95:
        return f"{s:.1f} s"
    if s < 3600 - 0.5:
        secs = round(s)
        return f"{secs // 60} min {secs % 60:02d} s"
    mins = round(s / 60)
    return f"{mins // 60} h {mins % 60:02d} min"


def when(iso: Any) -> str:
    """An ISO timestamp as ``YYYY-MM-DD HH:MM:SS [TZ]``."""
    if not iso:
        return "–"
    try:
        dt = datetime.fromisoformat(str(iso))
    except ValueError:
        return str(iso)
    tz = dt.strftime(" %Z") if dt.tzinfo is not None else ""
    return dt.strftime("%Y-%m-%d %H:%M:%S") + tz


def arrow(direction: Any) -> str:
    """A retrieval direction ``'en->es'`` as ``'en→es'``."""
    return str(direction).replace("->", "→")


def size(n_train: Any) -> str:
    """A training size with thousands separators; ``–`` when missing."""
    return f"{n_train:,}" if isinstance(n_train, int) else "–"


def mean_ci(s: dict[str, Any], bold: bool = False) -> str:
    """A summary cell: mean ± half-width of the interval (when there is one), seeds in brackets."""
    txt = num(s["mean"])
    if finite(s.get("ci_halfwidth")):
        txt += f" <span class='pm'>± {num(s['ci_halfwidth'])}</span>"
    txt += f" <span class='nseeds'>({int(s['n'])})</span>"
    return f"<b>{txt}</b>" if bold else txt


def is_best(value: Any, best: float | None) -> bool:
    """``value`` equals the column's best (up to rounding noise)."""
    return best is not None and finite(value) and math.isclose(float(value), best, rel_tol=0.0, abs_tol=1e-12)


@cache
def resource(name: str) -> str:
    """The text of a file shipped with this package (``page.html``, ``report.css``, ``report.js``)."""
    return resources.files(__package__).joinpath(name).read_text(encoding="utf-8")


def page(title: str, body_html: str) -> str:
    """The whole HTML document: the page template with the title, CSS, script and body filled in (one pass)."""
    parts = {"TITLE": e(title), "CSS": resource("report.css"), "SCRIPT": resource("report.js"), "BODY": body_html}
    return _SLOTS.sub(lambda m: parts[m.group(1)], resource("page.html"))
