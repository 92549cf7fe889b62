"""The networks of the inpainting task, one import path for configs: the generator and the critics.

:class:`InpaintGenerator` lives in :mod:`an_inpaint.generator`, the critics in :mod:`an_inpaint.critics`; configs
name them ``an_inpaint.networks.<Class>``.
"""

from an_inpaint.critics import GlobalCritic, LocalCritic, MaskedPatchCritic
from an_inpaint.generator import InpaintGenerator

__all__ = ["GlobalCritic", "InpaintGenerator", "LocalCritic", "MaskedPatchCritic"]
