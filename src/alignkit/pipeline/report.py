"""The self-contained HTML report of a declarative run.

:func:`write_report` reads what a run left in ``results/<run-name>/`` (``run.json`` and the Parquet
tables ``atlas``, ``atlas_summary``, ``fits``, ``evaluations``; any may be missing or empty), draws
the plots (:mod:`alignkit.pipeline.plots`), saves them as PNGs under ``plots/`` and writes
``report.html`` with the same PNGs embedded as base64 data URIs: one file, no network, no external
CSS, scripts or fonts. The report holds no generation timestamp, so regenerating it from the same
files gives the same bytes.
"""

from __future__ import annotations

import base64
import html
import json
import math
import re
import struct
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from alignkit.pipeline import plots

__all__ = ["build_report", "write_report"]

REPORT_NAME = "report.html"
PLOTS_DIR = "plots"
_PLOT_PREFIXES = ("atlas-", "profiles-", "sizes-", "classes-")
_TABLES = ("atlas", "atlas_summary", "layer_selection", "fits", "evaluations")

_METRIC_LABELS = {
    "mrr": "MRR",
    "median_rank": "median rank",
    "mean_rank": "mean rank",
    "top1": "top-1",
    "top5": "top-5",
    "mean_class_top1": "mean class top-1",
    "heldout_top1_among_all": "held-out top-1 (among all)",
    "heldout_top1_among_heldout": "held-out top-1 (among held-out)",
    "mutual_knn": "mutual kNN",
    "cka": "CKA",
}
_METRIC_ORDER = (
    "R@1",
    "R@5",
    "R@10",
    "mrr",
    "median_rank",
    "top1",
    "top5",
    "mean_class_top1",
    "heldout_top1_among_all",
    "heldout_top1_among_heldout",
)
_SCORING_LABELS = {"nn": "NN", "csls": "CSLS"}


def write_report(run_dir: str | Path) -> Path:
    """Write ``<run_dir>/report.html`` (atomically) and its plots under ``<run_dir>/plots/``.

    Returns the report's path. PNGs this function wrote on an earlier call that the run no longer
    produces are removed from ``plots/``; other files there are left alone.
    """
    from alignkit.io import atomic_write_bytes, atomic_write_text

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"run folder {run_dir} does not exist")
    text, pngs = build_report(run_dir)
    plot_dir = run_dir / PLOTS_DIR
    if pngs:
        plot_dir.mkdir(exist_ok=True)
    for name, data in pngs.items():
        atomic_write_bytes(plot_dir / name, data)
    if plot_dir.is_dir():
        for old in plot_dir.glob("*.png"):
            if old.name.startswith(_PLOT_PREFIXES) and old.name not in pngs:
                old.unlink(missing_ok=True)
    out = run_dir / REPORT_NAME
    atomic_write_text(out, text)
    return out


def build_report(run_dir: str | Path) -> tuple[str, dict[str, bytes]]:
    """The report's HTML and its plots (file name -> PNG bytes), without writing anything."""
    run_dir = Path(run_dir)
    ctx = _Context(run_dir)
    sections = [
        _atlas_section(ctx),
        _selection_section(ctx),
        _profiles_section(ctx),
        _sizes_section(ctx),
        _tables_section(ctx),
        _classes_section(ctx),
        _fits_jobs_section(ctx),
    ]
    body = _header(ctx, sections) + "".join(s.html for s in sections) + _footer(ctx)
    title = f"alignkit report: {ctx.name}"
    page = (
        _PAGE.replace("@TITLE@", _e(title)).replace("@CSS@", _CSS).replace("@SCRIPT@", _SCRIPT).replace("@BODY@", body)
    )
    return page, dict(ctx.pngs)


# --------------------------------------------------------------------------------------------------
# Reading


@dataclass
class _Section:
    anchor: str
    title: str
    html: str


