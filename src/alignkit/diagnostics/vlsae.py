"""VL-SAE: one sparse autoencoder over two row-paired spaces, and the concept diagnostics read from it.

Shen et al., "VL-SAE: Interpreting and Enhancing Vision-Language Alignment with a Unified Concept Set"
(NeurIPS 2025; ssfgunner/VL-SAE), docs/methods.md §3.10.

Model (d-dimensional inputs, h = d·hidden_ratio units, k = topk):

- one encoder shared by both spaces, ``E ∈ R^{h×d}`` (no bias, Kaiming-uniform as ``nn.Linear``);
- activation of unit j: ``a_j(x) = 2 − ‖x̂ − ê_j‖₂ ∈ [0, 2]``, with x̂ = x/‖x‖ and ê_j = E_j/‖E_j‖ (a cosine
  read as a distance: ``‖x̂ − ê_j‖² = 2 − 2·cos(x, E_j)``);
- TopK: the code z keeps the k largest ``a_j`` and zeroes the rest;
- one linear decoder with bias per space: ``x̃ = W_x z + b_x``, ``ỹ = W_y z + b_y``;
- loss ``MSE(x̃, x) + MSE(ỹ, y)`` (element means), no sparsity or cross-space term.

The concept diagnostic (ours, not the paper's): the active set ``S(x)`` (the k kept units) of an item's two
views should overlap more than the sets of two unrelated items: ``J_i = |S(x_i) ∩ S(y_i)| / |S(x_i) ∪ S(y_i)|``,
compared with the same mean over pairs whose Y rows are permuted.

The encoder is shared, so ``S(x)`` depends only on the direction of x in one coordinate system: X and Y must
already share a space (CLIP's image and text embeddings, the paper's setting, or two spaces mapped into one
by an aligner). ``fit`` requires ``d_x == d_y`` and says so; on two unrelated models' coordinates the overlap
measures nothing.

Choices where the reference code differs or docs/methods.md is silent:

- TopK by indices: exactly k units per row, ties broken towards the lower unit index (a stable sort). The
  reference keeps the entries strictly above the (h−k)-th smallest value (``kthvalue``), which leaves fewer
  than k active whenever values tie at the threshold (methods §3.10 pitfall).
- Learning-rate schedule: the repo's per-step warm-up then cosine decay to 0
  (:func:`alignkit.align.trainer.lr_factor`) over ``warmup_epochs`` epochs of steps. The reference sets
  the lr once per epoch (``lr·(e+1)/w`` in warm-up, then ``CosineAnnealingLR(T_max = epochs − w)``
  stepped at the start of each later epoch), so its last epoch runs at lr 0.
- Batches: a seeded permutation per epoch, every row used (the last batch may be smaller). The reference
  splits 80/20 once with an unseeded permutation and then walks the training rows in the same order each
  epoch. Validation loss is the reference's: the mean of ``MSE_x + MSE_y`` over the held-out pairs; the
  best epoch (strictly lower validation loss) is kept and ``patience`` epochs without one stop training.
- Optimiser: Adam (weight decay 0), no gradient clipping, float32 training, as the reference. Inference
  (codes, reconstructions, diagnostics) runs in float64 on the saved float64 copies of the weights, so a
  loaded model gives bit-identical outputs.

Training reuses the shared trainer's pieces (:mod:`alignkit.align.trainer`: lr schedule, per-epoch seeds,
the safetensors + JSON checkpoint format written atomically after every epoch, resume checks) but not
``fit_heads`` itself: its loss sees only the two heads' outputs (a reconstruction loss needs the inputs),
and it selects epochs by validation retrieval, not by validation reconstruction error.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from alignkit._progress import progress as _progress
from alignkit._validation import ArrayLike, as_matrix, as_pair, check_min_rows
from alignkit.align.base import Aligner, _output
from alignkit.align.trainer import (
    _CKPT_JSON,
    _epoch_seed,
    _load_checkpoint,
    _load_state,
    _optimizer_state,
    _save_checkpoint,
    _state,
    lr_factor,
)
from alignkit.diagnostics._registry import register
from alignkit.diagnostics._result import DiagnosticResult
from alignkit.registry import ParamSchema

MODALITIES = ("x", "y")
_BLOCK = 4096  # rows per inference block

# ---------------------------------------------------------------------------------------- the model


def _unit_activations(x: torch.Tensor, encoder: torch.Tensor) -> torch.Tensor:
    """``a_j = 2 − ‖x̂ − ê_j‖₂`` for every row of x and unit j: (n, h), in [0, 2].

    ``‖x̂ − ê‖² = ‖x̂‖² + ‖ê‖² − 2 x̂·ê`` (a zero row has x̂ = 0, so every a_j = 1). The square root is taken
    with a zero-safe gradient (a distance of exactly 0 gets gradient 0, not NaN).
    """
    xh = x / x.norm(dim=1, keepdim=True).clamp_min(torch.finfo(x.dtype).tiny)
    eh = encoder / encoder.norm(dim=1, keepdim=True).clamp_min(torch.finfo(encoder.dtype).tiny)
    sq = (xh * xh).sum(1, keepdim=True) + (eh * eh).sum(1) - 2.0 * (xh @ eh.T)
    sq = sq.clamp_min(0.0)
    pos = sq > 0
    dist = torch.where(pos, torch.sqrt(torch.where(pos, sq, torch.ones_like(sq))), torch.zeros_like(sq))
    return 2.0 - dist


def _topk(a: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The k largest entries of each row: (indices, values), by decreasing value, ties to the lower index.

    A stable descending sort, so exactly k units are active per row whatever the ties (a threshold at the
    k-th value, as in the reference's ``kthvalue`` rule, would drop every unit tied with it).
    """
    order = torch.sort(a.detach(), dim=1, descending=True, stable=True).indices[:, :k]
    return order, a.gather(1, order)


