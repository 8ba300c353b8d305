"""Layer atlas: a table of each atlas's best layer pair (with its confidence interval, false-discovery counts and
the distinct rows of each space) and one heatmap per (experiment, measure)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from alignkit.pipeline import plots
from alignkit.pipeline.report import labels
from alignkit.pipeline.report.context import Context
from alignkit.pipeline.report.html import Section, e, howto, num, section, table
from alignkit.pipeline.report.load import clean, finite, records

if TYPE_CHECKING:
    import pandas as pd

HOWTO = (
    "Each heatmap scores every pair of layers: rows are the layers of model A (first layer at the "
    "bottom), columns the layers of model B. <b>Mutual kNN</b> is the fraction of each item's k nearest "
    "neighbours that the two layers share (0: no shared neighbours, 1: identical neighbourhoods); "
    "<b>CKA</b> (centred kernel alignment) compares the whole similarity structure of the items "
    "(0 to 1, blind to rotations and isotropic scaling). The outlined cell is the best pair. Picking "
    "the best of all layer pairs inflates the score even when nothing is aligned, so its p-value comes "
    "from a <b>max-statistic permutation null</b>: the items of B are shuffled (one shuffle shared by all "
    "of B's layers), the best score over <i>all</i> pairs is kept for each shuffle, and the observed best "
    "is compared with those maxima. This controls for the search over pairs. A permutation p-value "
    "cannot go below 1/(permutations + 1), hence “p ≤ …”. Cells hatched <b>///</b> and dimmed are not "
    "significant at family-wise error 5 % (their score does not beat the max-null); cells hatched the other "
    "way (<b>\\\\\\</b>) are not significant at <b>false-discovery rate</b> 5 %: their per-cell permutation "
    "p-value, adjusted by Benjamini–Hochberg over all cells (the q-value), is above 0.05. A cell that fails "
    "both is cross-hatched. Family-wise control bounds the chance that <i>any</i> cell without /// is chance "
    "at 5 %; false-discovery control bounds the expected <i>share</i> of chance cells among those without "
    "\\\\\\ at 5 %, which is what reading the whole heatmap needs. <i>Chance-adjusted</i> measures the best "
    "score against the mean of the max-statistic null. "
    "The <b>CI</b> is a subsampling confidence interval of the best pair (half of the items drawn without "
    "replacement, when the run asked for <code>n_boot</code>). <b>Distinct rows</b> counts the items whose "
    "vectors differ (the fewest over each model's layers): repeated rows (a class name as the caption of "
    "every image) make kNN neighbourhoods a matter of tie-breaking."
)


@dataclass
class Atlas:
    """One (experiment, measure) atlas: its cells and what the run recorded about its best pair."""

    experiment: str
    measure: labels.MeasureLabel
    space_a: str
    space_b: str
    cells: pd.DataFrame
    best_a: str | None
    best_b: str | None
    best_score: float | None
    p: float | None
    n_perm: int | None
    max_null_mean: float | None
    adjusted: float | None
    n: int | None
    ci: tuple[float, float, float] | None = None  # (low, high, level) of the best pair
    final_ci: tuple[str, str, float | None, float, float, float] | None = None  # final × final: a, b, score, CI

    @property
    def ci_text(self) -> str:
        return _interval(self.ci)

    @property
    def fdr_text(self) -> str:
        """How many cells are significant at BH q ≤ 0.05, of those with a q-value."""
        if "q_value_bh" not in self.cells.columns:
            return "–"
        q = self.cells["q_value_bh"].astype(float)
        tested = int(q.notna().sum())
        return f"{int((q <= NOT_SIGNIFICANT).sum())} of {tested}" if tested else "–"

    def distinct(self, side: str) -> dict[str, int]:
        """Layer -> distinct rows of one side (``"a"`` or ``"b"``), from the cells (empty for older runs)."""
        col = f"n_distinct_{side}"
        if col not in self.cells.columns:
            return {}
        pairs = self.cells[[f"layer_{side}", col]].drop_duplicates(f"layer_{side}")
        return {str(layer): int(v) for layer, v in pairs.itertuples(index=False) if finite(v)}

    @property
    def distinct_text(self) -> str:
        counts = [self.distinct(side) for side in ("a", "b")]
        if not any(counts):
            return "–"
        return " / ".join(f"{min(c.values()):,}" if c else "–" for c in counts)

    @property
    def n_ill_defined(self) -> int:
        if "knn_ill_defined" not in self.cells.columns:
            return 0
        return int(self.cells["knn_ill_defined"].fillna(False).astype(bool).sum())

    @property
    def head(self) -> str:
        return f"{self.experiment} · {self.measure.label} ({self.space_a} × {self.space_b})"

    @property
    def p_text(self) -> str:
        return plots.format_p(self.p if self.p is not None else math.nan, self.n_perm)


def atlases(ctx: Context) -> list[Atlas]:
    """Every atlas of the run, in table order.

    The best pair is the one ``atlas_summary`` recorded; without a summary it is taken from the cells,
    in the measure's registered direction, and left out when the measure is not registered.
    """
    cells = ctx.data.tables["atlas"]
    summ = ctx.data.tables["atlas_summary"]
    if cells is None:
        return []
    summary: dict[tuple[str, str], dict[str, Any]] = {}
    if summ is not None:
        for r in records(summ):
            summary[(str(r.get("experiment")), str(r.get("measure")))] = r
    out = []
    keys = list(dict.fromkeys(zip(cells["experiment"].astype(str), cells["measure"].astype(str), strict=True)))
    for exp, metric in keys:
        sub = cells[(cells["experiment"].astype(str) == exp) & (cells["measure"].astype(str) == metric)]
        first = records(sub.head(1))[0]
        s = summary.get((exp, metric), {})
        measure = labels.measure(metric)
        scores = sub["score"].astype(float)
        if s.get("best_a") is not None and s.get("best_b") is not None:
            best_a, best_b, best_score = str(s["best_a"]), str(s["best_b"]), clean(s.get("best_score"))
        elif measure.known and scores.notna().any():
            row = sub.loc[scores.idxmax() if measure.higher_is_better else scores.idxmin()]
            best_a, best_b, best_score = str(row["layer_a"]), str(row["layer_b"]), float(row["score"])
        else:
            best_a = best_b = best_score = None
        if best_score is None and best_a is not None:
            hit = sub[(sub["layer_a"].astype(str) == best_a) & (sub["layer_b"].astype(str) == best_b)]
            best_score = float(hit["score"].iloc[0]) if len(hit) else None
        p = clean(s.get("best_p_calibrated"))
        if p is None and "p_value_fwer" in sub.columns and sub["p_value_fwer"].notna().any():
            p = float(sub["p_value_fwer"].min())
        n_perm = clean(s.get("n_perm", first.get("n_perm")))
        sub = _with_q(sub)
        out.append(
            Atlas(
                experiment=exp,
                measure=measure,
                space_a=str(first.get("space_a") or "A"),
                space_b=str(first.get("space_b") or "B"),
                cells=sub,
                best_a=best_a,
                best_b=best_b,
                best_score=best_score,
                p=p,
                n_perm=int(n_perm) if finite(n_perm) else None,
                max_null_mean=clean(s.get("max_null_mean")),
                adjusted=clean(s.get("best_adjusted")),
                n=clean(s.get("n", first.get("n"))),
                ci=_ci(s, "best"),
                final_ci=_final(s),
            )
        )
    return out


NOT_SIGNIFICANT = plots.NOT_SIGNIFICANT_ALPHA


def _with_q(cells: pd.DataFrame) -> pd.DataFrame:
    """The cells with Benjamini–Hochberg q-values: recorded by the run, or (older runs) computed here from the
    per-cell permutation p-values over the atlas's cells, as :meth:`alignkit.AtlasResult.q_values` does."""
    if "q_value_bh" in cells.columns or "p_value" not in cells.columns or not cells["p_value"].notna().any():
        return cells
    from alignkit.stats.fdr import bh_qvalues

    return cells.assign(q_value_bh=bh_qvalues(cells["p_value"].astype(float).to_numpy()))