@dataclass
class _Context:
    run_dir: Path
    run: dict[str, Any] = field(default_factory=dict)
    run_error: str | None = None
    tables: dict[str, Any] = field(default_factory=dict)
    table_errors: dict[str, str] = field(default_factory=dict)
    pngs: dict[str, bytes] = field(default_factory=dict)
    colors: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        path = self.run_dir / "run.json"
        try:
            self.run = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(self.run, dict):
                raise ValueError("run.json does not hold an object")
        except FileNotFoundError:
            self.run, self.run_error = {}, "run.json is missing"
        except (OSError, ValueError) as exc:
            self.run, self.run_error = {}, f"run.json could not be read: {exc}"
        for name in _TABLES:
            self.tables[name] = self._read(name)
        methods: list[str] = []
        for name in ("evaluations", "fits"):
            df = self.tables[name]
            if df is not None and "method" in df.columns:
                methods += [str(m) for m in df["method"].dropna().unique()]
        self.colors = plots.method_colors(methods)

    @property
    def name(self) -> str:
        return str(self.run.get("name") or self.run_dir.name)

    def _read(self, name: str) -> Any:
        path = self.run_dir / f"{name}.parquet"
        if not path.exists():
            return None
        import pandas as pd

        try:
            df = pd.read_parquet(path)
        except Exception as exc:  # a corrupt table must not take the whole report down
            self.table_errors[name] = f"{path.name} could not be read: {type(exc).__name__}: {exc}"
            return None
        return df if len(df) else None

    def missing(self, *names: str) -> str:
        notes = [self.table_errors[n] for n in names if n in self.table_errors]
        files = " / ".join(f"{n}.parquet" for n in names)
        msg = f"Not in this run (no rows in {files})."
        return "".join(f'<p class="warn">{_e(n)}</p>' for n in notes) + f'<p class="missing">{_e(msg)}</p>'

    def figure(self, stem: str, fig: Any, alt: str, caption: str = "") -> str:
        """Render ``fig`` to PNG, remember it under a unique file name, return the <figure> HTML."""
        data = plots.to_png(fig)
        base = _slug(stem)
        fname, k = f"{base}.png", 2
        while fname in self.pngs:
            fname, k = f"{base}-{k}.png", k + 1
        self.pngs[fname] = data
        w, h = _png_size(data)
        uri = "data:image/png;base64," + base64.b64encode(data).decode("ascii")
        cap = f"<figcaption>{caption} <span class='file'>plots/{_e(fname)}</span></figcaption>"
        return (
            f'<figure><img src="{uri}" alt="{_e(alt)}" width="{w}" height="{h}" data-file="{_e(fname)}">{cap}</figure>'
        )


# --------------------------------------------------------------------------------------------------
# Small helpers


def _e(s: Any) -> str:
    return html.escape(str(s), quote=True)


def _slug(s: str) -> str:
    out = re.sub(r"[^A-Za-z0-9._-]+", "_", s).strip("._-")
    return out[:120] or "plot"


def _png_size(data: bytes) -> tuple[int, int]:
    w, h = struct.unpack(">II", data[16:24])
    return int(w), int(h)


def _clean(v: Any) -> Any:
    """None for missing values (None, NaN, pandas NA), plain Python scalars otherwise."""
    if v is None:
        return None
    try:
        import pandas as pd

        if pd.isna(v):
            return None
    except (TypeError, ValueError):
        pass
    if hasattr(v, "item"):
        try:
            return v.item()
        except (ValueError, AttributeError):
            pass
    return v


def _finite(v: Any) -> bool:
    v = _clean(v)
    return isinstance(v, (int, float)) and math.isfinite(v)


def _records(df: Any) -> list[dict[str, Any]]:
    return [{k: _clean(v) for k, v in r.items()} for r in df.to_dict("records")]


def _label(metric: Any) -> str:
    return _METRIC_LABELS.get(str(metric), str(metric))


def _direction(d: Any) -> str:
    return str(d).replace("->", "→")


def _num(v: Any) -> str:
    if not _finite(v):
        return "–"
    v = float(v)
    if abs(v) >= 100:
        return f"{v:,.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    return f"{v:.3f}"


def _seconds(s: Any) -> str:
    if not _finite(s):
        return "–"
    s = float(s)
    if s < 59.95:
        return f"{s:.1f} s"
    if s < 3600 - 0.5:
        secs = round(s)
        return f"{secs // 60} min {secs % 60:02d} s"
    mins = round(s / 60)
    return f"{mins // 60} h {mins % 60:02d} min"


def _when(iso: Any) -> str:
    if not iso:
        return "–"
    try:
        dt = datetime.fromisoformat(str(iso))
    except ValueError:
        return str(iso)
    tz = dt.strftime(" %Z") if dt.tzinfo is not None else ""
    return dt.strftime("%Y-%m-%d %H:%M:%S") + tz


def _lower_is_better(metric: str) -> bool:
    return metric in ("median_rank", "mean_rank") or metric.endswith("_rank")


def _howto(text: str) -> str:
    return f'<div class="howto"><strong>How to read this.</strong> {text}</div>'


def _table(header: Iterable[str], rows: Iterable[Iterable[str]], cls: str = "") -> str:
    """An HTML table from already-escaped cell HTML."""
    head = "".join(f"<th>{h}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    return (
        f'<div class="tablewrap"><table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'
    )


def _summarize(records: list[dict[str, Any]], by: tuple[str, ...]) -> list[dict[str, Any]]:
    from alignkit.evaluate.rows import summarize

    rows = [r for r in records if _finite(r.get("value"))]
    return summarize(rows, by=by) if rows else []


# --------------------------------------------------------------------------------------------------
# Header and footer


