"""Data-size curves: retrieval R@1, zero-shot top-1, BLI P@1 and translation top-1 against the training pairs."""

from __future__ import annotations

from typing import Any

from alignkit.pipeline import plots
from alignkit.pipeline.report import labels
from alignkit.pipeline.report.context import Context
from alignkit.pipeline.report.html import Section, arrow, e, howto, section
from alignkit.pipeline.report.load import eval_records, summarize

HOWTO = (
    "Each point is the mean over seeds of an aligner fitted on <i>n_train</i> pairs; bars and bands are "
    "the 95 % Student-t interval over seeds (none with a single seed). The x axis is logarithmic; "
    "methods are nudged sideways a little so their bars do not overlap. <b>Retrieval R@1</b>: the share "
    "of queries whose true partner ranks first among all candidates, scored by plain nearest neighbour "
    "(solid), CSLS (dashed, which discounts hub items) or, for a query against all the other views of an item, the "
    "GRAM volume of the views together (dotted). <b>Zero-shot top-1</b>: accuracy of labelling "
    "each item with its nearest class-name embedding. <b>BLI P@1</b>: the share of held-out source words whose "
    "nearest target word is one of their translations (OOV words counted wrong). <b>Translation top-1</b>: "
    "the share of items translated into the other space whose true partner is the nearest of the candidates. "
    "Overlapping intervals mean these seeds do not "
    "separate the methods."
)

#: Line style of each retrieval scoring (plain nearest neighbour is solid).
SCORING_STYLES = {"csls": "dashed", "gram": "dotted"}

#: The curve drawn per task: (task, metric).
CURVES = (("retrieval", "R@1"), ("zero_shot", "top1"), ("bli", "P@1"), ("translation", "top1"))


def _panel(s: dict[str, Any]) -> tuple[str, str]:
    """(axis title, y label) of a summary row."""
    label = labels.metric_label(s["metric"])
    if s["task"] in ("retrieval", "bli", "translation"):
        task = {"bli": "BLI"}.get(s["task"], s["task"])
        return f"{task} {label}" + (f" · {arrow(s['direction'])}" if s.get("direction") else ""), label
    return f"zero-shot {label}", f"{label} accuracy"


def build(ctx: Context) -> Section:
    import pandas as pd

    title = "Data-size curves"
    recs = [r for r in eval_records(ctx.data) if r.get("n_train") is not None and r.get("class") is None]
    # BLI reports P@k on covered and on all (strict) words: the curve is the strict one
    curves = [r for r in recs if (r.get("task"), r["metric"]) in CURVES and r.get("subset") in (None, "strict")]
    if not curves:
        return section("sizes", title, ctx.missing("evaluations"))
    summ = summarize(curves, ("experiment", "task", "direction", "scoring", "method", "n_train"))
    figs = []
    for exp in dict.fromkeys(r.get("experiment") for r in summ):
        rows = []
        for s in summ:
            if s.get("experiment") != exp:
                continue
            panel, ylabel = _panel(s)
            scoring = s.get("scoring")
            rows.append(
                {
                    "panel": panel,
                    "ylabel": ylabel,
                    "method": str(s.get("method")),
                    "style": SCORING_STYLES.get(str(scoring), "solid"),
                    "style_label": labels.scoring_label(scoring) if scoring else "",
                    "n_train": s["n_train"],
                    "mean": s["mean"],
                    "ci_low": s["ci_low"],
                    "ci_high": s["ci_high"],
                }
            )
        fig = plots.size_curves(pd.DataFrame(rows), colors=ctx.colors, title=f"{exp}: score vs training size")
        n_seeds = sorted({s["n"] for s in summ if s.get("experiment") == exp})
        seeds = "/".join(str(n) for n in n_seeds)
        cap = f"<b>{e(exp)}</b>: mean ± 95 % t-interval over {e(seeds)} seed(s)."
        figs.append(ctx.figure(f"sizes-{exp}", fig, f"Data-size curves {exp}", cap))
    return section("sizes", title, howto(HOWTO), *figs)
