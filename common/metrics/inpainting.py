"""Inpainting metrics: PSNR, SSIM and MAE (AN paper, Wang et al. CVPR 2020, Table 3) and their hole-only variants.

What is computed (no claim that it is the paper's exact protocol: the authors used MATLAB and never released their
evaluation script): RGB images in [0, 1], the composited output (known pixels from the input, hole from the
method) against the ground truth, each metric **per image, then averaged over images**. With ``quantize=True`` (the
default) both images are first rounded to 8-bit levels, as when scoring PNG files.

* PSNR: ``10 log10(1 / MSE)`` with the MSE over all pixels and channels (torchmetrics'
  ``peak_signal_noise_ratio``, ``data_range=1``). Identical images have an infinite PSNR; values are capped at
  :data:`PSNR_CAP_DB` (100 dB) so that means stay finite.
* SSIM: Gaussian window 11x11, sigma 1.5, in the scikit-image convention (default) or our reading of MATLAB's
  (:mod:`common.metrics.ssim`).
* MAE: mean absolute difference over all pixels and channels, on the [0, 1] scale.
* Hole variants (``*_hole``): PSNR and MAE over the hole pixels (all channels) only; SSIM averaged over the
  full-size SSIM map inside the hole.
* Mask-area bins (``area_bins``): every metric also per bin of the hole's area fraction (``psnr@10-20%``), as
  free-form inpainting results are reported (e.g. LaMa's evaluation).

Every per-image value is accumulated as a sum (reduced with ``sum`` across processes) plus a count, so under DDP,
with a sampler that gives each image to exactly one rank (:class:`common.data.distributed.EvalDistributedSampler`),
the means are those of one process.
"""

from __future__ import annotations

from itertools import pairwise
from typing import Any

import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.functional.image import peak_signal_noise_ratio
from torchmetrics.utilities.data import dim_zero_cat

from common.metrics.ssim import SSIM_CONVENTIONS, Convention, reduce_ssim_map, ssim_map

__all__ = [
    "PSNR_CAP_DB",
    "InpaintingMetrics",
    "bin_label",
    "mae_per_image",
    "psnr_per_image",
    "quantize_8bit",
    "ssim_per_image",
]

PSNR_CAP_DB = 100.0
"""PSNR of identical images (infinite) is reported as this value, so that means stay finite."""


def quantize_8bit(images: Tensor) -> Tensor:
    """Round [0, 1] images (any shape) to the 256 levels of an 8-bit file; clamped to [0, 1] first, same shape."""
    return torch.round(images.clamp(0.0, 1.0) * 255.0) / 255.0


def _check_pair(pred: Tensor, target: Tensor, mask: Tensor | None) -> None:
    if pred.dim() != 4:
        raise ValueError(f"expected images of shape (B, C, H, W), got {tuple(pred.shape)}")
    if pred.shape != target.shape:
        raise ValueError(f"prediction shape {tuple(pred.shape)} does not match target shape {tuple(target.shape)}")
    if mask is not None:
        if mask.dim() != 4 or mask.shape[1] != 1:
            raise ValueError(f"mask must have shape (B, 1, H, W), got {tuple(mask.shape)}")
        if mask.shape[0] != pred.shape[0] or mask.shape[-2:] != pred.shape[-2:]:
            raise ValueError(f"mask of shape {tuple(mask.shape)} does not match images of shape {tuple(pred.shape)}")


def _hole_weights(mask: Tensor, like: Tensor) -> tuple[Tensor, Tensor]:
    """Mask as float weights and the per-image number of hole pixels; error when an image has no hole."""
    weights = (mask != 0).to(like.dtype)
    count = weights.flatten(1).sum(dim=1)
    empty = torch.nonzero(count == 0).flatten().tolist()
    if empty:
        raise ValueError(f"hole metrics need a hole, but the mask of image(s) {empty} in this batch has none")
    return weights, count


def psnr_per_image(
    pred: Tensor, target: Tensor, mask: Tensor | None = None, data_range: float = 1.0, cap: float = PSNR_CAP_DB
) -> Tensor:
    """PSNR of each image, ``(B,)``, in dB, capped at ``cap`` (with a mask: the MSE over hole pixels only)."""
    _check_pair(pred, target, mask)
    if mask is None:
        psnr = peak_signal_noise_ratio(pred, target, data_range=data_range, reduction="none", dim=(1, 2, 3))
    else:
        weights, count = _hole_weights(mask, pred)
        mse = ((pred - target) ** 2 * weights).flatten(1).sum(dim=1) / (count * pred.shape[1])
        psnr = 10.0 * torch.log10(data_range**2 / mse)
    return psnr.clamp(max=cap)


