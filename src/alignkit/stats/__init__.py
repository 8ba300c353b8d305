"""Statistics around any measure: permutation nulls (plain and grouped), subsampling CIs, false-discovery
control over many cells, scaling-law fits, streaming CKA."""

from alignkit.stats.bootstrap import BootstrapResult, bootstrap_ci
from alignkit.stats.fdr import bh_qvalues, by_qvalues, fdr_reject, qvalues
from alignkit.stats.groups import GROUP_MODES, row_subsets
from alignkit.stats.permutation import PermutationResult, permutation_test, permutations
from alignkit.stats.scaling import ScalingLawResult, fit_scaling_law
from alignkit.stats.streaming import StreamingCKA

__all__ = [
    "GROUP_MODES",
    "BootstrapResult",
    "PermutationResult",
    "ScalingLawResult",
    "StreamingCKA",
    "bh_qvalues",
    "bootstrap_ci",
    "by_qvalues",
    "fdr_reject",
    "fit_scaling_law",
    "permutation_test",
    "permutations",
    "qvalues",
    "row_subsets",
]
