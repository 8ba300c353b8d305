"""Run a config end to end: plan, execute, gather tidy tables, write ``run.json`` and the report.

Outputs under ``<output>/<name>/``::

    atlas.parquet  atlas_summary.parquet  layer_selection.parquet  fits.parquet  evaluations.parquet
    diagnostics.parquet (layer profiles of spaces)  aligned_diagnostics.parquet (held-out items before/after)
    run.json       report.html            plots/*.png              jobs/<kind>/<key>/...  (job outputs)
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
import platform
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alignkit.io import TEMP_GLOB, atomic_write_bytes, atomic_write_text
from alignkit.pipeline.config import RunConfig, load_config
from alignkit.pipeline.executors import EXECUTORS, Items, Notify, Outcome, run_local, run_ray
from alignkit.pipeline.plan import Plan, build_plan
from alignkit.store.layout import default_root

#: table name -> the file each job of that kind writes
TABLES = {
    "atlas": ("atlas", "atlas.parquet"),
    "atlas_summary": ("atlas", "atlas_summary.parquet"),
    "pool_curve": ("atlas", "pool_curve.parquet"),
    "layer_selection": ("select", "layer_selection.parquet"),
    "fits": ("fit", "fits.parquet"),
    "evaluations": ("evaluate", "evaluations.parquet"),
    "diagnostics": ("diagnose", "diagnostics.parquet"),
    "aligned_diagnostics": ("evaluate", "diagnostics.parquet"),
}
#: columns that hold timings: they differ between runs, everything else is reproducible
TIMING_COLUMNS = ("fit_seconds",)


class RunFailed(RuntimeError):
    """Some jobs failed; the finished ones are kept and a rerun resumes from them."""

    def __init__(self, outcome: Outcome, run_dir: Path) -> None:
        self.outcome = outcome
        lines = [f"  {jid}: {msg.splitlines()[0]}" for jid, msg in outcome.errors.items()]
        super().__init__(
            f"{len(outcome.errors)} job(s) did not finish (results so far are in {run_dir}; rerun to resume):\n"
            + "\n".join(lines)
        )


@dataclass
class RunResult:
    run_dir: Path
    plan: Plan
    outcome: Outcome
    tables: dict[str, Path]
    report: Path | None
    wall_seconds: float


def plan_run(config: RunConfig | str | os.PathLike[str] | dict[str, Any], base: str | None = None) -> Plan:
    """The plan of a config without running anything (what ``--dry-run`` shows)."""
    cfg = config if isinstance(config, RunConfig) else load_config(config)
    return build_plan(cfg, cfg.run_dir(base))


class RunLocked(RuntimeError):
    """Another run holds the run folder's lock; nothing was written (a user error, not a crash)."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        super().__init__(f"{run_dir} is being written by another alignkit run; wait for it to finish")

    def __reduce__(self) -> tuple[type[RunLocked], tuple[Path]]:
        return type(self), (self.run_dir,)


