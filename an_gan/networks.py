"""Class-conditional ResNet generator and projection discriminator with one long-range module (AN, SA or none).

Wang et al., "Attentive Normalization for Conditional Image Generation", CVPR 2020, Section 4 and Figure 6: an
SN-GAN / SA-GAN style ResNet generator with conditional batch norm (Miyato & Koyama, "cGANs with Projection
Discriminator", ICLR 2018) whose third residual block carries Attentive Normalization (32x32 maps at 128x128
output), and a ResNet projection discriminator whose first block carries AN. Hinge loss, spectral norm on both
networks (Miyato et al., "Spectral Normalization for GANs", ICLR 2018). The long-range slot can instead hold
SA-GAN's self-attention (Zhang et al., ICML 2019) or nothing (SN-GAN*), which gives the paper's Table 1 baselines.

Where everything sits (``k = log2(resolution / 4)`` up-blocks in G and down-blocks in D; 5 at 128, 4 at 64,
3 at 32):

Generator, ``G(z, y)``::

    z (B, z_dim) -> SN-Linear -> (B, ch * w[0], 4, 4)
    k x GBlock i (maps 4 * 2**i -> 4 * 2**(i+1)):
        h = cBN1(x, y) -> ReLU -> nearest up x2 -> SN-Conv3x3 (conv1)
        h = LR(h)                      # only in block ``long_range_block``: AN / AN-w-BN / SA / Identity
        h = cBN2(h, y) -> ReLU -> SN-Conv3x3 (conv2)
        out = h + SN-Conv1x1(nearest up x2 (x))
    -> BN -> ReLU -> SN-Conv3x3 -> tanh -> (B, 3, R, R)

So the long-range module sits between conv1 and its activation (cBN2 + ReLU) of the chosen block, on maps of
size ``8 * 2**long_range_block`` (block 2 -> 32x32, the paper's placement, whatever the output resolution).
Channel widths ``ch * w[i]``: ``w = (16, 16, 8, 4, 2, 1)`` at 128 (1024 -> 64 for ch=64, SN-GAN's ImageNet G),
``(16, 8, 4, 2, 1)`` at 64 and ``(4, 4, 4, 4)`` at 32 (SN-GAN's CIFAR G is 256 wide throughout for ch=64).

Conditional batch norm (:class:`ConditionalBatchNorm2d`): ``BN(x) * gain[y] + bias[y]`` with per-class embeddings
initialised to 1 and 0. Passing soft class weights ``(B, num_classes)`` instead of labels mixes the gain/bias
embeddings linearly: the paper's categorical interpolation (Section 5.2, Figure 8).

Discriminator, ``D(x, y)``::

    k x DBlock i (maps R / 2**i -> R / 2**(i+1), widths ch * 2**i):
        block 0 is the "optimized" block (no pre-activation, shortcut = avgpool then SN-Conv1x1)
        h = [ReLU](x) -> SN-Conv3x3 (conv1)
        h = LR(h)                      # only in block ``long_range_block`` (default 0, the paper's placement)
        h = ReLU(h) -> SN-Conv3x3 (conv2) -> avgpool 2x2
        out = h + shortcut(x)
    -> ReLU -> global SUM pooling -> h (B, ch * 2**(k-1))
    D(x, y) = SN-Linear(h) + <SN-Embed(y), h>          # projection term

With ``long_range_block=0`` the discriminator's AN works on full-resolution maps (128x128 at 128 output).
Self-attention there would need an (H*W) x (H*W/4) attention matrix per sample, so the SA-GAN config places
D's SA one block deeper (see ``configs/an_gan/sagan.yaml``).

Spectral norm (``torch.nn.utils.parametrizations.spectral_norm``) wraps every convolution, linear layer and the
projection embedding of D, and (when ``spectral_norm=True``) every convolution and linear layer of G, including
the 1x1 convolutions of a self-attention block. The class embeddings of conditional BN are not normalised
(as in SN-GAN), and neither are AN's 1x1 convolutions: its entity filters have their own orthogonal
regularisation (paper eq. 1), added to the losses by the training module.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.parametrizations import spectral_norm as _spectral_norm

from common.layers import AttentiveNorm2d, SelfAttention2d, create_norm

__all__ = [
    "D_WIDTHS",
    "G_WIDTHS",
    "LONG_RANGE_CHOICES",
    "ConditionalBatchNorm2d",
    "DBlock",
    "Discriminator",
    "GBlock",
    "Generator",
    "is_attentive",
    "make_long_range",
]

#: Names accepted for the long-range slot (``common.layers.create_norm`` names).
LONG_RANGE_CHOICES: tuple[str, ...] = ("an", "an_bn", "sa", "none")
#: Generator width multipliers per output resolution: entry 0 is the 4x4 input, entry i+1 the output of block i.
G_WIDTHS: dict[int, tuple[int, ...]] = {32: (4, 4, 4, 4), 64: (16, 8, 4, 2, 1), 128: (16, 16, 8, 4, 2, 1)}
#: Discriminator width multipliers per resolution: entry i is the output width of block i.
D_WIDTHS: dict[int, tuple[int, ...]] = {32: (1, 2, 4), 64: (1, 2, 4, 8), 128: (1, 2, 4, 8, 16)}


# ----------------------------------------------------------------------------------------------------- helpers
def _sn(module: nn.Module, enabled: bool) -> nn.Module:
    return _spectral_norm(module) if enabled else module


def _check_positive_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")


def _check_resolution(resolution: int, table: dict[int, tuple[int, ...]]) -> None:
    if resolution not in table:
        raise ValueError(f"resolution must be one of {sorted(table)}, got {resolution!r}")


def _check_long_range(long_range: str, block: int, num_blocks: int) -> None:
    if long_range not in LONG_RANGE_CHOICES:
        raise ValueError(f"long_range must be one of {LONG_RANGE_CHOICES}, got {long_range!r}")
    if isinstance(block, bool) or not isinstance(block, int) or not 0 <= block < num_blocks:
        raise ValueError(f"long_range_block must be an int in [0, {num_blocks - 1}] for this resolution, got {block!r}")


def make_long_range(
    name: str, num_features: int, spectral_norm: bool, num_entities: int, self_sampling: bool
) -> nn.Module:
    """The long-range layer of a block: AN (``"an"``/``"an_bn"``), self-attention (``"sa"``) or identity.

    AN options apply to the AN names only; a self-attention block gets spectral norm on its 1x1 convolutions
    when the network uses it.
    """
    kwargs = {"num_entities": num_entities, "self_sampling": self_sampling} if name in ("an", "an_bn") else {}
    layer = create_norm(name, num_features, **kwargs)
    if spectral_norm and isinstance(layer, SelfAttention2d):
        for child in layer.modules():
            if isinstance(child, nn.Conv2d):
                _spectral_norm(child)
    return layer


def _init_xavier(module: nn.Module) -> None:
    nn.init.xavier_uniform_(module.weight)
    if getattr(module, "bias", None) is not None:
        nn.init.zeros_(module.bias)


# ----------------------------------------------------------------------------------------------------- layers
class ConditionalBatchNorm2d(nn.Module):
    """Batch norm without affine parameters followed by a per-class gain and bias.

    ``out = BN(x) * gain[y] + bias[y]``; the embeddings start at gain 1 and bias 0. ``y`` is either integer labels
    ``(B,)`` or soft class weights ``(B, num_classes)`` (float), in which case gain and bias are the weighted sums
    of the class embeddings (categorical interpolation).

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
        gain, bias = self.class_affine(y)
        return self.bn(x) * gain.to(x.dtype)[:, :, None, None] + bias.to(x.dtype)[:, :, None, None]


