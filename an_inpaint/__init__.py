"""Generative image inpainting with Attentive Normalization (Wang et al., CVPR 2020, Sections 4 and 5.3).

DeepFill v1's two-stage generator (Yu et al., CVPR 2018) with an AN, contextual-attention or CA+AN refinement
branch, WGAN-GP critics and the paper's two-phase schedule; run it with ``python -m an_inpaint``.
"""

from an_inpaint.losses import compose, reconstruction_loss, spatial_discount
from an_inpaint.module import ANInpaint, InpaintingPredictionWriter
from an_inpaint.networks import GlobalCritic, InpaintGenerator, LocalCritic, MaskedPatchCritic

__all__ = [
    "ANInpaint",
    "GlobalCritic",
    "InpaintGenerator",
    "InpaintingPredictionWriter",
    "LocalCritic",
    "MaskedPatchCritic",
    "compose",
    "reconstruction_loss",
    "spatial_discount",
]
