"""Pairs' quality: NoC alignment levels and the preference-pair separability audit (docs/methods.md §3.5, §3.9)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.preprocessing import KBinsDiscretizer

from alignkit.diagnostics import describe, diagnose, diagnostic_ci
from alignkit.diagnostics.quality import (
    NOC_CC3M_EDGES,
    AlignmentLevels,
    alignment_levels,
    grouped_folds,
    preference_separability,
    prompt_groups,
)


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


# ------------------------------------------------------------------------------------------ levels


@pytest.mark.parametrize("n_bins", [2, 5, 8])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_levels_match_sklearn_including_the_edges(n_bins: int, dtype: type) -> None:
    rng = _rng(n_bins)
    train = (rng.normal(size=400) * 0.1 + 0.2).astype(dtype)
    ours = AlignmentLevels(n_bins=n_bins).fit(train)
    ref = KBinsDiscretizer(n_bins=n_bins, encode="ordinal", strategy="uniform", subsample=None).fit(train[:, None])
    np.testing.assert_array_equal(ours.edges_, ref.bin_edges_[0])
    # values exactly on every edge, around them, outside the range and at random
    e = ours.edges_
    probe = np.concatenate([e, np.nextafter(e, -np.inf), np.nextafter(e, np.inf), [-5.0, 5.0], rng.normal(size=300)])
    expected = ref.transform(probe[:, None])[:, 0].astype(np.int64)
    np.testing.assert_array_equal(ours.transform(probe), expected)
    np.testing.assert_array_equal(ours.fit_transform(train), ref.transform(train[:, None])[:, 0])


def test_levels_clamp_and_inner_edges_go_up() -> None:
    lv = AlignmentLevels(n_bins=4).fit([0.0, 1.0])  # edges 0, .25, .5, .75, 1
    np.testing.assert_allclose(lv.edges_, [0.0, 0.25, 0.5, 0.75, 1.0])
    levels = lv.transform([-10.0, 0.0, 0.25, 0.4999, 0.5, 0.75, 1.0, 10.0])
    np.testing.assert_array_equal(levels, [0, 0, 1, 1, 2, 3, 3, 3])


def test_noc_cc3m_preset() -> None:
    lv = AlignmentLevels.from_edges(NOC_CC3M_EDGES)
    assert lv.n_bins_ == 8
    # NoC's filtering threshold 0.3 falls in level 5 (edges 0.28779 .. 0.35273)
    np.testing.assert_array_equal(lv.transform([-1.0, -0.03691, 0.02803, 0.3, 0.48261, 0.9]), [0, 0, 1, 5, 7, 7])
    assert np.allclose(np.diff(NOC_CC3M_EDGES), 0.0649, atol=1e-4)


def test_json_round_trip(tmp_path) -> None:
    lv = AlignmentLevels(n_bins=8).fit(_rng(1).normal(size=100))
    path = tmp_path / "levels.json"
    lv.save(path)
    back = AlignmentLevels.load(path)
    np.testing.assert_array_equal(back.edges_, lv.edges_)  # bit-exact
    assert json.loads(path.read_text())["format"] == "alignkit.alignment_levels"
    s = _rng(2).normal(size=50)
    np.testing.assert_array_equal(back.transform(s), lv.transform(s))
    lv32 = AlignmentLevels().fit(s.astype(np.float32))  # float32 edges round-trip exactly through JSON too
    back32 = AlignmentLevels.from_json(lv32.to_json())
    probe = np.r_[lv32.edges_, s].astype(np.float32)
    np.testing.assert_array_equal(back32.transform(probe), lv32.transform(probe))
    q = AlignmentLevels.from_json(AlignmentLevels(3, "quantile").fit(s).to_json())
    assert q.strategy == "quantile" and q.n_bins_ == 3
    with pytest.raises(ValueError, match="alignment-level JSON"):
        AlignmentLevels.from_json('{"edges": [0, 1, 2]}')
    with pytest.raises(ValueError, match="alignment-level JSON"):
        AlignmentLevels.from_json("not json")


def test_quantile_strategy_and_ties() -> None:
    s = _rng(3).normal(size=1000)
    counts = np.bincount(AlignmentLevels(4, "quantile").fit_transform(s))
    assert counts.min() >= 240
    with pytest.warns(UserWarning, match="merged"):
        lv = AlignmentLevels(4, "quantile").fit(np.r_[np.zeros(90), np.arange(10.0)])
    assert lv.n_bins_ < 4


def test_level_errors() -> None:
    with pytest.raises(ValueError, match="constant"):
        AlignmentLevels().fit(np.ones(10))
    with pytest.raises(ValueError, match="n_bins"):
        AlignmentLevels(n_bins=1).fit([0.0, 1.0])
    with pytest.raises(ValueError, match="strategy"):
        AlignmentLevels(strategy="kmeans").fit([0.0, 1.0])
    with pytest.raises(RuntimeError, match="not fitted"):
        AlignmentLevels().transform([0.0])
    with pytest.raises(ValueError, match="increasing"):
        AlignmentLevels.from_edges([0.0, 1.0, 0.5])
    with pytest.raises(ValueError, match="NaN"):
        AlignmentLevels().fit([0.0, np.nan, 1.0])
    with pytest.raises(ValueError, match="1-D"):
        AlignmentLevels().fit(np.zeros((3, 3)))


def test_alignment_levels_diagnostic() -> None:
    rng = _rng(4)
    X = rng.normal(size=(200, 8))
    Y = X + rng.normal(size=(200, 8)) * np.linspace(0.1, 3.0, 200)[:, None]
    r = alignment_levels(X, Y)
    s = np.einsum("ij,ij->i", X, Y) / np.linalg.norm(X, axis=1) / np.linalg.norm(Y, axis=1)
    np.testing.assert_allclose(r.scores, s)
    np.testing.assert_array_equal(r.levels, AlignmentLevels().fit_transform(s))
    assert r.counts.sum() == 200 and len(r.counts) == 8
    assert r.value == pytest.approx(r.counts[-1] / 200)
    assert r.levels[np.argmax(s)] == 7 and r.levels[np.argmin(s)] == 0
    assert "levels" not in r.as_dict() and r.as_dict()["n_bins"] == 8
    preset = diagnose("alignment_levels", X, Y, preset="noc_cc3m")
    np.testing.assert_array_equal(preset.edges, NOC_CC3M_EDGES)
    assert diagnose("alignment_levels?n_bins=4", X, Y).n_bins == 4
    ci = diagnostic_ci("alignment_levels", X, Y, n_boot=5)
    assert 0.0 <= ci.score <= 1.0
    with pytest.raises(ValueError, match="n_bins"):
        diagnose("alignment_levels", X, Y, n_bins=1)
    with pytest.raises(ValueError, match="preset"):
        diagnose("alignment_levels", X, Y, preset="laion")
    with pytest.raises(ValueError, match="row-paired"):
        diagnose("alignment_levels", X, Y[:50])
    Z = X.copy()
    Z[3] = 0.0
    with pytest.raises(ValueError, match="zero row"):
        alignment_levels(Z, Y)


# ------------------------------------------------------------------------------------------ preference pairs


def _pairs(n: int, d: int, shift: float, seed: int, n_prompts: int | None = None):
    rng = _rng(seed)
    base = rng.normal(size=(n_prompts or n, d))
    idx = rng.integers(0, base.shape[0], size=n) if n_prompts else np.arange(n)
    P = base[idx]
    w = np.zeros(d)
    w[0] = shift
    chosen = P + rng.normal(size=(n, d)) + w
    rejected = P + rng.normal(size=(n, d))
    return P, chosen, rejected


def test_separable_pairs_score_high() -> None:
    P, C, R = _pairs(240, 12, 3.0, seed=5)
    r = preference_separability(P, C, R, folds=4)
    assert r.value > 0.9 and r.auroc > 0.95
    assert r.flipped.sum() == 120 and r.groups_from == "none" and r.n_groups == 240
    assert len(r.fold_accuracy) == 4 and set(np.unique(r.fold)) == {0, 1, 2, 3}
    np.testing.assert_allclose(
        r.margins,
        np.einsum("ij,ij->i", P, C) / np.linalg.norm(P, axis=1) / np.linalg.norm(C, axis=1)
        - np.einsum("ij,ij->i", P, R) / np.linalg.norm(P, axis=1) / np.linalg.norm(R, axis=1),
    )
    assert r.margin_positive == pytest.approx(np.mean(r.margins > 0))
    assert preference_separability(P, C, R, folds=4, with_prompt=True).value > 0.85


def test_indistinguishable_pairs_score_chance() -> None:
    P, C, R = _pairs(400, 8, 0.0, seed=6)
    r = diagnose("preference_separability", P, C, R)
    assert abs(r.value - 0.5) < 0.1 and abs(r.auroc - 0.5) < 0.1
    assert abs(r.margin_mean) < 0.05


def test_shared_prompts_are_never_split_across_folds() -> None:
    P, C, R = _pairs(300, 6, 1.0, seed=7, n_prompts=40)
    r = preference_separability(P, C, R, folds=5)
    assert r.groups_from == "prompt"
    g = prompt_groups(P)
    assert r.n_groups == np.unique(g).size <= 40
    for gid in np.unique(g):
        assert np.unique(r.fold[g == gid]).size == 1
    # explicit groups win, and the fold helper keeps them whole too
    groups = np.arange(300) // 10
    labels = np.tile([0, 1], 150)
    fold = grouped_folds(labels, groups, folds=5, seed=3)
    for gid in np.unique(groups):
        assert np.unique(fold[groups == gid]).size == 1
    assert preference_separability(P, C, R, groups=groups).groups_from == "groups"
    # without shared rows the helper is plain stratified k-fold
    plain = grouped_folds(labels, None, folds=5, seed=3)
    assert all(np.bincount(labels[plain == i]).tolist() == [30, 30] for i in range(5))


def test_preference_bad_inputs() -> None:
    P, C, R = _pairs(40, 4, 1.0, seed=8)
    with pytest.raises(ValueError, match="folds"):
        diagnose("preference_separability", P, C, R, folds=1)
    with pytest.raises(ValueError, match="folds"):
        preference_separability(P, C, R, folds=1)
    with pytest.raises(ValueError, match="too few"):
        preference_separability(P[:9], C[:9], R[:9], folds=5)
    with pytest.raises(ValueError, match="row-paired"):
        diagnose("preference_separability", P, C, R[:30])
    with pytest.raises(ValueError, match="row-paired"):
        preference_separability(P, C, R[:30])
    with pytest.raises(ValueError, match="same width"):
        preference_separability(P, C, R[:, :3])
    with pytest.raises(TypeError, match="labels"):
        diagnose("preference_separability", P, C, R, labels=np.zeros(40))
    with pytest.raises(ValueError, match="group"):
        preference_separability(P, C, R, groups=np.zeros(40))  # one group cannot fill 5 folds
    with pytest.raises(ValueError, match="one group per row"):
        preference_separability(P, C, R, groups=np.zeros(3))
    with pytest.raises(ValueError, match="C"):
        diagnose("preference_separability", P, C, R, C=0.0)
    info = describe("preference_separability")
    assert isinstance(info, dict)
    assert info["family"] == "pairs" and info["inputs"] == ["prompt", "chosen", "rejected"]
    assert info["accepts_groups"] is True
