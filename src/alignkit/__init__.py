"""alignkit: measure, learn and evaluate alignment between representation spaces."""

from alignkit import metrics
from alignkit.metrics import describe, measure
from alignkit.neighbors import KNNGraph, knn_graph

__version__ = "0.1.0"

__all__ = ["KNNGraph", "__version__", "describe", "knn_graph", "measure", "metrics"]
