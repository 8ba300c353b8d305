"""``alignkit`` command line: a thin layer over the readers (:mod:`alignkit.io`) and the analyses.

Tables go to stdout, progress and notes to stderr; ``--json`` prints only JSON on stdout.
User errors (bad files, unknown measures, bad parameters) print one red line on stderr and exit
with status 2, without a traceback.
"""

from __future__ import annotations

import inspect
import json
import math
import sys
import time
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode

import typer
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

app = typer.Typer(
    name="alignkit",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",
)

USER_ERRORS = (ValueError, TypeError, KeyError, OSError)


def _out() -> Console:
    return Console(soft_wrap=False)


def _err() -> Console:
    return Console(stderr=True, soft_wrap=True)


def _fail(exc: BaseException | str) -> typer.Exit:
    msg = exc if isinstance(exc, str) else (str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc))
    _err().print(Text("error: " + " ".join(msg.split()), style="bold red"))
    return typer.Exit(code=2)


def _note(msg: str) -> None:
    _err().print(Text(msg, style="dim"))


def _finite(value: Any) -> Any:
    """JSON has no NaN/Infinity: non-finite floats become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def _print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(_finite(obj), indent=2, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def _fmt(x: float | None, spec: str = ".4f") -> str:
    if x is None or not math.isfinite(x):
        return "—" if x is None or math.isnan(x) else ("∞" if x > 0 else "−∞")
    return format(x, spec)


def _fmt_p(p: float) -> str:
    return f"{p:.2e}" if p < 1e-3 else f"{p:.3f}"


# -------------------------------------------------------------------------------------- parameters


def _parse_param(text: str) -> tuple[str, Any]:
    """``key=value`` with the same typing as measure ids (true/false/none/int/float/str)."""
    from alignkit.metrics import parse_measure_id

    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ValueError(f"--param expects key=value; got {text!r}")
    return key, parse_measure_id("m?" + urlencode({key: value.strip()}))[1][key]


def _accepted(func: Any) -> tuple[set[str], bool]:
    """Keyword parameters a measure accepts (besides X, Y) and whether it takes **kwargs."""
    params = list(inspect.signature(func).parameters.values())[2:]
    var_kw = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params)
    return {p.name for p in params if p.kind is not inspect.Parameter.VAR_KEYWORD}, var_kw


def _resolve(metric_id: str, k: int | None, cli_params: dict[str, Any], prep: dict[str, Any]) -> dict[str, Any]:
    """Parameters for one measure: --k (if it takes k) < --param < the id's own '?key=value'."""
    from alignkit.metrics import get, parse_measure_id
    from alignkit.metrics._registry import PREPROCESS_KEYS

    info = get(metric_id)
    _, id_params = parse_measure_id(metric_id)
    accepted, var_kw = _accepted(info.func)
    params: dict[str, Any] = {}
    if k is not None and "k" in accepted:
        params["k"] = k
    params.update(cli_params)
    params.update(id_params)
    unknown = sorted(set(params) - accepted - set(PREPROCESS_KEYS))
    if unknown and not var_kw:
        raise ValueError(
            f"measure {info.name!r} has no parameter {', '.join(map(repr, unknown))}; "
            f"it accepts: {', '.join(sorted(accepted)) or '(none)'}"
        )
    return {**prep, **{key: v for key, v in params.items() if key not in id_params}}


def _label(metric_id: str, params: dict[str, Any]) -> str:
    shown = {k: v for k, v in params.items() if k not in ("clip_quantile", "center", "normalize")}
    if not shown:
        return metric_id
    sep = "&" if "?" in metric_id else "?"
    return metric_id + sep + "&".join(f"{k}={str(v).lower() if isinstance(v, bool) else v}" for k, v in shown.items())


