"""Training zoo networks: CPU, deterministic given the seed, checkpointed every epoch, resumable.

Recipe: cross-entropy, Adam (β = 0.9, 0.999, ε = 1e-8, no weight decay; Kingma & Ba, ICLR 2015) with the learning
rate annealed per step on a cosine from ``lr`` to 0 over all epochs (Loshchilov & Hutter, ICLR 2017, without
restarts), batches of 128, no augmentation, no dropout. Git Re-Basin trains its MNIST MLPs with Adam at 1e-3 too.

Determinism: the initial weights come from ``torch.manual_seed(seed)`` (inside ``fork_rng``, so the caller's RNG is
untouched); epoch ``e`` visits the training images in the order of ``torch.randperm`` under a generator seeded
from ``(seed, e)``, so the order does not depend on earlier epochs and a resumed run draws what an uninterrupted one
would; the learning rate is a function of the step index; training runs under
``torch.use_deterministic_algorithms(True)``. The same seed, data, settings, torch build and thread count give
bit-identical weights. After each epoch the weights, BatchNorm statistics and Adam state are written (atomically);
a run killed mid-epoch resumes at the start of that epoch and ends bit-identical to an uninterrupted one. The
finished checkpoint drops the Adam state.

Speed: the default MLP trains in about a minute and the default CNN in about 2 minutes on 2 idle CPU cores. On a
machine whose cores are shared with other busy processes, start Python with ``OMP_WAIT_POLICY=PASSIVE`` (or use
``torch.set_num_threads(1)``): spinning OpenMP threads that lose their core made training steps 10–20× slower in
our measurements. (Weights are bit-identical only for the same thread count.)
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from alignkit._progress import progress as progress_bar
from alignkit._version import __version__
from alignkit.zoo.activations import evaluate
from alignkit.zoo.architectures import build_model, check_spec, spec_name
from alignkit.zoo.checkpoint import (
    ZooModel,
    checkpoint_name,
    load_model,
    model_from_tensors,
    read_checkpoint,
    split_tensors,
    write_checkpoint,
)
from alignkit.zoo.data import FASHION_MNIST_MEAN, FASHION_MNIST_STD, ImageData, check_data, data_digest

#: epochs that reach good test accuracy within ~3 minutes on 2 CPU cores for the default specs (see the docs)
DEFAULT_EPOCHS = {"mlp": 10, "cnn": 4}
DEFAULT_LR = 1e-3
ADAM_BETAS = (0.9, 0.999)
ADAM_EPS = 1e-8


def init_model(spec: dict[str, Any], seed: int) -> nn.Sequential:
    """The network of ``spec`` with torch's default random initialisation under ``seed``, untrained, in eval mode
    (the control of the capacity test; also epoch 0 of :func:`train_model`). The global RNG is left untouched."""
    seed = _check_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build_model(spec)
    return model.eval()


def _check_seed(seed: Any) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**63:
        raise ValueError(f"seed must be a non-negative integer; got {seed!r}")
    return seed


def _positive(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{what} must be a positive integer; got {value!r}")
    return value


def epoch_order(seed: int, epoch: int, n: int) -> torch.Tensor:
    """The order in which epoch ``epoch`` (0-based) of the run with ``seed`` visits ``n`` training images."""
    digest = hashlib.sha256(f"alignkit.zoo:{seed}:{epoch}".encode()).digest()
    g = torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") >> 1)
    return torch.randperm(n, generator=g)


def cosine_lr(lr: float, step: int, total: int) -> float:
    """``lr · (1 + cos(π·step/total))/2``: ``lr`` at step 0, 0 after the last step."""
    return lr * 0.5 * (1.0 + math.cos(math.pi * step / total))


@contextlib.contextmanager
def deterministic() -> Iterator[None]:
    """``torch.use_deterministic_algorithms(True)`` for the block, then the caller's setting back."""
    before, warn_only = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
    )
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before, warn_only=warn_only)


def train_settings(epochs: int, batch_size: int, lr: float) -> dict[str, Any]:
    """What a checkpoint records of how it was trained (compared on resume)."""
    return {
        "optimizer": "adam",
        "lr": lr,
        "betas": list(ADAM_BETAS),
        "eps": ADAM_EPS,
        "weight_decay": 0.0,
        "schedule": "cosine-per-step",
        "batch_size": batch_size,
        "epochs": epochs,
        "loss": "cross_entropy",
    }


