"""The run as users run it: a real ``alignkit run`` process killed mid-way and resumed, and the Ray
executor on a real local cluster that the test starts and stops."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from alignkit.pipeline import run
from alignkit.pipeline.runner import TIMING_COLUMNS
from pipeline_helpers import small_config

HELPERS = str(Path(__file__).with_name("pipeline_helpers.py"))
ALIGNKIT = shutil.which("alignkit") or str(Path(sys.executable).with_name("alignkit"))


def _config(tmp: Path, name: str, cache: Path) -> dict:
    """Enough head-training jobs that a run lasts long enough to be killed in the middle. The store is
    part of an embed job's inputs, so runs that must agree on every column share one."""
    cfg = small_config(tmp, name=name, cache=str(cache))
    cfg["plugins"] = [HELPERS]
    cfg["experiments"]["e"]["fit"]["aligners"]["head"] = {
        "type": "head",
        "head": "linear",
        "loss": "infonce",
        "d_out": 16,
        "epochs": 40,
        "batch_size": 32,
    }
    return cfg


def _tables(run_dir: Path) -> dict[str, pd.DataFrame]:
    out = {}
    for path in sorted(run_dir.glob("*.parquet")):
        df = pd.read_parquet(path)
        out[path.stem] = df.drop(columns=[c for c in TIMING_COLUMNS if c in df])
    return out


def _same(a: dict[str, pd.DataFrame], b: dict[str, pd.DataFrame]) -> None:
    assert set(a) == set(b)
    for name in a:
        pd.testing.assert_frame_equal(a[name], b[name], obj=name)


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_tables(tmp_path: Path) -> None:
    reference = run(_config(tmp_path / "ref", "ref", tmp_path / "cache"))
    cfg = _config(tmp_path / "kill", "kill", tmp_path / "cache")
    path = tmp_path / "kill.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    run_dir = Path(cfg["output"]) / "kill"
    proc = subprocess.Popen(
        [ALIGNKIT, "run", str(path)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
    )
    deadline = time.time() + 300
    while time.time() < deadline:  # kill once some, not all, head fits are finished
        done = list((run_dir / "jobs" / "fit").glob("*/result.json")) if (run_dir / "jobs").exists() else []
        if len(done) >= 10 or proc.poll() is not None:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be killed; make the config longer"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    finished = len(list((run_dir / "jobs").glob("*/*/result.json")))
    assert 0 < finished < len(reference.plan.jobs)
    resumed = subprocess.run([ALIGNKIT, "run", str(path)], capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert f"{finished} of {len(reference.plan.jobs)} jobs were already finished" in resumed.stderr
    _same(_tables(reference.run_dir), _tables(run_dir))
    assert not list(run_dir.rglob("*.tmp"))  # no half-written file survives


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture()
def ray_cluster(tmp_path: Path):
    pytest.importorskip("ray")
    ray_bin = shutil.which("ray") or str(Path(sys.executable).with_name("ray"))
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
    port = _free_port()
    start = subprocess.run(
        [ray_bin, "start", "--head", f"--port={port}", "--num-cpus=2", "--include-dashboard=false",
         f"--temp-dir={tmp_path / 'ray'}" if len(str(tmp_path)) < 60 else "--disable-usage-stats"],
        capture_output=True, text=True, env=env, timeout=180,
    )  # fmt: skip
    if start.returncode != 0:
        pytest.fail(f"could not start a local Ray cluster: {start.stderr[-2000:]}")
    try:
        yield f"127.0.0.1:{port}"
    finally:
        subprocess.run([ray_bin, "stop", "--force"], capture_output=True, env=env, timeout=120)


@pytest.mark.slow
def test_ray_executor_gives_the_same_tables_as_local(tmp_path: Path, ray_cluster: str, monkeypatch) -> None:
    import ray

    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    local = run(_config(tmp_path / "local", "same", tmp_path / "cache"))
    on_ray = run(_config(tmp_path / "ray", "same", tmp_path / "cache"), executor="ray", address=ray_cluster)
    assert not ray.is_initialized()  # the run disconnects; the cluster itself is the fixture's
    assert set(on_ray.outcome.status.values()) == {"done"}
    _same(_tables(local.run_dir), _tables(on_ray.run_dir))
