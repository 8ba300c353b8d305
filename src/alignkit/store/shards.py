"""Shard writing: encode the missing layers of each shard in reproducible batches, write one file per shard.

Inside a shard, batches are formed after a stable sort by ``encoder.length_key``, so a resumed run forms
exactly the batches an uninterrupted one would. Each shard file is written atomically, then the manifest;
a crash between the two leaves an orphan that the next run adopts (:mod:`alignkit.store.orphans`).
"""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from alignkit._progress import progress as progress_bar
from alignkit.data.base import Dataset
from alignkit.encoders.base import Encoder, EncoderOutputError
from alignkit.io import atomic_write_bytes
from alignkit.store.layout import shard_file_name
from alignkit.store.manifest import STORE_FORMAT, Session, Shard, ShardFile, library_versions, now

if TYPE_CHECKING:
    from alignkit.store.run import Run


def encode_missing(
    run: Run, encoder: Encoder, dataset: Dataset, layers: list[str], batch_size: int | None, progress: bool
) -> None:
    """Encode and write, shard by shard, the ``layers`` that no file of the shard holds yet."""
    m = run.manifest
    work = [
        (i, shard, missing) for i, shard in enumerate(m.shards) if (missing := [x for x in layers if not shard.has(x)])
    ]
    if not work:
        return
    bs = batch_size or m.batch_size or encoder.default_batch_size
    run.session = Session(
        started=now(),
        versions=library_versions(),
        device=str(encoder.device),
        dtype=str(encoder.dtype).replace("torch.", ""),
        batch_size=bs,
    )
    m.sessions.append(run.session)
    bar = None
    if progress:
        total = sum(shard.rows for _, shard, _ in work)
        bar = progress_bar(total=total, desc=f"embedding {dataset.name} with {encoder.id}", unit="item", leave=True)
    try:
        for i, shard, missing in work:
            arrays = encode_shard(run, encoder, dataset, shard, missing, bs, bar)
            write_shard(run, i, shard, missing, arrays, bs)
    finally:
        if bar is not None:
            bar.close()


def encode_shard(
    run: Run, encoder: Encoder, dataset: Dataset, shard: Shard, layers: list[str], bs: int, bar: Any = None
) -> dict[str, np.ndarray]:
    """The shard's rows of ``layers`` as float32 arrays (the encoder's output contract is checked by the encoder)."""
    start, stop = shard.start, shard.stop
    items = dataset.items(start, stop)
    if len(items) != stop - start:
        raise RuntimeError(f"dataset {dataset.name!r} returned {len(items)} items for rows {start}:{stop}")
    order = list(range(len(items)))
    if encoder.length_key is not None:
        key = encoder.length_key
        order.sort(key=lambda j: key(items[j]))  # stable: ties keep dataset order
    out: dict[str, np.ndarray] = {}
    for b in range(0, len(order), bs):
        rows = order[b : b + bs]
        try:
            with torch.no_grad():
                result = encoder.encode([items[j] for j in rows], layers=layers)
        except EncoderOutputError as exc:
            if exc.rows is None:
                raise
            bad = [run.ids[start + rows[r]] for r in exc.rows[:5]]
            raise EncoderOutputError(
                f"encoder {encoder.id!r}: layer {exc.layer!r} holds NaN/Inf for items {bad} "
                "(half precision overflow? try dtype=torch.float32)",
                encoder_id=encoder.id,
                layer=exc.layer,
            ) from exc
        for layer in layers:
            arr = _to_float32(result[layer])
            recorded = run.manifest.dims.get(layer)
            if recorded is not None and arr.shape[1] != recorded:
                raise ValueError(
                    f"encoder {encoder.id!r}: layer {layer!r} is {arr.shape[1]}-d, but this run recorded {recorded}"
                )
            if layer not in out:
                out[layer] = np.empty((stop - start, arr.shape[1]), dtype=np.float32)
            out[layer][rows] = arr
        if bar is not None:
            bar.update(len(rows))
    return out


def write_shard(run: Run, index: int, shard: Shard, layers: list[str], arrays: dict[str, np.ndarray], bs: int) -> None:
    """Write the shard file atomically, then record it in the manifest (saved)."""
    from safetensors.numpy import save

    m = run.manifest
    meta = {
        "format": STORE_FORMAT,
        "encoder_fingerprint": m.encoder_fingerprint,
        "dataset_fingerprint": m.dataset_fingerprint,
        "start": str(shard.start),
        "stop": str(shard.stop),
        "layers": json.dumps(layers),
        "batch_size": str(bs),
        "shard_size": str(m.shard_size),
    }
    data = save({layer: arrays[layer] for layer in layers}, metadata=meta)
    name = shard_file_name(index, layers)
    atomic_write_bytes(run.path / name, data)
    shard.files = [f for f in shard.files if f.file != name]
    shard.files.append(ShardFile(name, list(layers), hashlib.sha256(data).hexdigest(), len(data)))
    for layer in layers:
        m.dims.setdefault(layer, int(arrays[layer].shape[1]))
    if run.session is not None:
        run.session.shards_written += 1
    run.save()


def _to_float32(t: Any) -> np.ndarray:
    if isinstance(t, torch.Tensor):
        return t.detach().to("cpu", torch.float32).numpy()
    return np.asarray(t, dtype=np.float32)
