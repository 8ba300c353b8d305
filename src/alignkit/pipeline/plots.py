"""Figures for the run report: tidy pandas/numpy in, :class:`matplotlib.figure.Figure` out.

Every function builds a fresh ``Figure`` (no pyplot, so no global figure state leaks) and
:func:`to_png` renders it with the Agg canvas. Strings from data are passed through :func:`mpl_text`
so a ``$`` in a layer or method name is shown literally instead of starting mathtext.
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

DPI = 110
NOT_SIGNIFICANT_ALPHA = 0.05

# Colour-blind-friendly qualitative palette (Okabe-Ito first, then tab10 fill-ins).
_PALETTE = (
    "#0072B2",
    "#D55E00",
    "#009E73",
    "#CC79A7",
    "#E69F00",
    "#56B4E9",
    "#000000",
    "#8C564B",
    "#7F7F7F",
    "#BCBD22",
)


def mpl_text(s: Any) -> str:
    """A data string made safe for matplotlib text (``$`` would otherwise start mathtext)."""
    return str(s).replace("$", r"\$")


def method_colors(methods: Iterable[str]) -> dict[str, str]:
    """One colour per method, fixed by the sorted method names so every plot agrees."""
    names = sorted({str(m) for m in methods})
    return {m: _PALETTE[i % len(_PALETTE)] for i, m in enumerate(names)}


def new_figure(width: float, height: float) -> Any:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=DPI, layout="constrained")


def to_png(fig: Any) -> bytes:
    """PNG bytes of ``fig`` (Agg canvas, no timestamp metadata so the bytes are reproducible)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None}, facecolor="white")
    return buf.getvalue()


def format_p(p: float, n_perm: int | None) -> str:
    """A permutation p-value stated honestly: at the resolution floor ``1/(n_perm+1)`` it reads
    ``p ≤ floor``; without a null it reads ``no null``."""
    if p is None or (isinstance(p, float) and math.isnan(p)):
        return "no permutation null"
    perms = f" ({int(n_perm)} perms)" if n_perm else ""
    if n_perm:
        floor = 1.0 / (int(n_perm) + 1)
        if p <= floor * (1 + 1e-9):
            return f"p ≤ {floor:.2g}{perms}"
    return f"p = {p:.2g}{perms}"


def _ordered(cells: Any, name: str, index: str) -> list[str]:
    if index in cells.columns and cells[index].notna().all():
        sub = cells[[name, index]].drop_duplicates(name).sort_values(index, kind="stable")
    else:
        sub = cells[[name]].drop_duplicates(name)
    return [str(v) for v in sub[name]]


def atlas_matrix(cells: Any) -> tuple[list[str], list[str], np.ndarray, np.ndarray | None]:
    """Layer names of A and B (in layer order), the score matrix and the FWER p-value matrix
    (``None`` when the atlas has no permutation null)."""
    names_a = _ordered(cells, "layer_a", "index_a")
    names_b = _ordered(cells, "layer_b", "index_b")
    ia = {n: i for i, n in enumerate(names_a)}
    ib = {n: j for j, n in enumerate(names_b)}
    scores = np.full((len(names_a), len(names_b)), np.nan)
    pf = np.full_like(scores, np.nan)
    has_p = "p_value_fwer" in cells.columns
    for row in cells.itertuples(index=False):
        i, j = ia[str(row.layer_a)], ib[str(row.layer_b)]
        scores[i, j] = float(row.score)
        if has_p:
            pf[i, j] = float(row.p_value_fwer)
    return names_a, names_b, scores, (pf if has_p and np.isfinite(pf).any() else None)


def _thin_ticks(n: int, max_labels: int = 40) -> list[int]:
    step = max(1, math.ceil(n / max_labels))
    return list(range(0, n, step))


