"""Atlas q-values (BH/BY over all cells), subsampling intervals of the best pair and final × final, distinct rows
per layer and ill-defined kNN cells: in the result, its rows and summary, the CLI and the report."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.stats import false_discovery_control
from typer.testing import CliRunner

import alignkit
from alignkit.cli import app
from alignkit.degenerate import DegenerateSpaceWarning
from alignkit.stats import bootstrap_ci
from fixtures_report import make_run_dir

runner = CliRunner()


def _layers(seed: int = 0, n: int = 120):
    """Three noisy views of a shared latent in A, two in B (the last of B is the clean one)."""
    rng = np.random.default_rng(seed)
    Z = rng.standard_normal((n, 5))

    def view(d, noise):
        return Z @ rng.standard_normal((5, d)) + noise * rng.standard_normal((n, d))

    A = {"a0": view(8, 0.2), "a1": view(9, 1.0), "a2": view(7, 3.0)}
    B = {"b0": view(6, 2.0), "b1": view(8, 0.3)}
    return A, B


def test_q_values_are_bh_and_by_over_the_finite_cells():
    A, B = _layers()
    A["const"] = np.ones((120, 4))  # degenerate: NaN cells, left out of m
    with pytest.warns(DegenerateSpaceWarning):
        res = alignkit.atlas(A, B, "mutual_knn", k=6, n_perm=40, seed=1)
    p = res.p_values
    fin = np.isfinite(p)
    assert fin.sum() == 6 and not fin[3].any()
    for method in ("bh", "by"):
        q = res.q_values(method)
        np.testing.assert_allclose(q[fin], false_discovery_control(p[fin], method=method), rtol=1e-12)
        assert np.isnan(q[~fin]).all()
    q_bh, q_by = res.q_values("bh"), res.q_values("by")
    s = res.summary()
    assert s["n_cells_tested"] == 6
    assert s["n_significant_bh"] == int((q_bh <= 0.05).sum()) and s["n_significant_by"] == int((q_by <= 0.05).sum())
    i, j = res.names_a.index(s["best_a"]), res.names_b.index(s["best_b"])
    assert s["best_q_bh"] == pytest.approx(q_bh[i, j]) and s["best_q_by"] == pytest.approx(q_by[i, j])
    rows = res.to_pandas()
    np.testing.assert_allclose(rows["q_value_bh"].to_numpy(), q_bh.ravel())
    np.testing.assert_allclose(rows["q_value_by"].to_numpy(), q_by.ravel())
    assert (rows["q_value_by"].dropna() >= rows["q_value_bh"].dropna()).all()


def test_fdr_finds_the_signal_and_not_the_noise():
    A, B = _layers(seed=2)
    res = alignkit.atlas(A, B, "cka", n_perm=60, seed=0)
    assert res.summary()["n_significant_bh"] == 6  # every view shares the latent
    g = np.random.default_rng(3)
    noise_a = {f"a{i}": g.standard_normal((120, 6)) for i in range(4)}
    noise_b = {f"b{i}": g.standard_normal((120, 6)) for i in range(4)}
    null = alignkit.atlas(noise_a, noise_b, "cka", n_perm=60, seed=0)
    assert null.summary()["n_significant_bh"] == 0
    assert (null.q_values("bh") >= null.p_values).all()


def test_n_distinct_and_ill_defined_knn_cells():
    A, B = _layers()
    base = A["a0"]
    captions = np.repeat(base[:12], 10, axis=0)  # 12 distinct rows, each with 9 identical copies
    partial = base.copy()
    partial[:30] = np.repeat(base[:3], 10, axis=0)  # 25 % of rows in groups of 10
    A2 = {"full": base, "partial": partial, "captions": captions}
    with pytest.warns(DegenerateSpaceWarning, match="a:captions"):
        res = alignkit.atlas(A2, B, "mutual_knn", k=5)
    want = {f"a:{k}": len(np.unique(v, axis=0)) for k, v in A2.items()} | {
        f"b:{k}": len(np.unique(v, axis=0)) for k, v in B.items()
    }
    assert res.n_distinct == want == {"a:full": 120, "a:partial": 93, "a:captions": 12, "b:b0": 120, "b:b1": 120}
    assert res.tied_fraction["a:partial"] == pytest.approx(0.25) and res.tied_fraction["a:captions"] == 1.0
    assert res.tied_fraction["a:full"] == 0.0
    assert res.knn_ill_defined.tolist() == [[False, False], [False, False], [True, True]]
    s = res.summary()
    assert (s["min_n_distinct_a"], s["min_n_distinct_b"], s["n_knn_ill_defined"], s["n_items"]) == (12, 120, 2, 120)
    rows = res.to_pandas()
    assert rows.loc[rows["layer_a"] == "captions", "knn_ill_defined"].all()
    assert rows.loc[rows["layer_a"] == "partial", "n_distinct_a"].eq(93).all()
    # CKA: distinct rows are counted too, but no kNN is ill-defined
    cka = alignkit.atlas(A2, B, "cka")
    assert cka.n_distinct == want and cka.tied_fraction == {} and not cka.knn_ill_defined.any()
    assert "n_knn_ill_defined" not in cka.summary() and cka.to_pandas()["tied_fraction_a"].isna().all()


def test_intervals_equal_bootstrap_ci_on_the_same_pairs():
    A, B = _layers(seed=4)
    res = alignkit.atlas(A, B, "mutual_knn", k=6, n_boot=12, ci_level=0.9, seed=3)
    (a, b, _), (fa, fb, fs) = res.best, res.final
    assert (fa, fb) == ("a2", "b1") and (a, b) != (fa, fb)
    s = res.summary()
    for (x, y), prefix in (((a, b), "best"), ((fa, fb), "final")):
        want = bootstrap_ci("mutual_knn?k=6", A[x], B[y], 12, level=0.9, seed=3)
        got = res.interval(x, y)
        assert (got.low, got.high, got.level, got.n_boot) == pytest.approx((want.low, want.high, 0.9, 12))
        assert got.low <= res.scores[res.names_a.index(x), res.names_b.index(y)] <= got.high
        assert (s[f"{prefix}_ci_low"], s[f"{prefix}_ci_high"]) == pytest.approx((want.low, want.high))
    assert s["final_score"] == fs and s["ci_level"] == 0.9 and s["n_boot"] == 12
    rows = res.to_pandas()
    assert rows["ci_low"].notna().sum() == 2
    best_row = rows[(rows["layer_a"] == a) & (rows["layer_b"] == b)].iloc[0]
    assert best_row["ci_low"] == pytest.approx(s["best_ci_low"])


def test_intervals_use_the_sampled_items():
    A, B = _layers(seed=5, n=150)
    res = alignkit.atlas(A, B, "cka", sample=100, n_boot=8, seed=7)
    rows = torch.randperm(150, generator=torch.Generator().manual_seed(7))[:100].sort().values.numpy()
    a, b, _ = res.best
    want = bootstrap_ci("cka", A[a][rows], B[b][rows], 8, seed=7)
    assert (res.interval(a, b).low, res.interval(a, b).high) == pytest.approx((want.low, want.high))


def test_default_adds_columns_only():
    A, B = _layers()
    plain = alignkit.atlas(A, B, "mutual_knn", k=6, n_perm=20)
    boot = alignkit.atlas(A, B, "mutual_knn", k=6, n_perm=20, n_boot=4)
    np.testing.assert_array_equal(plain.scores, boot.scores)
    np.testing.assert_array_equal(plain.null, boot.null)
    assert plain.intervals == {} and plain.n_boot == 0
    s = plain.summary()
    assert not any(key.endswith(("ci_low", "ci_high")) for key in s) and "n_boot" not in s
    assert "ci_low" not in plain.to_rows()[0]
    old = {"measure", "layer_a", "layer_b", "score", "degenerate_a", "degenerate_b", "null_mean", "null_std",
           "p_value", "p_value_fwer"}  # fmt: skip
    assert old <= set(plain.to_rows()[0])
    assert {"best_p_calibrated", "best_adjusted", "max_null_mean", "best_p_uncorrected"} <= set(s)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_boot": 1}, "n_boot"),
        ({"n_boot": -2}, "n_boot"),
        ({"n_boot": True}, "n_boot"),
        ({"ci_level": 1.0}, "ci_level"),
    ],
)
def test_bad_interval_arguments(kwargs, match):
    A, B = _layers()
    with pytest.raises(ValueError, match=match):
        alignkit.atlas(A, B, "cka", **kwargs)


def test_measure_cli_prints_the_interval(tmp_path):
    A, B = _layers()
    np.save(tmp_path / "x.npy", A["a0"])
    np.save(tmp_path / "y.npy", B["b1"])
    args = ["measure", str(tmp_path / "x.npy"), str(tmp_path / "y.npy"), "-m", "cka"]
    res = runner.invoke(app, [*args, "--boot", "10", "--ci-level", "0.8", "--seed", "2", "--json"])
    assert res.exit_code == 0, res.output
    got = json.loads(res.stdout)
    want = bootstrap_ci("cka", A["a0"], B["b1"], 10, level=0.8, seed=2)
    assert (got["ci_low"], got["ci_high"], got["n_boot"]) == pytest.approx((want.low, want.high, 10))
    table = runner.invoke(app, [*args, "--ci", "--perm", "5"], env={"COLUMNS": "200"})
    assert table.exit_code == 0 and "CI low" in table.stdout and "CI high" in table.stdout
    assert "CI low" not in runner.invoke(app, args).stdout
    bad = runner.invoke(app, [*args, "--boot", "1"])
    assert bad.exit_code == 2 and "--boot" in bad.output


def test_atlas_cli_prints_q_values_and_intervals(tmp_path):
    A, B = _layers()
    np.savez(tmp_path / "a.npz", **A)
    np.savez(tmp_path / "b.npz", **B)
    args = ["atlas", str(tmp_path / "a.npz"), str(tmp_path / "b.npz"), "-m", "cka", "--perm", "20", "--boot", "6"]
    res = runner.invoke(app, [*args, "--json", "--out", str(tmp_path / "rows.csv")])
    assert res.exit_code == 0, res.output
    got = json.loads(res.stdout)
    want = alignkit.atlas(A, B, "cka", n_perm=20, n_boot=6)
    ws = want.summary()
    for key in ("best_ci_low", "best_ci_high", "final_ci_low", "n_significant_bh", "best_q_bh", "min_n_distinct_a"):
        assert got[key] == pytest.approx(ws[key]), key
    rows = pd.read_csv(tmp_path / "rows.csv")
    np.testing.assert_allclose(rows["q_value_bh"], want.q_values("bh").ravel())
    text = runner.invoke(app, args, env={"COLUMNS": "200"}).stdout
    assert "BH q-values" in text and "95% CI" in text and "final × final" in text
    assert re.search(r"\d+ at BH q ≤ 0\.05", text)


def test_cli_groups_give_the_librarys_grouped_null_and_interval(tmp_path):
    A, B = _layers()
    n = next(iter(A.values())).shape[0]
    groups = np.arange(n) // 4
    np.save(tmp_path / "x.npy", A["a0"])
    np.save(tmp_path / "y.npy", B["b1"])
    np.save(tmp_path / "g.npy", groups)
    args = [
        "measure",
        str(tmp_path / "x.npy"),
        str(tmp_path / "y.npy"),
        "-m",
        "cka",
        "--groups",
        str(tmp_path / "g.npy"),
    ]
    res = runner.invoke(app, [*args, "--perm", "9", "--boot", "4", "--group-mode", "blocks", "--json"])
    assert res.exit_code == 0, res.output
    got = json.loads(res.stdout)
    perm = alignkit.permutation_test("cka", A["a0"], B["b1"], n_perm=9, groups=groups, group_mode="blocks")
    ci = bootstrap_ci("cka", A["a0"], B["b1"], 4, groups=groups)
    assert got["permutation"] == "blocks"
    assert (got["null_mean"], got["calibrated"], got["ci_low"]) == pytest.approx(
        (perm.null_mean, perm.calibrated, ci.low)
    )
    assert runner.invoke(app, args).exit_code == 2  # groups without --perm or --ci shape nothing
    np.save(tmp_path / "short.npy", groups[:-1])
    short = runner.invoke(app, [*args[:-1], str(tmp_path / "short.npy"), "--perm", "5"])
    assert short.exit_code == 2 and "--groups" in short.output
    np.savez(tmp_path / "a.npz", **A)
    np.savez(tmp_path / "b.npz", **B)
    cmd = ["atlas", str(tmp_path / "a.npz"), str(tmp_path / "b.npz"), "-m", "cka", "--perm", "9"]
    res = runner.invoke(app, [*cmd, "--groups", str(tmp_path / "g.npy"), "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["permutation"] == "within"
    want = alignkit.atlas(A, B, "cka", n_perm=9, groups=groups).summary()
    assert json.loads(res.stdout)["best_p_calibrated"] == pytest.approx(want["best_p_calibrated"])


def _report_atlas(run_dir, res, experiment="minilm_vs_vit"):
    """Write the atlas tables the way the run's atlas job does (tags + rows + summary)."""
    tags = {"experiment": experiment, "space_a": "minilm", "space_b": "vit_b16", "measure": res.measure}
    rows = [
        {**tags, **{k: v for k, v in r.items() if k != "measure"}}
        | {"index_a": res.names_a.index(r["layer_a"]), "index_b": res.names_b.index(r["layer_b"]), "n": res.n_items}
        for r in res.to_rows()
    ]
    summary = {**tags, **{k: v for k, v in res.summary().items() if k not in ("measure", "degenerate_layers")}}
    pd.DataFrame(rows).to_parquet(run_dir / "atlas.parquet", index=False)
    pd.DataFrame([summary]).to_parquet(run_dir / "atlas_summary.parquet", index=False)


