"""``Aligner.load`` accepts only the declared fitted state, with consistent shapes: a tampered save fails
with a clear error naming the file, an untampered one round-trips for every registered aligner."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from safetensors.numpy import load as st_load
from safetensors.numpy import save as st_save

from alignkit.align import ALIGNERS, ASIF, Aligner, CCAAligner, HeadAligner, Procrustes, Ridge, VecMap

FAST = {"head": {"head": "linear", "d_out": 4, "epochs": 1, "batch_size": 16, "progress": False}}
BUILT_IN = (Procrustes, VecMap, CCAAligner, Ridge, ASIF, HeadAligner)


def _data(d_x: int = 12, d_y: int = 12, n: int = 60) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    X = rng.standard_normal((n, d_x))
    return X, X @ rng.standard_normal((d_x, d_y)) + 0.1 * rng.standard_normal((n, d_y))


def _edit_config(folder: Path, edit: Any) -> Path:
    path = folder / "config.json"
    cfg = json.loads(path.read_text())
    edit(cfg)
    path.write_text(json.dumps(cfg))
    return path


def _write_state(folder: Path, arrays: dict[str, np.ndarray]) -> Path:
    """Write exactly ``arrays`` as state.safetensors and record its sha256 (a careful tamperer)."""
    state = folder / "state.safetensors"
    blob = st_save(arrays)
    state.write_bytes(blob)
    _edit_config(folder, lambda cfg: cfg.update(state_sha256=hashlib.sha256(blob).hexdigest()))
    return state


def _replace_state(folder: Path, **arrays: np.ndarray) -> Path:
    return _write_state(folder, {**st_load((folder / "state.safetensors").read_bytes()), **arrays})


@pytest.fixture
def ridge(tmp_path: Path) -> Path:
    X, Y = _data()
    return Ridge().fit(X, Y).save(tmp_path / "ridge")


def test_fitted_width_that_contradicts_the_arrays_is_refused(ridge: Path) -> None:
    _edit_config(ridge, lambda cfg: cfg["fitted"].update(n_features_y_=11))
    with pytest.raises(ValueError, match=r"ridge.*coef_ has shape \(12, 12\).*d_y = 11.*n_features_y_") as info:
        Aligner.load(ridge)
    assert str(ridge / "state.safetensors") in str(info.value)


def test_unknown_fitted_key_is_refused(ridge: Path) -> None:
    path = _edit_config(ridge, lambda cfg: cfg["fitted"].update(transform_x="x"))
    with pytest.raises(ValueError, match=r"unexpected fitted value 'transform_x'") as info:
        Ridge.load(ridge)
    assert str(path) in str(info.value)


@pytest.mark.parametrize(
    "arrays",
    [
        {"intercept_": np.zeros(11)},  # one array truncated
        {"coef_": np.zeros((12, 11)), "intercept_": np.zeros(11)},  # a consistent 11-d map for a 12-d fit
        {"coef_": np.zeros(144)},  # flattened
    ],
)
def test_truncated_array_with_a_fixed_hash_is_refused(ridge: Path, arrays: dict[str, np.ndarray]) -> None:
    state = _replace_state(ridge, **arrays)
    with pytest.raises(ValueError, match=r"has shape .* expected") as info:
        Aligner.load(ridge)
    assert str(state) in str(info.value)


def test_extra_or_mistyped_arrays_are_refused(ridge: Path) -> None:
    original = st_load((ridge / "state.safetensors").read_bytes())
    _replace_state(ridge, transform_x=np.zeros(3))
    with pytest.raises(ValueError, match=r"unexpected learned array 'transform_x'"):
        Aligner.load(ridge)
    _write_state(ridge, {**original, "intercept_": original["intercept_"].astype(np.float32)})
    with pytest.raises(ValueError, match=r"intercept_ is float32; saved arrays are float64"):
        Aligner.load(ridge)


@pytest.mark.parametrize(
    ("key", "value", "match"),
    [
        ("n_features_x_", "12", r"n_features_x_ must be a positive integer; got '12'"),
        ("n_pairs_", True, r"n_pairs_ must be a positive integer; got True"),
        ("n_features_y_", 0, r"n_features_y_ must be a positive integer; got 0"),
        ("alpha_", "x", r"alpha_ must be a finite number; got 'x'"),
        ("alpha_", {"a": 1}, r"alpha_ must be a finite number"),
    ],
)
def test_mistyped_fitted_scalars_are_refused(ridge: Path, key: str, value: Any, match: str) -> None:
    path = _edit_config(ridge, lambda cfg: cfg["fitted"].update({key: value}))
    with pytest.raises(ValueError, match=match) as info:
        Aligner.load(ridge)
    assert str(path) in str(info.value)


def test_missing_fitted_value_is_refused(ridge: Path) -> None:
    _edit_config(ridge, lambda cfg: cfg["fitted"].pop("alpha_"))
    with pytest.raises(ValueError, match=r"missing fitted value\(s\) \['alpha_'\]"):
        Aligner.load(ridge)


def test_procrustes_scale_must_be_a_number(tmp_path: Path) -> None:
    X, Y = _data(6, 6)
    folder = Procrustes(scale=True).fit(X, Y).save(tmp_path / "p")
    _edit_config(folder, lambda cfg: cfg["fitted"].update(scale_="transform"))
    with pytest.raises(ValueError, match=r"scale_ must be a finite number"):
        Aligner.load(folder)


def test_head_weights_that_do_not_fit_the_heads_name_the_file(tmp_path: Path) -> None:
    X, Y = _data(5, 4)
    folder = HeadAligner(**FAST["head"]).fit(X, Y).save(tmp_path / "h")
    weights = st_load((folder / "state.safetensors").read_bytes())["weights_"]
    state = _replace_state(folder, weights_=weights[:-1])
    with pytest.raises(ValueError, match=r"weights_ has \d+ values; the configured heads and loss need \d+") as info:
        Aligner.load(folder)
    assert str(state) in str(info.value)


def test_built_in_aligners_declare_every_learned_shape() -> None:
    for cls in BUILT_IN:
        assert set(cls._arrays) <= set(cls._shapes), cls.__name__


@pytest.mark.parametrize("name", [e.name for e in ALIGNERS if e.views == 2 and e.paired])
def test_untampered_round_trip_for_every_registered_aligner(name: str, tmp_path: Path) -> None:
    X, Y = _data(5, 4)
    est = ALIGNERS.get(name).obj(**FAST.get(name, {})).fit(X, Y)
    back = Aligner.load(est.save(tmp_path / name))
    assert type(back) is type(est) and back.get_params() == est.get_params()
    np.testing.assert_allclose(back.transform_x(X), est.transform_x(X), rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(back.transform_y(Y), est.transform_y(Y), rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize(
    "est", [VecMap(normalize=("unit",), dim=2), VecMap(normalize=()), CCAAligner(n_components=2), ASIF(n_anchors=7)]
)
def test_round_trip_with_other_settings(est: Aligner, tmp_path: Path) -> None:
    X, Y = _data(5, 4)
    back = Aligner.load(est.fit(X, Y).save(tmp_path / "m"))
    np.testing.assert_allclose(back.transform_x(X), est.transform_x(X), rtol=1e-6, atol=1e-9)


def test_tampered_hyper_parameter_is_refused_at_load(ridge: Path) -> None:
    _edit_config(ridge, lambda cfg: cfg["params"].update(fit_intercept="maybe"))
    with pytest.raises(ValueError, match=r"config\.json: Ridge: fit_intercept must be a boolean"):
        Aligner.load(ridge)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_learned_array_is_refused_naming_the_file(ridge: Path, bad: float) -> None:
    coef = st_load((ridge / "state.safetensors").read_bytes())["coef_"].copy()
    coef.flat[[0, 5]] = bad
    _replace_state(ridge, coef_=coef)  # the hash is fixed up: only the values give it away
    with pytest.raises(ValueError, match=r"state\.safetensors: learned array coef_ holds 2 non-finite value\(s\)"):
        Aligner.load(ridge)


@pytest.mark.parametrize(
    ("key", "value"), [("alpha_", float("nan")), ("alpha_", float("inf")), ("best_epoch_", float("nan"))]
)
def test_non_finite_fitted_scalars_are_refused(tmp_path: Path, key: str, value: float) -> None:
    X, Y = _data(5, 4)
    est = HeadAligner(**FAST["head"]) if key == "best_epoch_" else Ridge()
    folder = est.fit(X, Y).save(tmp_path / "m")
    path = _edit_config(folder, lambda cfg: cfg["fitted"].update({key: value}))
    with pytest.raises(ValueError, match=rf"fitted {key} (must be a finite number|holds a non-finite number)") as info:
        Aligner.load(folder)
    assert str(path) in str(info.value)


def test_non_finite_training_history_is_refused(tmp_path: Path) -> None:
    X, Y = _data(5, 4)
    folder = HeadAligner(**FAST["head"]).fit(X, Y).save(tmp_path / "h")
    _edit_config(folder, lambda cfg: cfg["fitted"]["history_"][0].update(loss=float("inf")))
    with pytest.raises(ValueError, match=r"fitted history_ holds a non-finite number"):
        Aligner.load(folder)


@pytest.mark.parametrize("version", [999, 0, "1", "x", None, True, 1.0])
def test_unsupported_format_version_is_refused(ridge: Path, version: Any) -> None:
    path = _edit_config(ridge, lambda cfg: cfg.update(format_version=version))
    with pytest.raises(
        ValueError, match=r"format_version .* is not supported; this alignkit .* reads format_version 1 only"
    ):
        Aligner.load(ridge)
    _edit_config(ridge, lambda cfg: cfg.pop("format_version"))
    with pytest.raises(ValueError, match=r"format_version None is not supported") as info:
        Aligner.load(ridge)
    assert str(path) in str(info.value)
