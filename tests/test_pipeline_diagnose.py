"""Diagnostics in runs and on the command line: config validation, the jobs' tables, the report sections."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from alignkit.align.base import Aligner
from alignkit.cli import app
from alignkit.diagnostics import diagnose
from alignkit.pipeline import ConfigError, load_config, run
from pipeline_helpers import small_config

runner = CliRunner()


def _config(tmp: Path) -> dict:
    cfg = small_config(tmp, n=200)
    cfg["spaces"]["x"]["diagnose"] = {"diagnostics": ["uniformity", "effective_rank", "anisotropy"], "n_boot": 4}
    exp = cfg["experiments"]["e"]
    exp["fit"]["aligners"] = {"procrustes": {"type": "procrustes", "center": True, "normalize": True}}
    exp["fit"]["sizes"], exp["fit"]["seeds"] = [100], [0]
    exp["evaluate"]["diagnose"] = ["modality_gap", "paired_cosine", "uniformity", "alignment_levels"]
    del exp["atlas"]
    cfg["report"] = True
    return cfg


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("diag")
    return tmp, run(_config(tmp))


def test_config_checks_diagnostics(tmp_path: Path) -> None:
    cfg = _config(tmp_path)
    bad = copy.deepcopy(cfg)
    bad["spaces"]["x"]["diagnose"]["diagnostics"] = ["uniformty"]
    with pytest.raises(ConfigError, match="Did you mean 'uniformity'"):
        load_config(bad)
    bad = copy.deepcopy(cfg)
    bad["spaces"]["x"]["diagnose"]["diagnostics"] = ["modality_gap"]
    with pytest.raises(ConfigError, match="takes 2 arrays"):
        load_config(bad)
    bad = copy.deepcopy(cfg)
    bad["spaces"]["x"]["diagnose"]["n_boot"] = 1
    with pytest.raises(ConfigError, match="n_boot must be 0"):
        load_config(bad)
    bad = copy.deepcopy(cfg)
    bad["experiments"]["e"]["evaluate"]["diagnose"] = ["uniformity?t=-1"]
    with pytest.raises(ConfigError, match="t must be"):
        load_config(bad)
    bad = copy.deepcopy(cfg)
    bad["experiments"]["e"]["evaluate"]["diagnose"] = ["subspace_overlap"]
    with pytest.raises(ConfigError, match="compares matrices"):
        load_config(bad)


def test_label_diagnostics_need_labelled_data(tmp_path: Path) -> None:
    from alignkit.pipeline import plan_run

    cfg = _config(tmp_path)
    cfg["spaces"]["x"]["diagnose"]["diagnostics"] = ["fisher_ratio"]
    with pytest.raises(ValueError, match=r"spaces.x.diagnose: \['fisher_ratio'\] need labels"):
        plan_run(cfg)


def test_space_profiles_table(finished) -> None:
    _, result = finished
    df = pd.read_parquet(result.tables["diagnostics"])
    assert set(df["diagnostic"]) == {"uniformity", "effective_rank", "anisotropy"}
    uni = df[df["diagnostic"] == "uniformity"].sort_values("index")
    assert uni["layer"].tolist() == ["input", "hidden", "output"]  # the encoder's order
    assert (uni["ci_low"] <= uni["value"]).all() and (uni["value"] <= uni["ci_high"]).all()
    assert (df["space"] == "x").all() and (df["n"] == 200).all()
    assert all(isinstance(json.loads(d), dict) for d in df["details"])


def test_space_profile_equals_a_direct_call(finished) -> None:
    _tmp, result = finished
    from alignkit.pipeline.jobs import _Inputs

    df = pd.read_parquet(result.tables["diagnostics"])
    row = df[(df["diagnostic"] == "effective_rank") & (df["layer"] == "hidden")].iloc[0]
    meta = json.loads((result.run_dir / "run.json").read_text())
    jobs = {j["id"]: {"kind": j["kind"], "key": j["key"]} for j in meta["jobs"]}
    X = _Inputs(result.run_dir, jobs, {}).layer("embed:x", "hidden")
    assert row["value"] == pytest.approx(diagnose("effective_rank", np.asarray(X, dtype=np.float32)), rel=1e-9)


def test_aligned_diagnostics_before_and_after(finished) -> None:
    _, result = finished
    df = pd.read_parquet(result.tables["aligned_diagnostics"])
    assert set(df["stage"]) == {"before", "after"} and set(df["method"]) == {"procrustes"}
    uni = df[df["diagnostic"] == "uniformity"]
    assert set(uni["side"]) == {"a", "b"} and len(uni) == 4  # each side, before and after
    gap = df[df["diagnostic"] == "modality_gap"]
    assert set(gap["side"]) == {"pair"}
    # two encoders: their raw coordinates are unrelated, so pair diagnostics exist after alignment only
    assert set(gap["stage"]) == {"after"}
    pc = df[df["diagnostic"] == "paired_cosine"].set_index("stage")["value"]
    assert pc["after"] > 0.5  # Procrustes pulls partners together
    assert (df["n"] == 60).all()  # the held-out items


def test_aligned_diagnostics_equal_a_direct_call(finished) -> None:
    """Before = the raw held-out rows; after = both sides through the fitted aligner."""
    tmp, result = finished
    from alignkit.pipeline import plan_run
    from alignkit.pipeline.jobs import _Inputs, paired_split

    plan = plan_run(_config(tmp))
    job = plan.by_id()["evaluate:e:procrustes:n100:s0"]
    jobs = {j.id: {"kind": j.kind, "key": j.key} for j in plan.jobs}
    inputs = _Inputs(result.run_dir, jobs, job.spec["fingerprints"])
    split = paired_split(inputs, job.spec)
    fits = pd.read_parquet(result.tables["fits"])
    la, lb = fits["layer_a"].iloc[0], fits["layer_b"].iloc[0]
    X = np.asarray(inputs.layer("embed:x", la)[split.rows_a[split.test]], dtype=np.float32)
    Y = np.asarray(inputs.layer("embed:y", lb)[split.rows_b[split.test]], dtype=np.float32)
    model = Aligner.load(result.run_dir / fits["path"].iloc[0])
    df = pd.read_parquet(result.tables["aligned_diagnostics"])
    uni = df[(df["diagnostic"] == "uniformity") & (df["side"] == "b")].set_index("stage")["value"]
    assert uni["before"] == pytest.approx(diagnose("uniformity", Y), rel=1e-9)
    zx, zy = np.asarray(model.transform_x(X)), np.asarray(model.transform_y(Y))
    assert uni["after"] == pytest.approx(diagnose("uniformity", zy), rel=1e-6)
    got = df[df["diagnostic"] == "paired_cosine"].set_index("stage")["value"]
    assert got["after"] == pytest.approx(diagnose("paired_cosine", zx, zy), rel=1e-6)


def test_report_has_the_diagnostics_sections(finished) -> None:
    _, result = finished
    html = Path(result.report).read_text(encoding="utf-8")
    assert "Diagnostics per layer" in html and "What alignment changed" in html
    assert "diagnostics-x" in html  # the profile figure of space x
    assert "after: procrustes" in html
    assert "levels-e-procrustes" in html  # the NoC level histogram of the held-out pairs


def test_cli_diagnose(tmp_path: Path, rng) -> None:
    X = rng.standard_normal((120, 8)).astype(np.float32)
    Y = (X + 0.2 * rng.standard_normal(X.shape)).astype(np.float32)
    np.save(tmp_path / "x.npy", X)
    np.save(tmp_path / "y.npy", Y)
    (tmp_path / "labels.txt").write_text("\n".join(["a", "b", "c"] * 40) + "\n")
    res = runner.invoke(app, ["diagnose", str(tmp_path / "x.npy"), "-d", "uniformity", "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["value"] == pytest.approx(diagnose("uniformity", X))
    res = runner.invoke(
        app,
        [
            "diagnose",
            str(tmp_path / "x.npy"),
            str(tmp_path / "y.npy"),
            "-d",
            "paired_cosine",
            "-d",
            "uniformity",
            "--perm",
            "19",
            "--boot",
            "5",
            "--json",
            "--out",
            str(tmp_path / "rows.parquet"),
        ],
    )
    assert res.exit_code == 0, res.output
    rows = json.loads(res.stdout)
    assert [r["diagnostic"] for r in rows] == ["paired_cosine", "uniformity", "uniformity"]  # one-space: each file
    assert rows[0]["p_value"] == pytest.approx(0.05) and "ci_low" in rows[0]
    assert len(pd.read_parquet(tmp_path / "rows.parquet")) == 3
    res = runner.invoke(
        app, ["diagnose", str(tmp_path / "x.npy"), "-d", "tolerance", "--labels", str(tmp_path / "labels.txt")]
    )
    assert res.exit_code == 0 and "tolerance" in res.stdout
    res = runner.invoke(app, ["diagnose", "--list"])
    assert res.exit_code == 0 and "modality_gap" in res.stdout


def test_cli_diagnose_errors_are_one_line(tmp_path: Path, rng) -> None:
    np.save(tmp_path / "x.npy", rng.standard_normal((50, 4)))
    (tmp_path / "short.txt").write_text("a\nb\n")
    for args, msg in (
        (["-d", "uniformty"], "Did you mean"),
        (["-d", "modality_gap"], "takes 2 files"),
        (["-d", "tolerance", "--labels", str(tmp_path / "short.txt")], "2 labels for 50 rows"),
        (["-d", "uniformity", "-p", "tt=1"], "no chosen diagnostic takes it"),
        (["-d", "uniformity", "--boot", "1"], "--boot must be 0 or at least 2"),
    ):
        res = runner.invoke(app, ["diagnose", str(tmp_path / "x.npy"), *args])
        assert res.exit_code == 2, (args, res.output)
        assert msg in res.output and "Traceback" not in res.output


def test_a_run_may_only_diagnose(tmp_path: Path) -> None:
    cfg = small_config(tmp_path, n=120)
    cfg["spaces"] = {"x": {**cfg["spaces"]["x"], "diagnose": {"diagnostics": ["norms"], "n_boot": 3}}}
    cfg["experiments"] = {}
    result = run(cfg)
    df = pd.read_parquet(result.tables["diagnostics"])
    assert len(df) == 3 and set(df["diagnostic"]) == {"norms"}
    details = json.loads(df["details"].iloc[0])
    assert {"std", "min", "max", "median"} <= set(details)  # the details survive the interval
    cfg["spaces"]["x"].pop("diagnose")
    with pytest.raises(ConfigError, match="at least one experiment, or a space with 'diagnose'"):
        load_config(cfg)
