"""Evaluation protocols on already-aligned spaces; each returns tidy rows (``list[dict]``)."""

from alignkit.evaluate.bli import bli
from alignkit.evaluate.probe import linear_probe
from alignkit.evaluate.retrieval import retrieval
from alignkit.evaluate.rows import summarize, to_pandas
from alignkit.evaluate.translation import translation
from alignkit.evaluate.zero_shot import class_prototypes, zero_shot

__all__ = ["bli", "class_prototypes", "linear_probe", "retrieval", "summarize", "to_pandas", "translation", "zero_shot"]
