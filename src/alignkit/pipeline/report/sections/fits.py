"""Fits and jobs: time spent fitting each aligner, and every job of the run with its status."""

from __future__ import annotations

from typing import Any

from alignkit.align.unsupervised import count_converged
from alignkit.pipeline.report.context import Context
from alignkit.pipeline.report.html import Section, e, howto, seconds, section, table
from alignkit.pipeline.report.load import finite, records
from alignkit.pipeline.report.sections.overview import statuses

HOWTO = (
    "Wall-clock seconds spent fitting each aligner (mean over seeds, then every fit), and every "
    "job of the run with its status: <i>cached</i> jobs reused results from an earlier run. Unpaired "
    "(<code>pairs: none</code>) fits also count their restarts that converged: 0 of n means no restart "
    "passed the unsupervised verdict, and the scores of that fit are likely at chance."
)


def converged_restarts(grp: list[dict[str, Any]]) -> str | None:
    """ "k / n" restarts converged over the fits' restart records (None when no fit has any); marked bad at 0."""
    ok, n = count_converged(r.get("restarts") for r in grp)
    if not n:
        return None
    return e(f"{ok} / {n}") if ok else f"<span class='bad'>{e(f'{ok} / {n}')}</span>"


def _details(summary: str, table_html: str) -> str:
    return f"<details><summary>{summary}</summary>{table_html}</details>"


def _fits(ctx: Context) -> str:
    fits = ctx.data.tables["fits"]
    if fits is None:
        return ctx.missing("fits")
    recs = records(fits)
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for r in recs:
        key = (r.get("experiment"), r.get("method"), r.get("aligner"), r.get("n_train"))
        groups.setdefault(key, []).append(r)
    rows = []
    unpaired = any(converged_restarts(grp) is not None for grp in groups.values())
    for (exp, method, aligner, n_train), grp in groups.items():
        secs = [float(r["fit_seconds"]) for r in grp if finite(r.get("fit_seconds"))]
        layers = sorted({f"{r.get('layer_a')} → {r.get('layer_b')}" for r in grp})
        rows.append(
            [
                e(exp),
                e(method),
                e(aligner),
                e(f"{int(n_train):,}") if finite(n_train) else "–",
                e(", ".join(layers)),
                str(len(grp)),
                e(seconds(sum(secs) / len(secs))) if secs else "–",
                *([converged_restarts(grp) or "–"] if unpaired else []),
            ]
        )
    header = ["experiment", "method", "aligner", "n_train", "layers (A → B)", "fits", "mean fit time"]
    header += ["restarts converged"] if unpaired else []
    full = [
        [
            *(e(r.get(k)) for k in ("experiment", "method", "aligner", "n_train", "seed", "layer_a", "layer_b")),
            e(seconds(r.get("fit_seconds"))),
            f"<code>{e(r.get('path'))}</code>",
        ]
        for r in recs
    ]
    full_header = ["experiment", "method", "aligner", "n_train", "seed", "layer A", "layer B", "fit time", "path"]
    return table(header, rows, "num") + _details(f"All {len(recs)} fits", table(full_header, full, "num"))


def _jobs(ctx: Context) -> str:
    jobs = ctx.data.jobs
    if not jobs:
        return "<p class='missing'>Not in this run (run.json lists no jobs).</p>"
    kinds = list(dict.fromkeys(str(j.get("kind")) for j in jobs))
    cols = statuses({str(j.get("status")) for j in jobs})
    rows = []
    for kind in kinds:
        mine = [j for j in jobs if str(j.get("kind")) == kind]
        counts = [str(sum(1 for j in mine if str(j.get("status")) == st)) for st in cols]
        secs = sum(float(j["seconds"]) for j in mine if finite(j.get("seconds")))
        rows.append([e(kind), *counts, e(seconds(secs))])
    full = [
        [
            f"<code>{e(j.get('id'))}</code>",
            e(j.get("kind")),
            f"<span class='bad'>{e(j.get('status'))}</span>" if j.get("status") == "failed" else e(j.get("status")),
            e(seconds(j.get("seconds"))),
        ]
        for j in jobs
    ]
    return table(["kind", *[e(s) for s in cols], "seconds (sum)"], rows, "num") + _details(
        f"All {len(jobs)} jobs", table(["id", "kind", "status", "time"], full, "num")
    )


def build(ctx: Context) -> Section:
    return section("fits", "Fits and jobs", howto(HOWTO), "<h3>Fits</h3>", _fits(ctx), "<h3>Jobs</h3>", _jobs(ctx))
