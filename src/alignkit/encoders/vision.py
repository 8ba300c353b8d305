"""Vision and image–text encoders: torchvision, timm and open_clip, every block pooled.

Ids:

- ``torchvision:<model>`` (e.g. ``torchvision:resnet50``; option ``weights="DEFAULT"`` or a weights enum name such
  as ``"IMAGENET1K_V2"``) — ``torchvision.models.get_model(name, weights=...)`` with the weights' own transforms.
- ``timm:<model>`` (e.g. ``timm:vit_small_patch16_224.augreg_in21k_ft_in1k``) — ``timm.create_model(name,
  pretrained=True)`` with ``timm.data.resolve_data_config`` + ``timm.data.create_transform``.
- ``open_clip:<model>/<pretrained>#image`` and ``open_clip:<model>/<pretrained>#text`` (e.g.
  ``open_clip:ViT-B-32/laion2b_s34b_b79k#image``; or ``tower="image" | "text"``) — the two towers of a CLIP model
  (Radford et al., 2021, "Learning Transferable Visual Models From Natural Language Supervision") as two encoders.

Layers: the pooled output of every top-level block (named after the block module, e.g. ``features.3``,
``layer2``, ``blocks.7``) in forward order, then ``final`` (torchvision/timm: the model's pre-logits pooled
features; open_clip: the projected embedding, unnormalised, exactly ``encode_image`` / ``encode_text``).

Pooling of a block output: a conv map ``[B, C, H, W]`` (or ``[B, H, W, C]`` for channels-last models such as Swin)
is averaged over spatial positions (``"mean"``); a token sequence ``[B, N, C]`` gives the CLS token (``"cls"``) when
the model classifies from its CLS token, else the mean over its non-prefix tokens (``"mean"``); text blocks of a
CLIP text tower are taken at the EOT token, as CLIP pools its text (``"eot"``).

These libraries download their weights on first use (the network is needed once; then their own caches are used).
torchvision must match the installed torch exactly: where it does not (as beside the CPU torch 2.13.0 build on the
project's machines), importing fails and :func:`import_torchvision` says how to fix it. For an encoder that needs
neither the network nor torchvision, see ``offline:mobilenet-v2``.
"""

from __future__ import annotations

import importlib
import re
from abc import abstractmethod
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from .base import Encoder, batch_starts, register_family  # noqa: F401  (batch_starts: re-exported from base)

# ----------------------------------------------------------------------------------------- optional imports


def _optional_import(name: str, extra_hint: str) -> Any:
    try:
        return importlib.import_module(name)
    except Exception as exc:  # ImportError, but also the RuntimeError/OSError of a torch/torchvision ABI mismatch
        raise ImportError(f"{name} could not be imported: {type(exc).__name__}: {exc}; {extra_hint}") from exc


def _torch_minor() -> tuple[int, int]:
    match = re.match(r"(\d+)\.(\d+)", torch.__version__)
    return (int(match.group(1)), int(match.group(2))) if match else (2, 0)


def import_torchvision() -> Any:
    """``import torchvision``, or an ImportError that says how to get a matching torch/torchvision pair."""
    major, minor = _torch_minor()
    hint = (
        f"torchvision must be built for the installed torch {torch.__version__}; install a matching "
        f"torch/torchvision pair, e.g. `pip install 'torch=={major}.{minor}.*' 'torchvision==0.{minor + 15}.*'` "
        "(torchvision 0.N+15 goes with torch 2.N; see https://pytorch.org/get-started/previous-versions/). "
        "Without torchvision, `offline:mobilenet-v2` gives a pretrained ImageNet MobileNetV2 with every block"
    )
    return _optional_import("torchvision", hint)


def import_timm() -> Any:
    """``import timm``, or an ImportError with the install hint (timm needs torchvision too)."""
    hint = (
        "install it with `pip install timm` (it also imports torchvision, which must match the installed torch "
        f"{torch.__version__}: install a matching torch/torchvision pair if that is what failed)"
    )
    return _optional_import("timm", hint)


