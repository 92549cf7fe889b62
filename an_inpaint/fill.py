"""Harmonic (membrane) filling of holes: the smooth interpolation of the known pixels, a classical inpainting method.

Inside the hole the result solves Laplace's equation ``Delta u = 0`` with the known pixels as boundary values (the
"harmonic inpainting" of e.g. Chan and Shen, "Mathematical models for local nontexture inpaintings", SIAM J. Appl.
Math. 2002): the smoothest surface that meets the known pixels, without any edge continuation or texture. It is
solved with a multigrid cascade: the image and its known-pixel mask are average-pooled down to a coarse level where
the hole is small, filled there, and the solution is upsampled (bilinear) level by level, each level refined with
``iterations`` Jacobi sweeps of the 4-neighbour average (replicate padding at the image border).

Two uses: ``InpaintGenerator(hole_fill="harmonic")`` starts both stages from it (the network predicts a residual
over this fill), and the ``"harmonic"`` classical baseline scores it on its own, so that the network's own
contribution over its starting point is measured.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["harmonic_fill"]


def _jacobi(y: Tensor, x: Tensor, known: Tensor, iterations: int) -> Tensor:
    known = known > 0
    for _ in range(iterations):
        p = F.pad(y, (1, 1, 1, 1), mode="replicate")
        average = 0.25 * (p[..., :-2, 1:-1] + p[..., 2:, 1:-1] + p[..., 1:-1, :-2] + p[..., 1:-1, 2:])
        y = torch.where(known, x, average)
    return y


@torch.no_grad()
def harmonic_fill(image: Tensor, mask: Tensor, iterations: int = 30) -> Tensor:
    """Fill the hole of ``image`` with the harmonic interpolation of its known pixels (known pixels unchanged).

    Args:
        image: ``(B, C, H, W)``; hole values are ignored.
        mask: ``(B, 1, H, W)``, 1 = missing.
        iterations: Jacobi sweeps per multigrid level.

    Returns:
        ``(B, C, H, W)``, equal to ``image`` outside the hole (no gradient: a fixed starting point).
    """
    known = (mask < 0.5).to(image.dtype)
    return _fill(image * known, known, iterations)


def _fill(x: Tensor, known: Tensor, iterations: int) -> Tensor:
    if bool(known.min() > 0):
        return x
    height, width = x.shape[-2:]
    if min(height, width) <= 2 or bool((known.flatten(1).sum(1) == 0).any()):
        mean = (x * known).sum((2, 3), keepdim=True) / known.sum((2, 3), keepdim=True).clamp_min(1.0)
        return _jacobi(torch.where(known > 0, x, mean.expand_as(x)), x, known, iterations)
    pad_h, pad_w = height % 2, width % 2
    xp, kp = F.pad(x, (0, pad_w, 0, pad_h), mode="replicate"), F.pad(known, (0, pad_w, 0, pad_h), mode="replicate")
    weight = F.avg_pool2d(kp, 2)
    coarse_x = F.avg_pool2d(xp * kp, 2) / weight.clamp_min(1e-8)
    coarse = _fill(coarse_x, (weight > 0.99).to(x.dtype), iterations)  # coarse pixels that are fully known
    up = F.interpolate(coarse, scale_factor=2, mode="bilinear", align_corners=False)[..., :height, :width]
    return _jacobi(torch.where(known > 0, x, up), x, known, iterations)
