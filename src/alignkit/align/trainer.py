"""One training loop for every trainable head, and ``HeadAligner``, the estimator built on it.

``fit_heads`` minimises ``loss(head_x(X_b), head_y(Y_b))`` over mini-batches of paired rows with AdamW
(or Lion), linear warm-up then cosine decay, gradient clipping and early stopping on validation top-1
retrieval X→Y, as SAIL (Zhang et al., "Assessing and Learning Alignment of Unimodal Vision and Language
Models", CVPR 2025) and STRUCTURE train their heads on cached embeddings (docs/methods.md §4.6-4.7).

Choices where docs/methods.md is silent:

- Batches: a seeded permutation per epoch; ``b = min(batch_size, n)`` and the ``n mod b`` leftover rows
  of each epoch are skipped (a tiny last batch is a poor contrastive batch); they differ every epoch.
- Weight decay applies only to head matrices (ndim ≥ 2); biases, LayerNorm, ``alpha_logit`` and every
  loss parameter (temperature, SigLIP scale and bias: a docs/methods.md §4.7 pitfall) are never decayed.
- Randomness: the permutation generator and the dropout RNG are re-seeded from ``(seed, epoch)`` at the
  start of each epoch (inside ``torch.random.fork_rng``, so the caller's global RNG is untouched). The
  RNG state of a run is therefore just ``(seed, epoch)``, and a resumed run is bit-identical.
- Checkpoints (no pickle): ``checkpoint.safetensors`` holds the heads, the loss parameters, the best
  weights so far and every optimizer state tensor, flattened as ``optim.<param index>.<key>`` (never
  ``torch.save``, which pickles);
  ``checkpoint.json`` holds the optimizer's param groups and non-tensor state, the global step (the
  learning-rate schedule is a pure function of it, so there is no scheduler object to save), epoch,
  early-stopping counters, history and a config fingerprint checked on resume. The safetensors file is
  written first and both carry the epoch, so a crash between the two writes is detected on load.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from alignkit._common import optional_import, unit_rows
from alignkit._progress import progress as _progress
from alignkit._validation import ArrayLike, as_pair, check_choice, check_min_rows
from alignkit.align.base import Aligner, register_aligner
from alignkit.align.heads import HEADS, build_head
from alignkit.align.loss_registry import LOSSES, build_loss, two_view_losses
from alignkit.align.losses import StructureRegularizer
from alignkit.io import atomic_write_bytes, atomic_write_text
from alignkit.ranking import X_TO_Y, paired_ranks, rank_summary

OPTIMIZERS: tuple[str, ...] = ("adamw", "lion")
CHECKPOINT_FORMAT = "alignkit.trainer.checkpoint/1"
_CKPT_TENSORS = "checkpoint.safetensors"
_CKPT_JSON = "checkpoint.json"

LossFn = Callable[[torch.Tensor, torch.Tensor], "torch.Tensor | Mapping[str, torch.Tensor]"]


@dataclass
class TrainResult:
    """What ``fit_heads`` returns: the heads and loss carrying the best weights, and one row per epoch.

    history rows: ``epoch``, ``step``, ``lr`` (at the epoch's last step), ``loss`` (mean over its
    batches), ``loss/<part>`` for each extra part a loss reports, ``param/<name>`` for scalar loss
    parameters (temperature, scale, bias), ``val_r1`` (top-1 retrieval X→Y, None without validation)
    and ``time_s``.
    """

    head_x: nn.Module
    head_y: nn.Module
    loss: nn.Module | LossFn
    history: list[dict[str, Any]] = field(default_factory=list)
    best_epoch: int | None = None
    best_val_r1: float | None = None
    stopped_early: bool = False
    finished: bool = True


# ------------------------------------------------------------------------------------------- helpers


def lr_factor(step: int, total_steps: int, warmup_steps: int) -> float:
    """Multiplier of the base lr at optimizer step ``step`` (0-based): ``(step+1)/w`` during warm-up, then
    ``½(1 + cos(π·(step − w)/(T − w)))`` (cosine decay to 0 at T = total steps)."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    span = max(1, total_steps - warmup_steps)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, (step - warmup_steps) / span)))


def _epoch_seed(seed: int, epoch: int) -> int:
    return (int(seed) * 1_000_003 + int(epoch)) % (2**63 - 1)


def _modules(head_x: nn.Module, head_y: nn.Module, loss: Any) -> dict[str, nn.Module]:
    mods: dict[str, nn.Module] = {"head_x": head_x}
    if head_y is not head_x:
        mods["head_y"] = head_y
    if isinstance(loss, nn.Module):
        mods["loss"] = loss
    return mods


def _unique_params(mods: dict[str, nn.Module]) -> list[tuple[str, str, nn.Parameter]]:
    seen: set[int] = set()
    out = []
    for owner, mod in mods.items():
        for name, p in mod.named_parameters():
            if p.requires_grad and id(p) not in seen:
                seen.add(id(p))
                out.append((owner, name, p))
    return out