def _sparse_codes(a: torch.Tensor, k: int) -> torch.Tensor:
    idx, val = _topk(a, k)
    return torch.zeros_like(a).scatter(1, idx, val)


class _SAE(nn.Module):
    """The trainable VL-SAE (float32): shared encoder, one decoder per space."""

    def __init__(self, d: int, h: int, k: int) -> None:
        super().__init__()
        self.k = k
        self.encoder = nn.Parameter(torch.empty(h, d))
        nn.init.kaiming_uniform_(self.encoder, a=math.sqrt(5))  # the reference's (and nn.Linear's) init
        self.decoder_x = nn.Linear(h, d)
        self.decoder_y = nn.Linear(h, d)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        zx = _sparse_codes(_unit_activations(x, self.encoder), self.k)
        zy = _sparse_codes(_unit_activations(y, self.encoder), self.k)
        return self.decoder_x(zx), self.decoder_y(zy)

    def loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        rx, ry = self(x, y)
        return nn.functional.mse_loss(rx, x) + nn.functional.mse_loss(ry, y)


# ------------------------------------------------------------------------------------------ training


@dataclass
class _Fit:
    history: list[dict[str, Any]]
    best_epoch: int | None
    finished: bool


def _val_loss(model: _SAE, x: torch.Tensor, y: torch.Tensor, dev: torch.device) -> float:
    """Mean of ``MSE_x + MSE_y`` over the rows (the reference's validation loss)."""
    total = 0.0
    with torch.no_grad():
        for s in range(0, x.shape[0], _BLOCK):
            xb = x[s : s + _BLOCK].to(device=dev, dtype=torch.float32)
            yb = y[s : s + _BLOCK].to(device=dev, dtype=torch.float32)
            total += float(model.loss(xb, yb)) * xb.shape[0]
    return total / x.shape[0]