def _score_rows(
    X: Any,
    Y: Any,
    metrics: list[str],
    k: int | None,
    cli_params: dict[str, Any],
    prep: dict[str, Any],
    n_perm: int,
    seed: int,
) -> list[dict[str, Any]]:
    """One result row per measure id; with ``n_perm`` > 0 each row carries its permutation null."""
    from alignkit.metrics import get, measure, parse_measure_id

    resolved = [(m, _resolve(m, k, cli_params, prep)) for m in metrics]  # fail fast, before any compute
    rows = []
    for metric_id, params in resolved:
        info = get(metric_id)
        row: dict[str, Any] = {"measure": _label(metric_id, params), "name": info.name}
        t0 = time.perf_counter()
        if n_perm > 0:
            from alignkit.stats import permutation_test

            res = permutation_test(metric_id, X, Y, n_perm=n_perm, seed=seed, progress=sys.stderr.isatty(), **params)
            d = res.as_dict()
            row.update({key: d[key] for key in ("score", "null_mean", "null_std", "z", "p_value", "adjusted")})
            row.update({"n_perm": res.n_perm, "seed": seed})
        else:
            row["score"] = float(measure(metric_id, X, Y, **params))
        row.update({"higher_is_better": info.higher_is_better, "range": list(info.range)})
        row["params"] = {**parse_measure_id(metric_id)[1], **params}
        row["seconds"] = round(time.perf_counter() - t0, 3)
        rows.append(row)
    return rows


def _score_table(rows: list[dict[str, Any]], title: str | None = None, group: str | None = None) -> Table:
    perm = any("p_value" in r for r in rows)
    table = Table(title=title, title_justify="left")
    if group:
        table.add_column(group, style="bold")
    table.add_column("measure", style="cyan", no_wrap=True)
    table.add_column("score", justify="right")
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
        cells += [r["measure"], _fmt(r["score"])]
        if perm:
            cells += [
                f"{_fmt(r['null_mean'])} ± {_fmt(r['null_std'])}",
                _fmt(r["z"], ".1f"),
                _fmt_p(r["p_value"]),
                _fmt(r["adjusted"], ".3f"),
            ]
        table.add_row(*cells)
    return table


# ------------------------------------------------------------------------------------------ measure


@app.command()
def measure(
    a: Annotated[
        Path, typer.Argument(help="Embeddings of the items in space A (.npy .npz .safetensors .parquet .csv)")
    ],
    b: Annotated[Path, typer.Argument(help="Embeddings of the same items, same row order, in space B")],
    metric: Annotated[
        list[str] | None,
        typer.Option("--metric", "-m", help="Measure name or id such as 'cka?debiased=false'; repeat for several"),
    ] = None,
    k: Annotated[
        int | None,
        typer.Option("--k", "-k", help="Neighbourhood size, for measures that take k (default: each measure's own)"),
    ] = None,
    perm: Annotated[int, typer.Option("--perm", help="Permutations for a null, p-value and z (0 = none)")] = 0,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the permutations")] = 0,
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
    as_json: Annotated[
        bool, typer.Option("--json", help="Print JSON only (one object, or a list for several)")
    ] = False,
) -> None:
    """Score how aligned two row-paired embedding matrices are.

    Row i of A and row i of B must describe the same item. With --perm, Y's rows are shuffled to
    build a null: the table then adds the null mean ± sd, z, a one-sided p-value and the
    chance-adjusted score (0 = chance, 1 = the measure's best).

    **Examples**

      $ alignkit measure en.npy es.safetensors --metric mutual_knn --k 10 --perm 1000

      $ alignkit measure a.parquet b.parquet -m cka -m 'cka?debiased=false' -m cknna --json
    """
    from alignkit.io import COLUMN_EXTENSIONS, KEYED_EXTENSIONS, load_array

    metrics = metric or ["mutual_knn"]
    try:
        if perm < 0:
            raise ValueError(f"--perm must be >= 0; got {perm}")
        cli_params = dict(_parse_param(p) for p in (param or []))
        prep: dict[str, Any] = {}
        if clip_quantile is not None:
            prep["clip_quantile"] = clip_quantile
        if center:
            prep["center"] = True
        if normalize:
            prep["normalize"] = True
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
        if not as_json:
            _note(f"A: {a} {X.shape[0]}×{X.shape[1]}   B: {b} {Y.shape[0]}×{Y.shape[1]}")
        rows = _score_rows(X, Y, metrics, k, cli_params, prep, perm, seed)
    except USER_ERRORS as exc:
        raise _fail(exc) from None
    for r in rows:
        r.update({"a": str(a), "b": str(b), "n": int(X.shape[0]), "dims": [int(X.shape[1]), int(Y.shape[1])]})
    if as_json:
        _print_json(rows[0] if len(rows) == 1 else rows)
        return
    if k is not None and not any("k" in r["params"] for r in rows):
        _note(f"note: --k {k} was not used: none of the chosen measures takes k")
    _out().print(_score_table(rows))


