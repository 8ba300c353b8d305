"""What the ``metric`` and ``scoring`` of an evaluation row mean: label, direction, range and order.

Two registries built on :mod:`alignkit.registry`: :data:`EVAL_METRICS` (``R@{k}``, ``mrr``, ``median_rank``,
``top{k}``, ...) and :data:`SCORINGS` (``nn``, ``csls``). A metric with a cut-off ``k`` is one family entry
(``R@{k}``, ``P@{k}``, ``top{k}``); :func:`eval_metric_info` resolves ``'R@20'`` or ``'top16'`` to a concrete
entry. Each entry's ``meta`` holds ``label``, ``higher_is_better`` (``None``: describes the data, not a score
to rank methods by), ``order`` (where the metric goes in a table) and ``range``. Unknown names fail with the
registry's did-you-mean. A plugin adds its own metrics with :func:`register_eval_metric`.

This module imports nothing heavy (no torch, numpy or pandas).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace
from typing import Any

from alignkit.registry import Entry, Param, ParamSchema, Registry

__all__ = [
    "EVAL_METRICS",
    "SCORINGS",
    "EvalMetric",
    "Scoring",
    "eval_metric_info",
    "register_eval_metric",
    "scoring_info",
]

_K = "{k}"
_K_PARAM = Param("k", ("int",), low=1, doc="the cut-off: how many top candidates count as a hit")


@dataclass(frozen=True)
class EvalMetric(Entry[None]):
    """An evaluation metric; a family entry (name with ``{k}``) stands for every cut-off ``k >= 1``."""

    @property
    def label(self) -> str:
        return str(self.meta["label"])

    @property
    def higher_is_better(self) -> bool | None:
        hib = self.meta["higher_is_better"]
        return None if hib is None else bool(hib)

    @property
    def range(self) -> tuple[float, float]:
        low, high = self.meta["range"]
        return float(low), float(high)

    @property
    def order(self) -> int:
        return int(self.meta["order"])

    @property
    def k(self) -> int | None:
        """The cut-off of a resolved family member (``R@5`` → 5), else ``None``."""
        return self.meta.get("k")

    @property
    def is_family(self) -> bool:
        return _K in self.name

    @property
    def sort_key(self) -> tuple[int, int, str]:
        """Table order: the metric's ``order``, then ``k`` (R@1 before R@10), then the name."""
        return self.order, self.k or 0, self.name

    def resolve(self, name: str) -> EvalMetric | None:
        """The concrete member ``name`` of this family (``'R@{k}'`` → ``'R@20'``), or ``None`` if it is not one."""
        if not self.is_family:
            return self if name == self.name else None
        head, _, tail = self.name.partition(_K)
        m = re.fullmatch(re.escape(head) + r"(\d+)" + re.escape(tail), name)
        if m is None:
            return None
        k = self.schema.get("k").check(int(m.group(1)), f"evaluation metric {name!r}")
        meta = {**self.meta, "label": self.label.replace(_K, str(k)), "k": k}
        return replace(self, name=name, meta=meta, schema=ParamSchema())


@dataclass(frozen=True)
class Scoring(Entry[None]):
    """How a retrieval ranks candidates (``nn``: cosine; ``csls``: hubness-corrected)."""

    @property
    def label(self) -> str:
        return str(self.meta["label"])


EVAL_METRICS: Registry[EvalMetric] = Registry("evaluation metric")
SCORINGS: Registry[Scoring] = Registry("scoring")


def register_eval_metric(
    name: str,
    *,
    label: str,
    higher_is_better: bool | None,
    order: int,
    range: tuple[float, float],
    description: str,
    replace: bool = False,
) -> EvalMetric:
    """Register an evaluation metric; a ``{k}`` in ``name`` and ``label`` makes it a family (``'R@{k}'``)."""
    if not isinstance(label, str) or not label:
        raise ValueError(f"evaluation metric {name!r}: label must be a non-empty string; got {label!r}")
    if higher_is_better not in (True, False, None):
        raise ValueError(f"evaluation metric {name!r}: higher_is_better must be True, False or None")
    low, high = range
    if math.isnan(low) or math.isnan(high) or low > high:
        raise ValueError(f"evaluation metric {name!r}: range must be (low, high) with low <= high; got {range!r}")
    if name.count(_K) > 1 or (_K in name) != (_K in label):
        raise ValueError(f"evaluation metric {name!r}: '{{k}}' must appear once in both the name and the label")
    schema = ParamSchema((_K_PARAM,)) if _K in name else ParamSchema()
    meta: dict[str, Any] = {
        "label": label,
        "higher_is_better": higher_is_better,
        "order": int(order),
        "range": (float(low), float(high)),
    }
    return EVAL_METRICS.add(EvalMetric(name, None, description, schema, meta), replace=replace)


