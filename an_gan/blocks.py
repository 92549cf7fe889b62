"""Residual blocks of the class-conditional generator and the projection discriminator.

The blocks of SN-GAN with a projection discriminator (Miyato & Koyama, "cGANs with Projection Discriminator", ICLR
2018; official code ``pfnet-research/sngan_projection``, ``gen_models/resblocks.py`` and ``dis_models/resblocks.py``)
and SA-GAN (Zhang et al., ICML 2019; ``brain-research/self-attention-gan``, ``generator.py`` / ``discriminator.py``),
with the Attentive Normalization slot of Wang et al., "Attentive Normalization for Conditional Image Generation",
CVPR 2020, Section 4 and Figure 6 ("AN is placed between the convolutional layer and the activation layer").

Generator block (:class:`GBlock`, ``x`` at ``s x s`` -> ``2s x 2s``)::

    h = cBN1(x, y) -> ReLU -> nearest up x2 -> SN-Conv3x3 (conv1)
    an_placement="replace_cbn":   h = ReLU(AN(h))              # AN takes the place of cBN2
    an_placement="before_cbn":    h = ReLU(cBN2(AN(h), y))     # AN in front of cBN2
    no AN:                        h = ReLU(cBN2(h, y))
    h = SN-Conv3x3 (conv2);  out = h + SN-Conv1x1(nearest up x2 (x))

Which reading of the paper is the default, and why, is argued in :class:`GBlock`.

Discriminator block (:class:`DBlock`)::

    h = [ReLU](x) -> SN-Conv3x3 (conv1, to `hidden` channels) -> [AN] -> ReLU -> SN-Conv3x3 (conv2) -> [avgpool 2x2]
    out = h + shortcut(x)        # shortcut: SN-Conv1x1 (+ avgpool) when the shape changes, else identity

``hidden`` is the block's output width ("wide", SA-GAN's ``discriminator.py`` and BigGAN-PyTorch's ``D_wide``) or its
input width (SN-GAN projection's Chainer ``dis_models/resblocks.py``, whose ``hidden_channels`` defaults to
``in_channels``). The first block is SN-GAN's "optimized" block: no pre-activation, shortcut = avgpool then conv.

The AN slot holds whatever layer the network passes (``attention``: a class or partial called with the channel
count, :mod:`common.layers.factories`); the networks pass ``AttentiveNorm2d`` there (:mod:`an_gan.networks`).

Spectral norm (``torch.nn.utils.parametrizations.spectral_norm``) wraps the convolutions when ``spectral_norm``;
AN's own 1x1 convolutions are left alone (its entity filters have the orthogonal regulariser of eq. 1) and so are
the class embeddings of conditional BN, as in SN-GAN. A long-range module that sits between blocks (SA-GAN's
self-attention) gets spectral norm on its convolutions (:func:`spectral_norm_convs`).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.parametrizations import spectral_norm as _spectral_norm

__all__ = [
    "AN_PLACEMENTS",
    "ConditionalBatchNorm2d",
    "DBlock",
    "GBlock",
    "sn",
    "spectral_norm_convs",
]

#: The two readings of where AN sits in the generator block (see :class:`GBlock`).
AN_PLACEMENTS: tuple[str, ...] = ("replace_cbn", "before_cbn")


def sn(module: nn.Module, enabled: bool) -> nn.Module:
    """``module`` wrapped in spectral norm when ``enabled``, else unchanged."""
    return _spectral_norm(module) if enabled else module


def _xavier(conv: nn.Module, gain: float) -> None:
    nn.init.xavier_uniform_(conv.weight, gain=gain)
    if getattr(conv, "bias", None) is not None:
        nn.init.zeros_(conv.bias)


def spectral_norm_convs(layer: nn.Module, enabled: bool) -> nn.Module:
    """``layer`` with spectral norm on each of its convolutions and linear layers (in module order) when
    ``enabled``: SA-GAN's ``sn_non_local_block_sim`` uses spectrally normalised 1x1 convolutions."""
    if enabled:
        for module in list(layer.modules()):
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                _spectral_norm(module)
    return layer


