"""Loss objects of the inpainting GAN: DeepFill v1's reconstruction loss and the WGAN-GP adversarial loss.

The AN paper (Wang et al., CVPR 2020, Section 4, eq. 9-10) trains the generator with an L1 reconstruction term
plus ``lambda_adv`` times a WGAN term, and the critic with WGAN-GP (``lambda_gp = 10``); the reconstruction term
follows the DeepFill v1 framework it builds on (Yu et al., CVPR 2018, and its public TF code):

* a *hole* term with **spatial discounting** (``gamma = 0.9``): pixels far from any context, the most ambiguous,
  weigh less. Two forms (``ReconstructionLoss(discount=...)``):

  - ``"deepfill"`` (DeepFill v1 exactly, the default): the L1 of the raw output over DeepFill's fixed box around
    the hole (128x128 at 256x256, :func:`common.data.masks.fixed_boxes`), **including the 0-16 px known strip the
    box holds around the hole**, weighted by ``max(gamma ** min(i, H - i), gamma ** min(j, W - j))`` with ``i, j``
    counted from the **box edge**, averaged over the box (``mean`` over batch, box pixels and channels). For
    rectangular holes only.
  - ``"hole"`` (for any hole shape, e.g. free-form): weight ``gamma ** d`` with ``d`` the chessboard distance to
    the nearest known pixel (:func:`spatial_discount`), summed over the hole and divided by the hole area. This is
    *not* DeepFill's form: at the default shrink it weighs hole pixels near the centre of a 128x128 hole up to
    ~10x more than DeepFill (``0.9 ** 16`` vs ``0.9 ** 38``), and leaves the known strip out.
* a *known-region* ("ae") term: L1 outside the hole divided by the known-area fraction (DeepFill's
  ``reduce_mean(|x - y| (1 - m)) / reduce_mean(1 - m)``);
* both terms on the coarse output (weight ``coarse_weight = 1.2``) and the refined output (weight 1), then
  weighted by ``hole_weight = 1.2`` (DeepFill's ``l1_loss_alpha``) and ``known_weight = 1.2`` (``ae_loss_alpha``);
* optionally (``ssim_weight > 0``; 0 in DeepFill and the paper) ``ssim_weight * (1 - SSIM)`` of the composited
  result (:func:`common.metrics.ssim.ssim_map`, Gaussian 11x11, sigma 1.5, on [0, 1] images), a structure term
  for short runs judged by SSIM.

Every loss object is called on the generator's output dict and the batch and returns ``(loss, logs)``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from common.data.masks import fixed_boxes
from common.losses.wgan_gp import gradient_penalty, wgan_d_loss, wgan_g_loss
from common.metrics.ssim import reduce_ssim_map, ssim_map

__all__ = ["ReconstructionLoss", "WGANGPLoss", "deepfill_discount", "masked_l1", "spatial_discount"]

Discount = Literal["deepfill", "hole"]


def spatial_discount(mask: Tensor, gamma: float = 0.9) -> Tensor:
    """Hole-based spatial discounting weights ``gamma ** (d - 1)`` inside the hole, 0 outside.

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
    hole = mask > 0.5
    depth = torch.zeros(mask.shape, dtype=torch.int32, device=mask.device)
    current = hole
    # Each 3x3 erosion removes the outer ring; a pixel's depth counts the erosions it survives.
    while bool(current.any()):
        current = _erode(current)
        depth += current
    weights = torch.as_tensor(gamma, dtype=mask.dtype, device=mask.device) ** depth.to(mask.dtype)
    return torch.where(hole, weights, 0.0)


def _erode(hole: Tensor) -> Tensor:
    """3x3 binary erosion of a boolean ``(B, 1, H, W)`` map, pixels outside the image counting as known (False);
    separable (rows, then columns) with logical ands, much cheaper on CPU than a min-pool."""
    padded = F.pad(hole, (1, 1, 1, 1), value=False)
    rows = padded[..., :, :-2] & padded[..., :, 1:-1] & padded[..., :, 2:]
    return rows[..., :-2, :] & rows[..., 1:-1, :] & rows[..., 2:, :]


