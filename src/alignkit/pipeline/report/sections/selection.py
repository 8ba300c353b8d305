"""Layer selection: the layer pair STRUCTURE's selection chose per experiment, against the last-layer pair."""

from __future__ import annotations

from typing import Any

from alignkit.pipeline.report import labels
from alignkit.pipeline.report.context import Context
from alignkit.pipeline.report.html import Section, e, howto, num, section, table
from alignkit.pipeline.report.load import finite, records

HOWTO = (
    "With <code>layers: best</code> the layer pair an experiment's aligners are fitted on is chosen as STRUCTURE "
    "does: every layer pair is scored on the <i>training</i> pairs only (never the held-out items), and the best "
    "is taken. The last-layer pair, the usual default, is shown beside it for comparison. Experiments with fixed "
    "layers have no row here."
)


def _chosen(recs: list[dict[str, Any]], measure: labels.MeasureLabel) -> dict[str, Any] | None:
    """The row the run marked as chosen; else the best score in the measure's direction (None if unknown)."""
    chosen = [r for r in recs if r.get("chosen")]
    if chosen:
        return chosen[0]
    scored = [r for r in recs if finite(r.get("score"))]
    if not measure.known or not scored:
        return None
    pick = max if measure.higher_is_better else min
    return pick(scored, key=lambda r: float(r["score"]))


def build(ctx: Context) -> Section:
    title = "Layer selection"
    df = ctx.data.tables["layer_selection"]
    if df is None:
        return section("selection", title, howto(HOWTO), ctx.missing("layer_selection"))
    rows = []
    for (exp, metric), grp in df.groupby(["experiment", "measure"], sort=False):
        recs = records(grp)
        measure = labels.measure(metric)
        best = _chosen(recs, measure)
        last_a, last_b = recs[-1]["layer_a"], recs[-1]["layer_b"]  # rows follow the layer order
        last = [r for r in recs if r["layer_a"] == last_a and r["layer_b"] == last_b]
        rows.append(
            [
                e(exp),
                measure.label_html(),
                e(f"{best['layer_a']} × {best['layer_b']}") if best else "–",
                num(best["score"]) if best else "–",
                e(f"{last_a} × {last_b}"),
                num(last[0]["score"]) if last else "–",
            ]
        )
    header = ["experiment", "measure", "chosen pair (A × B)", "score", "last layers", "score"]
    return section("selection", title, howto(HOWTO), table(header, rows, "num"))
