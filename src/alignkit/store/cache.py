"""The public store: :class:`EmbeddingStore` — extract once, resume after a crash, read memory-mapped."""

from __future__ import annotations

import os
import secrets
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from alignkit.data.base import Dataset
from alignkit.encoders.base import Encoder
from alignkit.space import Space
from alignkit.store.consolidate import consolidate, consolidated_ok
from alignkit.store.layout import MANIFEST, default_root
from alignkit.store.manifest import Manifest, ManifestError, ManifestVersionError, library_versions, read_manifest
from alignkit.store.run import Run, describes, ids_digest, locked
from alignkit.store.shards import encode_missing
from alignkit.store.verify import verify_file, verify_shards

_TRASH_SUFFIX = ".removing"


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
        runs only. Returns ``{layer: Space}`` with read-only memory-mapped arrays. Layers that are
        complete are read without the run lock and without writing (a read-only cache works).
        """
        wanted = encoder.check_layers(None if layers is None else list(layers))
        _check_inputs(encoder, dataset)
        if not isinstance(shard_size, int) or shard_size < 1:
            raise ValueError(f"shard_size must be a positive integer; got {shard_size!r}")
        if batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1):
            raise ValueError(f"batch_size must be a positive integer; got {batch_size!r}")
        run_path = self.run_dir(encoder, dataset)
        complete = _complete_manifest(run_path, encoder, dataset, wanted)
        if complete is not None:
            return {layer: _space(run_path, complete, layer, encoder, dataset) for layer in wanted}
        run_path.mkdir(parents=True, exist_ok=True)
        with locked(run_path):
            run = Run.open(run_path, encoder, dataset, shard_size, batch_size)
            todo = [layer for layer in wanted if not consolidated_ok(run, layer)]
            if todo:
                verify_shards(run)
                encode_missing(run, encoder, dataset, todo, batch_size, progress)
                for layer in todo:
                    consolidate(run, layer)
            return {layer: _space(run.path, run.manifest, layer, encoder, dataset) for layer in wanted}

    def get(self, encoder: Encoder, dataset: Dataset, layer: str) -> Space:
        """The cached Space of one layer (verified; re-made from the shards, or re-extracted, if corrupt).

        Raises KeyError when that layer was never extracted for this encoder and dataset.
        """
        encoder.check_layers([layer])
        try:
            manifest = read_manifest(self.run_dir(encoder, dataset) / MANIFEST)
            known = manifest is not None and layer in manifest.layers
        except ManifestVersionError:
            raise
        except ManifestError:
            known = True  # unreadable: extract() rebuilds it from the shard files
        if not known:
            raise KeyError(
                f"layer {layer!r} of {encoder.id!r} on dataset {dataset.name!r} is not in the store at {self.root}; "
                "call extract() first"
            )
        return self.extract(encoder, dataset, [layer], progress=False)[layer]

    def has(self, encoder: Encoder, dataset: Dataset, layer: str | None = None) -> bool:
        """Whether the layer (None: every layer of the encoder) is consolidated on disk (cheap check: size only)."""
        run = self.run_dir(encoder, dataset)
        try:
            manifest = read_manifest(run / MANIFEST)
        except ManifestError:
            return False
        if manifest is None:
            return False
        for name in encoder.layer_names if layer is None else [layer]:
            entry = manifest.layers.get(name)
            if entry is None:
                return False
            p = run / entry.file
            if not p.is_file() or p.stat().st_size != entry.size:
                return False
        return True

    def runs(self) -> list[dict[str, Any]]:
        """Every cached run: folder, encoder, dataset, rows, consolidated layers, shards done, dates, bytes."""
        out: list[dict[str, Any]] = []
        if not self.root.is_dir():
            return out
        for d in sorted(p for p in self.root.iterdir() if p.is_dir() and not p.name.startswith(".")):
            mpath = d / MANIFEST
            if not mpath.exists():
                continue
            info: dict[str, Any] = {"run": d.name, "path": str(d)}
            try:
                manifest = read_manifest(mpath)
            except ManifestVersionError as exc:
                info["error"] = f"manifest in a store format this alignkit cannot read: {exc}"
            except ManifestError:
                info["error"] = "manifest unreadable (rebuilt on the next extract)"
            else:
                if manifest is not None:
                    info.update(_summary(manifest))
            info["bytes"] = sum(f.stat().st_size for f in d.iterdir() if f.is_file())
            out.append(info)
        return out

    def remove(self, encoder: Encoder | None = None, dataset: Dataset | None = None, *, run: str | None = None) -> bool:
        """Delete one run (by encoder + dataset, or by its folder name); True when something was removed.

        The folder is first renamed out of the way (atomically), so a crash never leaves half a run in place.
        """
        if run is None:
            if encoder is None or dataset is None:
                raise ValueError("remove() needs an encoder and a dataset, or run=<folder name>")
            path = self.run_dir(encoder, dataset)
        else:
            if "/" in run or "\\" in run or run in ("", ".", "..") or run.startswith("."):
                raise ValueError(f"run must be a folder name from runs(); got {run!r}")
            path = self.root / run
        if not path.is_dir():
            return False
        trash = path.with_name(f".{path.name}.{secrets.token_hex(6)}{_TRASH_SUFFIX}")
        os.replace(path, trash)
        shutil.rmtree(trash)
        for left in self.root.glob(f".*{_TRASH_SUFFIX}"):  # what a killed remove() left behind
            shutil.rmtree(left, ignore_errors=True)
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


def _complete_manifest(path: Path, encoder: Encoder, dataset: Dataset, layers: list[str]) -> Manifest | None:
    """The run's manifest when every layer in ``layers`` is consolidated and intact, else None. Reads only:
    no lock, no temporary, no write."""
    try:
        manifest = read_manifest(path / MANIFEST)
    except ManifestVersionError:
        raise
    except ManifestError:
        return None  # the locked path rebuilds it
    if manifest is None or not describes(manifest, encoder, dataset, ids_digest(list(dataset.ids))):
        return None
    for layer in layers:
        entry = manifest.layers.get(layer)
        if entry is None or verify_file(path / entry.file, entry) is not None:
            return None
    return manifest


def _summary(m: Manifest) -> dict[str, Any]:
    return {
        "encoder": m.encoder.get("id"),
        "pooling": m.pooling,
        "dataset": m.dataset.get("name"),
        "n": m.n,
        "layers": sorted(m.layers),
        "shards_done": sum(1 for s in m.shards if s.files),
        "n_shards": len(m.shards),
        "created": m.created,
        "updated": m.updated,
    }


def _space(path: Path, m: Manifest, layer: str, encoder: Encoder, dataset: Dataset) -> Space:
    """The consolidated layer as a read-only memory-mapped Space with its provenance."""
    entry = m.layers[layer]
    f = path / entry.file
    problem = verify_file(f, entry)
    if problem is not None:  # changed under our feet between the check and now
        raise RuntimeError(f"store: consolidated file {f} is {problem}; run extract() again to re-make it")
    arr = np.load(f, mmap_mode="r")
    if arr.shape != tuple(entry.shape) or arr.dtype != np.float32:
        raise RuntimeError(f"store: {f} holds {arr.dtype} {arr.shape}, the manifest says float32 {entry.shape}")
    first = m.sessions[0] if m.sessions else None
    meta: dict[str, Any] = {
        "encoder": m.encoder,
        "encoder_id": encoder.id,
        "encoder_fingerprint": m.encoder_fingerprint,
        "dataset": dataset.name,
        "dataset_kind": type(dataset).__name__,
        "dataset_fingerprint": m.dataset_fingerprint,
        "modality": dataset.modality,
        "pooling": m.pooling,
        "layer": layer,
        "versions": first.versions if first else library_versions(),
        "device": first.device if first else str(encoder.device),
        "dtype": first.dtype if first else str(encoder.dtype).replace("torch.", ""),
        "created": entry.created,
        "check": entry.check,
        "store_file": str(f),
        "run": path.name,
    }
    if len(m.sessions) > 1:
        meta["sessions"] = [s.to_dict() for s in m.sessions]
    if dataset.keys is not dataset.ids and list(dataset.keys) != list(dataset.ids):
        meta["keys"] = list(dataset.keys)
    if dataset.class_names is not None:
        meta["class_names"] = list(dataset.class_names)
    return Space(arr, list(dataset.ids), dataset.labels, meta, f"{encoder.id} {layer} [{dataset.name}]")
