"""HeadAligner / fit_heads with the STRUCTURE regulariser (Gröger et al., NeurIPS 2025): it trains, λ = 0 is the
plain run, the warm-up follows the global step, clone/save/load and checkpoint resume round-trip."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from sklearn.base import clone

from alignkit.align.heads import LinearHead
from alignkit.align.losses import InfoNCE, StructureRegularizer, structure_reg
from alignkit.align.trainer import HeadAligner, fit_heads


@pytest.fixture(autouse=True)
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def planted(n: int = 256, d_x: int = 16, d_y: int = 12, noise: float = 0.1, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d_x)).astype(np.float32)
    R = rng.standard_normal((d_x, d_y)).astype(np.float32) / math.sqrt(d_x)
    return X, X @ R + noise * rng.standard_normal((n, d_y)).astype(np.float32)


def _est(**kw) -> HeadAligner:
    base = dict(head="linear", d_out=8, loss="infonce", epochs=6, batch_size=64, lr=1e-2, weight_decay=0.0, seed=0)
    base.update(kw)
    return HeadAligner(**base)


def test_structure_trains_and_logs_parts():
    X, Y = planted()
    est = _est(structure=10.0, structure_kwargs={"warmup_fraction": 0.5, "levels": 2, "weighting": "inverse"})
    est.set_params(epochs=12).fit(X[:200], Y[:200])
    h = est.history_
    assert all({"loss/contrastive", "loss/structure", "loss/structure_lambda"} <= set(r) for r in h)
    steps = 12 * (200 // 64)
    warm = round(0.5 * steps)
    # λ_t = 10·min(1, t/warmup), averaged over each epoch's 3 steps
    for r in h:
        ts = range(r["step"] - 3, r["step"])
        assert r["loss/structure_lambda"] == pytest.approx(np.mean([10 * min(1, t / warm) for t in ts]))
    # total = contrastive + λ_t·R_S per step, so the epoch means differ once λ > 0
    assert h[-1]["loss"] > h[-1]["loss/contrastive"]
    assert h[-1]["loss/contrastive"] < 0.5 * h[0]["loss/contrastive"]
    assert est.score(X[200:], Y[200:]) > 0.15  # top-1 among 56 held-out pairs; chance is 0.018
    assert np.isfinite(est.weights_).all()


def test_structure_lambda_zero_equals_plain_run():
    X, Y = planted()
    plain = _est().fit(X, Y)
    zero = _est(structure=0.0, structure_kwargs={"levels": 2}).fit(X, Y)
    assert np.array_equal(plain.weights_, zero.weights_)
    strip = [{k: v for k, v in r.items() if k in ("loss", "epoch", "step", "lr")} for r in zero.history_]
    assert strip == [{k: r[k] for k in ("loss", "epoch", "step", "lr")} for r in plain.history_]
    assert all(r["loss/structure"] > 0 and r["loss/structure_lambda"] == 0 for r in zero.history_)
    on = _est(structure=10.0, structure_kwargs={"warmup_steps": 0}).fit(X, Y)
    assert not np.array_equal(plain.weights_, on.weights_)


def test_structure_regularizer_matches_manual_sum():
    torch.manual_seed(0)
    x, y = torch.randn(20, 6), torch.randn(20, 5)
    zx, zy = torch.randn(20, 4), torch.randn(20, 4)
    reg = StructureRegularizer(3.0, levels=2, tau=0.2, divergence="js", warmup_steps=10)
    kw = {"levels": 2, "tau": 0.2, "divergence": "js"}
    want = 0.5 * (structure_reg(x, zx, **kw) + structure_reg(y, zy, **kw))
    assert torch.allclose(reg(x, zx, y, zy), want)
    assert reg.weight(0) == 0.0 and reg.weight(5) == pytest.approx(1.5) and reg.weight(50) == 3.0
    assert StructureRegularizer(1.0, warmup_fraction=0.25).resolve(40).warmup == 10


def test_structure_clone_save_load_round_trip(tmp_path):
    X, Y = planted()
    est = _est(structure=5.0, structure_kwargs={"levels": 2, "margin": 0.01, "divergence": "js", "warmup_steps": 4})
    params = est.get_params()
    assert params["structure"] == 5.0 and params["structure_kwargs"]["levels"] == 2
    twin = clone(est)
    assert twin.get_params() == params
    est.fit(X, Y)
    assert np.array_equal(twin.fit(X, Y).weights_, est.weights_)  # same seed, same run
    back = HeadAligner.load(est.save(tmp_path / "s"))
    assert back.get_params() == params
    assert np.array_equal(back.transform_x(X), est.transform_x(X))
    assert np.array_equal(back.transform_y(Y), est.transform_y(Y))
    assert back.history_ == json.loads(json.dumps(est.history_))


def test_structure_resume_equals_uninterrupted(tmp_path):
    X, Y = planted(n=192)
    reg = dict(lam=10.0, levels=2, warmup_fraction=0.5)

    def run(**kw):
        torch.manual_seed(0)
        hx, hy = LinearHead(16, 8), LinearHead(12, 8)
        return fit_heads(X, Y, hx, hy, InfoNCE(), batch_size=64, epochs=4, lr=1e-2, seed=0, progress=False,
                         structure=StructureRegularizer(**reg), **kw)  # fmt: skip

    full = run()
    part = run(checkpoint_dir=tmp_path, stop_after=2)
    assert not part.finished
    doc = json.loads((tmp_path / "checkpoint.json").read_text())
    assert doc["config"]["structure"]["warmup"] == 6 and doc["config"]["structure"]["levels"] == 2
    resumed = run(checkpoint_dir=tmp_path)
    for u, v in zip(full.head_x.state_dict().values(), resumed.head_x.state_dict().values(), strict=True):
        assert torch.equal(u, v)
    strip = [{k: v for k, v in r.items() if k != "time_s"} for r in full.history]
    assert strip == [{k: v for k, v in r.items() if k != "time_s"} for r in resumed.history]
    reg["lam"] = 1.0
    with pytest.raises(ValueError, match=r"different configuration.*structure"):
        run(checkpoint_dir=tmp_path)


def test_structure_bad_arguments():
    X, Y = planted(n=64)
    with pytest.raises(ValueError, match="structure_kwargs has unknown key"):
        _est(structure=1.0, structure_kwargs={"lambda": 3}).fit(X, Y)
    with pytest.raises(ValueError, match="structure_kwargs is set but structure"):
        _est(structure_kwargs={"levels": 2}).fit(X, Y)
    with pytest.raises(ValueError, match=r"structure must be a number >= 0"):
        _est(structure=-1.0).fit(X, Y)
    with pytest.raises(ValueError, match="levels"):
        _est(structure=1.0, structure_kwargs={"levels": 0}).fit(X, Y)
    with pytest.raises(ValueError, match="warmup_fraction"):
        _est(structure=1.0, structure_kwargs={"warmup_fraction": 2.0}).fit(X, Y)
    with pytest.raises(ValueError, match="divergence"):
        _est(structure=1.0, structure_kwargs={"divergence": "kl"}).fit(X, Y)
    with pytest.raises(TypeError, match="StructureRegularizer"):
        fit_heads(X, Y[:, :12], LinearHead(16, 4), LinearHead(12, 4), InfoNCE(), structure=10.0, progress=False)


def test_structure_in_a_combination_is_the_structure_shorthand():
    """``loss={"infonce": 1, "structure": {"weight": λ, ...}}`` and ``structure=λ, structure_kwargs=...`` are one term:
    the same run, bit for bit, and the same STRUCTURE history."""
    X, Y = planted()
    kw = {"levels": 2, "warmup_fraction": 0.5, "divergence": "js"}
    short = _est(structure=10.0, structure_kwargs=kw).fit(X, Y)
    combo = _est(loss={"infonce": 1.0, "structure": {"weight": 10.0, **kw}}).fit(X, Y)
    assert np.array_equal(short.weights_, combo.weights_)
    assert short.history_[-1]["loss/structure"] == combo.history_[-1]["loss/structure"]
    assert combo.history_[-1]["loss/structure_lambda"] == pytest.approx(10.0 * min(1.0, 14 / 12))  # 6 epochs x 4
    simple = _est(loss={"infonce": 1.0, "structure": 0.0}).fit(X, Y)
    assert np.array_equal(simple.weights_, _est().fit(X, Y).weights_)  # λ = 0 trains like no term
