"""Generative image inpainting with Attentive Normalization (Wang et al., CVPR 2020, Sections 4 and 5.3).

DeepFill v1's two-stage generator (Yu et al., CVPR 2018) with an AN, contextual-attention or CA+AN refinement
branch, WGAN-GP critics and the paper's two-phase schedule; OpenCV's classical inpainting as baselines; run it with
``python -m an_inpaint``.
"""

from an_inpaint.baselines import classical_inpaint, classical_inpaint_batch
from an_inpaint.critics import GlobalCritic, LocalCritic, MaskedPatchCritic
from an_inpaint.evaluation import score_folders
from an_inpaint.generator import InpaintGenerator, compose, pad_to_multiple
from an_inpaint.losses import ReconstructionLoss, WGANGPLoss, deepfill_discount, spatial_discount
from an_inpaint.module import ANInpaint
from an_inpaint.predict import InpaintingPredictionWriter, load_inpainter

__all__ = [
    "ANInpaint",
    "GlobalCritic",
    "InpaintGenerator",
    "InpaintingPredictionWriter",
    "LocalCritic",
    "MaskedPatchCritic",
    "ReconstructionLoss",
    "WGANGPLoss",
    "classical_inpaint",
    "classical_inpaint_batch",
    "compose",
    "deepfill_discount",
    "load_inpainter",
    "pad_to_multiple",
    "score_folders",
    "spatial_discount",
]
