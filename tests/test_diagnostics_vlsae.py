"""VL-SAE (docs/methods.md §3.10): exactly k active units even with ties, the activation formula, training
(loss decreases, seeded, resumable), save/load, the concept-overlap diagnostic and bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from sklearn.base import clone

from alignkit.diagnostics import describe, diagnose, diagnostic_ci, diagnostic_null
from alignkit.diagnostics.vlsae import (
    VLSAE,
    VLSAEOverlap,
    concept_overlap,
    dead_units,
    default_topk,
    reconstruction_r2,
    vlsae_concept_overlap,
)

FAST = {"hidden_ratio": 4, "topk": 4, "batch_size": 64, "lr": 3e-2}


def clusters(n: int = 300, d: int = 8, c: int = 6, noise: float = 0.05, seed: int = 0) -> tuple[np.ndarray, ...]:
    """Paired rows sharing a latent concept: X and Y are noisy views of one of c prototypes."""
    rng = np.random.default_rng(seed)
    P = 2 * rng.standard_normal((c, d))
    lab = rng.integers(0, c, n)
    return P[lab] + noise * rng.standard_normal((n, d)), P[lab] + noise * rng.standard_normal((n, d))


def fit(X, Y, stop_after=None, **kw) -> VLSAE:
    return VLSAE(**{**FAST, "epochs": 4, **kw}).fit(X, Y, stop_after=stop_after)


def learned(m: VLSAE) -> list[np.ndarray]:
    return [getattr(m, a) for a in VLSAE._arrays]


def no_time(history):
    return [{k: v for k, v in r.items() if k != "time_s"} for r in history]


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


# ------------------------------------------------------------------------------------------ the model


def kthvalue_rule(a: np.ndarray, k: int) -> np.ndarray:
    """The reference's TopK: keep entries strictly above the (h−k)-th smallest value (count per row)."""
    t = torch.from_numpy(a)
    thres = torch.kthvalue(t, k=t.shape[1] - k, dim=1).values
    return (t > thres[:, None]).sum(1).numpy()


def test_exactly_k_active_units_even_with_ties():
    X, Y = clusters(n=120)
    m = fit(X, Y, epochs=1)
    h, k = m.n_units_, m.topk_
    m.encoder_ = m.encoder_.copy()
    m.encoder_[:6] = m.encoder_[0]  # six identical units, more than k: their activations tie exactly
    rng = np.random.default_rng(1)
    tied = m.encoder_[0] * rng.uniform(0.5, 3.0, (5, 1))  # rows pointing at those units: a_j = 2 for all six
    Z = np.vstack([tied, X[:20]])
    a = m.activations(Z)
    assert (a[:5, :6] == a[:5, :1]).all() and np.allclose(a[:5, :6], 2.0)
    assert (kthvalue_rule(a[:5], k) < k).all()  # the pitfall: the threshold rule keeps none of the tied units
    idx, val = m.encode(Z)
    assert idx.shape == val.shape == (25, k)
    assert (np.sort(idx[:5], axis=1) == np.arange(k)).all()  # ties go to the lower unit index
    codes = m.codes(Z)
    assert codes.shape == (25, h)
    assert ((codes != 0).sum(1) == k).all()
    assert np.array_equal(np.take_along_axis(codes, idx, 1), val)
    assert np.array_equal(m.active_sets(Z), np.sort(idx, axis=1))
    assert np.array_equal(m.transform_x(Z), codes) and np.array_equal(m.transform_y(Z), codes)
    # a row with all activations equal (the zero row: a_j = 1 for every unit) still gets k units
    zero_idx, zero_val = m.encode(np.zeros((1, X.shape[1])))
    assert zero_idx.tolist() == [list(range(k))] and np.allclose(zero_val, 1.0)


