"""Zoo checkpoints: one safetensors file per network, its record in the safetensors metadata. No pickle.

Tensors: the network's state dict under its own names (``fc1.weight``, ``bn1.running_mean``, …); while a run is
unfinished, also the optimiser state (``optimizer/<parameter>/<slot>``), so that training resumes exactly. The
metadata key ``alignkit.zoo`` holds a JSON record: spec, seed, epochs done (of how many), training settings, data
digest, per-epoch history, test accuracy, versions. Files are written atomically (temporary file + ``os.replace``):
a killed run leaves the previous epoch's checkpoint.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from alignkit.io import atomic_write_bytes
from alignkit.zoo.architectures import build_model, check_spec, layer_names, spec_name, state_shapes

METADATA_KEY = "alignkit.zoo"
FORMAT = 1
OPTIMIZER_PREFIX = "optimizer/"
CHECKPOINT_SUFFIX = ".safetensors"


@dataclass
class ZooModel:
    """A zoo network (eval mode) with what it was trained as."""

    model: nn.Sequential
    spec: dict[str, Any]
    seed: int
    test_accuracy: float | None
    path: Path | None
    metadata: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def name(self) -> str:
        return f"{spec_name(self.spec)}-seed{self.seed}"

    @property
    def layers(self) -> list[str]:
        return layer_names(self.model)


def checkpoint_name(spec: dict[str, Any], seed: int) -> str:
    """``<spec name>-seed<seed>.safetensors``: how :func:`~alignkit.zoo.train_zoo` names its files."""
    return f"{spec_name(spec)}-seed{seed}{CHECKPOINT_SUFFIX}"


def write_checkpoint(
    path: str | os.PathLike[str],
    model: nn.Module,
    metadata: dict[str, Any],
    optimizer_state: dict[str, torch.Tensor] | None = None,
) -> Path:
    """Write ``model``'s state dict (plus optimiser tensors) and ``metadata`` to ``path`` atomically."""
    from safetensors.torch import save

    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    for k, v in (optimizer_state or {}).items():
        tensors[OPTIMIZER_PREFIX + k] = v.detach().cpu().contiguous().clone()
    record = {"format": FORMAT, **metadata}
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(p, save(tensors, metadata={METADATA_KEY: json.dumps(record, sort_keys=True)}))
    return p


def read_checkpoint(path: str | os.PathLike[str]) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """``(metadata, tensors)`` of a zoo checkpoint; ValueError/FileNotFoundError naming the file for a missing,
    empty, corrupt or foreign file."""
    from safetensors import safe_open

    p = Path(path).expanduser()
    if not p.exists():
        raise FileNotFoundError(f"zoo checkpoint not found: {p}")
    if not p.is_file():
        raise ValueError(f"{p}: is a folder; expected a zoo checkpoint file (.safetensors)")
    if p.stat().st_size == 0:
        raise ValueError(f"{p}: empty file; not a zoo checkpoint (a write that never finished? train it again)")
    try:
        with safe_open(str(p), framework="pt") as f:
            raw = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as exc:  # safetensors raises its own SafetensorError (and OSError) for bad files
        raise ValueError(
            f"{p}: corrupt or not a safetensors file ({type(exc).__name__}: {exc}); delete it and train it again"
        ) from None
    if METADATA_KEY not in raw:
        raise ValueError(
            f"{p}: a safetensors file without alignkit zoo metadata (no {METADATA_KEY!r} key); not a zoo checkpoint "
            "(make one with alignkit.zoo.train_model)"
        )
    try:
        meta = json.loads(raw[METADATA_KEY])
    except json.JSONDecodeError as exc:
        raise ValueError(f"{p}: its {METADATA_KEY!r} metadata is not valid JSON ({exc})") from None
    if not isinstance(meta, dict) or not {"spec", "seed", "epochs_done"} <= set(meta):
        raise ValueError(f"{p}: its {METADATA_KEY!r} metadata lacks spec, seed or epochs_done; not a zoo checkpoint")
    if meta.get("format") != FORMAT:
        raise ValueError(f"{p}: zoo checkpoint format {meta.get('format')!r}; this alignkit reads format {FORMAT}")
    return meta, tensors