def _header(ctx: _Context, sections: list[_Section]) -> str:
    run = ctx.run
    parts = [f"<header><h1>Run report: <span class='runname'>{_e(ctx.name)}</span></h1>"]
    if ctx.run_error:
        parts.append(f'<p class="warn">{_e(ctx.run_error)}</p>')
    finished = run.get("finished")
    meta = [
        f"<b>started</b> {_e(_when(run.get('started')))}",
        f"<b>finished</b> {_e(_when(finished)) if finished else '<span class=warn>not finished</span>'}",
        f"<b>wall time</b> {_e(_seconds(run.get('wall_seconds')))}",
    ]
    if run.get("seed") is not None:
        meta.append(f"<b>seed</b> {_e(run.get('seed'))}")
    parts.append(f"<p class='meta'>{' · '.join(meta)}</p>")

    jobs = [j for j in run.get("jobs") or [] if isinstance(j, dict)]
    if jobs:
        counts: dict[str, int] = {}
        for j in jobs:
            counts[str(j.get("status"))] = counts.get(str(j.get("status")), 0) + 1
        bits = []
        for status in ("done", "cached", "failed", *sorted(set(counts) - {"done", "cached", "failed"})):
            if status in counts:
                cls = " class='bad'" if status == "failed" else ""
                bits.append(f"<span{cls}>{counts[status]} {_e(status)}</span>")
        parts.append(f"<p class='meta'><b>jobs</b> {', '.join(bits)} (of {len(jobs)})</p>")

    versions = []
    if run.get("alignkit_version"):
        versions.append(f"alignkit {_e(run['alignkit_version'])}")
    for pkg, ver in (run.get("versions") or {}).items():
        versions.append(f"{_e(pkg)} {_e(ver)}")
    hw = run.get("hardware") or {}
    hw_bits = []
    if hw.get("cpu_count") is not None:
        hw_bits.append(f"{_e(hw['cpu_count'])} CPUs")
    if hw.get("torch_threads") is not None:
        hw_bits.append(f"torch threads {_e(hw['torch_threads'])}")
    if "cuda" in hw:
        hw_bits.append(f"CUDA {_e(hw['cuda'])}" if hw.get("cuda") else "no CUDA")
    if hw.get("platform"):
        hw_bits.append(_e(hw["platform"]))
    if versions:
        parts.append(f"<p class='small'><b>versions</b> {' · '.join(versions)}</p>")
    if hw_bits:
        parts.append(f"<p class='small'><b>hardware</b> {' · '.join(hw_bits)}</p>")
    if run.get("config") is not None:
        cfg = json.dumps(run["config"], indent=2, ensure_ascii=False, default=str)
        parts.append(f"<details><summary>Configuration</summary><pre>{_e(cfg)}</pre></details>")
    links = "".join(f"<a href='#{s.anchor}'>{_e(s.title)}</a>" for s in sections)
    parts.append(f"<nav>{links}</nav></header>")
    return "".join(parts)


def _footer(ctx: _Context) -> str:
    ver = ctx.run.get("alignkit_version")
    by = f"alignkit {_e(ver)}" if ver else "alignkit"
    return (
        f"<footer>Written by {by} from run.json and the Parquet tables in this folder; "
        "the plots are also saved as PNG files under <code>plots/</code>.</footer>"
    )


# --------------------------------------------------------------------------------------------------
# Atlas


@dataclass
class _Atlas:
    experiment: str
    metric: str
    space_a: str
    space_b: str
    cells: Any
    best_a: str | None
    best_b: str | None
    best_score: float | None
    p: float | None
    n_perm: int | None
    max_null_mean: float | None
    adjusted: float | None
    n: int | None
    higher_is_better: bool


def _atlases(ctx: _Context) -> list[_Atlas]:
    cells = ctx.tables["atlas"]
    summ = ctx.tables["atlas_summary"]
    if cells is None:
        return []
    summary: dict[tuple[str, str], dict[str, Any]] = {}
    if summ is not None:
        for r in _records(summ):
            summary[(str(r.get("experiment")), str(r.get("metric")))] = r
    out = []
    keys = list(dict.fromkeys(zip(cells["experiment"].astype(str), cells["metric"].astype(str), strict=True)))
    for exp, metric in keys:
        sub = cells[(cells["experiment"].astype(str) == exp) & (cells["metric"].astype(str) == metric)]
        first = _records(sub.head(1))[0]
        s = summary.get((exp, metric), {})
        scores = sub["score"].astype(float)
        hib = True
        if _finite(s.get("best_score")) and scores.notna().any():
            b = float(s["best_score"])
            hib = not (abs(b - scores.min()) < abs(b - scores.max()))
        if s.get("best_a") is not None and s.get("best_b") is not None:
            best_a, best_b, best_score = str(s["best_a"]), str(s["best_b"]), _clean(s.get("best_score"))
        elif scores.notna().any():
            row = sub.loc[scores.idxmax()]
            best_a, best_b, best_score = str(row["layer_a"]), str(row["layer_b"]), float(row["score"])
        else:
            best_a = best_b = best_score = None
        if best_score is None and best_a is not None:
            hit = sub[(sub["layer_a"].astype(str) == best_a) & (sub["layer_b"].astype(str) == best_b)]
            best_score = float(hit["score"].iloc[0]) if len(hit) else None
        p = _clean(s.get("best_p_calibrated"))
        if p is None and "p_value_fwer" in sub.columns and sub["p_value_fwer"].notna().any():
            p = float(sub["p_value_fwer"].min())
        n_perm = _clean(s.get("n_perm", first.get("n_perm")))
        out.append(
            _Atlas(
                experiment=exp,
                metric=metric,
                space_a=str(first.get("space_a") or "A"),
                space_b=str(first.get("space_b") or "B"),
                cells=sub,
                best_a=best_a,
                best_b=best_b,
                best_score=best_score,
                p=p,
                n_perm=int(n_perm) if _finite(n_perm) else None,
                max_null_mean=_clean(s.get("max_null_mean")),
                adjusted=_clean(s.get("best_adjusted")),
                n=_clean(s.get("n", first.get("n"))),
                higher_is_better=hib,
            )
        )
    return out