def test_report_shows_intervals_distinct_rows_fdr_and_ill_defined_cells(tmp_path):
    pytest.importorskip("matplotlib")
    from alignkit.pipeline.report import build_report

    A, B = _layers()
    A = {"captions": np.repeat(A["a0"][:12], 10, axis=0), **A}  # first: final × final stays a2 × b1
    with pytest.warns(DegenerateSpaceWarning):
        res = alignkit.atlas(A, B, "mutual_knn", k=5, n_perm=30, n_boot=6)
    run_dir = make_run_dir(tmp_path, evaluations=False, fits=False)
    _report_atlas(run_dir, res)
    text = build_report(run_dir)[0]
    sec = text.split("<section id='atlas'>", 1)[1].split("</section>", 1)[0]
    s = res.summary()
    assert f"95% [{s['best_ci_low']:.3f}, {s['best_ci_high']:.3f}]" in sec  # best pair's CI in the table
    assert f"final × final (a2 × b1) = {s['final_score']:.3f}, CI 95% [{s['final_ci_low']:.3f}," in sec
    assert f"<td>{s['n_significant_bh']} of 6</td>" in sec  # 4 × 2 cells, the 2 of the degenerate layer untested
    assert "<td>12 / 120</td>" in sec  # fewest distinct rows per side
    assert "<b>minilm · captions</b> 12 of 120" in sec
    assert "2 cell(s) ill-defined for this kNN measure" in sec
    assert "false-discovery rate 5 %" in sec and "Hatched ///" in sec