def split_tensors(tensors: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """``(model tensors, optimiser tensors)`` of a checkpoint's tensors."""
    model = {k: v for k, v in tensors.items() if not k.startswith(OPTIMIZER_PREFIX)}
    opt = {k[len(OPTIMIZER_PREFIX) :]: v for k, v in tensors.items() if k.startswith(OPTIMIZER_PREFIX)}
    return model, opt


def _describe(spec: dict[str, Any]) -> str:
    key = "widths" if spec["arch"] == "mlp" else "channels"
    return f"arch {spec['arch']}, {key} {spec[key]}"


def model_from_tensors(path: Path, spec: dict[str, Any], tensors: dict[str, torch.Tensor]) -> nn.Sequential:
    """The network ``spec`` describes with ``tensors`` loaded, every key and shape checked (eval mode)."""
    expected = state_shapes(spec)
    missing = [k for k in expected if k not in tensors]
    unexpected = [k for k in tensors if k not in expected]
    what = f"checkpoint {path} was trained as {_describe(spec)}"
    if missing or unexpected:
        raise ValueError(f"{what}; it lacks tensor(s) {missing[:5]} and holds unexpected tensor(s) {unexpected[:5]}")
    for k, shape in expected.items():
        if tuple(tensors[k].shape) != shape:
            raise ValueError(f"{what}; tensor {k} has shape {tuple(tensors[k].shape)}, expected {shape}")
        if tensors[k].is_floating_point() and not bool(torch.isfinite(tensors[k]).all()):
            raise ValueError(f"{what}; tensor {k} holds NaN/Inf (training diverged?)")
    with torch.random.fork_rng(devices=[]):  # construction draws random initial weights; keep the caller's RNG
        model = build_model(spec)
    model.load_state_dict(tensors, strict=True)
    return model.eval()


def load_model(path: str | os.PathLike[str], *, allow_unfinished: bool = False) -> ZooModel:
    """The network of a zoo checkpoint, in eval mode, with its spec, seed and test accuracy.

    Raises FileNotFoundError for a missing file and ValueError naming the file for an empty, corrupt or foreign
    file, metadata that is missing or invalid, tensors that do not fit the recorded spec, and (unless
    ``allow_unfinished``) a run that stopped before its last epoch.
    """
    p = Path(path).expanduser()
    meta, tensors = read_checkpoint(p)
    try:
        spec = check_spec(meta["spec"])
    except ValueError as exc:
        raise ValueError(f"{p}: the spec it records is invalid: {exc}") from None
    if not meta.get("finished", False) and not allow_unfinished:
        raise ValueError(
            f"{p}: an unfinished run (epoch {meta['epochs_done']} of {meta.get('train', {}).get('epochs', '?')}); "
            "finish it with alignkit.zoo.train_model(..., out=this path) or pass allow_unfinished=True"
        )
    weights, _ = split_tensors(tensors)
    model = model_from_tensors(p, spec, weights)
    acc = meta.get("test_accuracy")
    return ZooModel(
        model, spec, int(meta["seed"]), None if acc is None or not math.isfinite(acc) else float(acc), p, meta
    )


def load_zoo(root: str | os.PathLike[str], spec: dict[str, Any] | None = None) -> list[ZooModel]:
    """Every finished checkpoint in folder ``root`` (those of ``spec`` only, when given), sorted by spec name
    and seed. Unfinished runs are left out; unreadable files raise (naming the file)."""
    folder = Path(root).expanduser()
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such folder (a zoo folder holds .safetensors checkpoints)")
    wanted = None if spec is None else check_spec(spec)
    out = []
    for f in sorted(folder.glob(f"*{CHECKPOINT_SUFFIX}")):
        if f.name.startswith("."):
            continue
        meta, _ = read_checkpoint(f)
        if not meta.get("finished", False) or (wanted is not None and check_spec(meta["spec"]) != wanted):
            continue
        out.append(load_model(f))
    return sorted(out, key=lambda z: (spec_name(z.spec), z.seed))