_ATLAS_HOWTO = (
    "Each heatmap scores every pair of layers: rows are the layers of model A (first layer at the "
    "bottom), columns the layers of model B. <b>Mutual kNN</b> is the fraction of each item's k nearest "
    "neighbours that the two layers share (0: no shared neighbours, 1: identical neighbourhoods); "
    "<b>CKA</b> (centred kernel alignment) compares the whole similarity structure of the items "
    "(0 to 1, blind to rotations and isotropic scaling). The outlined cell is the best pair. Picking "
    "the best of all layer pairs inflates the score even when nothing is aligned, so its p-value comes "
    "from a <b>max-statistic permutation null</b>: the items of B are shuffled (one shuffle shared by all "
    "of B's layers), the best score over <i>all</i> pairs is kept for each shuffle, and the observed best "
    "is compared with those maxima. This controls for the search over pairs. A permutation p-value "
    "cannot go below 1/(permutations + 1), hence “p ≤ …”. Hatched, dimmed cells are not significant "
    "at family-wise error 5 % (their score does not beat the max-null). <i>Chance-adjusted</i> measures "
    "the best score against the mean of the max-statistic null."
)


def _atlas_section(ctx: _Context) -> _Section:
    title = "Layer atlas"
    atl = _atlases(ctx)
    if not atl:
        return _Section("atlas", title, f"<section id='atlas'><h2>{title}</h2>{ctx.missing('atlas')}</section>")
    rows = []
    for a in atl:
        rows.append(
            [
                _e(a.experiment),
                f"{_e(a.space_a)} × {_e(a.space_b)}",
                _e(_label(a.metric)),
                f"{_e(a.best_a)} × {_e(a.best_b)}" if a.best_a is not None else "–",
                _num(a.best_score),
                _e(plots.format_p(a.p if a.p is not None else math.nan, a.n_perm)),
                _num(a.max_null_mean),
                _num(a.adjusted),
                _e(a.n) if a.n is not None else "–",
            ]
        )
    table = _table(
        [
            "experiment",
            "spaces",
            "metric",
            "best pair (A × B)",
            "score",
            "calibrated p",
            "max-null mean",
            "chance-adjusted",
            "n items",
        ],
        rows,
        "num",
    )
    figs = []
    for a in atl:
        best = (a.best_a, a.best_b) if a.best_a is not None else None
        p_text = plots.format_p(a.p if a.p is not None else math.nan, a.n_perm)
        head = f"{a.experiment} · {_label(a.metric)} ({a.space_a} × {a.space_b})"
        detail = f"best {a.best_a} × {a.best_b} = {_num(a.best_score)}, {p_text}" if best else "no finite scores"
        fig = plots.atlas_heatmap(
            a.cells, title=f"{head}\n{detail}", metric=_label(a.metric), best=best, label_a=a.space_a, label_b=a.space_b
        )
        has_null = "p_value_fwer" in a.cells.columns and a.cells["p_value_fwer"].notna().any()
        cap = f"<b>{_e(head)}</b>: {_e(detail)}."
        cap += " Hatched: not significant after FWER correction (p &gt; 0.05)." if has_null else " No permutation null."
        figs.append(ctx.figure(f"atlas-{a.experiment}-{a.metric}", fig, f"Atlas heatmap {head}", cap))
    html_ = f"<section id='atlas'><h2>{title}</h2>{_howto(_ATLAS_HOWTO)}{table}{''.join(figs)}</section>"
    return _Section("atlas", title, html_)


_PROFILES_HOWTO = (
    "For each layer of A, the best score it reaches with any layer of B (left), and for each layer "
    "of B the best over A (right); the star marks the peak. A clear peak says at which depth the "
    "structure shared with the other model lives; a flat profile says depth matters little. The "
    "dashed line is the mean of the max-statistic null, the score the best pair reaches by chance: "
    "points near it are indistinguishable from chance."
)


def _profiles_section(ctx: _Context) -> _Section:
    title = "Layer profiles"
    atl = _atlases(ctx)
    if not atl:
        return _Section("profiles", title, f"<section id='profiles'><h2>{title}</h2>{ctx.missing('atlas')}</section>")
    figs = []
    for exp in dict.fromkeys(a.experiment for a in atl):
        group = [a for a in atl if a.experiment == exp]
        panels = [
            {
                "metric": _label(a.metric),
                "cells": a.cells,
                "max_null_mean": a.max_null_mean if _finite(a.max_null_mean) else math.nan,
                "higher_is_better": a.higher_is_better,
            }
            for a in group
        ]
        fig = plots.layer_profiles(
            panels, label_a=group[0].space_a, label_b=group[0].space_b, title=f"{exp}: best score per layer"
        )
        cap = f"<b>{_e(exp)}</b> ({_e(group[0].space_a)} × {_e(group[0].space_b)})."
        figs.append(ctx.figure(f"profiles-{exp}", fig, f"Layer profiles {exp}", cap))
    return _Section(
        "profiles", title, f"<section id='profiles'><h2>{title}</h2>{_howto(_PROFILES_HOWTO)}{''.join(figs)}</section>"
    )