def _ci(summary: dict[str, Any], which: str) -> tuple[float, float, float] | None:
    low, high = clean(summary.get(f"{which}_ci_low")), clean(summary.get(f"{which}_ci_high"))
    if not (finite(low) and finite(high)):
        return None
    level = clean(summary.get("ci_level"))
    return float(low), float(high), float(level) if finite(level) else math.nan


def _final(summary: dict[str, Any]) -> tuple[str, str, float | None, float, float, float] | None:
    ci = _ci(summary, "final")
    if ci is None or summary.get("final_a") is None or summary.get("final_b") is None:
        return None
    return str(summary["final_a"]), str(summary["final_b"]), clean(summary.get("final_score")), *ci


def _interval(ci: tuple[float, float, float] | None) -> str:
    if ci is None:
        return "–"
    low, high, level = ci
    return (f"{level:.0%} " if math.isfinite(level) else "") + f"[{num(low)}, {num(high)}]"


def _heatmap(ctx: Context, a: Atlas) -> str:
    has_best = a.best_a is not None
    if not a.measure.known:
        detail, marked = a.measure.unknown_note(), None
    else:
        detail = f"best {a.best_a} × {a.best_b} = {num(a.best_score)}, {a.p_text}" if has_best else "no finite scores"
        marked = (a.best_a, a.best_b) if has_best else None
    fig = plots.atlas_heatmap(
        a.cells,
        title=f"{a.head}\n{detail}",
        metric=a.measure.label,
        best=marked,
        label_a=a.space_a,
        label_b=a.space_b,
    )
    has_null = "p_value_fwer" in a.cells.columns and a.cells["p_value_fwer"].notna().any()
    has_q = "q_value_bh" in a.cells.columns and a.cells["q_value_bh"].notna().any()
    cap = f"<b>{e(a.head)}</b>: {e(detail)}."
    if has_null:
        cap += " Hatched ///: not significant after FWER correction (max-statistic p &gt; 0.05)."
    if has_q:
        cap += " Hatched \\\\\\: not significant at false-discovery rate 5 % (Benjamini–Hochberg q &gt; 0.05)."
    if not (has_null or has_q):
        cap += " No permutation null."
    return ctx.figure(f"atlas-{a.experiment}-{a.measure.id}", fig, f"Atlas heatmap {a.head}", cap)


