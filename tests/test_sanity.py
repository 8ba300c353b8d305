"""The sanity benchmark's analyses on data with known structure: layer identification (Kornblith et al. 2019),
the ReSi-style output-correlation and augmentation tests, and the capacity-vs-control test."""

import itertools

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.spatial.distance import jensenshannon
from scipy.stats import spearmanr

import alignkit
from alignkit import metrics
from alignkit.sanity import (
    augmentation_test,
    capacity_control,
    default_measures,
    layer_identification,
    output_correlation_test,
    plot_augmentation,
    plot_capacity_control,
    plot_layer_identification,
    plot_output_correlation,
)
from alignkit.sanity.resi import mantel_spearman


def _rotation(g, d):
    return np.linalg.qr(g.standard_normal((d, d)))[0]


def _zoo(g, n_models=4, n_layers=4, n=150, d=12, noise=0.1, shared=True):
    """Layer l of every model is a random rotation of a latent Z_l (one per layer) plus small noise; with
    ``shared=False`` every layer of every model is independent noise."""
    Z = [g.standard_normal((n, d)) for _ in range(n_layers)]
    models = []
    for _ in range(n_models):
        if shared:
            models.append(
                {f"l{l}": Z[l] @ _rotation(g, d) + noise * g.standard_normal((n, d)) for l in range(n_layers)}
            )
        else:
            models.append({f"l{l}": g.standard_normal((n, d)) for l in range(n_layers)})
    return models


def _mlp(seed, widths=(10, 32, 32, 32, 5)):
    torch.manual_seed(seed)
    layers = []
    for a, b in itertools.pairwise(widths):
        layers += [torch.nn.Linear(a, b), torch.nn.ReLU()]
    return torch.nn.Sequential(*layers[:-1]).eval()


def _activations(net, x):
    """Every hidden ReLU output (in network order) and the logits."""
    out, h = {}, torch.as_tensor(x, dtype=torch.float32)
    with torch.no_grad():
        for i, module in enumerate(net):
            h = module(h)
            if isinstance(module, torch.nn.ReLU):
                out[f"relu{i}"] = h.numpy().copy()
    return out, h.numpy()


def _permuted_copy(net, seed, jitter=0.02):
    """The same function with each hidden layer's units permuted (plus a little weight noise): a network 'trained
    from another seed' that is the same up to permutation, as Kornblith's test assumes."""
    g = torch.Generator().manual_seed(seed)
    new = _mlp(0)
    new.load_state_dict(net.state_dict())
    linears = [m for m in new if isinstance(m, torch.nn.Linear)]
    with torch.no_grad():
        for a, b in itertools.pairwise(linears):
            p = torch.randperm(a.out_features, generator=g)
            a.weight.copy_(a.weight[p]), a.bias.copy_(a.bias[p]), b.weight.copy_(b.weight[:, p])
        for m in linears:
            m.weight.add_(jitter * torch.randn(m.weight.shape, generator=g))
    return new


# ------------------------------------------------------------------------------------ layer identification


def test_shared_latents_identify_layers_and_independent_layers_are_at_chance():
    g = np.random.default_rng(0)
    res = layer_identification(_zoo(g), ["cka", "cka?debiased=false", "shape_distance", "mutual_knn?k=10"])
    acc = res.accuracy.set_index("measure")["accuracy"]
    assert (acc == 1.0).all()  # shape_distance too: a distance, negated before the argmax
    assert res.chance == 0.25 and (res.accuracy["chance"] == 0.25).all()
    assert len(res.trials) == 4 * 4 * 3 * 4 and (res.trials["margin"] > 0).all()

    null = layer_identification(_zoo(g, n_models=5, n_layers=5, shared=False), ["cka", "procrustes"])
    acc = null.accuracy.set_index("measure")["accuracy"]
    assert len(null.trials) == 2 * 5 * 4 * 5
    assert np.all(np.abs(acc - 0.2) < 0.12), acc  # 100 trials per measure around chance 1/5


