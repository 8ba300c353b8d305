"""Sanity tests for alignment measures: which measure can be trusted on which question.

- :func:`layer_identification`: Kornblith et al.'s test (ICML 2019): across networks trained from different
  seeds, does a measure identify the corresponding layer?
- :func:`output_correlation_test`, :func:`augmentation_test`: two tests after ReSi (Klabunde et al., ICLR 2025):
  does representational similarity rank model pairs like their prediction agreement does, and does it fall as
  input noise grows?
- :func:`capacity_control`: maps of growing capacity from a trained and a randomly initialised network to the same
  target, scored on held-out rows (after Sutter et al., "The Non-Linear Representation Dilemma", NeurIPS 2025).

Pure analyses: arrays in, tables (pandas DataFrames with plain columns) and matplotlib Figures out.
"""

from alignkit.sanity._common import default_measures as default_measures
from alignkit.sanity.capacity import CapacityResult as CapacityResult
from alignkit.sanity.capacity import capacity_control as capacity_control
from alignkit.sanity.layers import SanityResult as SanityResult
from alignkit.sanity.layers import layer_identification as layer_identification
from alignkit.sanity.plots import plot_augmentation as plot_augmentation
from alignkit.sanity.plots import plot_capacity_control as plot_capacity_control
from alignkit.sanity.plots import plot_layer_identification as plot_layer_identification
from alignkit.sanity.plots import plot_output_correlation as plot_output_correlation
from alignkit.sanity.resi import AugmentationResult as AugmentationResult
from alignkit.sanity.resi import OutputCorrelationResult as OutputCorrelationResult
from alignkit.sanity.resi import augmentation_test as augmentation_test
from alignkit.sanity.resi import output_correlation_test as output_correlation_test
