"""The encoder protocol and the string-id registry.

An encoder turns a batch of items into ``{layer_name: Tensor[B, d]}`` for the layers asked for
(default: all), pooled as it declares. It reports its modality, layer names, dims and an
identity (id + revision or weights hash) that keys the embedding cache.

The output contract is enforced here, for every subclass: each ``encode`` a subclass defines is
wrapped (in ``__init_subclass__``) so that its result is checked — every requested layer present,
2-D ``[B, d]`` with ``B`` the number of items and ``d`` the declared width, all finite — and a
violation raises :class:`EncoderOutputError` naming the encoder and the layer.

Ids look like ``"<family>:<name>"`` (``"offline:minilm-l6"``, ``"hf:bert-base-uncased"``,
``"timm:resnet50"``); each family registers a factory with :func:`register_family`.
"""

from __future__ import annotations

import difflib
import functools
import hashlib
import inspect
import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from alignkit.io import sha256_file  # noqa: F401  (re-exported for encoders)
from alignkit.registry import Entry, ParamSchema, Registry

MODALITIES = ("text", "image", "audio")


class Encoder(ABC):
    """Base class of every encoder. Subclasses set the attributes and implement :meth:`encode`."""

    id: str = ""
    modality: str = ""
    pooling: str = ""
    #: items are processed sorted by this key (e.g. text length) to reduce padding; None = as given
    length_key: Callable[[Any], int] | None = None
    default_batch_size: int = 32

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Wrap the subclass's ``encode`` (when it has a concrete one not yet wrapped) in the output check."""
        super().__init_subclass__(**kwargs)
        fn = getattr(cls, "encode", None)
        if callable(fn) and not getattr(fn, "__isabstractmethod__", False) and not getattr(fn, _CHECKED, False):
            cls.encode = _checked_encode(fn)  # type: ignore[method-assign]

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

    # -- shared machinery for subclasses ------------------------------------------------------

    def _place(self, module: nn.Module) -> nn.Module:
        """``module`` in eval mode on the encoder's device, in its dtype."""
        return module.eval().to(device=self.device, dtype=self.dtype)

    def _probe_dims(self, probe: Any) -> dict[str, int]:
        """Layer widths found by encoding one ``probe`` item, once (for encoders that only know them by running)."""
        dims = self.__dict__.get("_probed_dims")
        if dims is None:
            self._probing = True  # the output check has no declared widths to compare with yet
            try:
                out = self.encode([probe])
            finally:
                self._probing = False
            dims = self._probed_dims = {name: int(t.shape[1]) for name, t in out.items()}
        return dict(dims)

    def _batched(
        self,
        items: Sequence[Any],
        layers: Sequence[str],
        run: Callable[[Sequence[Any], int], Mapping[str, torch.Tensor]],
        order: Sequence[int] | None = None,
    ) -> dict[str, torch.Tensor]:
        """``run(batch, start)`` over consecutive batches of ``batch_size`` items (taken in ``order`` when given;
        results come back in the order of ``items``), with a progress bar; ``{layer: Tensor[len(items), d]}``
        float32 on the CPU (``(0, d)`` for no items)."""
        if not layers:
            return {}
        n = len(items)
        if n == 0:
            dims = self.dims
            return {name: torch.empty(0, dims[name]) for name in layers}
        seq = items if order is None else [items[i] for i in order]
        bs = self.batch_size
        chunks: dict[str, list[torch.Tensor]] = {name: [] for name in layers}
        for start in batch_starts(n, bs, self.progress, f"encode {self.id}"):
            out = run(seq[start : start + bs], start)
            for name in layers:
                chunks[name].append(out[name].detach().to("cpu", torch.float32))
        result = {name: torch.cat(c) for name, c in chunks.items()}
        if order is not None:
            back = torch.empty(n, dtype=torch.long)
            back[torch.as_tensor(list(order), dtype=torch.long)] = torch.arange(n)
            result = {name: t[back] for name, t in result.items()}
        return result


def default_device() -> torch.device:
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


