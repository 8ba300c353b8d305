"""n ≥ 2 views: the generalised training loop (pairwise sums, stacks, anchors, missing views, resume), the
MultiHeadAligner estimator (planted 3-view retrieval, save/load, tampering, sklearn conventions, bad input) and
HeadAligner's fixed-target mode."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.base import clone

from alignkit.align.heads import LinearHead
from alignkit.align.loss_registry import build_loss, build_loss_plan
from alignkit.align.losses import InfoNCE, StructureRegularizer, info_nce, structure_reg
from alignkit.align.multiview import MultiHeadAligner
from alignkit.align.trainer import HeadAligner, fit_heads


@pytest.fixture(autouse=True)
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def planted(n: int = 360, dims=(16, 12, 20), k: int = 8, noise: float = 0.3, seed: int = 0) -> list[np.ndarray]:
    """n items seen through len(dims) linear views of one k-dim latent, plus noise."""
    rng = np.random.default_rng(seed)
    s = rng.standard_normal((n, k))
    return [
        (s @ rng.standard_normal((k, d)) / math.sqrt(k) + noise * rng.standard_normal((n, d))).astype(np.float32)
        for d in dims
    ]


def weights(*mods: torch.nn.Module) -> list[torch.Tensor]:
    return [v.detach().clone() for m in mods for v in m.state_dict().values()]


def no_time(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "time_s"} for r in history]


def _est(**kw) -> MultiHeadAligner:
    base = dict(head="linear", d_out=16, epochs=12, batch_size=100, lr=1e-2, weight_decay=0.0, seed=0)
    return MultiHeadAligner(**{**base, **kw})


# ------------------------------------------------------------------------------------------ losses on n views


def test_pair_loss_on_three_views_is_the_sum_of_info_nce_over_pairs():
    g = torch.Generator().manual_seed(0)
    zs = [torch.randn(10, 4, generator=g, dtype=torch.float64) for _ in range(3)]
    loss = build_loss("pairwise_infonce", 3, init_temperature=0.1, learnable=False).double()
    tau = float(loss.inner.temperature)  # 0.1 up to the float32 rounding of its stored log-scale
    want = sum(info_nce(zs[a], zs[b], tau) for a, b in [(0, 1), (0, 2), (1, 2)])
    assert loss(*zs).item() == pytest.approx(want.item(), rel=1e-12)
    # missing views: each pair only on the rows where both are present
    mask = torch.ones(10, 3, dtype=torch.bool)
    mask[:4, 2] = False
    mask[7:, 0] = False
    masked = build_loss("infonce", 3, missing=True, init_temperature=0.1, learnable=False).double()
    by_hand = 0.0
    for a, b in [(0, 1), (0, 2), (1, 2)]:
        rows = mask[:, a] & mask[:, b]
        by_hand += info_nce(zs[a][rows], zs[b][rows], tau).item()
    assert masked(*zs, mask=mask).item() == pytest.approx(by_hand, rel=1e-12)


def test_views_and_anchor_forms_get_the_stack_and_the_anchor():
    from alignkit.align.losses import gram_volume_loss, mv_dhel

    g = torch.Generator().manual_seed(1)
    zs = [torch.randn(8, 5, generator=g, dtype=torch.float64) for _ in range(3)]
    assert build_loss("mv_dhel", 3)(*zs).item() == pytest.approx(mv_dhel(torch.stack(zs, 1)).item(), rel=1e-12)
    gram = build_loss("gram", 3, anchor=2, learnable=False).double()
    want = gram_volume_loss(zs[2], [zs[0], zs[1]], temperature=float(gram.inner.log_temperature.exp()))
    assert gram(*zs).item() == pytest.approx(want.item(), rel=1e-12)
    with pytest.raises(ValueError, match="anchor must be a view index < 3"):
        build_loss("gram", 3, anchor=3)


def test_combination_plan_weights_terms_and_builds_structure():
    plan = build_loss_plan({"pairwise_infonce": {"weight": 2.0, "init_temperature": 0.1}, "mv_dhel": 0.5,
                            "structure": {"weight": 3.0, "levels": 2}}, 3)  # fmt: skip
    g = torch.Generator().manual_seed(2)
    zs = [torch.randn(6, 4, generator=g) for _ in range(3)]
    total, parts = plan.loss(*zs)
    pw = sum(info_nce(zs[a], zs[b], 0.1) for a, b in itertools.combinations(range(3), 2))
    from alignkit.align.losses import mv_dhel

    assert total.item() == pytest.approx(2.0 * pw.item() + 0.5 * mv_dhel(torch.stack(zs, 1)).item(), rel=1e-5)
    assert parts["pairwise_infonce"] == pytest.approx(pw.item(), rel=1e-5)
    assert isinstance(plan.structure, StructureRegularizer) and plan.structure.lam == 3.0 and plan.structure.levels == 2
    xs = [torch.randn(6, d, generator=g) for d in (5, 7, 3)]
    want = sum(structure_reg(x, z, levels=2) for x, z in zip(xs, zs, strict=True)) / 3
    assert plan.structure.views(xs, zs).item() == pytest.approx(want.item(), rel=1e-5)


def test_loss_spec_errors_name_the_problem():
    with pytest.raises(ValueError, match=r"unknown loss 'infonc'\. Did you mean 'infonce'"):
        build_loss_plan({"infonc": 1.0}, 3)
    with pytest.raises(ValueError, match=r"loss\['infonce'\]: weight must be a number >= 0"):
        build_loss_plan({"infonce": -1.0}, 3)
    with pytest.raises(TypeError, match=r"loss\['infonce'\]: weight must be a number"):
        build_loss_plan({"infonce": {"weight": [1]}}, 3)
    with pytest.raises(ValueError, match=r"loss 'uniformity' cannot be used with 3 views \(a single-form loss"):
        build_loss_plan({"uniformity": 1.0}, 3)
    with pytest.raises(ValueError, match="regulariser on the frozen inputs"):
        build_loss("structure", 2)
    with pytest.raises(ValueError, match="needs a loss next to 'structure'"):
        build_loss_plan({"structure": 10.0}, 2)
    with pytest.raises(ValueError, match=r"loss 'mv_infonce' \(views form\) cannot take missing views.*infonce"):
        build_loss_plan("mv_infonce", 3, missing=True)
    with pytest.raises(ValueError, match="loss 'infonce': unknown parameter"):
        build_loss_plan({"infonce": {"weight": 1.0, "temperature": 0.1}}, 2)
    with pytest.raises(ValueError, match="loss_kwargs applies to a single loss name"):
        build_loss_plan({"infonce": 1.0}, 2, loss_kwargs={"init_temperature": 0.1})
    with pytest.raises(TypeError, match="loss must be a loss name or a mapping"):
        build_loss_plan(3, 2)


def test_a_user_loss_registered_with_register_loss_works_in_a_combination():
    from alignkit.align import register_loss
    from alignkit.align.loss_registry import LOSSES

    def pull(a, b, margin: float = 0.0):
        """Pull positives together: mean (1 − cos) beyond a margin."""
        return torch.relu(1 - F.cosine_similarity(a, b) - margin).mean()

    def two_only(views, scale: float = 1.0):
        return scale * views.square().mean()

    register_loss("pull_test", pull, form="pair", constraints={"margin": {"low": 0.0}})
    register_loss("two_only_test", two_only, form="views", views=(2, 2))
    try:
        V = planted(n=120)
        est = _est(loss={"pairwise_infonce": 1.0, "pull_test": {"weight": 0.5, "margin": 0.1}}, epochs=2).fit(V)
        assert {"loss/pairwise_infonce", "loss/pull_test"} <= set(est.history_[0])
        g = torch.Generator().manual_seed(3)
        zs = [torch.randn(5, 3, generator=g) for _ in range(3)]
        term = build_loss("pull_test", 3, margin=0.1)
        assert term(*zs).item() == pytest.approx(sum(pull(zs[a], zs[b], 0.1).item() for a, b in
                                                     itertools.combinations(range(3), 2)), rel=1e-6)  # fmt: skip
        with pytest.raises(
            ValueError, match=r"loss 'two_only_test' cannot be used with 3 views \(it takes 2\.\.2 views"
        ):
            _est(loss={"two_only_test": 1.0}).fit(V)
        with pytest.raises(ValueError, match="pull_test': margin must be a number >= 0"):
            _est(loss={"pull_test": {"margin": -1}}).fit(V)
    finally:
        LOSSES.remove("pull_test")
        LOSSES.remove("two_only_test")


# ------------------------------------------------------------------------------------------ the loop


def _three(seed: int = 0, dropout: bool = False):
    torch.manual_seed(seed)
    if dropout:
        from alignkit.align.heads import ResLowRankHead

        return [ResLowRankHead(d, 8, rank=4, dropout=0.2) for d in (16, 12, 20)]
    return [LinearHead(d, 8) for d in (16, 12, 20)]


def test_two_views_as_lists_equal_the_two_space_call():
    X, Y = planted(n=200, dims=(16, 12))
    torch.manual_seed(0)
    a = fit_heads(X, Y, LinearHead(16, 8), LinearHead(12, 8), InfoNCE(), batch_size=64, epochs=3, lr=1e-2,
                  val=(X[:50], Y[:50]), progress=False)  # fmt: skip
    torch.manual_seed(0)
    b = fit_heads([X, Y], [LinearHead(16, 8), LinearHead(12, 8)], InfoNCE(), batch_size=64, epochs=3, lr=1e-2,
                  val=[X[:50], Y[:50]], progress=False)  # fmt: skip
    assert all(torch.equal(u, v) for u, v in zip(weights(*a.heads, a.loss), weights(*b.heads, b.loss), strict=True))
    assert no_time(a.history) == no_time(b.history)


def test_n_way_resume_equals_uninterrupted(tmp_path):
    V = planted(n=192)
    reg = dict(lam=5.0, levels=2, warmup_fraction=0.5)

    def run(**kw):
        return fit_heads(V, _three(dropout=True), {"pairwise_infonce": 1.0, "mv_dhel": 0.3}, batch_size=64,
                         epochs=4, lr=1e-2, warmup_steps=2, seed=0, progress=False, val=[v[:64] for v in V],
                         structure=StructureRegularizer(**reg), **kw)  # fmt: skip

    full = run()
    part = run(checkpoint_dir=tmp_path, stop_after=2)
    assert not part.finished and len(part.history) == 2
    doc = json.loads((tmp_path / "checkpoint.json").read_text())
    assert doc["config"]["d_views"] == [16, 12, 20] and doc["config"]["modules"] == [
        "head_0",
        "head_1",
        "head_2",
        "loss",
    ]
    resumed = run(checkpoint_dir=tmp_path)
    assert resumed.finished and len(resumed.history) == 4
    for u, v in zip(weights(*full.heads, full.loss), weights(*resumed.heads, resumed.loss), strict=True):
        assert torch.equal(u, v)
    assert no_time(full.history) == no_time(resumed.history)
    assert {"loss/pairwise_infonce", "loss/mv_dhel", "loss/structure", "param/pairwise_infonce.logit_scale"} <= set(
        full.history[0]
    )
    with pytest.raises(ValueError, match=r"different configuration.*d_views"):
        fit_heads([V[0], V[1], V[1]], [LinearHead(16, 8), LinearHead(12, 8), LinearHead(12, 8)], "infonce",
                  epochs=4, checkpoint_dir=tmp_path, progress=False)  # fmt: skip


def test_validation_is_the_mean_over_ordered_view_pairs():
    V = planted(n=160)
    heads = _three()
    res = fit_heads(V, heads, "infonce", batch_size=64, epochs=1, lr=1e-2, val=V, progress=False)
    from alignkit.ranking import paired_ranks, rank_summary

    with torch.no_grad():
        zs = [h(torch.from_numpy(v)) for h, v in zip(heads, V, strict=True)]
    r1 = []
    for a, b in itertools.permutations(range(3), 2):
        r1.append(rank_summary(paired_ranks(zs[a], zs[b])["x_to_y"], (1,))["R@1"])
    assert res.history[0]["val_r1"] == pytest.approx(float(np.mean(r1)), rel=1e-9)


def test_missing_views_train_with_a_pair_loss_and_are_refused_otherwise():
    V = planted(n=240)
    all_true = np.ones((240, 3), dtype=bool)
    a = fit_heads(V, _three(), "infonce", batch_size=80, epochs=2, lr=1e-2, progress=False)
    b = fit_heads(V, _three(), "infonce", mask=all_true, batch_size=80, epochs=2, lr=1e-2, progress=False)
    # the same loss; only the order of gradient accumulation through the row selection differs
    assert all(torch.allclose(u, v, atol=1e-6) for u, v in zip(weights(*a.heads), weights(*b.heads), strict=True))
    assert no_time(a.history)[0] == no_time(b.history)[0]
    mask = np.random.default_rng(0).random((240, 3)) > 0.3
    holes = [v.copy() for v in V]
    for i, h in enumerate(holes):
        h[~mask[:, i]] = np.nan  # absent entries may hold anything
    res = fit_heads(holes, _three(), "infonce", mask=mask, batch_size=80, epochs=2, lr=1e-2, progress=False,
                    structure=StructureRegularizer(1.0, warmup_steps=0))  # fmt: skip
    assert all(np.isfinite(r["loss"]) for r in res.history)
    assert all(torch.isfinite(w).all() for w in weights(*res.heads))
    with pytest.raises(ValueError, match="cannot take missing views"):
        fit_heads(holes, _three(), "mv_infonce", mask=mask, epochs=1, progress=False)
    with pytest.raises(ValueError, match="mask: this loss cannot take missing views"):
        fit_heads(holes, _three(), InfoNCE(), mask=mask, epochs=1, progress=False)
    with pytest.raises(ValueError, match=r"views\[0\] contains \d+ NaN"):
        fit_heads(holes, _three(), "infonce", epochs=1, progress=False)
    with pytest.raises(ValueError, match=r"mask must have shape \(items, views\) = \(240, 3\)"):
        fit_heads(V, _three(), "infonce", mask=mask[:, :2], epochs=1, progress=False)


def test_fit_heads_bad_input_names_the_argument():
    V = planted(n=40)
    kw = {"epochs": 1, "progress": False}
    with pytest.raises(ValueError, match="views must hold at least 2"):
        fit_heads(V[:1], [LinearHead(16, 4)], "infonce", **kw)
    with pytest.raises(ValueError, match=r"views\[0\] and views\[2\] must be paired by row"):
        fit_heads([V[0], V[1], V[2][:-1]], _three(), "infonce", **kw)
    with pytest.raises(ValueError, match="heads must hold one head per view: 2 heads for 3 views"):
        fit_heads(V, _three()[:2], "infonce", **kw)
    with pytest.raises(ValueError, match=r"heads\[1\] expects 16 input features but views\[1\] has 12"):
        fit_heads(V, [LinearHead(16, 8)] * 3, "infonce", **kw)
    with pytest.raises(ValueError, match="cannot be used with 3 views"):
        fit_heads(V, _three(), "uniformity", **kw)
    with pytest.raises(TypeError, match="val must list 3 views"):
        fit_heads(V, _three(), "infonce", val=V[:2], **kw)


# ---------------------------------------------------------------------------------------------- estimator


def test_multi_head_aligner_retrieves_planted_three_view_data():
    V = planted(n=600)
    train, test = [v[:400] for v in V], [v[400:] for v in V]
    chance = 1 / 200
    for loss in ("pairwise_infonce", "mv_infonce", "triple", {"gram": 1.0, "infonce": 0.1}):
        est = _est(loss=loss).fit(train)
        rows = est.pair_scores(test)
        assert [(r["query"], r["gallery"]) for r in rows] == list(itertools.permutations(range(3), 2))
        assert est.score(test) == pytest.approx(np.mean([r["R@1"] for r in rows]))
        assert min(r["R@1"] for r in rows) > 20 * chance and est.score(test) > 60 * chance, (loss, rows)
    z = est.transform(2, test[2])
    assert z.shape == (200, 16) and z.dtype == np.float64 and np.allclose(np.linalg.norm(z, axis=1), 1.0)
    assert isinstance(est.transform(0, torch.from_numpy(test[0])), torch.Tensor)


def test_two_views_train_the_same_heads_as_head_aligner():
    X, Y = planted(n=200, dims=(16, 12))
    kw = dict(head="linear", d_out=8, epochs=3, batch_size=64, lr=1e-2, structure=2.0,
              structure_kwargs={"warmup_steps": 2})  # fmt: skip
    a = MultiHeadAligner(**kw).fit([X, Y])
    b = HeadAligner(loss="infonce", **kw).fit(X, Y)
    assert np.array_equal(a.weights_, b.weights_)
    assert np.array_equal(a.transform(1, Y), b.transform_y(Y))


def test_save_load_round_trip_and_tampering(tmp_path):
    V = planted(n=200)
    est = _est(loss={"pairwise_infonce": 1.0, "structure": {"weight": 1.0, "warmup_steps": 0}}, epochs=2,
               val_fraction=0.2, head="mlp", head_kwargs={"hidden": 12})  # fmt: skip
    params = est.get_params()
    assert clone(est).get_params() == params
    est.fit(V)
    assert est.n_items_ == 160 and est.n_features_ == [16, 12, 20]
    path = est.save(tmp_path / "m")
    back = MultiHeadAligner.load(path)
    assert back.get_params() == params
    for i in range(3):
        assert np.array_equal(back.transform(i, V[i]), est.transform(i, V[i]))
    assert back.history_ == json.loads(json.dumps(est.history_))
    assert np.array_equal(clone(est).fit(V).weights_, est.weights_)  # seeded: the same run
    cfg = json.loads((path / "config.json").read_text())
    cfg["fitted"]["n_features_"] = [16, 12, 21]
    (path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="does not fit the saved MultiHeadAligner"):
        MultiHeadAligner.load(path)
    est.save(path)
    blob = bytearray((path / "state.safetensors").read_bytes())
    blob[-1] ^= 1
    (path / "state.safetensors").write_bytes(bytes(blob))
    with pytest.raises(ValueError, match="sha256"):
        MultiHeadAligner.load(path)
    est.save(path)
    cfg = json.loads((path / "config.json").read_text())
    cfg["params"]["loss"] = {"mv_infonce": 1.0, "bogus": 1.0}
    (path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="unknown loss 'bogus'"):
        MultiHeadAligner.load(path)
    with pytest.raises(FileNotFoundError):
        MultiHeadAligner.load(tmp_path / "nothing")


def test_multi_head_aligner_bad_input():
    V = planted(n=60)
    with pytest.raises(ValueError, match="views must hold at least 2 spaces; got 1"):
        _est().fit(V[:1])
    with pytest.raises(TypeError, match="views must be a list"):
        _est().fit(V[0])
    with pytest.raises(ValueError, match=r"views\[0\] and views\[1\] must be paired by row"):
        _est().fit([V[0], V[1][:-1], V[2]])
    bad = V[1].copy()
    bad[0, 0] = np.inf
    with pytest.raises(ValueError, match=r"views\[1\] contains 1 NaN or Inf"):
        _est().fit([V[0], bad, V[2]])
    with pytest.raises(ValueError, match="MultiHeadAligner: loss: loss 'uniformity' cannot be used with 3 views"):
        _est(loss="uniformity").fit(V)
    with pytest.raises(ValueError, match="shared=True needs every view of one dimension"):
        _est(shared=True).fit(V)
    with pytest.raises(ValueError, match="head"):
        _est(head="transformer").fit(V)
    est = _est(epochs=1).fit(V)
    with pytest.raises(ValueError, match=r"transform: views\[1\] has 16 features but this MultiHeadAligner was fitted "
                                         r"on 12-dimensional views\[1\]"):  # fmt: skip
        est.transform(1, V[0])
    with pytest.raises(ValueError, match=r"view must be an integer in \[0, 2\]"):
        est.transform(3, V[0])
    with pytest.raises(ValueError, match="views must hold the 3 fitted spaces"):
        est.score(V[:2])
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        _est().transform(0, V[0])


# ------------------------------------------------------------------------------------- fixed-target mode


def test_fixed_target_maps_x_into_y_space_and_leaves_y_untouched():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((500, 12)).astype(np.float32)
    W = rng.standard_normal((12, 10)).astype(np.float32)
    Y = (X @ W + 0.1 * rng.standard_normal((500, 10))).astype(np.float32)
    est = HeadAligner(head="linear", target="y", d_out=999, epochs=15, batch_size=100, lr=2e-2, weight_decay=0.0,
                      structure=1.0, structure_kwargs={"warmup_steps": 0})  # fmt: skip
    Y_before = Y.copy()
    est.fit(X[:400], Y[:400])
    y64 = Y.astype(np.float64)
    assert np.allclose(est.transform_y(Y), y64 / np.linalg.norm(y64, axis=1, keepdims=True), rtol=0, atol=1e-15)
    other = HeadAligner(head="linear", target="y", epochs=1, seed=5).fit(X[:100], Y[:100])
    assert np.array_equal(other.transform_y(Y), est.transform_y(Y)) and np.array_equal(Y, Y_before)
    t = est.translate(X[400:])
    assert t.shape == (100, 10) and np.array_equal(t, est.transform_x(X[400:]))
    assert est.score(X[400:], Y[400:]) > 0.5  # top-1 among 100 held-out pairs; chance 0.01
    cos = np.sum(t * est.transform_y(Y[400:]), axis=1)
    q = np.linalg.qr(rng.standard_normal((10, 10)))[0]
    cos_rot = np.sum(t * est.transform_y(Y[400:] @ q), axis=1)
    assert np.median(cos) > 0.7 > 0.3 > abs(np.median(cos_rot))  # in Y's own coordinates, not a rotated copy
    assert est.head_x_.proj.out_features == 10 and isinstance(est.head_y_, torch.nn.Identity)
    with pytest.raises(NotImplementedError, match="target='y'"):
        HeadAligner(head="linear", d_out=4, epochs=1).fit(X[:50], Y[:50]).translate(X[:5])
    with pytest.raises(ValueError, match="shared=True has no meaning with target='y'"):
        HeadAligner(target="y", shared=True).fit(X, Y)
    with pytest.raises(ValueError, match="target must be one of shared, y"):
        HeadAligner(target="x").fit(X, Y)
