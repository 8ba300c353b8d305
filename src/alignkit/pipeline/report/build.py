"""Assembling and writing the report: sections in page order, header and footer, the page, the PNGs."""

from __future__ import annotations

from pathlib import Path

from alignkit.pipeline.report.context import Context
from alignkit.pipeline.report.html import page
from alignkit.pipeline.report.load import load_run
from alignkit.pipeline.report.sections import SECTIONS
from alignkit.pipeline.report.sections.overview import footer, header
from alignkit.pipeline.report.sections.sanity import SANITY_SECTIONS

REPORT_NAME = "report.html"
PLOTS_DIR = "plots"
#: File-name prefixes of the PNGs the report draws (others under ``plots/`` are never touched).
PLOT_PREFIXES = ("atlas-", "profiles-", "sizes-", "classes-", "sanity-")


def build_report(run_dir: str | Path) -> tuple[str, dict[str, bytes]]:
    """The report's HTML and its plots (file name -> PNG bytes), without writing anything."""
    ctx = Context.of(load_run(run_dir))
    builders = SANITY_SECTIONS if ctx.data.run.get("kind") == "sanity" else SECTIONS  # `alignkit sanity` folders
    sections = [build(ctx) for build in builders]
    body = header(ctx, sections) + "".join(s.html for s in sections) + footer(ctx)
    return page(f"alignkit report: {ctx.data.name}", body), dict(ctx.pngs)


def write_report(run_dir: str | Path) -> Path:
    """Write ``<run_dir>/report.html`` (atomically) and its plots under ``<run_dir>/plots/``.

    Returns the report's path. PNGs this function wrote on an earlier call that the run no longer
    produces are removed from ``plots/``; other files there are left alone.
    """
    from alignkit.io import atomic_write_bytes, atomic_write_text

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"run folder {run_dir} does not exist")
    text, pngs = build_report(run_dir)
    plot_dir = run_dir / PLOTS_DIR
    if pngs:
        plot_dir.mkdir(exist_ok=True)
    for name, data in pngs.items():
        atomic_write_bytes(plot_dir / name, data)
    if plot_dir.is_dir():
        for old in plot_dir.glob("*.png"):
            if old.name.startswith(PLOT_PREFIXES) and old.name not in pngs:
                old.unlink(missing_ok=True)
    out = run_dir / REPORT_NAME
    atomic_write_text(out, text)
    return out
