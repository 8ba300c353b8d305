"""A crash-safe on-disk embedding cache: extract once, resume after a crash, read memory-mapped.

Layout (one run per encoder × dataset)::

    <root>/<encoder-fingerprint>-<dataset-fingerprint>/
        manifest.json                      shards, consolidated layers, sha256 of every file, provenance
        ids.json                           the dataset's item ids, in row order
        shard-000000-<layers-tag>.safetensors   rows [0, shard_size) of some layers (float32)
        ...
        layer-<safe-name>.npy              one consolidated (n, d) float32 matrix per layer

The cache key is (encoder identity + pooling + dtype, dataset content fingerprint); each layer is a
file of its own. Items are split into fixed shards of ``shard_size`` rows in dataset order; inside a
shard, batches are formed after a stable sort by ``encoder.length_key``, so a resumed run forms exactly
the batches an uninterrupted one would and its embeddings are identical. Every file is written to a
temporary name, fsynced and moved into place with ``os.replace`` (the manifest too), so a crash leaves
either the old or the complete new file. On resume, shards are verified against their recorded sha256
(and their declared rows and layers); missing, corrupt or mismatched ones are re-made with a warning
naming the file. A shard file that reached the disk but not the manifest (a crash between the two
writes) is adopted after its header, rows and layers check out. Consolidated files are checked (size +
sha256, remembered per process) before every read and re-made from the shards when they do not match.

Memory: extraction holds one shard of the requested layers (``shard_size × Σ d`` float32, twice
while it is serialised); consolidation copies shard by shard into a pre-allocated
``np.lib.format.open_memmap`` file, one layer at a time. No pickle anywhere.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import warnings
from collections.abc import Iterator, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch

from alignkit._progress import progress as progress_bar
from alignkit.data.base import Dataset
from alignkit.encoders.base import Encoder
from alignkit.io import atomic_write_bytes, fsync_dir, sha256_file, temp_path
from alignkit.space import Space

STORE_FORMAT = "alignkit-store/1"
MANIFEST = "manifest.json"
IDS_FILE = "ids.json"
_SHARD_RE = re.compile(r"^shard-(\d{6})-([0-9a-f]{8})\.safetensors$")

#: consolidated files already verified in this process: (path, size, mtime_ns, inode, sha256)
_VERIFIED: set[tuple[str, int, int, int, str]] = set()


class StoreWarning(UserWarning):
    """A cache file was missing, corrupt or mismatched and is being re-made."""


def default_root() -> Path:
    """``$ALIGNKIT_CACHE`` or ``~/.cache/alignkit``."""
    env = os.environ.get("ALIGNKIT_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "alignkit"


# ------------------------------------------------------------------------------------ file helpers


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def safe_layer_name(layer: str) -> str:
    """A file-name-safe version of a layer name (with a short hash when characters had to be replaced)."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", layer)
    if safe != layer or not safe:
        safe = f"{safe}-{hashlib.sha256(layer.encode()).hexdigest()[:8]}"
    return safe


def _layers_tag(layers: list[str]) -> str:
    return hashlib.sha256("\n".join(sorted(layers)).encode()).hexdigest()[:8]


