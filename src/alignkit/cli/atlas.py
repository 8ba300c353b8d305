"""``alignkit atlas``: every layer of A against every layer of B, with a max-statistic null, false-discovery
q-values over the cells and (``--ci``) confidence intervals of the best pair and final × final."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich import box
from rich.table import Table
from rich.text import Text

from alignkit.cli._console import (
    USER_ERRORS,
    fail,
    finite,
    fmt,
    fmt_p,
    note,
    out_console,
    parse_params,
    print_json,
)
from alignkit.cli.measure import groups_from, n_boot_from

if TYPE_CHECKING:
    import numpy as np


def _short_layer_names(names: list[str]) -> list[str]:
    """'layer_3' -> '3', 'block_12' -> '12', 'final' -> 'fin': compact column heads."""
    out = []
    for name in names:
        _, sep, tail = name.rpartition("_")
        out.append(tail if sep and tail.isdigit() else ("fin" if name == "final" else name[:6]))
    return out


def _atlas_table(res: Any, title: str) -> Table:
    """Score matrix with markers: ** p_fwer ≤ 0.01, * p_fwer ≤ 0.05 (max-statistic calibrated), + BH q ≤ 0.05
    only (significant with false-discovery control over the cells, not family-wise)."""
    table = Table(box=box.SIMPLE_HEAD, title=title, title_justify="left", pad_edge=False, collapse_padding=True)
    table.add_column("A\\B", style="bold", no_wrap=True)
    for name in _short_layer_names(res.names_b):
        table.add_column(name, justify="right", no_wrap=True)
    pf, q = res.p_values_fwer, res.q_values("bh")
    best_a, best_b, _ = res.best
    for i, (a, label) in enumerate(zip(res.names_a, _short_layer_names(res.names_a), strict=True)):
        cells = []
        for j, b in enumerate(res.names_b):
            mark = ""
            if pf is not None:
                mark = "**" if pf[i, j] <= 0.01 else "*" if pf[i, j] <= 0.05 else "+" if q[i, j] <= 0.05 else ""
            text = f"{res.scores[i, j]:.3f}".lstrip("0") + mark
            cells.append(f"[reverse]{text}[/reverse]" if (a, b) == (best_a, best_b) else text)
        table.add_row(label, *cells)
    return table


def _q_table(res: Any) -> Table:
    """The Benjamini–Hochberg q-value of every cell (per-cell permutation p-values, adjusted over all cells)."""
    table = Table(box=box.SIMPLE_HEAD, title="BH q-values", title_justify="left", pad_edge=False, collapse_padding=True)
    table.add_column("A\\B", style="bold", no_wrap=True)
    for name in _short_layer_names(res.names_b):
        table.add_column(name, justify="right", no_wrap=True)
    q = res.q_values("bh")
    for i, label in enumerate(_short_layer_names(res.names_a)):
        table.add_row(label, *(_q_cell(float(v)) for v in q[i]))
    return table


def _q_cell(q: float) -> str:
    if math.isnan(q):  # a degenerate layer: not tested
        return "—"
    return f"{q:.0e}" if q < 1e-3 else f"{q:.3f}".lstrip("0") or "0"


def _ci_text(res: Any, a: str, b: str) -> str:
    ci = res.interval(a, b)
    if ci is None:
        return ""
    return f" [{fmt(ci.low, '.3f')}, {fmt(ci.high, '.3f')}] {ci.level:.0%} CI"


def _atlas_line(name: str, res: Any) -> Text:
    s = res.summary()
    text = f"{name}: best pair A {s['best_a']} × B {s['best_b']} = {s['best_score']:.3f}"
    text += _ci_text(res, s["best_a"], s["best_b"])
    if "best_p_calibrated" in s:
        text += (
            f"; max over {res.scores.size} pairs under the null: mean {s['max_null_mean']:.3f}, "
            f"calibrated p = {fmt_p(s['best_p_calibrated'])}, chance-adjusted {s['best_adjusted']:.3f}"
        )
        if s.get("permutation", "full") != "full":
            text += f" ({s['permutation']} null)"
    fa, fb, fs = res.final
    text += f"\nfinal × final: A {fa} × B {fb} = {fmt(fs, '.3f')}" + _ci_text(res, fa, fb)
    if math.isnan(fs):
        text += " (a degenerate layer)"
    if "n_significant_bh" in s:
        text += (
            f"\nfalse-discovery control over {s['n_cells_tested']} pairs: {s['n_significant_bh']} at BH q ≤ 0.05 "
            f"({s['n_significant_by']} at BY q ≤ 0.05; every q in --out); "
            f"best pair q = {fmt(s['best_q_bh'], '.3g')}"
        )
    if s.get("n_boot"):
        text += f"\nintervals from {s['n_boot']} half-samples without replacement"
    return Text(text)


def _distinct_notes(res: Any) -> list[str]:
    """One line per layer with repeated rows, and the kNN cells they make ill-defined."""
    lines = []
    for key, count in res.n_distinct.items():
        if res.n_items is not None and count < res.n_items:
            tied = res.tied_fraction.get(key)
            tail = f"; {tied:.0%} of rows have ≥ k identical copies" if tied else ""
            lines.append(f"{key}: {count} distinct rows of {res.n_items}{tail}")
    ill = int(res.knn_ill_defined.sum())
    if ill:
        lines.append(
            f"{ill} pair(s) ill-defined for {res.measure}: most rows of a layer have ≥ k identical copies, so "
            "their neighbourhoods are decided by ties"
        )
    return lines


def _layers_from(source: str, cache: Path | None) -> dict[str, np.ndarray]:
    """Layers from a file holding several arrays (.npz / .safetensors: one per layer), or embedded on the
    fly from ``ENCODER@DATASPEC`` through the embedding store."""
    import numpy as np

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


def atlas_cmd(
    a: Annotated[str, typer.Argument(help="Layers of space A: .npz/.safetensors (one array per layer) or ENC@DATA")],
    b: Annotated[str, typer.Argument(help="Layers of space B, same items in the same row order")],
    metric: Annotated[
        str, typer.Option("--measure", "-m", help="Measure id, e.g. mutual_knn or 'cka?debiased=true'")
    ] = "mutual_knn",
    k: Annotated[str | None, typer.Option("--k", "-k", help="kNN size: an integer or rice / sqrt / sturges")] = None,
    perm: Annotated[int, typer.Option("--perm", help="Permutations of the max-statistic null (0 = none)")] = 100,
    sample: Annotated[int | None, typer.Option("--sample", help="Score on this many random items")] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the permutations and the sample")] = 0,
    param: Annotated[list[str] | None, typer.Option("--param", "-p", help="Measure parameter key=value")] = None,
    cache: Annotated[Path | None, typer.Option("--cache", help="Embedding store, for ENC@DATA inputs")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Write the tidy rows (.parquet or .csv)")] = None,
    ci: Annotated[
        bool, typer.Option("--ci", help="Confidence intervals of the best pair and final × final (200 subsamples)")
    ] = False,
    boot: Annotated[
        int | None, typer.Option("--boot", help="Subsamples for the intervals (implies --ci; 0 = none)")
    ] = None,
    ci_level: Annotated[float, typer.Option("--ci-level", help="Confidence level of the intervals")] = 0.95,
    groups: Annotated[
        Path | None,
        typer.Option("--groups", help="One group id per item (.npy .txt .csv .parquet): a grouped null and interval"),
    ] = None,
    group_mode: Annotated[
        str | None, typer.Option("--group-mode", help="within (default: shuffle items inside groups) or blocks")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON only")] = False,
) -> None:
    """Score every layer of A against every layer of B, with a max-statistic permutation null.

    Cells marked ** / * are significant at family-wise error 1 % / 5 % (max-statistic null), + at
    false-discovery rate 5 % only (Benjamini–Hochberg q over all cells); the q-values follow the scores.

    **Examples**

      $ alignkit atlas layers_a.npz layers_b.npz --measure mutual_knn --k 10 --perm 200

      $ alignkit atlas layers_a.npz layers_b.npz --measure cka --perm 200 --ci

      $ alignkit atlas offline:minilm-l6@sample:bible-en offline:e5-small@sample:bible-es --measure cka
    """
    from alignkit.atlas import atlas

    try:
        # they override the id's own, as everywhere; a key given twice on the command line is an error
        params = parse_params(param, {"k": f"--k {k}"} if k is not None else None)
        k_value: int | str | None = None if k is None else (int(k) if k.isdigit() else k)
        n_boot = n_boot_from(ci, boot)
        A, B = _layers_from(a, cache), _layers_from(b, cache)
        n_items = next(iter(A.values())).shape[0] if A else 0
        grp = groups_from(groups, group_mode, n_items, perm, n_boot)
        t0 = time.perf_counter()
        res = atlas(
            A, B, metric, k=k_value, n_perm=perm, sample=sample, seed=seed, progress=not as_json, n_boot=n_boot,
            ci_level=ci_level, groups=grp, group_mode=group_mode or "within", **params,
        )  # fmt: skip
        seconds = time.perf_counter() - t0
        if out is not None:
            _write_rows(out, res.to_rows())
    except USER_ERRORS as exc:
        raise fail(exc) from None
    if as_json:
        print_json(finite(res.summary()))
        return
    console = out_console()
    console.print(_atlas_table(res, f"{metric}: rows = layers of A, columns = layers of B"))
    if res.p_values is not None:
        console.print(_q_table(res))
    console.print(_atlas_line(metric, res))
    for line in _distinct_notes(res):
        note(line)
    note(f"{len(A)} × {len(B)} layer pairs in {seconds:.1f} s" + (f"; rows written to {out}" if out else ""))