def deepfill_discount(height: int, width: int, gamma: float = 0.9, device=None, dtype=None) -> Tensor:
    """DeepFill v1's ``spatial_discounting_mask``: ``max(gamma ** min(i, H - i), gamma ** min(j, W - j))``.

    ``i`` in ``[0, H)`` and ``j`` in ``[0, W)`` index the fixed box, so the weights are 1 on the box's top and left
    edges and ``gamma`` on its bottom and right edges (DeepFill's formula as written).

    Returns:
        ``(height, width)`` weights.
    """
    if not 0.0 < gamma <= 1.0:
        raise ValueError(f"gamma must be in (0, 1], got {gamma}")
    i = torch.arange(height, device=device, dtype=torch.float64)
    j = torch.arange(width, device=device, dtype=torch.float64)
    rows = gamma ** torch.minimum(i, height - i)
    cols = gamma ** torch.minimum(j, width - j)
    return torch.maximum(rows[:, None], cols[None, :]).to(dtype or torch.get_default_dtype())


def masked_l1(pred: Tensor, target: Tensor, weight: Tensor, area: Tensor | None = None) -> Tensor:
    """L1 weighted per pixel: ``sum(w * |p - t|) / (C * sum(area))``, ``area`` defaulting to the weights.

    Args:
        pred: ``(B, C, H, W)``.
        target: ``(B, C, H, W)``.
        weight: ``(B, 1, H, W)`` non-negative weights.
        area: ``(B, 1, H, W)`` region whose size normalises the sum; ``None`` normalises by the weights.

    Returns:
        Scalar loss (0 if the normaliser sums to 0).
    """
    num = (weight * (pred - target).abs()).sum()
    norm = weight if area is None else area
    return num / (norm.sum() * pred.shape[1]).clamp_min(1e-8)