def test_permuted_random_torch_networks_identify_layers():
    """Copies of one random MLP with permuted hidden units: CKA finds every layer, plain retrieval between the
    unaligned coordinates does not."""
    net = _mlp(1)
    x = np.random.default_rng(1).standard_normal((120, 10))
    models = {f"seed{s}": _activations(_permuted_copy(net, s), x)[0] for s in range(3)}
    res = layer_identification(models, ["cka", "retrieval_alignment"])
    acc = res.accuracy.set_index("measure")["accuracy"]
    assert acc["cka"] == 1.0 and acc["retrieval_alignment"] < 1.0
    assert res.models == ["seed0", "seed1", "seed2"] and res.layers == ["relu1", "relu3", "relu5"]
    assert set(res.trials["model_a"]) == {"seed0", "seed1", "seed2"}


@pytest.mark.parametrize("measure", ["cknna?k=5", "pwcca"])
def test_asymmetric_measures_are_symmetrised(measure):
    g = np.random.default_rng(2)
    models = _zoo(g, n_models=3, n_layers=2, n=60, d=6, noise=1.0)
    assert not metrics.get(measure).symmetric
    res = layer_identification(models, [measure])
    blocks = res.scores[alignkit.metrics.measure_spec(measure).id]
    layers = list(models[0])
    for i, j in itertools.permutations(range(3), 2):
        for l, m in itertools.product(range(2), repeat=2):
            x, y = models[i][layers[l]], models[j][layers[m]]
            manual = (alignkit.measure(measure, x, y) + alignkit.measure(measure, y, x)) / 2
            assert blocks[i, j, l, m] == pytest.approx(manual, abs=1e-10)
    assert np.isnan(blocks[0, 0]).all()
    row = res.trials.query("model_a == '1' and model_b == '2' and layer == 'l0'").iloc[0]
    assert row["score"] == pytest.approx(blocks[1, 2, 0, 0])
    assert bool(res.accuracy["symmetrised"].iloc[0])


def test_symmetric_measure_cells_equal_the_direct_measure_and_sample_matches_atlas():
    g = np.random.default_rng(3)
    models = _zoo(g, n_models=3, n_layers=2, n=90)
    res = layer_identification(models, ["cka"], sample=40, seed=7)
    assert res.n_items == 40 and (res.accuracy["n_items"] == 40).all()
    direct = alignkit.atlas(models[2], models[0], "cka", sample=40, seed=7).scores
    np.testing.assert_allclose(res.scores["cka"][2, 0], direct, atol=1e-12)
    np.testing.assert_allclose(res.scores["cka"][0, 2], direct.T, atol=1e-12)
    assert not bool(res.accuracy["symmetrised"].iloc[0])


def test_the_low_memory_route_gives_the_same_scores(monkeypatch):
    """Where the prepared layers of one model's comparisons would not fit in memory, each model pair gets its own
    atlas: the same numbers."""
    import alignkit.sanity._common as common

    g = np.random.default_rng(17)
    models = _zoo(g, n_models=3, n_layers=2, n=60, d=6, noise=1.0)
    ids = ["cka", "cknna?k=5", "procrustes"]
    rows = layer_identification(models, ids)
    monkeypatch.setattr(common, "STACK_BYTES", 0)
    pairs = layer_identification(models, ids)
    assert list(rows.accuracy["route"]) == ["rows"] * 3
    assert list(pairs.accuracy["route"]) == ["pairs", "pairs", "rows"]  # procrustes prepares nothing
    for m in ids:
        np.testing.assert_allclose(pairs.scores[m], rows.scores[m], atol=1e-12)


def test_ties_count_their_expectation_and_failures_are_recorded():
    g = np.random.default_rng(4)
    models = _zoo(g, n_models=3, n_layers=4, n=40)

    @metrics.register("_sanity_constant", family="test", range=(0.0, 1.0), cost="O(1)", description="always 0.5")
    def constant(X, Y):
        return 0.5

    try:
        with pytest.warns(UserWarning, match="retrieval_mrr"):  # widths differ: cannot run, named in a warning
            models[0]["l1"] = np.hstack([models[0]["l1"], models[0]["l1"]])
            res = layer_identification(models, ["_sanity_constant", "retrieval_mrr", "cka"])
    finally:
        metrics.MEASURES.remove("_sanity_constant")
    acc = res.accuracy.set_index("measure")
    assert acc.loc["_sanity_constant", "accuracy"] == pytest.approx(0.25)  # every row a 4-way tie: 1/4 each
    assert (res.trials.query("measure == '_sanity_constant'")["n_tied"] == 4).all()
    assert acc.loc["retrieval_mrr", "status"] == "skipped" and "same dimension" in acc.loc["retrieval_mrr", "reason"]
    assert np.isnan(acc.loc["retrieval_mrr", "accuracy"]) and res.skipped.keys() == {"retrieval_mrr"}
    assert acc.loc["cka", "accuracy"] == 1.0
    assert list(res.ranking()["measure"]) == ["cka", "_sanity_constant"]


