"""Generative image inpainting with Attentive Normalization (Wang et al., CVPR 2020, Sections 4 and 5.3).

DeepFill v1's two-stage generator (Yu et al., CVPR 2018) with an AN, contextual-attention or CA+AN refinement
branch, WGAN-GP critics and the paper's two-phase schedule; OpenCV's classical inpainting as baselines; run it with
``python -m an_inpaint``.

The package itself imports nothing (no re-exports): ``python -m an_inpaint`` runs ``an_inpaint.__main__``, which sets
OpenMP's wait policy before anything loads torch. Import from the modules (``an_inpaint.module``,
``an_inpaint.networks``, ...).
"""