@contextmanager
def _run_lock(run_dir: Path) -> Iterator[None]:
    """Hold ``<run_dir>/.lock`` (flock, exclusive, non-blocking) while a run writes; raise :class:`RunLocked`
    at once when another process holds it."""
    run_dir.mkdir(parents=True, exist_ok=True)
    with open(run_dir / ".lock", "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunLocked(run_dir) from None
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _remove_temporaries(run_dir: Path, cfg: RunConfig) -> None:
    """Delete what a killed run left half-written (we hold the lock, so no writer of this run is alive); an
    embedding store placed inside the run folder is left to its own lock."""
    store = (Path(cfg.cache).expanduser() if cfg.cache else default_root()).resolve()
    for stale in run_dir.rglob(TEMP_GLOB):
        if not stale.resolve().is_relative_to(store):
            stale.unlink(missing_ok=True)


def run(
    config: RunConfig | str | os.PathLike[str] | dict[str, Any],
    *,
    executor: str = "local",
    address: str | None = None,
    resume: bool = True,
    progress: bool = False,
    notify: Notify | None = None,
    base: str | None = None,
    items: Items | None = None,
) -> RunResult:
    """Run every job of ``config`` that is not finished yet, then write the tables, run.json and report.

    resume : reuse finished jobs (keyed by their inputs). False deletes the run's job outputs first
        (the embedding store is kept: embeddings are keyed by model and data, not by run).
    progress : the jobs' own progress bars (tqdm, on a terminal; local executor).
    notify : told ``(job, status, seconds)`` as each job ends (``done``, ``failed``, ``skipped``).
    items : told ``(job, description, done, total)`` as a running job works through its items (texts
        embedded, permutations drawn), in place of the bars: how ``alignkit run`` shows progress inside a job
        (local executor; Ray workers report only through ``notify``).
    """
    if executor not in EXECUTORS:
        raise ValueError(f"executor must be one of {EXECUTORS}; got {executor!r}")
    cfg = config if isinstance(config, RunConfig) else load_config(config)
    run_dir = cfg.run_dir(base)
    t0 = time.perf_counter()
    started = _now()
    with _run_lock(run_dir):
        if not resume and (run_dir / "jobs").exists():
            shutil.rmtree(run_dir / "jobs")
        _remove_temporaries(run_dir, cfg)
        plan = build_plan(cfg, run_dir)
        meta = _meta(cfg, started)
        atomic_write_text(run_dir / "run.json", json.dumps({**meta, "status": "running"}, indent=2, default=str))
        if executor == "ray":
            outcome = run_ray(plan, address=address, notify=notify)
        else:
            outcome = run_local(plan, progress=progress, notify=notify, items=items)
        tables = collect_tables(plan)
        wall = time.perf_counter() - t0
        meta.update(
            finished=_now(),
            wall_seconds=wall,
            executor=executor,
            status="complete" if outcome.ok else "incomplete",
            jobs=[
                {
                    "id": j.id,
                    "kind": j.kind,
                    "key": j.key,
                    "status": outcome.status.get(j.id, "todo"),
                    "seconds": outcome.seconds.get(j.id, _recorded_seconds(j, run_dir)),
                    **({"error": outcome.errors[j.id]} if j.id in outcome.errors else {}),
                }
                for j in plan.jobs
            ],
        )
        atomic_write_text(run_dir / "run.json", json.dumps(meta, indent=2, default=str) + "\n")
        report = None
        if cfg.report and tables:
            from alignkit.pipeline.report import write_report

            report = write_report(run_dir)
    if not outcome.ok:
        raise RunFailed(outcome, run_dir)
    return RunResult(run_dir, plan, outcome, tables, report, time.perf_counter() - t0)


def collect_tables(plan: Plan) -> dict[str, Path]:
    """Concatenate the finished jobs' rows, in plan order, into one Parquet file per table."""
    import pandas as pd

    out: dict[str, Path] = {}
    for table, (kind, fname) in TABLES.items():
        frames = []
        for job in plan.jobs:
            path = job.folder(plan.run_dir) / fname
            if job.kind == kind and job.done(plan.run_dir) and path.is_file():
                frames.append(pd.read_parquet(path))
        target = plan.run_dir / f"{table}.parquet"
        if not frames:
            target.unlink(missing_ok=True)
            continue
        frames = [f for f in frames if not f.empty] or frames[:1]
        df = pd.concat(frames, ignore_index=True)
        import io

        buf = io.BytesIO()
        df.to_parquet(buf, index=False)
        atomic_write_bytes(target, buf.getvalue())
        out[table] = target
    return out


def _recorded_seconds(job: Any, run_dir: Path) -> float:
    """How long a job finished in an earlier run took (its result.json), so run.json keeps the cost."""
    try:
        return float(json.loads((job.folder(run_dir) / "result.json").read_text(encoding="utf-8")).get("seconds", 0.0))
    except (OSError, ValueError, TypeError):
        return 0.0


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def _meta(cfg: RunConfig, started: str) -> dict[str, Any]:
    import torch

    from alignkit.store import library_versions

    try:
        from importlib.metadata import version

        ak = version("alignkit")
    except Exception:  # pragma: no cover - running from a source tree without metadata
        ak = "unknown"
    return {
        "name": cfg.name,
        "config": cfg.model_dump(mode="json"),
        "alignkit_version": ak,
        "versions": library_versions(),
        "hardware": {
            "cpu_count": os.cpu_count(),
            "platform": platform.platform(),
            "machine": platform.machine(),
            "torch_threads": torch.get_num_threads(),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        },
        "seed": cfg.seed,
        "started": started,
        "finished": None,
        "wall_seconds": None,
    }
