"""The typed, versioned manifest of a run folder (``manifest.json``).

Version 1 (``"format": "alignkit-store/1"``) is the layout every alignkit so far has written::

    {"format", "encoder_fingerprint", "dataset_fingerprint", "pooling", "encoder": {...}, "dataset": {...},
     "n", "ids_sha256", "shard_size", "batch_size", "dims": {layer: d},
     "shards": [{"start", "stop", "files": [{"file", "layers", "sha256", "size"}]}],
     "layers": {layer: {"file", "sha256", "size", "shape", "dtype", "created"}},
     "sessions": [{"started", "versions", "device", "dtype", "batch_size", "shards_written"}],
     "created", "updated"}

:meth:`Manifest.from_json` checks every field's type and raises :class:`ManifestError` naming the field
when one is wrong, and :class:`ManifestVersionError` for a format version this alignkit does not know.
Keys it does not know are kept and written back unchanged.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

FORMAT_PREFIX = "alignkit-store/"
VERSION = 1
STORE_FORMAT = f"{FORMAT_PREFIX}{VERSION}"
SUPPORTED_VERSIONS = (1,)


class ManifestError(ValueError):
    """A manifest that cannot be used: not JSON, not a store manifest, or a field of the wrong type."""


class ManifestVersionError(ManifestError):
    """A manifest in a store format version this alignkit cannot read (written by another version)."""


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def library_versions() -> dict[str, str]:
    """Versions of the libraries that shape embeddings (those installed)."""
    from importlib import metadata

    out = {}
    for dist in ("alignkit", "torch", "transformers", "sentence-transformers", "numpy", "safetensors"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[dist] = metadata.version(dist)
    return out


# ------------------------------------------------------------------------------------ field checks


class _Fields:
    """Typed reads from one JSON object; errors name the source and the field's path."""

    def __init__(self, data: Any, where: str, source: str) -> None:
        if not isinstance(data, dict):
            raise ManifestError(f"{source}: {where or 'the manifest'} is {_kind(data)}, expected an object")
        self.data, self.where, self.source = data, where, source

    def _path(self, key: str) -> str:
        return f"{self.where}.{key}" if self.where else key

    def _fail(self, key: str, value: Any, expected: str) -> ManifestError:
        return ManifestError(f"{self.source}: field {self._path(key)!r} is {_kind(value)}, expected {expected}")

    def get(self, key: str) -> Any:
        if key not in self.data:
            raise ManifestError(f"{self.source}: field {self._path(key)!r} is missing")
        return self.data[key]

    def integer(self, key: str, minimum: int = 0) -> int:
        v = self.get(key)
        if not isinstance(v, int) or isinstance(v, bool) or v < minimum:
            raise self._fail(key, v, f"an integer >= {minimum}")
        return v

    def text(self, key: str, *, nullable: bool = False) -> Any:
        v = self.get(key)
        if not (isinstance(v, str) or (nullable and v is None)):
            raise self._fail(key, v, "a string" + (" or null" if nullable else ""))
        return v

    def obj(self, key: str) -> dict[str, Any]:
        v = self.get(key)
        if not isinstance(v, dict):
            raise self._fail(key, v, "an object")
        return v

    def array(self, key: str) -> list[Any]:
        v = self.get(key)
        if not isinstance(v, list):
            raise self._fail(key, v, "a list")
        return v

    def texts(self, key: str) -> list[str]:
        v = self.array(key)
        if not all(isinstance(x, str) for x in v):
            raise self._fail(key, v, "a list of strings")
        return list(v)

    def text_map(self, key: str) -> dict[str, str]:
        v = self.obj(key)
        if not all(isinstance(x, str) for x in v.values()):
            raise self._fail(key, v, "an object of strings")
        return dict(v)

    def int_map(self, key: str) -> dict[str, int]:
        v = self.obj(key)
        if not all(isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in v.values()):
            raise self._fail(key, v, "an object of non-negative integers")
        return dict(v)

    def sub(self, key: str) -> _Fields:
        return _Fields(self.get(key), self._path(key), self.source)

    def items(self, key: str) -> list[_Fields]:
        return [_Fields(x, f"{self._path(key)}[{i}]", self.source) for i, x in enumerate(self.array(key))]


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "a list"}.get(
        type(value), "an object" if isinstance(value, dict) else type(value).__name__
    )


# ------------------------------------------------------------------------------------ entries


