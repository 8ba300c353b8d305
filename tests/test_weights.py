"""alignkit.weights: permutation specs from the module graph, Git Re-Basin matching, barriers, merging, diagnostics.

Models are built here (the zoo's shapes: an MLP with 3 hidden layers, a CNN of 6 conv-BN-ReLU blocks); inputs are
the bundled Fashion-MNIST sample. References are independent: brute force over all permutations, dense formulas
(np.corrcoef, plain interpolation and cross-entropy), and the statistics of the eval-mode network recomputed.
"""

from __future__ import annotations

import copy
import itertools

import numpy as np
import pytest
import torch
from torch import nn

from alignkit.data.samples import fashion_mnist_sample
from alignkit.weights import (
    activation_costs,
    apply_permutation,
    interpolate,
    interpolation_barrier,
    l2_distance,
    match,
    merge,
    permutation_spec,
    reset_bn_stats,
    singular_values,
    singular_vector_alignment,
)
from alignkit.weights.matching import objective


@pytest.fixture(autouse=True)
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def images() -> tuple[torch.Tensor, torch.Tensor]:
    ds = fashion_mnist_sample()
    x = torch.from_numpy(np.stack(ds.items())).float().div(255).unsqueeze(1)
    return x, torch.from_numpy(ds.labels)


def mlp(seed: int = 0, width: int = 32, nested: bool = False, act: type[nn.Module] = nn.ReLU) -> nn.Sequential:
    torch.manual_seed(seed)
    hidden = [nn.Linear(784, width), act(), nn.Linear(width, width), act(), nn.Linear(width, width), act()]
    body = [nn.Sequential(*hidden[:2]), nn.Sequential(*hidden[2:])] if nested else hidden
    return nn.Sequential(nn.Flatten(), *body, nn.Linear(width, 10)).eval()


def cnn(seed: int = 0, width: int = 8, global_pool: bool = True) -> nn.Sequential:
    """(Conv 3×3 no bias, BN, ReLU)×6, MaxPool after every 2nd block; global pool (or Flatten of the 3×3 map)."""
    torch.manual_seed(seed)
    layers: list[nn.Module] = []
    c = 1
    for i in range(6):
        layers += [nn.Conv2d(c, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU()]
        if i % 2 == 1:
            layers.append(nn.MaxPool2d(2))
        c = width
    head = (
        [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, 10)]
        if global_pool
        else [nn.Flatten(), nn.Linear(width * 9, 10)]
    )
    model = nn.Sequential(*layers, *head)
    with torch.no_grad():  # non-trivial BN parameters and statistics, so a wrong BN permutation shows
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0, 0.1)
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    return model.eval()


def random_perms(model: nn.Module, seed: int = 1) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {name: torch.randperm(n, generator=g) for name, n in permutation_spec(model).groups.items()}


def same_state(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


# ------------------------------------------------------------------------------------------ spec


def test_spec_mlp_groups_and_axes():
    spec = permutation_spec(mlp())
    assert spec.groups == {"1": 32, "3": 32, "5": 32}  # hidden layers only; the output layer 7 is not permuted
    assert spec.axes["1.weight"] == (("1", 1), None)  # input axis (pixels) not permuted
    assert spec.axes["3.weight"] == (("3", 1), ("1", 1))
    assert spec.axes["7.weight"] == (None, ("5", 1)) and spec.axes["7.bias"] == (None,)


def test_spec_cnn_bn_and_flatten_blocks():
    spec = permutation_spec(cnn(global_pool=False))
    assert len(spec.groups) == 6
    assert spec.axes["1.running_var"] == (("0", 1),)
    assert spec.axes["1.num_batches_tracked"] == ()
    assert spec.axes["22.weight"] == (None, ("17", 9))  # Flatten of a 3×3 map: blocks of 9 inputs per channel
    assert "1.running_mean" not in spec.params and "1.weight" in spec.params
    assert permutation_spec(cnn()).axes["23.weight"] == (None, ("17", 1))  # after the global pool


def test_spec_nested_sequentials_flattened():
    spec = permutation_spec(mlp(nested=True))
    assert spec.groups == {"1.0": 32, "2.0": 32, "2.2": 32}
    assert spec.axes["2.2.weight"] == (("2.2", 1), ("2.0", 1))


@pytest.mark.parametrize(
    ("bad", "index", "kind"),
    [
        (nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.LSTM(8, 8), nn.Linear(8, 2)), 2, "LSTM"),
        (nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Linear(4, 2)), 2, "Linear"),  # no Flatten
        (nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten(), nn.Linear(10, 2)), 2, "Linear"),  # 10 not a multiple of 4
        (nn.Sequential(nn.Conv2d(1, 4, 3), nn.Conv2d(4, 4, 3, groups=2), nn.Flatten(), nn.Linear(4, 2)), 1, "Conv2d"),
        (nn.Sequential(nn.Linear(4, 8), nn.Flatten(0), nn.Linear(8, 2)), 1, "Flatten"),
    ],
)
def test_spec_names_the_first_unsupported_module(bad, index, kind):
    with pytest.raises(ValueError, match=rf"module {index} \('{index}', {kind}\)"):
        permutation_spec(bad)