# --------------------------------------------------------------------------------------------------
# Evaluations


def _eval_records(ctx: _Context) -> list[dict[str, Any]]:
    df = ctx.tables["evaluations"]
    if df is None or "metric" not in df.columns or "value" not in df.columns:
        return []
    recs = _records(df)
    for r in recs:
        for k in ("experiment", "method", "task", "direction", "scoring", "metric"):
            if r.get(k) is not None:
                r[k] = str(r[k])
        if _finite(r.get("n_train")):
            r["n_train"] = int(r["n_train"])
    return recs


_SIZES_HOWTO = (
    "Each point is the mean over seeds of an aligner fitted on <i>n_train</i> pairs; bars and bands are "
    "the 95 % Student-t interval over seeds (none with a single seed). The x axis is logarithmic; "
    "methods are nudged sideways a little so their bars do not overlap. <b>Retrieval R@1</b>: the share "
    "of queries whose true partner ranks first among all candidates, scored by plain nearest neighbour "
    "(solid) or CSLS (dashed, which discounts hub items). <b>Zero-shot top-1</b>: accuracy of labelling "
    "each item with its nearest class-name embedding. Overlapping intervals mean these seeds do not "
    "separate the methods."
)


def _sizes_section(ctx: _Context) -> _Section:
    import pandas as pd

    title = "Data-size curves"
    recs = [r for r in _eval_records(ctx) if r.get("n_train") is not None and r.get("class") is None]
    curves = [
        r
        for r in recs
        if (r.get("task") == "retrieval" and r["metric"] == "R@1")
        or (r.get("task") == "zero_shot" and r["metric"] == "top1")
    ]
    if not curves:
        return _Section("sizes", title, f"<section id='sizes'><h2>{title}</h2>{ctx.missing('evaluations')}</section>")
    summ = _summarize(curves, ("experiment", "task", "direction", "scoring", "method", "n_train"))
    figs = []
    for exp in dict.fromkeys(r.get("experiment") for r in summ):
        rows = []
        for s in summ:
            if s.get("experiment") != exp:
                continue
            if s["task"] == "retrieval":
                panel = "retrieval R@1" + (f" · {_direction(s['direction'])}" if s.get("direction") else "")
                ylabel = "R@1"
            else:
                panel, ylabel = "zero-shot top-1", "top-1 accuracy"
            scoring = s.get("scoring")
            rows.append(
                {
                    "panel": panel,
                    "ylabel": ylabel,
                    "method": str(s.get("method")),
                    "style": "dashed" if scoring == "csls" else "solid",
                    "style_label": _SCORING_LABELS.get(str(scoring), str(scoring)) if scoring else "",
                    "n_train": s["n_train"],
                    "mean": s["mean"],
                    "ci_low": s["ci_low"],
                    "ci_high": s["ci_high"],
                }
            )
        fig = plots.size_curves(pd.DataFrame(rows), colors=ctx.colors, title=f"{exp}: score vs training size")
        n_seeds = sorted({s["n"] for s in summ if s.get("experiment") == exp})
        seeds = "/".join(str(n) for n in n_seeds)
        cap = f"<b>{_e(exp)}</b>: mean ± 95 % t-interval over {_e(seeds)} seed(s)."
        figs.append(ctx.figure(f"sizes-{exp}", fig, f"Data-size curves {exp}", cap))
    return _Section(
        "sizes", title, f"<section id='sizes'><h2>{title}</h2>{_howto(_SIZES_HOWTO)}{''.join(figs)}</section>"
    )


_TABLES_HOWTO = (
    "Each cell is the mean over seeds ± the half-width of the 95 % Student-t interval, with the number "
    "of seeds in brackets. <b>Bold</b>: the best method in that column at that training size (highest; "
    "lowest for ranks). R@k: share of queries whose partner is among the top k; MRR: mean reciprocal "
    "rank; median rank 1 is perfect. Zero-shot: top-k accuracy over all items, the mean of per-class "
    "accuracies, and accuracy on classes held out of training, ranked among all classes or among the "
    "held-out ones only. A difference smaller than the intervals is not resolved."
)


def _cell(s: dict[str, Any], bold: bool) -> str:
    mean = _num(s["mean"])
    if _finite(s.get("ci_halfwidth")):
        txt = f"{mean} <span class='pm'>± {_num(s['ci_halfwidth'])}</span>"
    else:
        txt = mean
    txt += f" <span class='nseeds'>({int(s['n'])})</span>"
    return f"<b>{txt}</b>" if bold else txt


