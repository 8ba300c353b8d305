"""``alignkit evaluate``: retrieval or zero-shot classification with a saved aligner."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich import box
from rich.table import Table

from alignkit.cli._console import USER_ERRORS, fail, finite, out_console, print_json


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
    import numpy as np

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
        raise fail(exc) from None
    if as_json:
        print_json(finite(rows))
        return
    table = Table(box=box.SIMPLE_HEAD, title=f"{task} with {type(model).__name__}", title_justify="left")
    cols = [c for c in ("direction", "scoring", "class", "metric", "value") if any(c in r for r in rows)]
    for c in cols:
        table.add_column(c, justify="right" if c == "value" else "left")
    for r in rows:
        table.add_row(*[f"{r[c]:.4f}" if c == "value" else str(r.get(c, "")) for c in cols])
    out_console().print(table)
