"""``alignkit run / report / atlas / fit / evaluate``: the declarative run and its building blocks."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer
from rich import box
from rich.table import Table
from rich.text import Text

from alignkit.cli import (
    USER_ERRORS,
    _atlas_line,
    _atlas_table,
    _err,
    _fail,
    _finite,
    _note,
    _out,
    _parse_param,
    _print_json,
    app,
)


# ---------------------------------------------------------------------------------------------- run
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
            r["experiment"], r["metric"], f"{r['best_a']} × {r['best_b']}", f"{r['best_score']:.3f}",
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

    cfg = load_config(config)
    if output is not None:
        cfg = cfg.model_copy(update={"output": str(output)})
    out = _out()
    out.width = max(out.width, 120)  # the tables are wide; let a narrow terminal scroll rather than wrap cells
    if dry_run:
        plan = plan_run(cfg)
        out.print(_plan_table(plan))
        out.print(Text(_plan_totals(plan)))
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    plan = plan_run(cfg)
    _note(_plan_totals(plan))
    todo = sum(1 for s in plan.status().values() if s == "todo")
    with Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=_err(),
        transient=False,
    ) as bar:
        task = bar.add_task(f"run {cfg.name}", total=todo)

        def notify(job: Any, status: str, seconds: float) -> None:
            mark = {"done": "[green]✓[/green]", "failed": "[red]✗[/red]"}.get(status, status)
            bar.console.print(f"{mark} {job.id} [dim]{seconds:.1f} s[/dim]")
            bar.advance(task)

        try:
            result = run_pipeline(cfg, executor=executor, address=address, resume=resume, notify=notify)
        except RunFailed as exc:
            bar.stop()
            raise _fail(str(exc).splitlines()[0] + " " + "; ".join(str(exc).splitlines()[1:4])) from None
    for table in (_atlas_summary_table(result.tables), summary_table(result.tables)):
        if table is not None:
            out.print(table)
    cached = sum(1 for s in result.outcome.status.values() if s == "cached")
    _note(f"done in {result.wall_seconds:.0f} s ({cached} of {len(result.plan.jobs)} jobs were already finished)")
    typer.echo(f"results: {result.run_dir}")  # plain echo: a long path must not be wrapped
    if result.report is not None:
        typer.echo(f"report:  {result.report}")


# ---------------------------------------------------------------------------------------------- atlas
def _layers_from(source: str, cache: Path | None) -> dict[str, np.ndarray]:
    """Layers from a file holding several arrays (.npz / .safetensors: one per layer), or embedded on the
    fly from ``ENCODER@DATASPEC`` through the embedding store."""
    if "@" in source and not Path(source).exists():
        from alignkit.data.spec import dataset_from_spec
        from alignkit.encoders import load_encoder
        from alignkit.store import EmbeddingStore

        enc_id, _, spec = source.partition("@")
        spaces = EmbeddingStore(cache).extract(load_encoder(enc_id), dataset_from_spec(spec))
        return {name: np.asarray(sp) for name, sp in spaces.items()}
    path = Path(source)
    if not path.is_file():
        raise FileNotFoundError(f"{source}: no such file (give a .npz/.safetensors of layers, or ENCODER@DATASPEC)")
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as z:
            names = list(z.files)
    elif path.suffix == ".safetensors":
        from safetensors import safe_open

        with safe_open(str(path), framework="numpy") as f:
            names = list(f.keys())
    else:
        raise ValueError(f"{source}: an atlas needs several layers: a .npz or .safetensors file, one array per layer")
    if not names:
        raise ValueError(f"{source}: the file holds no arrays")
    from alignkit.io import load_array

    return {name: load_array(path, key=name) for name in names}


@app.command("atlas")
def atlas_cmd(
    a: Annotated[str, typer.Argument(help="Layers of space A: .npz/.safetensors (one array per layer) or ENC@DATA")],
    b: Annotated[str, typer.Argument(help="Layers of space B, same items in the same row order")],
    metric: Annotated[
        str, typer.Option("--metric", "-m", help="Measure id, e.g. mutual_knn or 'cka?debiased=true'")
    ] = "mutual_knn",
    k: Annotated[str | None, typer.Option("--k", "-k", help="kNN size: an integer or rice / sqrt / sturges")] = None,
    perm: Annotated[int, typer.Option("--perm", help="Permutations of the max-statistic null (0 = none)")] = 100,
    sample: Annotated[int | None, typer.Option("--sample", help="Score on this many random items")] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the permutations and the sample")] = 0,
    param: Annotated[list[str] | None, typer.Option("--param", "-p", help="Measure parameter key=value")] = None,
    cache: Annotated[Path | None, typer.Option("--cache", help="Embedding store, for ENC@DATA inputs")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Write the tidy rows (.parquet or .csv)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON only")] = False,
) -> None:
    """Score every layer of A against every layer of B, with a max-statistic permutation null.

    **Examples**

      $ alignkit atlas layers_a.npz layers_b.npz --metric mutual_knn --k 10 --perm 200

      $ alignkit atlas offline:minilm-l6@sample:bible-en offline:e5-small@sample:bible-es --metric cka
    """
    from alignkit.atlas import atlas
    from alignkit.metrics._registry import parse_measure_id

    try:
        name, params = parse_measure_id(metric)
        params.update(dict(_parse_param(p) for p in param or []))
        k_value: int | str | None = None if k is None else (int(k) if k.isdigit() else k)
        A, B = _layers_from(a, cache), _layers_from(b, cache)
        t0 = time.perf_counter()
        res = atlas(A, B, name, k=k_value, n_perm=perm, sample=sample, seed=seed, progress=not as_json, **params)
        seconds = time.perf_counter() - t0
        if out is not None:
            _write_rows(out, res.to_rows())
    except USER_ERRORS as exc:
        raise _fail(exc) from None
    if as_json:
        _print_json(_finite(res.summary()))
        return
    console = _out()
    console.print(_atlas_table(res, f"{metric}: rows = layers of A, columns = layers of B"))
    console.print(_atlas_line(metric, res))
    _note(f"{len(A)} × {len(B)} layer pairs in {seconds:.1f} s" + (f"; rows written to {out}" if out else ""))


def _write_rows(path: Path, rows: list[dict[str, Any]]) -> None:
    import io

    import pandas as pd

    from alignkit.io import atomic_write_bytes, atomic_write_text

    df = pd.DataFrame(rows)
    if path.suffix == ".parquet":
        buf = io.BytesIO()
        df.to_parquet(buf, index=False)
        atomic_write_bytes(path, buf.getvalue())
    elif path.suffix == ".csv":
        atomic_write_text(path, df.to_csv(index=False))
    else:
        raise ValueError(f"--out must end in .parquet or .csv; got {path}")


# ---------------------------------------------------------------------------------------------- fit
@app.command("fit")
def fit_cmd(
    x: Annotated[Path, typer.Argument(help="Training rows of space A (.npy .npz .safetensors .parquet .csv)")],
    y: Annotated[Path, typer.Argument(help="The paired rows of space B, same order")],
    aligner: Annotated[str, typer.Option("--aligner", "-a", help="procrustes, vecmap, cca, ridge, asif or head")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder to save the fitted aligner to")],
    param: Annotated[
        list[str] | None, typer.Option("--param", "-p", help="Hyper-parameter key=value, e.g. center=true; repeatable")
    ] = None,
    key: Annotated[str | None, typer.Option("--key", help="Array name inside .npz/.safetensors files")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON only")] = False,
) -> None:
    """Fit an aligner on paired rows and save it (safetensors + JSON, no pickle).

    **Examples**

      $ alignkit fit en.npy es.npy --aligner procrustes -p center=true -p normalize=true --out aligners/en-es

      $ alignkit fit img.npy txt.npy --aligner head -p head=linear -p loss=infonce -p epochs=20 --out aligners/img
    """
    from alignkit.io import load_array
    from alignkit.pipeline.config import aligner_classes, aligner_params

    try:
        classes = aligner_classes()
        if aligner not in classes:
            raise ValueError(f"--aligner must be one of {', '.join(classes)}; got {aligner!r}")
        cls = classes[aligner]
        params = dict(_parse_param(p) for p in param or [])
        unknown = sorted(set(params) - set(aligner_params(cls)))
        if unknown:
            raise ValueError(f"{aligner} takes no parameter(s) {unknown}; allowed: {', '.join(aligner_params(cls))}")
        X, Y = load_array(x, key=key), load_array(y, key=key)
        model = cls(**params)
        t0 = time.perf_counter()
        model.fit(X, Y)
        seconds = time.perf_counter() - t0
        model.save(out)
        score = float(model.score(X, Y))
    except USER_ERRORS as exc:
        raise _fail(exc) from None
    info = {"aligner": type(model).__name__, "n_pairs": int(X.shape[0]), "fit_seconds": seconds,
            "train_score": score, "saved": str(out)}  # fmt: skip
    if as_json:
        _print_json(_finite(info))
        return
    _out().print(
        f"{info['aligner']} fitted on {info['n_pairs']:,} pairs in {seconds:.2f} s; "
        f"training score {score:.4f}; saved to {out}"
    )


# ---------------------------------------------------------------------------------------------- evaluate
@app.command("evaluate")
def evaluate_cmd(
    aligner_dir: Annotated[Path, typer.Argument(help="A saved aligner (folder written by fit)")],
    x: Annotated[Path, typer.Argument(help="Held-out rows of space A")],
    y: Annotated[Path, typer.Argument(help="Retrieval: the paired rows of space B. Zero-shot: class text rows")],
    task: Annotated[str, typer.Option("--task", help="retrieval or zero_shot")] = "retrieval",
    scoring: Annotated[str, typer.Option("--scoring", help="nn or csls (retrieval)")] = "nn",
    labels: Annotated[Path | None, typer.Option("--labels", help="zero_shot: class index of each row of X")] = None,
    templates: Annotated[
        int | None, typer.Option("--templates-per-class", help="zero_shot: Y holds T class-major prompts per class")
    ] = None,
    key: Annotated[str | None, typer.Option("--key", help="Array name inside .npz/.safetensors files")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the rows as JSON only")] = False,
) -> None:
    """Evaluate a saved aligner: retrieval of held-out pairs both ways, or zero-shot classification.

    **Examples**

      $ alignkit evaluate aligners/en-es test_en.npy test_es.npy --scoring csls

      $ alignkit evaluate aligners/img test_img.npy prompts.npy --task zero_shot --labels y.npy --templates-per-class 5
    """
    from alignkit.align.base import Aligner
    from alignkit.evaluate import retrieval, zero_shot
    from alignkit.io import load_array

    try:
        model = Aligner.load(aligner_dir)
        X, Y = load_array(x, key=key), load_array(y, key=key)
        zx, zy = np.asarray(model.transform_x(X)), np.asarray(model.transform_y(Y))
        if task == "retrieval":
            rows = retrieval(zx, zy, scoring=scoring)
        elif task == "zero_shot":
            if labels is None:
                raise ValueError("--task zero_shot needs --labels (a file with one class index per row of X)")
            lab = load_array(labels, key=key) if labels.suffix != ".npy" else np.load(labels, allow_pickle=False)
            rows = zero_shot(zx, zy, np.asarray(lab).ravel().astype(np.int64), templates_per_class=templates)
        else:
            raise ValueError(f"--task must be 'retrieval' or 'zero_shot'; got {task!r}")
    except USER_ERRORS as exc:
        raise _fail(exc) from None
    if as_json:
        _print_json(_finite(rows))
        return
    table = Table(box=box.SIMPLE_HEAD, title=f"{task} with {type(model).__name__}", title_justify="left")
    cols = [c for c in ("direction", "scoring", "class", "metric", "value") if any(c in r for r in rows)]
    for c in cols:
        table.add_column(c, justify="right" if c == "value" else "left")
    for r in rows:
        table.add_row(*[f"{r[c]:.4f}" if c == "value" else str(r.get(c, "")) for c in cols])
    _out().print(table)


# ---------------------------------------------------------------------------------------------- run commands
@app.command("run")
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
        raise _fail(f"--executor must be 'local' or 'ray'; got {executor!r}")
    try:
        execute_run(config, executor=executor, address=address, resume=resume, dry_run=dry_run, output=output)
    except USER_ERRORS as exc:
        raise _fail(exc) from None


@app.command("report")
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
        raise _fail(exc) from None
    typer.echo(f"report: {path}")