def ssim_per_image(
    pred: Tensor,
    target: Tensor,
    mask: Tensor | None = None,
    data_range: float = 1.0,
    convention: Convention = "skimage",
) -> Tensor:
    """SSIM of each image, ``(B,)`` (:mod:`common.metrics.ssim`); with a mask, the map's mean over the hole."""
    _check_pair(pred, target, mask)
    if mask is not None:
        _hole_weights(mask, pred)
    return reduce_ssim_map(ssim_map(pred, target, data_range, convention), mask, convention).to(pred.dtype)


def mae_per_image(pred: Tensor, target: Tensor, mask: Tensor | None = None) -> Tensor:
    """Mean absolute error of each image, ``(B,)``, over all pixels and channels (or the hole pixels only)."""
    _check_pair(pred, target, mask)
    diff = (pred - target).abs()
    if mask is None:
        return diff.flatten(1).mean(dim=1)
    weights, count = _hole_weights(mask, pred)
    return (diff * weights).flatten(1).sum(dim=1) / (count * pred.shape[1])


def _check_unit_range(name: str, images: Tensor) -> None:
    low, high = float(images.min()), float(images.max())
    if low < -0.01 or high > 1.01:
        raise ValueError(
            f"{name} must be in [0, 1] (got values in [{low:.3g}, {high:.3g}]); map [-1, 1] images with (x + 1) / 2"
        )


def bin_label(low: float, high: float) -> str:
    """``"10-20%"`` for the area bin ``[0.1, 0.2)``."""
    return f"{100 * low:g}-{100 * high:g}%"


