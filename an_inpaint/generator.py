"""The two-stage inpainting generator: DeepFill v1 with a contextual-attention, AN or CA+AN refinement branch.

Sources: the AN paper (Wang et al., "Attentive Normalization for Conditional Image Generation", CVPR 2020,
Section 4: "a two-stage neural network framework ... The AN module is placed in the second stage"), DeepFill v1
(Yu et al., "Generative Image Inpainting with Contextual Attention", CVPR 2018, and its public TF code) and the AN
authors' public TF code (github.com/dvlab-research/AttenNorm, ``inpaint-attnorm/net/network.py``), which keeps
DeepFill's coarse stage and replaces the refinement stage's contextual-attention (CA) branch by ``conv -> AN -> ELU``
at 1/4 resolution (64x64x128 for 256x256 inputs). The CA baseline of the paper's Table 3 is DeepFill v1 itself.

* Coarse stage: 5-channel input (image with the hole blanked, a ones channel, the mask), ELU convolutions, two
  stride-2 convolutions (1/4 resolution), dilated convolutions with rates 2, 4, 8, 16, nearest upsampling,
  output clipped to [-1, 1].
* Refinement stage: the coarse result pasted into the hole; a dilated "hallucination" branch and an attention
  branch, both at 1/4 resolution, concatenated and decoded like the coarse stage.
* Attention branch: two arguments, each the layer itself (a class, or a partial with its settings; a config
  writes ``class_path`` and ``init_args``). ``long_range`` is the long-range module called with the branch's
  channel count, as in the GAN (:mod:`an_gan.networks`); ``contextual_attention`` is DeepFill's contextual
  attention (CA, ``common.layers.ContextualAttention2d``: no channel count, but the mask at call time), applied to
  the branch's own features. The paper's two models and the other AN placement:

  ==================================  ===================  =========================================================
   ``long_range``                      ``contextual_...``   branch after the encoder
  ==================================  ===================  =========================================================
   ``AttentiveNorm2d`` (default)       ``None``             ``conv -> AN -> ELU -> conv`` in place of CA ("AN": the
                                                            authors' code, the paper's model)
   ``None``                            CA                   ``conv -> ReLU -> CA -> conv`` (DeepFill v1: the CA
                                                            baseline of Table 3)
   ``AttentiveNorm2d``                 CA                   ``conv -> ReLU -> CA -> conv -> AN -> ELU`` ("CA+AN")
  ==================================  ===================  =========================================================

  The paper does not say which of the two AN placements its Table 3 used. Any other module (two ablations that
  are NOT in the paper, which compares CA and AN only, for measuring what the long-range module costs and adds):
  ``SelfAttention2d`` (SA-GAN, Zhang et al., ICML 2019) takes CA's place, ``conv -> ReLU -> SA -> conv``, at the
  branch's 1/4-resolution maps (after CA when both are given), and with neither a plain 3x3 ELU convolution
  stands in for CA, so the branch keeps its depth (DeepFill v1 without contextual attention).
* AN: the paper's eq. 5-6 by default (per-region affine ``beta``/``alpha``, the input itself normalised); the
  layer's ``affine=False`` and ``value_projection=True`` give the authors' inpainting layer (no affine, AttenNorm
  issue #4; a 1x1 value convolution is normalised).
* Encoder widths of the two refinement branches (``branch_widths``): DeepFill v1's (``"deepfill"``: hallucination
  ``c, c, 2c, 2c``, attention ``c, c, 2c, 4c``) or the AN authors' (``"authors"``: ``c, 2c, 2c, 4c`` for both).
* ``normalize_known`` (off by default; not in the paper): each sample is standardised by the per-channel mean and
  standard deviation of its known pixels, the hole is filled with the known mean (0 in those units), both stages
  predict in the standardised units and their outputs are mapped back before clipping. Inpainting then starts from
  the right colour and contrast instead of learning them, which matters most for short runs.
* ``hole_fill`` (``"blank"`` by default, DeepFill): what the coarse stage sees in the hole. ``"harmonic"`` (not in
  the paper) fills it with the harmonic interpolation of the known pixels (:func:`an_inpaint.fill.harmonic_fill`)
  and makes both stages residual inside the hole: the coarse output is that fill plus the coarse network's output
  times the mask, the refined output the pasted coarse result plus the refinement network's output times the mask
  (both last convolutions start at zero, so an untrained generator returns the harmonic fill; outside the hole the
  outputs are the known pixels, so the known-region loss term is zero). The fill is torch code on the input's
  device (no copy of the images to the host).

The forward pass returns a dict ``{"coarse", "refined", "inpainted"}`` (plus ``"offsets"`` with CA), computed once
and used by training, validation, panels, predict and the benchmark; ``inpainted`` is the refined output pasted
into the known image (paper eq. 9's ``C_hat = G(C, M) * M + Y * (1 - M)``), made by :func:`compose`, the one place
where a prediction is composited.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from an_inpaint.fill import harmonic_fill
from common.layers import AttentiveNorm2d, ContextualAttention2d, collect_layouts
from common.layers.factories import builds

__all__ = ["InpaintGenerator", "compose", "known_statistics", "pad_to_multiple"]

BranchWidths = Literal["deepfill", "authors"]
HoleFill = Literal["blank", "harmonic"]


# ----------------------------------------------------------------------------------------------------------- helpers
def compose(pred: Tensor, image: Tensor, mask: Tensor) -> Tensor:
    """Paste ``pred`` into the hole of ``image`` (both ``(B, C, H, W)``): ``pred * mask + image * (1 - mask)``, with
    ``mask`` ``(B, 1, H, W)``, 1 = missing."""
    return pred * mask + image * (1 - mask)


def known_statistics(image: Tensor, mask: Tensor, min_std: float = 0.02) -> tuple[Tensor, Tensor]:
    """Per-sample, per-channel mean and standard deviation of the known pixels, each ``(B, C, 1, 1)``.

    Args:
        image: ``(B, C, H, W)``.
        mask: ``(B, 1, H, W)``, 1 = missing.
        min_std: Floor of the standard deviation (flat known regions would otherwise blow the units up).
    """
    known = 1.0 - mask
    count = known.sum(dim=(2, 3), keepdim=True).clamp_min(1.0)
    mean = (image * known).sum(dim=(2, 3), keepdim=True) / count
    var = ((image - mean) ** 2 * known).sum(dim=(2, 3), keepdim=True) / count
    return mean, var.clamp_min(0.0).sqrt().clamp_min(min_std)


def pad_to_multiple(image: Tensor, mask: Tensor, multiple: int = 8) -> tuple[Tensor, Tensor, tuple[int, int]]:
    """Pad image (replicate) and mask (with known pixels) at the bottom/right to a multiple of ``multiple``.

    Returns:
        The padded image and mask and the original ``(H, W)``.
    """
    height, width = image.shape[-2:]
    pad_h, pad_w = (-height) % multiple, (-width) % multiple
    if pad_h or pad_w:
        image = F.pad(image, (0, pad_w, 0, pad_h), mode="replicate")
        mask = F.pad(mask, (0, pad_w, 0, pad_h), value=0.0)
    return image, mask, (height, width)


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


def _encoder(cin: int, widths: tuple[int, int, int, int]) -> nn.Sequential:
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


def _check_layer(name: str, factory: Any, expected: str) -> None:
    if factory is not None and (isinstance(factory, str) or not callable(factory)):
        raise ValueError(f"{name} must be {expected}, or None; got {factory!r}")


# --------------------------------------------------------------------------------------------------------- generator
class InpaintGenerator(nn.Module):
    """Two-stage coarse-to-fine inpainting generator (DeepFill v1) with a CA, AN or CA+AN attention branch (or,
    as ablations not in the paper, SA or none).

    Args:
        cnum: Base width (DeepFill and the paper: 32). The 1/4-resolution features have ``4 * cnum`` channels.
        long_range: The attention branch's long-range module, called with ``4 * cnum`` (module docstring table):
            ``AttentiveNorm2d`` (the paper's model, n = 16; a partial or the config's ``init_args`` set any of its
            arguments: ``num_entities``, ``temperature``, ``self_sampling``, ``affine``, ``value_projection``,
            ``implementation``, ...), ``SelfAttention2d`` (an ablation) or ``None``.
        contextual_attention: DeepFill's contextual attention, called with no argument (``ContextualAttention2d``
            or a partial of it; DeepFill: ``softmax_scale`` 10, ``rate`` 2, which needs the 1/4-resolution maps'
            height and width divisible by 2), or ``None`` (the paper's AN model).
        branch_widths: Encoder widths of the refinement branches: ``"deepfill"`` (DeepFill v1, default) or
            ``"authors"`` (the AN authors' code: ``c, 2c, 2c, 4c`` in both branches).
        normalize_known: Predict in units standardised by each sample's known pixels, the hole filled with their
            mean (see the module docstring; off in the paper's model).
        hole_fill: ``"blank"`` (DeepFill, the paper) or ``"harmonic"`` (start from the harmonic fill of the hole
            and predict residuals); see the module docstring.
        coarse_long_range: A long-range module for the coarse stage too, called with ``4 * cnum`` and placed
            after its dilated convolutions, before its decoder (``None``, the paper: AN is in the second stage only;
            ``AttentiveNorm2d`` is the ablation "AN in the coarse stage as well").

    Shape:
        - image: ``(B, 3, H, W)`` in [-1, 1], ``H`` and ``W`` divisible by 8 (the hole content is ignored).
        - mask: ``(B, 1, H, W)``, 1 = missing.
        - output: ``{"coarse", "refined", "inpainted"}``, each ``(B, 3, H, W)`` in [-1, 1] (``coarse`` and
          ``refined`` raw, ``inpainted`` composited), plus ``"offsets"`` ``(B, 2, H/8, W/8)`` with CA.
    """

    def __init__(
        self,
        cnum: int = 32,
        long_range: Callable[[int], nn.Module] | None = AttentiveNorm2d,
        contextual_attention: Callable[[], ContextualAttention2d] | None = None,
        branch_widths: BranchWidths = "deepfill",
        normalize_known: bool = False,
        hole_fill: HoleFill = "blank",
        coarse_long_range: Callable[[int], nn.Module] | None = None,
    ) -> None:
        super().__init__()
        _check_layer("long_range", long_range, "a layer class or partial called with the channel count")
        _check_layer("coarse_long_range", coarse_long_range, "a layer class or partial called with the channel count")
        _check_layer("contextual_attention", contextual_attention, "ContextualAttention2d or a partial of it")
        if branch_widths not in ("deepfill", "authors"):
            raise ValueError(f"branch_widths must be 'deepfill' or 'authors', got {branch_widths!r}")
        if hole_fill not in ("blank", "harmonic"):
            raise ValueError(f"hole_fill must be 'blank' or 'harmonic', got {hole_fill!r}")
        if cnum < 2:
            raise ValueError(f"cnum must be >= 2, got {cnum}")
        self.cnum = cnum
        self.branch_widths = branch_widths
        self.normalize_known = normalize_known
        self.hole_fill = hole_fill
        c = cnum
        # Coarse stage.
        self.coarse = nn.Sequential(
            _encoder(5, (c, 2 * c, 2 * c, 4 * c)),
            _conv(4 * c, 4 * c),
            _conv(4 * c, 4 * c),
            _dilated(4 * c),
            *([coarse_long_range(4 * c)] if coarse_long_range is not None else []),
            _decoder(4 * c, c),
        )
        # Refinement stage: hallucination branch.
        if branch_widths == "deepfill":
            hallucination_widths, attention_widths = (c, c, 2 * c, 2 * c), (c, c, 2 * c, 4 * c)
        else:
            hallucination_widths = attention_widths = (c, 2 * c, 2 * c, 4 * c)
        self.hallucination = nn.Sequential(
            _encoder(5, hallucination_widths),
            _conv(hallucination_widths[-1], 4 * c),
            _conv(4 * c, 4 * c),
            _dilated(4 * c),
        )
        # Refinement stage: attention branch.
        self.attention_encoder = nn.Sequential(_encoder(5, attention_widths), _conv(4 * c, 4 * c))
        norm = builds(long_range, AttentiveNorm2d)  # a normalisation: between a conv and its activation
        if contextual_attention is None and norm:
            # conv -> AN -> ELU -> conv in place of conv(ReLU) -> CA -> conv: the same depth as the CA branch.
            self.attention_pre = nn.Conv2d(4 * c, 4 * c, 3, padding=1)
            self.contextual = None
            self.attention_post = nn.Sequential(long_range(4 * c), nn.ELU(), _conv(4 * c, 4 * c))
        elif contextual_attention is None:
            # Ablations (not in the paper): conv(ReLU) -> SA | conv -> conv, i.e. CA's branch with CA replaced.
            self.attention_pre = nn.Sequential(nn.Conv2d(4 * c, 4 * c, 3, padding=1), nn.ReLU())
            self.contextual = None
            stand_in = long_range(4 * c) if long_range is not None else _conv(4 * c, 4 * c)
            self.attention_post = nn.Sequential(stand_in, _conv(4 * c, 4 * c))
        else:
            self.attention_pre = nn.Sequential(nn.Conv2d(4 * c, 4 * c, 3, padding=1), nn.ReLU())
            self.contextual = contextual_attention()
            if not isinstance(self.contextual, ContextualAttention2d):
                raise ValueError(f"contextual_attention must build a ContextualAttention2d, got {self.contextual!r}")
            if norm:  # CA, then conv -> AN -> ELU
                self.attention_post = nn.Sequential(nn.Conv2d(4 * c, 4 * c, 3, padding=1), long_range(4 * c), nn.ELU())
            elif long_range is not None:  # CA, then another module and the branch's conv
                self.attention_post = nn.Sequential(long_range(4 * c), _conv(4 * c, 4 * c))
            else:
                self.attention_post = _conv(4 * c, 4 * c)
        self.attention_out = _conv(4 * c, 4 * c)
        self.refine_decoder = _decoder(8 * c, c)
        if hole_fill == "harmonic":  # residual stages: an untrained generator returns the harmonic fill
            for decoder in (self.coarse[-1], self.refine_decoder):
                nn.init.zeros_(decoder[-1][0].weight)
                nn.init.zeros_(decoder[-1][0].bias)

    def layouts(self) -> dict[str, Tensor]:
        """AN layouts of the last forward pass (qualified name -> ``(B, n, H/4, W/4)``)."""
        return collect_layouts(self)

    def _check(self, image: Tensor, mask: Tensor) -> None:
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

    def forward(self, image: Tensor, mask: Tensor) -> dict[str, Tensor]:
        """Coarse then refined inpainting of ``image`` ``(B, 3, H, W)`` in [-1, 1] with ``mask`` ``(B, 1, H, W)``, 1 =
        missing; returns the dict of the class docstring's Shape section.
        """
        self._check(image, mask)
        mask = mask.to(image.dtype)
        ones = torch.ones_like(mask)
        if self.normalize_known:
            mean, std = known_statistics(image, mask)
        else:
            mean, std = torch.zeros_like(image[:, :, :1, :1]), torch.ones_like(image[:, :, :1, :1])
        units = (image - mean) / std * (1 - mask)  # the hole blanked: 0 (the known mean in standardised units)
        residual = self.hole_fill == "harmonic"
        if residual:
            units = harmonic_fill(units, mask)
        coarse = self.coarse(torch.cat([units, ones, mask], dim=1))
        coarse = ((units + coarse * mask if residual else coarse) * std + mean).clamp(-1, 1)
        pasted = compose(coarse, image, mask)  # the coarse result stays in the hole
        pasted_units = (pasted - mean) / std
        x = torch.cat([pasted_units, ones, mask], dim=1)
        hallucinated = self.hallucination(x)
        att = self.attention_pre(self.attention_encoder(x))
        if self.contextual is not None:
            att = self.contextual(att, att, mask)
        att = self.attention_out(self.attention_post(att))
        refined = self.refine_decoder(torch.cat([hallucinated, att], dim=1))
        refined = ((pasted_units + refined * mask if residual else refined) * std + mean).clamp(-1, 1)
        out = {"coarse": coarse, "refined": refined, "inpainted": compose(refined, image, mask)}
        if self.contextual is not None:
            out["offsets"] = self.contextual.last_offsets
        return out