# ------------------------------------------------------------------------------------------ metrics


def _fmt_range(r: list[float]) -> str:
    def one(x: float) -> str:
        if math.isinf(x):
            return "∞" if x > 0 else "−∞"
        return "π/2" if abs(x - math.pi / 2) < 1e-12 else f"{x:g}"

    lo, hi = r
    return f"{'(' if math.isinf(lo) else '['}{one(lo)}, {one(hi)}{')' if math.isinf(hi) else ']'}"


@app.command("metrics")
def metrics_cmd(
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the registry as JSON (infinite bounds → null)")
    ] = False,
) -> None:
    """List every registered measure with its family, range, direction, symmetry, invariances and cost.

    **Examples**

      $ alignkit metrics

      $ alignkit metrics --json
    """
    from alignkit.metrics import describe

    entries = describe()
    if as_json:
        _print_json(entries)
        return
    codes = {
        "orthogonal": "O",
        "isotropic_scale": "S",
        "translation": "T",
        "invertible_linear": "L",
        "permutation": "P",
    }
    out = _out()
    wide = out.width >= 140  # cost strings are long: a narrow terminal gets them in a second table

    def new_table(title: str | None, caption: str | None = None) -> Table:
        return Table(
            title=title,
            title_justify="left",
            box=box.SIMPLE_HEAD,
            pad_edge=False,
            caption=caption,
            caption_justify="left",
        )

    table = new_table(
        "alignkit measures",
        "better: ↑ higher is better, ↓ lower is better.  sym: same score for (A, B) and (B, A).  "
        "invariant to: O orthogonal maps, S isotropic "
        "scaling, T translation, L invertible linear maps, P permuting features.",
    )
    for col, kw in (
        ("name", {"style": "cyan", "no_wrap": True}),
        ("family", {"no_wrap": True}),
        ("range", {"no_wrap": True}),
        ("better", {"justify": "center", "no_wrap": True}),
        ("sym", {"justify": "center", "no_wrap": True}),
        ("invariant to", {"no_wrap": True}),
    ):
        table.add_column(col, **kw)
    if wide:
        table.add_column("cost")
    costs = new_table(None)
    costs.add_column("name", style="cyan", no_wrap=True)
    costs.add_column("cost of one evaluation")
    for e in entries:
        cells = [
            e["name"],
            e["family"],
            _fmt_range(e["range"]),
            "↑" if e["higher_is_better"] else "↓",
            "yes" if e["symmetric"] else "no",
            " ".join(codes.get(i, i) for i in e["invariances"]) or "—",
        ]
        table.add_row(*cells, *([e["cost"]] if wide else []))
        costs.add_row(e["name"], e["cost"])
    out.print(table)
    if not wide:
        out.print(costs)


# --------------------------------------------------------------------------------------------- demo

REAL, CONTROL = "EN MiniLM vs ES e5", "shuffled control"
DEMO_MEASURES: tuple[tuple[str, str], ...] = (
    ("mutual_knn", "mutual_knn"),
    ("cycle_knn", "cycle_knn"),
    ("cknna", "cknna"),
    ("cka", "cka (debiased)"),
    ("cka?debiased=false", "cka (biased)"),
)


def _short(model: str | None) -> str:
    return (model or "?").split("/")[-1].split(" (")[0]