def _optimizer(model: nn.Module, lr: float) -> torch.optim.Adam:
    # foreach=False: one code path whatever torch picks as default, so runs match across machines with one build
    return torch.optim.Adam(model.parameters(), lr=lr, betas=ADAM_BETAS, eps=ADAM_EPS, weight_decay=0.0, foreach=False)


def _optimizer_tensors(model: nn.Module, opt: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    """Adam's per-parameter state as ``{"<parameter>/<slot>": tensor}`` (``step``, ``exp_avg``, ``exp_avg_sq``)."""
    out = {}
    for name, p in model.named_parameters():
        for slot, t in opt.state.get(p, {}).items():
            out[f"{name}/{slot}"] = t if isinstance(t, torch.Tensor) else torch.tensor(float(t))
    return out


def _restore_optimizer(model: nn.Module, opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor]) -> None:
    names = [name for name, _ in model.named_parameters()]
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, t in tensors.items():
        name, _, slot = key.rpartition("/")
        if name not in names:
            raise ValueError(f"checkpoint optimiser state names an unknown parameter {name!r}")
        state.setdefault(names.index(name), {})[slot] = t
    opt.load_state_dict({"state": state, "param_groups": opt.state_dict()["param_groups"]})


def _mismatch(meta: dict[str, Any], expected: dict[str, Any], prefix: str = "") -> list[str]:
    """``"key: checkpoint A, asked for B"`` for each differing entry (nested dicts key by key)."""
    out = []
    for k, v in expected.items():
        old = meta.get(k)
        if isinstance(old, dict) and isinstance(v, dict):
            out += _mismatch(old, v, f"{prefix}{k}.")
        elif old != v:
            out.append(f"{prefix}{k}: checkpoint {old!r}, asked for {v!r}")
    return out