def library_versions() -> dict[str, str]:
    """Versions of the libraries that shape embeddings (those installed)."""
    from importlib import metadata

    out = {}
    for dist in ("alignkit", "torch", "transformers", "sentence-transformers", "numpy", "safetensors"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[dist] = metadata.version(dist)
    return out


@contextlib.contextmanager
def _locked(run: Path) -> Iterator[None]:
    """An exclusive advisory lock on the run (POSIX); released by the OS if the process dies."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: no lock, one writer per run is the user's job
        yield
        return
    fd = os.open(run / ".lock", os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


# ------------------------------------------------------------------------------------------ store


class EmbeddingStore:
    """On-disk cache of pooled embeddings, keyed by (encoder identity, dataset fingerprint, pooling, layer).

    >>> store = EmbeddingStore()                                   # $ALIGNKIT_CACHE or ~/.cache/alignkit
    >>> spaces = store.extract(encoder, dataset)                   # {layer: Space}, memory-mapped
    >>> store.extract(encoder, dataset)                            # second time: no encoder call
    """

    def __init__(self, root: str | os.PathLike[str] | None = None) -> None:
        self.root = Path(root).expanduser() if root is not None else default_root()

    def __repr__(self) -> str:
        return f"EmbeddingStore(root={str(self.root)!r})"

    def run_dir(self, encoder: Encoder, dataset: Dataset) -> Path:
        return self.root / f"{encoder.fingerprint()}-{dataset.fingerprint()}"

    # ------------------------------------------------------------------ public API
    def extract(
        self,
        encoder: Encoder,
        dataset: Dataset,
        layers: list[str] | tuple[str, ...] | None = None,
        *,
        batch_size: int | None = None,
        shard_size: int = 1024,
        progress: bool = True,
    ) -> dict[str, Space]:
        """Embed ``dataset`` with ``encoder`` for ``layers`` (None = all), reusing whatever is cached.

        Only missing work reaches the encoder: a repeated call makes no encoder call at all. An
        interrupted call resumes at the first unfinished shard. ``batch_size`` defaults to the one
        the run was started with (else ``encoder.default_batch_size``); ``shard_size`` applies to new
        runs only. Returns ``{layer: Space}`` with read-only memory-mapped arrays.
        """
        wanted = encoder.check_layers(None if layers is None else list(layers))
        _check_inputs(encoder, dataset)
        if not isinstance(shard_size, int) or shard_size < 1:
            raise ValueError(f"shard_size must be a positive integer; got {shard_size!r}")
        if batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1):
            raise ValueError(f"batch_size must be a positive integer; got {batch_size!r}")
        run_path = self.run_dir(encoder, dataset)
        run_path.mkdir(parents=True, exist_ok=True)
        with _locked(run_path):
            run = _Run.open(run_path, encoder, dataset, shard_size, batch_size)
            todo = [layer for layer in wanted if not run.consolidated_ok(layer)]
            if todo:
                run.verify_shards()
                run.encode_missing(encoder, dataset, todo, batch_size, progress)
                for layer in todo:
                    run.consolidate(layer)
            return {layer: run.space(layer, encoder, dataset) for layer in wanted}

    def get(self, encoder: Encoder, dataset: Dataset, layer: str) -> Space:
        """The cached Space of one layer (verified; re-made from the shards, or re-extracted, if corrupt).

        Raises KeyError when that layer was never extracted for this encoder and dataset.
        """
        encoder.check_layers([layer])
        mpath = self.run_dir(encoder, dataset) / MANIFEST
        manifest = _read_manifest(mpath)
        known = mpath.exists() if manifest is None else layer in manifest.get("layers", {})
        if not known:
            raise KeyError(
                f"layer {layer!r} of {encoder.id!r} on dataset {dataset.name!r} is not in the store at {self.root}; "
                "call extract() first"
            )
        return self.extract(encoder, dataset, [layer], progress=False)[layer]

    def has(self, encoder: Encoder, dataset: Dataset, layer: str | None = None) -> bool:
        """Whether the layer (None: every layer of the encoder) is consolidated on disk (cheap check: size only)."""
        run = self.run_dir(encoder, dataset)
        manifest = _read_manifest(run / MANIFEST)
        if manifest is None:
            return False
        layers = encoder.layer_names if layer is None else [layer]
        for name in layers:
            entry = manifest.get("layers", {}).get(name)
            if entry is None:
                return False
            p = run / entry["file"]
            if not p.is_file() or p.stat().st_size != entry["size"]:
                return False
        return True

    def runs(self) -> list[dict[str, Any]]:
        """Every cached run: folder, encoder, dataset, rows, consolidated layers, shards done, dates, bytes."""
        out = []
        if not self.root.is_dir():
            return out
        for d in sorted(p for p in self.root.iterdir() if p.is_dir()):
            mpath = d / MANIFEST
            if not mpath.exists():
                continue
            info: dict[str, Any] = {"run": d.name, "path": str(d)}
            manifest = _read_manifest(mpath)
            if manifest is None:
                info["error"] = "manifest unreadable (rebuilt on the next extract)"
            else:
                info.update(
                    encoder=manifest["encoder"].get("id"),
                    pooling=manifest.get("pooling"),
                    dataset=manifest["dataset"].get("name"),
                    n=manifest.get("n"),
                    layers=sorted(manifest.get("layers", {})),
                    shards_done=sum(1 for s in manifest.get("shards", []) if s.get("files")),
                    n_shards=len(manifest.get("shards", [])),
                    created=manifest.get("created"),
                    updated=manifest.get("updated"),
                )
            info["bytes"] = sum(f.stat().st_size for f in d.iterdir() if f.is_file())
            out.append(info)
        return out

    def remove(self, encoder: Encoder | None = None, dataset: Dataset | None = None, *, run: str | None = None) -> bool:
        """Delete one run (by encoder + dataset, or by its folder name); True when something was removed."""
        if run is None:
            if encoder is None or dataset is None:
                raise ValueError("remove() needs an encoder and a dataset, or run=<folder name>")
            path = self.run_dir(encoder, dataset)
        else:
            if "/" in run or "\\" in run or run in ("", ".", ".."):
                raise ValueError(f"run must be a folder name from runs(); got {run!r}")
            path = self.root / run
        if not path.is_dir():
            return False
        shutil.rmtree(path)
        return True


def _check_inputs(encoder: Encoder, dataset: Dataset) -> None:
    if not isinstance(encoder, Encoder):
        raise TypeError(f"encoder must be an alignkit Encoder; got {type(encoder).__name__}")
    if not isinstance(dataset, Dataset):
        raise TypeError(f"dataset must be an alignkit Dataset; got {type(dataset).__name__}")
    if len(dataset) == 0:
        raise ValueError(f"dataset {dataset.name!r} is empty: nothing to extract")
    if encoder.modality and dataset.modality and encoder.modality != dataset.modality:
        raise ValueError(
            f"encoder {encoder.id!r} takes {encoder.modality} items but dataset {dataset.name!r} holds "
            f"{dataset.modality} items"
        )


def _read_manifest(path: Path) -> dict[str, Any] | None:
    """The manifest, or None when it is missing or unreadable."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    if not isinstance(data, dict) or data.get("format") != STORE_FORMAT:
        return None
    return data


def _warn(msg: str) -> None:
    warnings.warn(msg, StoreWarning, stacklevel=4)


# ------------------------------------------------------------------------------------------- run


class _Run:
    """One run folder and its manifest, held under the run lock."""

    def __init__(self, path: Path, manifest: dict[str, Any], ids: list[str]) -> None:
        self.path = path
        self.m = manifest
        self.ids = ids
        self.session: dict[str, Any] | None = None

    # ------------------------------------------------------------------ open / rebuild
    @classmethod
    def open(cls, path: Path, encoder: Encoder, dataset: Dataset, shard_size: int, batch_size: int | None) -> _Run:
        for stale in path.glob(".*.tmp"):  # temporaries of a killed writer (we hold the lock)
            stale.unlink(missing_ok=True)
        ids = list(dataset.ids)
        ids_sha = hashlib.sha256(json.dumps(ids).encode()).hexdigest()
        mpath = path / MANIFEST
        manifest = None
        if mpath.exists():
            manifest = _read_manifest(mpath)
            if manifest is None:
                _warn(
                    f"store: manifest {mpath} is unreadable (truncated or corrupt); rebuilding it from the shard files"
                )
            elif (
                manifest.get("encoder_fingerprint") != encoder.fingerprint()
                or manifest.get("dataset_fingerprint") != dataset.fingerprint()
                or manifest.get("n") != len(dataset)
                or manifest.get("ids_sha256") != ids_sha
            ):
                _warn(f"store: manifest {mpath} describes another encoder or dataset; starting the run afresh")
                for f in list(path.glob("shard-*.safetensors")) + list(path.glob("layer-*.npy")):
                    f.unlink(missing_ok=True)
                manifest = None
        fresh = manifest is None
        if fresh:
            n = len(dataset)
            # rebuilding over existing shard files: keep their grid and batch size so they stay usable
            shard_size, batch_size = _grid_of_existing_shards(path, shard_size, batch_size)
            manifest = {
                "format": STORE_FORMAT,
                "encoder_fingerprint": encoder.fingerprint(),
                "dataset_fingerprint": dataset.fingerprint(),
                "pooling": encoder.pooling,
                "encoder": encoder.describe(),
                "dataset": dataset.describe(),
                "n": n,
                "ids_sha256": ids_sha,
                "shard_size": shard_size,
                "batch_size": batch_size or encoder.default_batch_size,
                "dims": {},
                "shards": [{"start": s, "stop": min(n, s + shard_size), "files": []} for s in range(0, n, shard_size)],
                "layers": {},
                "sessions": [],
                "created": _now(),
                "updated": _now(),
            }
        run = cls(path, manifest, ids)
        if not (path / IDS_FILE).is_file():
            atomic_write_bytes(path / IDS_FILE, json.dumps(ids).encode())
        run.adopt_orphans(encoder)
        if fresh:
            run.save()
        return run

    def save(self) -> None:
        self.m["updated"] = _now()
        atomic_write_bytes(self.path / MANIFEST, json.dumps(self.m, indent=1).encode())

    def _referenced(self) -> set[str]:
        return {f["file"] for s in self.m["shards"] for f in s["files"]}

    def adopt_orphans(self, encoder: Encoder) -> None:
        """Take in complete shard files the manifest does not list (a crash after the file, before the manifest)."""
        known = self._referenced()
        changed = False
        for f in sorted(self.path.glob("shard-*.safetensors")):
            if f.name in known:
                continue
            match = _SHARD_RE.match(f.name)
            index = int(match.group(1)) if match else -1
            problem = None if match else "unexpected file name"
            entry = None
            if problem is None:
                if index >= len(self.m["shards"]):
                    problem = f"shard index {index} beyond the {len(self.m['shards'])} shards of this run"
                else:
                    entry, problem = self._inspect_shard(f, self.m["shards"][index], None, encoder)
            if problem is not None:
                _warn(f"store: shard file {f} cannot be used ({problem}); deleting it, its rows will be re-made")
                f.unlink(missing_ok=True)
                continue
            assert entry is not None
            self.m["shards"][index]["files"].append(entry)
            for layer, d in entry.pop("dims").items():
                self.m["dims"].setdefault(layer, d)
            changed = True
        if changed:
            self.save()

    def _inspect_shard(
        self, f: Path, shard: dict[str, Any], layers: list[str] | None, encoder: Encoder | None
    ) -> tuple[dict[str, Any] | None, str | None]:
        """Check a shard file's header: same run, same rows, the layers it should hold, float32 (rows × d)."""
        from safetensors import safe_open

        rows = shard["stop"] - shard["start"]
        try:
            with safe_open(str(f), framework="numpy") as sf:
                meta = sf.metadata() or {}
                keys = set(sf.keys())
                declared = json.loads(meta.get("layers", "[]"))
                if meta.get("encoder_fingerprint") != self.m["encoder_fingerprint"] or (
                    meta.get("dataset_fingerprint") != self.m["dataset_fingerprint"]
                ):
                    return None, "made for another encoder or dataset"
                if int(meta.get("start", -1)) != shard["start"] or int(meta.get("stop", -1)) != shard["stop"]:
                    return None, (
                        f"holds rows {meta.get('start')}:{meta.get('stop')}, expected {shard['start']}:{shard['stop']}"
                    )
                if set(declared) != keys or not keys:
                    return None, f"declares layers {declared} but holds {sorted(keys)}"
                if layers is not None and set(layers) != keys:
                    return None, f"holds layers {sorted(keys)}, the manifest says {sorted(layers)}"
                dims = {}
                for k in sorted(keys):
                    sl = sf.get_slice(k)
                    shape, dtype = list(sl.get_shape()), sl.get_dtype()
                    if len(shape) != 2 or shape[0] != rows or dtype != "F32":
                        return None, f"layer {k!r} has shape {shape} {dtype}, expected ({rows}, d) F32"
                    expected_d = self.m["dims"].get(k) or (encoder.dims.get(k) if encoder is not None else None)
                    if expected_d is not None and shape[1] != expected_d:
                        return None, f"layer {k!r} is {shape[1]}-d, expected {expected_d}"
                    dims[k] = shape[1]
        except Exception as exc:  # unreadable header, bad JSON metadata, ...
            return None, f"unreadable: {type(exc).__name__}: {exc}"
        if layers is not None:
            return {"dims": dims}, None
        # a full read validates the byte layout; then hash it
        data = f.read_bytes()
        try:
            from safetensors.numpy import load

            load(data)
        except Exception as exc:
            return None, f"unreadable: {type(exc).__name__}: {exc}"
        entry = {
            "file": f.name,
            "layers": sorted(keys, key=lambda k: declared.index(k)),
            "sha256": hashlib.sha256(data).hexdigest(),
            "size": len(data),
            "dims": dims,
        }
        return entry, None

    # ------------------------------------------------------------------ shards
    def verify_shards(self) -> None:
        """Drop (with one warning naming them) shard files that are missing, corrupt or not what the manifest says."""
        bad: list[str] = []
        for shard in self.m["shards"]:
            keep = []
            for entry in shard["files"]:
                f = self.path / entry["file"]
                problem = None
                if not f.is_file():
                    problem = "missing"
                elif f.stat().st_size != entry["size"]:
                    problem = f"{f.stat().st_size} bytes, recorded {entry['size']} (truncated or replaced)"
                elif sha256_file(f) != entry["sha256"]:
                    problem = "corrupt (sha256 mismatch)"
                else:
                    _, problem = self._inspect_shard(f, shard, entry["layers"], None)
                if problem is None:
                    keep.append(entry)
                    continue
                bad.append(f"{f} is {problem} (rows {shard['start']}:{shard['stop']})")
                f.unlink(missing_ok=True)
            shard["files"] = keep
        if bad:
            shown = "; ".join(bad[:5]) + (f"; and {len(bad) - 5} more" if len(bad) > 5 else "")
            _warn(f"store: re-making {len(bad)} shard file(s): {shown}")
            self.save()

    def _shard_has(self, shard: dict[str, Any], layer: str) -> bool:
        return any(layer in e["layers"] for e in shard["files"])

    def encode_missing(
        self, encoder: Encoder, dataset: Dataset, layers: list[str], batch_size: int | None, progress: bool
    ) -> None:
        work = []
        for i, shard in enumerate(self.m["shards"]):
            missing = [layer for layer in layers if not self._shard_has(shard, layer)]
            if missing:
                work.append((i, shard, missing))
        if not work:
            return
        bs = batch_size or int(self.m.get("batch_size") or encoder.default_batch_size)
        self.session = {
            "started": _now(),
            "versions": library_versions(),
            "device": str(encoder.device),
            "dtype": str(encoder.dtype).replace("torch.", ""),
            "batch_size": bs,
            "shards_written": 0,
        }
        self.m.setdefault("sessions", []).append(self.session)
        bar = None
        if progress:
            total = sum(s["stop"] - s["start"] for _, s, _ in work)
            bar = progress_bar(total=total, desc=f"embedding {dataset.name} with {encoder.id}", unit="item", leave=True)
        try:
            for i, shard, missing in work:
                arrays = self._encode_shard(encoder, dataset, shard, missing, bs, bar)
                self._write_shard(i, shard, missing, arrays, bs)
        finally:
            if bar is not None:
                bar.close()

    def _encode_shard(
        self, encoder: Encoder, dataset: Dataset, shard: dict[str, Any], layers: list[str], bs: int, bar: Any
    ) -> dict[str, np.ndarray]:
        start, stop = shard["start"], shard["stop"]
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
            with torch.no_grad():
                result = encoder.encode([items[j] for j in rows], layers=layers)
            if not isinstance(result, Mapping):
                raise TypeError(f"encoder {encoder.id!r} returned {type(result).__name__}; expected {{layer: Tensor}}")
            for layer in layers:
                if layer not in result:
                    raise ValueError(
                        f"encoder {encoder.id!r} returned no layer {layer!r} for a batch (asked for {layers}, "
                        f"got {list(result)})"
                    )
                arr = _to_float32(result[layer])
                if arr.ndim != 2 or arr.shape[0] != len(rows):
                    raise ValueError(
                        f"encoder {encoder.id!r}: layer {layer!r} came back with shape {tuple(arr.shape)} for a batch "
                        f"of {len(rows)} items; expected ({len(rows)}, d)"
                    )
                expected = self.m["dims"].get(layer) or encoder.dims.get(layer)
                if expected is not None and arr.shape[1] != expected:
                    raise ValueError(
                        f"encoder {encoder.id!r}: layer {layer!r} is {arr.shape[1]}-d, expected {expected}"
                    )
                if not np.isfinite(arr).all():
                    bad = [self.ids[start + rows[r]] for r in np.flatnonzero(~np.isfinite(arr).all(axis=1))[:5]]
                    raise ValueError(
                        f"encoder {encoder.id!r}: layer {layer!r} holds NaN/Inf for items {bad} "
                        "(half precision overflow? try dtype=torch.float32)"
                    )
                if layer not in out:
                    out[layer] = np.empty((stop - start, arr.shape[1]), dtype=np.float32)
                out[layer][rows] = arr
            if bar is not None:
                bar.update(len(rows))
        return out

    def _write_shard(
        self, i: int, shard: dict[str, Any], layers: list[str], arrays: dict[str, np.ndarray], bs: int
    ) -> None:
        from safetensors.numpy import save

        meta = {
            "format": STORE_FORMAT,
            "encoder_fingerprint": self.m["encoder_fingerprint"],
            "dataset_fingerprint": self.m["dataset_fingerprint"],
            "start": str(shard["start"]),
            "stop": str(shard["stop"]),
            "layers": json.dumps(layers),
            "batch_size": str(bs),
            "shard_size": str(self.m["shard_size"]),
        }
        data = save({layer: arrays[layer] for layer in layers}, metadata=meta)
        name = f"shard-{i:06d}-{_layers_tag(layers)}.safetensors"
        atomic_write_bytes(self.path / name, data)
        shard["files"] = [e for e in shard["files"] if e["file"] != name]
        shard["files"].append(
            {"file": name, "layers": list(layers), "sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
        )
        for layer in layers:
            self.m["dims"].setdefault(layer, int(arrays[layer].shape[1]))
        if self.session is not None:
            self.session["shards_written"] += 1
        self.save()

    # ------------------------------------------------------------------ consolidated layers
    def consolidated_ok(self, layer: str) -> bool:
        """Whether the layer's consolidated file exists and matches its recorded size and sha256."""
        entry = self.m["layers"].get(layer)
        if entry is None:
            return False
        f = self.path / entry["file"]
        problem = _verify(f, entry)
        if problem is None:
            return True
        _warn(f"store: consolidated file {f} is {problem}; re-making it from the shards")
        del self.m["layers"][layer]
        f.unlink(missing_ok=True)
        self.save()
        return False

    def consolidate(self, layer: str) -> None:
        """Copy the layer's rows from every shard into one (n, d) float32 .npy file, shard by shard."""
        from safetensors import safe_open

        n, d = self.m["n"], int(self.m["dims"][layer])
        final = self.path / f"layer-{safe_layer_name(layer)}.npy"
        tmp = temp_path(final)
        try:
            mm = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(n, d))
            for shard in self.m["shards"]:
                entry = next(e for e in reversed(shard["files"]) if layer in e["layers"])
                with safe_open(str(self.path / entry["file"]), framework="numpy") as sf:
                    mm[shard["start"] : shard["stop"]] = sf.get_tensor(layer)
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
        fsync_dir(self.path)
        st = final.stat()
        _VERIFIED.add((str(final), st.st_size, st.st_mtime_ns, st.st_ino, sha))
        self.m["layers"][layer] = {
            "file": final.name,
            "sha256": sha,
            "size": st.st_size,
            "shape": [n, d],
            "dtype": "float32",
            "created": _now(),
        }
        self.save()

    def space(self, layer: str, encoder: Encoder, dataset: Dataset) -> Space:
        entry = self.m["layers"][layer]
        f = self.path / entry["file"]
        problem = _verify(f, entry)
        if problem is not None:  # changed under our feet between the check and now
            raise RuntimeError(f"store: consolidated file {f} is {problem}; run extract() again to re-make it")
        arr = np.load(f, mmap_mode="r")
        if arr.shape != tuple(entry["shape"]) or arr.dtype != np.float32:
            raise RuntimeError(f"store: {f} holds {arr.dtype} {arr.shape}, the manifest says float32 {entry['shape']}")
        sessions = self.m.get("sessions", [])
        meta: dict[str, Any] = {
            "encoder": self.m["encoder"],
            "encoder_id": encoder.id,
            "encoder_fingerprint": self.m["encoder_fingerprint"],
            "dataset": dataset.name,
            "dataset_kind": type(dataset).__name__,
            "dataset_fingerprint": self.m["dataset_fingerprint"],
            "modality": dataset.modality,
            "pooling": self.m["pooling"],
            "layer": layer,
            "versions": sessions[0]["versions"] if sessions else library_versions(),
            "device": sessions[0]["device"] if sessions else str(encoder.device),
            "dtype": sessions[0]["dtype"] if sessions else str(encoder.dtype).replace("torch.", ""),
            "created": entry["created"],
            "store_file": str(f),
            "run": self.path.name,
        }
        if len(sessions) > 1:
            meta["sessions"] = sessions
        if dataset.keys is not dataset.ids and list(dataset.keys) != list(dataset.ids):
            meta["keys"] = list(dataset.keys)
        if dataset.class_names is not None:
            meta["class_names"] = list(dataset.class_names)
        return Space(arr, list(dataset.ids), dataset.labels, meta, f"{encoder.id} {layer} [{dataset.name}]")


def _grid_of_existing_shards(path: Path, shard_size: int, batch_size: int | None) -> tuple[int, int | None]:
    """(shard_size, batch_size) recorded in a readable shard file of the folder, else the given ones."""
    from safetensors import safe_open

    for f in sorted(path.glob("shard-*.safetensors")):
        try:
            with safe_open(str(f), framework="numpy") as sf:
                meta = sf.metadata() or {}
            return int(meta["shard_size"]), int(meta["batch_size"])
        except Exception:  # unreadable: the orphan check reports it
            continue
    return shard_size, batch_size


def _verify(f: Path, entry: dict[str, Any]) -> str | None:
    """None when ``f`` matches the recorded size and sha256 (hash checked once per process per file state)."""
    try:
        st = f.stat()
    except FileNotFoundError:
        return "missing"
    if st.st_size != entry["size"]:
        return f"{st.st_size} bytes, recorded {entry['size']} (truncated or replaced)"
    key = (str(f), st.st_size, st.st_mtime_ns, st.st_ino, entry["sha256"])
    if key in _VERIFIED:
        return None
    if sha256_file(f) != entry["sha256"]:
        return "corrupt (sha256 mismatch)"
    _VERIFIED.add(key)
    return None


def _to_float32(t: Any) -> np.ndarray:
    if isinstance(t, torch.Tensor):
        return t.detach().to("cpu", torch.float32).numpy()
    return np.asarray(t, dtype=np.float32)


__all__ = ["EmbeddingStore", "StoreWarning", "default_root", "library_versions", "safe_layer_name"]