def import_open_clip() -> Any:
    """``import open_clip``, or an ImportError with the install hint."""
    hint = (
        "install it with `pip install open_clip_torch` (it also imports torchvision, which must match the "
        f"installed torch {torch.__version__}: install a matching torch/torchvision pair if that is what failed)"
    )
    return _optional_import("open_clip", hint)


def import_pil() -> Any:
    """``PIL.Image``, or an ImportError with the install hint."""
    return _optional_import("PIL.Image", "install Pillow with `pip install pillow` (the `vision` extra)")


# ------------------------------------------------------------------------------------------------- images


def image_to_rgb_array(item: Any, index: int | str = "?") -> np.ndarray:
    """An image item as a uint8 ``H×W×3`` RGB array.

    Accepts a ``PIL.Image.Image`` (any mode; converted to RGB) or a uint8 numpy array ``H×W`` (grey),
    ``H×W×1`` (grey), ``H×W×3`` (RGB) or ``H×W×4`` (RGBA; alpha dropped). Grey images are repeated to 3 channels.
    """
    if type(item).__module__.startswith("PIL.") and hasattr(item, "convert"):
        return np.asarray(item.convert("RGB"), dtype=np.uint8)
    if not isinstance(item, np.ndarray):
        raise TypeError(
            f"image item {index}: expected a PIL image or a uint8 numpy array H×W or H×W×C; got {type(item).__name__}"
        )
    if item.dtype != np.uint8:
        raise TypeError(
            f"image item {index}: expected a uint8 array (values 0..255); got dtype {item.dtype} "
            "(convert with (x * 255).round().astype(np.uint8) if it holds floats in [0, 1])"
        )
    if item.ndim == 2:
        arr = item[:, :, None]
    elif item.ndim == 3 and item.shape[2] in (1, 3, 4):
        arr = item
    else:
        raise ValueError(f"image item {index}: expected shape H×W or H×W×C with C in (1, 3, 4); got {item.shape}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"image item {index}: empty image of shape {item.shape}")
    if arr.shape[2] == 1:
        arr = np.repeat(arr, 3, axis=2)
    elif arr.shape[2] == 4:
        arr = arr[:, :, :3]
    return np.ascontiguousarray(arr)


def image_to_pil(item: Any, index: int | str = "?") -> Any:
    """An image item as an RGB ``PIL.Image`` (what torchvision/timm/open_clip transforms expect)."""
    pil = import_pil()
    return pil.fromarray(image_to_rgb_array(item, index))


def grey_probe_image() -> np.ndarray:
    """A mid-grey 224×224 RGB image: the probe that reveals the widths of encoders that declare none."""
    return np.full((224, 224, 3), 128, dtype=np.uint8)


# ------------------------------------------------------------------------------------------------ pooling


def pool_block_output(
    out: Any, *, layout: str = "NCHW", token_pooling: str = "mean", num_prefix_tokens: int = 0
) -> torch.Tensor:
    """Pool one block's output to ``[B, d]``.

    - ``[B, d]``: returned as is;
    - ``[B, N, C]`` tokens: ``token_pooling="cls"`` takes token 0; ``"mean"`` averages tokens
      ``num_prefix_tokens:`` (CLS/register tokens excluded);
    - ``[B, C, H, W]`` (``layout="NCHW"``) or ``[B, H, W, C]`` (``layout="NHWC"``): mean over the spatial positions.

    A tuple/list output (some blocks return extras) is pooled from its first tensor.
    """
    if isinstance(out, (tuple, list)):
        out = next((o for o in out if isinstance(o, torch.Tensor)), None)
    if not isinstance(out, torch.Tensor):
        raise TypeError(f"cannot pool a block output of type {type(out).__name__}")
    if out.ndim == 2:
        return out
    if out.ndim == 3:
        if token_pooling == "cls":
            return out[:, 0]
        if token_pooling == "mean":
            tokens = out[:, num_prefix_tokens:] if out.shape[1] > num_prefix_tokens else out
            return tokens.mean(dim=1)
        raise ValueError(f"token_pooling must be 'cls' or 'mean'; got {token_pooling!r}")
    if out.ndim == 4:
        if layout == "NCHW":
            return out.mean(dim=(2, 3))
        if layout == "NHWC":
            return out.mean(dim=(1, 2))
        raise ValueError(f"layout must be 'NCHW' or 'NHWC'; got {layout!r}")
    raise ValueError(f"cannot pool a block output of shape {tuple(out.shape)} (expected 2-D, 3-D or 4-D)")


# ------------------------------------------------------------------------------------------ block discovery

#: containers whose children are the top-level blocks, tried in this order (rule 3 of :func:`resolve_blocks`)
BLOCK_CONTAINERS: tuple[str, ...] = (
    "features",  # torchvision MobileNet/EfficientNet/ConvNeXt/Swin/VGG/DenseNet
    "blocks",  # timm ViT/DeiT/EfficientNet/MobileNet
    "stages",  # timm ConvNeXt/ResNetV2/ByobNet/MaxViT
    "layers",  # timm Swin
    "encoder.layers",  # torchvision ViT
    "trunk_output",  # torchvision RegNet
    "transformer.resblocks",  # open_clip ViT visual tower
    "trunk.blocks",  # open_clip timm towers
    "trunk.stages",
)


def resolve_blocks(model: nn.Module, blocks: Sequence[str] | None = None) -> list[str]:
    """The module names of a model's top-level blocks, in forward order.

    Rule: (1) ``blocks`` when given (each must name a sub-module); else (2) the direct children named
    ``layer<k>`` (ResNet family: ``layer1..layer4``) when there are at least two; else (3) the children of the
    first of :data:`BLOCK_CONTAINERS` that exists and is an ``nn.Sequential``/``nn.ModuleList`` with at least two
    children; else a ValueError asking for ``blocks=[module names]``.
    """
    modules = dict(model.named_modules())
    if blocks is not None:
        names = list(blocks)
        if not names:
            raise ValueError("blocks must name at least one module")
        bad = [b for b in names if b not in modules or b == ""]
        if bad:
            sample = [n for n in modules if n and n.count(".") <= 1][:40]
            raise ValueError(f"blocks: no module(s) {bad} in {type(model).__name__}; top-level modules: {sample}")
        return names
    resnet = sorted(
        (n for n, _ in model.named_children() if re.fullmatch(r"layer\d+", n)), key=lambda n: int(n[len("layer") :])
    )
    if len(resnet) >= 2:
        return resnet
    for path in BLOCK_CONTAINERS:
        container = modules.get(path)
        if isinstance(container, (nn.Sequential, nn.ModuleList)) and len(container) >= 2:
            return [f"{path}.{name}" for name, _ in container.named_children()]
    raise ValueError(
        f"cannot find the blocks of {type(model).__name__} (looked for layer1..layerN and {list(BLOCK_CONTAINERS)}); "
        f"pass blocks=[module names], e.g. from [n for n, _ in model.named_children()] = "
        f"{[n for n, _ in model.named_children()]}"
    )


class _StopForward(Exception):
    """Raised by a hook once every requested layer has been captured, to skip the rest of the forward."""


class BlockCapture:
    """Forward hooks that pool the outputs of some modules of a model as they are computed.

    ``poolers[name]`` turns the module's raw output into ``[B, d]``. With ``stop_after`` set, the hook of that module
    raises :class:`_StopForward` (the forward pass is cut short; use :meth:`run`).
    """

    def __init__(self, model: nn.Module, poolers: dict[str, Callable[[Any], torch.Tensor]]) -> None:
        modules = dict(model.named_modules())
        self.model = model
        self.poolers = poolers
        self.modules = {name: modules[name] for name in poolers}
        self.outputs: dict[str, torch.Tensor] = {}
        self.stop_after: str | None = None

    def _hook(self, name: str) -> Callable[..., None]:
        def hook(_module: nn.Module, _inputs: Any, output: Any) -> None:
            self.outputs[name] = self.poolers[name](output).float()
            if name == self.stop_after:
                raise _StopForward

        return hook

    def run(self, names: Sequence[str], fn: Callable[[], Any], stop_early: bool) -> tuple[dict[str, torch.Tensor], Any]:
        """Call ``fn`` with hooks on ``names``; returns (pooled outputs, fn's result or None if cut short)."""
        self.outputs = {}
        self.stop_after = names[-1] if (stop_early and names) else None
        handles = [self.modules[n].register_forward_hook(self._hook(n)) for n in names]
        result = None
        try:
            result = fn()
        except _StopForward:
            pass
        finally:
            for h in handles:
                h.remove()
        return dict(self.outputs), result


# ------------------------------------------------------------------------------------ shared image encoder


class HookedImageEncoder(Encoder):
    """An image encoder over a library model: preprocess → forward with block hooks → pooled blocks + ``final``.

    Subclasses set ``self.model``, ``self.block_names``, ``self._poolers`` (per block) and implement
    :meth:`_preprocess` (items → ``[B, 3, H, W]``) and :meth:`_final` (batch → ``[B, d]`` pre-logits/embedding).
    """

    modality = "image"
    default_batch_size = 32

    model: nn.Module
    block_names: list[str]
    _poolers: dict[str, Callable[[Any], torch.Tensor]]
    has_final: bool = True

    def _setup(self) -> None:
        self.model = self._place(self.model)
        self._capture = BlockCapture(self.model, self._poolers)

    @property
    def layer_names(self) -> list[str]:
        return [*self.block_names, "final"] if self.has_final else list(self.block_names)

    @property
    def dims(self) -> dict[str, int]:
        return self._probe_dims(grey_probe_image())

    @abstractmethod
    def _preprocess(self, items: Sequence[Any], start: int) -> torch.Tensor:
        """The model-ready input batch."""

    @abstractmethod
    def _final(self, x: torch.Tensor) -> torch.Tensor:
        """The final (pre-logits or projected) embedding of a batch."""

    @torch.no_grad()
    def encode(self, items: Sequence[Any], layers: Sequence[str] | None = None) -> dict[str, torch.Tensor]:
        wanted = self.check_layers(layers)
        want_final = "final" in wanted
        blocks = [n for n in wanted if n != "final"]

        def run(batch: Sequence[Any], start: int) -> dict[str, torch.Tensor]:
            x = self._preprocess(batch, start).to(device=self.device, dtype=self.dtype)
            outs, final = self._capture.run(blocks, lambda: self._final(x), stop_early=not want_final)
            return {**outs, "final": final} if want_final else outs

        return self._batched(items, wanted, run)


# -------------------------------------------------------------------------------------------- torchvision


def _detect_layout(model: nn.Module, layout: str) -> str:
    if layout != "auto":
        if layout not in ("NCHW", "NHWC"):
            raise ValueError(f"layout must be 'auto', 'NCHW' or 'NHWC'; got {layout!r}")
        return layout
    if getattr(model, "output_fmt", "NCHW") == "NHWC" or type(model).__name__.startswith("SwinTransformer"):
        return "NHWC"
    return "NCHW"


class TorchvisionEncoder(HookedImageEncoder):
    """``torchvision.models.get_model(name, weights=weights)`` with the weights' transforms.

    ``final`` is the input of the model's last ``nn.Linear`` (its pre-logits features: e.g. the 1280-d pooled
    features of MobileNetV2, the 2048-d of ResNet-50, the CLS token after the last LayerNorm of ViT); models without
    a Linear head (SqueezeNet) have no ``final`` unless ``final_module`` names the module whose input to take.
    """

    def __init__(
        self,
        name: str,
        weights: str = "DEFAULT",
        blocks: Sequence[str] | None = None,
        token_pooling: str = "auto",
        layout: str = "auto",
        final_module: str | None = None,
        device: str | torch.device | None = None,
        dtype: torch.dtype = torch.float32,
        batch_size: int | None = None,
        progress: bool | None = None,
    ) -> None:
        super().__init__(device=device, dtype=dtype, batch_size=batch_size, progress=progress)
        tv = import_torchvision()
        try:
            weights_enum = tv.models.get_model_weights(name)
        except ValueError as exc:
            known = tv.models.list_models()
            raise ValueError(f"torchvision has no model {name!r}; known: {', '.join(known)}") from exc
        try:
            self.weights = weights_enum.verify(weights)
        except (KeyError, ValueError) as exc:
            raise ValueError(
                f"weights={weights!r} is not a weights name of torchvision {name}; "
                f"choose from {[w.name for w in weights_enum]} or 'DEFAULT'"
            ) from exc
        self.id = f"torchvision:{name}"
        self.name = name
        self.model = tv.models.get_model(name, weights=self.weights)
        self.transform = self.weights.transforms()
        self.block_names = resolve_blocks(self.model, blocks)
        layout = _detect_layout(self.model, layout)
        if token_pooling == "auto":
            token_pooling = "cls" if hasattr(self.model, "class_token") else "mean"
        if token_pooling not in ("cls", "mean"):
            raise ValueError(f"token_pooling must be 'auto', 'cls' or 'mean'; got {token_pooling!r}")
        self.pooling = token_pooling if hasattr(self.model, "class_token") else "mean"
        self._poolers = {
            b: (lambda o, tp=token_pooling, lay=layout: pool_block_output(o, layout=lay, token_pooling=tp))
            for b in self.block_names
        }
        self._head_name = final_module or self._last_linear()
        self.has_final = self._head_name is not None
        self._head_input: dict[str, torch.Tensor] = {}
        if self.has_final:
            modules = dict(self.model.named_modules())
            if self._head_name not in modules:
                raise ValueError(f"final_module: no module {self._head_name!r} in torchvision {name}")
            modules[self._head_name].register_forward_pre_hook(self._grab_head_input)
        self.tv_version = tv.__version__
        self._setup()

    def _last_linear(self) -> str | None:
        last = None
        for n, m in self.model.named_modules():
            if isinstance(m, nn.Linear) and not any(n.startswith(b + ".") for b in self.block_names):
                last = n
        return last

    def _grab_head_input(self, _module: nn.Module, inputs: tuple[Any, ...]) -> None:
        self._head_input["x"] = inputs[0]

    def identity(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "weights": str(self.weights),
            "url": getattr(self.weights, "url", None),
            "torchvision": self.tv_version,
            "blocks": list(self.block_names),
            "final_module": self._head_name,
        }

    def _preprocess(self, items: Sequence[Any], start: int) -> torch.Tensor:
        return torch.stack([self.transform(image_to_pil(it, start + i)) for i, it in enumerate(items)])

    def _final(self, x: torch.Tensor) -> torch.Tensor:
        self._head_input.clear()
        self.model(x)
        if not self.has_final:
            return torch.empty(x.shape[0], 0)
        feats = self._head_input["x"]
        return feats.flatten(1) if feats.ndim > 2 else feats


# --------------------------------------------------------------------------------------------------- timm


class TimmEncoder(HookedImageEncoder):
    """``timm.create_model(name, pretrained=True)``; ``final`` = ``forward_head(forward_features(x), pre_logits=True)``.

    Token blocks (ViT family) are pooled as the model pools: its CLS token when ``global_pool == "token"``, else the
    mean over the non-prefix tokens (override with ``token_pooling``).
    """

    def __init__(
        self,
        name: str,
        pretrained: bool = True,
        blocks: Sequence[str] | None = None,
        token_pooling: str = "auto",
        layout: str = "auto",
        device: str | torch.device | None = None,
        dtype: torch.dtype = torch.float32,
        batch_size: int | None = None,
        progress: bool | None = None,
    ) -> None:
        super().__init__(device=device, dtype=dtype, batch_size=batch_size, progress=progress)
        timm = import_timm()
        self.id = f"timm:{name}"
        self.name = name
        try:
            self.model = timm.create_model(name, pretrained=pretrained)
        except RuntimeError as exc:
            if "Unknown model" in str(exc):
                close = timm.list_models(f"*{name.split('.')[0]}*")[:10]
                raise ValueError(f"timm has no model {name!r}; similar: {close}") from exc
            raise
        self.pretrained = pretrained
        data_cfg = timm.data.resolve_data_config({}, model=self.model)
        self.transform = timm.data.create_transform(**data_cfg)
        self.block_names = resolve_blocks(self.model, blocks)
        layout = _detect_layout(self.model, layout)
        prefix = int(getattr(self.model, "num_prefix_tokens", 0) or 0)
        if token_pooling == "auto":
            has_cls = getattr(self.model, "cls_token", None) is not None
            token_pooling = "cls" if has_cls and getattr(self.model, "global_pool", "") == "token" else "mean"
        if token_pooling not in ("cls", "mean"):
            raise ValueError(f"token_pooling must be 'auto', 'cls' or 'mean'; got {token_pooling!r}")
        self.pooling = token_pooling
        self._poolers = {
            b: (
                lambda o, tp=token_pooling, lay=layout, p=prefix: pool_block_output(
                    o, layout=lay, token_pooling=tp, num_prefix_tokens=p
                )
            )
            for b in self.block_names
        }
        self.pretrained_cfg = {
            k: v
            for k, v in dict(getattr(self.model, "pretrained_cfg", {}) or {}).items()
            if k in ("architecture", "tag", "hf_hub_id", "url", "file")
        }
        self.timm_version = timm.__version__
        self._setup()

    def identity(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "pretrained": self.pretrained,
            "pretrained_cfg": self.pretrained_cfg,
            "timm": self.timm_version,
            "blocks": list(self.block_names),
        }

    def _preprocess(self, items: Sequence[Any], start: int) -> torch.Tensor:
        return torch.stack([self.transform(image_to_pil(it, start + i)) for i, it in enumerate(items)])

    def _final(self, x: torch.Tensor) -> torch.Tensor:
        feats = self.model.forward_features(x)
        return self.model.forward_head(feats, pre_logits=True)


# ---------------------------------------------------------------------------------------------- open_clip


def parse_open_clip_name(name: str, tower: str | None) -> tuple[str, str, str]:
    """``"<model>/<pretrained>[#tower]"`` → (model, pretrained, tower)."""
    base, _, id_tower = name.partition("#")
    model_name, sep, pretrained = base.partition("/")
    if not sep or not model_name or not pretrained:
        raise ValueError(
            f"open_clip id must look like 'open_clip:<model>/<pretrained>#image' (or '#text'), "
            f"e.g. 'open_clip:ViT-B-32/laion2b_s34b_b79k#image'; got 'open_clip:{name}'"
        )
    if id_tower and tower and id_tower != tower:
        raise ValueError(f"the id says tower {id_tower!r} but tower={tower!r} was passed")
    chosen = id_tower or tower
    if chosen not in ("image", "text"):
        raise ValueError(
            f"open_clip encoders need a tower: add '#image' or '#text' to the id (or pass tower='image'|'text'); "
            f"got {chosen!r}"
        )
    return model_name, pretrained, chosen


class _OpenClipBase(Encoder):
    def _load(self, model_name: str, pretrained: str, tower: str) -> Any:
        oc = import_open_clip()
        self.model_name, self.pretrained, self.tower = model_name, pretrained, tower
        self.id = f"open_clip:{model_name}/{pretrained}#{tower}"
        model, _, preprocess = oc.create_model_and_transforms(model_name, pretrained=pretrained)
        self.model = self._place(model)
        self.preprocess = preprocess
        self.oc_version = getattr(oc, "__version__", None)
        return oc

    def identity(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "model": self.model_name,
            "pretrained": self.pretrained,
            "tower": self.tower,
            "open_clip": self.oc_version,
        }

    @staticmethod
    def _transformer_blocks(transformer: Any) -> tuple[list[str], bool]:
        resblocks = getattr(transformer, "resblocks", None)
        if resblocks is None:
            return [], True
        # open_clip keeps LND inside the resblocks unless the transformer is batch_first (the default since 2.23)
        return [f"{i}" for i in range(len(resblocks))], bool(getattr(transformer, "batch_first", False))


class OpenClipImageEncoder(_OpenClipBase):
    """The image tower of an open_clip model: every visual block pooled + the projected image embedding."""

    modality = "image"
    default_batch_size = 32

    def __init__(
        self,
        model_name: str,
        pretrained: str,
        blocks: Sequence[str] | None = None,
        device: str | torch.device | None = None,
        dtype: torch.dtype = torch.float32,
        batch_size: int | None = None,
        progress: bool | None = None,
    ) -> None:
        super().__init__(device=device, dtype=dtype, batch_size=batch_size, progress=progress)
        self._load(model_name, pretrained, "image")
        visual = self.model.visual
        transformer = getattr(visual, "transformer", None)
        pool_type = getattr(visual, "pool_type", None)
        if pool_type is None:  # older open_clip
            pool_type = "avg" if getattr(visual, "global_average_pool", False) else "tok"
        token_pooling = "mean" if pool_type == "avg" else "cls"
        batch_first = bool(getattr(transformer, "batch_first", False)) if transformer is not None else True
        self.block_names = resolve_blocks(visual, blocks)
        self.pooling = token_pooling

        def pooler(o: Any) -> torch.Tensor:
            if isinstance(o, (tuple, list)):
                o = o[0]
            if o.ndim == 3 and not batch_first and transformer is not None:
                o = o.transpose(0, 1)
            return pool_block_output(o, token_pooling=token_pooling, num_prefix_tokens=1 if o.ndim == 3 else 0)

        self._capture = BlockCapture(visual, {b: pooler for b in self.block_names})

    @property
    def layer_names(self) -> list[str]:
        return [f"visual.{b}" for b in self.block_names] + ["final"]

    @property
    def dims(self) -> dict[str, int]:
        return self._probe_dims(grey_probe_image())

    @torch.no_grad()
    def encode(self, items: Sequence[Any], layers: Sequence[str] | None = None) -> dict[str, torch.Tensor]:
        wanted = self.check_layers(layers)
        want_final = "final" in wanted
        blocks = [n[len("visual.") :] for n in wanted if n != "final"]

        def run(batch: Sequence[Any], start: int) -> dict[str, torch.Tensor]:
            x = torch.stack([self.preprocess(image_to_pil(it, start + i)) for i, it in enumerate(batch)])
            x = x.to(device=self.device, dtype=self.dtype)
            outs, final = self._capture.run(blocks, lambda: self.model.encode_image(x), not want_final)
            out = {f"visual.{b}": outs[b] for b in blocks}
            return {**out, "final": final} if want_final else out

        return self._batched(items, wanted, run)


class OpenClipTextEncoder(_OpenClipBase):
    """The text tower of an open_clip model: every text block pooled at the EOT token, as CLIP pools its text
    (after ``ln_final`` only for ``final``), + the projected text embedding (``encode_text``)."""

    modality = "text"
    default_batch_size = 64
    pooling = "eot"

    def __init__(
        self,
        model_name: str,
        pretrained: str,
        device: str | torch.device | None = None,
        dtype: torch.dtype = torch.float32,
        batch_size: int | None = None,
        progress: bool | None = None,
    ) -> None:
        super().__init__(device=device, dtype=dtype, batch_size=batch_size, progress=progress)
        oc = self._load(model_name, pretrained, "text")
        self.tokenizer = oc.get_tokenizer(model_name)
        transformer = getattr(self.model, "transformer", None)
        if transformer is None and hasattr(self.model, "text"):  # CustomTextCLIP: text tower under .text
            transformer = getattr(self.model.text, "transformer", None)
            self._text_root = self.model.text
        else:
            self._text_root = self.model
        names, self._batch_first = self._transformer_blocks(transformer)
        self._transformer = transformer
        self.block_names = names  # empty for towers without resblocks (e.g. HF text towers): final only
        self._pool_type = getattr(self._text_root, "text_pool_type", getattr(self._text_root, "pool_type", "argmax"))
        self._eos_id = getattr(self._text_root, "text_eos_id", getattr(self._text_root, "eos_id", None))
        self._index: torch.Tensor | None = None

    @property
    def layer_names(self) -> list[str]:
        return [f"text.{b}" for b in self.block_names] + ["final"]

    @property
    def dims(self) -> dict[str, int]:
        return self._probe_dims("a photo")

    def _eot_index(self, text: torch.Tensor, seq_len: int) -> torch.Tensor:
        if self._pool_type == "first":
            return torch.zeros(text.shape[0], dtype=torch.long, device=text.device)
        if self._pool_type == "last":
            return torch.full((text.shape[0],), seq_len - 1, dtype=torch.long, device=text.device)
        if self._pool_type == "eos" and self._eos_id is not None:
            return (text == self._eos_id).int().argmax(dim=-1)
        return text.argmax(dim=-1)  # CLIP: the EOT token has the largest id

    def _pool(self, o: Any) -> torch.Tensor:
        if isinstance(o, (tuple, list)):
            o = o[0]
        if not self._batch_first:
            o = o.transpose(0, 1)
        assert self._index is not None
        idx = self._index if self._pool_type != "last" else torch.full_like(self._index, o.shape[1] - 1)
        return o[torch.arange(o.shape[0], device=o.device), idx]

    @torch.no_grad()
    def encode(self, items: Sequence[Any], layers: Sequence[str] | None = None) -> dict[str, torch.Tensor]:
        wanted = self.check_layers(layers)
        for i, it in enumerate(items):
            if not isinstance(it, str):
                raise TypeError(f"text item {i}: expected str; got {type(it).__name__}")
        want_final = "final" in wanted
        blocks = [n[len("text.") :] for n in wanted if n != "final"]
        capture = BlockCapture(self._transformer.resblocks, {b: self._pool for b in blocks}) if blocks else None

        def run(batch: Sequence[Any], start: int) -> dict[str, torch.Tensor]:
            text = self.tokenizer(list(batch)).to(self.device)
            self._index = self._eot_index(text, text.shape[1])
            if capture is not None:
                outs, final = capture.run(blocks, lambda: self.model.encode_text(text), not want_final)
            else:
                outs, final = {}, self.model.encode_text(text)
            out = {f"text.{b}": outs[b] for b in blocks}
            return {**out, "final": final} if want_final else out

        return self._batched(items, wanted, run)


# ----------------------------------------------------------------------------------------------- registry


@register_family(
    "torchvision",
    "torchvision.models.get_model(name, weights=...) (network for weights); every block",
    options=TorchvisionEncoder,
    constraints={
        "token_pooling": {"choices": ("auto", "cls", "mean")},
        "layout": {"choices": ("auto", "NCHW", "NHWC")},
        "batch_size": {"low": 1},
    },
)
def _torchvision_factory(name: str, **options: Any) -> Encoder:
    return TorchvisionEncoder(name, **options)


@register_family(
    "timm",
    "timm.create_model(name, pretrained=True) (network for weights); every block",
    options=TimmEncoder,
    constraints={
        "token_pooling": {"choices": ("auto", "cls", "mean")},
        "layout": {"choices": ("auto", "NCHW", "NHWC")},
        "batch_size": {"low": 1},
    },
)
def _timm_factory(name: str, **options: Any) -> Encoder:
    return TimmEncoder(name, **options)


@register_family("open_clip", "open_clip '<model>/<pretrained>#image|#text' (network for weights); one tower")
def _open_clip_factory(name: str, tower: str | None = None, **options: Any) -> Encoder:
    model_name, pretrained, chosen = parse_open_clip_name(name, tower)
    if chosen == "image":
        return OpenClipImageEncoder(model_name, pretrained, **options)
    return OpenClipTextEncoder(model_name, pretrained, **options)
