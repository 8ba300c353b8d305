"""Consolidation: one ``(n, d)`` float32 ``.npy`` file per layer, copied from the shards one at a time."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import numpy as np

from alignkit.io import fsync_dir, sha256_file, temp_path
from alignkit.store.layout import layer_file_name, warn
from alignkit.store.manifest import LayerFile, now
from alignkit.store.verify import remember_verified, verify_file

if TYPE_CHECKING:
    from alignkit.store.run import Run


def consolidated_ok(run: Run, layer: str) -> bool:
    """Whether the layer's consolidated file exists and matches its recorded size and sha256; a bad one is
    deleted (with a warning) and dropped from the manifest."""
    entry = run.manifest.layers.get(layer)
    if entry is None:
        return False
    f = run.path / entry.file
    problem = verify_file(f, entry)
    if problem is None:
        return True
    warn(f"store: consolidated file {f} is {problem}; re-making it from the shards")
    del run.manifest.layers[layer]
    f.unlink(missing_ok=True)
    run.save()
    return False


def consolidate(run: Run, layer: str) -> None:
    """Copy the layer's rows from every shard into a pre-allocated memory-mapped temporary, fsync it, move it
    into place, then record it in the manifest (saved). Holds one shard of one layer in memory."""
    from safetensors import safe_open

    m = run.manifest
    n, d = m.n, int(m.dims[layer])
    final = run.path / layer_file_name(layer)
    tmp = temp_path(final)
    try:
        mm = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(n, d))
        for shard in m.shards:
            with safe_open(str(run.path / shard.file_for(layer).file), framework="numpy") as sf:
                mm[shard.start : shard.stop] = sf.get_tensor(layer)
        mm.flush()
        del mm
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        sha = sha256_file(tmp)
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(run.path)
    remember_verified(final, sha)
    check = _layer_check(final, layer, run)
    m.layers[layer] = LayerFile(
        file=final.name, sha256=sha, size=final.stat().st_size, shape=[n, d], dtype="float32", created=now(),
        check=check,
    )  # fmt: skip
    run.save()


def _layer_check(path: os.PathLike[str], layer: str, run: Run) -> dict[str, Any]:
    """The degenerate-space check of a consolidated layer (once per layer); a warning when it is degenerate,
    so a dead layer is flagged at extraction, long before an atlas reads it."""
    from alignkit.degenerate import inspect_space

    check = inspect_space(np.load(path, mmap_mode="r"), layer)
    if check.degenerate or check.collapsed:
        what = check.reason or "rank ≤ 1 after centring (collapsed)"
        warn(f"store: layer {layer!r} of {run.manifest.encoder.get('id')} is degenerate: {what}")
    out = check.as_dict()
    out.pop("name")
    return out