def test_spec_needs_a_sequential():
    with pytest.raises(ValueError, match="Sequential"):
        permutation_spec(nn.Linear(3, 3))


# ------------------------------------------------------------------------------------------ same function


@pytest.mark.parametrize("make", [mlp, cnn, lambda: cnn(global_pool=False), lambda: mlp(nested=True)])
def test_permuted_model_computes_the_same_function(make, images):
    model = make()
    permuted = apply_permutation(model, random_perms(model))
    assert not same_state(model, permuted)
    x = images[0][:200]
    with torch.no_grad():
        assert (model(x) - permuted(x)).abs().max().item() <= 1e-5


def test_apply_permutation_rejects_bad_perms():
    model = mlp()
    perms = random_perms(model)
    with pytest.raises(ValueError, match="missing"):
        apply_permutation(model, {k: v for k, v in perms.items() if k != "3"})
    with pytest.raises(ValueError, match="not a permutation"):
        apply_permutation(model, {**perms, "3": torch.zeros(32, dtype=torch.long)})


# ------------------------------------------------------------------------------------------ weight matching


@pytest.mark.parametrize("make", [mlp, cnn, lambda: cnn(global_pool=False)])
def test_weight_matching_recovers_a_planted_permutation(make):
    model = make()
    res = match(model, apply_permutation(model, random_perms(model)))
    assert res.converged
    assert same_state(res.model, model)


def test_matching_a_model_to_itself_gives_identity():
    model = cnn()
    res = match(model, model)
    assert all(torch.equal(p, torch.arange(p.numel())) for p in res.perms.values())
    assert res.iterations == 1 and res.converged


def test_objective_is_monotone_and_reported_correctly():
    a, b = cnn(seed=1, width=16), cnn(seed=2, width=16)
    res = match(a, b, seed=3)
    obj = res.objective
    assert len(obj) == res.iterations + 1 >= 3
    assert all(later >= earlier - 1e-9 for earlier, later in itertools.pairwise(obj))
    assert obj[-1] > obj[0]
    # the reported value is Σ⟨W_a, π(W_b)⟩ over the parameters, computed densely from the returned model
    pairs = zip(a.parameters(), res.model.parameters(), strict=True)
    dense = sum(float((pa.detach().double() * pb.detach().double()).sum()) for pa, pb in pairs)
    assert obj[-1] == pytest.approx(dense, rel=1e-10)


def test_single_group_weight_matching_is_the_brute_force_optimum():
    torch.manual_seed(4)
    a = nn.Sequential(nn.Linear(3, 6), nn.ReLU(), nn.Linear(6, 2)).eval()
    b = nn.Sequential(nn.Linear(3, 6), nn.ReLU(), nn.Linear(6, 2)).eval()
    spec = permutation_spec(a)
    sd_a, sd_b = a.state_dict(), b.state_dict()
    best = max(objective(spec, sd_a, sd_b, {"0": torch.tensor(p)}) for p in itertools.permutations(range(6)))
    res = match(a, b)
    assert res.objective[-1] == pytest.approx(best, rel=1e-12)


