"""Trainable heads (SAIL / STRUCTURE) and the shared training loop: init properties, reproducibility, exact
resume, learning a planted alignment, save/load and bad input."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.base import clone

from alignkit.align.base import Aligner
from alignkit.align.heads import LinearHead, MLPHead, ResLowRankHead, StarMLP, build_head
from alignkit.align.losses import SigLIP
from alignkit.align.trainer import HeadAligner, TrainResult, fit_heads, lr_factor


class LocalInfoNCE(torch.nn.Module):
    """Symmetric InfoNCE written here as an independent reference: ½[CE(S, I) + CE(Sᵀ, I)], S = âb̂ᵀ/τ."""

    def __init__(self, temperature: float = 0.1, learnable: bool = True) -> None:
        super().__init__()
        t = torch.tensor(math.log(1.0 / temperature))
        self.logit_scale = torch.nn.Parameter(t) if learnable else t

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        s = F.normalize(a, dim=1) @ F.normalize(b, dim=1).T * self.logit_scale.exp()
        target = torch.arange(a.shape[0])
        return 0.5 * (F.cross_entropy(s, target) + F.cross_entropy(s.T, target))


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny matrices: one thread avoids pool overhead on a shared machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def planted(n: int = 384, d_x: int = 16, d_y: int = 12, noise: float = 0.1, seed: int = 0):
    """Y = X R + noise: a planted linear alignment."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d_x)).astype(np.float32)
    R = rng.standard_normal((d_x, d_y)).astype(np.float32) / math.sqrt(d_x)
    Y = X @ R + noise * rng.standard_normal((n, d_y)).astype(np.float32)
    return X, Y


def weights(*mods: torch.nn.Module) -> list[torch.Tensor]:
    return [v.detach().clone() for m in mods for v in m.state_dict().values()]


def no_time(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "time_s"} for r in history]


# ------------------------------------------------------------------------------------------------ heads


@pytest.mark.parametrize("kind", ["linear", "mlp", "star", "reslowrank"])
def test_build_head_shapes(kind):
    torch.manual_seed(0)
    h = build_head(kind, 10, 7)
    assert h(torch.randn(5, 10)).shape == (5, 7)


def test_build_head_bad_name_and_kwargs():
    with pytest.raises(ValueError, match=r"unknown head .transformer.. Known heads: linear"):
        build_head("transformer", 4, 4)
    with pytest.raises(ValueError, match=r"head 'linear': unknown parameter.s. 'rank'; accepted: layernorm"):
        build_head("linear", 4, 4, rank=3)
    with pytest.raises(ValueError, match="d_out"):
        LinearHead(4, 0)


def test_linear_head_xavier_zero_bias():
    torch.manual_seed(0)
    h = LinearHead(64, 32, layernorm=True)
    bound = math.sqrt(6.0 / (64 + 32))
    assert h.proj.weight.abs().max() <= bound
    assert h.proj.weight.abs().max() > 0.9 * bound  # uniform on [−bound, bound], not a narrower init
    assert torch.equal(h.proj.bias, torch.zeros(32))
    x = torch.randn(3, 64)
    assert torch.allclose(h(x), F.layer_norm(x, (64,)) @ h.proj.weight.T, atol=1e-5)


def test_mlp_head_structure():
    h = MLPHead(6, 3, n_layers=3, act="relu")
    linears = [m for m in h.net if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(6, 24), (24, 24), (24, 3)]
    assert isinstance(h.net[1], torch.nn.ReLU)


def test_star_mlp_matches_dense_formula_and_clamps():
    torch.manual_seed(0)
    h = StarMLP(5, 4, expansion=8)
    assert h.f1.out_features == h.f2.out_features == 40 and h.g.in_features == 40
    with torch.no_grad():
        h.f2.weight.mul_(1e5)  # pushes f2 outside [−1e3, 1e3]
    x = torch.randn(6, 5)
    xn = F.layer_norm(x, (5,))
    a = (xn @ h.f1.weight.T + h.f1.bias).clamp(-1e3, 1e3)
    b = (xn @ h.f2.weight.T + h.f2.bias).clamp(-1e3, 1e3)
    ref = (a.clamp(0, 6) * b) @ h.g.weight.T + h.g.bias
    assert (xn @ h.f2.weight.T).abs().max() > 1e3
    assert torch.allclose(h(x), ref, rtol=1e-5, atol=1e-3)


