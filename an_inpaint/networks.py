"""Networks of the generative inpainting task: the DeepFill v1 two-stage generator with a choice of attention
branch (contextual attention, Attentive Normalization or both) and WGAN critics.

Sources: the AN paper (Wang et al., "Attentive Normalization for Conditional Image Generation", CVPR 2020,
Section 4: "a two-stage neural network framework ... The AN module is placed in the second stage") and DeepFill v1
(Yu et al., "Generative Image Inpainting with Contextual Attention", CVPR 2018), whose layer list is described in
``shared/reference/inpainting-anchors.md`` (section 1a). The paper authors' released code keeps DeepFill's coarse
stage and replaces the refinement stage's contextual-attention (CA) branch by ``conv -> AN -> ELU`` at 1/4
resolution (64x64x128 for 256x256 inputs); the CA baseline of the paper's Table 3 is DeepFill v1 itself.

* Coarse stage: 5-channel input (image with the hole zeroed, a ones channel, the mask), ELU convolutions, two
  stride-2 convolutions (1/4 resolution), dilated convolutions with rates 2, 4, 8, 16, nearest upsampling,
  output clipped to [-1, 1].
* Refinement stage: the coarse result pasted into the hole; a dilated "hallucination" branch and an attention
  branch, both at 1/4 resolution, concatenated and decoded like the coarse stage.
* Attention branch (``attention``): ``"contextual"`` (CA on the branch's own features with the mask, DeepFill),
  ``"an"`` (``conv -> AttentiveNorm2d -> ELU`` in place of CA, the authors' code) or ``"contextual+an"`` (CA, then
  ``conv -> AN -> ELU``).
* AN is used without affine de-normalisation by default (``an_affine=False``): the authors confirm their inpainting
  AN has none (AttenNorm issue #4).
* Critics (WGAN, no normalisation, LeakyReLU 0.2): four 5x5 stride-2 convolutions and a linear layer.
  :class:`GlobalCritic` sees the whole image; :class:`LocalCritic` the hole's bounding box resized to a fixed size
  (rectangular masks, DeepFill v1); :class:`MaskedPatchCritic` averages a patch critic's score map over the
  (downsampled) hole, for free-form masks. All critics take ``(image, mask)``.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from common.layers import ContextualAttention2d, collect_layouts, create_norm

__all__ = ["GlobalCritic", "InpaintGenerator", "LocalCritic", "MaskedPatchCritic", "mask_bounding_boxes"]

Attention = Literal["contextual", "an", "contextual+an"]


# ----------------------------------------------------------------------------------------------------------- helpers
def _conv(cin: int, cout: int, k: int = 3, stride: int = 1, rate: int = 1, act: bool = True) -> nn.Sequential:
    """Zero-padded "same" convolution followed by ELU (DeepFill's ``gen_conv``)."""
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, k, stride=stride, padding=rate * (k - 1) // 2, dilation=rate)]
    if act:
        layers.append(nn.ELU())
    return nn.Sequential(*layers)


class _Upsample(nn.Sequential):
    """Nearest-neighbour x2 upsampling then a 3x3 ELU convolution (DeepFill's ``gen_deconv``)."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__(nn.Upsample(scale_factor=2, mode="nearest"), *_conv(cin, cout))


def _encoder(cin: int, cnum: int, widths: tuple[int, int, int, int]) -> nn.Sequential:
    """5x5 conv, stride-2 conv, conv, stride-2 conv (-> 1/4 resolution)."""
    w1, w2, w3, w4 = widths
    return nn.Sequential(_conv(cin, w1, 5), _conv(w1, w2, 3, 2), _conv(w2, w3), _conv(w3, w4, 3, 2))


def _dilated(ch: int) -> nn.Sequential:
    return nn.Sequential(*[_conv(ch, ch, 3, rate=r) for r in (2, 4, 8, 16)])


def _decoder(cin: int, cnum: int) -> nn.Sequential:
    """Two convs at 1/4, upsample, conv, upsample, conv to cnum/2, 3-channel output conv (no activation)."""
    return nn.Sequential(
        _conv(cin, 4 * cnum),
        _conv(4 * cnum, 4 * cnum),
        _Upsample(4 * cnum, 2 * cnum),
        _conv(2 * cnum, 2 * cnum),
        _Upsample(2 * cnum, cnum),
        _conv(cnum, max(cnum // 2, 1)),
        _conv(max(cnum // 2, 1), 3, act=False),
    )


def mask_bounding_boxes(mask: Tensor) -> list[tuple[int, int, int, int]]:
    """``(top, left, height, width)`` of each sample's hole (the whole image when the mask is empty).

    Args:
        mask: ``(B, 1, H, W)``, 1 = missing.

    Returns:
        One box per sample.
    """
    boxes = []
    height, width = mask.shape[-2:]
    hole = mask[:, 0] > 0.5
    rows, cols = hole.any(dim=2), hole.any(dim=1)
    for r, c in zip(rows, cols, strict=True):
        ry, cx = torch.nonzero(r).flatten(), torch.nonzero(c).flatten()
        if ry.numel() == 0:
            boxes.append((0, 0, height, width))
        else:
            top, left = int(ry[0]), int(cx[0])
            boxes.append((top, left, int(ry[-1]) - top + 1, int(cx[-1]) - left + 1))
    return boxes


# --------------------------------------------------------------------------------------------------------- generator
class InpaintGenerator(nn.Module):
    """Two-stage coarse-to-fine inpainting generator (DeepFill v1) with a CA, AN or CA+AN attention branch.

    Args:
        cnum: Base width (DeepFill and the paper: 32). The 1/4-resolution features have ``4 * cnum`` channels.
        attention: ``"contextual"`` (the CA baseline), ``"an"`` (the paper's model: AN replaces CA, as in the
            authors' code) or ``"contextual+an"`` (both, CA first).
        num_entities: AN's number of semantic entities ``n`` (paper: 16).
        self_sampling: AN's self-sampling regularisation during training (paper: on).
        an_affine: AN's learned per-region affine de-normalisation. Off by default (authors' inpainting code).
        an_temperature: AN's layout softmax temperature ``tau``.
        ca_softmax_scale: Softmax scale of contextual attention (DeepFill: 10).

    Shape:
        - image: ``(B, 3, H, W)`` in [-1, 1], ``H`` and ``W`` divisible by 8 (the hole content is ignored).
        - mask: ``(B, 1, H, W)``, 1 = missing.
        - output: ``(coarse, refined)``, both ``(B, 3, H, W)`` in [-1, 1] (raw, not composited).

    Attributes:
        last_offsets: CA's argmax offsets of the last forward pass (``None`` without CA).
    """

    def __init__(
        self,
        cnum: int = 32,
        attention: Attention = "an",
        num_entities: int = 16,
        self_sampling: bool = True,
        an_affine: bool = False,
        an_temperature: float = 0.1,
        ca_softmax_scale: float = 10.0,
    ) -> None:
        super().__init__()
        if attention not in ("contextual", "an", "contextual+an"):
            raise ValueError(f"attention must be 'contextual', 'an' or 'contextual+an', got {attention!r}")
        if cnum < 2:
            raise ValueError(f"cnum must be >= 2, got {cnum}")
        self.cnum = cnum
        self.attention = attention
        c = cnum
        # Coarse stage.
        self.coarse = nn.Sequential(
            _encoder(5, c, (c, 2 * c, 2 * c, 4 * c)),
            _conv(4 * c, 4 * c),
            _conv(4 * c, 4 * c),
            _dilated(4 * c),
            _decoder(4 * c, c),
        )
        # Refinement stage: hallucination branch.
        self.hallucination = nn.Sequential(
            _encoder(5, c, (c, c, 2 * c, 2 * c)),
            _conv(2 * c, 4 * c),
            _conv(4 * c, 4 * c),
            _dilated(4 * c),
        )
        # Refinement stage: attention branch.
        self.attention_encoder = nn.Sequential(_encoder(5, c, (c, c, 2 * c, 4 * c)), _conv(4 * c, 4 * c))
        an_kwargs = {
            "num_entities": num_entities,
            "self_sampling": self_sampling,
            "affine": an_affine,
            "temperature": an_temperature,
        }
        if attention == "an":
            # conv -> AN -> ELU -> conv in place of conv(ReLU) -> CA -> conv: the same depth as the CA branch.
            self.attention_pre = nn.Conv2d(4 * c, 4 * c, 3, padding=1)
            self.contextual = None
            self.attention_post = nn.Sequential(create_norm("an", 4 * c, **an_kwargs), nn.ELU(), _conv(4 * c, 4 * c))
        else:
            self.attention_pre = nn.Sequential(nn.Conv2d(4 * c, 4 * c, 3, padding=1), nn.ReLU())
            self.contextual = ContextualAttention2d(rate=2, softmax_scale=ca_softmax_scale)
            if attention == "contextual+an":
                self.attention_post = nn.Sequential(
                    nn.Conv2d(4 * c, 4 * c, 3, padding=1), create_norm("an", 4 * c, **an_kwargs), nn.ELU()
                )
            else:
                self.attention_post = _conv(4 * c, 4 * c)
        self.attention_out = _conv(4 * c, 4 * c)
        self.refine_decoder = _decoder(8 * c, c)

    @property
    def last_offsets(self) -> Tensor | None:
        return None if self.contextual is None else self.contextual.last_offsets

    def layouts(self) -> dict[str, Tensor]:
        """AN layouts of the last forward pass (qualified name -> ``(B, n, H/4, W/4)``)."""
        return collect_layouts(self)

    @staticmethod
    def _inputs(image: Tensor, mask: Tensor) -> Tensor:
        ones = torch.ones_like(mask)
        return torch.cat([image * (1 - mask), ones, mask], dim=1)

    def forward(self, image: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        if image.dim() != 4 or image.shape[1] != 3:
            raise ValueError(f"image must have shape (B, 3, H, W), got {tuple(image.shape)}")
        if mask.shape != (image.shape[0], 1, *image.shape[-2:]):
            raise ValueError(
                f"mask must have shape {(image.shape[0], 1, *image.shape[-2:])} to match the image, got "
                f"{tuple(mask.shape)}"
            )
        height, width = image.shape[-2:]
        if height % 8 or width % 8:
            raise ValueError(f"InpaintGenerator needs a height and width divisible by 8, got {height}x{width}")
        mask = mask.to(image.dtype)
        coarse = self.coarse(self._inputs(image, mask)).clamp(-1, 1)
        pasted = coarse * mask + image * (1 - mask)
        x = torch.cat([pasted, torch.ones_like(mask), mask], dim=1)  # the coarse result stays in the hole
        hallucinated = self.hallucination(x)
        att = self.attention_pre(self.attention_encoder(x))
        if self.contextual is not None:
            att = self.contextual(att, att, mask)
        att = self.attention_out(self.attention_post(att))
        refined = self.refine_decoder(torch.cat([hallucinated, att], dim=1)).clamp(-1, 1)
        return coarse, refined


# ----------------------------------------------------------------------------------------------------------- critics
def _critic_convs(cin: int, widths: tuple[int, ...]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for w in widths:
        layers += [nn.Conv2d(cin, w, 5, stride=2, padding=2), nn.LeakyReLU(0.2)]
        cin = w
    return nn.Sequential(*layers)


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
        if tuple(image.shape[-2:]) != (self.input_size, self.input_size):
            raise ValueError(
                f"GlobalCritic(input_size={self.input_size}) got {image.shape[-2]}x{image.shape[-1]} images; "
                "set its input_size to the data resolution"
            )
        return self.linear(self.features(image).flatten(1)).squeeze(1)


class LocalCritic(nn.Module):
    """WGAN critic of the hole's bounding box, cropped per sample and resized (bilinear) to ``input_size``.

    DeepFill v1 crops the 128x128 box around the rectangular hole of a 256x256 image; widths cnum, 2cnum,
    4cnum, 8cnum. For rectangular masks.

    Args:
        input_size: Size the crops are resized to (DeepFill: 128 = half the image size).
        cnum: Base width (DeepFill: 64).

    Shape:
        - image: ``(B, 3, H, W)``; mask: ``(B, 1, H, W)`` (1 = missing).
        - output: ``(B,)``.
    """

    def __init__(self, input_size: int = 128, cnum: int = 64) -> None:
        super().__init__()
        if input_size % 16:
            raise ValueError(f"input_size must be divisible by 16, got {input_size}")
        self.input_size = input_size
        self.features = _critic_convs(3, (cnum, 2 * cnum, 4 * cnum, 8 * cnum))
        self.linear = nn.Linear(8 * cnum * (input_size // 16) ** 2, 1)

    def crop(self, image: Tensor, mask: Tensor) -> Tensor:
        """The hole's bounding box of each sample, resized to ``input_size`` (differentiable twice)."""
        crops = []
        for i, (top, left, h, w) in enumerate(mask_bounding_boxes(mask)):
            patch = image[i : i + 1, :, top : top + h, left : left + w]
            if (h, w) != (self.input_size, self.input_size):
                patch = F.interpolate(patch, size=(self.input_size, self.input_size), mode="bilinear")
            crops.append(patch)
        return torch.cat(crops)

    def forward(self, image: Tensor, mask: Tensor) -> Tensor:
        if mask is None:
            raise ValueError("LocalCritic needs the mask to locate the hole")
        return self.linear(self.features(self.crop(image, mask)).flatten(1)).squeeze(1)


class MaskedPatchCritic(nn.Module):
    """Patch critic whose score map is averaged over the hole (for free-form masks).

    Four 5x5 stride-2 convolutions (widths cnum, 2cnum, 4cnum, 4cnum) and a 1x1 convolution give a score per
    1/16-resolution patch; the output is the mean of the scores weighted by the mask downsampled (average pooling)
    to that resolution, as the AN authors' stroke-mask critic pools its output with the mask.

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

    def forward(self, image: Tensor, mask: Tensor) -> Tensor:
        if mask is None:
            raise ValueError("MaskedPatchCritic needs the mask to weight its patch scores")
        scores = self.score(self.features(image))
        weights = F.adaptive_avg_pool2d(mask.to(scores.dtype), scores.shape[-2:])
        return (scores * weights).flatten(1).sum(1) / weights.flatten(1).sum(1).clamp_min(1e-6)