def eval_metric_info(name: str) -> EvalMetric:
    """The entry of evaluation metric ``name``; ``'R@20'``, ``'P@5'`` or ``'top16'`` resolve through their family.

    An unknown name raises the registry's ``ValueError`` with a did-you-mean.
    """
    if not isinstance(name, str):
        raise TypeError(f"an evaluation metric name must be a string; got {type(name).__name__}")
    if name in EVAL_METRICS:
        return EVAL_METRICS.get(name)
    for entry in EVAL_METRICS:
        if entry.is_family and (hit := entry.resolve(name)) is not None:
            return hit
    raise EVAL_METRICS.unknown(name)


def scoring_info(name: str) -> Scoring:
    """The entry of scoring ``name`` (``'nn'`` or ``'csls'``); an unknown name raises with a did-you-mean."""
    return SCORINGS.get(name)


_UNIT = (0.0, 1.0)
_RANK = (1.0, math.inf)

#: The built-in metrics: (name, label, higher_is_better, order, range, description).
_BUILTIN_METRICS: tuple[tuple[str, str, bool | None, int, tuple[float, float], str], ...] = (
    ("R@{k}", "R@{k}", True, 0, _UNIT, "retrieval: share of queries whose partner ranks in the top k"),
    ("mrr", "MRR", True, 10, _UNIT, "retrieval: mean reciprocal rank of the partner"),
    ("median_rank", "median rank", False, 20, _RANK, "retrieval: median rank of the partner (1 is perfect)"),
    ("mean_rank", "mean rank", False, 30, _RANK, "mean rank of the partner or true target (1 is perfect)"),
    ("top{k}", "top-{k}", True, 40, _UNIT, "share of items whose true class or target is among the k best"),
    ("mean_class_top1", "mean class top-1", True, 50, _UNIT, "zero-shot: top-1 accuracy averaged over classes"),
    (
        "heldout_top1_among_all",
        "held-out top-1 (among all)",
        True,
        60,
        _UNIT,
        "zero-shot: top-1 on classes held out of training, ranked among all classes",
    ),
    (
        "heldout_top1_among_heldout",
        "held-out top-1 (among held-out)",
        True,
        70,
        _UNIT,
        "zero-shot: top-1 on classes held out of training, ranked among the held-out classes only",
    ),
    ("class_top1", "class top-1", True, 80, _UNIT, "zero-shot: top-1 accuracy on the images of one class"),
    ("P@{k}", "P@{k}", True, 100, _UNIT, "BLI: share of source words with a gold translation in the top k"),
    ("coverage", "coverage", None, 110, _UNIT, "BLI: share of test words in the vocabularies (describes the data)"),
    ("mean_cosine", "mean cosine", True, 200, (-1.0, 1.0), "translation: mean cosine of prediction and target"),
    ("accuracy", "accuracy", True, 300, _UNIT, "linear probe: mean cross-validated accuracy"),
    ("fold_accuracy", "fold accuracy", True, 310, _UNIT, "linear probe: accuracy on one cross-validation fold"),
    (
        "majority_baseline",
        "majority baseline",
        None,
        320,
        _UNIT,
        "linear probe: the largest class's share (describes the data)",
    ),
)

_BUILTIN_SCORINGS = (
    ("nn", "NN", "nearest neighbour by cosine similarity"),
    ("csls", "CSLS", "cross-domain similarity local scaling: cosine corrected for hub items"),
    ("gram", "GRAM volume", "one view against an item's other views: minus the volume they span (GRAM)"),
)

for _m in _BUILTIN_METRICS:
    register_eval_metric(_m[0], label=_m[1], higher_is_better=_m[2], order=_m[3], range=_m[4], description=_m[5])
for _s in _BUILTIN_SCORINGS:
    SCORINGS.add(Scoring(_s[0], None, _s[2], meta={"label": _s[1]}))
del _m, _s