def test_reslowrank_init_properties():
    torch.manual_seed(0)
    h = ResLowRankHead(32, 48, rank=8)
    P, W1 = h.P.weight, h.W1.weight
    assert torch.allclose(P.T @ P, torch.eye(32), atol=1e-5)  # 48×32: orthonormal columns
    assert torch.allclose(W1 @ W1.T, torch.eye(8), atol=1e-5)  # 8×32: orthonormal rows
    assert torch.equal(h.W2.weight, torch.zeros(48, 8))
    assert float(h.alpha.detach()) == pytest.approx(1 / (1 + math.exp(6)))
    x = torch.randn(4, 32)
    assert torch.allclose(h(x), x @ P.T)  # starts as the linear map P


def _branch_grads_after_one_step(alpha_logit_init: float) -> dict[str, float]:
    torch.manual_seed(0)
    h = ResLowRankHead(8, 8, rank=4, dropout=0.0, alpha_logit_init=alpha_logit_init)
    opt = torch.optim.SGD(h.parameters(), lr=0.5)
    x, target = torch.randn(16, 8), torch.randn(16, 8)
    for _ in range(2):  # one step, then the gradients that the next step would use
        opt.zero_grad()
        ((h(x) - target) ** 2).mean().backward()
        opt.step()
    return {n: float(p.grad.abs().max()) for n, p in h.named_parameters() if n != "P.weight"}


def test_reslowrank_minus_six_learns_but_minus_inf_never_does():
    g = _branch_grads_after_one_step(-6.0)
    assert all(v > 0 for v in g.values()), g  # W1, W2 and alpha_logit all receive gradient
    g_inf = _branch_grads_after_one_step(-math.inf)
    assert all(v == 0 for v in g_inf.values()), g_inf  # the METHODS pitfall: σ(−∞) = σ'(−∞) = 0


# ----------------------------------------------------------------------------------------- schedule


def test_lr_factor_warmup_then_cosine():
    assert lr_factor(0, 100, 10) == pytest.approx(0.1)
    assert lr_factor(9, 100, 10) == pytest.approx(1.0)
    assert lr_factor(10, 100, 10) == pytest.approx(1.0)
    assert lr_factor(55, 100, 10) == pytest.approx(0.5)  # halfway through the cosine
    assert lr_factor(100, 100, 10) == pytest.approx(0.0, abs=1e-12)
    assert lr_factor(0, 10, 0) == pytest.approx(1.0)


# ------------------------------------------------------------------------------------------ trainer


def _run(X, Y, epochs=3, seed=0, **kw) -> TrainResult:
    torch.manual_seed(seed)
    hx, hy = ResLowRankHead(X.shape[1], 8, rank=4, dropout=0.2), ResLowRankHead(Y.shape[1], 8, rank=4, dropout=0.2)
    loss = SigLIP() if SigLIP is not None else LocalInfoNCE()
    kw.setdefault("lr", 1e-2)
    return fit_heads(X, Y, hx, hy, loss, batch_size=64, epochs=epochs, seed=seed, progress=False, **kw)


def test_fit_is_reproducible_with_a_seed_and_leaves_global_rng_alone():
    X, Y = planted(n=200)
    a = _run(X, Y, warmup_steps=2)
    torch.manual_seed(123)
    b = _run(X, Y, warmup_steps=2)
    assert all(
        torch.equal(u, v)
        for u, v in zip(weights(a.head_x, a.head_y, a.loss), weights(b.head_x, b.head_y, b.loss), strict=True)
    )
    assert no_time(a.history) == no_time(b.history)
    c = _run(X, Y, seed=1, warmup_steps=2)
    assert not torch.equal(weights(c.head_x)[0], weights(a.head_x)[0])
    hx, hy = LinearHead(16, 4), LinearHead(12, 4)
    before = torch.get_rng_state()
    fit_heads(X, Y, hx, hy, LocalInfoNCE(), batch_size=64, epochs=1, progress=False)
    assert torch.equal(torch.get_rng_state(), before)  # fit_heads forks the RNG


