"""Names, labels and directions of what the tables hold, looked up in the registries.

A measure's direction comes from the measure registry (:func:`alignkit.metrics.get`); an evaluation
metric's label, direction and table order, and a scoring's label, from
:mod:`alignkit.evaluate.metric_info`. A name a registry does not know (a plugin that is not loaded) is
shown as written, with its direction unknown: nothing is guessed from the numbers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from alignkit.pipeline.report.html import e

if TYPE_CHECKING:
    from alignkit.evaluate.metric_info import EvalMetric


@dataclass(frozen=True)
class MeasureLabel:
    """How the report names a measure id (``'mutual_knn?k=10'``) and which way is better.

    ``higher_is_better`` is ``None`` when the measure is not registered in this process.
    """

    id: str
    label: str
    higher_is_better: bool | None

    @property
    def known(self) -> bool:
        return self.higher_is_better is not None

    def label_html(self) -> str:
        """The label, with a note when the direction is unknown."""
        if self.known:
            return e(self.label)
        return f"{e(self.label)} <span class='small'>(direction unknown)</span>"

    def unknown_note(self) -> str:
        """Why no best layer pair is marked (plain text)."""
        return (
            f"direction unknown: {self.id!r} is not a registered measure here (load its plugin to mark the best pair)"
        )


def measure(measure_id: object) -> MeasureLabel:
    """The label and direction of a measure id; the label is the registry's ``meta['label']`` or the id itself."""
    from alignkit import metrics

    text = str(measure_id)
    try:
        info = metrics.get(text)
    except (ValueError, TypeError):
        return MeasureLabel(text, text, None)
    return MeasureLabel(text, str(info.meta.get("label") or text), bool(info.higher_is_better))


def _eval_metric(name: object) -> EvalMetric | None:
    from alignkit.evaluate.metric_info import eval_metric_info

    try:
        return eval_metric_info(str(name))
    except (ValueError, TypeError):
        return None


def metric_label(name: object) -> str:
    """The display label of an evaluation metric (``'mrr'`` → ``'MRR'``); an unknown one as written."""
    info = _eval_metric(name)
    return info.label if info is not None else str(name)


def metric_higher_is_better(name: object) -> bool | None:
    """True/False from the registry; ``None`` when unknown or not a score to rank methods by."""
    info = _eval_metric(name)
    return info.higher_is_better if info is not None else None


def metric_sort_key(name: object) -> tuple[float, int, str]:
    """Table order of evaluation metrics: the registry's order, unknown metrics last by name."""
    info = _eval_metric(name)
    if info is None:
        return math.inf, 0, str(name)
    order, k, _ = info.sort_key
    return float(order), k, str(name)


def scoring_label(name: object) -> str:
    """``'nn'`` → ``'NN'``, ``'csls'`` → ``'CSLS'``; an unknown scoring as written."""
    from alignkit.evaluate.metric_info import scoring_info

    try:
        return scoring_info(str(name)).label
    except (ValueError, TypeError):
        return str(name)
