"""Weight-space alignment: permutation matching (Git Re-Basin), interpolation barriers, merging, diagnostics.

Two networks of one architecture trained from different seeds compute similar functions with their hidden units
in different orders. :func:`match` finds the permutations that align ``model_b``'s units with ``model_a``'s
(by weights, by activations on data, or by the straight-through estimator) and returns the permuted copy, which
computes exactly the same function as ``model_b``; :func:`interpolation_barrier` measures the loss along the
straight line between the two; :func:`merge` averages two or more aligned models; :func:`l2_distance`,
:func:`singular_values` and :func:`singular_vector_alignment` are the diagnostics of Ito et al. (arXiv
2402.04051). Networks are ``torch.nn.Sequential`` stacks of Linear / Conv / BatchNorm / element-wise / pooling /
Flatten layers; the permutation spec is derived from the module graph (:func:`permutation_spec`).
"""

from alignkit.weights.analysis import l2_distance, singular_values, singular_vector_alignment
from alignkit.weights.barrier import (
    BarrierResult,
    average,
    evaluate,
    has_batchnorm,
    interpolate,
    interpolation_barrier,
    reset_bn_stats,
)
from alignkit.weights.matching import (
    METHODS,
    MatchResult,
    activation_costs,
    apply_permutation,
    match,
    objective,
    weight_matching,
)
from alignkit.weights.merge import MergeResult, merge
from alignkit.weights.spec import PermutationSpec, permutation_spec

__all__ = [
    "METHODS",
    "BarrierResult",
    "MatchResult",
    "MergeResult",
    "PermutationSpec",
    "activation_costs",
    "apply_permutation",
    "average",
    "evaluate",
    "has_batchnorm",
    "interpolate",
    "interpolation_barrier",
    "l2_distance",
    "match",
    "merge",
    "objective",
    "permutation_spec",
    "reset_bn_stats",
    "singular_values",
    "singular_vector_alignment",
    "weight_matching",
]
