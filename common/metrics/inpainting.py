"""Inpainting metrics: PSNR, SSIM and MAE (AN paper, Wang et al. CVPR 2020, Table 3), hole-only variants, LPIPS.

Protocol ("paper protocol", ``shared/reference/inpainting-anchors.md`` sections 2-3): RGB images in [0, 1], the
composited output (known pixels from the input, hole from the network) against the ground truth, each metric
computed **per image over the whole image, then averaged over images**. With ``quantize=True`` (the default) both
images are first rounded to 8-bit levels, as the authors' MATLAB scripts did on uint8 PNG files.

* PSNR: ``10 log10(1 / MSE)`` with the MSE over all pixels and channels (torchmetrics'
  ``peak_signal_noise_ratio``, ``data_range=1``). Identical images have an infinite PSNR; values are capped at
  :data:`PSNR_CAP_DB` (100 dB) so that means stay finite.
* SSIM: Gaussian window 11x11, sigma 1.5, K1 0.01, K2 0.03, ``data_range=1``, population covariances, computed
  per channel and averaged. Like scikit-image's ``structural_similarity`` (and unlike torchmetrics 1.9's own
  reduction, which averages a reflect-padded full-size map), the mean leaves out the 5-pixel border where the window
  does not fit. The map is computed here in float64 with a separable Gaussian: torchmetrics' 11x11 grouped
  convolution needs 1.2 s per 256x256 image in float64 on one CPU thread (this code: 0.08 s), and in float32 its
  hole SSIM differs from scikit-image by up to ~3e-5. The map equals torchmetrics' in the interior and agrees with
  ``skimage.metrics.structural_similarity(gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
  data_range=1, channel_axis=-1)`` to ~1e-9 (the tests check both).
* MAE: mean absolute difference over all pixels and channels, on the [0, 1] scale.
* Hole variants (``*_hole``): PSNR and MAE over the hole pixels (all channels) only; SSIM averaged over the
  full-size SSIM map (symmetric padding at the border, as scikit-image) inside the hole.
* LPIPS (optional, :class:`LPIPSMetric`): Zhang et al. 2018 through the ``lpips`` package (AlexNet by default).

:func:`score_folders` applies the same code to folders of result and ground-truth images (``python -m an_inpaint
evaluate``), so that results of any method are measured identically.
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.functional.image import peak_signal_noise_ratio
from torchmetrics.utilities.data import dim_zero_cat
from tqdm.auto import tqdm

from common.data.images import list_images, load_rgb, resize
from common.data.masks import CenterSquareMasks, FolderMasks, validate_mask

__all__ = [
    "PSNR_CAP_DB",
    "InpaintingMetrics",
    "LPIPSMetric",
    "format_table",
    "mae_per_image",
    "psnr_per_image",
    "quantize_8bit",
    "score_folders",
    "ssim_map",
    "ssim_per_image",
    "write_json",
]

PSNR_CAP_DB = 100.0
"""PSNR of identical images (infinite) is reported as this value, so that means stay finite."""

SSIM_SIGMA = 1.5
SSIM_WINDOW = 11
SSIM_BORDER = (SSIM_WINDOW - 1) // 2


def quantize_8bit(images: Tensor) -> Tensor:
    """Round [0, 1] images to the 256 levels of an 8-bit file (values are clamped to [0, 1] first)."""
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
    """PSNR of each image, ``(B,)``, in dB, capped at ``cap``.

    Args:
        pred: ``(B, C, H, W)`` images.
        target: ``(B, C, H, W)`` reference images.
        mask: Optional ``(B, 1, H, W)`` hole mask (1 = hole): the MSE is taken over hole pixels only.
        data_range: Value range of the images (1 for [0, 1]).
        cap: Value reported for identical images (infinite PSNR).
    """
    _check_pair(pred, target, mask)
    if mask is None:
        psnr = peak_signal_noise_ratio(pred, target, data_range=data_range, reduction="none", dim=(1, 2, 3))
    else:
        weights, count = _hole_weights(mask, pred)
        mse = ((pred - target) ** 2 * weights).flatten(1).sum(dim=1) / (count * pred.shape[1])
        psnr = 10.0 * torch.log10(data_range**2 / mse)
    return psnr.clamp(max=cap)


def _symmetric_pad(x: Tensor, pad: int) -> Tensor:
    """Pad the last two dims by mirroring with the edge pixel repeated (scipy/skimage ``mode="reflect"``)."""
    x = torch.cat([x[..., :pad, :].flip(-2), x, x[..., -pad:, :].flip(-2)], dim=-2)
    return torch.cat([x[..., :, :pad].flip(-1), x, x[..., :, -pad:].flip(-1)], dim=-1)


def _gaussian_filter(x: Tensor) -> Tensor:
    """Separable 11-tap Gaussian (sigma 1.5) filter of ``(..., H, W)``, same size, symmetric padding.

    Shifted sums instead of a convolution: on CPU this is ~15x faster than an 11x11 grouped ``conv2d`` in float64.
    """
    offsets = torch.arange(SSIM_WINDOW, dtype=x.dtype, device=x.device) - SSIM_BORDER
    taps = torch.exp(-(offsets**2) / (2 * SSIM_SIGMA**2))
    taps = (taps / taps.sum()).tolist()
    height, width = x.shape[-2:]
    padded = _symmetric_pad(x, SSIM_BORDER)
    rows = sum(t * padded[..., :, i : i + width] for i, t in enumerate(taps))
    return sum(t * rows[..., i : i + height, :] for i, t in enumerate(taps))


def ssim_map(pred: Tensor, target: Tensor, data_range: float = 1.0) -> Tensor:
    """Full-size SSIM map ``(B, C, H, W)``, float64 (Gaussian window 11, sigma 1.5, K1 0.01, K2 0.03).

    The local statistics use population (co)variances and symmetric padding at the border, exactly as
    ``skimage.metrics.structural_similarity(gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
    full=True)``; in the interior (5 pixels away from the border) the map equals torchmetrics' SSIM map.
    """
    _check_pair(pred, target, None)
    if min(pred.shape[-2:]) < SSIM_WINDOW:
        raise ValueError(f"SSIM needs images of at least {SSIM_WINDOW}x{SSIM_WINDOW}, got {tuple(pred.shape[-2:])}")
    x, y = pred.double(), target.double()
    stats = _gaussian_filter(torch.stack([x, y, x * x, y * y, x * y]))
    mu_x, mu_y, xx, yy, xy = stats.unbind(0)
    var_x, var_y, cov = xx - mu_x * mu_x, yy - mu_y * mu_y, xy - mu_x * mu_y
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    return ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))


def ssim_per_image(pred: Tensor, target: Tensor, mask: Tensor | None = None, data_range: float = 1.0) -> Tensor:
    """SSIM of each image, ``(B,)`` (Gaussian window 11, sigma 1.5, channel mean; computed in float64).

    Without a mask, the mean of the SSIM map without its 5-pixel border (scikit-image's convention); with a mask,
    the mean of the full-size map (:func:`ssim_map`) over the hole pixels.

    Args:
        pred: ``(B, C, H, W)`` images, at least 11x11.
        target: ``(B, C, H, W)`` reference images.
        mask: Optional ``(B, 1, H, W)`` hole mask (1 = hole).
        data_range: Value range of the images (1 for [0, 1]).
    """
    _check_pair(pred, target, mask)
    return _reduce_ssim_map(ssim_map(pred, target, data_range), mask).to(pred.dtype)


def _reduce_ssim_map(full: Tensor, mask: Tensor | None) -> Tensor:
    if mask is None:
        b = SSIM_BORDER
        return full[..., b:-b, b:-b].flatten(1).mean(dim=1)
    weights, count = _hole_weights(mask, full)
    return (full * weights).flatten(1).sum(dim=1) / (count * full.shape[1])


def mae_per_image(pred: Tensor, target: Tensor, mask: Tensor | None = None) -> Tensor:
    """Mean absolute error of each image, ``(B,)``, over all pixels and channels (or the hole pixels only).

    Args:
        pred: ``(B, C, H, W)`` images.
        target: ``(B, C, H, W)`` reference images.
        mask: Optional ``(B, 1, H, W)`` hole mask (1 = hole).
    """
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


class InpaintingMetrics(Metric):
    """PSNR / SSIM / MAE per image, averaged over images (paper Table 3), plus hole-only variants.

    ``compute()`` returns the means; :meth:`per_image` the per-image values (for JSON export). The per-image sums
    are reduced with ``sum`` and the per-image values with ``cat`` across processes, so the metric works under DDP.

    Args:
        quantize: Round both images to 8-bit levels before measuring (the authors' protocol on uint8 PNG files).
        hole_metrics: Also compute ``psnr_hole``, ``ssim_hole`` and ``mae_hole`` (every mask must have a hole).
        **kwargs: Passed to ``torchmetrics.Metric``.
    """

    is_differentiable = False
    higher_is_better = None
    full_state_update = False

    def __init__(self, quantize: bool = True, hole_metrics: bool = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.quantize = quantize
        self.hole_metrics = hole_metrics
        self.keys = ["psnr", "ssim", "mae"] + (["psnr_hole", "ssim_hole", "mae_hole"] if hole_metrics else [])
        for key in self.keys:
            self.add_state(f"{key}_sum", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
            self.add_state(f"{key}_values", default=[], dist_reduce_fx="cat")
        self.add_state("count", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, pred: Tensor, target: Tensor, mask: Tensor | None = None) -> None:
        """Add a batch.

        Args:
            pred: ``(B, 3, H, W)`` composited outputs in [0, 1].
            target: ``(B, 3, H, W)`` ground truth in [0, 1].
            mask: ``(B, 1, H, W)`` hole mask, 1 = hole (required when ``hole_metrics``).
        """
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
        full_ssim = ssim_map(pred, target)  # computed once for the whole-image and hole values
        values = {
            "psnr": psnr_per_image(pred, target),
            "ssim": _reduce_ssim_map(full_ssim, None).float(),
            "mae": mae_per_image(pred, target),
        }
        if self.hole_metrics:
            values["psnr_hole"] = psnr_per_image(pred, target, mask)
            values["ssim_hole"] = _reduce_ssim_map(full_ssim, mask).float()
            values["mae_hole"] = mae_per_image(pred, target, mask)
        for key, value in values.items():
            setattr(self, f"{key}_sum", getattr(self, f"{key}_sum") + value.double().sum())
            getattr(self, f"{key}_values").append(value)
        self.count += pred.shape[0]

    def compute(self) -> dict[str, Tensor]:
        """Means over all images seen: ``{"psnr", "ssim", "mae"[, "psnr_hole", "ssim_hole", "mae_hole"]}``."""
        if int(self.count) == 0:
            raise ValueError("InpaintingMetrics.compute() called before any update()")
        return {key: (getattr(self, f"{key}_sum") / self.count).float() for key in self.keys}

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


class LPIPSMetric(Metric):
    """LPIPS (Zhang et al., CVPR 2018) through the ``lpips`` package, averaged over images; lower is better.

    The network is built lazily on the first ``update``. With ``pretrained=True`` the package loads its bundled
    linear-layer weights and torchvision downloads the backbone's ImageNet weights on first use (into
    ``$TORCH_HOME``); ``pretrained=False`` builds a randomly initialised network without any download (for tests
    only: its values are not LPIPS).

    Args:
        net: Backbone: ``"alex"`` (default, the package's recommendation), ``"vgg"`` or ``"squeeze"``.
        pretrained: Use the trained LPIPS weights (needs the backbone download once).
        **kwargs: Passed to ``torchmetrics.Metric``.
    """

    is_differentiable = False
    higher_is_better = False
    full_state_update = False

    def __init__(self, net: str = "alex", pretrained: bool = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if net not in ("alex", "vgg", "squeeze"):
            raise ValueError(f"LPIPS net must be 'alex', 'vgg' or 'squeeze', got {net!r}")
        self.net = net
        self.pretrained = pretrained
        self._holder: list[torch.nn.Module] = []  # not a registered submodule: kept out of state_dict
        self.add_state("total", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("values", default=[], dist_reduce_fx="cat")

    def _network(self, device: torch.device) -> torch.nn.Module:
        if not self._holder:
            import lpips

            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", UserWarning)
                    model = lpips.LPIPS(
                        pretrained=self.pretrained, net=self.net, pnet_rand=not self.pretrained, verbose=False
                    )
            except (OSError, RuntimeError) as err:  # URLError is an OSError
                raise RuntimeError(
                    f"LPIPS could not load the torchvision {self.net} backbone weights (they are downloaded on first "
                    f"use into $TORCH_HOME; no network?): {err}"
                ) from err
            self._holder.append(model.eval().requires_grad_(False))
        model = self._holder[0]
        return model.to(device)

    def update(self, pred: Tensor, target: Tensor) -> None:
        """Add a batch of ``(B, 3, H, W)`` images in [0, 1]."""
        _check_pair(pred, target, None)
        _check_unit_range("pred", pred)
        _check_unit_range("target", target)
        model = self._network(pred.device)
        with torch.no_grad():
            value = model(pred.float().clamp(0, 1), target.float().clamp(0, 1), normalize=True).flatten()
        self.total += value.double().sum()
        self.count += value.numel()
        self.values.append(value)

    def compute(self) -> Tensor:
        """Mean LPIPS over all images seen."""
        if int(self.count) == 0:
            raise ValueError("LPIPSMetric.compute() called before any update()")
        return (self.total / self.count).float()

    def per_image(self) -> Tensor:
        """Per-image values ``(N,)`` in update order."""
        with self.sync_context(
            dist_sync_fn=self.dist_sync_fn, should_sync=self._to_sync, should_unsync=self._should_unsync
        ):
            return dim_zero_cat(self.values).float() if len(self.values) else torch.zeros(0)


# ----------------------------------------------------------------------------------------------- folder scoring
def _by_stem(folder: str | Path, what: str) -> dict[str, Path]:
    files: dict[str, Path] = {}
    for path in list_images(folder):
        if path.stem in files:
            raise ValueError(
                f"{what} folder {folder} has two files named {path.stem!r}: {files[path.stem].name}, {path.name}"
            )
        files[path.stem] = path
    return files


def _names(names: list[str], limit: int = 10) -> str:
    return ", ".join(names[:limit]) + (f" ... ({len(names)} in all)" if len(names) > limit else "")


def _to_unit_tensor(image: Image.Image) -> Tensor:
    return torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0).permute(2, 0, 1).unsqueeze(0)


def score_folders(
    pred_dir: str,
    gt_dir: str,
    mask_dir: str | None = None,
    mask: str = "center",
    resize_to: int | None = None,
    lpips: bool = False,
    lpips_pretrained: bool = True,
    progress: bool = True,
) -> dict:
    """Score a folder of inpainted images against a folder of ground truth, per image and on average.

    Files are paired by stem (``001_im.png`` with ``001_im.jpg``); images are read as RGB in [0, 1], quantised to
    8 bits (they come from 8-bit files anyway) and scored with :class:`InpaintingMetrics`.

    Args:
        pred_dir: Folder of results (composited outputs).
        gt_dir: Folder of ground-truth images.
        mask_dir: Folder of masks matched by stem (white = hole), resized (nearest) to the image size; they give
            the hole metrics. Without it, ``mask`` decides.
        mask: Without ``mask_dir``: ``"center"`` (the centre square with half the shorter side, the Paris
            protocol's 128x128 hole at 256x256) or ``"none"`` (whole-image metrics only).
        resize_to: Resize both images (Lanczos) to ``resize_to`` x ``resize_to`` first (e.g. 256 for the 227x227
            Paris ground truth); without it, sizes must match.
        lpips: Also compute LPIPS (AlexNet; downloads the backbone weights on first use).
        lpips_pretrained: ``False`` uses an untrained LPIPS network (tests only).
        progress: Show a tqdm progress bar.

    Returns:
        ``{"per_image": {stem: {metric: value}}, "mean": {metric: value}, "count": N, "protocol": {...}}``.

    Raises:
        FileNotFoundError: A folder is missing.
        ValueError: No images, names that do not pair up (listed), an image pair of different sizes without
            ``resize_to``, a missing or invalid mask, or an unknown ``mask`` value.
    """
    if mask not in ("center", "none"):
        raise ValueError(f"mask must be 'center' or 'none' (or give mask_dir), got {mask!r}")
    preds = _by_stem(pred_dir, "prediction")
    gts = _by_stem(gt_dir, "ground-truth")
    missing = sorted(set(gts) - set(preds))
    extra = sorted(set(preds) - set(gts))
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"no prediction in {pred_dir} for {len(missing)} ground-truth image(s): {_names(missing)}")
        if extra:
            parts.append(f"no ground truth in {gt_dir} for {len(extra)} prediction(s): {_names(extra)}")
        raise ValueError("prediction and ground-truth files do not pair up by name; " + "; ".join(parts))
    folder_masks = None
    if mask_dir is not None:
        folder_masks = FolderMasks(mask_dir)
        no_mask = sorted(set(gts) - set(folder_masks.names))
        if no_mask:
            raise ValueError(f"no mask in {mask_dir} for {len(no_mask)} image(s): {_names(no_mask)}")
    hole_metrics = folder_masks is not None or mask == "center"
    metrics = InpaintingMetrics(quantize=True, hole_metrics=hole_metrics)
    lpips_metric = LPIPSMetric(pretrained=lpips_pretrained) if lpips else None
    center = CenterSquareMasks(0.5)
    stems = sorted(gts)
    for stem in tqdm(stems, desc="scoring", unit="image", disable=not progress):
        pred_img, gt_img = load_rgb(preds[stem]), load_rgb(gts[stem])
        if resize_to is not None:
            pred_img, gt_img = resize(pred_img, resize_to), resize(gt_img, resize_to)
        elif pred_img.size != gt_img.size:
            (pw, ph), (gw, gh) = pred_img.size, gt_img.size
            raise ValueError(
                f"{preds[stem].name} is {pw}x{ph} but the ground truth {gts[stem].name} is {gw}x{gh} "
                "(width x height); pass resize_to to resize both"
            )
        pred, target = _to_unit_tensor(pred_img), _to_unit_tensor(gt_img)
        height, width = target.shape[-2:]
        hole = None
        if folder_masks is not None:
            hole = folder_masks.by_name(stem, height, width)
        elif mask == "center":
            hole = center(height, width)
        if hole is not None:
            try:
                hole = validate_mask(hole, target[0]).unsqueeze(0)
            except ValueError as err:
                raise ValueError(f"mask for {stem}: {err}") from err
        metrics.update(pred, target, hole)
        if lpips_metric is not None:
            lpips_metric.update(pred, target)
    mean = {k: float(v) for k, v in metrics.compute().items()}
    values = {k: v.tolist() for k, v in metrics.per_image().items()}
    if lpips_metric is not None:
        mean["lpips"] = float(lpips_metric.compute())
        values["lpips"] = lpips_metric.per_image().tolist()
    per_image = {stem: {k: values[k][i] for k in values} for i, stem in enumerate(stems)}
    protocol = {
        "pairing": "by file stem",
        "range": "RGB in [0, 1], quantised to 8 bits",
        "average": "per image over the whole image, then mean over images",
        "ssim": f"Gaussian window {SSIM_WINDOW}, sigma {SSIM_SIGMA}, channel mean, {SSIM_BORDER}-px border excluded",
        "psnr_cap_db": PSNR_CAP_DB,
        "mask": f"folder {mask_dir}" if mask_dir is not None else mask,
        "resize_to": resize_to,
        "pred_dir": str(pred_dir),
        "gt_dir": str(gt_dir),
    }
    if lpips:
        protocol["lpips"] = "alex" + ("" if lpips_pretrained else " (untrained: not comparable)")
    return {"per_image": per_image, "mean": mean, "count": len(stems), "protocol": protocol}


_LABELS = {
    "psnr": ("PSNR (dB)", 2),
    "ssim": ("SSIM", 4),
    "mae": ("MAE", 4),
    "psnr_hole": ("PSNR hole (dB)", 2),
    "ssim_hole": ("SSIM hole", 4),
    "mae_hole": ("MAE hole", 4),
    "lpips": ("LPIPS", 4),
}


def format_table(result: dict) -> str:
    """Markdown table of the mean scores of :func:`score_folders` (one row, one column per metric)."""
    keys = [k for k in _LABELS if k in result["mean"]] + [k for k in result["mean"] if k not in _LABELS]
    header = ["images"] + [_LABELS.get(k, (k, 4))[0] for k in keys]
    cells = [str(result["count"])]
    for k in keys:
        value = result["mean"][k]
        cells.append("nan" if value is None or math.isnan(value) else f"{value:.{_LABELS.get(k, (k, 4))[1]}f}")
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---" for _ in header) + "|",
        "| " + " | ".join(cells) + " |",
    ]
    return "\n".join(lines)


def write_json(result: dict, path: str | Path) -> Path:
    """Write the scores of :func:`score_folders` as JSON (parent folders are created); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2, sort_keys=False) + "\n")
    return path
