"""vec2vec: unpaired translation through a shared latent (GAN + cycle + VSP), on small planted problems."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from alignkit.align.base import ALIGNERS, Aligner
from alignkit.align.unsupervised import UnsupervisedFitWarning
from alignkit.align.vec2vec import Vec2Vec, distinct_targets, vsp_loss

#: a tiny, fast configuration for the functional checks
TINY = {
    "width": 16, "depth": 2, "transform_depth": 1, "disc_width": 16, "disc_depth": 2,
    "epochs": 2, "batch_size": 64, "n_restarts": 2, "n_queries": 200,
}  # fmt: skip


@pytest.fixture(autouse=True)
def _one_thread():
    """GAN training amplifies rounding differences; one thread makes the runs comparable across machines."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _planted(seed: int = 0, n: int = 600, d: int = 3, d_y: int | None = None, nonlin: float = 0.1):
    """Four clusters of unequal weight, size and position (no symmetry), rotated (and, if ``d_y`` > d,
    embedded semi-orthogonally) into Y, plus a mild nonlinearity; Y's rows shuffled. Returns X, Y and
    ``partner`` (X row i ↔ Y row partner[i])."""
    rng = np.random.default_rng(seed)
    centers = np.zeros((4, d))
    centers[:, :3] = [[3.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.0, 0.0, 1.0], [-1.5, -1.0, 0.5]]
    lab = rng.choice(4, size=n, p=[0.45, 0.3, 0.15, 0.1])
    Z = centers[lab] + rng.standard_normal((n, d)) * np.array([0.6, 0.3, 0.15, 0.4])[lab, None]
    Q = np.linalg.qr(rng.standard_normal((d_y or d, d_y or d)))[0][:d]
    U = Z @ Q
    Y = U + nonlin * np.tanh(U)
    perm = rng.permutation(n)
    return Z, Y[perm], np.argsort(perm)


def _mean_rank(est: Vec2Vec, X: np.ndarray, Y: np.ndarray, partner: np.ndarray) -> float:
    """Mean rank (1 = best) of each X row's true partner among all rows of Y, as a fraction of n (chance ≈ ½)."""
    S = est.transform_x(X) @ est.transform_y(Y).T
    gold = S[np.arange(len(X)), partner]
    return float(((S > gold[:, None]).sum(axis=1) + 1).mean() / len(X))


def test_registered_unpaired_and_translating():
    info = ALIGNERS.get("vec2vec")
    assert info.obj is Vec2Vec and info.paired is False and info.translates is True
    assert {"n_restarts", "seed", "epochs", "width"} <= set(info.schema.names())


def test_distinct_targets_definition():
    """The share of distinct nearest rows: every row its own target gives 1, one hub for all queries gives 1/n."""
    rng = np.random.default_rng(0)
    c = torch.tensor(rng.standard_normal((50, 8)))
    assert distinct_targets(c, c, block=7) == 1.0
    hub = c[3:4].repeat(20, 1) + 1e-6 * torch.tensor(rng.standard_normal((20, 8)))
    assert distinct_targets(hub, c) == pytest.approx(1 / 20)
    two = torch.cat([c[:5], c[:5]])  # 10 queries, 5 distinct targets
    assert distinct_targets(two, c, block=3) == pytest.approx(0.5)


def test_vsp_loss_definition():
    rng = np.random.default_rng(0)
    b = torch.tensor(rng.standard_normal((6, 4)))
    assert float(vsp_loss(b, b)) == pytest.approx(0.0, abs=1e-12)
    a = torch.tensor(rng.standard_normal((6, 4)))
    bn, an = (t / t.norm(dim=1, keepdim=True) for t in (b, a))
    dense = (bn @ bn.T - an @ an.T).abs().mean() + (bn @ bn.T - an @ bn.T).abs().mean()
    assert float(vsp_loss(b, a)) == pytest.approx(float(dense), rel=1e-12)
    assert float(vsp_loss(b, a, reflected=False)) == pytest.approx(float((bn @ bn.T - an @ an.T).abs().mean()))
    # a rotation of the output keeps the first term at 0
    q = torch.linalg.qr(torch.tensor(rng.standard_normal((4, 4))))[0]
    assert float(vsp_loss(b, b @ q, reflected=False)) == pytest.approx(0.0, abs=1e-12)


