"""Capacity versus control: does a flexible map "find" alignment where there is none to find?

Sutter, Minder, Hofmann, Pimentel, "The Non-Linear Representation Dilemma: Is Causal Abstraction Enough for
Mechanistic Interpretability?", NeurIPS 2025: with alignment maps of unbounded capacity, even randomly
initialised networks align perfectly with the target (their non-linear maps reach near-perfect accuracy on random
Pythia models), while linear maps track what the network learned. Here the same question for representation
alignment: maps of growing capacity (orthogonal Procrustes, ridge, one-hidden-layer MLPs of growing width) from a
trained network's layer and from a randomly initialised network's layer (the control) to the same target, fitted
on a train split and scored on held-out rows. What the map adds over the control is the *selectivity*, trained −
random (the control-task idea of Hewitt & Liang, "Designing and Interpreting Probes with Control Tasks", EMNLP
2019).

Held-out scores, with ``Ŷ`` the mapped held-out rows and ``ȳ`` the train mean of the target:

- ``r2_test = 1 − ‖Y_te − Ŷ‖²_F / ‖Y_te − ȳ‖²_F`` (pooled; 0 = predicting the train mean, < 0 worse);
- ``top1_test``: the fraction of held-out rows whose own target is the cosine-nearest of all held-out targets
  (both sides centred by ``ȳ``; ties count their expectation, chance = 1/n_test; :mod:`alignkit.ranking`);
- ``mknn_test``: mutual kNN between ``Ŷ − ȳ`` and ``Y_te − ȳ`` (cosine, ``k``).

Maps: ``"procrustes"`` (:class:`~alignkit.align.Procrustes` with centring and the optimal isotropic scale),
``"linear"`` (:class:`~alignkit.align.Ridge`, λ by generalised cross-validation), ``"mlp-<width>"`` (Linear → ReLU
→ Linear, :class:`~alignkit.align.MLPHead`, on z-scored inputs and targets, MSE, Adam, early stopping on a
validation part of the train split, best weights kept). Everything is seeded: the split, the validation part, the
initialisation and the batches; both sources get the same split and the same seeds.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from alignkit._validation import ArrayLike, check_k
from alignkit.sanity._common import as_matrices, check_seed, frame

SOURCES = ("trained", "random")
METRICS = ("r2_train", "r2_test", "top1_test", "mknn_test")
_MLP = re.compile(r"^mlp-([1-9][0-9]*)$")


@dataclass(frozen=True)
class CapacityResult:
    """``rows`` (one per source and map): source ("trained" or "random"), map, capacity_rank (position in
    ``maps``), n_params, r2_train, r2_test, top1_test, mknn_test, epochs (MLP epochs run; 0 for closed forms),
    n_train, n_test.

    ``summary`` (one per map): map, capacity_rank, n_params, and for each of r2_train, r2_test, top1_test,
    mknn_test: ``<metric>_trained``, ``<metric>_random`` and ``<metric>_selectivity`` (trained − random).
    """

    rows: Any
    summary: Any
    maps: list[str]
    n_train: int
    n_test: int
    k: int

    @property
    def top1_chance(self) -> float:
        return 1.0 / self.n_test

    def tables(self) -> dict[str, Any]:
        return {"rows": self.rows, "summary": self.summary}


def _check_maps(maps: Any) -> list[str]:
    if isinstance(maps, str) or not isinstance(maps, Sequence):
        raise TypeError(f"maps must be a list of map names; got {type(maps).__name__}")
    out = [str(m) for m in maps]
    if not out:
        raise ValueError("maps is empty; e.g. ('procrustes', 'linear', 'mlp-64')")
    for m in out:
        if m not in ("procrustes", "linear") and not _MLP.match(m):
            raise ValueError(
                f"unknown map {m!r}; expected 'procrustes', 'linear' or 'mlp-<hidden width>' (e.g. 'mlp-256')"
            )
    if len(set(out)) != len(out):
        raise ValueError(f"maps must not repeat a map; got {out}")
    return out


def _split(n: int, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(test_fraction, bool) or not isinstance(test_fraction, (int, float)) or not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be in (0, 1); got {test_fraction!r}")
    n_test = round(n * test_fraction)
    if n_test < 3 or n - n_test < 10:
        raise ValueError(f"too few rows to split: n = {n} with test_fraction={test_fraction} leaves {n - n_test} "
                         f"train and {n_test} held-out rows (need >= 10 and >= 3)")  # fmt: skip
    perm = np.random.default_rng(seed).permutation(n)
    return np.sort(perm[n_test:]), np.sort(perm[:n_test])


def _scale(std: torch.Tensor) -> torch.Tensor:
    """Per-column factors that standardise: 1/std, and 0 for a column (nearly) constant on the training rows. The
    map learns nothing from such a column, and a ReLU unit dead on every training image but alive on a test image
    would otherwise enter the MLP multiplied by ~1e8 (held-out R² of −3e7 on real MLP layers)."""
    tol = 1e-6 * float(std.max()) if std.numel() else 0.0
    return torch.where(std > tol, 1.0 / std, torch.zeros_like(std))


def _r2(y: torch.Tensor, pred: torch.Tensor, mean: torch.Tensor) -> float:
    total = float(((y - mean) ** 2).sum())
    return 1.0 - float(((y - pred) ** 2).sum()) / total if total > 0 else float("nan")


def _top1(pred: torch.Tensor, y: torch.Tensor) -> float:
    from alignkit.ranking import X_TO_Y, paired_ranks, rank_summary

    return rank_summary(paired_ranks(pred, y, metric="cosine")[X_TO_Y], (1,))["R@1"]


def _mknn(pred: torch.Tensor, y: torch.Tensor, k: int) -> float:
    from alignkit.metrics import measure

    return float(measure("mutual_knn", pred, y, k=k))


@dataclass
class _Fitted:
    predict: Any
    n_params: int
    epochs: int = 0


def _fit_closed(kind: str, x: torch.Tensor, y: torch.Tensor) -> _Fitted:
    from alignkit.align import Procrustes, Ridge

    if kind == "procrustes":
        p = Procrustes(center=True, scale=True).fit(x, y)
        return _Fitted(p.translate, int(p.rotation_.size) + 1)
    r = Ridge(alpha=None).fit(x, y)
    return _Fitted(r.translate, int(r.coef_.size + r.intercept_.size))


def _fit_mlp(
    x: torch.Tensor, y: torch.Tensor, hidden: int, *, seed: int, max_epochs: int, patience: int, lr: float,
    batch_size: int, val_fraction: float,
) -> _Fitted:  # fmt: skip
    """Linear → ReLU → Linear on z-scored x and y, MSE, Adam; stops after ``patience`` epochs without a lower
    validation MSE and keeps the best weights."""
    from alignkit.align import MLPHead

    mx, fx = x.mean(0), _scale(x.std(0))
    my, sy = y.mean(0), y.std(0).clamp_min(1e-8)
    xs, ys = ((x - mx) * fx).float(), ((y - my) / sy).float()
    g = np.random.default_rng(seed)
    perm = g.permutation(x.shape[0])
    n_val = max(1, round(x.shape[0] * val_fraction))
    val, fit = torch.as_tensor(perm[:n_val]), torch.as_tensor(perm[n_val:])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = MLPHead(x.shape[1], y.shape[1], hidden=hidden, n_layers=2, act="relu")
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    batches = torch.Generator().manual_seed(seed)
    best, best_state, waited, epochs = float("inf"), copy.deepcopy(net.state_dict()), 0, 0
    for epoch in range(max_epochs):
        net.train()
        order = fit[torch.randperm(fit.numel(), generator=batches)]
        for start in range(0, order.numel(), batch_size):
            idx = order[start : start + batch_size]
            opt.zero_grad()
            loss = torch.mean((net(xs[idx]) - ys[idx]) ** 2)
            loss.backward()
            opt.step()
        net.eval()
        with torch.no_grad():
            val_loss = float(torch.mean((net(xs[val]) - ys[val]) ** 2))
        epochs = epoch + 1
        if val_loss < best * (1 - 1e-4):
            best, best_state, waited = val_loss, copy.deepcopy(net.state_dict()), 0
        else:
            waited += 1
            if waited >= patience:
                break
    net.load_state_dict(best_state)
    net.eval()

    def predict(t: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return net(((t.double() - mx) * fx).float()).double() * sy + my

    return _Fitted(predict, sum(p.numel() for p in net.parameters()), epochs)


def capacity_control(
    source_trained: ArrayLike,
    source_random: ArrayLike,
    target: ArrayLike,
    *,
    maps: Sequence[str] = ("procrustes", "linear", "mlp-64", "mlp-256", "mlp-1024"),
    test_fraction: float = 0.3,
    seed: int = 0,
    k: int = 10,
    max_epochs: int = 200,
    patience: int = 10,
    lr: float = 1e-3,
    batch_size: int = 128,
    val_fraction: float = 0.2,
) -> CapacityResult:
    """Held-out alignment of a trained and a randomly initialised source to one target, for maps of growing
    capacity (see the module docstring for the maps and scores).

    source_trained, source_random, target : (n, d) activations of the same n items (rows); widths may differ.
    maps : in order of capacity: "procrustes", "linear", "mlp-<hidden width>".
    test_fraction : held-out share of the rows (seeded split, the same for both sources).
    k : the mutual-kNN neighbourhood on held-out rows.
    max_epochs, patience, lr, batch_size, val_fraction : the MLP fits (early stopping on ``val_fraction`` of the
        train rows).
    """
    xt, xr, y = as_matrices([source_trained, source_random, target], ["source_trained", "source_random", "target"])
    xt, xr, y = xt.double().cpu(), xr.double().cpu(), y.double().cpu()
    seed = check_seed(seed)
    names = _check_maps(maps)
    train, test = _split(int(y.shape[0]), test_fraction, seed)
    k = check_k(k, len(test))
    for name, value, low in (("max_epochs", max_epochs, 1), ("patience", patience, 1), ("batch_size", batch_size, 1)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise ValueError(f"{name} must be an integer >= {low}; got {value!r}")
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not lr > 0:
        raise ValueError(f"lr must be a positive number; got {lr!r}")
    if isinstance(val_fraction, bool) or not isinstance(val_fraction, (int, float)) or not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be in (0, 1); got {val_fraction!r}")
    tr, te = torch.as_tensor(train), torch.as_tensor(test)
    y_tr, y_te = y[tr], y[te]
    mean = y_tr.mean(0)

    rows: list[dict[str, Any]] = []
    for source, x in zip(SOURCES, (xt, xr), strict=True):
        x_tr, x_te = x[tr], x[te]
        for rank, name in enumerate(names):
            m = _MLP.match(name)
            if m is None:
                fitted = _fit_closed(name, x_tr, y_tr)
            else:
                fitted = _fit_mlp(x_tr, y_tr, int(m.group(1)), seed=seed, max_epochs=int(max_epochs),
                                  patience=int(patience), lr=float(lr), batch_size=int(batch_size),
                                  val_fraction=float(val_fraction))  # fmt: skip
            p_tr, p_te = fitted.predict(x_tr), fitted.predict(x_te)
            rows.append({
                "source": source, "map": name, "capacity_rank": rank, "n_params": fitted.n_params,
                "r2_train": _r2(y_tr, p_tr, mean), "r2_test": _r2(y_te, p_te, mean),
                "top1_test": _top1(p_te - mean, y_te - mean), "mknn_test": _mknn(p_te - mean, y_te - mean, k),
                "epochs": fitted.epochs, "n_train": len(train), "n_test": len(test),
            })  # fmt: skip
    table = frame(rows, _ROW_COLUMNS)
    return CapacityResult(table, _summary(table, names), names, len(train), len(test), k)


def _summary(rows: Any, names: list[str]) -> Any:
    out = []
    for rank, name in enumerate(names):
        part = rows[rows["map"] == name].set_index("source")
        row: dict[str, Any] = {"map": name, "capacity_rank": rank, "n_params": int(part.loc["trained", "n_params"])}
        for metric in METRICS:
            a, b = float(part.loc["trained", metric]), float(part.loc["random", metric])
            row.update({f"{metric}_trained": a, f"{metric}_random": b, f"{metric}_selectivity": a - b})
        out.append(row)
    columns: dict[str, Any] = {"map": str, "capacity_rank": "int64", "n_params": "int64"}
    for metric in METRICS:
        columns.update({f"{metric}_{s}": "float64" for s in ("trained", "random", "selectivity")})
    return frame(out, columns)


_ROW_COLUMNS = {
    "source": str, "map": str, "capacity_rank": "int64", "n_params": "int64", "r2_train": "float64",
    "r2_test": "float64", "top1_test": "float64", "mknn_test": "float64", "epochs": "int64", "n_train": "int64",
    "n_test": "int64",
}  # fmt: skip
