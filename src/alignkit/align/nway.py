"""Closed-form n-way baselines: generalised Procrustes analysis and multi-set CCA (MAXVAR).

Both take ``m ≥ 2`` views of the same n items, ``fit([X_1, ..., X_m])`` (row r of every view describes one
item; widths d_i may differ), and map any view into one common space with ``transform(i, X)``. They follow
scikit-learn conventions (hyper-parameters stored unchanged by ``__init__`` and checked in ``fit``; learned
state in trailing-underscore attributes) and are saved like the two-view aligners: a folder with
``state.safetensors`` (the learned arrays, float64) and ``config.json`` (class, hyper-parameters, learned
scalars, alignkit version and the state file's sha256); no pickle.

Cost. One streaming pass over the rows accumulates the centred cross-products ``C = ZᵀZ`` of the
concatenated views ``Z = [X_1 … X_m]`` (Σd × Σd, float64, row blocks of about 4M entries); everything
after that is products and decompositions of d × d (or Σd × Σd) matrices: never an n × n matrix.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from sklearn.base import BaseEstimator
from sklearn.exceptions import NotFittedError

from alignkit._validation import ArrayLike, as_matrix
from alignkit.align.base import register_aligner
from alignkit.io import atomic_write_bytes, atomic_write_text
from alignkit.registry import ParamSchema

STATE_FILE = "state.safetensors"
CONFIG_FILE = "config.json"
FORMAT = "alignkit-nway-aligner"
FORMAT_VERSION = 1
_BLOCK_ELEMENTS = 1 << 22
_EPS64 = float(np.finfo(np.float64).eps)


def _version() -> str:
    from alignkit import __version__

    return __version__


def check_views(Xs: Any, name: str = "Xs") -> list[torch.Tensor]:
    """``Xs`` as a list of ≥ 2 finite float64 matrices with equal row counts (clear errors naming the view)."""
    if isinstance(Xs, (np.ndarray, torch.Tensor)) or not isinstance(Xs, Sequence):
        raise TypeError(f"{name} must be a list of views (one matrix per space); got {type(Xs).__name__}")
    if len(Xs) < 2:
        raise ValueError(f"{name} must hold at least 2 views to align; got {len(Xs)}")
    views = [as_matrix(X, f"{name}[{i}]") for i, X in enumerate(Xs)]
    n = views[0].shape[0]
    for i, v in enumerate(views[1:], start=1):
        if v.shape[0] != n:
            raise ValueError(f"{name} must be paired by row: {name}[{i}] has {v.shape[0]} rows but {name}[0] has {n}")
    device = views[0].device
    return [v.to(device=device, dtype=torch.float64) for v in views]


def _cross_products(views: list[torch.Tensor]) -> tuple[list[torch.Tensor], torch.Tensor]:
    """The view means and ``C = ZᵀZ`` of the centred, concatenated views, accumulated over row blocks."""
    means = [v.mean(dim=0) for v in views]
    total = sum(v.shape[1] for v in views)
    n = views[0].shape[0]
    C = torch.zeros(total, total, dtype=torch.float64, device=views[0].device)
    rows = max(256, _BLOCK_ELEMENTS // max(total, 1))
    for s in range(0, n, rows):
        zb = torch.cat([v[s : s + rows] - m for v, m in zip(views, means, strict=True)], dim=1)
        C.addmm_(zb.T, zb)
    return means, (C + C.T) / 2


def _offsets(widths: list[int]) -> list[slice]:
    out, pos = [], 0
    for w in widths:
        out.append(slice(pos, pos + w))
        pos += w
    return out


def _eigh_desc(M: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    w, V = np.linalg.eigh(M.cpu().numpy())
    return torch.from_numpy(w[::-1].copy()), torch.from_numpy(V[:, ::-1].copy())


class NWayAligner(BaseEstimator):
    """Base class: ``fit(Xs)`` on m row-paired views, ``transform(i, X)`` into the common space, save/load.

    Subclasses implement ``_fit(views)`` (float64 tensors) setting ``weights_`` (one d_i × k matrix per view)
    and ``means_`` (one d_i vector per view), plus their own arrays (``_extra_arrays``, 1-D or 2-D) and JSON
    scalars (``_scalars``). ``transform(i, X) = (X − means_[i]) @ weights_[i]``.
    """

    _extra_arrays: ClassVar[tuple[str, ...]] = ()
    _scalars: ClassVar[tuple[str, ...]] = ()
    _constraints: ClassVar[dict[str, dict[str, Any]]] = {}

    @classmethod
    def param_schema(cls) -> ParamSchema:
        return ParamSchema.from_callable(cls.__init__, **cls._constraints)  # type: ignore[arg-type]

    def _validate_params(self) -> dict[str, Any]:
        return self.param_schema().validate(self.get_params(deep=False), type(self).__name__)

    def fit(self, Xs: Sequence[ArrayLike], y: Any = None) -> NWayAligner:
        """Learn the common space from ``Xs = [X_1, ..., X_m]`` (m ≥ 2, row-paired); returns ``self``."""
        self._validate_params()
        views = check_views(Xs)
        n = views[0].shape[0]
        if n < 2:
            raise ValueError(f"{type(self).__name__}.fit needs at least 2 rows per view; got n={n}")
        for i, v in enumerate(views):
            if float((v - v.mean(dim=0)).abs().max()) == 0.0:
                raise ValueError(f"Xs[{i}] is constant across the rows (no variance); it cannot be aligned")
        self._fit(views)
        self.n_views_ = len(views)
        self.n_features_ = [int(v.shape[1]) for v in views]
        self.n_samples_ = int(n)
        return self

    def _fit(self, views: list[torch.Tensor]) -> None:
        raise NotImplementedError

    def _check_fitted(self, method: str) -> None:
        if not hasattr(self, "n_views_"):
            raise NotFittedError(
                f"This {type(self).__name__} instance is not fitted yet: call fit([X1, X2, ...]) before {method}()."
            )

    @property
    def n_components_(self) -> int:
        self._check_fitted("n_components_")
        return int(np.asarray(self.weights_[0]).shape[1])

    def transform(self, i: int, X: ArrayLike) -> Any:
        """Rows of view ``i`` (0-based, in ``fit``'s order) in the common space (numpy in, numpy out; a torch
        tensor in gives a float64 tensor on its device)."""
        self._check_fitted("transform")
        if isinstance(i, bool) or not isinstance(i, (int, np.integer)) or not 0 <= int(i) < self.n_views_:
            raise ValueError(f"i must be a view index in 0..{self.n_views_ - 1}; got {i!r}")
        i = int(i)
        t = as_matrix(X, "X")
        if t.shape[1] != self.n_features_[i]:
            raise ValueError(
                f"transform: X has {t.shape[1]} features but view {i} of this {type(self).__name__} was fitted "
                f"on {self.n_features_[i]}-dimensional rows"
            )
        t = t.double()
        mean = torch.as_tensor(self.means_[i], dtype=torch.float64, device=t.device)
        W = torch.as_tensor(self.weights_[i], dtype=torch.float64, device=t.device)
        out = (t - mean) @ W
        return out if isinstance(X, torch.Tensor) else out.cpu().numpy()

    # ---------------------------------------------------------------------------------- save / load

    def _arrays(self) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        for i in range(self.n_views_):
            out[f"means.{i}"] = np.asarray(self.means_[i], dtype=np.float64)
            out[f"weights.{i}"] = np.asarray(self.weights_[i], dtype=np.float64)
        for name in self._extra_arrays:
            out[name] = np.asarray(getattr(self, name), dtype=np.float64)
        return {k: np.ascontiguousarray(v) for k, v in out.items()}

    def _fitted_scalars(self) -> list[str]:
        return ["n_views_", "n_features_", "n_samples_", *self._scalars]

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the fitted aligner to folder ``path``: ``state.safetensors`` + ``config.json`` (no pickle)."""
        from safetensors.numpy import save as st_save

        self._check_fitted("save")
        folder = Path(path)
        if folder.exists() and not folder.is_dir():
            raise NotADirectoryError(f"{folder}: exists and is not a folder; save() writes a folder")
        folder.mkdir(parents=True, exist_ok=True)
        blob = st_save(self._arrays(), metadata={"format": FORMAT, "class": type(self).__name__})
        config = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "class": type(self).__name__,
            "params": self.get_params(deep=False),
            "fitted": {k: getattr(self, k) for k in self._fitted_scalars()},
            "alignkit_version": _version(),
            "state_sha256": hashlib.sha256(blob).hexdigest(),
        }
        atomic_write_bytes(folder / STATE_FILE, blob)
        atomic_write_text(folder / CONFIG_FILE, json.dumps(config, indent=2, sort_keys=True) + "\n")
        return folder

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> NWayAligner:
        """Read an aligner written by :meth:`save`; called on a subclass, also checks the saved class."""
        from safetensors.numpy import load as st_load

        folder = Path(path)
        cfg_path, state_path = folder / CONFIG_FILE, folder / STATE_FILE
        for p in (cfg_path, state_path):
            if not p.is_file():
                raise FileNotFoundError(f"{p}: missing; {folder} is not a saved n-way aligner")
        try:
            config = json.loads(cfg_path.read_text(encoding="utf-8"))
            name, params, fitted = config["class"], config["params"], config["fitted"]
            if not (isinstance(params, dict) and isinstance(fitted, dict)):
                raise TypeError("'params' and 'fitted' must be mappings")
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{cfg_path}: corrupt n-way aligner config ({type(exc).__name__}: {exc})") from exc
        if config.get("format") != FORMAT or config.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"{cfg_path}: not an alignkit n-way aligner config (format {FORMAT} v{FORMAT_VERSION})")
        target = NWAY_ALIGNERS.get(name)
        if target is None:
            raise ValueError(f"{cfg_path}: unknown n-way aligner class {name!r}; known: {sorted(NWAY_ALIGNERS)}")
        if not issubclass(target, cls):
            raise TypeError(f"{folder} holds a saved {name}, not a {cls.__name__}; load it with {name}.load")
        blob = state_path.read_bytes()
        if hashlib.sha256(blob).hexdigest() != config.get("state_sha256"):
            raise ValueError(f"{state_path}: corrupt or mismatched state file (sha256 differs from {CONFIG_FILE})")
        arrays = st_load(blob)
        try:
            obj = target(**params)
            obj._validate_params()
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{cfg_path}: parameters do not fit {name} ({exc})") from exc
        obj._restore(fitted, arrays, cfg_path, state_path)
        return obj

    def _restore(self, fitted: dict[str, Any], arrays: dict[str, np.ndarray], cfg_path: Path, state_path: Path) -> None:
        expected = self._fitted_scalars()
        if sorted(fitted) != sorted(expected):
            raise ValueError(f"{cfg_path}: fitted values must be exactly {expected}; got {sorted(fitted)}")
        m, widths = fitted["n_views_"], fitted["n_features_"]
        ok = (
            isinstance(m, int)
            and m >= 2
            and isinstance(widths, list)
            and len(widths) == m
            and all(isinstance(w, int) and w >= 1 for w in widths)
        )
        if not ok:
            raise ValueError(f"{cfg_path}: n_views_ / n_features_ are inconsistent ({m!r}, {widths!r})")
        names = [f"{p}.{i}" for i in range(m) for p in ("means", "weights")] + list(self._extra_arrays)
        if sorted(arrays) != sorted(names):
            raise ValueError(f"{state_path}: learned arrays must be exactly {sorted(names)}; got {sorted(arrays)}")
        for k, a in arrays.items():
            if a.dtype != np.float64 or not np.isfinite(a).all():
                raise ValueError(f"{state_path}: learned array {k} must be finite float64")
        k_dim = arrays["weights.0"].shape[1] if arrays["weights.0"].ndim == 2 else -1
        for i in range(m):
            if arrays[f"means.{i}"].shape != (widths[i],) or arrays[f"weights.{i}"].shape != (widths[i], k_dim):
                raise ValueError(
                    f"{state_path}: view {i} arrays have shapes {arrays[f'means.{i}'].shape}, "
                    f"{arrays[f'weights.{i}'].shape}; expected ({widths[i]},) and ({widths[i]}, {k_dim})"
                )
        for k, v in fitted.items():
            setattr(self, k, v)
        self.means_ = [arrays[f"means.{i}"] for i in range(m)]
        self.weights_ = [arrays[f"weights.{i}"] for i in range(m)]
        for name in self._extra_arrays:
            setattr(self, name, arrays[name])