@dataclass
class ShardFile:
    """One shard file: some layers of the shard's rows, float32."""

    file: str
    layers: list[str]
    sha256: str
    size: int

    def to_dict(self) -> dict[str, Any]:
        return {"file": self.file, "layers": list(self.layers), "sha256": self.sha256, "size": self.size}

    @classmethod
    def from_fields(cls, f: _Fields) -> ShardFile:
        return cls(file=f.text("file"), layers=f.texts("layers"), sha256=f.text("sha256"), size=f.integer("size"))


@dataclass
class Shard:
    """Rows ``[start, stop)`` of the dataset and the files that hold some of their layers."""

    start: int
    stop: int
    files: list[ShardFile] = field(default_factory=list)

    @property
    def rows(self) -> int:
        return self.stop - self.start

    def has(self, layer: str) -> bool:
        return any(layer in f.layers for f in self.files)

    def file_for(self, layer: str) -> ShardFile:
        """The newest file holding ``layer``."""
        return next(f for f in reversed(self.files) if layer in f.layers)

    def to_dict(self) -> dict[str, Any]:
        return {"start": self.start, "stop": self.stop, "files": [f.to_dict() for f in self.files]}

    @classmethod
    def from_fields(cls, f: _Fields) -> Shard:
        return cls(
            start=f.integer("start"), stop=f.integer("stop"), files=[ShardFile.from_fields(x) for x in f.items("files")]
        )


@dataclass
class LayerFile:
    """The consolidated ``(n, d)`` float32 ``.npy`` file of one layer."""

    file: str
    sha256: str
    size: int
    shape: list[int]
    dtype: str
    created: str
    # alignkit.degenerate's check of the layer, made once at consolidation (n_distinct, constant, rank_le_1,
    # max_abs, ...); absent in manifests written before it existed.
    check: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        out = {
            "file": self.file,
            "sha256": self.sha256,
            "size": self.size,
            "shape": list(self.shape),
            "dtype": self.dtype,
            "created": self.created,
        }
        if self.check is not None:
            out["check"] = dict(self.check)
        return out

    @classmethod
    def from_fields(cls, f: _Fields) -> LayerFile:
        shape = f.array("shape")
        if len(shape) != 2 or not all(isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in shape):
            raise f._fail("shape", shape, "[rows, dims]")
        return cls(
            file=f.text("file"),
            sha256=f.text("sha256"),
            size=f.integer("size"),
            shape=list(shape),
            dtype=f.text("dtype"),
            created=f.text("created"),
            check=f.obj("check") if "check" in f.data else None,
        )


@dataclass
class Session:
    """One extraction session that wrote shards: when, with which libraries, device, dtype and batch size."""

    started: str
    versions: dict[str, str]
    device: str
    dtype: str
    batch_size: int
    shards_written: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "started": self.started,
            "versions": dict(self.versions),
            "device": self.device,
            "dtype": self.dtype,
            "batch_size": self.batch_size,
            "shards_written": self.shards_written,
        }

    @classmethod
    def from_fields(cls, f: _Fields) -> Session:
        return cls(
            started=f.text("started"),
            versions=f.text_map("versions"),
            device=f.text("device"),
            dtype=f.text("dtype"),
            batch_size=f.integer("batch_size", 1),
            shards_written=f.integer("shards_written"),
        )


# ------------------------------------------------------------------------------------ manifest

_KNOWN_KEYS = (
    "format",
    "encoder_fingerprint",
    "dataset_fingerprint",
    "pooling",
    "encoder",
    "dataset",
    "n",
    "ids_sha256",
    "shard_size",
    "batch_size",
    "dims",
    "shards",
    "layers",
    "sessions",
    "created",
    "updated",
)


