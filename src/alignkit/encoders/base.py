"""The encoder protocol and the string-id registry.

An encoder turns a batch of items into ``{layer_name: Tensor[B, d]}`` for the layers asked for
(default: all), pooled as it declares. It reports its modality, layer names, dims and an
identity (id + revision or weights hash) that keys the embedding cache.

Ids look like ``"<family>:<name>"`` (``"offline:minilm-l6"``, ``"hf:bert-base-uncased"``,
``"timm:resnet50"``); each family registers a factory with :func:`register_family`.
"""

from __future__ import annotations

import difflib
import hashlib
import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any

import torch

from alignkit.io import sha256_file  # noqa: F401  (re-exported for encoders)

MODALITIES = ("text", "image", "audio")


class Encoder(ABC):
    """Base class of every encoder. Subclasses set the attributes and implement :meth:`encode`."""

    id: str = ""
    modality: str = ""
    pooling: str = ""
    #: items are processed sorted by this key (e.g. text length) to reduce padding; None = as given
    length_key: Callable[[Any], int] | None = None
    default_batch_size: int = 32

    def __init__(
        self,
        device: str | torch.device | None = None,
        dtype: torch.dtype = torch.float32,
        batch_size: int | None = None,
        progress: bool | None = None,
    ) -> None:
        """device: default CUDA when present; dtype: float32, float16 or bfloat16 (weights and
        activations; outputs are always float32); batch_size: items per forward pass (None = the
        encoder's default); progress: tqdm bars (None = only on a terminal)."""
        self.device = torch.device(device) if device is not None else default_device()
        if dtype not in (torch.float32, torch.float16, torch.bfloat16):
            raise ValueError(f"dtype must be torch.float32, float16 or bfloat16; got {dtype}")
        self.dtype = dtype
        if batch_size is not None and (
            isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1
        ):
            raise ValueError(f"batch_size must be a positive integer; got {batch_size!r}")
        self.batch_size = batch_size or self.default_batch_size
        self.progress = progress

    @property
    @abstractmethod
    def layer_names(self) -> list[str]:
        """Every layer this encoder can return, input side first."""

    @property
    @abstractmethod
    def dims(self) -> dict[str, int]:
        """Width of each layer's pooled output."""

    @abstractmethod
    def identity(self) -> dict[str, Any]:
        """What determines the weights: id, revision and/or a hash of the weight files."""

    @abstractmethod
    def encode(self, items: Sequence[Any], layers: Sequence[str] | None = None) -> dict[str, torch.Tensor]:
        """Pooled embeddings ``{layer: Tensor[B, d]}`` (float32, on CPU) for ``layers`` (None = all)."""

    def check_layers(self, layers: Sequence[str] | None) -> list[str]:
        """The requested layers, validated (None = all), in the encoder's order."""
        if layers is None:
            return list(self.layer_names)
        known = set(self.layer_names)
        bad = [name for name in layers if name not in known]
        if bad:
            raise ValueError(f"encoder {self.id!r} has no layer(s) {bad}; its layers are {self.layer_names}")
        return [name for name in self.layer_names if name in set(layers)]

    def output_options(self) -> dict[str, Any]:
        """Options besides the weights that change the embeddings (e.g. a text prefix, a maximum
        length, an input size). They are part of the cache key; subclasses extend this."""
        return {}

    def fingerprint(self) -> str:
        """A short stable hash of identity + pooling + dtype + output options: the encoder part of a cache key."""
        key = {
            "identity": self.identity(),
            "pooling": self.pooling,
            "dtype": str(self.dtype).replace("torch.", ""),
            "options": self.output_options(),
        }
        return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:16]

    def describe(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "modality": self.modality,
            "pooling": self.pooling,
            "layers": list(self.layer_names),
            "dims": dict(self.dims),
            "identity": self.identity(),
            "device": str(self.device),
            "dtype": str(self.dtype).replace("torch.", ""),
        }

    def __repr__(self) -> str:
        return f"{type(self).__name__}(id={self.id!r}, pooling={self.pooling!r}, layers={len(self.layer_names)})"


def default_device() -> torch.device:
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


# ------------------------------------------------------------------------------------ registry

Factory = Callable[..., Encoder]
_FAMILIES: dict[str, tuple[Factory, str]] = {}
_NAMED: dict[str, tuple[Factory, str]] = {}


def register_family(family: str, description: str) -> Callable[[Factory], Factory]:
    """Register a factory ``f(name, **options) -> Encoder`` for ids ``"<family>:<name>"``."""

    def deco(factory: Factory) -> Factory:
        _FAMILIES[family] = (factory, description)
        return factory

    return deco


def register_named(encoder_id: str, description: str) -> Callable[[Factory], Factory]:
    """Register one fixed id (e.g. ``"offline:minilm-l6"``) with a factory ``f(**options)``."""

    def deco(factory: Factory) -> Factory:
        _NAMED[encoder_id] = (factory, description)
        return factory

    return deco


def available_encoders() -> dict[str, str]:
    """Fixed ids and family patterns with a one-line description each."""
    out = {name: desc for name, (_, desc) in sorted(_NAMED.items())}
    out.update({f"{fam}:<name>": desc for fam, (_, desc) in sorted(_FAMILIES.items())})
    return out


def load_encoder(encoder_id: str, **options: Any) -> Encoder:
    """Build the encoder for ``encoder_id``; unknown ids fail with a did-you-mean."""
    if encoder_id in _NAMED:
        return _NAMED[encoder_id][0](**options)
    family, sep, name = encoder_id.partition(":")
    if sep and family in _FAMILIES and name:
        return _FAMILIES[family][0](name, **options)
    candidates = list(_NAMED) + [f"{fam}:" for fam in _FAMILIES]
    close = difflib.get_close_matches(encoder_id, candidates, n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
    raise ValueError(
        f"unknown encoder id {encoder_id!r}.{hint} Known: {', '.join(sorted(_NAMED))}; "
        f"families: {', '.join(f'{f}:<name>' for f in sorted(_FAMILIES))}"
    )