# ------------------------------------------------------------------------------------------ activation / STE


def test_activation_costs_are_correlations(images):
    a, b = mlp(seed=1), mlp(seed=2)
    x = images[0][:300]
    spec = permutation_spec(a)
    costs = activation_costs(spec, a, b, x, batch_size=128)
    with torch.no_grad():
        ha, hb = a[:3](x).numpy().astype(np.float64), b[:3](x).numpy().astype(np.float64)  # after the first ReLU
    live_a, live_b = ha.std(0) > 0, hb.std(0) > 0
    ref = np.corrcoef(ha[:, live_a].T, hb[:, live_b].T)[: live_a.sum(), live_a.sum() :]
    np.testing.assert_allclose(costs["1"].numpy()[np.ix_(live_a, live_b)], ref, atol=1e-9)
    assert np.all(costs["1"].numpy()[~live_a] == 0)


def test_activation_matching_recovers_a_planted_permutation(images):
    model = mlp(seed=5, act=nn.GELU)  # no dead units (a dead ReLU unit correlates 0 with everything: ties)
    res = match(model, apply_permutation(model, random_perms(model)), "activation", images[0][:300])
    assert same_state(res.model, model)
    assert all(r["after"] >= r["before"] for r in res.trace)


def test_ste_matching_recovers_a_planted_permutation(images):
    model = mlp(seed=6, width=16)
    data = (images[0][:256], images[1][:256])
    res = match(model, apply_permutation(model, random_perms(model)), "ste", data, epochs=1, batch_size=128)
    assert same_state(res.model, model)
    assert len(res.trace) == 2 and all(np.isfinite(r["loss"]) for r in res.trace)


def test_ste_and_activation_results_compute_b_function(images):
    a, b = cnn(seed=1), cnn(seed=2)
    x, y = images[0][:128], images[1][:128]
    for method in ("activation", "ste"):
        res = match(a, b, method, (x, y), epochs=1, batch_size=64)
        with torch.no_grad():
            assert (res.model(x) - b(x)).abs().max().item() <= 1e-5


# ------------------------------------------------------------------------------------------ barrier and BN reset


def test_barrier_of_a_model_with_itself_is_zero(images):
    data = (images[0][:200], images[1][:200])
    for model in (mlp(), cnn()):
        for reset in (False, True):
            res = interpolation_barrier(model, copy.deepcopy(model), data, steps=5, reset_bn=reset)
            assert res.loss_barrier == pytest.approx(0, abs=1e-12)
            assert res.accuracy_barrier == pytest.approx(0, abs=1e-12)
            assert np.ptp(res.loss) == pytest.approx(0, abs=1e-12)


def test_barrier_matches_a_dense_computation(images):
    a, b = mlp(seed=1), mlp(seed=2)
    x, y = images[0][:300], images[1][:300]
    res = interpolation_barrier(a, b, (x, y), steps=5)
    assert res.bn_reset.startswith("none")
    losses, errors = [], []
    for lam in np.linspace(0, 1, 5):
        m = copy.deepcopy(a)
        for pm, pa, pb in zip(m.parameters(), a.parameters(), b.parameters(), strict=True):
            pm.data = torch.lerp(pa.data.double(), pb.data.double(), float(lam)).float()
        with torch.no_grad():
            logits = m(x).double()
        losses.append(float(nn.functional.cross_entropy(logits, y)))
        errors.append(float((logits.argmax(1) != y).double().mean()))
    losses, errors = np.array(losses), np.array(errors)
    lam = np.linspace(0, 1, 5)
    np.testing.assert_allclose(res.loss, losses, rtol=1e-5)
    assert res.loss_barrier == pytest.approx(np.max(losses - ((1 - lam) * losses[0] + lam * losses[-1])), abs=1e-5)
    assert res.accuracy_barrier == pytest.approx(np.max(errors - ((1 - lam) * errors[0] + lam * errors[-1])), abs=1e-9)
    rows = res.to_rows()
    assert [r["lambda"] for r in rows] == pytest.approx(list(lam)) and rows[0]["loss_gap"] == 0


