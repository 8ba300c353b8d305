"""The ``alignkit`` Typer app: the commands, registered here in workflow order (the order of ``--help``)."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from alignkit.cli import atlas, demo, diagnose, embed, evaluate, fit, measure, metrics, report, run, sanity
from alignkit.cli._console import warnings_as_notes

app = typer.Typer(
    name="alignkit",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",
)

app.command("measure")(measure.measure)
app.command("metrics")(metrics.metrics_cmd)
app.command("diagnose")(diagnose.diagnose_cmd)
app.command("embed")(embed.embed)
app.command("atlas")(atlas.atlas_cmd)
app.command("fit")(fit.fit_cmd)
app.command("evaluate")(evaluate.evaluate_cmd)
app.command("run")(run.run_cmd)
app.command("report")(report.report_cmd)
app.command("sanity")(sanity.sanity_cmd)
app.command("demo")(demo.demo)


def _version_callback(value: bool) -> None:
    if value:
        from alignkit import __version__

        sys.stdout.write(f"alignkit {__version__}\n")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool,
        typer.Option("--version", help="Print the version and exit", is_eager=True, callback=_version_callback),
    ] = False,
) -> None:
    """Measure alignment between embedding spaces of the same items.

    **Examples**

      $ alignkit demo

      $ alignkit measure a.npy b.npy --measure mutual_knn --k 10 --perm 1000
    """
    warnings_as_notes()