def test_activation_formula_against_a_dense_reference():
    X, Y = clusters(n=100)
    m = fit(X, Y, epochs=1)
    Z = np.random.default_rng(3).standard_normal((30, X.shape[1]))
    xh = Z / np.linalg.norm(Z, axis=1, keepdims=True)
    eh = m.encoder_ / np.linalg.norm(m.encoder_, axis=1, keepdims=True)
    ref = 2.0 - np.linalg.norm(xh[:, None, :] - eh[None, :, :], axis=2)
    a = m.activations(Z)
    assert a.shape == (30, m.n_units_)
    np.testing.assert_allclose(a, ref, atol=1e-12)
    assert (a >= 0).all() and (a <= 2).all()
    # the codes keep the k largest activations; reconstruct = W z + b
    idx, val = m.encode(Z)
    np.testing.assert_array_equal(val, np.take_along_axis(a, idx, 1))
    assert (np.sort(a, axis=1)[:, -m.topk_ :][:, ::-1] == val).all()
    np.testing.assert_allclose(m.reconstruct(Z, "y"), m.codes(Z) @ m.decoder_y_.T + m.bias_y_, atol=1e-12)
    np.testing.assert_array_equal(m.translate(Z), m.reconstruct(Z, "y"))
    t = torch.from_numpy(Z)
    assert isinstance(m.codes(t), torch.Tensor) and torch.equal(m.codes(t), torch.from_numpy(m.codes(Z)))


def test_default_topk_is_the_released_ratio():
    assert default_topk(8 * 512) == 256  # released weights: topk 256, ratio 8, ViT-B/32 (d = 512)
    assert default_topk(16) == 1 and default_topk(2) == 1
    X, Y = clusters(n=100)
    m = VLSAE(hidden_ratio=4, epochs=1).fit(X, Y)
    assert (m.n_units_, m.topk_) == (32, 2)


# -------------------------------------------------------------------------------------------- training


def test_loss_decreases_and_the_best_epoch_is_kept():
    X, Y = clusters()
    m = fit(X, Y, epochs=8)
    losses = [r["loss"] for r in m.history_]
    assert losses[-1] < 0.5 * losses[0]
    vals = [r["val_loss"] for r in m.history_]
    assert m.best_epoch_ == 1 + int(np.argmin(vals))
    assert m.finished_ and [r["epoch"] for r in m.history_] == list(range(1, 9))
    # warm-up (2 epochs of steps) then cosine decay: the lr peaks at the end of warm-up and ends near 0
    lrs = [r["lr"] for r in m.history_]
    assert lrs[1] == pytest.approx(FAST["lr"]) and lrs[-1] < 0.05 * FAST["lr"]


def test_early_stopping_with_patience():
    X, Y = clusters(n=200)
    m = fit(X, Y, epochs=30, lr=1.0, patience=1)  # a diverging lr: the validation loss stops improving
    assert len(m.history_) < 30 and m.finished_


def test_deterministic_given_seed_and_global_rng_untouched():
    X, Y = clusters()
    torch.manual_seed(5)
    before = torch.get_rng_state()
    a = fit(X, Y)
    assert torch.equal(torch.get_rng_state(), before)
    torch.manual_seed(123)
    b = fit(X, Y)
    assert all(np.array_equal(u, v) for u, v in zip(learned(a), learned(b), strict=True))
    assert no_time(a.history_) == no_time(b.history_)
    c = fit(X, Y, seed=1)
    assert not np.array_equal(a.encoder_, c.encoder_)


def test_save_load_round_trip(tmp_path):
    X, Y = clusters()
    m = fit(X, Y)
    m.save(tmp_path / "sae")
    assert sorted(p.name for p in (tmp_path / "sae").iterdir()) == ["config.json", "state.safetensors"]
    r = VLSAE.load(tmp_path / "sae")
    assert isinstance(r, VLSAE) and r.get_params() == m.get_params()
    assert clone(m).get_params() == m.get_params() and not hasattr(clone(m), "encoder_")
    assert all(np.array_equal(u, v) for u, v in zip(learned(m), learned(r), strict=True))
    for method in ("codes", "activations", "active_sets", "translate"):
        assert np.array_equal(getattr(m, method)(X), getattr(r, method)(X))
    assert np.array_equal(m.reconstruct(Y, "y"), r.reconstruct(Y, "y"))
    assert r.history_ == m.history_ and r.best_epoch_ == m.best_epoch_ and r.score(X, Y) == m.score(X, Y)
    # the arrays must fit the hyper-parameters (h = hidden_ratio·d)
    cfg = json.loads((tmp_path / "sae" / "config.json").read_text())
    cfg["params"]["hidden_ratio"] = 2
    (tmp_path / "sae" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="hidden_ratio"):
        VLSAE.load(tmp_path / "sae")