def test_bn_reset_gives_the_eval_networks_own_statistics(images):
    x = images[0][:300]
    model = cnn(seed=3)
    reset = reset_bn_stats(model, x, batch_size=64)
    h = x
    with torch.no_grad():
        for m in reset:
            if isinstance(m, nn.BatchNorm2d):  # its input over all rows, with the layers before already reset
                torch.testing.assert_close(m.running_mean, h.mean((0, 2, 3)), atol=1e-5, rtol=1e-5)
                torch.testing.assert_close(m.running_var, h.var((0, 2, 3)), atol=1e-5, rtol=1e-4)
            h = m(h)
    bns = [(p, q) for p, q in zip(model.modules(), reset.modules(), strict=True) if isinstance(p, nn.BatchNorm2d)]
    assert all(not torch.allclose(p.running_mean, q.running_mean) for p, q in bns)  # statistics did change
    assert all(torch.equal(p.weight, q.weight) for p, q in bns)  # parameters did not


def test_bn_reset_changes_nothing_without_batchnorm(images):
    model = mlp()
    assert same_state(reset_bn_stats(model, images[0][:100]), model)
    res = interpolation_barrier(model, mlp(seed=1), (images[0][:100], images[1][:100]), steps=3, reset_bn=True)
    assert res.bn_reset == "none (no BatchNorm)"


def test_bn_reset_is_reported_and_changes_the_path(images):
    a, b = cnn(seed=1), cnn(seed=2)
    data = (images[0][:200], images[1][:200])
    on = interpolation_barrier(a, b, data, steps=3, reset_bn=True, bn_data=images[0][500:700])
    off = interpolation_barrier(a, b, data, steps=3, reset_bn=False)
    assert on.bn_reset == "reset" and "bn_data" in on.bn_detail and off.bn_reset == "interpolated"
    assert not np.allclose(on.loss, off.loss)


def test_interpolate_endpoints():
    a, b = cnn(seed=1), cnn(seed=2)
    assert same_state(interpolate(a, b, 0.0), a)
    torch.testing.assert_close(interpolate(a, b, 1.0).state_dict(), b.state_dict(), rtol=0, atol=1e-6)


# ------------------------------------------------------------------------------------------ merging


@pytest.mark.parametrize("mode", ["reference", "cyclic"])
@pytest.mark.parametrize("make", [mlp, cnn])
def test_merging_permuted_copies_returns_the_model(make, mode, images):
    model = make()
    copies = [model] + [apply_permutation(model, random_perms(model, seed=s)) for s in (11, 12, 13)]
    res = merge(copies, mode=mode)
    assert res.converged and len(res.perms) == 4
    x = images[0][:200]
    with torch.no_grad():
        assert (res.model(x) - model(x)).abs().max().item() <= 1e-5


def test_merge_bn_reset_option(images):
    models = [cnn(seed=s) for s in (1, 2, 3)]
    plain = merge(models)
    reset = merge(models, reset_bn=True, bn_data=images[0][:100])
    assert plain.bn_reset.startswith("not reset") and reset.bn_reset.startswith("reset on 100")
    assert merge([mlp(1), mlp(2)], reset_bn=True, data=images[0][:50]).bn_reset == "none (no BatchNorm)"


def test_cyclic_activation_merge_runs(images):
    models = [mlp(seed=s, width=16) for s in (1, 2, 3)]
    res = merge(models, "activation", "cyclic", images[0][:200], max_rounds=5)
    assert res.rounds >= 1 and len(res.trace) == res.rounds


# ------------------------------------------------------------------------------------------ Ito et al. diagnostics


def test_singular_values_are_permutation_invariant():
    for model in (mlp(), cnn(global_pool=False)):
        before = singular_values(model)
        after = singular_values(apply_permutation(model, random_perms(model)))
        assert [(r["layer"], r["index"]) for r in before] == [(r["layer"], r["index"]) for r in after]
        np.testing.assert_allclose([r["sigma"] for r in after], [r["sigma"] for r in before], rtol=1e-9, atol=1e-12)
    conv = next(r for r in singular_values(cnn()) if r["layer"] == "3")
    assert conv["shape"] == "8×72"  # out × (in·kh·kw)


