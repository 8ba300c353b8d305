"""What every section builder gets: the run's data, one colour per method and the plots drawn so far."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from alignkit.pipeline import plots
from alignkit.pipeline.report import html
from alignkit.pipeline.report.load import RunData


@dataclass
class Context:
    """The run being reported and the PNGs its sections drew (file name → bytes, in drawing order)."""

    data: RunData
    colors: dict[str, str] = field(default_factory=dict)
    pngs: dict[str, bytes] = field(default_factory=dict)

    @classmethod
    def of(cls, data: RunData) -> Context:
        """A context whose method colours agree across every plot of the run."""
        methods: list[str] = []
        for name in ("evaluations", "fits"):
            df = data.tables[name]
            if df is not None and "method" in df.columns:
                methods += [str(m) for m in df["method"].dropna().unique()]
        return cls(data, plots.method_colors(methods))

    def missing(self, *tables: str) -> str:
        """The "Not in this run" note for ``tables`` (with read errors, if any)."""
        return html.missing_note(self.data.table_errors, *tables)

    def figure(self, stem: str, fig: Any, alt: str, caption_html: str = "") -> str:
        """Render ``fig`` to PNG, keep it under a unique file name from ``stem``, return its ``<figure>``."""
        png = plots.to_png(fig)
        base = html.slug(stem)
        fname, k = f"{base}.png", 2
        while fname in self.pngs:
            fname, k = f"{base}-{k}.png", k + 1
        self.pngs[fname] = png
        return html.figure(fname, png, alt, caption_html)
