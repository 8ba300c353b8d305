"""alignkit: measure, learn and evaluate alignment between representation spaces."""

from alignkit import metrics, stats
from alignkit.atlas import AtlasResult, atlas, k_from_rule, select_layers
from alignkit.metrics import describe, measure
from alignkit.neighbors import KNNGraph, knn_graph
from alignkit.stats import StreamingCKA, bootstrap_ci, permutation_test

__version__ = "0.1.0"

__all__ = [
    "AtlasResult",
    "KNNGraph",
    "StreamingCKA",
    "__version__",
    "atlas",
    "bootstrap_ci",
    "describe",
    "k_from_rule",
    "knn_graph",
    "measure",
    "metrics",
    "permutation_test",
    "select_layers",
    "stats",
]
