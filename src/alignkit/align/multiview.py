"""``MultiHeadAligner``: one trainable head per space for n ≥ 2 row-paired spaces, trained jointly by the one
training loop (:func:`alignkit.align.trainer.fit_heads`) into a shared space.

Losses (any registered one that takes n views, or a combination; see :mod:`alignkit.align.loss_registry`):

- ``"pairwise_infonce"`` (default): symmetric InfoNCE summed over the n(n−1)/2 view pairs, one learnable
  temperature: the baseline. Every pair loss (``"infonce"``, ``"siglip"``, yours) is summed the same way.
- ``"gram"``: the GRAM volume loss (Cicchetti et al., "Gramian Multimodal Representation Learning and
  Alignment", ICLR 2025): the volume spanned by the anchor view of item i and the other views of item j;
  the anchor is view 0 unless ``loss={"gram": {"anchor": k}}``.
- ``"mv_infonce"``, ``"mv_dhel"``: multi-view InfoNCE and DHEL (Koromilas et al., "A Principled Framework for
  Multi-View Contrastive Learning", arXiv 2507.06979).
- ``"triple"``: cross-view InfoNCE with intra-view negatives (triple contrastive learning on frozen embeddings;
  :func:`alignkit.align.losses.triple_contrastive` says why this form).
- ``structure=λ`` (or ``"structure"`` in a combination): STRUCTURE's regulariser added per view,
  ``λ_t·(1/n)Σ_v R_S(X_v, head_v(X_v))``.

Missing views: ``fit(views, mask=M)`` with M (items × views, True = present) trains on items seen in only some
spaces, with pair losses (each pair on its co-present rows; absent entries may hold anything, NaN included).

Saved like an :class:`~alignkit.align.base.Aligner`: a folder with ``state.safetensors`` (the flat float64
weight vector) and ``config.json`` (class, hyper-parameters, fitted values, the sha256 of the state file), each
written atomically; no pickle; ``load`` checks the hash, the fitted values and that the weights fit the
configured heads.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from sklearn.base import BaseEstimator
from sklearn.exceptions import NotFittedError
from torch import nn

from alignkit._common import unit_rows
from alignkit._validation import ArrayLike, as_matrix
from alignkit.align.base import (
    CONFIG_FILE,
    FORMAT_VERSION,
    STATE_FILE,
    _from_json,
    _output,
    _short,
    _to_json,
    register_aligner,
)
from alignkit.align.heads import HEADS
from alignkit.align.trainer import (
    HEAD_CONSTRAINTS,
    _embed,
    _mask_in,
    _modules,
    _views_in,
    build_heads,
    default_lr,
    default_schedule,
    estimator_loss_plan,
    fit_heads,
    flatten_modules,
    pair_r1,
    unflatten_modules,
    validate_estimator_loss,
)
from alignkit.io import atomic_write_bytes, atomic_write_text
from alignkit.registry import ParamSchema

FORMAT = "alignkit-multi-aligner"


def _views_arg(views: Any, method: str) -> list[Any]:
    if not isinstance(views, (list, tuple)):
        raise TypeError(f"{method}: views must be a list of arrays, one per space; got {type(views).__name__}")
    if len(views) < 2:
        raise ValueError(f"{method}: views must hold at least 2 spaces; got {len(views)}")
    return list(views)


@register_aligner("multi_head", views=None, constraints=HEAD_CONSTRAINTS)
class MultiHeadAligner(BaseEstimator):
    """n ≥ 2 trainable heads (or one ``shared`` head) mapping n row-paired spaces into one d_out-dimensional
    shared space, trained jointly with ``fit_heads`` under any loss that takes n views (default: the pairwise
    InfoNCE sum).

    ``fit([X_1, …, X_n], val=None, mask=None)``; ``transform(i, X)`` = ``normalise(head_i(X))``; ``score(views)``
    = mean top-1 retrieval over the n(n−1) ordered view pairs (``pair_scores`` lists them). Hyper-parameters
    and their defaults for few pairs are ``HeadAligner``'s (``loss``, ``loss_kwargs``, ``structure``,
    ``structure_kwargs``, ``batch_size``, ``lr``, ``warmup_steps``, ``val_fraction``, ``patience``, …); with two
    views and the same settings it trains exactly the same heads as ``HeadAligner(loss="infonce")``. Validation
    for early stopping: the mean R@1 over ordered view pairs (X → Y alone for two views, as ``HeadAligner``).

    Learned: ``weights_`` (every head and loss weight, one flat float64 vector), ``n_features_`` (the n input
    widths), ``n_items_``, ``history_``, ``best_epoch_``; ``heads_`` and ``loss_`` are the modules, rebuilt
    from ``weights_`` after ``load``. scikit-learn conventions: hyper-parameters are stored unchanged by
    ``__init__`` and validated in ``fit``, so ``get_params``/``sklearn.base.clone`` work.
    """

    _schema: ClassVar[ParamSchema]

    def __init__(
        self,
        head: str = "star",
        d_out: int = 512,
        loss: str | dict[str, Any] = "pairwise_infonce",
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

    # ------------------------------------------------------------------------------------------ params

    @classmethod
    def param_schema(cls) -> ParamSchema:
        """The typed hyper-parameters (what a run config is validated against)."""
        return cls._schema

    @property
    def _hp(self) -> dict[str, Any]:
        return self.param_schema().validate(self.get_params(deep=False), type(self).__name__)

    def _validate_params(self, n_views: int = 2) -> dict[str, Any]:
        """The schema's checks, ``head_kwargs`` against the head, and the loss specification for ``n_views``
        views (``load`` and a run config call it without data: two views, the fewest)."""
        hp = self._hp
        HEADS.get(hp["head"]).schema.validate(
            hp["head_kwargs"] or {}, f"MultiHeadAligner: head_kwargs for head {hp['head']!r}"
        )
        validate_estimator_loss(hp, n_views, "MultiHeadAligner: loss")
        return hp

    # --------------------------------------------------------------------------------------------- fit

    def fit(
        self,
        views: Sequence[ArrayLike],
        val: Sequence[ArrayLike] | None = None,
        mask: ArrayLike | None = None,
        val_mask: ArrayLike | None = None,
    ) -> MultiHeadAligner:
        """Train on row-paired spaces ``views[0][i] ↔ views[1][i] ↔ …`` (memory maps are read batch by batch).

        ``mask`` (bool, items × views) marks present views (a loss that cannot take missing views is refused);
        ``val`` (one array per view, with an optional ``val_mask``) is the early-stopping set, else
        ``val_fraction`` > 0 holds out a seeded random part of the items."""
        arrays = _views_arg(views, "MultiHeadAligner.fit")
        n_views = len(arrays)
        hp = self._validate_params(n_views)
        names = [f"views[{i}]" for i in range(n_views)]
        n = int(as_matrix(arrays[0], names[0], check_finite=False).shape[0])
        m = _mask_in(mask, n, n_views)
        xs = _views_in(arrays, names, m)
        self._check_training_spaces(xs, names, m)
        if n < 2:
            raise ValueError(f"MultiHeadAligner needs at least 2 items (rows); got n={n}")
        d_ins = [int(x.shape[1]) for x in xs]
        if hp["shared"] and len(set(d_ins)) > 1:
            raise ValueError(f"shared=True needs every view of one dimension; got widths {d_ins}")
        frac, seed = hp["val_fraction"], hp["seed"]
        if val is None and frac > 0:
            if val_mask is not None:
                raise ValueError("val_mask is given without val")
            n_val = round(frac * n)
            if n_val < 2 or n - n_val < 2:
                raise ValueError(f"val_fraction={frac} leaves too few items to train or validate (n={n})")
            perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
            tr, va = perm[n_val:].sort().values, perm[:n_val].sort().values
            val = [x[va] for x in xs]
            xs = [x[tr] for x in xs]
            if m is not None:
                val_mask, m = m[va.numpy()], m[tr.numpy()]
            n = n - n_val
        batch_size, warmup_steps = default_schedule(hp, n)
        heads = build_heads(hp, d_ins, hp["d_out"], hp["shared"])
        plan = estimator_loss_plan(hp, n_views, m is not None, "MultiHeadAligner: loss")
        res = fit_heads(
            xs, heads, plan, mask=m, val=val, val_mask=val_mask, batch_size=batch_size, epochs=hp["epochs"],
            lr=default_lr(hp, d_ins), weight_decay=hp["weight_decay"], warmup_steps=warmup_steps,
            optimizer=hp["optimizer"], grad_clip=hp["grad_clip"], patience=hp["patience"], seed=seed,
            device=hp["device"], checkpoint_dir=hp["checkpoint_dir"], progress=hp["progress"],
        )  # fmt: skip
        self._nets = (list(res.heads), res.loss)
        self.weights_ = flatten_modules(_modules(res.heads, res.loss))
        self.history_ = res.history
        self.best_epoch_ = res.best_epoch
        self.n_features_ = d_ins
        self.n_items_ = int(n)
        return self

    @staticmethod
    def _check_training_spaces(xs: Sequence[torch.Tensor], names: Sequence[str], mask: np.ndarray | None) -> None:
        """A constant training space cannot be aligned: a clear error naming it (alignkit.degenerate)."""
        from alignkit.degenerate import handle, inspect_space

        checks = [
            inspect_space(x if mask is None else x[torch.from_numpy(mask[:, i]).to(x.device)], nm, duplicates=False)
            for i, (x, nm) in enumerate(zip(xs, names, strict=True))
        ]
        handle(checks, "raise", "MultiHeadAligner.fit")

    # --------------------------------------------------------------------------------------- transform

    def _check_fitted(self, method: str) -> None:
        if not hasattr(self, "n_features_"):
            raise NotFittedError(
                f"This MultiHeadAligner instance is not fitted yet: call fit([X_1, ..., X_n]) on row-paired spaces "
                f"before {method}()."
            )

    @property
    def n_views_(self) -> int:
        self._check_fitted("n_views_")
        return len(self.n_features_)

    def _view(self, i: Any, method: str) -> int:
        n = self.n_views_
        if isinstance(i, bool) or not isinstance(i, (int, np.integer)) or not 0 <= int(i) < n:
            raise ValueError(f"{method}: view must be an integer in [0, {n - 1}] ({n} views were fitted); got {i!r}")
        return int(i)

    def _input(self, i: int, X: ArrayLike, method: str) -> torch.Tensor:
        t = as_matrix(X, f"views[{i}]")
        if t.shape[1] != self.n_features_[i]:
            raise ValueError(
                f"{method}: views[{i}] has {t.shape[1]} features but this MultiHeadAligner was fitted on "
                f"{self.n_features_[i]}-dimensional views[{i}]"
            )
        return t

    def _apply(self, i: int, t: torch.Tensor) -> torch.Tensor:
        head = self.heads_[i]
        p = next(head.parameters())
        return unit_rows(_embed(head, t, p.device, p.dtype, 8192)).to(device=t.device, dtype=torch.float64)

    def transform(self, i: int, X: ArrayLike) -> Any:
        """Rows of space ``i`` in the shared space: ``normalise(head_i(X))`` (float64; numpy in, numpy out; torch
        in, torch out)."""
        self._check_fitted("transform")
        i = self._view(i, "transform")
        return _output(self._apply(i, self._input(i, X, "transform")), X)

    def _embedded(self, views: Any, method: str) -> list[torch.Tensor]:
        self._check_fitted(method)
        arrays = _views_arg(views, method)
        if len(arrays) != self.n_views_:
            raise ValueError(f"{method}: views must hold the {self.n_views_} fitted spaces; got {len(arrays)}")
        zs = [self._apply(i, self._input(i, a, method)) for i, a in enumerate(arrays)]
        for z in zs[1:]:
            if z.shape[0] != zs[0].shape[0]:
                raise ValueError(f"{method}: views must be paired by row; got row counts {[t.shape[0] for t in zs]}")
        return zs

    def pair_scores(self, views: Sequence[ArrayLike], mask: ArrayLike | None = None) -> list[dict[str, Any]]:
        """Top-1 retrieval i → j of held-out row-paired ``views`` for every ordered pair of views, as rows
        ``{"query": i, "gallery": j, "R@1": value}`` (cosine in the shared space, ties by expectation; with
        ``mask`` each pair on its co-present rows)."""
        zs = self._embedded(views, "pair_scores")
        m = _mask_in(mask, zs[0].shape[0], len(zs))
        scores = pair_r1(zs, None if m is None else torch.from_numpy(m))
        return [{"query": i, "gallery": j, "R@1": v} for (i, j), v in sorted(scores.items())]

    def score(self, views: Sequence[ArrayLike], mask: ArrayLike | None = None) -> float:
        """Mean top-1 retrieval over the ordered view pairs of held-out row-paired ``views`` (see ``pair_scores``)."""
        return float(np.mean([r["R@1"] for r in self.pair_scores(views, mask)]))

    # -------------------------------------------------------------------------------------- modules

    @property
    def heads_(self) -> list[nn.Module]:
        return self._networks()[0]

    @property
    def loss_(self) -> nn.Module:
        return self._networks()[1]

    def _networks(self) -> tuple[list[nn.Module], Any]:
        nets = self.__dict__.get("_nets")
        if nets is None:
            self._check_fitted("use")
            hp = self._hp
            heads = build_heads(hp, self.n_features_, hp["d_out"], hp["shared"])
            plan = estimator_loss_plan(hp, len(self.n_features_), False, "MultiHeadAligner: loss")
            unflatten_modules(_modules(heads, plan.loss), np.asarray(self.weights_, dtype=np.float64))
            for h in heads:
                h.eval()
            nets = (heads, plan.loss)
            self._nets = nets
        return nets

    # ----------------------------------------------------------------------------------- save / load

    _fitted = ("n_features_", "n_items_", "history_", "best_epoch_")

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the fitted aligner to folder ``path``: ``state.safetensors`` + ``config.json`` (atomic, no pickle)."""
        from safetensors.numpy import save as st_save

        self._check_fitted("save")
        folder = Path(path)
        if folder.exists() and not folder.is_dir():
            raise NotADirectoryError(f"{folder}: exists and is not a folder; save() writes a folder")
        folder.mkdir(parents=True, exist_ok=True)
        weights = np.ascontiguousarray(np.asarray(self.weights_, dtype=np.float64))
        blob = st_save({"weights_": weights}, metadata={"format": FORMAT, "class": type(self).__name__})
        from alignkit.align.base import _version

        config = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "class": type(self).__name__,
            "params": {k: _to_json(v) for k, v in self.get_params(deep=False).items()},
            "fitted": {k: _to_json(getattr(self, k)) for k in self._fitted},
            "alignkit_version": _version(),
            "state_sha256": hashlib.sha256(blob).hexdigest(),
        }
        # State first: a reader that finds the new config also finds the state it hashes.
        atomic_write_bytes(folder / STATE_FILE, blob)
        atomic_write_text(folder / CONFIG_FILE, json.dumps(config, indent=2, sort_keys=True, allow_nan=False) + "\n")
        return folder

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> MultiHeadAligner:
        """Read an aligner written by :meth:`save`: the state's sha256, the fitted values and the weights' fit to
        the configured heads are checked, so a corrupt or tampered folder raises a clear error."""
        from safetensors.numpy import load as st_load

        folder = Path(path)
        cfg_path, state_path = folder / CONFIG_FILE, folder / STATE_FILE
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder}: no such folder (an aligner is saved as a folder)")
        for p in (cfg_path, state_path):
            if not p.is_file():
                raise FileNotFoundError(f"{p}: missing; {folder} is not a complete saved aligner")
        try:
            config = json.loads(cfg_path.read_text(encoding="utf-8"))
            name, params, fitted, expected_hash = (
                config["class"], config["params"], config["fitted"], config["state_sha256"],
            )  # fmt: skip
            if not (isinstance(params, dict) and isinstance(fitted, dict)):
                raise TypeError("'params' and 'fitted' must be mappings")
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{cfg_path}: corrupt aligner config ({type(exc).__name__}: {exc})") from exc
        if config.get("format") != FORMAT:
            raise ValueError(f"{cfg_path}: not a saved MultiHeadAligner (format {_short(config.get('format'))})")
        if type(config.get("format_version")) is not int or config["format_version"] != FORMAT_VERSION:
            raise ValueError(f"{cfg_path}: format_version {_short(config.get('format_version'))} is not supported")
        if name != cls.__name__:
            raise TypeError(f"{folder} holds a saved {_short(name)}, not a {cls.__name__}")
        blob = state_path.read_bytes()
        if hashlib.sha256(blob).hexdigest() != expected_hash:
            raise ValueError(
                f"{state_path}: corrupt or mismatched state file (its sha256 differs from the one recorded in "
                f"{CONFIG_FILE}); re-save the aligner"
            )
        try:
            arrays = st_load(blob)
        except Exception as exc:
            raise ValueError(f"{state_path}: corrupt safetensors file ({exc})") from exc
        try:
            obj = cls(**{k: _from_json(v) for k, v in params.items()})
        except TypeError as exc:
            raise ValueError(f"{cfg_path}: parameters do not fit {cls.__name__} ({exc})") from exc
        _check_fitted_values(fitted, cfg_path)
        try:
            obj._validate_params(len(fitted["n_features_"]))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{cfg_path}: {exc}") from None
        if sorted(arrays) != ["weights_"]:
            raise ValueError(f"{state_path}: expected exactly one array 'weights_'; got {sorted(arrays)}")
        w = arrays["weights_"]
        if w.dtype != np.float64 or w.ndim != 1 or not np.isfinite(w).all():
            raise ValueError(f"{state_path}: weights_ must be a finite float64 vector; got {w.dtype}, shape {w.shape}")
        for k in cls._fitted:
            setattr(obj, k, list(fitted[k]) if k == "n_features_" else fitted[k])
        obj.weights_ = w
        try:
            obj._networks()
        except (ValueError, RuntimeError, TypeError) as exc:
            raise ValueError(f"{state_path}: does not fit the saved {cls.__name__}'s configuration ({exc})") from exc
        return obj