def test_report_computes_q_for_older_runs_and_hatches_by_both(tmp_path):
    pytest.importorskip("matplotlib")
    from matplotlib.patches import Rectangle

    from alignkit.pipeline import plots
    from alignkit.pipeline.report import build_report
    from alignkit.stats.fdr import bh_qvalues

    run_dir = make_run_dir(tmp_path, evaluations=False, fits=False)  # no q columns, as before this change
    cells = pd.read_parquet(run_dir / "atlas.parquet")
    assert "q_value_bh" not in cells.columns
    text = build_report(run_dir)[0]
    for metric in ("mutual_knn", "cka"):
        sub = cells[cells["measure"] == metric]
        q = bh_qvalues(sub["p_value"].to_numpy())
        assert f"<td>{int((q <= 0.05).sum())} of {len(sub)}</td>" in text
        fig = plots.atlas_heatmap(sub.assign(q_value_bh=q), title="t", metric=metric)
        hatches = [p.get_hatch() for p in fig.axes[0].patches if isinstance(p, Rectangle)]
        assert hatches.count("///") == int((sub["p_value_fwer"] > 0.05).sum())
        assert hatches.count("\\\\\\") == int((q > 0.05).sum()) > 0
        assert [t.get_text() for t in fig.legends[0].get_texts()] == [
            "not significant family-wise (max-statistic p > 0.05)",
            "not significant at false-discovery rate 0.05 (BH q > 0.05)",
        ]
    assert "Hatched \\\\\\: not significant at false-discovery rate 5 %" in text