def atlas_heatmap(
    cells: Any,
    *,
    title: str,
    metric: str,
    best: tuple[str, str] | None = None,
    label_a: str = "A",
    label_b: str = "B",
    alpha: float = NOT_SIGNIFICANT_ALPHA,
) -> Any:
    """Heatmap of one atlas (rows: layers of A, bottom = first; columns: layers of B).

    ``best`` is outlined. With a permutation null, cells with ``p_value_fwer > alpha`` (not significant
    family-wise, max-statistic null) are dimmed and hatched ``///``; with q-values, cells with
    ``q_value_bh > alpha`` (not significant at false-discovery rate ``alpha``, Benjamini–Hochberg over all
    cells) are hatched the other way, so a cell failing both is cross-hatched; a legend below says which.
    Values are written in the cells when the grid is small enough to read them.
    """
    from matplotlib.patches import Patch, Rectangle

    names_a, names_b, scores, pf = atlas_matrix(cells)
    qb = None
    if "q_value_bh" in cells.columns and cells["q_value_bh"].notna().any():
        ia, ib = {n: i for i, n in enumerate(names_a)}, {n: j for j, n in enumerate(names_b)}
        qb = np.full(scores.shape, np.nan)
        for la, lb, q in cells[["layer_a", "layer_b", "q_value_bh"]].itertuples(index=False):
            qb[ia[str(la)], ib[str(lb)]] = float(q)
    na, nb = len(names_a), len(names_b)
    longest_b = max((len(s) for s in names_b), default=1)
    longest_a = max((len(s) for s in names_a), default=1)
    cell = 0.5 if nb <= 24 else max(0.18, 12.0 / nb)
    width = min(14.0, 2.4 + 0.07 * longest_a + cell * nb)
    height = min(14.0, 1.9 + 0.06 * min(longest_b, 30) + 0.42 * na * (cell / 0.5))
    fig = new_figure(width, height + (0.35 if pf is not None or qb is not None else 0.0))
    ax = fig.add_subplot()
    finite = scores[np.isfinite(scores)]
    vmin, vmax = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    if vmin == vmax:
        vmin, vmax = vmin - 0.5, vmax + 0.5
    im = ax.imshow(scores, origin="lower", aspect="auto", cmap="viridis", vmin=vmin, vmax=vmax, interpolation="nearest")
    cbar = fig.colorbar(im, ax=ax, fraction=0.05, pad=0.02)
    cbar.set_label(mpl_text(metric))

    fwer_style = {"facecolor": (1, 1, 1, 0.55), "edgecolor": (0.35, 0.35, 0.35, 0.7), "hatch": "///", "linewidth": 0}
    fdr_style = {"facecolor": "none", "edgecolor": (0.15, 0.15, 0.15, 0.7), "hatch": "\\\\\\", "linewidth": 0}
    legend = []
    for matrix, style, label in (
        (pf, fwer_style, f"not significant family-wise (max-statistic p > {alpha:g})"),
        (qb, fdr_style, f"not significant at false-discovery rate {alpha:g} (BH q > {alpha:g})"),
    ):
        if matrix is None:
            continue
        for i, j in zip(*np.nonzero(~(matrix <= alpha)), strict=True):
            ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, **style))  # type: ignore[arg-type]
        legend.append(Patch(label=label, **style))  # type: ignore[arg-type]
    if na * nb <= 260 and nb <= 24:
        cmap, norm = im.get_cmap(), im.norm
        for i in range(na):
            for j in range(nb):
                v = scores[i, j]
                if not np.isfinite(v):
                    continue
                r, g, b, _ = cmap(norm(v))
                lum = 0.299 * r + 0.587 * g + 0.114 * b
                dim = pf is not None and not pf[i, j] <= alpha
                color = "black" if (lum > 0.5 or dim) else "white"
                ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=7.5, color=color)
    if best is not None and best[0] in names_a and best[1] in names_b:
        i, j = names_a.index(best[0]), names_b.index(best[1])
        for lw, col in ((3.6, "white"), (1.8, "black")):
            ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, edgecolor=col, linewidth=lw))

    xt, yt = _thin_ticks(nb), _thin_ticks(na)
    ax.set_xticks(xt, [mpl_text(names_b[j]) for j in xt], rotation=55, ha="right", rotation_mode="anchor", fontsize=8)
    ax.set_yticks(yt, [mpl_text(names_a[i]) for i in yt], fontsize=8)
    ax.set_xlabel(f"layer of {mpl_text(label_b)}")
    ax.set_ylabel(f"layer of {mpl_text(label_a)}")
    ax.set_title(mpl_text(title), fontsize=10, loc="left")
    if legend:
        fig.legend(handles=legend, loc="outside lower center", fontsize=7.5, frameon=False, ncols=1)
    return fig


def _best_along(scores: np.ndarray, axis: int, higher_is_better: bool) -> np.ndarray:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN row gives NaN, which is right
        return np.nanmax(scores, axis=axis) if higher_is_better else np.nanmin(scores, axis=axis)