def _param_groups(mods: dict[str, nn.Module], weight_decay: float) -> list[dict[str, Any]]:
    decay, no_decay = [], []
    for owner, _, p in _unique_params(mods):
        (no_decay if owner == "loss" or p.ndim < 2 else decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return [g for g in groups if g["params"]]


def _make_optimizer(name: str, groups: list[dict[str, Any]], lr: float) -> torch.optim.Optimizer:
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr)
    lion = optional_import("lion_pytorch", what="optimizer='lion' (or use optimizer='adamw')", package="lion-pytorch")
    return lion.Lion(groups, lr=lr)  # type: ignore[no-any-return]


def _embed(head: nn.Module, X: torch.Tensor, device: torch.device, dtype: torch.dtype, block: int) -> torch.Tensor:
    was_training = head.training
    head.eval()
    outs = []
    with torch.no_grad():
        for s in range(0, X.shape[0], block):
            outs.append(head(X[s : s + block].to(device=device, dtype=dtype)))
    head.train(was_training)
    return torch.cat(outs)


def _val_r1(head_x: nn.Module, head_y: nn.Module, Xv: torch.Tensor, Yv: torch.Tensor, device, dtype) -> float:
    """Validation R@1 X → Y of the held-out pairs: cosine, ties by expectation (not hits), as ``Aligner.score``."""
    zx = _embed(head_x, Xv, device, dtype, 8192)
    zy = _embed(head_y, Yv, device, dtype, 8192)
    return rank_summary(paired_ranks(zx, zy, metric="cosine")[X_TO_Y], (1,))["R@1"]


def _state(mods: dict[str, nn.Module]) -> dict[str, torch.Tensor]:
    return {f"{o}.{k}": v.detach().clone() for o, m in mods.items() for k, v in m.state_dict().items()}


def _load_state(mods: dict[str, nn.Module], flat: Mapping[str, torch.Tensor]) -> None:
    for o, m in mods.items():
        prefix = f"{o}."
        m.load_state_dict({k[len(prefix) :]: v for k, v in flat.items() if k.startswith(prefix)})


def _scalar_params(loss: Any) -> dict[str, float]:
    if not isinstance(loss, nn.Module):
        return {}
    return {f"param/{n}": float(p.detach()) for n, p in loss.named_parameters() if p.numel() == 1}


def _loss_parts(out: Any) -> tuple[torch.Tensor, dict[str, float]]:
    """Total and named parts from a loss output: a scalar tensor, a mapping with the total under ``"loss"``,
    or a ``(total, {part: value})`` pair (``CombinedLoss``)."""
    if isinstance(out, torch.Tensor):
        total, parts = out, {}
    elif isinstance(out, Mapping):
        if "loss" not in out:
            raise ValueError("a loss returning a mapping must put the total under 'loss'")
        total, parts = out["loss"], {k: v for k, v in out.items() if k != "loss"}
    elif isinstance(out, tuple) and len(out) == 2 and isinstance(out[0], torch.Tensor):
        total, parts = out[0], dict(out[1])
    else:
        raise TypeError(f"the loss must return a scalar tensor, a mapping or (total, parts); got {type(out).__name__}")
    if total.numel() != 1:
        raise ValueError(f"the loss must be a scalar; got shape {tuple(total.shape)}")
    return total, {k: float(v.detach()) if isinstance(v, torch.Tensor) else float(v) for k, v in parts.items()}


def _add_structure(
    reg: StructureRegularizer,
    step: int,
    total: torch.Tensor,
    parts: dict[str, float],
    xb: torch.Tensor,
    zx: torch.Tensor,
    yb: torch.Tensor,
    zy: torch.Tensor,
) -> tuple[torch.Tensor, dict[str, float]]:
    """``total + λ_t·R`` with ``R = (R_S(x, z_x) + R_S(y, z_y))/2``; R is computed without a graph while λ_t = 0."""
    lam = reg.weight(step)
    if lam > 0:
        rs = reg(xb, zx, yb, zy)
        out = total + lam * rs
    else:
        with torch.no_grad():
            rs = reg(xb, zx, yb, zy)
        out = total
    parts = {"contrastive": float(total.detach()), **parts, "structure": float(rs.detach()), "structure_lambda": lam}
    return out, parts


def _check_positive_int(value: Any, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}; got {value!r}")
    return int(value)


