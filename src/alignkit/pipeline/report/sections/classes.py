"""Zero-shot per class: per-class top-1 of the best method at the largest training size."""

from __future__ import annotations

from typing import Any

from alignkit.pipeline import plots
from alignkit.pipeline.report.context import Context
from alignkit.pipeline.report.html import Section, e, howto, num, section, size
from alignkit.pipeline.report.load import eval_records, finite, summarize

HOWTO = (
    "Accuracy per class of the method with the best mean top-1 at the largest training size, mean "
    "over seeds with the 95 % interval; classes held out of training (when the run records them) are "
    "hatched. Classes far below the rest point to class names the text side encodes poorly or to "
    "visually confusable classes."
)


def _figure(ctx: Context, exp: Any, recs: list[dict[str, Any]], all_recs: list[dict[str, Any]]) -> str | None:
    """The bar chart of one experiment, or None when no method has a finite top-1."""
    import pandas as pd

    mine = [r for r in recs if r.get("experiment") == exp]
    sizes = [r["n_train"] for r in mine if r.get("n_train") is not None]
    n_train = max(sizes) if sizes else None
    mine = [r for r in mine if r.get("n_train") == n_train]
    top1 = [
        r
        for r in all_recs
        if r.get("experiment") == exp
        and r.get("task") == "zero_shot"
        and r.get("metric") == "top1"
        and r.get("n_train") == n_train
    ]
    ranking = summarize(top1 or [{**r, "metric": "top1"} for r in mine], ("method",))
    methods_here = {r.get("method") for r in mine}
    ranking = [s for s in ranking if s.get("method") in methods_here and finite(s["mean"])]
    if not ranking:
        return None
    best = max(ranking, key=lambda s: (s["mean"], str(s.get("method"))))  # top-1: higher is better
    method = best.get("method")
    rows = [r for r in mine if r.get("method") == method]
    df = pd.DataFrame(summarize(rows, ("class",)))
    if "heldout" in ctx.data.tables["evaluations"].columns:
        held = {str(r["class"]) for r in rows if r.get("heldout") is True}
        df["heldout"] = [str(c) in held for c in df["class"]]
    size_txt = size(n_train)
    head = f"{exp}: per-class top-1 of {method} (n_train = {size_txt})"
    fig = plots.class_bars(df, title=head, color=ctx.colors.get(str(method), "#0072B2"))
    cap = (
        f"<b>{e(exp)}</b>: {e(method)} has the best mean top-1 ({num(best['mean'])}) at n_train = "
        f"{e(size_txt)}; mean over {int(best['n'])} seed(s)."
    )
    return ctx.figure(f"classes-{exp}", fig, head, cap)


def build(ctx: Context) -> Section:
    title = "Zero-shot per class"
    all_recs = eval_records(ctx.data)
    recs = [
        r
        for r in all_recs
        if r.get("task") == "zero_shot" and r.get("metric") == "class_top1" and r.get("class") is not None
    ]
    if not recs:
        if ctx.data.tables["evaluations"] is None:
            return section("classes", title, ctx.missing("evaluations"))
        return section("classes", title, "<p class='missing'>Not in this run (no per-class zero-shot accuracy).</p>")
    figs = [f for exp in dict.fromkeys(r.get("experiment") for r in recs) if (f := _figure(ctx, exp, recs, all_recs))]
    if not figs:
        return section("classes", title, "<p class='missing'>Not in this run.</p>")
    return section("classes", title, howto(HOWTO), f"<div class='figgrid'>{''.join(figs)}</div>")
