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
import math
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

T = TypeVar("T")

STATE_FILE = "state.safetensors"
CONFIG_FILE = "config.json"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class AlignerInfo(Entry[type]):
    """A registered aligner: its estimator class, typed hyper-parameters and what it offers."""

    paired: bool = True  # fit needs row-paired X, Y
    translates: bool = False  # defines translate(): X into Y's own coordinates
    degenerate: str = "raise"  # a constant training space is an error (alignkit.degenerate)
    views: int | None = 2  # spaces fit takes: 2 (fit(X, Y)), or None for n >= 2 (fit([X1, X2, ...]))

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "class": self.obj.__name__,
            "description": self.description,
            "paired": self.paired,
            "translates": self.translates,
            "degenerate": self.degenerate,
            "views": self.views,
            "params": self.schema.describe(),
        }


#: Aligners by the name a run config uses (``type: procrustes``).
ALIGNERS: Registry[AlignerInfo] = Registry("aligner")


def register_aligner(
    name: str,
    *,
    constraints: dict[str, dict[str, Any]] | None = None,
    paired: bool = True,
    views: int | None = 2,
    replace: bool = False,
) -> Callable[[type[T]], type[T]]:
    """Class decorator: register an aligner class under ``name``.

    Its hyper-parameters (the ``__init__`` signature, typed from annotations and defaults, tightened by
    ``constraints`` such as ``{"reg": {"low": 0}}``) become the schema that ``fit`` checks (scikit-learn's
    parameter-constraints habit) and that a run config is validated against before anything runs.
    ``paired=False``: ``fit(X, Y)`` takes unpaired sets (:mod:`alignkit.align.unsupervised`). ``views=None``: an
    n-way aligner, ``fit([X1, X2, ...])`` and ``transform(i, X)`` (not an :class:`Aligner` subclass).
    """

    def deco(cls: type[T]) -> type[T]:
        schema = ParamSchema.from_callable(cls.__init__, **(constraints or {}))
        doc = (cls.__doc__ or "").strip().splitlines()
        translates = getattr(cls, "_translate", Aligner._translate) is not Aligner._translate
        info = AlignerInfo(name, cls, doc[0] if doc else "", schema, {}, paired, translates, views=views)
        ALIGNERS.add(info, replace=replace)
        setattr(cls, "_schema", schema)  # noqa: B010 (any class, not only Aligner subclasses)
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
    training pairs the method accepts. ``_shapes`` declares what ``load`` checks: learned array ->
    symbolic dims (``("d_x", "d_y")``; ``d_x``, ``d_y`` are the fitted widths, other names must agree
    across arrays), and ``()`` for a learned scalar that must be a finite number. ``_rebuild_on_load``
    names a method ``load`` calls once the state is set, to rebuild (and so check) derived state.
    """

    _arrays: ClassVar[tuple[str, ...]] = ()
    _scalars: ClassVar[tuple[str, ...]] = ()
    _shapes: ClassVar[dict[str, tuple[str | int, ...]]] = {}
    _rebuild_on_load: ClassVar[str] = ""
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

    def _upgrade_fitted(self, fitted: dict[str, Any]) -> dict[str, Any]:
        """Fitted values read from a file saved by an earlier alignkit, completed to today's set (``load``); the
        strict checks run on the result. Subclasses that added a fitted value fill it in here."""
        return fitted

    def _validate_params(self) -> dict[str, Any]:
        """Check the hyper-parameters (the start of ``fit``, a run config, ``load``): a clear error names the
        parameter. Subclasses add checks that involve several parameters."""
        return self._hp

    def _check_training_spaces(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """A constant training space cannot be aligned: a clear error naming it (alignkit.degenerate)."""
        from alignkit.degenerate import handle, inspect_space

        checks = [inspect_space(x, "X", duplicates=False), inspect_space(y, "Y", duplicates=False)]
        handle(checks, "raise", f"{type(self).__name__}.fit")

    def fit(self, X: ArrayLike, Y: ArrayLike) -> Aligner:
        """Learn the alignment from paired rows ``X[i] ↔ Y[i]``; returns ``self``."""
        self._validate_params()
        x, y = as_pair(X, Y)
        self._check_training_spaces(x, y)
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
                f"This {type(self).__name__} instance is not fitted yet: call fit(X, Y) before {method}()."
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

    def can_translate(self) -> bool:
        """Whether ``translate`` is defined with these hyper-parameters (a run config checks it before fitting)."""
        return type(self)._translate is not Aligner._translate

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
        from alignkit.degenerate import warn_degenerate

        warn_degenerate(f"{type(self).__name__}.score", **{"mapped X": zx, "mapped Y": zy})
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
            if not (isinstance(params, dict) and isinstance(fitted, dict)):
                raise TypeError("'params' and 'fitted' must be mappings")
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{cfg_path}: corrupt aligner config ({type(exc).__name__}: {exc})") from exc
        if config.get("format") != "alignkit-aligner":
            raise ValueError(f"{cfg_path}: not an alignkit aligner config")
        version = config.get("format_version")
        if type(version) is not int or version != FORMAT_VERSION:
            raise ValueError(
                f"{cfg_path}: format_version {_short(version)} is not supported; this alignkit "
                f"({_version()}) reads format_version {FORMAT_VERSION} only (re-save the aligner with it)"
            )
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
        try:
            obj._validate_params()  # a tampered hyper-parameter fails here, not on first use
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{cfg_path}: {exc}") from None
        fitted = obj._upgrade_fitted(dict(fitted))
        _check_fitted_values(obj, fitted, cfg_path)
        _check_arrays(obj, arrays, fitted, state_path)
        for k, v in fitted.items():
            setattr(obj, k, v)
        for k in obj._learned_arrays():
            setattr(obj, k, arrays[k])
        _rebuild_loaded(obj, state_path)
        return obj


# ------------------------------------------------------------------------------------- load checks

#: shape symbols bound by the fitted widths every aligner saves
_WIDTHS = {"d_x": "n_features_x_", "d_y": "n_features_y_"}
_COUNTS = ("n_features_x_", "n_features_y_", "n_pairs_", "n_items_x_", "n_items_y_", "n_distinct_x_", "n_distinct_y_")


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _is_json_data(value: Any, top: bool = True) -> bool:
    """A JSON scalar, or a list of JSON data (a training history: a list of records)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return True
    if isinstance(value, list):
        return all(_is_json_data(v, top=False) for v in value)
    if isinstance(value, dict) and not top:
        return all(isinstance(k, str) and _is_json_data(v, top=False) for k, v in value.items())
    return False


