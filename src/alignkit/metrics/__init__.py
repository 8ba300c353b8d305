"""Cross-space alignment measures behind one registry.

``alignkit.metrics.<name>(X, Y, ...)`` are plain functions; ``alignkit.measure(name, X, Y)``
looks them up by name (``'mutual_knn?k=10'`` ids work too); ``describe()`` lists their metadata.
"""

from alignkit.metrics._registry import (
    MEASURES,
    MeasureInfo,
    describe,
    get,
    measure,
    measure_spec,
    names,
    parse_measure_id,
    register,
)
from alignkit.metrics.cca import canonical_correlations, cca, pwcca, svcca
from alignkit.metrics.kernel import cka, hsic
from alignkit.metrics.knn import cknna, cycle_knn, edit_distance_knn, jaccard_knn, lcs_knn, mutual_knn
from alignkit.metrics.predictive import linear_predictivity, linear_predictivity_scores
from alignkit.metrics.preprocess import preprocess
from alignkit.metrics.retrieval import retrieval_alignment, retrieval_mrr, retrieval_ranks, retrieval_scores
from alignkit.metrics.rsa import rdm, rsa
from alignkit.metrics.shape import procrustes, shape_distance

__all__ = [
    "MEASURES",
    "MeasureInfo",
    "canonical_correlations",
    "cca",
    "cka",
    "cknna",
    "cycle_knn",
    "describe",
    "edit_distance_knn",
    "get",
    "hsic",
    "jaccard_knn",
    "lcs_knn",
    "linear_predictivity",
    "linear_predictivity_scores",
    "measure",
    "measure_spec",
    "mutual_knn",
    "names",
    "parse_measure_id",
    "preprocess",
    "procrustes",
    "pwcca",
    "rdm",
    "register",
    "retrieval_alignment",
    "retrieval_mrr",
    "retrieval_ranks",
    "retrieval_scores",
    "rsa",
    "shape_distance",
    "svcca",
]