class GBlock(nn.Module):
    """Generator residual up-block (layout in the module docstring); ``long_range`` sits after conv1.

    Args:
        in_channels: input channels.
        out_channels: output channels.
        num_classes: classes of the conditional batch norms.
        long_range: ``"an"``, ``"an_bn"``, ``"sa"`` or ``"none"``.
        spectral_norm: wrap the convolutions in spectral norm.
        num_entities: AN entities n.
        self_sampling: AN self-sampling branch on/off.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        num_classes: int,
        long_range: str = "none",
        spectral_norm: bool = True,
        num_entities: int = 16,
        self_sampling: bool = True,
    ) -> None:
        super().__init__()
        self.bn1 = ConditionalBatchNorm2d(in_channels, num_classes)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.bn2 = ConditionalBatchNorm2d(out_channels, num_classes)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.shortcut = nn.Conv2d(in_channels, out_channels, 1)
        for conv, gain in ((self.conv1, math.sqrt(2)), (self.conv2, math.sqrt(2)), (self.shortcut, 1.0)):
            nn.init.xavier_uniform_(conv.weight, gain=gain)
            nn.init.zeros_(conv.bias)
        self.conv1 = _sn(self.conv1, spectral_norm)
        self.conv2 = _sn(self.conv2, spectral_norm)
        self.shortcut = _sn(self.shortcut, spectral_norm)
        self.long_range = make_long_range(long_range, out_channels, spectral_norm, num_entities, self_sampling)

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        h = F.interpolate(F.relu(self.bn1(x, y)), scale_factor=2, mode="nearest")
        h = self.long_range(self.conv1(h))
        h = self.conv2(F.relu(self.bn2(h, y)))
        return h + self.shortcut(F.interpolate(x, scale_factor=2, mode="nearest"))


class DBlock(nn.Module):
    """Discriminator residual block (layout in the module docstring); ``long_range`` sits after conv1.

    Args:
        in_channels: input channels.
        out_channels: output channels.
        downsample: 2x2 average pooling at the end of both paths.
        optimized: first block of D: no pre-activation and a pool-then-conv shortcut (SN-GAN's OptimizedBlock).
        long_range: ``"an"``, ``"an_bn"``, ``"sa"`` or ``"none"``.
        spectral_norm: wrap the convolutions in spectral norm.
        num_entities: AN entities n.
        self_sampling: AN self-sampling branch on/off.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        downsample: bool = True,
        optimized: bool = False,
        long_range: str = "none",
        spectral_norm: bool = True,
        num_entities: int = 16,
        self_sampling: bool = True,
    ) -> None:
        super().__init__()
        self.downsample = downsample
        self.optimized = optimized
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.shortcut = nn.Conv2d(in_channels, out_channels, 1) if (in_channels != out_channels or downsample) else None
        for conv, gain in ((self.conv1, math.sqrt(2)), (self.conv2, math.sqrt(2)), (self.shortcut, 1.0)):
            if conv is not None:
                nn.init.xavier_uniform_(conv.weight, gain=gain)
                nn.init.zeros_(conv.bias)
        self.conv1 = _sn(self.conv1, spectral_norm)
        self.conv2 = _sn(self.conv2, spectral_norm)
        if self.shortcut is not None:
            self.shortcut = _sn(self.shortcut, spectral_norm)
        self.long_range = make_long_range(long_range, out_channels, spectral_norm, num_entities, self_sampling)

    def _shortcut(self, x: Tensor) -> Tensor:
        if self.shortcut is None:
            return x
        if self.optimized:
            return self.shortcut(F.avg_pool2d(x, 2) if self.downsample else x)
        x = self.shortcut(x)
        return F.avg_pool2d(x, 2) if self.downsample else x

    def forward(self, x: Tensor) -> Tensor:
        h = x if self.optimized else F.relu(x)
        h = self.long_range(self.conv1(h))
        h = self.conv2(F.relu(h))
        if self.downsample:
            h = F.avg_pool2d(h, 2)
        return h + self._shortcut(x)


