"""Adoption of orphan shard files: complete files the manifest does not list (a crash between the two writes)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from alignkit.store.layout import SHARD_GLOB, SHARD_RE, warn
from alignkit.store.verify import inspect_shard

if TYPE_CHECKING:
    from alignkit.encoders.base import Encoder
    from alignkit.store.run import Run


def adopt_orphans(run: Run, encoder: Encoder | None) -> bool:
    """Take in every unlisted shard file whose name, header, rows and layers check out; delete (with a warning)
    the others. True when the manifest changed (the caller saves it)."""
    m = run.manifest
    known = m.shard_files()
    changed = False
    for f in sorted(run.path.glob(SHARD_GLOB)):
        if f.name in known:
            continue
        match = SHARD_RE.match(f.name)
        index = int(match.group(1)) if match else -1
        found = None
        if match is None:
            problem: str | None = "unexpected file name"
        elif index >= len(m.shards):
            problem = f"shard index {index} beyond the {len(m.shards)} shards of this run"
        else:
            found = inspect_shard(f, m.shards[index], m, None, encoder)
            problem = found.problem
        if found is None or found.entry is None:
            warn(f"store: shard file {f} cannot be used ({problem}); deleting it, its rows will be re-made")
            f.unlink(missing_ok=True)
            continue
        m.shards[index].files.append(found.entry)
        for layer, d in found.dims.items():
            m.dims.setdefault(layer, d)
        changed = True
    return changed


def grid_of_existing_shards(path: Path, shard_size: int, batch_size: int | None) -> tuple[int, int | None]:
    """(shard_size, batch_size) recorded in a readable shard file of the folder, else the given ones: a manifest
    rebuilt over existing shards keeps their grid and batch size, so they stay usable."""
    from safetensors import safe_open

    for f in sorted(path.glob(SHARD_GLOB)):
        try:
            with safe_open(str(f), framework="numpy") as sf:
                meta = sf.metadata() or {}
            return int(meta["shard_size"]), int(meta["batch_size"])
        except Exception:  # unreadable: adoption reports it
            continue
    return shard_size, batch_size
