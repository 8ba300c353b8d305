"""MUSE: adversarial training of a linear map, then Procrustes refinement (Conneau et al., ICLR 2018).

Conneau, Lample, Ranzato, Denoyer & Jégou, "Word translation without parallel data", ICLR 2018; code
facebookresearch/MUSE ``unsupervised.py``, ``src/trainer.py``, ``src/models.py``, ``src/dico_builder.py``,
``src/evaluation/evaluator.py`` (docs/methods.md §4.1). Written from the paper and a reading of that code.
"""

from __future__ import annotations

import time
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from alignkit._common import unit_rows
from alignkit.align.base import register_aligner
from alignkit.align.unsupervised import (
    MIN_AGREEMENT,
    SHARED_CONSTRAINTS,
    Restart,
    UnsupervisedAligner,
    chance_scores,
    csls_induction,
    csls_scores,
    mean_csls_criterion,
    principal_axes,
    procrustes_map,
    random_map,
    split_holdout,
    verdict_info,
)

MAP_INITS: tuple[str, ...] = ("identity", "random")
#: a discriminator whose accuracy stays within this of 0.5 (or above 1 − this) at every epoch has collapsed
_STUCK_TOL = 0.02
_EVAL_ROWS = 5000


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy()


def _polar(W: torch.Tensor) -> torch.Tensor:
    """The orthogonal matrix nearest to W (the polar factor ``UVᵀ`` of ``W = UΣVᵀ``)."""
    U, _, Vh = torch.linalg.svd(W)
    return U @ Vh


class Discriminator(nn.Module):
    """MUSE's discriminator: input dropout, ``layers`` hidden LeakyReLU(0.2) layers, a sigmoid output."""

    def __init__(self, d: int, hidden: int, layers: int, input_dropout: float) -> None:
        super().__init__()
        mods: list[nn.Module] = [nn.Dropout(input_dropout)]
        width = d
        for _ in range(layers):
            mods += [nn.Linear(width, hidden), nn.LeakyReLU(0.2)]
            width = hidden
        mods += [nn.Linear(width, 1), nn.Sigmoid()]
        self.net = nn.Sequential(*mods)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.net(x).view(-1)
        return out