class InpaintingMetrics(Metric):
    """PSNR / SSIM / MAE per image, averaged over images (paper Table 3), plus hole-only and per-area-bin values.

    ``compute()`` returns the means (and ``<key>@<bin>`` per non-empty area bin); :meth:`per_image` the per-image
    values (for JSON export); :meth:`num_images` how many images were scored (over all processes).

    Args:
        quantize: Round both images to 8-bit levels before measuring (scoring 8-bit files).
        hole_metrics: Also ``psnr_hole``, ``ssim_hole`` and ``mae_hole`` (every mask must have a hole).
        ssim_convention: ``"skimage"`` (default) or ``"matlab"``.
        area_bins: Increasing hole-area fractions; bin ``k`` is ``[area_bins[k], area_bins[k + 1])`` (the last one
            closed). Images outside every bin count only in the overall means.
        **kwargs: Passed to ``torchmetrics.Metric``.
    """

    is_differentiable = False
    higher_is_better = None
    full_state_update = False

    def __init__(
        self,
        quantize: bool = True,
        hole_metrics: bool = True,
        ssim_convention: Convention = "skimage",
        area_bins: list[float] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if ssim_convention not in SSIM_CONVENTIONS:
            raise ValueError(f"ssim_convention must be one of {SSIM_CONVENTIONS}, got {ssim_convention!r}")
        edges = [float(b) for b in (area_bins or [])]
        if edges and (len(edges) < 2 or any(b <= a for a, b in pairwise(edges)) or edges[0] < 0 or edges[-1] > 1):
            raise ValueError(f"area_bins must be >= 2 increasing fractions in [0, 1], got {area_bins}")
        if edges and not hole_metrics:
            raise ValueError("area_bins need the masks: use hole_metrics=True")
        self.quantize = quantize
        self.hole_metrics = hole_metrics
        self.ssim_convention = ssim_convention
        self.area_bins = edges
        self.keys = ["psnr", "ssim", "mae"] + (["psnr_hole", "ssim_hole", "mae_hole"] if hole_metrics else [])
        for key in self.keys:
            self.add_state(f"{key}_sum", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
            self.add_state(f"{key}_values", default=[], dist_reduce_fx="cat")
        self.add_state("count", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")
        n_bins = max(len(edges) - 1, 0)
        self.add_state(
            "bin_sums", default=torch.zeros(len(self.keys), n_bins, dtype=torch.float64), dist_reduce_fx="sum"
        )
        self.add_state("bin_counts", default=torch.zeros(n_bins, dtype=torch.long), dist_reduce_fx="sum")

    def _bin_index(self, area: Tensor) -> Tensor:
        """Bin of each area fraction, ``-1`` outside every bin."""
        edges = torch.tensor(self.area_bins, dtype=area.dtype, device=area.device)
        index = torch.bucketize(area, edges, right=True) - 1
        index = torch.where(area == edges[-1], len(self.area_bins) - 2, index)  # the last bin is closed
        return torch.where((index < 0) | (index >= len(self.area_bins) - 1), -1, index)

    def update(self, pred: Tensor, target: Tensor, mask: Tensor | None = None) -> None:
        """Add a batch: ``pred`` and ``target`` ``(B, 3, H, W)`` in [0, 1], ``mask`` ``(B, 1, H, W)`` (1 = hole)."""
        _check_pair(pred, target, mask)
        if self.hole_metrics and mask is None:
            raise ValueError("InpaintingMetrics(hole_metrics=True) needs the mask in update(pred, target, mask)")
        _check_unit_range("pred", pred)
        _check_unit_range("target", target)
        pred, target = pred.detach().float(), target.detach().float()
        if self.quantize:
            pred, target = quantize_8bit(pred), quantize_8bit(target)
        else:
            pred, target = pred.clamp(0.0, 1.0), target.clamp(0.0, 1.0)
        full_ssim = ssim_map(pred, target, convention=self.ssim_convention)  # once for whole-image and hole values
        values = {
            "psnr": psnr_per_image(pred, target),
            "ssim": reduce_ssim_map(full_ssim, None, self.ssim_convention).float(),
            "mae": mae_per_image(pred, target),
        }
        if self.hole_metrics:
            values["psnr_hole"] = psnr_per_image(pred, target, mask)
            _hole_weights(mask, pred)
            values["ssim_hole"] = reduce_ssim_map(full_ssim, mask).float()
            values["mae_hole"] = mae_per_image(pred, target, mask)
        for key, value in values.items():
            setattr(self, f"{key}_sum", getattr(self, f"{key}_sum") + value.double().sum())
            getattr(self, f"{key}_values").append(value)
        self.count += pred.shape[0]
        if self.area_bins:
            index = self._bin_index((mask != 0).flatten(1).double().mean(dim=1))
            inside = index >= 0
            stacked = torch.stack([values[k].double() for k in self.keys])  # (K, B)
            one_hot = torch.nn.functional.one_hot(index[inside], len(self.area_bins) - 1).double()  # (B', n)
            self.bin_sums += stacked[:, inside] @ one_hot
            self.bin_counts += one_hot.sum(dim=0).long()

    def compute(self) -> dict[str, Tensor]:
        """Means (0-dim tensors) over all images seen, plus ``<key>@<bin>`` for every area bin that holds an image."""
        if int(self.count) == 0:
            raise ValueError("InpaintingMetrics.compute() called before any update()")
        out = {key: (getattr(self, f"{key}_sum") / self.count).float() for key in self.keys}
        for b, (low, high) in enumerate(pairwise(self.area_bins)):
            if int(self.bin_counts[b]):
                for k, key in enumerate(self.keys):
                    out[f"{key}@{bin_label(low, high)}"] = (self.bin_sums[k, b] / self.bin_counts[b]).float()
        return out

    def num_images(self) -> dict[str, int]:
        """``{"all": N}`` plus the number of images of each area bin (after the cross-process reduction)."""
        with self.sync_context(
            dist_sync_fn=self.dist_sync_fn, should_sync=self._to_sync, should_unsync=self._should_unsync
        ):
            counts = {"all": int(self.count)}
            for b, (low, high) in enumerate(pairwise(self.area_bins)):
                counts[bin_label(low, high)] = int(self.bin_counts[b])
            return counts

    def per_image(self) -> dict[str, Tensor]:
        """Per-image values ``{key: (N,)}`` in update order (gathered from every process under DDP)."""
        with self.sync_context(
            dist_sync_fn=self.dist_sync_fn, should_sync=self._to_sync, should_unsync=self._should_unsync
        ):
            out = {}
            for key in self.keys:
                values = getattr(self, f"{key}_values")
                out[key] = dim_zero_cat(values).float() if len(values) else torch.zeros(0)
            return out
