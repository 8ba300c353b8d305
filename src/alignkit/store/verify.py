"""Checks of the files of a run against the manifest: consolidated layers, listed shards, shard headers."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from alignkit.io import sha256_file
from alignkit.store.layout import warn
from alignkit.store.manifest import LayerFile, Manifest, Shard, ShardFile

if TYPE_CHECKING:
    from alignkit.encoders.base import Encoder
    from alignkit.store.run import Run

#: consolidated files already verified in this process: (path, size, mtime_ns, inode, sha256)
_VERIFIED: set[tuple[str, int, int, int, str]] = set()


def remember_verified(f: Path, sha256: str) -> None:
    """Record ``f`` (as it is now on disk) as matching ``sha256``, so the next read does not hash it again."""
    st = f.stat()
    _VERIFIED.add((str(f), st.st_size, st.st_mtime_ns, st.st_ino, sha256))


def verify_file(f: Path, entry: LayerFile | ShardFile) -> str | None:
    """None when ``f`` matches the recorded size and sha256 (hashed once per process per file state), else
    what is wrong. Reads only."""
    try:
        st = f.stat()
    except FileNotFoundError:
        return "missing"
    if st.st_size != entry.size:
        return f"{st.st_size} bytes, recorded {entry.size} (truncated or replaced)"
    key = (str(f), st.st_size, st.st_mtime_ns, st.st_ino, entry.sha256)
    if key in _VERIFIED:
        return None
    if sha256_file(f) != entry.sha256:
        return "corrupt (sha256 mismatch)"
    _VERIFIED.add(key)
    return None


class Inspection(NamedTuple):
    """What :func:`inspect_shard` found: the file's entry (full inspections only), its layer widths, or a problem."""

    entry: ShardFile | None
    dims: dict[str, int]
    problem: str | None


def _bad(problem: str) -> Inspection:
    return Inspection(None, {}, problem)


def inspect_shard(
    f: Path,
    shard: Shard,
    manifest: Manifest,
    layers: list[str] | None = None,
    encoder: Encoder | None = None,
) -> Inspection:
    """Check a shard file's header: same run, same rows, the layers it should hold, float32 ``(rows, d)``.

    With ``layers`` (a file the manifest lists, its sha256 already checked) the header is enough; without
    (an orphan) the whole file is loaded and hashed and the entry to record is returned.
    """
    from safetensors import safe_open

    try:
        with safe_open(str(f), framework="numpy") as sf:
            meta = sf.metadata() or {}
            keys = set(sf.keys())
            declared = json.loads(meta.get("layers", "[]"))
            if meta.get("encoder_fingerprint") != manifest.encoder_fingerprint or (
                meta.get("dataset_fingerprint") != manifest.dataset_fingerprint
            ):
                return _bad("made for another encoder or dataset")
            if int(meta.get("start", -1)) != shard.start or int(meta.get("stop", -1)) != shard.stop:
                return _bad(f"holds rows {meta.get('start')}:{meta.get('stop')}, expected {shard.start}:{shard.stop}")
            if set(declared) != keys or not keys:
                return _bad(f"declares layers {declared} but holds {sorted(keys)}")
            if layers is not None and set(layers) != keys:
                return _bad(f"holds layers {sorted(keys)}, the manifest says {sorted(layers)}")
            dims = {}
            for k in sorted(keys):
                sl = sf.get_slice(k)
                shape, dtype = list(sl.get_shape()), sl.get_dtype()
                if len(shape) != 2 or shape[0] != shard.rows or dtype != "F32":
                    return _bad(f"layer {k!r} has shape {shape} {dtype}, expected ({shard.rows}, d) F32")
                expected_d = manifest.dims.get(k) or (encoder.dims.get(k) if encoder is not None else None)
                if expected_d is not None and shape[1] != expected_d:
                    return _bad(f"layer {k!r} is {shape[1]}-d, expected {expected_d}")
                dims[k] = shape[1]
    except Exception as exc:  # unreadable header, bad JSON metadata, ...
        return _bad(f"unreadable: {type(exc).__name__}: {exc}")
    if layers is not None:
        return Inspection(None, dims, None)
    data = f.read_bytes()  # a full read validates the byte layout; then hash it
    try:
        from safetensors.numpy import load

        load(data)
    except Exception as exc:
        return _bad(f"unreadable: {type(exc).__name__}: {exc}")
    entry = ShardFile(
        file=f.name,
        layers=sorted(keys, key=declared.index),
        sha256=hashlib.sha256(data).hexdigest(),
        size=len(data),
    )
    return Inspection(entry, dims, None)


def verify_shards(run: Run) -> None:
    """Drop (with one warning naming them) shard files that are missing, corrupt or not what the manifest says."""
    bad: list[str] = []
    for shard in run.manifest.shards:
        keep = []
        for entry in shard.files:
            f = run.path / entry.file
            problem = verify_file(f, entry)
            if problem is None:
                problem = inspect_shard(f, shard, run.manifest, entry.layers).problem
            if problem is None:
                keep.append(entry)
                continue
            bad.append(f"{f} is {problem} (rows {shard.start}:{shard.stop})")
            f.unlink(missing_ok=True)
        shard.files = keep
    if bad:
        shown = "; ".join(bad[:5]) + (f"; and {len(bad) - 5} more" if len(bad) > 5 else "")
        warn(f"store: re-making {len(bad)} shard file(s): {shown}")
        run.save()
