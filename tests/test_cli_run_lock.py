"""A second ``alignkit run`` into a folder another run holds: the CLI's one-line error, no traceback."""

from __future__ import annotations

import fcntl
from pathlib import Path

import yaml
from typer.testing import CliRunner

from alignkit.cli import app
from pipeline_helpers import small_config

runner = CliRunner()


def test_second_run_into_a_locked_folder_is_a_one_line_error(tmp_path: Path) -> None:
    cfg = small_config(tmp_path)  # its encoder is registered by importing pipeline_helpers (no plugin copy)
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(cfg))
    run_dir = tmp_path / "results" / "t"
    run_dir.mkdir(parents=True)
    with open(run_dir / ".lock", "a+") as held:  # what the first run holds while it writes
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        res = runner.invoke(app, ["run", str(path)])
    assert res.exit_code == 2, res.output
    assert res.exception is None or isinstance(res.exception, SystemExit)
    assert "Traceback" not in res.output
    errors = [line for line in res.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and str(run_dir) in errors[0] and "another alignkit run" in errors[0]
    assert not (run_dir / "run.json").exists()  # the second run wrote nothing
