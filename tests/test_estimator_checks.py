"""One estimator check suite, run over every registered aligner (the trained head included).

A new registration is covered automatically: scikit-learn conventions (get/set_params, clone, fit returns
self, trailing-underscore state), validation of hyper-parameters against the declared schema and of inputs,
determinism, inputs left untouched, and a save/load round trip.
"""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

from alignkit.align import ALIGNERS, Aligner

#: Settings that keep each check fast; every other hyper-parameter stays at its default.
FAST = {"head": {"head": "linear", "d_out": 4, "epochs": 2, "batch_size": 16, "progress": False}}


def _make(name: str) -> Aligner:
    return ALIGNERS.get(name).obj(**FAST.get(name, {}))


def _data(seed: int = 0, n: int = 60) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 5))
    return X, X @ rng.standard_normal((5, 4)) + 0.1 * rng.standard_normal((n, 4))


NAMES = [e.name for e in ALIGNERS if e.views == 2 and e.paired]  # n-way, unpaired: their own tests


@pytest.mark.parametrize("name", NAMES)
def test_params_round_trip_and_clone(name):
    est = _make(name)
    params = est.get_params()
    assert set(params) == set(ALIGNERS.get(name).schema.names())
    again = clone(est)
    assert again.get_params() == params and again is not est
    assert est.set_params(**params) is est


@pytest.mark.parametrize("name", NAMES)
def test_fit_returns_self_and_state_is_trailing_underscore(name):
    X, Y = _data()
    est = _make(name)
    before = set(vars(est))
    with pytest.raises(NotFittedError):
        est.transform_x(X)
    assert est.fit(X, Y) is est
    learned = set(vars(est)) - before
    assert learned and all(k.endswith("_") or k.startswith("_") for k in learned), learned
    assert est.n_features_x_ == 5 and est.n_features_y_ == 4 and est.n_pairs_ == 60
    zx, zy = est.transform_x(X), est.transform_y(Y)
    assert zx.shape[0] == 60 and zy.shape[0] == 60 and zx.shape[1] == zy.shape[1]
    assert np.isfinite(zx).all() and np.isfinite(zy).all()
    assert 0.0 <= est.score(X, Y) <= 1.0


@pytest.mark.parametrize("name", NAMES)
def test_inputs_untouched_and_deterministic(name):
    X, Y = _data()
    X0, Y0 = X.copy(), Y.copy()
    a = _make(name).fit(X, Y).transform_x(X)
    b = _make(name).fit(X, Y).transform_x(X)
    np.testing.assert_array_equal(X, X0)
    np.testing.assert_array_equal(Y, Y0)
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("name", NAMES)
def test_save_load_round_trip(name, tmp_path):
    X, Y = _data()
    est = _make(name).fit(X, Y)
    loaded = Aligner.load(est.save(tmp_path / name))
    assert type(loaded) is type(est) and loaded.get_params() == est.get_params()
    np.testing.assert_allclose(loaded.transform_x(X), est.transform_x(X), rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(loaded.transform_y(Y), est.transform_y(Y), rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("name", NAMES)
def test_declared_constraints_are_checked_in_fit(name):
    """Every boolean, numeric and choice parameter rejects a value of the wrong kind, naming the class."""
    X, Y = _data()
    schema = ALIGNERS.get(name).schema
    cls_name = ALIGNERS.get(name).obj.__name__
    checked = 0
    for p in schema:
        bad = {"bool": "maybe", "int": "many", "float": "lots"}.get(p.kinds[0]) if p.kinds != ("any",) else None
        if p.choices is not None:
            bad = "__not_a_choice__"
        if bad is None:
            continue
        est = _make(name).set_params(**{p.name: bad})
        with pytest.raises((ValueError, TypeError), match=f"{cls_name}: {p.name}"):
            est.fit(X, Y)
        checked += 1
    assert checked or not schema.params


@pytest.mark.parametrize("name", NAMES)
def test_bad_inputs(name):
    X, Y = _data()
    bad = X.copy()
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match="NaN or Inf"):
        _make(name).fit(bad, Y)
    with pytest.raises(ValueError, match="paired by row"):
        _make(name).fit(X, Y[:-1])
    est = _make(name).fit(X, Y)
    with pytest.raises(ValueError, match="features"):
        est.transform_x(X[:, :3])