def test_resume_equals_uninterrupted(tmp_path):
    X, Y = clusters()
    full = fit(X, Y, epochs=5)
    part = fit(X, Y, epochs=5, checkpoint_dir=str(tmp_path), stop_after=2)
    assert not part.finished_ and len(part.history_) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.json", "checkpoint.safetensors"]
    doc = json.loads((tmp_path / "checkpoint.json").read_text())
    assert doc["epoch"] == 2 and doc["config"]["method"] == "vlsae"
    resumed = fit(X, Y, epochs=5, checkpoint_dir=str(tmp_path))
    assert resumed.finished_ and len(resumed.history_) == 5
    assert all(np.array_equal(u, v) for u, v in zip(learned(full), learned(resumed), strict=True))
    assert no_time(full.history_) == no_time(resumed.history_)
    again = fit(X, Y, epochs=5, checkpoint_dir=str(tmp_path))  # a finished checkpoint: nothing left to train
    assert np.array_equal(again.encoder_, full.encoder_)
    with pytest.raises(ValueError, match=r"different configuration.*lr"):
        fit(X, Y, epochs=5, checkpoint_dir=str(tmp_path), lr=1e-3)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_training_is_deterministic_and_matches_shapes():
    X, Y = clusters()
    a, b = fit(X, Y, device="cuda"), fit(X, Y, device="cuda")
    assert all(np.array_equal(u, v) for u, v in zip(learned(a), learned(b), strict=True))
    t = torch.as_tensor(X, device="cuda")
    assert a.codes(t).device.type == "cuda"
    torch.testing.assert_close(a.codes(t).cpu(), torch.from_numpy(a.codes(X)), rtol=0, atol=1e-10)
    assert a.history_[-1]["loss"] < a.history_[0]["loss"]


# ----------------------------------------------------------------------------------------- diagnostics


def test_true_pairs_share_more_concepts_than_shuffled_pairs():
    X, Y = clusters()
    m = fit(X, Y, epochs=6)
    ov = concept_overlap(m, X, Y, n_shuffles=50, seed=0)
    assert 0 <= ov.shuffled_jaccard < ov.jaccard <= 1
    assert ov.jaccard > 0.7 and ov.p_value == pytest.approx(1 / 51)
    assert ov.per_pair.shape == (300,) and ov.per_pair.mean() == pytest.approx(ov.jaccard)
    assert 0 < ov.chance_jaccard < ov.shuffled_jaccard  # clusters use a few popular units
    # per pair: |S ∩ T| / |S ∪ T| from the active sets
    S, T = m.active_sets(X), m.active_sets(Y)
    ref = [len(set(s) & set(t)) / len(set(s) | set(t)) for s, t in zip(S, T, strict=True)]
    np.testing.assert_allclose(ov.per_pair, ref)
    assert concept_overlap(m, X, Y, n_shuffles=50, seed=0) == ov  # seeded
    row = ov.as_dict()
    assert row["value"] == ov.jaccard and "per_pair" not in row
    # unrelated pairs (Y drawn independently of X) share no more than shuffled pairs
    _, Y2 = clusters(seed=7)
    m2 = fit(X, Y2, epochs=6)
    ov2 = concept_overlap(m2, X, Y2, n_shuffles=50)
    assert ov2.jaccard < ov.jaccard and ov2.p_value > 0.01


def test_the_registered_diagnostic():
    X, Y = clusters()
    kw = {"hidden_ratio": 4, "topk": 4, "epochs": 6, "batch_size": 64, "lr": 3e-2, "n_shuffles": 20}
    res = diagnose("vlsae_concept_overlap", X, Y, **kw)
    assert isinstance(res, VLSAEOverlap)
    assert res.value == res.jaccard > res.shuffled_jaccard
    assert res.r2_x > 0.8 and res.r2_y > 0.8 and 0 <= res.dead_fraction <= 1
    assert (res.k, res.n_units, res.epochs_run) == (4, 32, 6)
    row = res.as_dict()
    assert "_model" not in row and set(row) >= {"value", "shuffled_jaccard", "dead_fraction", "r2_x", "r2_y"}
    assert isinstance(res.model, VLSAE)
    direct = vlsae_concept_overlap(X, Y, **kw)
    assert direct == res and np.array_equal(direct.model.encoder_, res.model.encoder_)
    assert (
        diagnose("vlsae_concept_overlap?hidden_ratio=4&topk=4&epochs=6&batch_size=64&lr=0.03&n_shuffles=20", X, Y)
        == res
    )
    info = describe("vlsae_concept_overlap")
    assert info["family"] == "concepts" and info["inputs"] == ["X", "Y"]
    assert info["higher_is_better"] is True and info["null"] is None and info["resample"] is False
    assert info["range"] == [0.0, 1.0]
    with pytest.raises(ValueError, match="subsampling interval does not apply"):
        diagnostic_ci("vlsae_concept_overlap", X, Y, **kw)
    with pytest.raises(ValueError, match="no permutation null"):
        diagnostic_null("vlsae_concept_overlap", X, Y, **kw)