def train_model(
    spec: dict[str, Any],
    data: ImageData | Sequence[torch.Tensor],
    *,
    seed: int,
    epochs: int | None = None,
    batch_size: int = 128,
    lr: float = DEFAULT_LR,
    out: str | os.PathLike[str],
    progress: bool = True,
) -> ZooModel:
    """Train the network of ``spec`` on ``data`` = (train_x, train_y, test_x, test_y) and checkpoint it at ``out``.

    ``epochs`` defaults to :data:`DEFAULT_EPOCHS` of the arch. When ``out`` holds a finished checkpoint of the same
    spec, seed, settings and data it is loaded, not retrained; an unfinished one resumes after its last finished
    epoch; one of anything else raises ValueError listing the differences. Returns the trained network (eval mode)
    with its test accuracy.
    """
    spec = check_spec(spec)
    seed = _check_seed(seed)
    epochs = _positive(DEFAULT_EPOCHS[spec["arch"]] if epochs is None else epochs, "epochs")
    batch_size = _positive(batch_size, "batch_size")
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not (math.isfinite(lr) and lr > 0):
        raise ValueError(f"lr must be a positive finite number; got {lr!r}")
    lr = float(lr)
    d = check_data(tuple(data), spec["input_shape"], spec["num_classes"])
    path = Path(out).expanduser()
    expected = {
        "spec": spec,
        "seed": seed,
        "train": train_settings(epochs, batch_size, lr),
        "data_sha256": data_digest(d),
    }
    model = init_model(spec, seed).train()
    opt = _optimizer(model, lr)
    meta: dict[str, Any] = {
        **expected,
        "epochs_done": 0,
        "finished": False,
        "history": [],
        "data": {
            "n_train": len(d.train_x),
            "n_test": len(d.test_x),
            "normalisation": {"mean": FASHION_MNIST_MEAN, "std": FASHION_MNIST_STD},
        },
    }
    if path.exists():
        old, tensors = read_checkpoint(path)
        diff = _mismatch(old, expected)
        if diff:
            raise ValueError(
                f"{path} holds a different run ({'; '.join(diff)}); delete it or pass another out= to train this one"
            )
        if old.get("finished"):
            return load_model(path)
        weights, opt_tensors = split_tensors(tensors)
        model = model_from_tensors(path, spec, weights).train()
        opt = _optimizer(model, lr)
        if old["epochs_done"] > 0:
            _restore_optimizer(model, opt, opt_tensors)
        meta = old
    n = len(d.train_x)
    steps_per_epoch = -(-n // batch_size)
    total = steps_per_epoch * epochs
    with deterministic():
        for epoch in range(int(meta["epochs_done"]), epochs):
            t0, c0 = time.perf_counter(), time.process_time()
            order = epoch_order(seed, epoch, n)
            loss_sum = torch.zeros((), dtype=torch.float64)
            bar = progress_bar(
                range(steps_per_epoch), show=progress, desc=f"{spec_name(spec)} seed {seed} epoch {epoch + 1}/{epochs}"
            )
            for i in bar:
                idx = order[i * batch_size : (i + 1) * batch_size]
                for group in opt.param_groups:
                    group["lr"] = cosine_lr(lr, epoch * steps_per_epoch + i, total)
                opt.zero_grad(set_to_none=True)
                loss = F.cross_entropy(model(d.train_x[idx]), d.train_y[idx])
                loss.backward()
                opt.step()
                loss_sum += loss.detach().double() * len(idx)
            meta["history"].append(
                {
                    "epoch": epoch + 1,
                    "train_loss": float(loss_sum) / n,
                    "seconds": round(time.perf_counter() - t0, 3),
                    "cpu_seconds": round(time.process_time() - c0, 3),
                }
            )
            meta["epochs_done"] = epoch + 1
            if epoch + 1 < epochs:
                write_checkpoint(path, model, meta, _optimizer_tensors(model, opt))
    model.eval()
    scores = evaluate(model, d.test_x, d.test_y)
    meta.update(
        finished=True,
        test_accuracy=scores["accuracy"],
        test_loss=scores["loss"],
        train_seconds=round(sum(h["seconds"] for h in meta["history"]), 3),
        train_cpu_seconds=round(sum(h.get("cpu_seconds", 0.0) for h in meta["history"]), 3),
        versions={"alignkit": __version__, "torch": torch.__version__},
        threads=torch.get_num_threads(),
    )
    write_checkpoint(path, model, meta)
    return ZooModel(model, spec, seed, scores["accuracy"], path, meta)


def train_zoo(
    spec: dict[str, Any],
    seeds: Sequence[int] | int,
    root: str | os.PathLike[str],
    *,
    data: ImageData | Sequence[torch.Tensor] | None = None,
    epochs: int | None = None,
    batch_size: int = 128,
    lr: float = DEFAULT_LR,
    progress: bool = True,
) -> list[ZooModel]:
    """One network of ``spec`` per seed (``seeds``: a list, or N for seeds 0..N-1) in folder ``root``, named
    ``<spec name>-seed<seed>.safetensors``: finished ones are loaded, unfinished ones resumed, missing ones
    trained. ``data`` defaults to :func:`alignkit.zoo.fashion_mnist` (``$ALIGNKIT_FASHION_MNIST``), read only when
    something needs training. A finished checkpoint trained with other settings raises ValueError."""
    spec = check_spec(spec)
    if isinstance(seeds, (int, bool)):
        seeds = list(range(_positive(seeds, "seeds")))
    seeds = [_check_seed(s) for s in seeds]
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must be distinct; got {seeds}")
    folder = Path(root).expanduser()
    folder.mkdir(parents=True, exist_ok=True)
    n_epochs = DEFAULT_EPOCHS[spec["arch"]] if epochs is None else _positive(epochs, "epochs")
    settings = train_settings(n_epochs, _positive(batch_size, "batch_size"), float(lr))
    out: list[ZooModel] = []
    for seed in progress_bar(seeds, show=progress, desc=f"zoo {spec_name(spec)}", unit="model"):
        path = folder / checkpoint_name(spec, seed)
        if data is None and path.exists():
            meta, _ = read_checkpoint(path)
            if meta.get("finished") and not _mismatch(meta, {"spec": spec, "seed": seed, "train": settings}):
                out.append(load_model(path))
                continue
        if data is None:
            from alignkit.zoo.data import fashion_mnist

            data = fashion_mnist()
        out.append(
            train_model(
                spec, data, seed=seed, epochs=n_epochs, batch_size=batch_size, lr=lr, out=path, progress=progress
            )
        )
    return out
