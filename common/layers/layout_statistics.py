"""Feature statistics inside the regions of an AN layout (Wang et al., CVPR 2020, Section 3.4 and Figure 4).

The paper's evidence that the learned layout is semantic: the standard deviation of the features computed over the
region an entity highlights is much lower than over the whole feature map. :func:`region_statistics` computes those
statistics for a layout ``S`` (soft weights, the layer's own regional moments, or the argmax regions),
:func:`layout_summary` reduces them to a few numbers, and :func:`capture_inputs` records the feature maps an AN layer
sees inside a network.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn

from common.layers.attentive_norm import AttentiveNorm2d

__all__ = ["capture_inputs", "layout_summary", "region_statistics"]


def region_statistics(features: Tensor, layout: Tensor, hard: bool = False) -> dict[str, Tensor]:
    """Per-region, per-channel mean and standard deviation of ``features`` under ``layout``.

    Args:
        features: ``(B, C, H, W)`` feature maps.
        layout: ``(B, n, H, W)`` soft layout (each pixel's weights sum to 1).
        hard: weight each pixel 1 for its most likely entity and 0 elsewhere (the paper's "highlighted regions"
            read as binary masks) instead of by its soft weight (the statistics AN itself normalises with).

    Returns:
        ``mean`` and ``std`` ``(B, n, C)`` (weighted, population form; 0 for an empty region), ``mass`` ``(B, n)``
        (the region's share of the map, summing to 1 per sample), and the whole map's ``whole_mean`` and
        ``whole_std`` ``(B, C)``.
    """
    if features.dim() != 4 or layout.dim() != 4 or features.shape[0] != layout.shape[0]:
        raise ValueError(f"expected features (B, C, H, W) and layout (B, n, H, W), got {tuple(features.shape)} and "
                         f"{tuple(layout.shape)}")  # fmt: skip
    if features.shape[-2:] != layout.shape[-2:]:
        raise ValueError(f"features {tuple(features.shape[-2:])} and layout {tuple(layout.shape[-2:])} differ in size")
    x = features.detach().double().flatten(2)  # (B, C, HW)
    s = layout.detach().double().flatten(2)  # (B, n, HW)
    if hard:
        s = torch.zeros_like(s).scatter_(1, s.argmax(dim=1, keepdim=True), 1.0)
    mass = s.sum(dim=2)  # (B, n)
    weights = s / mass.clamp_min(1e-12)[..., None]
    mean = torch.bmm(weights, x.transpose(1, 2))  # (B, n, C)
    var = (torch.bmm(weights, (x * x).transpose(1, 2)) - mean * mean).clamp_min(0.0)
    return {
        "mean": mean.float(),
        "std": var.sqrt().float(),
        "mass": (mass / s.shape[2]).float(),
        "whole_mean": x.mean(dim=2).float(),
        "whole_std": x.std(dim=2, unbiased=False).float(),
    }


def layout_summary(features: Tensor, layout: Tensor, hard: bool = False) -> dict[str, float]:
    """A few numbers about a layout (averaged over the batch and the channels).

    Returns:
        ``whole_std``: the features' standard deviation over the whole map; ``region_std``: inside the regions,
        each region weighted by its mass; ``ratio``: ``region_std / whole_std`` (below 1: the regions are more
        coherent than the map); ``used_entities``: the regions that hold at least ``1 / (4 n)`` of the map, per
        sample; ``entropy``: the mean per-pixel entropy of the soft layout in nats (``log n`` = uniform).
    """
    stats = region_statistics(features, layout, hard=hard)
    n = layout.shape[1]
    region_std = (stats["std"].mean(dim=2) * stats["mass"]).sum(dim=1).mean()
    whole_std = stats["whole_std"].mean()
    p = layout.detach().double().clamp_min(1e-12)
    return {
        "whole_std": whole_std.item(),
        "region_std": region_std.item(),
        "ratio": (region_std / whole_std).item(),
        "used_entities": (stats["mass"] >= 1.0 / (4 * n)).sum(dim=1).float().mean().item(),
        "entropy": -(p * p.log()).sum(dim=1).mean().item(),
    }


@contextmanager
def capture_inputs(module: nn.Module) -> Iterator[dict[str, Tensor]]:
    """Within the block, record the last input of every :class:`AttentiveNorm2d` in ``module``:
    ``{qualified name: (B, C, H, W)}`` (detached)."""
    captured: dict[str, Tensor] = {}
    handles = [
        m.register_forward_pre_hook(lambda _m, args, name=name: captured.__setitem__(name, args[0].detach()))
        for name, m in module.named_modules()
        if isinstance(m, AttentiveNorm2d)
    ]
    try:
        yield captured
    finally:
        for handle in handles:
            handle.remove()