def _train(
    model: _SAE,
    x: torch.Tensor,
    y: torch.Tensor,
    val: tuple[torch.Tensor, torch.Tensor] | None,
    *,
    batch_size: int,
    epochs: int,
    warmup_epochs: int,
    lr: float,
    weight_decay: float,
    patience: int | None,
    seed: int,
    dev: torch.device,
    checkpoint_dir: str | None,
    stop_after: int | None,
    progress: bool,
) -> _Fit:
    """Adam on ``MSE_x + MSE_y`` with the trainer's schedule, seeds and checkpoints; ``model`` is trained in
    place and carries the best weights (by validation loss) when training finished."""
    n = x.shape[0]
    b = min(batch_size, n)
    steps_per_epoch = math.ceil(n / b)
    total_steps, warmup_steps = epochs * steps_per_epoch, warmup_epochs * steps_per_epoch
    mods: dict[str, nn.Module] = {"vlsae": model}
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    config = {
        "method": "vlsae", "n": n, "d": x.shape[1], "h": model.encoder.shape[0], "k": model.k, "batch_size": b,
        "epochs": epochs, "warmup_epochs": warmup_epochs, "lr": lr, "weight_decay": weight_decay,
        "patience": patience, "seed": seed, "n_val": None if val is None else val[0].shape[0],
    }  # fmt: skip
    start, step, history = 0, 0, []
    best_state: dict[str, torch.Tensor] | None = None
    best_epoch: int | None = None
    best = math.inf
    bad, stopped, finished = 0, False, False
    ckpt = Path(checkpoint_dir) if checkpoint_dir is not None else None
    if ckpt is not None and (ckpt / _CKPT_JSON).exists():
        doc, tensors = _load_checkpoint(ckpt)
        diff = sorted(k for k in config if doc["config"].get(k) != config[k])
        if diff:
            details = ", ".join(f"{k}: checkpoint {doc['config'].get(k)!r} vs now {config[k]!r}" for k in diff)
            raise ValueError(f"{ckpt}: checkpoint was made with a different configuration ({details})")
        _load_state(mods, {k[6:]: v.to(dev) for k, v in tensors.items() if k.startswith("model.")})
        best_state = {k[5:]: v.to(dev) for k, v in tensors.items() if k.startswith("best.")} or None
        opt.load_state_dict(_optimizer_state(doc, tensors))
        start, step, history = doc["epoch"], doc["step"], doc["history"]
        best_epoch, bad = doc["best_epoch"], doc["bad_epochs"]
        best = math.inf if doc["best_score"] is None else doc["best_score"]
        stopped, finished = doc["stopped_early"], doc["finished"]

    bar = _progress(total=epochs, initial=start, show=progress, desc="fit VL-SAE", unit="epoch")
    try:
        epoch = start
        while not finished and epoch < epochs and (stop_after is None or epoch < stop_after):
            t0 = time.perf_counter()
            perm = torch.randperm(n, generator=torch.Generator().manual_seed(_epoch_seed(seed, epoch)))
            model.train()
            loss_sum, cur_lr = 0.0, lr
            for s in range(steps_per_epoch):
                idx = perm[s * b : (s + 1) * b]
                xb = x[idx].to(device=dev, dtype=torch.float32)
                yb = y[idx].to(device=dev, dtype=torch.float32)
                loss = model.loss(xb, yb)
                if not bool(torch.isfinite(loss)):
                    raise FloatingPointError(f"VL-SAE loss became {float(loss)} at epoch {epoch}, step {step}")
                cur_lr = lr * lr_factor(step, total_steps, warmup_steps)
                for g in opt.param_groups:
                    g["lr"] = cur_lr
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                step += 1
                loss_sum += float(loss.detach())
            epoch += 1
            model.eval()
            vl = None if val is None else _val_loss(model, val[0], val[1], dev)
            if vl is not None:
                if vl < best:
                    best, best_epoch, bad, best_state = vl, epoch, 0, _state(mods)
                else:
                    bad += 1
                    stopped = patience is not None and bad >= patience
            history.append(
                {"epoch": epoch, "step": step, "lr": cur_lr, "loss": loss_sum / steps_per_epoch, "val_loss": vl,
                 "time_s": time.perf_counter() - t0}
            )  # fmt: skip
            finished = stopped or epoch >= epochs
            bar.update(1)
            bar.set_postfix(loss=f"{history[-1]['loss']:.4g}", val_loss="-" if vl is None else f"{vl:.4g}")
            if ckpt is not None:
                meta = {
                    "epoch": epoch, "step": step, "history": history, "config": config, "best_epoch": best_epoch,
                    "best_score": None if best_epoch is None else best, "bad_epochs": bad, "stopped_early": stopped,
                    "finished": finished,
                    "rng": {"scheme": "batch order from a generator seeded with seed*1000003 + epoch", "seed": seed},
                }  # fmt: skip
                _save_checkpoint(ckpt, mods, best_state, opt, meta)
    finally:
        bar.close()
    if finished and best_state is not None:
        _load_state(mods, best_state)
    model.eval()
    return _Fit(history, best_epoch if best_epoch is not None else (len(history) or None), finished)


# ----------------------------------------------------------------------------------------- estimator


def default_topk(h: int) -> int:
    """``round(h/16)`` clipped to [1, h−1]: the released weights' ratio (topk 256 of h = 8·512 = 4,096 units,
    OpenCLIP ViT-B/32), so the default equals the paper's there and stays sparse for small d."""
    return min(max(1, round(h / 16)), max(1, h - 1))


