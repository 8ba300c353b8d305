"""Base class for aligners: scikit-learn estimators fitted on paired rows, saved as safetensors + JSON.

Conventions (scikit-learn): hyper-parameters are stored unchanged by ``__init__`` and validated in ``fit``,
so ``get_params``/``set_params``/``sklearn.base.clone`` work; learned state lives in trailing-underscore
attributes. ``fit(X, Y)`` takes two row-paired matrices (row i of X describes the same item as row i of Y).
``transform_x`` / ``transform_y`` map each side into the shared space, ``translate`` maps X into Y's space
where the method defines one, and ``score`` is the top-1 retrieval accuracy X → Y in the shared space.

Computation is float64 torch on the input's device. Outputs are numpy float64 arrays, or float64 torch
tensors when the input is a torch tensor. Learned arrays are numpy float64.

``save(path)`` writes a folder with ``state.safetensors`` (the learned arrays) and ``config.json`` (class
name, hyper-parameters, scalar learned state, alignkit version and the sha256 of the state file), each
written atomically; no pickle. ``Aligner.load(path)`` (or ``Procrustes.load(path)``, which also checks the
class) verifies the hash, so a corrupt or mismatched state file raises a clear error.
"""

from __future__ import annotations

import hashlib
import json
import os
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import numpy as np
import torch
from sklearn.base import BaseEstimator
from sklearn.exceptions import NotFittedError

from alignkit._common import unit_rows as unit_rows  # re-exported for the aligners
from alignkit._validation import ArrayLike, as_matrix, as_pair, check_min_rows
from alignkit.io import atomic_write_bytes, atomic_write_text
from alignkit.registry import Entry, ParamSchema, Registry

A = TypeVar("A", bound="Aligner")

STATE_FILE = "state.safetensors"
CONFIG_FILE = "config.json"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class AlignerInfo(Entry[type]):
    """A registered aligner: its estimator class, typed hyper-parameters and what it offers."""

    paired: bool = True  # fit needs row-paired X, Y
    translates: bool = False  # defines translate(): X into Y's own coordinates

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "class": self.obj.__name__,
            "description": self.description,
            "paired": self.paired,
            "translates": self.translates,
            "params": self.schema.describe(),
        }


#: Aligners by the name a run config uses (``type: procrustes``).
ALIGNERS: Registry[AlignerInfo] = Registry("aligner")


def register_aligner(
    name: str, *, constraints: dict[str, dict[str, Any]] | None = None, paired: bool = True, replace: bool = False
) -> Callable[[type[A]], type[A]]:
    """Class decorator: register an :class:`Aligner` subclass under ``name``.

    Its hyper-parameters (the ``__init__`` signature, typed from annotations and defaults, tightened by
    ``constraints`` such as ``{"reg": {"low": 0}}``) become the schema that ``fit`` checks (scikit-learn's
    parameter-constraints habit) and that a run config is validated against before anything runs.
    """

    def deco(cls: type[A]) -> type[A]:
        schema = ParamSchema.from_callable(cls.__init__, **(constraints or {}))
        doc = (cls.__doc__ or "").strip().splitlines()
        translates = cls._translate is not Aligner._translate
        ALIGNERS.add(AlignerInfo(name, cls, doc[0] if doc else "", schema, {}, paired, translates), replace=replace)
        cls._schema = schema
        return cls

    return deco


def _version() -> str:
    from alignkit import __version__

    return __version__


def _to_json(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_to_json(v) for v in value]
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    return value


def _from_json(value: Any) -> Any:
    # Hyper-parameters given as tuples come back from JSON as lists; tuples keep them hashable and equal.
    if isinstance(value, list):
        return tuple(_from_json(v) for v in value)
    return value


def _output(t: torch.Tensor, like: ArrayLike) -> Any:
    if isinstance(like, torch.Tensor):
        return t
    return t.detach().cpu().numpy()


def make_aligner(name: str, **params: Any) -> Aligner:
    """A registered aligner by name, its hyper-parameters checked and typed first (``"true"`` → True,
    ``"10"`` → 10), so what is stored by ``get_params``/``save`` is the typed value."""
    info = ALIGNERS.get(name)
    return info.obj(**info.schema.validate(params, f"aligner {name!r}"))  # type: ignore[no-any-return]


