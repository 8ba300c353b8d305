"""Learning alignment between two spaces from paired rows: scikit-learn-style aligners and losses.

One explicit re-export (``name as name``) per line, so each module adds its own lines.
"""

from alignkit.align.base import ALIGNERS as ALIGNERS
from alignkit.align.base import Aligner as Aligner
from alignkit.align.base import make_aligner as make_aligner
from alignkit.align.base import register_aligner as register_aligner
from alignkit.align.closed_form import ASIF as ASIF
from alignkit.align.closed_form import CCAAligner as CCAAligner
from alignkit.align.closed_form import Procrustes as Procrustes
from alignkit.align.closed_form import Ridge as Ridge
from alignkit.align.closed_form import VecMap as VecMap
from alignkit.align.heads import HEADS as HEADS
from alignkit.align.heads import LinearHead as LinearHead
from alignkit.align.heads import MLPHead as MLPHead
from alignkit.align.heads import ResLowRankHead as ResLowRankHead
from alignkit.align.heads import StarMLP as StarMLP
from alignkit.align.heads import build_head as build_head
from alignkit.align.heads import register_head as register_head
from alignkit.align.loss_registry import LOSSES as LOSSES
from alignkit.align.loss_registry import LossPlan as LossPlan
from alignkit.align.loss_registry import build_loss as build_loss
from alignkit.align.loss_registry import build_loss_plan as build_loss_plan
from alignkit.align.loss_registry import losses_for as losses_for
from alignkit.align.loss_registry import parse_loss as parse_loss
from alignkit.align.loss_registry import register_loss as register_loss
from alignkit.align.losses import CombinedLoss as CombinedLoss
from alignkit.align.losses import GramVolumeLoss as GramVolumeLoss
from alignkit.align.losses import InfoNCE as InfoNCE
from alignkit.align.losses import SigLIP as SigLIP
from alignkit.align.losses import StructureRegularizer as StructureRegularizer
from alignkit.align.losses import alignment_loss as alignment_loss
from alignkit.align.losses import calibrated_uniformity as calibrated_uniformity
from alignkit.align.losses import geodesic_mix as geodesic_mix
from alignkit.align.losses import gram_volume as gram_volume
from alignkit.align.losses import gram_volume_loss as gram_volume_loss
from alignkit.align.losses import info_nce as info_nce
from alignkit.align.losses import intra_modal_loss as intra_modal_loss
from alignkit.align.losses import mixup_negatives_loss as mixup_negatives_loss
from alignkit.align.losses import mv_dhel as mv_dhel
from alignkit.align.losses import mv_info_nce as mv_info_nce
from alignkit.align.losses import siglip as siglip
from alignkit.align.losses import structure_lambda as structure_lambda
from alignkit.align.losses import structure_reg as structure_reg
from alignkit.align.losses import triple_contrastive as triple_contrastive
from alignkit.align.losses import uniformity_loss as uniformity_loss
from alignkit.align.multiview import MultiHeadAligner as MultiHeadAligner
from alignkit.align.nway import GeneralizedProcrustes as GeneralizedProcrustes
from alignkit.align.nway import MultiSetCCA as MultiSetCCA
from alignkit.align.trainer import HeadAligner as HeadAligner
from alignkit.align.trainer import fit_heads as fit_heads
