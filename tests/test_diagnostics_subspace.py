"""Subspace diagnostics: energy bases, MSO, principal angles and update projections (docs/methods.md §3.8)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.linalg
import torch

from alignkit.diagnostics import describe, diagnose, diagnostic_ci
from alignkit.diagnostics.subspace import (
    FULL_SVD_MAX,
    energy_basis,
    gaussian_like,
    layer_key,
    principal_angles,
    project_update,
    projection_basis,
    random_subspace,
    subspace_overlap,
    update_projection,
)


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


# ------------------------------------------------------------------------------------------ MSO


def test_mso_of_a_subspace_with_itself_is_one() -> None:
    Q = random_subspace(40, 6, seed=1)
    r = subspace_overlap(Q, Q, fraction=1.0)
    assert r.value == pytest.approx(1.0, abs=1e-12)
    assert (r.k_a, r.k_b, r.d) == (6, 6, 40)
    assert r.baseline == pytest.approx(6 / 40)
    assert r.adjusted == pytest.approx(1.0)
    np.testing.assert_allclose(r.angles, 0.0, atol=1e-6)
    assert diagnose("subspace_overlap", Q, Q, fraction=1.0).value == pytest.approx(1.0)
    t = torch.as_tensor(Q, dtype=torch.float32)  # torch inputs, float32
    assert subspace_overlap(t, t @ torch.randn(6, 6, generator=torch.Generator().manual_seed(0))).value > 0.99


def test_mso_of_orthogonal_subspaces_is_zero() -> None:
    eye = np.eye(20)
    r = subspace_overlap(eye[:, :5] * 3.0, eye[:, 5:12], fraction=1.0)
    assert r.value == pytest.approx(0.0, abs=1e-12)
    np.testing.assert_allclose(r.angles, math.pi / 2)
    assert r.adjusted < 0  # below chance


def test_random_subspaces_match_the_baseline() -> None:
    d, ka, kb = 40, 4, 8
    A = random_subspace(d, ka, seed=123)
    msos = [subspace_overlap(A, random_subspace(d, kb, seed=s), fraction=1.0).value for s in range(200)]
    baseline = max(ka, kb) / d  # = E‖Q_AᵀQ_B‖_F² / min(k) = (ka·kb/d)/ka
    assert abs(np.mean(msos) - baseline) < 0.015  # ~4.5 standard errors
    assert subspace_overlap(A, random_subspace(d, kb, seed=0), fraction=1.0).baseline == pytest.approx(baseline)


def test_mso_is_basis_invariant() -> None:
    rng = _rng(2)
    A = rng.standard_normal((30, 4))
    B = rng.standard_normal((30, 6)) + A @ rng.standard_normal((4, 6))  # overlapping spans
    R1 = rng.standard_normal((4, 4)) + 4 * np.eye(4)
    R2 = rng.standard_normal((6, 6)) + 4 * np.eye(6)
    r = subspace_overlap(A, B, fraction=1.0)
    r2 = subspace_overlap(A @ R1, B @ R2, fraction=1.0)
    assert r2.value == pytest.approx(r.value, abs=1e-10)
    np.testing.assert_allclose(r2.angles, r.angles, atol=1e-7)
    assert 0.0 < r.value < 1.0


def test_principal_angles_match_scipy() -> None:
    rng = _rng(3)
    A, B = rng.standard_normal((25, 4)), rng.standard_normal((25, 7))
    B[:, 0] = A[:, 0] + 0.1 * B[:, 0]  # one small angle
    ours = principal_angles(A, B)
    ref = np.sort(scipy.linalg.subspace_angles(A, B))
    np.testing.assert_allclose(ours, ref, atol=1e-7)
    # rows: the feature space of items × features matrices
    np.testing.assert_allclose(principal_angles(A.T, B.T, span="rows"), ref, atol=1e-7)
    # the MSO is the mean cos² of the angles
    assert subspace_overlap(A, B, fraction=1.0).value == pytest.approx(np.mean(np.cos(ref) ** 2), abs=1e-10)


def test_rank_deficient_inputs_use_their_numerical_rank() -> None:
    rng = _rng(4)
    A = rng.standard_normal((20, 3)) @ rng.standard_normal((3, 8))  # rank 3
    B = rng.standard_normal((20, 5))
    assert len(principal_angles(A, B)) == 3
    np.testing.assert_allclose(np.sort(principal_angles(A, B)), np.sort(scipy.linalg.subspace_angles(A, B)), atol=1e-7)
    assert energy_basis(A, 1.0).k == 3


def test_energy_basis_picks_the_smallest_k() -> None:
    U = np.linalg.qr(_rng(5).standard_normal((30, 4)))[0]
    M = U * np.array([3.0, 2.0, 1.0, 1.0])  # energies 9, 4, 1, 1 of 15
    assert energy_basis(M, 0.6).k == 1  # 9/15 = 0.6 exactly is enough
    assert energy_basis(M, 0.61).k == 2
    assert energy_basis(M, 0.9).k == 3  # 14/15
    b = energy_basis(M, 0.94)
    assert b.k == 4 and b.captured == pytest.approx(1.0)
    assert b.method == "full" and b.d == 30


def test_lowrank_branch_measures_energy_against_the_full_norm() -> None:
    # Tall and thin (max(m, n) > 10,000) so the randomized branch runs, q = ⌊0.25·8⌋ = 2 directions first.
    rng = _rng(6)
    M = rng.standard_normal((FULL_SVD_MAX + 1, 8)) * np.linspace(1.0, 1.5, 8)
    s = np.linalg.svd(M, compute_uv=False)
    cum = np.cumsum(s**2) / np.sum(M**2)
    b = energy_basis(M, 0.5)
    assert b.method.startswith("lowrank")
    k_exact = int(np.searchsorted(cum, 0.5) + 1)
    assert b.k == k_exact
    assert b.captured >= 0.5 - 1e-3
    assert b.captured <= cum[b.k - 1] + 1e-6  # the randomized spectrum never exceeds the top-k energy
    assert b.total_energy == pytest.approx(float(np.sum(M.astype(np.float64) ** 2)), rel=1e-5)
    # The reference's bug: k chosen against the q = 2 computed directions only gives a smaller k.
    cum_truncated = np.cumsum(s[:2] ** 2) / np.sum(s[:2] ** 2)
    assert int(np.searchsorted(cum_truncated, 0.5) + 1) < b.k
    # forcing the branch on a small matrix gives the same k as the full SVD
    small = rng.standard_normal((50, 12))
    assert energy_basis(small, 0.8, method="lowrank").k == energy_basis(small, 0.8, method="full").k


def test_span_rows_is_the_feature_space_of_activations() -> None:
    rng = _rng(7)
    X, Y = rng.standard_normal((40, 10)), rng.standard_normal((25, 10))  # different items, same features
    r = subspace_overlap(X, Y, fraction=0.9, span="rows")
    assert r.d == 10 and r.span == "rows"
    assert r.value == pytest.approx(subspace_overlap(X.T, Y.T, fraction=0.9).value)
    with pytest.raises(ValueError, match="span='columns'"):
        subspace_overlap(X, Y)  # 40 vs 25 rows: not the same ambient space
    assert diagnose("subspace_overlap", X, Y, span="rows").d == 10


@pytest.mark.parametrize("bad", [0.0, -0.1, 1.5])
def test_fraction_outside_0_1_is_an_error(bad: float) -> None:
    Q = random_subspace(10, 2)
    with pytest.raises(ValueError, match="fraction"):
        subspace_overlap(Q, Q, fraction=bad)
    with pytest.raises(ValueError, match="fraction"):
        diagnose("subspace_overlap", Q, Q, fraction=bad)
    with pytest.raises(ValueError, match="fraction"):
        energy_basis(Q, bad)
    with pytest.raises(ValueError, match="frac"):
        update_projection(Q, Q, frac=bad)


def test_bad_subspace_inputs() -> None:
    Q = random_subspace(10, 2)
    with pytest.raises(ValueError, match="zero"):
        energy_basis(np.zeros((5, 3)), 0.5)
    with pytest.raises(ValueError, match="span"):
        subspace_overlap(Q, Q, span="cols")
    with pytest.raises(ValueError, match="NaN"):
        subspace_overlap(np.full((4, 2), np.nan), Q)
    with pytest.raises(TypeError, match="takes 2 array"):
        diagnose("subspace_overlap", Q)
    with pytest.raises(ValueError, match="not items"):
        diagnostic_ci("subspace_overlap", Q, Q)


def test_registry_metadata() -> None:
    info = describe("subspace_overlap")
    assert isinstance(info, dict)
    assert info["family"] == "subspace" and info["range"] == [0.0, 1.0] and info["resample"] is False
    assert describe("update_projection")["inputs"] == ["U", "V"]  # type: ignore[index]


# ------------------------------------------------------------------------------------------ projections


def test_update_inside_the_span_of_v_is_kept_whole() -> None:
    rng = _rng(8)
    V = rng.standard_normal((20, 10))
    U = V @ rng.standard_normal((10, 10))  # columns in span(V)
    r = update_projection(U, V, frac=1.0)
    assert r.value == pytest.approx(1.0, abs=1e-10)
    np.testing.assert_allclose(np.asarray(project_update(U, V, frac=1.0)), U, atol=1e-10)
    # orthogonal to V's columns: nothing kept
    W = np.linalg.qr(np.hstack([V, rng.standard_normal((20, 3))]))[0][:, 10:] @ rng.standard_normal((3, 10))
    r0 = update_projection(W, V, frac=1.0)
    assert r0.value == pytest.approx(0.0, abs=1e-12)
    assert r0.energy_removed == pytest.approx(float(np.sum(W**2)))


def test_top_k_keeps_the_energy_of_the_top_directions() -> None:
    rng = _rng(9)
    Uv, _ = np.linalg.qr(rng.standard_normal((12, 12)))
    V = Uv @ np.diag(np.arange(12, 0, -1.0)) @ np.linalg.qr(rng.standard_normal((12, 12)))[0]
    U = rng.standard_normal((12, 12))
    k = max(1, round(0.25 * 12))
    L = Uv[:, :k]
    r = update_projection(U, V, frac=0.25)
    assert r.value == pytest.approx(np.sum((L @ L.T @ U) ** 2) / np.sum(U**2), rel=1e-8)
    assert r.cos_u_parallel == pytest.approx(math.sqrt(r.value), rel=1e-8)
    np.testing.assert_allclose(np.abs(np.asarray(projection_basis(V, frac=0.25))), np.abs(L), atol=1e-8)
    Lr = np.asarray(projection_basis(V, frac=0.25, basis="random_k", seed=1))
    assert Lr.shape == (12, 3)
    np.testing.assert_allclose(np.abs(Lr.T @ Uv), np.abs(Lr.T @ Uv).round(), atol=1e-8)  # k of V's directions
    # the random-k control draws k of V's directions: at frac = 1 it is the same subspace
    assert update_projection(U, V, frac=1.0, basis="random_k").value == pytest.approx(1.0)


def test_large_updates_use_a_randomized_top_k() -> None:
    rng = _rng(13)
    m = FULL_SVD_MAX + 1
    V = rng.standard_normal((m, 4)) @ rng.standard_normal((4, 40)) * 10 + rng.standard_normal((m, 40)) * 0.01
    U = rng.standard_normal((m, 40))
    L = np.linalg.svd(V, full_matrices=False)[0][:, :4]  # k = round(0.1·40) = 4
    exact = np.sum((L.T @ U) ** 2) / np.sum(U**2)
    r = update_projection(torch.as_tensor(U), torch.as_tensor(V), frac=0.1)
    assert r.value == pytest.approx(exact, rel=1e-6)


def test_cosine_of_opposite_updates_is_negative_and_real() -> None:
    rng = _rng(10)
    V = {"model.layers.0.mlp.up_proj.weight": rng.standard_normal((6, 4)), "model.norm.weight": rng.standard_normal(6)}
    U = {k: -2.0 * v for k, v in V.items()}
    r = update_projection(U, V, frac=0.5)
    assert isinstance(r.cos_uv, float)
    assert r.cos_uv == pytest.approx(-1.0)
    assert all(row["cos_uv"] == pytest.approx(-1.0) for row in r.rows())
    # 1-D tensors use (⟨U,V⟩/⟨V,V⟩)V: U = −2V is kept whole
    np.testing.assert_allclose(np.asarray(project_update(U, V)["model.norm.weight"]), U["model.norm.weight"])


@pytest.mark.parametrize(
    ("name", "group"),
    [
        ("model.layers.12.mlp.up_proj.weight", "model.layers.12"),
        ("model.layers.1.self_attn.q_proj.weight", "model.layers.1"),
        ("model.layers.12.input_layernorm.weight", "model.layers.12"),
        ("transformer.h.3.attn.c_attn.weight", "transformer.h.3"),
        ("bert.encoder.layer.11.output.dense.bias", "bert.encoder.layer.11"),
        ("blocks.7.attn.qkv.weight", "blocks.7"),
        ("model.vision_tower.encoder.layers.2.mlp.fc1.weight", "model.vision_tower.encoder.layers.2"),
        ("model.embed_tokens.weight", "model.embed_tokens"),
        ("lm_head.weight", "lm_head"),
        ("bias", "bias"),
    ],
)
def test_layer_key_on_realistic_names(name: str, group: str) -> None:
    assert layer_key(name) == group


def test_grouping_rows_and_totals() -> None:
    rng = _rng(11)
    names = [
        "model.layers.0.mlp.up_proj.weight",
        "model.layers.0.self_attn.q_proj.weight",
        "model.layers.1.mlp.up_proj.weight",
        "model.layers.10.mlp.up_proj.weight",
        "model.embed_tokens.weight",
    ]
    V = {n: torch.randn(8, 6, generator=torch.Generator().manual_seed(i)) for i, n in enumerate(names)}
    U = {n: torch.as_tensor(rng.standard_normal((8, 6)), dtype=torch.float32) for n in names}
    U["model.layers.0.rotary.inv_freq_index"] = torch.arange(4)  # an integer buffer: skipped
    V["model.layers.0.rotary.inv_freq_index"] = torch.arange(4)
    r = update_projection(U, V, frac=0.5)
    rows = r.rows()
    assert [row["group"] for row in rows] == [
        "model.layers.0",
        "model.layers.1",
        "model.layers.10",
        "model.embed_tokens",
        "total",
    ]
    assert rows[0]["n_tensors"] == 2 and r.n_tensors == 5
    assert sum(row["energy_u"] for row in rows[:-1]) == pytest.approx(rows[-1]["energy_u"])
    energy_u = sum(float((u.double() ** 2).sum()) for u in U.values() if u.is_floating_point())
    assert rows[-1]["energy_u"] == pytest.approx(energy_u, rel=1e-6)
    assert r.energy_removed == pytest.approx(r.energy_u * (1 - r.energy_kept), rel=1e-5)  # Pythagoras
    assert "groups" not in r.as_dict()
    assert len(update_projection(U, V, group_by="tensor").groups) == 5
    assert [g["group"] for g in update_projection(U, V, group_by="none").groups] == ["all"]
    d = diagnose("update_projection", U, V, frac=0.5)
    assert d.value == pytest.approx(r.value)


def test_projection_input_errors() -> None:
    rng = _rng(12)
    a, b = rng.standard_normal((4, 3)), rng.standard_normal((4, 3))
    with pytest.raises(ValueError, match="no tensor"):
        update_projection({"x": a, "y": a}, {"x": b})
    with pytest.raises(ValueError, match="shape"):
        update_projection({"x": a}, {"x": b[:, :2]})
    with pytest.raises(TypeError, match="both"):
        update_projection({"x": a}, b)
    with pytest.raises(ValueError, match="group_by"):
        update_projection(a, b, group_by="block")
    with pytest.raises(ValueError, match="layer_pattern"):
        update_projection(a, b, layer_pattern="(")


def test_random_controls() -> None:
    V = {"a": torch.zeros(5, 3), "b": torch.zeros(7)}
    G = gaussian_like(V, seed=1)
    assert {k: tuple(t.shape) for k, t in G.items()} == {"a": (5, 3), "b": (7,)}
    assert torch.equal(G["a"], gaussian_like(V, seed=1)["a"])
    Q = random_subspace(9, 4, seed=2)
    np.testing.assert_allclose(Q.T @ Q, np.eye(4), atol=1e-12)
    with pytest.raises(ValueError):
        random_subspace(3, 4)