def test_default_measures_cover_the_registry_with_variants():
    ids = default_measures()
    assert {alignkit.metrics.measure_spec(i).name for i in ids} == set(alignkit.metrics.names())
    needed = ("cka", "cka?debiased=false", "cka?kernel=rbf_median&threshold=0.2", "svcca?keep=10", "svcca",
              "mutual_knn?k=5", "mutual_knn?k=50", "cycle_knn?k=10", "cknna?k=50", "cca?summary=mean_sq")  # fmt: skip
    for measure in needed:
        assert measure in ids
    assert len(ids) == len(set(ids))


def test_layer_identification_bad_inputs():
    g = np.random.default_rng(5)
    models = _zoo(g, n_models=2, n_layers=2, n=30, d=4)
    with pytest.raises(ValueError, match="at least 2 models"):
        layer_identification(models[:1], ["cka"])
    with pytest.raises(ValueError, match="same items"):
        layer_identification([models[0], {"l0": models[1]["l0"], "l1": models[1]["l1"][:20]}], ["cka"])
    with pytest.raises(ValueError, match=r"same layers.*missing \['l1'\], extra \['x'\]"):
        layer_identification([models[0], {"l0": models[1]["l0"], "x": models[1]["l1"]}], ["cka"])
    with pytest.raises(ValueError, match="another order"):
        layer_identification([models[0], {"l1": models[1]["l1"], "l0": models[1]["l0"]}], ["cka"])
    with pytest.raises(ValueError, match="at least 2 layers"):
        layer_identification([{"l0": models[0]["l0"]}, {"l0": models[1]["l0"]}], ["cka"])
    with pytest.raises(TypeError, match="dict layer name"):
        layer_identification([models[0], models[1]["l0"]], ["cka"])
    with pytest.raises(ValueError, match="twice"):
        layer_identification(models, ["cka", "cka?debiased=true"])
    with pytest.raises(ValueError, match="empty"):
        layer_identification(models, [])
    with pytest.raises(ValueError, match="unknown measure"):
        layer_identification(models, ["ckaa"])
    with pytest.raises(ValueError, match="sample"):
        layer_identification(models, ["cka"], sample=1)
    with pytest.raises(ValueError, match="NaN"):
        layer_identification([models[0], {"l0": np.full((30, 4), np.nan), "l1": models[1]["l1"]}], ["cka"])


# --------------------------------------------------------------------------------------- output correlation


def _noisy_models(g, sigmas, n=200, d=8, classes=4):
    base, W = g.standard_normal((n, d)), g.standard_normal((d, classes))
    reps = [base + s * g.standard_normal((n, d)) for s in sigmas]
    return base, W, reps


def test_output_correlation_sign_on_constructed_cases():
    g = np.random.default_rng(6)
    sigmas = [0.1, 0.3, 0.6, 1.0, 1.6]
    base, W, reps = _noisy_models(g, sigmas)
    outputs = [r @ W for r in reps]  # outputs follow the representations: more alike reps, more alike outputs
    res = output_correlation_test(reps, outputs, ["cka", "shape_distance"], labels=(base @ W).argmax(1))
    rho = res.correlations.set_index(["measure", "output_measure"])["rho"]
    assert rho["cka", "agreement"] > 0.8 and rho["cka", "jsd"] > 0.8 and rho["shape_distance", "agreement"] > 0.8
    assert set(res.correlations["output_measure"]) == {"agreement", "jsd", "accuracy"}

    # outputs from a second latent with the noise levels reversed: the most similar representations now belong to
    # the models whose outputs agree least
    _, W2, rev = _noisy_models(g, sigmas[::-1])
    res = output_correlation_test(reps, [r @ W2 for r in rev], ["cka"])
    rho = res.correlations.set_index("output_measure")["rho"]
    assert rho["agreement"] < -0.5 and rho["jsd"] < -0.5
    assert set(res.correlations["output_measure"]) == {"agreement", "jsd"}  # no labels: no accuracy test


