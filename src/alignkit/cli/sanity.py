"""``alignkit sanity``: which measure can be trusted, tested on a zoo of networks trained from different seeds."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from alignkit.cli._console import USER_ERRORS, fail, note, out_console


def sanity_cmd(
    out: Annotated[Path, typer.Option("--out", "-o", help="Results folder (tables, run.json, report.html)")] = Path(
        "results/sanity"
    ),
    arch: Annotated[
        str, typer.Option(help="Zoo architecture: mlp (3 hidden layers) or cnn (6 conv layers, BN)")
    ] = "mlp",
    models: Annotated[int, typer.Option("--models", "-n", help="Networks (seeds 0..n-1), at least 3")] = 5,
    data: Annotated[
        Path | None,
        typer.Option(help="Fashion-MNIST folder (the 4 IDX files); default: $ALIGNKIT_FASHION_MNIST"),
    ] = None,
    zoo: Annotated[
        Path | None, typer.Option(help="Where trained networks are kept and reused (default OUT/zoo)")
    ] = None,
    measure: Annotated[
        list[str] | None, typer.Option("--measure", "-m", help="Measure id (repeatable); default: every registered one")
    ] = None,
    items: Annotated[int, typer.Option(help="Test images the tests run on")] = 2000,
    quick: Annotated[bool, typer.Option(help="3 MLPs, 8 measures, 1,000 images, 3 capacity maps")] = False,
    seed: Annotated[int, typer.Option(help="Seed of the tests' sampling and noise")] = 0,
) -> None:
    """Run the measure sanity benchmark and write its report.

    Trains (or reuses) networks of one architecture from different seeds on Fashion-MNIST, then asks of every
    measure: does it identify the corresponding layer of another seed (Kornblith et al. 2019)? Does it order model
    pairs like their outputs (ReSi)? Does it fall as input noise grows? And does a flexible map find alignment where
    an untrained control has none ("The Non-Linear Representation Dilemma")?

    **Example**

      $ alignkit sanity --quick --data ~/data/fashion-mnist --out results/sanity-quick
    """
    from alignkit.pipeline.sanity import run_sanity

    try:
        folder = run_sanity(
            out, arch=arch, n_models=models, data_root=data, zoo_root=zoo, measures=measure, n_items=items,
            quick=quick, seed=seed,
        )  # fmt: skip
    except USER_ERRORS as exc:
        raise fail(exc) from exc
    import pandas as pd

    acc = pd.read_parquet(folder / "sanity_layers.parquet")
    ran = acc[acc["status"] == "ok"].sort_values("accuracy", ascending=False, kind="stable")
    console = out_console()
    console.print(f"[bold]layer identification accuracy[/bold] (chance {float(ran['chance'].iloc[0]):.2f})")
    for r in ran.itertuples():
        console.print(f"  {r.accuracy:6.3f}  {r.measure}")
    note(f"wrote {folder / 'report.html'} and the tables in {folder}")
