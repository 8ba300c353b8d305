"""Method comparison: per experiment and setting, every metric of every method at every training size."""

from __future__ import annotations

from typing import Any

from alignkit.pipeline.report import labels
from alignkit.pipeline.report.context import Context
from alignkit.pipeline.report.html import Section, arrow, e, howto, is_best, mean_ci, section
from alignkit.pipeline.report.load import eval_records, finite, summarize

HOWTO = (
    "Each cell is the mean over seeds ± the half-width of the 95 % Student-t interval, with the number "
    "of seeds in brackets. <b>Bold</b>: the best method in that column at that training size (highest; "
    "lowest for ranks). R@k: share of queries whose partner is among the top k; MRR: mean reciprocal "
    "rank; median rank 1 is perfect. Zero-shot: top-k accuracy over all items, the mean of per-class "
    "accuracies, and accuracy on classes held out of training, ranked among all classes or among the "
    "held-out ones only. BLI: P@k over the held-out source words that have an embedding (covered) and over all "
    "of them (OOV counted wrong), and the coverage. Translation: mean cosine to the true partner, top-k among "
    "the candidates and mean rank. A difference smaller than the intervals is not resolved."
)


def _setting_label(task: Any, direction: Any, scoring: Any, subset: Any = None) -> str:
    bits = (
        {"bli": "BLI"}.get(str(task), str(task or "task ?").replace("_", "-")),
        arrow(direction) if direction else "",
        f"{labels.scoring_label(scoring)} scoring" if scoring else "",
        {"covered": "covered words", "strict": "all words (OOV wrong)"}.get(str(subset), "") if subset else "",
    )
    return " · ".join(x for x in bits if x)


def _best(values: list[float], metric: str) -> float | None:
    """The best of several methods' means in the metric's registered direction (None: no direction)."""
    hib = labels.metric_higher_is_better(metric)
    if hib is None or len(values) < 2:
        return None
    return max(values) if hib else min(values)


def _setting_table(ctx: Context, rows: list[dict[str, Any]]) -> str:
    """One table: a block of methods per training size, one column per metric."""
    metrics = sorted(dict.fromkeys(s["metric"] for s in rows), key=labels.metric_sort_key)
    sizes = sorted({s.get("n_train") for s in rows}, key=lambda v: (v is None, v if v is not None else 0))
    methods = sorted({str(s.get("method")) for s in rows})
    body = []
    for n_train in sizes:
        at = {(str(s.get("method")), s["metric"]): s for s in rows if s.get("n_train") == n_train}
        best = {
            m: _best(
                [at[(meth, m)]["mean"] for meth in methods if (meth, m) in at and finite(at[(meth, m)]["mean"])], m
            )
            for m in metrics
        }
        present = [meth for meth in methods if any((meth, m) in at for m in metrics)]
        for k, meth in enumerate(present):
            cells = []
            if k == 0:
                size_txt = f"{n_train:,}" if isinstance(n_train, int) else e(n_train if n_train is not None else "–")
                cells.append(f"<th rowspan='{len(present)}' class='size'>{size_txt}</th>")
            dot = f"<span class='dot' style='background:{ctx.colors.get(meth, '#777')}'></span>"
            cells.append(f"<td class='method'>{dot}{e(meth)}</td>")
            for m in metrics:
                s = at.get((meth, m))
                cells.append("<td>–</td>" if s is None else f"<td>{mean_ci(s, is_best(s['mean'], best[m]))}</td>")
            body.append("<tr>" + "".join(cells) + "</tr>")
    head = "".join(f"<th>{e(labels.metric_label(m))}</th>" for m in metrics)
    return (
        f"<div class='tablewrap'><table class='num cmp'><thead><tr><th>n_train</th>"
        f"<th>method</th>{head}</tr></thead><tbody>{''.join(body)}</tbody></table></div>"
    )


def build(ctx: Context) -> Section:
    title = "Method comparison"
    recs = [r for r in eval_records(ctx.data) if r.get("class") is None and r.get("metric") != "class_top1"]
    if not recs:
        return section("tables", title, ctx.missing("evaluations"))
    summ = summarize(recs, ("experiment", "task", "direction", "scoring", "subset", "n_train", "method"))
    out = []
    for exp in dict.fromkeys(s.get("experiment") for s in summ):
        out.append(f"<h3>{e(exp)}</h3>")
        exp_rows = [s for s in summ if s.get("experiment") == exp]
        key = ("task", "direction", "scoring", "subset")
        settings = list(dict.fromkeys(tuple(s.get(k) for k in key) for s in exp_rows))
        for setting in settings:
            rows = [s for s in exp_rows if tuple(s.get(k) for k in key) == setting]
            out.append(f"<h4>{e(_setting_label(*setting))}</h4>{_setting_table(ctx, rows)}")
    return section("tables", title, howto(HOWTO), *out)