def _signed(x: float, nd: int = 3) -> str:
    return f"{round(x, nd) + 0.0:+.{nd}f}"  # never "-0.000"


def _demo_reading(real: dict[str, dict[str, Any]], ctrl: dict[str, dict[str, Any]], n: int, k: int, B: int) -> str:
    """A plain-language paragraph whose every number and verdict comes from this run."""
    alpha = 0.05
    floor = 1.0 / (B + 1)
    m, c, cb = real["mutual_knn"], real["cka"], real["cka?debiased=false"]
    sig_real = [lab for mid, lab in DEMO_MEASURES if real[mid]["p_value"] <= alpha]
    sig_ctrl = [lab for mid, lab in DEMO_MEASURES if ctrl[mid]["p_value"] <= alpha]
    ratio = m["score"] / m["null_mean"] if m["null_mean"] > 0 else float("inf")
    parts = [
        f"On {n:,} Bible verses, the English text embedded by MiniLM and its Spanish translation embedded "
        f"by multilingual e5 (two different models, two languages) are compared item by item."
    ]
    if len(sig_real) == len(DEMO_MEASURES):
        parts.append(
            f"Every measure is far above its permutation null: on average {m['score'] * k:.1f} of each verse's "
            f"{k} nearest neighbours are shared, about {ratio:.0f}× the {m['null_mean'] * k:.2f} expected by chance, "
            f"and debiased linear CKA is {c['score']:.2f} against a null of {_signed(c['null_mean'])}; "
            + (
                f"each p-value is {floor:.3f}, the smallest that {B} permutations can give "
                "(no shuffle ever scored as high)."
                if all(real[mid]["p_value"] <= floor * (1 + 1e-9) for mid, _ in DEMO_MEASURES)
                else f"every p-value is at most {max(real[mid]['p_value'] for mid, _ in DEMO_MEASURES):.3f}."
            )
        )
    else:
        missing = [lab for _, lab in DEMO_MEASURES if lab not in sig_real]
        parts.append(
            f"Mutual kNN is {m['score']:.3f} against a chance level of {m['null_mean']:.3f} and debiased CKA is "
            f"{c['score']:.2f}; not every measure clears its null at p ≤ {alpha} ({', '.join(missing)} do not)."
        )
    parts.append(
        f"The agreement is real but partial: the spaces share their coarse geometry (CKA), yet only "
        f"{m['score']:.0%} of fine-grained neighbours (chance-adjusted mutual kNN {m['adjusted']:.2f} on a 0–1 scale)."
    )
    if not sig_ctrl:
        parts.append(
            f"Shuffling the Spanish rows breaks the pairing, and every measure falls back to its null "
            f"(mutual kNN {ctrl['mutual_knn']['score']:.3f}, debiased CKA {_signed(ctrl['cka']['score'])}; "
            f"no p ≤ {alpha})."
        )
    else:
        parts.append(
            f"With the Spanish rows shuffled, {', '.join(sig_ctrl)} still reached p ≤ {alpha}: with "
            f"{len(DEMO_MEASURES)} tests a chance hit happens, so read control p-values as a check of "
            "calibration, not of alignment."
        )
    parts.append(
        f"Biased CKA gives {cb['score']:.2f} on the real pair but also {ctrl['cka?debiased=false']['score']:.3f} on "
        f"the shuffled control — its finite-sample bias, which the debiased estimator removes "
        f"({_signed(ctrl['cka']['score'])}). Scores of different measures are on different scales: compare each with "
        f"its own null, or read the adjusted column (0 = chance, 1 = the best possible score)."
    )
    return " ".join(parts)


