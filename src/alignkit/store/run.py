"""One run folder (encoder × dataset) opened for writing: its lock, its manifest, rebuilt when needed."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path

from alignkit.data.base import Dataset
from alignkit.encoders.base import Encoder
from alignkit.io import TEMP_GLOB, atomic_write_bytes
from alignkit.store.layout import IDS_FILE, LAYER_GLOB, LOCK_FILE, MANIFEST, SHARD_GLOB, warn
from alignkit.store.manifest import Manifest, ManifestError, ManifestVersionError, Session, now, read_manifest
from alignkit.store.orphans import adopt_orphans, grid_of_existing_shards


def ids_digest(ids: list[str]) -> str:
    return hashlib.sha256(json.dumps(ids).encode()).hexdigest()


def describes(m: Manifest, encoder: Encoder, dataset: Dataset, ids_sha256: str) -> bool:
    """Whether the manifest is the one of this encoder and dataset (same fingerprints, rows and ids)."""
    return (
        m.encoder_fingerprint == encoder.fingerprint()
        and m.dataset_fingerprint == dataset.fingerprint()
        and m.n == len(dataset)
        and m.ids_sha256 == ids_sha256
    )


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """An exclusive advisory lock on the run (POSIX); released by the OS if the process dies.

    Only writers take it: reading layers that are complete needs neither the lock nor a writable folder.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: no lock, one writer per run is the user's job
        yield
        return
    try:
        fd = os.open(path / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as exc:
        if exc.errno not in (errno.EROFS, errno.EACCES, errno.EPERM):
            raise
        raise PermissionError(
            exc.errno,
            f"store: the run folder {path} is not writable ({exc.strerror}) and some requested layers are missing, "
            "incomplete or corrupt there; a read-only cache serves only complete, intact layers. Extract into a "
            "writable folder (EmbeddingStore(root=...) or $ALIGNKIT_CACHE)",
        ) from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


class Run:
    """A run folder and its manifest, held under the run lock."""

    def __init__(self, path: Path, manifest: Manifest, ids: list[str]) -> None:
        self.path = path
        self.manifest = manifest
        self.ids = ids
        self.session: Session | None = None

    @classmethod
    def open(cls, path: Path, encoder: Encoder, dataset: Dataset, shard_size: int, batch_size: int | None) -> Run:
        """Open (or create, or rebuild) the run of ``encoder`` on ``dataset``; the caller holds the lock."""
        for stale in path.glob(TEMP_GLOB):  # temporaries of a killed writer
            stale.unlink(missing_ok=True)
        ids = list(dataset.ids)
        ids_sha = ids_digest(ids)
        mpath = path / MANIFEST
        try:
            manifest = read_manifest(mpath)
        except ManifestVersionError:
            raise
        except ManifestError as exc:
            warn(
                f"store: manifest {mpath} is unreadable (truncated or corrupt); rebuilding it from the shard files "
                f"[{exc}]"
            )
            manifest = None
        else:
            if manifest is not None and not describes(manifest, encoder, dataset, ids_sha):
                warn(f"store: manifest {mpath} describes another encoder or dataset; starting the run afresh")
                for f in [*path.glob(SHARD_GLOB), *path.glob(LAYER_GLOB)]:
                    f.unlink(missing_ok=True)
                manifest = None
        fresh = manifest is None
        if manifest is None:
            shard_size, batch_size = grid_of_existing_shards(path, shard_size, batch_size)
            manifest = Manifest(
                encoder_fingerprint=encoder.fingerprint(),
                dataset_fingerprint=dataset.fingerprint(),
                pooling=encoder.pooling,
                encoder=encoder.describe(),
                dataset=dataset.describe(),
                n=len(dataset),
                ids_sha256=ids_sha,
                shard_size=shard_size,
                batch_size=batch_size or encoder.default_batch_size,
                shards=Manifest.grid(len(dataset), shard_size),
            )
        if fresh or not (path / IDS_FILE).is_file():
            atomic_write_bytes(path / IDS_FILE, json.dumps(ids).encode())
        run = cls(path, manifest, ids)
        if adopt_orphans(run, encoder) or fresh:
            run.save()
        return run

    def save(self) -> None:
        """Write the manifest atomically (a crash leaves the old or the new one)."""
        self.manifest.updated = now()
        atomic_write_bytes(self.path / MANIFEST, self.manifest.to_json().encode())