def test_output_pairs_agreement_jsd_and_mantel_against_references():
    g = np.random.default_rng(7)
    _, W, reps = _noisy_models(g, [0.2, 0.5, 1.0, 2.0], n=60)
    logits = [r @ W for r in reps]
    names = ["a", "b", "c", "d"]
    res = output_correlation_test(dict(zip(names, reps, strict=True)), dict(zip(names, logits, strict=True)), ["cka"],
                                  n_perm=100)  # fmt: skip
    probs = [np.exp(z - z.max(1, keepdims=True)) / np.exp(z - z.max(1, keepdims=True)).sum(1, keepdims=True)
             for z in logits]  # fmt: skip
    row = res.pairs.query("model_a == 'a' and model_b == 'c'").iloc[0]
    assert row["agreement"] == pytest.approx(np.mean(logits[0].argmax(1) == logits[2].argmax(1)))
    assert row["jsd"] == pytest.approx(np.mean(jensenshannon(probs[0], probs[2], base=2, axis=1) ** 2))
    assert row["score"] == pytest.approx(alignkit.measure("cka", reps[0], reps[2]))
    # 4! - 1 = 23 <= 100 permutations: the Mantel p-value is exact, over all relabellings of the models
    sim = np.array([[alignkit.measure("cka", a, b) for b in reps] for a in reps])
    agree = np.array([[np.mean(a.argmax(1) == b.argmax(1)) for b in logits] for a in logits])
    iu = np.triu_indices(4, k=1)
    rho = spearmanr(sim[iu], agree[iu]).statistic
    perms = [spearmanr(sim[iu], agree[np.ix_(p, p)][iu]).statistic for p in itertools.permutations(range(4))]
    expected_p = np.mean(np.array(perms) >= rho - 1e-12)
    corr = res.correlations.set_index("output_measure")
    assert corr.loc["agreement", "rho"] == pytest.approx(rho)
    assert corr.loc["agreement", "p_value"] == pytest.approx(expected_p)
    assert corr.loc["agreement", "n_perm"] == 23
    # more models than exhaustive permutations: seeded draws, deterministic
    big = np.random.default_rng(8).random((9, 9))
    big = big + big.T
    assert mantel_spearman(big, big, 50, 3) == mantel_spearman(big, big, 50, 3)
    assert mantel_spearman(big, big, 50, 3)[1] == pytest.approx(1 / 51)


def test_output_correlation_bad_inputs():
    g = np.random.default_rng(9)
    _, W, reps = _noisy_models(g, [0.1, 0.5, 1.0], n=30)
    outs = [r @ W for r in reps]
    with pytest.raises(ValueError, match="at least 3 models"):
        output_correlation_test(reps[:2], outs[:2], ["cka"])
    with pytest.raises(ValueError, match="one array per model"):
        output_correlation_test(reps, outs[:2], ["cka"])
    with pytest.raises(ValueError, match="same number of classes"):
        output_correlation_test(reps, [outs[0], outs[1], outs[2][:, :2]], ["cka"])
    with pytest.raises(ValueError, match="probabilities"):
        output_correlation_test(reps, outs, ["cka"], probabilities=True)
    with pytest.raises(ValueError, match="same items"):
        output_correlation_test(reps, [outs[0], outs[1], outs[2][:20]], ["cka"])
    with pytest.raises(ValueError, match="labels"):
        output_correlation_test(reps, outs, ["cka"], labels=np.zeros(5))


# -------------------------------------------------------------------------------------------- augmentation


def test_augmentation_on_monotonically_degrading_representations():
    g = np.random.default_rng(10)
    clean = g.standard_normal((150, 8))
    E = g.standard_normal((150, 8))
    levels = [2.0, 0.0, 0.5, 1.0]  # any order: reported increasing
    noisy = [clean + s * E for s in levels]
    res = augmentation_test(clean, noisy, levels, ["cka", "procrustes", "shape_distance"])
    assert res.levels == [0.0, 0.5, 1.0, 2.0]
    assert (res.summary["rho"] == -1.0).all() and (res.summary["adjacent_ordered"] == 1.0).all()
    cka = res.scores.query("measure == 'cka'").sort_values("level")
    expected = [alignkit.measure("cka", clean, clean + s * E) for s in res.levels]
    np.testing.assert_allclose(cka["score"], expected, atol=1e-12)
    shape = res.scores.query("measure == 'shape_distance'")
    np.testing.assert_allclose(shape["similarity"], -shape["score"])  # a distance, negated