@dataclass
class Manifest:
    """What a run folder holds: its key, the shard grid and files, the consolidated layers, the sessions."""

    encoder_fingerprint: str
    dataset_fingerprint: str
    pooling: str | None
    encoder: dict[str, Any]
    dataset: dict[str, Any]
    n: int
    ids_sha256: str
    shard_size: int
    batch_size: int
    dims: dict[str, int] = field(default_factory=dict)
    shards: list[Shard] = field(default_factory=list)
    layers: dict[str, LayerFile] = field(default_factory=dict)
    sessions: list[Session] = field(default_factory=list)
    created: str = field(default_factory=now)
    updated: str = field(default_factory=now)
    version: int = VERSION
    #: keys this version does not know, written back unchanged
    extra: dict[str, Any] = field(default_factory=dict)

    @staticmethod
    def grid(n: int, shard_size: int) -> list[Shard]:
        """Fixed shards of ``shard_size`` rows in dataset order (the last one may be shorter)."""
        return [Shard(s, min(n, s + shard_size)) for s in range(0, n, shard_size)]

    @property
    def format(self) -> str:
        return f"{FORMAT_PREFIX}{self.version}"

    def shard_files(self) -> set[str]:
        """Names of every shard file the manifest lists."""
        return {f.file for s in self.shards for f in s.files}

    # ------------------------------------------------------------------ JSON
    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "format": self.format,
            "encoder_fingerprint": self.encoder_fingerprint,
            "dataset_fingerprint": self.dataset_fingerprint,
            "pooling": self.pooling,
            "encoder": self.encoder,
            "dataset": self.dataset,
            "n": self.n,
            "ids_sha256": self.ids_sha256,
            "shard_size": self.shard_size,
            "batch_size": self.batch_size,
            "dims": dict(self.dims),
            "shards": [s.to_dict() for s in self.shards],
            "layers": {name: entry.to_dict() for name, entry in self.layers.items()},
            "sessions": [s.to_dict() for s in self.sessions],
            "created": self.created,
            "updated": self.updated,
        }
        out.update({k: v for k, v in self.extra.items() if k not in out})
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1)

    @classmethod
    def from_dict(cls, data: Any, source: str = "manifest") -> Manifest:
        """A manifest from its parsed JSON; ManifestError (naming ``source`` and the field) when it is not one."""
        top = _Fields(data, "", source)
        fmt = top.get("format") if "format" in data else None
        if not isinstance(fmt, str) or not fmt.startswith(FORMAT_PREFIX):
            raise ManifestError(f"{source}: not an alignkit store manifest (format {fmt!r})")
        tail = fmt[len(FORMAT_PREFIX) :]
        if not tail.isdigit():
            raise ManifestError(f"{source}: corrupt store format {fmt!r} (expected {FORMAT_PREFIX}<version>)")
        version = int(tail)
        if version not in SUPPORTED_VERSIONS:
            raise ManifestVersionError(
                f"{source}: store format version {version} is not supported by this alignkit (it reads version(s) "
                f"{', '.join(map(str, SUPPORTED_VERSIONS))}); the run was written by another alignkit version: "
                "use that version, or remove the run (EmbeddingStore.remove) to extract it afresh"
            )
        manifest = cls(
            encoder_fingerprint=top.text("encoder_fingerprint"),
            dataset_fingerprint=top.text("dataset_fingerprint"),
            pooling=top.text("pooling", nullable=True),
            encoder=top.obj("encoder"),
            dataset=top.obj("dataset"),
            n=top.integer("n", 1),
            ids_sha256=top.text("ids_sha256"),
            shard_size=top.integer("shard_size", 1),
            batch_size=top.integer("batch_size", 1),
            dims=top.int_map("dims"),
            shards=[Shard.from_fields(s) for s in top.items("shards")],
            layers={name: LayerFile.from_fields(top.sub("layers").sub(name)) for name in top.obj("layers")},
            sessions=[Session.from_fields(s) for s in top.items("sessions")],
            created=top.text("created"),
            updated=top.text("updated"),
            version=version,
            extra={k: v for k, v in data.items() if k not in _KNOWN_KEYS},
        )
        manifest._check_grid(source)
        return manifest

    @classmethod
    def from_json(cls, text: str | bytes, source: str = "manifest") -> Manifest:
        try:
            data = json.loads(text)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ManifestError(f"{source}: not valid JSON (truncated or corrupt): {exc}") from None
        return cls.from_dict(data, source)

    def _check_grid(self, source: str) -> None:
        expected = [(s.start, s.stop) for s in self.grid(self.n, self.shard_size)]
        if [(s.start, s.stop) for s in self.shards] != expected:
            raise ManifestError(
                f"{source}: the shards do not tile rows 0:{self.n} in steps of {self.shard_size} (corrupt manifest)"
            )


def read_manifest(path: Path) -> Manifest | None:
    """The manifest at ``path``; None when there is none; ManifestError when it is unreadable or corrupt."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ManifestError(f"{path}: cannot be read: {exc}") from None
    return Manifest.from_json(raw, str(path))
