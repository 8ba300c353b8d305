"""The measure sanity benchmark (``alignkit sanity``): one table and one plot per test, rebuilt from its Parquet
tables and ``run.json`` (:mod:`alignkit.pipeline.sanity`)."""

from __future__ import annotations

from typing import Any

from alignkit.pipeline.report.context import Context
from alignkit.pipeline.report.html import Section, e, howto, num, seconds, section, table
from alignkit.pipeline.report.load import records

LAYERS_HOWTO = (
    "For every ordered pair of networks (same architecture, different seeds) and every layer of the first, the "
    "test passes when the layer of the second with the best score is the same layer (Kornblith et al., ICML 2019, "
    "Table 2). Asymmetric measures are symmetrised; a tie at the top counts 1/t. The dashed line is chance (1/L)."
)
OUTPUT_HOWTO = (
    "Over all pairs of networks: Spearman ρ between the similarity of their last hidden layers and how alike their "
    "outputs are (prediction agreement; −JSD of the softmax outputs; −|Δ accuracy|). +1: the measure orders model "
    "pairs exactly like their behaviour (ReSi, Klabunde et al., ICLR 2025). p: one-sided Mantel permutation test."
)
AUGMENTATION_HOWTO = (
    "Similarity between the activations of clean test images and of the same images with Gaussian pixel noise of "
    "growing strength. A trustworthy measure falls as the noise grows: Spearman ρ(level, similarity) = −1, and every "
    "adjacent pair of levels ordered (fraction 1)."
)
CAPACITY_HOWTO = (
    "Maps of growing capacity fitted from a trained network's layer and from an untrained network's (the control) "
    "to another trained network's same layer, scored on held-out rows (after Sutter et al., 'The Non-Linear "
    "Representation Dilemma'). Where the control scores as high as the trained source, the map, not the "
    "representations, made the alignment."
)


def _settings(ctx: Context) -> dict[str, Any]:
    s = ctx.data.run.get("settings")
    return s if isinstance(s, dict) else {}


def _figure(ctx: Context, stem: str, draw: Any, alt: str) -> str:
    try:
        return ctx.figure(stem, draw(), alt)
    except (ValueError, KeyError) as exc:  # nothing plottable (every measure skipped) must not break the report
        return f"<p class='warn'>No plot: {e(exc)}</p>"


def build_overview(ctx: Context) -> Section:
    run, s = ctx.data.run, _settings(ctx)
    models = [m for m in run.get("models") or [] if isinstance(m, dict)]
    rows = [[e(m.get("name")), e(m.get("seed")), num(m.get("test_accuracy"))] for m in models]
    control = run.get("control") or {}
    if control:
        rows.append(["untrained control", e(control.get("seed")), num(control.get("test_accuracy"))])
    timing = run.get("timings") or {}
    t_rows = [[e(k), e(seconds(v))] for k, v in timing.items()]
    intro = (
        f"<p>{e(s.get('n_models'))} networks <code>{e(s.get('arch'))}</code> trained from seeds 0…"
        f"{e((s.get('n_models') or 1) - 1)} on Fashion-MNIST; tests on {e(s.get('n_items'))} test images, layers "
        f"{e(', '.join(s.get('layers') or []))}.{' Quick mode.' if s.get('quick') else ''}</p>"
    )
    return section(
        "sanity-setup",
        "Sanity benchmark: networks and cost",
        intro,
        table(["network", "seed", "test accuracy"], rows, "num"),
        "<p>Where the time went:</p>",
        table(["step", "time"], t_rows, "num"),
        _warnings(run.get("warnings") or {}),
    )


def _warnings(counts: dict[str, Any]) -> str:
    if not counts:
        return ""
    bits = ", ".join(f"{e(v)} × {e(k)}" for k, v in counts.items())
    return (
        f"<p class='warn'>Warnings raised by the tests: {bits}. SmallSampleWarning: the CCA family (and others) scored "
        "layers with n &lt; 10 × their effective dimension, where their scores are inflated towards 1.</p>"
    )


