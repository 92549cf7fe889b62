"""WGAN critics of the inpainting task (DeepFill v1, Yu et al., CVPR 2018; AN paper, Wang et al., CVPR 2020, eq. 10).

No normalisation, LeakyReLU 0.2, 5x5 stride-2 convolutions (DeepFill's ``dis_conv``). Every critic takes
``(image, mask)`` and returns one score per sample, ``(B,)``:

* :class:`GlobalCritic`: the whole image, four convolutions and a linear layer.
* :class:`LocalCritic`: the hole's neighbourhood. ``crop="box"`` (DeepFill v1, the default) takes the fixed
  ``input_size`` box around the hole (128x128 at 256x256: the hole plus 0-16 px of known context), exactly the
  ``local_patch(batch, bbox)`` of DeepFill for its rectangular holes; ``crop="resize"`` takes the hole's tight
  bounding box resized (bilinear) to ``input_size`` (any hole size).
* :class:`MaskedPatchCritic`: a patch critic whose score map is averaged over the hole, for free-form masks (the AN
  authors' stroke-mask critic pools its score map with the mask the same way).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from common.data.masks import fixed_boxes, mask_bboxes

__all__ = ["GlobalCritic", "LocalCritic", "MaskedPatchCritic"]


def _critic_convs(cin: int, widths: tuple[int, ...]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for w in widths:
        layers += [nn.Conv2d(cin, w, 5, stride=2, padding=2), nn.LeakyReLU(0.2)]
        cin = w
    return nn.Sequential(*layers)


def _need_mask(name: str, mask: Tensor | None) -> Tensor:
    if mask is None:
        raise ValueError(f"{name} needs the mask to locate the hole")
    return mask


class GlobalCritic(nn.Module):
    """WGAN critic of the whole image (DeepFill v1: widths cnum, 2cnum, 4cnum, 4cnum; 5x5 stride 2; linear).

    Args:
        input_size: Image height and width it accepts (the data resolution; 256 for Paris StreetView).
        cnum: Base width (DeepFill: 64).

    Shape:
        - image: ``(B, 3, input_size, input_size)``; mask: ignored (accepted for a uniform critic interface).
        - output: ``(B,)``.
    """

    def __init__(self, input_size: int = 256, cnum: int = 64) -> None:
        super().__init__()
        if input_size % 16:
            raise ValueError(f"input_size must be divisible by 16, got {input_size}")
        self.input_size = input_size
        self.features = _critic_convs(3, (cnum, 2 * cnum, 4 * cnum, 4 * cnum))
        self.linear = nn.Linear(4 * cnum * (input_size // 16) ** 2, 1)

    def forward(self, image: Tensor, mask: Tensor | None = None) -> Tensor:
        """Scores ``(B,)`` for images ``(B, 3, input_size, input_size)`` in [-1, 1]; ``mask`` is ignored."""
        if tuple(image.shape[-2:]) != (self.input_size, self.input_size):
            raise ValueError(
                f"GlobalCritic(input_size={self.input_size}) got {image.shape[-2]}x{image.shape[-1]} images; "
                "set its input_size to the data resolution"
            )
        return self.linear(self.features(image).flatten(1)).squeeze(1)


class LocalCritic(nn.Module):
    """WGAN critic of the hole's neighbourhood (DeepFill v1: widths cnum, 2cnum, 4cnum, 8cnum; linear).

    Args:
        input_size: Side of the crop it scores (DeepFill: 128 = half the image side).
        cnum: Base width (DeepFill: 64).
        crop: ``"box"`` (DeepFill: the fixed ``input_size`` box centred on the hole, moved inside the image; a hole
            larger than the box is an error) or ``"resize"`` (the hole's tight bounding box resized to
            ``input_size``).

    Shape:
        - image: ``(B, 3, H, W)``; mask: ``(B, 1, H, W)`` (1 = missing).
        - output: ``(B,)``.
    """

    def __init__(self, input_size: int = 128, cnum: int = 64, crop: Literal["box", "resize"] = "box") -> None:
        super().__init__()
        if input_size % 16:
            raise ValueError(f"input_size must be divisible by 16, got {input_size}")
        if crop not in ("box", "resize"):
            raise ValueError(f"crop must be 'box' or 'resize', got {crop!r}")
        self.input_size = input_size
        self.crop_mode = crop
        self.features = _critic_convs(3, (cnum, 2 * cnum, 4 * cnum, 8 * cnum))
        self.linear = nn.Linear(8 * cnum * (input_size // 16) ** 2, 1)

    def crop(self, image: Tensor, mask: Tensor) -> Tensor:
        """The crops the critic scores, ``(B, 3, input_size, input_size)`` (differentiable twice)."""
        size = self.input_size
        if self.crop_mode == "box":
            corners = fixed_boxes(mask, size, size).tolist()
            return torch.stack([image[i, :, t : t + size, c : c + size] for i, (t, c) in enumerate(corners)])
        crops = []
        for i, (top, left, h, w) in enumerate(mask_bboxes(mask).tolist()):
            patch = image[i : i + 1, :, top : top + h, left : left + w]
            if (h, w) != (size, size):
                patch = F.interpolate(patch, size=(size, size), mode="bilinear")
            crops.append(patch)
        return torch.cat(crops)

    def forward(self, image: Tensor, mask: Tensor) -> Tensor:
        """Scores ``(B,)`` of the crop around each hole; ``image`` ``(B, 3, H, W)`` in [-1, 1], ``mask``
        ``(B, 1, H, W)``, 1 = missing.
        """
        mask = _need_mask("LocalCritic", mask)
        return self.linear(self.features(self.crop(image, mask)).flatten(1)).squeeze(1)


class MaskedPatchCritic(nn.Module):
    """Patch critic whose score map is averaged over the hole (for free-form masks).

    Four 5x5 stride-2 convolutions (widths cnum, 2cnum, 4cnum, 4cnum) and a 1x1 convolution give a score per
    1/16-resolution patch ``s``; the output is ``sum(s * w) / sum(w)`` with ``w`` the mask average-pooled to that
    resolution (the fraction of each patch's pixels that are missing).

    Args:
        cnum: Base width.

    Shape:
        - image: ``(B, 3, H, W)``, ``H`` and ``W`` divisible by 16; mask: ``(B, 1, H, W)``.
        - output: ``(B,)``.
    """

    def __init__(self, cnum: int = 64) -> None:
        super().__init__()
        self.features = _critic_convs(3, (cnum, 2 * cnum, 4 * cnum, 4 * cnum))
        self.score = nn.Conv2d(4 * cnum, 1, 1)

    def score_map(self, image: Tensor) -> Tensor:
        """Per-patch scores ``(B, 1, H/16, W/16)``."""
        return self.score(self.features(image))

    def forward(self, image: Tensor, mask: Tensor) -> Tensor:
        """Scores ``(B,)``: the patch score map averaged with the hole's coverage of each patch as weight; ``image``
        ``(B, 3, H, W)`` in [-1, 1], ``mask`` ``(B, 1, H, W)``, 1 = missing.
        """
        mask = _need_mask("MaskedPatchCritic", mask)
        scores = self.score_map(image)
        weights = F.adaptive_avg_pool2d(mask.to(scores.dtype), scores.shape[-2:])
        return (scores * weights).flatten(1).sum(1) / weights.flatten(1).sum(1).clamp_min(1e-6)