def _quick_demo(n_perm: int, seed: int, k: int, as_json: bool) -> None:
    """Measures on the embeddings shipped with alignkit (no model needed): EN MiniLM vs ES e5 verses,
    true pairs and a shuffled control, with permutation p-values and a plain-language reading."""
    import numpy as np

    from alignkit.demo_data import bible_demo_info, load_bible_demo

    try:
        if n_perm < 1:
            raise ValueError(f"--perm must be >= 1; got {n_perm}")
        X, Y, refs = load_bible_demo()
        info = bible_demo_info()
        n = X.shape[0]
        Y_shuffled = Y[np.random.default_rng(seed).permutation(n)]
        t0 = time.perf_counter()
        results: dict[str, list[dict[str, Any]]] = {}
        for pair, Yp in ((REAL, Y), (CONTROL, Y_shuffled)):
            if not as_json:
                _note(f"scoring {pair}: {len(DEMO_MEASURES)} measures × {n_perm} permutations …")
            rows = _score_rows(X, Yp, [m for m, _ in DEMO_MEASURES], k, {}, {}, n_perm, seed)
            for row, (_, lab) in zip(rows, DEMO_MEASURES, strict=True):
                row["measure"] = lab
                row["pair"] = pair
            results[pair] = rows
        elapsed = time.perf_counter() - t0
    except USER_ERRORS as exc:
        raise _fail(exc) from None
    real = {m: r for (m, _), r in zip(DEMO_MEASURES, results[REAL], strict=True)}
    ctrl = {m: r for (m, _), r in zip(DEMO_MEASURES, results[CONTROL], strict=True)}
    reading = _demo_reading(real, ctrl, n, k, n_perm)
    files = info.get("files", {})
    data = {
        "n": n,
        "k": k,
        "n_perm": n_perm,
        "seed": seed,
        "models": {
            "A": files.get("bible_en_minilm.safetensors", {}).get("model"),
            "B": files.get("bible_es_e5.safetensors", {}).get("model"),
        },
        "first_refs": refs[:3],
        "rows": results[REAL] + results[CONTROL],
        "reading": reading,
        "seconds": round(elapsed, 2),
    }
    if as_json:
        _print_json(data)
        return
    out = _out()
    out.print(f"A = {n:,} English Bible verses (World English Bible), embedded by {_short(data['models']['A'])}")
    out.print(f"B = the same verses in Spanish (Reina-Valera 1909), embedded by {_short(data['models']['B'])}")
    out.print(_score_table(results[REAL], title="True pairs (row i = the same verse in A and B)"))
    out.print(_score_table(results[CONTROL], title="Control: rows of B shuffled"))
    out.print()
    out.print(Text(reading), soft_wrap=False)
    _note(f"{n_perm} permutations per measure, seed {seed}, k = {k}; computed in {elapsed:.1f} s")


# ------------------------------------------------------------------------------------------- embed


def _encoder_options(
    pooling: str | None, device: str | None, dtype: str | None, batch_size: int | None, extra: list[str]
) -> dict[str, Any]:
    import torch

    options: dict[str, Any] = dict(_parse_param(p) for p in extra)
    if pooling is not None:
        options["pooling"] = pooling
    if device is not None:
        options["device"] = device
    if batch_size is not None:
        options["batch_size"] = batch_size
    if dtype is not None:
        dtypes = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
        if dtype not in dtypes:
            raise ValueError(f"--dtype must be one of {', '.join(dtypes)}; got {dtype!r}")
        options["dtype"] = dtypes[dtype]
    return options


