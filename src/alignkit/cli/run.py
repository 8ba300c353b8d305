"""``alignkit run``: plan and execute a declarative run config (shared with ``alignkit demo``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich import box
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from alignkit.cli._console import USER_ERRORS, err_console, fail, note, out_console


def _plan_table(plan: Any) -> Table:
    table = Table(box=box.SIMPLE_HEAD, title=f"plan of run {plan.config.name!r} → {plan.run_dir}", title_justify="left")
    for col in ("job", "kind", "status", "after", "work"):
        table.add_column(col, no_wrap=col in ("job", "status"))
    for row in plan.rows():
        style = "dim" if row["status"] == "cached" else ""
        after = row["after"] if len(row["after"]) < 60 else row["after"][:57] + "…"
        table.add_row(row["job"], row["kind"], row["status"], after, row["work"], style=style)
    return table


def _plan_totals(plan: Any) -> str:
    st = plan.status()
    kinds: dict[str, list[int]] = {}
    for job in plan.jobs:
        c = kinds.setdefault(job.kind, [0, 0])
        c[0 if st[job.id] == "cached" else 1] += 1
    parts = [f"{k}: {todo} to run, {cached} cached" for k, (cached, todo) in kinds.items()]
    return f"{len(plan.jobs)} jobs — " + "; ".join(parts)


def summary_table(tables: dict[str, Path]) -> Table | None:
    """Headline numbers of a run: per experiment and method, R@1 (retrieval, NN) or top-1 (zero-shot)
    at each data size, mean ± 95 % CI half-width over seeds."""
    if "evaluations" not in tables:
        return None
    import pandas as pd

    from alignkit.evaluate import summarize

    df = pd.read_parquet(tables["evaluations"])
    keep = ((df["task"] == "retrieval") & (df["metric"] == "R@1") & (df["scoring"] == "nn")) | (
        (df["task"] == "zero_shot") & (df["metric"] == "top1")
    )
    rows = summarize(df[keep].to_dict("records"), by=("experiment", "task", "direction", "method", "n_train"))
    table = Table(box=box.SIMPLE_HEAD, title="held-out results (mean ± 95 % CI over seeds)", title_justify="left")
    for col in ("experiment", "task", "direction", "method", "n_train", "metric", "value"):
        table.add_column(col, justify="right" if col in ("n_train", "value") else "left")
    for r in rows:
        half = r["ci_halfwidth"]
        value = f"{r['mean']:.3f}" + ("" if half != half else f" ± {half:.3f}")
        table.add_row(
            str(r["experiment"]), str(r["task"]), str(r["direction"]), str(r["method"]), f"{r['n_train']:,}",
            str(r["metric"]), value,
        )  # fmt: skip
    return table


def _atlas_summary_table(tables: dict[str, Path]) -> Table | None:
    if "atlas_summary" not in tables:
        return None
    import pandas as pd

    df = pd.read_parquet(tables["atlas_summary"])
    table = Table(box=box.SIMPLE_HEAD, title="atlases: best layer pair per measure", title_justify="left")
    for col in ("experiment", "measure", "best pair (A × B)", "score", "max-null mean", "calibrated p"):
        table.add_column(col)
    for r in df.to_dict("records"):
        p = r.get("best_p_calibrated")
        table.add_row(
            r["experiment"], r["measure"], f"{r['best_a']} × {r['best_b']}", f"{r['best_score']:.3f}",
            "–" if r["max_null_mean"] != r["max_null_mean"] else f"{r['max_null_mean']:.3f}",
            "–" if p != p else (f"≤ {1 / (r['n_perm'] + 1):.3g}" if p <= 1 / (r["n_perm"] + 1) + 1e-12 else f"{p:.3g}"),
        )  # fmt: skip
    return table


def execute_run(
    config: Path | str,
    *,
    executor: str = "local",
    address: str | None = None,
    resume: bool = True,
    dry_run: bool = False,
    output: Path | None = None,
) -> None:
    """Shared by ``alignkit run`` and ``alignkit demo``."""
    from alignkit.pipeline import RunFailed, load_config, plan_run
    from alignkit.pipeline import run as run_pipeline
    from alignkit.pipeline.runner import RunLocked

    cfg = load_config(config)
    if output is not None:
        cfg = cfg.model_copy(update={"output": str(output)})
    out = out_console()
    out.width = max(out.width, 120)  # the tables are wide; let a narrow terminal scroll rather than wrap cells
    if dry_run:
        plan = plan_run(cfg)
        out.print(_plan_table(plan))
        out.print(Text(_plan_totals(plan)))
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    plan = plan_run(cfg)
    note(_plan_totals(plan))
    todo = sum(1 for s in plan.status().values() if s == "todo")
    with Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console(),
        transient=False,
    ) as bar:
        task = bar.add_task(f"run {cfg.name}", total=todo)
        inner = bar.add_task("", total=None, visible=False)  # items of the running job (local executor)

        def notify(job: Any, status: str, seconds: float) -> None:
            mark = {"done": "[green]✓[/green]", "failed": "[red]✗[/red]"}.get(status, status)
            bar.console.print(f"{mark} {job.id} [dim]{seconds:.1f} s[/dim]")
            bar.update(inner, visible=False)
            bar.advance(task)

        def items(job: Any, what: str, done: int, total: int | None) -> None:
            bar.update(inner, description=escape(f"  ↳ {what} ({job.id})"), completed=done, total=total, visible=True)

        try:
            result = run_pipeline(cfg, executor=executor, address=address, resume=resume, notify=notify, items=items)
        except RunFailed as exc:
            bar.stop()
            raise fail(str(exc).splitlines()[0] + " " + "; ".join(str(exc).splitlines()[1:4])) from None
        except RunLocked as exc:  # a second run into the same folder: a user error, not a crash
            bar.stop()
            raise fail(exc) from None
    for table in (_atlas_summary_table(result.tables), summary_table(result.tables)):
        if table is not None:
            out.print(table)
    cached = sum(1 for s in result.outcome.status.values() if s == "cached")
    note(f"done in {result.wall_seconds:.0f} s ({cached} of {len(result.plan.jobs)} jobs were already finished)")
    typer.echo(f"results: {result.run_dir}")  # plain echo: a long path must not be wrapped
    if result.report is not None:
        typer.echo(f"report:  {result.report}")


def run_cmd(
    config: Annotated[Path, typer.Argument(help="Run config (YAML); see docs/runs.md")],
    executor: Annotated[str, typer.Option("--executor", help="local (in this process) or ray")] = "local",
    address: Annotated[
        str | None, typer.Option("--address", help="Ray cluster address (default: start a local one)")
    ] = None,
    resume: Annotated[
        bool, typer.Option("--resume/--restart", help="Reuse finished jobs (default), or redo them all")
    ] = True,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the plan (jobs, dependencies, cached or not) and stop")
    ] = False,
    output: Annotated[Path | None, typer.Option("--output", help="Parent folder of results/<name>")] = None,
) -> None:
    """Run a declarative config: embed, atlas, fit, evaluate, report.

    Finished jobs are keyed by their inputs and reused; a killed run resumes where it stopped.
    Results go to `<output>/<name>/`: Parquet tables, run.json, plots and report.html.

    **Examples**

      $ alignkit run my-run.yaml --dry-run

      $ alignkit run my-run.yaml

      $ alignkit run my-run.yaml --executor ray --address auto
    """
    if executor not in ("local", "ray"):
        raise fail(f"--executor must be 'local' or 'ray'; got {executor!r}")
    try:
        execute_run(config, executor=executor, address=address, resume=resume, dry_run=dry_run, output=output)
    except USER_ERRORS as exc:
        raise fail(exc) from None