class ReconstructionLoss:
    """DeepFill v1's reconstruction loss on the raw (not composited) coarse and refined outputs.

    ``loss = hole_weight * (coarse_weight * hole(coarse) + hole(refined))
    + known_weight * (coarse_weight * known(coarse) + known(refined))`` (see the module docstring for the two
    ``hole`` forms).

    Args:
        hole_weight: Weight of the hole term (DeepFill ``l1_loss_alpha`` 1.2).
        known_weight: Weight of the known-region term (DeepFill ``ae_loss_alpha`` 1.2).
        coarse_weight: Weight of the coarse output relative to the refined one (DeepFill ``coarse_alpha`` 1.2).
        gamma: Spatial discounting factor (DeepFill 0.9; 1 disables discounting).
        discount: ``"deepfill"`` (DeepFill's fixed box, rectangular holes) or ``"hole"`` (any hole shape).
        box_size: Side of DeepFill's box as a fraction of the image side (DeepFill: 128 / 256).
        ssim_weight: Weight of ``1 - SSIM`` of the composited output (default 0: DeepFill's loss).
    """

    def __init__(
        self,
        hole_weight: float = 1.2,
        known_weight: float = 1.2,
        coarse_weight: float = 1.2,
        gamma: float = 0.9,
        discount: Discount = "deepfill",
        box_size: float = 0.5,
        ssim_weight: float = 0.0,
    ) -> None:
        if discount not in ("deepfill", "hole"):
            raise ValueError(f"discount must be 'deepfill' or 'hole', got {discount!r}")
        if not 0.0 < gamma <= 1.0:
            raise ValueError(f"gamma must be in (0, 1], got {gamma}")
        if not 0.0 < box_size <= 1.0:
            raise ValueError(f"box_size must be in (0, 1], got {box_size}")
        if ssim_weight < 0:
            raise ValueError(f"ssim_weight must be >= 0, got {ssim_weight}")
        self.hole_weight = hole_weight
        self.known_weight = known_weight
        self.coarse_weight = coarse_weight
        self.gamma = gamma
        self.discount = discount
        self.box_size = box_size
        self.ssim_weight = ssim_weight

    def _hole_term(self, pred: Tensor, target: Tensor, mask: Tensor, weights: Tensor | None) -> Tensor:
        if self.discount == "hole":
            return masked_l1(pred, target, weights, mask)
        height, width = mask.shape[-2:]
        bh, bw = round(self.box_size * height), round(self.box_size * width)
        corners = fixed_boxes(mask, bh, bw).tolist()
        weights = deepfill_discount(bh, bw, self.gamma, device=pred.device, dtype=pred.dtype)
        boxes = [(slice(t, t + bh), slice(c, c + bw)) for t, c in corners]
        diffs = torch.stack([(pred[i, :, r, c] - target[i, :, r, c]).abs() for i, (r, c) in enumerate(boxes)])
        return (diffs * weights).mean()

    def __call__(self, out: Mapping[str, Tensor], batch: Mapping[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        """``(loss, {"hole", "known"[, "ssim"]})`` of the generator output ``out`` (``coarse``, ``refined``, and
        ``inpainted`` for the SSIM term) for ``batch`` (``image``, ``mask``); the logged L1 terms are before
        ``hole_weight`` / ``known_weight``. Without ``refined`` in ``out``, the coarse terms only (and no SSIM term:
        the authors' coarse pretraining, ``PhaseSchedule(phase1_stages="coarse")``)."""
        target, mask = batch["image"], batch["mask"].to(batch["image"].dtype)
        coarse, refined = out["coarse"], out.get("refined")
        weights = spatial_discount(mask, self.gamma) if self.discount == "hole" else None  # once for both stages
        hole = self.coarse_weight * self._hole_term(coarse, target, mask, weights)
        known = 1.0 - mask
        known_term = self.coarse_weight * masked_l1(coarse, target, known)
        if refined is not None:
            hole = hole + self._hole_term(refined, target, mask, weights)
            known_term = known_term + masked_l1(refined, target, known)
        loss = self.hole_weight * hole + self.known_weight * known_term
        logs = {"hole": hole.detach(), "known": known_term.detach()}
        if self.ssim_weight and refined is not None:
            unit = ((out["inpainted"] + 1) / 2, (target + 1) / 2)
            ssim = reduce_ssim_map(ssim_map(*unit, double=False)).mean()
            loss = loss + self.ssim_weight * (1 - ssim)
            logs["ssim"] = ssim.detach()
        return loss, logs


class WGANGPLoss:
    """WGAN-GP of a global and a local critic (paper eq. 9-10; DeepFill v1's mask-weighted gradient penalty).

    Critics are called as ``critic(image, mask) -> (B,)`` and given as a mapping ``{"global": ..., "local": ...}``.

    Args:
        lambda_adv: Weight of the generator's adversarial term (paper Section 5.1: 1e-3 in phase 2).
        lambda_gp: Gradient-penalty weight (paper eq. 10: 10).
        global_weight: Weight of the global critic's term relative to the local one (DeepFill: 1).
        masked_penalty: Multiply the critic's input gradient by the hole mask before its norm (DeepFill v1).
    """

    def __init__(
        self, lambda_adv: float = 1e-3, lambda_gp: float = 10.0, global_weight: float = 1.0, masked_penalty: bool = True
    ) -> None:
        if lambda_adv < 0 or lambda_gp < 0:
            raise ValueError(f"lambda_adv and lambda_gp must be >= 0, got {lambda_adv} and {lambda_gp}")
        self.lambda_adv = lambda_adv
        self.lambda_gp = lambda_gp
        self.global_weight = global_weight
        self.masked_penalty = masked_penalty

    def _weights(self, critics: Mapping[str, nn.Module]) -> dict[str, float]:
        return {name: self.global_weight if name == "global" else 1.0 for name in critics}

    def critic_loss(
        self, critics: Mapping[str, nn.Module], real: Tensor, fake: Tensor, mask: Tensor
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """Scalar ``sum_k w_k (E[D_k(fake)] - E[D_k(real)] + lambda_gp * GP_k)``; logs ``d_wgan``, ``gp`` (unweighted).

        ``real`` / ``fake``: ``(B, 3, H, W)`` in [-1, 1] (``fake`` is detached here); ``mask``: ``(B, 1, H, W)``, 1 =
        missing; ``critics``: ``{name: critic}``, each mapping ``(image, mask)`` to scores ``(B,)``.
        """
        fake = fake.detach()
        penalty_mask = mask if self.masked_penalty else None
        wgan, gp = 0.0, 0.0
        for name, weight in self._weights(critics).items():
            critic = critics[name]
            wgan = wgan + weight * wgan_d_loss(critic(real, mask), critic(fake, mask))
            gp = gp + weight * gradient_penalty(lambda x, c=critic: c(x, mask), real, fake, mask=penalty_mask)
        loss = wgan + self.lambda_gp * gp
        return loss, {"d_wgan": wgan.detach(), "gp": gp.detach()}

    def generator_loss(
        self, critics: Mapping[str, nn.Module], fake: Tensor, mask: Tensor
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """``lambda_adv * sum_k w_k (-E[D_k(fake)])`` (scalar) for ``fake`` ``(B, 3, H, W)`` in [-1, 1]; logs the
        unweighted ``adv``."""
        adv = sum(weight * wgan_g_loss(critics[name](fake, mask)) for name, weight in self._weights(critics).items())
        return self.lambda_adv * adv, {"adv": adv.detach()}