class ConditionalBatchNorm2d(nn.Module):
    """Batch norm without affine parameters followed by a per-class gain and bias (SN-GAN's categorical cBN).

    ``out = BN(x) * gain[y] + bias[y]``; the embeddings start at gain 1 and bias 0. ``y`` is either integer labels
    ``(B,)`` or soft class weights ``(B, num_classes)`` (float), in which case gain and bias are the weighted sums
    of the class embeddings (the categorical interpolation of the AN paper's Figure 8).

    Args:
        num_features: channels C.
        num_classes: number of classes K.
        eps: batch-norm epsilon.
        momentum: batch-norm running-average momentum.
    """

    def __init__(self, num_features: int, num_classes: int, eps: float = 1e-5, momentum: float = 0.1) -> None:
        super().__init__()
        self.num_features = num_features
        self.num_classes = num_classes
        self.bn = nn.BatchNorm2d(num_features, affine=False, eps=eps, momentum=momentum)
        self.gain = nn.Embedding(num_classes, num_features)
        self.bias = nn.Embedding(num_classes, num_features)
        nn.init.ones_(self.gain.weight)
        nn.init.zeros_(self.bias.weight)

    def class_affine(self, y: Tensor) -> tuple[Tensor, Tensor]:
        """Per-sample (gain, bias), each (B, C), for labels (B,) or class weights (B, K)."""
        if y.is_floating_point():
            return y @ self.gain.weight, y @ self.bias.weight
        return self.gain(y), self.bias(y)

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        """``BN(x) * gain[y] + bias[y]`` for ``x`` ``(B, C, H, W)`` and ``y`` ``(B,)`` labels or ``(B, K)`` class
        weights; returns ``(B, C, H, W)``.
        """
        gain, bias = self.class_affine(y)
        return self.bn(x) * gain.to(x.dtype)[:, :, None, None] + bias.to(x.dtype)[:, :, None, None]


