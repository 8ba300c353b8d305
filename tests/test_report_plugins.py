"""``alignkit report`` loads the run's ``plugins:`` (from run.json) before building the report, so a plugin
measure keeps its direction when a report is regenerated from the command line."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from alignkit.cli import app
from alignkit.metrics import MEASURES
from fixtures_report import make_run_dir

runner = CliRunner()
MEASURE = "report_plugin_distance"
PLUGIN = f'''
from alignkit.metrics import register


@register("{MEASURE}", family="plugin", range=(0.0, 1.0), higher_is_better=False, cost="O(1)",
          description="a toy distance for the report test")
def report_plugin_distance(X, Y) -> float:
    return 0.0
'''


@pytest.fixture
def plugin_run(tmp_path: Path) -> Iterator[Path]:
    """A run whose atlas holds a plugin measure, with the plugin recorded in run.json's config."""
    plugin = tmp_path / "my_measures.py"
    plugin.write_text(PLUGIN)
    run_dir = make_run_dir(tmp_path, evaluations=False, fits=False)
    for name in ("atlas", "atlas_summary", "layer_selection"):
        df = pd.read_parquet(run_dir / f"{name}.parquet")
        df.loc[df["measure"] == "cka", "measure"] = MEASURE
        df.to_parquet(run_dir / f"{name}.parquet", index=False)
    meta = json.loads((run_dir / "run.json").read_text())
    meta["config"]["plugins"] = [str(plugin)]
    (run_dir / "run.json").write_text(json.dumps(meta))
    modules = set(sys.modules)
    yield run_dir
    if MEASURE in MEASURES.names():
        MEASURES.remove(MEASURE)
    for name in set(sys.modules) - modules:
        if name.startswith("alignkit_plugin_"):
            del sys.modules[name]


def test_report_loads_the_runs_plugins(plugin_run: Path) -> None:
    assert MEASURE not in MEASURES.names()
    res = runner.invoke(app, ["report", str(plugin_run)])
    assert res.exit_code == 0, res.output
    text = (plugin_run / "report.html").read_text(encoding="utf-8")
    assert MEASURE in text and "direction unknown" not in text


def test_report_without_plugins_shows_the_direction_as_unknown(plugin_run: Path) -> None:
    res = runner.invoke(app, ["report", str(plugin_run), "--no-plugins"])
    assert res.exit_code == 0, res.output
    assert "direction unknown" in (plugin_run / "report.html").read_text(encoding="utf-8")


def test_a_plugin_that_cannot_be_loaded_is_a_note(plugin_run: Path) -> None:
    (plugin_run.parent / "my_measures.py").unlink()
    res = runner.invoke(app, ["report", str(plugin_run)])
    assert res.exit_code == 0, res.output
    assert "my_measures.py" in res.output and "direction unknown" in res.output
    assert "direction unknown" in (plugin_run / "report.html").read_text(encoding="utf-8")
