"""Statistics around any measure: permutation nulls, subsampling CIs, streaming CKA."""

from alignkit.stats.bootstrap import BootstrapResult, bootstrap_ci
from alignkit.stats.permutation import PermutationResult, permutation_test, permutations
from alignkit.stats.streaming import StreamingCKA

__all__ = ["BootstrapResult", "PermutationResult", "StreamingCKA", "bootstrap_ci", "permutation_test", "permutations"]