def test_augmentation_through_random_torch_networks_and_partial_order():
    """Noise on the inputs of two random MLPs: every hidden layer's representation drifts away from the clean one.
    A similarity that rises and falls gives the Spearman ρ and the adjacent-order fraction scipy would."""
    g = np.random.default_rng(11)
    x = g.standard_normal((120, 10))
    eps = g.standard_normal((120, 10))
    levels = [0.0, 0.3, 1.0, 3.0]
    nets = {"a": _mlp(2), "b": _mlp(3)}
    clean = {m: _activations(net, x)[0] for m, net in nets.items()}
    noisy = [{m: _activations(net, x + s * eps)[0] for m, net in nets.items()} for s in levels]
    res = augmentation_test(clean, noisy, levels, ["cka"])
    assert len(res.summary) == 6 and (res.summary["rho"] == -1.0).all()
    assert res.by_measure.loc[0, "mean_rho"] == -1.0 and res.by_measure.loc[0, "n_cases"] == 6

    clean1 = x
    wobbly = [x + s * eps for s in (0.0, 1.0, 0.5, 2.0)]  # similarity: high, low, middle, lowest
    res = augmentation_test({"in": clean1}, [{"in": w} for w in wobbly], [0, 1, 2, 3], ["cka"])
    sim = res.scores.sort_values("level")["similarity"].to_numpy()
    assert res.summary.loc[0, "rho"] == pytest.approx(spearmanr([0, 1, 2, 3], sim).statistic)
    assert res.summary.loc[0, "adjacent_ordered"] == pytest.approx(2 / 3)


def test_augmentation_bad_inputs():
    g = np.random.default_rng(12)
    x = g.standard_normal((30, 4))
    with pytest.raises(ValueError, match="one entry per level"):
        augmentation_test(x, [x, x], [0.0, 1.0, 2.0], ["cka"])
    with pytest.raises(ValueError, match="repeat"):
        augmentation_test(x, [x, x], [1.0, 1.0], ["cka"])
    with pytest.raises(ValueError, match="at least 2"):
        augmentation_test(x, [x], [1.0], ["cka"])
    with pytest.raises(ValueError, match="models and layers of clean"):
        augmentation_test({"a": x}, [{"a": x}, {"b": x}], [0.0, 1.0], ["cka"])
    with pytest.raises(ValueError, match="clean width"):
        augmentation_test(x, [x, x[:, :3]], [0.0, 1.0], ["cka"])
    with pytest.raises(ValueError, match="same items"):
        augmentation_test(x, [x, x[:20]], [0.0, 1.0], ["cka"])


# ----------------------------------------------------------------------------------------- capacity control

_FAST_MLP = {"max_epochs": 40, "patience": 5}


def test_capacity_control_trained_vs_unrelated_control():
    g = np.random.default_rng(13)
    n = 240
    z = g.standard_normal((n, 6))
    trained = z @ g.standard_normal((6, 12)) + 0.05 * g.standard_normal((n, 12))
    target = np.tanh(z @ g.standard_normal((6, 8)))
    control = g.standard_normal((n, 12))  # unrelated to the target
    res = capacity_control(trained, control, target, maps=("procrustes", "linear", "mlp-32"), seed=1, **_FAST_MLP)
    rows = res.rows.set_index(["source", "map"])
    for m in ("procrustes", "linear", "mlp-32"):
        assert abs(rows.loc[("random", m), "r2_test"]) < 0.15  # held-out stays at chance whatever the capacity
        assert rows.loc[("random", m), "top1_test"] < 0.1
    assert rows.loc[("trained", "linear"), "r2_test"] > 0.6 and rows.loc[("trained", "linear"), "top1_test"] > 0.3
    summary = res.summary.set_index("map")
    assert (summary["r2_test_selectivity"] > 0.4).all()
    assert res.maps == ["procrustes", "linear", "mlp-32"] and res.n_test == 72 and res.n_train == 168
    again = capacity_control(trained, control, target, maps=("procrustes", "linear", "mlp-32"), seed=1, **_FAST_MLP)
    pd.testing.assert_frame_equal(res.rows, again.rows)  # deterministic given the seed


