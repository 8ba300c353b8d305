"""``alignkit fit``: fit an aligner on paired rows and save it."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from alignkit.cli._console import USER_ERRORS, fail, finite, out_console, parse_params, print_json


def fit_cmd(
    x: Annotated[Path, typer.Argument(help="Training rows of space A (.npy .npz .safetensors .parquet .csv)")],
    y: Annotated[Path, typer.Argument(help="The paired rows of space B, same order")],
    aligner: Annotated[str, typer.Option("--aligner", "-a", help="procrustes, vecmap, cca, ridge, asif or head")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder to save the fitted aligner to")],
    param: Annotated[
        list[str] | None,
        typer.Option(
            "--param",
            "-p",
            help="Hyper-parameter key=value, e.g. center=true; a value starting with { or [ is JSON "
            "(loss_kwargs='{\"init_temperature\": 0.1}'); repeatable",
        ),
    ] = None,
    key: Annotated[str | None, typer.Option("--key", help="Array name inside .npz/.safetensors files")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON only")] = False,
) -> None:
    """Fit an aligner on paired rows and save it (safetensors + JSON, no pickle).

    **Examples**

      $ alignkit fit en.npy es.npy --aligner procrustes -p center=true -p normalize=true --out aligners/en-es

      $ alignkit fit img.npy txt.npy --aligner head -p head=linear -p loss=infonce -p epochs=20 --out aligners/img
    """
    from alignkit.align import make_aligner
    from alignkit.io import load_array

    try:
        params = parse_params(param)  # a key given twice is an error; {...} / [...] values are JSON
        model = make_aligner(aligner, **params)  # unknown aligner or parameter: a clear error before loading data
        X, Y = load_array(x, key=key), load_array(y, key=key)
        t0 = time.perf_counter()
        model.fit(X, Y)
        seconds = time.perf_counter() - t0
        model.save(out)
        score = float(model.score(X, Y))
    except USER_ERRORS as exc:
        raise fail(exc) from None
    info = {"aligner": type(model).__name__, "n_pairs": int(X.shape[0]), "fit_seconds": seconds,
            "train_score": score, "saved": str(out)}  # fmt: skip
    if as_json:
        print_json(finite(info))
        return
    out_console().print(
        f"{info['aligner']} fitted on {info['n_pairs']:,} pairs in {seconds:.2f} s; "
        f"training score {score:.4f}; saved to {out}"
    )
