"""Diagnostics: layer profiles of spaces (``diagnostics.parquet``) and the geometry of held-out items before and
after each aligner (``aligned_diagnostics.parquet``), with the NoC level histogram when a run asks for it."""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from alignkit.pipeline import plots
from alignkit.pipeline.report.context import Context
from alignkit.pipeline.report.html import Section, e, howto, num, section, size, table
from alignkit.pipeline.report.load import finite, records

PROFILE_HOWTO = (
    "Each panel is one diagnostic computed on every layer of one space, input side on the left; the band is the "
    "subsampling confidence interval when the run asked for one. A cross on the axis marks a degenerate layer "
    "(constant or collapsed), which has no value. Where a class diagnostic (probe accuracy, Fisher J, Thornton) "
    "rises, classes become separable at that depth."
)
ALIGNED_HOWTO = (
    "Diagnostics of the held-out items before alignment (the raw spaces) and after (both sides mapped by the "
    "aligner), mean over seeds at the largest training size. One-space diagnostics are given per side (a, b); "
    "pair diagnostics (modality gap, paired cosine, alignment) on the pair, before alignment only when one "
    "encoder embedded both sides (two encoders' raw coordinates are unrelated). A modality gap that shrinks "
    "and a paired cosine that grows say the aligner pulled partners together; uniformity that collapses "
    "towards 0 says it did so by squashing the space."
)


def _details(r: dict[str, Any]) -> dict[str, Any]:
    try:
        out = json.loads(r.get("details") or "{}")
    except ValueError:
        return {}
    return out if isinstance(out, dict) else {}


def build_profiles(ctx: Context) -> Section:
    title = "Diagnostics per layer"
    df = ctx.data.tables.get("diagnostics")
    if df is None:
        return section("diagnostics", title, ctx.missing("diagnostics"))
    recs = records(df)
    parts = []
    for space in dict.fromkeys(str(r.get("space")) for r in recs):
        mine = [r for r in recs if str(r.get("space")) == space]
        panels = []
        for diag in dict.fromkeys(str(r.get("diagnostic")) for r in mine):
            rows = sorted((r for r in mine if str(r.get("diagnostic")) == diag), key=lambda r: r.get("index") or 0)

            def col(key: str, rows: list[dict[str, Any]] = rows) -> list[float]:
                return [float(r[key]) if finite(r.get(key)) else np.nan for r in rows]

            panels.append(
                {
                    "diagnostic": diag,
                    "layers": [str(r.get("layer")) for r in rows],
                    "value": col("value"),
                    "low": col("ci_low"),
                    "high": col("ci_high"),
                    "degenerate": [bool(r.get("degenerate")) for r in rows],
                }
            )
        n = mine[0].get("n")
        fig = plots.diagnostic_profiles(panels, title=f"{space}: diagnostics per layer")
        cap = f"<b>{e(space)}</b>: {len(panels)} diagnostic(s) on {e(n)} items."
        ridged = [str(r.get("layer")) for r in mine if _details(r).get("regularised") is True]
        if ridged:  # Fisher J with d ≥ n − C: S_W is singular, the ridge decides the value
            cap += (
                f" Fisher J needed a ridge on {e(', '.join(ridged))} (too few items for the width: S_W is "
                "singular), so its value there reflects the regulariser, not the classes."
            )
        parts.append(ctx.figure(f"diagnostics-{space}", fig, f"Diagnostics of {space}", cap))
    return section("diagnostics", title, howto(PROFILE_HOWTO), *parts)


def build_aligned(ctx: Context) -> Section:
    title = "What alignment changed"
    df = ctx.data.tables.get("aligned_diagnostics")
    if df is None:
        return section("aligned-diagnostics", title, ctx.missing("aligned_diagnostics"))
    recs = records(df)
    parts = [howto(ALIGNED_HOWTO)]
    for exp in dict.fromkeys(str(r.get("experiment")) for r in recs):
        mine = [r for r in recs if str(r.get("experiment")) == exp]
        n_train = max(int(r["n_train"]) for r in mine if finite(r.get("n_train")))
        mine = [r for r in mine if finite(r.get("n_train")) and int(r["n_train"]) == n_train]
        methods = list(dict.fromkeys(str(r.get("method")) for r in mine))
        keys = list(dict.fromkeys((str(r.get("diagnostic")), str(r.get("side"))) for r in mine))
        body = []
        for diag, side in keys:
            cell = [r for r in mine if str(r.get("diagnostic")) == diag and str(r.get("side")) == side]
            before = [float(r["value"]) for r in cell if r.get("stage") == "before" and finite(r.get("value"))]
            row = [e(diag), e(side), num(np.mean(before)) if before else "–"]
            for m in methods:
                after = [
                    float(r["value"])
                    for r in cell
                    if r.get("stage") == "after" and str(r.get("method")) == m and finite(r.get("value"))
                ]
                row.append(num(np.mean(after)) if after else "–")
            body.append(row)
        head = ["diagnostic", "side", "before", *[f"after: {e(m)}" for m in methods]]
        parts.append(f"<h3>{e(exp)} (n_train = {e(size(n_train))})</h3>" + table(head, body))
        for m in methods:
            levels = [
                r
                for r in mine
                if str(r.get("diagnostic")).startswith("alignment_levels")
                and r.get("stage") == "after"
                and str(r.get("method")) == m
            ]
            counts = _details(levels[0]).get("counts") if levels else None
            if isinstance(counts, list) and counts:
                fig = plots.level_histogram(counts, title=f"{exp}: {m}", color=ctx.colors.get(m, "#0072B2"))
                cap = f"<b>{e(exp)}</b>, {e(m)}: held-out pairs per alignment level (NoC buckets, first seed)."
                parts.append(ctx.figure(f"levels-{exp}-{m}", fig, f"Alignment levels {exp} {m}", cap))
    return section("aligned-diagnostics", title, *parts)