# ---------------------------------------------------------------------------------------------------- GPA


class GeneralizedProcrustes(NWayAligner):
    """Generalised Procrustes analysis: rotate every view to the barycentre of all, recompute it, repeat.

    Gower, "Generalized Procrustes analysis", Psychometrika 40 (1975); ten Berge, "Orthogonal Procrustes
    rotation for two or more matrices", Psychometrika 42 (1977). Minimises

        f(W, M) = Σ_i ‖X̃_i W_i − M‖_F²  over orthogonal W_i and the consensus M,

    by alternating ``M = (1/m) Σ_i X̃_i W_i`` and ``W_i = U_iV_iᵀ`` from ``svd(X̃_iᵀM) = U_iΣ_iV_iᵀ`` for every
    view (each step minimises f over one block, so f never increases). Start: M = the widest view.
    ``X̃_iᵀM = (1/m) Σ_j C_ij W_j`` uses the cross-products ``C_ij = X̃_iᵀX̃_j`` from one pass over the rows, and
    ``f = Σ_i ‖X̃_i‖² − (1/m) Σ_ij tr(W_iᵀC_ijW_j)``, so an iteration costs O((Σd)²·d), independent of n.
    Stops when the decrease of f is below ``tol``·f(start) or after ``max_iter`` iterations.

    Preprocessing: ``center`` subtracts each view's mean; ``scale`` divides each view by its root-mean-square
    row norm ``‖X_i − x̄_i‖_F/√n`` (Gower's unit-size configurations), so every view weighs the same.

    Views of different widths: with ``n_components=None`` every view is zero-padded to d = max d_i, which is
    the same as taking ``W_i`` to be the d_i × d semi-orthogonal factor of the thin SVD (orthonormal rows), so
    nothing is padded in memory. With ``n_components=k`` each view is first reduced to its top-k principal
    axes (k ≤ min d_i) and GPA runs in k dimensions. Learned: ``weights_[i]`` (d_i × d, the combined
    preprocessing scale, PCA basis and rotation), ``means_[i]``, ``scales_`` (one per view),
    ``objective_history_`` (f per iteration, starting value first), ``n_iter_`` and ``converged_``.

    With two views of equal width GPA is orthogonal Procrustes: ``W_1W_2ᵀ`` is the rotation X̃_1 → X̃_2.
    """

    _scalars: ClassVar[tuple[str, ...]] = ("scales_", "objective_history_", "n_iter_", "converged_")
    _constraints: ClassVar[dict[str, dict[str, Any]]] = {
        "n_components": {"low": 1},
        "max_iter": {"low": 1},
        "tol": {"low": 0.0},
    }

    def __init__(
        self,
        center: bool = True,
        scale: bool = True,
        n_components: int | None = None,
        max_iter: int = 100,
        tol: float = 1e-10,
    ) -> None:
        self.center = center
        self.scale = scale
        self.n_components = n_components
        self.max_iter = max_iter
        self.tol = tol

    def _fit(self, views: list[torch.Tensor]) -> None:
        hp = self._validate_params()
        n, m = views[0].shape[0], len(views)
        widths = [v.shape[1] for v in views]
        means, C = _cross_products(views)
        if not hp["center"]:  # uncentred products: C + n·μμᵀ (a sum, no cancellation)
            mu = torch.cat(means)
            C = C + n * torch.outer(mu, mu)
            means = [torch.zeros_like(mu_i) for mu_i in means]
        blocks = _offsets(widths)
        scales = [1.0] * m
        if hp["scale"]:
            scales = [math.sqrt(float(torch.trace(C[b, b])) / n) for b in blocks]
        # D = diag(1/s_i) on each block: C ← D C D; bases P_i map each scaled view to its working coordinates
        inv = torch.cat([torch.full((w,), 1.0 / s, dtype=torch.float64) for w, s in zip(widths, scales, strict=True)])
        C = C * inv[:, None] * inv[None, :]
        k = hp["n_components"]
        if k is not None:
            if k > min(widths):
                raise ValueError(f"n_components={k} exceeds the narrowest view's width ({min(widths)})")
            bases = [_eigh_desc(C[b, b])[1][:, :k] for b in blocks]
            Pbig = torch.block_diag(*bases)  # Σd × m·k
            C = Pbig.T @ C @ Pbig
            work = [k] * m
        else:
            bases = [torch.eye(w, dtype=torch.float64) for w in widths]
            work = widths
        d = max(work)
        wb = _offsets(work)
        ref = int(np.argmax(work))
        Ws = [torch.zeros(w, d, dtype=torch.float64) for w in work]
        Ws[ref] = torch.eye(d, dtype=torch.float64)
        # first consensus: the reference view itself (M = X̃_ref), then rotate every view to it
        Ws = [_rotation(C[wb[i], wb[ref]]) if i != ref else Ws[ref] for i in range(m)]
        ss = float(sum(torch.trace(C[b, b]) for b in wb))
        history = [_gpa_objective(C, Ws, wb, ss)]
        converged = False
        it = 0
        for it in range(1, hp["max_iter"] + 1):  # noqa: B007 (n_iter_ reads it after the loop)
            stacked = torch.cat(Ws)  # Σd × d
            CW = C @ stacked / m  # rows of block i: X̃_iᵀM
            Ws = [_rotation(CW[b]) for b in wb]
            history.append(_gpa_objective(C, Ws, wb, ss))
            if history[-2] - history[-1] <= hp["tol"] * max(history[0], 1e-300):
                converged = True
                break
        self.means_ = [mu.cpu().numpy() for mu in means]
        self.weights_ = [(P @ W / s).cpu().numpy() for P, W, s in zip(bases, Ws, scales, strict=True)]
        self.scales_ = [float(s) for s in scales]
        self.objective_history_ = [float(v) for v in history]
        self.n_iter_ = int(it)
        self.converged_ = bool(converged)