def _check_nonneg(value: Any, name: str, positive: bool = False) -> float:
    ok = isinstance(value, (int, float, np.floating)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < 0 or (positive and value == 0):
        raise ValueError(f"{name} must be a finite {'positive' if positive else 'non-negative'} number; got {value!r}")
    return float(value)


# --------------------------------------------------------------------------------------- checkpoints


def _save_checkpoint(
    directory: Path,
    mods: dict[str, nn.Module],
    best: dict[str, torch.Tensor] | None,
    opt: torch.optim.Optimizer,
    meta: dict[str, Any],
) -> None:
    from safetensors.torch import save as st_save

    tensors = {f"model.{k}": v.cpu().contiguous() for k, v in _state(mods).items()}
    if best is not None:
        tensors.update({f"best.{k}": v.detach().cpu().contiguous().clone() for k, v in best.items()})
    sd = opt.state_dict()
    scalars: dict[str, dict[str, Any]] = {}
    for idx, st in sd["state"].items():
        for key, val in st.items():
            if isinstance(val, torch.Tensor):
                tensors[f"optim.{idx}.{key}"] = val.detach().cpu().contiguous().clone()
            else:
                scalars.setdefault(str(idx), {})[key] = val
    groups = [{k: (list(v) if isinstance(v, tuple) else v) for k, v in g.items()} for g in sd["param_groups"]]
    epoch = str(meta["epoch"])
    directory.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(
        directory / _CKPT_TENSORS, st_save(tensors, metadata={"epoch": epoch, "format": CHECKPOINT_FORMAT})
    )
    doc = {**meta, "format": CHECKPOINT_FORMAT, "optimizer": {"param_groups": groups, "state_scalars": scalars}}
    atomic_write_text(directory / _CKPT_JSON, json.dumps(doc, indent=1, allow_nan=False))


def _load_checkpoint(directory: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    from safetensors import safe_open

    jpath, tpath = directory / _CKPT_JSON, directory / _CKPT_TENSORS
    if not tpath.exists():
        raise ValueError(f"{directory}: {_CKPT_JSON} exists but {_CKPT_TENSORS} is missing; delete the checkpoint")
    doc = json.loads(jpath.read_text())
    if doc.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{jpath}: not an alignkit trainer checkpoint (format {doc.get('format')!r})")
    with safe_open(str(tpath), framework="pt") as f:
        if (f.metadata() or {}).get("epoch") != str(doc["epoch"]):
            raise ValueError(
                f"{directory}: {_CKPT_TENSORS} and {_CKPT_JSON} are from different epochs (interrupted write); "
                "delete the checkpoint to restart"
            )
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    return doc, tensors


def _optimizer_state(doc: dict[str, Any], tensors: dict[str, torch.Tensor]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for k, v in tensors.items():
        if k.startswith("optim."):
            _, idx, key = k.split(".", 2)
            state.setdefault(int(idx), {})[key] = v
    for idx, vals in doc["optimizer"]["state_scalars"].items():
        state.setdefault(int(idx), {}).update(vals)
    groups = [
        {k: (tuple(v) if isinstance(v, list) and k != "params" else v) for k, v in g.items()}
        for g in doc["optimizer"]["param_groups"]
    ]
    return {"state": state, "param_groups": groups}


# ---------------------------------------------------------------------------------------------- loop


def fit_heads(
    X: ArrayLike,
    Y: ArrayLike,
    head_x: nn.Module,
    head_y: nn.Module | None,
    loss: nn.Module | LossFn,
    *,
    val: tuple[ArrayLike, ArrayLike] | None = None,
    batch_size: int = 4096,
    epochs: int = 10,
    lr: float = 1e-3,
    weight_decay: float = 1e-4,
    warmup_steps: int = 0,
    optimizer: str = "adamw",
    grad_clip: float | None = 1.0,
    patience: int | None = None,
    seed: int = 0,
    device: str | torch.device | None = None,
    checkpoint_dir: str | Path | None = None,
    resume: bool = True,
    stop_after: int | None = None,
    progress: bool = True,
    structure: StructureRegularizer | None = None,
) -> TrainResult:
    """Train ``head_x`` (on X) and ``head_y`` (on Y; None or the same module = one shared head) in place.

    Each step draws b paired rows by a seeded permutation, computes ``loss(head_x(X_b), head_y(Y_b))``
    (a scalar, or a mapping with the total under ``"loss"`` and extra parts), clips the global gradient
    norm to ``grad_clip``, steps the optimizer with ``lr·lr_factor(step)`` and calls ``loss.clamp_()`` if
    the loss has one (SigLIP's scale clamp). After each epoch, top-1 retrieval X→Y on ``val`` decides
    the best epoch; ``patience`` epochs without a strict improvement stop training. The returned heads
    (the same objects) carry the best weights (the last ones without ``val``).

    X, Y may be memory-mapped arrays: only each batch's rows are gathered and moved to ``device``.
    ``checkpoint_dir`` saves a checkpoint after every epoch and, with ``resume``, continues from one
    (its config must match). ``stop_after`` ends the call after that many epochs while keeping the
    schedule of ``epochs`` (time-sliced jobs: call again with the same arguments to continue).

    ``structure`` (a :class:`~alignkit.align.losses.StructureRegularizer`) adds STRUCTURE's regulariser on the
    frozen inputs: ``total = loss + λ_t·(R_S(X_b, head_x(X_b)) + R_S(Y_b, head_y(Y_b)))/2`` with λ_t a pure
    function of the global step (so resume is exact); history then also has ``loss/contrastive``,
    ``loss/structure`` (unweighted R_S) and ``loss/structure_lambda``. While λ_t = 0 (start of the warm-up,
    or λ = 0) R_S is only logged, under ``no_grad``, so a λ = 0 run trains exactly like a plain one.
    """
    x, y = as_pair(X, Y)
    n = x.shape[0]
    check_min_rows(n, 2, "fit_heads")
    batch_size = _check_positive_int(batch_size, "batch_size", 2)
    epochs = _check_positive_int(epochs, "epochs")
    lr = _check_nonneg(lr, "lr", positive=True)
    weight_decay = _check_nonneg(weight_decay, "weight_decay")
    warmup_steps = _check_positive_int(warmup_steps, "warmup_steps", 0)
    check_choice(optimizer, OPTIMIZERS, "optimizer")
    if grad_clip is not None:
        grad_clip = _check_nonneg(grad_clip, "grad_clip", positive=True)
    if patience is not None:
        patience = _check_positive_int(patience, "patience")
    if stop_after is not None:
        stop_after = _check_positive_int(stop_after, "stop_after")
    if structure is not None and not isinstance(structure, StructureRegularizer):
        raise TypeError(f"structure must be a StructureRegularizer or None; got {type(structure).__name__}")
    if head_y is None:
        head_y = head_x
    xv = yv = None
    if val is not None:
        if not isinstance(val, (tuple, list)) or len(val) != 2:
            raise TypeError("val must be a pair (X_val, Y_val)")
        xv, yv = as_pair(val[0], val[1], ("X_val", "Y_val"))
        check_min_rows(xv.shape[0], 2, "validation retrieval")
        for a, b, nm in ((x, xv, "X"), (y, yv, "Y")):
            if a.shape[1] != b.shape[1]:
                raise ValueError(f"{nm}_val has {b.shape[1]} features but {nm} has {a.shape[1]}")

    for head, data, nm in ((head_x, x, "X"), (head_y, y, "Y")):
        d_in = getattr(head, "d_in", None)
        if d_in is not None and d_in != data.shape[1]:
            raise ValueError(f"head_{nm.lower()} expects {d_in} input features but {nm} has {data.shape[1]}")
    dev = torch.device(device) if device is not None else x.device
    mods = _modules(head_x, head_y, loss)
    for m in mods.values():
        m.to(dev)
    params = _unique_params(mods)
    if not params:
        raise ValueError("the heads and loss have no trainable parameters")
    dtype = params[0][2].dtype
    b = min(batch_size, n)
    steps_per_epoch = n // b
    total_steps = epochs * steps_per_epoch
    if structure is not None:
        structure.resolve(total_steps)
    opt = _make_optimizer(optimizer, _param_groups(mods, weight_decay), lr)
    config = {
        "n": n, "d_x": x.shape[1], "d_y": y.shape[1], "batch_size": b, "epochs": epochs, "lr": lr,
        "weight_decay": weight_decay, "warmup_steps": warmup_steps, "optimizer": optimizer, "grad_clip": grad_clip,
        "patience": patience, "seed": int(seed), "n_val": None if xv is None else xv.shape[0],
        "modules": sorted(mods), "n_params": sum(p.numel() for *_, p in params),
        "structure": None if structure is None else structure.config(),
    }  # fmt: skip

    start_epoch, step, history = 0, 0, []
    best_state: dict[str, torch.Tensor] | None = None
    best_epoch: int | None = None
    best_score = -math.inf
    bad_epochs, stopped_early, finished = 0, False, False
    ckpt = Path(checkpoint_dir) if checkpoint_dir is not None else None
    if ckpt is not None and resume and (ckpt / _CKPT_JSON).exists():
        doc, tensors = _load_checkpoint(ckpt)
        diff = sorted(k for k in config if doc["config"].get(k) != config[k])
        if diff:
            details = ", ".join(f"{k}: checkpoint {doc['config'].get(k)!r} vs now {config[k]!r}" for k in diff)
            raise ValueError(f"{ckpt}: checkpoint was made with a different configuration ({details})")
        _load_state(mods, {k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
        best = {k[5:]: v for k, v in tensors.items() if k.startswith("best.")}
        best_state = best or None
        opt.load_state_dict(_optimizer_state(doc, tensors))
        start_epoch, step, history = doc["epoch"], doc["step"], doc["history"]
        best_epoch, bad_epochs = doc["best_epoch"], doc["bad_epochs"]
        best_score = -math.inf if doc["best_score"] is None else doc["best_score"]
        stopped_early, finished = doc["stopped_early"], doc["finished"]

    fork_devices = [dev.index or 0] if dev.type == "cuda" else []
    bar = _progress(total=epochs, initial=start_epoch, show=progress, desc="fit heads", unit="epoch")
    try:
        with torch.random.fork_rng(devices=fork_devices):
            epoch = start_epoch
            while not finished and epoch < epochs and (stop_after is None or epoch < stop_after):
                t0 = time.perf_counter()
                eseed = _epoch_seed(seed, epoch)
                # dropout RNG: only the training device's generator (inside fork_rng, restored afterwards)
                if dev.type == "cuda":
                    torch.cuda.manual_seed(eseed)
                else:
                    torch.default_generator.manual_seed(eseed)
                perm = torch.randperm(n, generator=torch.Generator().manual_seed(eseed))
                for m in mods.values():
                    m.train()
                sums: dict[str, float] = {}
                cur_lr = lr
                for s in range(steps_per_epoch):
                    idx = perm[s * b : (s + 1) * b]
                    xb = x[idx].to(device=dev, dtype=dtype, non_blocking=True)
                    yb = y[idx].to(device=dev, dtype=dtype, non_blocking=True)
                    zx, zy = head_x(xb), head_y(yb)
                    total, parts = _loss_parts(loss(zx, zy))
                    if structure is not None:
                        total, parts = _add_structure(structure, step, total, parts, xb, zx, yb, zy)
                    if not bool(torch.isfinite(total)):
                        raise FloatingPointError(
                            f"loss became {float(total)} at epoch {epoch}, step {step}; lower lr or check inputs"
                        )
                    cur_lr = lr * lr_factor(step, total_steps, warmup_steps)
                    for g in opt.param_groups:
                        g["lr"] = cur_lr
                    opt.zero_grad(set_to_none=True)
                    total.backward()
                    if grad_clip is not None:
                        nn.utils.clip_grad_norm_([p for *_, p in params], grad_clip)
                    opt.step()
                    if hasattr(loss, "clamp_"):
                        with torch.no_grad():
                            loss.clamp_()
                    step += 1
                    sums["loss"] = sums.get("loss", 0.0) + float(total.detach())
                    for k, v in parts.items():
                        sums[f"loss/{k}"] = sums.get(f"loss/{k}", 0.0) + float(v)
                epoch += 1
                row: dict[str, Any] = {"epoch": epoch, "step": step, "lr": cur_lr}
                row.update({k: v / steps_per_epoch for k, v in sums.items()})
                row.update(_scalar_params(loss))
                r1 = None
                if xv is not None:
                    r1 = _val_r1(head_x, head_y, xv, yv, dev, dtype)
                    if r1 > best_score:
                        best_score, best_epoch, bad_epochs, best_state = r1, epoch, 0, _state(mods)
                    else:
                        bad_epochs += 1
                        if patience is not None and bad_epochs >= patience:
                            stopped_early = True
                row["val_r1"] = r1
                row["time_s"] = time.perf_counter() - t0
                history.append(row)
                finished = stopped_early or epoch >= epochs
                bar.update(1)
                bar.set_postfix(loss=f"{row['loss']:.4f}", val_r1="-" if r1 is None else f"{r1:.3f}")
                if ckpt is not None:
                    meta = {
                        "epoch": epoch, "step": step, "history": history, "config": config,
                        "best_epoch": best_epoch, "best_score": None if best_epoch is None else best_score,
                        "bad_epochs": bad_epochs, "stopped_early": stopped_early, "finished": finished,
                        "rng": {"scheme": "generator seeded with seed*1000003 + epoch per epoch", "seed": seed},
                    }  # fmt: skip
                    _save_checkpoint(ckpt, mods, best_state, opt, meta)
    finally:
        bar.close()
    if finished and best_state is not None:
        _load_state(mods, best_state)
    for m in mods.values():
        m.eval()
    return TrainResult(
        head_x=head_x,
        head_y=head_y,
        loss=loss,
        history=history,
        best_epoch=best_epoch if best_epoch is not None else (len(history) or None),
        best_val_r1=None if best_epoch is None else best_score,
        stopped_early=stopped_early,
        finished=finished,
    )


# ------------------------------------------------------------------------------------------ estimator


def _flatten(mods: dict[str, nn.Module]) -> np.ndarray:
    parts = [v.detach().cpu().double().reshape(-1) for v in _state(mods).values()]
    return torch.cat(parts).numpy() if parts else np.zeros(0)


def _unflatten(mods: dict[str, nn.Module], flat: np.ndarray) -> None:
    state = _state(mods)
    need = sum(v.numel() for v in state.values())
    if flat.ndim != 1 or flat.size != need:
        raise ValueError(f"saved weights_ has {flat.size} values; the configured heads and loss need {need}")
    out, pos = {}, 0
    for k, v in state.items():
        out[k] = torch.from_numpy(flat[pos : pos + v.numel()]).reshape(v.shape).to(v.dtype)
        pos += v.numel()
    _load_state(mods, out)


def _two_view_loss(name: str) -> str:
    if not LOSSES.get(name).two_view:
        raise ValueError(f"loss {name!r} cannot train two heads on paired rows; use one of {two_view_losses()}")
    return name


def _known_head(name: str) -> str:
    return HEADS.get(name).name


def _optional_dict(value: Any) -> Any:
    if value is not None and not isinstance(value, dict):
        raise TypeError(f"must be a mapping of parameter names to values or None; got {type(value).__name__}")
    return value


@register_aligner(
    "head",
    constraints={
        "head": {"validator": _known_head},
        "loss": {"validator": _two_view_loss},
        "d_out": {"low": 1},
        "head_kwargs": {"validator": _optional_dict},
        "loss_kwargs": {"validator": _optional_dict},
        "structure": {"low": 0.0},
        "structure_kwargs": {"validator": _optional_dict},
        "epochs": {"low": 1},
        "batch_size": {"low": 2},
        "lr": {"low": 0.0, "low_open": True},
        "weight_decay": {"low": 0.0},
        "warmup_steps": {"low": 0},
        "optimizer": {"choices": OPTIMIZERS},
        "grad_clip": {"low": 0.0, "low_open": True},
        "patience": {"low": 1},
        "val_fraction": {"low": 0.0, "high": 1.0, "high_open": True},
    },
)
class HeadAligner(Aligner):
    """Two trainable heads (or one ``shared`` head) mapping X and Y into a d_out-dimensional shared space,
    trained with ``fit_heads`` under symmetric InfoNCE or SigLIP (SAIL: Zhang et al., "Assessing and Learning
    Alignment of Unimodal Vision and Language Models", CVPR 2025).

    ``transform_x(X) = normalise(head_x(X))`` (the unit sphere the loss is defined on). ``fit(X, Y, val=...)``
    takes an explicit validation pair; otherwise ``val_fraction`` > 0 holds out a seeded random part of the
    pairs for early stopping (``patience``). Heads train in float32; outputs follow the base (float64).
    Learned: ``weights_`` (every head and loss weight, one flat float64 vector: what ``save`` stores),
    ``history_``, ``best_epoch_``; ``head_x_``, ``head_y_`` (one module when shared) and ``loss_`` are
    the modules, rebuilt from ``weights_`` after ``load``.

    ``structure`` = λ (None: off) adds the STRUCTURE regulariser (Gröger, Wen, Le, Brbić, "With Limited Data for
    Multimodal Alignment, Let the STRUCTURE Guide You", NeurIPS 2025) on the cached inputs:
    ``L = L_contrastive + λ_t·(R_S(X_b, head_x(X_b)) + R_S(Y_b, head_y(Y_b)))/2``, ``λ_t = λ·min(1, t/warmup)``.
    STRUCTURE uses λ = 10. ``structure_kwargs`` may set ``levels`` (L, default 1), ``tau`` (0.05), ``margin``
    (0), ``weighting`` ("none" | "inverse"), ``divergence`` ("code", the authors' ½[KL(M‖A)+KL(M‖B)], or "js"),
    ``warmup_steps`` (1,000, STRUCTURE's) or ``warmup_fraction`` (of this run's optimiser steps; overrides
    ``warmup_steps``, handy for short runs on few pairs, where 1,000 steps may never be reached). R_S costs
    O(L·b²·d + (L−1)·b³) per batch of b pairs. λ = 0 trains exactly like ``structure=None``.

    Defaults for few pairs (cached-embedding alignment often has 10³–10⁴ pairs; docs/methods.md is silent on both):

    - ``batch_size=None`` uses ``b = min(4096, max(256, n // 8))`` for n training pairs, so an epoch has ≥ 8
      steps once n ≥ 2,048 (a fixed 4,096 gives one full-batch step per epoch below 4,096 pairs: 20 steps in
      all, and linear + InfoNCE reached 42 % top-1 on 1,500 Bible pairs where b = 256 reached 82 %).
    - ``warmup_steps=None`` warms the lr up linearly over 10 % of the optimiser steps. Without warm-up, Adam's
      first steps move every weight by about lr at once; for a StarMLP (two d_in → 8·d_in branches, ~4 M
      weights a side) that is a large, mostly shared (common-mode) change of all outputs. Under SigLIP with
      its SAIL init (t = 10, b = −10, so σ(ℓ) ≈ 0 for every pair and only the positives pull) the cheapest
      descent direction is that common mode: all cross-space cosines, positive and negative alike, drift to
      the constant c* where ``σ(t·c* + b)·(N−1) = σ(−t·c* − b)`` (c* ≈ 0.45 at N = 256), the outputs collapse
      onto one direction and learning stalls (star + SigLIP: 0.6 % top-1 on 1,500 pairs; with the 10 %
      warm-up 60 %). ``warmup_steps=0`` restores the old behaviour.
    - ``lr=None`` is 1e-3, times ``min(1, 1024 / (expansion·d_in))`` for ``head="star"`` (3.3e-4 for 384-d
      inputs): its output layer g has fan-in expansion·d_in, and one Adam step moves every weight by ≈ lr, so
      the change of the outputs grows with that fan-in (the µP argument for scaling Adam's lr by 1/fan-in).
      On 768 Bible pairs (60 steps, warm-up on) star + SigLIP reached 3 % top-1 at lr 1e-3 and 46 % at 3e-4;
      on 32-d inputs (fan-in 256) 1e-3 is right.
    - ``loss="siglip"`` uses the official per-row sum ``−(1/N)Σ_iΣ_j`` unless ``loss_kwargs`` sets
      ``reduction`` (the ``SigLIP`` module keeps SAIL's mean over N² entries, docs/methods.md §4.7). Under AdamW the
      two differ only through gradient clipping: SAIL's mean makes the gradient N× smaller, so ``grad_clip=1``
      never acts. On the 768 pairs above: mean 46 %, per-row sum 59 %, mean with ``grad_clip=1/256`` 61 %.
    """

    _arrays = ("weights_",)
    _scalars = ("best_epoch_", "history_")
    _shapes: ClassVar[dict[str, tuple[str | int, ...]]] = {"weights_": ("n_weights",)}  # one flat vector
    _rebuild_on_load: ClassVar[str] = "_networks"  # rebuilds the heads: weights_ must fit them exactly
    _min_pairs = 2

    def __init__(
        self,
        head: str = "star",
        d_out: int = 512,
        loss: str = "infonce",
        shared: bool = False,
        head_kwargs: dict[str, Any] | None = None,
        loss_kwargs: dict[str, Any] | None = None,
        structure: float | None = None,
        structure_kwargs: dict[str, Any] | None = None,
        epochs: int = 20,
        batch_size: int | None = None,
        lr: float | None = None,
        weight_decay: float = 1e-4,
        warmup_steps: int | None = None,
        optimizer: str = "adamw",
        grad_clip: float | None = 1.0,
        patience: int | None = None,
        val_fraction: float = 0.0,
        seed: int = 0,
        device: str | None = None,
        checkpoint_dir: str | None = None,
        progress: bool = False,
    ) -> None:
        self.head = head
        self.d_out = d_out
        self.loss = loss
        self.shared = shared
        self.head_kwargs = head_kwargs
        self.loss_kwargs = loss_kwargs
        self.structure = structure
        self.structure_kwargs = structure_kwargs
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.warmup_steps = warmup_steps
        self.optimizer = optimizer
        self.grad_clip = grad_clip
        self.patience = patience
        self.val_fraction = val_fraction
        self.seed = seed
        self.device = device
        self.checkpoint_dir = checkpoint_dir
        self.progress = progress

    def _build(self, d_x: int, d_y: int) -> tuple[nn.Module, nn.Module, nn.Module]:
        hp = self._hp
        if hp["shared"] and d_x != d_y:
            raise ValueError(f"shared=True needs X and Y of one dimension; got d_x={d_x}, d_y={d_y}")
        kw = dict(hp["head_kwargs"] or {})
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(hp["seed"]))
            hx = build_head(hp["head"], d_x, hp["d_out"], **kw)
            hy = hx if hp["shared"] else build_head(hp["head"], d_y, hp["d_out"], **kw)
        loss_kw = dict(hp["loss_kwargs"] or {})
        if hp["loss"] == "siglip":
            loss_kw.setdefault("reduction", "sum_rows")
        return hx, hy, build_loss(hp["loss"], **loss_kw)

    def _structure(self) -> StructureRegularizer | None:
        if self._hp["structure"] is None:
            if self._hp["structure_kwargs"]:
                raise ValueError("structure_kwargs is set but structure (λ) is None; set structure=10.0 to use it")
            return None
        return StructureRegularizer.from_kwargs(self._hp["structure"], self._hp["structure_kwargs"])

    def fit(self, X: ArrayLike, Y: ArrayLike, val: tuple[ArrayLike, ArrayLike] | None = None) -> HeadAligner:
        """Train on paired rows ``X[i] ↔ Y[i]`` (memory-mapped arrays are read batch by batch)."""
        hp = self._validate_params()
        structure = self._structure()
        x, y = as_pair(X, Y)
        self._check_training_spaces(x, y)
        check_min_rows(x.shape[0], self._min_pairs, type(self).__name__)
        frac, seed = hp["val_fraction"], hp["seed"]
        if val is None and frac > 0:
            n_val = round(frac * x.shape[0])
            if n_val < 2 or x.shape[0] - n_val < 2:
                raise ValueError(f"val_fraction={frac} leaves too few pairs to train or validate (n={x.shape[0]})")
            perm = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(seed))
            tr, va = perm[n_val:].sort().values, perm[:n_val].sort().values
            val, x, y = (x[va], y[va]), x[tr], y[tr]
        batch_size, warmup_steps = self._schedule(x.shape[0], hp["epochs"])
        hx, hy, loss = self._build(x.shape[1], y.shape[1])
        res = fit_heads(
            x, y, hx, hy, loss, val=val, batch_size=batch_size, epochs=hp["epochs"],
            lr=self._lr(x.shape[1], y.shape[1]), weight_decay=hp["weight_decay"], warmup_steps=warmup_steps,
            optimizer=hp["optimizer"], grad_clip=hp["grad_clip"], patience=hp["patience"], seed=seed,
            device=hp["device"], checkpoint_dir=hp["checkpoint_dir"], progress=hp["progress"], structure=structure,
        )  # fmt: skip
        self._nets = (res.head_x, res.head_y, res.loss)
        self.weights_ = _flatten(_modules(*self._nets))
        self.history_ = res.history
        self.best_epoch_ = res.best_epoch
        self.n_features_x_, self.n_features_y_, self.n_pairs_ = int(x.shape[1]), int(y.shape[1]), int(x.shape[0])
        return self

    def _validate_params(self) -> dict[str, Any]:
        """The schema's checks, then ``head_kwargs`` against the chosen head's parameters and ``loss_kwargs``
        against the chosen loss's (so a run config with ``head_kwargs: {rank: 3}`` on a linear head fails
        before anything runs)."""
        hp = self._hp
        HEADS.get(hp["head"]).schema.validate(
            hp["head_kwargs"] or {}, f"HeadAligner: head_kwargs for head {hp['head']!r}"
        )
        LOSSES.get(hp["loss"]).schema.validate(
            hp["loss_kwargs"] or {}, f"HeadAligner: loss_kwargs for loss {hp['loss']!r}"
        )
        return hp

    def _lr(self, d_x: int, d_y: int) -> float:
        """The set lr, or the default: 1e-3, scaled by ``min(1, 1024 / (expansion·d_in))`` for ``star`` heads."""
        hp = self._hp
        if hp["lr"] is not None:
            return float(hp["lr"])
        if hp["head"] != "star":
            return 1e-3
        expansion = (hp["head_kwargs"] or {}).get("expansion", 8)
        fan_in = max(1, int(expansion) * max(d_x, d_y))
        return 1e-3 * min(1.0, 1024.0 / fan_in)

    def _schedule(self, n: int, epochs: int) -> tuple[int, int]:
        """Batch size and warm-up steps for n training pairs: the set values, or the defaults described above."""
        hp = self._hp
        batch = hp["batch_size"] if hp["batch_size"] is not None else min(4096, max(256, n // 8))
        if hp["warmup_steps"] is not None:
            return batch, hp["warmup_steps"]
        total = (n // min(batch, n)) * epochs
        return batch, max(1, round(0.1 * total))

    def _apply(self, head: nn.Module, t: torch.Tensor) -> torch.Tensor:
        p = next(head.parameters())
        z = _embed(head, t, p.device, p.dtype, 8192)
        return unit_rows(z).to(device=t.device, dtype=torch.float64)

    def _transform_x(self, x: torch.Tensor) -> torch.Tensor:
        return self._apply(self.head_x_, x)

    def _transform_y(self, y: torch.Tensor) -> torch.Tensor:
        return self._apply(self.head_y_, y)

    # ------------------------------------------------------------------------------- save / load
    # The base saves learned numpy arrays by attribute name. All head and loss weights (state_dict order,
    # float32 → float64 is exact) form one flat vector ``weights_``, so the base's save/load (and
    # ``Aligner.load``) work unchanged; the modules are rebuilt from it on first use after loading.

    @property
    def head_x_(self) -> nn.Module:
        return self._networks()[0]

    @property
    def head_y_(self) -> nn.Module:
        return self._networks()[1]

    @property
    def loss_(self) -> nn.Module:
        return self._networks()[2]

    def _networks(self) -> tuple[nn.Module, nn.Module, nn.Module]:
        nets = self.__dict__.get("_nets")
        if nets is None:
            if "weights_" not in self.__dict__:
                self._check_fitted("use")
                raise AttributeError("weights_")
            nets = self._build(self.n_features_x_, self.n_features_y_)
            _unflatten(_modules(*nets), np.asarray(self.weights_))
            for m in nets:
                m.eval()
            self._nets = nets
        return nets
