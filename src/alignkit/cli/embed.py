"""``alignkit embed``: embed a dataset with an encoder, layer by layer, into the resumable cache."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich import box
from rich.table import Table

from alignkit.cli._console import USER_ERRORS, fail, note, out_console, parse_params, print_json


def _encoder_options(
    pooling: str | None, device: str | None, dtype: str | None, batch_size: int | None, extra: list[str]
) -> dict[str, Any]:
    import torch

    given = {"pooling": pooling, "device": device, "batch_size": batch_size, "dtype": dtype}
    options: dict[str, Any] = parse_params(extra, {key: f"--{key.replace('_', '-')} {v}" for key, v in given.items()
                                                   if v is not None})  # fmt: skip
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


def _list_encoders(as_json: bool) -> None:
    from alignkit.encoders import available_encoders

    rows = available_encoders()
    if as_json:
        print_json(rows)
        return
    table = Table(box=box.SIMPLE_HEAD, title="encoders")
    table.add_column("id")
    table.add_column("what")
    for key, desc in rows.items():
        table.add_row(key, desc)
    out_console().print(table)


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
    if list_encoders:
        return _list_encoders(as_json)
    try:
        if not encoder or not data:
            raise ValueError("give both --encoder and --data (or --list to see the encoders)")
        from alignkit.data.spec import dataset_from_spec
        from alignkit.encoders import load_encoder
        from alignkit.store import EmbeddingStore

        wanted = [name.strip() for item in (layers or []) for name in item.split(",") if name.strip()] or None
        dataset = dataset_from_spec(data, on_error=on_error)
        enc = load_encoder(encoder, **_encoder_options(pooling, device, dtype, batch_size, option or []))
        store = EmbeddingStore(cache)
        t0 = time.perf_counter()
        spaces = store.extract(enc, dataset, wanted, progress=not as_json)
        elapsed = time.perf_counter() - t0
    except USER_ERRORS as exc:
        raise fail(exc) from None
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
        print_json(result)
        return
    table = Table(
        box=box.SIMPLE_HEAD, title=f"{enc.id} on {dataset.name} ({len(dataset):,} items, pooling {enc.pooling})"
    )
    table.add_column("layer")
    table.add_column("dim", justify="right")
    table.add_column("file")
    for name, sp in spaces.items():
        table.add_row(name, str(sp.dim), str(Path(getattr(sp.array, "filename", "") or "").name))
    out_console().print(table)
    note(f"cached in {run_dir} ({elapsed:.1f} s); load with alignkit.store.EmbeddingStore().extract(...)")