def test_capacity_control_procrustes_r2_matches_a_dense_reference():
    g = np.random.default_rng(14)
    n, d = 100, 5
    x = g.standard_normal((n, d))
    y = x @ _rotation(g, d) * 2.0 + 0.5 * g.standard_normal((n, d)) + 3.0
    res = capacity_control(x, g.standard_normal((n, d)), y, maps=("procrustes",), test_fraction=0.3, seed=4)
    test = np.sort(np.random.default_rng(4).permutation(n)[:30])
    train = np.setdiff1d(np.arange(n), test)
    mx, my = x[train].mean(0), y[train].mean(0)
    U, S, Vt = np.linalg.svd((x[train] - mx).T @ (y[train] - my))
    s = S.sum() / ((x[train] - mx) ** 2).sum()
    pred = s * (x[test] - mx) @ (U @ Vt) + my
    r2 = 1 - ((y[test] - pred) ** 2).sum() / ((y[test] - my) ** 2).sum()
    assert res.rows.loc[0, "r2_test"] == pytest.approx(r2, abs=1e-10)


def test_capacity_control_a_unit_dead_on_the_training_rows_does_not_blow_up_the_mlp():
    """A ReLU unit that is zero on every training row but fires on a test row (seen on real MLP layers): the
    MLP's standardisation must not divide it by ~0 (held-out R² was -3e7 before)."""
    g = np.random.default_rng(16)
    n = 200
    x = np.maximum(g.standard_normal((n, 10)), 0.0)
    w = g.standard_normal((10, 6))
    w[3] = 0.0  # the target does not depend on the unit that dies
    y = x @ w
    slow = {"max_epochs": 400, "patience": 20}  # 2 steps per epoch on 140 rows
    res0 = capacity_control(x, x, y, maps=("mlp-16",), seed=2, **slow)
    test = np.sort(np.random.default_rng(2).permutation(n)[: round(0.3 * n)])
    x[:, 3] = 0.0
    x[test[0], 3] = 2.0  # dead in training, alive once at test time
    res = capacity_control(x, x, y, maps=("mlp-16",), seed=2, **slow)
    assert res.rows.loc[0, "r2_test"] > 0.5 and res0.rows.loc[0, "r2_test"] > 0.5


def test_capacity_control_bad_inputs():
    g = np.random.default_rng(15)
    x = g.standard_normal((60, 4))
    with pytest.raises(ValueError, match="unknown map"):
        capacity_control(x, x, x, maps=("mlp",))
    with pytest.raises(ValueError, match="repeat"):
        capacity_control(x, x, x, maps=("linear", "linear"))
    with pytest.raises(ValueError, match="same items"):
        capacity_control(x, x[:50], x, maps=("linear",))
    with pytest.raises(ValueError, match="test_fraction"):
        capacity_control(x, x, x, maps=("linear",), test_fraction=1.0)
    with pytest.raises(ValueError, match="too few rows"):
        capacity_control(x[:8], x[:8], x[:8], maps=("linear",))


# ------------------------------------------------------------------------------------ tables and figures


def test_tables_round_trip_to_parquet_and_plots_return_figures(tmp_path):
    g = np.random.default_rng(16)
    ident = layer_identification(_zoo(g, n_models=3, n_layers=3, n=50, d=4), ["cka", "procrustes"])
    _, W, reps = _noisy_models(g, [0.1, 0.5, 1.0], n=50)
    out = output_correlation_test(reps, [r @ W for r in reps], ["cka"])
    aug = augmentation_test(reps[0], reps, [0.1, 0.5, 1.0], ["cka"])
    cap = capacity_control(reps[0], reps[2], reps[1], maps=("linear", "mlp-8"), max_epochs=5)
    for result in (ident, out, aug, cap):
        for name, table in result.tables().items():
            path = tmp_path / f"{type(result).__name__}-{name}.parquet"
            table.to_parquet(path)
            pd.testing.assert_frame_equal(pd.read_parquet(path), table)

    fig = plot_layer_identification(ident)
    ax = fig.axes[0]
    assert len(ax.patches) == 2 and any(np.allclose(line.get_xdata(), 1 / 3) for line in ax.lines)
    assert len(plot_output_correlation(out).axes[0].patches) == 2  # one measure x (agreement, -JSD)
    assert len(plot_augmentation(aug).axes[0].lines) == 1
    fig = plot_capacity_control(cap, metric="top1_test")
    assert len(fig.axes[0].lines) == 3  # trained, control, chance
    with pytest.raises(ValueError, match="metric"):
        plot_capacity_control(cap, metric="r3")