@pytest.mark.filterwarnings("ignore::alignkit.align.unsupervised.UnsupervisedFitWarning")
def test_seed_pairs_make_it_beat_chance_quickly():
    """The map's ranks are good (the assertion); whether its held-out mean CSLS also clears the verdict's bar on
    these 6-d points, where top-1 among 400 close neighbours is hard, varies (lift 0.17 here)."""
    X, Y, partner = _planted(1, n=400, d=6)
    pairs = np.stack([np.arange(40), partner[:40]], axis=1)
    kw = {**TINY, "width": 64, "disc_width": 32, "epochs": 25, "n_restarts": 1}
    est = Vec2Vec(**kw).fit(X, Y, seed_pairs=pairs)
    assert est.n_seed_pairs_ == 40 and est.n_items_x_ == 400
    assert _mean_rank(est, X, Y, partner) < 0.1  # chance ≈ 0.5
    held_out = np.arange(40, 400)
    S = est.transform_x(X[held_out]) @ est.transform_y(Y).T
    assert np.mean(S.argmax(axis=1) == partner[held_out]) > 20 / 400  # top-1 on unseen rows ≫ 1/400


def test_restarts_are_recorded_and_the_best_converged_one_is_kept():
    X, Y, _ = _planted(2, n=200)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnsupervisedFitWarning)
        est = Vec2Vec(**{**TINY, "n_restarts": 3}).fit(X, Y)
    assert [r["seed"] for r in est.restarts_] == [0, 1, 2]
    pool = [r for r in est.restarts_ if r["converged"]] or est.restarts_
    assert est.criterion_ == max(r["criterion"] for r in pool)
    assert est.restarts_[est.best_restart_]["criterion"] == est.criterion_
    for r in est.restarts_:
        assert {"gain", "chance", "reasons", "cycle_cos", "last_epoch", "epochs_run", "distinct_targets"} <= set(r)
        assert r["n_held_out"] == [20, 20]  # 10 % of each side, judged only on those rows
        assert r["epochs_run"] == 2 and r["converged"] == (not r["reasons"])


def test_not_converged_warns_with_the_criteria():
    X, Y, _ = _planted(3, n=200)
    # collapse_tol = 1 calls every discriminator that is not worse than useless collapsed
    est = Vec2Vec(**{**TINY, "collapse_tol": 1.0})
    with pytest.warns(UnsupervisedFitWarning, match="none of 2 restarts converged"):
        est.fit(X, Y)
    assert all(not r["converged"] for r in est.restarts_)
    assert all(any("collapsed" in why for why in r["reasons"]) for r in est.restarts_)


def test_deterministic_with_the_seed_and_caller_rng_untouched():
    X, Y, _ = _planted(4, n=150)
    kw = {**TINY, "n_restarts": 1}
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnsupervisedFitWarning)
        a = Vec2Vec(**kw).fit(X, Y)
        assert torch.equal(torch.rand(3), expected_next)
        b = Vec2Vec(**kw).fit(X, Y)
        c = Vec2Vec(**{**kw, "seed": 1}).fit(X, Y)
    np.testing.assert_array_equal(a.weights_, b.weights_)
    np.testing.assert_array_equal(a.translate(X), b.translate(X))
    assert a.restarts_ == b.restarts_
    assert not np.array_equal(a.weights_, c.weights_)


