"""Contextual attention (Yu et al., "Generative Image Inpainting with Contextual Attention", CVPR 2018).

The layer fills the foreground (the features of the hole region) with a soft, attention-weighted copy of
background patches (features of the known region). Semantics follow DeepFill v1's ``contextual_attention`` (the
paper's Section 3.2 and the authors' public code, github.com/JiahuiYu/generative_inpainting, ``inpaint_ops.py``),
written here from that description, not copied:

1. Foreground and background are downsampled by ``rate`` (nearest neighbour) for matching.
2. Every ``ksize`` x ``ksize`` background patch (stride ``stride``, zero "SAME" padding) is L2-normalised (the norm
   is floored at 1e-4) and used as a correlation filter over the foreground: ``score[p, q]`` is the cosine-like
   match between foreground position ``p`` and background patch ``q``.
3. Background patches whose mask patch has a non-zero mean (patches that touch the hole) are excluded: their
   score is multiplied by 0 before the softmax and their weight by 0 after it.
4. Attention propagation ("fuse"): the score matrix, seen as an image of size ``(Hf*Wf, Hb*Wb)`` in row-major
   spatial order, is correlated with a ``fuse_k`` x ``fuse_k`` identity kernel, i.e. each score is summed with the
   scores of the neighbouring foreground positions paired with the same shift of the background patch. This is
   done once in row-major order (neighbours along the width) and once in the transposed, column-major spatial
   order (neighbours along the height), as DeepFill does, including its behaviour at the ends of rows, where the
   flattened order wraps around to the next row.
5. Softmax over the background patches with ``softmax_scale`` (10).
6. Paste-back: a transposed convolution (implemented as ``bmm`` + ``fold``) with the **full-resolution** raw
   background patches of size ``2 * rate`` and stride ``rate``, divided by 4 (each output pixel is covered by two
   patches per axis).

Departures from the TensorFlow reference code (and its PyTorch port):

* Batched: all samples go through batched ``unfold``/``bmm``/``fold``; there is no Python loop over samples.
* Per-sample masks: the reference uses the first mask of the batch (``mask[0]``) for every sample; here each sample
  has its own mask, given at any resolution (it is resized, nearest, to the feature size). A mask with batch size
  1 is broadcast to the whole batch.
* Any spatial size divisible by ``rate`` works (the networks use sizes divisible by 8); nothing assumes 256x256.
* ``stride > 1`` selects background patches on a subsampled grid of the matching resolution (the reference code
  only works with ``stride == 1``); ``fuse_k`` must be odd (the reference uses 3).
* The argmax offsets are stored in ``last_offsets`` (detached) instead of being returned; ``offsets_to_image``
  renders them with a simple HSV colour wheel.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["ContextualAttention2d", "offsets_to_image"]


class ContextualAttention2d(nn.Module):
    """Contextual attention layer of DeepFill v1 (Yu et al., CVPR 2018), batched with per-sample masks.

    Args:
        ksize: Size of the background patches used for matching (odd). DeepFill: 3.
        stride: Stride of the background patch grid at the matching resolution. DeepFill: 1.
        rate: Downsampling factor for matching; the paste-back patches are ``2 * rate`` pixels wide at full
            resolution. Input height and width must be divisible by ``rate``. DeepFill: 2.
        fuse_k: Size of the identity kernel used for attention propagation (odd). DeepFill: 3.
        softmax_scale: Multiplier of the scores inside the softmax. DeepFill: 10.
        fuse: Whether to apply attention propagation.

    Shape:
        - foreground: ``(B, C, H, W)``, the features to fill (only the hole region of the result is normally used).
        - background: ``(B, C, H, W)``, the features to copy from.
        - mask: ``(B, 1, Hm, Wm)`` or ``(1, 1, Hm, Wm)``, 1 = missing (hole), 0 = known, any resolution.
        - output: ``(B, C, H, W)``.

    Attributes:
        last_offsets: ``(B, 2, H / rate, W / rate)`` float tensor (detached) of the argmax displacement
            ``(dy, dx)``, in matching-resolution pixels, from each foreground position to the background patch with
            the largest attention weight; ``None`` before the first forward pass.
    """

    def __init__(
        self,
        ksize: int = 3,
        stride: int = 1,
        rate: int = 2,
        fuse_k: int = 3,
        softmax_scale: float = 10.0,
        fuse: bool = True,
    ) -> None:
        super().__init__()
        if ksize < 1 or ksize % 2 == 0:
            raise ValueError(f"ksize must be a positive odd integer, got {ksize}")
        if fuse_k < 1 or fuse_k % 2 == 0:
            raise ValueError(f"fuse_k must be a positive odd integer, got {fuse_k}")
        if stride < 1:
            raise ValueError(f"stride must be >= 1, got {stride}")
        if rate < 1:
            raise ValueError(f"rate must be >= 1, got {rate}")
        if softmax_scale <= 0:
            raise ValueError(f"softmax_scale must be positive, got {softmax_scale}")
        self.ksize = ksize
        self.stride = stride
        self.rate = rate
        self.fuse_k = fuse_k
        self.softmax_scale = softmax_scale
        self.fuse = fuse
        self.last_offsets: Tensor | None = None

    def extra_repr(self) -> str:
        """The constructor settings for ``repr``."""
        return (
            f"ksize={self.ksize}, stride={self.stride}, rate={self.rate}, fuse_k={self.fuse_k}, "
            f"softmax_scale={self.softmax_scale}, fuse={self.fuse}"
        )

    def _check_inputs(self, foreground: Tensor, background: Tensor, mask: Tensor | None) -> None:
        if foreground.dim() != 4 or background.dim() != 4:
            raise ValueError(
                "ContextualAttention2d expects 4-D (B, C, H, W) foreground and background, got shapes "
                f"{tuple(foreground.shape)} and {tuple(background.shape)}"
            )
        if foreground.shape != background.shape:
            raise ValueError(
                f"foreground shape {tuple(foreground.shape)} does not match background shape {tuple(background.shape)}"
            )
        height, width = foreground.shape[-2:]
        if height % self.rate or width % self.rate:
            raise ValueError(
                f"ContextualAttention2d with rate={self.rate} needs a height and width divisible by {self.rate}, "
                f"got {height}x{width} (the inpainting networks need image sizes divisible by 8)"
            )
        if mask is not None:
            if mask.dim() != 4 or mask.shape[1] != 1:
                raise ValueError(f"mask must have shape (B, 1, H, W), got {tuple(mask.shape)}")
            if mask.shape[0] not in (1, foreground.shape[0]):
                raise ValueError(
                    f"mask batch size {mask.shape[0]} does not match the feature batch size {foreground.shape[0]}"
                )

    def forward(self, foreground: Tensor, background: Tensor, mask: Tensor | None = None) -> Tensor:
        """Fill ``foreground`` with attention-weighted patches of ``background``.

        Args:
            foreground: ``(B, C, H, W)`` features to fill.
            background: ``(B, C, H, W)`` features to copy from.
            mask: Optional ``(B, 1, Hm, Wm)`` hole mask (1 = missing); background patches touching the hole are
                never attended to. ``None`` means no hole.

        Returns:
            ``(B, C, H, W)`` reconstruction of the foreground from background patches.
        """
        self._check_inputs(foreground, background, mask)
        batch, channels, height, width = foreground.shape
        rate, ks, stride = self.rate, self.ksize, self.stride

        # Full-resolution raw patches (2*rate wide, stride rate, TF "SAME" padding) for the paste-back.
        raw_k = 2 * rate
        pad_before, pad_after = rate // 2, rate - rate // 2
        raw_padded = F.pad(background, (pad_before, pad_after, pad_before, pad_after))
        raw_patches = F.unfold(raw_padded, kernel_size=raw_k, stride=rate)  # (B, C*raw_k*raw_k, h*w)

        # Matching resolution (nearest downsampling: pixel rate*i).
        fg = foreground[:, :, ::rate, ::rate]
        bg = background[:, :, ::rate, ::rate]
        h, w = fg.shape[-2:]

        pad = ks // 2
        bg_patches = F.unfold(bg, kernel_size=ks, padding=pad)  # (B, C*ks*ks, h*w)
        if stride > 1:
            grid_h, grid_w = math.ceil(h / stride), math.ceil(w / stride)
            bg_patches = bg_patches.view(batch, -1, h, w)[:, :, ::stride, ::stride].reshape(batch, -1, grid_h * grid_w)
            raw_patches = raw_patches.view(batch, -1, h, w)[:, :, ::stride, ::stride].reshape(
                batch, -1, grid_h * grid_w
            )
        else:
            grid_h, grid_w = h, w
        norms = bg_patches.norm(dim=1, keepdim=True).clamp_min(1e-4)
        bg_normed = bg_patches / norms

        fg_patches = F.unfold(fg, kernel_size=ks, padding=pad)  # (B, C*ks*ks, h*w)
        scores = torch.bmm(fg_patches.transpose(1, 2), bg_normed)  # (B, Lf, Lb)

        if self.fuse and self.fuse_k > 1:
            scores = self._propagate(scores, (h, w), (grid_h, grid_w))

        # Valid background patches: the mask patch (zero padded) has zero mean.
        if mask is None:
            valid = torch.ones(1, 1, grid_h * grid_w, dtype=scores.dtype, device=scores.device)
        else:
            m = mask.to(dtype=scores.dtype)
            if m.shape[-2:] != (height, width):
                m = F.interpolate(m, size=(height, width), mode="nearest")
            m = m[:, :, ::rate, ::rate]
            m_mean = F.avg_pool2d(m, kernel_size=ks, stride=1, padding=pad, count_include_pad=True)
            m_mean = m_mean[:, :, ::stride, ::stride]
            valid = (m_mean.reshape(m.shape[0], 1, grid_h * grid_w) == 0).to(scores.dtype)

        scores = scores * valid
        attention = torch.softmax(scores * self.softmax_scale, dim=2) * valid  # (B, Lf, Lb)

        best = attention.argmax(dim=2).view(batch, h, w)
        src_y = torch.div(best, grid_w, rounding_mode="floor") * stride
        src_x = (best % grid_w) * stride
        ys = torch.arange(h, device=best.device).view(1, h, 1)
        xs = torch.arange(w, device=best.device).view(1, 1, w)
        self.last_offsets = torch.stack([src_y - ys, src_x - xs], dim=1).to(foreground.dtype).detach()

        # Paste-back: transposed conv with the raw patches == bmm then fold (overlaps are summed), divided by 4.
        cols = torch.bmm(raw_patches, attention.transpose(1, 2))  # (B, C*raw_k*raw_k, Lf)
        out = F.fold(cols, output_size=(height + rate, width + rate), kernel_size=raw_k, stride=rate)
        out = out[:, :, pad_before : pad_before + height, pad_before : pad_before + width]
        return out / 4.0

    def _propagate(self, scores: Tensor, fg_size: tuple[int, int], bg_size: tuple[int, int]) -> Tensor:
        """Attention propagation: identity-kernel correlation along width (row-major), then height."""
        batch = scores.shape[0]
        h, w = fg_size
        bh, bw = bg_size
        # Pass 1: row-major flattening, neighbours along the width.
        y = _diagonal_sum(scores, self.fuse_k)
        # Pass 2: column-major flattening (transposed spatial order), neighbours along the height.
        y = y.view(batch, h, w, bh, bw).permute(0, 2, 1, 4, 3).reshape(batch, w * h, bw * bh)
        y = _diagonal_sum(y, self.fuse_k)
        return y.view(batch, w, h, bw, bh).permute(0, 2, 1, 4, 3).reshape(batch, h * w, bh * bw)


def _diagonal_sum(scores: Tensor, k: int) -> Tensor:
    """Correlate each ``(L1, L2)`` matrix of ``scores`` with a ``k`` x ``k`` identity kernel, zero padding.

    Equal to ``conv2d`` with ``torch.eye(k)`` and padding ``k // 2`` ("SAME"): ``out[p, q] = sum_d s[p + d, q + d]``
    for ``d`` in ``[-k//2, k//2]``, computed with ``k`` shifted additions instead of a convolution.
    """
    r = k // 2
    length1, length2 = scores.shape[-2:]
    padded = F.pad(scores, (r, r, r, r))
    out = padded[:, 0:length1, 0:length2].clone()
    for d in range(1, k):
        out = out + padded[:, d : d + length1, d : d + length2]
    return out


def offsets_to_image(offsets: Tensor, max_magnitude: float | None = None) -> Tensor:
    """Render displacement fields as colour images (HSV colour wheel: hue = direction, saturation = length).

    A zero displacement is white; the longest displacement of each image (or ``max_magnitude``) is fully saturated.

    Args:
        offsets: ``(B, 2, h, w)`` displacements ``(dy, dx)``, e.g. ``ContextualAttention2d.last_offsets``.
        max_magnitude: Length mapped to full saturation; by default the per-image maximum.

    Returns:
        ``(B, 3, h, w)`` RGB images in [0, 1].
    """
    if offsets.dim() != 4 or offsets.shape[1] != 2:
        raise ValueError(f"offsets must have shape (B, 2, h, w), got {tuple(offsets.shape)}")
    offsets = offsets.detach().float()
    dy, dx = offsets[:, 0], offsets[:, 1]
    magnitude = torch.sqrt(dy * dy + dx * dx)
    if max_magnitude is None:
        scale = magnitude.flatten(1).amax(dim=1).clamp_min(1e-6).view(-1, 1, 1)
    else:
        if max_magnitude <= 0:
            raise ValueError(f"max_magnitude must be positive, got {max_magnitude}")
        scale = torch.full_like(magnitude[:, :1, :1], float(max_magnitude))
    saturation = (magnitude / scale).clamp(0.0, 1.0)
    hue = (torch.atan2(-dy, -dx) / (2 * math.pi) + 0.5) % 1.0  # in [0, 1)
    value = torch.ones_like(hue)
    # HSV -> RGB.
    h6 = hue * 6.0
    channel_shift = torch.tensor([5.0, 3.0, 1.0], device=offsets.device).view(1, 3, 1, 1)
    k = (channel_shift + h6.unsqueeze(1)) % 6.0
    rgb = value.unsqueeze(1) - value.unsqueeze(1) * saturation.unsqueeze(1) * torch.clamp(
        torch.minimum(k, 4.0 - k), 0.0, 1.0
    )
    return rgb.clamp(0.0, 1.0)
