"""The page header (run name, times, job counts, versions, hardware, configuration, navigation) and footer."""

from __future__ import annotations

import json
from collections.abc import Sequence

from alignkit.pipeline.report.context import Context
from alignkit.pipeline.report.html import Section, e, seconds, when

STATUS_ORDER = ("done", "cached", "failed")


def statuses(seen: set[str]) -> list[str]:
    """Job statuses in reading order: done, cached, failed, then any others alphabetically."""
    return [s for s in STATUS_ORDER if s in seen] + sorted(seen - set(STATUS_ORDER))


def header(ctx: Context, sections: Sequence[Section]) -> str:
    run = ctx.data.run
    parts = [f"<header><h1>Run report: <span class='runname'>{e(ctx.data.name)}</span></h1>"]
    if ctx.data.run_error:
        parts.append(f'<p class="warn">{e(ctx.data.run_error)}</p>')
    finished = run.get("finished")
    meta = [
        f"<b>started</b> {e(when(run.get('started')))}",
        f"<b>finished</b> {e(when(finished)) if finished else '<span class=warn>not finished</span>'}",
        f"<b>wall time</b> {e(seconds(run.get('wall_seconds')))}",
    ]
    if run.get("seed") is not None:
        meta.append(f"<b>seed</b> {e(run.get('seed'))}")
    parts.append(f"<p class='meta'>{' · '.join(meta)}</p>")

    jobs = ctx.data.jobs
    if jobs:
        counts: dict[str, int] = {}
        for j in jobs:
            counts[str(j.get("status"))] = counts.get(str(j.get("status")), 0) + 1
        bits = []
        for status in statuses(set(counts)):
            cls = " class='bad'" if status == "failed" else ""
            bits.append(f"<span{cls}>{counts[status]} {e(status)}</span>")
        parts.append(f"<p class='meta'><b>jobs</b> {', '.join(bits)} (of {len(jobs)})</p>")

    versions = []
    if run.get("alignkit_version"):
        versions.append(f"alignkit {e(run['alignkit_version'])}")
    for pkg, ver in (run.get("versions") or {}).items():
        versions.append(f"{e(pkg)} {e(ver)}")
    hw = run.get("hardware") or {}
    hw_bits = []
    if hw.get("cpu_count") is not None:
        hw_bits.append(f"{e(hw['cpu_count'])} CPUs")
    if hw.get("torch_threads") is not None:
        hw_bits.append(f"torch threads {e(hw['torch_threads'])}")
    if "cuda" in hw:
        hw_bits.append(f"CUDA {e(hw['cuda'])}" if hw.get("cuda") else "no CUDA")
    if hw.get("platform"):
        hw_bits.append(e(hw["platform"]))
    if versions:
        parts.append(f"<p class='small'><b>versions</b> {' · '.join(versions)}</p>")
    if hw_bits:
        parts.append(f"<p class='small'><b>hardware</b> {' · '.join(hw_bits)}</p>")
    if run.get("config") is not None:
        cfg = json.dumps(run["config"], indent=2, ensure_ascii=False, default=str)
        parts.append(f"<details><summary>Configuration</summary><pre>{e(cfg)}</pre></details>")
    links = "".join(f"<a href='#{s.anchor}'>{e(s.title)}</a>" for s in sections)
    parts.append(f"<nav>{links}</nav></header>")
    return "".join(parts)


def footer(ctx: Context) -> str:
    ver = ctx.data.run.get("alignkit_version")
    by = f"alignkit {e(ver)}" if ver else "alignkit"
    return (
        f"<footer>Written by {by} from run.json and the Parquet tables in this folder; "
        "the plots are also saved as PNG files under <code>plots/</code>.</footer>"
    )
