"""Class-conditional ResNet generator and projection discriminator with one long-range module (AN, SA or none).

Wang et al., "Attentive Normalization for Conditional Image Generation", CVPR 2020, Section 4: "Similar to that of
[SN-GAN, SA-GAN], our generator G is sequentially formed by five residual blocks, and employs AN in the third
residual block. It outputs 32x32 feature maps. Also, the discriminator D consists of five residual blocks - the first
one is incorporated with AN." The networks the paper builds on, and whose published numbers its Table 1 compares
with, are the ImageNet 128x128 models of SN-GAN with a projection discriminator (Miyato & Koyama, ICLR 2018; code
``pfnet-research/sngan_projection``: ``gen_models/resnet.py``, ``dis_models/snresnet.py``) and SA-GAN (Zhang et al.,
ICML 2019; code ``brain-research/self-attention-gan``: ``generator.py``, ``discriminator.py``).

**Depth.** Their generator has five up-blocks (4 -> 128) and their discriminator *six* blocks: five down-sampling
ones (widths 64, 128, 256, 512, 1024) and a sixth at 4x4 without down-sampling (1024). The AN paper's "five residual
blocks" for D matches neither code; we default to the reference six-block D (the architecture behind the
baselines' published numbers) and keep the literal reading as ``Discriminator(num_blocks=5)``.

**Architecture tables** (widths are multiples of ``ch``; ``ch = 64`` is the published model):

======  =====================================  =====================================================
 size    generator blocks (in -> out)           discriminator blocks (out width, down-samples?)
======  =====================================  =====================================================
 128     16->16, 16->8, 8->4, 4->2, 2->1         1 v, 2 v, 4 v, 8 v, 16 v, 16 (sngan ``snresnet.py``)
 64      16->8, 8->4, 4->2, 2->1                 1 v, 2 v, 4 v, 8 v, 16 v (``snresnet_64.py``)
 32      4->4, 4->4, 4->4 (CIFAR G, 256 wide)    2 v, 2 v, 2, 2 (CIFAR D, 128 wide, ``snresnet_32.py``)
 16      4->4, 4->4 (ours: the CIFAR G, one       2 v, 2, 2 (ours: the CIFAR D, one block shorter)
         block shorter, for CPU demos)
 8       4->4 (ours: one block, for the 8x8      2 v, 2, 2 (ours: the 16-px D on 8x8 inputs)
         digits demo)
======  =====================================  =====================================================

The 16- and 8-px rows are not published architectures: they exist for CPU demos. The bundled digits demo uses the
8-px one because its data are 8x8 scans: 16x16 or 32x32 maps would cost four or sixteen times the compute of every
convolution for no information (measured: about 3x less CPU time per iteration than at 16 px).

Parameter counts at 128x128, 1000 classes, ``ch = 64``, no long-range module (checked by the tests against the
layer-by-layer count of the reference code): G 41,996,931; D 39,443,137 with SA-GAN's wide blocks (``wide=True``,
conv1 to the output width, as in SA-GAN's ``discriminator.py`` and BigGAN-PyTorch's ``D_wide``) or 30,041,857 with
the SN-GAN projection Chainer blocks (``wide=False``, conv1 keeps the input width). G + wide D + SA-GAN's two
attention layers = 81.54M, BigGAN's Table 1 "SA-GAN baseline, Param (M) 81.5" (Brock et al., ICLR 2019).

**Long-range slot** (``long_range`` / ``long_range_block``). ``long_range`` is the layer itself, in the style of
timm's ``norm_layer``: a class called with the channel count, or a partial of it with its settings (a config writes
``class_path`` and ``init_args``; :mod:`common.layers.factories`). Where it goes follows what it is:

* an ``AttentiveNorm2d`` (a normalisation, paper Section 4: "between the convolutional layer and the activation
  layer") goes *inside* block ``long_range_block``, right after its first convolution (:mod:`an_gan.blocks`; in G
  in place of, or in front of, the block's second conditional BN: ``an_placement``). In G block 2 works on 32x32
  maps whatever the output size (the paper's third block); in D block 0 works on full-resolution maps (the paper's
  first block). Its own convolutions are never spectrally normalised. Table 4's ablations are its arguments:
  ``num_entities`` 8 / 32 ("n = 8", "n = 32"), ``self_sampling: false`` ("w/o SSR"), ``stats: batch`` ("AN w BN");
* any other module, e.g. SA-GAN's ``SelfAttention2d``, is its own layer *after* block ``long_range_block``, as
  SA-GAN's published ImageNet model does it: after ``g_block3`` in G (``generator_test``: 32x32 maps, 256
  channels = block index 2) and after ``d_block2`` in D (``discriminator_test``: 32x32 maps, 128 channels = block
  index 1), with spectral norm on its convolutions when the network has it (SA-GAN's ``sn_non_local_block_sim``);
* ``None``: no long-range module (SN-GAN / SN-GAN*).

Discriminator output: ``D(x, y) = SN-Linear(h) + <SN-Embed(y), h>`` with ``h`` the globally sum-pooled ReLU of the
last block (the projection term of Miyato & Koyama).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from an_gan.blocks import AN_PLACEMENTS, DBlock, GBlock, sn, spectral_norm_convs
from common.layers import AttentiveNorm2d
from common.layers.factories import builds, layer_spec

__all__ = [
    "D_BLOCKS",
    "G_WIDTHS",
    "Discriminator",
    "Generator",
    "count_parameters",
    "is_attentive",
]

#: Generator width multipliers per output resolution: entry 0 is the 4x4 input, entry i+1 the output of block i.
G_WIDTHS: dict[int, tuple[int, ...]] = {
    128: (16, 16, 8, 4, 2, 1),
    64: (16, 8, 4, 2, 1),
    32: (4, 4, 4, 4),
    16: (4, 4, 4),
    8: (4, 4),
}
#: Discriminator blocks per input resolution: (output width multiplier, down-samples).
D_BLOCKS: dict[int, tuple[tuple[int, bool], ...]] = {
    128: ((1, True), (2, True), (4, True), (8, True), (16, True), (16, False)),
    64: ((1, True), (2, True), (4, True), (8, True), (16, True)),
    32: ((2, True), (2, True), (2, False), (2, False)),
    16: ((2, True), (2, False), (2, False)),
    8: ((2, True), (2, False), (2, False)),
}


def _check_positive_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")


def _check_resolution(resolution: int, table: dict) -> None:
    if resolution not in table:
        raise ValueError(f"resolution must be one of {sorted(table)}, got {resolution!r}")


def _check_long_range(long_range: Any, block: int, num_blocks: int, last_allowed: int) -> None:
    if long_range is not None and (isinstance(long_range, str) or not callable(long_range)):
        raise ValueError(
            "long_range must be a layer class or partial called with the channel count (AttentiveNorm2d, "
            f"SelfAttention2d, ...) or None, got {long_range!r}"
        )
    if isinstance(block, bool) or not isinstance(block, int) or not 0 <= block <= last_allowed:
        where = "inside" if _inside(long_range) else "after"
        raise ValueError(
            f"long_range_block must be an int in [0, {last_allowed}] for a long-range module {where} a block with "
            f"{num_blocks} blocks, got {block!r}"
        )


def _inside(long_range: Callable[[int], nn.Module] | None) -> bool:
    """True when ``long_range`` goes inside a block (a normalisation: AttentiveNorm2d), not after it."""
    return builds(long_range, AttentiveNorm2d)


def count_parameters(module: nn.Module) -> int:
    """Number of parameters of ``module`` (a spectral-norm weight counts once, as its ``original``)."""
    return sum(p.numel() for p in module.parameters())


def is_attentive(module: nn.Module) -> bool:
    """True when ``module`` holds at least one AttentiveNorm2d layer."""
    return any(isinstance(m, AttentiveNorm2d) for m in module.modules())


class Generator(nn.Module):
    """Class-conditional ResNet generator (module docstring: architecture table, long-range placement).

    Args:
        num_classes: number of classes K (linked from the data by the CLI).
        resolution: output size R, one of 8, 16, 32, 64, 128 (linked from the data by the CLI).
        z_dim: noise dimension (SN-GAN / SA-GAN: 128).
        ch: base width; block widths are ``ch * G_WIDTHS[resolution]`` (64 is the published model).
        long_range: the long-range layer, called with the channel count: ``AttentiveNorm2d`` (the paper's model,
            n = 16; a partial or the config's ``init_args`` set any of its arguments, e.g. Table 4's
            ``num_entities``, ``self_sampling``, ``stats="batch"``), ``SelfAttention2d`` (SA-GAN) or ``None``
            (SN-GAN / SN-GAN*). Placement: module docstring.
        long_range_block: the block holding AN (inside it, after conv1) or followed by another module; index 2
            means 32x32 maps (the paper's third block; SA-GAN's ``g_block3``).
        an_placement: ``"replace_cbn"`` (AN takes the place of the block's second conditional BN, the default;
            argued in :class:`an_gan.blocks.GBlock`) or ``"before_cbn"`` (AN in front of it).
        spectral_norm: spectral norm on every conv/linear layer (SN-GAN* , SA-GAN and the paper); False is SN-GAN's G.

    Shape:
        - z: (B, z_dim); y: (B,) int64 labels in [0, K) or (B, K) float class weights.
        - Output: (B, 3, R, R) in [-1, 1].
    """

    def __init__(
        self,
        num_classes: int = 1000,
        resolution: int = 128,
        z_dim: int = 128,
        ch: int = 64,
        long_range: Callable[[int], nn.Module] | None = AttentiveNorm2d,
        long_range_block: int = 2,
        an_placement: str = "replace_cbn",
        spectral_norm: bool = True,
    ) -> None:
        super().__init__()
        for name, value in (("num_classes", num_classes), ("z_dim", z_dim), ("ch", ch)):
            _check_positive_int(name, value)
        _check_resolution(resolution, G_WIDTHS)
        widths = [ch * w for w in G_WIDTHS[resolution]]
        num_blocks = len(widths) - 1
        _check_long_range(long_range, long_range_block, num_blocks, num_blocks - 1)
        if an_placement not in AN_PLACEMENTS:
            raise ValueError(f"an_placement must be one of {AN_PLACEMENTS}, got {an_placement!r}")
        self.config: dict[str, Any] = {
            "num_classes": num_classes,
            "resolution": resolution,
            "z_dim": z_dim,
            "ch": ch,
            "long_range": layer_spec(long_range),
            "long_range_block": long_range_block,
            "an_placement": an_placement,
            "spectral_norm": spectral_norm,
        }
        self.num_classes, self.resolution, self.z_dim = num_classes, resolution, z_dim
        self.long_range_block = long_range_block

        self.linear = nn.Linear(z_dim, widths[0] * 16)
        nn.init.xavier_uniform_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)
        self.linear = sn(self.linear, spectral_norm)
        inside = long_range if _inside(long_range) else None
        self.blocks = nn.ModuleList(
            GBlock(
                widths[i],
                widths[i + 1],
                num_classes,
                attention=inside if i == long_range_block else None,
                an_placement=an_placement,
                spectral_norm=spectral_norm,
            )
            for i in range(num_blocks)
        )
        # Any other module: its own layer after the block (the attribute keeps SA-GAN's name: checkpoint keys).
        after = long_range if long_range is not None and inside is None else None
        self.self_attention = (
            spectral_norm_convs(after(widths[long_range_block + 1]), spectral_norm) if after is not None else None
        )
        self.bn = nn.BatchNorm2d(widths[-1])
        self.conv_out = nn.Conv2d(widths[-1], 3, 3, padding=1)
        nn.init.xavier_uniform_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)
        self.conv_out = sn(self.conv_out, spectral_norm)

    @property
    def long_range_layer(self) -> nn.Module:
        """The long-range module: the AN layer, the layer after the block (SA) or ``nn.Identity`` for ``None``."""
        if self.self_attention is not None:
            return self.self_attention
        layer = self.blocks[self.long_range_block].attention
        return layer if layer is not None else nn.Identity()

    def check_inputs(self, z: Tensor, y: Tensor) -> None:
        """Raise ValueError for wrongly shaped inputs or labels outside [0, num_classes).

        The label range needs the values on the host; it is checked for CPU tensors and in eval mode, not while
        training on an accelerator (a device-to-host copy per step; training labels come from validated data).
        """
        if z.dim() != 2 or z.shape[1] != self.z_dim:
            raise ValueError(f"z must have shape (B, {self.z_dim}), got {tuple(z.shape)}")
        b = z.shape[0]
        if y.is_floating_point():
            if y.shape != (b, self.num_classes):
                raise ValueError(f"class weights must have shape ({b}, {self.num_classes}), got {tuple(y.shape)}")
            return
        if y.shape != (b,):
            raise ValueError(f"labels must have shape ({b},), got {tuple(y.shape)}")
        if b and (y.device.type == "cpu" or not self.training):
            lo, hi = torch.aminmax(y)
            if int(lo) < 0 or int(hi) >= self.num_classes:
                raise ValueError(f"labels must lie in [0, {self.num_classes}), got values in [{int(lo)}, {int(hi)}]")

    def forward(self, z: Tensor, y: Tensor) -> Tensor:
        """Generate images from noise ``z`` (B, z_dim) and labels (B,) or class weights (B, num_classes)."""
        self.check_inputs(z, y)
        h = self.linear(z).view(z.shape[0], -1, 4, 4)
        for i, block in enumerate(self.blocks):
            h = block(h, y)
            if i == self.long_range_block and self.self_attention is not None:
                h = self.self_attention(h)
        return torch.tanh(self.conv_out(F.relu(self.bn(h))))


class Discriminator(nn.Module):
    """ResNet projection discriminator with spectral norm (module docstring: architecture table, placement).

    Args:
        num_classes: number of classes K (linked from the data by the CLI).
        resolution: input size R, one of 8, 16, 32, 64, 128 (linked from the data by the CLI).
        ch: base width; block widths are ``ch * D_BLOCKS[resolution]`` multipliers.
        long_range: the long-range layer, called with the channel count: ``AttentiveNorm2d`` (or a partial of it),
            ``SelfAttention2d`` or ``None``, as for :class:`Generator`.
        long_range_block: the block holding AN (inside it, after conv1: block 0 is the paper's first block, on
            full-resolution maps) or followed by another module (block 1 = SA-GAN's ``d_block2``, 32x32 maps).
        wide: conv1 of every block maps to the block's output width (SA-GAN / BigGAN, 39.4M parameters at 128 px)
            instead of keeping its input width (SN-GAN projection's Chainer blocks, 30.0M).
        num_blocks: use the first ``num_blocks`` blocks of the table (None: all, the reference depth; 5 at 128 px is
            the AN paper's literal "five residual blocks", without the final 4x4 block).
        spectral_norm: spectral norm everywhere (on in every config; switchable for tests).

    Shape:
        - x: (B, 3, R, R); y: (B,) int64 labels.
        - Output: (B,) logits.
    """

    def __init__(
        self,
        num_classes: int = 1000,
        resolution: int = 128,
        ch: int = 64,
        long_range: Callable[[int], nn.Module] | None = AttentiveNorm2d,
        long_range_block: int = 0,
        wide: bool = True,
        num_blocks: int | None = None,
        spectral_norm: bool = True,
    ) -> None:
        super().__init__()
        _check_positive_int("num_classes", num_classes)
        _check_positive_int("ch", ch)
        _check_resolution(resolution, D_BLOCKS)
        table = D_BLOCKS[resolution]
        if num_blocks is not None and (isinstance(num_blocks, bool) or not 1 <= num_blocks <= len(table)):
            raise ValueError(f"num_blocks must be None or in [1, {len(table)}] at {resolution} px, got {num_blocks!r}")
        table = table[: num_blocks or len(table)]
        widths = [ch * w for w, _ in table]
        # A module after a block (SA) needs a block after it; AN can go into any block.
        after = long_range is not None and not _inside(long_range)
        last = len(widths) - 2 if after else len(widths) - 1
        _check_long_range(long_range, long_range_block, len(widths), last)
        self.config: dict[str, Any] = {
            "num_classes": num_classes,
            "resolution": resolution,
            "ch": ch,
            "long_range": layer_spec(long_range),
            "long_range_block": long_range_block,
            "wide": wide,
            "num_blocks": num_blocks,
            "spectral_norm": spectral_norm,
        }
        self.num_classes, self.resolution = num_classes, resolution
        self.long_range_block = long_range_block
        inside = long_range if _inside(long_range) else None
        in_widths = [3, *widths[:-1]]
        self.blocks = nn.ModuleList(
            DBlock(
                in_widths[i],
                widths[i],
                downsample=down,
                optimized=i == 0,
                wide=wide,
                attention=inside if i == long_range_block else None,
                spectral_norm=spectral_norm,
            )
            for i, (_, down) in enumerate(table)
        )
        self.self_attention = (
            spectral_norm_convs(long_range(widths[long_range_block]), spectral_norm) if after else None
        )
        self.linear = nn.Linear(widths[-1], 1)
        self.embed = nn.Embedding(num_classes, widths[-1])
        nn.init.xavier_uniform_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)
        nn.init.xavier_uniform_(self.embed.weight)
        self.linear = sn(self.linear, spectral_norm)
        self.embed = sn(self.embed, spectral_norm)

    @property
    def long_range_layer(self) -> nn.Module:
        """The long-range module: the AN layer, the layer after the block (SA) or ``nn.Identity`` for ``None``."""
        if self.self_attention is not None:
            return self.self_attention
        layer = self.blocks[self.long_range_block].attention
        return layer if layer is not None else nn.Identity()

    def features(self, x: Tensor) -> Tensor:
        """The pooled feature ``h`` (B, C): blocks, ReLU, global sum pooling."""
        if x.dim() != 4 or x.shape[1] != 3 or x.shape[-2:] != (self.resolution, self.resolution):
            raise ValueError(
                f"expected images of shape (B, 3, {self.resolution}, {self.resolution}), got {tuple(x.shape)}"
            )
        h = x
        for i, block in enumerate(self.blocks):
            h = block(h)
            if i == self.long_range_block and self.self_attention is not None:
                h = self.self_attention(h)
        return F.relu(h).sum(dim=(2, 3))

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        """Logits ``linear(h) + <embed(y), h>`` (B,)."""
        if y.shape != (x.shape[0],) or y.is_floating_point():
            raise ValueError(f"labels must be integers of shape ({x.shape[0]},), got {y.dtype} {tuple(y.shape)}")
        h = self.features(x)
        return self.linear(h).squeeze(1) + (self.embed(y) * h).sum(dim=1)