def _scalar_problem(key: str, value: Any, shape: tuple[str | int, ...] | None) -> str | None:
    """What ``value`` of fitted ``key`` should be, or None when it is that."""
    if key in _COUNTS:
        ok = isinstance(value, int) and not isinstance(value, bool) and value >= 1
        return None if ok else "a positive integer"
    if shape == ():
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        return None if ok else "a finite number"
    return None if _is_json_data(value) else "a JSON scalar or a list"


def _exactly(found: dict[str, Any], expected: list[str], path: Path, what: str, name: str) -> None:
    """``found`` holds exactly the ``expected`` keys (a tampered file can neither add nor drop one)."""
    unknown = [k for k in found if k not in expected]
    if unknown:
        raise ValueError(f"{path}: unexpected {what} {unknown[0]!r}; a saved {name} holds only {expected}")
    missing = [k for k in expected if k not in found]
    if missing:
        raise ValueError(f"{path}: missing {what}(s) {missing} for {name}")


def _check_fitted_values(obj: Aligner, fitted: dict[str, Any], cfg_path: Path) -> None:
    """Only the declared fitted values, all of them, each of its kind (a tampered file cannot set others)."""
    allowed = obj._learned_scalars()
    _exactly(fitted, allowed, cfg_path, "fitted value", type(obj).__name__)
    for k in allowed:
        problem = _scalar_problem(k, fitted[k], type(obj)._shapes.get(k))
        if problem is not None:
            raise ValueError(f"{cfg_path}: fitted {k} must be {problem}; got {_short(fitted[k])}")
        if not _all_finite(fitted[k]):
            raise ValueError(f"{cfg_path}: fitted {k} holds a non-finite number (NaN or ±inf); got {_short(fitted[k])}")