def test_memory_mapped_inputs_give_the_same_fit(tmp_path):
    X, Y = planted(n=160)
    mx = np.lib.format.open_memmap(tmp_path / "x.npy", mode="w+", dtype=np.float32, shape=X.shape)
    my = np.lib.format.open_memmap(tmp_path / "y.npy", mode="w+", dtype=np.float32, shape=Y.shape)
    mx[:], my[:] = X, Y
    mx.flush(), my.flush()
    mx, my = np.load(tmp_path / "x.npy", mmap_mode="r"), np.load(tmp_path / "y.npy", mmap_mode="r")
    a, b = _run(X, Y, epochs=2), _run(mx, my, epochs=2)
    assert all(torch.equal(u, v) for u, v in zip(weights(a.head_x, a.head_y), weights(b.head_x, b.head_y), strict=True))


def test_resume_equals_uninterrupted(tmp_path):
    X, Y = planted(n=200)
    full = _run(X, Y, epochs=4, warmup_steps=3)
    part = _run(X, Y, epochs=4, warmup_steps=3, checkpoint_dir=tmp_path, stop_after=2)
    assert not part.finished and len(part.history) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.json", "checkpoint.safetensors"]
    doc = json.loads((tmp_path / "checkpoint.json").read_text())
    assert doc["epoch"] == 2 and doc["step"] == 2 * (200 // 64)
    # Fresh heads with a different init: everything must come from the checkpoint.
    torch.manual_seed(999)
    hx, hy = ResLowRankHead(16, 8, rank=4, dropout=0.2), ResLowRankHead(12, 8, rank=4, dropout=0.2)
    loss = SigLIP() if SigLIP is not None else LocalInfoNCE()
    resumed = fit_heads(
        X, Y, hx, hy, loss, batch_size=64, epochs=4, lr=1e-2, warmup_steps=3, seed=0, checkpoint_dir=tmp_path,
        progress=False,
    )  # fmt: skip
    assert resumed.finished and len(resumed.history) == 4
    for u, v in zip(
        weights(full.head_x, full.head_y, full.loss), weights(resumed.head_x, resumed.head_y, resumed.loss), strict=True
    ):
        assert torch.equal(u, v)
    assert no_time(full.history) == no_time(resumed.history)
    with pytest.raises(ValueError, match=r"different configuration.*lr"):
        _run(X, Y, epochs=4, warmup_steps=3, checkpoint_dir=tmp_path, lr=5e-3)


def test_learns_planted_alignment():
    X, Y = planted(n=640)
    Xtr, Ytr, Xv, Yv = X[:384], Y[:384], X[384:], Y[384:]
    torch.manual_seed(0)
    res = fit_heads(
        Xtr, Ytr, LinearHead(16, 16), LinearHead(12, 16), LocalInfoNCE(0.1), val=(Xv, Yv), batch_size=128,
        epochs=15, lr=2e-2, weight_decay=0.0, seed=0, progress=False,
    )  # fmt: skip
    losses = [r["loss"] for r in res.history]
    assert losses[-1] < 0.7 * losses[0]
    chance = 1 / Xv.shape[0]
    assert res.history[0]["val_r1"] is not None
    assert res.best_val_r1 > 0.5 > 50 * chance
    assert res.best_val_r1 == max(r["val_r1"] for r in res.history)
    assert {"epoch", "step", "lr", "loss", "val_r1", "time_s", "param/logit_scale"} <= set(res.history[0])


def test_early_stopping_restores_best_epoch():
    X, Y = planted(n=256)

    def anti(a, b):  # maximising InfoNCE drives retrieval down after the first epoch
        return {"loss": -LocalInfoNCE(0.1, learnable=False)(a, b), "neg": torch.tensor(1.0)}

    torch.manual_seed(0)
    hx, hy = LinearHead(16, 8), LinearHead(12, 8)
    # First learn the planted map, so that the first epoch of anti-training is the best one.
    res0 = fit_heads(X, Y, hx, hy, LocalInfoNCE(0.1), batch_size=64, epochs=10, lr=2e-2, progress=False)
    res = fit_heads(X, Y, res0.head_x, res0.head_y, anti, val=(X, Y), batch_size=64, epochs=20, lr=5e-2, patience=2,
                    progress=False)  # fmt: skip
    assert res.stopped_early and len(res.history) < 20
    assert res.best_epoch == int(np.argmax([r["val_r1"] for r in res.history])) + 1
    assert res.history[0]["loss/neg"] == 1.0
    from alignkit.metrics.retrieval import retrieval_ranks

    with torch.no_grad():
        r1 = float(
            (retrieval_ranks(res.head_x(torch.from_numpy(X)), res.head_y(torch.from_numpy(Y))) == 1).double().mean()
        )
    assert r1 == pytest.approx(res.best_val_r1)


def test_weight_decay_excludes_loss_and_vector_parameters():
    X, Y = planted(n=64)
    torch.manual_seed(0)
    loss = LocalInfoNCE(0.1)
    hx, hy = LinearHead(16, 4, layernorm=True), LinearHead(12, 4)
    start = float(loss.logit_scale.detach())
    w0 = hx.proj.weight.detach().clone()
    # lr tiny, decay huge: a decayed parameter would shrink by lr·wd per step; gradients are clipped tiny.
    fit_heads(X, Y, hx, hy, loss, batch_size=64, epochs=1, lr=1e-3, weight_decay=500.0, grad_clip=1e-12, progress=False)
    assert float(loss.logit_scale.detach()) == pytest.approx(start, abs=1e-5)
    assert torch.allclose(hx.norm.weight, torch.ones(16), atol=1e-5)
    assert torch.allclose(hx.proj.weight, 0.5 * w0, atol=1e-5)  # one step of decoupled decay: × (1 − lr·wd)


def test_bad_input_errors():
    X, Y = planted(n=32)
    hx, hy, loss = LinearHead(16, 4), LinearHead(12, 4), LocalInfoNCE()
    kw = {"epochs": 1, "progress": False}
    with pytest.raises(ValueError, match="paired by row"):
        fit_heads(X, Y[:-1], hx, hy, loss, **kw)
    Xn = X.copy()
    Xn[3, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        fit_heads(Xn, Y, hx, hy, loss, **kw)
    with pytest.raises(ValueError, match="batch_size"):
        fit_heads(X, Y, hx, hy, loss, batch_size=1, **kw)
    with pytest.raises(ValueError, match="at least 2"):
        fit_heads(X[:1], Y[:1], hx, hy, loss, **kw)
    with pytest.raises(ValueError, match="head_y expects 16 input features but Y has 12"):
        fit_heads(X, Y, hx, hx, loss, **kw)
    with pytest.raises(ValueError, match="optimizer"):
        fit_heads(X, Y, hx, hy, loss, optimizer="sgd", **kw)
    with pytest.raises(ValueError, match="X_val and Y_val"):
        fit_heads(X, Y, hx, hy, loss, val=(X[:5], Y[:4]), **kw)
    try:
        import lion_pytorch  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match="lion-pytorch"):
            fit_heads(X, Y, hx, hy, loss, optimizer="lion", **kw)


# ---------------------------------------------------------------------------------------- estimator


def test_head_aligner_fit_transform_score_save_load(tmp_path):
    X, Y = planted(n=400)
    est = HeadAligner(head="linear", d_out=16, loss="infonce", epochs=12, batch_size=128, lr=2e-2, val_fraction=0.2,
                      patience=5, weight_decay=0.0)  # fmt: skip
    assert clone(est).get_params() == est.get_params()
    est.fit(X, Y)
    assert est.n_pairs_ == 320 and len(est.history_) >= 1
    zx, zy = est.transform_x(X[:10]), est.transform_y(Y[:10])
    assert zx.shape == (10, 16) and zy.shape == (10, 16) and zx.dtype == np.float64
    assert np.allclose(np.linalg.norm(zx, axis=1), 1.0)
    assert est.score(X[320:], Y[320:]) > 0.5
    path = est.save(tmp_path / "head")
    back = HeadAligner.load(path)
    assert np.array_equal(back.transform_x(X), est.transform_x(X))
    assert np.array_equal(back.transform_y(Y), est.transform_y(Y))
    assert back.history_ == json.loads(json.dumps(est.history_))
    generic = Aligner.load(path)
    assert isinstance(generic, HeadAligner) and np.array_equal(generic.transform_y(Y), est.transform_y(Y))
    (path / "state.safetensors").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="sha256"):
        HeadAligner.load(path)