def build_layers(ctx: Context) -> Section:
    from alignkit.sanity import SanityResult, plot_layer_identification

    title = "Layer identification"
    acc, trials = ctx.data.tables["sanity_layers"], ctx.data.tables["sanity_layer_trials"]
    if acc is None or trials is None:
        return section("sanity-layers", title, ctx.missing("sanity_layers", "sanity_layer_trials"))
    s = _settings(ctx)
    models = sorted({str(m) for m in trials["model_a"]})
    res = SanityResult(
        trials, acc, models, list(s.get("layers") or sorted(set(trials["layer"]))), int(s.get("n_items") or 0)
    )
    rows = [
        [f"<code>{e(r['measure'])}</code>", e(r.get("family")), num(r.get("accuracy")), e(r.get("n_trials")),
         e(r.get("status")) + (f": {e(r.get('reason'))}" if r.get("reason") else ""), e(seconds(r.get("time_s")))]
        for r in records(res.ranking())
    ]  # fmt: skip
    skipped = [[f"<code>{e(k)}</code>", e(v)] for k, v in res.skipped.items()]
    parts = [howto(LAYERS_HOWTO), _figure(ctx, "sanity-layers", lambda: plot_layer_identification(res), title)]
    parts.append(table(["measure", "family", "accuracy", "trials", "status", "time"], rows, "num"))
    if skipped:
        parts.append(table(["skipped measure", "why"], skipped))
    return section("sanity-layers", title, *parts)


def build_output(ctx: Context) -> Section:
    from alignkit.sanity import OutputCorrelationResult, plot_output_correlation

    title = "Output correlation"
    corr, pairs = ctx.data.tables["sanity_output"], ctx.data.tables["sanity_output_pairs"]
    if corr is None or pairs is None:
        return section("sanity-output", title, ctx.missing("sanity_output", "sanity_output_pairs"))
    models = sorted({str(m) for m in pairs["model_a"]} | {str(m) for m in pairs["model_b"]})
    res = OutputCorrelationResult(pairs, corr, models, int(_settings(ctx).get("n_items") or 0))
    rows = [
        [f"<code>{e(r['measure'])}</code>", e(r.get("output_measure")), num(r.get("rho")), num(r.get("p_value")),
         e(r.get("n_pairs")), e(r.get("status"))]
        for r in records(corr)
    ]  # fmt: skip
    return section(
        "sanity-output",
        title,
        howto(OUTPUT_HOWTO),
        _figure(ctx, "sanity-output", lambda: plot_output_correlation(res), title),
        table(["measure", "output similarity", "Spearman ρ", "p", "pairs", "status"], rows, "num"),
    )


def build_augmentation(ctx: Context) -> Section:
    from alignkit.sanity import AugmentationResult, plot_augmentation

    title = "Augmentation (input noise)"
    names = ("sanity_augmentation", "sanity_augmentation_cases", "sanity_augmentation_scores")
    by, cases, scores = (ctx.data.tables[n] for n in names)
    if by is None or cases is None or scores is None:
        return section("sanity-augmentation", title, ctx.missing(*names))
    levels = sorted({float(v) for v in scores["level"]})
    res = AugmentationResult(scores, cases, by, levels)
    rows = [
        [f"<code>{e(r['measure'])}</code>", num(r.get("mean_rho")), num(r.get("mean_adjacent_ordered")),
         e(r.get("n_cases")), e(r.get("status"))]
        for r in records(by)
    ]  # fmt: skip
    return section(
        "sanity-augmentation",
        title,
        howto(AUGMENTATION_HOWTO),
        _figure(ctx, "sanity-augmentation", lambda: plot_augmentation(res), title),
        table(["measure", "mean ρ (ideal −1)", "adjacent levels ordered", "cases", "status"], rows, "num"),
    )


def build_capacity(ctx: Context) -> Section:
    from alignkit.sanity import CapacityResult, plot_capacity_control

    title = "Capacity vs control"
    summary, rows_df = ctx.data.tables["sanity_capacity"], ctx.data.tables["sanity_capacity_rows"]
    if summary is None or rows_df is None:
        return section("sanity-capacity", title, ctx.missing("sanity_capacity", "sanity_capacity_rows"))
    maps = [str(m) for m in summary.sort_values("capacity_rank")["map"]]
    first = records(rows_df)[0]
    res = CapacityResult(rows_df, summary, maps, int(first.get("n_train") or 0), int(first.get("n_test") or 0), 10)
    metrics = ("r2_test", "top1_test", "mknn_test")
    rows = [
        [e(r["map"]), e(r.get("n_params")),
         *(f"{num(r.get(f'{m}_trained'))} / {num(r.get(f'{m}_random'))}" for m in metrics)]
        for r in records(summary.sort_values("capacity_rank"))
    ]  # fmt: skip
    layer = _settings(ctx).get("capacity_layer")
    return section(
        "sanity-capacity",
        title,
        howto(CAPACITY_HOWTO + (f" Layer: <code>{e(layer)}</code>." if layer else "")),
        _figure(ctx, "sanity-capacity", lambda: plot_capacity_control(res), title),
        table(["map", "parameters", "held-out R² trained / control", "top-1", "mutual kNN"], rows, "num"),
    )


SANITY_SECTIONS = (build_overview, build_layers, build_output, build_augmentation, build_capacity)
