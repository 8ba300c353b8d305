"""Cross-space alignment measures behind one registry.

``alignkit.metrics.<name>(X, Y, ...)`` are plain functions; ``alignkit.measure(name, X, Y)``
looks them up by name (``'mutual_knn?k=10'`` ids work too); ``describe()`` lists their metadata.
"""

from alignkit.metrics._registry import MeasureInfo, describe, get, measure, names, parse_measure_id
from alignkit.metrics.kernel import cka, hsic
from alignkit.metrics.knn import cknna, cycle_knn, edit_distance_knn, jaccard_knn, lcs_knn, mutual_knn
from alignkit.metrics.preprocess import preprocess

__all__ = [
    "MeasureInfo",
    "cka",
    "cknna",
    "cycle_knn",
    "describe",
    "edit_distance_knn",
    "get",
    "hsic",
    "jaccard_knn",
    "lcs_knn",
    "measure",
    "mutual_knn",
    "names",
    "parse_measure_id",
    "preprocess",
]