# ----------------------------------------------------------------------------------------------------- networks
class Generator(nn.Module):
    """Class-conditional ResNet generator (module docstring: layout, widths, long-range placement).

    Args:
        num_classes: number of classes K.
        resolution: output size R, one of 32, 64, 128 (3, 4 or 5 up-blocks).
        z_dim: noise dimension.
        ch: base width; block widths are ``ch * G_WIDTHS[resolution]`` (ch=64 is the paper-size model).
        long_range: ``"an"`` (the paper's model), ``"an_bn"`` (Table 4 "AN w BN"), ``"sa"`` (SA-GAN) or
            ``"none"`` (SN-GAN / SN-GAN*).
        long_range_block: 0-based index of the up-block holding the long-range layer, whose maps are
            ``8 * 2**long_range_block`` pixels wide (2 -> 32x32, the paper's third block).
        spectral_norm: spectral norm on every conv/linear layer (SN-GAN* and the paper); False is SN-GAN's G.
        num_entities: AN entities n (paper: 16; Table 4: 8, 32).
        self_sampling: AN self-sampling regularisation (Table 4 "w/o SSR" turns it off).

    Shape:
        - z: (B, z_dim); y: (B,) int64 labels in [0, K) or (B, K) float class weights.
        - Output: (B, 3, R, R) in [-1, 1].
    """

    def __init__(
        self,
        num_classes: int,
        resolution: int = 128,
        z_dim: int = 128,
        ch: int = 64,
        long_range: str = "an",
        long_range_block: int = 2,
        spectral_norm: bool = True,
        num_entities: int = 16,
        self_sampling: bool = True,
    ) -> None:
        super().__init__()
        _check_positive_int("num_classes", num_classes)
        _check_positive_int("z_dim", z_dim)
        _check_positive_int("ch", ch)
        _check_resolution(resolution, G_WIDTHS)
        widths = [ch * w for w in G_WIDTHS[resolution]]
        num_blocks = len(widths) - 1
        _check_long_range(long_range, long_range_block, num_blocks)
        self.config: dict[str, Any] = {
            "num_classes": num_classes,
            "resolution": resolution,
            "z_dim": z_dim,
            "ch": ch,
            "long_range": long_range,
            "long_range_block": long_range_block,
            "spectral_norm": spectral_norm,
            "num_entities": num_entities,
            "self_sampling": self_sampling,
        }
        self.num_classes = num_classes
        self.resolution = resolution
        self.z_dim = z_dim
        self.long_range_block = long_range_block

        self.linear = nn.Linear(z_dim, widths[0] * 16)
        _init_xavier(self.linear)
        self.linear = _sn(self.linear, spectral_norm)
        self.blocks = nn.ModuleList(
            GBlock(
                widths[i],
                widths[i + 1],
                num_classes,
                long_range=long_range if i == long_range_block else "none",
                spectral_norm=spectral_norm,
                num_entities=num_entities,
                self_sampling=self_sampling,
            )
            for i in range(num_blocks)
        )
        self.bn = nn.BatchNorm2d(widths[-1])
        self.conv_out = nn.Conv2d(widths[-1], 3, 3, padding=1)
        _init_xavier(self.conv_out)
        self.conv_out = _sn(self.conv_out, spectral_norm)

    @property
    def long_range_layer(self) -> nn.Module:
        """The module in the long-range slot (``nn.Identity`` for ``"none"``)."""
        return self.blocks[self.long_range_block].long_range

    def check_inputs(self, z: Tensor, y: Tensor) -> None:
        """Raise ValueError for a wrongly shaped noise or labels outside [0, num_classes)."""
        if z.dim() != 2 or z.shape[1] != self.z_dim:
            raise ValueError(f"z must have shape (B, {self.z_dim}), got {tuple(z.shape)}")
        b = z.shape[0]
        if y.is_floating_point():
            if y.shape != (b, self.num_classes):
                raise ValueError(f"class weights must have shape ({b}, {self.num_classes}), got {tuple(y.shape)}")
            return
        if y.shape != (b,):
            raise ValueError(f"labels must have shape ({b},), got {tuple(y.shape)}")
        if b and (int(y.min()) < 0 or int(y.max()) >= self.num_classes):
            raise ValueError(
                f"labels must lie in [0, {self.num_classes}), got values in [{int(y.min())}, {int(y.max())}]"
            )

    def forward(self, z: Tensor, y: Tensor) -> Tensor:
        """Generate images from noise ``z`` (B, z_dim) and labels (B,) or class weights (B, num_classes)."""
        self.check_inputs(z, y)
        h = self.linear(z).view(z.shape[0], -1, 4, 4)
        for block in self.blocks:
            h = block(h, y)
        return torch.tanh(self.conv_out(F.relu(self.bn(h))))