def _tables_section(ctx: _Context) -> _Section:
    title = "Method comparison"
    recs = [r for r in _eval_records(ctx) if r.get("class") is None and r.get("metric") != "class_top1"]
    if not recs:
        return _Section("tables", title, f"<section id='tables'><h2>{title}</h2>{ctx.missing('evaluations')}</section>")
    summ = _summarize(recs, ("experiment", "task", "direction", "scoring", "n_train", "method"))
    out = []
    for exp in dict.fromkeys(s.get("experiment") for s in summ):
        out.append(f"<h3>{_e(exp)}</h3>")
        exp_rows = [s for s in summ if s.get("experiment") == exp]
        settings = list(dict.fromkeys((s.get("task"), s.get("direction"), s.get("scoring")) for s in exp_rows))
        for task, direction, scoring in settings:
            rows = [
                s
                for s in exp_rows
                if (s.get("task"), s.get("direction"), s.get("scoring")) == (task, direction, scoring)
            ]
            metrics = list(dict.fromkeys(s["metric"] for s in rows))
            metrics.sort(key=lambda m: (_METRIC_ORDER.index(m) if m in _METRIC_ORDER else len(_METRIC_ORDER), m))
            label = " · ".join(
                x
                for x in (
                    str(task or "task ?").replace("_", "-"),
                    _direction(direction) if direction else "",
                    f"{_SCORING_LABELS.get(scoring, scoring)} scoring" if scoring else "",
                )
                if x
            )
            sizes = sorted({s.get("n_train") for s in rows}, key=lambda v: (v is None, v if v is not None else 0))
            methods = sorted({str(s.get("method")) for s in rows})
            body = []
            for n_train in sizes:
                at = {(str(s.get("method")), s["metric"]): s for s in rows if s.get("n_train") == n_train}
                best: dict[str, float] = {}
                for m in metrics:
                    vals = [
                        at[(meth, m)]["mean"] for meth in methods if (meth, m) in at and _finite(at[(meth, m)]["mean"])
                    ]
                    if len(vals) > 1:
                        best[m] = min(vals) if _lower_is_better(m) else max(vals)
                present = [meth for meth in methods if any((meth, m) in at for m in metrics)]
                for k, meth in enumerate(present):
                    cells = []
                    if k == 0:
                        size_txt = (
                            f"{n_train:,}" if isinstance(n_train, int) else _e(n_train if n_train is not None else "–")
                        )
                        cells.append(f"<th rowspan='{len(present)}' class='size'>{size_txt}</th>")
                    dot = f"<span class='dot' style='background:{ctx.colors.get(meth, '#777')}'></span>"
                    cells.append(f"<td class='method'>{dot}{_e(meth)}</td>")
                    for m in metrics:
                        s = at.get((meth, m))
                        if s is None:
                            cells.append("<td>–</td>")
                        else:
                            bold = m in best and _finite(s["mean"]) and abs(s["mean"] - best[m]) <= 1e-12
                            cells.append(f"<td>{_cell(s, bold)}</td>")
                    body.append("<tr>" + "".join(cells) + "</tr>")
            head = "".join(f"<th>{_e(_label(m))}</th>" for m in metrics)
            out.append(
                f"<h4>{_e(label)}</h4><div class='tablewrap'><table class='num cmp'><thead><tr><th>n_train</th>"
                f"<th>method</th>{head}</tr></thead><tbody>{''.join(body)}</tbody></table></div>"
            )
    return _Section(
        "tables", title, f"<section id='tables'><h2>{title}</h2>{_howto(_TABLES_HOWTO)}{''.join(out)}</section>"
    )


_CLASSES_HOWTO = (
    "Accuracy per class of the method with the best mean top-1 at the largest training size, mean "
    "over seeds with the 95 % interval; classes held out of training (when the run records them) are "
    "hatched. Classes far below the rest point to class names the text side encodes poorly or to "
    "visually confusable classes."
)


def _classes_section(ctx: _Context) -> _Section:
    import pandas as pd

    title = "Zero-shot per class"
    recs = [
        r
        for r in _eval_records(ctx)
        if r.get("task") == "zero_shot" and r.get("metric") == "class_top1" and r.get("class") is not None
    ]
    if not recs:
        msg = (
            ctx.missing("evaluations")
            if ctx.tables["evaluations"] is None
            else ("<p class='missing'>Not in this run (no per-class zero-shot accuracy).</p>")
        )
        return _Section("classes", title, f"<section id='classes'><h2>{title}</h2>{msg}</section>")
    figs = []
    all_recs = _eval_records(ctx)
    for exp in dict.fromkeys(r.get("experiment") for r in recs):
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
        ranking = _summarize(top1 or [{**r, "metric": "top1"} for r in mine], ("method",))
        methods_here = {r.get("method") for r in mine}
        ranking = [s for s in ranking if s.get("method") in methods_here and _finite(s["mean"])]
        if not ranking:
            continue
        best = max(ranking, key=lambda s: (s["mean"], str(s.get("method"))))
        method = best.get("method")
        rows = [r for r in mine if r.get("method") == method]
        summ = _summarize(rows, ("class",))
        df = pd.DataFrame(summ)
        if "heldout" in ctx.tables["evaluations"].columns:
            held = {str(r["class"]) for r in rows if r.get("heldout") is True}
            df["heldout"] = [str(c) in held for c in df["class"]]
        size_txt = f"{n_train:,}" if isinstance(n_train, int) else "–"
        head = f"{exp}: per-class top-1 of {method} (n_train = {size_txt})"
        fig = plots.class_bars(df, title=head, color=ctx.colors.get(str(method), "#0072B2"))
        cap = (
            f"<b>{_e(exp)}</b>: {_e(method)} has the best mean top-1 ({_num(best['mean'])}) at n_train = "
            f"{_e(size_txt)}; mean over {int(best['n'])} seed(s)."
        )
        figs.append(ctx.figure(f"classes-{exp}", fig, head, cap))
    if not figs:
        return _Section(
            "classes", title, f"<section id='classes'><h2>{title}</h2><p class='missing'>Not in this run.</p></section>"
        )
    return _Section(
        "classes",
        title,
        f"<section id='classes'><h2>{title}</h2>{_howto(_CLASSES_HOWTO)}"
        f"<div class='figgrid'>{''.join(figs)}</div></section>",
    )


