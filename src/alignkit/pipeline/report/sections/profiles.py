"""Layer profiles: the best score each layer reaches with any layer of the other model."""

from __future__ import annotations

import math

from alignkit.pipeline import plots
from alignkit.pipeline.report.context import Context
from alignkit.pipeline.report.html import Section, e, howto, section
from alignkit.pipeline.report.load import finite
from alignkit.pipeline.report.sections.atlas import atlases

HOWTO = (
    "For each layer of A, the best score it reaches with any layer of B (left), and for each layer "
    "of B the best over A (right); the star marks the peak. A clear peak says at which depth the "
    "structure shared with the other model lives; a flat profile says depth matters little. The "
    "dashed line is the mean of the max-statistic null, the score the best pair reaches by chance: "
    "points near it are indistinguishable from chance."
)


def build(ctx: Context) -> Section:
    title = "Layer profiles"
    atl = atlases(ctx)
    if not atl:
        return section("profiles", title, ctx.missing("atlas"))
    parts = []
    for exp in dict.fromkeys(a.experiment for a in atl):
        group = [a for a in atl if a.experiment == exp]
        known = [a for a in group if a.measure.known]  # "best" needs the measure's direction
        spaces = f"{e(group[0].space_a)} × {e(group[0].space_b)}"
        unknown = [a.measure.id for a in group if not a.measure.known]
        skipped = (
            f" Not drawn, direction unknown (not a registered measure): {e(', '.join(unknown))}." if unknown else ""
        )
        if not known:
            parts.append(f"<p class='missing'><b>{e(exp)}</b> ({spaces}).{skipped}</p>")
            continue
        panels = [
            {
                "metric": a.measure.label,
                "cells": a.cells,
                "max_null_mean": a.max_null_mean if finite(a.max_null_mean) else math.nan,
                "higher_is_better": a.measure.higher_is_better,
            }
            for a in known
        ]
        fig = plots.layer_profiles(
            panels, label_a=group[0].space_a, label_b=group[0].space_b, title=f"{exp}: best score per layer"
        )
        cap = f"<b>{e(exp)}</b> ({spaces}).{skipped}"
        parts.append(ctx.figure(f"profiles-{exp}", fig, f"Layer profiles {exp}", cap))
    return section("profiles", title, howto(HOWTO), *parts)