def test_l2_distance_rows_and_whole_vector():
    a, b = cnn(seed=1), cnn(seed=2)
    rows = l2_distance(a, b)
    whole = torch.cat(
        [
            (pa.detach().double() - pb.detach().double()).flatten()
            for pa, pb in zip(a.parameters(), b.parameters(), strict=True)
        ]
    )
    assert rows[-1]["layer"] == "all"
    assert rows[-1]["l2"] == pytest.approx(float(whole.norm()), rel=1e-10)
    assert sum(r["l2"] ** 2 for r in rows[:-1]) == pytest.approx(rows[-1]["l2"] ** 2, rel=1e-10)
    assert {r["layer"] for r in rows[:-1]} == {"0", "1", "3", "4", "7", "8", "10", "11", "14", "15", "17", "18", "23"}
    # a pure relabelling moves the weights but a match brings them back
    permuted = apply_permutation(a, random_perms(a))
    assert l2_distance(a, permuted)[-1]["l2"] > 0
    assert l2_distance(a, match(a, permuted).model)[-1]["l2"] == 0


def test_singular_vector_alignment():
    a = mlp(seed=1)
    self_rows = singular_vector_alignment(a, a)
    for r in self_rows:
        assert r["weighted_alignment"] == pytest.approx(1) and r["trace_ratio"] == pytest.approx(1)
    permuted = apply_permutation(a, random_perms(a))
    scrambled = singular_vector_alignment(a, permuted)
    assert all(r["trace_ratio"] < 0.5 for r in scrambled[:3])  # hidden layers: the singular vectors moved
    restored = singular_vector_alignment(a, match(a, permuted).model)
    assert all(r["weighted_alignment"] == pytest.approx(1) for r in restored)
    per = singular_vector_alignment(a, mlp(seed=2), per_direction=True)
    first = [r for r in per if r["layer"] == "1"]
    assert len(first) == 32 and all(-1 - 1e-9 <= r["alignment"] <= 1 + 1e-9 for r in first)
    assert first[0]["sigma_a"] >= first[-1]["sigma_a"]


# ------------------------------------------------------------------------------------------ bad input


def test_bad_inputs(images):
    x, y = images[0][:64], images[1][:64]
    a, b = mlp(), mlp(seed=1)
    with pytest.raises(ValueError, match="model_b is in training mode"):
        match(a, copy.deepcopy(b).train())
    with pytest.raises(ValueError, match="different architectures"):
        match(a, cnn())
    with pytest.raises(ValueError, match=r"differ in shape at '1\.weight'"):
        match(a, mlp(width=16))
    with pytest.raises(ValueError, match="method must be one of"):
        match(a, b, "magic")
    with pytest.raises(ValueError, match="needs data"):
        match(a, b, "activation")
    with pytest.raises(ValueError, match="data inputs of shape"):
        match(a, b, "activation", torch.zeros(8, 3, 5))
    with pytest.raises(ValueError, match="floating point"):
        match(a, b, "activation", (x * 255).to(torch.uint8))
    with pytest.raises(ValueError, match="labels must be 1-D"):
        match(a, b, "ste", (x, y[:10]))
    with pytest.raises(ValueError, match="data must be an"):
        interpolation_barrier(a, b, x)
    with pytest.raises(ValueError, match="labels go up to"):
        interpolation_barrier(a, b, (x, y + 10))
    with pytest.raises(ValueError, match="bn_data inputs of shape"):
        interpolation_barrier(cnn(), cnn(seed=1), (x, y), bn_data=torch.zeros(4, 3, 8, 8))
    with pytest.raises(ValueError, match="steps must be"):
        interpolation_barrier(a, b, (x, y), steps=1)
    with pytest.raises(ValueError, match="at least two models"):
        merge([a])
    with pytest.raises(ValueError, match=r"models\[0\] and models\[2\] differ in shape"):
        merge([a, b, mlp(width=16)])
    with pytest.raises(ValueError, match="mode must be one of"):
        merge([a, b], mode="star")
    with pytest.raises(ValueError, match="max_iter"):
        match(a, b, max_iter=0)
    with pytest.raises(TypeError, match=r"model_a must be a torch\.nn\.Module"):
        match("model", b)