def build(ctx: Context) -> Section:
    title = "Layer atlas"
    atl = atlases(ctx)
    if not atl:
        return section("atlas", title, ctx.missing("atlas"))
    rows = [
        [
            e(a.experiment),
            f"{e(a.space_a)} × {e(a.space_b)}",
            a.measure.label_html(),
            f"{e(a.best_a)} × {e(a.best_b)}" if a.best_a is not None else "–",
            num(a.best_score),
            e(a.ci_text),
            e(a.p_text),
            e(a.fdr_text),
            num(a.max_null_mean),
            num(a.adjusted),
            e(a.n) if a.n is not None else "–",
            e(a.distinct_text),
        ]
        for a in atl
    ]
    header = [
        "experiment",
        "spaces",
        "measure",
        "best pair (A × B)",
        "score",
        "CI",
        "calibrated p",
        "cells at BH q ≤ 0.05",
        "max-null mean",
        "chance-adjusted",
        "n items",
        "distinct rows (A / B)",
    ]
    figs = [_heatmap(ctx, a) for a in atl] + _pool_curves(ctx)
    notes = [*_final_notes(atl), *_distinct_notes(atl), *_degenerate_notes(atl)]
    return section("atlas", title, howto(HOWTO), table(header, rows, "num"), *notes, *figs)


def _pool_curves(ctx: Context) -> list[str]:
    """One figure per measure of the runs' pool-size curves (``atlas: {pool_sizes: [...]}``), if any."""
    df = ctx.data.tables.get("pool_curve")
    if df is None or df.empty:
        return []
    out = []
    for metric, grp in df.groupby("measure", sort=False):
        label = labels.measure(str(metric))
        cap = (
            f"{label.label_html()} of the last layers on nested random pools of each size (mean over "
            f"{int(grp['repeats'].iloc[0])} draws, band: its interval; dashed: the permutation null). A kNN score "
            "falls as the pool grows: compare scores only at the same pool size."
        )
        fig = plots.pool_curve(grp, title=f"pool size: {metric}")
        out.append(ctx.figure(f"pool-curve-{metric}", fig, f"Pool-size curve {metric}", cap))
    return out


def _final_notes(atl: list[Atlas]) -> list[str]:
    """The final × final pair's score and interval, where the run computed one."""
    notes = []
    for a in atl:
        if a.final_ci is not None:
            fa, fb, score, low, high, level = a.final_ci
            ci = e(_interval((low, high, level)))
            notes.append(f"<p>{e(a.head)}: final × final ({e(fa)} × {e(fb)}) = {num(score)}, CI {ci}.</p>")
    return notes


def _distinct_notes(atl: list[Atlas]) -> list[str]:
    """Layers whose rows repeat (fewer distinct rows than items), and the kNN cells that makes ill-defined."""
    notes = []
    for a in atl:
        repeated = []
        for side, space in (("a", a.space_a), ("b", a.space_b)):
            for layer, count in a.distinct(side).items():
                if a.n is not None and count < int(a.n):
                    repeated.append(f"<b>{e(space)} · {e(layer)}</b> {count:,} of {int(a.n):,}")
        if repeated:
            notes.append(f"<p class='warn'>{e(a.head)}: repeated rows: distinct rows in {'; '.join(repeated)}.</p>")
        if a.n_ill_defined:
            notes.append(
                f"<p class='warn'>{e(a.head)}: {a.n_ill_defined} cell(s) ill-defined for this kNN measure: in one "
                "of their layers most rows have at least k identical copies, so their neighbourhoods are decided by "
                "tie-breaking, not by the geometry: read them as undefined.</p>"
            )
    return notes


def _degenerate_notes(atl: list[Atlas]) -> list[str]:
    """One line per atlas that had degenerate layers: their scores are missing, and why."""
    notes = []
    for a in atl:
        found: dict[str, str] = {}
        for side, space in (("a", a.space_a), ("b", a.space_b)):
            col = f"degenerate_{side}"
            if col not in a.cells.columns:
                continue
            for layer, why in a.cells[[f"layer_{side}", col]].drop_duplicates().itertuples(index=False):
                if isinstance(why, str) and why:
                    found[f"{space} · {layer}"] = why
        if found:
            items = "; ".join(f"<b>{e(k)}</b> ({e(v)})" for k, v in found.items())
            notes.append(
                f"<p class='missing'>{e(a.head)}: degenerate layer(s) {items}. Their scores are missing (never a "
                "number that reads as alignment) and they are left out of the best pair and the max-statistic "
                "null.</p>"
            )
    return notes
