"""``alignkit diagnose``: the geometry of embedding files (one space, a pair, classes, subspaces)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from alignkit.cli._console import USER_ERRORS, fail, fmt, fmt_p, note, out_console, parse_params, print_json

_SHOWN_DETAILS = 4  # details per row in the table (all of them in --json / --out)


def diagnostic_rows(
    arrays: dict[str, Any],
    names: list[str],
    params: dict[str, Any],
    labels: Any,
    groups: Any,
    n_boot: int,
    n_perm: int,
    seed: int,
) -> list[dict[str, Any]]:
    """One row per (diagnostic, input set): a one-array diagnostic runs on every file; a k-array diagnostic takes
    the files in the order given (exactly k)."""
    from alignkit.diagnostics import as_row, diagnose, diagnostic_ci, diagnostic_null, diagnostic_spec, get

    specs = [diagnostic_spec(n, **{k: v for k, v in params.items() if k in _accepted(n)}) for n in names]
    unused = set(params) - {k for n in names for k in _accepted(n)}
    if unused:
        raise ValueError(f"--param {', '.join(sorted(unused))}: no chosen diagnostic takes it")
    files = list(arrays)
    rows = []
    for spec in specs:
        info = get(spec)
        k = len(info.inputs)
        if k == 1:
            sets = [[f] for f in files]
        elif len(files) == k:
            sets = [files]
        else:
            raise ValueError(f"diagnostic {info.name!r} takes {k} files ({', '.join(info.inputs)}); got {len(files)}")
        for on in sets:
            xs = [arrays[f] for f in on]
            kw = {"labels": labels, "groups": groups if info.accepts_groups else None}
            row: dict[str, Any] = {"diagnostic": spec.id, "on": " ".join(on)}
            row.update(as_row(diagnose(spec, *xs, **kw)))
            if n_boot and info.resample:
                ci = diagnostic_ci(spec, *xs, **kw, n_boot=n_boot, seed=seed)
                row.update(ci_low=ci.low, ci_high=ci.high, level=ci.level)
            if n_perm and info.null is not None and info.higher_is_better is not None:
                res = diagnostic_null(spec, *xs, **kw, n_perm=n_perm, seed=seed)
                row.update(null_mean=res.null_mean, p_value=res.p_value, z=res.z)
            row.update(range=list(info.range), higher_is_better=info.higher_is_better)
            rows.append(row)
    return rows


def _accepted(name: str) -> list[str]:
    from alignkit.diagnostics import diagnostic_spec, get

    return get(diagnostic_spec(name)).schema.names()


def _table(rows: list[dict[str, Any]]) -> Table:
    table = Table(title=None)
    table.add_column("diagnostic", style="cyan", no_wrap=True)
    table.add_column("on")
    table.add_column("value", justify="right")
    ci = any("ci_low" in r for r in rows)
    perm = any("p_value" in r for r in rows)
    if ci:
        table.add_column("CI", justify="right")
    if perm:
        table.add_column("p-value", justify="right")
    table.add_column("details")
    fixed = {"diagnostic", "on", "value", "ci_low", "ci_high", "level", "null_mean", "p_value", "z", "range"}
    fixed |= {"higher_is_better"}
    for r in rows:
        cells = [r["diagnostic"], r["on"], fmt(r["value"])]
        if ci:
            cells.append(f"[{fmt(r['ci_low'])}, {fmt(r['ci_high'])}]" if "ci_low" in r else "—")
        if perm:
            cells.append(fmt_p(r["p_value"]) if "p_value" in r else "—")
        extra = [(k, v) for k, v in r.items() if k not in fixed and isinstance(v, (int, float, str, bool))]
        shown = ", ".join(f"{k}={fmt(v) if isinstance(v, float) else v}" for k, v in extra[:_SHOWN_DETAILS])
        cells.append(shown + (" …" if len(extra) > _SHOWN_DETAILS else ""))
        table.add_row(*cells)
    return table


def _list() -> None:
    from alignkit.diagnostics import describe

    entries: list[dict[str, Any]] = describe()  # type: ignore[assignment]  # no name: every entry
    table = Table(title="alignkit diagnostics", title_justify="left")
    for col in ("name", "family", "inputs", "better", "null", "cost"):
        table.add_column(col, style="cyan" if col == "name" else None, no_wrap=col != "cost")
    for e in entries:
        better = {True: "↑", False: "↓", None: "·"}[e["higher_is_better"]]
        table.add_row(e["name"], e["family"], " ".join(e["inputs"]), better, e["null"] or "—", e["cost"])
    out_console().print(table)


def diagnose_cmd(
    files: Annotated[
        list[Path] | None,
        typer.Argument(help="Embedding files (.npy .npz .safetensors .parquet .csv); row i = the same item in each"),
    ] = None,
    diagnostic: Annotated[
        list[str] | None,
        typer.Option("--diagnostic", "-d", help="Diagnostic name or id such as 'uniformity?t=2'; repeat for several"),
    ] = None,
    labels: Annotated[
        Path | None, typer.Option("--labels", help="One class label per row (.npy .txt .csv .parquet)")
    ] = None,
    groups: Annotated[
        Path | None,
        typer.Option("--groups", help="One group id per row: items of a group are resampled/permuted together"),
    ] = None,
    param: Annotated[list[str] | None, typer.Option("--param", "-p", help="Parameter key=value; repeatable")] = None,
    boot: Annotated[int, typer.Option("--boot", help="Subsamples for a confidence interval (0 = none)")] = 0,
    perm: Annotated[int, typer.Option("--perm", help="Permutations for a null and p-value (0 = none)")] = 0,
    seed: Annotated[int, typer.Option("--seed", help="Seed of subsamples and permutations")] = 0,
    key: Annotated[str | None, typer.Option("--key", help="Array name inside .npz / .safetensors files")] = None,
    column: Annotated[str | None, typer.Option("--column", help="Vector column of .parquet files")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Also write the rows to this .parquet file")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON rows only")] = False,
    list_: Annotated[bool, typer.Option("--list", help="List the registered diagnostics and exit")] = False,
) -> None:
    """Diagnose the geometry of embedding spaces: uniformity, anisotropy, modality gap, class separability,
    H0 persistence, subspace overlap, and more (``--list``).

    A one-space diagnostic runs on every file; a pair diagnostic takes two row-paired files.

    **Examples**

      $ alignkit diagnose image.npy -d uniformity -d effective_rank

      $ alignkit diagnose image.npy caption.npy -d modality_gap -d paired_cosine --perm 200

      $ alignkit diagnose layer7.npy -d separability_probe -d fisher_ratio --labels labels.npy --boot 100
    """
    if list_:
        _list()
        return
    from alignkit.io import COLUMN_EXTENSIONS, KEYED_EXTENSIONS, load_array, load_labels

    try:
        if not files:
            raise ValueError("give one or more embedding files (or --list)")
        for name, v in (("--boot", boot), ("--perm", perm)):
            if v < 0:
                raise ValueError(f"{name} must be >= 0; got {v}")
        if boot == 1:
            raise ValueError("--boot must be 0 or at least 2")
        names = diagnostic or ["uniformity"]
        params = parse_params(param)
        from alignkit.diagnostics import diagnostic_spec

        for name in names:  # unknown names and bad parameters fail before any file is read
            diagnostic_spec(name, **{k: v for k, v in params.items() if k in _accepted(name)})
        arrays: dict[str, Any] = {}
        for path in files:
            ext = path.suffix.lower()
            label = str(path) if str(path) not in arrays else f"{path}#{len(arrays)}"
            arrays[label] = load_array(
                path,
                key=key if ext in KEYED_EXTENSIONS else None,
                column=column if ext in COLUMN_EXTENSIONS else None,
            )
        lab = None if labels is None else load_labels(labels)
        grp = None if groups is None else load_labels(groups)
        if not as_json:
            shapes = "   ".join(f"{f}: {a.shape[0]}×{a.shape[1]}" for f, a in arrays.items())
            note(shapes)
        rows = diagnostic_rows(arrays, names, params, lab, grp, boot, perm, seed)
        if out is not None:
            from alignkit.pipeline.jobs import write_rows

            write_rows(out, rows)
    except USER_ERRORS as exc:
        raise fail(exc) from None
    if as_json:
        print_json(rows[0] if len(rows) == 1 else rows)
        return
    out_console().print(_table(rows))