def test_head_aligner_shared_siglip_star_and_errors():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((96, 8)).astype(np.float32)
    Y = X + 0.05 * rng.standard_normal((96, 8)).astype(np.float32)
    est = HeadAligner(head="star", d_out=8, loss="siglip", shared=True, head_kwargs={"expansion": 2}, epochs=2,
                      batch_size=32).fit(X, Y)  # fmt: skip
    assert est.head_x_ is est.head_y_
    assert "param/bias" in est.history_[0]
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        HeadAligner().head_x_  # noqa: B018
    with pytest.raises(ValueError, match="shared=True"):
        HeadAligner(shared=True, epochs=1).fit(X, Y[:, :4])
    with pytest.raises(ValueError, match=r"unknown loss .triplet.\. Did you mean 'triple'\? Known losses"):
        HeadAligner(loss="triplet", epochs=1).fit(X, Y)
    with pytest.raises(ValueError, match="transform_x: X has 3 features"):
        est.transform_x(X[:, :3])


# ------------------------------------------------------------------------- one loop for n views: same 2-view runs


def _fingerprint(*mods: torch.nn.Module) -> list[float]:
    """Per state tensor: Σv, Σv² and Σ i·v_i (float64), three numbers that move with any change of the weights."""
    out: list[float] = []
    for m in mods:
        for v in m.state_dict().values():
            a = v.detach().cpu().double().flatten().numpy()
            out += [float(a.sum()), float((a * a).sum()), float((a * np.arange(1, a.size + 1)).sum())]
    return out