class VLSAE(Aligner):
    """VL-SAE (Shen et al., NeurIPS 2025): a TopK sparse autoencoder with one encoder shared by two row-paired
    spaces of the same dimension d and one linear decoder per space (module docstring for the model).

    ``fit(X, Y)`` minimises ``MSE(x̃, x) + MSE(ỹ, y)`` with Adam on a seeded ``1 − val_fraction`` part of the
    pairs, keeping the epoch with the lowest validation loss. The shared space of this aligner is the concept
    space: ``transform_x(X)`` = ``transform_y(X)`` = the dense codes z (n, h) with exactly k nonzeros per row;
    ``translate(X) = W_y z(X) + b_y`` decodes X's concepts with Y's decoder.

    Defaults: the paper's (hidden_ratio 8, lr 1e-3, Adam, weight decay 0, batch 512, 10 epochs with 2 warm-up
    epochs then cosine, patience 10, 80/20 split), except ``topk=None`` → :func:`default_topk` (h/16; the
    released topk is 256 at d = 512, which would keep every unit at small d). ``device=None`` trains on the
    input's device. ``checkpoint_dir`` writes a checkpoint after every epoch (safetensors + JSON, atomic) and
    continues from one found there (its configuration must match); ``fit(..., stop_after=e)`` ends the call
    after epoch e of the schedule (call ``fit`` again to continue). The RNG state of a run is ``(seed, epoch)``,
    so a resumed fit equals an uninterrupted one bit for bit.

    Learned (float64 copies of the float32 weights): ``encoder_`` (h, d), ``decoder_x_`` (d, h), ``bias_x_``
    (d,), ``decoder_y_``, ``bias_y_``; ``history_`` (one row per epoch: ``loss``, ``val_loss``, ``lr``, ...),
    ``best_epoch_``, ``finished_``.
    """

    _arrays = ("encoder_", "decoder_x_", "bias_x_", "decoder_y_", "bias_y_")
    _scalars = ("history_", "best_epoch_", "finished_")
    _shapes: ClassVar[dict[str, tuple[str | int, ...]]] = {
        "encoder_": ("h", "d_x"),
        "decoder_x_": ("d_x", "h"),
        "bias_x_": ("d_x",),
        "decoder_y_": ("d_y", "h"),
        "bias_y_": ("d_y",),
    }
    _rebuild_on_load: ClassVar[str] = "_check_state"

    def __init__(
        self,
        hidden_ratio: int = 8,
        topk: int | None = None,
        lr: float = 1e-3,
        batch_size: int = 512,
        epochs: int = 10,
        warmup_epochs: int = 2,
        patience: int | None = 10,
        val_fraction: float = 0.2,
        weight_decay: float = 0.0,
        seed: int = 0,
        device: str | None = None,
        checkpoint_dir: str | None = None,
        progress: bool = False,
    ) -> None:
        self.hidden_ratio = hidden_ratio
        self.topk = topk
        self.lr = lr
        self.batch_size = batch_size
        self.epochs = epochs
        self.warmup_epochs = warmup_epochs
        self.patience = patience
        self.val_fraction = val_fraction
        self.weight_decay = weight_decay
        self.seed = seed
        self.device = device
        self.checkpoint_dir = checkpoint_dir
        self.progress = progress

    # ------------------------------------------------------------------------------------------- fit

    def _sizes(self, d: int) -> tuple[int, int]:
        """(h, k) for d-dimensional inputs; k must leave some units off (1 ≤ k < h)."""
        hp = self._hp
        h = int(hp["hidden_ratio"]) * d
        k = default_topk(h) if hp["topk"] is None else int(hp["topk"])
        if not 1 <= k < h:
            raise ValueError(
                f"topk must be between 1 and h − 1 = {h - 1} (h = hidden_ratio·d = {hp['hidden_ratio']}·{d} units; "
                f"k = h would keep every unit); got topk={k}"
            )
        return h, k

    def fit(self, X: ArrayLike, Y: ArrayLike, *, stop_after: int | None = None) -> VLSAE:
        """Train on paired rows ``X[i] ↔ Y[i]`` of one d-dimensional space (see the class docstring)."""
        hp = self._validate_params()
        x, y = as_pair(X, Y)
        if x.shape[1] != y.shape[1]:
            raise ValueError(
                f"VLSAE shares one encoder between X and Y, so they must have the same dimension; got d_x="
                f"{x.shape[1]}, d_y={y.shape[1]} (map both into one space first, e.g. with an aligner)"
            )
        if stop_after is not None and (
            isinstance(stop_after, bool) or not isinstance(stop_after, int) or stop_after < 1
        ):
            raise ValueError(f"stop_after must be a positive integer or None; got {stop_after!r}")
        self._check_training_spaces(x, y)
        n, d = int(x.shape[0]), int(x.shape[1])
        check_min_rows(n, 2, "VLSAE")
        h, k = self._sizes(d)
        val = None
        if hp["val_fraction"] > 0:
            n_val = round(hp["val_fraction"] * n)
            if n_val < 1 or n - n_val < 2:
                raise ValueError(f"val_fraction={hp['val_fraction']} leaves too few pairs to train or validate (n={n})")
            perm = torch.randperm(n, generator=torch.Generator().manual_seed(hp["seed"]))
            tr, va = perm[n_val:].sort().values, perm[:n_val].sort().values
            val = (x[va.to(x.device)], y[va.to(x.device)])
            x, y = x[tr.to(x.device)], y[tr.to(x.device)]
        dev = torch.device(hp["device"]) if hp["device"] is not None else x.device
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(hp["seed"])
            model = _SAE(d, h, k)
        model.to(dev)
        res = _train(
            model, x, y, val, batch_size=hp["batch_size"], epochs=hp["epochs"], warmup_epochs=hp["warmup_epochs"],
            lr=hp["lr"], weight_decay=hp["weight_decay"], patience=hp["patience"], seed=hp["seed"], dev=dev,
            checkpoint_dir=hp["checkpoint_dir"], stop_after=stop_after, progress=hp["progress"],
        )  # fmt: skip
        w = {k_: v.detach().cpu().double().numpy() for k_, v in model.state_dict().items()}
        self.encoder_ = w["encoder"]
        self.decoder_x_, self.bias_x_ = w["decoder_x.weight"], w["decoder_x.bias"]
        self.decoder_y_, self.bias_y_ = w["decoder_y.weight"], w["decoder_y.bias"]
        self.history_ = res.history
        self.best_epoch_ = res.best_epoch
        self.finished_ = res.finished
        self.n_features_x_ = self.n_features_y_ = d
        self.n_pairs_ = n
        return self

    def _check_state(self) -> None:
        """After ``load``: the arrays fit the hyper-parameters (h = hidden_ratio·d, d_x = d_y, 1 ≤ k < h)."""
        d = int(self.n_features_x_)
        if self.n_features_y_ != d:
            raise ValueError(f"d_x={d} and d_y={self.n_features_y_} differ; a VLSAE has one input dimension")
        h, _ = self._sizes(d)
        if np.shape(self.encoder_)[0] != h:
            raise ValueError(f"encoder_ has {np.shape(self.encoder_)[0]} units; hidden_ratio·d = {h}")

    # ------------------------------------------------------------------------------------- inference

    @property
    def n_units_(self) -> int:
        """h, the number of concept units."""
        self._check_fitted("n_units_")
        return int(np.shape(self.encoder_)[0])

    @property
    def topk_(self) -> int:
        """k, the number of active units per row."""
        self._check_fitted("topk_")
        return self._sizes(int(self.n_features_x_))[1]

    def _checked(self, X: ArrayLike, name: str, method: str) -> torch.Tensor:
        """Rows of either space as float64, checked (errors name the argument) against the fitted d."""
        self._check_fitted(method)
        t = as_matrix(X, name)
        if t.shape[1] != self.n_features_x_:
            raise ValueError(
                f"{method}: {name} has {t.shape[1]} features but this VLSAE was fitted on {self.n_features_x_}"
            )
        return t.double()

    def _blocks(self, x: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """(indices, values) of the kept units, per block of rows (float64)."""
        enc = self._state("encoder_", x.device)
        k = self.topk_
        return [_topk(_unit_activations(x[s : s + _BLOCK], enc), k) for s in range(0, x.shape[0], _BLOCK)]

    def _codes(self, x: torch.Tensor) -> torch.Tensor:
        h = self.n_units_
        out = []
        for idx, val in self._blocks(x):
            out.append(torch.zeros(idx.shape[0], h, dtype=torch.float64, device=x.device).scatter(1, idx, val))
        return torch.cat(out)

    def _decode(self, z: torch.Tensor, modality: str) -> torch.Tensor:
        W, b = self._state(f"decoder_{modality}_", z.device), self._state(f"bias_{modality}_", z.device)
        return z @ W.T + b

    def _transform_x(self, x: torch.Tensor) -> torch.Tensor:
        return self._codes(x)

    def _transform_y(self, y: torch.Tensor) -> torch.Tensor:
        return self._codes(y)

    def _translate(self, x: torch.Tensor) -> torch.Tensor:
        return self._decode(self._codes(x), "y")

    def activations(self, X: ArrayLike) -> Any:
        """Every unit's activation before TopK, ``a_j = 2 − ‖x̂ − ê_j‖₂`` (n, h), float64."""
        x = self._checked(X, "X", "activations")
        enc = self._state("encoder_", x.device)
        return _output(torch.cat([_unit_activations(x[s : s + _BLOCK], enc) for s in range(0, x.shape[0], _BLOCK)]), X)

    def encode(self, X: ArrayLike) -> tuple[Any, Any]:
        """The k active units of each row: (indices (n, k) int64, values (n, k) float64), by decreasing
        activation (ties to the lower unit index). Either space's rows (the encoder is shared)."""
        x = self._checked(X, "X", "encode")
        blocks = self._blocks(x)
        idx, val = torch.cat([b[0] for b in blocks]), torch.cat([b[1] for b in blocks])
        return _output(idx, X), _output(val, X)

    def codes(self, X: ArrayLike) -> Any:
        """The dense sparse codes z (n, h): exactly k nonzeros per row (same as ``transform_x``)."""
        return _output(self._codes(self._checked(X, "X", "codes")), X)

    def active_sets(self, X: ArrayLike) -> Any:
        """Each row's active units as sorted unit indices (n, k) int64."""
        x = self._checked(X, "X", "active_sets")
        return _output(torch.cat([b[0] for b in self._blocks(x)]).sort(dim=1).values, X)

    def reconstruct(self, X: ArrayLike, modality: str = "x") -> Any:
        """``W_m z(X) + b_m`` with the decoder of ``modality`` ("x" or "y"); ``reconstruct(X, "y")`` is
        ``translate(X)``, X's concepts decoded into Y's space."""
        if modality not in MODALITIES:
            raise ValueError(f"modality must be one of {MODALITIES} (the decoder to use); got {modality!r}")
        x = self._checked(X, "X", "reconstruct")
        return _output(self._decode(self._codes(x), modality), X)


VLSAE._schema = ParamSchema.from_callable(
    VLSAE.__init__,
    hidden_ratio={"low": 1},
    topk={"low": 1},
    lr={"low": 0.0, "low_open": True},
    batch_size={"low": 1},
    epochs={"low": 1},
    warmup_epochs={"low": 0},
    patience={"low": 1},
    val_fraction={"low": 0.0, "high": 1.0, "high_open": True},
    weight_decay={"low": 0.0},
)


# --------------------------------------------------------------------------------------- diagnostics


@dataclass(frozen=True)
class ConceptOverlap(DiagnosticResult):
    """Mean Jaccard overlap of the active sets of paired items, against shuffled pairs.

    ``jaccard = mean_i |S(x_i) ∩ S(y_i)| / |S(x_i) ∪ S(y_i)|`` (``= c/(2k − c)`` with c shared units);
    ``shuffled_jaccard`` = the same with Y's rows permuted (mean over ``n_shuffles`` seeded permutations,
    ``shuffled_sd`` their spread); ``p_value`` = ``(1 + #{shuffled ≥ jaccard}) / (1 + n_shuffles)``;
    ``chance_jaccard`` = E[J] for two independent uniformly random k-subsets of h units (hypergeometric c).
    """

    jaccard: float
    shuffled_jaccard: float
    shuffled_sd: float
    p_value: float
    chance_jaccard: float
    k: int
    n_units: int
    n_shuffles: int
    per_pair: np.ndarray = dataclasses.field(repr=False, compare=False)

    @property
    def value(self) -> float:
        return self.jaccard


@dataclass(frozen=True)
class DeadUnits(DiagnosticResult):
    """Units never active (never among a row's k) on the given rows: ``dead_fraction = n_dead / h`` over X and
    Y together, and per space. ``counts`` (h,) is how many rows activate each unit."""

    dead_fraction: float
    n_dead: int
    n_units: int
    dead_fraction_x: float
    dead_fraction_y: float
    counts: np.ndarray = dataclasses.field(repr=False, compare=False)

    @property
    def value(self) -> float:
        return self.dead_fraction


@dataclass(frozen=True)
class ReconstructionR2(DiagnosticResult):
    """``R² = 1 − Σ‖x̃_i − x_i‖² / Σ‖x_i − x̄‖²`` per space (x̄: the column means of the given rows) ∈ (−∞, 1];
    ``value`` is the mean of the two."""

    r2_x: float
    r2_y: float

    @property
    def value(self) -> float:
        return (self.r2_x + self.r2_y) / 2


@dataclass(frozen=True)
class VLSAEOverlap(DiagnosticResult):
    """What ``vlsae_concept_overlap`` returns: the paired-item concept overlap of a VL-SAE fitted on (X, Y)
    (``value`` = ``jaccard``), its shuffled-pairs and random-set baselines, the fraction of dead units and the
    reconstruction R² per space, all on the given rows; ``model`` is the fitted :class:`VLSAE`."""

    jaccard: float
    shuffled_jaccard: float
    shuffled_sd: float
    p_value: float
    chance_jaccard: float
    dead_fraction: float
    r2_x: float
    r2_y: float
    k: int
    n_units: int
    epochs_run: int
    best_epoch: int | None
    _model: Any = dataclasses.field(default=None, repr=False, compare=False)

    @property
    def value(self) -> float:
        return self.jaccard

    @property
    def model(self) -> VLSAE:
        return self._model


def _fitted(sae: Any) -> VLSAE:
    if not isinstance(sae, VLSAE):
        raise TypeError(f"expected a fitted VLSAE; got {type(sae).__name__}")
    sae._check_fitted("a diagnostic")
    return sae


def _sets(sae: VLSAE, X: ArrayLike, name: str) -> torch.Tensor:
    x = sae._checked(X, name, "VL-SAE diagnostic")
    return torch.cat([b[0] for b in sae._blocks(x)]).cpu()


def _intersections(A: torch.Tensor, B: torch.Tensor, h: int, perms: torch.Tensor) -> torch.Tensor:
    """``|A_i ∩ B_{π(i)}|`` for each permutation π (rows of ``perms``, (P, n)): (P, n), in row blocks."""
    n, k = A.shape
    P = perms.shape[0]
    out = torch.empty(P, n, dtype=torch.int64)
    block = max(1, min(n, 2_000_000 // max(P * k, h)))
    for s in range(0, n, block):
        rows = slice(s, min(n, s + block))
        mask = torch.zeros(rows.stop - s, h, dtype=torch.bool).scatter_(1, A[rows], True)
        Bp = B[perms[:, rows]]  # (P, b, k)
        out[:, rows] = mask.unsqueeze(0).expand(P, -1, -1).gather(2, Bp).sum(2)
    return out


def _chance_jaccard(h: int, k: int) -> float:
    from scipy.stats import hypergeom

    c = np.arange(0, k + 1)
    return float(np.sum(hypergeom.pmf(c, h, k, k) * c / (2 * k - c)))


def concept_overlap(sae: VLSAE, X: ArrayLike, Y: ArrayLike, *, n_shuffles: int = 100, seed: int = 0) -> ConceptOverlap:
    """Mean Jaccard overlap of the active concept sets of paired rows ``X[i] ↔ Y[i]`` under a fitted VL-SAE,
    with the shuffled-pairs baseline (Y's rows permuted, ``n_shuffles`` seeded permutations; the sets are
    computed once, so each permutation costs O(n·k)). See :class:`ConceptOverlap`."""
    sae = _fitted(sae)
    if isinstance(n_shuffles, bool) or not isinstance(n_shuffles, (int, np.integer)) or n_shuffles < 1:
        raise ValueError(f"n_shuffles must be an integer >= 1; got {n_shuffles!r}")
    A, B = _sets(sae, X, "X"), _sets(sae, Y, "Y")
    if A.shape[0] != B.shape[0]:
        raise ValueError(
            f"X and Y must be row-paired (the same items in the same order); got {A.shape[0]} and {B.shape[0]} rows"
        )
    n, k = A.shape
    h = sae.n_units_
    rng = np.random.default_rng(seed)
    perms = torch.from_numpy(np.stack([np.arange(n), *(rng.permutation(n) for _ in range(int(n_shuffles)))]))
    c = _intersections(A, B, h, perms).double()
    J = c / (2 * k - c)
    per_pair = J[0].numpy()
    null = J[1:].mean(1).numpy()
    obs = float(per_pair.mean())
    return ConceptOverlap(
        jaccard=obs,
        shuffled_jaccard=float(null.mean()),
        shuffled_sd=float(null.std(ddof=1)) if null.size > 1 else 0.0,
        p_value=float((1 + np.sum(null >= obs)) / (1 + null.size)),
        chance_jaccard=_chance_jaccard(h, k),
        k=int(k),
        n_units=int(h),
        n_shuffles=int(n_shuffles),
        per_pair=per_pair,
    )


def dead_units(sae: VLSAE, X: ArrayLike, Y: ArrayLike | None = None) -> DeadUnits:
    """The units of a fitted VL-SAE that no row of X (nor of Y, when given) activates. See :class:`DeadUnits`."""
    sae = _fitted(sae)
    h = sae.n_units_
    cx = torch.bincount(_sets(sae, X, "X").reshape(-1), minlength=h)
    cy = torch.bincount(_sets(sae, Y, "Y").reshape(-1), minlength=h) if Y is not None else torch.zeros_like(cx)
    counts = (cx + cy).numpy()
    n_dead = int((counts == 0).sum())
    return DeadUnits(
        dead_fraction=n_dead / h,
        n_dead=n_dead,
        n_units=h,
        dead_fraction_x=float((cx == 0).double().mean()),
        dead_fraction_y=float((cy == 0).double().mean()) if Y is not None else float("nan"),
        counts=counts,
    )


def _r2(target: torch.Tensor, recon: torch.Tensor) -> float:
    sst = float(((target - target.mean(0)) ** 2).sum())
    if sst == 0.0:
        return float("nan")  # a constant space: R² is undefined
    return 1.0 - float(((recon - target) ** 2).sum()) / sst


def reconstruction_r2(sae: VLSAE, X: ArrayLike, Y: ArrayLike) -> ReconstructionR2:
    """R² of each space's reconstruction through its own decoder (NaN for a constant space). See
    :class:`ReconstructionR2`."""
    sae = _fitted(sae)
    x = sae._checked(X, "X", "reconstruction_r2")
    y = sae._checked(Y, "Y", "reconstruction_r2")
    return ReconstructionR2(r2_x=_r2(x, sae._decode(sae._codes(x), "x")), r2_y=_r2(y, sae._decode(sae._codes(y), "y")))


@register(
    "vlsae_concept_overlap",
    family="concepts",
    inputs=("X", "Y"),
    range=(0.0, 1.0),
    higher_is_better=True,
    cost="fits a VL-SAE: O(epochs·n·h·d) with h = hidden_ratio·d, then O(n·h·d + n_shuffles·n·k)",
    description=(
        "Mean Jaccard overlap of the active concept sets of paired items under a VL-SAE fitted on (X, Y) "
        "(Shen et al., NeurIPS 2025), with the shuffled-pairs baseline, dead units and R² per space"
    ),
    constraints={
        "hidden_ratio": {"low": 1},
        "topk": {"low": 1},
        "epochs": {"low": 1},
        "warmup_epochs": {"low": 0},
        "batch_size": {"low": 1},
        "lr": {"low": 0.0, "low_open": True},
        "val_fraction": {"low": 0.0, "high": 1.0, "high_open": True},
        "n_shuffles": {"low": 1},
    },
    resample=False,
    null=None,
)
def vlsae_concept_overlap(
    X: ArrayLike,
    Y: ArrayLike,
    *,
    hidden_ratio: int = 8,
    topk: int | None = None,
    epochs: int = 10,
    warmup_epochs: int = 2,
    batch_size: int = 512,
    lr: float = 1e-3,
    val_fraction: float = 0.2,
    n_shuffles: int = 100,
    seed: int = 0,
    device: str | None = None,
) -> VLSAEOverlap:
    """Fit a :class:`VLSAE` on the pairs (X, Y) (one space, ``d_x == d_y``) and read the concept overlap of the
    paired items off it: ``value`` = mean Jaccard of ``S(x_i)`` and ``S(y_i)``, with the shuffled-pairs baseline
    (Y's rows permuted), dead units and R² per space, all on every given row (R² on the training pairs is
    optimistic; use :func:`reconstruction_r2` on held-out pairs for a generalisation number).

    No registry null (``diagnostic_null`` would refit the SAE per permutation): the loss
    ``MSE(x̃, x) + MSE(ỹ, y)`` never compares x_i with y_i, so a fit on permuted pairs is the same model up to
    batch order; permuting Y's rows against the one fitted model's active sets gives the same null at
    O(n·k) per permutation, reported as ``shuffled_jaccard`` and ``p_value``. Not resampled: it fits a model.
    """
    sae = VLSAE(
        hidden_ratio=hidden_ratio, topk=topk, epochs=epochs, warmup_epochs=warmup_epochs, batch_size=batch_size,
        lr=lr, val_fraction=val_fraction, seed=seed, device=device,
    ).fit(X, Y)  # fmt: skip
    ov = concept_overlap(sae, X, Y, n_shuffles=n_shuffles, seed=seed)
    dead = dead_units(sae, X, Y)
    r2 = reconstruction_r2(sae, X, Y)
    return VLSAEOverlap(
        jaccard=ov.jaccard,
        shuffled_jaccard=ov.shuffled_jaccard,
        shuffled_sd=ov.shuffled_sd,
        p_value=ov.p_value,
        chance_jaccard=ov.chance_jaccard,
        dead_fraction=dead.dead_fraction,
        r2_x=r2.r2_x,
        r2_y=r2.r2_y,
        k=ov.k,
        n_units=ov.n_units,
        epochs_run=len(sae.history_),
        best_epoch=sae.best_epoch_,
        _model=sae,
    )


__all__ = [
    "VLSAE",
    "ConceptOverlap",
    "DeadUnits",
    "ReconstructionR2",
    "VLSAEOverlap",
    "concept_overlap",
    "dead_units",
    "default_topk",
    "reconstruction_r2",
    "vlsae_concept_overlap",
]
