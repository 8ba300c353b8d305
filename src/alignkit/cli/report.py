"""``alignkit report``: regenerate a run's report from its tables."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from alignkit.cli._console import USER_ERRORS, fail


def report_cmd(
    run_dir: Annotated[Path, typer.Argument(help="A run's results folder (holds run.json)")],
) -> None:
    """Regenerate a run's report.html (and plots/) from its tables.

    **Example**

      $ alignkit report results/demo
    """
    from alignkit.pipeline.report import write_report

    try:
        if not (run_dir / "run.json").is_file():
            raise FileNotFoundError(f"{run_dir}: no run.json here; pass a run's results folder (results/<name>)")
        path = write_report(run_dir)
    except USER_ERRORS as exc:
        raise fail(exc) from None
    typer.echo(f"report: {path}")
