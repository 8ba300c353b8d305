"""`alignkit sanity` end to end on the bundled Fashion-MNIST sample: tiny networks, a few measures, every table,
run.json and a report with one plot per test; bad arguments give a clear error."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from typer.testing import CliRunner

from alignkit import zoo
from alignkit.cli import app
from alignkit.pipeline.sanity import TABLES, run_sanity

TINY = {"arch": "mlp", "widths": [32, 32, 32]}
MEASURES = ["cka?debiased=false", "procrustes", "mutual_knn?k=5"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("sanity")
    return run_sanity(
        out, n_models=3, data=zoo.sample_data(), spec=TINY, epochs=1, measures=MEASURES, n_items=200,
        capacity_maps=("procrustes", "linear"), progress=False,
    )  # fmt: skip


def test_every_table_run_json_and_report(run_dir):
    for name in TABLES:
        assert len(pd.read_parquet(run_dir / f"{name}.parquet")) > 0, name
    run = json.loads((run_dir / "run.json").read_text())
    assert run["kind"] == "sanity" and len(run["models"]) == 3
    assert set(run["timings"]) >= {"train_or_load", "activations", "layer_identification", "capacity_control"}
    acc = pd.read_parquet(run_dir / "sanity_layers.parquet")
    assert list(acc["measure"]) == ["cka?debiased=false", "procrustes", "mutual_knn?k=5"]
    assert acc["accuracy"].between(0, 1).all() and (acc["chance"] == 0.25).all()  # fc1..fc3 + logits
    html = (run_dir / "report.html").read_text()
    for title in ("Layer identification", "Output correlation", "Augmentation", "Capacity vs control"):
        assert f"<h2>{title}" in html
    assert len(list((run_dir / "plots").glob("sanity-*.png"))) == 4


def test_rerun_reuses_the_trained_networks(run_dir):
    before = {p.name: p.stat().st_mtime_ns for p in (run_dir / "zoo").glob("*.safetensors")}
    run_sanity(
        run_dir, n_models=3, data=zoo.sample_data(), spec=TINY, epochs=1, measures=MEASURES[:1], n_items=200,
        capacity_maps=("procrustes",), progress=False,
    )  # fmt: skip
    after = {p.name: p.stat().st_mtime_ns for p in (run_dir / "zoo").glob("*.safetensors")}
    assert before == after and len(before) == 3


def test_cli_bad_arguments_are_clear(tmp_path, monkeypatch):
    monkeypatch.delenv("ALIGNKIT_FASHION_MNIST", raising=False)
    res = CliRunner().invoke(app, ["sanity", "--out", str(tmp_path / "s"), "--models", "2"])
    assert res.exit_code == 2 and "n_models must be at least 3" in res.output
    res = CliRunner().invoke(app, ["sanity", "--out", str(tmp_path / "s")])
    assert res.exit_code == 2 and "ALIGNKIT_FASHION_MNIST" in res.output