def test_two_view_fit_matches_the_run_recorded_before_the_n_view_loop():
    """Values recorded with the two-space loop (commit 09f4abf) before it became the n-view one: the same seed
    must give the same weights and history. Not bit for bit: BLAS kernels round differently across CPUs (the
    float32 losses moved by ~1e-8 relative between an AVX2 and an AVX-512 machine), while a changed loop (another
    batch order, step or warm-up) moves them by far more than the 1e-5 allowed here."""
    X, Y = planted(n=200)
    torch.manual_seed(0)
    hx, hy = ResLowRankHead(16, 8, rank=4, dropout=0.2), ResLowRankHead(12, 8, rank=4, dropout=0.2)
    r = fit_heads(X, Y, hx, hy, SigLIP(), batch_size=64, epochs=3, lr=1e-2, warmup_steps=2, seed=0, progress=False)
    assert _fingerprint(r.head_x, r.head_y, r.loss) == pytest.approx([
        -5.959305286407471, 35.513319496604026, -5.959305286407471, 0.10976472380571067, 8.196050314100516,
        20.074871315737255, 3.6462207129225135, 4.409158987229529, 101.4089349899441, 0.12276239297352731,
        0.05176281663214456, -1.3351398969534785, -5.959074020385742, 35.51056318043629, -5.959074020385742,
        2.918690825928934, 8.065087232174985, 49.05788435484283, -0.9439834309741855, 4.395289659188304,
        -26.69270582590252, -0.13114471035078168, 0.05560103449512942, 0.7142865215428174, 2.2804558277130127,
        5.200478782150242, 2.2804558277130127, -9.944942474365234, 98.90188081843371, -9.944942474365234,
    ], rel=1e-5, abs=1e-6)  # fmt: skip
    assert [h["loss"] for h in r.history] == pytest.approx(
        [0.14415854712327322, 0.1245015412569046, 0.11262448877096176], rel=1e-5
    )

    from alignkit.align.losses import InfoNCE, StructureRegularizer

    X, Y = planted(n=256)
    torch.manual_seed(0)
    hx, hy = LinearHead(16, 8), LinearHead(12, 8)
    r = fit_heads(X[:192], Y[:192], hx, hy, InfoNCE(), val=(X[192:], Y[192:]), batch_size=64, epochs=5, lr=1e-2,
                  seed=3, progress=False, patience=2,
                  structure=StructureRegularizer(10.0, levels=2, warmup_fraction=0.5))  # fmt: skip
    assert _fingerprint(r.head_x, r.head_y, r.loss) == pytest.approx([
        -2.3593615447171032, 10.882095762005168, -114.0952649093233, -0.02178447728510946, 0.010852230743634131,
        -0.42783202487044036, 0.9457723326049745, 11.120704064690976, -90.65001099882647, -0.05677690031006932,
        0.00846305480141941, -0.26008682046085596, 2.5888102054595947, 6.701938279891749, 2.5888102054595947,
    ], rel=1e-5, abs=1e-6)  # fmt: skip
    assert [h["loss"] for h in r.history] == pytest.approx([
        11.239960034688314, 9.592412312825521, 8.393122037251791, 7.747864405314128, 7.4990925788879395,
    ], rel=1e-5)  # fmt: skip
    assert [h["val_r1"] for h in r.history] == [0.03125, 0.03125, 0.046875, 0.046875, 0.046875]
    assert r.best_epoch == 3


