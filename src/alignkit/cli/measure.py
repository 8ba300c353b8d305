"""``alignkit measure``: score two row-paired embedding matrices with one or more measures."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from alignkit.cli._console import USER_ERRORS, fail, fmt, fmt_p, note, out_console, parse_params, print_json

DEFAULT_BOOT = 200  # subsamples behind --ci (bootstrap_ci's default)


def n_boot_from(ci: bool, boot: int | None) -> int:
    """Subsamples for ``--ci`` / ``--boot N``: ``--boot`` wins (0 = none), ``--ci`` alone means
    :data:`DEFAULT_BOOT`."""
    if boot is None:
        return DEFAULT_BOOT if ci else 0
    if boot < 0 or boot == 1:
        raise ValueError(f"--boot must be 0 (no interval) or an integer >= 2; got {boot}")
    return boot


def groups_from(path: Path | None, mode: str | None, n: int, n_perm: int, n_boot: int) -> Any:
    """The ``--groups`` labels, validated against the rows (None without the option)."""
    from alignkit.stats.groups import check_group_mode, check_groups

    if path is None:
        if mode is not None:
            raise ValueError("--group-mode applies with --groups")
        return None
    if not n_perm and not n_boot:
        raise ValueError("--groups shapes the null (--perm) and the interval (--ci/--boot); give one of them")
    from alignkit.io import load_labels

    check_group_mode(mode or "within")
    labels = load_labels(path)
    check_groups(labels, n, name="--groups")
    return labels


def _resolve(measure_id: str, k: int | None, cli_params: dict[str, Any], prep: dict[str, Any]) -> Any:
    """The validated spec of one measure. The library's rule: options override the id's own
    ``?key=value`` (``--k`` applies to measures that take k). The command line gives each key once
    (:func:`~alignkit.cli._console.parse_params`), so ``--param``, ``--k`` and the preprocessing options never
    compete."""
    from alignkit.metrics import get, measure_spec

    spec = measure_spec(measure_id)
    overrides: dict[str, Any] = {"k": k} if k is not None and "k" in get(spec).own else {}
    return measure_spec(spec, **{**overrides, **cli_params, **prep})


def score_rows(
    X: Any,
    Y: Any,
    metrics: list[str],
    k: int | None,
    cli_params: dict[str, Any],
    prep: dict[str, Any],
    n_perm: int,
    seed: int,
    n_boot: int = 0,
    ci_level: float = 0.95,
    groups: Any = None,
    group_mode: str = "within",
) -> list[dict[str, Any]]:
    """One result row per measure id; with ``n_perm`` > 0 each row carries its permutation null (permuting within
    or across ``groups`` when given), with ``n_boot`` > 0 a subsampling confidence interval (``ci_low``,
    ``ci_high``, ``ci_level``, ``n_boot``; whole groups subsampled)."""
    from alignkit.metrics import get, measure

    specs = [_resolve(m, k, cli_params, prep) for m in metrics]  # fail fast, before any compute
    rows = []
    for spec in specs:
        info = get(spec)
        shown = {key: v for key, v in spec.params if key in info.own}
        label = type(spec)(spec.kind, spec.name, tuple(shown.items())).id
        row: dict[str, Any] = {"measure": label, "name": info.name}
        t0 = time.perf_counter()
        if n_perm > 0:
            from alignkit.stats import permutation_test

            res = permutation_test(
                spec, X, Y, n_perm=n_perm, seed=seed, progress=sys.stderr.isatty(), groups=groups, group_mode=group_mode
            )
            d = res.as_dict()
            keys = ("score", "null_mean", "null_std", "z", "p_value", "adjusted", "calibrated", "threshold")
            row.update({key: d[key] for key in keys})
            row.update({"n_perm": res.n_perm, "seed": seed, "permutation": d["permutation"]})
        else:
            row["score"] = float(measure(spec, X, Y))
        if n_boot > 0:
            from alignkit.stats import bootstrap_ci

            ci = bootstrap_ci(
                spec, X, Y, n_boot, level=ci_level, seed=seed, progress=sys.stderr.isatty(), groups=groups
            )
            row.update({"ci_low": ci.low, "ci_high": ci.high, "ci_level": ci.level, "n_boot": ci.n_boot})
        row.update({"higher_is_better": info.higher_is_better, "range": list(info.range)})
        row["params"] = spec.kwargs
        row["seconds"] = round(time.perf_counter() - t0, 3)
        rows.append(row)
    return rows


def score_table(rows: list[dict[str, Any]], title: str | None = None, group: str | None = None) -> Table:
    """Scores (with intervals: the CI's low and high), and with permutations the null mean ± sd, z, p-value and
    adjusted score."""
    perm = any("p_value" in r for r in rows)
    levels = {r["ci_level"] for r in rows if "ci_low" in r}
    with_ci = bool(levels)
    table = Table(title=title, title_justify="left")
    if group:
        table.add_column(group, style="bold")
    table.add_column("measure", style="cyan", no_wrap=True)
    table.add_column("score", justify="right")
    if levels:
        level = f"{levels.pop():.0%} " if len(levels) == 1 else ""
        table.add_column(f"{level}CI low", justify="right")
        table.add_column(f"{level}CI high", justify="right")
    if perm:
        table.add_column("null mean ± sd", justify="right")
        table.add_column("z", justify="right")
        table.add_column("p-value", justify="right")
        table.add_column("adjusted", justify="right")
    last = None
    for r in rows:
        cells = []
        if group:
            cells.append(r[group] if r[group] != last else "")
            if last is not None and r[group] != last:
                table.add_section()
            last = r[group]
        cells += [r["measure"], fmt(r["score"])]
        if with_ci:
            cells += [fmt(r.get("ci_low")), fmt(r.get("ci_high"))]
        if perm:
            cells += [
                f"{fmt(r['null_mean'])} ± {fmt(r['null_std'])}",
                fmt(r["z"], ".1f"),
                fmt_p(r["p_value"]),
                fmt(r["adjusted"], ".3f"),
            ]
        table.add_row(*cells)
    return table


def measure(
    a: Annotated[
        Path, typer.Argument(help="Embeddings of the items in space A (.npy .npz .safetensors .parquet .csv)")
    ],
    b: Annotated[Path, typer.Argument(help="Embeddings of the same items, same row order, in space B")],
    metric: Annotated[
        list[str] | None,
        typer.Option("--measure", "-m", help="Measure name or id such as 'cka?debiased=false'; repeat for several"),
    ] = None,
    k: Annotated[
        int | None,
        typer.Option("--k", "-k", help="Neighbourhood size, for measures that take k (default: each measure's own)"),
    ] = None,
    perm: Annotated[int, typer.Option("--perm", help="Permutations for a null, p-value and z (0 = none)")] = 0,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the permutations and the subsamples")] = 0,
    ci: Annotated[
        bool, typer.Option("--ci", help=f"Confidence interval by half-sampling ({DEFAULT_BOOT} subsamples)")
    ] = False,
    boot: Annotated[
        int | None, typer.Option("--boot", help="Subsamples for the interval (implies --ci; 0 = none)")
    ] = None,
    ci_level: Annotated[float, typer.Option("--ci-level", help="Confidence level of the interval")] = 0.95,
    param: Annotated[
        list[str] | None, typer.Option("--param", "-p", help="Measure parameter key=value; repeatable")
    ] = None,
    clip_quantile: Annotated[
        float | None, typer.Option("--clip-quantile", help="Clip entries at ± this quantile of |x| (PRH uses 0.95)")
    ] = None,
    center: Annotated[bool, typer.Option("--center", help="Subtract column means first")] = False,
    normalize: Annotated[bool, typer.Option("--normalize", help="L2-normalise rows first")] = False,
    key: Annotated[
        str | None, typer.Option("--key", help="Array name inside .npz / .safetensors files that hold several")
    ] = None,
    column: Annotated[str | None, typer.Option("--column", help="Vector column of .parquet files")] = None,
    groups: Annotated[
        Path | None,
        typer.Option(
            "--groups",
            help="One group id per row (.npy .txt .csv .parquet): the null permutes within/across groups and the "
            "interval subsamples whole groups (repeated captions, several crops of one image)",
        ),
    ] = None,
    group_mode: Annotated[
        str | None, typer.Option("--group-mode", help="within (default: shuffle rows inside groups) or blocks")
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print JSON only (one object, or a list for several)")
    ] = False,
) -> None:
    """Score how aligned two row-paired embedding matrices are.

    Row i of A and row i of B must describe the same item. With --perm, Y's rows are shuffled to
    build a null: the table then adds the null mean ± sd, z, a one-sided p-value and the
    chance-adjusted score (0 = chance, 1 = the measure's best); --json adds the calibrated score (0 up to the
    null's 95th percentile). With --ci (or --boot N) it adds a confidence interval from subsets of half the
    items drawn without replacement. With --groups, rows of a group are not exchangeable: the null permutes
    them within their group (or whole groups, --group-mode blocks) and the interval draws whole groups.

    **Examples**

      $ alignkit measure en.npy es.safetensors --measure mutual_knn --k 10 --perm 1000

      $ alignkit measure en.npy es.npy --measure cka --ci --ci-level 0.9

      $ alignkit measure a.parquet b.parquet -m cka -m 'cka?debiased=false' -m cknna --json
    """
    from alignkit.io import COLUMN_EXTENSIONS, KEYED_EXTENSIONS, load_array

    metrics = metric or ["mutual_knn"]
    try:
        if perm < 0:
            raise ValueError(f"--perm must be >= 0; got {perm}")
        n_boot = n_boot_from(ci, boot)
        if not 0.0 < ci_level < 1.0:
            raise ValueError(f"--ci-level must be in (0, 1); got {ci_level}")
        prep: dict[str, Any] = {}
        if clip_quantile is not None:
            prep["clip_quantile"] = clip_quantile
        if center:
            prep["center"] = True
        if normalize:
            prep["normalize"] = True
        dedicated = {key: f"--{key.replace('_', '-')}" + ("" if v is True else f" {v}") for key, v in prep.items()}
        if k is not None:
            dedicated["k"] = f"--k {k}"
        cli_params = parse_params(param, dedicated)
        for m in metrics:
            _resolve(m, k, cli_params, prep)
        exts = {a.suffix.lower(), b.suffix.lower()}
        if key is not None and not exts & set(KEYED_EXTENSIONS):
            raise ValueError(f"--key applies to {' and '.join(KEYED_EXTENSIONS)} inputs; got {a} and {b}")
        if column is not None and not exts & set(COLUMN_EXTENSIONS):
            raise ValueError(f"--column applies to .parquet inputs; got {a} and {b}")
        arrays = []
        for path in (a, b):
            ext = path.suffix.lower()
            arrays.append(
                load_array(
                    path,
                    key=key if ext in KEYED_EXTENSIONS else None,
                    column=column if ext in COLUMN_EXTENSIONS else None,
                )
            )
        X, Y = arrays
        if X.shape[0] != Y.shape[0]:
            raise ValueError(
                f"A and B must be paired by row (row i = the same item in both): {a} has {X.shape[0]} rows, "
                f"{b} has {Y.shape[0]}"
            )
        grp = groups_from(groups, group_mode, X.shape[0], perm, n_boot)
        if not as_json:
            note(f"A: {a} {X.shape[0]}×{X.shape[1]}   B: {b} {Y.shape[0]}×{Y.shape[1]}")
        rows = score_rows(
            X, Y, metrics, k, cli_params, prep, perm, seed, n_boot=n_boot, ci_level=ci_level, groups=grp,
            group_mode=group_mode or "within",
        )  # fmt: skip
    except USER_ERRORS as exc:
        raise fail(exc) from None
    for r in rows:
        r.update({"a": str(a), "b": str(b), "n": int(X.shape[0]), "dims": [int(X.shape[1]), int(Y.shape[1])]})
    if as_json:
        print_json(rows[0] if len(rows) == 1 else rows)
        return
    if k is not None and not any("k" in r["params"] for r in rows):
        note(f"note: --k {k} was not used: none of the chosen measures takes k")
    out_console().print(score_table(rows))
