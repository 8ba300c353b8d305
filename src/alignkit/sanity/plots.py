"""Figures of the sanity tests: a result in, a :class:`matplotlib.figure.Figure` out (no pyplot state, no I/O).

The report's style (:mod:`alignkit.pipeline.plots`, which this layer may not import): constrained layout, the
Okabe–Ito palette, one colour per measure family, data strings escaped for mathtext.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from alignkit._validation import check_choice

DPI = 110
_PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#8C564B", "#7F7F7F",
            "#BCBD22")  # fmt: skip


def _text(s: Any) -> str:
    return str(s).replace("$", r"\$")


def _figure(width: float, height: float) -> Any:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=DPI, layout="constrained")


def _colors(keys: Any) -> dict[str, str]:
    names = sorted({str(k) for k in keys})
    return {k: _PALETTE[i % len(_PALETTE)] for i, k in enumerate(names)}


def _family_legend(ax: Any, colors: dict[str, str], extra: list[Any] | None = None) -> None:
    from matplotlib.patches import Patch

    handles = [Patch(color=c, label=_text(f)) for f, c in colors.items()] + list(extra or [])
    ax.legend(handles=handles, fontsize="small", loc="lower right")


def plot_layer_identification(result: Any, *, title: str | None = None) -> Any:
    """Horizontal bars of layer-identification accuracy per measure (best on top), coloured by family, with the
    chance level 1/L dashed; skipped measures are left out (named in the subtitle)."""
    acc = result.ranking()
    if acc.empty:
        raise ValueError("no measure ran: nothing to plot (see result.skipped)")
    acc = acc.iloc[::-1]
    colors = _colors(acc["family"])
    fig = _figure(6.4, 1.2 + 0.24 * len(acc))
    ax = fig.add_subplot()
    y = np.arange(len(acc))
    ax.barh(y, acc["accuracy"], color=[colors[str(f)] for f in acc["family"]])
    ax.set_yticks(y, [_text(m) for m in acc["measure"]], fontsize="small")
    line = ax.axvline(result.chance, ls="--", color="#444444", lw=1, label=f"chance (1/{len(result.layers)})")
    ax.set_xlim(0, 1)
    ax.set_xlabel("layer identification accuracy")
    skipped = result.skipped
    sub = f"; skipped: {', '.join(skipped)}" if skipped else ""
    n_models = len(result.models)
    ax.set_title(_text(title or f"Layer identification: {n_models} models, {len(result.layers)} layers, "
                                f"n = {result.n_items}{sub}"), fontsize="medium", wrap=True)  # fmt: skip
    _family_legend(ax, colors, [line])
    return fig


def plot_output_correlation(result: Any, *, title: str | None = None) -> Any:
    """Spearman ρ between representational and output similarity per measure (bars per output measure: agreement,
    −JSD and, with labels, −|Δ accuracy|); +1 is ideal. Measures sorted by their ρ with agreement."""
    corr = result.correlations
    corr = corr[(corr["status"] == "ok") & corr["rho"].notna()]
    if corr.empty:
        raise ValueError("no correlation to plot (every measure skipped or undefined)")
    outs = [o for o in ("agreement", "jsd", "accuracy") if o in set(corr["output_measure"])]
    key = outs[0]
    order = corr[corr["output_measure"] == key].sort_values("rho", kind="stable")["measure"].tolist()
    order += [m for m in dict.fromkeys(corr["measure"]) if m not in order]
    colors = dict(zip(outs, _PALETTE, strict=False))
    labels = {"agreement": "prediction agreement", "jsd": "−JSD of outputs", "accuracy": "−|Δ accuracy|"}
    fig = _figure(6.4, 1.2 + 0.3 * len(order))
    ax = fig.add_subplot()
    h = 0.8 / len(outs)
    pos = {m: i for i, m in enumerate(order)}
    for k, out in enumerate(outs):
        part = corr[corr["output_measure"] == out]
        ys = np.array([pos[m] for m in part["measure"]]) - 0.4 + h * (k + 0.5)
        ax.barh(ys, part["rho"], height=h, color=colors[out], label=labels[out])
    ax.set_yticks(np.arange(len(order)), [_text(m) for m in order], fontsize="small")
    ax.axvline(0.0, color="#444444", lw=0.8)
    ax.set_xlim(-1, 1)
    ax.set_xlabel("Spearman ρ over model pairs (representational vs output similarity)")
    ax.set_title(_text(title or f"Output correlation: {len(result.models)} models"), fontsize="medium")
    fig.legend(fontsize="small", loc="outside lower center", ncol=len(outs))
    return fig


def plot_augmentation(
    result: Any, *, model: str | None = None, layer: str | None = None, scale: bool = True, title: str | None = None
) -> Any:
    """Similarity to the clean representation against noise level, one line per measure (mean over the models and
    layers kept by ``model``/``layer``). ``scale`` min–max scales each curve to [0, 1] first, so measures with
    different ranges share one axis; a good measure falls from 1 to 0."""
    s = result.scores
    if model is not None:
        s = s[s["model"] == str(model)]
    if layer is not None:
        s = s[s["layer"] == str(layer)]
    if s.empty:
        raise ValueError(f"no scores to plot for model={model!r}, layer={layer!r}")
    fig = _figure(6.4, 4.0)
    ax = fig.add_subplot()
    for i, (measure, part) in enumerate(s.groupby("measure", sort=False)):
        curves = []
        for _, case in part.groupby(["model", "layer"], sort=False):
            case = case.sort_values("level")
            v = case["similarity"].to_numpy(dtype=float)
            if scale:
                span = np.nanmax(v) - np.nanmin(v) if np.isfinite(v).any() else 0.0
                v = (v - np.nanmin(v)) / span if span > 0 else np.full_like(v, 0.5)
            curves.append(v)
        levels = np.sort(part["level"].unique())
        style = "-" if i < len(_PALETTE) else "--"
        ax.plot(levels, np.nanmean(np.stack(curves), axis=0), style, marker="o", ms=3, lw=1.2,
                color=_PALETTE[i % len(_PALETTE)], label=_text(measure))  # fmt: skip
    ax.set_xlabel("noise level")
    ax.set_ylabel("similarity to clean (min–max scaled per measure)" if scale else "similarity to clean")
    n_cases = s[["model", "layer"]].drop_duplicates().shape[0]
    ax.set_title(_text(title or f"Augmentation: mean over {n_cases} model/layer case(s)"), fontsize="medium")
    ax.legend(fontsize="x-small", ncol=2)
    return fig


def plot_capacity_control(result: Any, *, metric: str = "r2_test", title: str | None = None) -> Any:
    """Held-out alignment against map capacity (maps in the given order), the trained source against the
    randomly initialised control; the gap is the selectivity. Chance is dashed: 0 for R², 1/n_test for top-1."""
    check_choice(metric, ("r2_train", "r2_test", "top1_test", "mknn_test"), "metric")
    rows = result.rows
    fig = _figure(5.6, 3.6)
    ax = fig.add_subplot()
    x = np.arange(len(result.maps))
    for source, color, label in (
        ("trained", _PALETTE[0], "trained source"),
        ("random", _PALETTE[1], "random-init control"),
    ):
        part = rows[rows["source"] == source].sort_values("capacity_rank")
        ax.plot(x, part[metric], marker="o", color=color, label=label)
    chance = {"r2_train": 0.0, "r2_test": 0.0, "top1_test": result.top1_chance}.get(metric)
    if chance is not None:
        ax.axhline(chance, ls="--", color="#444444", lw=1, label="chance" if metric.startswith("top1") else "R² = 0")
    ax.set_xticks(x, [_text(m) for m in result.maps])
    ax.set_xlabel("alignment map (growing capacity)")
    names = {"r2_train": "train R²", "r2_test": "held-out R²", "top1_test": "held-out top-1 retrieval",
             "mknn_test": f"held-out mutual kNN (k = {result.k})"}  # fmt: skip
    ax.set_ylabel(names[metric])
    ax.set_title(_text(title or f"Capacity vs control ({result.n_train} train / {result.n_test} held-out rows)"),
                 fontsize="medium")  # fmt: skip
    ax.legend(fontsize="small")
    return fig
