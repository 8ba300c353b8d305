"""Executors: run a plan's unfinished jobs in dependency order, in this process or on a Ray cluster.

Both call :func:`alignkit.pipeline.jobs.execute` on the same job specs and write to the same run
folder, so their tables are identical. A job whose dependency failed is skipped; independent jobs go on.
The bookkeeping (cached, skipped, done or failed, seconds, telling the caller) is one :class:`_Ledger` for both.
"""

from __future__ import annotations

import functools
import os
import time
import traceback
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any

from alignkit._common import optional_import
from alignkit._progress import report_to
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


#: told ``(job, status, seconds)`` as each unfinished job ends: ``done``, ``failed`` or ``skipped`` (0 s)
Notify = Callable[[Job, str, float], None]
#: told ``(job, description, done, total)`` as a running job works through its items (an embed job's texts or images,
#: an atlas job's layers and permutations; total None when unknown): the local executor's item-level progress
Items = Callable[[Job, str, int, int | None], None]


class _Ledger:
    """The bookkeeping every executor shares: which jobs were finished earlier (``cached``), which are to run,
    which are skipped because a dependency did not finish, and how each one ended, with ``notify`` told."""

    def __init__(self, plan: Plan, notify: Notify | None) -> None:
        self.outcome = Outcome()
        #: every job id -> its kind and key (how a job finds the outputs of the jobs it depends on)
        self.index: dict[str, dict[str, Any]] = {j.id: {"kind": j.kind, "key": j.key} for j in plan.jobs}
        self.todo: list[Job] = []
        self._notify = notify
        self._started: dict[str, float] = {}
        for job in plan.jobs:
            if job.done(plan.run_dir):
                self.outcome.status[job.id] = "cached"
            else:
                self.todo.append(job)

    def skip_if_blocked(self, job: Job) -> bool:
        """Record ``job`` as skipped, and say so, when one of its dependencies failed or was skipped."""
        status = self.outcome.status
        dep = next((d for d in job.deps if status.get(d) in ("failed", "skipped")), None)
        if dep is None:
            return False
        status[job.id] = "skipped"
        self.outcome.errors[job.id] = f"skipped: {dep} did not finish"
        if self._notify is not None:
            self._notify(job, "skipped", 0.0)
        return True

    def ready(self, job: Job) -> bool:
        """Whether every dependency of ``job`` has finished (now or in an earlier run)."""
        return all(self.outcome.status.get(d) in ("done", "cached") for d in job.deps)

    def start(self, job: Job) -> None:
        self._started[job.id] = time.perf_counter()

    def finish(self, job: Job, error: str | None = None) -> None:
        """Record how ``job`` ended (``error`` None: done) and its seconds since :meth:`start`, and say so."""
        out = self.outcome
        out.status[job.id] = "done" if error is None else "failed"
        if error is not None:
            out.errors[job.id] = error
        out.seconds[job.id] = time.perf_counter() - self._started.pop(job.id)
        if self._notify is not None:
            self._notify(job, out.status[job.id], out.seconds[job.id])


def run_local(
    plan: Plan, *, progress: bool = False, notify: Notify | None = None, items: Items | None = None
) -> Outcome:
    """Every unfinished job, one after another in plan order (which respects dependencies).

    progress : the jobs' own progress bars (tqdm, on a terminal). items : instead of those bars, tell this callback
        how far the running job is through its items (see :data:`Items`).
    """
    book = _Ledger(plan, notify)
    ctx = Context(str(plan.run_dir), progress=progress or items is not None, plugins=tuple(plan.config.plugins))
    for job in book.todo:
        if book.skip_if_blocked(job):
            continue
        book.start(job)
        try:
            with _item_progress(job, items):
                execute(job, ctx, book.index)
        except Exception as exc:  # one failed job must not stop the independent ones
            book.finish(job, f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=6)}")
        else:
            book.finish(job)
    return book.outcome


def _item_progress(job: Job, items: Items | None) -> AbstractContextManager[None]:
    """The job's progress bars reported to ``items`` (tagged with the job) while it runs."""
    return nullcontext() if items is None else report_to(functools.partial(items, job))


def _ray_execute(job: Job, ctx: Context, index: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return execute(job, ctx, index)


def run_ray(plan: Plan, *, address: str | None = None, notify: Notify | None = None) -> Outcome:
    """Each unfinished job as a Ray task with its resources (CPUs, GPUs), submitted once its inputs exist.

    ``address``: an existing cluster (``"auto"``, ``"ray://host:10001"``, ``"host:6379"``); None starts a
    local one for this run. Workers read and write the run folder, so on several machines it must be
    on a shared file system. Jobs run in workers, so there is no item-level progress, only ``notify``.
    """
    ray = optional_import("ray", "ray", what="the Ray executor")
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
    book = _Ledger(plan, notify)
    total_cpus = float(ray.cluster_resources().get("CPU", 1.0))
    total_gpus = float(ray.cluster_resources().get("GPU", 0.0))
    remote = ray.remote(_ray_execute)
    pending = {job.id: job for job in book.todo}
    running: dict[Any, Job] = {}
    while pending or running:
        for jid in list(pending):
            job = pending[jid]
            if book.skip_if_blocked(job):
                del pending[jid]
            elif book.ready(job):
                cpus = min(job.cpus, total_cpus)
                gpus = min(job.gpus, total_gpus)
                threads = max(1, int(cpus))
                ctx = Context(str(plan.run_dir), progress=False, threads=threads, plugins=tuple(plan.config.plugins))
                opts = remote.options(num_cpus=cpus, num_gpus=gpus, max_retries=0, name=jid)
                book.start(job)
                running[opts.remote(job, ctx, book.index)] = job
                del pending[jid]
        if not running:
            continue
        ready, _ = ray.wait(list(running), num_returns=1)
        for ref in ready:
            job = running.pop(ref)
            try:
                ray.get(ref)
            except Exception as exc:
                cause = getattr(exc, "cause", None) or exc
                book.finish(job, f"{type(cause).__name__}: {cause}")
            else:
                book.finish(job)
    return book.outcome