class Discriminator(nn.Module):
    """ResNet projection discriminator with spectral norm (module docstring: layout and placement).

    Args:
        num_classes: number of classes K.
        resolution: input size R, one of 32, 64, 128 (3, 4 or 5 down-blocks, all downsampling to 4x4).
        ch: base width; block widths are ``ch * D_WIDTHS[resolution]``.
        long_range: ``"an"``, ``"an_bn"``, ``"sa"`` or ``"none"``.
        long_range_block: 0-based index of the down-block holding the long-range layer (its maps are
            ``R / 2**long_range_block`` wide; 0 is the paper's first block).
        spectral_norm: spectral norm everywhere (always on in every config; switchable for tests).
        num_entities: AN entities n.
        self_sampling: AN self-sampling regularisation.

    Shape:
        - x: (B, 3, R, R); y: (B,) int64 labels.
        - Output: (B,) logits.
    """

    def __init__(
        self,
        num_classes: int,
        resolution: int = 128,
        ch: int = 64,
        long_range: str = "an",
        long_range_block: int = 0,
        spectral_norm: bool = True,
        num_entities: int = 16,
        self_sampling: bool = True,
    ) -> None:
        super().__init__()
        _check_positive_int("num_classes", num_classes)
        _check_positive_int("ch", ch)
        _check_resolution(resolution, D_WIDTHS)
        widths = [ch * w for w in D_WIDTHS[resolution]]
        _check_long_range(long_range, long_range_block, len(widths))
        self.num_classes = num_classes
        self.resolution = resolution
        self.long_range_block = long_range_block
        in_widths = [3, *widths[:-1]]
        self.blocks = nn.ModuleList(
            DBlock(
                in_widths[i],
                widths[i],
                downsample=True,
                optimized=i == 0,
                long_range=long_range if i == long_range_block else "none",
                spectral_norm=spectral_norm,
                num_entities=num_entities,
                self_sampling=self_sampling,
            )
            for i in range(len(widths))
        )
        self.linear = nn.Linear(widths[-1], 1)
        self.embed = nn.Embedding(num_classes, widths[-1])
        _init_xavier(self.linear)
        nn.init.xavier_uniform_(self.embed.weight)
        self.linear = _sn(self.linear, spectral_norm)
        self.embed = _sn(self.embed, spectral_norm)

    @property
    def long_range_layer(self) -> nn.Module:
        """The module in the long-range slot (``nn.Identity`` for ``"none"``)."""
        return self.blocks[self.long_range_block].long_range

    def features(self, x: Tensor) -> Tensor:
        """The pooled feature ``h`` (B, C): blocks, ReLU, global sum pooling."""
        if x.dim() != 4 or x.shape[1] != 3 or x.shape[-2:] != (self.resolution, self.resolution):
            raise ValueError(
                f"expected images of shape (B, 3, {self.resolution}, {self.resolution}), got {tuple(x.shape)}"
            )
        h = x
        for block in self.blocks:
            h = block(h)
        return F.relu(h).sum(dim=(2, 3))

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        """Logits ``linear(h) + <embed(y), h>`` (B,)."""
        if y.shape != (x.shape[0],) or y.is_floating_point():
            raise ValueError(f"labels must be integers of shape ({x.shape[0]},), got {y.dtype} {tuple(y.shape)}")
        h = self.features(x)
        return self.linear(h).squeeze(1) + (self.embed(y) * h).sum(dim=1)


def is_attentive(module: nn.Module) -> bool:
    """True when ``module`` holds at least one AttentiveNorm2d layer."""
    return any(isinstance(m, AttentiveNorm2d) for m in module.modules())