def test_loss_names_and_combinations_reach_fit_heads_and_head_aligner(tmp_path):
    X, Y = planted(n=256)
    kw = dict(head="linear", d_out=8, epochs=3, batch_size=64, lr=1e-2, weight_decay=0.0)
    plain = HeadAligner(loss="infonce", **kw).fit(X, Y)
    assert np.array_equal(HeadAligner(loss={"infonce": 1.0}, **kw).fit(X, Y).weights_, plain.weights_)
    assert np.array_equal(HeadAligner(loss={"infonce": {"weight": 1}}, **kw).fit(X, Y).weights_, plain.weights_)
    # the loss given by name to fit_heads is the same module
    torch.manual_seed(0)
    from alignkit.align.losses import InfoNCE

    a = fit_heads(X, Y, LinearHead(16, 8), LinearHead(12, 8), InfoNCE(), batch_size=64, epochs=2, progress=False)
    torch.manual_seed(0)
    b = fit_heads(X, Y, LinearHead(16, 8), LinearHead(12, 8), "infonce", batch_size=64, epochs=2, progress=False)
    assert all(torch.equal(u, v) for u, v in zip(weights(a.head_x, a.loss), weights(b.head_x, b.loss), strict=True))
    # a weighted combination: history logs each term unweighted; SigLIP in a combination is clamped and sum_rows
    combo = HeadAligner(loss={"infonce": 0.5, "siglip": {"weight": 2.0, "init_logit_scale": 4.7}}, **kw).fit(X, Y)
    h = combo.history_[0]
    assert {"loss/infonce", "loss/siglip", "param/infonce.logit_scale", "param/siglip.logit_scale"} <= set(h)
    assert h["loss"] == pytest.approx(0.5 * h["loss/infonce"] + 2.0 * h["loss/siglip"], rel=1e-6)
    assert combo.loss_.modules_["siglip"].reduction == "sum_rows"
    assert max(r["param/siglip.logit_scale"] for r in combo.history_) <= math.log(100.0) + 1e-6
    back = HeadAligner.load(combo.save(tmp_path / "combo"))
    assert back.get_params()["loss"] == combo.get_params()["loss"]
    assert np.array_equal(back.transform_x(X), combo.transform_x(X))
    # a views-form and an anchor-form loss, combined
    mixed = HeadAligner(loss={"gram": {"weight": 1.0, "label_smoothing": 0.0}, "mv_dhel": 0.5}, **kw).fit(X, Y)
    assert np.isfinite(mixed.weights_).all() and "loss/gram" in mixed.history_[0]


def test_loss_specification_errors_in_head_aligner_and_make_aligner():
    from alignkit.align import make_aligner

    X, Y = planted(n=64)
    with pytest.raises(ValueError, match=r"HeadAligner: loss: unknown loss 'infonc'\. Did you mean 'infonce'"):
        HeadAligner(loss={"infonc": 1.0}).fit(X, Y)
    with pytest.raises(ValueError, match=r"HeadAligner: loss\['siglip'\]: weight must be a number >= 0"):
        HeadAligner(loss={"infonce": 1.0, "siglip": -2}).fit(X, Y)
    with pytest.raises(ValueError, match=r"cannot be used with 2 views \(a single-form loss.*infonce"):
        HeadAligner(loss={"infonce": 1.0, "uniformity": 1.0}).fit(X, Y)
    with pytest.raises(ValueError, match="STRUCTURE term is given twice"):
        HeadAligner(loss={"infonce": 1.0, "structure": 10.0}, structure=1.0).fit(X, Y)
    with pytest.raises(ValueError, match="loss_kwargs applies to a single loss name"):
        HeadAligner(loss={"infonce": 1.0}, loss_kwargs={"init_temperature": 0.1}).fit(X, Y)
    with pytest.raises(TypeError, match="HeadAligner: loss: must be a loss name or a mapping"):
        HeadAligner(loss=["infonce"]).fit(X, Y)
    with pytest.raises(ValueError, match="loss 'structure': warmup_fraction must be a number >= 0"):
        HeadAligner(loss={"infonce": 1.0, "structure": {"weight": 10, "warmup_fraction": -1}}).fit(X, Y)
    est = make_aligner("head", loss={"infonce": "1", "structure": {"weight": "10", "levels": "2"}})
    assert est._validate_params()["loss"] == {"infonce": "1", "structure": {"weight": "10", "levels": "2"}}
    with pytest.raises(ValueError, match="aligner 'head': loss: unknown loss 'nope'"):
        make_aligner("head", loss={"nope": 1.0})
