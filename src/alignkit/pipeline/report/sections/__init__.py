"""The report's sections, one module each; :data:`SECTIONS` is the page order."""

from __future__ import annotations

from collections.abc import Callable

from alignkit.pipeline.report.context import Context
from alignkit.pipeline.report.html import Section
from alignkit.pipeline.report.sections import (
    atlas,
    classes,
    comparison,
    diagnostics,
    fits,
    profiles,
    selection,
    sizes,
)

#: Section builders in page order; each takes the context and returns its :class:`Section`.
SECTIONS: tuple[Callable[[Context], Section], ...] = (
    atlas.build,
    selection.build,
    profiles.build,
    sizes.build,
    comparison.build,
    classes.build,
    diagnostics.build_profiles,
    diagnostics.build_aligned,
    fits.build,
)

__all__ = ["SECTIONS"]
