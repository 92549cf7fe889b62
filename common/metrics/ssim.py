"""SSIM maps (Wang et al., "Image Quality Assessment: From Error Visibility to Structural Similarity", TIP 2004).

Both conventions use a Gaussian window of sigma 1.5 truncated to 11 taps, K1 = 0.01, K2 = 0.03, population
(co)variances, and ``SSIM = (2 mu_x mu_y + C1)(2 s_xy + C2) / ((mu_x^2 + mu_y^2 + C1)(s_x^2 + s_y^2 + C2))`` with
``C_k = (K_k L)^2``; they differ in how colour and the image border are handled:

* ``"skimage"``: ``skimage.metrics.structural_similarity(gaussian_weights=True, sigma=1.5,
  use_sample_covariance=False, data_range=1, channel_axis=-1)``: a 2-D window per channel, symmetric (mirror)
  padding, the mean over the map **without** its 5-pixel border, averaged over channels. The default.
* ``"matlab"``: our reading of MATLAB's documented ``ssim(A, ref)`` (R2018, the release the GMCNN/AN authors name
  in shepnerd/inpainting_gmcnn#30): an ``H x W x 3`` array is a 3-D *volume*, filtered with ``imgaussfilt3``
  (an 11x11x11 Gaussian, so the window also mixes neighbouring colour channels) with **replicate** padding, and the
  score is the mean of the **whole** map. Not checked against MATLAB itself (no MATLAB here); the tests check it
  against ``scipy.ndimage.gaussian_filter(mode="nearest")``.

Maps are computed in float64 with separable shifted sums (on CPU ~15x faster than an 11x11 grouped ``conv2d``).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

__all__ = ["SSIM_BORDER", "SSIM_CONVENTIONS", "SSIM_SIGMA", "SSIM_WINDOW", "reduce_ssim_map", "ssim_map"]

SSIM_SIGMA = 1.5
SSIM_WINDOW = 11
SSIM_BORDER = (SSIM_WINDOW - 1) // 2
SSIM_CONVENTIONS = ("skimage", "matlab")
Convention = Literal["skimage", "matlab"]


def _taps(dtype: torch.dtype, device: torch.device) -> list[float]:
    offsets = torch.arange(SSIM_WINDOW, dtype=torch.float64) - SSIM_BORDER
    taps = torch.exp(-(offsets**2) / (2 * SSIM_SIGMA**2))
    return (taps / taps.sum()).tolist()


def _pad(x: Tensor, dim: int, mode: str) -> Tensor:
    """Pad ``dim`` by :data:`SSIM_BORDER` on both sides: mirror with the edge repeated, or replicate the edge."""
    dim = dim % x.dim()
    p, n = SSIM_BORDER, x.shape[dim]
    if mode == "symmetric":
        before, after = x.narrow(dim, 0, p).flip(dim), x.narrow(dim, n - p, p).flip(dim)
    else:
        before = x.narrow(dim, 0, 1).expand(*[p if d == dim else -1 for d in range(x.dim())])
        after = x.narrow(dim, n - 1, 1).expand(*[p if d == dim else -1 for d in range(x.dim())])
    return torch.cat([before, x, after], dim=dim)


def _filter(x: Tensor, dims: tuple[int, ...], mode: str) -> Tensor:
    """Separable 11-tap Gaussian along ``dims`` (same size), padded by ``mode``."""
    taps = _taps(x.dtype, x.device)
    for dim in dims:
        n = x.shape[dim]
        padded = _pad(x, dim, mode)
        x = sum(t * padded.narrow(dim, i, n) for i, t in enumerate(taps))
    return x


def _channel_mixing(channels: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    """The 11-tap Gaussian along a channel axis of length ``channels`` with replicate padding, as a matrix."""
    taps = _taps(dtype, device)
    mix = torch.zeros(channels, channels, dtype=dtype, device=device)
    for out in range(channels):
        for i, t in enumerate(taps):
            mix[out, min(max(out + i - SSIM_BORDER, 0), channels - 1)] += t
    return mix


def ssim_map(
    pred: Tensor, target: Tensor, data_range: float = 1.0, convention: Convention = "skimage", double: bool = True
) -> Tensor:
    """Full-size SSIM map ``(B, C, H, W)`` (see the module docstring for the two conventions), differentiable.

    ``double=True`` (metrics) computes in float64; ``False`` keeps the input dtype (e.g. a training loss).

    Raises:
        ValueError: Shapes differ, images are smaller than 11x11 or the convention is unknown.
    """
    if convention not in SSIM_CONVENTIONS:
        raise ValueError(f"SSIM convention must be one of {SSIM_CONVENTIONS}, got {convention!r}")
    if pred.shape != target.shape or pred.dim() != 4:
        raise ValueError(f"SSIM needs two (B, C, H, W) images of one shape, got {tuple(pred.shape)}, {target.shape}")
    if min(pred.shape[-2:]) < SSIM_WINDOW:
        raise ValueError(f"SSIM needs images of at least {SSIM_WINDOW}x{SSIM_WINDOW}, got {tuple(pred.shape[-2:])}")
    x, y = (pred.double(), target.double()) if double else (pred, target)
    stack = torch.stack([x, y, x * x, y * y, x * y])  # (5, B, C, H, W)
    if convention == "skimage":
        stats = _filter(stack, (-2, -1), "symmetric")
    else:
        stats = _filter(stack, (-2, -1), "replicate")
        mix = _channel_mixing(x.shape[1], stats.dtype, stats.device)
        stats = torch.einsum("oc,kbchw->kbohw", mix, stats)
    mu_x, mu_y, xx, yy, xy = stats.unbind(0)
    var_x, var_y, cov = xx - mu_x * mu_x, yy - mu_y * mu_y, xy - mu_x * mu_y
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    return ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))


def reduce_ssim_map(full: Tensor, mask: Tensor | None = None, convention: Convention = "skimage") -> Tensor:
    """Per-image SSIM ``(B,)`` from a full map: the mean without the border (``"skimage"``) or of the whole map
    (``"matlab"``); with a hole ``mask`` ``(B, 1, H, W)``, the mean of the full map over the hole pixels."""
    if mask is not None:
        weights = (mask != 0).to(full.dtype)
        count = weights.flatten(1).sum(dim=1).clamp_min(1.0)
        return (full * weights).flatten(1).sum(dim=1) / (count * full.shape[1])
    if convention == "skimage":
        b = SSIM_BORDER
        full = full[..., b:-b, b:-b]
    return full.flatten(1).mean(dim=1)