def batch_starts(n: int, batch_size: int, progress: bool | None, desc: str) -> Iterator[int]:
    """Start offsets of the batches of ``n`` items, with a tqdm bar (``progress=None``: only on a terminal,
    never for a single batch)."""
    from tqdm.auto import tqdm

    n_batches = -(-n // batch_size)
    disable = True if n_batches <= 1 else (None if progress is None else not progress)
    for b in tqdm(range(n_batches), desc=desc, disable=disable, unit="batch"):
        yield b * batch_size


# ------------------------------------------------------------------------------------ output contract

_CHECKED = "_alignkit_checks_output"


class EncoderOutputError(ValueError):
    """An encoder broke its output contract (``{layer: [B, d]}``, every requested layer, declared widths, finite).

    ``layer`` names the offending layer; ``rows`` the positions in the batch of non-finite rows (NaN/Inf only).
    """

    def __init__(
        self, message: str, *, encoder_id: str, layer: str | None = None, rows: list[int] | None = None
    ) -> None:
        super().__init__(message)
        self.encoder_id, self.layer, self.rows = encoder_id, layer, rows


def check_output(encoder: Encoder, out: Any, n_items: int | None, layers: Sequence[str] | None) -> None:
    """Raise :class:`EncoderOutputError` unless ``out`` maps every requested layer to a ``[n_items, d]`` tensor
    (or array) with ``d`` the encoder's declared width for it and only finite values."""
    eid = encoder.id or type(encoder).__name__
    if not isinstance(out, Mapping):
        raise EncoderOutputError(
            f"encoder {eid!r} returned {type(out).__name__}; expected {{layer: Tensor[B, d]}}", encoder_id=eid
        )
    wanted = encoder.check_layers(None if layers is None else list(layers))
    missing = [name for name in wanted if name not in out]
    if missing:
        raise EncoderOutputError(
            f"encoder {eid!r} returned no layer {', '.join(map(repr, missing))} (asked for {wanted}, got {list(out)})",
            encoder_id=eid,
            layer=missing[0],
        )
    declared = {} if getattr(encoder, "_probing", False) else encoder.dims
    for name in wanted:
        t = out[name]
        if not isinstance(t, (torch.Tensor, np.ndarray)):
            raise EncoderOutputError(
                f"encoder {eid!r}: layer {name!r} came back as {type(t).__name__}; expected a Tensor [B, d]",
                encoder_id=eid,
                layer=name,
            )
        shape = tuple(int(x) for x in t.shape)
        batch = "?" if n_items is None else n_items
        if len(shape) != 2 or (n_items is not None and shape[0] != n_items):
            raise EncoderOutputError(
                f"encoder {eid!r}: layer {name!r} came back with shape {shape} for a batch of {batch} items; "
                f"expected ({batch}, d)",
                encoder_id=eid,
                layer=name,
            )
        d = declared.get(name)
        if d is not None and shape[1] != d:
            raise EncoderOutputError(
                f"encoder {eid!r}: layer {name!r} is {shape[1]}-d, but the encoder declares {d} (dims[{name!r}])",
                encoder_id=eid,
                layer=name,
            )
        finite = (
            torch.isfinite(t).all(dim=1)
            if isinstance(t, torch.Tensor)
            else torch.from_numpy(np.isfinite(t).all(axis=1))
        )
        if not bool(finite.all()):
            rows = torch.nonzero(~finite).flatten().tolist()
            raise EncoderOutputError(
                f"encoder {eid!r}: layer {name!r} holds NaN/Inf for items at batch positions {rows[:5]}"
                f"{' …' if len(rows) > 5 else ''} (half precision overflow? try dtype=torch.float32)",
                encoder_id=eid,
                layer=name,
                rows=rows,
            )


def _checked_encode(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` (an ``encode``) followed by :func:`check_output`; nested calls on the same encoder (``super().encode``,
    a dims probe) leave the check to the outermost one."""
    params = list(inspect.signature(fn).parameters)[1:3]  # the items and layers parameters, whatever their names

    @functools.wraps(fn)
    def encode(self: Encoder, *args: Any, **kwargs: Any) -> Any:
        depth = self.__dict__.get("_encode_depth", 0)
        self._encode_depth = depth + 1
        try:
            out = fn(self, *args, **kwargs)
            if depth == 0:
                given = dict(zip(params, args, strict=False)) | kwargs
                items = given.get(params[0]) if params else None
                n_items = len(items) if hasattr(items, "__len__") else None
                check_output(self, out, n_items, given.get(params[1]) if len(params) > 1 else None)
        finally:
            self._encode_depth = depth
        return out

    setattr(encode, _CHECKED, True)
    return encode


# ------------------------------------------------------------------------------------ registry

Factory = Callable[..., Encoder]

#: Options the runner supplies itself; never part of an encoder's user-facing option schema.
_RUNTIME_OPTIONS = ("self", "device", "dtype", "progress", "encoder_id", "identity_extra", "model", "tokenizer")


@dataclass(frozen=True)
class EncoderInfo(Entry[Factory]):
    """A registered encoder id (``offline:minilm-l6``) or family (``hf`` for ``hf:<name>``).

    ``options`` is the callable whose keyword parameters are the user's encoder options (the encoder
    class, read lazily so its signature is the one in force); ``layers`` the layer names it returns,
    when they are known without loading the model (a list, or a function of the options); ``constraints``
    tighten options beyond their annotations (``{"batch_size": {"low": 1}}``, ``{"pooling": {"choices": ...}}``;
    see :meth:`alignkit.registry.ParamSchema.from_callable`).
    """

    family: bool = False
    options: Callable[..., Any] | None = field(default=None, repr=False)
    fixed: tuple[str, ...] = ()  # options the factory sets itself
    layers: Sequence[str] | Callable[[dict[str, Any]], Sequence[str]] | None = field(default=None, repr=False)
    constraints: Mapping[str, dict[str, Any]] = field(default_factory=dict, repr=False)

    @property
    def pattern(self) -> str:
        return f"{self.name}:<name>" if self.family else self.name

    def option_schema(self) -> ParamSchema | None:
        """The accepted options (None: not declared, anything goes)."""
        target = self.options or self.obj
        target = target.__init__ if isinstance(target, type) else target
        params = inspect.signature(target).parameters.values()
        if self.options is None and any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
            return None  # a factory that forwards **options and declared no schema
        skip = (*_RUNTIME_OPTIONS, *self.fixed)
        schema = ParamSchema.from_callable(target, skip=skip, **dict(self.constraints))
        if self.family:  # the first parameter is the model name, given in the id
            schema = ParamSchema(schema.params[1:])
        return schema

    def layer_names(self, options: dict[str, Any] | None = None) -> list[str] | None:
        if self.layers is None:
            return None
        return list(self.layers(dict(options or {})) if callable(self.layers) else self.layers)

    def as_dict(self) -> dict[str, Any]:
        schema = self.option_schema()
        return {
            "id": self.pattern,
            "description": self.description,
            "options": None if schema is None else schema.describe(),
            "layers": self.layer_names(),
        }


#: Fixed encoder ids and ``family:<name>`` patterns.
ENCODERS: Registry[EncoderInfo] = Registry("encoder")


def _register(
    name: str,
    description: str,
    family: bool,
    options: Any,
    fixed: tuple[str, ...],
    layers: Any,
    replace: bool,
    constraints: Mapping[str, dict[str, Any]] | None = None,
) -> Callable[[Factory], Factory]:
    def deco(factory: Factory) -> Factory:
        info = EncoderInfo(
            name,
            factory,
            description,
            family=family,
            options=options,
            fixed=fixed,
            layers=layers,
            constraints=dict(constraints or {}),
        )
        ENCODERS.add(info, replace=replace)
        return factory

    return deco


def register_family(
    family: str,
    description: str,
    *,
    options: Callable[..., Any] | None = None,
    fixed: tuple[str, ...] = (),
    constraints: Mapping[str, dict[str, Any]] | None = None,
    replace: bool = False,
) -> Callable[[Factory], Factory]:
    """Register a factory ``f(name, **options) -> Encoder`` for ids ``"<family>:<name>"``.

    ``options``: the callable (usually the encoder class) whose keyword parameters are the accepted options;
    ``constraints``: option name → extra :class:`~alignkit.registry.Param` fields (ranges, choices, a validator).
    """
    return _register(family, description, True, options, fixed, None, replace, constraints)


def register_named(
    encoder_id: str,
    description: str,
    *,
    options: Callable[..., Any] | None = None,
    fixed: tuple[str, ...] = (),
    layers: Sequence[str] | Callable[[dict[str, Any]], Sequence[str]] | None = None,
    constraints: Mapping[str, dict[str, Any]] | None = None,
    replace: bool = False,
) -> Callable[[Factory], Factory]:
    """Register one fixed id (e.g. ``"offline:minilm-l6"``) with a factory ``f(**options)``.

    ``layers``: the layer names, when known without loading the model, so a run config naming a layer that
    does not exist fails before anything runs. ``constraints``: option name → extra
    :class:`~alignkit.registry.Param` fields (``{"batch_size": {"low": 1}}``), checked with the options.
    """
    return _register(encoder_id, description, False, options, fixed, layers, replace, constraints)


def encoder_info(encoder_id: str) -> EncoderInfo:
    """The registration behind an id: a fixed id, or the family of ``family:name``; did-you-mean if unknown."""
    if encoder_id in ENCODERS and not ENCODERS.get(encoder_id).family:
        return ENCODERS.get(encoder_id)
    family, sep, name = encoder_id.partition(":")
    if sep and name and family in ENCODERS and ENCODERS.get(family).family:
        return ENCODERS.get(family)
    candidates = [e.name if not e.family else f"{e.name}:" for e in ENCODERS]
    close = difflib.get_close_matches(encoder_id, candidates, n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
    fixed_ids = ", ".join(e.name for e in ENCODERS if not e.family)
    families = ", ".join(e.pattern for e in ENCODERS if e.family)
    raise ValueError(f"unknown encoder id {encoder_id!r}.{hint} Known: {fixed_ids}; families: {families}")


def check_encoder_options(encoder_id: str, options: dict[str, Any]) -> dict[str, Any]:
    """``options`` validated against the encoder's declared option schema (unchanged when none is declared)."""
    schema = encoder_info(encoder_id).option_schema()
    if schema is None:
        return dict(options)
    return schema.validate(options, f"encoder {encoder_id!r} option")


def available_encoders() -> dict[str, str]:
    """Fixed ids and family patterns with a one-line description each."""
    out = {e.name: e.description for e in ENCODERS if not e.family}
    out.update({e.pattern: e.description for e in ENCODERS if e.family})
    return out


def load_encoder(encoder_id: str, **options: Any) -> Encoder:
    """Build the encoder for ``encoder_id``; unknown ids fail with a did-you-mean, unknown options with the
    accepted ones."""
    info = encoder_info(encoder_id)
    runtime = {k: v for k, v in options.items() if k in _RUNTIME_OPTIONS}
    checked = check_encoder_options(encoder_id, {k: v for k, v in options.items() if k not in _RUNTIME_OPTIONS})
    if info.family:
        return info.obj(encoder_id.partition(":")[2], **checked, **runtime)
    return info.obj(**checked, **runtime)