@app.command()
def embed(
    encoder: Annotated[
        str, typer.Option("--encoder", "-e", help="Encoder id, e.g. offline:minilm-l6 (see --list)")
    ] = "",
    data: Annotated[
        str, typer.Option("--data", "-d", help="Dataset spec, e.g. sample:bible-en, texts.tsv#sentence")
    ] = "",
    layers: Annotated[
        list[str] | None, typer.Option("--layers", "-l", help="Layers to keep (repeat or comma-separate; default all)")
    ] = None,
    pooling: Annotated[str | None, typer.Option("--pooling", help="Pooling, for encoders that offer a choice")] = None,
    batch_size: Annotated[int | None, typer.Option("--batch-size", help="Items per forward pass")] = None,
    device: Annotated[
        str | None, typer.Option("--device", help="cpu, cuda, cuda:1 … (default: cuda if present)")
    ] = None,
    dtype: Annotated[str | None, typer.Option("--dtype", help="float32 (default), float16 or bfloat16")] = None,
    option: Annotated[
        list[str] | None, typer.Option("--option", "-o", help="Encoder option key=value; repeatable")
    ] = None,
    cache: Annotated[
        Path | None, typer.Option("--cache", help="Store folder (default $ALIGNKIT_CACHE or ~/.cache/alignkit)")
    ] = None,
    on_error: Annotated[str, typer.Option("--on-error", help="Unreadable image/audio files: raise or skip")] = "raise",
    list_encoders: Annotated[bool, typer.Option("--list", help="List the encoder ids and families, then exit")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON only")] = False,
) -> None:
    """Embed a dataset with an encoder, every layer (or those asked for), into the resumable cache.

    A second run reuses the cache (no model call); an interrupted run resumes where it stopped.

    **Examples**

      $ alignkit embed --encoder offline:minilm-l6 --data sample:bible-en

      $ alignkit embed -e offline:e5-small -d verses.tsv#es --layers layer_6,final

      $ alignkit embed -e offline:mobilenet-v2 -d images:photos/ -o input_size=112 --on-error skip
    """
    from alignkit.encoders import available_encoders, load_encoder

    if list_encoders:
        rows = available_encoders()
        if as_json:
            _print_json(rows)
            return
        table = Table(box=box.SIMPLE_HEAD, title="encoders")
        table.add_column("id")
        table.add_column("what")
        for key, desc in rows.items():
            table.add_row(key, desc)
        _out().print(table)
        return
    try:
        if not encoder or not data:
            raise ValueError("give both --encoder and --data (or --list to see the encoders)")
        from alignkit.data.spec import dataset_from_spec
        from alignkit.store import EmbeddingStore

        wanted = [name.strip() for item in (layers or []) for name in item.split(",") if name.strip()] or None
        dataset = dataset_from_spec(data, on_error=on_error)
        enc = load_encoder(encoder, **_encoder_options(pooling, device, dtype, batch_size, option or []))
        store = EmbeddingStore(cache)
        t0 = time.perf_counter()
        spaces = store.extract(enc, dataset, wanted, progress=not as_json)
        elapsed = time.perf_counter() - t0
    except USER_ERRORS as exc:
        raise _fail(exc) from None
    run_dir = store.run_dir(enc, dataset)
    result = {
        "encoder": enc.id,
        "dataset": dataset.name,
        "n": len(dataset),
        "pooling": enc.pooling,
        "layers": {name: sp.dim for name, sp in spaces.items()},
        "store": str(run_dir),
        "seconds": round(elapsed, 2),
    }
    if as_json:
        _print_json(result)
        return
    table = Table(
        box=box.SIMPLE_HEAD, title=f"{enc.id} on {dataset.name} ({len(dataset):,} items, pooling {enc.pooling})"
    )
    table.add_column("layer")
    table.add_column("dim", justify="right")
    table.add_column("file")
    for name, sp in spaces.items():
        table.add_row(name, str(sp.dim), str(Path(getattr(sp.array, "filename", "") or "").name))
    _out().print(table)
    _note(f"cached in {run_dir} ({elapsed:.1f} s); load with alignkit.store.EmbeddingStore().extract(...)")


# -------------------------------------------------------------------------------------------- demo


def _short_layer_names(names: list[str]) -> list[str]:
    """'layer_3' -> '3', 'block_12' -> '12', 'final' -> 'fin': compact column heads."""
    out = []
    for name in names:
        _, sep, tail = name.rpartition("_")
        out.append(tail if sep and tail.isdigit() else ("fin" if name == "final" else name[:6]))
    return out


def _atlas_table(res: Any, title: str) -> Table:
    """Score matrix with markers: ** p_fwer ≤ 0.01, * p_fwer ≤ 0.05 (max-statistic calibrated)."""
    table = Table(box=box.SIMPLE_HEAD, title=title, title_justify="left", pad_edge=False, collapse_padding=True)
    table.add_column("A\\B", style="bold", no_wrap=True)
    for name in _short_layer_names(res.names_b):
        table.add_column(name, justify="right", no_wrap=True)
    pf = res.p_values_fwer
    best_a, best_b, _ = res.best
    for i, (a, label) in enumerate(zip(res.names_a, _short_layer_names(res.names_a), strict=True)):
        cells = []
        for j, b in enumerate(res.names_b):
            mark = "" if pf is None else ("**" if pf[i, j] <= 0.01 else "*" if pf[i, j] <= 0.05 else "")
            text = f"{res.scores[i, j]:.3f}".lstrip("0") + mark
            cells.append(f"[reverse]{text}[/reverse]" if (a, b) == (best_a, best_b) else text)
        table.add_row(label, *cells)
    return table


def _atlas_line(name: str, res: Any) -> Text:
    s = res.summary()
    text = f"{name}: best pair A {s['best_a']} × B {s['best_b']} = {s['best_score']:.3f}"
    if "best_p_calibrated" in s:
        text += (
            f"; max over {res.scores.size} pairs under the null: mean {s['max_null_mean']:.3f}, "
            f"calibrated p = {_fmt_p(s['best_p_calibrated'])}, chance-adjusted {s['best_adjusted']:.3f}"
        )
    return Text(text)


from alignkit import cli_pipeline as _cli_pipeline  # noqa: E402,F401  (registers atlas, fit, evaluate, run, report)


@app.command()
def demo(
    output: Annotated[Path, typer.Option("--output", help="Parent folder of the run's results")] = Path("results"),
    restart: Annotated[bool, typer.Option("--restart", help="Redo every job (embeddings stay cached)")] = False,
    executor: Annotated[str, typer.Option("--executor", help="local or ray")] = "local",
    show_config: Annotated[bool, typer.Option("--show-config", help="Print the bundled config and exit")] = False,
    quick: Annotated[
        bool, typer.Option("--quick", help="Only measure the embeddings shipped with alignkit (no models)")
    ] = False,
    n_perm: Annotated[int, typer.Option("--perm", help="--quick: permutations of the null")] = 100,
    seed: Annotated[int, typer.Option("--seed", help="--quick: seed of the permutations")] = 0,
    k: Annotated[int, typer.Option("--k", "-k", help="--quick: neighbourhood size")] = 10,
    as_json: Annotated[bool, typer.Option("--json", help="--quick: print JSON only")] = False,
) -> None:
    """The bundled demo run, offline: real models, real data, atlases, aligners, evaluation, report.

    Runs the config `alignkit demo --show-config` prints: 2,000 Bible verses (English → MiniLM-L6,
    Spanish → multilingual-e5-small) and 1,000 Fashion-MNIST images (→ MobileNetV2) with captions of
    their classes (→ MiniLM-L6); every layer embedded into the cache; layer × layer atlases with
    max-statistic nulls; Procrustes, CCA and a trained linear head at two data sizes × 3 seeds;
    retrieval and zero-shot evaluation; results/demo/report.html. A few minutes on 2 CPU cores the
    first time. `--quick` only measures the embeddings shipped in the package (seconds, no model).

    **Examples**

      $ alignkit demo

      $ alignkit demo --show-config > my-run.yaml

      $ alignkit demo --quick
    """
    if quick:
        return _quick_demo(n_perm, seed, k, as_json)
    from alignkit.cli_pipeline import execute_run
    from alignkit.pipeline import bundled_config

    path = bundled_config("demo")
    if show_config:
        sys.stdout.write(path.read_text(encoding="utf-8"))
        return
    try:
        execute_run(path, executor=executor, resume=not restart, output=output)
    except USER_ERRORS as exc:
        raise _fail(exc) from None


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

      $ alignkit measure a.npy b.npy --metric mutual_knn --k 10 --perm 1000
    """


if __name__ == "__main__":  # pragma: no cover
    app()
