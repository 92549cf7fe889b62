"""Metrics: FID / IS / KID / precision-recall / intra-FID for class-conditional generation, PSNR / SSIM / MAE
(+ LPIPS) for inpainting."""

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
    LPIPSMetric,
    format_table,
    mae_per_image,
    psnr_per_image,
    score_folders,
    ssim_per_image,
    write_json,
)

__all__ = [
    "PSNR_CAP_DB",
    "GenerationMetrics",
    "InceptionFeatureExtractor",
    "InpaintingMetrics",
    "LPIPSMetric",
    "RandomProjectionExtractor",
    "format_table",
    "frechet_distance",
    "inception_score",
    "kernel_inception_distance",
    "mae_per_image",
    "precision_recall",
    "psnr_per_image",
    "reference_cache_path",
    "score_folders",
    "ssim_per_image",
    "write_json",
]
