"""The inpainting evaluation protocol: :class:`InpaintingEvaluator` (in-training validation and test) and
:func:`score_folders` (``python -m an_inpaint evaluate``), one metric implementation for both.

:class:`InpaintingEvaluator` measures composited results against the ground truth with
:class:`common.metrics.InpaintingMetrics` (PSNR / SSIM / MAE per image, then averaged; hole-only variants; optional
per-area-bin scores), optional LPIPS / FID, for the model and for OpenCV's classical inpainting on the same images and
holes (``baselines``), so every run shows how it compares with Telea / Navier-Stokes.

:func:`score_folders` pairs result and ground-truth files by stem, brings the ground truth to the results' size
with the evaluation resize (:func:`common.data.inpainting_datasets.eval_resize`), checks that each result is
*composited* (its known pixels equal the ground truth's; a result that altered them would be scored on pixels the
method was given), and measures every pair with an :class:`InpaintingEvaluator`, so the model, OpenCV's baselines
(``python -m an_inpaint baseline``) or any other method are measured identically. Results go to a markdown table and
a JSON file (per image, mean, per area bin, and the protocol).
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from an_inpaint.baselines import METHODS, classical_inpaint_batch
from common.data.images import list_images, load_rgb
from common.data.inpainting_datasets import EvalResize, eval_resize
from common.data.mask_files import FolderMasks
from common.data.masks import CenterSquareMasks, validate_mask
from common.metrics.inpainting import PSNR_CAP_DB, InpaintingMetrics
from common.metrics.paired import MetricSpec
from common.metrics.perceptual import FIDMetric, LPIPSMetric
from common.metrics.ssim import SSIM_SIGMA, SSIM_WINDOW
from common.visualization import to_unit

__all__ = [
    "METRICS",
    "InpaintingEvaluator",
    "KnownRegionError",
    "check_known_region",
    "format_table",
    "score_folders",
    "write_json",
]

KnownCheck = Literal["error", "warn", "off"]
Baseline = Literal["telea", "ns", "harmonic"]


class InpaintingEvaluator(nn.Module):
    """PSNR / SSIM / MAE (whole image and hole), optional area bins, LPIPS and FID of the model and of classical
    baselines on the same images and holes (module docstring).

    An ``nn.Module``, so that its metric states follow the LightningModule to its device; every state is a sum (or a
    list of per-image values) reduced over processes when computed (``sync_on_compute``), so under DDP, with a sampler
    that gives each image to exactly one process, the scores are those of one process. Use: :meth:`reset`, then
    :meth:`update_batch` (a model's output and the baselines) or :meth:`update` (any result) per batch, then
    :meth:`compute`.

    Args:
        baselines: Classical methods scored on the same images and holes as the model (``"telea"``, ``"ns"``:
            OpenCV ``cv2.inpaint``, radius 3; ``"harmonic"``: :func:`an_inpaint.fill.harmonic_fill`), logged as
            ``<stage>/<method>/psnr`` etc.
        area_bins: Hole-area fractions that bin every metric (e.g. ``[0.1, 0.2, ..., 0.6]``), logged as
            ``<stage>/psnr@10-20%`` etc.; None: no bins.
        ssim_convention: ``"skimage"`` (default) or ``"matlab"`` (see :mod:`common.metrics.ssim`).
        lpips: Also LPIPS (AlexNet; torchvision downloads the backbone weights once).
        fid: Also FID (Inception; torch-fidelity downloads its weights once).
        hole_metrics: Also the hole-only metrics (every mask must have a hole); False: whole-image metrics only.
        lpips_pretrained: False: an untrained LPIPS network (tests only; its values are not LPIPS).
        fid_feature: FID's Inception feature layer, or a stand-in ``nn.Module`` (tests).
    """

    def __init__(
        self,
        baselines: list[Baseline] | None = None,
        area_bins: list[float] | None = None,
        ssim_convention: Literal["skimage", "matlab"] = "skimage",
        lpips: bool = False,
        fid: bool = False,
        hole_metrics: bool = True,
        lpips_pretrained: bool = True,
        fid_feature: int | nn.Module = 2048,
    ) -> None:
        super().__init__()
        unknown = sorted(set(baselines or []) - set(METHODS))
        if unknown:
            raise ValueError(f"unknown baseline(s) {unknown}; choose from {list(METHODS)}")
        self.baselines = list(baselines or [])
        self.settings = {"baselines": self.baselines, "area_bins": area_bins, "ssim_convention": ssim_convention}
        self.settings.update(lpips=lpips, fid=fid, hole_metrics=hole_metrics)
        pixel = {"area_bins": area_bins, "ssim_convention": ssim_convention, "hole_metrics": hole_metrics}
        self.pixel = nn.ModuleDict({m: InpaintingMetrics(**pixel, sync_on_compute=True) for m in self.methods})
        self.lpips = (
            nn.ModuleDict({m: LPIPSMetric(pretrained=lpips_pretrained) for m in self.methods}) if lpips else None
        )
        self.fid = nn.ModuleDict({m: FIDMetric(feature=fid_feature) for m in self.methods}) if fid else None

    @property
    def methods(self) -> list[str]:
        """``["model", *baselines]``: what is scored."""
        return ["model", *self.baselines]

    def extra_repr(self) -> str:
        """The settings (two evaluators with the same settings print the same)."""
        return ", ".join(f"{k}={v!r}" for k, v in self.settings.items())

    def reset(self) -> None:
        """Forget every image seen."""
        for group in (self.pixel, self.lpips, self.fid):
            for metric in (group or {}).values():
                metric.reset()

    def update(self, pred: Tensor, target: Tensor, mask: Tensor | None = None, method: str = "model") -> None:
        """Add ``method``'s results ``pred`` against ``target``, ``(B, 3, H, W)`` in [0, 1], with holes ``mask``
        ``(B, 1, H, W)`` (1 = missing; None only without ``hole_metrics``)."""
        self.pixel[method].update(pred, target, mask)
        if self.lpips is not None:
            self.lpips[method].update(pred, target)
        if self.fid is not None:
            self.fid[method].update(pred, target)

    def update_batch(self, image: Tensor, mask: Tensor, inpainted: Tensor) -> dict[str, Tensor]:
        """Add the model's composited output ``inpainted`` and every baseline's, for ground truth ``image`` (all
        ``(B, 3, H, W)`` in [-1, 1]) and holes ``mask``; returns ``{baseline: its result in [-1, 1]}``."""
        target = to_unit(image)
        self.update(to_unit(inpainted), target, mask)
        results = {}
        for method in self.baselines:
            results[method] = classical_inpaint_batch(image, mask, method)
            self.update(to_unit(results[method]), target, mask, method)
        return results

    def means(self, method: str = "model") -> dict[str, Tensor]:
        """``method``'s means over every image seen (0-dim tensors): the pixel metrics (and ``key@bin``), ``lpips``,
        ``fid``."""
        values = dict(self.pixel[method].compute())
        if self.lpips is not None:
            values["lpips"] = self.lpips[method].compute()
        if self.fid is not None:
            values["fid"] = self.fid[method].compute()
        return values

    def per_image(self, method: str = "model") -> dict[str, Tensor]:
        """``method``'s per-image values ``{key: (N,)}`` in update order (FID has none)."""
        values = self.pixel[method].per_image()
        if self.lpips is not None:
            values["lpips"] = self.lpips[method].per_image()
        return values

    def num_images(self) -> dict[str, int]:
        """``{"all": N}`` and the images of each area bin (over all processes)."""
        return self.pixel["model"].num_images()

    def compute(self, prefix: str) -> dict[str, Tensor]:
        """``{prefix}/num_images``, the model's means as ``{prefix}/psnr`` ... and each baseline's as
        ``{prefix}/{method}/psnr`` ...."""
        values = {f"{prefix}/num_images": torch.tensor(float(self.num_images()["all"]))}
        for method in self.methods:
            key = prefix if method == "model" else f"{prefix}/{method}"
            values.update({f"{key}/{k}": v for k, v in self.means(method).items()})
        return values


class KnownRegionError(ValueError):
    """A result whose known pixels differ from the ground truth (it was not composited)."""


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


def _to_unit_tensor(pixels: np.ndarray) -> Tensor:
    return torch.from_numpy(pixels.astype(np.float32) / 255.0).permute(2, 0, 1).unsqueeze(0)


def check_known_region(
    pred: np.ndarray, gt: np.ndarray, hole: np.ndarray, name: str, mode: KnownCheck = "error", tolerance: int = 0
) -> int:
    """Count the known pixels where ``pred`` differs from ``gt`` by more than ``tolerance`` levels (any channel).

    Args:
        pred: ``(H, W, 3)`` uint8 result.
        gt: ``(H, W, 3)`` uint8 ground truth.
        hole: ``(H, W)`` bool, True = missing.
        name: Image name for the message.
        mode: ``"error"`` raises :class:`KnownRegionError`, ``"warn"`` warns, ``"off"`` only counts.
        tolerance: Largest accepted difference in 8-bit levels (0: exact, as composited PNG files are).

    Returns:
        The number of differing known pixels.
    """
    known = ~hole
    diff = np.abs(pred.astype(np.int16) - gt.astype(np.int16)).max(axis=-1)
    bad = int(((diff > tolerance) & known).sum())
    if bad and mode != "off":
        message = (
            f"{name}: {bad} known pixel(s) ({100 * bad / max(int(known.sum()), 1):.2f}% of the known region) differ "
            f"from the ground truth (by up to {int(diff[known].max())} of 255): evaluate scores composited results "
            "(the method's output inside the hole, the ground truth outside). Composite the result first, use the "
            "same evaluation resize as the prediction, or pass --known_check warn / off."
        )
        if mode == "error":
            raise KnownRegionError(message)
        warnings.warn(message, stacklevel=2)
    return bad


def score_folders(
    pred_dir: str,
    gt_dir: str,
    mask_dir: str | None = None,
    mask: str = "center",
    resize_to: int | None = None,
    resize: EvalResize = "bilinear",
    ssim: Literal["skimage", "matlab"] = "skimage",
    area_bins: list[float] | None = None,
    known_check: KnownCheck = "error",
    known_tolerance: int = 0,
    lpips: bool = False,
    lpips_pretrained: bool = True,
    fid: bool = False,
    fid_feature: int | torch.nn.Module = 2048,
    progress: bool = True,
) -> dict:
    """Score a folder of inpainted images against a folder of ground truth, per image and on average.

    Args:
        pred_dir: Folder of results (composited outputs).
        gt_dir: Folder of ground-truth images.
        mask_dir: Folder of masks matched by stem (white = hole), resized (nearest) to the result's size; they
            give the hole metrics and the known-region check. Without it, ``mask`` decides.
        mask: Without ``mask_dir``: ``"center"`` (the centre square with half the shorter side, the Paris
            protocol's 128x128 hole at 256x256) or ``"none"`` (whole-image metrics only, no check).
        resize_to: Bring every image that is not ``resize_to`` x ``resize_to`` to that size (centre square, then
            ``resize``), e.g. 256 for the 227x227 Paris ground truth; without it, sizes must match.
        resize: ``"bilinear"`` (OpenCV, the AN authors' test script) or ``"lanczos"``.
        ssim: SSIM convention, ``"skimage"`` or ``"matlab"`` (:mod:`common.metrics.ssim`).
        area_bins: Hole-area fractions binning the scores (e.g. ``[0.1, 0.2, 0.3, 0.4, 0.5, 0.6]``).
        known_check: What a result with altered known pixels gives: ``"error"``, ``"warn"`` or ``"off"``.
        known_tolerance: Accepted difference of known pixels in 8-bit levels (e.g. for JPEG results).
        lpips: Also LPIPS (AlexNet; downloads the backbone weights on first use).
        lpips_pretrained: ``False`` uses an untrained LPIPS network (tests only).
        fid: Also FID (torchmetrics / torch-fidelity Inception; downloads its weights on first use).
        fid_feature: FID feature layer or a stand-in ``nn.Module`` (tests).
        progress: Show a tqdm progress bar.

    Returns:
        ``{"per_image": {stem: {metric: value}}, "mean": {metric: value}, "count": N, "bins": {bin: N},
        "protocol": {...}}``.

    Raises:
        FileNotFoundError: A folder is missing.
        KnownRegionError: A result's known pixels differ from the ground truth (``known_check="error"``).
        ValueError: No images, names that do not pair up (listed), an image pair of different sizes without
            ``resize_to``, a missing or invalid mask, or an unknown ``mask`` value.
    """
    if mask not in ("center", "none"):
        raise ValueError(f"mask must be 'center' or 'none' (or give mask_dir), got {mask!r}")
    if known_check not in ("error", "warn", "off"):
        raise ValueError(f"known_check must be 'error', 'warn' or 'off', got {known_check!r}")
    preds = _by_stem(pred_dir, "prediction")
    gts = _by_stem(gt_dir, "ground-truth")
    missing, extra = sorted(set(gts) - set(preds)), sorted(set(preds) - set(gts))
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
    evaluator = InpaintingEvaluator(
        area_bins=area_bins if hole_metrics else None,
        ssim_convention=ssim,
        lpips=lpips,
        fid=fid,
        hole_metrics=hole_metrics,
        lpips_pretrained=lpips_pretrained,
        fid_feature=fid_feature,
    )
    stems = sorted(gts)
    altered = {}
    for stem in tqdm(stems, desc="scoring", unit="image", disable=not progress):
        pred_img, gt_img = load_rgb(preds[stem]), load_rgb(gts[stem])
        if resize_to is not None:
            pred_px, gt_px = (eval_resize(im, resize_to, resize) for im in (pred_img, gt_img))
        elif pred_img.size != gt_img.size:
            (pw, ph), (gw, gh) = pred_img.size, gt_img.size
            raise ValueError(
                f"{preds[stem].name} is {pw}x{ph} but the ground truth {gts[stem].name} is {gw}x{gh} "
                "(width x height); pass resize_to to bring both to one size"
            )
        else:
            pred_px, gt_px = np.asarray(pred_img), np.asarray(gt_img)
        pred, target = _to_unit_tensor(pred_px), _to_unit_tensor(gt_px)
        height, width = target.shape[-2:]
        hole = None
        if folder_masks is not None:
            hole = folder_masks.by_name(stem, height, width)
        elif mask == "center":
            hole = CenterSquareMasks(0.5)(height, width)
        if hole is not None:
            try:
                hole = validate_mask(hole, target[0]).unsqueeze(0)
            except ValueError as err:
                raise ValueError(f"mask for {stem}: {err}") from err
            count = check_known_region(pred_px, gt_px, hole[0, 0].numpy() > 0.5, stem, known_check, known_tolerance)
            if count:
                altered[stem] = count
        evaluator.update(pred, target, hole)
    mean = {k: float(v) for k, v in evaluator.means().items()}
    values = {k: v.tolist() for k, v in evaluator.per_image().items()}
    per_image = {stem: {k: values[k][i] for k in values} for i, stem in enumerate(stems)}
    protocol = {
        "pairing": "by file stem",
        "range": "RGB in [0, 1], quantised to 8 bits",
        "average": "per image, then mean over images",
        "ssim": f"{ssim} convention, Gaussian window {SSIM_WINDOW}, sigma {SSIM_SIGMA}",
        "psnr_cap_db": PSNR_CAP_DB,
        "mask": f"folder {mask_dir}" if mask_dir is not None else mask,
        "resize_to": resize_to,
        "resize": resize if resize_to is not None else None,
        "known_check": known_check,
        "altered_known_pixels": altered,
        "pred_dir": str(pred_dir),
        "gt_dir": str(gt_dir),
    }
    if lpips:
        protocol["lpips"] = "alex" + ("" if lpips_pretrained else " (untrained: not comparable)")
    bins = {k: v for k, v in evaluator.num_images().items() if k != "all"}
    return {"per_image": per_image, "mean": mean, "count": len(stems), "bins": bins, "protocol": protocol}


#: Every metric :func:`score_folders` reports: its table label, digits and direction (for paired comparisons).
METRICS: dict[str, MetricSpec] = {
    "psnr": MetricSpec("PSNR (dB)", 2, True),
    "ssim": MetricSpec("SSIM", 4, True),
    "mae": MetricSpec("MAE", 4, False),
    "psnr_hole": MetricSpec("PSNR hole (dB)", 2, True),
    "ssim_hole": MetricSpec("SSIM hole", 4, True),
    "mae_hole": MetricSpec("MAE hole", 4, False),
    "lpips": MetricSpec("LPIPS", 4, False),
    "fid": MetricSpec("FID", 2, False),
}


def _fmt(value: float | None, digits: int) -> str:
    return "nan" if value is None or math.isnan(value) else f"{value:.{digits}f}"


def format_table(result: dict) -> str:
    """Markdown table of :func:`score_folders`' means: one row for all images, one per non-empty area bin."""
    keys = [k for k in METRICS if k in result["mean"]]
    header = ["images", "N"] + [METRICS[k].label for k in keys]
    rows = [["all", str(result["count"])] + [_fmt(result["mean"][k], METRICS[k].digits) for k in keys]]
    for label, count in result.get("bins", {}).items():
        if count:
            cells = [_fmt(result["mean"].get(f"{k}@{label}"), METRICS[k].digits) for k in keys]
            rows.append([f"hole {label}", str(count), *cells])
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def write_json(result: dict, path: str | Path) -> Path:
    """Write the scores of :func:`score_folders` as JSON (parent folders are created); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2, sort_keys=False) + "\n")
    return path
