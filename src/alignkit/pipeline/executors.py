"""Executors: run a plan's unfinished jobs in dependency order, in this process or on a Ray cluster.

Both call :func:`alignkit.pipeline.jobs.execute` on the same job specs and write to the same run
folder, so their tables are identical. A job whose dependency failed is skipped; independent jobs go on.
"""

from __future__ import annotations

import os
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from alignkit.pipeline.jobs import Context, execute
from alignkit.pipeline.plan import Job, Plan

EXECUTORS = ("local", "ray")


@dataclass
class Outcome:
    """What happened to each job: ``cached`` (finished earlier), ``done``, ``failed`` or ``skipped``."""

    status: dict[str, str] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.errors and "skipped" not in self.status.values()


Notify = Callable[[Job, str, float], None]


def _job_index(plan: Plan) -> dict[str, dict[str, Any]]:
    return {j.id: {"kind": j.kind, "key": j.key} for j in plan.jobs}


def _start(plan: Plan) -> tuple[Outcome, list[Job]]:
    out = Outcome()
    todo = []
    for job in plan.jobs:
        if job.done(plan.run_dir):
            out.status[job.id] = "cached"
        else:
            todo.append(job)
    return out, todo


def _blocked(job: Job, out: Outcome) -> str | None:
    for dep in job.deps:
        if out.status.get(dep) in ("failed", "skipped"):
            return dep
    return None


def run_local(plan: Plan, *, progress: bool = False, notify: Notify | None = None) -> Outcome:
    """Every unfinished job, one after another in plan order (which respects dependencies)."""
    out, todo = _start(plan)
    ctx = Context(str(plan.run_dir), progress=progress, plugins=tuple(plan.config.plugins))
    index = _job_index(plan)
    for job in todo:
        dep = _blocked(job, out)
        if dep is not None:
            out.status[job.id] = "skipped"
            out.errors[job.id] = f"skipped: {dep} did not finish"
            continue
        t0 = time.perf_counter()
        try:
            execute(job, ctx, index)
        except Exception as exc:  # one failed job must not stop the independent ones
            out.status[job.id] = "failed"
            out.errors[job.id] = f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=6)}"
        else:
            out.status[job.id] = "done"
        out.seconds[job.id] = time.perf_counter() - t0
        if notify:
            notify(job, out.status[job.id], out.seconds[job.id])
    return out


def _ray_execute(job: Job, ctx: Context, index: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return execute(job, ctx, index)


def run_ray(plan: Plan, *, address: str | None = None, notify: Notify | None = None) -> Outcome:
    """Each unfinished job as a Ray task with its resources (CPUs, GPUs), submitted once its inputs exist.

    ``address``: an existing cluster (``"auto"``, ``"ray://host:10001"``, ``"host:6379"``); None starts a
    local one for this run. Workers read and write the run folder, so on several machines it must be
    on a shared file system.
    """
    try:
        import ray
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise RuntimeError("the Ray executor needs Ray: pip install 'alignkit[ray]'") from exc
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        return _ray_loop(ray, plan, notify)
    finally:
        if started_here:
            ray.shutdown()


def _ray_loop(ray: Any, plan: Plan, notify: Notify | None) -> Outcome:
    out, todo = _start(plan)
    total_cpus = float(ray.cluster_resources().get("CPU", 1.0))
    total_gpus = float(ray.cluster_resources().get("GPU", 0.0))
    index = _job_index(plan)
    remote = ray.remote(_ray_execute)
    pending = {job.id: job for job in todo}
    running: dict[Any, tuple[Job, float]] = {}
    while pending or running:
        for jid in list(pending):
            job = pending[jid]
            dep = _blocked(job, out)
            if dep is not None:
                out.status[jid], out.errors[jid] = "skipped", f"skipped: {dep} did not finish"
                del pending[jid]
                continue
            if all(out.status.get(d) in ("done", "cached") for d in job.deps):
                cpus = min(job.cpus, total_cpus)
                gpus = min(job.gpus, total_gpus)
                threads = max(1, int(cpus))
                ctx = Context(str(plan.run_dir), progress=False, threads=threads, plugins=tuple(plan.config.plugins))
                ref = remote.options(num_cpus=cpus, num_gpus=gpus, max_retries=0, name=jid).remote(job, ctx, index)
                running[ref] = (job, time.perf_counter())
                del pending[jid]
        if not running:
            continue
        ready, _ = ray.wait(list(running), num_returns=1)
        for ref in ready:
            job, t0 = running.pop(ref)
            try:
                ray.get(ref)
            except Exception as exc:
                cause = getattr(exc, "cause", None) or exc
                out.status[job.id] = "failed"
                out.errors[job.id] = f"{type(cause).__name__}: {cause}"
            else:
                out.status[job.id] = "done"
            out.seconds[job.id] = time.perf_counter() - t0
            if notify:
                notify(job, out.status[job.id], out.seconds[job.id])
    return out
