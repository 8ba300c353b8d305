"""The files of a run folder, their names, and the warning raised when one has to be re-made."""

from __future__ import annotations

import hashlib
import os
import re
import warnings
from pathlib import Path

MANIFEST = "manifest.json"
IDS_FILE = "ids.json"
LOCK_FILE = ".lock"
SHARD_RE = re.compile(r"^shard-(\d{6})-([0-9a-f]{8})\.safetensors$")
SHARD_GLOB = "shard-*.safetensors"
LAYER_GLOB = "layer-*.npy"


class StoreWarning(UserWarning):
    """A cache file was missing, corrupt or mismatched and is being re-made."""


def warn(msg: str) -> None:
    warnings.warn(msg, StoreWarning, stacklevel=3)


def default_root() -> Path:
    """``$ALIGNKIT_CACHE`` or ``~/.cache/alignkit``."""
    env = os.environ.get("ALIGNKIT_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "alignkit"


def safe_layer_name(layer: str) -> str:
    """A file-name-safe version of a layer name (with a short hash when characters had to be replaced)."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", layer)
    if safe != layer or not safe:
        safe = f"{safe}-{hashlib.sha256(layer.encode()).hexdigest()[:8]}"
    return safe


def layer_file_name(layer: str) -> str:
    """The consolidated ``(n, d)`` float32 file of one layer."""
    return f"layer-{safe_layer_name(layer)}.npy"


def shard_file_name(index: int, layers: list[str]) -> str:
    """Shard ``index`` holding ``layers`` (the tag depends on the set of layers, not their order)."""
    tag = hashlib.sha256("\n".join(sorted(layers)).encode()).hexdigest()[:8]
    return f"shard-{index:06d}-{tag}.safetensors"
