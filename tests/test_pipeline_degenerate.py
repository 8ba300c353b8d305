"""A run whose encoder emits a constant layer finishes and never reports it as aligned.

Before: mutual kNN 1.0 with the calibrated p at its floor, CKA layer selection choosing the NaN-scored
constant pair over a real pair, Procrustes R@1 = 1.0 — all with exit code 0.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from alignkit.degenerate import DegenerateSpaceWarning
from alignkit.pipeline.config import load_config
from alignkit.pipeline.report import build_report
from alignkit.pipeline.runner import run
from pipeline_helpers import small_config


def test_constant_layer_is_marked_and_left_out(tmp_path):
    cfg = small_config(tmp_path, n=240)
    cfg["spaces"]["x"]["options"] = {"constant_layer": "output"}
    cfg["spaces"]["y"]["options"] = {"constant_layer": "output"}
    exp = cfg["experiments"]["e"]
    exp["fit"]["select_measure"] = "cka"
    exp["fit"]["sizes"], exp["fit"]["seeds"] = [120], [0]
    with pytest.warns(DegenerateSpaceWarning):
        result = run(load_config(cfg))
    assert result.outcome.ok
    run_dir = result.plan.run_dir
    atlas = pd.read_parquet(run_dir / "atlas.parquet")
    dead = (atlas["layer_a"] == "output") | (atlas["layer_b"] == "output")
    assert atlas.loc[dead, "score"].isna().all() and atlas.loc[~dead, "score"].notna().all()
    assert atlas.loc[dead, "p_value_fwer"].isna().all()
    assert (atlas.loc[atlas["layer_a"] == "output", "degenerate_a"].str.startswith("constant")).all()
    summary = pd.read_parquet(run_dir / "atlas_summary.parquet")
    assert not summary["best_a"].eq("output").any() and not summary["best_b"].eq("output").any()
    assert np.isfinite(summary["best_p_calibrated"]).all()
    selection = pd.read_parquet(run_dir / "layer_selection.parquet")
    chosen = selection[selection["chosen"]].iloc[0]
    assert "output" not in (chosen["layer_a"], chosen["layer_b"])
    r1 = pd.read_parquet(run_dir / "evaluations.parquet").query("metric == 'R@1'")["value"]
    assert (r1 < 1.0).all()
    text, _ = build_report(run_dir)
    assert "degenerate layer(s)" in text and "constant: every row is identical" in text
