"""Layers shared by both tasks: Attentive Normalization (Wang et al., CVPR 2020) and its baselines.

One concept per file: ``attentive_norm`` (AN, the paper's layer; its fused autograd function in
``attentive_norm_fused``, whose passes run in ``attentive_norm_chunked`` on any device or ``attentive_norm_triton``
on CUDA, opt-in; the statistics of the authors' released layer, ``numerics="authors"``, in
``attentive_norm_authors``), ``self_attention`` (the SA-GAN block of Zhang et al. 2019), ``contextual_attention``
(DeepFill v1, Yu et al. 2018), ``factories`` (reading back the layer classes and partials that the networks take
as arguments, ``norm_layer`` style) and ``an_inspection`` (the last layouts and ``rho`` of
the AN layers in a network), ``layout_statistics`` (feature statistics inside the regions of a layout,
paper Figure 4).
"""

from common.layers.an_inspection import an_rho, collect_layouts
from common.layers.attentive_norm import AttentiveNorm2d, orthogonal_loss
from common.layers.attentive_norm_fused import attentive_norm_fused
from common.layers.contextual_attention import ContextualAttention2d
from common.layers.layout_statistics import capture_inputs, layout_summary, region_statistics
from common.layers.self_attention import SelfAttention2d

__all__ = [
    "AttentiveNorm2d",
    "ContextualAttention2d",
    "SelfAttention2d",
    "an_rho",
    "attentive_norm_fused",
    "capture_inputs",
    "collect_layouts",
    "layout_summary",
    "orthogonal_loss",
    "region_statistics",
]