class GBlock(nn.Module):
    """Generator residual up-block with an optional Attentive Normalization layer after its first convolution.

    **Where AN goes.** The paper places AN "between the convolutional layer and the activation layer" (Section 4)
    of the third block. In an SN-GAN block that spot already holds the second conditional BN (cBN2), so there are
    two readings: AN *replaces* cBN2 (``"replace_cbn"``) or AN is inserted *before* cBN2 (``"before_cbn"``).
    The default is ``"replace_cbn"``. Section 5.4 explains why "AN w/o SSR" (AN degenerated to one region, i.e.
    instance normalisation) scores close to SN-GAN* (23.58 vs 22.96 FID) by saying that "instance normalization
    does not input the extra label as conditional batch normalization in SN-GAN*". That comparison only holds if
    AN occupies the place of a label-conditioned cBN: with ``"before_cbn"`` the label would still enter at the
    same point through cBN2 and the explanation would not apply. ``"before_cbn"`` is kept for comparison (it
    starts training as exactly the SN-GAN block, since AN's ``rho`` starts at 0).

    Args:
        in_channels: input channels.
        out_channels: output channels.
        num_classes: classes of the conditional batch norms.
        attention: the normalisation after conv1, called with ``out_channels`` (``AttentiveNorm2d`` or a partial
            of it), or ``None``; self-attention sits between blocks, not inside them.
        an_placement: ``"replace_cbn"`` or ``"before_cbn"`` (only used with ``attention``).
        spectral_norm: wrap the convolutions in spectral norm.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        num_classes: int,
        attention: Callable[[int], nn.Module] | None = None,
        an_placement: str = "replace_cbn",
        spectral_norm: bool = True,
    ) -> None:
        super().__init__()
        if an_placement not in AN_PLACEMENTS:
            raise ValueError(f"an_placement must be one of {AN_PLACEMENTS}, got {an_placement!r}")
        self.bn1 = ConditionalBatchNorm2d(in_channels, num_classes)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.shortcut = nn.Conv2d(in_channels, out_channels, 1)
        for conv, gain in ((self.conv1, math.sqrt(2)), (self.conv2, math.sqrt(2)), (self.shortcut, 1.0)):
            _xavier(conv, gain)
        self.conv1, self.conv2, self.shortcut = (sn(c, spectral_norm) for c in (self.conv1, self.conv2, self.shortcut))
        self.attention = attention(out_channels) if attention is not None else None
        replaced = self.attention is not None and an_placement == "replace_cbn"
        self.bn2 = None if replaced else ConditionalBatchNorm2d(out_channels, num_classes)

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        """``x`` ``(B, in_channels, H, W)``, ``y`` labels ``(B,)`` or class weights ``(B, K)``; returns
        ``(B, out_channels, 2H, 2W)``.
        """
        h = self.conv1(F.interpolate(F.relu(self.bn1(x, y)), scale_factor=2, mode="nearest"))
        if self.attention is not None:
            h = self.attention(h)
        if self.bn2 is not None:
            h = self.bn2(h, y)
        h = self.conv2(F.relu(h))
        return h + self.shortcut(F.interpolate(x, scale_factor=2, mode="nearest"))


class DBlock(nn.Module):
    """Discriminator residual block (layout in the module docstring) with an optional AN layer after conv1.

    Args:
        in_channels: input channels.
        out_channels: output channels.
        downsample: 2x2 average pooling at the end of both paths.
        optimized: first block of D: no pre-activation and a pool-then-conv shortcut (SN-GAN's OptimizedBlock).
        wide: conv1 maps to ``out_channels`` (SA-GAN / BigGAN ``D_wide``) instead of ``in_channels`` (SN-GAN's
            Chainer code); the optimized block always maps to ``out_channels``.
        attention: the normalisation after conv1, called with conv1's output width (``AttentiveNorm2d`` or a
            partial of it), or ``None``.
        spectral_norm: wrap the convolutions in spectral norm.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        downsample: bool = True,
        optimized: bool = False,
        wide: bool = True,
        attention: Callable[[int], nn.Module] | None = None,
        spectral_norm: bool = True,
    ) -> None:
        super().__init__()
        self.downsample = downsample
        self.optimized = optimized
        hidden = out_channels if (wide or optimized) else in_channels
        self.conv1 = nn.Conv2d(in_channels, hidden, 3, padding=1)
        self.conv2 = nn.Conv2d(hidden, out_channels, 3, padding=1)
        learnable = optimized or in_channels != out_channels or downsample
        self.shortcut = nn.Conv2d(in_channels, out_channels, 1) if learnable else None
        for conv, gain in ((self.conv1, math.sqrt(2)), (self.conv2, math.sqrt(2)), (self.shortcut, 1.0)):
            if conv is not None:
                _xavier(conv, gain)
        self.conv1, self.conv2 = sn(self.conv1, spectral_norm), sn(self.conv2, spectral_norm)
        if self.shortcut is not None:
            self.shortcut = sn(self.shortcut, spectral_norm)
        self.attention = attention(hidden) if attention is not None else None

    def _shortcut(self, x: Tensor) -> Tensor:
        if self.shortcut is None:
            return x
        if self.optimized:
            return self.shortcut(F.avg_pool2d(x, 2) if self.downsample else x)
        x = self.shortcut(x)
        return F.avg_pool2d(x, 2) if self.downsample else x

    def forward(self, x: Tensor) -> Tensor:
        """``x`` ``(B, in_channels, H, W)``; returns ``(B, out_channels, H/2, W/2)`` (``(B, out_channels, H, W)``
        without downsampling).
        """
        h = self.conv1(x if self.optimized else F.relu(x))
        if self.attention is not None:
            h = self.attention(h)
        h = self.conv2(F.relu(h))
        if self.downsample:
            h = F.avg_pool2d(h, 2)
        return h + self._shortcut(x)