class Aligner(BaseEstimator, ABC):
    """Base class: subclasses implement ``_fit``, ``_transform_x``, ``_transform_y`` (and ``_translate``).

    Class attributes: ``_arrays`` names the learned array attributes saved to ``state.safetensors``;
    ``_scalars`` the learned scalar attributes saved in ``config.json``; ``_min_pairs`` the fewest
    training pairs the method accepts.
    """

    _arrays: ClassVar[tuple[str, ...]] = ()
    _scalars: ClassVar[tuple[str, ...]] = ()
    _min_pairs: ClassVar[int] = 2
    _schema: ClassVar[ParamSchema | None] = None  # set by register_aligner

    # ------------------------------------------------------------------------------------------ fit

    @classmethod
    def param_schema(cls) -> ParamSchema:
        """The typed hyper-parameters (from the registration, else from ``__init__``)."""
        return cls.__dict__.get("_schema") or ParamSchema.from_callable(cls.__init__)

    @property
    def _hp(self) -> dict[str, Any]:
        """The hyper-parameters checked and coerced against the schema (``"false"`` → False, ...).

        Methods read their settings from here, never from the raw attributes, so a value accepted by
        the schema means the same thing in ``fit``, ``transform`` and after ``load``.
        """
        return self.param_schema().validate(self.get_params(deep=False), type(self).__name__)

    def _validate_params(self) -> dict[str, Any]:
        """Check the hyper-parameters (the start of ``fit``): a clear error names the parameter."""
        return self._hp

    def fit(self, X: ArrayLike, Y: ArrayLike) -> Aligner:
        """Learn the alignment from paired rows ``X[i] ↔ Y[i]``; returns ``self``."""
        self._validate_params()
        x, y = as_pair(X, Y)
        check_min_rows(x.shape[0], self._min_pairs_for(x, y), type(self).__name__)
        self._fit(x.double(), y.double(), input_dtype=x.dtype)
        self.n_features_x_ = int(x.shape[1])
        self.n_features_y_ = int(y.shape[1])
        self.n_pairs_ = int(x.shape[0])
        return self

    def _min_pairs_for(self, x: torch.Tensor, y: torch.Tensor) -> int:
        return self._min_pairs

    def _fit(self, x: torch.Tensor, y: torch.Tensor, *, input_dtype: torch.dtype) -> None:
        """Learn the state from validated float64 pairs (closed forms implement this; trained
        aligners such as HeadAligner override ``fit`` itself)."""
        raise NotImplementedError(f"{type(self).__name__} must implement _fit or override fit")

    # ------------------------------------------------------------------------------------ transform

    def _check_fitted(self, method: str) -> None:
        if not hasattr(self, "n_features_x_"):
            raise NotFittedError(
                f"This {type(self).__name__} instance is not fitted yet: call fit(X, Y) on paired rows "
                f"before {method}()."
            )

    def _input(self, X: ArrayLike, side: str, method: str) -> torch.Tensor:
        self._check_fitted(method)
        name = side.upper()
        t = as_matrix(X, name)
        width = self.n_features_x_ if side == "x" else self.n_features_y_
        if t.shape[1] != width:
            raise ValueError(
                f"{method}: {name} has {t.shape[1]} features but this {type(self).__name__} was fitted on "
                f"{width}-dimensional {name}"
            )
        return t.double()

    def _state(self, name: str, device: torch.device) -> torch.Tensor:
        return torch.as_tensor(getattr(self, name), dtype=torch.float64, device=device)

    def transform_x(self, X: ArrayLike) -> Any:
        """Map rows of the X space into the shared space."""
        return _output(self._transform_x(self._input(X, "x", "transform_x")), X)

    def transform_y(self, Y: ArrayLike) -> Any:
        """Map rows of the Y space into the shared space."""
        return _output(self._transform_y(self._input(Y, "y", "transform_y")), Y)

    def translate(self, X: ArrayLike) -> Any:
        """Map rows of the X space into Y's own coordinates (only for methods that define it)."""
        if type(self)._translate is Aligner._translate:
            raise NotImplementedError(
                f"{type(self).__name__} maps both sides into a shared space and has no X → Y translation; "
                "use transform_x and transform_y"
            )
        return _output(self._translate(self._input(X, "x", "translate")), X)

    @abstractmethod
    def _transform_x(self, x: torch.Tensor) -> torch.Tensor:
        """X rows in the shared space."""

    @abstractmethod
    def _transform_y(self, y: torch.Tensor) -> torch.Tensor:
        """Y rows in the shared space."""

    def _translate(self, x: torch.Tensor) -> torch.Tensor:
        """X rows in Y's coordinates; only methods that define a translation override this."""
        raise NotImplementedError

    def score(self, X: ArrayLike, Y: ArrayLike) -> float:
        """Mean top-1 retrieval accuracy X → Y: the fraction of rows i whose partner ``Y[i]`` is the
        cosine-nearest of all rows of Y to ``X[i]`` in the shared space. Ties are not hits: a partner tied
        with t other rows at the top counts ``1/(t + 1)``, its expectation under random tie-breaking
        (:mod:`alignkit.ranking`), so a map that sends everything to one point scores chance, 1/n."""
        from alignkit.ranking import X_TO_Y, paired_ranks, rank_summary

        self._check_fitted("score")
        x, y = as_pair(X, Y)
        check_min_rows(x.shape[0], 2, "score")
        zx = self._transform_x(self._input(x, "x", "score"))
        zy = self._transform_y(self._input(y, "y", "score"))
        return rank_summary(paired_ranks(zx, zy, metric="cosine")[X_TO_Y], (1,))["R@1"]

    # ---------------------------------------------------------------------------------- save / load

    def _learned_arrays(self) -> list[str]:
        return list(self._arrays)

    def _learned_scalars(self) -> list[str]:
        return ["n_features_x_", "n_features_y_", "n_pairs_", *self._scalars]

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the fitted aligner to folder ``path`` (created if needed): ``state.safetensors`` + ``config.json``."""
        from safetensors.numpy import save as st_save

        self._check_fitted("save")
        folder = Path(path)
        if folder.exists() and not folder.is_dir():
            raise NotADirectoryError(f"{folder}: exists and is not a folder; save() writes a folder")
        folder.mkdir(parents=True, exist_ok=True)
        arrays = {
            name: np.ascontiguousarray(np.asarray(getattr(self, name), dtype=np.float64))
            for name in self._learned_arrays()
        }
        blob = st_save(arrays, metadata={"format": "alignkit-aligner", "class": type(self).__name__})
        config = {
            "format": "alignkit-aligner",
            "format_version": FORMAT_VERSION,
            "class": type(self).__name__,
            "params": {k: _to_json(v) for k, v in self.get_params(deep=False).items()},
            "fitted": {k: _to_json(getattr(self, k)) for k in self._learned_scalars()},
            "alignkit_version": _version(),
            "state_sha256": hashlib.sha256(blob).hexdigest(),
        }
        # State first: a reader that finds the new config also finds the state it hashes.
        atomic_write_bytes(folder / STATE_FILE, blob)
        atomic_write_text(folder / CONFIG_FILE, json.dumps(config, indent=2, sort_keys=True) + "\n")
        return folder

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Aligner:
        """Read an aligner saved by :meth:`save`. Called on a subclass, also checks the saved class."""
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
            name, params, fitted = config["class"], config["params"], config["fitted"]
            expected_hash = config["state_sha256"]
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{cfg_path}: corrupt aligner config ({type(exc).__name__}: {exc})") from exc
        if config.get("format") != "alignkit-aligner":
            raise ValueError(f"{cfg_path}: not an alignkit aligner config")
        target = cls if cls.__name__ == name else next((e.obj for e in ALIGNERS if e.obj.__name__ == name), None)
        if target is None:
            known = ", ".join(sorted(e.obj.__name__ for e in ALIGNERS))
            raise ValueError(
                f"{cfg_path}: unknown aligner class {name!r}; known: {known} (register yours with "
                "register_aligner, or call YourClass.load)"
            )
        if not issubclass(target, cls):
            raise TypeError(f"{folder} holds a saved {name}, not a {cls.__name__}; load it with {name}.load")
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
            obj = target(**{k: _from_json(v) for k, v in params.items()})
        except TypeError as exc:
            raise ValueError(f"{cfg_path}: parameters do not fit {name} ({exc})") from exc
        for k, v in fitted.items():
            setattr(obj, k, v)
        missing = [k for k in obj._learned_arrays() if k not in arrays]
        if missing:
            raise ValueError(f"{state_path}: missing learned arrays {missing} for {name}")
        for k in obj._learned_arrays():
            setattr(obj, k, arrays[k])
        return obj