def test_save_load_round_trip_and_translate(tmp_path):
    X, Y, _ = _planted(5, n=150, d=3, d_y=5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnsupervisedFitWarning)
        est = Vec2Vec(**TINY).fit(X, Y)
    assert est.n_features_x_ == 3 and est.n_features_y_ == 5
    folder = est.save(tmp_path / "v2v")
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "state.safetensors"]
    back = Aligner.load(folder)
    assert type(back) is Vec2Vec and back.get_params() == est.get_params()
    assert back.restarts_ == est.restarts_ and back.criterion_ == est.criterion_
    for method in ("transform_x", "translate"):
        np.testing.assert_array_equal(getattr(back, method)(X), getattr(est, method)(X))
    np.testing.assert_array_equal(back.transform_y(Y), est.transform_y(Y))
    # translate = F(X) in Y's own coordinates: scale·(unit translation) + Y's mean
    zx = est.transform_x(X)
    assert zx.shape == (150, 5)
    np.testing.assert_allclose(np.linalg.norm(zx, axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(est.translate(X), est.scale_y_ * zx + est.mean_y_, atol=1e-6)
    assert isinstance(est.translate(torch.tensor(X)), torch.Tensor)


def test_loaded_weights_must_fit_the_translator(tmp_path):
    from safetensors.numpy import load as st_load
    from safetensors.numpy import save as st_save

    X, Y, _ = _planted(6, n=120)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnsupervisedFitWarning)
        folder = Vec2Vec(**{**TINY, "n_restarts": 1}).fit(X, Y).save(tmp_path / "m")
    arrays = dict(st_load((folder / "state.safetensors").read_bytes()))
    arrays["weights_"] = arrays["weights_"][:-1]
    blob = st_save(arrays)
    (folder / "state.safetensors").write_bytes(blob)
    import hashlib
    import json

    cfg = json.loads((folder / "config.json").read_text())
    cfg["state_sha256"] = hashlib.sha256(blob).hexdigest()
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match=r"weights_ has \d+ values; the configured translator needs \d+"):
        Aligner.load(folder)


def test_bad_input():
    X, Y, _ = _planted(7, n=100)
    bad = X.copy()
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match=r"X contains 1 NaN or Inf"):
        Vec2Vec(**TINY).fit(bad, Y)
    with pytest.raises(ValueError, match="seed_pairs column 1 must index rows of Y"):
        Vec2Vec(**TINY).fit(X, Y, seed_pairs=np.array([[0, 100]]))
    with pytest.raises(ValueError, match="Vec2Vec: norm"):
        Vec2Vec(**{**TINY, "norm": "group"}).fit(X, Y)
    with pytest.raises(ValueError, match="Vec2Vec: batch_size"):
        Vec2Vec(**{**TINY, "batch_size": 1}).fit(X, Y)
    with pytest.raises(ValueError, match="at least 2 rows of Y"):
        Vec2Vec(**TINY).fit(X, Y[:1])
    with pytest.raises(ValueError, match="constant"):
        Vec2Vec(**TINY).fit(X, np.ones_like(Y))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnsupervisedFitWarning)
        est = Vec2Vec(**{**TINY, "n_restarts": 1}).fit(X, Y[:70])  # unpaired: row counts may differ
    with pytest.raises(ValueError, match="features"):
        est.transform_x(X[:, :2])


@pytest.mark.slow
def test_unsupervised_translation_beats_chance():
    """No pairs at all: the kept restart's translations rank true partners far above chance (½; under chance the
    mean rank of 600 partners has a standard deviation of about 0.012). Restarts that beat chance on this problem
    reach 0.15-0.34 (the module docstring); which one the held-out criterion keeps varies with its 60 queries.
    They are partial maps that differ from restart to restart (their nearest targets agree on 0-39 % of the rows),
    so the agreement step confirms none of them and the fit warns; some pass their own checks."""
    X, Y, partner = _planted(0, n=600, d=3)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        est = Vec2Vec(width=256, disc_width=128, epochs=80, batch_size=128, n_restarts=3, seed=0).fit(X, Y)
    assert _mean_rank(est, X, Y, partner) < 0.36
    own_ok = [r for r in est.restarts_ if r["converged"] or r["reasons"][0].startswith("no other restart")]
    assert own_ok and all(len(r["agreement"]) == 3 for r in est.restarts_)
    warned = any(issubclass(w.category, UnsupervisedFitWarning) for w in caught)
    assert warned == (not any(r["converged"] for r in est.restarts_))
