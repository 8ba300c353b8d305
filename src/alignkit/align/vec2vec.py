"""vec2vec: unpaired translation between two embedding spaces through a shared latent (docs/methods.md §4.7).

Jha, Zhang, Shmatikov, Morris, "Harnessing the Universal Geometry of Embeddings", arXiv 2505.12540 (2025);
code rjha18/vec2vec (``translators/``, ``utils/gan.py``, ``utils/train_utils.py``, ``train.py``,
``configs/unsupervised.toml``), read for the facts below; this module is written from them.

Architecture. Input adapters ``A1: R^{d_x} → R^w``, ``A2: R^{d_y} → R^w``, a shared backbone ``T: R^w → R^w``
and output adapters ``B1: R^w → R^{d_x}``, ``B2: R^w → R^{d_y}``, all residual SiLU MLPs
(:class:`ResidualMLP`), outputs L2-normalised:

    F_{1→2} = B2∘T∘A1 (translate X into Y's space),   F_{2→1} = B1∘T∘A2,
    R_1 = B1∘T∘A1,   R_2 = B2∘T∘A2 (reconstructions).

Losses on independent batches x (of X) and y (of Y), every input row centred (optional) and unit-normalised:

- ``rec = 1 − cos(x, R_1(x))``, likewise for y (mean over both sides);
- VSP(B, A) ``= mean|BBᵀ − AAᵀ| + mean|BBᵀ − ABᵀ|`` with B the (detached) unit input and A the unit output.
  The code applies it to the reconstructions (weight ``w_vsp``) and to the cycle outputs (``w_cc_vsp``);
  the paper states it for the translations, ``mean|XXᵀ − F(X)F(X)ᵀ|`` (the second term needs one space),
  which we add with ``w_vsp_trans`` (default 10; set 0 for the code's objective). Why: on small planted
  problems the GAN otherwise reaches maps that match Y's distribution while breaking X's geometry, so
  nothing ties a translation to its own item (3-d planted problem, width 32: final translation-VSP
  0.32-0.35 and top-1 ≈ 0 in the restarts that failed with weight 1, 0.04-0.06 with weight 10);
- cycle: ``cc_trans = 1 − cos(x, F_{2→1}(sg[F_{1→2}(x)]))`` (the first leg detached, as in the code), and
  ``cc_vsp`` = VSP of that cycle output;
- adversarial (least-squares GAN, Mao et al. 2017): D_Y separates real y from F_{1→2}(x), D_X real x from
  F_{2→1}(y), and a latent discriminator D_Z separates T(A1(x)) (real) from T(A2(y)) (fake). Each D minimises
  ``½[mean (D(real) − 1)² + mean D(fake)²]`` and is stepped before the generator, whose terms are
  ``½ mean (D(fake) − 1)²`` (``w_gen`` for D_X and D_Y, ``w_latent_gen`` for D_Z). The code's targets are
  flipped (real 0, fake 1), which is the same game; its label smoothing (0.9) is computed but unused on
  the least-squares path, so there is none here.
- Optional ``seed_pairs`` add ``w_pairs·½[(1 − cos(F_{1→2}(x_i), y_i)) + (1 − cos(F_{2→1}(y_i), x_i))]`` over
  the known pairs (semi-supervised; up to ``batch_size`` of them per step); their rows join each batch's
  forward pass.

Weights otherwise default to the paper's: rec 1, vsp 1, cc_trans 10, cc_vsp 10, gen 1, latent_gen 1.
Optimisers: Adam, β = (0.5, 0.999), for the translator and the three discriminators (eps 6.25e-10 for the
latter), linear lr warm-up, gradient-norm clip 1000, as in the code.

CPU-friendly defaults (the paper's ``configs/unsupervised.toml`` in brackets): ``width`` 256 for the
adapters, backbone and latent [1024], ``disc_width`` 256 and ``disc_depth`` 3 [1024, 5], lr 5e-4 and
disc_lr 2.5e-4 [2e-5, 1e-5, tuned for ~10⁵ rows and ≥ 80 epochs on a GPU], ``epochs`` 100, warm-up 10 % of
the steps capped at 2000 [2000], float32 [fp16]. Depths (adapters 3, backbone 4), batch norm, dropout 0.1
and batch 256 are the paper's. Capacity matters: on the 3-d planted problem of the tests (600 rows a side,
80 epochs, batch 128) width 256 with lr 5e-4 beat chance in 3 of 4 restarts (mean rank of the true partner
0.15-0.34 of n), width 32 with lr 3e-3 in 1 of 6. Those are partial maps that differ between restarts (their
nearest targets agree on 0-39 % of the rows), so the verdict's agreement step confirms none of them.

Preprocessing. ``center=True`` (the default; the paper does not centre) subtracts each side's training mean
before unit-normalising, which removes the large common direction text encoders share (MUSE's lesson:
docs/methods.md §4.1 pitfalls). Y's shared space is Y's preprocessed (centred, unit) space:
``transform_y(Y)`` = preprocessed Y, ``transform_x(X) = F_{1→2}(X)`` (unit rows) and
``translate(X) = s·F_{1→2}(X) + ȳ`` where s is the mean norm of the centred training Y (Y's own
coordinates; just ``F_{1→2}(X)`` without centring).

Restarts and the kept one. GAN training is seed-unstable (rjha18/vec2vec issue #16), so ``n_restarts`` independent
restarts (seed, seed + 1, ...) are trained and the best converged one by an **unsupervised** criterion is kept
(:class:`UnsupervisedAligner`): MUSE's mean cosine of CSLS translations, averaged over both directions ``F_{1→2}(X)
→ Y`` and ``F_{2→1}(Y) → X`` (:func:`alignkit.align.unsupervised.csls_scores`), with **held-out queries**: a seeded
``holdout`` share (10 %) of the rows of each side is left out of training and only those rows are translated and
scored (up to ``n_queries``), against every row of the other side. Held-out rows make the judgement fairer, not
item-level. On Bible verses (MiniLM English ↔ e5 Spanish, examples/README.md) one restart scored a mean-CSLS lift of
1.01 over random maps on its training rows and 0.48 on held-out rows, passing that test, while its R@1 on the true
pairs was 0.001: it kept the geometry, similar queries landing on similar verses (Spearman 0.41 between the queries'
pairwise similarities and those of the verses they land on; 0.46 for the true partners, 0.09 under a random
rotation), but not on their partners, and its translations crowded together: 84 % of the held-out queries' nearest
rows were distinct, 91 % under random maps and 97 % under supervised Procrustes. That last check is now part of the
verdict; even so, ``converged`` means structure beyond chance, not a verified correspondence: hold out a few known
pairs to check that. The verdict (:func:`alignkit.align.unsupervised.verdict_info`) compares the criterion and the
mean CSLS score with their levels under random orthogonal maps of the same sets; a restart is also
``converged=False`` when a loss became non-finite (its weights are those of the last finite epoch), when the
reconstruction did not improve, when a discriminator collapsed (final-epoch loss above 1, or for D_X and D_Y below
``collapse_tol``: it tells real from translated rows almost perfectly), when the translations collapsed onto one
direction (their mean pairwise cosine exceeds that of the real targets by more than 0.5) or when they crowd onto
fewer distinct nearest rows of the other side than random orthogonal maps of the same held-out queries do
(:func:`distinct_targets`, both directions averaged). That check is not universal: on FreeDict words
(examples/README.md) even supervised Procrustes spreads less than random maps (44 % vs 53 %), so on hub-prone data
it can flag a good map. Every restart's record holds these numbers. With the translation-VSP term keeping maps
near-isometric, a wrong map lands off Y's distribution and the criterion drops (0.999 for maps that beat chance vs ≤
0.974 for those that did not, on the 3-d planted problem above).

Determinism: given ``seed`` and the number of torch threads (set by the caller; training never changes it),
the fit is bit-for-bit repeatable: the nets are initialised, the batches drawn and dropout sampled from
generators seeded per restart, inside ``torch.random.fork_rng`` (the caller's RNG is untouched).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from alignkit.align.base import register_aligner, unit_rows
from alignkit.align.unsupervised import (
    MIN_AGREEMENT,
    SHARED_CONSTRAINTS,
    Restart,
    UnsupervisedAligner,
    chance_scores,
    csls_scores,
    random_map,
    split_holdout,
    verdict_info,
)

NORMS: tuple[str, ...] = ("batch", "layer")
_LOSS_KEYS = ("rec", "vsp", "cc_trans", "cc_vsp", "gen", "latent_gen", "vsp_trans", "pairs")
_DISC_KEYS = ("disc_x", "disc_y", "disc_z")
_DTYPE = torch.float32


# ------------------------------------------------------------------------------------------------ nets


def _add_residual(x_in: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """``out + x_in``, the input zero-padded or truncated to ``out``'s width (vec2vec's add_residual)."""
    d_in, d_out = x_in.shape[1], out.shape[1]
    if d_in < d_out:
        x_in = F.pad(x_in, (0, d_out - d_in))
    elif d_in > d_out:
        x_in = x_in[:, :d_out]
    return out + x_in


class ResidualMLP(nn.Module):
    """vec2vec's residual SiLU MLP: ``depth`` blocks, each added to its input (padded/truncated to width).

    Block 0: ``Linear(d_in, h) → SiLU``; middle blocks: ``Linear(h, h) → SiLU → Norm → Dropout``; last block:
    ``Linear(h, h) → Dropout → SiLU → Linear(h, d_out)`` (depth 1: ``Linear(d_in, d_out) → SiLU``). Kaiming-
    normal weights (fan-in, ReLU gain), zero biases, norm weights ~N(1, 0.02) and biases ~N(0, 0.02) for batch
    norm (rjha18/vec2vec ``translators/MLPWithResidual.py``).
    """

    def __init__(self, depth: int, d_in: int, hidden: int, d_out: int, norm: str = "batch", dropout: float = 0.1):
        super().__init__()
        make_norm = nn.BatchNorm1d if norm == "batch" else nn.LayerNorm
        blocks: list[nn.Module] = []
        for i in range(depth):
            if depth == 1:
                blocks.append(nn.Sequential(nn.Linear(d_in, d_out), nn.SiLU()))
            elif i == 0:
                blocks.append(nn.Sequential(nn.Linear(d_in, hidden), nn.SiLU()))
            elif i < depth - 1:
                blocks.append(
                    nn.Sequential(nn.Linear(hidden, hidden), nn.SiLU(), make_norm(hidden), nn.Dropout(dropout))
                )
            else:
                blocks.append(
                    nn.Sequential(nn.Linear(hidden, hidden), nn.Dropout(dropout), nn.SiLU(), nn.Linear(hidden, d_out))
                )
        self.blocks = nn.ModuleList(blocks)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.kaiming_normal_(m.weight, a=0, mode="fan_in", nonlinearity="relu")
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm1d):
                nn.init.normal_(m.weight, 1.0, 0.02)
                nn.init.normal_(m.bias, 0.0, 0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = _add_residual(x, block(x))
        return x


class Discriminator(nn.Module):
    """``Linear(d, w) → [SiLU → Linear(w, w) → LayerNorm] × (depth − 2) → SiLU → Linear(w, 1)``, Kaiming init
    (rjha18/vec2vec ``translators/Discriminator.py``; depth 1 is a linear score)."""

    def __init__(self, d_in: int, width: int, depth: int):
        super().__init__()
        if depth == 1:
            self.net: nn.Module = nn.Linear(d_in, 1)
        else:
            layers: list[nn.Module] = [nn.Linear(d_in, width)]
            for _ in range(depth - 2):
                layers += [nn.SiLU(), nn.Linear(width, width), nn.LayerNorm(width)]
            layers += [nn.SiLU(), nn.Linear(width, 1)]
            self.net = nn.Sequential(*layers)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.kaiming_normal_(m.weight, a=0, mode="fan_in", nonlinearity="relu")
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class Translator(nn.Module):
    """Adapters A1, A2, backbone T and output adapters B1, B2; side 0 is X, side 1 is Y."""

    def __init__(
        self, d_x: int, d_y: int, width: int, depth: int, transform_depth: int, norm: str, dropout: float
    ) -> None:
        super().__init__()
        self.a1 = ResidualMLP(depth, d_x, width, width, norm, dropout)
        self.a2 = ResidualMLP(depth, d_y, width, width, norm, dropout)
        self.t = ResidualMLP(transform_depth, width, width, width, norm, dropout)
        self.b1 = ResidualMLP(depth, width, width, d_x, norm, dropout)
        self.b2 = ResidualMLP(depth, width, width, d_y, norm, dropout)

    def latent(self, v: torch.Tensor, side: int) -> torch.Tensor:
        return self.t(self.a1(v) if side == 0 else self.a2(v))

    def decode(self, z: torch.Tensor, side: int) -> torch.Tensor:
        return F.normalize(self.b1(z) if side == 0 else self.b2(z), dim=1)

    def translate(self, v: torch.Tensor, src: int) -> torch.Tensor:
        return self.decode(self.latent(v, src), 1 - src)


# ---------------------------------------------------------------------------------------------- losses


def vsp_loss(b: torch.Tensor, a: torch.Tensor, *, reflected: bool = True) -> torch.Tensor:
    """Vector-space preservation ``mean|BBᵀ − AAᵀ| + mean|BBᵀ − ABᵀ|`` (B the detached unit input, A the unit
    output; rjha18/vec2vec ``utils/train_utils.py::vsp_loss_fn``). ``reflected=False`` drops the second
    term, which needs A and B in one space (a translation is in the other space)."""
    b = F.normalize(b.detach(), dim=1)
    a = F.normalize(a, dim=1)
    bb = b @ b.T
    loss = (bb - a @ a.T).abs().mean()
    return loss + (bb - a @ b.T).abs().mean() if reflected else loss


def _cos_loss(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return 1.0 - F.cosine_similarity(a, b, dim=1).mean()


def _lsgan_d(d: nn.Module, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    return 0.5 * ((d(real) - 1.0).square().mean() + d(fake).square().mean())


def _lsgan_g(d: nn.Module, fake: torch.Tensor) -> torch.Tensor:
    return 0.5 * (d(fake) - 1.0).square().mean()


def _flat_state(module: nn.Module) -> np.ndarray:
    parts = [v.detach().cpu().double().reshape(-1) for v in module.state_dict().values()]
    return torch.cat(parts).numpy() if parts else np.zeros(0)


def _load_flat(module: nn.Module, flat: np.ndarray) -> None:
    state = module.state_dict()
    need = sum(v.numel() for v in state.values())
    if flat.ndim != 1 or flat.size != need:
        raise ValueError(f"saved weights_ has {flat.size} values; the configured translator needs {need}")
    out, pos = {}, 0
    for k, v in state.items():
        out[k] = torch.from_numpy(np.ascontiguousarray(flat[pos : pos + v.numel()])).reshape(v.shape).to(v.dtype)
        pos += v.numel()
    module.load_state_dict(out)


# ------------------------------------------------------------------------------------------- estimator


@register_aligner(
    "vec2vec",
    paired=False,
    constraints={
        **SHARED_CONSTRAINTS,
        "width": {"low": 1},
        "depth": {"low": 1},
        "transform_depth": {"low": 1},
        "disc_width": {"low": 1},
        "disc_depth": {"low": 1},
        "norm": {"choices": NORMS},
        "dropout": {"low": 0.0, "high": 1.0, "high_open": True},
        "epochs": {"low": 1},
        "batch_size": {"low": 2},
        "lr": {"low": 0.0, "low_open": True},
        "disc_lr": {"low": 0.0, "low_open": True},
        "warmup_steps": {"low": 0},
        "grad_clip": {"low": 0.0, "low_open": True},
        **{f"w_{k}": {"low": 0.0} for k in _LOSS_KEYS},
        "collapse_tol": {"low": 0.0},
        "n_queries": {"low": 2},
    },
)
class Vec2Vec(UnsupervisedAligner):
    """vec2vec (Jha et al., arXiv 2505.12540): adapters around a shared latent, trained on unpaired sets with
    least-squares GANs, cycle consistency and vector-space preservation (see the module docstring).

    ``fit(X, Y, seed_pairs=None)``: X and Y are unpaired (row i of X has nothing to do with row i of Y; the row
    counts may differ). Learned: ``weights_`` (the translator's state, flattened in ``state_dict`` order;
    float32 values stored exactly as float64), ``mean_x_``, ``mean_y_`` (zeros without ``center``) and
    ``scale_y_``, plus the restart records of :class:`UnsupervisedAligner`. ``translator_`` is the
    ``nn.Module`` (rebuilt from ``weights_`` after ``load``). ``epochs`` counts passes over the larger set.
    """

    _arrays: ClassVar[tuple[str, ...]] = ("weights_", "mean_x_", "mean_y_")
    _scalars: ClassVar[tuple[str, ...]] = ("scale_y_",)
    _shapes: ClassVar[dict[str, tuple[str | int, ...]]] = {
        "weights_": ("n_weights",), "mean_x_": ("d_x",), "mean_y_": ("d_y",), "scale_y_": (),
    }  # fmt: skip
    _rebuild_on_load: ClassVar[str] = "_network"

    def __init__(
        self,
        width: int = 256,
        depth: int = 3,
        transform_depth: int = 4,
        disc_width: int = 256,
        disc_depth: int = 3,
        norm: str = "batch",
        dropout: float = 0.1,
        center: bool = True,
        epochs: int = 100,
        batch_size: int = 256,
        lr: float = 5e-4,
        disc_lr: float = 2.5e-4,
        warmup_steps: int | None = None,
        grad_clip: float = 1000.0,
        w_rec: float = 1.0,
        w_vsp: float = 1.0,
        w_cc_trans: float = 10.0,
        w_cc_vsp: float = 10.0,
        w_gen: float = 1.0,
        w_latent_gen: float = 1.0,
        w_vsp_trans: float = 10.0,
        w_pairs: float = 10.0,
        collapse_tol: float = 0.02,
        min_gain: float = 0.2,
        n_queries: int = 2000,
        holdout: float = 0.1,
        min_agreement: float = MIN_AGREEMENT,
        device: str | None = None,
        n_restarts: int = 3,
        seed: int = 0,
    ) -> None:
        self.width = width
        self.depth = depth
        self.transform_depth = transform_depth
        self.disc_width = disc_width
        self.disc_depth = disc_depth
        self.norm = norm
        self.dropout = dropout
        self.center = center
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.disc_lr = disc_lr
        self.warmup_steps = warmup_steps
        self.grad_clip = grad_clip
        self.w_rec = w_rec
        self.w_vsp = w_vsp
        self.w_cc_trans = w_cc_trans
        self.w_cc_vsp = w_cc_vsp
        self.w_gen = w_gen
        self.w_latent_gen = w_latent_gen
        self.w_vsp_trans = w_vsp_trans
        self.w_pairs = w_pairs
        self.collapse_tol = collapse_tol
        self.min_gain = min_gain
        self.n_queries = n_queries
        self.holdout = holdout
        self.min_agreement = min_agreement
        self.device = device
        self.n_restarts = n_restarts
        self.seed = seed

    # ------------------------------------------------------------------------------------------- fit

    def _device(self) -> torch.device:
        return torch.device(self._hp["device"] or "cpu")

    def _build(self, d_x: int, d_y: int) -> Translator:
        hp = self._hp
        return Translator(d_x, d_y, hp["width"], hp["depth"], hp["transform_depth"], hp["norm"], hp["dropout"])

    def _prep(self, t: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
        return unit_rows(t - mean)

    def _fit_once(self, x: torch.Tensor, y: torch.Tensor, *, seed: int, pairs: np.ndarray) -> Restart:
        hp = self._hp
        dev = self._device()
        mx = x.mean(dim=0) if hp["center"] else torch.zeros_like(x[0])
        my = y.mean(dim=0) if hp["center"] else torch.zeros_like(y[0])
        xp = self._prep(x, mx).to(dev, _DTYPE)
        yp = self._prep(y, my).to(dev, _DTYPE)
        scale_y = float((y - my).norm(dim=1).mean()) if hp["center"] else 1.0
        # held-out rows of each side (never a seed pair's): the criterion translates only these
        hx = split_holdout(xp.shape[0], hp["holdout"], seed, pairs, dev)
        hy = split_holdout(yp.shape[0], hp["holdout"], seed + 1, np.ascontiguousarray(pairs[:, ::-1]), dev)
        train_pairs = torch.stack([hx.seeds_x, hy.seeds_x], dim=1).cpu().numpy()
        with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []):
            torch.manual_seed(seed)
            net, hist, finite = self._train(xp[hx.train], yp[hy.train], train_pairs, seed, dev)
        net.eval()
        criterion, converged, info = self._diagnose(net, xp, yp, (hx.held, hy.held), hist, finite, seed)
        state = {
            "weights_": _flat_state(net),
            "mean_x_": mx.detach().cpu().numpy(),
            "mean_y_": my.detach().cpu().numpy(),
            "scale_y_": scale_y,
        }
        return Restart(state=state, criterion=criterion, converged=converged, info=info)

    def _train(
        self, xp: torch.Tensor, yp: torch.Tensor, pairs: np.ndarray, seed: int, dev: torch.device
    ) -> tuple[Translator, list[dict[str, float]], bool]:
        hp = self._hp
        net = self._build(xp.shape[1], yp.shape[1]).to(dev, _DTYPE)
        dw, dd = hp["disc_width"], hp["disc_depth"]
        discs = {
            "disc_x": Discriminator(xp.shape[1], dw, dd).to(dev, _DTYPE),
            "disc_y": Discriminator(yp.shape[1], dw, dd).to(dev, _DTYPE),
            "disc_z": Discriminator(hp["width"], dw, dd).to(dev, _DTYPE),
        }
        betas = (0.5, 0.999)
        g_opt = torch.optim.Adam(net.parameters(), lr=hp["lr"], betas=betas)
        d_opts = {
            k: torch.optim.Adam(d.parameters(), lr=hp["disc_lr"], betas=betas, eps=6.25e-10) for k, d in discs.items()
        }
        n_x, n_y = xp.shape[0], yp.shape[0]
        bs = min(hp["batch_size"], n_x, n_y)
        steps = math.ceil(max(n_x, n_y) / bs)
        total = steps * hp["epochs"]
        warm = hp["warmup_steps"] if hp["warmup_steps"] is not None else min(2000, round(0.1 * total))
        gen = torch.Generator().manual_seed(seed)
        px = torch.as_tensor(pairs[:, 0], dtype=torch.long, device=dev)
        py = torch.as_tensor(pairs[:, 1], dtype=torch.long, device=dev)
        use_pairs = pairs.shape[0] > 0 and hp["w_pairs"] > 0
        hist: list[dict[str, float]] = []
        snapshot = {k: v.detach().clone() for k, v in net.state_dict().items()}
        step = 0
        for _ in range(hp["epochs"]):
            net.train()
            ix, iy = _epoch_order(n_x, steps * bs, gen), _epoch_order(n_y, steps * bs, gen)
            sums: dict[str, float] = {}
            finite = True
            for s in range(steps):
                factor = min(1.0, (step + 1) / warm) if warm > 0 else 1.0
                for opt in (g_opt, *d_opts.values()):
                    for group in opt.param_groups:
                        group["lr"] = group.setdefault("initial_lr", group["lr"]) * factor
                xb = xp[ix[s * bs : (s + 1) * bs].to(dev)]
                yb = yp[iy[s * bs : (s + 1) * bs].to(dev)]
                if use_pairs:
                    sel = torch.randperm(px.numel(), generator=gen)[:bs].to(dev)
                    parts = self._step(net, discs, d_opts, g_opt, xb, yb, xp[px[sel]], yp[py[sel]])
                else:
                    parts = self._step(net, discs, d_opts, g_opt, xb, yb, None, None)
                step += 1
                if not all(math.isfinite(v) for v in parts.values()):
                    finite = False
                    break
                for k, v in parts.items():
                    sums[k] = sums.get(k, 0.0) + v
            if not finite:
                net.load_state_dict(snapshot)
                return net, hist, False
            hist.append({k: v / steps for k, v in sums.items()})
            snapshot = {k: v.detach().clone() for k, v in net.state_dict().items()}
        return net, hist, True

    def _step(
        self,
        net: Translator,
        discs: dict[str, Discriminator],
        d_opts: Mapping[str, torch.optim.Optimizer],
        g_opt: torch.optim.Optimizer,
        xb: torch.Tensor,
        yb: torch.Tensor,
        xs: torch.Tensor | None,
        ys: torch.Tensor | None,
    ) -> dict[str, float]:
        """One discriminator update (each of the three) then one translator update; the loss values."""
        hp = self._hp
        m = xb.shape[0]
        if xs is not None and ys is not None:  # seed-pair rows join the batch's forward pass
            xb, yb = torch.cat([xb, xs]), torch.cat([yb, ys])
        zx, zy = net.latent(xb, 0), net.latent(yb, 1)
        rx, tx = net.decode(zx, 0), net.decode(zx, 1)
        ry, ty = net.decode(zy, 1), net.decode(zy, 0)
        out: dict[str, float] = {}
        fakes = {"disc_x": (xb[:m], ty[:m]), "disc_y": (yb[:m], tx[:m]), "disc_z": (zx[:m], zy[:m])}
        # the three discriminator losses are independent: one backward gives each its own gradient
        for d in discs.values():
            d.requires_grad_(True)
        d_losses = {k: _lsgan_d(d, fakes[k][0].detach(), fakes[k][1].detach()) for k, d in discs.items()}
        for opt in d_opts.values():
            opt.zero_grad(set_to_none=True)
        torch.stack(list(d_losses.values())).sum().backward()
        for k, d in discs.items():
            nn.utils.clip_grad_norm_(d.parameters(), hp["grad_clip"])
            d_opts[k].step()
            d.requires_grad_(False)
            out[k] = float(d_losses[k].detach())
        cx = net.translate(tx[:m].detach(), 1)  # X → Y → X, first leg detached
        cy = net.translate(ty[:m].detach(), 0)
        x0, y0 = xb[:m], yb[:m]
        parts = {
            "rec": 0.5 * (_cos_loss(x0, rx[:m]) + _cos_loss(y0, ry[:m])),
            "vsp": 0.5 * (vsp_loss(x0, rx[:m]) + vsp_loss(y0, ry[:m])),
            "cc_trans": 0.5 * (_cos_loss(x0, cx) + _cos_loss(y0, cy)),
            "cc_vsp": 0.5 * (vsp_loss(x0, cx) + vsp_loss(y0, cy)),
            "gen": _lsgan_g(discs["disc_y"], tx[:m]) + _lsgan_g(discs["disc_x"], ty[:m]),
            "latent_gen": _lsgan_g(discs["disc_z"], zy[:m]),
        }
        if hp["w_vsp_trans"] > 0:
            parts["vsp_trans"] = 0.5 * (vsp_loss(x0, tx[:m], reflected=False) + vsp_loss(y0, ty[:m], reflected=False))
        if xs is not None and ys is not None:
            parts["pairs"] = 0.5 * (_cos_loss(tx[m:], yb[m:]) + _cos_loss(ty[m:], xb[m:]))
        total = sum((hp[f"w_{k}"] * v for k, v in parts.items()), torch.zeros((), device=xb.device))
        g_opt.zero_grad(set_to_none=True)
        total.backward()
        nn.utils.clip_grad_norm_(net.parameters(), hp["grad_clip"])
        g_opt.step()
        out.update({k: float(v.detach()) for k, v in parts.items()})
        out["total"] = float(total.detach())
        return out

    def _diagnose(
        self,
        net: Translator,
        xp: torch.Tensor,
        yp: torch.Tensor,
        held: tuple[torch.Tensor, torch.Tensor],
        hist: list[dict[str, float]],
        finite: bool,
        seed: int,
    ) -> tuple[float, bool, dict[str, Any]]:
        """The restart's criterion, converged flag and the details recorded in ``restarts_``; ``held`` names the
        held-out rows of X and of Y (the queries of each direction)."""
        hp = self._hp
        nq = hp["n_queries"]
        qx, qy = held[0][:nq].cpu(), held[1][:nq].cpu()
        xc, yc = xp.double().cpu(), yp.double().cpu()
        tx = _apply(net, xp, 0).double().cpu()  # every row: the candidates' CSLS radii are over all of them
        ty = _apply(net, yp, 1).double().cpu()
        both = [csls_scores(tx, yc, n_queries=nq, queries=qx), csls_scores(ty, xc, n_queries=nq, queries=qy)]
        chance = [
            chance_scores(xc, yc, seed=seed, n_queries=nq, queries=qx),
            chance_scores(yc, xc, seed=seed, n_queries=nq, queries=qy),
        ]
        scores = (0.5 * (both[0][0] + both[1][0]), 0.5 * (both[0][1] + both[1][1]))
        level = (0.5 * (chance[0][0] + chance[1][0]), 0.5 * (chance[0][1] + chance[1][1]))
        cyc = _apply(net, _apply(net, xp[qx.to(xp.device)], 0), 1).double().cpu()
        cycle_cos = float(F.cosine_similarity(cyc, xc[qx], dim=1).mean())
        spread_t = float(tx[qx].mean(dim=0).square().sum())  # mean pairwise cosine (self pairs included)
        spread_y = float(yc[qy].mean(dim=0).square().sum())
        first, last = (hist[0], hist[-1]) if hist else ({}, {})
        reasons = []
        if not finite or not all(math.isfinite(v) for v in scores):
            reasons.append("diverged: a loss became non-finite (the weights of the last finite epoch are kept)")
        if len(hist) > 1 and last["rec"] >= first["rec"]:
            reasons.append(f"reconstruction did not improve ({first['rec']:.4g} → {last['rec']:.4g})")
        for k in _DISC_KEYS:
            v = last.get(k)
            if v is not None and (v > 1.0 or (k != "disc_z" and v < hp["collapse_tol"])):
                reasons.append(f"{k} collapsed (final-epoch loss {v:.4g}; equilibrium 0.25)")
        if spread_t - spread_y > 0.5:
            reasons.append(f"translations collapsed (mean pairwise cosine {spread_t:.3f}, {spread_y:.3f} in Y)")
        spread = 0.5 * (distinct_targets(tx[qx], yc) + distinct_targets(ty[qy], xc))
        g = torch.Generator().manual_seed(int(seed))
        spread_chance = float(
            np.mean(
                [
                    0.5
                    * (
                        distinct_targets(xc[qx] @ random_map(xc.shape[1], yc.shape[1], g), yc)
                        + distinct_targets(yc[qy] @ random_map(yc.shape[1], xc.shape[1], g), xc)
                    )
                    for _ in range(3)
                ]
            )
        )
        if spread < spread_chance:
            reasons.append(
                f"translations crowd onto few targets: {spread:.0%} of the held-out queries' nearest rows are "
                f"distinct, {spread_chance:.0%} under random maps"
            )
        converged, verdict = verdict_info(scores, level, hp["min_gain"], reasons)
        criterion = scores[0] if math.isfinite(scores[0]) else -1.0
        info = {
            **verdict,
            "criterion_xy": _finite_or_none(both[0][0]),
            "criterion_yx": _finite_or_none(both[1][0]),
            "cycle_cos": _finite_or_none(cycle_cos),
            "distinct_targets": round(spread, 6),
            "distinct_targets_chance": round(spread_chance, 6),
            "n_held_out": [int(held[0].numel()), int(held[1].numel())],
            "epochs_run": len(hist),
            "first_epoch": {k: _finite_or_none(v) for k, v in first.items()},
            "last_epoch": {k: _finite_or_none(v) for k, v in last.items()},
        }
        return criterion, converged, info

    # ------------------------------------------------------------------------------------- transform

    def _network(self) -> Translator:
        net = self.__dict__.get("_net")
        if net is None or net[0] is not self.weights_:
            module = self._build(self.n_features_x_, self.n_features_y_).to(self._device(), _DTYPE)
            _load_flat(module, np.asarray(self.weights_))
            module.eval()
            self._net = (self.weights_, module)
            return module
        return net[1]

    @property
    def translator_(self) -> Translator:
        self._check_fitted("translator_")
        return self._network()

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        net = self._network()
        xp = self._prep(x, self._state("mean_x_", x.device)).to(self._device(), _DTYPE)
        with torch.no_grad():
            out = _apply(net, xp, 0)
        return out.to(device=x.device, dtype=torch.float64)

    def _transform_x(self, x: torch.Tensor) -> torch.Tensor:
        return unit_rows(self._forward(x))

    def _transform_y(self, y: torch.Tensor) -> torch.Tensor:
        return self._prep(y, self._state("mean_y_", y.device))

    def _translate(self, x: torch.Tensor) -> torch.Tensor:
        return float(self.scale_y_) * self._forward(x) + self._state("mean_y_", x.device)


def distinct_targets(q: torch.Tensor, c: torch.Tensor, block: int = 1024) -> float:
    """The share of distinct rows among the cosine-nearest rows of ``c`` to the rows of ``q`` (1: every query
    lands on its own row; small: the queries crowd onto a few hubs). Blocked over the queries."""
    if q.shape[0] == 0:
        return 1.0
    a, b = unit_rows(q.double()), unit_rows(c.double())
    nearest = torch.cat([(a[s : s + block] @ b.T).argmax(dim=1) for s in range(0, a.shape[0], block)])
    return float(torch.unique(nearest).numel() / q.shape[0])


def _apply(net: Translator, v: torch.Tensor, src: int, block: int = 8192) -> torch.Tensor:
    """``F_{src→other}(v)`` in eval mode, in row blocks."""
    was = net.training
    net.eval()
    with torch.no_grad():
        out = torch.cat([net.translate(v[s : s + block], src) for s in range(0, v.shape[0], block)])
    net.train(was)
    return out


def _epoch_order(n: int, length: int, gen: torch.Generator) -> torch.Tensor:
    """``length`` row indices: fresh random permutations of ``range(n)`` concatenated (the shorter side cycles)."""
    reps = math.ceil(length / n)
    return torch.cat([torch.randperm(n, generator=gen) for _ in range(reps)])[:length]


def _finite_or_none(v: float | None) -> float | None:
    return float(v) if v is not None and math.isfinite(v) else None


__all__ = ["Discriminator", "ResidualMLP", "Translator", "Vec2Vec", "vsp_loss"]