@register_aligner(
    "muse",
    paired=False,
    constraints={
        **SHARED_CONSTRAINTS,
        "map_init": {"choices": MAP_INITS},
        "n_epochs": {"low": 0},
        "epoch_size": {"low": 1},
        "batch_size": {"low": 1},
        "dis_steps": {"low": 1},
        "dis_layers": {"low": 0},
        "dis_hidden": {"low": 1},
        "dis_input_dropout": {"low": 0.0, "high": 1.0, "high_open": True},
        "dis_smooth": {"low": 0.0, "high": 0.5, "high_open": True},
        "dis_most_frequent": {"low": 1},
        "map_lr": {"low": 0.0, "low_open": True},
        "dis_lr": {"low": 0.0, "low_open": True},
        "lr_decay": {"low": 0.0, "low_open": True, "high": 1.0},
        "lr_shrink": {"low": 0.0, "low_open": True, "high": 1.0},
        "map_beta": {"low": 0.0},
        "n_refinement": {"low": 0},
        "max_rows": {"low": 2},
        "csls_k": {"low": 1},
    },
)
class MUSE(UnsupervisedAligner):
    """MUSE (Conneau et al., ICLR 2018): adversarial linear map + Procrustes refinement, fit(X, Y) on unpaired sets.

    Rows of X and Y carry no correspondence and their counts may differ.

    Preprocessing (the known failures handled first). Each side is centred on its mean *before anything*
    (MUSE's ``--normalize_embeddings center``; without it the adversarial step and the CSLS dictionary fail
    on spaces with a large common direction, MUSE issues #30/#44/#130) and then unit-normalised. When d_x ≠ d_y
    the wider side is projected onto its top ``min(d_x, d_y)`` principal axes (of its centred training rows)
    so that W is square and orthogonal; padding the narrower side instead would leave the mapped X with energy
    in coordinates Y never uses, which the discriminator sees at once. The narrower side is kept as is.

    Adversarial step (MUSE ``unsupervised.py``): W (init identity, ``map_init="identity"``, or a seeded random
    rotation) maps X; an MLP discriminator (``dis_layers`` hidden layers of ``dis_hidden`` LeakyReLU(0.2) units,
    input dropout ``dis_input_dropout``, sigmoid) learns to tell mapped X (label 1 − ``dis_smooth``) from Y
    (label ``dis_smooth``) on rows drawn from the first ``dis_most_frequent`` rows of each side; per iteration
    ``dis_steps`` discriminator steps, then one step of W on the flipped labels, then the re-orthogonalisation
    ``W ← (1 + β)W − β(WWᵀ)W`` (β = ``map_beta``). SGD for both (lr ``map_lr``, ``dis_lr``), batch
    ``batch_size``, ``n_epochs`` epochs of ``epoch_size`` iterations; after each epoch the criterion is
    evaluated on the orthogonal matrix nearest to W (its polar factor: the re-orthogonalisation only keeps W
    close to orthogonal, and a W that stretches some directions can score higher than any rotation), the best
    one kept, the learning rates decayed by ``lr_decay`` and shrunk by ``lr_shrink`` from the
    second time the criterion falls. MUSE's defaults (5 epochs of 31,250 iterations, hidden width 2048) are
    scaled down here (5 × 5,000, width 512) so that a CPU fit takes minutes, not hours. Not further: on Bible
    verses through MiniLM (d = 384) against a random rotation of themselves, 5 × 1,000 iterations left the
    criterion at chance and the refinement never started from a good map, while 6 × 4,000 and 5 × 5,000 each
    recovered the rotation (R@1 0.998; examples/unsupervised_checks.py rotation).

    Refinement: ``n_refinement`` (5) times, a dictionary of mutual CSLS nearest neighbours (k = ``csls_k``)
    between the first ``max_rows`` (15,000, MUSE's ``dico_max_rank``) rows of mapped X and Y, then
    orthogonal Procrustes on it; the best W by the criterion over all epochs and refinement steps is kept.

    Criterion: :func:`~alignkit.align.unsupervised.mean_csls_criterion` (MUSE's ``mean_cosine-csls_knn_10-S2T``)
    on the first ``n_queries`` training rows selects W within a restart, as in MUSE. A seeded ``holdout`` share
    (10 %) of the rows of X is left out of the fit, and the restart's criterion is the same score on (up to
    ``n_queries`` of) them, so that a map which merely fits its own rows scores chance. A restart has converged
    when it passes :func:`~alignkit.align.unsupervised.verdict_info` (gain over the chance level of random
    rotations at least ``min_gain``, mean CSLS lifted over its chance level) and its discriminator did not
    collapse: accuracy (MUSE's ``eval_dis``, on up to 5,000 rows of each side) within 0.02 of 0.5 at every
    epoch (it never learned anything: the sets are
    indistinguishable under any rotation, or it died) or ≥ 0.98 at every epoch (the map never fooled it), or
    a constant output. The record of each restart holds the accuracy, mean predictions and criterion per epoch,
    the criterion per refinement step and the reasons of the verdict.

    Seed pairs (semi-supervised): W starts from Procrustes on the seed pairs instead of the identity, and the
    seed pairs join every refinement dictionary.

    Determinism: each restart seeds its own RNG inside ``torch.random.fork_rng`` (the caller's RNG is untouched);
    repeatable for a given seed and number of torch threads.

    Learned: ``mean_x_`` (d_x), ``mean_y_`` (d_y), ``proj_x_`` (d_x × k), ``proj_y_`` (d_y × k; identity on the
    narrower side), ``rotation_`` (k × k, orthogonal), ``scale_`` (mean norm of the centred, projected training Y
    over that of X). ``transform_x(X) = unit((X − x̄)P_x)·W``, ``transform_y(Y) = unit((Y − ȳ)P_y)``, and
    ``translate(X) = scale·(X − x̄)P_x·W·P_yᵀ + ȳ`` (Y's coordinates: the rotation applied to the centred rows,
    not normalised).
    """

    _arrays: ClassVar[tuple[str, ...]] = ("mean_x_", "mean_y_", "proj_x_", "proj_y_", "rotation_")
    _scalars: ClassVar[tuple[str, ...]] = ("scale_",)
    _shapes: ClassVar[dict[str, tuple[str | int, ...]]] = {
        "mean_x_": ("d_x",), "mean_y_": ("d_y",), "proj_x_": ("d_x", "k"), "proj_y_": ("d_y", "k"),
        "rotation_": ("k", "k"), "scale_": (), "criterion_": (),
    }  # fmt: skip

    def __init__(
        self,
        n_restarts: int = 3,
        seed: int = 0,
        map_init: str = "identity",
        n_epochs: int = 5,
        epoch_size: int = 5000,
        batch_size: int = 32,
        dis_steps: int = 5,
        dis_layers: int = 2,
        dis_hidden: int = 512,
        dis_input_dropout: float = 0.1,
        dis_smooth: float = 0.1,
        dis_most_frequent: int | None = None,
        map_lr: float = 0.1,
        dis_lr: float = 0.1,
        lr_decay: float = 0.98,
        lr_shrink: float = 0.5,
        map_beta: float = 0.001,
        n_refinement: int = 5,
        max_rows: int = 15000,
        csls_k: int = 10,
        n_queries: int = 10_000,
        min_gain: float = 0.2,
        holdout: float = 0.1,
        min_agreement: float = MIN_AGREEMENT,
    ) -> None:
        self.n_restarts = n_restarts
        self.seed = seed
        self.map_init = map_init
        self.n_epochs = n_epochs
        self.epoch_size = epoch_size
        self.batch_size = batch_size
        self.dis_steps = dis_steps
        self.dis_layers = dis_layers
        self.dis_hidden = dis_hidden
        self.dis_input_dropout = dis_input_dropout
        self.dis_smooth = dis_smooth
        self.dis_most_frequent = dis_most_frequent
        self.map_lr = map_lr
        self.dis_lr = dis_lr
        self.lr_decay = lr_decay
        self.lr_shrink = lr_shrink
        self.map_beta = map_beta
        self.n_refinement = n_refinement
        self.max_rows = max_rows
        self.csls_k = csls_k
        self.n_queries = n_queries
        self.min_gain = min_gain
        self.holdout = holdout
        self.min_agreement = min_agreement

    # ----------------------------------------------------------------------------------- preprocessing

    @staticmethod
    def _projections(xc: torch.Tensor, yc: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        k = min(xc.shape[1], yc.shape[1])
        out = []
        for t in (xc, yc):
            eye = torch.eye(t.shape[1], dtype=t.dtype, device=t.device)
            out.append(eye if t.shape[1] == k else principal_axes(t, k))
        return out[0], out[1]

    # ------------------------------------------------------------------------------------------- fit

    def _fit_once(self, x: torch.Tensor, y: torch.Tensor, *, seed: int, pairs: np.ndarray) -> Restart:
        hp = self._hp
        t0 = time.perf_counter()
        mx, my = x.mean(dim=0), y.mean(dim=0)
        px, py = self._projections(x - mx, y - my)
        xproj, yproj = (x - mx) @ px, (y - my) @ py
        scale = float(yproj.norm(dim=1).mean() / xproj.norm(dim=1).mean().clamp_min(1e-300))
        xp, yp = unit_rows(xproj), unit_rows(yproj)
        split = split_holdout(x.shape[0], hp["holdout"], seed, pairs, x.device)
        xt, sx, sy = xp[split.train], split.seeds_x, split.seeds_y
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(seed))
            if pairs.shape[0]:
                W = procrustes_map(xt[sx], yp[sy])
            elif hp["map_init"] == "random":
                W = random_map(xp.shape[1], yp.shape[1], torch.Generator().manual_seed(int(seed)))
            else:
                W = torch.eye(xp.shape[1], dtype=torch.float64, device=x.device)
            W, best, epochs = self._adversarial(xt, yp, W)
        collapse = self._collapse_reasons(epochs)
        W, best, refinement = self._refine(xt, yp, W, best, sx, sy)
        nq, k = hp["n_queries"], hp["csls_k"]
        scores = csls_scores(xp @ W, yp, n_queries=nq, k=k, queries=split.held)
        chance = chance_scores(xp, yp, seed=seed, n_queries=nq, k=k, queries=split.held)
        converged, verdict = verdict_info(scores, chance, hp["min_gain"], collapse)
        state: dict[str, Any] = {
            "mean_x_": _np(mx), "mean_y_": _np(my), "proj_x_": _np(px), "proj_y_": _np(py), "rotation_": _np(W),
            "scale_": scale,
        }  # fmt: skip
        info = {
            "epochs": epochs,
            "refinement": refinement,
            "collapsed": bool(collapse),
            "n_held_out": int(split.held.numel()),
            "seconds": round(time.perf_counter() - t0, 3),
            **verdict,
        }
        return Restart(state, float(scores[0]), converged, info)

    def _criterion(self, xp: torch.Tensor, yp: torch.Tensor, W: torch.Tensor) -> float:
        hp = self._hp
        return mean_csls_criterion(xp @ W, yp, n_queries=hp["n_queries"], k=hp["csls_k"])

    def _adversarial(
        self, xp: torch.Tensor, yp: torch.Tensor, W0: torch.Tensor
    ) -> tuple[torch.Tensor, float, list[dict[str, Any]]]:
        """MUSE's adversarial loop; returns the best W by the criterion, its criterion and one record per epoch."""
        hp = self._hp
        best_W, best = W0.clone(), self._criterion(xp, yp, W0)
        epochs: list[dict[str, Any]] = []
        if hp["n_epochs"] == 0:
            return best_W, best, epochs
        d = xp.shape[1]
        xf, yf = xp.float(), yp.float()
        mf = hp["dis_most_frequent"]
        n_x, n_y = (xf.shape[0], yf.shape[0]) if mf is None else (min(mf, xf.shape[0]), min(mf, yf.shape[0]))
        Wp = nn.Parameter(W0.float().clone())
        dis = Discriminator(d, hp["dis_hidden"], hp["dis_layers"], hp["dis_input_dropout"]).to(xf.device)
        map_opt = torch.optim.SGD([Wp], lr=hp["map_lr"])
        dis_opt = torch.optim.SGD(dis.parameters(), lr=hp["dis_lr"])
        bs, smooth = hp["batch_size"], hp["dis_smooth"]
        labels = torch.cat([torch.full((bs,), 1.0 - smooth), torch.full((bs,), smooth)]).to(xf.device)
        shrink_armed = False
        for epoch in range(hp["n_epochs"]):
            t_ep = time.perf_counter()
            dis_loss = 0.0
            for _ in range(hp["epoch_size"]):
                dis.train()
                for _ in range(hp["dis_steps"]):
                    xb = xf[torch.randint(n_x, (bs,))] @ Wp.detach()
                    yb = yf[torch.randint(n_y, (bs,))]
                    loss = F.binary_cross_entropy(dis(torch.cat([xb, yb])), labels)
                    dis_opt.zero_grad()
                    loss.backward()
                    dis_opt.step()
                    dis_loss += float(loss.detach())
                dis.eval()
                xb = xf[torch.randint(n_x, (bs,))] @ Wp
                yb = yf[torch.randint(n_y, (bs,))]
                loss = F.binary_cross_entropy(dis(torch.cat([xb, yb])), 1.0 - labels)
                map_opt.zero_grad()
                loss.backward()
                map_opt.step()
                with torch.no_grad():
                    beta, Wd = hp["map_beta"], Wp.data
                    if beta > 0:
                        Wp.data = (1 + beta) * Wd - beta * Wd @ (Wd.T @ Wd)
            W = _polar(Wp.detach().double())
            crit = self._criterion(xp, yp, W)
            record = {
                "epoch": epoch,
                "criterion": round(crit, 6),
                "dis_loss": round(dis_loss / (hp["epoch_size"] * hp["dis_steps"]), 6),
                **self._eval_dis(dis, xf @ Wp.detach(), yf),
                "map_lr": map_opt.param_groups[0]["lr"],
                "seconds": round(time.perf_counter() - t_ep, 3),
            }
            epochs.append(record)
            if crit > best:
                best, best_W = crit, W.clone()
            # MUSE update_lr: decay every epoch, shrink from the second time the criterion falls below the best
            for opt in (map_opt,):
                opt.param_groups[0]["lr"] = max(1e-6, opt.param_groups[0]["lr"] * hp["lr_decay"])
            if hp["lr_shrink"] < 1 and crit < best:
                if shrink_armed:
                    map_opt.param_groups[0]["lr"] *= hp["lr_shrink"]
                shrink_armed = True
            if map_opt.param_groups[0]["lr"] < 1e-6:
                break
        return best_W, best, epochs

    @staticmethod
    def _eval_dis(dis: nn.Module, xm: torch.Tensor, yf: torch.Tensor) -> dict[str, float]:
        """MUSE ``eval_dis``: mean predictions and accuracy on (up to 5,000) mapped X and Y rows."""
        dis.eval()
        with torch.no_grad():
            px, py = dis(xm[:_EVAL_ROWS]), dis(yf[:_EVAL_ROWS])
        acc_x, acc_y = float((px >= 0.5).double().mean()), float((py < 0.5).double().mean())
        acc = (acc_x * px.numel() + acc_y * py.numel()) / (px.numel() + py.numel())
        spread = float(torch.cat([px, py]).double().std())
        return {
            "dis_accuracy": round(acc, 6),
            "dis_pred_x": round(float(px.double().mean()), 6),
            "dis_pred_y": round(float(py.double().mean()), 6),
            "dis_pred_std": round(spread, 6),
        }

    @staticmethod
    def _collapse_reasons(epochs: list[dict[str, Any]]) -> list[str]:
        """A collapsed discriminator: accuracy stuck at 0.5 or at 1, or a constant output (module docstring)."""
        if not epochs:
            return []
        acc = [e["dis_accuracy"] for e in epochs]
        if all(abs(a - 0.5) <= _STUCK_TOL for a in acc):
            return [f"discriminator collapsed: accuracy stuck at chance ({', '.join(f'{a:.3f}' for a in acc)})"]
        if all(a >= 1 - _STUCK_TOL for a in acc):
            return [f"discriminator collapsed: it was never fooled (accuracy {', '.join(f'{a:.3f}' for a in acc)})"]
        if epochs[-1]["dis_pred_std"] < 1e-4:
            return ["discriminator collapsed: constant output"]
        return []

    def _refine(
        self, xp: torch.Tensor, yp: torch.Tensor, W: torch.Tensor, best: float, sx: torch.Tensor, sy: torch.Tensor
    ) -> tuple[torch.Tensor, float, list[dict[str, Any]]]:
        """Procrustes refinement on mutual CSLS nearest neighbours (+ seed pairs); keeps the best W overall."""
        hp = self._hp
        n_s, n_t = min(xp.shape[0], hp["max_rows"]), min(yp.shape[0], hp["max_rows"])
        best_W, steps = W.clone(), []  # type: tuple[torch.Tensor, list[dict[str, Any]]]
        for i in range(hp["n_refinement"]):
            step = csls_induction(xp[:n_s] @ W, yp[:n_t], k=hp["csls_k"])
            src, trg = step.mutual()
            src, trg = torch.cat([src, sx]), torch.cat([trg, sy])
            if src.numel() == 0:
                steps.append({"step": i, "dictionary_size": 0, "criterion": None})
                break
            W = procrustes_map(xp[src], yp[trg])
            crit = self._criterion(xp, yp, W)
            steps.append({"step": i, "dictionary_size": int(src.numel()), "criterion": round(crit, 6)})
            if crit > best:
                best, best_W = crit, W.clone()
        return best_W, best, steps

    # ------------------------------------------------------------------------------------ transform

    def _transform_x(self, x: torch.Tensor) -> torch.Tensor:
        t = unit_rows((x - self._state("mean_x_", x.device)) @ self._state("proj_x_", x.device))
        return t @ self._state("rotation_", x.device)

    def _transform_y(self, y: torch.Tensor) -> torch.Tensor:
        return unit_rows((y - self._state("mean_y_", y.device)) @ self._state("proj_y_", y.device))

    def _translate(self, x: torch.Tensor) -> torch.Tensor:
        xc = x - self._state("mean_x_", x.device)
        z = xc @ self._state("proj_x_", x.device) @ self._state("rotation_", x.device)
        return self.scale_ * z @ self._state("proj_y_", x.device).T + self._state("mean_y_", x.device)