def _rotation(A: torch.Tensor) -> torch.Tensor:
    """``UVᵀ`` from the thin SVD of A (d_i × d): the (semi-)orthogonal W maximising tr(WᵀA)."""
    U, _, Vh = np.linalg.svd(A.cpu().numpy(), full_matrices=False)
    return torch.from_numpy(U @ Vh)


def _gpa_objective(C: torch.Tensor, Ws: list[torch.Tensor], blocks: list[slice], ss: float) -> float:
    """``Σ_i ‖X̃_iW_i − M‖² = Σ_i ‖X̃_i‖² − (1/m) ‖Σ_i X̃_iW_i‖²`` from the cross-products (W_i with orthonormal rows)."""
    stacked = torch.cat(Ws)
    m = len(Ws)
    return float(ss - float(torch.trace(stacked.T @ C @ stacked)) / m)


# ------------------------------------------------------------------------------------------------ MAXVAR


class MultiSetCCA(NWayAligner):
    """Multi-set CCA, MAXVAR form: the common space of top eigenvectors of the sum of the views' projections.

    Kettenring, "Canonical analysis of several sets of variables", Biometrika 58 (1971) (MAXVAR); the
    common-space formulation is Carroll's generalised CCA ("Generalization of canonical correlation analysis
    to three or more sets of variables", APA 1968): find G (n × k, GᵀG = I) maximising ``Σ_i ‖P_iG‖_F²`` with
    ``P_i = X_i(X_iᵀX_i + n·reg·I)^{-1}X_iᵀ`` (centred views; ``reg`` as in :class:`CCAAligner`, on C = XᵀX/n),
    i.e. G = the top-k eigenvectors of ``Σ_i P_i``.

    Without n × n matrices: with ``X_iᵀX_i = Q_i diag(λ_i) Q_iᵀ`` (eigenpairs above the rank cutoff) and
    ``Z_i = X_iQ_i diag((λ_i + n·reg)^{-1/2})``, ``Σ_i P_i = ZZᵀ`` for ``Z = [Z_1 … Z_m]``, so its eigenvalues are
    those of ``ZᵀZ`` (Σr × Σr, blocks ``D_i^{-1/2}Q_iᵀC_ijQ_jD_j^{-1/2}``): ``ZᵀZ = VΛVᵀ``, ``G = ZV_kΛ_k^{-1/2}``.
    View i's variates are its ridge prediction of √n·G: ``X_iU_i`` with
    ``U_i = √n·(X_iᵀX_i + n·reg·I)^{-1}X_iᵀG = √n·Q_iD_i^{-1/2}V_{i,k}Λ_k^{1/2}`` (V_{i,k}: view i's rows of V_k).

    ``eigenvalues_`` (k, descending) are λ_j = Σ_i ‖P_ig_j‖² ∈ [0, m]; with two views and reg = 0 they are
    1 + ρ_j, ρ_j the canonical correlations, and view i's variates are its canonical variates. Rank cutoff per
    view: eigenvalues of X_iᵀX_i above ``max(n, d_i)·eps₆₄·λ_max`` (the Gram resolution used by the aligners).
    ``n_components`` : k, at most Σ rank(X_i) (default: the smallest view rank).
    """

    _extra_arrays: ClassVar[tuple[str, ...]] = ("eigenvalues_",)
    _constraints: ClassVar[dict[str, dict[str, Any]]] = {"n_components": {"low": 1}, "reg": {"low": 0.0}}

    def __init__(self, n_components: int | None = None, reg: float = 1e-6) -> None:
        self.n_components = n_components
        self.reg = reg

    def _fit(self, views: list[torch.Tensor]) -> None:
        hp = self._validate_params()
        n = views[0].shape[0]
        reg = float(hp["reg"])
        means, C = _cross_products(views)
        blocks = _offsets([v.shape[1] for v in views])
        whiten = []
        for i, b in enumerate(blocks):
            lam, Q = _eigh_desc(C[b, b])
            keep = lam > max(n, b.stop - b.start) * _EPS64 * float(lam[0]) if float(lam[0]) > 0 else lam > 0
            if not bool(keep.any()):
                raise ValueError(f"Xs[{i}] is constant across the rows (no variance); it cannot be aligned")
            whiten.append(Q[:, keep] / torch.sqrt(lam[keep] + n * reg))
        ranks = [w.shape[1] for w in whiten]
        k = hp["n_components"] if hp["n_components"] is not None else min(ranks)
        if k > sum(ranks):
            raise ValueError(f"n_components={k} exceeds the {sum(ranks)} dimensions of the views' spans (Σ rank X_i)")
        Wbig = torch.block_diag(*whiten)  # Σd × Σr
        B = Wbig.T @ C @ Wbig
        lam_all, V = _eigh_desc((B + B.T) / 2)
        lam, Vk = lam_all[:k].clamp_min(0.0), V[:, :k]
        rb = _offsets(ranks)
        self.means_ = [mu.cpu().numpy() for mu in means]
        self.weights_ = [(math.sqrt(n) * whiten[i] @ Vk[rb[i]] * lam.sqrt()).cpu().numpy() for i in range(len(views))]
        self.eigenvalues_ = lam.cpu().numpy()


#: n-way aligner classes by name (what ``NWayAligner.load`` reads back).
NWAY_ALIGNERS: dict[str, type[NWayAligner]] = {c.__name__: c for c in (GeneralizedProcrustes, MultiSetCCA)}

# in the aligner registry as n-way types (run configs: ``type: gpa`` / ``type: maxvar`` in an experiment with views)
register_aligner("gpa", views=None, constraints=GeneralizedProcrustes._constraints)(GeneralizedProcrustes)
register_aligner("maxvar", views=None, constraints=MultiSetCCA._constraints)(MultiSetCCA)

__all__ = ["NWAY_ALIGNERS", "GeneralizedProcrustes", "MultiSetCCA", "NWayAligner", "check_views"]
