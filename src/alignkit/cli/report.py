"""``alignkit report``: regenerate a run's report from its tables."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from alignkit.cli._console import USER_ERRORS, fail, note


def _run_plugins(run_dir: Path) -> list[str]:
    """The ``plugins:`` of the run's recorded config (run.json); none when run.json does not say."""
    try:
        config = json.loads((run_dir / "run.json").read_text(encoding="utf-8")).get("config") or {}
        plugins = config.get("plugins") or []
    except (OSError, ValueError, AttributeError):
        return []  # the report itself says what is wrong with run.json
    return [p for p in plugins if isinstance(p, str)] if isinstance(plugins, list) else []


def _load_run_plugins(run_dir: Path) -> None:
    """Import the run's plugins, so their measures keep their direction; a plugin that fails is a note."""
    from alignkit.pipeline.config import load_plugins

    plugins = _run_plugins(run_dir)
    if not plugins:
        return
    note(f"loading the run's plugins: {', '.join(plugins)}")
    try:
        load_plugins(plugins)
    except Exception as exc:  # a plugin is arbitrary code; the report is still worth writing
        note(f"could not load the run's plugins ({exc}); their measures show 'direction unknown'")


def report_cmd(
    run_dir: Annotated[Path, typer.Argument(help="A run's results folder (holds run.json)")],
    plugins: Annotated[
        bool, typer.Option("--plugins/--no-plugins", help="Import the run's plugins (run.json) first (default)")
    ] = True,
) -> None:
    """Regenerate a run's report.html (and plots/) from its tables.

    The run's `plugins:` (recorded in run.json) are imported first, so plugin measures keep their
    direction; they run code, so use --no-plugins for a run folder you do not trust.

    **Example**

      $ alignkit report results/demo
    """
    from alignkit.pipeline.report import write_report

    try:
        if not (run_dir / "run.json").is_file():
            raise FileNotFoundError(f"{run_dir}: no run.json here; pass a run's results folder (results/<name>)")
        if plugins:
            _load_run_plugins(run_dir)
        path = write_report(run_dir)
    except USER_ERRORS as exc:
        raise fail(exc) from None
    typer.echo(f"report: {path}")