def layer_profiles(
    panels: Sequence[dict[str, Any]],
    *,
    label_a: str = "A",
    label_b: str = "B",
    title: str = "",
) -> Any:
    """Best score per layer, one row of two axes per metric.

    Each panel is ``{"metric", "cells" (atlas rows), "max_null_mean" (float or NaN), "higher_is_better"}``.
    Left: for each layer of A the best score over B; right: for each layer of B the best over A.
    The max-statistic null mean is drawn dashed when present.
    """
    rows = max(1, len(panels))
    fig = new_figure(11.0, 2.9 * rows + (0.3 if title else 0.0))
    axes = fig.subplots(rows, 2, squeeze=False)
    for r, panel in enumerate(panels):
        names_a, names_b, scores, _ = atlas_matrix(panel["cells"])
        hib = bool(panel.get("higher_is_better", True))
        null_mean = panel.get("max_null_mean")
        for c, (names, prof, own, other, color) in enumerate(
            (
                (names_a, _best_along(scores, 1, hib), label_a, label_b, "#0072B2"),
                (names_b, _best_along(scores, 0, hib), label_b, label_a, "#D55E00"),
            )
        ):
            ax = axes[r, c]
            x = np.arange(len(names))
            ax.plot(x, prof, marker="o", markersize=4, color=color, linewidth=1.6, label=f"best over {mpl_text(other)}")
            if np.isfinite(prof).any():
                k = int(np.nanargmax(prof) if hib else np.nanargmin(prof))
                ax.plot([x[k]], [prof[k]], marker="*", markersize=13, color="black", linestyle="none")
            if null_mean is not None and np.isfinite(null_mean):
                ax.axhline(float(null_mean), color="0.35", linestyle="--", linewidth=1.2, label="max-null mean")
            ticks = _thin_ticks(len(names), 25)
            ax.set_xticks(
                ticks, [mpl_text(names[t]) for t in ticks], rotation=45, ha="right", rotation_mode="anchor", fontsize=8
            )
            ax.set_xlabel(f"layer of {mpl_text(own)}")
            ax.set_ylabel(mpl_text(panel["metric"]))
            ax.grid(True, alpha=0.3)
            ax.legend(fontsize=8, loc="best", frameon=False)
            ax.set_title(f"{mpl_text(panel['metric'])}: each layer of {mpl_text(own)}", fontsize=9.5, loc="left")
    if title:
        fig.suptitle(mpl_text(title), fontsize=11, x=0.01, ha="left")
    return fig