# --------------------------------------------------------------------------------------------------
# Fits and jobs


_SELECTION_HOWTO = (
    "With <code>layers: best</code> the layer pair an experiment's aligners are fitted on is chosen as STRUCTURE "
    "does: every layer pair is scored on the <i>training</i> pairs only (never the held-out items), and the best "
    "is taken. The last-layer pair, the usual default, is shown beside it for comparison. Experiments with fixed "
    "layers have no row here."
)


def _selection_section(ctx: _Context) -> _Section:
    """The layer pair STRUCTURE's selection chose per experiment, against the last-layer pair."""
    title = "Layer selection"
    df = ctx.tables["layer_selection"]
    if df is None:
        body = ctx.missing("layer_selection")
    else:
        rows = []
        for (exp, metric), grp in df.groupby(["experiment", "metric"], sort=False):
            recs = _records(grp)
            chosen = [r for r in recs if r.get("chosen")]
            last_a, last_b = recs[-1]["layer_a"], recs[-1]["layer_b"]  # rows follow the layer order
            last = [r for r in recs if r["layer_a"] == last_a and r["layer_b"] == last_b]
            best = chosen[0] if chosen else max(recs, key=lambda r: float(r["score"]))
            rows.append(
                [
                    _e(exp),
                    _e(_label(metric)),
                    _e(f"{best['layer_a']} × {best['layer_b']}"),
                    _num(best["score"]),
                    _e(f"{last_a} × {last_b}"),
                    _num(last[0]["score"]) if last else "–",
                ]
            )
        body = _table(["experiment", "measure", "chosen pair (A × B)", "score", "last layers", "score"], rows, "num")
    html = f"<section id='selection'><h2>{title}</h2>{_howto(_SELECTION_HOWTO)}{body}</section>"
    return _Section("selection", title, html)


def _fits_jobs_section(ctx: _Context) -> _Section:
    title = "Fits and jobs"
    parts = [
        _howto(
            "Wall-clock seconds spent fitting each aligner (mean over seeds, then every fit), and every "
            "job of the run with its status: <i>cached</i> jobs reused results from an earlier run."
        )
    ]
    fits = ctx.tables["fits"]
    parts.append("<h3>Fits</h3>")
    if fits is None:
        parts.append(ctx.missing("fits"))
    else:
        recs = _records(fits)
        groups: dict[tuple, list[dict[str, Any]]] = {}
        for r in recs:
            key = (r.get("experiment"), r.get("method"), r.get("aligner"), r.get("n_train"))
            groups.setdefault(key, []).append(r)
        rows = []
        for (exp, method, aligner, n_train), grp in groups.items():
            secs = [float(r["fit_seconds"]) for r in grp if _finite(r.get("fit_seconds"))]
            layers = sorted({f"{r.get('layer_a')} → {r.get('layer_b')}" for r in grp})
            rows.append(
                [
                    _e(exp),
                    _e(method),
                    _e(aligner),
                    _e(f"{int(n_train):,}") if _finite(n_train) else "–",
                    _e(", ".join(layers)),
                    str(len(grp)),
                    _e(_seconds(sum(secs) / len(secs))) if secs else "–",
                ]
            )
        parts.append(
            _table(
                ["experiment", "method", "aligner", "n_train", "layers (A → B)", "fits", "mean fit time"], rows, "num"
            )
        )
        full = [
            [
                _e(r.get("experiment")),
                _e(r.get("method")),
                _e(r.get("aligner")),
                _e(r.get("n_train")),
                _e(r.get("seed")),
                _e(r.get("layer_a")),
                _e(r.get("layer_b")),
                _e(_seconds(r.get("fit_seconds"))),
                f"<code>{_e(r.get('path'))}</code>",
            ]
            for r in recs
        ]
        parts.append(
            f"<details><summary>All {len(recs)} fits</summary>"
            + _table(
                ["experiment", "method", "aligner", "n_train", "seed", "layer A", "layer B", "fit time", "path"],
                full,
                "num",
            )
            + "</details>"
        )
    parts.append("<h3>Jobs</h3>")
    jobs = [j for j in ctx.run.get("jobs") or [] if isinstance(j, dict)]
    if not jobs:
        parts.append("<p class='missing'>Not in this run (run.json lists no jobs).</p>")
    else:
        kinds = list(dict.fromkeys(str(j.get("kind")) for j in jobs))
        seen = {str(j.get("status")) for j in jobs}
        statuses = [st for st in ("done", "cached", "failed") if st in seen] + sorted(
            seen - {"done", "cached", "failed"}
        )
        rows = []
        for kind in kinds:
            mine = [j for j in jobs if str(j.get("kind")) == kind]
            counts = [str(sum(1 for j in mine if str(j.get("status")) == st)) for st in statuses]
            secs = sum(float(j["seconds"]) for j in mine if _finite(j.get("seconds")))
            rows.append([_e(kind), *counts, _e(_seconds(secs))])
        parts.append(_table(["kind", *[_e(s) for s in statuses], "seconds (sum)"], rows, "num"))
        full = [
            [
                f"<code>{_e(j.get('id'))}</code>",
                _e(j.get("kind")),
                f"<span class='bad'>{_e(j.get('status'))}</span>"
                if j.get("status") == "failed"
                else _e(j.get("status")),
                _e(_seconds(j.get("seconds"))),
            ]
            for j in jobs
        ]
        parts.append(
            f"<details><summary>All {len(jobs)} jobs</summary>"
            + _table(["id", "kind", "status", "time"], full, "num")
            + "</details>"
        )
    return _Section("fits", title, f"<section id='fits'><h2>{title}</h2>{''.join(parts)}</section>")