def test_reconstruction_r2_and_dead_units():
    X, Y = clusters()
    m = fit(X, Y, epochs=10)
    r2 = reconstruction_r2(m, X, Y)
    assert 0.9 < r2.r2_x <= 1 and 0.9 < r2.r2_y <= 1 and r2.value == pytest.approx((r2.r2_x + r2.r2_y) / 2)
    # R² = 1 − SSE/SST with column-mean SST, as sklearn's pooled (variance-weighted) R²
    rec = m.reconstruct(X, "x")
    assert r2.r2_x == pytest.approx(1 - ((rec - X) ** 2).sum() / ((X - X.mean(0)) ** 2).sum())
    # a barely trained model on other data: R² ≤ 1 and may be negative
    bad = reconstruction_r2(fit(X, Y, epochs=1, lr=1e-5), X + 5.0, Y)
    assert bad.r2_x < 0 and bad.r2_y <= 1
    # a unit pointing away from every row (rows in the positive orthant, the unit in the negative one) is dead
    m.encoder_ = m.encoder_.copy()
    m.encoder_[-1] = -1.0
    Xp, Yp = np.abs(X) + 0.5, np.abs(Y) + 0.5
    du = dead_units(m, Xp, Yp)
    counts = np.bincount(np.concatenate([m.active_sets(Xp).ravel(), m.active_sets(Yp).ravel()]), minlength=32)
    np.testing.assert_array_equal(du.counts, counts)
    assert du.counts[-1] == 0 and du.n_dead == int((counts == 0).sum()) and du.dead_fraction == du.n_dead / 32
    assert du.value == du.dead_fraction and 0 <= du.dead_fraction_x <= 1 and 0 <= du.dead_fraction_y <= 1
    assert np.isnan(dead_units(m, Xp).dead_fraction_y)


# ------------------------------------------------------------------------------------------- bad input


def test_bad_input_directly_and_through_diagnose():
    X, Y = clusters(n=60)
    kw = {"hidden_ratio": 4, "topk": 4, "epochs": 1}
    Xn = X.copy()
    Xn[3, 2] = np.nan
    wide = np.random.default_rng(0).standard_normal((60, 5))
    for call in (
        lambda *a, **k: diagnose("vlsae_concept_overlap", *a, **k),
        vlsae_concept_overlap,
        lambda *a, **k: VLSAE(**k).fit(*a),
    ):
        with pytest.raises(ValueError, match="row"):
            call(X, Y[:50], **kw)
        with pytest.raises(ValueError, match="same dimension"):
            call(X, wide, **kw)
        with pytest.raises(ValueError, match="NaN"):
            call(Xn, Y, **kw)
        with pytest.raises(ValueError, match="topk must be between 1 and h − 1 = 31"):
            call(X, Y, **{**kw, "topk": 33})
        with pytest.raises(ValueError, match="topk"):
            call(X, Y, **{**kw, "topk": 32})  # k = h: no sparsity
        with pytest.raises(ValueError, match="topk"):
            call(X, Y, **{**kw, "topk": 0})
    with pytest.raises(ValueError, match="hidden_ratio"):
        VLSAE(hidden_ratio=0).fit(X, Y)
    with pytest.raises(ValueError, match="val_fraction"):
        diagnose("vlsae_concept_overlap", X, Y, val_fraction=1.0)
    with pytest.raises(TypeError, match="takes 2 array"):
        diagnose("vlsae_concept_overlap", X)
    m = fit(X, Y, epochs=1)
    with pytest.raises(ValueError, match="modality"):
        m.reconstruct(X, "z")
    with pytest.raises(ValueError, match="Y has 5 features"):
        reconstruction_r2(m, X, wide)
    with pytest.raises(ValueError, match="row-paired"):
        concept_overlap(m, X, Y[:50])
    with pytest.raises(ValueError, match="n_shuffles"):
        concept_overlap(m, X, Y, n_shuffles=0)
    with pytest.raises(TypeError, match="fitted VLSAE"):
        dead_units("not a model", X)  # type: ignore[arg-type]
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        VLSAE().encode(X)
