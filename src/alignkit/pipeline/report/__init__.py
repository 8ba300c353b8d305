"""The self-contained HTML report of a declarative run.

:func:`write_report` reads what a run left in ``results/<run-name>/`` (``run.json`` and the Parquet
tables ``atlas``, ``atlas_summary``, ``layer_selection``, ``fits``, ``evaluations``; any may be missing
or empty), draws the plots (:mod:`alignkit.pipeline.plots`), saves them as PNGs under ``plots/`` and
writes ``report.html`` with the same PNGs embedded as base64 data URIs: one file, no network, no
external CSS, scripts or fonts. The report holds no generation timestamp, so regenerating it from the
same files gives the same bytes.

Layout: :mod:`~alignkit.pipeline.report.load` reads the run, :mod:`~alignkit.pipeline.report.html` holds
the HTML helpers, :mod:`~alignkit.pipeline.report.labels` looks names, labels and directions up in the
registries, and :mod:`~alignkit.pipeline.report.sections` has one module per section. The page
template, CSS and script are the package resources ``page.html``, ``report.css`` and ``report.js``.
"""

from alignkit.pipeline.report.build import PLOTS_DIR, REPORT_NAME, build_report, write_report
from alignkit.pipeline.report.html import seconds as _seconds  # noqa: F401 - the old private name

__all__ = ["PLOTS_DIR", "REPORT_NAME", "build_report", "write_report"]