# --------------------------------------------------------------------------------------------------
# Page

_CSS = """
:root { --fg:#1d2330; --muted:#5b6475; --line:#dfe3ea; --bg:#ffffff; --soft:#f5f7fa; --accent:#0b62a4; }
* { box-sizing: border-box; }
body { margin:0; background:var(--bg); color:var(--fg);
  font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
main { max-width: 1240px; margin: 0 auto; padding: 24px 28px 48px; }
h1 { font-size: 1.6rem; margin: 0 0 6px; }
h2 { font-size: 1.3rem; margin: 36px 0 10px; padding-bottom: 4px; border-bottom: 2px solid var(--line); }
h3 { font-size: 1.08rem; margin: 22px 0 6px; }
h4 { font-size: .95rem; margin: 16px 0 4px; color: var(--muted); font-weight: 600; }
.runname { color: var(--accent); }
p { margin: 4px 0; }
.meta { color: var(--fg); }
.small { color: var(--muted); font-size: .85rem; }
nav { margin: 12px 0 0; display:flex; flex-wrap:wrap; gap:6px; }
nav a { text-decoration:none; color: var(--accent); background: var(--soft); border:1px solid var(--line);
  border-radius: 14px; padding: 2px 11px; font-size: .88rem; }
.howto { background:#f3f8fd; border-left: 4px solid #8bb8e0; padding: 8px 12px; margin: 8px 0 14px;
  font-size: .9rem; color: #2b3445; border-radius: 0 4px 4px 0; }
.missing { color: var(--muted); font-style: italic; }
.warn, .bad { color: #b3261e; font-weight: 600; }
figure { margin: 10px 0 18px; }
figure img { max-width: 100%; height: auto; display:block; border:1px solid var(--line); border-radius:4px; }
figcaption { font-size: .85rem; color: var(--muted); margin-top: 4px; }
figcaption .file { font-family: ui-monospace, Menlo, Consolas, monospace; font-size: .78rem; color:#8a93a3; }
.figgrid { display: grid; grid-template-columns: repeat(auto-fit, minmax(560px, 1fr)); gap: 6px 22px;
  align-items: start; }
.tablewrap { overflow-x: auto; margin: 6px 0 12px; }
table { border-collapse: collapse; font-size: .86rem; }
th, td { padding: 4px 10px; border-bottom: 1px solid var(--line); text-align: left; vertical-align: top; }
thead th { background: var(--soft); font-weight: 600; white-space: nowrap; }
table.num td { font-variant-numeric: tabular-nums; }
table.cmp td { white-space: nowrap; }
table.cmp th.size { background: #fafbfc; font-variant-numeric: tabular-nums; vertical-align: middle; }
tbody tr:hover { background: #fafcff; }
.pm { color: var(--muted); }
.nseeds { color: #98a0ae; font-size: .8em; }
.dot { display:inline-block; width:9px; height:9px; border-radius:50%; margin-right:6px; }
details { margin: 8px 0; }
summary { cursor: pointer; color: var(--accent); }
pre { background: var(--soft); padding: 10px; border-radius: 4px; overflow-x: auto; font-size: .8rem; }
code { font-family: ui-monospace, Menlo, Consolas, monospace; font-size: .85em; }
footer { margin-top: 40px; color: var(--muted); font-size: .8rem; border-top: 1px solid var(--line); padding-top: 8px; }
"""

_SCRIPT = """
window.addEventListener("load", function () {
  var imgs = Array.prototype.slice.call(document.images);
  var ok = imgs.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length;
  document.body.dataset.imagesLoaded = String(ok);
  document.body.dataset.imagesTotal = String(imgs.length);
});
"""

_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>@TITLE@</title>
<style>@CSS@</style>
</head>
<body>
<main>
@BODY@
</main>
<script>@SCRIPT@</script>
</body>
</html>
"""