def _all_finite(value: Any) -> bool:
    """No NaN or ±inf anywhere in a JSON value (a number, or a list/record of them)."""
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, list):
        return all(_all_finite(v) for v in value)
    if isinstance(value, dict):
        return all(_all_finite(v) for v in value.values())
    return True


def _check_arrays(obj: Aligner, arrays: dict[str, np.ndarray], fitted: dict[str, Any], state_path: Path) -> None:
    """Exactly the declared learned arrays, float64 and finite, with shapes consistent with the fitted widths."""
    expected = obj._learned_arrays()
    _exactly(arrays, expected, state_path, "learned array", type(obj).__name__)
    for k in expected:
        if arrays[k].dtype != np.float64:
            raise ValueError(f"{state_path}: {k} is {arrays[k].dtype}; saved arrays are float64")
        bad = int(np.size(arrays[k]) - np.count_nonzero(np.isfinite(arrays[k])))
        if bad:
            raise ValueError(
                f"{state_path.name}: learned array {k} holds {bad} non-finite value(s) (NaN or ±inf); "
                f"{state_path} is corrupt or was saved from a diverged fit"
            )
    shapes = {k: tuple(int(n) for n in arrays[k].shape) for k in expected}
    _check_shapes(type(obj)._shapes, shapes, fitted, state_path)


Dims = dict[str, tuple[int, str]]  # shape symbol -> (size, where the size comes from)


def _check_shapes(
    declared: dict[str, tuple[str | int, ...]], shapes: dict[str, tuple[int, ...]], fitted: dict[str, Any], where: Path
) -> None:
    """Each declared array against its symbolic dims: ``d_x``/``d_y`` bound by the fitted widths, any other
    symbol by the first array that uses it (so ``("d_x", "k")`` and ``("k",)`` must agree on k)."""
    dims: Dims = {sym: (int(fitted[key]), f"{key} in {CONFIG_FILE}") for sym, key in _WIDTHS.items()}
    for name, want in declared.items():
        got = shapes.get(name)  # None: a learned scalar, checked with the fitted values
        if got is not None and not _fits(name, want, got, dims):
            raise ValueError(_shape_error(where, name, want, got, dims))


def _fits(name: str, want: tuple[str | int, ...], got: tuple[int, ...], dims: Dims) -> bool:
    """Whether ``got`` matches ``want``, binding symbols not seen before to this array's sizes."""
    ok = len(got) == len(want)
    for sym, size in zip(want, got, strict=False):
        bound = sym if isinstance(sym, int) else dims.setdefault(sym, (size, f"from {name}"))[0]
        ok = ok and bound == size
    return ok


def _shape_error(where: Path, name: str, want: tuple[str | int, ...], got: tuple[int, ...], dims: Dims) -> str:
    syms = [s for s in dict.fromkeys(want) if isinstance(s, str) and s in dims and dims[s][1] != f"from {name}"]
    bound = ", ".join(f"{s} = {dims[s][0]} ({dims[s][1]})" for s in syms)
    spelled = "(" + ", ".join(map(str, want)) + ("," if len(want) == 1 else "") + ")"
    return (
        f"{where}: {name} has shape {got}, expected {spelled}"
        + (f" with {bound}" if bound else "")
        + "; the saved state does not match its config"
    )


def _rebuild_loaded(obj: Aligner, state_path: Path) -> None:
    """Call the class's ``_rebuild_on_load`` method, so state that does not fit fails here, naming the file."""
    method = type(obj)._rebuild_on_load
    if not method:
        return
    try:
        getattr(obj, method)()
    except (ValueError, RuntimeError, TypeError) as exc:
        raise ValueError(f"{state_path}: does not fit the saved {type(obj).__name__}'s configuration ({exc})") from exc