def _check_fitted_values(fitted: dict[str, Any], cfg_path: Path) -> None:
    """Exactly the fitted values ``save`` writes, each of its kind (a tampered file cannot set others)."""
    keys = list(MultiHeadAligner._fitted)
    if sorted(fitted) != sorted(keys):
        raise ValueError(f"{cfg_path}: fitted values must be exactly {keys}; got {sorted(fitted)}")

    def pos_int(v: Any) -> bool:
        return isinstance(v, int) and not isinstance(v, bool) and v >= 1

    widths = fitted["n_features_"]
    if not (isinstance(widths, list) and len(widths) >= 2 and all(pos_int(d) for d in widths)):
        raise ValueError(f"{cfg_path}: fitted n_features_ must list >= 2 positive integers; got {_short(widths)}")
    if not pos_int(fitted["n_items_"]):
        raise ValueError(f"{cfg_path}: fitted n_items_ must be a positive integer; got {_short(fitted['n_items_'])}")
    if fitted["best_epoch_"] is not None and not pos_int(fitted["best_epoch_"]):
        raise ValueError(f"{cfg_path}: fitted best_epoch_ must be a positive integer or null")
    if not isinstance(fitted["history_"], list) or not all(isinstance(r, dict) for r in fitted["history_"]):
        raise ValueError(f"{cfg_path}: fitted history_ must be a list of records")


__all__ = ["MultiHeadAligner"]
