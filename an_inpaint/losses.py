"""Reconstruction losses of the two-stage inpainting network (DeepFill v1, Yu et al., CVPR 2018).

The AN paper (Wang et al., CVPR 2020, Section 4, eq. 9) trains the inpainting generator with an L1
reconstruction term plus a WGAN term; the reconstruction term follows the DeepFill v1 framework it builds on:

* a *hole* term: L1 inside the missing region, weighted by **spatial discounting** (``gamma ** d``, where ``d`` is
  how far a hole pixel is from the known region; ``gamma = 0.9``), so that pixels far from any context, which are
  the most ambiguous, weigh less;
* a *known-region* ("ae") term: L1 outside the hole, divided by the known-area fraction;
* both terms on the coarse output (weight ``coarse_weight = 1.2``) and the refined output (weight 1), then
  weighted by ``hole_weight = 1.2`` (DeepFill's ``l1_loss_alpha``) and ``known_weight = 1.2``
  (``ae_loss_alpha``).

Spatial discounting here uses the chessboard distance to the nearest known pixel (or the image border), computed
by repeated 3x3 erosion, so it applies to any mask shape (DeepFill v1 only defines it on the rectangular hole
box: ``max(gamma ** min(i, H - i), gamma ** min(j, W - j))``). For a rectangle both give
``gamma ** min(i, j, H - 1 - i, W - 1 - j)`` except that DeepFill's formula is off by one on the bottom and right
edges; ours is symmetric.

:func:`compose` is the one place where a prediction is pasted into the known image (paper eq. 9's
``C_hat = G(C, M) * M + Y * (1 - M)``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["compose", "masked_l1", "reconstruction_loss", "spatial_discount"]


def compose(pred: Tensor, image: Tensor, mask: Tensor) -> Tensor:
    """Paste ``pred`` into the hole of ``image``: ``pred * mask + image * (1 - mask)``.

    Args:
        pred: Prediction ``(B, C, H, W)``.
        image: Known image ``(B, C, H, W)``.
        mask: ``(B, 1, H, W)``, 1 = missing.

    Returns:
        The composited image.
    """
    return pred * mask + image * (1 - mask)


def spatial_discount(mask: Tensor, gamma: float = 0.9) -> Tensor:
    """Spatial discounting weights ``gamma ** (d - 1)`` inside the hole, 0 outside.

    ``d`` is the chessboard distance from a hole pixel to the nearest known pixel; pixels outside the image count
    as known, so a hole touching the border is discounted from the border too.

    Args:
        mask: ``(B, 1, H, W)`` with 1 = missing (values > 0.5 count as missing).
        gamma: Discount factor in (0, 1].

    Returns:
        Weights of the mask's shape and dtype; 1 on the hole's outer ring, ``gamma`` one pixel further in, ...

    Raises:
        ValueError: If ``gamma`` is not in (0, 1] or the mask is not ``(B, 1, H, W)``.
    """
    if not 0.0 < gamma <= 1.0:
        raise ValueError(f"gamma must be in (0, 1], got {gamma}")
    if mask.dim() != 4 or mask.shape[1] != 1:
        raise ValueError(f"mask must have shape (B, 1, H, W), got {tuple(mask.shape)}")
    hole = (mask > 0.5).to(mask.dtype)
    depth = torch.zeros_like(hole)
    current = hole
    # Each 3x3 erosion removes the outer ring; a pixel's depth counts the erosions it survives.
    while bool(current.any()):
        current = -F.max_pool2d(-F.pad(current, (1, 1, 1, 1), value=0.0), 3, stride=1)
        depth = depth + current
    return torch.where(hole > 0, torch.as_tensor(gamma, dtype=mask.dtype, device=mask.device) ** depth, 0.0)


def masked_l1(pred: Tensor, target: Tensor, weight: Tensor, area: Tensor | None = None) -> Tensor:
    """L1 weighted per pixel: ``sum(w * |p - t|) / (C * sum(area))``, ``area`` defaulting to the weights.

    Args:
        pred: ``(B, C, H, W)``.
        target: ``(B, C, H, W)``.
        weight: ``(B, 1, H, W)`` non-negative weights.
        area: ``(B, 1, H, W)`` region whose size normalises the sum (DeepFill's hole term: the hole itself, so the
            discounted L1 is a mean over the hole box); ``None`` normalises by the weights.

    Returns:
        Scalar loss (0 if the normaliser sums to 0).
    """
    num = (weight * (pred - target).abs()).sum()
    norm = weight if area is None else area
    return num / (norm.sum() * pred.shape[1]).clamp_min(1e-8)


def reconstruction_loss(
    coarse: Tensor,
    refined: Tensor,
    target: Tensor,
    mask: Tensor,
    *,
    hole_weight: float = 1.2,
    known_weight: float = 1.2,
    coarse_weight: float = 1.2,
    gamma: float = 0.9,
) -> dict[str, Tensor]:
    """DeepFill v1 reconstruction loss on the raw (not composited) coarse and refined outputs.

    ``loss = hole_weight * (coarse_weight * hole(coarse) + hole(refined))
    + known_weight * (coarse_weight * known(coarse) + known(refined))`` where ``hole`` is the spatially discounted
    L1 in the hole, normalised by the hole area (DeepFill: ``mean(|x - y| * discount)`` over the hole box), and
    ``known`` the L1 outside the hole normalised by the known area (DeepFill's ``/ mean(1 - mask)``).

    Args:
        coarse: Coarse output ``(B, 3, H, W)``.
        refined: Refined output ``(B, 3, H, W)``.
        target: Ground truth ``(B, 3, H, W)``.
        mask: ``(B, 1, H, W)``, 1 = missing.
        hole_weight: Weight of the hole term (DeepFill ``l1_loss_alpha``).
        known_weight: Weight of the known-region term (DeepFill ``ae_loss_alpha``).
        coarse_weight: Weight of the coarse output relative to the refined one (DeepFill ``coarse_alpha``).
        gamma: Spatial discounting factor (1 disables discounting).

    Returns:
        ``{"loss", "hole", "known"}``: the weighted total and the two unweighted-by-alpha terms.
    """
    discount = spatial_discount(mask, gamma)
    known = 1.0 - mask
    hole_term = coarse_weight * masked_l1(coarse, target, discount, mask) + masked_l1(refined, target, discount, mask)
    known_term = coarse_weight * masked_l1(coarse, target, known) + masked_l1(refined, target, known)
    total = hole_weight * hole_term + known_weight * known_term
    return {"loss": total, "hole": hole_term, "known": known_term}
