"""One training loop for every trainable head, on two or more row-paired spaces, and ``HeadAligner``, the
two-space estimator built on it (``MultiHeadAligner`` in :mod:`alignkit.align.multiview` is the n-space one).

``fit_heads`` minimises ``loss(head_1(X_1,b), …, head_n(X_n,b))`` over mini-batches of paired rows with AdamW
(or Lion), linear warm-up then cosine decay, gradient clipping and early stopping on validation top-1
retrieval, as SAIL (Zhang et al., "Assessing and Learning Alignment of Unimodal Vision and Language
Models", CVPR 2025) and STRUCTURE train their heads on cached embeddings (docs/methods.md §4.6-4.7). Two
spaces are the case n = 2 of the same loop: ``fit_heads(X, Y, head_x, head_y, loss)``.

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
- Validation: top-1 retrieval X→Y for two views (as the two-space trainer always did), the mean of the n(n−1)
  ordered view pairs (i → j) for n ≥ 3 views or with a validation mask (each pair on the rows where both views
  are present).
- Missing views (``mask``, items × views): absent entries may hold anything (NaN included); they are set to 0
  before the heads see them and the loss ignores them (pair losses: each view pair on its co-present rows; the
  STRUCTURE term: each view on its present rows). Losses that cannot take missing views are refused.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from alignkit._common import optional_import, unit_rows
from alignkit._progress import progress as _progress
from alignkit._validation import ArrayLike, as_matrix, check_choice, check_min_rows
from alignkit.align.base import Aligner, register_aligner
from alignkit.align.heads import HEADS, build_head
from alignkit.align.loss_registry import LOSSES, STRUCTURE, LossPlan, build_loss_plan, parse_loss, structure_term
from alignkit.align.losses import StructureRegularizer
from alignkit.io import atomic_write_bytes, atomic_write_text
from alignkit.ranking import X_TO_Y, Y_TO_X, paired_ranks, rank_summary

OPTIMIZERS: tuple[str, ...] = ("adamw", "lion")
TARGETS: tuple[str, ...] = ("shared", "y")
CHECKPOINT_FORMAT = "alignkit.trainer.checkpoint/1"
_CKPT_TENSORS = "checkpoint.safetensors"
_CKPT_JSON = "checkpoint.json"

LossFn = Callable[..., "torch.Tensor | Mapping[str, torch.Tensor]"]


@dataclass
class TrainResult:
    """What ``fit_heads`` returns: the heads and loss carrying the best weights, and one row per epoch.

    ``heads`` has one module per view (the same object where views share a head); ``head_x``/``head_y`` are
    the first two. history rows: ``epoch``, ``step``, ``lr`` (at the epoch's last step), ``loss`` (mean over its
    batches), ``loss/<part>`` for each extra part a loss reports, ``param/<name>`` for scalar loss
    parameters (temperature, scale, bias), ``val_r1`` (validation top-1 retrieval, None without validation)
    and ``time_s``.
    """

    heads: list[nn.Module]
    loss: nn.Module | LossFn
    history: list[dict[str, Any]] = field(default_factory=list)
    best_epoch: int | None = None
    best_val_r1: float | None = None
    stopped_early: bool = False
    finished: bool = True

    @property
    def head_x(self) -> nn.Module:
        return self.heads[0]

    @property
    def head_y(self) -> nn.Module:
        return self.heads[1]


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


def head_names(n_views: int) -> list[str]:
    """Module names of the heads in checkpoints and ``weights_``: ``head_x``, ``head_y`` for two views (the names
    the two-space trainer always used), ``head_0`` … ``head_{n-1}`` for more."""
    return ["head_x", "head_y"] if n_views == 2 else [f"head_{i}" for i in range(n_views)]


def _modules(heads: Sequence[nn.Module], loss: Any) -> dict[str, nn.Module]:
    """Named modules to train and save: each distinct head once (under the name of its first view), then the loss."""
    mods: dict[str, nn.Module] = {}
    for name, head in zip(head_names(len(heads)), heads, strict=True):
        if not any(head is m for m in mods.values()):
            mods[name] = head
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


def pair_r1(zs: Sequence[torch.Tensor], mask: torch.Tensor | None = None) -> dict[tuple[int, int], float]:
    """Top-1 retrieval i → j for every ordered pair of views of row-paired embeddings ``zs`` (cosine, ties by
    expectation as ``Aligner.score``); with ``mask`` (items × views) each pair uses its co-present rows, and pairs
    with fewer than 2 are left out."""
    out: dict[tuple[int, int], float] = {}
    for i in range(len(zs)):
        for j in range(i + 1, len(zs)):
            a, b = zs[i], zs[j]
            if mask is not None:
                rows = (mask[:, i] & mask[:, j]).to(a.device)
                if int(rows.sum()) < 2:
                    continue
                a, b = a[rows], b[rows]
            ranks = paired_ranks(a, b, metric="cosine", direction="both")
            out[(i, j)] = rank_summary(ranks[X_TO_Y], (1,))["R@1"]
            out[(j, i)] = rank_summary(ranks[Y_TO_X], (1,))["R@1"]
    return out


def _val_r1(
    heads: Sequence[nn.Module],
    vals: Sequence[torch.Tensor],
    mask: torch.Tensor | None,
    device: torch.device,
    dtype: torch.dtype,
) -> float:
    """Validation R@1 (cosine, ties by expectation, as ``Aligner.score``): X → Y for two complete views, else the
    mean over ordered view pairs."""
    zs = [_embed(h, v, device, dtype, 8192) for h, v in zip(heads, vals, strict=True)]
    if len(zs) == 2 and mask is None:
        return rank_summary(paired_ranks(zs[0], zs[1], metric="cosine")[X_TO_Y], (1,))["R@1"]
    scores = pair_r1(zs, mask)
    return float(np.mean(list(scores.values())))


def _state(mods: dict[str, nn.Module]) -> dict[str, torch.Tensor]:
    return {f"{o}.{k}": v.detach().clone() for o, m in mods.items() for k, v in m.state_dict().items()}


def _load_state(mods: dict[str, nn.Module], flat: Mapping[str, torch.Tensor]) -> None:
    for o, m in mods.items():
        prefix = f"{o}."
        m.load_state_dict({k[len(prefix) :]: v for k, v in flat.items() if k.startswith(prefix)})


def _param_label(name: str) -> str:
    """``modules_.infonce.logit_scale`` → ``infonce.logit_scale``; ``inner.logit_scale`` → ``logit_scale``."""
    return ".".join(p for p in name.split(".") if p not in ("modules_", "inner"))


def _scalar_params(loss: Any) -> dict[str, float]:
    if not isinstance(loss, nn.Module):
        return {}
    return {f"param/{_param_label(n)}": float(p.detach()) for n, p in loss.named_parameters() if p.numel() == 1}


def _loss_parts(out: Any) -> tuple[torch.Tensor, dict[str, float]]:
    """Total and named parts from a loss output: a scalar tensor, a mapping with the total under ``"loss"``,
    or a ``(total, {part: value})`` pair (``CombinedLoss``; its ``"total"`` part is dropped: it is ``loss``)."""
    if isinstance(out, torch.Tensor):
        total, parts = out, {}
    elif isinstance(out, Mapping):
        if "loss" not in out:
            raise ValueError("a loss returning a mapping must put the total under 'loss'")
        total, parts = out["loss"], {k: v for k, v in out.items() if k != "loss"}
    elif isinstance(out, tuple) and len(out) == 2 and isinstance(out[0], torch.Tensor):
        total, parts = out[0], {k: v for k, v in dict(out[1]).items() if k != "total"}
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
    xs: Sequence[torch.Tensor],
    zs: Sequence[torch.Tensor],
    mask: torch.Tensor | None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """``total + λ_t·R`` with ``R = (1/n)Σ_v R_S(x_v, z_v)`` over the views given; R is computed without a graph
    while λ_t = 0."""
    lam = reg.weight(step)
    if lam > 0:
        rs = reg.views(xs, zs, mask)
        out = total + lam * rs
    else:
        with torch.no_grad():
            rs = reg.views(xs, zs, mask)
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


def _trainable(head: nn.Module) -> bool:
    return any(p.requires_grad for p in head.parameters())


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


def _views_in(arrays: Sequence[ArrayLike], names: Sequence[str], mask: np.ndarray | None) -> list[torch.Tensor]:
    """Each view as a 2-D float tensor (memory maps stay maps), all on the first one's device, paired by row and
    finite where present (absent entries of a masked view may hold anything)."""
    views = [as_matrix(a, nm, check_finite=mask is None) for a, nm in zip(arrays, names, strict=True)]
    for v, nm in zip(views[1:], names[1:], strict=True):
        if v.shape[0] != views[0].shape[0]:
            raise ValueError(
                f"{names[0]} and {nm} must be paired by row: {names[0]} has {views[0].shape[0]} rows, "
                f"{nm} has {v.shape[0]}"
            )
    if mask is not None:
        for i, (v, nm) in enumerate(zip(views, names, strict=True)):
            rows = torch.from_numpy(mask[:, i]).to(v.device)
            bad = 0
            for s in range(0, v.shape[0], 65536):  # in row blocks: a memory map is never copied whole
                block = v[s : s + 65536]
                bad += int((~torch.isfinite(block[rows[s : s + 65536]])).sum())
            if bad:
                raise ValueError(f"{nm} contains {bad} NaN or Inf value(s) in present rows; clean or impute them first")
    return [v if v.device == views[0].device else v.to(views[0].device) for v in views]


def _mask_in(mask: ArrayLike | None, n: int, n_views: int, name: str = "mask") -> np.ndarray | None:
    """The missing-views mask as a bool (items × views) array, or None."""
    if mask is None:
        return None
    m = mask.detach().cpu().numpy() if isinstance(mask, torch.Tensor) else np.asarray(mask)
    if m.dtype != np.bool_:
        if m.dtype.kind not in "iu" or not np.isin(m, (0, 1)).all():
            raise TypeError(f"{name} must be a boolean array (True = view present); got dtype {m.dtype}")
        m = m.astype(bool)
    if m.shape != (n, n_views):
        raise ValueError(f"{name} must have shape (items, views) = ({n}, {n_views}); got {m.shape}")
    if int((m.sum(axis=1) >= 2).sum()) < 2:
        raise ValueError(f"{name} leaves fewer than 2 items with at least two present views; nothing to align")
    return np.ascontiguousarray(m)


def _mask_digest(m: np.ndarray) -> dict[str, Any]:
    return {"present": [int(c) for c in m.sum(axis=0)], "sha256": hashlib.sha256(m.tobytes()).hexdigest()[:16]}


def _resolve_loss(
    loss: Any, structure: StructureRegularizer | None, n_views: int, missing: bool
) -> tuple[nn.Module | LossFn, StructureRegularizer | None]:
    """A loss name / combination / plan → (module, STRUCTURE term); a module or callable is used as it is."""
    if isinstance(loss, (str, Mapping)):
        loss = build_loss_plan(loss, n_views, missing=missing)
    if isinstance(loss, LossPlan):
        if loss.structure is not None and structure is not None:
            raise ValueError("the STRUCTURE term is given twice: in loss and as structure=; keep one")
        return loss.loss, loss.structure if loss.structure is not None else structure
    if not callable(loss):
        raise TypeError(
            f"loss must be a loss module or callable, a registered loss name or a combination mapping; got "
            f"{type(loss).__name__}"
        )
    return loss, structure


def fit_heads(
    X: Any,
    Y: Any,
    head_x: Any = None,
    head_y: nn.Module | None = None,
    loss: Any = None,
    *,
    mask: ArrayLike | None = None,
    val: Sequence[ArrayLike] | None = None,
    val_mask: ArrayLike | None = None,
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
    """Train one head per space, in place, on rows paired across all spaces.

    Two spaces: ``fit_heads(X, Y, head_x, head_y, loss)`` (``head_y`` None or the same module: one shared head).
    n ≥ 2 spaces: ``fit_heads([X_1, …, X_n], [head_1, …, head_n], loss)`` (a single module: shared by all
    views). Two views give the same run either way.

    Each step draws b paired rows by a seeded permutation and computes ``loss(head_1(X_1,b), …, head_n(X_n,b))``
    (a scalar, or a mapping with the total under ``"loss"`` and extra parts, or ``(total, parts)``), clips the
    global gradient norm to ``grad_clip``, steps the optimizer with ``lr·lr_factor(step)`` and calls
    ``loss.clamp_()`` if the loss has one (SigLIP's scale clamp). After each epoch, top-1 retrieval on ``val``
    (X→Y for two views, else the mean over ordered view pairs) decides the best epoch; ``patience`` epochs
    without a strict improvement stop training. The returned heads (the same objects) carry the best weights
    (the last ones without ``val``).

    ``loss`` is a module or callable taking the n head outputs, or a registered loss name or combination
    (``"infonce"``, ``{"infonce": 1.0, "structure": 10.0}``; see :mod:`alignkit.align.loss_registry`): pair
    losses are summed over the view pairs, ``views`` losses get the stack (items, views, d), ``anchor`` losses
    the anchor view and the others. ``mask`` (bool, items × views; True = present) trains on items with missing
    views, with a loss that allows it (pair losses: each view pair on the rows where both are present; a module
    of yours must accept ``loss(*views, mask=mask)`` and set ``accepts_mask = True``). ``val`` is
    ``(X_val, Y_val)`` / ``[V_1, …, V_n]``, with an optional ``val_mask``.

    Inputs may be memory-mapped arrays: only each batch's rows are gathered and moved to ``device``.
    ``checkpoint_dir`` saves a checkpoint after every epoch and, with ``resume``, continues from one
    (its config must match). ``stop_after`` ends the call after that many epochs while keeping the
    schedule of ``epochs`` (time-sliced jobs: call again with the same arguments to continue).

    ``structure`` (a :class:`~alignkit.align.losses.StructureRegularizer`, or a ``"structure"`` term in a
    combination) adds STRUCTURE's regulariser on the frozen inputs:
    ``total = loss + λ_t·(1/n)Σ_v R_S(X_v,b, head_v(X_v,b))`` over the views whose head has trainable parameters
    (two views: ``(R_S(X_b, head_x(X_b)) + R_S(Y_b, head_y(Y_b)))/2``), with λ_t a pure function of the global
    step (so resume is exact); history then also has ``loss/contrastive``, ``loss/structure`` (unweighted R_S)
    and ``loss/structure_lambda``. While λ_t = 0 (start of the warm-up, or λ = 0) R_S is only logged, under
    ``no_grad``, so a λ = 0 run trains exactly like a plain one.
    """
    heads_given = isinstance(Y, nn.Module) or (
        isinstance(Y, (list, tuple)) and len(Y) > 0 and all(isinstance(h, nn.Module) for h in Y)
    )
    if heads_given:  # fit_heads(views, heads, loss)
        if not isinstance(X, (list, tuple)):
            raise TypeError(f"views must be a list of n row-paired arrays; got {type(X).__name__}")
        if head_y is not None or (head_x is not None and loss is not None):
            raise TypeError("fit_heads(views, heads, loss) takes three positional arguments")
        arrays, loss = list(X), head_x if loss is None else loss
        names = [f"views[{i}]" for i in range(len(arrays))]
        head_labels = [f"heads[{i}]" for i in range(len(arrays))]
        if len(arrays) < 2:
            raise ValueError(f"views must hold at least 2 row-paired spaces; got {len(arrays)}")
        heads = [Y] * len(arrays) if isinstance(Y, nn.Module) else list(Y)
        if len(heads) != len(arrays):
            raise ValueError(f"heads must hold one head per view: {len(heads)} heads for {len(arrays)} views")
        val_names = [f"val[{i}]" for i in range(len(arrays))]
    else:  # fit_heads(X, Y, head_x, head_y, loss)
        if not isinstance(head_x, nn.Module):
            raise TypeError(f"head_x must be a torch.nn.Module; got {type(head_x).__name__}")
        arrays, names, head_labels = [X, Y], ["X", "Y"], ["head_x", "head_y"]
        heads = [head_x, head_x if head_y is None else head_y]
        val_names = ["X_val", "Y_val"]
    if loss is None:
        raise TypeError("fit_heads needs a loss")
    n_views = len(arrays)
    n = int(as_matrix(arrays[0], names[0], check_finite=False).shape[0])
    mask_np = _mask_in(mask, n, n_views)
    views = _views_in(arrays, names, mask_np)
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
    loss, structure = _resolve_loss(loss, structure, n_views, mask_np is not None)
    if mask_np is not None and not getattr(loss, "accepts_mask", False):
        raise ValueError(
            "mask: this loss cannot take missing views; use a pair-form loss (summed over the view pairs where "
            "both are present, e.g. 'infonce'), or a module with accepts_mask = True taking loss(*views, mask=mask)"
        )
    vals: list[torch.Tensor] | None = None
    vmask_np = None
    if val is not None:
        if not isinstance(val, (tuple, list)) or len(val) != n_views:
            raise TypeError(f"val must list {n_views} views" if heads_given else "val must be a pair (X_val, Y_val)")
        n_val = int(as_matrix(val[0], val_names[0], check_finite=False).shape[0])
        vmask_np = _mask_in(val_mask, n_val, n_views, "val_mask")
        vals = _views_in(val, val_names, vmask_np)
        check_min_rows(n_val, 2, "validation retrieval")
        for v_train, v_val, nm, vn in zip(views, vals, names, val_names, strict=True):
            if v_train.shape[1] != v_val.shape[1]:
                raise ValueError(f"{vn} has {v_val.shape[1]} features but {nm} has {v_train.shape[1]}")
    elif val_mask is not None:
        raise ValueError("val_mask is given without val")

    for head, data, hn, nm in zip(heads, views, head_labels, names, strict=True):
        if not isinstance(head, nn.Module):
            raise TypeError(f"{hn} must be a torch.nn.Module; got {type(head).__name__}")
        d_in = getattr(head, "d_in", None)
        if d_in is not None and d_in != data.shape[1]:
            raise ValueError(f"{hn} expects {d_in} input features but {nm} has {data.shape[1]}")
    dev = torch.device(device) if device is not None else views[0].device
    mods = _modules(heads, loss)
    for m in mods.values():
        m.to(dev)
    params = _unique_params(mods)
    if not params:
        raise ValueError("the heads and loss have no trainable parameters")
    dtype = params[0][2].dtype
    mask_t = None if mask_np is None else torch.from_numpy(mask_np).to(dev)
    vmask_t = None if vmask_np is None else torch.from_numpy(vmask_np)
    reg_views = [i for i, h in enumerate(heads) if _trainable(h)]  # a frozen view's R_S is a constant
    b = min(batch_size, n)
    steps_per_epoch = n // b
    total_steps = epochs * steps_per_epoch
    if structure is not None:
        structure.resolve(total_steps)
    opt = _make_optimizer(optimizer, _param_groups(mods, weight_decay), lr)
    dims: dict[str, Any] = (
        {"d_x": views[0].shape[1], "d_y": views[1].shape[1]}
        if n_views == 2
        else {"d_views": [v.shape[1] for v in views]}
    )
    config = {
        "n": n, **dims, "batch_size": b, "epochs": epochs, "lr": lr,
        "weight_decay": weight_decay, "warmup_steps": warmup_steps, "optimizer": optimizer, "grad_clip": grad_clip,
        "patience": patience, "seed": int(seed), "n_val": None if vals is None else vals[0].shape[0],
        "modules": sorted(mods), "n_params": sum(p.numel() for *_, p in params),
        "structure": None if structure is None else structure.config(),
    }  # fmt: skip
    if mask_np is not None:
        config["mask"] = _mask_digest(mask_np)
    if vmask_np is not None:
        config["val_mask"] = _mask_digest(vmask_np)

    start_epoch, step, history = 0, 0, []
    best_state: dict[str, torch.Tensor] | None = None
    best_epoch: int | None = None
    best_score = -math.inf
    bad_epochs, stopped_early, finished = 0, False, False
    ckpt = Path(checkpoint_dir) if checkpoint_dir is not None else None
    if ckpt is not None and resume and (ckpt / _CKPT_JSON).exists():
        doc, tensors = _load_checkpoint(ckpt)
        diff = sorted(k for k in set(config) | set(doc["config"]) if doc["config"].get(k) != config.get(k))
        if diff:
            details = ", ".join(f"{k}: checkpoint {doc['config'].get(k)!r} vs now {config.get(k)!r}" for k in diff)
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
                    xbs = [v[idx].to(device=dev, dtype=dtype, non_blocking=True) for v in views]
                    mb = None if mask_t is None else mask_t[idx.to(dev)]
                    if mb is not None:  # absent entries (any value, NaN included) become 0 before the heads
                        xbs = [torch.where(mb[:, i : i + 1], xb, torch.zeros_like(xb)) for i, xb in enumerate(xbs)]
                    zs = [h(xb) for h, xb in zip(heads, xbs, strict=True)]
                    total, parts = _loss_parts(loss(*zs) if mb is None else loss(*zs, mask=mb))
                    if structure is not None:
                        total, parts = _add_structure(
                            structure, step, total, parts, [xbs[i] for i in reg_views], [zs[i] for i in reg_views],
                            None if mb is None else mb[:, reg_views],
                        )  # fmt: skip
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
                if vals is not None:
                    r1 = _val_r1(heads, vals, vmask_t, dev, dtype)
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
        heads=heads,
        loss=loss,
        history=history,
        best_epoch=best_epoch if best_epoch is not None else (len(history) or None),
        best_val_r1=None if best_epoch is None else best_score,
        stopped_early=stopped_early,
        finished=finished,
    )


# ------------------------------------------------------------------------------------------ estimator
# Shared by HeadAligner and MultiHeadAligner (alignkit.align.multiview): the defaults for few pairs, building
# the heads and the loss from hyper-parameters, and the one flat weight vector that save/load store.

#: per-loss defaults the estimators use where the loss specification leaves them unset
ESTIMATOR_LOSS_DEFAULTS: dict[str, dict[str, Any]] = {"siglip": {"reduction": "sum_rows"}}


def flatten_modules(mods: dict[str, nn.Module]) -> np.ndarray:
    """Every weight of ``mods`` (state_dict order) as one flat float64 vector (float32 → float64 is exact)."""
    parts = [v.detach().cpu().double().reshape(-1) for v in _state(mods).values()]
    return torch.cat(parts).numpy() if parts else np.zeros(0)


def unflatten_modules(mods: dict[str, nn.Module], flat: np.ndarray) -> None:
    """Load a vector written by :func:`flatten_modules` into modules of the same configuration."""
    state = _state(mods)
    need = sum(v.numel() for v in state.values())
    if flat.ndim != 1 or flat.size != need:
        raise ValueError(f"saved weights_ has {flat.size} values; the configured heads and loss need {need}")
    out, pos = {}, 0
    for k, v in state.items():
        out[k] = torch.from_numpy(flat[pos : pos + v.numel()]).reshape(v.shape).to(v.dtype)
        pos += v.numel()
    _load_state(mods, out)


def default_schedule(hp: Mapping[str, Any], n: int) -> tuple[int, int]:
    """Batch size and warm-up steps for n training items: the set values, or ``min(4096, max(256, n // 8))`` and
    10 % of the optimiser steps (see ``HeadAligner``)."""
    batch = hp["batch_size"] if hp["batch_size"] is not None else min(4096, max(256, n // 8))
    if hp["warmup_steps"] is not None:
        return batch, hp["warmup_steps"]
    total = (n // min(batch, n)) * hp["epochs"]
    return batch, max(1, round(0.1 * total))


def default_lr(hp: Mapping[str, Any], d_ins: Sequence[int]) -> float:
    """The set lr, or 1e-3, scaled by ``min(1, 1024 / (expansion·max d_in))`` for ``star`` heads."""
    if hp["lr"] is not None:
        return float(hp["lr"])
    if hp["head"] != "star":
        return 1e-3
    expansion = (hp["head_kwargs"] or {}).get("expansion", 8)
    fan_in = max(1, int(expansion) * max(d_ins))
    return 1e-3 * min(1.0, 1024.0 / fan_in)


def build_heads(hp: Mapping[str, Any], d_ins: Sequence[int], d_out: int, shared: bool) -> list[nn.Module]:
    """One head per input width, built in order under ``torch.manual_seed(seed)`` (the caller's RNG untouched);
    ``shared``: one module for all (the widths must agree)."""
    kw = dict(hp["head_kwargs"] or {})
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(hp["seed"]))
        heads = [build_head(hp["head"], d_ins[0], d_out, **kw)]
        for d in d_ins[1:]:
            heads.append(heads[0] if shared else build_head(hp["head"], d, d_out, **kw))
        return heads


def estimator_loss_spec(hp: Mapping[str, Any], owner: str) -> Any:
    """The estimator's loss specification with the ``structure=λ`` shorthand merged in as its ``"structure"``
    term (the one path: both become the same ``StructureRegularizer`` in the plan)."""
    spec, lam, skw = hp["loss"], hp["structure"], hp["structure_kwargs"]
    if lam is None:
        if skw:
            raise ValueError("structure_kwargs is set but structure (λ) is None; set structure=10.0 to use it")
        return spec
    StructureRegularizer.from_kwargs(lam, skw)  # the shorthand's own errors name structure_kwargs
    if isinstance(spec, str):
        combo: dict[str, Any] = {spec: dict(hp["loss_kwargs"] or {})}
    elif isinstance(spec, Mapping):
        combo = dict(spec)
    else:
        return spec  # parse_loss reports the type error
    if any(isinstance(k, str) and k.partition("?")[0] == STRUCTURE for k in combo):
        raise ValueError(f"{owner}: the STRUCTURE term is given twice (structure=λ and in loss); keep one")
    combo[STRUCTURE] = structure_term(lam, skw)
    return combo


def _spec_and_kwargs(hp: Mapping[str, Any], owner: str) -> tuple[Any, Mapping[str, Any] | None]:
    spec = estimator_loss_spec(hp, owner)
    merged = isinstance(hp["loss"], str) and not isinstance(spec, str)  # loss_kwargs went into the combination
    return spec, None if merged else hp["loss_kwargs"]


def estimator_loss_plan(hp: Mapping[str, Any], n_views: int, missing: bool, owner: str) -> LossPlan:
    """Validate the estimator's loss (name or combination, ``loss_kwargs``, ``structure`` shorthand) for
    ``n_views`` views and build it."""
    spec, kwargs = _spec_and_kwargs(hp, owner)
    return build_loss_plan(
        spec, n_views, missing=missing, loss_kwargs=kwargs, defaults=ESTIMATOR_LOSS_DEFAULTS, owner=owner
    )


def validate_estimator_loss(hp: Mapping[str, Any], n_views: int, owner: str) -> None:
    """The checks of :func:`estimator_loss_plan` without building anything (a run config is checked before it
    runs): ``loss_kwargs`` against a single named loss's parameters, then the whole specification."""
    if isinstance(hp["loss"], str):
        LOSSES.get(hp["loss"]).schema.validate(
            dict(LOSSES.spec(hp["loss"]).kwargs, **(hp["loss_kwargs"] or {})),
            f"{owner}: loss_kwargs for loss {hp['loss']!r}",
        )
    spec, kwargs = _spec_and_kwargs(hp, owner)
    parse_loss(spec, n_views, loss_kwargs=kwargs, defaults=ESTIMATOR_LOSS_DEFAULTS, owner=owner)


def _known_head(name: str) -> str:
    return HEADS.get(name).name


def _optional_dict(value: Any) -> Any:
    if value is not None and not isinstance(value, dict):
        raise TypeError(f"must be a mapping of parameter names to values or None; got {type(value).__name__}")
    return value


def _loss_spec(value: Any) -> Any:
    """A registered loss name (or id) or a combination mapping; its loss names must exist (the full check, for
    the number of views, is the estimator's ``_validate_params``)."""
    if isinstance(value, str):
        LOSSES.get(value)
    elif isinstance(value, Mapping):
        if not value:
            raise ValueError("an empty mapping; name at least one loss, e.g. {'infonce': 1.0}")
        for key in value:
            if not isinstance(key, str):
                raise TypeError(f"loss names must be strings; got {key!r}")
            LOSSES.get(key)
    else:
        raise TypeError(
            "must be a loss name or a mapping {name: weight} / {name: {'weight': w, param: value}}; got "
            f"{type(value).__name__}"
        )
    return value


#: hyper-parameter constraints shared by the two head estimators
HEAD_CONSTRAINTS: dict[str, dict[str, Any]] = {
    "head": {"validator": _known_head},
    "loss": {"validator": _loss_spec},
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
}


@register_aligner("head", constraints={**HEAD_CONSTRAINTS, "target": {"choices": TARGETS}})
class HeadAligner(Aligner):
    """Two trainable heads (or one ``shared`` head) mapping X and Y into a d_out-dimensional shared space, or one
    head mapping X into Y's own space (``target="y"``), trained with ``fit_heads`` under any registered loss or
    combination (SAIL: Zhang et al., "Assessing and Learning Alignment of Unimodal Vision and Language Models",
    CVPR 2025).

    ``transform_x(X) = normalise(head_x(X))`` (the unit sphere the loss is defined on). ``fit(X, Y, val=...)``
    takes an explicit validation pair; otherwise ``val_fraction`` > 0 holds out a seeded random part of the
    pairs for early stopping (``patience``). Heads train in float32; outputs follow the base (float64).
    Learned: ``weights_`` (every head and loss weight, one flat float64 vector: what ``save`` stores),
    ``history_``, ``best_epoch_``; ``head_x_``, ``head_y_`` (one module when shared) and ``loss_`` are
    the modules, rebuilt from ``weights_`` after ``load``.

    ``loss`` is a registered loss name (``"infonce"``, ``"siglip"``, ``"gram"``, ``"mv_dhel"``, …, or yours
    from ``register_loss``) with its parameters in ``loss_kwargs``, or a combination: ``{"infonce": 1.0,
    "structure": 10.0}`` (weights), ``{"infonce": {"weight": 1.0, "init_temperature": 0.05}, "siglip": 0.5}``
    (weights and parameters). See :mod:`alignkit.align.loss_registry`. A combination logs each term, unweighted,
    as ``loss/<name>`` in the history.

    ``structure`` = λ (None: off) adds the STRUCTURE regulariser (Gröger, Wen, Le, Brbić, "With Limited Data for
    Multimodal Alignment, Let the STRUCTURE Guide You", NeurIPS 2025) on the cached inputs:
    ``L = L_contrastive + λ_t·(R_S(X_b, head_x(X_b)) + R_S(Y_b, head_y(Y_b)))/2``, ``λ_t = λ·min(1, t/warmup)``.
    It is a shorthand for the term ``"structure": {"weight": λ, **structure_kwargs}`` of a combination (the same
    code; giving both is an error). STRUCTURE uses λ = 10. ``structure_kwargs`` may set ``levels`` (L, default 1),
    ``tau`` (0.05), ``margin`` (0), ``weighting`` ("none" | "inverse"), ``divergence`` ("code", the authors'
    ½[KL(M‖A)+KL(M‖B)], or "js"), ``warmup_steps`` (1,000, STRUCTURE's) or ``warmup_fraction`` (of this run's
    optimiser steps; overrides ``warmup_steps``, handy for short runs on few pairs, where 1,000 steps may never
    be reached). R_S costs O(L·b²·d + (L−1)·b³) per batch of b pairs. λ = 0 trains exactly like
    ``structure=None``.

    ``target="y"`` (fixed-target mode): one head maps X into Y's own frozen space (``d_out`` is d_y whatever it is
    set to); Y is only L2-normalised, never trained: ``transform_y(Y) = Y/‖Y‖``, ``transform_x`` =
    ``translate`` = ``normalise(head_x(X))``, in Y's coordinates (as when an audio encoder is re-aligned into
    CLIP's space so that a model reading CLIP embeddings can take it). Same losses, same retrieval; STRUCTURE
    then regularises X's side only (Y's R_S would be a constant). ``target="shared"`` (default) has no
    ``translate``.

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
    - ``loss="siglip"`` (alone or in a combination) uses the official per-row sum ``−(1/N)Σ_iΣ_j`` unless its
      parameters set ``reduction`` (the ``SigLIP`` module keeps SAIL's mean over N² entries, docs/methods.md
      §4.7). Under AdamW the two differ only through gradient clipping: SAIL's mean makes the gradient N×
      smaller, so ``grad_clip=1`` never acts. On the 768 pairs above: mean 46 %, per-row sum 59 %, mean with
      ``grad_clip=1/256`` 61 %.
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
        loss: str | dict[str, Any] = "infonce",
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
        target: str = "shared",
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
        self.target = target

    def _build(self, d_x: int, d_y: int) -> tuple[nn.Module, nn.Module, LossPlan]:
        hp = self._hp
        if hp["target"] == "y":
            hx = build_heads(hp, [d_x], d_y, shared=False)[0]
            hy: nn.Module = nn.Identity()  # Y's own space: only normalised (by the loss, and by transform_y)
        else:
            if hp["shared"] and d_x != d_y:
                raise ValueError(f"shared=True needs X and Y of one dimension; got d_x={d_x}, d_y={d_y}")
            hx, hy = build_heads(hp, [d_x, d_y], hp["d_out"], hp["shared"])
        return hx, hy, estimator_loss_plan(hp, 2, False, "HeadAligner: loss")

    def fit(self, X: ArrayLike, Y: ArrayLike, val: tuple[ArrayLike, ArrayLike] | None = None) -> HeadAligner:
        """Train on paired rows ``X[i] ↔ Y[i]`` (memory-mapped arrays are read batch by batch)."""
        from alignkit._validation import as_pair

        hp = self._validate_params()
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
        batch_size, warmup_steps = default_schedule(hp, x.shape[0])
        hx, hy, plan = self._build(x.shape[1], y.shape[1])
        d_ins = [x.shape[1]] if hp["target"] == "y" else [x.shape[1], y.shape[1]]
        res = fit_heads(
            x, y, hx, hy, plan, val=val, batch_size=batch_size, epochs=hp["epochs"],
            lr=default_lr(hp, d_ins), weight_decay=hp["weight_decay"], warmup_steps=warmup_steps,
            optimizer=hp["optimizer"], grad_clip=hp["grad_clip"], patience=hp["patience"], seed=seed,
            device=hp["device"], checkpoint_dir=hp["checkpoint_dir"], progress=hp["progress"],
        )  # fmt: skip
        self._nets = (res.head_x, res.head_y, res.loss)
        self.weights_ = flatten_modules(_modules(self._nets[:2], self._nets[2]))
        self.history_ = res.history
        self.best_epoch_ = res.best_epoch
        self.n_features_x_, self.n_features_y_, self.n_pairs_ = int(x.shape[1]), int(y.shape[1]), int(x.shape[0])
        return self

    def _validate_params(self) -> dict[str, Any]:
        """The schema's checks, then ``head_kwargs`` against the chosen head's parameters and the loss
        specification (``loss_kwargs`` against a named loss's parameters, a combination's names, weights and
        parameters, the ``structure`` shorthand) for two views, so a run config with ``head_kwargs: {rank: 3}``
        on a linear head fails before anything runs."""
        hp = self._hp
        HEADS.get(hp["head"]).schema.validate(
            hp["head_kwargs"] or {}, f"HeadAligner: head_kwargs for head {hp['head']!r}"
        )
        validate_estimator_loss(hp, 2, "HeadAligner: loss")
        if hp["target"] == "y" and hp["shared"]:
            raise ValueError("HeadAligner: shared=True has no meaning with target='y' (Y has no head)")
        return hp

    def _apply(self, head: nn.Module, t: torch.Tensor) -> torch.Tensor:
        p = next(head.parameters())
        z = _embed(head, t, p.device, p.dtype, 8192)
        return unit_rows(z).to(device=t.device, dtype=torch.float64)

    def _transform_x(self, x: torch.Tensor) -> torch.Tensor:
        return self._apply(self.head_x_, x)

    def _transform_y(self, y: torch.Tensor) -> torch.Tensor:
        if self._hp["target"] == "y":
            return unit_rows(y)
        return self._apply(self.head_y_, y)

    def can_translate(self) -> bool:
        return bool(self._hp["target"] == "y")

    def _translate(self, x: torch.Tensor) -> torch.Tensor:
        """X in Y's coordinates (unit rows, as ``transform_y``); only with ``target="y"``."""
        if self._hp["target"] != "y":
            raise NotImplementedError(
                "HeadAligner(target='shared') maps both sides into a learned shared space and has no X → Y "
                "translation; use transform_x and transform_y, or HeadAligner(target='y') to map X into Y's space"
            )
        return self._transform_x(x)

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
            hx, hy, plan = self._build(self.n_features_x_, self.n_features_y_)
            nets = (hx, hy, plan.loss)
            unflatten_modules(_modules([hx, hy], plan.loss), np.asarray(self.weights_))
            for m in nets:
                m.eval()
            self._nets = nets
        return nets