def diagnostic_profiles(panels: Sequence[dict[str, Any]], *, title: str = "") -> Any:
    """One axis per diagnostic: its value per layer of one space, with the CI band when present.

    Each panel is ``{"diagnostic", "layers" (names in depth order), "value", "low", "high" (arrays, NaN where
    absent), "degenerate" (bools)}``; degenerate layers are marked with a cross on the axis.
    """
    n = max(1, len(panels))
    cols = min(3, n)
    rows = math.ceil(n / cols)
    fig = new_figure(3.9 * cols, 2.8 * rows + (0.3 if title else 0.0))
    axes = fig.subplots(rows, cols, squeeze=False)
    for i, panel in enumerate(panels):
        ax = axes[i // cols, i % cols]
        names = list(panel["layers"])
        x = np.arange(len(names))
        v = np.asarray(panel["value"], dtype=float)
        lo, hi = np.asarray(panel["low"], dtype=float), np.asarray(panel["high"], dtype=float)
        ax.plot(x, v, marker="o", markersize=3.5, color=_PALETTE[i % len(_PALETTE)], linewidth=1.5)
        if np.isfinite(lo).any():
            ax.fill_between(x, lo, hi, color=_PALETTE[i % len(_PALETTE)], alpha=0.2, linewidth=0)
        bad = np.asarray(panel.get("degenerate", [False] * len(names)), dtype=bool)
        if bad.any():
            ax.plot(
                x[bad],
                np.zeros(int(bad.sum())),
                marker="x",
                color="#D55E00",
                linestyle="none",
                transform=ax.get_xaxis_transform(),
            )
        ticks = _thin_ticks(len(names), 12)
        ax.set_xticks(
            ticks, [mpl_text(names[t]) for t in ticks], rotation=45, ha="right", rotation_mode="anchor", fontsize=7
        )
        ax.set_title(mpl_text(panel["diagnostic"]), fontsize=9.5, loc="left")
        ax.grid(True, alpha=0.3)
    for j in range(len(panels), rows * cols):
        axes[j // cols, j % cols].set_visible(False)
    if title:
        fig.suptitle(mpl_text(title), fontsize=11, x=0.01, ha="left")
    return fig


def level_histogram(counts: Sequence[float], *, title: str = "", color: str = "#0072B2") -> Any:
    """Pairs per alignment level (NoC buckets: 0 = worst aligned)."""
    fig = new_figure(4.6, 2.8)
    ax = fig.subplots()
    ax.bar(np.arange(len(counts)), counts, color=color)
    ax.set_xlabel("alignment level (0 = lowest cosine)")
    ax.set_ylabel("pairs")
    ax.set_xticks(np.arange(len(counts)))
    ax.grid(True, axis="y", alpha=0.3)
    if title:
        ax.set_title(mpl_text(title), fontsize=9.5, loc="left")
    return fig


def pool_curve(rows: Any, *, title: str = "") -> Any:
    """Score vs pool size (log x) from a run's ``pool_curve`` rows of one measure: the mean over random pools with
    its interval band, and the permutation null's mean dashed (a kNN score's chance level falls as k/(n−1))."""
    fig = new_figure(5.2, 3.4)
    ax = fig.add_subplot()
    for k, (exp, grp) in enumerate(rows.groupby("experiment", sort=False)):
        grp = grp.sort_values("pool_size")
        x = grp["pool_size"].to_numpy(float)
        color = _PALETTE[k % len(_PALETTE)]
        ax.plot(x, grp["score"].to_numpy(float), "o-", color=color, label=mpl_text(exp))
        ax.fill_between(x, grp["score_low"].to_numpy(float), grp["score_high"].to_numpy(float), color=color, alpha=0.2)
        if "null_mean" in grp and np.isfinite(grp["null_mean"].to_numpy(float)).any():
            ax.plot(x, grp["null_mean"].to_numpy(float), "--", color=color, alpha=0.7, label=f"{mpl_text(exp)}: null")
    ax.set_xscale("log")
    ax.set_xlabel("pool size (items)")
    ax.set_ylabel("score (last layers)")
    ax.legend(fontsize=7)
    if title:
        ax.set_title(mpl_text(title), fontsize=9)
    return fig


#: (line style, marker) of each ``style`` value of :func:`size_curves` (Any: matplotlib types it as a Literal).
_LINE_STYLES: dict[str, tuple[Any, str]] = {"solid": ("-", "o"), "dashed": ("--", "s"), "dotted": (":", "^")}


def size_curves(
    summary: Any,
    *,
    colors: dict[str, str],
    title: str = "",
) -> Any:
    """Score vs training size (log x), one axis per ``panel``.

    ``summary`` has columns ``panel`` (axis title), ``ylabel``, ``method``, ``style`` (``"solid"``,
    ``"dashed"`` or ``"dotted"``, e.g. NN, CSLS and GRAM-volume scoring), ``style_label``, ``n_train``,
    ``mean``, ``ci_low``, ``ci_high``. Each (method, style) is a line with error bars; solid lines also get a
    shaded band for the interval.
    """
    panels = list(dict.fromkeys(summary["panel"]))
    ncols = min(3, max(1, len(panels)))
    nrows = math.ceil(len(panels) / ncols)
    fig = new_figure(4.4 * ncols + 1.6, 3.3 * nrows + (0.35 if title else 0.0))
    same_y = summary["ylabel"].nunique() == 1
    axes = fig.subplots(nrows, ncols, squeeze=False, sharey=same_y)
    methods = sorted({str(m) for m in summary["method"]})
    offsets = {m: 1.0 + 0.035 * (k - (len(methods) - 1) / 2) for k, m in enumerate(methods)}
    handles: dict[str, Any] = {}
    for idx, panel in enumerate(panels):
        ax = axes[idx // ncols, idx % ncols]
        sub = summary[summary["panel"] == panel]
        for (method, style), grp in sub.groupby(["method", "style"], sort=True):
            grp = grp.sort_values("n_train")
            x = grp["n_train"].to_numpy(float) * offsets[str(method)]
            m = grp["mean"].to_numpy(float)
            lo = grp["ci_low"].to_numpy(float)
            hi = grp["ci_high"].to_numpy(float)
            col = colors.get(str(method), "0.3")
            ls, marker = _LINE_STYLES.get(str(style), _LINE_STYLES["solid"])
            has_ci = np.isfinite(lo) & np.isfinite(hi)
            yerr = np.vstack([np.where(has_ci, m - lo, 0.0), np.where(has_ci, hi - m, 0.0)])
            ax.errorbar(
                x,
                m,
                yerr=yerr,
                color=col,
                linestyle=ls,
                marker=marker,
                markersize=4,
                capsize=3,
                linewidth=1.6,
                alpha=0.95 if style == "solid" else 0.8,
            )
            if has_ci.sum() >= 2 and style == "solid":
                ax.fill_between(x, np.where(has_ci, lo, m), np.where(has_ci, hi, m), color=col, alpha=0.12, linewidth=0)
            if str(method) not in handles:
                from matplotlib.lines import Line2D

                handles[str(method)] = Line2D([], [], color=col, marker="o", linewidth=1.6, label=mpl_text(method))
        styles = sub.drop_duplicates("style")
        if len(styles) > 1:
            from matplotlib.lines import Line2D

            for s in styles.itertuples(index=False):
                key = f"__style_{s.style_label}"
                if key not in handles:
                    handles[key] = Line2D(
                        [],
                        [],
                        color="0.3",
                        linestyle=_LINE_STYLES.get(str(s.style), _LINE_STYLES["solid"])[0],
                        marker=_LINE_STYLES.get(str(s.style), _LINE_STYLES["solid"])[1],
                        markersize=4,
                        label=mpl_text(s.style_label),
                    )
        ax.set_xscale("log")
        sizes = sorted({int(v) for v in sub["n_train"]})
        ax.set_xticks(sizes, [f"{v:,}" for v in sizes])
        ax.minorticks_off()
        if len(sizes) == 1:
            ax.set_xlim(sizes[0] / 1.6, sizes[0] * 1.6)
        else:
            ax.set_xlim(sizes[0] / 1.25, sizes[-1] * 1.25)
        ax.set_xlabel("n_train (log scale)")
        if not same_y or idx % ncols == 0:
            ax.set_ylabel(mpl_text(sub["ylabel"].iloc[0]))
        if same_y:
            ax.tick_params(labelleft=True)
        ax.set_title(mpl_text(panel), fontsize=10, loc="left")
        ax.grid(True, alpha=0.3)
    for idx in range(len(panels), nrows * ncols):
        axes[idx // ncols, idx % ncols].set_visible(False)
    if handles:
        fig.legend(handles=list(handles.values()), loc="outside right upper", fontsize=8.5, frameon=False)
    if title:
        fig.suptitle(mpl_text(title), fontsize=11, x=0.01, ha="left")
    return fig


def class_bars(summary: Any, *, title: str, color: str = "#0072B2", xlabel: str = "top-1 accuracy") -> Any:
    """Horizontal bars of per-class accuracy (sorted, best on top) with the seed interval.

    ``summary`` has columns ``class``, ``mean``, ``ci_low``, ``ci_high`` and optionally ``heldout`` (bool),
    whose bars are hatched.
    """
    df = summary.sort_values("mean", ascending=True, kind="stable")
    n = len(df)
    longest = max((len(str(c)) for c in df["class"]), default=4)
    fig = new_figure(min(11.0, 5.2 + 0.07 * longest), 1.0 + 0.28 * max(n, 3))
    ax = fig.add_subplot()
    y = np.arange(n)
    m = df["mean"].to_numpy(float)
    lo, hi = df["ci_low"].to_numpy(float), df["ci_high"].to_numpy(float)
    ok = np.isfinite(lo) & np.isfinite(hi)
    xerr = np.vstack([np.where(ok, m - lo, 0.0), np.where(ok, hi - m, 0.0)])
    held = df["heldout"].fillna(False).astype(bool).to_numpy() if "heldout" in df.columns else np.zeros(n, bool)
    bars = ax.barh(y, m, xerr=xerr, color=color, alpha=0.85, capsize=2.5, error_kw={"linewidth": 1, "ecolor": "0.25"})
    for bar, h in zip(bars, held, strict=True):
        if h:
            bar.set_hatch("///")
            bar.set_facecolor("white")
            bar.set_edgecolor(color)
    ax.set_yticks(y, [mpl_text(c) for c in df["class"]], fontsize=8.5)
    ax.set_xlim(0, max(1.0, float(np.nanmax(np.where(ok, hi, m))) if n else 1.0))
    ax.set_xlabel(mpl_text(xlabel))
    ax.grid(True, axis="x", alpha=0.3)
    if held.any():
        from matplotlib.patches import Patch

        ax.legend(
            handles=[
                Patch(facecolor=color, alpha=0.85, label="seen in training"),
                Patch(facecolor="white", edgecolor=color, hatch="///", label="held out"),
            ],
            fontsize=8,
            loc="lower right",
        )
    ax.set_title(mpl_text(title), fontsize=10, loc="left")
    return fig
