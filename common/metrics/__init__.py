"""Metrics: FID / IS / KID / precision-recall / intra-FID for class-conditional generation, PSNR / SSIM / MAE
(+ LPIPS, FID) for inpainting."""

from common.metrics.generation import (
    GenerationMetrics,
    InceptionFeatureExtractor,
    RandomProjectionExtractor,
    frechet_distance,
    inception_score,
    kernel_inception_distance,
    precision_recall,
    reference_cache_path,
)
from common.metrics.inpainting import (
    PSNR_CAP_DB,
    InpaintingMetrics,
    mae_per_image,
    psnr_per_image,
    ssim_per_image,
)
from common.metrics.perceptual import FIDMetric, LPIPSMetric
from common.metrics.ssim import ssim_map

__all__ = [
    "PSNR_CAP_DB",
    "FIDMetric",
    "GenerationMetrics",
    "InceptionFeatureExtractor",
    "InpaintingMetrics",
    "LPIPSMetric",
    "RandomProjectionExtractor",
    "frechet_distance",
    "inception_score",
    "kernel_inception_distance",
    "mae_per_image",
    "precision_recall",
    "psnr_per_image",
    "reference_cache_path",
    "ssim_map",
    "ssim_per_image",
]
